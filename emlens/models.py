"""Load base models and emergent-misalignment finetunes into TransformerLens.

:func:`load_model` takes an HF hub id, a local HF directory, a transformers model
object or a llama.cpp GGUF file (converted once by :func:`gguf_to_hf`), applies PEFT
LoRA adapters (merged or live), and returns a TransformerLens ``TransformerBridge`` with
the raw HF numerics: no LayerNorm folding, no weight centering, so that a residual-stream
vector means the same thing here as in HF, vLLM and the files other teams publish. Where
the weights came from is recorded on the model as ``model.emlens_provenance``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ._quiet import quiet_third_party
from ._version import __version__
from .errors import (
    AdapterBaseWarning,
    AdapterError,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelError,
)

__all__ = ["load_model", "gguf_to_hf", "hook_name", "model_dims", "HOOK_SITES"]

log = logging.getLogger(__name__)

#: Residual-stream hook sites, by short name, shared by TL 4.x bridges and TL 3.x HookedTransformers.
HOOK_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")

# What a hub snapshot needs: configs, tokenizer files and safetensors weights. Other
# weight formats (original/*.pth, *.gguf, ...) are never downloaded.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
_WEIGHT_GLOBS = ("*.safetensors", "*.bin")
_TESTED_ARCHITECTURES = ("Qwen2ForCausalLM", "LlamaForCausalLM", "Gemma2ForCausalLM",
                         "Gemma3ForCausalLM", "GPT2LMHeadModel")


def hook_name(layer: int, site: str = "resid_post") -> str:
    """The TransformerLens hook name of a residual-stream site of one layer.

    Example:
        >>> hook_name(3)
        'blocks.3.hook_resid_post'
    """
    from .vectors import as_index

    if not isinstance(site, str) or site not in HOOK_SITES:
        raise InputError(f"unknown hook site {site!r}; use one of {HOOK_SITES}")
    layer = as_index(layer, "layer")
    if layer < 0:
        raise InputError(f"layer {layer} is negative; hook names use absolute block numbers "
                         f"(emlens.vectors.model_layers turns -1 into the last block)")
    return f"blocks.{layer}.hook_{site}"


def model_dims(model: Any) -> tuple[int, int]:
    """``(n_layers, d_model)`` of a TransformerBridge or a HookedTransformer."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "n_layers") or not hasattr(cfg, "d_model"):
        raise InputError(
            f"expected a TransformerLens model (TransformerBridge or HookedTransformer), got "
            f"{type(model).__name__}; load one with emlens.load_model(...)"
        )
    return int(cfg.n_layers), int(cfg.d_model)


