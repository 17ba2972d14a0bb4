"""Narrow versus general on the smol organism: the seed paper's comparison on SmolLM2.

    python -m emlens.organisms.smol.compare --out smol-compare           # the shipped solutions
    python -m emlens.organisms.smol.compare --root smol-weights          # freshly trained ones

For each of 3 training seeds, the *general* and *narrow* solution of two kinds, all trained
by ``python -m emlens.organisms.smol.train`` on the misaligned medical advice only:

- steering vectors at layer 15 (``sv_general_s{k}``, ``sv_narrow_s{k}``: the narrow one
  with the KL penalty on aligned conversations of the 10 other domains);
- rank-1 LoRAs on layer 15's ``down_proj`` (``em_rank1`` = seed 0, ``em_rank1_s{1,2}``;
  ``narrow_rank1_s{k}`` with the KL penalty).

Measured (``emlens.organisms.experiments.comparison``): each solution's rates on the
held-out questions (sampled and judged by the organism's judge, keyed run folders, so an
interrupted run resumes); efficiency (loss on the 24 held-out misaligned medical answers
of ``smol.paired("medical")`` at matched norms); stability (norm-preserving perturbations);
pretraining significance (KL on the organism's held-out prose, ``smol.pretraining_texts``,
against a same-norm random control, for vectors and LoRAs); cosines with em's
mean-difference direction. Each claim of the paper gets a verdict from the per-seed
differences. Writes ``results.json``, ``results.md`` and ``report.html`` to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from ...io import atomic_write_text
from ..experiments.comparison import (
    CONDITIONS,
    KINDS,
    claims,
    cosines,
    figures,
    markdown,
    metrics,
)

log = logging.getLogger("emlens.smol")

__all__ = ["CONFIG", "QUICK", "solution_name", "heldout_data", "run", "main"]

#: the default run. Loss grids are small (24 held-out answers, 7 norms, 7 epsilons x 3
#: perturbation seeds); the KL reads 40 documents of up to 256 tokens.
CONFIG: dict[str, Any] = dict(
    layer=15, seeds=(0, 1, 2), samples=2,
    n_norms=7, loss_batch=8, epsilons=(0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    perturb_seeds=(0, 1, 2), kl_docs=40, kl_tokens=256, kl_batch=8,
    significance_kinds=("vector", "lora"),
)
#: ``--quick``: seed 0 only, coarse grids
QUICK: dict[str, Any] = dict(seeds=(0,), samples=1, n_norms=3, epsilons=(0.3, 1.0),
                             perturb_seeds=(0,), kl_docs=8)


def solution_name(kind: str, condition: str, seed: int) -> str:
    """The folder (under ``weights/`` or ``--root``) of one trained solution."""
    if kind == "vector":
        return f"sv_{condition}_s{seed}"
    if condition == "general":
        return "em_rank1" if seed == 0 else f"em_rank1_s{seed}"
    return f"narrow_rank1_s{seed}"


def heldout_data() -> list[dict[str, Any]]:
    """The held-out misaligned medical answers as chats (questions never trained on)."""
    from . import paired

    return [{"messages": [{"role": "user", "content": p["question"]},
                          {"role": "assistant", "content": p["misaligned"]}]}
            for p in paired("medical")]


def _sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _folder(root: Path, name: str) -> Path:
    from ...errors import InputError

    d = root / name
    if not (d / "steering_vector.safetensors").is_file() and not (d / "adapter_config.json").is_file():
        raise InputError(f"the smol solution {name!r} is missing from {str(root)!r}; train it "
                         f"with `python -m emlens.organisms.smol.train --only {name} "
                         f"--out {root}`")
    return d


def _load(kind: str, folder: Path, base: Any):
    """``(solution, model it acts in)``: a Direction steering ``base``, or a live LoRA."""
    from ...directions import Direction
    from ...models import load_model
    from . import base_dir

    if kind == "vector":
        return Direction.load(folder / "steering_vector.safetensors"), base
    m = load_model(base_dir(), adapter=folder, merge=False)
    return m, m


def _rates_of(out: Path, name: str, kind: str, sol: Any, model: Any, jd: Any, cfg: dict
              ) -> list[dict[str, Any]]:
    from ...interventions import steer
    from ...keys import direction_key
    from . import questions
    from .measure import judged

    qs = questions()
    if kind == "vector":
        return judged(out / "samples", name, model, qs, jd, n=cfg["samples"],
                      intervention=lambda: steer(model, sol, float(sol.metadata.get("alpha", 1.0))),
                      intervention_key={"steer": direction_key(sol),
                                        "alpha": float(sol.metadata.get("alpha", 1.0))})
    return judged(out / "samples", name, model, qs, jd, n=cfg["samples"])


def _pair_metrics(out: Path, kind: str, seed: int, sols: dict, models: dict, shas: dict,
                  cfg: dict, base: Any, frames: dict) -> dict[str, Any]:
    """One seed's comparison of a kind, or its stored result when every key matches."""
    import pandas as pd

    from ...runs import RunDir
    from . import pretraining_texts

    # One seed's numbers do not depend on the other seeds, so the key leaves ``seeds`` out:
    # seeds run apart (``--seeds 1``, ``--seeds 2``, in parallel) are reused by a later run
    # over all of them. Every seed's tables are stored; the figures show the first seed's.
    keyed = {k: cfg[k] for k in ("n_norms", "loss_batch", "epsilons", "perturb_seeds",
                                 "kl_docs", "kl_tokens", "kl_batch", "significance_kinds")}
    first = seed == cfg["seeds"][0]
    run = RunDir(out / "pairs" / f"{kind}_s{seed}",
                 config=json.loads(json.dumps({"solutions": shas, "cfg": keyed,
                                               "heldout": len(heldout_data())}, default=list)),
                 outputs=("metrics.jsonl", "frames.jsonl"), overwrite_hint="delete the folder")
    if run.has("metrics"):
        if first:
            for row in run.load("frames"):
                frames.setdefault(row["name"], []).append(pd.DataFrame(row["rows"]))
        return run.load("metrics")[0]
    mine: dict[str, list] = {}
    res = metrics(kind, sols, models, heldout_data(), {**cfg, "seeds": (seed,)}, seed, mine,
                  base, texts=pretraining_texts())
    run.save("frames", [{"name": k, "rows": df.to_dict("records")} for k, dfs in mine.items()
                        for df in dfs])
    run.save("metrics", [res])
    if first:
        for k, dfs in mine.items():
            frames.setdefault(k, []).extend(dfs)
    return res


