"""Weight-space interventions: orthogonalise the residual-stream writers, save HF checkpoints.

:func:`orthogonalize` edits, in place, every weight that writes into the residual stream
(token and learned position embeddings, attention output projections, MLP output
projections, biases included) so that the model behaves for good as under
``emlens.ablate(model, v, at="writes")``; on live LoRA adapters it can instead edit only
the adapters' B matrices, the papers' weight-space ablation. :func:`save_model` writes the
current weights (edited, LoRA merged) as a plain HF checkpoint that transformers and vLLM
load. Both are exported by :mod:`emlens`.

Why Gemma 2/3 are refused: they normalise each attention and MLP output
(``post_attention_layernorm`` / ``post_feedforward_layernorm``) before adding it to the
stream. Projecting the output projection's range leaves the normalised write with a
component along the direction (the norm's elementwise weight rotates it); projecting
against the weight-rescaled direction removes that component but changes the write's RMS
and hence every other component. Neither equals write ablation, which projects the
normalised write itself, so :func:`orthogonalize` raises and points to ``ablate``.

Example:
    >>> model = emlens.load_model(base, adapter, merge=False)          # doctest: +SKIP
    >>> emlens.orthogonalize(model, d.only(12), lora_only=True)      # doctest: +SKIP
    >>> emlens.save_model(model, "ablated-finetune")                 # doctest: +SKIP
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import EmlensError, InputError, UnsupportedModelError
from .directions import DirectionLike, one_vector
from .models import _checkpoint_config, model_dims
from .vectors import unit

__all__ = ["orthogonalize", "save_model"]

log = logging.getLogger(__name__)


def _vector_digest(unit: Tensor) -> str:
    return "sha256:" + hashlib.sha256(unit.float().contiguous().numpy().tobytes()).hexdigest()


def _is_bridge(model: Any) -> bool:
    return isinstance(getattr(model, "original_model", None), torch.nn.Module)


def _has_post_norms(model: Any) -> bool:
    if getattr(model.cfg, "use_normalization_before_and_after", False):
        return True
    blocks = getattr(model, "blocks", None) or []
    if any(hasattr(b, "ln1_post") or hasattr(b, "ln2_post") for b in blocks):
        return True
    hf = getattr(model, "original_model", None)
    if isinstance(hf, torch.nn.Module):
        return any(n.endswith(("post_feedforward_layernorm", "post_mlp_layernorm"))
                   for n, _ in hf.named_modules())
    return False


def _lora_layer_cls() -> tuple[type, ...]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return ()
    return (LoraLayer,)


def _is_lora(module: Any) -> bool:
    cls = _lora_layer_cls()
    return bool(cls) and isinstance(module, cls)


def _check_lora_supported(module: Any, name: str) -> None:
    for adapter in getattr(module, "active_adapters", []):
        if getattr(module, "use_dora", {}).get(adapter, False):
            raise UnsupportedModelError(
                f"{name} uses DoRA (adapter {adapter!r}); its weight normalisation makes a "
                f"projection of B not a projection of the module's output. Merge it first "
                f"(load_model(..., merge=True)).")
        if getattr(module, "lora_bias", {}).get(adapter, False):
            raise UnsupportedModelError(f"{name} has a LoRA bias (adapter {adapter!r}), which "
                                        f"emlens does not edit; merge it first.")


def _bridge_writers(model: Any) -> list[tuple[str, str, torch.nn.Module]]:
    """(label, kind, module) of every module whose output is added to the residual stream."""

    def original(component: Any, label: str) -> torch.nn.Module:
        mod = getattr(component, "original_component", None)
        if not isinstance(mod, torch.nn.Module):
            raise UnsupportedModelError(
                f"TransformerLens' bridge exposes no HF module for {label} of this "
                f"architecture, so emlens cannot edit its weights")
        return mod

    out: list[tuple[str, str, torch.nn.Module]] = []
    out.append(("embed", "embedding", original(model.embed, "the token embedding")))
    if getattr(model.cfg, "positional_embedding_type", None) == "standard" \
            and hasattr(model, "pos_embed"):
        out.append(("pos_embed", "embedding", original(model.pos_embed,
                                                       "the position embedding")))
    for l, block in enumerate(model.blocks):
        attn = getattr(block, "attn", None)
        mlp = getattr(block, "mlp", None)
        if attn is None or not hasattr(attn, "o"):
            raise UnsupportedModelError(f"block {l} has no attention output projection "
                                        f"(attn.o) that emlens can edit")
        if mlp is None or not hasattr(mlp, "out"):
            raise UnsupportedModelError(f"block {l} has no MLP output projection (mlp.out) "
                                        f"that emlens can edit (mixture-of-experts MLPs are "
                                        f"not supported)")
        out.append((f"blocks.{l}.attn.o", "linear", original(attn.o, f"block {l} attn.o")))
        out.append((f"blocks.{l}.mlp.out", "linear", original(mlp.out, f"block {l} mlp.out")))
    return out


_CHUNK = 1 << 24  # float64 elements per step (128 MB): a 152k x 5120 embedding is not
# copied to float64 whole


@torch.no_grad()
def _project_rows(p: Tensor, r: Tensor) -> None:
    """In place: ``P <- P - (P r) r^T``, for P of any shape whose last dim is the residual."""
    flat = p.view(-1, p.shape[-1]) if p.is_contiguous() else None
    if flat is None:  # a strided view: small in practice, do it whole
        x = p.double()
        p.copy_((x - (x @ r)[..., None] * r).to(p.dtype))
        return
    step = max(1, _CHUNK // max(1, flat.shape[1]))
    for i in range(0, flat.shape[0], step):
        x = flat[i:i + step].double()
        flat[i:i + step] = (x - torch.outer(x @ r, r)).to(p.dtype)


@torch.no_grad()
def _project_cols(p: Tensor, r: Tensor) -> None:
    """In place: ``P <- P - r (r^T P)`` (a 2-D P whose columns live in the residual space)."""
    step = max(1, _CHUNK // max(1, p.shape[0]))
    for j in range(0, p.shape[1], step):
        x = p[:, j:j + step].double()
        p[:, j:j + step] = (x - torch.outer(r, r @ x)).to(p.dtype)


def _edit_base(module: torch.nn.Module, kind: str, r: Tensor, d_model: int) -> int:
    """Project the output space of a plain Embedding / Linear / Conv1D. Returns tensors edited."""
    w = module.weight
    if kind == "embedding" or isinstance(module, torch.nn.Embedding):
        if w.shape[-1] != d_model:
            raise UnsupportedModelError(f"embedding of width {w.shape[-1]} != d_model {d_model}")
        _project_rows(w.data, r.to(w.device))
        return 1
    if isinstance(module, torch.nn.Linear):
        if w.shape[0] != d_model:
            raise UnsupportedModelError(f"output projection {type(module).__name__} has "
                                        f"{w.shape[0]} outputs, not d_model {d_model}")
        _project_cols(w.data, r.to(w.device))
    elif type(module).__name__ == "Conv1D":  # GPT-2: weight [in, out]
        if w.shape[1] != d_model:
            raise UnsupportedModelError(f"Conv1D has {w.shape[1]} outputs, not d_model {d_model}")
        _project_rows(w.data, r.to(w.device))
    else:
        raise UnsupportedModelError(f"cannot edit a {type(module).__name__} output projection")
    bias = getattr(module, "bias", None)
    if isinstance(bias, Tensor):
        _project_rows(bias.data, r.to(bias.device))
        return 2
    return 1


def _edit_lora_b(module: torch.nn.Module, r: Tensor, name: str) -> int:
    """Project every LoRA B matrix of a LoRA layer: ``B <- B - r r^T B``."""
    _check_lora_supported(module, name)
    n = 0
    for b in getattr(module, "lora_B", {}).values():
        _project_cols(b.weight.data, r.to(b.weight.device))
        n += 1
    for b in getattr(module, "lora_embedding_B", {}).values():
        _project_cols(b.data, r.to(b.device))
        n += 1
    return n


def _untie_embeddings(hf: torch.nn.Module) -> bool:
    """Give the unembedding its own copy of a tied embedding matrix; True if it was tied."""
    out = hf.get_output_embeddings()
    inp = hf.get_input_embeddings()
    out = getattr(out, "original_component", out)
    inp = getattr(inp, "original_component", inp)
    if out is None or inp is None:
        return False
    inp_w = getattr(inp, "get_base_layer", lambda: inp)().weight
    if getattr(out, "weight", None) is None or out.weight.data_ptr() != inp_w.data_ptr():
        return False
    out.weight = torch.nn.Parameter(out.weight.detach().clone(),
                                    requires_grad=out.weight.requires_grad)
    for cfg in {id(c): c for c in (hf.config, hf.config.get_text_config())}.values():
        cfg.tie_word_embeddings = False
    log.info("untied the output embedding from the input embedding before editing it")
    return True


def _orthogonalize_bridge(model: Any, r: Tensor, lora_only: bool, d_model: int) -> dict[str, Any]:
    hf = model.original_model
    writers = _bridge_writers(model)
    if lora_only:
        if getattr(model, "emlens_peft", None) is None and \
                not any(_is_lora(m) for _, _, m in writers):
            raise InputError("lora_only=True edits live LoRA adapters, and this model has none; "
                             "load it with emlens.load_model(base, adapter, merge=False)")
        n, touched = 0, []
        for label, _, module in writers:
            if _is_lora(module):
                k = _edit_lora_b(module, r, label)
                if k:
                    n += k
                    touched.append(label)
        if not touched:
            raise InputError("the adapters hold no LoRA matrices on modules that write into the "
                             "residual stream (attention output or MLP down projections), so "
                             "lora_only=True has nothing to edit")
        return {"tensors_edited": n, "modules": touched}
    untied = _untie_embeddings(hf)
    n = 0
    for label, kind, module in writers:
        if _is_lora(module):
            n += _edit_lora_b(module, r, label)
            n += _edit_base(module.get_base_layer(), kind, r, d_model)
        else:
            n += _edit_base(module, kind, r, d_model)
    return {"tensors_edited": n, "untied_embeddings": untied}


def _orthogonalize_hooked(model: Any, r: Tensor, lora_only: bool) -> dict[str, Any]:
    if lora_only:
        raise UnsupportedModelError("lora_only=True needs live PEFT adapters, which a "
                                    "HookedTransformer does not have; load the model with "
                                    "emlens.load_model(base, adapter, merge=False)")
    params = [model.embed.W_E]
    if getattr(model.cfg, "positional_embedding_type", None) == "standard":
        params.append(model.pos_embed.W_pos)
    for l, block in enumerate(model.blocks):
        if not hasattr(block.mlp, "W_out"):
            raise UnsupportedModelError(f"block {l} has no MLP W_out (mixture-of-experts MLPs "
                                        f"are not supported)")
        params += [block.attn.W_O, block.attn.b_O, block.mlp.W_out, block.mlp.b_out]
    for p in params:
        _project_rows(p.data, r.to(p.device))
    return {"tensors_edited": len(params)}


def orthogonalize(model: Any, direction: DirectionLike, lora_only: bool = False) -> Any:
    """Edit, in place, every weight writing into the residual stream to be orthogonal to ``v``.

    Projects ``r = v / |v|`` out of the output space of the token (and learned position)
    embedding, each attention output projection and each MLP output projection, biases
    included, so that the logits equal those under ``ablate(model, v, at="writes")``
    (within float error). A tied unembedding is untied first (the unembedding keeps the
    original matrix). Live LoRA adapters (``merge=False``) are projected too: base weight
    and every B matrix. Gemma 2/3-style post-block norms make this inequivalent to write
    ablation, so those architectures raise :class:`UnsupportedModelError`.

    Args:
        model: a TransformerBridge (``emlens.load_model``) or a TL 3.x HookedTransformer.
        direction: one vector (the one-vector rule of :mod:`emlens.interventions`): a
            ``[d_model]`` tensor, ``d.only(l)`` or ``d.at(l)``.
        lora_only: edit only the LoRA B matrices of the adapters on modules that write into
            the residual stream (MLP down and attention output projections):
            ``B <- B - r r^T B``, the papers' weight-space ablation. Needs a model loaded
            with ``merge=False``.

    Returns:
        The same model, edited. The edit is recorded in ``model.emlens_provenance["edits"]``.

    Example:
        >>> model = emlens.load_model(base, adapter, merge=False)          # doctest: +SKIP
        >>> emlens.orthogonalize(model, d.only(12), lora_only=True)      # doctest: +SKIP
    """
    _, d_model = model_dims(model)
    vec, info = one_vector(direction, d_model)
    r = unit(vec, "the direction to orthogonalise against")
    if _has_post_norms(model):
        raise UnsupportedModelError(
            "this architecture normalises each attention and MLP output before adding it to "
            "the residual stream (post-block norms, as in Gemma 2/3); no edit of the output "
            "projections removes the direction from the normalised writes without changing "
            "the rest of them, so orthogonalize would not equal write ablation. Use "
            "emlens.ablate(model, direction, at='writes') instead, which hooks after the norms.")
    if _is_bridge(model):
        result = _orthogonalize_bridge(model, r, lora_only, d_model)
    elif hasattr(model, "embed") and hasattr(model.embed, "W_E"):
        result = _orthogonalize_hooked(model, r, lora_only)
    else:
        raise UnsupportedModelError(f"cannot edit the weights of a {type(model).__name__}")
    record = {
        "op": "orthogonalize",
        "lora_only": bool(lora_only),
        "unit_vector_sha256": _vector_digest(r),
        "vector_norm": float(vec.double().norm()),
        "direction": info,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **result,
    }
    prov = getattr(model, "emlens_provenance", None)
    if isinstance(prov, dict):
        prov.setdefault("edits", []).append(record)
    log.info("orthogonalised %d weight tensors against the direction (lora_only=%s)",
             result["tensors_edited"], lora_only)
    return model


# --------------------------------------------------------------------------- save


def _clean_name(name: str) -> str:
    return name.replace("._original_component", "").replace("_original_component.", "")


@torch.no_grad()
def _merged_lora_tensors(hf: torch.nn.Module) -> tuple[dict[str, Tensor], set[str]]:
    """HF-named merged weights of every LoRA layer (the model is not changed).

    A bridge reaches some modules by two paths (``self_attn.o_proj`` and the alias
    ``self_attn.o``); each LoRA layer is merged once and named by every path.
    """
    out: dict[str, Tensor] = {}
    prefixes: set[str] = set()
    done: dict[int, tuple[Tensor, Tensor | None]] = {}
    for name, module in hf.named_modules(remove_duplicate=False):
        if not _is_lora(module):
            continue
        clean = _clean_name(name)
        prefixes.add(clean)
        if id(module) not in done:
            _check_lora_supported(module, clean)
            base = module.get_base_layer()
            weight = base.weight.detach()
            if not getattr(module, "disable_adapters", False):
                merged = set(getattr(module, "merged_adapters", []))
                own = set(getattr(module, "lora_A", {})) | set(getattr(module, "lora_embedding_A",
                                                                        {}))
                deltas = [module.get_delta_weight(a) for a in module.active_adapters
                          if a in own and a not in merged]
                if deltas:
                    weight = (weight.float() + sum(d.float() for d in deltas)).to(weight.dtype)
            bias = base.bias.detach() if isinstance(getattr(base, "bias", None), Tensor) else None
            done[id(module)] = (weight, bias)
        weight, bias = done[id(module)]
        out[clean + ".weight"] = weight
        if bias is not None:
            out[clean + ".bias"] = bias
    return out, prefixes


def _hf_state_dict(hf: torch.nn.Module) -> dict[str, Tensor]:
    """The HF-named tensors of a model that a TransformerBridge (and maybe PEFT) rewired."""
    merged, lora_prefixes = _merged_lora_tensors(hf)
    state = dict(merged)
    for key, t in hf.state_dict().items():
        clean = _clean_name(key)
        if clean in state:
            continue
        parts = clean.split(".")
        if any(".".join(parts[:i]) in lora_prefixes for i in range(1, len(parts))):
            continue  # a LoRA layer's own tensors (base_layer, lora_A, lora_B)
        state[clean] = t.detach()
    return state


def _expected_keys(cls: type, config: Any) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Parameter names and shapes a fresh ``cls(config)`` has, and its tied duplicates."""
    with torch.device("meta"):
        skeleton = cls(copy.deepcopy(config))
    shapes: dict[str, tuple[int, ...]] = {}
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for key, t in skeleton.state_dict(keep_vars=True).items():
        if id(t) in seen:
            tied.add(key)
            continue
        seen[id(t)] = key
        shapes[key] = tuple(t.shape)
    return shapes, tied


