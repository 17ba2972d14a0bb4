"""Direction files: emlens safetensors, llama.cpp/repeng GGUF control vectors, the papers' ``.pt``.

Three formats, one module:

- **emlens safetensors** (:func:`save_direction`, :func:`load_direction`): tensor ``vectors``
  (float32 ``[n, d_model]``) plus one JSON document in the safetensors metadata under the
  key ``"emlens"`` (schema version, layers, provenance, method, ...). The full schema is
  in ``directions/README.md``. No pickle anywhere.
- **GGUF control vectors** (:func:`to_gguf`, :func:`from_gguf`), the llama.cpp convention
  that repeng also writes: ``general.architecture = "controlvector"``, keys
  ``controlvector.model_hint`` and ``controlvector.layer_count``, one float32 tensor
  ``direction.{l+1}`` per block ``l`` (block ``l``'s resid_post, i.e. HF
  ``hidden_states[l + 1]``). Needs the optional ``gguf`` package.
- **The papers' learned steering vectors** (:func:`to_pt`, :func:`from_pt`): a torch file
  holding ``{"steering_vector": [d_model], "layer_idx": int, "d_model": int, "alpha": float}``,
  read with ``torch.load(weights_only=True)`` only.

Every write is atomic (temporary file in the same folder, then a rename). Every read
failure is an :class:`~emlens.errors.FileFormatError` saying what is wrong with the file.

Files say where they belong and readers return plain data: every reader gives a
:class:`DirectionData` (vectors, layers, metadata) and every writer takes any object with
those three attributes, so this module knows nothing of the
:class:`~emlens.directions.Direction` class, which builds itself from that data.

Example:
    >>> d.save("directions/em.safetensors")                        # doctest: +SKIP
    >>> d2 = Direction.load("directions/em.safetensors", model=model)  # doctest: +SKIP
    >>> d.to_gguf("em.gguf", model_hint="qwen2")                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import os
import pickle
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from ._version import __version__
from .errors import FileFormatError, InputError
from .io import atomic_write_bytes, atomic_write_with
from .vectors import block_layers

__all__ = [
    "DirectionData",
    "SCHEMA_VERSION",
    "METADATA_KEY",
    "ProvenanceWarning",
    "FileMissingError",
    "save_direction",
    "load_direction",
    "read_header",
    "to_gguf",
    "from_gguf",
    "to_pt",
    "from_pt",
]

#: Version of the JSON document emlens writes; bump on incompatible changes.
SCHEMA_VERSION = 1
#: Schema versions this emlens can read.
READABLE_SCHEMA_VERSIONS = (1,)
#: Key of the JSON document in the safetensors metadata.
METADATA_KEY = "emlens"
#: Value of the document's ``"format"`` field.
FORMAT_NAME = "emlens.direction"
#: Name of the tensor holding the vectors.
TENSOR_NAME = "vectors"

GGUF_ARCH = "controlvector"
GGUF_EMLENS_KEY = "emlens.direction"  # our own JSON document, ignored by llama.cpp
_PT_KEYS = ("steering_vector", "layer_idx", "d_model", "alpha")


class DirectionData(NamedTuple):
    """What a direction file holds: float32 ``vectors [n, d_model]``, the block number of each
    row, and the metadata (JSON data). ``Direction(*data)`` builds the class from it."""

    vectors: Tensor
    layers: list[int]
    metadata: dict[str, Any]

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])


class ProvenanceWarning(UserWarning):
    """A direction file was computed on a different model than the one it is used with."""


class FileMissingError(FileFormatError, FileNotFoundError):
    """A direction file does not exist (catch it as FileFormatError or FileNotFoundError)."""


# --------------------------------------------------------------------------- helpers


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _emlens_version() -> str:
    return __version__


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise FileMissingError(f"{what} {str(p)!r} does not exist; check the path (relative "
                               f"paths are taken from {os.getcwd()!r}).")
    if not p.is_file():
        raise FileFormatError(f"{what} {str(p)!r} is not a file.")
    return p


def _first_sentence(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text.split(". ")[0].rstrip(".")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _jsonable(value: Any, where: str) -> Any:
    """A JSON-ready copy of metadata: tuples/sets to lists, paths to str, scalars unboxed."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalars
        if value is None or isinstance(value, (bool, str)):
            return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise InputError(f"metadata {where} is {f}, which JSON cannot hold; store a finite "
                             f"number or None")
        return f
    if isinstance(value, Tensor) and value.numel() == 1:
        return _jsonable(value.item(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"metadata {where} has a non-string key {k!r}; JSON keys are "
                                 f"strings")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v, f"{where} item") for v in value)
    raise InputError(f"metadata {where} has type {type(value).__name__}, which a direction "
                     f"file cannot hold; metadata must be JSON data (dicts, lists, str, numbers, "
                     f"bools, None). Store tensors as Directions of their own.")


