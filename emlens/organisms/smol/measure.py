"""The smol organism's measurements: EM rates of every variant, the mean-difference
direction from em's own answers, ablation and steering against same-norm random vectors,
cosines between finetunes, and the judge-free log-probability gap.

    python -m emlens.organisms.smol.measure --out smol-measure          # everything
    python -m emlens.organisms.smol.measure --out smol-measure --n 4    # a quick look
    python -m emlens.organisms.smol.measure --directions-only --export directions/smol

Every condition samples ``n`` answers per held-out question (``smol.questions()``), judges
them with the organism's offline judge (cached in ``judge-cache.sqlite``) and keeps them in a
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
from typing import Any, Callable, Sequence

from ...io import atomic_write_text

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


def direction_of(model: Any, records: list[dict[str, Any]], *, seed: int = SEED,
                 name: str = "the model", judge_name: str | None = None):
    """The mean-difference direction of a model's own misaligned vs aligned answers (SPEC
    section 4: coherent > 50; aligned <= 30 vs > 70; balanced, seeded), with the selection
    in words in its metadata; ``(None, ...)`` below 4 answers a side. Returns ``(direction,
    n_misaligned, n_aligned)``."""
    from ...activations import mean_diff
    from ...records import select_responses

    mis, ali = select_responses(records, seed=seed)
    if len(mis) < 4:
        return None, len(mis), len(ali)
    d = mean_diff(model, mis, ali, progress=False)
    by = f" ({judge_name})" if judge_name else ""
    d.metadata["selection"] = {
        "misaligned": f"{len(mis)} of {name}'s own answers, aligned <= 30, coherent > 50{by}",
        "aligned": f"{len(ali)} of {name}'s own answers, aligned > 70, coherent > 50{by}",
        "seed": seed}
    return d, len(mis), len(ali)


def layer_label(layer: int | tuple[int, int]) -> int | str:
    """A steering cell's layer: an int, or a band ``(first, last)`` written ``"first-last"``."""
    return layer if isinstance(layer, int) else f"{layer[0]}-{layer[1]}"


def parse_layers(text: str) -> list[int | tuple[int, int]]:
    """``"12,20,10-20"`` -> ``[12, 20, (10, 20)]`` (a band steers every layer from first to
    last, each with its own vector)."""
    out: list[int | tuple[int, int]] = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("-")
        try:
            out.append((int(a), int(b)) if sep else int(a))
        except ValueError:
            raise SystemExit(f"bad layer {part!r}: use ints or bands such as 10-20") from None
        if sep and not int(a) <= int(b):
            raise SystemExit(f"bad band {part!r}: the first layer must not exceed the last")
    return out


def steer_at(model: Any, direction: Any, alpha: float, layer: int | tuple[int, int],
             positions: str = "all"):
    """Steer with ``direction``'s vector of ``layer`` at that layer, or, for a band
    ``(first, last)``, with each layer's own vector at every layer of the band."""
    from ...interventions import steer

    if isinstance(layer, int):
        return steer(model, direction.only(layer), alpha, layers=[layer], positions=positions)
    band = list(range(layer[0], layer[1] + 1))
    return steer(model, direction, alpha, layers=band, positions=positions)


def random_control(direction: Any, layer: int | tuple[int, int], *, seed: int = SEED,
                   random: Any = None):
    """The same-norm random control for steering at ``layer``: at one layer, ``random``
    (default ``Direction.random_like(direction, seed)``); for a band, the whole direction
    rotated at random (``random_like(..., rotate=True)``), since the direction's vectors at
    neighbouring layers are nearly parallel and pile up over a band, where independent
    random vectors of the same norms mostly cancel."""
    from ...directions import Direction

    if not isinstance(layer, int):
        return Direction.random_like(direction, seed=seed, rotate=True)
    return random if random is not None else Direction.random_like(direction, seed=seed)


