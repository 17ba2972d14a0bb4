"""Vector and layer arguments: the one set of rules every stage checks them by.

Layers. A *model layer* argument (``layers=`` of ``collect_means``, ``steer``, ``ablate``,
``sweep``, ...) is an int or a sequence of ints; a negative index counts from the end
(``-1`` is the last block), as in Python; it is turned into the absolute block number
``0..n_layers-1``. A float (``1.7``), a bool or a string is refused rather than rounded,
and a layer named twice is refused. A :class:`~emlens.directions.Direction` stores
absolute block numbers only (it knows no model to count from the end of).

Vectors. A raw vector argument is a floating-point ``[d_model]`` tensor (a ``[1, d_model]``
row is accepted); it is checked against the model's ``d_model`` and for NaN/inf, and
returned as float32 on the CPU. :func:`unit` normalises in float64 and refuses a zero
vector (projecting with an unnormalised vector is a known bug elsewhere).

Scalars. ``alpha`` is any finite real number: Python, NumPy or a one-element tensor.

Example:
    >>> model_layers(-1, 24)
    (23,)
    >>> model_layers([0, -2], 24)
    (0, 22)
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import torch
from torch import Tensor

from .errors import InputError

__all__ = ["as_index", "model_layers", "block_layers", "check_vector", "unit", "as_scalar",
           "NORM_EPS"]

#: Norms at or below this are treated as zero.
NORM_EPS = 1e-12


def as_index(value: Any, what: str = "a layer") -> int:
    """``value`` as a Python int if it is an integer (int, NumPy integer, 0-d integer tensor).

    Raises:
        InputError: a bool, a float (even ``2.0``), a string or anything else.
    """
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.dtype == torch.bool:
            raise InputError(f"{what} must be an integer, not the tensor {value!r}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{what} must be an integer, not {value!r}"
                         + (" (layers are block numbers; a float is not rounded)"
                            if isinstance(value, numbers.Real) else ""))
    return int(value)


def _items(layers: Any) -> list[Any]:
    if isinstance(layers, (str, bytes)) or isinstance(layers, bool):
        raise InputError(f"layers must be an int or a sequence of ints (a sequence of layer "
                         f"indices), not {layers!r}")
    if isinstance(layers, numbers.Integral) or (isinstance(layers, Tensor) and layers.ndim == 0):
        return [layers]
    if isinstance(layers, Tensor):
        return list(layers.flatten())
    if not isinstance(layers, Iterable):
        raise InputError(f"layers must be an int or a sequence of ints, not {layers!r}")
    return list(layers)


def model_layers(layers: Any, n_layers: int, *, default: Iterable[int] | None = None
                 ) -> tuple[int, ...]:
    """Validate a model-layer argument and return absolute block numbers, in order.

    Args:
        layers: an int or a sequence of ints; negative counts from the end. ``None`` means
            ``default`` (refused when ``default`` is ``None`` too).
        n_layers: the model's number of blocks.
        default: the layers ``None`` stands for (e.g. ``range(n_layers)``).

    Raises:
        InputError: not integers, out of ``-n_layers..n_layers-1``, empty, or repeated.

    Example:
        >>> model_layers(None, 4, default=range(4))
        (0, 1, 2, 3)
    """
    if layers is None:
        if default is None:
            raise InputError("layers is required here: name at least one layer")
        layers = default
    items = [as_index(v, "a layer") for v in _items(layers)]
    if not items:
        raise InputError("layers is empty; name at least one layer")
    bad = [l for l in items if not -n_layers <= l < n_layers]
    if bad:
        raise InputError(f"layer(s) {bad} out of range: the model has {n_layers} layers "
                         f"(0..{n_layers - 1}, or -{n_layers}..-1 counting from the end)")
    out = tuple(l % n_layers for l in items)
    if len(set(out)) != len(out):
        raise InputError(f"layers {items} name a layer twice")
    return out


def block_layers(layers: Any, n_rows: int) -> tuple[int, ...]:
    """The absolute block numbers of a Direction's rows: ints >= 0, one per row, no repeats."""
    items = []
    for v in _items(layers):
        try:
            items.append(as_index(v, "a layer index"))
        except InputError:
            raise InputError(f"layer indices must be integers, got {v!r} in {layers!r}") from None
    if any(l < 0 for l in items):
        raise InputError(f"layer indices must be >= 0 (block numbers counted from 0), got "
                         f"{items}; a direction knows no model to count from the end of")
    if len(items) != n_rows:
        raise InputError(f"{len(items)} layer indices given for {n_rows} vectors; give one per "
                         f"vector")
    if len(set(items)) != len(items):
        raise InputError(f"layer indices {items} repeat a layer")
    return tuple(items)


def check_vector(vec: Any, d_model: int, what: str = "the vector") -> Tensor:
    """A raw ``[d_model]`` vector argument, checked, as float32 on the CPU.

    Raises:
        InputError: not convertible to a tensor, wrong shape or width, integer dtype,
            NaN or inf values.
    """
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


def unit(vec: Tensor, what: str = "the vector") -> Tensor:
    """``vec / |vec|`` in float64.

    Raises:
        InputError: a zero (or non-finite) norm.
    """
    v = vec.double()
    norm = float(v.norm())
    if not math.isfinite(norm):
        raise InputError(f"{what} has NaN or inf values")
    if norm <= NORM_EPS:
        raise InputError(f"{what} has zero norm, so it names no direction; check the "
                         f"direction (a zero mean difference means the two response sets "
                         f"did not differ)")
    return v / norm


def as_scalar(value: Any, what: str = "alpha") -> float:
    """A finite real number (Python, NumPy or a one-element tensor) as a float.

    Raises:
        InputError: a bool, a non-number, NaN or inf.
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a finite number, not {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, not {value!r}")
    return value