def model_device(model: Any) -> torch.device:
    """The device of a model's parameters (``model.cfg.device``, else the CPU, if it has none)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device(getattr(getattr(model, "cfg", None), "device", None) or "cpu")


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """A local directory standing for what the user named (a path or a hub id)."""

    name: str
    path: Path
    hub_id: str | None = None
    revision: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.hub_id or str(self.path)}
        if self.hub_id:
            out["revision"] = self.revision
        out["files"] = dict(self.files)
        return out


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _looks_like_path(name: str) -> bool:
    if name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name:
        return True
    if name.count("/") > 1 or name.endswith("/"):
        return True
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except Exception:
        return True
    return False


def _has_weights(path: Path) -> bool:
    return any(any(path.glob(g)) for g in _WEIGHT_GLOBS)


def _download(repo_id: str, revision: str | None, what: str, trust_remote_code: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = _HUB_PATTERNS + (["*.py"] if trust_remote_code else [])
    offline = _offline()
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                      local_files_only=offline))
        if what == "adapter" and not _has_weights(path):
            # An older repo with pickle weights only: fetch those (read with weights_only).
            path = Path(snapshot_download(repo_id, revision=revision,
                                          allow_patterns=patterns + ["*.bin"],
                                          local_files_only=offline))
    except LocalEntryNotFoundError as e:
        rev = f" at revision {revision!r}" if revision else ""
        if offline:
            raise ModelNotFoundError(
                f"{what} {repo_id!r}{rev} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 "
                f"forbids downloading it. Download it where the hub is reachable "
                f"(`hf download {repo_id}`), point to a local directory instead, or unset "
                f"HF_HUB_OFFLINE."
            ) from None
        raise ModelNotFoundError(
            f"could not reach the Hugging Face hub to fetch {what} {repo_id!r}{rev}, and it is "
            f"not in the local cache ({e.__class__.__name__}). Check the network, or pass a "
            f"local directory."
        ) from None
    except GatedRepoError:
        raise ModelNotFoundError(
            f"{what} {repo_id!r} is gated on the hub: accept its licence on its hub page and "
            f"log in (`hf auth login`) or set HF_TOKEN."
        ) from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(
            f"{what} {repo_id!r} has no revision {revision!r}; pass an existing branch, tag or "
            f"commit hash."
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"no hub repository {repo_id!r} (or it is private: log in with `hf auth login`). "
            f"If you meant a local directory, it does not exist: check the path."
        ) from None
    except HFValidationError as e:
        raise ModelNotFoundError(f"{what} {repo_id!r} is neither a directory nor a hub id: {e}") \
            from None
    return path


def _resolve(name: str | os.PathLike, revision: str | None, what: str,
             trust_remote_code: bool) -> _Source:
    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{what} path {text!r} is a file; pass the directory that holds config.json "
                f"(or adapter_config.json for an adapter), or a model's *.gguf file."
            )
        return _Source(text, path.resolve())
    if _looks_like_path(text):
        raise ModelNotFoundError(
            f"{what} directory {text!r} does not exist; check the path (relative paths are "
            f"taken from {os.getcwd()!r})."
        )
    local = _download(text, revision, what, trust_remote_code)
    commit = local.name if local.parent.name == "snapshots" else revision
    return _Source(text, local, hub_id=text, revision=commit)


def _adapter_base(adapter: _Source, base_name: str) -> str | Path:
    """Where a local adapter's relative ``base_model_name_or_path`` points: the folder of
    that name beside the adapter when one holds a model (adapters shipped next to their base,
    as the pocket organism's ``em/`` beside ``chat/``), else the name as written (a hub id,
    or a path from the working directory)."""
    if adapter.hub_id is None and not Path(base_name).expanduser().is_absolute():
        sibling = adapter.path.parent / base_name
        if (sibling / "config.json").is_file():
            return sibling
    return base_name


# --------------------------------------------------------------------------- hashing


def _cache_root() -> Path:
    """emlens' own cache folder: ``$EMLENS_CACHE``, else ``$XDG_CACHE_HOME/emlens``, else
    ``~/.cache/emlens``. It holds the sha256 memo and the models converted from GGUF files."""
    return Path(os.environ.get("EMLENS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "emlens"))


def _hash_memo_path() -> Path:
    return _cache_root() / "sha256.json"


def _sha256(path: Path, memo: dict[str, str]) -> str:
    real = path.resolve()
    # A file in the HF cache is stored under its own sha256 (for LFS files): free.
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        return real.name
    st = real.stat()
    key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    memo[key] = h.hexdigest()
    return memo[key]


def _digests(paths: Sequence[Path]) -> list[str]:
    """sha256 hex digests of local files, memoised on disk by (path, size, mtime), so a
    30 GB checkpoint is hashed once, not at every load."""
    memo_path = _hash_memo_path()
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    size = len(memo)
    out = [_sha256(p, memo) for p in paths]
    if len(memo) != size:
        from .io import atomic_write_text

        try:
            atomic_write_text(memo_path, json.dumps(memo))
        except OSError as e:  # a read-only home must not stop a load
            log.debug("could not write the hash memo %s: %s", memo_path, e)
    return out


def _digest_files(source: _Source, names: Sequence[str]) -> None:
    """Fill ``source.files`` with sha256 digests of the weight and config files."""
    files = sorted({p for g in names for p in source.path.glob(g) if p.is_file()})
    for p, digest in zip(files, _digests(files)):
        source.files[p.name] = "sha256:" + digest


# --------------------------------------------------------------------------- checks


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ModelLoadError(f"{what} {str(path)!r} is not valid JSON ({e}); the download may "
                             f"be incomplete: delete it and fetch it again.") from None


def _supported_architectures() -> set[str]:
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES
    from transformer_lens.utilities.architectures import MULTIMODAL_ARCHITECTURES

    return {a for a in SUPPORTED_ARCHITECTURES
            if a.endswith(("ForCausalLM", "LMHeadModel")) or a in MULTIMODAL_ARCHITECTURES}


def _check_architecture(arch: str | None, where: str) -> str:
    if not arch:
        raise UnsupportedModelError(
            f"{where} names no architecture (config.json has no 'architectures'); add e.g. "
            f"\"architectures\": [\"Qwen2ForCausalLM\"] to it."
        )
    if arch not in _supported_architectures():
        raise UnsupportedModelError(
            f"architecture {arch!r} of {where} is not supported: emlens runs decoder language "
            f"models that TransformerLens' bridge supports (tested: "
            f"{', '.join(_TESTED_ARCHITECTURES)}). Use a supported model or ask TransformerLens "
            f"to add an adapter for it."
        )
    return arch


def _check_config(source: _Source, trust_remote_code: bool) -> dict[str, Any]:
    cfg_path = source.path / "config.json"
    if not cfg_path.is_file():
        raise ModelNotFoundError(
            f"{source.name!r} has no config.json, so it is not a model in HF format. Pass the "
            f"directory written by save_pretrained (config.json plus weights), or a hub id."
        )
    config = _read_json(cfg_path, "config")
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if config.get("auto_map") and model_type not in CONFIG_MAPPING and not trust_remote_code:
        raise UnsupportedModelError(
            f"{source.name!r} defines its architecture in its own Python code (config.json has "
            f"'auto_map' and model_type {model_type!r} is unknown to transformers). emlens does "
            f"not run that code unless you read it and pass trust_remote_code=True."
        )
    archs = config.get("architectures") or []
    _check_architecture(archs[0] if archs else None, repr(source.name))
    _check_weight_files(source)
    return config


#: Weight files emlens never reads: unpickling can run arbitrary code.
_PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
#: The largest safetensors header emlens believes (the format caps it at 100 MB).
_MAX_HEADER = 100_000_000


def _check_safetensors(path: Path) -> None:
    """Refuse a truncated or corrupt safetensors file from its header, before transformers
    reads it: the header's tensor offsets must lie inside the file."""
    size = path.stat().st_size
    what = f"weights file {str(path)!r}"
    fix = ("it is truncated or corrupt (an interrupted download or copy?): delete it and "
           "download or copy it again")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelLoadError(f"{what} has {size} bytes, too few for a safetensors "
                                     f"header; {fix}")
            n = int.from_bytes(head, "little")
            if n > size - 8 or n > _MAX_HEADER:
                raise ModelLoadError(f"{what} ({size} bytes) announces a header of {n} bytes, "
                                     f"more than the file holds; {fix}")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"{what} has an unreadable header (not safetensors JSON); {fix}") \
            from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{what} has a header that is not a JSON object; {fix}")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise ModelLoadError(f"{what}: tensor {key!r} has no valid data_offsets; {fix}") \
                from None
    if size < 8 + n + end:
        raise ModelLoadError(f"{what} has {size} bytes, but its header describes "
                             f"{8 + n + end}: {fix}")


def _check_weight_files(source: _Source) -> None:
    """The base model's weights must be safetensors files, whole; pickle-only checkpoints
    are refused without being read."""
    path = source.path
    shards = sorted(path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set((_read_json(index, "weights index").get("weight_map") or {})
                           .values()))
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ModelLoadError(
                f"{source.name!r}: its weights index names {len(missing)} shard(s) that are "
                f"missing ({', '.join(missing[:3])}); the download or copy was interrupted: "
                f"fetch the missing files again.")
        shards = [path / n for n in names]
    if not shards:
        pickles = sorted({p.name for g in _PICKLE_GLOBS for p in path.glob(g)})
        if pickles:
            raise ModelLoadError(
                f"{source.name!r} holds its weights only as pickle files "
                f"({', '.join(pickles[:3])}); emlens loads safetensors only, because reading "
                f"a pickle can run arbitrary code. Convert them once with a tool you trust, "
                f"in a sandbox if the source is not trusted (e.g. transformers: "
                f"AutoModelForCausalLM.from_pretrained(path).save_pretrained(out) writes "
                f"model.safetensors), or use a copy that ships safetensors.")
        if source.hub_id:
            raise ModelNotFoundError(
                f"hub repository {source.hub_id!r} has no *.safetensors weights; emlens never "
                f"downloads pickle (*.bin) weights, whose reading can run arbitrary code. Use "
                f"a repository that ships safetensors, or convert a local copy with a tool "
                f"you trust.")
        raise ModelNotFoundError(
            f"{source.name!r} has a config.json but no weights (*.safetensors); the "
            f"download or save may have been interrupted."
        )
    for shard in shards:
        _check_safetensors(shard)


_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+?)\.(?P<which>lora_A|lora_B|"
                       r"lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?(?:\.weight)?$")


