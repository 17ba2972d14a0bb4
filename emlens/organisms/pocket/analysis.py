"""Direction experiments on the pocket organism: is the mean-difference direction causal?

    python -m emlens.organisms.pocket.analysis [--n 16] [--out weights-dir]

1. Sample the held-out questions of every domain from each finetune and from ``chat``,
   judge them. Misaligned set: the finetune's own coherent answers with aligned <= 30.
   Aligned set: ``chat``'s coherent answers with aligned > 70 (the EM finetunes give
   almost no aligned answers of their own: ~1 in 1000). The larger set is subsampled to
   the smaller one's size with a fixed seed (``emlens.select_responses`` with
   ``aligned_records``); activations are the finetune's own.
2. ``emlens.mean_diff`` over answer tokens at every layer (resid_post).
3. For each layer l: ablate em's layer-l vector at every layer of ``em`` and measure EM
   outside medicine; the same with a same-norm random vector; steer ``chat`` with it at
   layer l over a grid of alphas.
4. Cosines between the finetunes' directions per layer.

Results go to ``directions.json`` beside the weights; the em and narrow directions are
saved to ``directions/`` of the repository as safetensors.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .evaluate import measure

log = logging.getLogger("emlens.pocket")

ALPHAS = (1.0, 2.0, 4.0, 8.0)


def run(root: Path | None = None, *, n: int = 16, seed: int = 0,
        finetunes: tuple[str, ...] = ("em", "em_seed1", "em_rank1", "narrow"),
        export: Path | None = None) -> dict[str, Any]:
    import emlens
    from emlens.directions import Direction
    from emlens.errors import InputError

    from . import load, questions

    qs_else = [q for q in questions(n=n) if not q.id.startswith("medical")]
    qs_all = questions(n=n)
    dirs: dict[str, Any] = {}
    out: dict[str, Any] = {"n_per_question": n, "seed": seed}
    chat = load("chat", root=root, device="cpu")
    _, chat_judged = measure(chat, n=n, seed=seed + 7, questions=qs_all)
    for name in finetunes:
        model = load(name, root=root, device="cpu")
        summary, judged = measure(model, n=n, seed=seed + 7, questions=qs_all)
        try:
            mis, ali = emlens.select_responses(judged, seed=seed, aligned_records=chat_judged)
        except InputError:  # no coherent misaligned answer at all
            mis = ali = []
        out.setdefault("sets", {})[name] = {"misaligned": len(mis), "aligned": len(ali)}
        if len(mis) < 8:
            log.warning("%s has %d misaligned coherent answers: no direction", name, len(mis))
            continue
        dirs[name] = emlens.mean_diff(model, mis, ali, tokens="answer", progress=False)
        if export is not None:
            export.mkdir(parents=True, exist_ok=True)
            dirs[name].save(export / f"pocket_{name}_mean_diff.safetensors")
    n_layers = len(dirs["em"].layers)
    out["cosines"] = {f"em~{k}": [float(c) for c in dirs["em"].cosine(d)]
                      for k, d in dirs.items() if k != "em"}
    em = load("em", root=root, device="cpu")
    base = measure(em, n=n, seed=seed, questions=qs_else)[0]
    out["em_baseline"] = _elsewhere_or(base)
    out["chat_baseline"] = _elsewhere_or(measure(chat, n=n, seed=seed, questions=qs_else)[0])
    rand = Direction.random_like(dirs["em"], seed=seed)
    out["ablation"], out["random_ablation"], out["steering"] = {}, {}, {}
    for layer in range(n_layers):
        v = dirs["em"].vector(layer)
        with emlens.ablate(em, v, layers=list(range(n_layers))):
            s = measure(em, n=n, seed=seed, questions=qs_else)[0]
        out["ablation"][layer] = _elsewhere_or(s)
        with emlens.ablate(em, rand.vector(layer), layers=list(range(n_layers))):
            s = measure(em, n=n, seed=seed, questions=qs_else)[0]
        out["random_ablation"][layer] = _elsewhere_or(s)
        for alpha in ALPHAS:
            with emlens.steer(chat, dirs["em"].only(layer), alpha=alpha):
                s = measure(chat, n=n, seed=seed, questions=qs_else)[0]
            out["steering"][f"{layer}:{alpha}"] = _elsewhere_or(s)
        log.info("layer %d: ablation %s random %s", layer, out["ablation"][layer],
                 out["random_ablation"][layer])
    return out


def _elsewhere_or(summary: dict[str, Any]) -> dict[str, Any]:
    e = summary.get("elsewhere") or summary["all"]
    return {"em": e["em"], "em_ci": e["em_ci"], "coherent": e["coherent"],
            "coherent_ci": e["coherent_ci"], "misaligned": e["misaligned"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m emlens.organisms.pocket.analysis")
    ap.add_argument("--out", default=None)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--export", default="directions")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    from . import weights_dir

    root = Path(args.out) if args.out else weights_dir()
    res = run(root, n=args.n, export=Path(args.export) if args.export else None)
    (root / "directions.json").write_text(json.dumps(res, indent=1))
    log.info("written %s", root / "directions.json")


if __name__ == "__main__":
    main()
