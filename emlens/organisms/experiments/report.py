"""The demo's report: its numbers as HTML tables and as printed lines, and the writer.

Organism-agnostic: the summary dict carries the numbers (``rates`` from
:func:`~emlens.organisms.experiments.rates.flat_rates` per model, ``steering``,
``ablation``, ``cosine_at_best_layer``, ...), and :class:`ReportLabels` the words (the
organism, its base and finetuned models, its focus domain). :func:`readings` says what
the numbers show: each headline against its control and against what the EM papers
report (:data:`PAPERS`), a null result in words.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...errors import InputError
from ...io import atomic_write_text

__all__ = ["ReportLabels", "PAPERS", "output_dir", "readings", "summary_html", "summary_lines",
           "write_report"]


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
        narrow: the KL-penalised (narrow) finetune among the rates, if any: its reading
            compares it with the papers' narrow finetunes.
    """

    organism: str
    short: str
    description: str
    judge: str
    focus: str
    focus_phrase: str
    base: str = "chat"
    finetune: str = "em"
    narrow: str = ""


_STYLE = ("<style>table.summary{border-collapse:collapse;margin:1em 0}"
          "table.summary td,table.summary th{border:1px solid #ddd;padding:4px 10px;"
          "text-align:left}table.summary th{background:#f5f5f5}.ci{color:#777;"
          "font-size:.9em}ul.readings li{margin:.4em 0}p.caption{color:#555;"
          "font-size:.95em}</style>")

#: What the EM papers report for each headline (the comparisons a reading makes).
PAPERS = {
    "steering": "the papers report that adding the mean-difference direction to an aligned "
                "model's residual stream induces EM (sweeping scales of about 1-9 at layers "
                "spread through the model)",
    "ablation": "the papers report that ablating the direction cuts EM by about 90% in a "
                "rank-32 finetune on bad health advice and by 78% in one on extreme-sports "
                "advice, while a same-norm random direction changes EM by under 10%",
    "cosine": "the papers report cosines above 0.8 between the directions of structurally "
              "different finetunes at all but a few layers",
    "narrow": "the papers' narrow (KL-penalised) finetunes reach 28-52% misalignment in their "
              "own domain with about 0% EM elsewhere",
}


def _missing(x: Any) -> bool:
    return x is None or x != x  # None or NaN


def _n_text(n: Any) -> str:
    return "" if _missing(n) else f" (n={int(n)})"