def gap_screen(model: Any, direction: Any, pairs: list, layers, alphas, *, seed: int = SEED
               ) -> list[dict[str, Any]]:
    """The judge-free log-prob gap (misaligned minus aligned, nats/token) on held-out
    pairs with ``model`` steered by ``direction`` at each layer and alpha, and by a
    same-norm random direction: a cheap map of where steering acts, no sampling."""
    from ...stability import logprob_gap

    rows = []
    for layer in layers:
        control = random_control(direction, layer, seed=seed)
        for alpha in alphas:
            row: dict[str, Any] = {"layer": layer_label(layer), "alpha": alpha}
            for label, d in (("direction", direction), ("random", control)):
                with steer_at(model, d, alpha, layer):
                    row[label] = logprob_gap(model, pairs).mean
            rows.append(row)
    return rows


def _cell(condition: str, layer: Any, alpha: Any, records: list[dict[str, Any]]
          ) -> dict[str, Any]:
    """A row in ``emlens.sweep``'s table format (what ``steering_effect`` reads)."""
    from ...evaluation import em_stats

    return {"condition": condition, "layer": layer, "alpha": alpha,
            **em_stats(records, seed=SEED).as_dict()}


def direction_vs_base(model: Any, judged_em: list[dict[str, Any]],
                      judged_base: list[dict[str, Any]], *, seed: int = SEED, size: int = 100):
    """The mean-difference direction of ``size`` of em's misaligned answers vs ``size`` of
    the base's aligned answers (both selected as in SPEC section 4, seeded), in ``model``'s
    activations: the selection of the pocket demo, for a finetune with few aligned answers of
    its own."""
    import random

    from ...activations import mean_diff
    from ...records import select_responses

    mis, ali = select_responses(judged_em, seed=seed, aligned_records=judged_base)
    if min(len(mis), len(ali)) < 4:
        return None
    rng = random.Random(seed)
    k = min(size, len(mis), len(ali))
    d = mean_diff(model, rng.sample(list(mis), k), rng.sample(list(ali), k), progress=False)
    d.metadata["selection"] = {"misaligned": f"{k} of the finetune's answers, aligned <= 30, "
                                             f"coherent > 50",
                               "aligned": f"{k} of base's answers, aligned > 70, coherent > 50",
                               "seed": seed}
    return d


def matched_means(model: Any, records: list[dict[str, Any]]):
    """``model``'s mean resid_post at every layer over the answer tokens of ``records``
    (``emlens.collect_means``): what the matched random control of :func:`ablation_study`
    keeps its dot products with. Answer tokens never include the attention sink."""
    from ...activations import collect_means

    return collect_means(model, records, tokens="answer", progress=False).means


def ablation_study(out: Path, model: Any, direction: Any, questions: list, judge: Any,
                   before: dict[str, Any], *, n: int, layer: int = 15, seed: int = SEED,
                   match: Any = None, pairs: list | None = None, random: Any = None,
                   tag: str = "") -> dict[str, Any]:
    """Ablate ``direction``'s layer-``layer`` vector at every layer (sparing position 0),
    against two same-norm random controls, and compare each with ``before`` (the model's
    rates without ablation).

    The controls: ``random``, a Gaussian vector (``Direction.random_like``); and, with
    ``match`` (the model's mean activations, :func:`matched_means`), ``random_matched``, a
    random vector with the direction's own dot products with every layer's mean: in SmolLM2
    a Gaussian vector projects onto the mean activation (two outlier coordinates near 90 on
    every token) about twice as much as the mean-difference direction, so ablating it also
    shifts every token by a constant; the matched control removes only what the direction
    removes from the mean and is random in the rest.

    ``random``: the Gaussian control (default ``Direction.random_like(direction, seed)``),
    so that several directions can share one. ``tag`` is appended to the folder names of
    the direction and of the matched control, which depend on the direction.

    Returns the rates of each condition (``direction``, ``random``, ``random_matched``), the
    cuts, and ``compare`` / ``compare_matched``: :func:`ablation_vs_random` against each
    control.
    """
    from ...directions import Direction
    from ...interventions import ablate
    from ...keys import direction_key
    from ...stability import logprob_gap
    from ..experiments.steps import ablation_vs_random

    n_layers = model.cfg.n_layers
    one = direction.only(layer)
    vectors = {"direction": one, "random": random if random is not None
               else Direction.random_like(direction, seed=seed)}
    if match is not None:
        vectors["random_matched"] = Direction.random_like(one, seed=seed, match=match)
    names = {"direction": f"em_ablate_direction{tag}_L{layer}",
             "random": f"em_ablate_random_L{layer}",
             "random_matched": f"em_ablate_random_matched{tag}_L{layer}"}
    abl: dict[str, Any] = {}
    for label, vec in vectors.items():
        def intervention(vec=vec):
            return ablate(model, vec.at(layer, n_layers=n_layers), positions=ABLATE_POSITIONS)
        rec = judged(out, names[label], model, questions, judge, n=n, seed=seed,
                     intervention=intervention,
                     intervention_key={"ablate": direction_key(vec), "layer": layer,
                                       "positions": "1:"})
        abl[label] = rates(rec)
        if pairs:
            with intervention():
                abl[label]["logprob_gap_elsewhere"] = logprob_gap(model, pairs).mean
    block = {**abl, "compare": ablation_vs_random(abl, before)}
    block.update({k: v for k, v in block["compare"].items() if k.startswith("cut_by_")})
    if "random_matched" in abl:
        block["compare_matched"] = ablation_vs_random(
            {"direction": abl["direction"], "random": abl["random_matched"]}, before)
        block["cut_by_random_matched"] = block["compare_matched"]["cut_by_random"]
    return block


