"""Throughput of emlens.sample with a steering hook active vs plain transformers generate.

Same model weights, batch, prompt lengths, new-token count and decoding (greedy, no early
stop: end-of-turn tokens are suppressed in both so every sequence runs to the limit).
Baseline: a fresh AutoModelForCausalLM (no TransformerLens, no hooks) calling
`generate` with the same left-padded batch. Target ratio >= 0.85.

    python bench/sampling.py [--quick]     # writes bench/results/sampling.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import emlens  # noqa: E402
from emlens.directions import Direction  # noqa: E402
from emlens.chat import encode_prompt  # noqa: E402
from emlens.sampling import end_of_turn_ids  # noqa: E402
from emlens.testing import build_tiny_model  # noqa: E402

hf_logging.disable_progress_bar()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is stable on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d_model, layers, new_tokens, batch, reps = (256, 4, 32, 8, 2) if args.quick else (512, 8, 64, 16, 5)
    root = Path(tempfile.mkdtemp(prefix="emlens-bench-sample-"))
    path = build_tiny_model("qwen2", root / "m", d_model=d_model, n_layers=layers, n_heads=8,
                            d_mlp=4 * d_model, vocab_size=32768)
    model = emlens.load_model(path, device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tok = model.tokenizer
    questions = [f"Question number {i}: what would you do if you ruled the world?" for i in range(batch)]
    prompts = [encode_prompt(tok, q, None) for q in questions]
    stops = end_of_turn_ids(tok, model)
    vec = Direction(torch.randn(1, d_model), layers=[layers // 2])
    # Suppress end tokens in both runs so every sequence generates exactly new_tokens.
    bad = [[s] for s in stops]

    def run_plain():
        with torch.no_grad():
            width = max(len(p) for p in prompts)
            ids = torch.full((batch, width), tok.pad_token_id)
            mask = torch.zeros((batch, width), dtype=torch.long)
            for i, p in enumerate(prompts):
                ids[i, width - len(p):] = torch.tensor(p); mask[i, width - len(p):] = 1
            return plain.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, bad_words_ids=bad,
                                  pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)

    def run_emlens():
        hf = model.original_model
        gen = hf.generate

        def patched(**kw):  # the same decoding constraints as the baseline
            kw.update(min_new_tokens=new_tokens, bad_words_ids=bad)
            return gen(**kw)
        hf.generate = patched
        try:
            with emlens.steer(model, vec, 2.0):
                return emlens.sample(model, questions, n=1, temperature=0.0,
                                     max_new_tokens=new_tokens, batch_size=batch, progress=False)
        finally:
            del hf.generate

    run_plain(); run_emlens()  # warm-up
    t_plain, t_ours = [], []
    for _ in range(reps):
        t = time.perf_counter(); run_plain(); t_plain.append(time.perf_counter() - t)
        t = time.perf_counter(); recs = run_emlens(); t_ours.append(time.perf_counter() - t)
    assert all(r["n_tokens"] == new_tokens for r in recs)
    tokens = batch * new_tokens
    res = {"d_model": d_model, "n_layers": layers, "vocab": 32768, "batch": batch,
           "new_tokens": new_tokens, "plain_tokens_per_s": tokens / statistics.median(t_plain),
           "emlens_steered_tokens_per_s": tokens / statistics.median(t_ours)}
    res["ratio"] = res["emlens_steered_tokens_per_s"] / res["plain_tokens_per_s"]
    print(json.dumps(res, indent=2))
    out = Path(__file__).resolve().parent / "results" / "sampling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
