"""Compatibility and speed shims for the pinned TransformerLens and transformers releases.

:func:`patch_transformer_lens` (idempotent; ``emlens.load_model`` calls it before it boots
a bridge) applies one correctness shim and four speed shims.

**KV-cache keyword (correctness).** transformer-lens 4.3's attention bridges look for the
KV cache under the keyword ``past_key_values`` (or ``layer_past``), but transformers 5.x
decoder layers hand it to the attention module as ``cache``. Without this shim the cache
is never extended, so every cached decoding step attends to itself alone and generation
with the KV cache (the bridge's ``generate`` and HF ``generate`` on the wrapped model)
produces garbage while uncached forwards stay exact. The shim forwards ``cache`` to the
name the bridge reads; it does nothing when the bridge already finds the cache.

**Speed shims.** Each replaces one TransformerLens method by one that returns the same
values and has the same effects, minus work whose result is thrown away. Each is
installed only when the method's source is the one it was written against
(transformer-lens 4.3.0, checked by sha256): another release keeps its own code, so an
upgrade can make emlens slower but never different. tests/test_models.py checks each
against TL's own on every architecture emlens supports (same hook registry and names;
bit-identical logits, caches and generations; hooks on the skipped hook points still
fire), and ``test_speed_shims_installed`` fails when a release stops matching. Measured
on SmolLM2-135M (30 layers, one CPU thread):

1. ``TransformerBridge._scan_existing_hooks`` (bridge construction). It walks the
   component tree twice; for each module it calls ``dir(module)`` and ``getattr`` on every
   public name there, some 150 names per module, nearly all of them methods inherited
   from ``nn.Module``. A bridge has ~50 modules per layer (mostly HookPoints), so the two
   scans took ~370 ms of a ~630 ms boot, more than loading the weights. The replacement
   visits the same modules and names in the same (sorted) order, but leaves out names
   that resolve to a function on the class (``getattr`` can only return a bound method
   there, never a HookPoint); the per-class part of that list is computed once per class.
2. ``GeneralizedComponent.__call__`` (every forward). It enters accelerate's
   ``align_module_device(original_component)`` on each call of each component (~12 per
   layer); that context manager does nothing unless accelerate attached an offload hook
   (``_hf_hook``) to the module, but costs a generator, an import and a failing
   ``hasattr`` each time. The replacement skips it when the module has no ``_hf_hook``.
3. ``BlockBridge._filter_kwargs_for_forward`` (every block call). It runs
   ``inspect.signature`` on the wrapped layer's ``forward`` at every call; the
   replacement caches the signature's parameter names per function.
4. ``NormalizationBridge._hf_autograd_forward_with_hooks`` (every norm call). It computes
   the norm a second time, op by op, to feed ``hook_scale`` and ``hook_normalized``, and
   then returns HF's own norm unless a hook on those two edited the value. When neither
   has any hook (nor any global module hook is set), the replacement returns HF's norm
   directly: the same tensor, without the ~10 discarded ops.

Shims 2-4 take steered ``emlens.sample`` on SmolLM2 (batch 8, 32 new tokens) from ~0.85x
to ~0.92x the speed of plain HF ``generate``, and shim 4 ``collect_means`` from ~1.23x to
~1.3x plain HF (the ceiling is ~1.2-1.3x: see bench/directions.py); shim 1 takes the
bridge construction from ~630 ms to ~330 ms.

**Block copies (bridge construction).** :func:`fast_boot_copies` is a context manager
``load_model`` wraps around ``boot_transformers``. TL deep-copies a template block
bridge once per layer, and most of that time goes to the ~580 ``OrderedDict`` objects per
block (the hook dicts of ~50 modules, nearly all empty): ``copy.deepcopy`` has no
fast path for ``OrderedDict``, so each goes through ``__reduce_ex__`` and
``copyreg._slotnames``, which cannot cache its answer on a built-in type and recomputes
it every time. While the context is active, ``copy``'s dispatch table has an entry for
``OrderedDict`` (exactly that type, not subclasses) that builds the same copy directly:
a new ``OrderedDict`` with the deep-copied instance ``__dict__`` and items, registered in
the memo first, as ``copy._reconstruct`` does. This saves ~60-100 ms per SmolLM2 load.
It is removed on exit (unless something else replaced it meanwhile).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import hashlib
import inspect
import logging
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)

_PATCHED = "_emlens_cache_kwarg_shim"
_SHIM = "_emlens_speed_shim"
#: Names TL's scan skips (heavy weight properties); copied from transformer-lens 4.3.0.
_SKIPPED_ATTRS = frozenset(["OV", "QK", "W_V", "W_O", "W_Q", "W_K", "W_in", "W_gate", "W_out",
                            "b_V", "b_O", "b_Q", "b_K", "b_in", "b_out"])
_METHOD_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
                 types.WrapperDescriptorType, types.MethodWrapperType,
                 types.ClassMethodDescriptorType, staticmethod, classmethod)


def patch_transformer_lens() -> None:
    """Apply the shims (idempotent)."""
    try:
        from transformer_lens.model_bridge.generalized_components.attention import (
            AttentionBridge,
        )
    except ImportError:  # TL 3.x: no bridge, nothing to patch
        return
    _patch_kv_cache_kwarg(AttentionBridge)
    for shim in _speed_shims():
        shim.install()


def _patch_kv_cache_kwarg(AttentionBridge) -> None:
    original = AttentionBridge._update_kv_cache
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def _update_kv_cache(self, k, v, **kwargs):
        if kwargs.get("past_key_values") is None and kwargs.get("layer_past") is None \
                and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs["cache"]
        return original(self, k, v, **kwargs)

    setattr(_update_kv_cache, _PATCHED, True)
    AttentionBridge._update_kv_cache = _update_kv_cache


# --------------------------------------------------------------------------- the mechanism


class _SpeedShim:
    """One TL method replaced by ``make(original)``, if its source is the expected one."""

    def __init__(self, owner: type, attr: str, sha256: str,
                 make: Callable[[Callable], Callable]):
        self.owner, self.attr, self.sha256, self.make = owner, attr, sha256, make

    @property
    def name(self) -> str:
        return f"{self.owner.__name__}.{self.attr}"

    def current(self) -> Any:
        return self.owner.__dict__.get(self.attr)

    def installed(self) -> bool:
        return getattr(self.current(), _SHIM, False)

    def source_matches(self) -> bool:
        func = self.current()
        func = getattr(func, "__wrapped__", func) if self.installed() else func
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            return False
        return hashlib.sha256(source.encode()).hexdigest() == self.sha256

    def install(self) -> None:
        if self.installed():
            return
        if not self.source_matches():
            log.debug("%s is not the transformer-lens 4.3.0 one; keeping it (slower, not "
                      "different)", self.name)
            return
        original = self.current()
        replacement = self.make(original)
        replacement.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(replacement, _SHIM, True)
        setattr(self.owner, self.attr, replacement)

    def uninstall(self) -> None:
        if self.installed():
            setattr(self.owner, self.attr, self.current().__wrapped__)


@functools.cache
def _speed_shims() -> tuple[_SpeedShim, ...]:
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.generalized_components.base import (
        GeneralizedComponent,
    )
    from transformer_lens.model_bridge.generalized_components.block import BlockBridge
    from transformer_lens.model_bridge.generalized_components.normalization import (
        NormalizationBridge,
    )

    return (
        _SpeedShim(TransformerBridge, "_scan_existing_hooks",
                   "580b3efb57d9f19f1501d167f0f332958f410c15a76686b6c72041dfe5ce52e2",
                   lambda original: _fast_scan_existing_hooks),
        _SpeedShim(GeneralizedComponent, "__call__",
                   "3686b386d5dfcda23b1ef4505c1817a56260b52b8a1cce162610704f76f8fda3",
                   functools.partial(_make_component_call, GeneralizedComponent)),
        _SpeedShim(BlockBridge, "_filter_kwargs_for_forward",
                   "e0d40dae17cdc0f042f6e593128cc1d1d90b300cc9262dcd91387bf9fbe5a1ad",
                   _make_filter_kwargs),
        _SpeedShim(NormalizationBridge, "_hf_autograd_forward_with_hooks",
                   "6937e584f90ada1e1360ebda5e5e3b8d012646f94608d1e8a043ba2af65bcbeb",
                   _make_norm_forward),
    )


def speed_shims_installed() -> dict[str, bool]:
    """Which speed shims are in place (by ``Class.method``)."""
    return {s.name: s.installed() for s in _speed_shims()}


def unpatch_speed_shims() -> None:
    """Restore TransformerLens' own methods (for tests that compare the two)."""
    for shim in _speed_shims():
        shim.uninstall()