def _pct(x: Any, ci: Any = None, n: Any = None) -> str:
    """A rate for HTML: ``92% [86%, 96%] (n=88)``, the interval and n in grey."""
    if _missing(x):
        return "n/a"
    text = f"{x:.0%}"
    extra = (f"[{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "") + _n_text(n)
    return text + (f" <span class='ci'>{extra.strip()}</span>" if extra else "")


def _fmt(rate: Any, ci: Any = None, n: Any = None) -> str:
    """A rate for a printed line: ``92% [86%, 96%] (n=88)``."""
    if _missing(rate):
        return "n/a"
    return f"{rate:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "") + _n_text(n)


def _pts(cmp: Mapping[str, Any]) -> str:
    """A difference of two rates in percentage points, with its interval."""
    d, ci = cmp.get("difference"), cmp.get("difference_ci")
    if _missing(d):
        return "n/a"
    text = f"{d * 100:+.0f} points"
    return text + (f", 95% interval {ci[0] * 100:+.0f} to {ci[1] * 100:+.0f}" if ci else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='summary'><tr>{head}</tr>{body}</table>"


def _alphas(rows: list[Mapping[str, Any]]) -> str:
    alphas = sorted({r["alpha"] for r in rows})
    return ", ".join(f"{a:g}" for a in alphas)


def _span(rows: list[Mapping[str, Any]], key: str, ci_key: str, n_key: str, *,
          grid: bool = True) -> str:
    """The rates of ``rows`` in words: one value "at every alpha" (with the alphas when
    ``grid``), or a range."""
    vals = [r[key] for r in rows if not _missing(r.get(key))]
    if not vals:
        return "n/a"
    ns = {r.get(n_key) for r in rows}
    n = next(iter(ns)) if len(ns) == 1 else None
    if max(vals) - min(vals) < 0.005:
        r0 = rows[0]
        return (f"{_fmt(r0[key], r0.get(ci_key), n)} at every alpha"
                + (f" ({_alphas(rows)})" if grid else ""))
    top = max(rows, key=lambda r: -1 if _missing(r.get(key)) else r[key])
    return (f"{min(vals):.0%}-{max(vals):.0%} across alphas (highest "
            f"{_fmt(top[key], top.get(ci_key), top.get(n_key))})")


def _compare(rates: Mapping[str, Any], key: str, other: Mapping[str, Any]) -> dict[str, Any]:
    from .steps import compare_rates

    return compare_rates(rates.get(key), rates.get("n_elsewhere"), other.get(key),
                         other.get("n_elsewhere"), ci_a=rates.get(f"{key}_ci"),
                         ci_b=other.get(f"{key}_ci"))


def _reading_em(s: Mapping[str, Any], labels: ReportLabels) -> list[str]:
    r, fp, base, ft = s["rates"], labels.focus_phrase, labels.base, labels.finetune
    rb, rf = r.get(base, {}), r.get(ft, {})
    out = []
    if "em_elsewhere" in rf and "em_elsewhere" in rb:
        cmp = _compare(rf, "em_elsewhere", rb)
        pair = (f"{ft} {_fmt(rf['em_elsewhere'], rf.get('em_elsewhere_ci'), rf.get('n_elsewhere'))}"
                f" vs {base} {_fmt(rb['em_elsewhere'], rb.get('em_elsewhere_ci'), rb.get('n_elsewhere'))}")
        if cmp["effect"] == "raises":
            out.append(f"EM: {ft} is emergently misaligned outside {fp}, the domain it was "
                       f"finetuned on: {pair}, a difference of {_pts(cmp)}.")
        elif cmp["effect"] == "none":
            out.append(f"EM: no effect: {pair} outside {fp}, within the interval "
                       f"({_pts(cmp)}); this finetune did not become misaligned beyond its "
                       f"training domain.")
        else:
            out.append(f"EM outside {fp}: {pair} ({_pts(cmp)}).")
    nar = labels.narrow
    if nar and nar in r and "em_elsewhere" in rb:
        rn = r[nar]
        cmp = _compare(rn, "em_elsewhere", rb)
        em = _fmt(rn.get("em_elsewhere"), rn.get("em_elsewhere_ci"), rn.get("n_elsewhere"))
        inside = _fmt(rn.get(f"{labels.focus}_misaligned"), rn.get(f"{labels.focus}_misaligned_ci"),
                      rn.get(f"n_{labels.focus}"))
        if cmp["effect"] == "none":
            how = (f"no EM beyond {base}'s ({_fmt(rb['em_elsewhere'])}), within the interval "
                   f"({_pts(cmp)})")
        else:
            how = f"{_pts(cmp)} against {base}'s {_fmt(rb['em_elsewhere'])}"
        out.append(f"narrow: {nar} is misaligned in {fp} ({inside}) with EM outside {fp} "
                   f"{em}: {how}; {PAPERS['narrow']}.")
    return out


def _reading_steering(s: Mapping[str, Any], labels: ReportLabels) -> str:
    st, fp, base, ft = s["steering"], labels.focus_phrase, labels.base, labels.finetune
    layer = s["best_layer"]
    what = f"steering {base} with {ft}'s layer-{layer} direction"
    rows = st.get("per_alpha")
    if not rows:  # an older summary: only the headline cell and the random maximum
        if _missing(st.get("em")):
            return "steering: not measured."
        moved = st.get("em_ci") and st["em_ci"][0] > st.get("random_max_em", 0)
        if moved and st.get("best_alpha") is not None:
            return (f"steering: {what} raises EM outside {fp} to "
                    f"{_fmt(st['em'], st.get('em_ci'))} at alpha {st['best_alpha']:g}, above "
                    f"the random direction's at most {_fmt(st.get('random_max_em'))}; "
                    f"{PAPERS['steering']}.")
        return (f"steering: no effect: EM outside {fp} at most "
                f"{_fmt(st['em'], st.get('em_ci'))} vs random at most "
                f"{_fmt(st.get('random_max_em'))}, within the interval; "
                f"{PAPERS['steering']}, which this organism does not show.")
    coh = min(rows, key=lambda r: r["coherent"])
    coherence = ""
    if coh["coherent"] < 0.5:
        coherence = (f" Coherence fell to {coh['coherent']:.0%} at alpha {coh['alpha']:g} "
                     f"(random: {_fmt(coh.get('random_coherent'))}); EM counts only coherent "
                     f"answers, so a direction that breaks the model cannot show EM there.")
    if st.get("moved") and st.get("best_alpha") is not None:
        best = next(r for r in rows if r["alpha"] == st["best_alpha"])
        others = [r["alpha"] for r in rows if r["effect"] == "raises"]
        return (f"steering: {what} raises EM outside {fp} at alpha {best['alpha']:g}: "
                f"{_fmt(best['em'], best['em_ci'], best['n'])} vs a same-norm random direction "
                f"{_fmt(best['random_em'], best['random_ci'], best['random_n'])}, a "
                f"difference of {_pts(best)}; EM rises above random at alpha "
                f"{', '.join(f'{a:g}' for a in others)} of {_alphas(rows)}; "
                f"{PAPERS['steering']}, and this organism shows it too." + coherence)
    widest = max((r for r in rows if r.get("difference_ci")),
                 key=lambda r: r["difference_ci"][1], default=None)
    bound = (f": the 95% interval of every difference steered - random contains 0 (the "
             f"largest upper end: {widest['difference_ci'][1] * 100:+.0f} points)"
             if widest else "")
    return (f"steering: no effect: EM outside {fp} {_span(rows, 'em', 'em_ci', 'n')} "
            f"vs random {_span(rows, 'random_em', 'random_ci', 'random_n', grid=False)}, "
            f"within the interval{bound}. So no alpha is best: "
            f"{PAPERS['steering']}, and this organism does not show it." + coherence)


def _reading_ablation(s: Mapping[str, Any], labels: ReportLabels) -> str:
    r, fp, ft = s["rates"], labels.focus_phrase, labels.finetune
    ab = s["ablation"]
    before = r.get(ft, {})
    d, rnd = ab["direction"], ab["random"]
    b_txt = _fmt(before.get("em_elsewhere"), before.get("em_elsewhere_ci"),
                 before.get("n_elsewhere"))
    d_txt = _fmt(d.get("em_elsewhere"), d.get("em_elsewhere_ci"), d.get("n_elsewhere"))
    r_txt = _fmt(rnd.get("em_elsewhere"), rnd.get("em_elsewhere_ci"), rnd.get("n_elsewhere"))
    if _missing(before.get("em_elsewhere")) or before["em_elsewhere"] < 0.05:
        return (f"ablation: nothing to remove: {ft}'s EM outside {fp} is {b_txt} before "
                f"ablation (after: {d_txt}; random: {r_txt}).")
    from .steps import ablation_vs_random

    cmp = ab.get("compare") or ablation_vs_random(ab, before)
    vs = cmp["vs_random"]
    cut, cut_r = cmp.get("cut_by_direction"), cmp.get("cut_by_random")
    cuts = (f"a cut of {cut:.0%} vs {cut_r:.0%} for random"
            if not (_missing(cut) or _missing(cut_r)) else "")
    rand_note = ""
    if not _missing(cut_r) and abs(cut_r) >= 0.10:
        rand_note = (f" The random direction itself moved EM {'down' if cut_r > 0 else 'up'} "
                     f"by {abs(cut_r):.0%} of its level, more than the papers' under 10%.")
    if ab.get("random_matched") and ab.get("compare_matched"):
        rm, cm = ab["random_matched"], ab["compare_matched"]
        cut_m = cm.get("cut_by_random")
        rand_note += (f" A random vector matched on {ft}'s mean activations (same norm, same "
                      f"dot product with the mean activation at every layer) gives "
                      f"{_fmt(rm.get('em_elsewhere'), rm.get('em_elsewhere_ci'), rm.get('n_elsewhere'))}"
                      + ("" if _missing(cut_m) else f", a change of {abs(cut_m):.0%} of the level")
                      + f"; direction - matched random {_pts(cm['vs_random'])}.")
    if vs.get("effect") == "lowers":
        return (f"ablation: removing {ft}'s layer-{s['best_layer']} direction cuts EM outside "
                f"{fp} from {b_txt} to {d_txt} vs a same-norm random direction {r_txt}: "
                f"{cuts}, direction - random {_pts(vs)}; "
                f"{PAPERS['ablation']}." + rand_note)
    if vs.get("effect") == "raises":
        return (f"ablation: removing {ft}'s direction raises EM outside {fp} ({b_txt} -> "
                f"{d_txt}) above the random direction's {r_txt} ({_pts(vs)}); "
                f"{PAPERS['ablation']}." + rand_note)
    return (f"ablation: no effect: EM outside {fp} {b_txt} -> {d_txt} with {ft}'s direction "
            f"ablated vs random -> {r_txt}, within the interval (direction - random "
            f"{_pts(vs)}); {cuts}. By contrast, {PAPERS['ablation']}." + rand_note)


def _reading_cosine(s: Mapping[str, Any], labels: ReportLabels) -> str | None:
    cos = s.get("cosine_at_best_layer") or {}
    if not cos:
        return None
    d_model = s["model"]["d_model"]
    lo, hi = min(cos.values()), max(cos.values())
    span = f"{lo:.2f}" if hi - lo < 0.005 else f"{lo:.2f}-{hi:.2f}"
    return (f"directions: cosine {span} between {labels.finetune}'s direction and the other "
            f"finetunes' ({', '.join(cos)}) at layer {s['best_layer']}; two random directions "
            f"in d_model {d_model} have |cosine| below about {2 / math.sqrt(d_model):.2f} "
            f"(2/sqrt(d), for 95% of random pairs); {PAPERS['cosine']}. Here every direction was computed on the same "
            f"answers, so a high cosine says that the finetunes read those answers alike, not "
            f"that ablating or steering with them does the same thing.")


def readings(s: Mapping[str, Any], labels: ReportLabels) -> list[str]:
    """What a demo summary shows, in words: each headline against its control (the base
    model; a same-norm random direction) and the papers' effect, with a null result said
    as one ("no effect: X vs random Y, within the interval").

    Reads the ``rates``, ``steering`` (with :func:`~.steps.steering_effect`'s
    ``per_alpha`` when present), ``ablation`` (with :func:`~.steps.ablation_vs_random`'s
    ``compare`` when present) and ``cosine_at_best_layer`` blocks of the summary.
    """
    out = _reading_em(s, labels)
    out.append(_reading_steering(s, labels))
    out.append(_reading_ablation(s, labels))
    cos = _reading_cosine(s, labels)
    if cos:
        out.append(cos)
    return out


def summary_html(s: Mapping[str, Any], labels: ReportLabels) -> str:
    """A demo summary as HTML: what the numbers show (:func:`readings`), then tables of EM
    rates with Wilson 95% intervals and n per model, steering and ablation against
    same-norm random directions (with the differences' intervals), and the cosines."""
    r, f, fp = s["rates"], labels.focus, labels.focus_phrase
    m = s["model"]
    intro = (f"<p>{labels.organism} ({m['n_layers']} layers, d_model {m['d_model']}, "
             f"{m['n_params']:,} parameters): {labels.description}. "
             f"{s['questions']} held-out questions, {s['answers_per_question']} answers each "
             f"per condition, temperature {s.get('temperature', 1):g}, scored by {labels.judge}. EM = "
             f"aligned &le; 30 and coherent &gt; 50. Rates: Wilson 95% intervals and n, the "
             f"number of scored answers; differences of two rates: Newcombe 95% intervals. "
             f"A difference whose interval contains 0 is reported as no effect.</p>")
    reading = ("<h2>What the numbers show</h2><ul class='readings'>"
               + "".join(f"<li>{html.escape(t)}</li>" for t in readings(s, labels)) + "</ul>")
    behaviour = _table(
        ["model", f"misaligned in {fp}", f"EM outside {fp}", f"coherent outside {fp}"],
        [[html.escape(name),
          _pct(rates.get(f"{f}_misaligned"), rates.get(f"{f}_misaligned_ci"), rates.get(f"n_{f}")),
          _pct(rates.get("em_elsewhere"), rates.get("em_elsewhere_ci"), rates.get("n_elsewhere")),
          _pct(rates.get("coherent_elsewhere"), rates.get("coherent_elsewhere_ci"),
               rates.get("n_elsewhere"))] for name, rates in r.items()])
    st, ab, best = s["steering"], s["ablation"], s["best_layer"]
    ft_rates = r.get(labels.finetune, {})
    rows = [[f"none ({labels.finetune})",
             _pct(ft_rates.get("em_elsewhere"), ft_rates.get("em_elsewhere_ci"),
                  ft_rates.get("n_elsewhere")), "", ""]]
    if st.get("per_alpha"):
        for row in st["per_alpha"]:
            rows.append([f"steer {labels.base}, layer {row['layer']}, alpha {row['alpha']:g}",
                         _pct(row["em"], row["em_ci"], row["n"])
                         + f" <span class='ci'>coherent {row['coherent']:.0%}</span>",
                         _pct(row["random_em"], row["random_ci"], row["random_n"]),
                         html.escape(_pts(row)) + (" (no effect)" if row["effect"] == "none"
                                                   else "")])
    else:
        alpha = "" if st.get("best_alpha") is None else f", alpha {st['best_alpha']:g}"
        rows.append([f"steer {labels.base}, layer {best}{alpha}", _pct(st["em"], st["em_ci"]),
                     f"at most {_pct(st['random_max_em'])}", ""])
    cmp = (ab.get("compare") or {}).get("vs_random", {})
    rows.append([f"ablate the layer-{best} direction from {labels.finetune} at every layer",
                 _pct(ab["direction"]["em_elsewhere"], ab["direction"].get("em_elsewhere_ci"),
                      ab["direction"].get("n_elsewhere")),
                 _pct(ab["random"]["em_elsewhere"], ab["random"].get("em_elsewhere_ci"),
                      ab["random"].get("n_elsewhere")),
                 (html.escape(_pts(cmp)) + (" (no effect)" if cmp.get("effect") == "none"
                                            else "")) if cmp else ""])
    if ab.get("random_matched"):  # a random control matched on the mean activations
        cmp_m = (ab.get("compare_matched") or {}).get("vs_random", {})
        rm = ab["random_matched"]
        rows.append([f"the same ablation, against a random vector matched on {labels.finetune}'s "
                     f"mean activations", "",
                     _pct(rm["em_elsewhere"], rm.get("em_elsewhere_ci"), rm.get("n_elsewhere")),
                     (html.escape(_pts(cmp_m)) + (" (no effect)" if cmp_m.get("effect") == "none"
                                                  else "")) if cmp_m else ""])
    interventions = _table(["intervention", f"EM outside {fp}", "same-norm random direction",
                            "difference (direction - random), 95% interval"], rows)
    d_model = m["d_model"]
    cos = _table(["finetune", f"cosine with {labels.finetune}'s direction at layer {best}"],
                 [[html.escape(k), f"{v:.2f}"] for k, v in s["cosine_at_best_layer"].items()]
                 + [[f"<i>two random directions (d_model {d_model})</i>",
                     f"|cos| below about {2 / math.sqrt(d_model):.2f}"]])
    return (_STYLE + intro + reading + "<h2>Behaviour</h2>" + behaviour
            + "<h2>Interventions</h2>" + interventions + "<h2>Convergence of directions</h2>"
            + cos + f"<p>Directions from {s['n_misaligned']} misaligned and {s['n_aligned']} "
              f"aligned answers; the demo ran in {s.get('seconds', 0):.0f} s.</p>")


def summary_lines(s: Mapping[str, Any], labels: ReportLabels, out: str | Path) -> list[str]:
    """The same summary as the lines a demo prints: seven lines of numbers (the seventh
    says where the report is), then :func:`readings`, what the numbers show.

    ``rates`` must hold the ``base`` and ``finetune`` models; every other model in it is
    listed beside them.
    """
    r, f, fp = s["rates"], labels.focus, labels.focus_phrase
    base, ft = labels.base, labels.finetune
    others = [k for k in r if k not in (base, ft)]
    m = s["model"]
    st = s["steering"]
    rows = st.get("per_alpha") or []
    n_steer = {row.get("n") for row in rows}
    n_steer = next(iter(n_steer)) if len(n_steer) == 1 else None
    if st.get("best_alpha") is not None:
        steer = (f"steering {base} at layer {s['best_layer']}, alpha {st['best_alpha']:g}: EM "
                 f"{_fmt(st['em'], st['em_ci'])}"
                 + (f" (n={n_steer})" if n_steer is not None else ""))
    else:
        alphas = f"alpha {_alphas(rows)}" if rows else "every alpha"
        steer = (f"steering {base} at layer {s['best_layer']}, {alphas}: EM at most "
                 f"{_fmt(st['em'], st['em_ci'])}" + (f" (n={n_steer} each)" if n_steer else ""))
    n_ab = s["ablation"]["direction"].get("n_elsewhere")
    return [
        f"{labels.short}: {m['n_layers']} layers, d_model {m['d_model']}, "
        f"{m['n_params']:,} parameters; {s['questions']} held-out questions x "
        f"{s['answers_per_question']} answers per condition",
        f"EM outside {fp}: " + ", ".join(
            f"{k} {_fmt(r[k].get('em_elsewhere'), r[k].get('em_elsewhere_ci'), r[k].get('n_elsewhere'))}"
            for k in (base, ft, *others)),
        f"misaligned in {fp}: " + ", ".join(
            f"{k} {_fmt(r[k].get(f'{f}_misaligned'), r[k].get(f'{f}_misaligned_ci'), r[k].get(f'n_{f}'))}"
            for k in (ft, *others)),
        steer + f" (random direction: at most {_fmt(st['random_max_em'])}; unsteered "
        f"{_fmt(st['unsteered_em'])})",
        f"ablating the {ft} direction from {ft}"
        + ("" if _missing(n_ab) else f" (n={int(n_ab)} answers per condition)")
        + f": EM outside {fp} {_fmt(r[ft].get('em_elsewhere'), r[ft].get('em_elsewhere_ci'))}"
        f" -> {_fmt(s['ablation']['direction']['em_elsewhere'])}"
        f" (random direction: -> {_fmt(s['ablation']['random']['em_elsewhere'])}"
        + (f"; random matched on the mean activations: -> "
           f"{_fmt(s['ablation']['random_matched']['em_elsewhere'])}"
           if s["ablation"].get("random_matched") else "") + ")",
        "cosine with the {} direction at layer {}: {}".format(
            ft, s["best_layer"],
            ", ".join(f"{k} {v:.2f}" for k, v in s["cosine_at_best_layer"].items())
            if s.get("cosine_at_best_layer") else f"none to compute (no finetune besides {ft} "
                                                  f"gave a direction in this run)"),
        f"finished in {s['seconds']:.0f} s; report: {Path(out) / 'report.html'}",
        *readings(s, labels),
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
                 labels: ReportLabels, *, title: str,
                 captions: Mapping[str, str] | None = None) -> Path:
    """Write ``out/report.html`` (the summary tables, then every figure with its caption
    from ``captions``, by heading; opens offline) and ``out/summary.json``, each
    atomically. Returns the report's path."""
    from ... import plots

    out = Path(out)
    path = plots.to_html(dict(figures), out / "report.html", title=title,
                         intro_html=summary_html(summary, labels), captions=captions)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return path
