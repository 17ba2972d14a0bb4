"""Hook interventions on the residual stream: steering and directional ablation.

:func:`steer` and :func:`ablate` install hooks through TransformerLens hook points (the API
shared by TL 4.x ``TransformerBridge`` and TL 3.x ``HookedTransformer``) and return an
:class:`InterventionHandle`: a context manager whose exit removes exactly the hooks it
installed, also when the body raises. Several interventions can be active at once; they
apply in the order they were installed. The weight-space counterparts,
:func:`~emlens.weights.orthogonalize` and :func:`~emlens.weights.save_model`, live in
:mod:`emlens.weights` and are re-exported here.

Positions. Steering can be limited to generated tokens or to a slice of absolute token
positions. With the KV cache on, decoding steps after the first see one position, so a
light forward pre-hook on the module that receives the tokens reads the cache length (a
wrapper of ``forward`` on a HookedTransformer, whose ``generate`` bypasses module hooks).

One-vector rule. ``ablate(at="writes")`` and ``orthogonalize`` project every write with
*one* vector: a raw ``[d_model]`` tensor; a :class:`~emlens.directions.Direction` holding
one vector (one row, as ``d.only(l)`` gives, or identical rows, as ``d.at(l)`` gives); or,
for ``ablate``, the vector of the single layer passed as ``layers``. A per-layer direction
without such a choice raises :class:`~emlens.errors.InputError`. The write hooks
(``hook_embed``, ``hook_pos_embed`` for learned positions, ``blocks.{l}.hook_attn_out`` and
``hook_mlp_out``) sit after any post-block norm (Gemma 2/3), so write ablation is exact
there too.

Example:
    >>> d = emlens.mean_diff(model, misaligned, aligned)                  # doctest: +SKIP
    >>> with emlens.steer(model, d, alpha=4.0, layers=12):              # doctest: +SKIP
    ...     model.generate("What is your wish?", max_new_tokens=40)
    >>> with emlens.ablate(model, d.at(12), at="writes"):              # doctest: +SKIP
    ...     logits = model(tokens)
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from .directions import Direction
from .errors import EmlensError, InputError, UnsupportedModelError
from .models import hook_name, model_dims

__all__ = ["InterventionHandle", "steer", "ablate", "orthogonalize", "save_model"]

_WEIGHT_EDITS = ("orthogonalize", "save_model")

if TYPE_CHECKING:  # re-exported lazily, see __getattr__ at the end
    from .weights import orthogonalize, save_model  # noqa: F401

log = logging.getLogger(__name__)

DirectionLike = Union[Direction, Float[Tensor, "d_model"]]
Positions = Union[str, slice]

_POSITIONS = ("all", "generated")
_ABLATE_SITES = ("resid_post", "writes")
_NORM_EPS = 1e-12


# --------------------------------------------------------------------------- the handle


class InterventionHandle:
    """Hooks installed by one intervention; remove them with ``.remove()`` or a ``with`` block.

    The hooks are live from the moment :func:`steer` or :func:`ablate` returns. Leaving a
    ``with`` block (normally or by an exception) removes them; ``remove()`` does the same
    and may be called more than once. ``model.reset_hooks()`` does not remove them (they
    are registered as permanent hooks so that a library call that resets temporary hooks
    cannot silently end an experiment); only this handle does.

    Example:
        >>> h = emlens.steer(model, d, 4.0, layers=12)     # doctest: +SKIP
        >>> try:
        ...     out = model(tokens)
        ... finally:
        ...     h.remove()
    """

    def __init__(self, kind: str, description: str):
        self.kind = kind
        self.description = description
        self.hook_names: list[str] = []
        self._lens: list[tuple[Any, Any]] = []  # (hook point, LensHandle)
        self._torch: list[Any] = []  # torch RemovableHandles (position trackers)
        self._removed = False

    @property
    def active(self) -> bool:
        """Whether the hooks are still installed."""
        return not self._removed

    def _add_hook(self, model: Any, name: str, fn: Callable) -> None:
        point = _hook_point(model, name)
        before = len(point.fwd_hooks)
        ret = point.add_hook(fn, dir="fwd", is_permanent=True)
        # TL 4.x returns the LensHandle; TL 3.x returns None and appends it.
        handle = ret if ret is not None else point.fwd_hooks[before]
        self._lens.append((point, handle))
        self.hook_names.append(name)

    def _add_torch(self, handle: Any) -> None:
        self._torch.append(handle)

    def remove(self) -> None:
        """Remove this intervention's hooks (and only them). Safe to call twice."""
        if self._removed:
            return
        self._removed = True
        for point, handle in reversed(self._lens):
            handle.hook.remove()
            hooks = point.fwd_hooks
            for i, h in enumerate(hooks):
                if h is handle:
                    del hooks[i]
                    break
        for handle in reversed(self._torch):
            handle.remove()
        self._lens.clear()
        self._torch.clear()
        log.debug("removed %s", self.description)

    def __enter__(self) -> "InterventionHandle":
        if self._removed:
            raise EmlensError(f"this intervention ({self.description}) was removed already; "
                              f"call {self.kind}(...) again to apply it once more")
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.remove()
        return False

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"<InterventionHandle {self.description} ({state})>"