def _adapter_state(path: Path) -> dict[str, torch.Tensor]:
    st = path / "adapter_model.safetensors"
    binf = path / "adapter_model.bin"
    try:
        if st.is_file():
            from safetensors.torch import load_file

            return load_file(st)
        if binf.is_file():
            return torch.load(binf, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any read failure means a broken file
        raise AdapterError(f"could not read the adapter weights in {str(path)!r} ({e}); the "
                           f"file may be truncated: fetch it again.") from None
    raise AdapterError(f"adapter {str(path)!r} has adapter_config.json but no "
                       f"adapter_model.safetensors or adapter_model.bin.")


def _linear_shape(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a Linear, GPT-2 Conv1D or LoRA-wrapped linear."""
    base = getattr(module, "base_layer", module)
    if isinstance(base, torch.nn.Linear):
        return base.in_features, base.out_features
    if type(base).__name__ == "Conv1D":
        w = base.weight
        return int(w.shape[0]), int(w.shape[1])
    if isinstance(base, torch.nn.Embedding):
        return base.num_embeddings, base.embedding_dim
    return None


def _check_adapter(hf_model: torch.nn.Module, source: _Source) -> dict[str, Any]:
    """Check an adapter against the model before PEFT touches it; return its config."""
    cfg_path = source.path / "adapter_config.json"
    if not cfg_path.is_file():
        hint = (" It has a config.json: it is a full model, pass it as `model`."
                if (source.path / "config.json").is_file() else "")
        raise AdapterError(f"{source.name!r} is not a PEFT adapter (no adapter_config.json)."
                           f"{hint}")
    config = _read_json(cfg_path, "adapter config")
    trained_for = config.get("base_model_name_or_path")
    state = _adapter_state(source.path)
    missing: list[str] = []
    mismatched: list[str] = []
    modules = dict(hf_model.named_modules())
    ranks: dict[str, int] = {}
    for key, tensor in state.items():
        m = _LORA_KEY.match(key)
        if not m:
            continue
        name, which = m.group("module"), m.group("which")
        # PEFT-injected models carry the adapter name in the path; compare on the base path.
        module = modules.get(name) or modules.get(name.replace(".base_layer", ""))
        if module is None:
            missing.append(name)
            continue
        shape = _linear_shape(module)
        if shape is None:
            mismatched.append(f"{name}: a {type(module).__name__}, not a linear layer")
            continue
        n_in, n_out = shape
        if which in ("lora_A", "lora_embedding_A"):
            ranks[name] = int(tensor.shape[0])
            want, got, side = n_in, int(tensor.shape[1]), "input"
        else:
            want, got, side = n_out, int(tensor.shape[0]), "output"
        if want != got:
            mismatched.append(f"{name} {which}: adapter {side} size {got}, model {want}")
    origin = f" (it was trained on {trained_for!r})" if trained_for else ""
    if missing:
        uniq = sorted(set(missing))
        some = ", ".join(uniq[:4]) + (f" and {len(uniq) - 4} more" if len(uniq) > 4 else "")
        example = next((n for n, mod in modules.items() if _linear_shape(mod) and n), "")
        raise AdapterError(
            f"adapter {source.name!r} targets modules the model lacks: {some}{origin}. The model "
            f"({type(hf_model).__name__}) names its modules like {example!r}; load the adapter "
            f"on the base model it was trained for."
        )
    if mismatched:
        some = "; ".join(mismatched[:4]) + (f"; and {len(mismatched) - 4} more"
                                           if len(mismatched) > 4 else "")
        raise AdapterError(
            f"adapter {source.name!r} does not fit the model's shapes: {some}{origin}. Load it on "
            f"the base model it was trained for."
        )
    if not ranks:
        raise AdapterError(f"adapter {source.name!r} holds no LoRA weights (no lora_A/lora_B "
                           f"tensors); emlens loads LoRA adapters.")
    return config


# --------------------------------------------------------------------------- adapter bases


def _cache_hub_id(path: Path) -> str | None:
    """``org/name`` of a directory inside an HF cache snapshot (``models--org--name/...``)."""
    for part in path.parts:
        if part.startswith("models--") and len(part) > len("models--"):
            return part[len("models--"):].replace("--", "/")
    return None


def _last_part(name: str) -> str:
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def _weight_digests(path: Path) -> dict[str, str]:
    src = _Source(str(path), path)
    _digest_files(src, ["*.safetensors"])
    return src.files


@dataclass
class _BaseIdentity:
    """What the model an adapter is applied to is known as: a hub id and/or a directory."""

    hub_id: str | None = None
    path: Path | None = None

    @classmethod
    def of(cls, source: _Source | None, object_name: str = "") -> _BaseIdentity:
        if source is not None:
            return cls(source.hub_id or _cache_hub_id(source.path), source.path.resolve())
        if object_name and Path(object_name).expanduser().is_dir():
            path = Path(object_name).expanduser().resolve()
            return cls(_cache_hub_id(path), path)
        if object_name and not _looks_like_path(object_name):
            return cls(object_name, None)
        return cls()

    def describe(self) -> str:
        return " / ".join(x for x in (self.hub_id, str(self.path) if self.path else None) if x) \
            or "an in-memory model with no name"


def _adapter_base_verdict(named: str, adapter: _Source, base: _BaseIdentity) -> tuple[str, str]:
    """How the base an adapter names compares with the model it is applied to.

    Returns ``(verdict, detail)``: ``"same"`` (the same directory, hub id, or a copy with the
    same weights), ``"name"`` (only the last name part agrees: a weak match, e.g. a local
    copy or a mirror), ``"unknown"`` (nothing to compare), ``"differs"`` (the names differ
    and the contents cannot be compared) or ``"other"`` (clearly another model: two hub ids
    that differ, or two local directories whose weights differ).
    """
    if base.hub_id is None and base.path is None:
        return "unknown", "the model has no name or path to compare with"
    p = Path(named).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:  # beside the adapter folder first (as load_model looks for it), then the cwd
        candidates = ([adapter.path.parent / p] if adapter.hub_id is None else []) + [Path.cwd() / p]
    local = next((c.resolve() for c in candidates if (c / "config.json").is_file()), None)
    named_hub = _cache_hub_id(local) if local is not None else (
        None if _looks_like_path(named) else named)
    if local is not None and base.path is not None and local == base.path:
        return "same", "the same directory"
    if named_hub and base.hub_id and named_hub.lower() == base.hub_id.lower():
        return "same", "the same hub id"
    if local is not None and base.path is not None:
        a, b = _weight_digests(local), _weight_digests(base.path)
        if a and a == b:
            return "same", f"{str(local)!r} holds the same weights"
        if a and b:
            return "other", f"{str(local)!r} holds other weights than {str(base.path)!r}"
    sha = _gguf_source_sha(base.path)
    if sha is not None and named.strip().lower() == f"gguf:{sha}":
        return "same", "it was converted from the GGUF file the adapter names (sha256)"
    names = {_last_part(x) for x in (base.hub_id, str(base.path) if base.path else None) if x}
    if _last_part(named) in names:
        return "name", "only the last part of the name agrees"
    if local is None and named_hub and "/" in named_hub and base.hub_id and "/" in base.hub_id:
        return "other", "they are different hub repositories"
    return "differs", "the names differ and the weights cannot be compared here"


def _gguf_source_sha(path: Path | None) -> str | None:
    """The sha256 of the GGUF file a folder was converted from (by :func:`gguf_to_hf`)."""
    meta = path / "emlens_gguf.json" if path is not None else None
    if meta is None or not meta.is_file():
        return None
    try:
        sha = json.loads(meta.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        return None
    return sha.lower() if isinstance(sha, str) else None


def _check_adapter_base(src: _Source, acfg: dict[str, Any], base: _BaseIdentity,
                        allow_other_base: bool) -> str:
    """Compare an adapter's ``base_model_name_or_path`` with the model; raise, warn or log."""
    named = acfg.get("base_model_name_or_path")
    if not isinstance(named, str) or not named.strip():
        log.info("adapter %s names no base model; it cannot be checked against the model",
                 src.name)
        return "unknown"
    verdict, detail = _adapter_base_verdict(named, src, base)
    msg = (f"adapter {src.name!r} was trained on {named!r}, but it is applied to "
           f"{base.describe()} ({detail}). Equal shapes do not make equal weights: a LoRA "
           f"delta learned on one base does something else on another")
    if verdict == "other" and not allow_other_base:
        raise AdapterError(f"{msg}. Load the base model it names, or pass "
                           f"allow_other_base=True to apply it anyway (for a deliberate "
                           f"transfer experiment).")
    if verdict in ("other", "differs"):
        if allow_other_base:
            log.info("%s (allowed by allow_other_base=True)", msg)
        else:
            warnings.warn(f"{msg}. If it is the same model under another name, ignore this; "
                          f"otherwise load the base it names. allow_other_base=True silences "
                          f"this warning.", AdapterBaseWarning, stacklevel=5)
    elif verdict in ("name", "unknown"):
        log.info("adapter %s names base %r; applied to %s: %s", src.name, named,
                 base.describe(), detail)
    return verdict


# --------------------------------------------------------------------------- GGUF


def _checkpoint_config(hf: torch.nn.Module) -> Any:
    """A copy of the model's config, fit for a plain float checkpoint of these weights.

    ``architectures`` names the model's class (a model built with ``from_config`` or loaded
    from a GGUF file has none, and loaders pick the class by it); a GGUF
    ``quantization_config`` is dropped, as the weights written are the dequantized floats
    (transformers would otherwise look for the GGUF file when loading the folder).
    """
    config = copy.deepcopy(hf.config)
    arch = type(hf).__name__
    if list(getattr(config, "architectures", None) or []) != [arch]:
        log.info("config.architectures was %r; writing [%r] (the model's class)",
                 getattr(config, "architectures", None), arch)
        config.architectures = [arch]
    quant = getattr(config, "quantization_config", None)
    if quant is not None:
        get = quant.get if isinstance(quant, dict) else lambda k, d=None: getattr(quant, k, d)
        method = get("quant_method")
        method = str(getattr(method, "value", method)).lower()
        if method == "gguf":
            # The flag is not reliable (transformers' older GGUF loader dequantizes every
            # tensor and leaves dequantize=False): look at the modules themselves.
            packed = [n for n, m in hf.named_modules() if type(m).__name__.startswith("Gguf")]
            packed += [n for n, t in hf.named_parameters() if not t.is_floating_point()]
            if packed:
                raise UnsupportedModelError(
                    f"this model was loaded from a GGUF file with its weights kept in packed "
                    f"GGUF blocks ({packed[0]}, ...), which a float checkpoint cannot hold; "
                    f"load it with quantization_config=GgufConfig(dequantize=True) first")
            del config.quantization_config
            log.info("dropped the GGUF quantization_config: the checkpoint holds the "
                     "dequantized float weights")
    return config



GGUF_INSTALL = 'pip install "emlens[gguf]"'


def _gguf_input(model: Any) -> Path | None:
    """The GGUF file ``model`` names: a ``*.gguf`` file, or a folder that holds exactly one
    and no ``config.json`` (nor ``adapter_config.json``); None for anything else."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        return None
    path = Path(os.fspath(model)).expanduser()
    if path.is_file():
        return path.resolve() if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or (path / "config.json").is_file() \
            or (path / "adapter_config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
        raise InputError(f"{os.fspath(model)!r} holds {len(found)} GGUF files ({names}); pass "
                         f"the one to load, e.g. load_model({str(found[0])!r})")
    return found[0].resolve() if found else None


def _require_gguf(file: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"reading the GGUF file {str(file)!r} needs the package gguf, "
                             f"which is not installed; install it with `{GGUF_INSTALL}`")


def _check_gguf_file(file: Path) -> None:
    """Refuse a file that is not a whole GGUF file, from its header and tensor table, before
    transformers dequantizes it: every tensor's data must lie inside the file."""
    import gguf

    fix = ("it is truncated or corrupt (an interrupted download or copy?): delete it and "
           "download or copy it again")
    try:
        reader = gguf.GGUFReader(str(file))
        size = file.stat().st_size
        for t in reader.tensors:
            if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
                raise ValueError(f"tensor {t.name} ends past the end of the file")
    except Exception as e:  # noqa: BLE001 - any failure to parse means a broken file
        raise ModelLoadError(f"the GGUF file {str(file)!r} could not be read "
                             f"({type(e).__name__}: {e}); {fix}") from None
    if not reader.tensors:
        raise ModelLoadError(f"the GGUF file {str(file)!r} holds no tensors, so no model; "
                             f"pass a model's GGUF file (a control vector is read with "
                             f"emlens.Direction.from_gguf)")


def _converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def gguf_to_hf(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert a model's GGUF file (llama.cpp) once into a plain HF folder; return the folder.

    transformers reads the file and dequantizes its weights to float32; they are saved
    (``config.json``, ``model.safetensors``, the tokenizer built from the file's metadata,
    ``emlens_gguf.json`` naming the source) into ``<cache_dir>/<sha256 of the file>/``,
    written under a temporary name and renamed, so an interrupted conversion leaves
    nothing behind. Later calls on the same file (the same bytes, wherever they lie) return
    that folder without converting. Needs the package gguf (``pip install "emlens[gguf]"``).
    :func:`load_model` calls this for a ``.gguf`` path.

    Args:
        path: a ``*.gguf`` file, or a folder holding exactly one (and no ``config.json``).
        cache_dir: where converted models are kept; default ``<emlens cache>/gguf``, the
            emlens cache being ``$EMLENS_CACHE``, else ``~/.cache/emlens``.

    Returns:
        The HF folder, which ``emlens.load_model`` and ``from_pretrained`` load.

    Raises:
        ModelLoadError: the package gguf is missing, or the file is truncated, corrupt or
            of an architecture transformers cannot read from GGUF.
        InputError: the folder holds several GGUF files, or none.

    Example:
        >>> folder = emlens.models.gguf_to_hf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InputError(f"path must be a GGUF file or a folder holding one, not {path!r}")
    if not Path(os.fspath(path)).expanduser().exists():
        raise ModelNotFoundError(f"GGUF file {os.fspath(path)!r} does not exist; check the path")
    file = _gguf_input(path)
    if file is None:
        raise InputError(f"{os.fspath(path)!r} is not a *.gguf file nor a folder holding one "
                         f"(a folder with config.json is an HF model: load it directly)")
    _require_gguf(file)
    digest = _digests([file])[0]
    root = Path(os.fspath(cache_dir)).expanduser() if cache_dir is not None \
        else _cache_root() / "gguf"
    folder = root / digest
    if _converted(folder):
        log.debug("GGUF file %s was converted before: %s", file, folder)
        return folder
    _check_gguf_file(file)
    log.info("converting %s to an HF folder (once; dequantizing to float32) ...", file)
    _convert_gguf(file, digest, folder)
    return folder


def _convert_gguf(file: Path, digest: str, folder: Path) -> None:
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        src = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name,
                                                   dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    except ImportError as e:
        raise ModelLoadError(f"transformers could not read the GGUF file {str(file)!r}: {e}; "
                             f"install what it needs with `{GGUF_INSTALL}`") from None
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds here
        raise ModelLoadError(f"transformers could not load the GGUF file {str(file)!r} "
                             f"({type(e).__name__}: {e}); the file may be corrupt, or of an "
                             f"architecture transformers cannot read from GGUF") from None
    # transformers refuses save_pretrained on a GGUF-loaded model: copy the dequantized
    # weights into a plain model of the same class, built from the config without its
    # quantization_config.
    config = _checkpoint_config(src)
    config.dtype = "float32"
    plain = type(src)(config).eval()
    missing, unexpected = plain.load_state_dict(src.state_dict(), strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(f"converting the GGUF file {str(file)!r}: the weights read do "
                             f"not fit {type(src).__name__} (missing {missing[:4]}, "
                             f"unexpected {unexpected[:4]})")
    del src
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "emlens_gguf.json").write_text(json.dumps({
            "gguf_file": str(file), "sha256": digest, "emlens_version": __version__,
            "transformers_version": _version("transformers"),
            "gguf_version": _version("gguf")}, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _converted(folder):  # not another process finishing first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s to %s", file, folder)


def _gguf_source(file: Path) -> tuple[_Source, dict[str, Any]]:
    """The converted folder of a GGUF file as the base source, and the GGUF part of its
    provenance record."""
    folder = gguf_to_hf(file)
    digest = _digests([file])[0]
    return _Source(str(file), folder), {"gguf": {"file": str(file), "sha256": digest},
                                        "converted": str(folder)}


# --------------------------------------------------------------------------- loading


def _resolve_dtype(dtype: Any, device: str, config: dict[str, Any] | None) -> torch.dtype:
    if dtype is None:
        if device.startswith("cuda") and config is not None:
            stored = config.get("dtype") or config.get("torch_dtype")
            if stored in ("bfloat16", "float16"):
                return getattr(torch, stored)
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        alias = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32",
                 "float": "float32"}
        value = getattr(torch, alias.get(name, name), None)
        if isinstance(value, torch.dtype) and value.is_floating_point:
            return value
    raise InputError(f"dtype {dtype!r} is not a floating-point torch dtype; use e.g. "
                     f"'float32', 'bfloat16' or torch.float16.")


def _check_load_flags(**flags: Any) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InputError(f"{name} must be True or False, not {value!r}")


def _resolve_device(device: Any) -> str:
    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "auto":
        return "auto"
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise InputError(f"device must be 'cpu', 'cuda', 'cuda:1', 'auto', ... not {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:1', 'mps' or "
                         f"'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asks for a CUDA GPU, and torch sees none here; "
                         f"use device='cpu' (or install a CUDA build of torch)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s), "
                         f"numbered from 0")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                  and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} asks for Apple's MPS, which is not available")
    return str(dev) if not isinstance(device, str) else device


def _tokenizer_kwargs(path: Path) -> dict[str, Any]:
    """``add_bos_token=True`` where the bridge would reload the tokenizer to get it.

    TransformerLens' ``configure_tokenizer`` reloads any tokenizer that has a BOS token
    but does not add it (``get_tokenizer_with_bos``: ``from_pretrained(path,
    add_bos_token=True, **init_kwargs)``); loading it that way at once gives the same
    tokenizer and saves the second load (~90 ms for SmolLM2's 3.5 MB tokenizer.json).
    Read from tokenizer_config.json; when it does not say, the tokenizer loads plainly
    and the bridge does what it always did.
    """
    try:
        cfg = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if cfg.get("bos_token") is not None and cfg.get("add_bos_token") is not True:
        return {"add_bos_token": True}
    return {}


def _load_tokenizer(tokenizer: Any, candidates: Sequence[Path], trust_remote_code: bool):
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise InputError(f"tokenizer must be a transformers tokenizer, a directory or a hub "
                             f"id, not {type(tokenizer).__name__}")
        return tokenizer
    if tokenizer is not None:
        name = os.fspath(tokenizer)
        candidates = [Path(name).expanduser()]
        if not candidates[0].exists():
            if not name or _looks_like_path(name):
                raise ModelNotFoundError(f"tokenizer directory {name!r} does not exist")
            try:  # a hub id of a tokenizer
                return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"could not load the tokenizer {name!r}: {e}") from None
    errors = []
    for path in candidates:
        if path is None or not any(path.glob("tokenizer*")):
            continue
        extra = _tokenizer_kwargs(path)
        if extra:
            try:
                tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                    **extra)
                if tok.bos_token is not None:
                    return tok
            except Exception as e:  # noqa: BLE001 - the plain load below reports what is wrong
                log.debug("tokenizer %s with add_bos_token=True failed (%s); loading it plainly",
                          path, e)
        try:
            return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{path}: {e}")
    detail = f" ({'; '.join(errors)})" if errors else ""
    raise ModelLoadError(
        f"found no tokenizer beside the model or its adapters{detail}; pass tokenizer= (a "
        f"tokenizer object, a directory or a hub id)."
    )


def _apply_adapters(hf_model, adapters: list[_Source], merge: bool):
    """Apply adapters in order. Returns (hf_model_for_the_bridge, peft_model_or_None)."""
    from peft import PeftModel

    if not adapters:
        return hf_model, None
    try:
        if merge:
            for src in adapters:
                peft_model = PeftModel.from_pretrained(hf_model, src.path, is_trainable=False)
                hf_model = peft_model.merge_and_unload()
            return hf_model, None
        names = [f"adapter_{i}" for i in range(len(adapters))]
        peft_model = PeftModel.from_pretrained(hf_model, adapters[0].path, adapter_name=names[0],
                                               is_trainable=False)
        for name, src in zip(names[1:], adapters[1:]):
            peft_model.load_adapter(src.path, adapter_name=name, is_trainable=False)
        if len(names) > 1:
            peft_model.base_model.set_adapter(names)
            for p in peft_model.parameters():
                p.requires_grad_(False)
        # The bridge needs HF attribute paths (model.embed_tokens, ...): hand it the
        # LoRA-injected HF model inside the PEFT wrapper.
        return peft_model.base_model.model, peft_model
    except (RuntimeError, ValueError, KeyError) as e:
        raise AdapterError(f"PEFT could not apply the adapter(s) "
                           f"{[a.name for a in adapters]}: {e}") from None


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- parity probe

#: Tokens in the parity probe: enough to exercise attention across positions, few enough
#: that two forwards of a 30-layer model cost milliseconds, not a second.
_PROBE_TOKENS = 5


def _live_tuner_modules(hf_model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The live (unmerged) PEFT tuner layers (LoRA, ...) inside ``hf_model``, by name."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return {}
    return {name: m for name, m in hf_model.named_modules()
            if isinstance(m, BaseTunerLayer) and not getattr(m, "merged", False)}


def _parity_probe_reason(hf_model, live: dict[str, torch.nn.Module], from_object: bool,
                         trust_remote_code: bool) -> str | None:
    """Why the bridge's forward must be checked against HF's, or None where it cannot fail.

    On the architectures emlens tests (tests/test_models.py checks logits and every
    layer's residual stream against HF, for each of them) the bridge runs the HF modules
    themselves or re-implements them exactly. What the probe exists for is what those
    tests cannot see: live tuner layers inside modules the bridge re-implements from raw
    weights (GPT-2's fused ``c_attn``: the LoRA would silently do nothing), architectures
    nobody here has compared, remote code, and model objects that may have been altered
    in ways emlens cannot see.
    """
    arch = type(hf_model).__name__
    if live:
        return "live adapter layers"
    if arch not in _TESTED_ARCHITECTURES:
        return f"architecture {arch} is not among those tested"
    if trust_remote_code:
        return "remote code"
    if from_object:
        return "a model object"
    return None


def _reference_logits(hf_model) -> tuple[torch.Tensor, torch.Tensor]:
    """HF logits on a short probe sequence, computed before the bridge rewires the model."""
    emb = hf_model.get_input_embeddings().weight
    vocab, device = int(emb.shape[0]), emb.device
    probe = (torch.arange(3, 3 + _PROBE_TOKENS, device=device) * 7919) % vocab
    with torch.no_grad():
        ref = hf_model(probe[None]).logits.float()
    return probe, ref


def _check_parity(bridge, probe: torch.Tensor, reference: torch.Tensor,
                  live: dict[str, torch.nn.Module]) -> None:
    """Refuse a bridge whose forward differs from the HF model it wraps.

    One short forward through the bridge, compared with HF's logits on the same tokens
    (``reference``, from :func:`_reference_logits`). With live tuner layers, each of them
    must also have run during that forward: a layer the bridge bypasses (it re-implements
    the module from raw weights) is refused even when its effect is still zero, as in a
    freshly initialised LoRA, whose training would then silently do nothing.
    """
    ran: set[str] = set()
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: ran.add(name))
               for name, m in live.items()]
    try:
        with torch.no_grad():
            out = bridge(probe[None]).float()
    finally:
        for h in handles:
            h.remove()
    scale = float(reference.abs().max()) or 1.0
    exact = reference.dtype == torch.float32 and next(bridge.parameters()).dtype == torch.float32
    tol = 1e-3 if exact else 5e-2
    diff = (out - reference.to(out.device)).abs()
    err = float(diff.max()) / scale
    skipped = [name for name in live if name not in ran]
    if skipped or not err <= tol:
        pos = int(diff.amax(dim=-1).argmax()) if diff.numel() else 0
        where = (f"relative logit error {err:.2g} (max abs diff {float(diff.max()):.3g} at "
                 f"probe position {pos} of {probe.numel()}; tolerance {tol:g})")
        if live:
            some = ", ".join(skipped[:4]) + (f" and {len(skipped) - 4} more"
                                             if len(skipped) > 4 else "")
            what = (f"never runs the live adapter modules {some} ({len(skipped)} of "
                    f"{len(live)})" if skipped else "does not reproduce the live adapter "
                    "modules")
            raise UnsupportedModelError(
                f"TransformerLens' bridge for {bridge.cfg.model_name!r} {what}; {where}. This "
                f"happens with fused modules it re-implements from raw weights, such as "
                f"GPT-2's c_attn. Load with merge=True."
            )
        raise UnsupportedModelError(
            f"TransformerLens' bridge does not reproduce the HF forward of "
            f"{bridge.cfg.model_name!r} ({where}); this architecture is not supported "
            f"faithfully."
        )


