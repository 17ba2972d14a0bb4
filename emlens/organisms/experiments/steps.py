"""Steps of an organism's demo that do not depend on the organism: sample and judge a
model into the inside/outside table, pick the layer to intervene at, ablate a direction
against a same-norm random one, and read a steering sweep's headline numbers.

Each step is a plain function on a model, questions, a judge and the organism's
``domain_of`` and focus domain; an organism's demo is a short sequence of them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .rates import domain_table, flat_rates

__all__ = ["judged_rates", "strongest_layer", "ablation_effect", "ablation_cuts",
           "steering_summary"]


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


def steering_summary(table: Any) -> dict[str, Any]:
    """The headline of an ``emlens.sweep`` table: the steered cell with the highest EM (its
    alpha, EM with interval, coherence), the highest EM of the random controls and the
    unsteered EM."""
    steer_rows = table[table["condition"] == "steer"]
    rand_rows = table[table["condition"] == "steer_random"]
    top = steer_rows.loc[steer_rows["em_rate"].idxmax()]
    return {"best_alpha": float(top["alpha"]), "em": float(top["em_rate"]),
            "em_ci": [float(top["em_ci_low"]), float(top["em_ci_high"])],
            "coherent": float(top["coherent_rate"]),
            "random_max_em": float(rand_rows["em_rate"].max()),
            "unsteered_em": float(table[table["condition"] == "baseline"]["em_rate"].iloc[0])}
