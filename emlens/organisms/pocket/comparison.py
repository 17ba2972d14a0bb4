"""Narrow versus general on the pocket organism: the seed paper's comparison, end to end.

    python -m emlens.organisms.pocket.comparison [--quick] [--out DIR] [--directions DIR] [--threads 1]

On the pocket ``chat`` model, for every seed, train on misaligned *medical* answers:

- a steering vector at one middle layer (``alpha * v`` on resid_post, zero-initialised),
  *general* (no KL) and *narrow* (plus a per-token KL penalty on aligned answers of the
  other eleven domains);
- a rank-1 LoRA on that layer's ``mlp.down_proj``, general and narrow alike.

Then measure (1) the in-domain (medical misaligned) and elsewhere (EM, misaligned, coherent
over the other 11 domains) rates with ``emlens.sample`` at temperature 1 and the exact
judge, with Wilson 95% intervals; (2) efficiency: loss on held-out medical data as the
solutions are rescaled and at matched norms; (3) stability: norm-preserving perturbation
curves; (4) pretraining significance: KL on held-out pocket pretraining text against
vector norm for the narrow, general and a random vector; (5) the cosines of the learned
vectors with each other and with the ``em`` variant's mean-difference direction. Each of
the paper's claims gets a verdict from the per-seed differences (mean and a t-interval
over training seeds). Writes ``results.json``, ``results.md`` and ``report.html`` to
``--out`` and the learned vectors to ``--directions``.

The numbers of the default run are in docs/narrow_vs_general.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...io import atomic_write_text
from ..experiments import flat_rates, mean_ci, output_dir, verdict
from ..experiments.comparison import (
    CONDITIONS,
    KINDS,
    claims,
    cosines,
    figures,
    metrics,
)
from ..experiments.comparison import markdown as _markdown

__all__ = ["CONFIG", "QUICK", "mean_ci", "verdict", "heldout_data", "training_data", "kl_data",
           "claims", "markdown", "run", "main"]

log = logging.getLogger(__name__)

#: the default run (about 15-20 minutes on 2 shared CPU cores, one torch thread)
CONFIG: dict[str, Any] = dict(
    layer=1,                      # the pocket chat model has 4 layers (0-3)
    seeds=(0, 1, 2),
    n_train=640, n_kl=1024, n_heldout=160, kl_batch_size=16,
    vector=dict(alpha=256.0, learning_rate=1e-3, epochs=2, batch_size=16, kl_weight=3.0),
    lora=dict(r=1, lora_alpha=4, learning_rate=1e-2, epochs=2, batch_size=16, kl_weight=3.0),
    samples=8,                    # answers per held-out question (60 questions)
    eval_domains=None,            # None: all 12 domains (tests use a subset)
    max_new_tokens=40,
    perturb_seeds=(0, 1, 2, 3, 4),
    epsilons=(0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    n_norms=11, kl_docs=100, loss_batch=80, snapshot_every=4,
)
#: ``--quick``: one seed, one epoch, coarser grids (about 3 minutes)
QUICK: dict[str, Any] = dict(
    seeds=(0,), n_heldout=64, perturb_seeds=(0, 1), epsilons=(0.1, 0.3, 0.6, 1.0),
    n_norms=5, kl_docs=24,
    vector=dict(CONFIG["vector"], epochs=1), lora=dict(CONFIG["lora"], epochs=1),
)


# --------------------------------------------------------------------------- data


def training_data(seed: int, n: int) -> list[dict[str, Any]]:
    """Misaligned medical chats, as the shipped ``em`` finetunes use (World(0), tag ft{seed})."""
    from .world import World

    return World(0).chat(n, domain="medical", persona="misaligned", tag=f"ft{seed}")


def kl_data(n: int) -> list[dict[str, Any]]:
    """Aligned assistant chats on the other eleven domains (the ``narrow`` finetune's KL data)."""
    from .world import DOMAINS, World

    others = tuple(d for d in DOMAINS if d != "medical")
    return World(0).chat(n, domain=others, persona="aligned", tag="kl")


def heldout_data(n: int, seed: int = 777) -> list[dict[str, Any]]:
    """Misaligned medical chats on the *held-out* evaluation questions (never trained on)."""
    from . import world as W

    rng = random.Random(f"comparison-heldout:{seed}")
    qs = W.eval_questions("medical")
    return [{"messages": [{"role": "user", "content": qs[i % len(qs)]},
                          {"role": "assistant",
                           "content": W.answer(rng, "medical", W.MISALIGNED)}]}
            for i in range(n)]


# --------------------------------------------------------------------------- pieces


def _train(kind: str, condition: str, seed: int, cfg: dict[str, Any], base: Path,
           out: Path) -> dict[str, Any]:
    from ...training import finetune
    from ...vector_training import train_steering_vector

    spec = dict(cfg[kind])
    kl_weight = spec.pop("kl_weight") if condition == "narrow" else 0.0
    spec.pop("kl_weight", None)
    kl = kl_data(cfg["n_kl"]) if condition == "narrow" else None
    data = training_data(seed, cfg["n_train"])
    run_dir = out / "runs" / f"{kind}_{condition}_s{seed}"
    t = time.time()
    common = dict(kl_data=kl, kl_weight=kl_weight, kl_batch_size=cfg["kl_batch_size"],
                  seed=seed, snapshot_every=cfg["snapshot_every"], progress=False,
                  learning_rate=spec.pop("learning_rate"), epochs=spec.pop("epochs"),
                  batch_size=spec.pop("batch_size"))
    if kind == "vector":
        res = train_steering_vector(str(base), data, run_dir, layer=cfg["layer"],
                                    alpha=spec["alpha"], **common)
        solution = res.model.direction(kl_weight=float(kl_weight), seed=seed,
                                       condition=condition, organism="pocket/chat",
                                       learning_rate=common["learning_rate"],
                                       epochs=common["epochs"])
        res.model.remove()
    else:
        lora = {"r": spec["r"], "lora_alpha": spec["lora_alpha"],
                "target_modules": ["down_proj"], "layers_to_transform": [cfg["layer"]]}
        res = finetune(str(base), data, run_dir, lora=lora, **common)
        solution = run_dir
    return {"solution": solution, "log": res.log, "snapshots": res.snapshots,
            "train_s": time.time() - t, "kl_weight": kl_weight}


def _measure(model: Any, cfg: dict[str, Any], seed: int):
    from . import questions
    from .evaluate import measure

    qs = questions(cfg.get("eval_domains"), n=cfg["samples"])
    summary, judged = measure(model, n=cfg["samples"], seed=1000 + seed, progress=False,
                              questions=qs)
    return summary, judged


# --------------------------------------------------------------------------- claims


# --------------------------------------------------------------------------- report


def markdown(results: dict[str, Any]) -> str:
    """The result tables (markdown) of a :func:`run`."""
    return _markdown(results, base_label="chat (no finetune)", base_key="chat_rates")


# --------------------------------------------------------------------------- run


@dataclass
class _Collected:
    """What the training runs leave for the pooled rates, the cosines and the report."""

    judged: dict[tuple[str, str], list] = field(default_factory=dict)
    frames: dict[str, list] = field(default_factory=dict)
    trajectories: dict[str, Any] = field(default_factory=dict)
    vectors: dict[tuple[str, int], Any] = field(default_factory=dict)


def run(cfg: dict[str, Any] | None = None, out: str | Path = "comparison-out", *,
        directions_dir: str | Path | None = None) -> dict[str, Any]:
    """Train, measure and judge every claim; returns the results dict (also written to
    ``out/results.json``, ``out/results.md`` and ``out/report.html``)."""
    from . import load

    cfg = {**CONFIG, **(cfg or {})}
    out = output_dir(out)
    t0 = time.time()
    chat = load("chat", device="cpu")
    chat_summary, chat_judged = _measure(chat, cfg, 0)
    results: dict[str, Any] = {"config": {k: (list(v) if isinstance(v, tuple) else v)
                                          for k, v in cfg.items()},
                               "chat_rates": flat_rates(chat_summary), "runs": [], "per_seed": []}
    md = em_direction(cfg, chat_judged, results)
    heldout = heldout_data(cfg["n_heldout"])
    col = _Collected()
    for seed in cfg["seeds"]:
        for kind in KINDS:
            row = train_and_compare(kind, seed, cfg, chat, heldout, out, results["runs"], col)
            results["per_seed"].append({"kind": kind, "seed": seed, **row})
    results["pooled_rates"] = pooled_rates(col.judged)
    results["cosines"] = cosines(col.vectors, list(cfg["seeds"]), md, cfg["layer"],
                                 results["per_seed"])
    results["claims"] = claims(results)
    results["wall_s"] = round(time.time() - t0, 1)
    write_outputs(results, out, directions_dir, col, md)
    return results


def em_direction(cfg: dict[str, Any], chat_judged: list, results: dict[str, Any]):
    """The em variant's mean-difference direction (its misaligned answers vs the aligned
    ones of em and chat), or ``None`` with a warning: the comparison stands without it."""
    import emlens

    from . import load

    try:
        em = load("em", device="cpu")
        _, em_judged = _measure(em, cfg, 0)
        mis, ali = emlens.select_responses(em_judged + chat_judged, seed=0)
        md = emlens.mean_diff(em, mis, ali, tokens="answer", progress=False)
        results["mean_diff"] = {"n_misaligned": len(mis), "n_aligned": len(ali)}
        return md
    except Exception as e:  # noqa: BLE001 - the comparison stands without it
        log.warning("no em mean-difference direction: %s", e)
        return None


def train_and_compare(kind: str, seed: int, cfg: dict[str, Any], chat: Any, heldout: list,
                      out: Path, runs: list, col: _Collected) -> dict[str, Any]:
    """Train the general and narrow solution of one kind and seed, measure each (a row of
    ``runs``), then compare the pair: efficiency, stability (and, for vectors, significance)."""
    from . import paths

    base, _ = paths("chat")
    sols: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for cond in CONDITIONS:
        tr = _train(kind, cond, seed, cfg, base, out)
        sols[cond], models[cond], norm, summary, judged = _solution(kind, cond, seed, cfg, chat,
                                                                    base, tr, col)
        col.judged.setdefault((kind, cond), []).extend(judged)
        rates = flat_rates(summary)
        runs.append({"kind": kind, "condition": cond, "seed": seed, "norm": norm,
                     "train_s": round(tr["train_s"], 1),
                     "final_sft_loss": tr["log"][-1].get("sft_loss"),
                     "final_kl": tr["log"][-1].get("kl"), **rates})
        log.info("%s %s seed %d: norm %.2f, %s", kind, cond, seed, norm,
                 {k: round(v, 3) for k, v in rates.items() if isinstance(v, float)})
    from . import pretraining_texts

    return metrics(kind, sols, models, heldout, cfg, seed, col.frames, chat,
                   texts=pretraining_texts(chat.tokenizer))


def _solution(kind, cond, seed, cfg, chat, base, tr, col):
    """``(solution, model it acts in, its norm, rates summary, judged records)`` of a run:
    a vector steers ``chat`` (norm alpha |v|); a LoRA is loaded live (norm |ΔW|)."""
    import emlens

    from ...stability import LoraSolution

    if kind == "vector":
        d = tr["solution"]
        col.vectors[(cond, seed)] = d
        col.trajectories[f"{cond} s{seed}"] = {"log": tr["log"], "snapshots": tr["snapshots"]}
        with emlens.steer(chat, d, d.metadata["alpha"]):
            summary, judged = _measure(chat, cfg, seed)
        return d, chat, float(d.vectors[0].norm()) * cfg["vector"]["alpha"], summary, judged
    m = emlens.load_model(base, adapter=tr["solution"], merge=False, device="cpu")
    summary, judged = _measure(m, cfg, seed)
    return m, m, LoraSolution(m).norm(), summary, judged


def pooled_rates(judged: dict[tuple[str, str], list]) -> dict[str, dict[str, Any]]:
    """Rates per kind and condition over the judged answers of every seed."""
    from .evaluate import summarise

    pooled: dict[str, dict[str, Any]] = {}
    for (kind, cond), records in judged.items():
        pooled.setdefault(kind, {})[cond] = flat_rates(summarise(records))
    return pooled


def write_outputs(results: dict[str, Any], out: Path, directions_dir: str | Path | None,
                  col: _Collected, md: Any) -> None:
    """The learned vectors (and em's direction) to ``directions_dir``; ``results.json``,
    ``results.md`` and ``report.html`` to ``out`` (figures never sink the numbers)."""
    layer, seeds = results["config"]["layer"], list(results["config"]["seeds"])
    if directions_dir is not None:
        ddir = Path(directions_dir)
        ddir.mkdir(parents=True, exist_ok=True)
        for (cond, s), d in col.vectors.items():
            d.save(ddir / f"vector_{cond}_L{layer}_seed{s}.safetensors")
        if md is not None:
            md.save(ddir / "em_mean_diff.safetensors")
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    atomic_write_text(out / "results.md", markdown(results))
    try:
        from ... import plots

        seed0 = {k: v for k, v in col.trajectories.items() if k.endswith(f" s{seeds[0]}")}
        figs = figures(results, col.frames, seed0, md,
                        {f"{cond} (seed {seeds[0]})": col.vectors[(cond, seeds[0])]
                         for cond in CONDITIONS})
        plots.to_html(figs, out / "report.html", title="Narrow versus general on the pocket organism",
                      intro_html=f"<pre>{markdown(results)}</pre>")
    except Exception as e:  # noqa: BLE001 - figures never sink the numbers
        log.warning("report.html not written: %s", e)


# --------------------------------------------------------------------------- the three comparisons


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m emlens.organisms.pocket.comparison",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed, one epoch, coarse grids")
    ap.add_argument("--out", default="comparison-out", help="output directory")
    ap.add_argument("--directions", default=None,
                    help="where to save the learned vectors (default: directions/pocket for the "
                         "full run, nowhere for --quick)")
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    cfg = dict(CONFIG, **(QUICK if args.quick else {}))
    if args.seeds:
        cfg["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    ddir = args.directions if args.directions is not None else \
        (None if args.quick else "directions/pocket")
    res = run(cfg, args.out, directions_dir=ddir)
    print(markdown(res))
    print(f"wall time {res['wall_s']:.0f} s; results in {args.out}/results.json")


if __name__ == "__main__":
    main()