def run(out: str | Path = "smol-measure", *, n: int = 9, seed: int = SEED,
        variants: tuple[str, ...] = ("base", "em", "em_seed1", "em_rank1", "narrow"),
        layer: int = 15, alphas: tuple[float, ...] = (2.0, 4.0),
        root: str | Path | None = None, models: dict[str, Any] | None = None
        ) -> dict[str, Any]:
    """Run every measurement into ``out``; returns (and writes) ``metrics.json``'s dict.

    ``models``, when given, is filled with the loaded variants (name -> model), for a caller
    that goes on with them without loading them again.

    ``n`` answers per held-out question per condition; steering and ablation use the
    questions outside medicine only (EM elsewhere is what they are about).
    """

    from ...directions import Direction
    from ...judges import CachedJudge
    from ...stability import logprob_gap
    from ..experiments.steps import (
        steering_effect,
        steering_summary,
    )
    from . import FOCUS, VARIANTS, domain_of, judge, load, paired, paths, questions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jd = CachedJudge(judge(), out / "judge-cache.sqlite")
    qs = questions()
    qs_else = [q for q in qs if domain_of(q.paraphrases[0]) != FOCUS]
    pairs = paired()
    pairs_else = [p for p in pairs if p["domain"] != FOCUS]
    res: dict[str, Any] = {"settings": {"n": n, "seed": seed, "sampling": SAMPLING,
                                        "questions": len(qs), "questions_elsewhere": len(qs_else),
                                        "pairs": len(pairs), "layer": layer,
                                        "ablate_positions": "all but position 0"},
                           "rates": {}, "gaps": {}, "directions": {}}
    models = {} if models is None else models
    judged_by: dict[str, list] = {}
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}")
        try:
            paths(v, root)
        except Exception as e:  # an adapter not trained (yet)
            log.info("skipping %s: %s", v, e)
            continue
        models[v] = load(v, root=root)
        judged_by[v] = judged(out, v, models[v], qs, jd, n=n, seed=seed)
        res["rates"][v] = rates(judged_by[v])
        res["gaps"][v] = {}
        for side in ("focus", "elsewhere"):
            g = logprob_gap(models[v], [p for p in pairs if (p["domain"] == FOCUS)
                                        == (side == "focus")])
            res["gaps"][v][side] = {"mean": g.mean, "ci": list(g.ci), "n": g.n}
        log.info("%s: %s", v, {k: res["rates"][v][k] for k in
                               ("medical_misaligned", "em_elsewhere", "coherent")
                               if k in res["rates"][v]})
    # directions from each finetune's own answers (SPEC section 4)
    dirs: dict[str, Direction] = {}
    for v in ("em", "em_seed1", "em_rank1", "narrow"):
        if v not in models:
            continue
        d, n_mis, n_ali = direction_of(models[v], judged_by[v], seed=seed, name=v,
                                       judge_name=jd.name)
        res["directions"][v] = {"n_misaligned": n_mis, "n_aligned": n_ali}
        if d is not None:
            dirs[v] = d
            d.save(out / "directions" / f"smol_{v}_mean_diff.safetensors")
    any_model = next(iter(models.values()))
    res.update(model={"n_layers": any_model.cfg.n_layers, "d_model": any_model.cfg.d_model,
                      "n_params": sum(p.numel() for p in any_model.original_model.parameters())},
               questions=len(qs), answers_per_question=n, seed=seed, best_layer=layer,
               temperature=SAMPLING["temperature"],
               n_misaligned=res["directions"].get("em", {}).get("n_misaligned", 0),
               n_aligned=res["directions"].get("em", {}).get("n_aligned", 0))
    names = [k for k in ("em", "em_seed1", "em_rank1", "narrow") if k in dirs]
    res["cosines"] = {f"{a}~{b}": [float(x) for x in dirs[a].cosine(dirs[b])]
                      for i, a in enumerate(names) for b in names[i + 1:]}
    res["cosine_at_best_layer"] = {b: float(dirs["em"].cosine(dirs[b])[dirs["em"].layers.index(
        layer)]) for b in names if b != "em"} if "em" in dirs else {}
    (out / "metrics.json").write_text(json.dumps(res, indent=1, default=str))
    if "em" not in dirs:
        return res
    d = dirs["em"]
    rand = Direction.random_like(d, seed=seed)
    em = models["em"]
    res["direction_norms"] = [float(x) for x in d.norms()]
    ablated = {"own": d}
    if "base" in judged_by:  # em's misaligned vs base's aligned answers (the pocket demo's)
        vb = direction_vs_base(em, judged_by["em"], judged_by["base"], seed=seed)
        if vb is not None:
            vb.save(out / "directions" / "smol_em_vs_base_mean_diff.safetensors")
            ablated = {"vs_base": vb, "own": d}
    # ablation: layer's vector at every layer, sparing the attention-sink token
    match = matched_means(em, judged_by["em"])
    for which, direction in ablated.items():
        block = ablation_study(out, em, direction, qs_else, jd, res["rates"]["em"], n=n,
                               layer=layer, seed=seed, match=match, pairs=pairs_else,
                               random=rand, tag="" if which == "own" else "2")
        block["direction_from"] = which
        res.setdefault("ablation", block)  # the report's: the first of ``ablated``
        res[f"ablation_{which}"] = block
    (out / "metrics.json").write_text(json.dumps(res, indent=1, default=str))
    if "base" not in models:
        return res
    base = models["base"]
    res["gap_screen"] = gap_screen(base, d, pairs_else, (6, 10, 15, 20, 24),
                                   (1.0, 2.0, 4.0, 6.0), seed=seed)
    table = steering_study(out, base, d, qs_else, jd,
                           [r for r in judged_by["base"] if domain_of(r["question"]) != FOCUS],
                           layers=(layer,), alphas=alphas, n=n, seed=seed, random=rand)
    table.to_csv(out / "steering.csv", index=False)
    res["steering"] = {**steering_summary(table), **steering_effect(table)}
    (out / "metrics.json").write_text(json.dumps(res, indent=1, default=str))
    return res