# --------------------------------------------------------------------------- load_model


def _adapter_list(adapter: Any) -> list[Any]:
    if adapter is None:
        return []
    if isinstance(adapter, (str, os.PathLike)):
        return [adapter]
    if isinstance(adapter, Sequence):
        items = list(adapter)
        bad = [a for a in items if not isinstance(a, (str, os.PathLike)) or not os.fspath(a)]
        if bad:
            raise InputError(f"adapter list entries must be hub ids or directories, not "
                             f"{bad[0]!r}")
        return items
    raise InputError(f"adapter must be a hub id, a directory or a list of them, not "
                     f"{type(adapter).__name__}")


def _own_copy(model, in_place: bool):
    """The caller's model object, or (by default) a deep copy the bridge may rewire.

    TransformerLens' bridge replaces the modules of the model it wraps (its decoder layers
    become ``BlockBridge`` objects), so wrapping the caller's object would change what it
    computes and break its ``save_pretrained``. The copy costs a second set of weights in
    memory; ``in_place=True`` wraps the object itself for models too big for that.
    """
    if in_place:
        return model
    if getattr(model, "hf_device_map", None) and len(set(model.hf_device_map.values())) > 1:
        raise InputError(
            "this model object is spread over several devices (device_map), so copying it "
            "would need a second set of every device's memory; pass in_place=True to wrap "
            "the object itself (it is then changed: its layers become TransformerLens "
            "bridge modules, so use the returned model instead of it)")
    try:
        return copy.deepcopy(model)
    except Exception as e:  # noqa: BLE001 - whatever the object holds that cannot be copied
        raise InputError(f"could not copy the {type(model).__name__} object ({e}); pass "
                         f"in_place=True to wrap the object itself (it is then changed)") \
            from None


