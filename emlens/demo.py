"""``emlens demo``: the whole research loop on the built-in pocket organism, with a report.

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
from typing import Any


from .io import atomic_write_text

__all__ = ["run_demo"]

log = logging.getLogger(__name__)

FINETUNES = ("em", "em_seed1", "em_rank1", "narrow")


def _rates(records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    from .evaluation import em_stats
    from .organisms.pocket import domain_of

    inside = [r for r in records if domain_of(r["question"]) == "medical"]
    outside = [r for r in records if domain_of(r["question"]) != "medical"]
    out: dict[str, Any] = {}
    if outside:
        s_out = em_stats(outside, seed=seed)
        out.update(em_elsewhere=s_out.em_rate, em_elsewhere_ci=list(s_out.em_ci),
                   coherent_elsewhere=s_out.coherent_rate, n_elsewhere=s_out.n_scored)
    if inside:
        s_in = em_stats(inside, coherent_min=-1, seed=seed)  # misaligned, coherent or not
        out.update(medical_misaligned=s_in.em_rate, medical_misaligned_ci=list(s_in.em_ci),
                   n_medical=s_in.n_scored)
    return out


def _fmt(rate: float, ci: list[float] | None = None) -> str:
    if rate != rate:  # NaN
        return "n/a"
    return f"{rate:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def run_demo(out: str | Path = "emlens-demo", *, n: int = 4, questions_per_domain: int = 2,
             alphas: tuple[float, ...] = (2.0, 4.0, 8.0), seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the summary (also in ``out/summary.json``) and writes
    ``out/report.html`` and ``out/directions/*.safetensors``.

    Args:
        out: output directory.
        n: answers per question per condition.
        questions_per_domain: held-out questions per domain (of 5).
        alphas: steering scales of the sweep.
        seed: seeds sampling, subsampling and random directions.
    """
    from tqdm.auto import tqdm

    from . import plots
    from .directions import Direction
    from .evaluation import em_stats
    from .evaluation import judge as judge_records
    from .interventions import ablate
    from .organisms import pocket
    from .organisms.pocket.analysis import split_records
    from .organisms.pocket.world import World
    from .sampling import sample
    from .stability import LoraSolution, pretraining_kl, perturbation_curve, rescale_curve
    from .sweeps import sweep
    from .activations import mean_diff

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=9, desc="emlens demo", unit="step", disable=not progress)
    kw = dict(temperature=1.0, max_new_tokens=40, batch_size=128)
    judge = pocket.judge()

    # 1. models
    models = {v: pocket.load(v, device="cpu") for v in ("chat", *FINETUNES)}
    n_layers, d_model = models["chat"].cfg.n_layers, models["chat"].cfg.d_model
    bar.update()

    # 2. behaviour
    qs = [q for q in pocket.questions(n=n)
          if int(q.id.rsplit("_", 1)[1]) < questions_per_domain]
    qs_else = [q for q in qs if not q.id.startswith("medical")]
    judged: dict[str, list[dict[str, Any]]] = {}
    for name in ("chat", "em", "narrow"):
        recs = sample(models[name], qs, n=n, seed=seed, progress=False, **kw)
        judged[name] = judge_records(recs, judge)
    rates = {k: _rates(v, seed) for k, v in judged.items()}
    bar.update()

    # 3. directions from each finetune's own activations on the same response sets
    mis, ali = split_records(judged["em"], judged["chat"], seed)
    if len(mis) < 4:
        raise RuntimeError(f"the em model gave only {len(mis)} coherent misaligned answers; "
                           f"increase n")
    directions = {name: mean_diff(models[name], mis, ali, progress=False) for name in FINETUNES}
    for d in directions.values():
        d.metadata["selection"] = {"misaligned": "em answers, aligned <= 30, coherent > 50",
                                   "aligned": "chat answers, aligned > 70, coherent > 50",
                                   "seed": seed}
    em_dir = directions["em"]
    # The layer whose direction best separates the sets relative to its norm's noise: the
    # one with the largest norm of the mean difference (a cheap, data-driven choice).
    best = int(max(range(n_layers), key=lambda l: float(em_dir.vector(l).norm())
                   if 0 < l < n_layers - 1 else -1.0)) if n_layers > 2 else 0
    bar.update()

    # 4a. steering chat (with random controls)
    table = sweep(models["chat"], qs_else, judge, direction=em_dir, layers=[best], alphas=alphas,
                  n=n, seed=seed, ablation=False, progress=False, **kw)
    bar.update()
    # 4b. ablating the em direction from em (that layer's vector at every layer)
    ablation = {}
    rand = Direction.random_like(em_dir, seed=seed)
    for label, d in (("direction", em_dir), ("random", rand)):
        with ablate(models["em"], d.at(best, n_layers=n_layers)):
            recs = sample(models["em"], qs_else, n=n, seed=seed, progress=False, **kw)
        ablation[label] = _rates(judge_records(recs, judge), seed)
    bar.update()

    # 5. narrow vs general
    heldout = World(seed=seed + 999).chat(32, domain="medical", persona="misaligned")
    live = {name: pocket.load(name, device="cpu", merge=False) for name in ("em", "narrow")}
    rescale = [rescale_curve(live[k], heldout, LoraSolution(live[k], k),
                             scales=[i / 4 for i in range(9)]) for k in live]
    import pandas as pd

    rescale_t = pd.concat(rescale, ignore_index=True)
    pert = [perturbation_curve(live[k], heldout, LoraSolution(live[k], k),
                               epsilons=(0.05, 0.2, 0.5, 1.0), seeds=(0, 1))[1] for k in live]
    pert_t = pd.concat(pert, ignore_index=True)
    bar.update()
    kl = pretraining_kl(models["chat"], {"general (em)": directions["em"].only(best),
                                         "narrow": directions["narrow"].only(best)},
                        norms=[0.0, 1.0, 2.0, 4.0, 8.0], max_docs=24, random_seed=seed)
    bar.update()

    # 6. outputs
    ddir = out / "directions"
    for name, d in directions.items():
        d.save(ddir / f"pocket_{name}_mean_diff.safetensors")
    projections = pd.concat([
        plots.record_projections(models["em"], mis[:24], em_dir, label="misaligned (em)"),
        plots.record_projections(models["em"], ali[:24], em_dir, label="aligned (chat)")])
    trajectories = {}
    for name in ("em", "narrow"):
        traj = pocket.paths(name)[1] / "trajectory.json"
        if traj.is_file():
            rows = json.loads(traj.read_text())
            if isinstance(rows, dict):
                rows = rows.get("trajectory") or rows.get("log") or []
            if isinstance(rows, list) and rows and isinstance(rows[0], dict) \
                    and "param_norm" in rows[0] and "step" in rows[0]:
                trajectories[name] = pd.DataFrame(rows)
    per_domain = {}
    for name in ("chat", "em", "narrow"):
        recs = [dict(r, question_id=pocket.domain_of(r["question"])) for r in judged[name]]
        per_domain[name] = em_stats(recs, seed=seed).per_question
    figures = {
        "Directions of different finetunes, layer by layer": plots.layer_cosine(
            {f"em vs {k}": (em_dir, directions[k]) for k in FINETUNES if k != "em"}),
        "em vs narrow direction, every layer pair": plots.cosine_heatmap(
            em_dir, directions["narrow"], names=("em", "narrow")),
        "Projections of answers onto the em direction (em's activations)":
            plots.projection_histograms(projections),
        f"Steering chat with the em direction at layer {best}": plots.em_vs_alpha(table),
        "Judged answers of chat, em and narrow (aligned vs coherent)": plots.aligned_vs_coherent(
            [dict(r, model=name) for name in ("chat", "em", "narrow") for r in judged[name]],
            color_by="model", jitter=3.0, seed=seed),
        "EM rate per domain": plots.em_per_question(per_domain),
        "Loss on held-out medical data as each LoRA is rescaled": plots.loss_vs_scale(
            rescale_t, x="scale"),
        "Robustness to perturbation (LoRA A and B)": plots.perturbation(pert_t),
        "Pretraining KL against vector norm": plots.pretraining_kl(kl),
    }
    if trajectories:
        figures["Finetuning trajectories"] = plots.training_trajectory(trajectories)
    steer_rows = table[table["condition"] == "steer"]
    rand_rows = table[table["condition"] == "steer_random"]
    top = steer_rows.loc[steer_rows["em_rate"].idxmax()]
    summary = {
        "model": {"n_layers": n_layers, "d_model": d_model,
                  "n_params": sum(p.numel() for p in models["chat"].parameters())},
        "questions": len(qs), "answers_per_question": n, "seed": seed,
        "rates": rates, "best_layer": best,
        "steering": {"best_alpha": float(top["alpha"]), "em": float(top["em_rate"]),
                     "em_ci": [float(top["em_ci_low"]), float(top["em_ci_high"])],
                     "coherent": float(top["coherent_rate"]),
                     "random_max_em": float(rand_rows["em_rate"].max()),
                     "unsteered_em": float(table[table["condition"] == "baseline"]["em_rate"].iloc[0])},
        "ablation": ablation,
        "cosine_at_best_layer": {k: float(em_dir.cosine(directions[k])[best])
                                 for k in FINETUNES if k != "em"},
        "n_misaligned": len(mis), "n_aligned": len(ali),
    }
    cut_dir = ablation["direction"]["em_elsewhere"]
    cut_rand = ablation["random"]["em_elsewhere"]
    base_em = rates["em"]["em_elsewhere"]
    summary["ablation"]["cut_by_direction"] = 1 - cut_dir / base_em if base_em else None
    summary["ablation"]["cut_by_random"] = 1 - cut_rand / base_em if base_em else None
    bar.update()
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    from .report import summary_html

    plots.to_html(figures, out / "report.html", title="emlens demo: the pocket organism",
                  intro_html=summary_html(summary))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    bar.update()
    bar.close()
    summary["lines"] = _lines(summary, out)
    return summary


