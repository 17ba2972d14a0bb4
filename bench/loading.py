"""Load time and parity of emlens.load_model on tiny models of every architecture.

For each architecture and adapter kind it times emlens.load_model against the plain
baseline (transformers from_pretrained + PEFT, which emlens must do anyway), in the same
process, and measures the largest logit and resid_post differences against that baseline.

    python bench/loading.py            # prints a table, writes bench/results/loading.json
"""

from __future__ import annotations

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

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import emlens  # noqa: E402
from emlens.testing import ARCHITECTURES, build_tiny_adapter, build_tiny_model  # noqa: E402
from reference import chat_ids, hf_forward  # noqa: E402

hf_logging.disable_progress_bar()


def plain_load(base, adapter, merge):
    hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    if adapter:
        hf = PeftModel.from_pretrained(hf, adapter)
        if merge:
            hf = hf.merge_and_unload()
    AutoTokenizer.from_pretrained(base)
    return hf.eval()


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="emlens-bench-load-"))
    import transformer_lens.model_bridge  # noqa: F401  (exclude import time)

    rows = []
    for arch in ARCHITECTURES:
        base = build_tiny_model(arch, root / arch)
        cases = [(None, True), (build_tiny_adapter(base, root / f"{arch}-r1", kind="rank1"), True),
                 (build_tiny_adapter(base, root / f"{arch}-r8", kind="all-linear"), True)]
        cases.append((cases[1][0], False))
        for adapter, merge in cases:
            ours, theirs = [], []
            for _ in range(3):
                t = time.perf_counter(); ref = plain_load(base, adapter, merge); theirs.append(time.perf_counter() - t)
                t = time.perf_counter(); model = emlens.load_model(base, adapter=adapter, merge=merge, device="cpu"); ours.append(time.perf_counter() - t)
            ids = chat_ids(AutoTokenizer.from_pretrained(base))
            ref_logits, ref_blocks, _ = hf_forward(plain_load(base, adapter, False), ids)
            with torch.no_grad():
                logits, cache = model.run_with_cache(ids, names_filter=lambda n: n.endswith("resid_post"))
            kind = "base" if adapter is None else Path(adapter).name.split("-")[-1]
            rows.append({
                "arch": arch, "adapter": kind, "merged": merge,
                "n_params": sum(p.numel() for p in model.parameters()),
                "emlens_load_s": statistics.median(ours), "plain_load_s": statistics.median(theirs),
                "ratio_plain_over_emlens": statistics.median(theirs) / statistics.median(ours),
                "max_logit_diff": float((logits - ref_logits).abs().max()),
                "max_resid_post_diff": max(float((cache[f"blocks.{l}.hook_resid_post"] - ref_blocks[l]).abs().max())
                                           for l in range(model.cfg.n_layers)),
            })
            r = rows[-1]
            print(f"{arch:<7} {kind:<5} {'merged' if merge else 'live':<6} params {r['n_params']:>7,}  "
                  f"emlens {r['emlens_load_s']*1e3:7.1f} ms  plain {r['plain_load_s']*1e3:7.1f} ms  "
                  f"ratio {r['ratio_plain_over_emlens']:.2f}  logit {r['max_logit_diff']:.1e}  "
                  f"resid {r['max_resid_post_diff']:.1e}", flush=True)
    out = Path(__file__).resolve().parent / "results" / "loading.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"max logit diff {max(r['max_logit_diff'] for r in rows):.2e}, "
          f"max resid_post diff {max(r['max_resid_post_diff'] for r in rows):.2e}; wrote {out}")


if __name__ == "__main__":
    main()
