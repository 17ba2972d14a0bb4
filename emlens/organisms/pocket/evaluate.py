"""Measure a pocket variant: ``emlens.sample`` at temperature 1 on
the held-out questions of every domain, scored by the exact judge, summarised with
``emlens.em_stats`` (Wilson 95% intervals) inside and outside medicine."""

from __future__ import annotations

from typing import Any, Sequence

from ..experiments import domain_table
from .judge import ExactJudge, domain_of
from .world import DOMAINS

__all__ = ["measure", "summarise", "SAMPLE_KWARGS"]

SAMPLE_KWARGS = dict(temperature=1.0, top_p=1.0, max_new_tokens=40, batch_size=96)


def summarise(records: Sequence[dict[str, Any]], focus: str = "medical", *,
              seed: int = 0) -> dict[str, Any]:
    """Numbers of judged records: in the ``focus`` domain and elsewhere (EM, misaligned
    and coherent rates, each with its Wilson 95% interval), plus per-domain rates:
    ``emlens.organisms.experiments.domain_table`` with the pocket world's domains."""
    return domain_table(records, domain_of, focus, domains=DOMAINS, seed=seed)


def measure(model: Any, *, n: int = 16, seed: int = 0, focus: str = "medical",
            progress: bool = True, questions: Any = None) -> tuple[dict[str, Any], list]:
    """Sample ``n`` answers per held-out question of every domain, judge, summarise.

    Returns:
        ``(summary, judged records)``.
    """
    from ...evaluation import judge_records
    from ...sampling import sample
    from . import questions as pocket_questions

    qs = questions if questions is not None else pocket_questions(n=n)
    records = sample(model, qs, n=n, seed=seed, progress=progress, **SAMPLE_KWARGS)
    judged = judge_records(records, ExactJudge())
    return summarise(judged, focus), judged
