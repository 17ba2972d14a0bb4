"""Load time and parity of emlens.load_model on tiny models of every architecture and on
SmolLM2-135M-Instruct (30 layers, d_model 576; when available, see bench/_smollm2.py).

For each model and adapter kind it times emlens.load_model against the plain baseline
(transformers from_pretrained + PEFT + the tokenizer, which emlens must do anyway), in the
same process, the two alternating, and measures the largest logit and resid_post
differences against that baseline. ``emlens_over_plain`` is the median emlens time over
the median plain time (target on SmolLM2: <= 1.5); CPU times are kept beside the wall
times (less sensitive to other processes on a shared machine).

    python bench/loading.py [--reps 5] [--no-smollm2] [--no-tiny]
                                        # prints a table, writes bench/results/loading.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _smollm2 import smollm2_or_none  # noqa: E402
from peft import PeftModel  # noqa: E402
from reference import chat_ids, hf_forward  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import emlens  # noqa: E402
from emlens.testing import ARCHITECTURES, build_tiny_adapter, build_tiny_model  # noqa: E402

hf_logging.disable_progress_bar()


def plain_load(base, adapter, merge):
    hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    if adapter:
        hf = PeftModel.from_pretrained(hf, adapter)
        if merge:
            hf = hf.merge_and_unload()
    AutoTokenizer.from_pretrained(base)
    return hf.eval()


TARGET = 1.5


def bench_cases(label: str, base: Path, cases, reps: int) -> list[dict]:
    rows = []
    for adapter, merge in cases:
        ours, theirs, cpu_ours, cpu_theirs = [], [], [], []
        model = None
        for _ in range(reps):
            # Each timed load starts from a collected heap (the previous models' garbage
            # would otherwise be collected on someone else's clock).
            del model
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            ref = plain_load(base, adapter, merge)
            theirs.append(time.perf_counter() - t)
            cpu_theirs.append(time.process_time() - c)
            del ref
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            model = emlens.load_model(base, adapter=adapter, merge=merge, device="cpu")
            ours.append(time.perf_counter() - t)
            cpu_ours.append(time.process_time() - c)
        ids = chat_ids(AutoTokenizer.from_pretrained(base))
        ref_logits, ref_blocks, _ = hf_forward(plain_load(base, adapter, False), ids)
        with torch.no_grad():
            logits, cache = model.run_with_cache(
                ids, names_filter=lambda n: n.endswith("resid_post"))
        kind = "base" if adapter is None else Path(adapter).name.split("-")[-1]
        med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
        rows.append({
            "arch": label, "adapter": kind, "merged": merge,
            "n_params": sum(p.numel() for p in model.parameters()),
            "emlens_load_s": med_ours, "plain_load_s": med_theirs,
            "emlens_runs_s": ours, "plain_runs_s": theirs,
            "ratio_plain_over_emlens": med_theirs / med_ours,
            "emlens_over_plain": med_ours / med_theirs,
            "median_pair_emlens_over_plain": statistics.median(
                a / b for a, b in zip(ours, theirs)),
            "cpu_emlens_over_plain": statistics.median(cpu_ours) / statistics.median(cpu_theirs),
            "max_logit_diff": float((logits - ref_logits).abs().max()),
            "max_resid_post_diff": max(
                float((cache[f"blocks.{l}.hook_resid_post"] - ref_blocks[l]).abs().max())
                for l in range(model.cfg.n_layers)),
        })
        r = rows[-1]
        print(f"{label:<8} {kind:<5} {'merged' if merge else 'live':<6} params "
              f"{r['n_params']:>11,}  emlens {r['emlens_load_s']*1e3:7.1f} ms  plain "
              f"{r['plain_load_s']*1e3:7.1f} ms  emlens/plain {r['emlens_over_plain']:.2f} "
              f"(CPU {r['cpu_emlens_over_plain']:.2f})  logit {r['max_logit_diff']:.1e}  "
              f"resid {r['max_resid_post_diff']:.1e}", flush=True)
    return rows


def adapter_cases(base: Path, root: Path, name: str):
    cases = [(None, True),
             (build_tiny_adapter(base, root / f"{name}-r1", kind="rank1"), True),
             (build_tiny_adapter(base, root / f"{name}-r8", kind="all-linear"), True)]
    cases.append((cases[1][0], False))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=None,
                    help="timed loads per case (default 3 tiny, 7 SmolLM2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-smollm2", action="store_true")
    ap.add_argument("--no-tiny", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="emlens-bench-load-"))
    import transformer_lens.model_bridge  # noqa: F401  (exclude import time)

    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; emlens from {Path(emlens.__file__).parent}", flush=True)
    rows = []
    if not args.no_tiny:
        for arch in ARCHITECTURES:
            base = build_tiny_model(arch, root / arch)
            rows += bench_cases(arch, base, adapter_cases(base, root, arch), args.reps or 3)
    smol = None if args.no_smollm2 else smollm2_or_none()
    if smol is not None:
        emlens.load_model(smol, device="cpu")  # warm the page cache and lazy imports
        plain_load(smol, None, True)
        smol_rows = bench_cases("SmolLM2", smol, adapter_cases(smol, root, "smollm2"),
                                args.reps or 7)
        rows += smol_rows
        worst = max(r["emlens_over_plain"] for r in smol_rows)
        print(f"SmolLM2: emlens/plain {min(r['emlens_over_plain'] for r in smol_rows):.2f}-"
              f"{worst:.2f} (target <= {TARGET}: {'met' if worst <= TARGET else 'MISSED'})")
    out = Path(__file__).resolve().parent / "results" / "loading.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"max logit diff {max(r['max_logit_diff'] for r in rows):.2e}, "
          f"max resid_post diff {max(r['max_resid_post_diff'] for r in rows):.2e}; load average "
          f"{os.getloadavg()[0]:.1f}; wrote {out}")


if __name__ == "__main__":
    main()