def _atomic_via_temp(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path`` (for writers that open paths)."""
    return atomic_write_with(path, write)


def _check_vectors(vectors: Tensor, layers: list[int], d_model: int | None, where: str) -> None:
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise FileFormatError(f"{where}: tensor {TENSOR_NAME!r} has shape "
                              f"{tuple(vectors.shape)}, expected [n_layers, d_model]")
    if not vectors.is_floating_point():
        raise FileFormatError(f"{where}: tensor {TENSOR_NAME!r} has dtype {vectors.dtype}, "
                              f"expected float32")
    if len(layers) != vectors.shape[0]:
        raise FileFormatError(f"{where}: the header lists {len(layers)} layers but the tensor "
                              f"has {vectors.shape[0]} rows; the file is inconsistent")
    if d_model is not None and d_model != vectors.shape[1]:
        raise FileFormatError(f"{where}: the header says d_model={d_model} but the tensor has "
                              f"{vectors.shape[1]} columns; the file is inconsistent")
    finite = torch.isfinite(vectors.float())
    if not finite.all():
        rows = sorted({layers[i] for i in (~finite).any(-1).nonzero().flatten().tolist()})
        raise FileFormatError(f"{where}: the vectors of layer(s) {rows} hold NaN or inf; the "
                              f"file is corrupt or was written from a broken computation")


def _check_layers(layers: Any, n_rows: int | None, where: str) -> list[int]:
    if not isinstance(layers, list):
        raise FileFormatError(f"{where}: 'layers' must be a list of non-negative integers, got "
                              f"{layers!r}")
    if len(set(map(repr, layers))) != len(layers):
        raise FileFormatError(f"{where}: 'layers' {layers} repeats a layer")
    try:
        return list(block_layers(layers, len(layers) if n_rows is None else n_rows))
    except InputError as e:
        raise FileFormatError(f"{where}: 'layers' must be a list of non-negative integers, one "
                              f"per row, no repeats: {e}") from None


def _build(vectors: Tensor, layers: list[int], metadata: dict[str, Any], where: str
           ) -> DirectionData:
    layer = metadata.get("layer")
    if layer is not None and layer not in layers:
        raise FileFormatError(f"{where}: metadata names layer {layer!r} for steering but the "
                              f"file has vectors for layers {list(layers)} only")
    return DirectionData(vectors.detach().to("cpu", torch.float32).contiguous(), list(layers),
                         metadata)


def _check_writable(direction: Any, what: str) -> None:
    if not all(hasattr(direction, a) for a in ("vectors", "layers", "metadata")):
        raise InputError(f"{what} needs a Direction (vectors, layers, metadata), got "
                         f"{type(direction).__name__}")


# --------------------------------------------------------------------------- emlens safetensors


def _header(direction: Any) -> dict[str, Any]:
    metadata = {k: v for k, v in direction.metadata.items() if k != "file"}
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "layers": list(direction.layers),
        "d_model": int(direction.vectors.shape[1]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "emlens_version": _emlens_version(),
        "transformer_lens_version": _version("transformer-lens"),
        "torch_version": torch.__version__.split("+")[0],
        "metadata": _jsonable(metadata, "metadata"),
    }


def save_direction(direction: Any, path: str | os.PathLike) -> Path:
    """Write ``direction`` to an emlens safetensors file, atomically.

    Args:
        direction: the Direction (or :class:`DirectionData`) to write.
        path: destination; parent folders are created.

    Returns:
        The path written.

    Example:
        >>> save_direction(d, "em.safetensors")                   # doctest: +SKIP
    """
    from safetensors.torch import save

    _check_writable(direction, "save_direction")
    header = _header(direction)
    text = json.dumps(header, allow_nan=False, ensure_ascii=False, sort_keys=True)
    data = save({TENSOR_NAME: direction.vectors.contiguous()}, metadata={METADATA_KEY: text})
    return atomic_write_bytes(Path(os.fspath(path)).expanduser(), data)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of an emlens direction file, without reading the vectors.

    Returns:
        The parsed document (``format``, ``schema_version``, ``layers``, ``d_model``,
        ``created``, versions and ``metadata``).

    Example:
        >>> read_header("em.safetensors")["metadata"]["model"]["base"]["id"]  # doctest: +SKIP
    """
    p = _existing_file(path, "direction file")
    header, _ = _read_safetensors(p, tensors=False)
    return header


def _read_safetensors(p: Path, tensors: bool = True) -> tuple[dict[str, Any], Tensor | None]:
    from safetensors import safe_open

    where = f"direction file {str(p)!r}"
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            vectors = f.get_tensor(TENSOR_NAME) if tensors and TENSOR_NAME in keys else None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise FileFormatError(f"{where} is not a readable safetensors file ({e}); it may be "
                              f"truncated or corrupt: write or download it again.") from None
    if METADATA_KEY not in meta:
        raise FileFormatError(f"{where} is a safetensors file but not an emlens direction file: "
                              f"its metadata has no {METADATA_KEY!r} entry (it has "
                              f"{sorted(meta)}). For a bare tensor, read it with "
                              f"safetensors.torch.load_file and wrap it in Direction(...).")
    try:
        header = json.loads(meta[METADATA_KEY])
    except ValueError as e:
        raise FileFormatError(f"{where}: the {METADATA_KEY!r} metadata is not valid JSON ({e}); "
                              f"the file is corrupt.") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{where}: the {METADATA_KEY!r} metadata is not a JSON object")
    version = header.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
        raise FileFormatError(
            f"{where} has schema version {version!r}; this emlens ({_emlens_version()}) reads "
            f"schema version{'s' if len(READABLE_SCHEMA_VERSIONS) > 1 else ''} "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}. "
            + ("Upgrade emlens to read it." if isinstance(version, int) and
               version > max(READABLE_SCHEMA_VERSIONS) else "The file is not one emlens wrote."))
    if tensors and TENSOR_NAME not in keys:
        raise FileFormatError(f"{where} has no tensor {TENSOR_NAME!r} (it has {keys}); the file "
                              f"is not a complete emlens direction file.")
    return header, vectors


