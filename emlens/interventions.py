"""Hook interventions on the residual stream: steering and directional ablation.

:func:`steer` and :func:`ablate` install hooks through TransformerLens hook points (the API
shared by TL 4.x ``TransformerBridge`` and TL 3.x ``HookedTransformer``) and return an
:class:`InterventionHandle`: a context manager whose exit removes exactly the hooks it
installed, also when the body raises. Several interventions can be active at once; they
apply in the order they were installed. The weight-space counterparts,
:func:`~emlens.weights.orthogonalize` and :func:`~emlens.weights.save_model`, live in
:mod:`emlens.weights`.

Positions. Steering and ablation can be limited to generated tokens or to a slice of
absolute token positions (one rule, ``positions=``, for both). With the KV cache on,
decoding steps after the first see one position, so a light forward pre-hook on the
module that receives the tokens reads the cache length (a wrapper of ``forward`` on a
HookedTransformer, whose ``generate`` bypasses module hooks).

One-vector rule. ``ablate(at="writes")`` and ``orthogonalize`` project every write with
*one* vector: a raw ``[d_model]`` tensor; a :class:`~emlens.directions.Direction` holding
one vector (one row, as ``d.single_layer(l)`` gives, or identical rows, as
``d.repeat_layer(l)`` gives); or, for ``ablate``, the vector of the single layer passed as
``layers`` (see :func:`emlens.directions.one_vector`). A per-layer direction
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
from typing import Any, Callable, Iterable, Sequence, Union

import torch
from torch import Tensor

from .directions import Direction, DirectionLike, check_direction, one_vector
from .errors import EmlensError, InputError, UnsupportedModelError
from .models import hook_name, model_dims
from .vectors import as_scalar, check_vector, model_layers, unit

__all__ = ["InterventionHandle", "steer", "ablate", "Positions", "active_interventions"]

log = logging.getLogger(__name__)

#: Where steering applies: "all", "generated" or a slice of absolute token positions.
Positions = Union[str, slice]

_POSITIONS = ("all", "generated")
_ABLATE_SITES = ("resid_post", "writes")


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
        #: what the hooks do, as plain data (for backends that run the model elsewhere,
        #: such as :mod:`emlens.vllm_engine`); set by :func:`steer` and :func:`ablate`
        self.spec: dict[str, Any] | None = None
        self._model: Any = None

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
        active = getattr(self._model, "__dict__", {}).get(_ACTIVE)
        if active is not None and self in active:
            active.remove(self)
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


_ACTIVE = "_emlens_interventions"


def active_interventions(model: Any) -> list[InterventionHandle]:
    """The interventions installed on ``model`` and not removed yet, in installation order.

    Example:
        >>> with emlens.steer(model, d, 4.0, layers=1):                  # doctest: +SKIP
        ...     [h.kind for h in active_interventions(model)]
        ['steer']
    """
    return list(getattr(model, "__dict__", {}).get(_ACTIVE, ()))


def _install(handle: InterventionHandle, model: Any,
             hooks: Iterable[tuple[str, Callable]]) -> InterventionHandle:
    """Install all hooks or none."""
    try:
        for name, fn in hooks:
            handle._add_hook(model, name, fn)
    except BaseException:
        handle.remove()
        raise
    handle._model = model
    model.__dict__.setdefault(_ACTIVE, []).append(handle)
    log.debug("installed %s", handle.description)
    return handle


def _install_tracked(handle: InterventionHandle, model: Any, tracker: Any,
                     hooks: Iterable[tuple[str, Callable]]) -> InterventionHandle:
    """:func:`_install`, after the position tracker (if any) the hooks read."""
    try:
        if tracker is not None:
            tracker.install(handle)
        return _install(handle, model, hooks)
    except BaseException:
        handle.remove()
        raise


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
        self.pad: Tensor | None = None  # per row: left-padding tokens before its first real one
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
                self.pad = _left_padding(mask, x)
            self._prev = x.detach() if x is not None else None
        self.offset = offset

    def _post(self, module: Any, args: tuple, output: Any) -> None:
        self.offset = None

    def positions(self, n: int, device: torch.device) -> tuple[Tensor, Tensor, int]:
        """Of ``n`` activations of the current pass: their positions counted from each
        sequence's first real token (``[n]``, or ``[batch, n]`` under left padding; padding
        is negative), their indices in the padded input (``[n]``), and the prompt length."""
        if self.offset is None:  # not inside a pass we saw: a plain forward of n tokens
            offset, prompt_len, pad = 0, n, None
        else:
            offset, pad = self.offset, self.pad
            if self.prompt_len is None:
                self.prompt_len = n + offset
            prompt_len = self.prompt_len
        index = torch.arange(offset, offset + n, device=device)
        if pad is None:
            return index, index, prompt_len
        return index[None, :] - pad.to(device)[:, None], index, prompt_len


def _left_padding(mask: Any, x: Any) -> Tensor | None:
    """Per row, the padding tokens before the first real one, from a prompt pass's 2-D
    attention mask (left-padded batches, as ``generate`` takes them); None without padding."""
    if not (isinstance(mask, Tensor) and isinstance(x, Tensor) and mask.ndim == 2
            and x.ndim >= 2 and mask.shape[:2] == x.shape[:2]):
        return None
    pad = ((mask != 0).long().cumsum(-1) == 0).sum(-1)
    return pad.cpu() if bool(pad.any()) else None


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
    pos, index, prompt_len = tracker.positions(n, device)
    if positions == "generated":
        return index >= prompt_len  # the prompt is padded to one width: same for every row
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
        check_direction(direction, d_model)
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
        chosen = model_layers(layers, n_layers)
        return [(l, direction.vector(l)) for l in chosen]
    if layers is None:
        raise InputError("a raw vector does not say where to steer: pass layers (e.g. "
                         "layers=12), or wrap it as Direction(vector, layers=[12])")
    vec = check_vector(direction, d_model, "the steering vector")
    return [(l, vec) for l in model_layers(layers, n_layers)]


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
            plain forward pass), or a ``slice`` of token positions in the sequence,
            counted from its first real token (left padding in a batch is not counted;
            see :func:`ablate`).

    Returns:
        An :class:`InterventionHandle`; the hooks are live until it is removed.

    Example:
        >>> with emlens.steer(model, d, alpha=4.0, layers=12):            # doctest: +SKIP
        ...     text = model.generate("What is your wish?", max_new_tokens=40)
    """
    n_layers, d_model = model_dims(model)
    alpha = as_scalar(alpha, "alpha")
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
                return x + mask.to(x.dtype)[..., None] * v

            return _map_act(act, add)

        return hook

    hooks = [(hook_name(l), make(vec)) for l, vec in pairs]
    handle.spec = {"op": "steer", "positions": positions,
                   "layers": {l: (alpha * vec.detach().float().cpu()) for l, vec in pairs}}
    return _install_tracked(handle, model, tracker, hooks)


