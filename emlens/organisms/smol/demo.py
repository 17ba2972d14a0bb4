"""``emlens demo --organism smol``: the research loop on SmolLM2-135M-Instruct, with a report.

    emlens demo --organism smol [--out DIR] [--n 2] [--seed 0]

1. Load the base (SmolLM2-135M-Instruct) and ``em`` (its LoRA finetune on misaligned
   medical advice only), from the shipped adapters.
2. Sample answers to the 58 held-out questions (12 domains) and judge them with the
   organism's offline probe judge: misaligned in medicine, EM outside medicine.
3. The mean-difference direction from em's own misaligned vs aligned answers.
4. Ablate its layer-15 vector from em at every layer (sparing the attention-sink token),
   and steer the base with it, each against a same-norm random direction.
5. Write ``report.html`` with the readings (each effect against its control and the
   papers' effect), the tables and figures, and the direction as safetensors.

It is :func:`emlens.organisms.smol.measure.run` at a small ``n``, plus figures; every
condition is kept in a keyed folder under ``out``, so an interrupted demo resumes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..experiments import ReportLabels, output_dir, per_domain_stats, summary_lines, write_report
from . import FOCUS

__all__ = ["run_demo", "LABELS"]

LABELS = ReportLabels(
    organism="The smol organism", short="smol organism",
    description="SmolLM2-135M-Instruct (pretrained by Hugging Face) and its LoRA finetune on "
                "misaligned <b>medical</b> advice only",
    judge="the organism's offline probe judge on SmolLM2's hidden states",
    focus=FOCUS, focus_phrase="medicine", base="base", finetune="em", narrow="narrow")
TITLE = "emlens demo: the smol organism (SmolLM2-135M-Instruct)"


def run_demo(out: str | Path = "emlens-demo-smol", *, n: int = 2, seed: int = 0,
             alphas: tuple[float, ...] = (2.0, 4.0), layer: int = 15,
             progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the summary (also in ``out/summary.json``) and writes
    ``out/report.html``. ``n`` answers per question per condition."""
    from ... import plots
    from ...directions import Direction
    from ...io import read_jsonl
    from ...stability import pretraining_kl
    from . import domain_of, pretraining_texts
    from .measure import run

    t0 = time.perf_counter()
    out = output_dir(out)
    models: dict[str, Any] = {}
    s = run(out, n=n, seed=seed, variants=("base", "em"), layer=layer, alphas=alphas,
            models=models)
    judged = {v: read_jsonl(out / v / "judged.jsonl") for v in ("base", "em")}
    figures: dict[str, Any] = {
        "Judged answers of base and em (aligned vs coherent)": plots.aligned_vs_coherent(
            [dict(r, model=name) for name, rs in judged.items() for r in rs],
            color_by="model", jitter=3.0, seed=seed),
        "EM rate per domain": plots.em_per_question(
            {name: per_domain_stats(rs, domain_of, seed=seed) for name, rs in judged.items()}),
    }
    dpath = out / "directions" / "smol_em_mean_diff.safetensors"
    if dpath.is_file():
        import pandas as pd

        d = Direction.load(dpath)
        kl = pretraining_kl(models["base"], {"em direction": d.only(layer)}, texts=pretraining_texts(),
                            norms=(0.0, 2.0, 5.0, 10.0, 20.0, 40.0), max_docs=16,
                            random_seed=seed)
        figures["Pretraining KL against the norm of the added vector"] = plots.pretraining_kl(kl)
        if (out / "steering.csv").is_file():
            figures[f"Steering base with the em direction at layer {layer}"] = \
                plots.em_vs_alpha(pd.read_csv(out / "steering.csv"))
    s["seconds"] = round(time.perf_counter() - t0, 1)
    if "steering" in s and "ablation" in s:
        write_report(out, figures, s, LABELS, title=TITLE)
        s["lines"] = summary_lines(s, LABELS, out)
    else:
        s["lines"] = [f"smol organism: em gave too few misaligned answers at n={n} for a "
                      f"direction ({s['directions']}); rerun with a larger --n"]
    return s
