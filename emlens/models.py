"""Load base models and emergent-misalignment finetunes into TransformerLens.

:func:`load_model` takes an HF hub id, a local HF directory or a transformers model
object, applies PEFT LoRA adapters (merged or live), and returns a TransformerLens
``TransformerBridge`` with the raw HF numerics: no LayerNorm folding, no weight
centering, so that a residual-stream vector means the same thing here as in HF, vLLM
and the files other teams publish. Where the weights came from is recorded on the model
as ``model.emlens_provenance``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ._quiet import quiet_third_party
from ._version import __version__
from .errors import (
    AdapterError,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelError,
)

__all__ = ["load_model", "hook_name", "model_dims", "HOOK_SITES"]

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
    if site not in HOOK_SITES:
        raise InputError(f"unknown hook site {site!r}; use one of {HOOK_SITES}")
    return f"blocks.{int(layer)}.hook_{site}"


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
        if not _has_weights(path):
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
                f"(or adapter_config.json for an adapter)."
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


def _hash_memo_path() -> Path:
    root = os.environ.get("EMLENS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "emlens")
    return Path(root) / "sha256.json"


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


def _digest_files(source: _Source, names: Sequence[str]) -> None:
    """Fill ``source.files`` with sha256 digests of the weight and config files.

    Digests of local files are memoised on disk by (path, size, mtime), so a 30 GB
    checkpoint is hashed once, not at every load.
    """
    memo_path = _hash_memo_path()
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    size = len(memo)
    files = sorted({p for g in names for p in source.path.glob(g) if p.is_file()})
    for p in files:
        source.files[p.name] = "sha256:" + _sha256(p, memo)
    if len(memo) != size:
        from .io import atomic_write_text

        try:
            atomic_write_text(memo_path, json.dumps(memo))
        except OSError as e:  # a read-only home must not stop a load
            log.debug("could not write the hash memo %s: %s", memo_path, e)


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
    if not _has_weights(source.path):
        raise ModelNotFoundError(
            f"{source.name!r} has a config.json but no weights (*.safetensors or *.bin); the "
            f"download or save may have been interrupted."
        )
    return config


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


def _resolve_device(device: Any) -> str:
    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return str(device)


def _load_tokenizer(tokenizer: Any, candidates: Sequence[Path], trust_remote_code: bool):
    from transformers import AutoTokenizer

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    if tokenizer is not None:
        candidates = [Path(os.fspath(tokenizer)).expanduser()]
        if not candidates[0].exists():
            # A hub id of a tokenizer.
            return AutoTokenizer.from_pretrained(os.fspath(tokenizer),
                                                 trust_remote_code=trust_remote_code)
    errors = []
    for path in candidates:
        if path is None or not any(path.glob("tokenizer*")):
            continue
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


def _reference_logits(hf_model) -> tuple[torch.Tensor, torch.Tensor]:
    """HF logits on a short probe sequence, computed before the bridge rewires the model."""
    vocab = int(hf_model.get_input_embeddings().weight.shape[0])
    device = hf_model.get_input_embeddings().weight.device
    probe = (torch.arange(3, 19, device=device) * 7919) % vocab
    with torch.no_grad():
        ref = hf_model(probe[None]).logits.float()
    return probe, ref


def _check_parity(bridge, probe: torch.Tensor, reference: torch.Tensor, live_lora: bool) -> None:
    """Refuse a bridge whose forward differs from the HF model it wraps.

    Two short forward passes; they catch components the bridge re-implements from raw
    weights (which would silently skip live LoRA modules, for one).
    """
    with torch.no_grad():
        out = bridge(probe[None]).float()
    scale = float(reference.abs().max()) or 1.0
    exact = reference.dtype == torch.float32 and next(bridge.parameters()).dtype == torch.float32
    tol = 1e-3 if exact else 5e-2
    err = float((out - reference.to(out.device)).abs().max()) / scale
    if not err <= tol:
        if live_lora:
            raise UnsupportedModelError(
                f"TransformerLens' bridge for {bridge.cfg.model_name!r} does not run some of the "
                f"live LoRA modules (relative logit error {err:.2g}); this happens with fused "
                f"modules it re-implements from raw weights, such as GPT-2's c_attn. Load with "
                f"merge=True."
            )
        raise UnsupportedModelError(
            f"TransformerLens' bridge does not reproduce the HF forward of "
            f"{bridge.cfg.model_name!r} (relative logit error {err:.2g}); this architecture is "
            f"not supported faithfully."
        )


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
):
    """Load a model (and EM finetune adapters) as a TransformerLens ``TransformerBridge``.

    The result runs the HF forward pass unchanged (eager attention, no LayerNorm folding,
    no weight centering), so ``blocks.{l}.hook_resid_post`` equals the HF hidden state
    after block ``l``. Hook names ``blocks.{l}.hook_resid_pre``, ``hook_resid_post``,
    ``hook_attn_out`` and ``hook_mlp_out`` work for caching and hooks.

    Args:
        model: an HF hub id, a local directory in HF format, a transformers model object,
            or a PEFT model. A directory or hub id holding a PEFT adapter is accepted too:
            its base model (``base_model_name_or_path``; a relative name is looked up beside
            the adapter folder first) is loaded and the adapter applied.
        adapter: a PEFT LoRA adapter (hub id or directory) or a list applied in order.
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

    Returns:
        A ``TransformerBridge`` with ``emlens_provenance`` (base id or path, revisions,
        sha256 of weight files, adapters, dtype, merge, versions).

    Example:
        >>> model = emlens.load_model("Qwen/Qwen2.5-0.5B-Instruct",
        ...     adapter="ModelOrganismsForEM/Qwen2.5-0.5B-Instruct_bad-medical-advice")  # doctest: +SKIP
        >>> _, cache = model.run_with_cache("hello", names_filter="blocks.12.hook_resid_post")  # doctest: +SKIP
    """
    from transformers import PreTrainedModel

    if adapter is None:
        adapter_list: list[Any] = []
    elif isinstance(adapter, (str, os.PathLike)):
        adapter_list = [adapter]
    elif isinstance(adapter, Sequence):
        adapter_list = list(adapter)
    else:
        raise InputError(f"adapter must be a hub id, a directory or a list of them, not "
                         f"{type(adapter).__name__}")
    device_str = _resolve_device(device)
    provenance: dict[str, Any] = {"emlens_version": __version__, "merged": bool(merge)}

    peft_in: Any = None
    base_source: _Source | None = None
    config: dict[str, Any] | None = None
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        PeftModel = ()  # type: ignore[assignment]

    if isinstance(model, PeftModel):
        peft_in, model = model, model.base_model.model
    if isinstance(model, PreTrainedModel):
        hf_model = model
        arch = type(model).__name__
        _check_architecture(arch, f"the {arch} object")
        name = getattr(model, "name_or_path", "") or ""
        provenance["base"] = {"id": name or f"<in-memory {arch}>", "files": {}}
        dtype_t = _resolve_dtype(dtype, device_str, None) if dtype is not None else \
            next(model.parameters()).dtype
        hf_model.to(dtype_t)
        tok_candidates = [Path(name)] if name and Path(name).is_dir() else []
    elif isinstance(model, (str, os.PathLike)):
        base_source = _resolve(model, revision, "model", trust_remote_code)
        if not (base_source.path / "config.json").is_file() and \
                (base_source.path / "adapter_config.json").is_file():
            # An adapter folder given as the model: load its base and apply it first.
            acfg = _read_json(base_source.path / "adapter_config.json", "adapter config")
            base_name = acfg.get("base_model_name_or_path")
            if not base_name:
                raise AdapterError(f"{base_source.name!r} is a PEFT adapter that names no base "
                                   f"model; pass the base as `model` and this as `adapter`.")
            log.info("%s is an adapter; loading its base model %s", base_source.name, base_name)
            adapter_list.insert(0, base_source.name if base_source.hub_id else base_source.path)
            base_source = _resolve(_adapter_base(base_source, base_name), None, "base model",
                                   trust_remote_code)
        config = _check_config(base_source, trust_remote_code)
        dtype_t = _resolve_dtype(dtype, device_str, config)
        _digest_files(base_source, ["config.json", *_WEIGHT_GLOBS])
        provenance["base"] = base_source.record()
        arch = config["architectures"][0]
        from transformer_lens.model_bridge.sources.transformers.helpers import (
            get_hf_model_class_for_architecture,
        )

        model_class = get_hf_model_class_for_architecture(arch)
        kwargs: dict[str, Any] = {"dtype": dtype_t, "attn_implementation": "eager",
                                  "trust_remote_code": trust_remote_code}
        if device_str == "auto":
            kwargs["device_map"] = "auto"
        try:
            hf_model = model_class.from_pretrained(base_source.path, **kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"transformers could not load {base_source.name!r}: {e}") \
                from None
        tok_candidates = [base_source.path]
    else:
        raise InputError(f"model must be a hub id, a directory or a transformers model, not "
                         f"{type(model).__name__}")

    adapter_sources = [_resolve(a, None, "adapter", trust_remote_code) for a in adapter_list]
    adapter_records = []
    for src in adapter_sources:
        acfg = _check_adapter(hf_model, src)
        _digest_files(src, ["adapter_config.json", "adapter_model.safetensors",
                            "adapter_model.bin"])
        rec = src.record()
        rec.update({k: acfg.get(k) for k in ("r", "lora_alpha", "target_modules",
                                             "layers_to_transform", "base_model_name_or_path")
                    if acfg.get(k) is not None})
        if isinstance(rec.get("target_modules"), (set, tuple)):
            rec["target_modules"] = sorted(rec["target_modules"])
        adapter_records.append(rec)
    tok = _load_tokenizer(tokenizer, tok_candidates + [s.path for s in adapter_sources],
                          trust_remote_code)

    if peft_in is not None:
        if merge:
            hf_model = peft_in.merge_and_unload()
        else:
            hf_model = peft_in.base_model.model
        provenance["adapters_in_object"] = list(peft_in.peft_config)
    hf_model, peft_model = _apply_adapters(hf_model, adapter_sources, merge)
    if peft_model is None and peft_in is not None and not merge:
        peft_model = peft_in
    if device_str != "auto":
        hf_model.to(device_str)
    hf_model.eval()

    from transformer_lens.model_bridge import TransformerBridge

    from ._compat import patch_transformer_lens

    patch_transformer_lens()
    probe, reference = _reference_logits(hf_model)
    boot_name = str(base_source.path) if base_source else (getattr(hf_model, "name_or_path", "")
                                                             or "external")
    try:
        bridge = TransformerBridge.boot_transformers(
            boot_name, hf_model=hf_model, tokenizer=tok,
            device=None if device_str == "auto" else device_str, dtype=dtype_t,
            trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, AttributeError, RuntimeError) as e:
        raise UnsupportedModelError(f"TransformerLens could not wrap {boot_name!r}: {e}") from None
    bridge.eval()
    _check_parity(bridge, probe, reference, live_lora=peft_model is not None)

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
    bridge.emlens_provenance = provenance
    bridge.emlens_peft = peft_model
    return bridge