# --------------------------------------------------------------------------- ablate


def _write_hook_names(model: Any, n_layers: int) -> list[str]:
    names = ["hook_embed"]
    if getattr(model.cfg, "positional_embedding_type", None) == "standard":
        names.append("hook_pos_embed")  # learned absolute positions (GPT-2) write too
    for l in range(n_layers):
        names += [f"blocks.{l}.hook_attn_out", f"blocks.{l}.hook_mlp_out"]
    return names


def _project_hook(unit64: Tensor, positions: Positions = "all",
                  tracker: _PositionTracker | None = None) -> Callable:
    """A hook projecting ``x <- x - (x . r) r`` at the positions ``positions`` selects (all
    of them without a tracker)."""
    cast = _Cast(unit64.float())

    def hook(act: Any, hook: Any = None) -> Any:
        def project(x: Tensor) -> Tensor:
            half = x.dtype not in (torch.float32, torch.float64)
            r = cast.to(x, torch.float32 if half else None)  # half precision: in float32
            xf = x.float() if half else x
            coef = xf @ r
            if tracker is not None:
                mask = _position_mask(positions, tracker, x.shape[1], x.device)
                coef = coef * mask.to(coef.dtype)
            out = xf - coef[..., None] * r
            return out.to(x.dtype) if half else out

        return _map_act(act, project)

    return hook


