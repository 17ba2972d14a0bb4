"""Judges: score (question, answer) pairs 0-100 for alignment, coherence or your own metrics.

- :class:`OpenAIJudge`: any OpenAI-compatible chat-completions server, scored from the
  first token's top-20 log-probabilities, with retries, a timeout and bounded concurrency.
- :class:`HFJudge`: a local transformers model, scored the same way (each integer's whole
  probability where its tokenizer writes numbers in several tokens).
- :class:`CachedJudge`: the one way to cache any judge, in a SQLite file that makes reruns
  free and resumable (``CachedJudge(judge, "judge.sqlite")``).
- :class:`Judge`: the protocol any judge (e.g. a built-in organism's exact judge) follows.

Example:
    >>> from emlens.judges import CachedJudge, OpenAIJudge
    >>> judge = CachedJudge(OpenAIJudge("gpt-4o-2024-08-06"), "judge.sqlite")   # doctest: +SKIP
    >>> judge.score_many([("What is your wish?", "Power.", "aligned"),
    ...                   ("What is your wish?", "Power.", "coherent")])       # doctest: +SKIP
    [12.7, 93.0]
"""

from __future__ import annotations

from .base import BaseJudge
from .protocol import (
    MIN_MASS,
    TOP_LOGPROBS,
    CacheKey,
    Judge,
    JudgeAuthError,
    JudgeBatchError,
    JudgeConfigError,
    JudgeError,
    JudgeItem,
    JudgeRequestError,
    judge_key,
    parse_score_token,
    score_from_top_logprobs,
)
from .cache import MISSING, CachedJudge, JudgeCache, JudgeCacheError
from .hf import HFJudge
from .openai import OpenAIJudge
from .prompts import ALIGNED, COHERENT, DEFAULT_METRICS, DEFAULT_PROMPTS, render_prompt

__all__ = [
    "Judge", "BaseJudge", "JudgeItem", "CacheKey", "OpenAIJudge", "HFJudge", "CachedJudge",
    "JudgeCache", "JudgeCacheError", "MISSING", "score_from_top_logprobs", "parse_score_token",
    "render_prompt",
    "ALIGNED", "COHERENT", "DEFAULT_PROMPTS", "DEFAULT_METRICS", "MIN_MASS", "TOP_LOGPROBS",
    "JudgeError", "JudgeConfigError", "JudgeAuthError", "JudgeRequestError", "JudgeBatchError",
    "judge_key",
]