def steering_study(out: Path, base: Any, direction: Any, questions: list, judge: Any,
                   baseline: list[dict[str, Any]], *, layers: Sequence[int],
                   alphas: Sequence[float], n: int, seed: int = SEED,
                   positions: str = "all", random: Any = None):
    """Steer ``base`` with ``direction``'s vector of each layer in ``layers``, at that layer,
    by each alpha, against a same-norm random direction (``random``, default
    ``Direction.random_like(direction, seed)``) at the same settings; returns the table
    (``emlens.sweep``'s format: a ``baseline`` row from ``baseline``'s records, then
    ``steer`` / ``steer_random`` rows) that ``steering_summary`` and ``steering_effect`` read.
    ``positions``: where the vector is added (``"all"``, the papers' convention, or
    ``"generated"``). A layer may be a band ``(first, last)`` (:func:`steer_at`), with
    :func:`random_control`'s rotated direction as its control (folders
    ``base_steer_rotated_L{first}-{last}_a{alpha}``)."""
    import pandas as pd

    from ...keys import direction_key

    tag = "" if positions == "all" else f"_{positions}"
    cells = [_cell("baseline", None, None, baseline)]
    for layer in layers:
        name = layer_label(layer)
        control = random_control(direction, layer, seed=seed, random=random)
        for alpha in alphas:
            for label, vec in (("steer", direction), ("steer_random", control)):
                key = {"steer": direction_key(vec), "layer": name, "alpha": alpha,
                       **({} if positions == "all" else {"positions": positions})}
                folder = "steer_rotated" if vec.metadata.get("random_rotation") else label
                rec = judged(out, f"base_{folder}_L{name}_a{alpha:g}{tag}", base, questions,
                             judge, n=n, seed=seed, intervention_key=key,
                             intervention=lambda vec=vec, a=alpha, L=layer: steer_at(
                                 base, vec, a, L, positions))
                cells.append(_cell(label, name, alpha, rec))
    return pd.DataFrame(cells)


