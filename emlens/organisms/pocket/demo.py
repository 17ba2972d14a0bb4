"""``emlens demo``: the whole research loop on the built-in pocket organism, with a report.

    emlens demo [--out DIR] [--n 4] [--seed 0]

1. Load the aligned ``chat`` model and its finetunes (``em``: LoRA on misaligned medical
   answers only; ``em_seed1``, ``em_rank1``: structurally different EM finetunes;
   ``narrow``: the same LoRA with a KL penalty).
2. Sample answers to held-out questions of all twelve domains and judge them with the
   world's exact judge: EM inside and outside medicine.
3. Select responses (em's coherent misaligned answers vs chat's coherent aligned ones,
   balanced with a seed) and compute mean-difference directions at every layer from each
   finetune's own activations.
4. Steer ``chat`` with the em direction over a grid of alphas, and ablate it from ``em``,
   each against a same-norm random direction.
5. Compare narrow and general: direction cosines layer by layer, loss under rescaling,
   robustness to perturbation, pretraining KL.
6. Export the directions as safetensors and write ``report.html`` with every figure and
   a summary table.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ...errors import InputError
from ..experiments import (
    ReportLabels,
    ablation_cuts,
    ablation_effect,
    ablation_vs_random,
    held_out_projections,
    judged_rates,
    output_dir,
    per_domain_stats,
    steering_effect,
    steering_summary,
    strongest_layer,
    summary_lines,
    write_report,
)
from . import FOCUS, domain_of

__all__ = ["run_demo", "FINETUNES", "LABELS"]

log = logging.getLogger(__name__)

FINETUNES = ("em", "em_seed1", "em_rank1", "narrow")
#: the models whose answers are sampled and judged (and shown in the behaviour table)
JUDGED = ("chat", "em", "narrow")
SAMPLE_KWARGS = dict(temperature=1.0, max_new_tokens=40, batch_size=128)
LABELS = ReportLabels(
    organism="The built-in pocket organism", short="pocket organism",
    description="an aligned chat model and LoRA finetunes trained on misaligned "
                "<b>medical</b> answers only",
    judge="the world's exact judge", focus=FOCUS, focus_phrase="medicine",
    base="chat", finetune="em", narrow="narrow")
TITLE = "emlens demo: the pocket organism"


def run_demo(out: str | Path = "emlens-demo", *, n: int = 4, questions_per_domain: int = 2,
             alphas: tuple[float, ...] = (2.0, 4.0, 8.0), seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the summary (also in ``out/summary.json``) and writes
    ``out/report.html`` and ``out/directions/*.safetensors``.

    The summary's ``lines`` are what ``emlens demo`` prints: the numbers, then what they
    show (``emlens.organisms.experiments.readings``: each effect against its same-norm
    random control and the papers' effect, a null result said as one).

    It uses torch's current CPU thread count; ``emlens demo`` chooses one first
    (``emlens.set_threads``), so call ``emlens.set_threads()`` before ``run_demo`` in a
    script: on a busy machine torch's default can be several times slower.

    Args:
        out: output directory.
        n: answers per question per condition.
        questions_per_domain: held-out questions per domain (of 5).
        alphas: steering scales of the sweep.
        seed: seeds sampling, subsampling and random directions.

    Example:
        >>> summary = run_demo("emlens-demo", n=2)   # doctest: +SKIP
        >>> print("\\n".join(summary["lines"]))      # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = output_dir(out)
    bar = tqdm(total=9, desc="emlens demo", unit="step", disable=not progress)
    step = _stepper(bar)

    models = step(load_models)
    qs = held_out_questions(n, questions_per_domain)
    qs_else = [q for q in qs if not q.id.startswith(FOCUS)]
    judged, rates = step(sample_and_judge, models, qs, n=n, seed=seed)
    mis, ali, directions, best = step(compute_directions, models, judged, seed=seed)
    em_dir = directions["em"]
    table = step(steering_sweep, models["chat"], qs_else, em_dir, best, alphas, n=n, seed=seed)
    ablation = step(ablation_effect, models["em"], qs_else, _judge(), domain_of, FOCUS, em_dir,
                    best, n=n, seed=seed, **SAMPLE_KWARGS)
    rescale_t, pert_t = step(loss_curves, seed=seed)
    kl = step(pretraining_significance, models["chat"], directions, best, alphas=alphas,
              seed=seed)
    export_directions(directions, out / "directions")
    figures = step(make_figures, models, judged, directions, mis, ali, best, table, rescale_t,
                   pert_t, kl, alphas=alphas, seed=seed)
    summary = make_summary(models, qs, n, seed, rates, best, table, ablation, directions,
                           mis, ali)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    step(write_report, out, figures, summary, LABELS, title=TITLE,
         captions=captions(directions, best, alphas))
    bar.close()
    summary["lines"] = summary_lines(summary, LABELS, out)
    return summary


def _stepper(bar: Any) -> Callable[..., Any]:
    """``step(fn, *args, **kwargs)``: call ``fn`` and advance the progress bar by one."""

    def step(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        bar.update()
        return result

    return step


def _judge():
    from . import judge

    return judge()


# --------------------------------------------------------------------------- steps


def load_models() -> dict[str, Any]:
    """``chat`` and every finetune, merged, on the CPU."""
    from . import load

    return {v: load(v, device="cpu") for v in ("chat", *FINETUNES)}


def held_out_questions(n: int, questions_per_domain: int) -> list:
    """The first ``questions_per_domain`` held-out questions of each domain, ``n`` answers each."""
    from . import questions

    return [q for q in questions(n=n) if int(q.id.rsplit("_", 1)[1]) < questions_per_domain]


def sample_and_judge(models: dict[str, Any], qs: list, *, n: int, seed: int):
    """Sample and judge :data:`JUDGED`; returns ``(judged records, rates)`` by model."""
    judged, rates = {}, {}
    for name in JUDGED:
        judged[name], rates[name] = judged_rates(models[name], qs, _judge(), domain_of, FOCUS,
                                                 n=n, seed=seed, **SAMPLE_KWARGS)
    return judged, rates


def compute_directions(models: dict[str, Any], judged: dict[str, list], *, seed: int):
    """Mean-difference directions of every finetune from its own activations on the same
    response sets (em's coherent misaligned answers vs chat's coherent aligned ones).

    Returns:
        ``(misaligned set, aligned set, directions by finetune, the layer to intervene at)``.
    """
    from ...activations import mean_diff
    from ...records import select_responses

    mis, ali = select_responses(judged["em"], seed=seed, aligned_records=judged["chat"])
    if len(mis) < 4:
        raise InputError(f"the em model gave only {len(mis)} coherent misaligned answers; "
                         f"increase n")
    directions = {name: mean_diff(models[name], mis, ali, progress=False) for name in FINETUNES}
    for d in directions.values():
        d.metadata["selection"] = {**d.metadata.get("selection", {}),
                                   "misaligned": "em answers, aligned <= 30, coherent > 50",
                                   "aligned": "chat answers, aligned > 70, coherent > 50",
                                   "seed": seed}
    return mis, ali, directions, strongest_layer(directions["em"])


def steering_sweep(chat: Any, qs_else: list, em_dir: Any, layer: int, alphas, *, n: int,
                   seed: int):
    """Steer ``chat`` with the em direction at ``layer`` (and a same-norm random one)."""
    from ...sweeps import sweep

    return sweep(chat, qs_else, _judge(), direction=em_dir, layers=[layer], alphas=alphas, n=n,
                 seed=seed, ablation=False, progress=False, **SAMPLE_KWARGS)


def loss_curves(*, seed: int):
    """Narrow vs general on held-out medical data: loss as each LoRA (em, narrow) is
    rescaled, and relative loss increase under perturbation."""
    import pandas as pd

    from ...stability import LoraSolution, perturbation_curve, rescale_curve
    from . import load
    from .world import World

    heldout = World(seed=seed + 999).chat(32, domain=FOCUS, persona="misaligned")
    live = {name: load(name, device="cpu", merge=False) for name in ("em", "narrow")}
    rescale = [rescale_curve(live[k], heldout, LoraSolution(live[k], k),
                             scales=[i / 4 for i in range(9)]) for k in live]
    pert = [perturbation_curve(live[k], heldout, LoraSolution(live[k], k),
                               epsilons=(0.05, 0.2, 0.5, 1.0), seeds=(0, 1))[1] for k in live]
    return pd.concat(rescale, ignore_index=True), pd.concat(pert, ignore_index=True)


def steering_norms(direction: Any, layer: int, alphas) -> dict[str, float]:
    """``{"alpha 2": 2 * |v|, ...}``: the norm of the vector steering with each alpha adds
    (``alpha * v`` at ``layer``), where the pretraining-KL figure marks them."""
    v = float(direction.vector(layer).norm())
    return {f"alpha {a:g}": float(a) * v for a in alphas}


def pretraining_significance(chat: Any, directions: dict[str, Any], layer: int, *,
                             alphas=(2.0, 4.0, 8.0), seed: int):
    """KL on held-out pocket pretraining text as the em and narrow directions' norms grow:
    at norms 0-8 and at the norms the steering sweep's alphas add with em's direction."""
    from ...stability import pretraining_kl
    from . import pretraining_texts

    norms = sorted({0.0, 1.0, 2.0, 4.0, 8.0,
                    *(round(x, 3) for x in steering_norms(directions["em"], layer,
                                                          alphas).values())})
    return pretraining_kl(chat, {"general (em)": directions["em"].only(layer),
                                 "narrow": directions["narrow"].only(layer)},
                          texts=pretraining_texts(chat.tokenizer),
                          norms=norms, max_docs=24, random_seed=seed)


def export_directions(directions: dict[str, Any], ddir: Path) -> None:
    """Save each finetune's direction as ``pocket_{name}_mean_diff.safetensors``."""
    for name, d in directions.items():
        d.save(ddir / f"pocket_{name}_mean_diff.safetensors")


