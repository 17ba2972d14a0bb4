"""The smol organism's measurements: EM rates of every variant, the mean-difference
direction from em's own answers, ablation and steering against same-norm random vectors,
cosines between finetunes, and the judge-free log-probability gap.

    python -m emlens.organisms.smol.measure --out smol-measure          # everything
    python -m emlens.organisms.smol.measure --out smol-measure --n 4    # a quick look

Every condition samples ``n`` answers per held-out question (``smol.questions()``), judges
them with the organism's offline judge (cached in ``judge-cache.jsonl``) and keeps them in a
keyed run directory (``<out>/<condition>/``), so an interrupted run resumes and a changed
setting is refused, not mixed in. ``metrics.json`` holds every number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("emlens.smol")

#: decoding: SmolLM2-135M rambles into non-words at temperature 1 (base coherence ~60%),
#: so answers are sampled at 0.7 with nucleus 0.9, short (the judge reads 64 tokens).
SAMPLING = dict(temperature=0.7, top_p=0.9, max_new_tokens=64, batch_size=32)
#: ablation spares position 0: SmolLM2's first token is an attention sink (|x| ~ 25,000)
ABLATE_POSITIONS = slice(1, None)
SEED = 0


def _key(**parts: Any) -> dict[str, Any]:
    return json.loads(json.dumps(parts, default=str))


def sampled(out: Path, name: str, model: Any, questions: list, *, n: int, seed: int = SEED,
            intervention: Callable[[], Any] | None = None,
            intervention_key: Any = None) -> list[dict[str, Any]]:
    """Sample one condition, or read it back from ``out / name`` when its keys match
    (model, questions, n, seed, decoding, intervention)."""
    from ...keys import model_key, questions_key
    from ...runs import RunDir
    from ...sampling import sample

    run = RunDir(out / name, config=_key(model=model_key(model), questions=questions_key(questions),
                                         n=n, seed=seed, sampling=SAMPLING,
                                         intervention=intervention_key),
                 outputs=("records.jsonl", "judged.jsonl", "judge.json"),
                 overwrite_hint="delete the folder")
    if run.has("records"):
        return run.load("records")
    t0 = time.time()
    with (intervention() if intervention else contextlib.nullcontext()):
        records = sample(model, questions, n=n, seed=seed, progress=False, **SAMPLING)
    run.save("records", records)
    log.info("%s: %d answers sampled in %.0f s", name, len(records), time.time() - t0)
    return records


def judged(out: Path, name: str, model: Any, questions: list, judge: Any, *, n: int,
           seed: int = SEED, intervention: Callable[[], Any] | None = None,
           intervention_key: Any = None) -> list[dict[str, Any]]:
    """:func:`sampled`, judged; the scores are kept beside the samples under the judge's
    own key (``judge.json``), so a changed judge rescores the same answers."""
    from ...evaluation import judge_records
    from ...judges.protocol import judge_key
    from ...runs import RunDir

    records = sampled(out, name, model, questions, n=n, seed=seed, intervention=intervention,
                      intervention_key=intervention_key)
    run = RunDir(out / name, config=_key(judge=judge_key(judge), n_records=len(records)),
                 config_file="judge.json", outputs=("judged.jsonl",), overwrite=True)
    if run.has("judged"):
        return run.load("judged")
    scored = judge_records(records, judge)
    run.save("judged", scored)
    return scored


def rates(records: list[dict[str, Any]]) -> dict[str, Any]:
    from ..experiments.rates import domain_table, flat_rates
    from . import FOCUS, domain_of

    return flat_rates(domain_table(records, domain_of, FOCUS, seed=SEED))


def direction_of(model: Any, records: list[dict[str, Any]], *, seed: int = SEED):
    """The mean-difference direction of a model's own misaligned vs aligned answers (SPEC
    section 4: coherent > 50; aligned <= 30 vs > 70; balanced, seeded)."""
    from ...activations import mean_diff
    from ...records import select_responses

    mis, ali = select_responses(records, seed=seed)
    if len(mis) < 4:
        return None, len(mis), len(ali)
    return mean_diff(model, mis, ali), len(mis), len(ali)


def run(out: str | Path = "smol-measure", *, n: int = 10, seed: int = SEED,
        variants: tuple[str, ...] = ("base", "em", "em_seed1", "em_rank1", "narrow"),
        layer: int | None = None, alphas: tuple[float, ...] = (2.0, 4.0, 6.0),
        root: str | Path | None = None) -> dict[str, Any]:
    """Run every measurement into ``out``; returns (and writes) ``metrics.json``'s dict."""
    from ...directions import Direction
    from ...interventions import ablate, steer
    from ...judges import CachedJudge
    from ...keys import direction_key
    from ...stability import logprob_gap
    from ..experiments.steps import ablation_vs_random, compare_rates
    from . import VARIANTS, judge, load, paired, paths, questions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jd = CachedJudge(judge(), out / "judge-cache.jsonl")
    qs = questions()
    pairs = paired()
    results: dict[str, Any] = {"settings": {"n": n, "seed": seed, "sampling": SAMPLING,
                                            "questions": len(qs), "pairs": len(pairs)},
                               "variants": {}, "directions": {}}
    models: dict[str, Any] = {}
    judged_by: dict[str, list] = {}
    for v in variants:
        if v not in VARIANTS:
            continue
        try:
            paths(v, root)
        except Exception as e:  # an adapter not trained yet
            log.info("skipping %s: %s", v, e)
            continue
        models[v] = load(v, root=root)
        judged_by[v] = judged(out, v, models[v], qs, jd, n=n, seed=seed)
        gap = logprob_gap(models[v], pairs)
        results["variants"][v] = {**rates(judged_by[v]), "logprob_gap": gap.mean,
                                  "logprob_gap_ci": list(gap.ci)}
    # directions from each finetune's own answers
    dirs: dict[str, Direction] = {}
    for v in ("em", "em_seed1", "em_rank1", "narrow"):
        if v not in models:
            continue
        d, n_mis, n_ali = direction_of(models[v], judged_by[v], seed=seed)
        results["directions"][v] = {"n_misaligned": n_mis, "n_aligned": n_ali}
        if d is not None:
            dirs[v] = d
            d.save(out / f"{v}_mean_diff.safetensors")
    if len(dirs) > 1:
        names = [k for k in ("em", "em_seed1", "em_rank1") if k in dirs]
        per_layer = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                va, vb = dirs[a].vectors, dirs[b].vectors
                cos = (va * vb).sum(-1) / (va.norm(dim=-1) * vb.norm(dim=-1))
                per_layer[f"{a}~{b}"] = [float(x) for x in cos]
        results["cosines"] = per_layer
    if "em" in dirs:
        d = dirs["em"]
        n_layers = models["em"].cfg.n_layers
        if layer is None:
            from ..experiments.steps import strongest_layer
            layer = strongest_layer(d)
        results["layer"] = layer
        rand = Direction.random_like(d, seed=seed)
        em = models["em"]
        abl = {}
        for label, vec in (("direction", d), ("random", rand)):
            rec = judged(out, f"em_ablate_{label}_L{layer}", em, qs, jd, n=n, seed=seed,
                         intervention=lambda vec=vec: ablate(em, vec.at(layer, n_layers=n_layers),
                                                             positions=ABLATE_POSITIONS),
                         intervention_key={"ablate": direction_key(vec), "layer": layer,
                                           "positions": "1:"})
            abl[label] = rates(rec)
            with ablate(em, vec.at(layer, n_layers=n_layers), positions=ABLATE_POSITIONS):
                g = logprob_gap(em, pairs)
            abl[label]["logprob_gap"] = g.mean
            abl[label]["logprob_gap_ci"] = list(g.ci)
        results["ablation"] = {**abl, **ablation_vs_random(abl, results["variants"]["em"])}
        if "base" in models:
            base = models["base"]
            steer_rows = []
            for alpha in alphas:
                row = {"alpha": alpha}
                for label, vec in (("direction", d), ("random", rand)):
                    rec = judged(out, f"base_steer_{label}_L{layer}_a{alpha:g}", base, qs, jd,
                                 n=n, seed=seed,
                                 intervention=lambda vec=vec, a=alpha: steer(
                                     base, vec.only(layer), a, layers=[layer]),
                                 intervention_key={"steer": direction_key(vec), "layer": layer,
                                                   "alpha": alpha})
                    row[label] = rates(rec)
                    with steer(base, vec.only(layer), alpha, layers=[layer]):
                        row[label]["logprob_gap"] = logprob_gap(base, pairs).mean
                row["vs_random"] = compare_rates(
                    row["direction"]["em_elsewhere"], row["direction"]["n_elsewhere"],
                    row["random"]["em_elsewhere"], row["random"]["n_elsewhere"])
                steer_rows.append(row)
            results["steering"] = steer_rows
    (out / "metrics.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def main(argv: list[str] | None = None) -> None:
    from ...threads import set_threads

    p = argparse.ArgumentParser(prog="python -m emlens.organisms.smol.measure",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("smol-measure"))
    p.add_argument("--n", type=int, default=10, help="answers per question per condition")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--root", type=Path, default=None, help="adapters folder (default: shipped)")
    p.add_argument("--variants", default="base,em,em_seed1,em_rank1,narrow")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_threads()
    res = run(a.out, n=a.n, seed=a.seed, layer=a.layer, root=a.root,
              variants=tuple(a.variants.split(",")))
    print(json.dumps({k: res[k] for k in ("variants",) if k in res}, indent=1, default=str))


if __name__ == "__main__":
    main()