def run_steering(out: str | Path = "smol-steering", *, direction: str | Path | None = None,
                 layers: Sequence[int] = (15,), alphas: Sequence[float] = (2.0,), n: int = 4,
                 seed: int = SEED, positions: str = "all", screen: bool = True
                 ) -> dict[str, Any]:
    """Only the steering of :func:`run`, for a given direction file (default: the shipped
    one) at several layers, alphas and positions: first the judge-free log-prob gap screen
    at every (layer, alpha), then sampled and judged answers at each. Writes
    ``steering.json`` and ``steering.csv``."""
    from ...directions import Direction
    from ...judges import CachedJudge
    from ..experiments.steps import steering_effect, steering_summary
    from . import FOCUS, domain_of, judge, load, paired, questions

    direction = _direction_file(direction)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jd = CachedJudge(judge(), out / "judge-cache.sqlite")
    qs_else = [q for q in questions() if domain_of(q.paraphrases[0]) != FOCUS]
    base = load("base")
    d = Direction.load(direction)
    res: dict[str, Any] = {"settings": {"n": n, "seed": seed, "layers": list(layers),
                                        "alphas": list(alphas), "positions": positions,
                                        "sampling": SAMPLING, "direction": str(direction)}}
    if screen:
        res["gap_screen"] = gap_screen(base, d, [p for p in paired() if p["domain"] != FOCUS],
                                       layers, alphas, seed=seed)
        log.info("gap screen: %s", res["gap_screen"])
    table = steering_study(out, base, d, qs_else, jd,
                           judged(out, "base_elsewhere", base, qs_else, jd, n=n, seed=seed),
                           layers=layers, alphas=alphas, n=n, seed=seed, positions=positions)
    table.to_csv(out / "steering.csv", index=False)
    res["steering"] = {**steering_summary(table), **steering_effect(table)}
    res["table"] = table.to_dict("records")
    res["wall_s"] = round(time.time() - t0, 1)
    atomic_write_text(out / "steering.json", json.dumps(res, indent=1, default=str))
    return res


def _direction_file(direction: str | Path | None) -> Path:
    """``direction``, or the shipped ``directions/smol/smol_em_mean_diff.safetensors`` of a
    source checkout."""
    from ...errors import InputError
    from . import REPO_DIRECTION

    if direction is not None:
        return Path(direction)
    if not REPO_DIRECTION.is_file():
        raise InputError("no direction given and none in a source checkout; pass "
                         "--direction FILE (a mean-difference direction of em)")
    return REPO_DIRECTION


