"""Built-in model organisms, loaded through ``emlens.load_model`` like any model.

Example:
    >>> import emlens.organisms
    >>> model = emlens.organisms.load("pocket", "em")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

__all__ = ["ORGANISMS", "load", "pretraining_texts"]

ORGANISMS = ("pocket", "smol")


def load(name: str = "pocket", variant: str | None = None, **load_model_kwargs: Any):
    """Load a built-in organism's variant as a TransformerBridge.

    Args:
        name: the organism: "pocket" (built in, 2M parameters) or "smol"
            (SmolLM2-135M-Instruct; needs ``emlens.organisms.smol.INSTALL``).
        variant: the organism's un-finetuned model when None ("chat" for pocket, "base"
            for smol), else one of its ``VARIANTS`` ("em", "em_seed1", "em_rank1",
            "narrow", ...).
        **load_model_kwargs: passed to ``emlens.load_model`` (device, dtype, merge, ...).
    """
    org = _organism(name)
    if variant is None:
        variant = next(iter(org.VARIANTS))
    return org.load(variant, **load_model_kwargs)


def pretraining_texts(name: str, tokenizer: Any, **kwargs: Any) -> list[str]:
    """A built-in organism's held-out pretraining text, rendered for ``tokenizer``: the
    ``texts`` of ``emlens.stability.pretraining_kl`` for its models."""
    return _organism(name).pretraining_texts(tokenizer, **kwargs)


def _organism(name: str):
    if name not in ORGANISMS:
        raise InputError(f"no built-in organism {name!r}; choose one of {ORGANISMS}")
    import importlib

    return importlib.import_module(f".{name}", __name__)