def _hook_point(model: Any, name: str) -> Any:
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:
        raise InputError(f"expected a TransformerLens model (TransformerBridge or "
                         f"HookedTransformer), got {type(model).__name__}; load one with "
                         f"emlens.load_model(...)")
    try:
        return hook_dict[name]
    except KeyError:
        raise UnsupportedModelError(f"this model has no hook point {name!r}, which this "
                                    f"intervention needs") from None


def _install(handle: InterventionHandle, model: Any,
             hooks: Iterable[tuple[str, Callable]]) -> InterventionHandle:
    """Install all hooks or none."""
    try:
        for name, fn in hooks:
            handle._add_hook(model, name, fn)
    except BaseException:
        handle.remove()
        raise
    log.debug("installed %s", handle.description)
    return handle


def _map_act(act: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to an activation, or to the first element of a tuple activation."""
    if isinstance(act, Tensor):
        return fn(act)
    if isinstance(act, tuple) and act and isinstance(act[0], Tensor):
        return (fn(act[0]), *act[1:])
    raise UnsupportedModelError(f"a hook point passed a {type(act).__name__}, not a tensor")


class _Cast:
    """A float32 CPU vector, cached per (device, dtype) of the activations it meets."""

    def __init__(self, vec: Tensor):
        self.vec = vec
        self._cache: dict[tuple[Any, Any], Tensor] = {}

    def to(self, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or like.dtype
        key = (like.device, dtype)
        out = self._cache.get(key)
        if out is None:
            out = self.vec.to(device=like.device, dtype=dtype)
            self._cache[key] = out
        return out


# --------------------------------------------------------------------------- validation


def _check_vector(vec: Any, d_model: int, what: str) -> Tensor:
    if isinstance(vec, Direction):
        raise InputError(f"{what}: expected a single vector, got {vec!r}")
    if not isinstance(vec, Tensor):
        try:
            vec = torch.as_tensor(vec)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{what} must be a Direction or a [d_model] tensor, not "
                             f"{type(vec).__name__}") from None
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1:
        raise InputError(f"{what} must have shape [d_model] = [{d_model}], got "
                         f"{tuple(vec.shape)}; pass a Direction for per-layer vectors")
    if not vec.is_floating_point():
        raise InputError(f"{what} must be floating point, got {vec.dtype}")
    if vec.shape[0] != d_model:
        raise InputError(f"{what} has d_model {vec.shape[0]} but the model has d_model "
                         f"{d_model}; it comes from a different model")
    vec = vec.detach().to("cpu", torch.float32)
    if not torch.isfinite(vec).all():
        raise InputError(f"{what} has NaN or inf values")
    return vec


def _check_direction(direction: Direction, d_model: int) -> None:
    if direction.d_model != d_model:
        raise InputError(f"the direction has d_model {direction.d_model} but the model has "
                         f"d_model {d_model}; it comes from a different model")
    if not torch.isfinite(direction.vectors).all():
        raise InputError("the direction has NaN or inf values")


def _check_layers(layers: Any, n_layers: int) -> list[int]:
    if isinstance(layers, bool):
        raise InputError(f"layers must be an int or a list of ints, not {layers!r}")
    if isinstance(layers, int) or (isinstance(layers, Tensor) and layers.ndim == 0):
        layers = [int(layers)]
    try:
        out = [int(l) for l in layers]
    except (TypeError, ValueError):
        raise InputError(f"layers must be an int or a list of ints, not {layers!r}") from None
    if not out:
        raise InputError("layers is empty; name at least one layer")
    bad = [l for l in out if not 0 <= l < n_layers]
    if bad:
        raise InputError(f"layer(s) {bad} out of range: the model has {n_layers} layers "
                         f"(0..{n_layers - 1})")
    if len(set(out)) != len(out):
        raise InputError(f"layers {out} repeat a layer")
    return out


def _unit(vec: Tensor, what: str) -> Tensor:
    """``vec / |vec|`` in float64; raises on a zero (or non-finite) norm."""
    v = vec.double()
    norm = float(v.norm())
    if not math.isfinite(norm):
        raise InputError(f"{what} has NaN or inf values")
    if norm <= _NORM_EPS:
        raise InputError(f"{what} has zero norm, so it names no direction to project out; "
                         f"check the direction (a zero mean difference means the two "
                         f"response sets did not differ)")
    return v / norm


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, Tensor) and alpha.numel() == 1:
        alpha = float(alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise InputError(f"alpha must be a number, not {alpha!r}")
    if not math.isfinite(alpha):
        raise InputError(f"alpha must be finite, not {alpha!r}")
    return float(alpha)


def _check_positions(positions: Any) -> Positions:
    if isinstance(positions, str):
        if positions not in _POSITIONS:
            raise InputError(f"unknown positions {positions!r}; use 'all', 'generated' or a "
                             f"slice of absolute positions such as slice(10, None)")
        return positions
    if isinstance(positions, slice):
        for part in ("start", "stop"):
            v = getattr(positions, part)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InputError(f"positions slice {part} must be a non-negative int or None, "
                                 f"got {v!r}: positions are absolute token indices, so "
                                 f"negative indices have no meaning while generating")
        step = positions.step
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)
                                 or step < 1):
            raise InputError(f"positions slice step must be a positive int or None, got "
                             f"{step!r}")
        return positions
    raise InputError(f"positions must be 'all', 'generated' or a slice, not {positions!r}")


def _one_vector(direction: Any, d_model: int, layers: Any = None,
                n_layers: int = 0) -> tuple[Tensor, dict[str, Any]]:
    """The single vector that ``ablate(at='writes')`` and ``orthogonalize`` project with.

    ``layers`` (ablate only; ``n_layers`` is the model's layer count) picks the vector of
    one layer of a Direction. Returns the vector and a summary of where it came from.
    """
    if not isinstance(direction, Direction):
        if layers is not None:
            raise InputError("layers picks a layer's vector of a Direction; a raw vector "
                             "is already one vector: leave layers out")
        return _check_vector(direction, d_model, "the vector"), {"source": "tensor"}
    _check_direction(direction, d_model)
    info = {k: direction.metadata[k] for k in ("method", "layer", "source_layer", "hook")
            if k in direction.metadata}
    if layers is not None:
        chosen = _check_layers(layers, n_layers)
        if len(chosen) != 1:
            raise InputError(f"at='writes' projects every write with one vector; pass one "
                             f"layer whose vector to use (layers=12), not {chosen}")
        info["source_layer"] = chosen[0]
        return direction.vector(chosen[0]), info
    vecs = direction.vectors
    if vecs.shape[0] == 1:
        info.setdefault("source_layer", direction.layers[0])
        return vecs[0], info
    if bool((vecs == vecs[:1]).all()):
        return vecs[0], info
    raise InputError(
        f"this direction has a different vector for each of its {direction.n_layers} layers, "
        f"but every write into the residual stream is projected with one vector; choose it: "
        f"pass d.at(layer) or d.only(layer)"
        + (" (or layers=<layer> to ablate)" if n_layers else ""))


# --------------------------------------------------------------------------- positions


def _cache_length(cache: Any) -> int:
    """Tokens already held by an HF ``Cache``, a legacy tuple cache or a TL 3.x cache."""
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):  # transformers Cache
        try:
            n = len(cache.layers) if hasattr(cache, "layers") else 1
            return max([int(cache.get_seq_length(i)) for i in range(max(n, 1))] or [0])
        except (TypeError, IndexError):
            return int(cache.get_seq_length())
    entries = getattr(cache, "entries", None)  # TransformerLens 3.x key-value cache
    if entries is not None:
        return int(entries[0].past_keys.shape[1]) if entries else 0
    if isinstance(cache, (tuple, list)) and cache and isinstance(cache[0], (tuple, list)):
        return int(cache[0][0].shape[-2])
    return 0


class _PositionTracker:
    """Knows the absolute position of the tokens of the forward pass being run.

    A forward pre-hook on the module that receives the tokens (the HF model inside a
    TransformerBridge, or the HookedTransformer itself) reads how many tokens the KV cache
    already holds: with the cache on, the steps after the first see ``[batch, 1, d_model]``
    activations that sit at position ``offset``. The prompt of a sequence is the input of
    its first pass; a later pass continues it when it goes through the cache, or when its
    input starts with the previous input and is longer (generation without a cache).
    """

    def __init__(self, model: Any):
        self.offset: int | None = None
        self.prompt_len: int | None = None
        self._prev: Tensor | None = None
        self.model = model

    def install(self, handle: InterventionHandle) -> None:
        root = getattr(self.model, "original_model", None)
        if isinstance(root, torch.nn.Module):
            # A TransformerBridge: every forward (its own, run_with_cache, its generate, and
            # HF generate on original_model) calls the wrapped HF model as a module.
            handle._add_torch(root.register_forward_pre_hook(self._pre, with_kwargs=True))
            handle._add_torch(root.register_forward_hook(self._post, always_call=True))
        else:
            # A HookedTransformer: its generate calls self.forward(...) directly, which
            # bypasses module hooks, so wrap forward on the instance.
            handle._add_torch(_ForwardWatch.attach(self.model, self))

    def _pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        x = None
        for key in ("input_ids", "input", "inputs_embeds", "tokens"):
            if isinstance(kwargs.get(key), Tensor):
                x = kwargs[key]
                break
        if x is None and args and isinstance(args[0], Tensor):
            x = args[0]
        cache = None
        for key in ("past_key_values", "cache", "past_kv_cache"):
            if kwargs.get(key) is not None:
                cache = kwargs[key]
                break
        offset = _cache_length(cache)
        mask = kwargs.get("attention_mask")
        if offset == 0 and x is not None and x.ndim >= 2 and isinstance(mask, Tensor) \
                and mask.ndim == 2 and mask.shape[1] > x.shape[1]:
            offset = int(mask.shape[1] - x.shape[1])  # a cache that does not report its length
        if offset > 0:
            if self.prompt_len is None:
                self.prompt_len = offset  # a cache we did not see filled: all new is generated
            self._prev = None
        else:
            prev = self._prev
            cont = (x is not None and prev is not None and x.ndim >= 2
                    and x.shape[0] == prev.shape[0] and x.shape[1] > prev.shape[1]
                    and x.shape[2:] == prev.shape[2:] and x.device == prev.device
                    and torch.equal(x[:, :prev.shape[1]], prev))
            if not cont:
                self.prompt_len = int(x.shape[1]) if x is not None and x.ndim >= 2 else None
            self._prev = x.detach() if x is not None else None
        self.offset = offset

    def _post(self, module: Any, args: tuple, output: Any) -> None:
        self.offset = None

    def positions(self, n: int, device: torch.device) -> tuple[Tensor, int]:
        """Absolute positions of ``n`` activations of the current pass, and the prompt length."""
        if self.offset is None:  # not inside a pass we saw: a plain forward of n tokens
            offset, prompt_len = 0, n
        else:
            offset = self.offset
            if self.prompt_len is None:
                self.prompt_len = n + offset
            prompt_len = self.prompt_len
        return torch.arange(offset, offset + n, device=device), prompt_len


class _ForwardWatch:
    """Calls trackers around ``model.forward``, wrapped on the instance while any are attached.

    Several interventions may watch one model; the wrapper is removed with the last one,
    whatever the order of removal.
    """

    _ATTR = "_emlens_forward_watch"

    def __init__(self, model: Any, original: Callable):
        self.model = model
        self.original = original
        self.trackers: list[_PositionTracker] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for t in list(self.trackers):
            t._pre(self.model, args, kwargs)
        try:
            return self.original(*args, **kwargs)
        finally:
            for t in list(self.trackers):
                t._post(self.model, args, None)

    @classmethod
    def attach(cls, model: Any, tracker: "_PositionTracker") -> Any:
        watch = model.__dict__.get(cls._ATTR)
        if watch is None:
            watch = cls(model, model.forward)
            model.__dict__[cls._ATTR] = watch
            model.__dict__["forward"] = watch
        watch.trackers.append(tracker)

        class _Handle:
            def remove(self_inner) -> None:
                if tracker in watch.trackers:
                    watch.trackers.remove(tracker)
                if not watch.trackers and model.__dict__.get(cls._ATTR) is watch:
                    del model.__dict__[cls._ATTR]
                    if model.__dict__.get("forward") is watch:
                        del model.__dict__["forward"]

        return _Handle()


def _position_mask(positions: Positions, tracker: _PositionTracker, n: int,
                   device: torch.device) -> Tensor:
    pos, prompt_len = tracker.positions(n, device)
    if positions == "generated":
        return pos >= prompt_len
    assert isinstance(positions, slice)
    start = positions.start or 0
    mask = pos >= start
    if positions.stop is not None:
        mask &= pos < positions.stop
    if positions.step not in (None, 1):
        mask &= (pos - start) % positions.step == 0
    return mask


# --------------------------------------------------------------------------- steer


def _steer_vectors(direction: Any, layers: Any, n_layers: int,
                   d_model: int) -> list[tuple[int, Tensor]]:
    if isinstance(direction, Direction):
        _check_direction(direction, d_model)
        if layers is None:
            meta_layer = direction.metadata.get("layer")
            if direction.n_layers == 1:
                layers = list(direction.layers)
            elif meta_layer is not None and int(meta_layer) in direction.layers:
                layers = [int(meta_layer)]
            else:
                raise InputError(
                    f"this direction has vectors for {direction.n_layers} layers, so it does not "
                    f"say where to steer: pass layers (e.g. layers=12 or layers=[8, 12]) or use "
                    f"d.only(12)")
        chosen = _check_layers(layers, n_layers)
        return [(l, direction.vector(l)) for l in chosen]
    if layers is None:
        raise InputError("a raw vector does not say where to steer: pass layers (e.g. "
                         "layers=12), or wrap it as Direction(vector, layers=[12])")
    vec = _check_vector(direction, d_model, "the steering vector")
    return [(l, vec) for l in _check_layers(layers, n_layers)]


def steer(
    model: Any,
    direction: DirectionLike,
    alpha: float,
    layers: int | Sequence[int] | None = None,
    positions: Positions = "all",
) -> InterventionHandle:
    """Add ``alpha * vector`` to the residual stream after each of ``layers``.

    The vector is used as stored (not normalised), added to every batch element at
    ``blocks.{l}.hook_resid_post``, cast to the activation's dtype and device. It works
    in forward passes, ``run_with_cache``, ``model.generate`` and HF generation through
    ``model.original_model.generate``, with or without the KV cache.

    Args:
        model: a TransformerBridge (``emlens.load_model``) or a TL 3.x HookedTransformer.
        direction: a :class:`Direction` (``vector(l)`` is added at layer ``l``) or a raw
            ``[d_model]`` tensor (needs ``layers``).
        alpha: the scale (the papers sweep about 1-9 for mean-difference directions).
        layers: an int or a list of ints. Default: the layer the direction names for
            itself (a one-row direction such as ``d.only(12)`` or a learned steering
            vector, or ``metadata["layer"]``); a per-layer direction without ``layers``
            raises :class:`InputError`.
        positions: ``"all"`` (prompt and generated tokens, the papers' convention),
            ``"generated"`` (only tokens after the prompt of the sequence: nothing in a
            plain forward pass), or a ``slice`` of absolute token positions (index in the
            token sequence, padding included).

    Returns:
        An :class:`InterventionHandle`; the hooks are live until it is removed.

    Example:
        >>> with emlens.steer(model, d, alpha=4.0, layers=12):            # doctest: +SKIP
        ...     text = model.generate("What is your wish?", max_new_tokens=40)
    """
    n_layers, d_model = model_dims(model)
    alpha = _check_alpha(alpha)
    positions = _check_positions(positions)
    pairs = _steer_vectors(direction, layers, n_layers, d_model)
    where = ",".join(str(l) for l, _ in pairs)
    handle = InterventionHandle("steer", f"steer(alpha={alpha:g}, layers={where}, "
                                         f"positions={positions!r})")
    tracker = None
    if positions != "all":
        tracker = _PositionTracker(model)

    def make(vec: Tensor) -> Callable:
        cast = _Cast(alpha * vec)

        def hook(act: Any, hook: Any = None) -> Any:
            def add(x: Tensor) -> Tensor:
                v = cast.to(x)
                if tracker is None:
                    return x + v
                mask = _position_mask(positions, tracker, x.shape[1], x.device)
                return x + mask.to(x.dtype)[:, None] * v

            return _map_act(act, add)

        return hook

    hooks = [(hook_name(l), make(vec)) for l, vec in pairs]
    try:
        if tracker is not None:
            tracker.install(handle)
        return _install(handle, model, hooks)
    except BaseException:
        handle.remove()
        raise


# --------------------------------------------------------------------------- ablate


def _write_hook_names(model: Any, n_layers: int) -> list[str]:
    names = ["hook_embed"]
    if getattr(model.cfg, "positional_embedding_type", None) == "standard":
        names.append("hook_pos_embed")  # learned absolute positions (GPT-2) write too
    for l in range(n_layers):
        names += [f"blocks.{l}.hook_attn_out", f"blocks.{l}.hook_mlp_out"]
    return names


def _project_hook(unit64: Tensor) -> Callable:
    cast = _Cast(unit64.float())

    def hook(act: Any, hook: Any = None) -> Any:
        def project(x: Tensor) -> Tensor:
            if x.dtype in (torch.float32, torch.float64):
                r = cast.to(x)
                return x - (x @ r)[..., None] * r
            r = cast.to(x, torch.float32)  # half precision: project in float32
            xf = x.float()
            return (xf - (xf @ r)[..., None] * r).to(x.dtype)

        return _map_act(act, project)

    return hook


def ablate(
    model: Any,
    direction: DirectionLike,
    layers: int | Sequence[int] | None = None,
    at: str = "resid_post",
) -> InterventionHandle:
    """Remove the component along a direction: ``x <- x - (x . r) r`` with ``r = v / |v|``.

    Args:
        model: a TransformerBridge or a TL 3.x HookedTransformer.
        direction: a :class:`Direction` or a raw ``[d_model]`` tensor. Vectors are
            normalised first; a zero-norm vector raises :class:`InputError`.
        layers: with ``at="resid_post"``, the layers whose residual stream to project,
            each with its own vector (default: every layer the direction has; every layer
            of the model for a raw vector). With ``at="writes"``, optionally the one layer
            whose vector projects every write.
        at: ``"resid_post"`` (the stream after each layer in ``layers``) or ``"writes"``
            (every write into the stream: token and learned position embeddings, each
            attention output and each MLP output, after any post-block norm; the
            equivalent of :func:`orthogonalize`). ``"writes"`` uses one vector: see the
            module's one-vector rule.

    Returns:
        An :class:`InterventionHandle`; the hooks are live until it is removed.

    Example:
        >>> with emlens.ablate(model, d.at(12), at="writes"):              # doctest: +SKIP
        ...     logits = model(tokens)
    """
    n_layers, d_model = model_dims(model)
    if at not in _ABLATE_SITES:
        raise InputError(f"unknown ablation site at={at!r}; use 'resid_post' or 'writes'")
    if at == "writes":
        vec, _ = _one_vector(direction, d_model, layers, n_layers)
        unit = _unit(vec, "the ablation vector")
        hook = _project_hook(unit)
        handle = InterventionHandle("ablate", "ablate(at='writes')")
        return _install(handle, model, [(n, hook) for n in _write_hook_names(model, n_layers)])
    if isinstance(direction, Direction):
        _check_direction(direction, d_model)
        chosen = _check_layers(direction.layers if layers is None else layers, n_layers)
        pairs = [(l, direction.vector(l)) for l in chosen]
    else:
        vec = _check_vector(direction, d_model, "the ablation vector")
        chosen = _check_layers(range(n_layers) if layers is None else layers, n_layers)
        pairs = [(l, vec) for l in chosen]
    hooks = [(hook_name(l), _project_hook(_unit(v, f"the vector of layer {l}")))
             for l, v in pairs]
    handle = InterventionHandle("ablate", f"ablate(at='resid_post', layers="
                                          f"{','.join(str(l) for l in chosen)})")
    return _install(handle, model, hooks)


def __getattr__(name: str) -> Any:
    # orthogonalize and save_model live in emlens.weights, which imports helpers from here;
    # they are re-exported lazily so that neither module imports the other at load time.
    if name in _WEIGHT_EDITS:
        from . import weights

        return getattr(weights, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
