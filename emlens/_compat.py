"""Compatibility shims between the pinned TransformerLens and transformers releases.

transformer-lens 4.3's attention bridges look for the KV cache under the keyword
``past_key_values`` (or ``layer_past``), but transformers 5.x decoder layers hand it to
the attention module as ``cache``. Without this shim the cache is never extended, so
every cached decoding step attends to itself alone and generation with the KV cache
(the bridge's ``generate`` and HF ``generate`` on the wrapped model) produces garbage
while uncached forwards stay exact. The shim forwards ``cache`` to the name the bridge
reads; it is idempotent and does nothing when the bridge already finds the cache.
"""

from __future__ import annotations

import functools

_PATCHED = "_emlens_cache_kwarg_shim"


def patch_transformer_lens() -> None:
    """Apply the shims (idempotent)."""
    try:
        from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
    except ImportError:  # TL 3.x: no bridge, nothing to patch
        return
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