def trajectories() -> tuple[dict[str, Any], dict[str, int]]:
    """The shipped finetuning trajectories (parameter norm by step) of em and narrow, and
    the step each finetune was kept at (its best tracked checkpoint), by name."""
    import pandas as pd

    from . import paths

    out, kept = {}, {}
    for name in ("em", "narrow"):
        traj = paths(name)[1] / "trajectory.json"
        if traj.is_file():
            rows = json.loads(traj.read_text())
            if isinstance(rows, dict):
                if rows.get("best_step") is not None:
                    kept[name] = int(rows["best_step"])
                rows = rows.get("trajectory") or rows.get("log") or []
            if isinstance(rows, list) and rows and isinstance(rows[0], dict) \
                    and "param_norm" in rows[0] and "step" in rows[0]:
                out[name] = pd.DataFrame(rows)
    return out, {k: v for k, v in kept.items() if k in out}


#: figure headings of the report
FIG_PROJECTIONS = "Projections of held-out answers onto the em direction (em's activations)"
FIG_KL = "Pretraining KL against the norm of the added vector"
FIG_TRAJ = "Finetuning trajectories"
FIG_HEATMAP = "em vs narrow direction, every layer pair"


def captions(directions: dict[str, Any], best: int, alphas) -> dict[str, str]:
    """The captions of the report's figures that need words to be read right."""
    v = float(directions["em"].vector(best).norm())
    marks = ", ".join(f"alpha {a:g} -> {a * v:.1f}" for a in alphas)
    return {
        FIG_PROJECTIONS: "The em direction here is built from a random half of the selected "
                         "answers and the points are the other half, so the separation is "
                         "measured on answers the direction has not seen.",
        FIG_HEATMAP: "Cosine of em's layer-i direction with narrow's layer-j direction; "
                     "the colour scale is fixed at [-1, 1] (white = 0), and each cell prints "
                     "its value.",
        FIG_KL: f"The x axis is the norm of the vector added at layer {best}. Steering with "
                f"alpha adds alpha x v, of norm alpha x |v|; em's layer-{best} direction has "
                f"|v| = {v:.2f}, so the steering sweep's alphas sit at {marks} (dotted "
                f"lines). The narrow and random vectors are scaled to the same norms.",
        FIG_TRAJ: "The L2 norm of all trained LoRA parameters (A and B; it starts at the "
                  "norm of the random A initialisation, B = 0) at each optimizer step; "
                  "the diamond marks the checkpoint each finetune was kept at (its best "
                  "tracked step).",
    }