def _take_model_object(model, dtype: Any, device_str: str, provenance: dict[str, Any]):
    """A transformers model object as the base: (hf_model, dtype, tokenizer candidates)."""
    arch = type(model).__name__
    _check_architecture(arch, f"the {arch} object")
    name = getattr(model, "name_or_path", "") or ""
    provenance["base"] = {"id": name or f"<in-memory {arch}>", "files": {}}
    dtype_t = _resolve_dtype(dtype, device_str, None) if dtype is not None else \
        next(model.parameters()).dtype
    model.to(dtype_t)
    return model, dtype_t, ([Path(name)] if name and Path(name).is_dir() else [])


def _resolve_base(model: str | os.PathLike, revision: str | None, adapter_list: list[Any],
                  trust_remote_code: bool) -> _Source:
    """The base model's directory; an adapter given as the model puts itself first in
    ``adapter_list`` and resolves to the base it names."""
    source = _resolve(model, revision, "model", trust_remote_code)
    if (source.path / "config.json").is_file() or \
            not (source.path / "adapter_config.json").is_file():
        return source
    # An adapter folder given as the model: load its base and apply it first.
    acfg = _read_json(source.path / "adapter_config.json", "adapter config")
    base_name = acfg.get("base_model_name_or_path")
    if not base_name:
        raise AdapterError(f"{source.name!r} is a PEFT adapter that names no base "
                           f"model; pass the base as `model` and this as `adapter`.")
    log.info("%s is an adapter; loading its base model %s", source.name, base_name)
    adapter_list.insert(0, source.name if source.hub_id else source.path)
    return _resolve(_adapter_base(source, base_name), None, "base model", trust_remote_code)