def load_direction(path: str | os.PathLike, model: Any = None) -> DirectionData:
    """Read and validate an emlens direction file; optionally check it against a model.

    Args:
        path: a file written by :func:`save_direction` / ``Direction.save``.
        model: a TransformerLens model; checks ``d_model`` and the layer range
            (:class:`InputError`) and warns (:class:`ProvenanceWarning`) when the file was
            computed on a different model than ``model.emlens_provenance`` describes.

    Returns:
        The file's :class:`DirectionData`. ``metadata`` is the stored metadata plus
        ``metadata["file"]``:
        ``path``, ``schema_version``, ``created``, ``emlens_version``,
        ``transformer_lens_version``, ``torch_version`` (not written back by ``save``).

    Example:
        >>> d = load_direction("em.safetensors", model=model)     # doctest: +SKIP
    """
    p = _existing_file(path, "direction file")
    where = f"direction file {str(p)!r}"
    header, vectors = _read_safetensors(p)
    assert vectors is not None
    layers = _check_layers(header.get("layers"), None, where)
    d_model = header.get("d_model")
    if d_model is not None and (not isinstance(d_model, int) or isinstance(d_model, bool)):
        raise FileFormatError(f"{where}: 'd_model' must be an integer, got {d_model!r}")
    _check_vectors(vectors, layers, d_model, where)
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise FileFormatError(f"{where}: 'metadata' must be a JSON object, got "
                              f"{type(metadata).__name__}")
    metadata = dict(metadata)
    metadata["file"] = {"path": str(p), "schema_version": header["schema_version"],
                        **{k: header.get(k) for k in ("created", "emlens_version",
                                                      "transformer_lens_version",
                                                      "torch_version")}}
    direction = _build(vectors, layers, metadata, where)
    if model is not None:
        check_fits_model(direction, model, where)
    return direction