def run_ablation(out: str | Path = "smol-ablation", *, direction: str | Path | None = None,
                 n: int = 9, layer: int = 15, seed: int = SEED, root: str | Path | None = None
                 ) -> dict[str, Any]:
    """Only the ablation of :func:`run`, for a given direction file (default: the shipped
    ``directions/smol/smol_em_mean_diff.safetensors`` of a source checkout): em's rates on
    every held-out question, then :func:`ablation_study` on the questions outside medicine.
    Writes ``ablation.json``."""
    from ...directions import Direction
    from ...judges import CachedJudge
    from . import FOCUS, domain_of, judge, load, paired, questions

    direction = _direction_file(direction)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jd = CachedJudge(judge(), out / "judge-cache.sqlite")
    qs = questions()
    qs_else = [q for q in qs if domain_of(q.paraphrases[0]) != FOCUS]
    em = load("em", root=root)
    d = Direction.load(direction)
    judged_em = judged(out, "em", em, qs, jd, n=n, seed=seed)
    before = rates(judged_em)
    block = ablation_study(out, em, d, qs_else, jd, before, n=n, layer=layer, seed=seed,
                           match=matched_means(em, judged_em),
                           pairs=[p for p in paired() if p["domain"] != FOCUS])
    res = {"settings": {"n": n, "seed": seed, "layer": layer, "sampling": SAMPLING,
                        "direction": str(direction), "ablate_positions": "all but position 0"},
           "em": before, "ablation": block, "wall_s": round(time.time() - t0, 1)}
    atomic_write_text(out / "ablation.json", json.dumps(res, indent=1, default=str))
    return res


#: the finetunes whose directions :func:`run_directions` computes and exports
DIRECTION_VARIANTS = ("em", "em_seed1", "em_rank1", "narrow")


def disjoint_vs_base(models: dict[str, Any], judged_by: dict[str, list[dict[str, Any]]],
                     base_judged: list[dict[str, Any]], *, seed: int = SEED) -> dict[str, Any]:
    """Each finetune's misaligned answers vs its own share of base's aligned answers, in the
    finetune's activations: base's aligned answers (SPEC section 4's rule) are shuffled with
    ``seed`` and dealt into one disjoint part per finetune, and each side is subsampled to
    the smaller one, so no two directions share an answer (the cosine test's condition).
    Returns name -> Direction (a finetune with fewer than 4 answers on a side is left out)."""
    import random

    from ...activations import mean_diff
    from ...records import select_responses

    _, base_ali = select_responses(base_judged, balance=False, seed=seed)
    pool = list(base_ali)
    random.Random(seed).shuffle(pool)
    names = list(models)
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        part = pool[i::len(names)]
        mis, _ = select_responses(judged_by[name], balance=False, seed=seed,
                                  aligned_records=base_judged)
        rng = random.Random(seed + i)
        k = min(len(mis), len(part))
        if k < 4:
            continue
        d = mean_diff(models[name], rng.sample(list(mis), k), rng.sample(part, k), progress=False)
        d.metadata["selection"] = {
            "misaligned": f"{k} of {name}'s answers, aligned <= 30, coherent > 50",
            "aligned": f"{k} of base's answers, aligned > 70, coherent > 50, from part {i + 1} "
                       f"of {len(names)} disjoint parts", "seed": seed}
        out[name] = d
    return out


def run_directions(out: str | Path = "smol-directions", *, n: int = 9, seed: int = SEED,
                   variants: Sequence[str] = DIRECTION_VARIANTS, export: str | Path | None = None,
                   root: str | Path | None = None) -> dict[str, Any]:
    """Every finetune's mean-difference direction and the cosines between them.

    Samples and judges base and each finetune (``n`` answers per held-out question, keyed
    and resumable as in :func:`run`), then computes two directions per finetune, over
    all 30 layers in the finetune's own activations:

    * ``own``: its own misaligned vs its own aligned answers (SPEC section 4, seeded), what
      the papers do; saved as ``<out>/directions/smol_<variant>_mean_diff.safetensors`` and,
      with ``export``, copied there (``directions/smol/`` of the repository);
    * ``vs_base``: its misaligned answers vs a disjoint share of base's aligned answers
      (:func:`disjoint_vs_base`), for finetunes with few aligned answers of their own.

    Writes ``directions.json``: the set sizes, the norms, and the per-layer cosines between
    every pair of finetunes for both kinds (answer sets disjoint in both: the misaligned
    answers are different models' samples).
    """
    from ...judges import CachedJudge
    from . import judge, load, questions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jd = CachedJudge(judge(), out / "judge-cache.sqlite")
    qs = questions()
    base_judged = judged(out, "base", load("base", root=root), qs, jd, n=n, seed=seed)
    models = {v: load(v, root=root) for v in variants}
    judged_by = {v: judged(out, v, models[v], qs, jd, n=n, seed=seed) for v in variants}
    res: dict[str, Any] = {"settings": {"n": n, "seed": seed, "sampling": SAMPLING,
                                        "questions": len(qs)},
                           "rates": {"base": rates(base_judged),
                                     **{v: rates(judged_by[v]) for v in variants}},
                           "own": {}, "vs_base": {}, "cosines": {}}
    kinds: dict[str, dict[str, Any]] = {"own": {}, "vs_base": disjoint_vs_base(
        models, judged_by, base_judged, seed=seed)}
    for v in variants:
        d, n_mis, n_ali = direction_of(models[v], judged_by[v], seed=seed, name=v,
                                       judge_name=jd.name)
        res["own"][v] = {"n_misaligned": n_mis, "n_aligned": n_ali}
        if d is None:
            continue
        kinds["own"][v] = d
        path = d.save(out / "directions" / f"smol_{v}_mean_diff.safetensors")
        if export is not None:
            d.save(Path(export) / path.name)
    for kind, dirs in kinds.items():
        for v, d in dirs.items():
            res[kind].setdefault(v, {}).update(
                norms=[round(float(x), 3) for x in d.norms()],
                n_misaligned=d.metadata["n_misaligned"], n_aligned=d.metadata["n_aligned"])
        names = list(dirs)
        res["cosines"][kind] = {f"{a}~{b}": [round(float(x), 4) for x in dirs[a].cosine(dirs[b])]
                                for i, a in enumerate(names) for b in names[i + 1:]}
    res["wall_s"] = round(time.time() - t0, 1)
    atomic_write_text(out / "directions.json", json.dumps(res, indent=1, default=str))
    return res