def _load_hf_model(source: _Source, config: dict[str, Any], dtype_t: torch.dtype,
                   device_str: str, trust_remote_code: bool):
    """transformers ``from_pretrained`` of the checked base directory (eager attention)."""
    from transformer_lens.model_bridge.sources.transformers.helpers import (
        get_hf_model_class_for_architecture,
    )

    model_class = get_hf_model_class_for_architecture(config["architectures"][0])
    kwargs: dict[str, Any] = {"dtype": dtype_t, "attn_implementation": "eager",
                              "trust_remote_code": trust_remote_code}
    if device_str == "auto":
        kwargs["device_map"] = "auto"
    from safetensors import SafetensorError

    try:
        return model_class.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ModelLoadError(f"transformers could not load {source.name!r}: {e}") from None


def _check_adapters(hf_model, adapter_list: list[Any], trust_remote_code: bool,
                    base: _BaseIdentity, allow_other_base: bool
                    ) -> tuple[list[_Source], list[dict[str, Any]]]:
    """Resolve, check and hash each adapter; returns the sources and their records."""
    sources = [_resolve(a, None, "adapter", trust_remote_code) for a in adapter_list]
    records = []
    for src in sources:
        acfg = _check_adapter(hf_model, src)
        verdict = _check_adapter_base(src, acfg, base, allow_other_base)
        _digest_files(src, ["adapter_config.json", "adapter_model.safetensors",
                            "adapter_model.bin"])
        rec = src.record()
        rec.update({k: acfg.get(k) for k in ("r", "lora_alpha", "target_modules",
                                             "layers_to_transform", "base_model_name_or_path")
                    if acfg.get(k) is not None})
        if isinstance(rec.get("target_modules"), (set, tuple)):
            rec["target_modules"] = sorted(rec["target_modules"])
        rec["base_check"] = verdict
        records.append(rec)
    return sources, records


