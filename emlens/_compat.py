"""Compatibility and speed shims for the pinned TransformerLens and transformers releases.

Two shims, both applied by :func:`patch_transformer_lens` (idempotent, called by
``emlens.load_model`` before it boots a bridge):

1. **KV-cache keyword.** transformer-lens 4.3's attention bridges look for the KV cache
   under the keyword ``past_key_values`` (or ``layer_past``), but transformers 5.x decoder
   layers hand it to the attention module as ``cache``. Without this shim the cache is
   never extended, so every cached decoding step attends to itself alone and generation
   with the KV cache (the bridge's ``generate`` and HF ``generate`` on the wrapped model)
   produces garbage while uncached forwards stay exact. The shim forwards ``cache`` to the
   name the bridge reads; it does nothing when the bridge already finds the cache.

2. **Hook-registry scan.** ``TransformerBridge.__init__`` walks its component tree twice
   (``_scan_existing_hooks``) to find every ``HookPoint``. For each module it calls
   ``dir(module)`` and ``getattr`` on every public name there, which on an ``nn.Module``
   means some 150 names, almost all of them methods inherited from ``nn.Module``. A bridge
   has about 50 modules per layer (most of them HookPoints), so on SmolLM2-135M (30
   layers) the two scans took ~370 ms of a ~630 ms boot on one CPU thread, more than
   loading the weights. The replacement visits the same modules in the same order and
   looks at the same names in the same (sorted) order, except that names which resolve
   to a plain function on the class (a method: ``getattr`` can only return a bound
   method, never a HookPoint) are left out; the per-class part of that list is computed
   once per class. The registry and every hook's ``name`` come out identical; that is
   tested on every architecture emlens supports (tests/test_models.py) against TL's own
   scan. The replacement is installed only when TL's ``_scan_existing_hooks`` source is
   the one it was written against (transformer-lens 4.3.0); any other release keeps its
   own scan, so an upgrade can make loading slower but never different.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import types
from typing import Any

import torch

log = logging.getLogger(__name__)

_PATCHED = "_emlens_cache_kwarg_shim"
_FAST_SCAN = "_emlens_fast_scan"
#: sha256 of ``inspect.getsource(TransformerBridge._scan_existing_hooks)`` in
#: transformer-lens 4.3.0, the scan :func:`_fast_scan_existing_hooks` reproduces.
_SCAN_SOURCE_SHA256 = "580b3efb57d9f19f1501d167f0f332958f410c15a76686b6c72041dfe5ce52e2"
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
    _patch_hook_scan()


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


# --------------------------------------------------------------------------- hook scan


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


def _scan_source_ok(func: Any) -> bool:
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    return hashlib.sha256(source.encode()).hexdigest() == _SCAN_SOURCE_SHA256


def _patch_hook_scan() -> None:
    from transformer_lens.model_bridge import TransformerBridge

    current = TransformerBridge.__dict__.get("_scan_existing_hooks")
    if current is None or getattr(current, _FAST_SCAN, False):
        return
    if not _scan_source_ok(current):
        log.debug("TransformerBridge._scan_existing_hooks is not the transformer-lens 4.3.0 "
                  "one; keeping it (loading is slower, not different)")
        return
    setattr(_fast_scan_existing_hooks, _FAST_SCAN, True)
    _fast_scan_existing_hooks.__wrapped__ = current  # type: ignore[attr-defined]
    TransformerBridge._scan_existing_hooks = _fast_scan_existing_hooks


def unpatch_hook_scan() -> None:
    """Restore TransformerLens' own hook scan (for tests that compare the two)."""
    from transformer_lens.model_bridge import TransformerBridge

    current = TransformerBridge.__dict__.get("_scan_existing_hooks")
    if getattr(current, _FAST_SCAN, False):
        TransformerBridge._scan_existing_hooks = current.__wrapped__