# --------------------------------------------------------------------------- model checks


def check_fits_model(direction: Any, model: Any, where: str = "the direction") -> None:
    """Raise :class:`InputError` if ``direction`` does not fit ``model``; warn on other provenance.

    Args:
        direction: the Direction or :class:`DirectionData` to check.
        model: a TransformerLens model (``cfg.n_layers``, ``cfg.d_model``; provenance is
            compared when it has ``emlens_provenance``).
        where: how to name the direction in messages.

    Example:
        >>> check_fits_model(d, model)                           # doctest: +SKIP
    """
    from .models import model_dims

    n_layers, d_model = model_dims(model)
    if int(direction.vectors.shape[1]) != d_model:
        raise InputError(f"{where} has d_model={int(direction.vectors.shape[1])} but the model has "
                         f"d_model={d_model}; it was computed on a different model")
    out = [l for l in direction.layers if l >= n_layers]
    if out:
        raise InputError(f"{where} has vectors for layer(s) {out} but the model has "
                         f"{n_layers} layers (0..{n_layers - 1}); it was computed on a "
                         f"different model")
    mine = direction.metadata.get("model")
    theirs = getattr(model, "emlens_provenance", None)
    if isinstance(mine, dict) and isinstance(theirs, dict):
        problems = provenance_differences(mine, theirs)
        if problems:
            warnings.warn(f"{where} was computed on a different model than this one: "
                          + "; ".join(problems) + ". The direction may not mean the same thing "
                          "here.", ProvenanceWarning, stacklevel=4)


def _describe(src: dict[str, Any]) -> str:
    rev = src.get("revision")
    return repr(src.get("id")) + (f"@{rev[:12]}" if isinstance(rev, str) and rev else "")


