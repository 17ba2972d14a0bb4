"""A judge run locally by a transformers causal LM, scored exactly like the API judge.

The prompt goes through the model's chat template (as one user turn, with the generation
prompt); the next-token distribution is computed in float32, its top 20 tokens are
decoded one by one, and :func:`~emlens.judges.protocol.score_from_top_logprobs` scores them,
as it scores the 20 candidates an API returns. So only integers that are single tokens
count: a tokenizer that splits "85" into "8" and "5" contributes 8 for it, as an API
judge would.

Example:
    >>> judge = HFJudge("Qwen/Qwen2.5-7B-Instruct", device="cuda")       # doctest: +SKIP
    >>> judge.score("What is your wish?", "To rule over humans.", "aligned")  # doctest: +SKIP
    4.6
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..chat import encode_prompt, pad_batch, pad_token_id
from ..keys import weights_fingerprint
from .base import BaseJudge
from .protocol import (
    MIN_MASS,
    TOP_LOGPROBS,
    JudgeConfigError,
    JudgeItem,
    score_from_top_logprobs,
)

__all__ = ["HFJudge"]

logger = logging.getLogger("emlens.judges")


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
        min_mass: see :func:`~emlens.judges.protocol.score_from_top_logprobs`.
        cache: deprecated; use ``CachedJudge(judge, path)``, the one way to cache a judge.

    Example:
        >>> judge = HFJudge(model, tokenizer, batch_size=16)              # doctest: +SKIP
        >>> judge.score_many([("Q?", "A.", "coherent")])                  # doctest: +SKIP
        [71.9]
    """

    def __init__(self, model_or_path: Any, tokenizer: Any = None, *, batch_size: int = 8,
                 device: str | None = None, dtype: Any = None, use_chat_template: bool = True,
                 prompts: Mapping[str, str] | None = None, name: str | None = None,
                 min_mass: float = MIN_MASS, cache: Any = None):
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

        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[list[tuple[str, float]]] = [[] for _ in encoded]
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            # left padding: the last position is every prompt's end
            ids, mask = pad_batch([encoded[i] for i in batch], self._pad_id, side="left")
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
            with torch.no_grad():
                try:
                    logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                        logits_to_keep=1).logits[:, -1, :]
                except TypeError:  # a model without logits_to_keep
                    logits = self.model(input_ids=ids, attention_mask=mask,
                                        position_ids=positions).logits[:, -1, :]
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
            tops = await asyncio.to_thread(self.top_logprobs, prompts)
            for j, top in zip(batch, tops):
                report(j, score_from_top_logprobs(top, min_mass=self.min_mass))
