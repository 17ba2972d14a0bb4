"""Direction: one residual-stream vector per layer, with metadata saying where it came from.

A direction is stored unnormalised (a mean difference keeps its norm, which is what
steering scales multiply). Interventions read ``vectors[layer]``; ``.normalized()``
gives unit vectors and ``.at(layer)`` repeats one layer's vector at every layer (the
papers ablate one layer's direction everywhere).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .errors import InputError

__all__ = ["Direction", "cosine_matrix"]


def _as_layers(layers: Iterable[int] | None, n: int) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(n))
    out = tuple(int(l) for l in layers)
    if len(out) != n:
        raise InputError(f"{len(out)} layer indices given for {n} vectors; give one per vector")
    if len(set(out)) != len(out):
        raise InputError(f"layer indices {out} repeat a layer")
    return out


class Direction:
    """Per-layer residual-stream vectors ``[n_layers, d_model]`` with metadata.

    Args:
        vectors: float tensor ``[n, d_model]`` (a 1-D ``[d_model]`` vector becomes one row).
        layers: the model layer of each row; default ``0..n-1``. A direction for a single
            layer (a learned steering vector, say) has one row and ``layers=(l,)``.
        metadata: free-form JSON-serialisable dict (provenance, method, hook, ...).

    Example:
        >>> d = Direction(torch.randn(4, 16))
        >>> d.normalized().vectors.norm(dim=-1)      # doctest: +SKIP
        tensor([1., 1., 1., 1.])
    """

    def __init__(self, vectors: Float[Tensor, "n d_model"], layers: Sequence[int] | None = None,
                 metadata: dict[str, Any] | None = None):
        if not isinstance(vectors, Tensor):
            vectors = torch.as_tensor(vectors)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise InputError(f"direction vectors must have shape [n_layers, d_model], got "
                             f"{tuple(vectors.shape)}")
        if not vectors.is_floating_point():
            raise InputError(f"direction vectors must be floating point, got {vectors.dtype}")
        vectors = vectors.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(vectors).all():
            bad = sorted({int(i) for i in (~torch.isfinite(vectors)).any(-1).nonzero().flatten()})
            raise InputError(f"direction has NaN or inf values (rows {bad}); recompute it or "
                             f"check the activations it came from")
        self.vectors: Float[Tensor, "n d_model"] = vectors
        self.layers: tuple[int, ...] = _as_layers(layers, vectors.shape[0])
        self.metadata: dict[str, Any] = dict(metadata or {})

    # ------------------------------------------------------------------ shape
    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_layers(self) -> int:
        """Number of rows (layers this direction has a vector for)."""
        return int(self.vectors.shape[0])

    def __len__(self) -> int:
        return self.n_layers

    def __repr__(self) -> str:
        layers = (f"{self.layers[0]}..{self.layers[-1]}" if self.layers == tuple(
            range(self.layers[0], self.layers[-1] + 1)) and len(self.layers) > 2
            else ",".join(map(str, self.layers)))
        method = self.metadata.get("method", "")
        return (f"Direction(layers={layers}, d_model={self.d_model}"
                + (f", method={method!r}" if method else "") + ")")

    def vector(self, layer: int) -> Float[Tensor, "d_model"]:
        """The vector stored for model layer ``layer``."""
        try:
            return self.vectors[self.layers.index(int(layer))]
        except ValueError:
            raise InputError(f"this direction has no vector for layer {layer}; it has layers "
                             f"{list(self.layers)}") from None

    def norms(self) -> Float[Tensor, "n"]:
        return self.vectors.norm(dim=-1)

    # ------------------------------------------------------------------ derived directions
    def _derive(self, vectors: Tensor, layers: Sequence[int] | None = None,
                **meta: Any) -> "Direction":
        metadata = copy.deepcopy(self.metadata)
        metadata.update(meta)
        return Direction(vectors, self.layers if layers is None else layers, metadata)

    def normalized(self) -> "Direction":
        """Unit vectors per layer; raises on a zero-norm layer."""
        norms = self.norms()
        zero = [self.layers[i] for i in (norms <= 1e-12).nonzero().flatten().tolist()]
        if zero:
            raise InputError(f"cannot normalise: the vector of layer(s) {zero} has zero norm; a "
                             f"zero mean difference means the two response sets did not differ")
        return self._derive(self.vectors / norms[:, None], normalized=True)

    def at(self, layer: int, n_layers: int | None = None) -> "Direction":
        """This direction's vector of ``layer``, repeated at every layer.

        Args:
            layer: the layer whose vector to use.
            n_layers: how many layers the result covers; default: the layers this
                direction covers (``self.layers``).
        """
        v = self.vector(layer)
        layers = tuple(range(n_layers)) if n_layers is not None else self.layers
        return self._derive(v.expand(len(layers), -1).clone(), layers, source_layer=int(layer))

    def only(self, layer: int) -> "Direction":
        """A one-layer direction holding just ``layer``'s vector (so steer knows its layer)."""
        return self._derive(self.vector(layer)[None].clone(), (int(layer),), layer=int(layer))

    def cosine(self, other: "Direction") -> Float[Tensor, "n"]:
        """Per-layer cosine similarity with another direction over the same layers."""
        self._check_compatible(other)
        a, b = self.vectors.double(), other.vectors.double()
        denom = a.norm(dim=-1) * b.norm(dim=-1)
        return ((a * b).sum(-1) / denom.clamp_min(1e-30)).float()

    @staticmethod
    def random_like(direction: "Direction", seed: int = 0) -> "Direction":
        """Gaussian vectors with the same per-layer norms (the papers' random baseline)."""
        gen = torch.Generator().manual_seed(int(seed))
        r = torch.randn(direction.vectors.shape, generator=gen, dtype=torch.float64)
        r = r / r.norm(dim=-1, keepdim=True) * direction.norms().double()[:, None]
        out = direction._derive(r.float(), method="random", seed=int(seed),
                                random_like=direction.metadata.get("method"))
        return out

    def _check_compatible(self, other: "Direction") -> None:
        if not isinstance(other, Direction):
            raise InputError(f"expected a Direction, got {type(other).__name__}")
        if other.d_model != self.d_model:
            raise InputError(f"d_model differs: {self.d_model} vs {other.d_model}; the directions "
                             f"come from different models")
        if other.layers != self.layers:
            raise InputError(f"layers differ: {list(self.layers)} vs {list(other.layers)}; "
                             f"select common layers first")

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: "Direction") -> "Direction":
        self._check_compatible(other)
        return self._derive(self.vectors + other.vectors, method="sum")

    def __sub__(self, other: "Direction") -> "Direction":
        self._check_compatible(other)
        return self._derive(self.vectors - other.vectors, method="difference")

    def __mul__(self, scalar: float) -> "Direction":
        if isinstance(scalar, Tensor) and scalar.numel() == 1:
            scalar = float(scalar)
        if not isinstance(scalar, (int, float)) or isinstance(scalar, bool) \
                or not math.isfinite(scalar):
            raise InputError(f"a direction can be multiplied by a finite number, not {scalar!r}")
        return self._derive(self.vectors * float(scalar))

    __rmul__ = __mul__

    def __neg__(self) -> "Direction":
        return self * -1.0

    def __truediv__(self, scalar: float) -> "Direction":
        return self * (1.0 / scalar)


def cosine_matrix(a: Direction, b: Direction) -> Float[Tensor, "layers_a layers_b"]:
    """Cosine similarity of every layer of ``a`` with every layer of ``b``."""
    if a.d_model != b.d_model:
        raise InputError(f"d_model differs: {a.d_model} vs {b.d_model}")
    x = a.vectors.double()
    y = b.vectors.double()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return (x @ y.T).float()
