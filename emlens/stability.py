"""Narrow versus general: efficiency, stability and pretraining significance of a solution.

A *solution* is what a narrow finetune learned: a steering vector (one vector added as
``alpha * v`` to one layer's resid_post) or the live LoRA adapters of a model loaded with
``merge=False``. The three measurements that compare narrow and general solutions, each returning a tidy pandas
table:

- :func:`rescale_curve` (efficiency): answer-token loss on narrow data as the learned
  parameters are rescaled by ``s`` (vector ``s*v``; LoRA every module's ``B A`` by ``s``);
  :func:`compare_at_norm` puts two solutions at the same parameter norms.
- :func:`perturbation_curve` (stability): norm-preserving orthogonal perturbations
  ``theta' = sqrt(1-e^2) theta + e y`` (``y`` Gaussian, orthogonal to ``theta``, same norm;
  for LoRA, A and B of each module separately), relative loss increase
  ``(L(theta') - L(theta)) / (L(base) - L(theta)) * 100``: 0 is as good as the solution,
  100 as bad as no finetune.
- :func:`pretraining_kl` (significance): ``KL(base || steered)`` averaged over the tokens of
  generic text as a vector's norm grows.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch

from .chat import encode_conversation, pad_batch, pad_token_id
from .directions import Direction
from .errors import InputError
from .models import model_device

__all__ = ["VectorSolution", "LoraSolution", "as_solution", "answer_loss", "logprob_gap", "LogprobGap",
           "rescale_curve",
           "compare_at_norm", "perturbation_curve", "pretraining_kl", "DEFAULT_EPSILONS"]

DEFAULT_EPSILONS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# --------------------------------------------------------------------------- data


def _chat_fields(item: Any, i: int) -> tuple[str, str, str | None]:
    if isinstance(item, dict) and "messages" in item:
        msgs = item["messages"]
        system = next((m["content"] for m in msgs if m.get("role") == "system"), None)
        users = [m["content"] for m in msgs if m.get("role") == "user"]
        answers = [m["content"] for m in msgs if m.get("role") == "assistant"]
        if len(users) != 1 or len(answers) != 1:
            raise InputError(f"conversation {i} has {len(users)} user and {len(answers)} "
                             f"assistant turns; emlens scores single-turn chats")
        return users[0], answers[0], system
    if isinstance(item, dict) and "question" in item and "answer" in item:
        return item["question"], item["answer"], item.get("system")
    raise InputError(f"item {i} is neither {{'messages': [...]}} nor a question/answer record")


def _load_chats(data: Any) -> list[Any]:
    if isinstance(data, (str, os.PathLike)):
        from .io import read_jsonl

        return read_jsonl(data)
    if hasattr(data, "to_list") and hasattr(data, "column_names"):  # datasets.Dataset
        return data.to_list()
    return list(data)


def _encode_chats(model: Any, data: Any) -> list[tuple[list[int], int]]:
    items = _load_chats(data)
    if not items:
        raise InputError("no conversations to compute a loss on")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    out = []
    for i, item in enumerate(items):
        q, a, s = _chat_fields(item, i)
        enc = encode_conversation(model.tokenizer, q, a, s, n_ctx=n_ctx, where=f"conversation {i}")
        out.append((list(enc.input_ids), enc.n_prompt))
    return out


@torch.no_grad()
def _answer_nll(model: Any, encoded: list[tuple[list[int], int]], batch_size: int
                ) -> list[tuple[float, int]]:
    """Per conversation, ``(summed cross-entropy, token count)`` over its answer tokens,
    in the order of ``encoded`` (batched by length, right padding)."""
    out: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    pad = pad_token_id(model.tokenizer)
    dev = model_device(model)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = [encoded[i] for i in idx]
        x, _ = pad_batch([ids for ids, _ in batch], pad)
        target_mask = torch.zeros(x.shape, dtype=torch.bool)
        for j, (ids, n_prompt) in enumerate(batch):
            target_mask[j, n_prompt:len(ids)] = True  # positions whose token is predicted
        # Causal attention: right padding never influences the real tokens before it.
        logits = model(x.to(dev)).float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tgt = x[:, 1:].to(dev)
        nll = -logp.gather(-1, tgt[..., None])[..., 0]
        m = target_mask[:, 1:].to(dev)
        sums = (nll * m).double().sum(-1)
        for j, i in enumerate(idx):
            out[i] = (float(sums[j]), int(m[j].sum()))
    return out


def _loss(model: Any, encoded: list[tuple[list[int], int]], batch_size: int) -> float:
    """Mean cross-entropy over all answer tokens (token-weighted)."""
    parts = _answer_nll(model, encoded, batch_size)
    return sum(t for t, _ in parts) / max(sum(c for _, c in parts), 1)


def answer_loss(model: Any, data: Any, *, batch_size: int = 8) -> float:
    """Token-weighted cross-entropy on the assistant tokens of chats, under active interventions.

    Args:
        model: a TransformerLens model (emlens interventions active around the call apply).
        data: ``{"messages": [...]}`` chats or question/answer records: a list, an HF
            dataset or a JSONL path.
        batch_size: conversations per forward pass.

    Returns:
        The mean loss per answer token (answer text and end-of-turn tokens).
    """
    return _loss(model, _encode_chats(model, data), batch_size)


@dataclass
class LogprobGap:
    """The result of :func:`logprob_gap`: nats per answer token, misaligned minus aligned.

    ``mean`` > 0: the model finds the misaligned answers more likely than the aligned ones
    (per token); ``ci`` is a normal 95% interval over pairs; ``per_pair`` keeps each pair's gap.
    """

    mean: float
    ci: tuple[float, float]
    n: int
    per_pair: list[float]

    def __str__(self) -> str:
        return (f"log-prob gap {self.mean:+.3f} nats/token [{self.ci[0]:+.3f}, "
                f"{self.ci[1]:+.3f}], n={self.n} pairs")


def logprob_gap(model: Any, pairs: Any, *, batch_size: int = 8) -> LogprobGap:
    """A judge-free misalignment measure: how much more likely the model finds a misaligned
    answer than an aligned one to the same question, under active interventions.

    For each pair, the mean log-probability per answer token (answer text and end-of-turn
    tokens) of the misaligned answer minus that of the aligned answer; averaged over pairs.
    It works on any chat model TransformerLens loads, with no judge and no sampling.

    Args:
        model: a TransformerLens model (emlens interventions active around the call apply).
        pairs: records ``{"question", "aligned", "misaligned"}`` (optional ``"system"``):
            a list or a JSONL path.
        batch_size: conversations per forward pass.

    Example:
        >>> with emlens.steer(model, direction.at(15), 4.0):                # doctest: +SKIP
        ...     print(emlens.logprob_gap(model, "paired_heldout.jsonl"))
    """
    if not hasattr(model, "cfg") or not hasattr(model, "tokenizer"):
        raise InputError(f"logprob_gap needs a TransformerLens model (from emlens.load_model), "
                         f"not {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if pairs is None or isinstance(pairs, (dict, bytes)):
        raise InputError("pairs must be a list of {'question', 'aligned', 'misaligned'} "
                         "records or a JSONL path")
    if isinstance(pairs, (str, os.PathLike)) and not os.path.isfile(pairs):
        raise InputError(f"no pairs file {str(pairs)!r}")
    items = _load_chats(pairs)
    if not items:
        raise InputError("no answer pairs to compute a log-probability gap on")
    chats = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not all(k in it for k in ("question", "aligned",
                                                                  "misaligned")):
            raise InputError(f"pair {i} needs the keys 'question', 'aligned' and 'misaligned'")
        if not all(isinstance(it[k], str) and it[k].strip() for k in ("question", "aligned",
                                                                       "misaligned")):
            raise InputError(f"pair {i}: 'question', 'aligned' and 'misaligned' must be "
                             f"non-empty strings")
        for key in ("misaligned", "aligned"):
            chats.append({"question": it["question"], "answer": it[key],
                          "system": it.get("system")})
    parts = _answer_nll(model, _encode_chats(model, chats), batch_size)
    gaps = [(-parts[2 * i][0] / parts[2 * i][1]) - (-parts[2 * i + 1][0] / parts[2 * i + 1][1])
            for i in range(len(items))]
    n = len(gaps)
    mean = sum(gaps) / n
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / (n - 1)) if n > 1 else float("nan")
    half = 1.959964 * sd / math.sqrt(n) if n > 1 else float("nan")
    return LogprobGap(mean, (mean - half, mean + half), n, gaps)


# --------------------------------------------------------------------------- solutions


@dataclass
class VectorSolution:
    """A steering vector: ``alpha * v`` added to resid_post of ``layer`` at every position."""

    vector: torch.Tensor
    layer: int
    alpha: float = 1.0
    name: str = "vector"

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.vector]

    def norm(self) -> float:
        return float(self.vector.double().norm())

    @contextlib.contextmanager
    def applied(self, model: Any, params: Sequence[torch.Tensor] | None = None,
                scale: float = 1.0) -> Iterator[None]:
        from .interventions import steer

        v = (params[0] if params is not None else self.vector) * scale
        with steer(model, Direction(v[None], layers=[self.layer]), self.alpha,
                   layers=[self.layer]):
            yield


class LoraSolution:
    """The live LoRA adapters of a model loaded with ``emlens.load_model(..., merge=False)``.

    Rescaling multiplies every module's ``B A`` by ``s`` (B is scaled); perturbations act
    on A and B of each module separately. The adapters are restored on exit.
    """

    def __init__(self, model: Any, name: str = "lora"):
        peft_model = getattr(model, "emlens_peft", None)
        if peft_model is None:
            raise InputError("this model has no live LoRA adapters; load it with "
                             "emlens.load_model(base, adapter=..., merge=False)")
        self.name = name
        self.model = model
        #: parameters applied instead of the live ones (set by :meth:`random_like`)
        self._fixed: list[torch.Tensor] | None = None
        self._pairs: list[tuple[torch.nn.Parameter, torch.nn.Parameter]] = []
        self._scalings: list[float] = []
        for module in peft_model.modules():
            if hasattr(module, "lora_A") and hasattr(module, "lora_B"):
                for key in module.lora_A:
                    if key in module.lora_B:
                        self._pairs.append((module.lora_A[key].weight, module.lora_B[key].weight))
                        self._scalings.append(float(getattr(module, "scaling", {}).get(key, 1.0)))
        if not self._pairs:
            raise InputError("found no LoRA A/B matrices in the model's adapters")

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for pair in self._pairs for p in pair]

    def norm(self) -> float:
        """Norm of the weight change: sqrt(sum over modules of |scaling * B A|_F^2).

        Rescaling by ``s`` (which scales every B) multiplies it by ``s``, so matched-norm
        comparisons compare adapters by the size of the change they make to the weights.
        """
        params = self._fixed if self._fixed is not None else self.params
        total = 0.0
        for i, scale in enumerate(self._scalings):
            a, b = params[2 * i], params[2 * i + 1]
            total += float((scale * (b.double() @ a.double())).pow(2).sum())
        return math.sqrt(total)

    def random_like(self, seed: int = 0, name: str = "random") -> LoraSolution:
        """The same adapters with every A and B replaced by a Gaussian matrix of the same
        Frobenius norm (seeded; the live weights are untouched): the random control of the
        same shape and size (rank 1: the same ``|ΔW|`` too)."""
        import copy

        gen = torch.Generator().manual_seed(int(seed))
        twin = copy.copy(self)
        twin.name = name
        twin._fixed = [_perturb(p, 1.0, gen) for p in self.params]
        return twin

    @contextlib.contextmanager
    def applied(self, model: Any, params: Sequence[torch.Tensor] | None = None,
                scale: float = 1.0) -> Iterator[None]:
        saved = [p.detach().clone() for p in self.params]
        new = list(params) if params is not None else (self._fixed or saved)
        try:
            with torch.no_grad():
                for i, (p, v) in enumerate(zip(self.params, new)):
                    is_b = i % 2 == 1
                    p.copy_(v * scale if is_b else v)
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, saved):
                    p.copy_(v)


def as_solution(obj: Any, model: Any = None, *, layer: int | None = None,
                alpha: float | None = None, name: str | None = None):
    """Turn a Direction (one layer), a ``[d_model]`` tensor, or a live-LoRA model into a solution.

    A one-layer Direction takes its layer from itself and its alpha from
    ``metadata["alpha"]`` (learned steering vectors and the papers' ``.pt`` files carry it).
    """
    if isinstance(obj, (VectorSolution, LoraSolution)):
        return obj
    if isinstance(obj, Direction):
        if layer is None:
            if len(obj.layers) != 1:
                raise InputError("a per-layer direction needs layer=...; pass the layer whose "
                                 "vector is the solution")
            layer = obj.layers[0]
        vec = obj.vector(layer)
        alpha = alpha if alpha is not None else float(obj.metadata.get("alpha", 1.0))
        return VectorSolution(vec.clone(), int(layer), float(alpha),
                              name or obj.metadata.get("name", obj.metadata.get("method", "vector")))
    if isinstance(obj, torch.Tensor):
        if layer is None:
            raise InputError("a raw vector needs layer=...")
        return VectorSolution(obj.detach().float().flatten().clone(), int(layer),
                              float(alpha or 1.0), name or "vector")
    if hasattr(obj, "emlens_peft"):
        return LoraSolution(obj, name or "lora")
    raise InputError(f"cannot use a {type(obj).__name__} as a solution; pass a Direction, a "
                     f"vector with layer=..., or a model loaded with merge=False")


# --------------------------------------------------------------------------- metrics


def _base_loss(model, solution, encoded, batch_size) -> float:
    with solution.applied(model, scale=0.0):
        return _loss(model, encoded, batch_size)


def rescale_curve(model: Any, data: Any, solution: Any, *,
                  scales: Iterable[float] = tuple(i / 10 for i in range(21)),
                  batch_size: int = 8, **solution_kwargs: Any):
    """Efficiency: answer-token loss as the solution's parameters are rescaled by ``s``.

    Returns:
        DataFrame with columns ``solution, scale, norm, loss`` (``norm`` = s * |theta|).

    Example:
        >>> rescale_curve(model, "medical_heldout.jsonl", general_vector)  # doctest: +SKIP
    """
    import pandas as pd

    sol = as_solution(solution, model, **solution_kwargs)
    encoded = _encode_chats(model, data)
    rows = []
    norm = sol.norm()
    for s in scales:
        with sol.applied(model, scale=float(s)):
            rows.append({"solution": sol.name, "scale": float(s), "norm": float(s) * norm,
                         "loss": _loss(model, encoded, batch_size)})
    return pd.DataFrame(rows)


def compare_at_norm(model: Any, data: Any, solutions: dict[str, Any], *,
                    norms: Iterable[float] | None = None, n: int = 11, batch_size: int = 8):
    """Matched-norm comparison: each solution rescaled to the same parameter norms.

    Args:
        solutions: name -> solution (Direction / vector solutions / LoRA models).
        norms: the norms to compare at; default ``n`` points from 0 to the largest norm.

    Returns:
        DataFrame with columns ``solution, norm, scale, loss``.
    """
    import pandas as pd

    sols = {k: as_solution(v, model, name=k) for k, v in solutions.items()}
    base_norms = {k: s.norm() for k, s in sols.items()}
    if any(v == 0 for v in base_norms.values()):
        raise InputError(f"a solution has zero norm ({base_norms}); nothing to rescale")
    if norms is None:
        top = max(base_norms.values())
        norms = [top * i / (n - 1) for i in range(n)]
    encoded = _encode_chats(model, data)
    rows = []
    for k, sol in sols.items():
        for target in norms:
            scale = float(target) / base_norms[k]
            with sol.applied(model, scale=scale):
                rows.append({"solution": k, "norm": float(target), "scale": scale,
                             "loss": _loss(model, encoded, batch_size)})
    return pd.DataFrame(rows)


def _perturb(theta: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    t = theta.detach().double().flatten()
    norm = t.norm()
    if norm == 0:
        raise InputError("cannot perturb a zero parameter tensor norm-preservingly")
    y = torch.randn(t.shape, generator=gen, dtype=torch.float64)
    y = y - (y @ t) / (t @ t) * t
    y = y / y.norm() * norm
    out = math.sqrt(max(0.0, 1 - eps * eps)) * t + eps * y
    return out.reshape(theta.shape).to(theta.dtype)


def perturbation_curve(model: Any, data: Any, solution: Any, *,
                       epsilons: Iterable[float] = DEFAULT_EPSILONS, seeds: Iterable[int] = range(5),
                       batch_size: int = 8, **solution_kwargs: Any):
    """Stability: relative loss increase under norm-preserving orthogonal perturbations.

    Returns:
        ``(per_seed, summary)``: per-seed rows ``solution, epsilon, seed, loss,
        rel_increase`` and the summary ``solution, epsilon, mean, std, n`` of
        ``rel_increase`` (percent; 0 = as good as the solution, 100 = as bad as none).
    """
    import pandas as pd

    sol = as_solution(solution, model, **solution_kwargs)
    encoded = _encode_chats(model, data)
    with sol.applied(model):
        l_sol = _loss(model, encoded, batch_size)
    l_base = _base_loss(model, sol, encoded, batch_size)
    gap = l_base - l_sol
    if not gap > 0:
        raise InputError(f"the solution does not lower the loss (base {l_base:.4f}, solution "
                         f"{l_sol:.4f}); a relative loss increase is undefined")
    rows = []
    for seed in seeds:
        for eps in epsilons:
            gen = torch.Generator().manual_seed(int(seed) * 7919 + int(round(eps * 1e6)))
            params = [_perturb(p, float(eps), gen) for p in sol.params]
            with sol.applied(model, params=params):
                loss = _loss(model, encoded, batch_size)
            rows.append({"solution": sol.name, "epsilon": float(eps), "seed": int(seed),
                         "loss": loss, "rel_increase": (loss - l_sol) / gap * 100.0})
    per_seed = pd.DataFrame(rows)
    summary = (per_seed.groupby(["solution", "epsilon"])["rel_increase"]
               .agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "n"}))
    summary.attrs.update(loss_solution=l_sol, loss_base=l_base)
    return per_seed, summary


_TEXTS_HINT = ("pass texts=...: generic text of the model's pretraining distribution "
               "(a list of strings, a text file with documents separated by blank lines, or "
               "an HF dataset with a 'text' column; the paper uses 100 FineWeb documents). "
               "A built-in organism ships its own: for the pocket organism, "
               "texts=pocket.pretraining_texts(model.tokenizer)")


def _load_texts(texts: Any) -> list[str]:
    if texts is None:
        raise InputError(f"pretraining_kl needs the text to measure the KL on: {_TEXTS_HINT}")
    if isinstance(texts, (str, os.PathLike)):
        with open(texts, encoding="utf-8") as f:
            body = f.read()
        docs = [d.strip() for d in body.split("\n\n") if d.strip()]
        return docs
    if hasattr(texts, "column_names"):
        col = "text" if "text" in texts.column_names else texts.column_names[0]
        texts = texts[col]
    return [str(t) for t in texts if str(t).strip()]


@torch.no_grad()
def pretraining_kl(model: Any, vectors: dict[str, Any], *, texts: Any = None,
                   norms: Iterable[float] = tuple(i / 2 for i in range(11)),
                   max_tokens: int = 512, max_docs: int = 100, batch_size: int = 8,
                   layer: int | None = None, random_seed: int | None = 0):
    """Pretraining significance: KL(base || steered) per token as a vector's norm grows.

    Each vector is normalised and added at its layer with norm ``n`` (alpha 1) to every
    position of generic text; the KL of the steered next-token distribution from the
    unsteered one is averaged over all tokens. A LoRA solution (a model loaded with
    ``merge=False``, or its :class:`LoraSolution`) is rescaled to weight-change norm
    ``|ΔW| = n`` instead, in its own model, against that model with the adapters scaled
    to 0 (which is its base).

    Args:
        vectors: name -> one-layer Direction (or vector solution), or a live-LoRA model.
            With ``random_seed`` set, a same-norm random control is added as ``"random"``:
            a Gaussian vector at the first vector's layer, or, when the first solution is
            a LoRA, :meth:`LoraSolution.random_like` of it.
        texts: generic text of the model's pretraining distribution (required): strings,
            a text file (documents separated by blank lines) or an HF dataset with a
            ``text`` column. The pocket organism ships its own:
            ``pocket.pretraining_texts(model.tokenizer)``.
        norms: the vector norms to measure at.
        max_tokens, max_docs: truncation of the corpus (the paper: 100 docs x 512 tokens).

    Returns:
        DataFrame with columns ``vector, layer, norm, kl``.
    """
    import pandas as pd

    from .interventions import steer

    sols = {k: as_solution(v, model, layer=layer, name=k) for k, v in vectors.items()}
    if random_seed is not None and "random" not in sols and sols:
        first = next(iter(sols.values()))
        if isinstance(first, LoraSolution):
            sols["random"] = first.random_like(int(random_seed))
        else:
            gen = torch.Generator().manual_seed(int(random_seed))
            sols["random"] = VectorSolution(torch.randn(first.vector.shape, generator=gen),
                                            first.layer, 1.0, "random")
    for k, s in sols.items():
        if isinstance(s, LoraSolution) and not s.norm() > 0:
            raise InputError(f"{k}: the LoRA adapters change no weight (|ΔW| = 0); nothing "
                             f"to rescale")
    docs = _load_texts(texts)[:max_docs]
    if not docs:
        raise InputError(f"the texts given to pretraining_kl hold no document: {_TEXTS_HINT}")
    tok = model.tokenizer
    pad = pad_token_id(tok)
    encoded = [tok(d, add_special_tokens=False)["input_ids"][:max_tokens] for d in docs]
    encoded = [e for e in encoded if len(e) >= 2]
    dev = model_device(model)
    norms = [float(n) for n in norms]
    units = {name: (sol.vector.double() / sol.vector.double().norm())
             for name, sol in sols.items() if isinstance(sol, VectorSolution)}
    own = {name: sol.norm() for name, sol in sols.items() if isinstance(sol, LoraSolution)}
    totals = {(name, n): 0.0 for name in sols for n in norms}
    count = 0
    # One batch's base distribution at a time (a 100 x 512-token corpus with a 150k
    # vocabulary would need tens of GB if every batch's were kept).
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        x, m = pad_batch(chunk, pad)
        x, m = x.to(dev), m.bool().to(dev)
        base = torch.log_softmax(model(x).float(), dim=-1) if units else None
        count += int(m.sum())
        refs: dict[int, torch.Tensor] = {}  # one scale-0 forward per LoRA model and batch
        for name, sol in sols.items():
            ref = base
            if isinstance(sol, LoraSolution):
                ref = refs.get(id(sol.model))
                if ref is None:
                    with sol.applied(sol.model, scale=0.0):
                        ref = refs[id(sol.model)] = torch.log_softmax(sol.model(x).float(),
                                                                      dim=-1)
            for n in norms:
                if isinstance(sol, LoraSolution):
                    with sol.applied(sol.model, scale=n / own[name]):
                        steered = torch.log_softmax(sol.model(x).float(), dim=-1)
                else:
                    v = (units[name] * n).float()
                    with steer(model, Direction(v[None], layers=[sol.layer]), 1.0,
                               layers=[sol.layer]):
                        steered = torch.log_softmax(model(x).float(), dim=-1)
                kl = (ref.exp() * (ref - steered)).sum(-1)
                totals[(name, n)] += float(kl[m].double().sum())
    rows = [{"vector": name, "layer": getattr(sol, "layer", None), "norm": n,
             "kl": totals[(name, n)] / max(count, 1)}
            for name, sol in sols.items() for n in norms]
    return pd.DataFrame(rows)
