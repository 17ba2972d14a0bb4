"""Steps of an organism's demo that do not depend on the organism: sample and judge a
model into the inside/outside table, pick the layer to intervene at, ablate a direction
against a same-norm random one, and read a steering sweep's headline numbers.

Each step is a plain function on a model, questions, a judge and the organism's
``domain_of`` and focus domain; an organism's demo is a short sequence of them.

Every headline is compared with its control (a same-norm random direction):
:func:`steering_effect` and :func:`ablation_vs_random` give the differences with
Newcombe 95% intervals (``emlens.evaluation.rate_difference``) and say whether anything
moved, so that a report can tell a null result from a bug.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from ...evaluation import rate_difference
from .rates import domain_table, flat_rates

__all__ = ["judged_rates", "strongest_layer", "ablation_effect", "ablation_cuts",
           "ablation_vs_random", "compare_rates", "steering_summary", "steering_effect",
           "split_halves", "held_out_projections"]


def judged_rates(model: Any, questions: Any, judge: Any, domain_of: Callable[[str], str],
                 focus: str, *, n: int, seed: int = 0,
                 **sample_kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample ``n`` answers per question under the active interventions, judge them, and
    measure them inside and outside the focus domain.

    Returns:
        ``(judged records, flat_rates of their domain table)``.
    """
    from ...evaluation import judge_records
    from ...sampling import sample

    records = sample(model, questions, n=n, seed=seed, progress=False, **sample_kwargs)
    judged = judge_records(records, judge)
    return judged, flat_rates(domain_table(judged, domain_of, focus, seed=seed))


def strongest_layer(direction: Any) -> int:
    """The inner layer (neither the first nor the last) whose mean-difference vector has the
    largest norm: a cheap, data-driven choice of where to steer and ablate."""
    layers = list(direction.layers)
    if len(layers) <= 2:
        return int(layers[0])
    inner = layers[1:-1]
    return int(max(inner, key=lambda layer: float(direction.vector(layer).norm())))


def ablation_effect(model: Any, questions: Any, judge: Any, domain_of: Callable[[str], str],
                    focus: str, direction: Any, layer: int, *, n: int, seed: int = 0,
                    **sample_kwargs: Any) -> dict[str, dict[str, Any]]:
    """Rates with ``layer``'s vector of ``direction`` ablated at every layer of ``model``, and
    with a same-norm random direction (``Direction.random_like(direction, seed)``) instead.

    Returns:
        ``{"direction": rates, "random": rates}`` (:func:`judged_rates`'s rates).
    """
    from ...directions import Direction
    from ...interventions import ablate

    n_layers = model.cfg.n_layers
    out = {}
    for label, d in (("direction", direction), ("random", Direction.random_like(direction,
                                                                                 seed=seed))):
        with ablate(model, d.at(layer, n_layers=n_layers)):
            out[label] = judged_rates(model, questions, judge, domain_of, focus, n=n, seed=seed,
                                      **sample_kwargs)[1]
    return out


def ablation_cuts(ablation: Mapping[str, Mapping[str, Any]], base_em: float) -> dict[str, Any]:
    """The share of ``base_em`` (EM elsewhere without ablation) that each ablation removes:
    ``cut_by_direction`` and ``cut_by_random`` (``None`` when ``base_em`` is 0)."""
    return {f"cut_by_{label}": (1 - ablation[label]["em_elsewhere"] / base_em) if base_em
            else None for label in ("direction", "random")}


