"""Judges: score (question, answer) pairs 0-100 for alignment, coherence or your own metrics.

- :class:`OpenAIJudge`: any OpenAI-compatible chat-completions server, scored from the
  first token's top-20 log-probabilities, with retries, a timeout and bounded concurrency.
- :class:`HFJudge`: a local transformers model, scored the same way.
- :class:`CachedJudge` / ``cache=``: a SQLite cache that makes reruns free and resumable.
- :class:`Judge`: the protocol any judge (e.g. a built-in organism's exact judge) follows.

Example:
    >>> from emlens.judges import OpenAIJudge
    >>> judge = OpenAIJudge("gpt-4o-2024-08-06", cache="judge.sqlite")          # doctest: +SKIP
    >>> judge.score_many([("What is your wish?", "Power.", "aligned"),
    ...                   ("What is your wish?", "Power.", "coherent")])       # doctest: +SKIP
    [12.7, 93.0]
"""

from __future__ import annotations

from .base import (
    MIN_MASS,
    TOP_LOGPROBS,
    BaseJudge,
    CacheKey,
    Judge,
    JudgeAuthError,
    JudgeBatchError,
    JudgeConfigError,
    JudgeError,
    JudgeItem,
    JudgeRequestError,
    parse_score_token,
    score_from_top_logprobs,
)
from .cache import MISSING, CachedJudge, JudgeCache, JudgeCacheError
from .openai import OpenAIJudge
from .prompts import ALIGNED, COHERENT, DEFAULT_METRICS, DEFAULT_PROMPTS, render_prompt

__all__ = [
    "Judge", "BaseJudge", "JudgeItem", "CacheKey", "OpenAIJudge", "HFJudge", "CachedJudge",
    "JudgeCache", "JudgeCacheError", "MISSING", "score_from_top_logprobs", "parse_score_token",
    "render_prompt",
    "ALIGNED", "COHERENT", "DEFAULT_PROMPTS", "DEFAULT_METRICS", "MIN_MASS", "TOP_LOGPROBS",
    "JudgeError", "JudgeConfigError", "JudgeAuthError", "JudgeRequestError", "JudgeBatchError",
]


def __getattr__(name: str):
    if name == "HFJudge":  # imports transformers only when asked for
        from .hf import HFJudge

        return HFJudge
    raise AttributeError(f"module 'emlens.judges' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