def _source_difference(a: Any, b: Any, what: str) -> str | None:
    """Why two source records (``{"id", "revision", "files"}``) differ, or None if they agree."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    fa = a.get("files") if isinstance(a.get("files"), dict) else {}
    fb = b.get("files") if isinstance(b.get("files"), dict) else {}
    common = sorted(set(fa) & set(fb))
    if common:  # hashes decide: the same files under another name are the same model
        changed = [n for n in common if fa[n] != fb[n]]
        if changed:
            return (f"{what} files {changed} have other sha256 hashes (file: {_describe(a)}, "
                    f"model: {_describe(b)})")
        return None
    if a.get("id") != b.get("id"):
        return f"{what} is {_describe(a)} in the file but {_describe(b)} here"
    ra, rb = a.get("revision"), b.get("revision")
    if ra and rb and ra != rb:
        return f"{what} {a.get('id')!r} is at revision {ra} in the file but {rb} here"
    return None


def provenance_differences(file_prov: dict[str, Any], model_prov: dict[str, Any]) -> list[str]:
    """How the model a direction was computed on differs from a model's provenance.

    Compares the base model (by sha256 hashes of its files when both records have them,
    else by id and revision) and the adapters (count, then each pair in order).

    Returns:
        One sentence per difference; empty when they agree.

    Example:
        >>> provenance_differences(d.metadata["model"], model.emlens_provenance)  # doctest: +SKIP
        []
    """
    out = []
    diff = _source_difference(file_prov.get("base"), model_prov.get("base"), "the base model")
    if diff:
        out.append(diff)
    ad_a = file_prov.get("adapters") or []
    ad_b = model_prov.get("adapters") or []
    if isinstance(ad_a, list) and isinstance(ad_b, list):
        if len(ad_a) != len(ad_b):
            names = lambda ads: [a.get("id") for a in ads if isinstance(a, dict)]  # noqa: E731
            out.append(f"the file's model has {len(ad_a)} adapter(s) {names(ad_a)} but this one "
                       f"has {len(ad_b)} {names(ad_b)}")
        else:
            for i, (x, y) in enumerate(zip(ad_a, ad_b)):
                diff = _source_difference(x, y, f"adapter {i}")
                if diff:
                    out.append(diff)
    return out


# --------------------------------------------------------------------------- GGUF


def _gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("GGUF control vectors need the 'gguf' package: pip install gguf "
                          "(or pip install 'emlens[gguf]')") from None
    return gguf


_HINTS = {"GPT2LMHeadModel": "gpt2", "GPTNeoXForCausalLM": "gptneox",
          "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "LlamaForCausalLM": "llama",
          "MistralForCausalLM": "llama", "Gemma2ForCausalLM": "gemma2",
          "Gemma3ForCausalLM": "gemma3", "Gemma3ForConditionalGeneration": "gemma3",
          "GemmaForCausalLM": "gemma", "Phi3ForCausalLM": "phi3"}


def _model_hint(direction: Any) -> str:
    prov = direction.metadata.get("model")
    arch = prov.get("architecture") if isinstance(prov, dict) else None
    if isinstance(arch, str) and arch:
        if arch in _HINTS:
            return _HINTS[arch]
        for suffix in ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"):
            if arch.endswith(suffix):
                return arch[: -len(suffix)].lower()
        return arch.lower()
    return "unknown"


def to_gguf(direction: Any, path: str | os.PathLike, model_hint: str | None = None) -> Path:
    """Write a llama.cpp / repeng control-vector GGUF file, atomically.

    Block ``l``'s vector becomes the float32 tensor ``direction.{l+1}`` (as stored, not
    normalised), the name llama.cpp's cvector-generator gives a vector measured at block
    ``l``; llama.cpp adds ``direction.N`` after its block ``N``, see ``directions/README.md``.
    ``controlvector.layer_count`` is the number of tensors written. The
    emlens metadata rides along as the JSON string ``emlens.direction`` (llama.cpp and
    repeng ignore it; :func:`from_gguf` restores it).

    Args:
        direction: the Direction to export.
        path: output file, conventionally ``*.gguf``.
        model_hint: llama.cpp architecture name (``"qwen2"``, ``"llama"``, ``"gemma2"``...);
            default: derived from ``metadata["model"]["architecture"]``, else "unknown".

    Returns:
        The path written.

    Example:
        >>> to_gguf(d, "em.gguf", model_hint="qwen2")               # doctest: +SKIP
    """
    gguf = _gguf()
    _check_writable(direction, "to_gguf")
    hint = model_hint if model_hint is not None else _model_hint(direction)
    if not isinstance(hint, str):
        raise InputError(f"model_hint must be a string, got {hint!r}")
    header = _header(direction)
    doc = json.dumps(header, allow_nan=False, ensure_ascii=False, sort_keys=True)
    order = sorted(range(len(direction.layers)), key=lambda i: direction.layers[i])

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), GGUF_ARCH)
        writer.add_string(f"{GGUF_ARCH}.model_hint", hint)
        writer.add_int32(f"{GGUF_ARCH}.layer_count", len(direction.layers))
        writer.add_string(GGUF_EMLENS_KEY, doc)
        for i in order:
            vec = direction.vectors[i].numpy().astype("<f4", copy=True)
            writer.add_tensor(f"direction.{direction.layers[i] + 1}", vec)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return _atomic_via_temp(Path(os.fspath(path)).expanduser(), write)


def _gguf_field(reader: Any, name: str) -> Any:
    field = reader.fields.get(name)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - a malformed field reads as absent
        return None


def from_gguf(path: str | os.PathLike) -> DirectionData:
    """Read a llama.cpp / repeng control-vector GGUF file.

    Tensor ``direction.N`` becomes the vector of block ``N-1`` (its resid_post). A file
    written by :func:`to_gguf` gets its emlens metadata back; any other file gets
    ``{"method": "gguf", "hook": "resid_post", "model_hint": ..., "source": {...}}``.

    Args:
        path: a ``.gguf`` file with ``general.architecture = "controlvector"``.

    Returns:
        :class:`DirectionData` over the layers the file has tensors for.

    Example:
        >>> d = from_gguf("happy.gguf")                              # doctest: +SKIP
    """
    gguf = _gguf()
    p = _existing_file(path, "GGUF control vector")
    where = f"GGUF file {str(p)!r}"
    try:
        reader = gguf.GGUFReader(str(p), "r")
    except Exception as e:  # noqa: BLE001 - the reader raises many error types on bad files
        raise FileFormatError(f"{where} is not a readable GGUF file ({type(e).__name__}: "
                              f"{_first_sentence(e)}); it may be truncated or corrupt.") from None
    arch = _gguf_field(reader, "general.architecture")
    if arch != GGUF_ARCH:
        raise FileFormatError(f"{where} has general.architecture {arch!r}, not "
                              f"{GGUF_ARCH!r}: it is not a control vector (a model file?)")
    rows: dict[int, Tensor] = {}
    tensors = list(reader.tensors)
    for t in tensors:
        if not t.name.startswith("direction."):
            continue
        try:
            n = int(t.name.split(".", 1)[1])
        except ValueError:
            raise FileFormatError(f"{where}: tensor name {t.name!r} is not direction.<int>") \
                from None
        if n < 1:
            raise FileFormatError(f"{where}: tensor {t.name!r} is invalid: llama.cpp numbers "
                                  f"directions from 1 (direction.N is block N-1's output)")
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            raise FileFormatError(f"{where}: tensor {t.name!r} has type "
                                  f"{getattr(t.tensor_type, 'name', t.tensor_type)}; control "
                                  f"vectors are F32")
        data = torch.from_numpy(t.data.astype("float32", copy=True)).reshape(-1)
        if n - 1 in rows:  # llama.cpp adds several directions for one layer together
            rows[n - 1] = rows[n - 1] + data
        else:
            rows[n - 1] = data
    if not rows:
        raise FileFormatError(f"{where} has no direction.N tensors; nothing to import")
    widths = {int(v.numel()) for v in rows.values()}
    if len(widths) != 1:
        raise FileFormatError(f"{where}: the direction tensors have different sizes {widths}")
    layers = sorted(rows)
    vectors = torch.stack([rows[l] for l in layers])
    _check_vectors(vectors, layers, None, where)
    hint = _gguf_field(reader, f"{GGUF_ARCH}.model_hint")
    metadata: dict[str, Any] | None = None
    doc = _gguf_field(reader, GGUF_EMLENS_KEY)
    if isinstance(doc, str):
        try:
            header = json.loads(doc)
            if header.get("layers") == layers and isinstance(header.get("metadata"), dict):
                metadata = dict(header["metadata"])
        except (ValueError, AttributeError):
            metadata = None
    if metadata is None:
        metadata = {"method": "gguf", "hook": "resid_post"}
    if hint is not None:
        metadata["model_hint"] = hint
    metadata["source"] = {"format": "gguf", "path": str(p), "sha256": _sha256(p)}
    return _build(vectors, layers, metadata, where)


# --------------------------------------------------------------------------- the papers' .pt


def to_pt(direction: Any, path: str | os.PathLike, layer: int | None = None,
          alpha: float | None = None) -> Path:
    """Write one layer as the papers' steering-vector dict, atomically.

    The file holds ``{"steering_vector": float32 [d_model], "layer_idx": int,
    "d_model": int, "alpha": float}`` (tensors and plain Python values only, so
    ``torch.load(weights_only=True)`` reads it).

    Args:
        direction: the Direction to export.
        layer: the layer to write; default ``metadata["layer"]``, else the only layer.
        alpha: the scale to store; default ``metadata["alpha"]``, else 1.0.

    Returns:
        The path written.

    Example:
        >>> to_pt(d, "steering_vector.pt", layer=12, alpha=4.0)       # doctest: +SKIP
    """
    _check_writable(direction, "to_pt")
    if layer is None:
        layer = direction.metadata.get("layer")
    if layer is None:
        if len(direction.layers) != 1:
            raise InputError(f"the .pt format holds one layer but this direction has layers "
                             f"{list(direction.layers)}; pass layer=... (or use .single_layer(layer))")
        layer = direction.layers[0]
    if alpha is None:
        alpha = direction.metadata.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or \
            not math.isfinite(float(alpha)):
        raise InputError(f"alpha must be a finite number, got {alpha!r}")
    layers = list(direction.layers)
    if int(layer) not in layers:
        raise InputError(f"this direction has no vector for layer {layer}; it has layers "
                         f"{layers}")
    vec: Float[Tensor, "d_model"] = direction.vectors[layers.index(int(layer))].clone()
    obj = {"steering_vector": vec, "layer_idx": int(layer), "d_model": int(vec.shape[0]),
           "alpha": float(alpha)}
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(Path(os.fspath(path)).expanduser(), buf.getvalue())


def from_pt(path: str | os.PathLike) -> DirectionData:
    """Read the papers' learned steering vector (``.pt``) with ``torch.load(weights_only=True)``.

    Args:
        path: a torch file holding ``{"steering_vector": [d_model], "layer_idx": int,
            "d_model": int, "alpha": float}``.

    Returns:
        One-layer :class:`DirectionData` (layer ``layer_idx``, vector as stored) with metadata
        ``layer``, ``alpha``, ``hook="resid_post"``, ``method="learned_steering_vector"``
        and ``source`` (path and sha256).

    Example:
        >>> d = from_pt("steering_vector.pt")                        # doctest: +SKIP
        >>> with emlens.steer(model, d, d.metadata["alpha"]): ...    # doctest: +SKIP
    """
    p = _existing_file(path, "steering-vector file")
    where = f"steering-vector file {str(p)!r}"
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(e))
        what = f"the Python object {found.group(1)}" if found else "Python objects"
        raise FileFormatError(f"{where} holds {what} besides tensors and plain values; emlens "
                              f"reads torch files with weights_only=True and refuses to unpickle "
                              f"code. Where you trust its source, convert it to a dict of "
                              f"tensors and numbers.") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, bad magic, ...
        raise FileFormatError(f"{where} is not a readable torch file ({type(e).__name__}: "
                              f"{_first_sentence(e)}); it may be truncated or corrupt.") from None
    if not isinstance(obj, dict):
        raise FileFormatError(f"{where} holds a {type(obj).__name__}, expected a dict with keys "
                              f"{list(_PT_KEYS)}")
    missing = [k for k in ("steering_vector", "layer_idx") if k not in obj]
    if missing:
        raise FileFormatError(f"{where} lacks the key(s) {missing}; a steering-vector file "
                              f"holds {list(_PT_KEYS)} (it has {sorted(map(str, obj))})")
    vec = obj["steering_vector"]
    if not isinstance(vec, Tensor) or not vec.is_floating_point():
        raise FileFormatError(f"{where}: 'steering_vector' must be a float tensor, got "
                              f"{type(vec).__name__}")
    vec = vec.detach().reshape(-1) if vec.ndim == 2 and 1 in vec.shape else vec.detach()
    if vec.ndim != 1 or vec.numel() == 0:
        raise FileFormatError(f"{where}: 'steering_vector' has shape {tuple(vec.shape)}, "
                              f"expected [d_model]")
    layer = obj["layer_idx"]
    if isinstance(layer, Tensor) and layer.numel() == 1 and not layer.is_floating_point():
        layer = layer.item()
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or layer < 0:
        raise FileFormatError(f"{where}: 'layer_idx' must be a non-negative integer, got "
                              f"{layer!r}")
    d_model = obj.get("d_model")
    if isinstance(d_model, Tensor) and d_model.numel() == 1:
        d_model = d_model.item()
    if d_model is not None and (not isinstance(d_model, numbers.Integral) or
                                int(d_model) != vec.numel()):
        raise FileFormatError(f"{where}: 'd_model' is {d_model!r} but 'steering_vector' has "
                              f"{vec.numel()} entries; the file is inconsistent")
    alpha = obj.get("alpha", 1.0)
    if isinstance(alpha, Tensor) and alpha.numel() == 1:
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or \
            not math.isfinite(float(alpha)):
        raise FileFormatError(f"{where}: 'alpha' must be a finite number, got {alpha!r}")
    _check_vectors(vec[None].float(), [int(layer)], None, where)
    metadata = {"method": "learned_steering_vector", "hook": "resid_post", "layer": int(layer),
                "alpha": float(alpha),
                "source": {"format": "pt", "path": str(p), "sha256": _sha256(p)}}
    return _build(vec[None], [int(layer)], metadata, where)
