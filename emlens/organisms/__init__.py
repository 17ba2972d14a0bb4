"""Built-in model organisms, loaded through ``emlens.load_model`` like any model.

Example:
    >>> import emlens.organisms
    >>> model = emlens.organisms.load("pocket", "em")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

__all__ = ["ORGANISMS", "load"]

ORGANISMS = ("pocket",)


def load(name: str = "pocket", variant: str = "chat", **load_model_kwargs: Any):
    """Load a built-in organism's variant as a TransformerBridge.

    Args:
        name: the organism ("pocket").
        variant: "chat", "em", "em_seed1", "em_rank1" or "narrow" (see
            ``emlens.organisms.pocket.VARIANTS``).
        **load_model_kwargs: passed to ``emlens.load_model`` (device, dtype, merge, ...).
    """
    if name != "pocket":
        raise InputError(f"no built-in organism {name!r}; choose one of {ORGANISMS}")
    from . import pocket

    return pocket.load(variant, **load_model_kwargs)
