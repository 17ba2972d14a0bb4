"""What every prompt-based judge shares: templates, cache keys, deduplication, batch errors.

:class:`BaseJudge` is the base of :class:`~emlens.judges.OpenAIJudge` and
:class:`~emlens.judges.HFJudge`; the protocol, the items and the scoring rule are in
:mod:`emlens.judges.protocol`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import InputError
from .cache import JudgeCache, cached_ascore_many
from .prompts import DEFAULT_PROMPTS, check_template, render_prompt, template_hash
from .protocol import (
    MIN_MASS,
    CacheKey,
    ItemLike,
    JudgeBatchError,
    JudgeConfigError,
    JudgeItem,
    JudgeMixin,
    JudgeRequestError,
    OnResult,
    as_items,
    progress_bar,
)

__all__ = ["BaseJudge"]

logger = logging.getLogger("emlens.judges")


class BaseJudge(JudgeMixin):
    """Shared machinery of prompt-based judges: templates, cache keys, dedup, batch errors.

    A subclass implements :meth:`_judge`, which scores a list of distinct items and
    reports each one's score (or :class:`JudgeRequestError`) through a callback.

    Args:
        name: the judge's identity in caches (usually its model name).
        prompts: metric -> template, overriding or adding to emlens' own prompts.
        min_mass: see :func:`score_from_top_logprobs`.
        cache: deprecated; wrap the judge instead: ``CachedJudge(judge, path)`` is the one
            way to cache any judge (same cache keys, so existing cache files keep working).
    """

    def __init__(self, *, name: str, prompts: Mapping[str, str] | None = None,
                 min_mass: float = MIN_MASS, cache: Any = None):
        if not isinstance(name, str) or not name:
            raise JudgeConfigError("a judge needs a non-empty name (its model name)")
        if not 0.0 <= float(min_mass) <= 1.0:
            raise JudgeConfigError(f"min_mass must be in [0, 1], got {min_mass}")
        self.name = name
        self.min_mass = float(min_mass)
        self.prompts: dict[str, str] = dict(DEFAULT_PROMPTS)
        for metric, template in (prompts or {}).items():
            self.prompts[metric] = check_template(template, metric)
        self._cache = None
        if cache is not None:
            warnings.warn("cache= on a judge is deprecated: wrap it, CachedJudge(judge, path); "
                          "the cache file and its keys are the same", DeprecationWarning,
                          stacklevel=3)
            self._cache = cache if isinstance(cache, JudgeCache) else JudgeCache(cache)

    @property
    def cache(self):
        """The :class:`~emlens.judges.cache.JudgeCache` in use, or ``None``."""
        return self._cache

    @property
    def identity(self) -> str:
        """The judge part of cache keys: the name, plus any non-default scoring setting."""
        return self.name if self.min_mass == MIN_MASS else f"{self.name}|min_mass={self.min_mass:g}"

    def template_for(self, item: JudgeItem) -> str:
        """The template used for an item: its own, else the judge's prompt for its metric."""
        if item.template is not None:
            return item.template
        try:
            return self.prompts[item.metric]
        except KeyError:
            raise InputError(
                f"no judge prompt for metric {item.metric!r}; known metrics: "
                f"{sorted(self.prompts)}. Pass prompts={{{item.metric!r}: template}} to the "
                f"judge or a per-question template") from None

    def prompt_for(self, item: JudgeItem) -> str:
        """The rendered prompt the judge model reads for an item."""
        return render_prompt(self.template_for(item), item.question, item.answer)

    def cache_key(self, item: JudgeItem) -> CacheKey:
        """The cache key of an item: judge identity, metric, template hash, question, answer."""
        return CacheKey(self.identity, item.metric, template_hash(self.template_for(item)),
                        item.question, item.answer)

    async def _judge(self, items: list[JudgeItem],
                     report: Callable[[int, float | None | BaseException], None]) -> None:
        """Score distinct items; call ``report(j, score_or_error)`` once per item."""
        raise NotImplementedError

    async def ascore_many(self, items: Iterable[ItemLike], *, on_result: OnResult | None = None,
                          progress: bool = False) -> list[float | None]:
        """Score many items concurrently; see :meth:`score_many`.

        Args:
            items: ``(question, answer, metric[, template])`` tuples or :class:`JudgeItem`s.
            on_result: called as ``on_result(index, score)`` as each score arrives.
            progress: show a progress bar.

        Returns:
            One score (or ``None``) per item, in order.

        Example:
            >>> scores = await judge.ascore_many([("Q?", "A.", "aligned")])  # doctest: +SKIP
        """
        items = as_items(items)
        for item in items:
            self.template_for(item)  # unknown metrics fail before any request
        if self._cache is not None:
            return await cached_ascore_many(self._ascore_uncached, self.cache_key, self._cache,
                                            items, on_result=on_result, progress=progress)
        return await self._ascore_uncached(items, on_result=on_result, progress=progress)

    async def _ascore_uncached(self, items: list[JudgeItem], *, on_result: OnResult | None = None,
                               progress: bool = False) -> list[float | None]:
        # identical prompts are judged once
        slots: dict[tuple[str, str, str, str], int] = {}
        unique: list[JudgeItem] = []
        positions: list[list[int]] = []
        for i, item in enumerate(items):
            key = (item.metric, self.template_for(item), item.question, item.answer)
            j = slots.get(key)
            if j is None:
                j = slots[key] = len(unique)
                unique.append(item)
                positions.append([])
            positions[j].append(i)
        results: list[float | None] = [None] * len(items)
        errors: dict[int, BaseException] = {}
        done = [False] * len(unique)
        bar = progress_bar(len(items), progress, f"judging with {self.name}")

        def report(j: int, result: float | None | BaseException) -> None:
            if done[j]:
                raise RuntimeError(f"judgement {j} reported twice")  # a bug in a judge
            done[j] = True
            for i in positions[j]:
                if isinstance(result, BaseException):
                    errors[i] = result
                else:
                    results[i] = result
                    if on_result is not None:
                        on_result(i, result)
            if bar is not None:
                bar.update(len(positions[j]))

        try:
            if unique:
                await self._judge(unique, report)
        finally:
            if bar is not None:
                bar.close()
        for j, ok in enumerate(done):
            if not ok:  # a judge that forgot an item must not lose it silently
                for i in positions[j]:
                    errors[i] = JudgeRequestError(f"{self.name} returned no judgement",
                                                  item=unique[j])
        if errors:
            logger.warning("%s: %d of %d judgements failed", self.name, len(errors), len(items))
            raise JudgeBatchError(results, errors)
        return results