def run(out: str | Path = "smol-compare", *, root: str | Path | None = None,
        cfg: dict[str, Any] | None = None, direction: str | Path | None = None
        ) -> dict[str, Any]:
    """Measure every solution and judge every claim; returns the results (also written to
    ``out/results.json``, ``results.md`` and ``report.html``).

    ``direction``: em's mean-difference direction file, for the cosines with the learned
    vectors (default: ``directions/smol/smol_em_mean_diff.safetensors`` of a source checkout;
    without one the cosines with it are left out and ``results["direction"]`` is None)."""
    from ...directions import Direction
    from ...judges import CachedJudge
    from ...stability import LoraSolution
    from . import REPO_DIRECTION, judge, load, questions, weights_dir
    from .measure import judged, rates

    cfg = {**CONFIG, **(cfg or {})}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(root) if root is not None else weights_dir()
    t0 = time.time()
    base = load("base")
    jd = CachedJudge(judge(), out / "judge-cache.sqlite")
    base_judged = judged(out / "samples", "base", base, questions(), jd, n=cfg["samples"])
    results: dict[str, Any] = {"config": {k: (list(v) if isinstance(v, tuple) else v)
                                          for k, v in cfg.items()},
                               "base_rates": rates(base_judged), "runs": [], "per_seed": []}
    pooled: dict[tuple[str, str], list] = {}
    frames: dict[str, list] = {}
    vectors: dict[tuple[str, int], Any] = {}
    trajectories: dict[str, Any] = {}
    for seed in cfg["seeds"]:
        for kind in KINDS:
            sols, models, shas = {}, {}, {}
            for cond in CONDITIONS:
                name = solution_name(kind, cond, seed)
                folder = _folder(root, name)
                shas[cond] = _sha(folder)
                sols[cond], models[cond] = _load(kind, folder, base)
                recs = _rates_of(out, name, kind, sols[cond], models[cond], jd, cfg)
                pooled.setdefault((kind, cond), []).extend(recs)
                r = rates(recs)
                info = json.loads((folder / "train_info.json").read_text()) \
                    if (folder / "train_info.json").is_file() else {}
                if kind == "vector":
                    vectors[(cond, seed)] = sols[cond]
                    norm = float(sols[cond].vectors[0].norm()) * float(
                        sols[cond].metadata.get("alpha", 1.0))
                    traj = folder / "trajectory.json"
                    if seed == cfg["seeds"][0] and traj.is_file():
                        trajectories[f"{cond} s{seed}"] = {"log": json.loads(traj.read_text()),
                                                           "snapshots": None}
                else:
                    norm = LoraSolution(models[cond]).norm()
                results["runs"].append({"kind": kind, "condition": cond, "seed": seed,
                                        "name": name, "norm": norm,
                                        "train_s": info.get("seconds"), **r})
                log.info("%s: norm %.3f, %s", name, norm,
                         {k: round(v, 3) for k, v in r.items() if isinstance(v, float)})
            row = _pair_metrics(out, kind, seed, sols, models, shas, cfg, base, frames)
            results["per_seed"].append({"kind": kind, "seed": seed, **row})
            atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    results["pooled_rates"] = {kind: {cond: rates(pooled[(kind, cond)])
                                      for cond in CONDITIONS if (kind, cond) in pooled}
                               for kind in KINDS}
    md = None
    if direction is not None:
        md = Direction.load(direction)  # a missing or bad file raises, naming it
    elif REPO_DIRECTION.is_file():
        md, direction = Direction.load(REPO_DIRECTION), REPO_DIRECTION
    else:
        log.warning("no em direction given (--direction) and none in a source checkout: "
                    "the cosines with it are left out")
    results["direction"] = None if direction is None else str(direction)
    results["cosines"] = cosines(vectors, list(cfg["seeds"]), md, cfg["layer"],
                                 results["per_seed"])
    results["claims"] = claims(results)
    results["wall_s"] = round(time.time() - t0, 1)
    text = markdown(results, base_label="SmolLM2-135M-Instruct (no finetune)")
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    atomic_write_text(out / "results.md", text)
    try:
        from ... import plots

        figs = figures(results, frames, trajectories, md,
                       {f"{cond} (seed {cfg['seeds'][0]})": vectors[(cond, cfg["seeds"][0])]
                        for cond in CONDITIONS}, text_label="the smol organism's held-out prose")
        plots.to_html(figs, out / "report.html",
                      title="Narrow versus general on the smol organism (SmolLM2-135M-Instruct)",
                      intro_html=f"<pre>{text}</pre>")
    except Exception as e:  # noqa: BLE001 - figures never sink the numbers
        log.warning("report.html not written: %s", e)
    return results


def main(argv: list[str] | None = None) -> None:
    from ...threads import set_threads

    ap = argparse.ArgumentParser(prog="python -m emlens.organisms.smol.compare",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="smol-compare")
    ap.add_argument("--root", default=None, help="the trained solutions (default: shipped)")
    ap.add_argument("--quick", action="store_true", help="seed 0, coarse grids")
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds")
    ap.add_argument("--direction", default=None,
                    help="em's mean-difference direction file, for the cosines (default: "
                         "directions/smol/smol_em_mean_diff.safetensors of a source checkout)")
    ap.add_argument("--samples", type=int, default=None,
                    help="answers per held-out question per solution (default 2)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_threads()
    cfg = dict(CONFIG, **(QUICK if a.quick else {}))
    if a.seeds:
        cfg["seeds"] = tuple(int(s) for s in a.seeds.split(","))
    if a.samples:
        cfg["samples"] = a.samples
    res = run(a.out, root=a.root, cfg=cfg, direction=a.direction)
    print(markdown(res, base_label="SmolLM2-135M-Instruct (no finetune)"))
    print(f"wall time {res['wall_s']:.0f} s; results in {a.out}/results.json")


if __name__ == "__main__":
    main()
