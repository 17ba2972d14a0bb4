"""The ``emlens`` command.

Subcommands:
    emlens inspect MODEL [--adapter A ...]   load a model and print what it is
    emlens demo [--out DIR]                  the offline demo on a locally built model

A user's mistake (a bad path, an adapter that does not fit, ...) prints one line and
exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import EmlensError

log = logging.getLogger("emlens")


# --------------------------------------------------------------------------- shared helpers


def _load(args: argparse.Namespace):
    from .models import load_model

    return load_model(args.model, adapter=args.adapter or None, revision=args.revision,
                      device=args.device, dtype=args.dtype, merge=not args.no_merge,
                      trust_remote_code=args.trust_remote_code)


def _questions(spec: str):
    from .evaluation import builtin_questions, load_questions

    out = []
    for part in spec.split(","):
        part = part.strip()
        if part in builtin_questions.SETS:
            out += builtin_questions(part)
        elif part.startswith("pocket"):
            from .organisms import pocket

            domains = part.split(":", 1)[1].split("+") if ":" in part else None
            out += pocket.questions(domains=domains)
        else:
            out += load_questions(part)
    return out


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EmlensError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EmlensError(f"expected comma-separated integers, got {text!r}") from None


def _judge(spec: str, cache: str | None, base_url: str | None, api_key_env: str | None):
    """Build a judge from 'openai:MODEL', 'hf:PATH' or 'pocket', cached in ``cache``."""
    from .judges import CachedJudge

    kind, _, arg = spec.partition(":")
    if kind == "openai" and arg:
        from .judges import OpenAIJudge

        kwargs = {"base_url": base_url}
        if api_key_env:
            kwargs["api_key_env"] = api_key_env
        judge = OpenAIJudge(arg, **kwargs)
    elif kind == "hf" and arg:
        from .judges import HFJudge

        judge = HFJudge(arg)
    elif kind == "pocket":
        from .organisms import pocket

        judge = pocket.judge()
    else:
        raise EmlensError(f"unknown judge {spec!r}; use openai:MODEL (with --base-url for vLLM, "
                          f"Ollama, ...), hf:PATH_OR_ID or pocket")
    return CachedJudge(judge, cache) if cache else judge


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="HF hub id or local directory (a PEFT adapter folder works too)")
    p.add_argument("--adapter", action="append", help="PEFT adapter (repeat to stack, in order)")
    p.add_argument("--revision", help="hub revision of the model")
    p.add_argument("--device", help="cpu, cuda, cuda:1, auto (default: GPU if present)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 (default: float32 on CPU)")
    p.add_argument("--no-merge", action="store_true", help="keep LoRA modules live")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow Python code shipped with the model")


def _judge_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--judge", required=required,
                   help="openai:MODEL, hf:PATH_OR_ID, or pocket (the built-in organism's judge)")
    p.add_argument("--base-url", help="OpenAI-compatible server URL (vLLM, Ollama, Azure, ...)")
    p.add_argument("--api-key-env", help="environment variable holding the API key "
                                         "(default OPENAI_API_KEY); keys are never written")
    p.add_argument("--cache", help="SQLite judgement cache (default: RUN/judge-cache.sqlite)")


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", default="persona",
                   help="comma-separated: persona, medical, financial, sports, pocket[:d1+d2], "
                        "or YAML paths (default: persona)")
    p.add_argument("--n", type=int, default=50, help="answers per paraphrase (default 50)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system", help="system prompt for every question")


def _sample_kwargs(args: argparse.Namespace) -> dict:
    return dict(temperature=args.temperature, top_p=args.top_p,
                max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                system=args.system)


def _cmd_sample(args: argparse.Namespace) -> int:
    import contextlib

    from .runs import RunDir

    model = _load(args)
    qs = _questions(args.questions)
    ctx = contextlib.ExitStack()
    config = {"kind": "sample", "model": model.emlens_provenance, "questions": args.questions,
              "n": args.n, "seed": args.seed, **_sample_kwargs(args)}
    if args.steer:
        from .directions import Direction
        from .interventions import steer

        d = Direction.load(args.steer, model=model)
        layers = _ints(args.layer) if args.layer else None
        ctx.enter_context(steer(model, d, args.alpha, layers=layers))
        config["steer"] = {"direction": args.steer, "alpha": args.alpha, "layers": layers}
    if args.ablate:
        from .directions import Direction
        from .interventions import ablate

        d = Direction.load(args.ablate, model=model)
        ctx.enter_context(ablate(model, d, layers=_ints(args.layer) if args.layer else None))
        config["ablate"] = {"direction": args.ablate}
    run = RunDir(args.out, config=config)
    with ctx:
        from .sampling import sample

        records = sample(model, qs, n=args.n, seed=args.seed, **_sample_kwargs(args))
    path = run.save("records", records)
    print(f"{len(records)} answers written to {path}")
    return 0


def _cmd_judge(args: argparse.Namespace) -> int:
    from .evaluation import em_stats, judge
    from .runs import read_jsonl, write_jsonl

    src = Path(args.records)
    run_path = src if src.is_dir() else src.parent
    records_file = src / "records.jsonl" if src.is_dir() else src
    if not records_file.is_file():
        raise EmlensError(f"no records at {str(records_file)!r}; pass a run directory written "
                          f"by `emlens sample` or a JSONL file of records")
    records = read_jsonl(records_file)
    cache = args.cache or str(run_path / "judge-cache.sqlite")
    j = _judge(args.judge, cache, args.base_url, args.api_key_env)
    scored = judge(records, j, progress=True)
    out = write_jsonl(run_path / "scored.jsonl", scored)
    stats = em_stats(scored)
    print(f"EM rate {stats.em_rate:.3f} (95% CI {stats.em_ci[0]:.3f}-{stats.em_ci[1]:.3f}), "
          f"coherent {stats.coherent_rate:.3f}, scored {stats.n_scored}/{stats.n}")
    print(f"scores written to {out}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .directions import Direction
    from .sweeps import sweep

    model = _load(args)
    d = Direction.load(args.direction, model=model)
    cache = args.cache or str(Path(args.out) / "judge-cache.sqlite")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    j = _judge(args.judge, cache, args.base_url, args.api_key_env)
    table = sweep(model, _questions(args.questions), j, direction=d, layers=_ints(args.layers),
                  alphas=_floats(args.alphas), n=args.n, run_dir=args.out, seed=args.seed,
                  **_sample_kwargs(args))
    cols = ["condition", "layer", "alpha", "em_rate", "em_ci_low", "em_ci_high", "coherent_rate"]
    print(table[cols].to_string(index=False))
    print(f"results written to {Path(args.out) / 'results.jsonl'}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    import transformer_lens.model_bridge  # noqa: F401  (import time is not load time)

    t0 = time.perf_counter()
    model = _load(args)
    elapsed = time.perf_counter() - t0
    prov = dict(model.emlens_provenance)
    prov["load_seconds"] = round(elapsed, 3)
    prov["n_params"] = sum(p.numel() for p in model.parameters())
    if args.json:
        print(json.dumps(prov, indent=2))
    else:
        print(f"{prov['architecture']}: {prov['n_layers']} layers, d_model {prov['d_model']}, "
              f"{prov['n_params']:,} parameters, {prov['dtype']} on {prov['device']}, "
              f"loaded in {elapsed:.2f} s")
        print(f"base: {prov['base']['id']}" + (f" @ {prov['base']['revision']}"
                                               if prov["base"].get("revision") else ""))
        for a in prov["adapters"]:
            print(f"adapter: {a['id']} (r={a.get('r')}, targets {a.get('target_modules')}, "
                  f"{'merged' if prov['merged'] else 'live'})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = Path(args.out)
    summary = run_demo(out, n=args.n, seed=args.seed)
    for line in summary["lines"]:
        print(line)
    print(f"open {out / 'report.html'} in a browser (it works offline)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emlens",
        description="Mechanistic interpretability of emergent misalignment on TransformerLens.")
    parser.add_argument("--version", action="version", version=f"emlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="load a model (and adapters) and describe it",
                       description="Load a model with emlens.load_model and print its shape, "
                                   "provenance and load time.")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print the provenance as JSON")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("sample", help="sample answers to question sets",
                       description="Sample answers with the chat template (optionally steered or "
                                   "ablated) and write RUN/records.jsonl.")
    _model_args(p)
    _sample_args(p)
    p.add_argument("--steer", help="direction file to steer with")
    p.add_argument("--alpha", type=float, default=1.0, help="steering scale (default 1)")
    p.add_argument("--ablate", help="direction file to ablate")
    p.add_argument("--layer", help="layer(s) for --steer/--ablate, comma-separated")
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("judge", help="judge sampled answers and print EM statistics",
                       description="Score RUN/records.jsonl for alignment and coherence, write "
                                   "RUN/scored.jsonl; judgements are cached and resumable.")
    p.add_argument("records", help="run directory from `emlens sample`, or a JSONL file")
    _judge_args(p)
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("sweep", help="EM under steering/ablation over layers and alphas",
                       description="Steer with a direction at each layer and alpha, ablate it, "
                                   "and compare with a same-norm random direction; resumable.")
    _model_args(p)
    p.add_argument("--direction", required=True, help="direction file (safetensors)")
    p.add_argument("--layers", required=True, help="comma-separated layers")
    p.add_argument("--alphas", required=True, help="comma-separated steering scales")
    _sample_args(p)
    _judge_args(p)
    p.add_argument("--out", required=True, help="run directory (rerun to resume)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("demo", help="the research loop on the built-in organism, with a report",
                       description="Load the pocket organism's chat model and EM finetunes, "
                                   "sample and judge, compute mean-difference directions, "
                                   "steer and ablate against random directions, compare "
                                   "narrow and general, and write OUT/report.html.")
    p.add_argument("--out", default="emlens-demo", help="output directory (default: emlens-demo)")
    p.add_argument("--n", type=int, default=4, help="answers per question per condition")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emlens`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except EmlensError as e:
        if args.debug:
            raise
        print(f"emlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