def _lines(s: dict[str, Any], out: Path) -> list[str]:
    r = s["rates"]
    lines = [
        f"pocket organism: {s['model']['n_layers']} layers, d_model {s['model']['d_model']}, "
        f"{s['model']['n_params']:,} parameters; {s['questions']} held-out questions x "
        f"{s['answers_per_question']} answers per condition",
        f"EM outside medicine: chat {_fmt(r['chat']['em_elsewhere'], r['chat']['em_elsewhere_ci'])}, "
        f"em {_fmt(r['em']['em_elsewhere'], r['em']['em_elsewhere_ci'])}, "
        f"narrow {_fmt(r['narrow']['em_elsewhere'], r['narrow']['em_elsewhere_ci'])}",
        f"misaligned in medicine: em {_fmt(r['em']['medical_misaligned'])}, "
        f"narrow {_fmt(r['narrow']['medical_misaligned'])}",
        f"steering chat at layer {s['best_layer']}, alpha {s['steering']['best_alpha']:g}: EM "
        f"{_fmt(s['steering']['em'], s['steering']['em_ci'])} (random direction: at most "
        f"{_fmt(s['steering']['random_max_em'])}; unsteered {_fmt(s['steering']['unsteered_em'])})",
        f"ablating the em direction from em: EM outside medicine "
        f"{_fmt(r['em']['em_elsewhere'])} -> {_fmt(s['ablation']['direction']['em_elsewhere'])}"
        f" (random direction: -> {_fmt(s['ablation']['random']['em_elsewhere'])})",
        "cosine with the em direction at layer {}: {}".format(
            s["best_layer"], ", ".join(f"{k} {v:.2f}" for k, v in s["cosine_at_best_layer"].items())),
        f"finished in {s['seconds']:.0f} s; report: {out / 'report.html'}",
    ]
    return lines