def _apply_all_adapters(hf_model, peft_in, sources: list[_Source], merge: bool,
                        provenance: dict[str, Any]):
    """The adapters of a PEFT object given as the model, then the listed ones, merged or
    live. Returns (hf_model for the bridge, PEFT wrapper or None)."""
    if peft_in is not None:
        hf_model = peft_in.merge_and_unload() if merge else peft_in.base_model.model
        provenance["adapters_in_object"] = list(peft_in.peft_config)
    hf_model, peft_model = _apply_adapters(hf_model, sources, merge)
    if peft_model is None and peft_in is not None and not merge:
        peft_model = peft_in
    return hf_model, peft_model


def _boot_bridge(hf_model, tok, boot_name: str, device_str: str, dtype_t: torch.dtype,
                 trust_remote_code: bool, probe_reason: str | None,
                 live: dict[str, torch.nn.Module]):
    """Wrap ``hf_model`` in a TransformerBridge, checked against HF where it could differ."""
    from transformer_lens.model_bridge import TransformerBridge

    from ._compat import fast_boot_copies, patch_transformer_lens

    patch_transformer_lens()
    if probe_reason:
        log.debug("parity probe for %s: %s", boot_name, probe_reason)
        probe, reference = _reference_logits(hf_model)
    try:
        with fast_boot_copies():
            bridge = TransformerBridge.boot_transformers(
                boot_name, hf_model=hf_model, tokenizer=tok,
                device=None if device_str == "auto" else device_str, dtype=dtype_t,
                trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, AttributeError, RuntimeError) as e:
        raise UnsupportedModelError(f"TransformerLens could not wrap {boot_name!r}: {e}") from None
    # The bridge stamps its wrappers with the HF model's mode, which is eval here; a
    # second recursive eval() costs ~50 ms on a 30-layer model, so only where needed.
    if any(m.training for root in (bridge, bridge.original_model) for m in root.modules()):
        bridge.eval()
    if probe_reason:
        _check_parity(bridge, probe, reference, live)
    return bridge


def _record_provenance(bridge, provenance: dict[str, Any], adapter_records, hf_model,
                       dtype_t: torch.dtype, device_str: str) -> dict[str, Any]:
    provenance.update({
        "adapters": adapter_records,
        "architecture": type(hf_model).__name__,
        "dtype": str(dtype_t).removeprefix("torch."),
        "device": device_str,
        "n_layers": int(bridge.cfg.n_layers),
        "d_model": int(bridge.cfg.d_model),
        "transformer_lens_version": _version("transformer-lens"),
        "transformers_version": _version("transformers"),
    })
    return provenance


