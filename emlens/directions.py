"""Direction: one residual-stream vector per layer, with metadata saying where it came from.

A direction is stored unnormalised (a mean difference keeps its norm, which is what
steering scales multiply). Interventions read ``vectors[layer]``; ``.normalized()``
gives unit vectors, ``.repeat_layer(l)`` (alias ``.at(l)``) repeats layer ``l``'s vector at
every layer (the papers ablate one layer's direction everywhere) and ``.single_layer(l)``
(alias ``.only(l)``) keeps layer ``l`` alone.

Files: ``Direction.save`` / ``Direction.load`` (safetensors with a JSON header, see
``directions/README.md``), ``to_gguf`` / ``from_gguf`` (llama.cpp and repeng control
vectors) and ``to_pt`` / ``from_pt`` (the papers' learned steering vectors). The file
code lives in :mod:`emlens.formats`.
"""

from __future__ import annotations

import copy
import numbers
import os
from typing import TYPE_CHECKING, Any, Iterable, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from . import formats
from .errors import FileFormatError, InputError
from .vectors import as_scalar, block_layers, check_vector

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Direction", "DirectionLike", "cosine_matrix", "check_direction", "one_vector"]


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
            try:
                vectors = torch.as_tensor(vectors)
            except (TypeError, ValueError, RuntimeError) as e:
                raise InputError(f"direction vectors must be a float tensor [n_layers, d_model], "
                                 f"could not convert {type(vectors).__name__}: {e}") from None
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
        if metadata is not None and not isinstance(metadata, dict):
            raise InputError(f"metadata must be a dict, not {type(metadata).__name__}")
        self.vectors: Float[Tensor, "n d_model"] = vectors
        self.layers: tuple[int, ...] = (tuple(range(vectors.shape[0])) if layers is None
                                        else block_layers(layers, vectors.shape[0]))
        self.metadata: dict[str, Any] = dict(metadata or {})
        layer = self.metadata.get("layer")
        if layer is not None and layer not in self.layers:
            raise InputError(f"metadata names layer {layer!r} for steering but the direction "
                             f"has vectors for layers {list(self.layers)} only")

    # ------------------------------------------------------------------ shape
    @property
    def d_model(self) -> int:
        """Width of the residual stream the vectors live in."""
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
        """The L2 norm of each row."""
        return self.vectors.norm(dim=-1)

    # ------------------------------------------------------------------ derived directions
    def _derive(self, vectors: Tensor, layers: Sequence[int] | None = None,
                drop: Iterable[str] = (), **meta: Any) -> "Direction":
        metadata = copy.deepcopy(self.metadata)
        for key in (*drop, "file"):  # "file" describes a file this one was loaded from
            metadata.pop(key, None)
        metadata.update(meta)
        return Direction(vectors, self.layers if layers is None else layers, metadata)

    def normalized(self) -> "Direction":
        """Unit vectors per layer; raises :class:`InputError` on a zero-norm layer.

        Returns:
            A new Direction over the same layers whose rows have norm 1, with
            ``metadata["normalized"] = True``.

        Example:
            >>> Direction(torch.tensor([[3.0, 4.0]])).normalized().vectors
            tensor([[0.6000, 0.8000]])
        """
        norms = self.vectors.double().norm(dim=-1)
        self._check_nonzero(norms, "normalise")
        return self._derive((self.vectors.double() / norms[:, None]).float(), normalized=True)

    def _check_nonzero(self, norms: Tensor, what: str) -> None:
        zero = [self.layers[i] for i in (norms <= 1e-12).nonzero().flatten().tolist()]
        if zero:
            raise InputError(f"cannot {what}: the vector of layer(s) {zero} has zero norm; a "
                             f"zero mean difference means the two response sets did not differ")

    def repeat_layer(self, layer: int, n_layers: int | None = None) -> "Direction":
        """This direction's vector of ``layer``, repeated at every layer.

        The papers ablate one layer's direction at every layer; this gives that direction.

        Args:
            layer: the layer whose vector to use.
            n_layers: how many layers the result covers (``0..n_layers-1``); default: the
                layers this direction covers (``self.layers``).

        Returns:
            A Direction with ``metadata["source_layer"] = layer``.

        Example:
            >>> d = Direction(torch.randn(4, 8))
            >>> bool((d.repeat_layer(2).vectors == d.vectors[2]).all())
            True
        """
        v = self.vector(layer)
        if n_layers is not None and (isinstance(n_layers, bool) or
                                     not isinstance(n_layers, numbers.Integral) or n_layers < 1):
            raise InputError(f"n_layers must be a positive integer, got {n_layers!r}")
        layers = tuple(range(int(n_layers))) if n_layers is not None else self.layers
        return self._derive(v.expand(len(layers), -1).clone(), layers, drop=("layer",),
                            source_layer=int(layer))

    def single_layer(self, layer: int) -> "Direction":
        """A one-layer direction holding just ``layer``'s vector (so ``steer`` knows its layer).

        Example:
            >>> d = Direction(torch.randn(4, 8)).single_layer(2)
            >>> d.layers, d.metadata["layer"]
            ((2,), 2)
        """
        return self._derive(self.vector(layer)[None].clone(), (int(layer),), layer=int(layer))

    #: Short alias of :meth:`repeat_layer` (``d.at(12)``: layer 12's vector at every layer).
    at = repeat_layer
    #: Short alias of :meth:`single_layer` (``d.only(12)``: layer 12 alone).
    only = single_layer

    def cosine(self, other: "Direction") -> Float[Tensor, "n"]:
        """Per-layer cosine similarity with another direction over the same layers.

        Args:
            other: a Direction with the same ``layers`` and ``d_model``.

        Returns:
            ``[n]`` cosines, one per row; raises :class:`InputError` on a zero vector.

        Example:
            >>> a = Direction(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
            >>> a.cosine(Direction(torch.tensor([[2.0, 0.0], [1.0, 0.0]])))
            tensor([1.0000, 0.7071])
        """
        self._check_compatible(other)
        a, b = self.vectors.double(), other.vectors.double()
        na, nb = a.norm(dim=-1), b.norm(dim=-1)
        self._check_nonzero(na, "take a cosine")
        other._check_nonzero(nb, "take a cosine")
        return ((a * b).sum(-1) / (na * nb)).float()

    @staticmethod
    def random_like(direction: "Direction", seed: int = 0, match: Any = None,
                    rotate: bool = False) -> "Direction":
        """Gaussian vectors with the same per-layer norms (the papers' random baseline).

        With ``match``, a stricter control: each layer's random vector has the same dot
        product as the direction's with every row of ``match`` (it shares the direction's
        component in their span) and is Gaussian in the rest, scaled so its norm is still
        the direction's. Pass a model's mean activations (``emlens.collect_means(...).means``)
        to get a random direction that removes or adds the same constant offset as the
        direction: in models with outlier residual coordinates (SmolLM2: two coordinates
        near 90 on every token at layer 15, against a median of 3) a plain Gaussian vector
        projects onto the mean activation far more than a mean-difference direction does,
        so ablating it shifts every token and is not a neutral control.

        With ``rotate``, the control for adding several layers' vectors at once: one
        uniformly random rotation of ``d_model`` space applied to every layer's vector, so
        the norms **and** the inner products between layers are the direction's. A
        mean-difference direction is nearly the same vector at neighbouring layers (cosine
        about 0.9 in SmolLM2), so its vectors added over a band of layers pile up, while
        independent Gaussian vectors of the same norms mostly cancel (over SmolLM2's layers
        10-20: a sum of norm 106 against 36): the independent control is too weak there.

        Args:
            direction: the direction whose layers and per-layer norms to copy.
            seed: seed of the Gaussian draw; the same seed gives the same vectors.
            match: optional ``[k, d_model]`` tensor (or one ``[d_model]`` vector): the
                vectors whose dot products to keep.
            rotate: rotate the whole direction at random instead of drawing each layer's
                vector on its own (not with ``match``).

        Returns:
            A Direction with ``metadata["method"] = "random"``, ``"random_seed"`` and
            ``"random_like"`` (the method of the direction it imitates); with ``match``,
            also ``"random_match"``: the number of vectors matched and the rank of their span;
            with ``rotate``, ``"random_rotation": True``.

        Raises:
            InputError: a non-integer seed, a ``match`` of the wrong width, or a direction
                that lies (almost) inside the span of ``match``, leaving nothing to randomise.

        Example:
            >>> d = Direction(torch.randn(4, 8))
            >>> r = Direction.random_like(d, seed=1)
            >>> bool(torch.allclose(r.norms(), d.norms()))
            True
            >>> mu = torch.randn(3, 8)
            >>> r = Direction.random_like(d, seed=1, match=mu)
            >>> bool(torch.allclose(r.vectors @ mu.T, d.vectors @ mu.T, atol=1e-4))
            True
        """
        if not isinstance(direction, Direction):
            raise InputError(f"random_like needs a Direction, got {type(direction).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise InputError(f"seed must be an integer, got {seed!r}")
        gen = torch.Generator().manual_seed(int(seed))
        norms = direction.vectors.double().norm(dim=-1)
        extra: dict[str, Any] = {}
        if rotate:
            if match is not None:
                raise InputError("random_like takes match= or rotate=, not both")
            # a Haar-random orthogonal matrix: QR of a Gaussian, signs fixed by R's diagonal
            dm = direction.d_model
            q, rr = torch.linalg.qr(torch.randn(dm, dm, generator=gen, dtype=torch.float64))
            q = q * torch.sign(torch.diagonal(rr))[None, :]
            return direction._derive((direction.vectors.double() @ q).float(),
                                     drop=("normalized",), method="random",
                                     random_seed=int(seed), random_rotation=True,
                                     random_like=direction.metadata.get("method"))
        r = torch.randn(direction.vectors.shape, generator=gen, dtype=torch.float64)
        if match is None:
            r = r / r.norm(dim=-1, keepdim=True) * norms[:, None]
        else:
            m = torch.as_tensor(match).detach().to("cpu", torch.float64)
            m = m[None] if m.ndim == 1 else m
            if m.ndim != 2 or m.shape[1] != direction.d_model or not len(m):
                raise InputError(f"match must be [k, {direction.d_model}] (vectors of the "
                                 f"direction's d_model), got shape {tuple(m.shape)}")
            # an orthonormal basis of the span of ``match``, from its SVD
            u, sv, vh = torch.linalg.svd(m, full_matrices=False)
            basis = vh[sv > sv.max() * 1e-10]                      # [rank, d_model]
            inside = direction.vectors.double() @ basis.T @ basis  # the part to keep
            rest = (norms.pow(2) - inside.norm(dim=-1).pow(2)).clamp(min=0).sqrt()
            flat = [direction.layers[i] for i in (rest <= 1e-6 * norms).nonzero().flatten()]
            if flat:
                raise InputError(f"the direction lies inside the span of `match` at layers "
                                 f"{flat}: nothing is left to randomise; match fewer vectors")
            r = r - r @ basis.T @ basis
            r = inside + r / r.norm(dim=-1, keepdim=True) * rest[:, None]
            extra["random_match"] = {"vectors": int(len(m)), "rank": int(len(basis))}
        return direction._derive(r.float(), drop=("normalized",), method="random",
                                 random_seed=int(seed),
                                 random_like=direction.metadata.get("method"), **extra)

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
    # ``a + b`` and ``a - b`` need the same layers and d_model; metadata is ``a``'s with
    # ``method`` set to "sum" / "difference". ``2.0 * a``, ``a * 2.0``, ``a / 2.0`` and ``-a``
    # scale every row. Results are no longer marked ``normalized``.
    def __add__(self, other: "Direction") -> "Direction":
        self._check_compatible(other)
        return self._derive(self.vectors.double().add(other.vectors.double()).float(),
                            drop=("normalized",), method="sum")

    def __sub__(self, other: "Direction") -> "Direction":
        self._check_compatible(other)
        return self._derive(self.vectors.double().sub(other.vectors.double()).float(),
                            drop=("normalized",), method="difference")

    @staticmethod
    def _scalar(scalar: Any) -> float:
        return as_scalar(scalar, "the factor a direction is multiplied by")

    def __mul__(self, scalar: float) -> "Direction":
        s = self._scalar(scalar)
        return self._derive(self.vectors * s, drop=() if abs(s) == 1.0 else ("normalized",))

    __rmul__ = __mul__

    def __neg__(self) -> "Direction":
        return self * -1.0

    def __truediv__(self, scalar: float) -> "Direction":
        s = self._scalar(scalar)
        if s == 0.0:
            raise InputError("cannot divide a direction by zero")
        return self * (1.0 / s)

    # ------------------------------------------------------------------ files
    @classmethod
    def _from_file(cls, data: "formats.DirectionData") -> "Direction":
        where = data.metadata.get("file", {}).get("path", "the file")
        try:
            return cls(*data)
        except InputError as e:  # anything the constructor rejects is a bad file here
            raise FileFormatError(f"direction file {where!r}: {e}") from None

    def save(self, path: str | os.PathLike) -> "Path":
        """Write this direction to a safetensors file (atomically; no pickle).

        The file holds the tensor ``vectors`` (float32 ``[n, d_model]``) and, in the
        safetensors metadata under the key ``"emlens"``, one JSON document with the schema
        version, the layers and the metadata, plus the emlens, TransformerLens and torch
        versions and the creation time. The schema is in ``directions/README.md``.

        Args:
            path: where to write (conventionally ``*.safetensors``); parent folders are made.

        Returns:
            The path written.

        Example:
            >>> d.save("em_direction.safetensors")                  # doctest: +SKIP
        """
        return formats.save_direction(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None) -> "Direction":
        """Read a direction written by :meth:`save`, validating it.

        Args:
            path: a file written by :meth:`save`.
            model: optional TransformerLens model; if given, the direction's ``d_model`` and
                layers must fit it (:class:`InputError` otherwise), and a warning is issued
                when the file's model provenance differs from ``model.emlens_provenance``.

        Returns:
            The Direction; ``metadata["file"]`` describes the file (path, schema version,
            creation time and versions of the writer).

        Raises:
            FileFormatError: a missing, corrupt or truncated file, an unknown schema
                version, bad shapes or non-finite values.

        Example:
            >>> d = Direction.load("em_direction.safetensors", model=model)  # doctest: +SKIP
        """
        return cls._from_file(formats.load_direction(path, model=model))

    def to_gguf(self, path: str | os.PathLike, model_hint: str | None = None) -> "Path":
        """Export as a llama.cpp / repeng control vector (GGUF, ``direction.{l+1}`` per layer).

        Args:
            path: output file, conventionally ``*.gguf``.
            model_hint: llama.cpp architecture name of the model (``"qwen2"``, ``"llama"``,
                ...); default: derived from the metadata's model provenance.

        Returns:
            The path written.

        Example:
            >>> d.to_gguf("em.gguf", model_hint="qwen2")            # doctest: +SKIP
        """
        return formats.to_gguf(self, path, model_hint=model_hint)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> "Direction":
        """Import a llama.cpp / repeng control vector (GGUF); tensor ``direction.N`` -> layer N-1.

        Example:
            >>> d = Direction.from_gguf("happy.gguf")                # doctest: +SKIP
        """
        return cls._from_file(formats.from_gguf(path))

    def to_pt(self, path: str | os.PathLike, layer: int | None = None,
              alpha: float | None = None) -> "Path":
        """Export one layer in the papers' steering-vector ``.pt`` format.

        Args:
            path: output file.
            layer: the layer to export; default: ``metadata["layer"]`` or the only layer.
            alpha: the scale stored in the file; default ``metadata["alpha"]`` or 1.0.

        Example:
            >>> d.only(12).to_pt("steering_vector.pt", alpha=4.0)     # doctest: +SKIP
        """
        return formats.to_pt(self, path, layer=layer, alpha=alpha)

    @classmethod
    def from_pt(cls, path: str | os.PathLike) -> "Direction":
        """Import the papers' steering-vector ``.pt`` dict (read with ``weights_only=True``).

        Returns:
            A one-layer Direction with ``metadata["layer"]`` (from ``layer_idx``) and
            ``metadata["alpha"]``, so ``emlens.steer(model, d, d.metadata["alpha"])`` works.

        Example:
            >>> d = Direction.from_pt("steering_vector.pt")           # doctest: +SKIP
        """
        return cls._from_file(formats.from_pt(path))


def cosine_matrix(a: Direction, b: Direction) -> Float[Tensor, "layers_a layers_b"]:
    """Cosine similarity of every layer of ``a`` with every layer of ``b``.

    Args:
        a: rows index the result's first axis (in ``a.layers`` order).
        b: rows index the second axis; same ``d_model`` as ``a``.

    Returns:
        ``[len(a.layers), len(b.layers)]`` cosines (float32, computed in float64).

    Example:
        >>> d = Direction(torch.randn(4, 8))
        >>> cosine_matrix(d, d).diagonal()                       # doctest: +SKIP
        tensor([1., 1., 1., 1.])
    """
    for name, d in (("a", a), ("b", b)):
        if not isinstance(d, Direction):
            raise InputError(f"cosine_matrix needs Directions, got {type(d).__name__} for {name}")
    if a.d_model != b.d_model:
        raise InputError(f"d_model differs: {a.d_model} vs {b.d_model}; the directions come "
                         f"from different models")
    x = a.vectors.double()
    y = b.vectors.double()
    nx, ny = x.norm(dim=-1), y.norm(dim=-1)
    a._check_nonzero(nx, "take a cosine")
    b._check_nonzero(ny, "take a cosine")
    return ((x / nx[:, None]) @ (y / ny[:, None]).T).float()


#: What interventions accept as a direction: a Direction or a raw ``[d_model]`` tensor.
DirectionLike = Union[Direction, Float[Tensor, "d_model"]]


def check_direction(direction: Direction, d_model: int) -> Direction:
    """Check that ``direction`` lives in a residual stream of width ``d_model``.

    Raises:
        InputError: a different ``d_model`` (the direction comes from another model).
    """
    if not isinstance(direction, Direction):
        raise InputError(f"expected a Direction, got {type(direction).__name__}")
    if direction.d_model != d_model:
        raise InputError(f"the direction has d_model {direction.d_model} but the model has "
                         f"d_model {d_model}; it comes from a different model")
    return direction


def one_vector(direction: DirectionLike, d_model: int, layer: int | None = None
               ) -> tuple[Tensor, dict[str, Any]]:
    """The single vector that projects every write (``ablate(at="writes")``, ``orthogonalize``).

    The one-vector rule: a raw ``[d_model]`` tensor is that vector; a Direction gives the
    vector of ``layer`` when one is named, else its only row (``d.single_layer(l)``), else
    its rows when they are all equal (``d.repeat_layer(l)``). A direction with different
    vectors per layer and no ``layer`` raises :class:`InputError`, as no one vector is
    implied.

    Args:
        direction: a Direction or a raw vector.
        d_model: the model's residual width.
        layer: an absolute block number whose vector to take (Directions only).

    Returns:
        The float32 vector and a summary of where it came from (``method``, ``layer``,
        ``source_layer``, ``hook`` as the metadata has them).
    """
    if not isinstance(direction, Direction):
        if layer is not None:
            raise InputError("layers picks a layer's vector of a Direction; a raw vector "
                             "is already one vector: leave layers out")
        return check_vector(direction, d_model, "the vector"), {"source": "tensor"}
    check_direction(direction, d_model)
    info = {k: direction.metadata[k] for k in ("method", "layer", "source_layer", "hook")
            if k in direction.metadata}
    if layer is not None:
        info["source_layer"] = int(layer)
        return direction.vector(layer), info
    vecs = direction.vectors
    if vecs.shape[0] == 1:
        info.setdefault("source_layer", direction.layers[0])
        return vecs[0], info
    if bool((vecs == vecs[:1]).all()):
        return vecs[0], info
    raise InputError(
        f"this direction has a different vector for each of its {direction.n_layers} layers, "
        f"but every write into the residual stream is projected with one vector; choose it: "
        f"pass d.repeat_layer(layer) (alias d.at(layer)) or d.single_layer(layer) (alias "
        f"d.only(layer)), or layers=<layer> to ablate")