def save_model(model: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the model's current weights as an HF checkpoint that plain transformers loads.

    Writes ``config.json``, safetensors weights (sharded above 5 GB), the tokenizer, the
    generation config and ``emlens_provenance.json`` (base, adapters, edits). The config's
    ``architectures`` names the model's class (set even where the in-memory config lacks
    it, as after ``from_config`` or a GGUF load); a GGUF ``quantization_config`` is dropped,
    since the weights written are plain floats. Live LoRA
    adapters are merged into the written weights without changing ``model``. Hooks
    (:func:`~emlens.interventions.steer`, ``ablate``) are not weights and are not saved. The
    directory is written under a temporary name and renamed at the end, so an
    interrupted save leaves no half-written checkpoint.

    Args:
        model: a TransformerBridge from :func:`emlens.load_model` (possibly edited with
            :func:`orthogonalize`, merged or with live LoRA).
        path: the directory to create.
        overwrite: replace ``path`` if it exists and is not empty.

    Returns:
        The checkpoint directory, loadable with ``AutoModelForCausalLM.from_pretrained``.

    Example:
        >>> emlens.orthogonalize(model, d.only(12))                     # doctest: +SKIP
        >>> emlens.save_model(model, "qwen-ablated")                     # doctest: +SKIP
    """
    if not _is_bridge(model):
        raise UnsupportedModelError(
            f"save_model writes HF checkpoints from a TransformerBridge (emlens.load_model); a "
            f"{type(model).__name__} keeps its weights in TransformerLens' layout")
    from huggingface_hub import save_torch_state_dict

    hf = model.original_model
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InputError(f"path must be the directory to save the model in, not {path!r}")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{str(path)!r} is a file; pass a directory path to save the model in")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"{str(path)!r} exists and is not empty; pass overwrite=True to "
                         f"replace it, or choose another directory")
    config = _checkpoint_config(hf)
    state = _hf_state_dict(hf)
    shapes, tied = _expected_keys(type(hf), config)
    missing = sorted(set(shapes) - set(state))
    if missing:
        raise EmlensError(f"could not find the HF weights {missing[:5]} in the model "
                          f"({len(missing)} missing); this bridge's layout is not supported "
                          f"by save_model")
    out: dict[str, Tensor] = {}
    for key, want in shapes.items():
        t = state[key]
        if tuple(t.shape) != want:
            raise EmlensError(f"weight {key} has shape {tuple(t.shape)}, but "
                              f"{type(hf).__name__} expects {want}")
        out[key] = t
    dtypes = {t.dtype for t in out.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        config.dtype = str(next(iter(dtypes))).removeprefix("torch.")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        config.save_pretrained(tmp)
        save_torch_state_dict(out, tmp, max_shard_size="5GB", metadata={"format": "pt"})
        gen = getattr(hf, "generation_config", None)
        if gen is not None:
            gen.save_pretrained(tmp)
        tok = getattr(model, "tokenizer", None)
        if tok is not None:
            tok.save_pretrained(tmp)
        prov = getattr(model, "emlens_provenance", None)
        if isinstance(prov, dict):
            (tmp / "emlens_provenance.json").write_text(json.dumps(prov, indent=1, default=str))
        trash = None
        if path.exists():
            if any(path.iterdir()):
                trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old",
                                              dir=path.parent))
                os.replace(path, trash / "old")
            else:
                path.rmdir()
        os.replace(tmp, path)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved %d weight tensors to %s (tied duplicates left out: %s)", len(out), path,
             sorted(tied) or "none")
    return path