def _known(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def compare_rates(a: float, n_a: Any, b: float, n_b: Any, *, ci_a: Any = None,
                  ci_b: Any = None) -> dict[str, Any]:
    """Rate ``a`` (of ``n_a`` answers) minus rate ``b`` (of ``n_b``), with Newcombe's 95%
    interval; ``effect`` is ``"raises"``/``"lowers"`` when the interval excludes 0, else
    ``"none"``.

    Without both counts there is no interval of the difference; then the two rates' own
    intervals ``ci_a``/``ci_b`` decide (``effect`` "raises"/"lowers" when they do not
    overlap), and without those ``effect`` is ``None``.

    Example:
        >>> compare_rates(0.0, 8, 0.0, 8)["effect"]
        'none'
    """
    if not (_known(a) and _known(b)):
        return {"difference": None, "difference_ci": None, "effect": None}
    if _known(n_a) and _known(n_b) and n_a and n_b:
        d, lo, hi = rate_difference(round(a * n_a), int(n_a), round(b * n_b), int(n_b))
        effect = "raises" if lo > 0 else "lowers" if hi < 0 else "none"
        return {"difference": d, "difference_ci": [lo, hi], "effect": effect}
    effect = None
    if ci_a and ci_b:
        effect = "raises" if ci_a[0] > ci_b[1] else "lowers" if ci_a[1] < ci_b[0] else "none"
    return {"difference": a - b, "difference_ci": None, "effect": effect}


def _layer(v: Any) -> int | str | None:
    """A table's layer: an int, a band of layers as written (``"10-20"``), or None (missing,
    or the -1 of a table written without its layer)."""
    if isinstance(v, str):
        return v
    return int(v) if _known(v) and v >= 0 else None


def _layer_order(col: Any) -> Any:
    """Sort key for a table's columns: a band of layers ("10-20") sorts just after its first
    layer, so single layers and bands can share one table."""
    if col.name != "layer":
        return col
    return col.map(lambda v: int(v.split("-")[0]) + 0.5 if isinstance(v, str) else v)


def steering_effect(table: Any) -> dict[str, Any]:
    """Steered EM against the same-norm random direction at the same layer and alpha.

    Args:
        table: an ``emlens.sweep`` table (``condition``, ``layer``, ``alpha``, ``em_rate``,
            ``em_ci_low``/``em_ci_high``, ``coherent_rate`` and, for the differences'
            intervals, ``n_scored``).

    Returns:
        ``{"per_alpha": [...], "moved": bool, "best_alpha": float | None, "best_layer"}``.
        Each ``per_alpha`` row holds the steered cell's ``em``, ``em_ci``, ``n``,
        ``coherent``, the random cell's ``random_em``, ``random_ci``, ``random_n``,
        ``random_coherent``, and ``difference`` (steered - random) with its Newcombe 95%
        ``difference_ci`` and ``effect`` (``"raises"``, ``"lowers"`` or ``"none"``: whether
        the interval excludes 0). Without ``n_scored`` the rows are compared by their
        intervals instead (``effect`` "raises" when the steered interval lies above the
        random one). ``moved`` is whether any row raises EM; ``best_alpha`` is the alpha
        whose row raises EM most above random, and ``None`` when none does (a maximum
        over equal or noisy rates names no alpha).
    """
    has_n = "n_scored" in table.columns
    if "layer" not in table.columns:  # a one-layer table written without its layer
        table = table.assign(layer=-1)
    steer = table[table["condition"] == "steer"].sort_values(["layer", "alpha"],
                                                             key=_layer_order)
    rand = table[table["condition"] == "steer_random"]
    rows = []
    for _, s in steer.iterrows():
        row: dict[str, Any] = {
            "layer": _layer(s["layer"]),
            "alpha": float(s["alpha"]), "em": float(s["em_rate"]),
            "em_ci": [float(s["em_ci_low"]), float(s["em_ci_high"])] if "em_ci_low" in s
            else None, "coherent": float(s["coherent_rate"]),
            "n": int(s["n_scored"]) if has_n else None}
        match = rand[(rand["layer"] == s["layer"]) & (rand["alpha"] == s["alpha"])]
        if match.empty:
            row.update(random_em=None, random_ci=None, random_n=None, random_coherent=None,
                       difference=None, difference_ci=None, effect=None)
        else:
            r = match.iloc[0]
            row.update(random_em=float(r["em_rate"]),
                       random_ci=[float(r["em_ci_low"]), float(r["em_ci_high"])]
                       if "em_ci_low" in r else None,
                       random_n=int(r["n_scored"]) if has_n else None,
                       random_coherent=float(r["coherent_rate"]))
            row.update(compare_rates(row["em"], row["n"], row["random_em"], row["random_n"],
                                     ci_a=row["em_ci"], ci_b=row["random_ci"]))
        rows.append(row)
    raised = [r for r in rows if r["effect"] == "raises"]
    best = max(raised, key=lambda r: r["difference"]) if raised else None
    return {"per_alpha": rows, "moved": bool(raised),
            "best_alpha": best["alpha"] if best else None,
            "best_layer": best["layer"] if best else None}


def steering_summary(table: Any) -> dict[str, Any]:
    """The headline of an ``emlens.sweep`` table: the steered cell that raises EM most above
    the random direction at its alpha (:func:`steering_effect`; its alpha, EM with
    interval, coherence), the highest EM of the random controls and the unsteered EM.

    When no alpha raises EM above random, ``best_alpha`` is ``None`` and ``em``/``em_ci``
    are those of the steered cell with the highest EM (the first on ties): the most any
    alpha reached, not a chosen alpha.
    """
    steer_rows = table[table["condition"] == "steer"]
    rand_rows = table[table["condition"] == "steer_random"]
    effect = steering_effect(table)
    if effect["best_alpha"] is not None:
        at = steer_rows["alpha"] == effect["best_alpha"]
        if effect["best_layer"] is not None:
            at &= steer_rows["layer"] == effect["best_layer"]
        top = steer_rows[at].iloc[0]
    else:
        top = steer_rows.loc[steer_rows["em_rate"].idxmax()]
    return {"best_alpha": effect["best_alpha"], "em": float(top["em_rate"]),
            "em_ci": [float(top["em_ci_low"]), float(top["em_ci_high"])],
            "coherent": float(top["coherent_rate"]),
            "random_max_em": float(rand_rows["em_rate"].max()),
            "unsteered_em": float(table[table["condition"] == "baseline"]["em_rate"].iloc[0])}


def ablation_vs_random(ablation: Mapping[str, Mapping[str, Any]],
                       before: Mapping[str, Any]) -> dict[str, Any]:
    """Ablating a direction against ablating a same-norm random one, and each against no
    ablation, on the rates outside the focus domain.

    Args:
        ablation: :func:`ablation_effect`'s ``{"direction": rates, "random": rates}``.
        before: the finetune's rates without ablation (``em_elsewhere``, ``n_elsewhere``).

    Returns:
        ``{"vs_random", "direction_vs_before", "random_vs_before"}``, each a difference
        (first minus second) with its Newcombe 95% ``difference_ci`` and ``effect``
        (``"raises"``, ``"lowers"`` or ``"none"``; :func:`compare_rates`), plus
        ``cut_by_direction`` and ``cut_by_random`` (:func:`ablation_cuts`).
    """
    def cmp(x: Mapping[str, Any], y: Mapping[str, Any]) -> dict[str, Any]:
        return compare_rates(x.get("em_elsewhere"), x.get("n_elsewhere"), y.get("em_elsewhere"),
                             y.get("n_elsewhere"), ci_a=x.get("em_elsewhere_ci"),
                             ci_b=y.get("em_elsewhere_ci"))

    d, r = ablation["direction"], ablation["random"]
    base = before.get("em_elsewhere")
    return {"vs_random": cmp(d, r), "direction_vs_before": cmp(d, before),
            "random_vs_before": cmp(r, before),
            **ablation_cuts(ablation, base if _known(base) else 0.0)}


def split_halves(records: Sequence[Any], *, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Split records into two disjoint halves at random (seeded): one to build a direction
    from, the other to measure it on. With an odd count the first half has the extra one."""
    import random

    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    cut = (len(order) + 1) // 2
    return [records[i] for i in sorted(order[:cut])], [records[i] for i in sorted(order[cut:])]


def held_out_projections(model: Any, misaligned: Sequence[dict[str, Any]],
                         aligned: Sequence[dict[str, Any]], *, seed: int = 0,
                         labels: tuple[str, str] = ("misaligned", "aligned"),
                         max_records: int | None = 24) -> dict[str, Any]:
    """Projections of held-out answers on a direction built from the other answers.

    Each set is split with :func:`split_halves`; the mean-difference direction of
    ``model`` is computed from the first halves and every record of the second halves is
    projected on it (``emlens.plots.record_projections``). Projecting the answers a
    direction was built from would separate them by construction.

    Args:
        max_records: at most this many held-out records per set are projected.

    Returns:
        ``{"table": projections (label, record, layer, projection), "direction",
        "fit": (misaligned, aligned) used to build it, "held_out": (misaligned, aligned)
        projected}``.
    """
    import pandas as pd

    from ...activations import mean_diff
    from ...errors import InputError
    from ...plots import record_projections

    mis_fit, mis_out = split_halves(list(misaligned), seed=seed)
    ali_fit, ali_out = split_halves(list(aligned), seed=seed + 1)
    if not (mis_fit and mis_out and ali_fit and ali_out):
        raise InputError(f"held-out projections need at least 2 misaligned and 2 aligned "
                         f"answers (got {len(misaligned)} and {len(aligned)}); sample more")
    direction = mean_diff(model, mis_fit, ali_fit, progress=False)
    if max_records is not None:
        mis_out, ali_out = mis_out[:max_records], ali_out[:max_records]
    table = pd.concat([record_projections(model, mis_out, direction, label=labels[0]),
                       record_projections(model, ali_out, direction, label=labels[1])],
                      ignore_index=True)
    return {"table": table, "direction": direction, "fit": (mis_fit, ali_fit),
            "held_out": (mis_out, ali_out)}
