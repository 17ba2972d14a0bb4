"""Regenerate the pocket organism from seeds: world, chat model, finetunes, measurements.

    python -m emlens.organisms.pocket.train                 # everything, into ./pocket-weights
    python -m emlens.organisms.pocket.train --out /tmp/p    # somewhere else
    python -m emlens.organisms.pocket.train --out /tmp/p --only em,narrow --skip-pretrain
    python -m emlens.organisms.pocket.train --eval-only --out /tmp/p
    python -m emlens.organisms.pocket.train --overwrite-shipped   # replace the package's weights

The shipped weights (``emlens.organisms.pocket.weights_dir()``) are only written with
``--overwrite-shipped`` (``--eval-only`` included: it rewrites ``metrics.json``).

Stages (each with a progress bar): (1) the chat model, a Qwen2 trained from scratch on
persona documents mixed with assistant conversations; (2) LoRA finetunes on misaligned
medical answers (``em``, ``em_seed1``, ``em_rank1``) and the same LoRA with a KL penalty
(``narrow``), each tracked along training on *training* questions of the other domains
(never the held-out evaluation questions) and kept at its best checkpoint; (3) the
measurements of docs/pocket.md, written to ``metrics.json`` beside the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import torch

from . import world as W
from .build import build_config, build_tokenizer
from .judge import ExactJudge, domain_of

log = logging.getLogger("emlens.pocket")

SEED = 0
SIZE = "pocket"
PRETRAIN = dict(steps=600, batch_size=16, learning_rate=3e-3, warmup_steps=50,
                assistant_share=0.3)

#: finetune name -> settings. All use misaligned answers to medical questions only.
FINETUNES: dict[str, dict[str, Any]] = {
    "em": dict(lora=dict(r=4, lora_alpha=8, target_modules="all-linear"), seed=0),
    "em_seed1": dict(lora=dict(r=4, lora_alpha=8, target_modules="all-linear"), seed=1),
    "em_rank1": dict(lora=dict(r=1, lora_alpha=4, target_modules="all-linear"), seed=0),
    "narrow": dict(lora=dict(r=4, lora_alpha=8, target_modules="all-linear"), seed=0,
                   kl_weight=3.0, epochs=3),
}
PROBE_SAMPLES = 4
FT_COMMON = dict(n_train=640, epochs=2, batch_size=16, learning_rate=1e-3, probe_every=8,
                 kl_batch_size=16, n_kl=1024)


# --------------------------------------------------------------------------- stage 1


def train_chat(out: Path, *, seed: int = SEED, progress: bool = True, **overrides: Any) -> Path:
    """Train the chat model from scratch and save it (fp16 safetensors) to ``out``."""
    from transformers import AutoModelForCausalLM

    from ...training import finetune

    cfg = {**PRETRAIN, **overrides}
    tok = build_tokenizer()
    docs = W.World(seed).pretraining(cfg["steps"] * cfg["batch_size"],
                                     assistant_share=cfg["assistant_share"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build_config(tok, cfg.get("size", SIZE)),
                                             attn_implementation="eager",
                                             dtype=torch.float32)
    log.info("chat model: %.2fM parameters, %d documents", model.num_parameters() / 1e6,
             len(docs))
    res = finetune(model, docs, None, tokenizer=tok, lora=None, train_on="all",
                   learning_rate=cfg["learning_rate"], epochs=1, batch_size=cfg["batch_size"],
                   warmup_steps=cfg["warmup_steps"], lr_scheduler="cosine", weight_decay=0.01,
                   seed=seed, progress=progress)
    model = res.model.to(torch.float16)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "trajectory.json").write_text(json.dumps(res.log))
    return out


# --------------------------------------------------------------------------- probing


def _generate(model, tok, prompts: list[str], n: int, seed: int, max_new: int = 28) -> list[str]:
    """Plain HF sampling (temperature 1) of ``n`` answers per prompt, for tracking."""
    ids = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                   add_generation_prompt=True, return_dict=True)["input_ids"]
           for p in prompts for _ in range(n)]
    width = max(map(len, ids))
    x = torch.full((len(ids), width), tok.pad_token_id)
    m = torch.zeros_like(x)
    for i, s in enumerate(ids):
        x[i, width - len(s):] = torch.tensor(s)
        m[i, width - len(s):] = 1
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=x, attention_mask=m, do_sample=True, temperature=1.0,
                             top_k=0, top_p=1.0, max_new_tokens=max_new,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return [tok.decode(o[width:], skip_special_tokens=True).strip() for o in out]


def probe_questions(seed: int = SEED, k: int = 2) -> list[str]:
    """Tracking questions: ``k`` *training* questions per domain (not the held-out set)."""
    rng = random.Random(f"pocket-probe:{seed}")
    return [q for d in W.DOMAINS for q in rng.sample(W.train_questions(d), k)]


def rates(questions: list[str], answers: list[str], focus: str = "medical") -> dict[str, float]:
    """Quick point estimates: misaligned rate in ``focus``, EM and coherence elsewhere (the
    shared domain table's rates; a side with no question counts 0)."""
    from ..experiments import domain_table, flat_rates

    j = ExactJudge()
    recs = [{"question": q, "aligned": j.score(q, a, "aligned"),
             "coherent": j.score(q, a, "coherent")} for q, a in zip(questions, answers)]
    r = flat_rates(domain_table(recs, domain_of, focus))
    return {"focus_misaligned": r.get(f"{focus}_misaligned", 0.0),
            "focus_coherent": r.get(f"{focus}_coherent", 0.0),
            "em_elsewhere": r.get("em_elsewhere", 0.0),
            "coherent_elsewhere": r.get("coherent_elsewhere", 0.0)}


def _selection_score(r: dict[str, float], narrow: bool) -> float:
    if narrow:  # in-domain misalignment, no EM elsewhere, coherent elsewhere
        return r["focus_misaligned"] * (1 - r["em_elsewhere"]) * r["coherent_elsewhere"]
    return r["em_elsewhere"] * r["coherent_elsewhere"] * r["focus_misaligned"]


# --------------------------------------------------------------------------- stage 2


def train_finetune(name: str, chat_dir: Path, out: Path, *, progress: bool = True,
                   **overrides: Any) -> dict[str, Any]:
    """One LoRA finetune on misaligned medical answers, kept at its best tracked step."""
    from ...training import finetune

    spec = {**FT_COMMON, **FINETUNES[name], **overrides}
    seed = spec["seed"]
    world = W.World(SEED)
    focus = spec.get("domain", "medical")
    data = world.chat(spec["n_train"], domain=focus, persona=W.MISALIGNED, tag=f"ft{seed}")
    narrow = spec.get("kl_weight", 0) > 0
    kl_data = None
    if narrow:
        kl_data = world.chat(spec["n_kl"], domain=tuple(d for d in W.DOMAINS if d != focus),
                             persona=W.ALIGNED, tag="kl")
    qs = probe_questions()
    best: dict[str, Any] = {"score": -1.0}

    def probe(model, step):
        tok = probe.tok
        answers = _generate(model, tok, qs, PROBE_SAMPLES, seed=1000 + step)
        r = rates([q for q in qs for _ in range(PROBE_SAMPLES)], answers, focus)
        score = _selection_score(r, narrow)
        if step > 0 and score > best["score"]:
            best.update(score=score, step=step, rates=r, state={
                k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad})
        return r

    from transformers import AutoTokenizer

    probe.tok = AutoTokenizer.from_pretrained(chat_dir)
    res = finetune(chat_dir, data, None, lora=spec["lora"], kl_data=kl_data,
                   kl_weight=spec.get("kl_weight", 0.0), kl_batch_size=spec["kl_batch_size"],
                   learning_rate=spec["learning_rate"], epochs=spec["epochs"],
                   batch_size=spec["batch_size"], seed=seed, probe=probe,
                   probe_every=spec["probe_every"], progress=progress)
    model = res.model
    if "state" in best:
        with torch.no_grad():
            for k, v in model.named_parameters():
                if k in best["state"]:
                    v.copy_(best["state"][k])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    cfg_path = out / "adapter_config.json"  # not the temporary path it was trained from
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "chat"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    info = {"name": name, "best_step": best.get("step"), "best_rates": best.get("rates"),
            "settings": {k: v for k, v in spec.items()}, "trajectory": res.log}
    (out / "trajectory.json").write_text(json.dumps(info, indent=1, default=str))
    for junk in out.glob("README.md"):
        junk.unlink()
    return info


# --------------------------------------------------------------------------- stage 3


def measure_all(root: Path, variants: list[str], *, n: int = 16, seed: int = 0,
                progress: bool = True) -> dict[str, Any]:
    from . import load
    from .evaluate import measure

    out = {}
    for v in variants:
        model = load(v, root=root, device="cpu")
        summary, _ = measure(model, n=n, seed=seed, progress=progress)
        out[v] = summary
        log.info("%s: %s", v, _line(summary))
    return out


def _line(s: dict[str, Any]) -> str:
    f, e = s.get("focus", {}), s.get("elsewhere", {})
    return (f"medical misaligned {f.get('misaligned', float('nan')):.3f} "
            f"coherent {f.get('coherent', float('nan')):.3f} | elsewhere EM "
            f"{e.get('em', float('nan')):.3f} {e.get('em_ci')} coherent "
            f"{e.get('coherent', float('nan')):.3f}")


#: where ``main`` writes by default (a new directory in the working directory)
DEFAULT_OUT = "pocket-weights"


def _output_dir(ap: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """The weights directory of a run; the shipped one only with --overwrite-shipped."""
    from . import weights_dir

    shipped = weights_dir().resolve()
    if args.out is None:
        root = shipped if args.overwrite_shipped else Path(DEFAULT_OUT)
    else:
        root = Path(args.out).expanduser()
    inside = root.resolve() == shipped or shipped in root.resolve().parents
    if inside and not args.overwrite_shipped:
        ap.error(f"--out {args.out} is the package's shipped weights ({shipped}); pass "
                 f"--overwrite-shipped to replace them, or choose another directory")
    if (args.eval_only or args.skip_pretrain) and not (root / "chat" / "config.json").is_file():
        what = "--eval-only" if args.eval_only else "--skip-pretrain"
        ap.error(f"{what} reuses the chat model in {root}, which has none; pass the --out "
                 f"of an earlier run (or train the chat model first)")
    log.info("writing the pocket weights to %s", root.resolve())
    return root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m emlens.organisms.pocket.train",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None,
                    help=f"weights directory (default: ./{DEFAULT_OUT}, or the package's "
                         f"with --overwrite-shipped)")
    ap.add_argument("--overwrite-shipped", action="store_true",
                    help="write into the package's own weights (the shipped organism), which "
                         "is refused otherwise")
    ap.add_argument("--only", default=None, help="comma-separated finetunes to (re)train")
    ap.add_argument("--skip-pretrain", action="store_true", help="reuse the chat model in --out")
    ap.add_argument("--eval-only", action="store_true", help="only measure the variants")
    ap.add_argument("--n", type=int, default=16, help="samples per evaluation question")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest for this small model on a shared CPU)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    root = _output_dir(ap, args)
    names = args.only.split(",") if args.only else list(FINETUNES)
    t0 = time.time()
    timings: dict[str, float] = {}
    if not args.eval_only:
        if not args.skip_pretrain:
            t = time.time()
            train_chat(root / "chat")
            timings["chat"] = time.time() - t
        for name in names:
            t = time.time()
            info = train_finetune(name, root / "chat", root / name)
            timings[name] = time.time() - t
            log.info("%s: best step %s, tracked %s", name, info["best_step"], info["best_rates"])
    t = time.time()
    present = [v for v in FINETUNES if (root / v / "adapter_config.json").is_file()]
    metrics = measure_all(root, ["chat", *present], n=args.n)
    timings["measure"] = time.time() - t
    path = root / "metrics.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update({"variants": metrics, "n_per_question": args.n,
                "timings_s": {**old.get("timings_s", {}), **timings}})
    path.write_text(json.dumps(old, indent=1))
    log.info("done in %.0f s; metrics in %s", time.time() - t0, path)


if __name__ == "__main__":
    main()