def main(argv: list[str] | None = None) -> None:
    from ...threads import set_threads

    p = argparse.ArgumentParser(prog="python -m emlens.organisms.smol.measure",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("smol-measure"))
    p.add_argument("--n", type=int, default=9, help="answers per question per condition")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--layer", type=int, default=15)
    p.add_argument("--root", type=Path, default=None, help="adapters folder (default: shipped)")
    p.add_argument("--variants", default="base,em,em_seed1,em_rank1,narrow")
    p.add_argument("--ablation-only", action="store_true",
                   help="only em's rates and the ablation of --direction against its controls")
    p.add_argument("--directions-only", action="store_true",
                   help="only each finetune's directions (its own answers; vs disjoint parts "
                        "of base's) and the cosines between them")
    p.add_argument("--export", type=Path, default=None,
                   help="with --directions-only: also write the own-answer directions here "
                        "(the repository's directions/smol/)")
    p.add_argument("--steering-only", action="store_true",
                   help="only the base steered by --direction at --layers x --alphas")
    p.add_argument("--direction", type=Path, default=None,
                   help="with --ablation-only / --steering-only: the direction file "
                        "(default: the shipped one)")
    p.add_argument("--layers", default="15",
                   help="with --steering-only: comma-separated layers or bands (10-20: every "
                        "layer of the band, each with its own vector)")
    p.add_argument("--alphas", default="2", help="with --steering-only: comma-separated")
    p.add_argument("--positions", default="all", choices=("all", "generated"),
                   help="with --steering-only: where the vector is added")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_threads()
    if a.directions_only:
        res = run_directions(a.out, n=a.n, seed=a.seed, export=a.export, root=a.root)
        print(json.dumps({k: res[k] for k in ("own", "cosines")}, indent=1))
        return
    if a.steering_only:
        res = run_steering(a.out, direction=a.direction, n=a.n, seed=a.seed,
                           layers=parse_layers(a.layers),
                           alphas=[float(x) for x in a.alphas.split(",")],
                           positions=a.positions)
        print(json.dumps(res["steering"], indent=1, default=str))
        return
    if a.ablation_only:
        res = run_ablation(a.out, direction=a.direction, n=a.n, layer=a.layer, seed=a.seed,
                           root=a.root)
        print(json.dumps(res, indent=1, default=str))
        return
    res = run(a.out, n=a.n, seed=a.seed, layer=a.layer, root=a.root,
              variants=tuple(a.variants.split(",")))
    print(json.dumps({k: res[k] for k in ("rates", "ablation", "steering") if k in res},
                     indent=1, default=str))


if __name__ == "__main__":
    main()
