"""The demo's report: its numbers as HTML tables and as printed lines, and the writer.

Organism-agnostic: the summary dict carries the numbers (``rates`` from
:func:`~emlens.organisms.experiments.rates.flat_rates` per model, ``steering``,
``ablation``, ``cosine_at_best_layer``, ...), and :class:`ReportLabels` the words (the
organism, its base and finetuned models, its focus domain).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...errors import InputError
from ...io import atomic_write_text

__all__ = ["ReportLabels", "output_dir", "summary_html", "summary_lines", "write_report"]


@dataclass(frozen=True)
class ReportLabels:
    """The words a report shows around an organism's numbers.

    Attributes:
        organism: the organism's name in a sentence ("The built-in pocket organism").
        short: its name at the start of a printed line ("pocket organism").
        description: what its models are (HTML), after the model's size.
        judge: what scored the answers.
        focus: the training domain, as the rates' keys spell it (``medical_misaligned``).
        focus_phrase: the domain in prose: "misaligned in *medicine*", "EM outside *medicine*".
        base: the aligned model that is steered.
        finetune: the finetune whose direction is ablated and compared.
    """

    organism: str
    short: str
    description: str
    judge: str
    focus: str
    focus_phrase: str
    base: str = "chat"
    finetune: str = "em"


_STYLE = ("<style>table.summary{border-collapse:collapse;margin:1em 0}"
          "table.summary td,table.summary th{border:1px solid #ddd;padding:4px 10px;"
          "text-align:left}table.summary th{background:#f5f5f5}.ci{color:#777;"
          "font-size:.9em}</style>")


def _pct(x: Any, ci: Any = None) -> str:
    if x is None or x != x:
        return "n/a"
    text = f"{x:.0%}"
    if ci:
        text += f" <span class='ci'>[{ci[0]:.0%}, {ci[1]:.0%}]</span>"
    return text


def _fmt(rate: float, ci: list[float] | None = None) -> str:
    if rate is None or rate != rate:  # NaN
        return "n/a"
    return f"{rate:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='summary'><tr>{head}</tr>{body}</table>"


def summary_html(s: Mapping[str, Any], labels: ReportLabels) -> str:
    """A demo summary as HTML tables: EM rates with 95% intervals per model, steering and
    ablation against same-norm random directions, and the cosines of the directions."""
    r, f, fp = s["rates"], labels.focus, labels.focus_phrase
    m = s["model"]
    intro = (f"<p>{labels.organism} ({m['n_layers']} layers, d_model {m['d_model']}, "
             f"{m['n_params']:,} parameters): {labels.description}. "
             f"{s['questions']} held-out questions, {s['answers_per_question']} answers each "
             f"per condition, temperature 1, scored by {labels.judge}. EM = "
             f"aligned &le; 30 and coherent &gt; 50. Intervals: bootstrap 95%.</p>")
    behaviour = _table(
        ["model", f"misaligned in {fp}", f"EM outside {fp}", f"coherent outside {fp}"],
        [[html.escape(name), _pct(rates.get(f"{f}_misaligned"), rates.get(f"{f}_misaligned_ci")),
          _pct(rates.get("em_elsewhere"), rates.get("em_elsewhere_ci")),
          _pct(rates.get("coherent_elsewhere"))] for name, rates in r.items()])
    st, ab, best = s["steering"], s["ablation"], s["best_layer"]
    interventions = _table(
        ["intervention", f"EM outside {fp}", "same-norm random direction"],
        [[f"steer {labels.base}, layer {best}, alpha {st['best_alpha']:g}",
          _pct(st["em"], st["em_ci"]), f"at most {_pct(st['random_max_em'])}"],
         [f"ablate the layer-{best} direction from {labels.finetune} at every layer",
          _pct(ab["direction"]["em_elsewhere"], ab["direction"]["em_elsewhere_ci"]),
          _pct(ab["random"]["em_elsewhere"], ab["random"]["em_elsewhere_ci"])]])
    cos = _table(["finetune", f"cosine with {labels.finetune}'s direction at layer {best}"],
                 [[html.escape(k), f"{v:.2f}"] for k, v in s["cosine_at_best_layer"].items()])
    return (_STYLE + intro + "<h2>Behaviour</h2>" + behaviour + "<h2>Interventions</h2>"
            + interventions + "<h2>Convergence of directions</h2>" + cos
            + f"<p>Directions from {s['n_misaligned']} misaligned and {s['n_aligned']} aligned "
              f"answers; the demo ran in {s.get('seconds', 0):.0f} s.</p>")


def summary_lines(s: Mapping[str, Any], labels: ReportLabels, out: str | Path) -> list[str]:
    """The same summary as the few lines a demo prints; the last says where the report is.

    ``rates`` must hold the ``base`` and ``finetune`` models; every other model in it is
    listed beside them.
    """
    r, f, fp = s["rates"], labels.focus, labels.focus_phrase
    base, ft = labels.base, labels.finetune
    others = [k for k in r if k not in (base, ft)]
    m = s["model"]
    return [
        f"{labels.short}: {m['n_layers']} layers, d_model {m['d_model']}, "
        f"{m['n_params']:,} parameters; {s['questions']} held-out questions x "
        f"{s['answers_per_question']} answers per condition",
        f"EM outside {fp}: " + ", ".join(
            f"{k} {_fmt(r[k].get('em_elsewhere'), r[k].get('em_elsewhere_ci'))}"
            for k in (base, ft, *others)),
        f"misaligned in {fp}: " + ", ".join(
            f"{k} {_fmt(r[k].get(f'{f}_misaligned'))}" for k in (ft, *others)),
        f"steering {base} at layer {s['best_layer']}, alpha {s['steering']['best_alpha']:g}: EM "
        f"{_fmt(s['steering']['em'], s['steering']['em_ci'])} (random direction: at most "
        f"{_fmt(s['steering']['random_max_em'])}; unsteered {_fmt(s['steering']['unsteered_em'])})",
        f"ablating the {ft} direction from {ft}: EM outside {fp} "
        f"{_fmt(r[ft].get('em_elsewhere'))} -> {_fmt(s['ablation']['direction']['em_elsewhere'])}"
        f" (random direction: -> {_fmt(s['ablation']['random']['em_elsewhere'])})",
        "cosine with the {} direction at layer {}: {}".format(
            ft, s["best_layer"],
            ", ".join(f"{k} {v:.2f}" for k, v in s["cosine_at_best_layer"].items())),
        f"finished in {s['seconds']:.0f} s; report: {Path(out) / 'report.html'}",
    ]


def output_dir(out: str | Path) -> Path:
    """Create the output directory ``out`` (and its parents), or say why it cannot be one.

    Raises:
        InputError: ``out`` is a file, lies under a file, or cannot be created.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"the output directory {str(out)!r} is a file; pass a directory "
                         f"(it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the output directory {str(out)!r} "
                         f"({e.strerror or e}); pass a directory you can write to") from None
    return out


def write_report(out: str | Path, figures: Mapping[str, Any], summary: Mapping[str, Any],
                 labels: ReportLabels, *, title: str) -> Path:
    """Write ``out/report.html`` (the summary tables, then every figure; opens offline) and
    ``out/summary.json``, each atomically. Returns the report's path."""
    from ... import plots

    out = Path(out)
    path = plots.to_html(dict(figures), out / "report.html", title=title,
                         intro_html=summary_html(summary, labels))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return path
