"""Experiment code shared by every built-in organism (above the library, below each organism).

- :mod:`.rates`: the measured table of EM inside and outside an organism's training
  (*focus*) domain, parameterised by the organism's ``domain_of(question) -> str``.
- :mod:`.steps`: the organism-independent steps of a demo (sample and judge into that
  table, the layer to intervene at, ablation against a random direction, a sweep's
  headline, each compared with its random control; held-out projections).
- :mod:`.stats`: statistics over training seeds (mean and t-interval, a claim's verdict).
- :mod:`.report`: the demo's summary as HTML tables and printed lines, what the numbers
  show in words (:func:`readings`: each headline against its control and the papers'
  effect, a null result said as one), and the report writer, given the numbers and the
  labels (organism, model names, focus domain) to show.

Balanced response sets are ``emlens.select_responses`` (with ``aligned_records=`` for the
aligned set taken from another model's answers) and the LoRA weight-change norm is
``emlens.stability.LoraSolution.norm``: library functions, not repeated here.

Example:
    >>> from emlens.organisms.experiments import domain_table, flat_rates
    >>> recs = [{"question": "q med", "aligned": 0, "coherent": 90},
    ...         {"question": "q pets", "aligned": 10, "coherent": 90}]
    >>> flat_rates(domain_table(recs, lambda q: q.split()[1], "med"))["em_elsewhere"]
    1.0
"""

from __future__ import annotations

from .rates import domain_table, flat_rates, per_domain_stats
from .report import (
    ReportLabels,
    output_dir,
    readings,
    summary_html,
    summary_lines,
    write_report,
)
from .stats import mean_ci, verdict
from .steps import (
    ablation_cuts,
    ablation_effect,
    ablation_vs_random,
    compare_rates,
    held_out_projections,
    judged_rates,
    split_halves,
    steering_effect,
    steering_summary,
    strongest_layer,
)

__all__ = ["domain_table", "flat_rates", "per_domain_stats", "judged_rates", "strongest_layer",
           "ablation_effect", "ablation_cuts", "ablation_vs_random", "compare_rates",
           "steering_summary", "steering_effect", "split_halves", "held_out_projections",
           "mean_ci", "verdict",
           "ReportLabels", "output_dir", "readings", "summary_html", "summary_lines",
           "write_report"]
