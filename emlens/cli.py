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


def _cmd_inspect(args: argparse.Namespace) -> int:
    import transformer_lens.model_bridge  # noqa: F401  (import time is not load time)

    from .models import load_model

    t0 = time.perf_counter()
    model = load_model(args.model, adapter=args.adapter or None, revision=args.revision,
                       device=args.device, dtype=args.dtype, merge=not args.no_merge,
                       trust_remote_code=args.trust_remote_code)
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
    from .demo import run_loader_demo

    out = Path(args.out)
    summary = run_loader_demo(out)
    for line in summary["lines"]:
        print(line)
    print(f"results written to {out / 'summary.json'}")
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
    p.add_argument("model", help="HF hub id or local directory (a PEFT adapter folder works too)")
    p.add_argument("--adapter", action="append", help="PEFT adapter (repeat to stack, in order)")
    p.add_argument("--revision", help="hub revision of the model")
    p.add_argument("--device", help="cpu, cuda, cuda:1, auto (default: GPU if present)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 (default: float32 on CPU)")
    p.add_argument("--no-merge", action="store_true", help="keep LoRA modules live")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow Python code shipped with the model")
    p.add_argument("--json", action="store_true", help="print the provenance as JSON")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("demo", help="run the offline demo",
                       description="Build a tiny model and a LoRA finetune locally, load them "
                                   "with emlens and check them against plain transformers.")
    p.add_argument("--out", default="emlens-demo", help="output directory (default: emlens-demo)")
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