# --------------------------------------------------------------------------- 1. hook scan


@functools.cache
def _class_scan_names(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """Public names of ``dir(cls)`` TL's scan would look at, and those that are methods.

    Returns ``(names_to_get, method_names)``: the first are the class-level names whose
    ``getattr`` may return something other than a bound method (properties, plain class
    attributes); the second are the names that resolve to functions on the class.
    """
    keep, methods = [], set()
    for name in dir(cls):
        if name.startswith("_") or name in _SKIPPED_ATTRS or name in (
                "original_component", "original_model") or name[0].isdigit():
            continue
        raw = None
        for klass in cls.__mro__:
            if name in klass.__dict__:
                raw = klass.__dict__[name]
                break
        if isinstance(raw, _METHOD_TYPES):
            methods.add(name)
        else:
            keep.append(name)
    return tuple(keep), frozenset(methods)


def _module_scan_names(mod, cls: type) -> list[str]:
    """The names of ``dir(mod)`` TL's scan looks at, less those that are class methods."""
    class_names, method_names = _class_scan_names(cls)
    d = mod.__dict__
    # What nn.Module.__dir__ adds to dir(type(mod)), minus inherited methods (unless the
    # instance shadows one, which makes getattr return the instance's value).
    instance = [k for k in (*d, *d.get("_parameters", ()), *d.get("_modules", ()),
                            *d.get("_buffers", ()))
                if not k.startswith("_") and k not in _SKIPPED_ATTRS
                and k not in ("original_component", "original_model") and not k[0].isdigit()
                and (k not in method_names or k in d)]
    return sorted(set(class_names).union(instance))


def _fast_scan_existing_hooks(self, module, prefix: str = "") -> None:
    """``TransformerBridge._scan_existing_hooks`` of transformer-lens 4.3.0, without the
    ``getattr`` of every inherited method (see the module docstring)."""
    from transformer_lens.hook_points import HookPoint

    visited: set[int] = set()
    named_hook_ids = {id(hp) for hp in self._hook_registry.values() if hp.name is not None}
    registry = self._hook_registry
    skip_children = ("original_component", "_original_component", "original_model")

    def scan_module(mod, path: str = "") -> None:
        obj_id = id(mod)
        if obj_id in visited:
            return
        visited.add(obj_id)
        if hasattr(mod, "get_hooks") and callable(mod.get_hooks):
            component_hooks = mod.get_hooks()
            if isinstance(component_hooks, dict):
                for hook_name, hook in component_hooks.items():
                    full_name = f"{path}.{hook_name}" if path else hook_name
                    if id(hook) not in named_hook_ids:
                        hook.name = full_name
                        named_hook_ids.add(id(hook))
                    registry[full_name] = hook
        cls = type(mod)
        if cls.__dir__ is not torch.nn.Module.__dir__:  # a class of its own: ask it
            names = sorted({n for n in dir(mod) if not n.startswith("_")
                            and n not in _SKIPPED_ATTRS
                            and n not in ("original_component", "original_model")})
        else:
            names = _module_scan_names(mod, cls)
        for attr_name in names:
            try:
                attr = getattr(mod, attr_name)
            except (AttributeError, NameError, RuntimeError, TypeError):
                continue
            if isinstance(attr, HookPoint):
                name = f"{path}.{attr_name}" if path else attr_name
                if id(attr) not in named_hook_ids:
                    attr.name = name
                    named_hook_ids.add(id(attr))
                registry[name] = attr
        for child_name, child_module in mod.named_children():
            if child_name in skip_children:
                continue
            scan_module(child_module, f"{path}.{child_name}" if path else child_name)

    scan_module(module, prefix)


# --------------------------------------------------------------------------- 2. __call__


def _make_component_call(GeneralizedComponent: type, original: Callable) -> Callable:
    module_getattr = torch.nn.Module.__getattr__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``GeneralizedComponent.__call__`` without accelerate's ``align_module_device``
        where it has nothing to do (no offload hook on the wrapped module)."""
        component = self._modules.get("_original_component")
        if component is None or ("_hf_hook" not in component.__dict__
                                 and type(component).__getattr__ is module_getattr):
            return super(GeneralizedComponent, self).__call__(*args, **kwargs)
        return original(self, *args, **kwargs)

    return __call__


# --------------------------------------------------------------------------- 3. kwargs filter


def _make_filter_kwargs(original: Callable) -> Callable:
    # Per forward function (weakly held): {bound?: (parameter names, has **kwargs)}.
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def signature_info(forward: Any) -> tuple[list[str], bool] | None:
        bound = isinstance(forward, types.MethodType)
        key = forward.__func__ if bound else forward
        try:
            info = cache.get(key, {}).get(bound)
        except TypeError:  # not weak-referenceable: no caching
            key, info = None, None
        if info is None:
            try:
                sig = inspect.signature(forward)
            except (ValueError, TypeError):
                return None
            info = (list(sig.parameters),
                    any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()))
            if key is not None:
                cache.setdefault(key, {})[bound] = info
        return info

    def _filter_kwargs_for_forward(self, kwargs: dict, num_positional_args: int = 0) -> dict:
        """``BlockBridge._filter_kwargs_for_forward`` with the signature looked up once."""
        component = self.original_component
        if component is None:
            return kwargs
        info = signature_info(component.forward)
        if info is None:
            return kwargs
        param_list, accepts_var_keyword = info
        if accepts_var_keyword:
            return kwargs
        valid_params = set(param_list)
        positional_param_names = set(param_list[:num_positional_args])
        return {k: v for k, v in kwargs.items()
                if k in valid_params and k not in positional_param_names}

    return _filter_kwargs_for_forward


# --------------------------------------------------------------------------- 4. norm


def _unhooked(point: Any) -> bool:
    return not (point.fwd_hooks or point.bwd_hooks or point._forward_hooks
                or point._forward_pre_hooks or point._backward_hooks
                or point._backward_pre_hooks)


def _make_norm_forward(original: Callable) -> Callable:
    from torch.nn.modules import module as torch_module

    def _hf_autograd_forward_with_hooks(self, x: torch.Tensor) -> torch.Tensor:
        """HF's own norm when no hook could see or edit ``hook_scale``/``hook_normalized``
        (TL computes them anyway and discards them); otherwise TL's method."""
        component = self._modules.get("_original_component")
        if component is not None and not isinstance(component, torch.nn.Identity) \
                and _unhooked(self.hook_scale) and _unhooked(self.hook_normalized) \
                and not (torch_module._global_forward_hooks
                         or torch_module._global_forward_pre_hooks
                         or torch_module._global_backward_hooks
                         or torch_module._global_backward_pre_hooks):
            result = component(x)
            if result.dtype != x.dtype:
                result = result.to(x.dtype)
            return result
        return original(self, x)

    return _hf_autograd_forward_with_hooks


# --------------------------------------------------------------------------- block copies


def _deepcopy_ordered_dict(x: collections.OrderedDict, memo: dict,
                           deepcopy: Callable = copy.deepcopy) -> collections.OrderedDict:
    """``copy.deepcopy`` of an exact ``OrderedDict``, as its ``__reduce_ex__`` path makes it."""
    y: collections.OrderedDict = collections.OrderedDict()
    memo[id(x)] = y
    state = x.__dict__
    if state:
        y.__dict__.update(deepcopy(state, memo))
    for key, value in x.items():
        y[deepcopy(key, memo)] = deepcopy(value, memo)
    return y


@contextlib.contextmanager
def fast_boot_copies() -> Iterator[None]:
    """While active, ``copy.deepcopy`` copies ``OrderedDict`` objects directly (see the module
    docstring); restores ``copy``'s dispatch table on exit."""
    table = copy._deepcopy_dispatch  # type: ignore[attr-defined]
    if collections.OrderedDict in table or _FAST_COPIES_DISABLED:
        yield
        return
    table[collections.OrderedDict] = _deepcopy_ordered_dict
    try:
        yield
    finally:
        if table.get(collections.OrderedDict) is _deepcopy_ordered_dict:
            del table[collections.OrderedDict]


#: Tests set this to compare with plain deepcopy.
_FAST_COPIES_DISABLED = False
