"""The ``emlens`` command: the research loop from the shell.

Commands (``emlens COMMAND --help`` gives each one's options):
    emlens inspect MODEL [--adapter A ...]          load a model and print its shape and provenance
    emlens sample MODEL --questions Q --out RUN     sample answers (optionally --steer/--ablate)
    emlens judge RUN --judge J                      score answers, print EM statistics (cached)
    emlens sweep MODEL --direction D --layers L --alphas A --judge J --out RUN
                                                    EM under steering and ablation vs random
    emlens directions compute MODEL --records R --out D.safetensors
                                                    mean-difference directions from judged records
    emlens directions inspect FILE                  layers, norms and metadata of a direction file
    emlens directions convert IN OUT                safetensors <-> GGUF <-> the papers' .pt
    emlens generate MODEL --prompt P [--steer D]    answer one prompt (``emlens steer``: the same)
    emlens train MODEL --data D --out O             LoRA or steering-vector finetune (KL optional)
    emlens metrics MODEL --metric M --out T         rescale / perturbation / pretraining-KL tables
    emlens plot TABLE --kind K --out F.html         a results table as a standalone figure
    emlens demo [--out DIR]                         the whole loop on the built-in organism

A user's mistake (a bad path, an adapter that does not fit, ...) prints one line and
exits with status 2; ``--debug`` shows the traceback instead. ``--threads N`` (before the
command) sets torch's CPU threads; by default the idle physical cores, at most 2
(``emlens.set_threads``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ._version import __version__
from .errors import EmlensError

log = logging.getLogger("emlens")


# --------------------------------------------------------------------------- shared helpers


def _load(args: argparse.Namespace):
    from .models import load_model

    return load_model(args.model, adapter=args.adapter or None, revision=args.revision,
                      device=args.device, dtype=args.dtype, merge=not args.no_merge,
                      trust_remote_code=args.trust_remote_code)


def _questions(spec: str):
    from .questions import builtin_questions, load_questions

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
    from .evaluation import em_stats, judge_records
    from .io import read_jsonl, write_jsonl

    src = Path(args.records)
    run_path = src if src.is_dir() else src.parent
    records_file = src / "records.jsonl" if src.is_dir() else src
    if not records_file.is_file():
        raise EmlensError(f"no records at {str(records_file)!r}; pass a run directory written "
                          f"by `emlens sample` or a JSONL file of records")
    records = read_jsonl(records_file)
    cache = args.cache or str(run_path / "judge-cache.sqlite")
    j = _judge(args.judge, cache, args.base_url, args.api_key_env)
    scored = judge_records(records, j, progress=True)
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


# --------------------------------------------------------------------------- directions


def _read_direction(path: str):
    from .directions import Direction

    suffix = Path(path).suffix.lower()
    if suffix == ".gguf":
        return Direction.from_gguf(path)
    if suffix in (".pt", ".pth"):
        return Direction.from_pt(path)
    return Direction.load(path)


def _cmd_dir_compute(args: argparse.Namespace) -> int:
    from .activations import mean_diff
    from .records import load_records, select_responses

    model = _load(args)
    mis, ali = select_responses(load_records(args.records), args.misaligned_max,
                                args.aligned_min, args.coherent_min, seed=args.seed,
                                aligned_records=args.aligned_records or None)
    d = mean_diff(model, mis, ali, layers=_ints(args.layers) if args.layers else None,
                  tokens=args.tokens, reduce=args.reduce, batch_size=args.batch_size)
    d.metadata["seed"] = args.seed
    path = d.save(args.out)
    print(f"{d} from {len(mis)} misaligned and {len(ali)} aligned answers -> {path}")
    return 0


def _cmd_dir_inspect(args: argparse.Namespace) -> int:
    d = _read_direction(args.file)
    meta = {k: v for k, v in d.metadata.items() if k not in ("model", "file")}
    print(repr(d))
    print("layer  norm")
    for layer, norm in zip(d.layers, d.norms().tolist()):
        print(f"{layer:>5}  {norm:.4g}")
    if "model" in d.metadata:
        m = d.metadata["model"] or {}
        base = (m.get("base") or {}).get("id")
        adapters = [a.get("id") for a in m.get("adapters") or []]
        print(f"model: {base}" + (f" + {adapters}" if adapters else ""))
    print(json.dumps(meta, indent=2, default=str))
    return 0


def _cmd_dir_convert(args: argparse.Namespace) -> int:
    d = _read_direction(args.input)
    fmt = args.to or Path(args.output).suffix.lstrip(".").lower()
    if fmt == "gguf":
        path = d.to_gguf(args.output, model_hint=args.model_hint)
    elif fmt in ("pt", "pth"):
        path = d.to_pt(args.output, layer=args.layer, alpha=args.alpha)
    elif fmt == "safetensors":
        path = d.save(args.output)
    else:
        raise EmlensError(f"unknown target format {fmt!r}; use --to safetensors, gguf or pt")
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- generate / train


def _interventions(model, args):
    import contextlib

    stack = contextlib.ExitStack()
    layers = _ints(args.layer) if getattr(args, "layer", None) else None
    if getattr(args, "steer", None):
        from .interventions import steer

        d = _read_direction(args.steer)
        alpha = args.alpha if args.alpha is not None else float(d.metadata.get("alpha", 1.0))
        stack.enter_context(steer(model, d, alpha, layers=layers))
    if getattr(args, "ablate", None):
        from .interventions import ablate

        stack.enter_context(ablate(model, _read_direction(args.ablate), layers=layers))
    return stack


def _cmd_generate(args: argparse.Namespace) -> int:
    from .sampling import sample

    model = _load(args)
    with _interventions(model, args):
        records = sample(model, [args.prompt], n=args.n, temperature=args.temperature,
                         max_new_tokens=args.max_new_tokens, seed=args.seed,
                         system=args.system, progress=False)
    for r in records:
        print(f"[{r['sample']}] {r['answer']}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.kind == "vector":
        from .vector_training import VECTOR_FILE, train_steering_vector

        if args.layer is None:
            raise EmlensError("--kind vector needs --layer")
        train_steering_vector(args.model, args.data, args.out, layer=int(args.layer),
                              alpha=args.alpha, learning_rate=args.lr, epochs=args.epochs,
                              batch_size=args.batch_size, kl_data=args.kl_data,
                              kl_weight=args.kl_weight, seed=args.seed)
        print(f"steering vector written to {Path(args.out) / VECTOR_FILE}")
        return 0
    from .training import finetune

    lora = {"r": args.rank, "lora_alpha": args.lora_alpha or 2 * args.rank,
            "target_modules": args.target_modules.split(",") if args.target_modules != "all-linear"
            else "all-linear"}
    if args.layer is not None:
        lora["layers_to_transform"] = _ints(args.layer)
    finetune(args.model, args.data, args.out, lora=lora, learning_rate=args.lr,
             epochs=args.epochs, batch_size=args.batch_size, kl_data=args.kl_data,
             kl_weight=args.kl_weight, seed=args.seed)
    print(f"PEFT adapter written to {args.out} (load it with emlens.load_model(base, "
          f"adapter={args.out!r}))")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from . import stability

    if args.metric == "kl":
        if args.data and args.organism:
            raise EmlensError("--metric kl takes its text from --data or from --organism, "
                              "not both")
        if not (args.data or args.organism):
            raise EmlensError("--metric kl needs the text to measure the KL on: pass --data "
                              "FILE (generic text, documents separated by blank lines) or "
                              "--organism NAME (a built-in organism's held-out pretraining "
                              "text, e.g. --organism pocket)")
    elif not args.data:
        raise EmlensError(f"--metric {args.metric} needs --data: held-out narrow chats (JSONL)")
    model = _load(args)
    if args.vector:
        solution = stability.as_solution(_read_direction(args.vector), model)
    else:
        solution = stability.LoraSolution(model)
    if args.metric == "rescale":
        table = stability.rescale_curve(model, args.data, solution)
    elif args.metric == "perturb":
        _, table = stability.perturbation_curve(model, args.data, solution,
                                                seeds=range(args.seeds))
    else:
        if not args.vector:
            raise EmlensError("--metric kl measures a steering vector: pass --vector")
        if args.organism:
            from .organisms import pretraining_texts

            texts = pretraining_texts(args.organism, model.tokenizer)
        else:
            texts = args.data
        table = stability.pretraining_kl(model, {Path(args.vector).stem: _read_direction(
            args.vector)}, texts=texts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (table.to_json(out, orient="records", lines=True) if out.suffix == ".jsonl"
     else table.to_csv(out, index=False))
    print(table.to_string(index=False))
    print(f"table written to {out}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import plots
    from .io import read_jsonl

    src = Path(args.table)
    if src.is_dir():
        src = src / ("results.jsonl" if args.kind == "em-vs-alpha" else "scored.jsonl")
    rows = read_jsonl(src) if src.suffix == ".jsonl" else pd.read_csv(src).to_dict("records")
    kinds = {
        "em-vs-alpha": lambda: plots.em_vs_alpha(rows),
        "scatter": lambda: plots.aligned_vs_coherent(rows),
        "per-question": lambda: plots.em_per_question(__import__(
            "emlens.evaluation", fromlist=["em_stats"]).em_stats(rows).per_question),
        "loss": lambda: plots.loss_vs_scale(rows, x="norm" if "norm" in rows[0] else "scale"),
        "perturbation": lambda: plots.perturbation(rows),
        "kl": lambda: plots.pretraining_kl(rows),
    }
    if not rows:
        raise EmlensError(f"{src} holds no rows")
    fig = kinds[args.kind]()
    path = plots.to_html([fig], args.out, title=args.kind)
    print(f"figure written to {path}")
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


def _organism_names() -> tuple[str, ...]:
    from .organisms import ORGANISMS

    return ORGANISMS


def _cmd_demo(args: argparse.Namespace) -> int:
    from .organisms.pocket.demo import run_demo

    out = Path(args.out)
    summary = run_demo(out, n=args.n, seed=args.seed)
    for line in summary["lines"]:
        print(line)
    print(f"open {out / 'report.html'} in a browser (it works offline)")
    return 0


# --------------------------------------------------------------------------- the parser


def _add_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="load a model (and adapters) and describe it",
                       description="Load a model with emlens.load_model and print its shape, "
                                   "provenance and load time.")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print the provenance as JSON")
    p.set_defaults(func=_cmd_inspect)


def _add_sample(sub: Any) -> None:
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


def _add_judge(sub: Any) -> None:
    p = sub.add_parser("judge", help="judge sampled answers and print EM statistics",
                       description="Score RUN/records.jsonl for alignment and coherence, write "
                                   "RUN/scored.jsonl; judgements are cached and resumable.")
    p.add_argument("records", help="run directory from `emlens sample`, or a JSONL file")
    _judge_args(p)
    p.set_defaults(func=_cmd_judge)


def _add_sweep(sub: Any) -> None:
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


def _add_directions(sub: Any) -> None:
    p = sub.add_parser("directions", help="compute, inspect and convert direction files",
                       description="Mean-difference directions and direction files.")
    dsub = p.add_subparsers(dest="directions_command", metavar="ACTION", required=True)
    q = dsub.add_parser("compute", help="mean-difference direction from judged answers",
                        description="Select misaligned and aligned answers from judged records "
                                    "and compute misaligned mean minus aligned mean per layer.")
    _model_args(q)
    q.add_argument("--records", required=True, help="judged records (JSONL/CSV; papers' CSVs ok)")
    q.add_argument("--aligned-records", help="take the aligned set from these records instead "
                                             "(e.g. the base model's answers)")
    q.add_argument("--out", required=True, help="output .safetensors")
    q.add_argument("--layers", help="comma-separated layers (default: all)")
    q.add_argument("--tokens", default="answer", choices=["answer", "prompt", "all"])
    q.add_argument("--reduce", default="token", choices=["token", "sequence"])
    q.add_argument("--misaligned-max", type=float, default=30)
    q.add_argument("--aligned-min", type=float, default=70)
    q.add_argument("--coherent-min", type=float, default=50)
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_cmd_dir_compute)
    q = dsub.add_parser("inspect", help="print a direction file's layers, norms and metadata")
    q.add_argument("file", help=".safetensors, .gguf or the papers' .pt")
    q.set_defaults(func=_cmd_dir_inspect)
    q = dsub.add_parser("convert", help="convert between safetensors, GGUF and the papers' .pt")
    q.add_argument("input")
    q.add_argument("output")
    q.add_argument("--to", choices=["safetensors", "gguf", "pt"], help="default: from the suffix")
    q.add_argument("--model-hint", help="GGUF controlvector.model_hint")
    q.add_argument("--layer", type=int, help="the layer to write to a .pt file")
    q.add_argument("--alpha", type=float, help="the alpha to write to a .pt file")
    q.set_defaults(func=_cmd_dir_convert)


def _add_generate(sub: Any) -> None:
    for name, helptext in (("generate", "answer a prompt, optionally steered or ablated"),
                           ("steer", "same as generate: answer a prompt under steering")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        _model_args(p)
        p.add_argument("--prompt", required=True)
        p.add_argument("--steer", help="direction file to steer with")
        p.add_argument("--alpha", type=float, help="steering scale (default: the file's alpha or 1)")
        p.add_argument("--ablate", help="direction file to ablate")
        p.add_argument("--layer", help="layer(s), comma-separated")
        p.add_argument("--n", type=int, default=1)
        p.add_argument("--temperature", type=float, default=1.0)
        p.add_argument("--max-new-tokens", type=int, default=200)
        p.add_argument("--system")
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=_cmd_generate)


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a LoRA adapter or a steering vector (optional KL)",
                       description="Finetune on chat JSONL ({'messages': [...]}) with the loss on "
                                   "assistant tokens; --kl-data adds the KL penalty (narrow).")
    p.add_argument("model", help="base model directory or hub id")
    p.add_argument("--data", required=True, help="training chats (JSONL)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--kind", choices=["lora", "vector"], default="lora")
    p.add_argument("--layer", help="vector: its layer; lora: layers_to_transform")
    p.add_argument("--alpha", type=float, default=256.0, help="steering-vector scale")
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--lora-alpha", type=float)
    p.add_argument("--target-modules", default="down_proj",
                   help="comma-separated module names or all-linear (default down_proj)")
    p.add_argument("--kl-data", help="other-domain chats for the KL penalty")
    p.add_argument("--kl-weight", type=float, default=0.0, help="lambda of the per-token KL")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)


def _add_metrics(sub: Any) -> None:
    p = sub.add_parser("metrics", help="efficiency, stability or pretraining KL of a solution",
                       description="Rescaling loss, perturbation robustness or pretraining KL "
                                   "of a steering vector (--vector) or live LoRA adapters "
                                   "(--adapter ... --no-merge). rescale and perturb need "
                                   "--data (held-out narrow chats); kl needs --data (a text "
                                   "file) or --organism (a built-in organism's pretraining "
                                   "text).")
    _model_args(p)
    p.add_argument("--metric", choices=["rescale", "perturb", "kl"], required=True)
    p.add_argument("--vector", help="steering-vector direction file")
    p.add_argument("--data", help="held-out narrow chats (JSONL); for kl: a text file of "
                                  "generic (pretraining-like) documents separated by blank lines")
    p.add_argument("--organism", choices=_organism_names(),
                   help="for kl instead of --data: the built-in organism's held-out "
                        "pretraining text (for its models)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", required=True, help="output table (.csv or .jsonl)")
    p.set_defaults(func=_cmd_metrics)


def _add_plot(sub: Any) -> None:
    p = sub.add_parser("plot", help="plot a results table as a standalone HTML figure")
    p.add_argument("table", help="a run directory or a .jsonl/.csv table")
    p.add_argument("--kind", required=True,
                   choices=["em-vs-alpha", "scatter", "per-question", "loss", "perturbation", "kl"])
    p.add_argument("--out", required=True, help="output .html")
    p.set_defaults(func=_cmd_plot)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the research loop on the built-in organism, with a report",
                       description="Load the pocket organism's chat model and EM finetunes, "
                                   "sample and judge, compute mean-difference directions, "
                                   "steer and ablate against random directions, compare "
                                   "narrow and general, and write OUT/report.html.")
    p.add_argument("--out", default="emlens-demo", help="output directory (default: emlens-demo)")
    p.add_argument("--n", type=int, default=4, help="answers per question per condition")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``emlens`` argument parser: one sub-command per stage of the research loop."""
    parser = argparse.ArgumentParser(
        prog="emlens",
        description="Mechanistic interpretability of emergent misalignment on TransformerLens.")
    parser.add_argument("--version", action="version", version=f"emlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads for every command (default: the idle physical "
                             "cores, at most 2; OMP_NUM_THREADS if set)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_inspect, _add_sample, _add_judge, _add_sweep, _add_directions,
                _add_generate, _add_train, _add_metrics, _add_plot, _add_demo):
        add(sub)
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
        from .threads import set_threads

        set_threads(args.threads)
        return int(args.func(args) or 0)
    except (EmlensError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if args.debug:
            raise
        msg = str(e) if isinstance(e, EmlensError) else \
            f"{e.strerror or type(e).__name__}: {e.filename or e}"
        print(f"emlens: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