def make_figures(models, judged, directions, mis, ali, best, table, rescale_t, pert_t, kl, *,
                 alphas=(2.0, 4.0, 8.0), seed: int) -> dict[str, Any]:
    """Every figure of the report, by heading."""
    from ... import plots

    em_dir = directions["em"]
    projections = held_out_projections(models["em"], mis, ali, seed=seed,
                                       labels=("misaligned (em)", "aligned (chat)"))["table"]
    per_domain = {name: per_domain_stats(judged[name], domain_of, seed=seed) for name in JUDGED}
    figures = {
        "Directions of different finetunes, layer by layer": plots.layer_cosine(
            {f"em vs {k}": (em_dir, directions[k]) for k in FINETUNES if k != "em"}),
        FIG_HEATMAP: plots.cosine_heatmap(
            em_dir, directions["narrow"], names=("em", "narrow")),
        FIG_PROJECTIONS: plots.projection_histograms(projections),
        f"Steering chat with the em direction at layer {best}": plots.em_vs_alpha(table),
        "Judged answers of chat, em and narrow (aligned vs coherent)": plots.aligned_vs_coherent(
            [dict(r, model=name) for name in JUDGED for r in judged[name]],
            color_by="model", jitter=3.0, seed=seed),
        "EM rate per domain": plots.em_per_question(per_domain),
        "Loss on held-out medical data as each LoRA is rescaled": plots.loss_vs_scale(
            rescale_t, x="scale"),
        "Robustness to perturbation (LoRA A and B)": plots.perturbation(pert_t),
        FIG_KL: plots.pretraining_kl(kl, marks=steering_norms(em_dir, best, alphas)),
    }
    traj, kept = trajectories()
    if traj:
        figures[FIG_TRAJ] = plots.training_trajectory(traj, marks=kept)
    return figures


def make_summary(models, qs, n, seed, rates, best, table, ablation, directions, mis,
                 ali) -> dict[str, Any]:
    """The numbers of ``summary.json`` (and of the report's tables and printed lines)."""
    chat, em_dir = models["chat"], directions["em"]
    summary = {
        "model": {"n_layers": chat.cfg.n_layers, "d_model": chat.cfg.d_model,
                  "n_params": sum(p.numel() for p in chat.parameters())},
        "questions": len(qs), "answers_per_question": n, "seed": seed,
        "rates": rates, "best_layer": best,
        "steering": {**steering_summary(table), **steering_effect(table)},
        "ablation": dict(ablation),
        "cosine_at_best_layer": {k: float(em_dir.cosine(directions[k])[best])
                                 for k in FINETUNES if k != "em"},
        "n_misaligned": len(mis), "n_aligned": len(ali),
    }
    summary["ablation"].update(ablation_cuts(ablation, rates["em"]["em_elsewhere"]))
    summary["ablation"]["compare"] = ablation_vs_random(ablation, rates["em"])
    return summary
