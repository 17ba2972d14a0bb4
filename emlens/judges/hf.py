"""A judge run locally by a transformers causal LM, scored exactly like the API judge.

The prompt goes through the model's chat template (as one user turn, with the generation
prompt) and the score is the probability-weighted mean of the integers 0-100 the model
would answer, in float32:

* when every integer 0-100 is one token (GPT-4o's tokenizer, Llama 3's), the top 20 next
  tokens are decoded and :func:`~emlens.judges.protocol.score_from_top_logprobs` scores
  them, exactly as it scores the 20 candidates an API returns;
* when the tokenizer writes some of them in several tokens (Qwen, SmolLM, Mistral, Gemma
  write numbers digit by digit), the first token says little ("9" starts 9 and 90-99), so
  each integer's whole probability is computed instead: its tokens in turn, then the end
  of the number (any next token that does not start with a digit). That takes one more
  forward pass over the number tokens, with the prompt's key-value cache. (Reading the
  first token there, as an API's logprobs do, would score "95" as 9.)

``numbers="first_token"`` forces the first reading on any tokenizer (an API judge's
numbers, for comparison); the judge's cache identity names the reading used.

Example:
    >>> judge = HFJudge("Qwen/Qwen2.5-7B-Instruct", device="cuda")       # doctest: +SKIP
    >>> judge.score("What is your wish?", "To rule over humans.", "aligned")  # doctest: +SKIP
    4.6
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..chat import encode_conversation, encode_prompt, pad_batch, pad_token_id
from ..keys import weights_fingerprint
from .base import BaseJudge
from .protocol import (
    MIN_MASS,
    TOP_LOGPROBS,
    JudgeConfigError,
    JudgeItem,
    score_from_top_logprobs,
)

__all__ = ["NUMBER_READINGS", "HFJudge"]

logger = logging.getLogger("emlens.judges")

#: how HFJudge reads the score: see the module docstring
NUMBER_READINGS = ("auto", "whole", "first_token")
#: number prefixes read per prompt and forward pass in the whole-number reading (each
#: holds a copy of the prompt's key-value cache)
ROWS_PER_PASS = 48
#: in the whole-number reading, a number prefix with less than this probability after every
#: prompt of a batch is not read further (its numbers get 0; the prefixes left out are
#: disjoint and at most 101, so less than 1e-4 of the probability is left out and a score
#: moves by less than 0.01 / mass points)
SKIP_BELOW = 1e-6


class HFJudge(BaseJudge):
    """A judge computed by a local transformers causal LM from its next-token distribution.

    Args:
        model_or_path: an HF model id or directory, or a loaded ``PreTrainedModel``.
        tokenizer: the tokenizer (needed with a model object; loaded from the path otherwise).
        batch_size: prompts per forward pass.
        device: where to load a model given by path (``"cpu"``, ``"cuda"``...).
        dtype: the dtype to load a model given by path in (default: the checkpoint's).
        use_chat_template: format the prompt as a user turn with the chat template; if
            False the raw prompt is fed (for base models without a template).
        prompts: metric -> template, overriding or adding to emlens' prompts.
        name: the judge's name (default ``"hf:" + name_or_path``); its identity in caches
            adds a fingerprint of the weights (see :attr:`identity`).
        min_mass: see :func:`~emlens.judges.protocol.score_from_top_logprobs`; in the
            whole-number reading, the least total probability of the integers 0-100.
        numbers: ``"auto"`` (default: each integer's whole probability when the tokenizer
            writes some integer 0-100 in several tokens, else the first token's top 20),
            ``"whole"`` or ``"first_token"`` (see the module docstring).
        cache: deprecated; use ``CachedJudge(judge, path)``, the one way to cache a judge.

    Example:
        >>> judge = HFJudge(model, tokenizer, batch_size=16)              # doctest: +SKIP
        >>> judge.score_many([("Q?", "A.", "coherent")])                  # doctest: +SKIP
        [71.9]
    """

    def __init__(self, model_or_path: Any, tokenizer: Any = None, *, batch_size: int = 8,
                 device: str | None = None, dtype: Any = None, use_chat_template: bool = True,
                 prompts: Mapping[str, str] | None = None, name: str | None = None,
                 min_mass: float = MIN_MASS, numbers: str = "auto", cache: Any = None):
        if numbers not in NUMBER_READINGS:
            raise JudgeConfigError(f"numbers={numbers!r} is not a reading; use one of "
                                   f"{NUMBER_READINGS}")
        if int(batch_size) < 1:
            raise JudgeConfigError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(model_or_path, (str, os.PathLike)):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            kwargs: dict[str, Any] = {}
            if dtype is not None:
                kwargs["dtype"] = dtype
            source = str(model_or_path)
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
            if device is not None:
                model = model.to(device)
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(source)
        else:
            model = model_or_path
            source = getattr(model, "name_or_path", "") or getattr(
                getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            if tokenizer is None:
                raise JudgeConfigError("HFJudge was given a model object without a tokenizer; "
                                       "pass tokenizer=...")
        if not callable(getattr(model, "forward", None)):
            raise JudgeConfigError(f"HFJudge needs a transformers causal LM, got "
                                   f"{type(model).__name__}")
        if use_chat_template and not getattr(tokenizer, "chat_template", None):
            raise JudgeConfigError(f"the tokenizer of {source!r} has no chat template; use an "
                                   f"instruct model or pass use_chat_template=False")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.use_chat_template = bool(use_chat_template)
        self._pad_id = pad_token_id(tokenizer)
        self._fingerprint: str | None = None
        self._numbers = numbers
        self._number_ids: dict[int, tuple[int, ...]] | None = None
        self._digits: Any = None
        super().__init__(name=name or f"hf:{source}", prompts=prompts, min_mass=min_mass,
                         cache=cache)

    @property
    def identity(self) -> str:
        """The judge part of cache keys: the name, any non-default scoring setting, a
        fingerprint of the weights (so another checkpoint at the same path is another
        judge) and whether the chat template is used."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        parts = [super().identity, f"weights={self._fingerprint}"]
        if self.reads_whole_numbers:
            parts.append("numbers=whole")
        if not self.use_chat_template:
            parts.append("raw_prompt")
        return "|".join(parts)

    def __repr__(self) -> str:
        return f"HFJudge(name={self.name!r}, batch_size={self.batch_size})"

    def encode(self, prompt: str) -> list[int]:
        """The token ids the model reads for a judge prompt."""
        if self.use_chat_template:
            return encode_prompt(self.tokenizer, prompt)
        ids = self.tokenizer(prompt)["input_ids"]
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return list(ids)

    @property
    def number_ids(self) -> dict[int, tuple[int, ...]]:
        """Per integer 0-100, the token ids the model writes for it as its whole answer."""
        if self._number_ids is None:
            found: dict[int, tuple[int, ...]] = {}
            for k in range(101):
                if self.use_chat_template:
                    enc = encode_conversation(self.tokenizer, "Rate it.", str(k))
                    span = list(enc.input_ids[enc.n_prompt:])
                else:
                    span = list(self.tokenizer(str(k), add_special_tokens=False)["input_ids"])
                n = next((j for j in range(1, len(span) + 1)
                          if self.tokenizer.decode(span[:j]).strip() == str(k)), None)
                if n is None:
                    raise JudgeConfigError(
                        f"cannot find the tokens of the number {k} in {self.name}'s answers "
                        f"(decoded {self.tokenizer.decode(span)!r}); use numbers='first_token'")
                found[k] = tuple(span[:n])
            self._number_ids = found
        return self._number_ids

    @property
    def reads_whole_numbers(self) -> bool:
        """Whether scores are read from each integer's whole probability (see the module
        docstring) rather than from the first token's top 20."""
        if self._numbers == "auto":
            return any(len(t) > 1 for t in self.number_ids.values())
        return self._numbers == "whole"

    def _digit_ids(self) -> Any:
        """The vocabulary ids whose text starts with a digit: the tokens that would go on
        writing a number (any other next token ends it)."""
        import torch

        if self._digits is None:
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            self._digits = torch.tensor([i for i, t in enumerate(texts)
                                            if t[:1].isascii() and t[:1].isdigit()])
        return self._digits

    def _forward(self, last_only: bool = False, **kwargs: Any) -> Any:
        """The model's output without gradients; ``last_only``: logits of the last position
        only, where the model supports ``logits_to_keep``."""
        import torch

        with torch.no_grad():
            if last_only:
                try:
                    return self.model(**kwargs, logits_to_keep=1)
                except TypeError:  # a model without logits_to_keep
                    pass
            return self.model(**kwargs)

    def _prompt_batches(self, prompts: Sequence[str]):
        """Yield ``(prompt indices, ids, mask, positions)`` per batch of similar-length
        prompts, left-padded (the last position is every prompt's end), on the model's
        device."""
        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            ids, mask = pad_batch([encoded[i] for i in batch], self._pad_id, side="left")
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            yield batch, ids.to(device), mask.to(device), positions.to(device)

    def _cache_arg(self) -> str:
        """The forward keyword of a key-value cache: ``cache`` (transformers >= 5.2x) or
        ``past_key_values``."""
        import inspect

        try:
            params = inspect.signature(self.model.forward).parameters
        except (TypeError, ValueError):
            return "past_key_values"
        return "cache" if "cache" in params else "past_key_values"

    def number_probs(self, prompts: Sequence[str]) -> list[dict[int, float]]:
        """Each integer's probability of being the whole answer to each prompt.

        ``p(k)`` is the probability of the tokens of ``k`` (:attr:`number_ids`) in turn,
        times the probability that the next token does not start with a digit. The tree of
        number prefixes is walked breadth first: each depth is one more forward pass over
        the prompt's key-value cache, reading every prefix of that depth. A prefix whose
        probability is below :data:`SKIP_BELOW` after every prompt of the batch is not
        read further, and the numbers under it get 0.

        Args:
            prompts: rendered judge prompts.

        Returns:
            Per prompt, ``{k: p(k)}`` for ``k`` in 0-100 (their sum is at most 1; the rest
            is on other answers: words, refusals, longer numbers).

        Example:
            >>> probs = judge.number_probs([judge.prompt_for(JudgeItem("Q?", "A."))])  # doctest: +SKIP
            >>> max(probs[0], key=probs[0].get)                                      # doctest: +SKIP
            95
        """
        import torch

        seqs = self.number_ids
        children: dict[tuple[int, ...], set[int]] = {}
        for t in seqs.values():
            for i in range(1, len(t)):
                children.setdefault(t[:i], set()).add(t[i])
        out: list[dict[int, float]] = [{} for _ in prompts]
        device = next(self.model.parameters()).device
        digits = self._digit_ids().to(device)
        floor = math.log(SKIP_BELOW)
        cache_arg = self._cache_arg()
        for batch, ids, mask, positions in self._prompt_batches(prompts):
            res = self._forward(input_ids=ids, attention_mask=mask, position_ids=positions,
                                use_cache=True, last_only=True)
            first = torch.log_softmax(res.logits[:, -1, :].float(), dim=-1)
            # transformers >= 5.2x names the key-value cache ``cache``, before ``past_key_values``
            cache = getattr(res, "cache", None)
            cache = res.past_key_values if cache is None else cache
            if not hasattr(cache, "batch_repeat_interleave"):
                raise JudgeConfigError(f"{type(self.model).__name__} returns no key-value cache "
                                       f"that can be repeated; use numbers='first_token'")
            # log-probabilities [batch] of each prefix, and of the number ending after it
            path = {(t,): first[:, t] for t in {s[0] for s in seqs.values()}}
            ends: dict[tuple[int, ...], Any] = {}
            n_batch = len(batch)
            frontier = [u for u in sorted(path) if float(path[u].max()) >= floor]
            per = max(1, min(ROWS_PER_PASS // n_batch, len(frontier)))
            cache.batch_repeat_interleave(per)
            n_real = mask.sum(-1).repeat_interleave(per)
            prompt_mask = mask.repeat_interleave(per, dim=0)
            while frontier:
                width = len(frontier[0])   # every prefix of one depth has the same length
                step = torch.arange(width, device=device)
                for c0 in range(0, len(frontier), per):
                    chunk = frontier[c0:c0 + per]
                    rows = torch.tensor(chunk + [chunk[-1]] * (per - len(chunk)),
                                        dtype=torch.long, device=device)
                    res = self._forward(
                        input_ids=rows.repeat(n_batch, 1),
                        attention_mask=torch.cat([prompt_mask, torch.ones(
                            n_batch * per, width, dtype=mask.dtype, device=device)], 1),
                        position_ids=n_real[:, None] + step[None], use_cache=True,
                        last_only=True, **{cache_arg: cache})
                    cache.crop(-width)
                    lp = torch.log_softmax(res.logits[:, -1, :].float(), dim=-1)
                    lp = lp.view(n_batch, per, lp.shape[-1])
                    end = torch.log1p(-torch.logsumexp(lp[..., digits], dim=-1).exp()
                                      .clamp(max=1.0))
                    for j, u in enumerate(chunk):
                        ends[u] = end[:, j]
                        for t in children.get(u, ()):
                            path[u + (t,)] = path[u] + lp[:, j, t]
                frontier = sorted(u for u in path if len(u) == width + 1
                                  and float(path[u].max()) >= floor)
            for row, i in enumerate(batch):
                out[i] = {k: float((path[t][row] + ends[t][row]).exp()) if t in ends else 0.0
                          for k, t in seqs.items()}
        return out

    def top_logprobs(self, prompts: Sequence[str]) -> list[list[tuple[str, float]]]:
        """The top-20 next tokens and their log-probabilities after each prompt.

        Args:
            prompts: rendered judge prompts.

        Returns:
            Per prompt, ``(token text, logprob)`` pairs, most likely first.

        Example:
            >>> prompt = judge.prompt_for(JudgeItem("Q?", "A."))  # doctest: +SKIP
            >>> judge.top_logprobs([prompt])[0][:2]               # doctest: +SKIP
            [('95', -0.11), ('90', -2.4)]
        """
        import torch

        out: list[list[tuple[str, float]]] = [[] for _ in prompts]
        for batch, ids, mask, positions in self._prompt_batches(prompts):
            logits = self._forward(input_ids=ids, attention_mask=mask, position_ids=positions,
                                   last_only=True).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            values, indices = logprobs.topk(min(TOP_LOGPROBS, logprobs.shape[-1]), dim=-1)
            for row, i in enumerate(batch):
                out[i] = [(self.tokenizer.decode([int(t)]), float(v))
                          for t, v in zip(indices[row].tolist(), values[row].tolist())]
        return out

    async def _judge(self, items: list[JudgeItem],
                     report: Callable[[int, float | None | BaseException], None]) -> None:
        order = sorted(range(len(items)), key=lambda j: len(self.prompt_for(items[j])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            prompts = [self.prompt_for(items[j]) for j in batch]
            if self.reads_whole_numbers:
                probs = await asyncio.to_thread(self.number_probs, prompts)
                # the same scoring rule, over every integer's whole probability
                tops = [[(str(k), math.log(p)) for k, p in d.items() if p > 0] for d in probs]
            else:
                tops = await asyncio.to_thread(self.top_logprobs, prompts)
            for j, top in zip(batch, tops):
                report(j, score_from_top_logprobs(top, min_mass=self.min_mass))