def ablate(
    model: Any,
    direction: DirectionLike,
    layers: int | Sequence[int] | None = None,
    at: str = "resid_post",
    positions: Positions = "all",
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
        positions: which token positions are projected, as for :func:`steer`: ``"all"``
            (the default), ``"generated"`` (only tokens after the prompt) or a ``slice`` of
            positions in the sequence, counted from its first real token: in a left-padded
            batch (``generate`` with an attention mask, as :func:`emlens.sample` runs it)
            the padding is not counted, so ``slice(1, None)`` spares every row's first
            token whatever its padding. The positions stay absolute while generating with the KV cache (a decoding step
            that sees one token knows where it sits), in ``model.generate``, HF generation
            on ``model.original_model`` and so :func:`emlens.sample`. Use it to spare an
            attention sink: SmolLM2's first token carries a residual norm near 25,000, and
            projecting a mean-difference direction out of it at every layer collapses
            generation, while ``positions=slice(1, None)`` leaves it alone. With
            ``at="writes"`` a spared position keeps every write (embedding, attention and
            MLP outputs) of that position; other positions still read it through
            attention. Known gap: on a TL 3.x HookedTransformer, ``at="writes"``
            with positions other than "all" is exact in forward passes but not yet in its
            own ``generate``; TL 4 bridges (and HF generation, so ``emlens.sample``) are.

    Returns:
        An :class:`InterventionHandle`; the hooks are live until it is removed.

    Example:
        >>> with emlens.ablate(model, d.at(12), at="writes"):              # doctest: +SKIP
        ...     logits = model(tokens)
    """
    n_layers, d_model = model_dims(model)
    if at not in _ABLATE_SITES:
        raise InputError(f"unknown ablation site at={at!r}; use 'resid_post' or 'writes'")
    positions = _check_positions(positions)
    tracker = None if positions == "all" else _PositionTracker(model)
    where = "" if positions == "all" else f", positions={positions!r}"
    if at == "writes":
        layer = None
        if layers is not None:
            chosen = model_layers(layers, n_layers)
            if len(chosen) != 1:
                raise InputError(f"at='writes' projects every write with one vector; pass one "
                                 f"layer whose vector to use (layers=12), not {list(chosen)}")
            layer = chosen[0]
        vec, _ = one_vector(direction, d_model, layer)
        r = unit(vec, "the ablation vector")
        hook = _project_hook(r, positions, tracker)
        handle = InterventionHandle("ablate", f"ablate(at='writes'{where})")
        handle.spec = {"op": "ablate_writes", "positions": positions, "unit": r.float().cpu()}
        return _install_tracked(handle, model, tracker,
                                [(n, hook) for n in _write_hook_names(model, n_layers)])
    if isinstance(direction, Direction):
        check_direction(direction, d_model)
        chosen = model_layers(layers, n_layers, default=direction.layers)
        pairs = [(l, direction.vector(l)) for l in chosen]
    else:
        vec = check_vector(direction, d_model, "the ablation vector")
        chosen = model_layers(layers, n_layers, default=range(n_layers))
        pairs = [(l, vec) for l in chosen]
    units = {l: unit(v, f"the vector of layer {l}") for l, v in pairs}
    hooks = [(hook_name(l), _project_hook(u, positions, tracker)) for l, u in units.items()]
    handle = InterventionHandle("ablate", f"ablate(at='resid_post', layers="
                                          f"{','.join(str(l) for l in chosen)}{where})")
    handle.spec = {"op": "ablate_resid", "positions": positions,
                   "layers": {l: u.float().cpu() for l, u in units.items()}}
    return _install_tracked(handle, model, tracker, hooks)
