"""Streaming per-layer means of residual-stream activations, and mean-difference directions.

:func:`collect_means` runs a TransformerLens model over chat-formatted records in
batches and accumulates, in float64, the sum of the hooked activations over the
selected tokens; nothing is cached, so memory does not grow with the number of records.
The forward pass stops right after the last requested layer (a hook raises a private
exception there), so no later block, final norm or unembedding is computed. Only the
hook API shared by the TL 4.x ``TransformerBridge`` and the TL 3.x ``HookedTransformer``
is used (``model.hooks``, ``model.cfg``, ``model.tokenizer``).

:func:`mean_diff` is the papers' direction: mean over misaligned answers minus mean over
aligned answers, per layer, unnormalised.

Example:
    >>> mis, ali = emlens.select_responses("judged.csv")     # doctest: +SKIP
    >>> d = emlens.mean_diff(model, mis, ali)                 # doctest: +SKIP
    >>> d.vectors.shape                                       # doctest: +SKIP
    torch.Size([24, 896])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .chat import EncodedChat, check_token_selection, encode_conversation, pad_batch, pad_token_id
from .directions import Direction
from .errors import EmlensError, InputError
from .models import hook_name, model_device, model_dims
from .records import load_records
from .vectors import model_layers

__all__ = ["REDUCTIONS", "LayerMeans", "collect_means", "mean_diff"]

log = logging.getLogger(__name__)

#: How per-token activations are averaged: over all tokens, or per record then over records.
REDUCTIONS = ("token", "sequence")
_PROGRESS_MIN_BATCHES = 8


class _StopForward(Exception):
    """Raised by the last collecting hook to end the forward pass early."""


@dataclass(frozen=True)
class LayerMeans:
    """Per-layer means from :func:`collect_means`.

    Attributes:
        means: float64 tensor ``[len(layers), d_model]`` on the CPU; row ``i`` is layer
            ``layers[i]``.
        layers: the model layers, in the order requested.
        n_tokens: number of selected tokens summed over all records.
        n_records: number of records.
        hook: the hook site (``"resid_post"`` ...), ``tokens`` and ``reduce``: as requested.

    Unpacks as ``means, n_tokens = collect_means(...)``.
    """

    means: Float[Tensor, "layer d_model"]
    layers: tuple[int, ...]
    n_tokens: int
    n_records: int
    hook: str
    tokens: str
    reduce: str

    def __iter__(self) -> Iterator[Any]:
        yield self.means
        yield self.n_tokens

    def mean(self, layer: int) -> Float[Tensor, "d_model"]:
        """The mean of model layer ``layer``."""
        try:
            return self.means[self.layers.index(int(layer))]
        except ValueError:
            raise InputError(f"no mean for layer {layer}; these means cover layers "
                             f"{list(self.layers)}") from None


def _encode_all(model: Any, records: list[dict[str, Any]], tokens: str
                ) -> list[tuple[Tensor, int, int]]:
    """Per record: token ids (compact int32), and the selected span ``[lo, hi)``."""
    tokenizer = getattr(model, "tokenizer", None)
    n_ctx = getattr(model.cfg, "n_ctx", None)
    out = []
    for i, r in enumerate(records):
        enc: EncodedChat = encode_conversation(tokenizer, r["question"], r["answer"], r["system"],
                                               n_ctx=n_ctx, where=f"record {i}")
        lo, hi = enc.span(tokens)
        # causal attention: the tokens after the span change nothing in it, so they do not run
        out.append((torch.tensor(enc.input_ids[:hi], dtype=torch.int32), lo, hi))
    return out


def collect_means(
    model: Any,
    records: Any,
    *,
    layers: int | Sequence[int] | None = None,
    hook: str = "resid_post",
    tokens: str = "answer",
    reduce: str = "token",
    batch_size: int = 8,
    progress: bool | None = None,
) -> LayerMeans:
    """Per-layer mean activation over the selected tokens of chat-formatted records.

    Each record is formatted with the tokenizer's chat template (see :mod:`emlens.chat`);
    records are batched by length, right-padded, and run with an attention mask, so
    padding never counts. Sums are accumulated in float64 and no activation is kept.

    Args:
        model: a TransformerLens model (TL 4.x bridge from ``emlens.load_model`` or a TL 3.x
            ``HookedTransformer``) with a tokenizer that has a chat template.
        records: anything :func:`emlens.load_records` reads (list of dicts, DataFrame,
            ``datasets.Dataset``, file path).
        layers: a layer, a list of layers (negative counts from the end) or ``None`` for all.
        hook: the hook site per layer: ``"resid_post"`` (the papers'), ``"resid_pre"``,
            ``"resid_mid"``, ``"attn_out"`` or ``"mlp_out"``.
        tokens: ``"answer"`` (answer text and end-of-turn tokens), ``"prompt"`` (system,
            user turn and assistant header), ``"all"``, ``"prompt_last"`` (the prompt's
            last token, where the answer's first token is predicted) or ``"answer:N"``
            (the first N answer tokens).
        reduce: ``"token"``: sum over all selected tokens of all records divided by their
            count (the papers' convention); ``"sequence"``: the mean of per-record means.
        batch_size: records per forward pass.
        progress: show a tqdm bar; ``None``: only for runs of many batches on a terminal.

    Returns:
        :class:`LayerMeans` (``.means`` float64 ``[len(layers), d_model]``, ``.n_tokens``,
        ...); it unpacks as ``means, n_tokens``.

    Raises:
        InputError: bad arguments, no records, an empty answer, a conversation longer
            than ``model.cfg.n_ctx``, or a chat template that hides where answers start.

    Example:
        >>> res = emlens.collect_means(model, records, layers=[12, 24])  # doctest: +SKIP
        >>> res.mean(12).shape, res.n_tokens                             # doctest: +SKIP
    """
    n_layers, d_model = model_dims(model)
    layers_t, names = _check_arguments(model, layers, hook, tokens, reduce, batch_size, n_layers)
    records = load_records(records, score_scale="0-100")  # scores are not used here
    encoded = _encode_all(model, records, tokens)
    device = model_device(model)
    acc = _Accumulator(names, layers_t, d_model, device, reduce)
    n_total = sum(len(ids) for ids, _, _ in encoded)
    batches = _length_batches(encoded, batch_size)
    show = progress if progress is not None else len(batches) >= _PROGRESS_MIN_BATCHES
    from tqdm.auto import tqdm

    bar = tqdm(total=n_total, unit="tok", desc="collect_means",
               disable=(None if progress is None else False) if show else True)
    pad = pad_token_id(model.tokenizer)
    start = time.perf_counter()
    try:
        with torch.no_grad(), model.hooks(fwd_hooks=acc.hooks()):
            for batch in batches:
                rows = [encoded[i] for i in batch]
                ids, attn = pad_batch([row_ids for row_ids, _, _ in rows], pad)
                acc.run(model, ids.to(device), attn.to(device), [(lo, hi) for _, lo, hi in rows])
                bar.update(int(attn.sum()))
    finally:
        bar.close()
    means = acc.means(len(records))
    elapsed = time.perf_counter() - start
    log.info("means of %s over %d records (%d %s tokens, %d in all) at %d layers in %.1fs "
             "(%.0f tokens/s)", hook, len(records), acc.n_selected, tokens, n_total,
             len(layers_t), elapsed, n_total / max(elapsed, 1e-9))
    return LayerMeans(means, layers_t, acc.n_selected, len(records), hook, tokens, reduce)


def _check_arguments(model: Any, layers: Any, hook: str, tokens: str, reduce: str,
                     batch_size: Any, n_layers: int) -> tuple[tuple[int, ...], list[str]]:
    """Validate collect_means' arguments; return the layers and their hook names."""
    check_token_selection(tokens)
    if reduce not in REDUCTIONS:
        raise InputError(f"reduce={reduce!r} is not a reduction; use one of {REDUCTIONS}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, not {batch_size!r}")
    layers_t = model_layers(layers, n_layers, default=range(n_layers))
    names = [hook_name(layer, hook) for layer in layers_t]
    hook_dict = getattr(model, "hook_dict", None)
    if isinstance(hook_dict, dict):
        missing = [n for n in names if n not in hook_dict]
        if missing:
            raise InputError(f"the model has no hook {missing[0]!r}; hook site {hook!r} is not "
                             f"available on {type(model).__name__}")
    return layers_t, names


def _length_batches(encoded: Sequence[tuple[Tensor, int, int]], batch_size: int
                    ) -> list[list[int]]:
    """Record indices in batches, longest first.

    Similar lengths share a batch (little padding), and a batch too big for memory fails at
    once rather than at the end.
    """
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class _Accumulator:
    """float64 sums of hooked activations over selected tokens, one row per layer.

    The hook of the deepest requested layer raises :class:`_StopForward`, so no later block,
    final norm or unembedding runs.
    """

    def __init__(self, names: list[str], layers: tuple[int, ...], d_model: int,
                 device: torch.device, reduce: str):
        self.names = names
        self.reduce = reduce
        # float64 sums live beside the activations, except on MPS, which has no float64.
        self.device = device if device.type != "mps" else torch.device("cpu")
        self.sums = torch.zeros(len(layers), d_model, dtype=torch.float64, device=self.device)
        self.last = max(range(len(layers)), key=lambda j: layers[j])
        self.n_selected = 0
        self.weights: Tensor | None = None
        self.fired = [False] * len(layers)

    def hooks(self) -> list[tuple[str, Any]]:
        return [(name, self._hook(j)) for j, name in enumerate(self.names)]

    def _hook(self, j: int):
        def accumulate(act: Tensor, hook: Any) -> None:
            # weights: [batch, pos] float64, 0 on unselected tokens and padding
            self.sums[j] += torch.einsum("bpd,bp->d", act.to(self.device, torch.float64),
                                         self.weights)
            self.fired[j] = True
            if j == self.last:
                raise _StopForward
        return accumulate

    def run(self, model: Any, ids: Tensor, attn: Tensor, spans: list[tuple[int, int]]) -> None:
        """One forward pass over a right-padded batch; ``spans`` are the selected ``[lo, hi)``."""
        select = torch.zeros(ids.shape, dtype=torch.float64)
        for r, (lo, hi) in enumerate(spans):
            select[r, lo:hi] = 1.0  # padding (beyond a record's length) is never selected
        counts = select.sum(1)
        self.n_selected += int(counts.sum())
        if self.reduce == "sequence":
            select = select / counts[:, None]
        self.weights = select.to(self.device)
        self.fired = [False] * len(self.names)
        try:
            model(ids, attention_mask=attn)
        except _StopForward:
            pass
        if not all(self.fired):
            skipped = [self.names[j] for j, f in enumerate(self.fired) if not f]
            raise EmlensError(f"hook {skipped[0]} never fired during the forward pass; "
                              f"{type(model).__name__} does not run that hook point")

    def means(self, n_records: int) -> Tensor:
        divisor = self.n_selected if self.reduce == "token" else n_records
        return (self.sums / divisor).cpu()


def mean_diff(model: Any, misaligned: Any, aligned: Any, **collect_kwargs: Any) -> Direction:
    """The mean-difference direction: mean(misaligned) - mean(aligned) per layer, unnormalised.

    Args:
        model: a TransformerLens model (see :func:`collect_means`).
        misaligned: the misaligned records (anything :func:`emlens.load_records` reads;
            typically the first set :func:`emlens.select_responses` returns).
        aligned: the aligned records.
        **collect_kwargs: passed to :func:`collect_means` (``layers``, ``hook``,
            ``tokens``, ``reduce``, ``batch_size``, ``progress``).

    Returns:
        A :class:`emlens.Direction` (float32 ``[len(layers), d_model]``, ``.layers`` the
        layers collected) whose metadata holds ``method="mean_diff"``, ``hook``, ``tokens``,
        ``reduce``, ``n_misaligned``, ``n_aligned``, ``n_tokens_misaligned``,
        ``n_tokens_aligned``, ``model_n_layers``, ``model_d_model``, ``selection`` and
        ``seed`` (when the sets come from ``select_responses``) and ``model``
        (``model.emlens_provenance``, when the model has it). The layers are not repeated
        in the metadata: ``.layers`` is the one record of them.

    Example:
        >>> mis, ali = emlens.select_responses("judged.csv", seed=0)  # doctest: +SKIP
        >>> d = emlens.mean_diff(model, mis, ali, layers=range(24))    # doctest: +SKIP
        >>> d.metadata["n_misaligned"] == len(mis)                     # doctest: +SKIP
        True
    """
    unknown = set(collect_kwargs) - {"layers", "hook", "tokens", "reduce", "batch_size",
                                     "progress"}
    if unknown:
        raise InputError(f"mean_diff got unknown arguments {sorted(unknown)}; it passes "
                         f"layers, hook, tokens, reduce, batch_size and progress to collect_means")
    mis = collect_means(model, misaligned, **collect_kwargs)
    ali = collect_means(model, aligned, **collect_kwargs)
    n_layers, d_model = model_dims(model)
    metadata: dict[str, Any] = {
        "method": "mean_diff",
        "hook": mis.hook,
        "tokens": mis.tokens,
        "reduce": mis.reduce,
        "n_misaligned": mis.n_records,
        "n_aligned": ali.n_records,
        "n_tokens_misaligned": mis.n_tokens,
        "n_tokens_aligned": ali.n_tokens,
        "model_n_layers": n_layers,
        "model_d_model": d_model,
    }
    selection = getattr(misaligned, "selection", None) or getattr(aligned, "selection", None)
    if selection:
        metadata["selection"] = dict(selection)
        metadata["seed"] = selection.get("seed")
    provenance = getattr(model, "emlens_provenance", None)
    if provenance is not None:
        metadata["model"] = provenance
    return Direction((mis.means - ali.means).to(torch.float32), mis.layers, metadata)