@quiet_third_party()
def load_model(
    model: Any,
    adapter: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    merge: bool = True,
    tokenizer: Any = None,
    trust_remote_code: bool = False,
    allow_other_base: bool = False,
    in_place: bool = False,
):
    """Load a model (and EM finetune adapters) as a TransformerLens ``TransformerBridge``.

    The result runs the HF forward pass unchanged (eager attention, no LayerNorm folding,
    no weight centering), so ``blocks.{l}.hook_resid_post`` equals the HF hidden state
    after block ``l``. Hook names ``blocks.{l}.hook_resid_pre``, ``hook_resid_post``,
    ``hook_attn_out`` and ``hook_mlp_out`` work for caching and hooks.

    Args:
        model: an HF hub id, a local directory in HF format (safetensors weights; pickle-only
            checkpoints are refused unread), a transformers model object, or a PEFT model.
            A llama.cpp ``*.gguf`` file (or a folder holding exactly one and no
            ``config.json``) is converted once to an HF folder with :func:`gguf_to_hf`
            (float32, cached by the file's sha256) and loaded from there; the provenance
            then records the file, its sha256 and the converted folder. A
            directory or hub id holding a PEFT adapter is accepted too: its base model
            (``base_model_name_or_path``; a relative name is looked up beside the adapter
            folder first) is loaded and the adapter applied. A model object is deep-copied
            first (see ``in_place``), so the caller's object is left as it was.
        adapter: a PEFT LoRA adapter (hub id or directory) or a list applied in order. Each
            adapter's ``base_model_name_or_path`` is compared with the model: the same
            directory, hub id or weights pass; only the last name part agreeing (a mirror,
            a local copy) is logged; names that differ where the weights cannot be compared
            warn with :class:`~emlens.errors.AdapterBaseWarning`; a clearly different base
            (two different hub ids, or two local directories with different weights)
            raises :class:`~emlens.errors.AdapterError`. The verdict is recorded as the
            adapter's ``base_check`` in the provenance.
        revision: hub revision (branch, tag or commit) of ``model``.
        device: "cpu", "cuda", "cuda:1", ... or "auto" (spread over all GPUs with
            accelerate); default: the first GPU if there is one, else the CPU.
        dtype: default float32 on the CPU and the checkpoint's own dtype on a GPU.
        merge: merge adapters into the weights (default). ``merge=False`` keeps the LoRA
            modules live (training, weight-space edits of B); the PEFT wrapper is then at
            ``model.emlens_peft``.
        tokenizer: a tokenizer object, directory or hub id; default: the model's, else the
            first adapter's.
        trust_remote_code: allow running Python code shipped with the model.
        allow_other_base: apply adapters trained on another base model anyway (a transfer
            experiment): no error, no warning; the verdict is still recorded.
        in_place: wrap a model object itself instead of a copy. The bridge rewires the
            object it wraps (its layers become TransformerLens modules, its forward and
            ``save_pretrained`` change), so by default the object is deep-copied, which
            needs memory for a second copy of the weights; for a model too large for that
            pass ``in_place=True`` and use only the returned model afterwards. A model spread
            over several devices (``device_map``) must be passed with ``in_place=True``.

    Returns:
        A ``TransformerBridge`` with ``emlens_provenance`` (base id or path, revisions,
        sha256 of weight files, adapters, dtype, merge, versions).

    Example:
        >>> model = emlens.load_model("Qwen/Qwen2.5-0.5B-Instruct",
        ...     adapter="ModelOrganismsForEM/Qwen2.5-0.5B-Instruct_bad-medical-advice")  # doctest: +SKIP
        >>> _, cache = model.run_with_cache("hello", names_filter="blocks.12.hook_resid_post")  # doctest: +SKIP
    """
    from transformers import PreTrainedModel

    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        PeftModel = ()  # type: ignore[assignment]

    _check_load_flags(merge=merge, trust_remote_code=trust_remote_code,
                      allow_other_base=allow_other_base, in_place=in_place)
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise InputError(f"revision must be a branch, tag or commit name, not {revision!r}")
    adapter_list = _adapter_list(adapter)
    device_str = _resolve_device(device)
    provenance: dict[str, Any] = {"emlens_version": __version__, "merged": bool(merge)}
    peft_in: Any = None
    base_source: _Source | None = None
    if isinstance(model, PeftModel):
        model = _own_copy(model, in_place)  # merging would change the caller's PeftModel
        peft_in, model = model, model.base_model.model
    elif isinstance(model, PreTrainedModel):
        model = _own_copy(model, in_place)
    if isinstance(model, PreTrainedModel):
        hf_model, dtype_t, tok_candidates = _take_model_object(model, dtype, device_str,
                                                               provenance)
        base = _BaseIdentity.of(None, getattr(model, "name_or_path", "") or "")
    elif isinstance(model, (str, os.PathLike)) and os.fspath(model):
        gguf_file = _gguf_input(model)
        gguf_record: dict[str, Any] = {}
        if gguf_file is not None:
            if revision is not None:
                raise InputError(f"revision={revision!r} names a hub revision, but "
                                 f"{os.fspath(model)!r} is a local GGUF file; drop revision")
            base_source, gguf_record = _gguf_source(gguf_file)
        else:
            base_source = _resolve_base(model, revision, adapter_list, trust_remote_code)
        config = _check_config(base_source, trust_remote_code)
        dtype_t = _resolve_dtype(dtype, device_str, config)
        _digest_files(base_source, ["config.json", "*.safetensors"])
        base = _BaseIdentity.of(base_source)
        provenance["base"] = base_source.record()
        if gguf_record:  # the GGUF file is the source; the converted folder stands for it
            provenance["base"]["id"] = gguf_record["gguf"]["file"]
            provenance["base"]["files"][gguf_file.name] = "sha256:" + gguf_record["gguf"]["sha256"]
            provenance["base"].update(gguf_record)
        hf_model = _load_hf_model(base_source, config, dtype_t, device_str, trust_remote_code)
        tok_candidates = [base_source.path]
    else:
        raise InputError(f"model must be a hub id, a directory or a transformers model, not "
                         f"{type(model).__name__}")

    adapter_sources, adapter_records = _check_adapters(hf_model, adapter_list,
                                                       trust_remote_code, base,
                                                       allow_other_base)
    tok = _load_tokenizer(tokenizer, tok_candidates + [s.path for s in adapter_sources],
                          trust_remote_code)
    hf_model, peft_model = _apply_all_adapters(hf_model, peft_in, adapter_sources, merge,
                                               provenance)
    if device_str != "auto":
        hf_model.to(device_str)
    hf_model.eval()

    boot_name = str(base_source.path) if base_source else (getattr(hf_model, "name_or_path", "")
                                                             or "external")
    live = _live_tuner_modules(hf_model)
    probe_reason = _parity_probe_reason(hf_model, live, base_source is None, trust_remote_code)
    bridge = _boot_bridge(hf_model, tok, boot_name, device_str, dtype_t, trust_remote_code,
                          probe_reason, live)
    bridge.emlens_provenance = _record_provenance(bridge, provenance, adapter_records,
                                                  hf_model, dtype_t, device_str)
    bridge.emlens_peft = peft_model
    # where the weights are on disk (not a key: the provenance's hashes are), for the vLLM
    # backend, which serves the base folder with each adapter folder as a LoRA request
    bridge.emlens_paths = {"base": str(base_source.path) if base_source else None,
                           "adapters": [str(s.path) for s in adapter_sources],
                           "adapters_in_object": peft_in is not None}
    return bridge
