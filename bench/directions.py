"""Throughput and memory of emlens.collect_means against a plain transformers computation.

Models: a random Qwen2-shaped model (vocabulary 32768, d_model 512, 8 layers, d_mlp 1024),
built locally, and, when available, SmolLM2-135M-Instruct (30 layers, d_model 576,
vocabulary 49152; see bench/_smollm2.py; throughput only). Data: chat-formatted records
of about 200 tokens each.

1. Throughput: ``collect_means`` over all 8 layers (the default of ``mean_diff``) versus
   the plain computation a researcher would write: HF ``forward(output_hidden_states=True)``
   on the same length-sorted, right-padded batches of the same size, plus a masked float64
   mean (the last block's raw output taken with a forward hook, since HF's last hidden
   state has the final norm applied). Both include chat formatting and tokenisation. The
   two alternate over chunks of the records (so that load from other processes falls on
   both alike) and their summed times are compared; so are their means, for parity.
   ``collect_means`` stops the forward after the last requested block, so it skips the
   final norm and the unembedding; the ratio's ceiling is measured beside it: the same
   plain computation stopped after the last block ("plain, blocks only"), alternating with
   the other two. ``fraction_of_limit`` = ratio / ceiling (1.0: emlens costs no more than
   the HF blocks alone).
   Torch runs on one thread by default (``--threads``): on a shared machine a
   multi-threaded run mostly measures OpenMP waits and its ratio swings from run to run.
2. Memory: peak resident memory (VmHWM) of a fresh subprocess per size, reset after the
   model is loaded (``/proc/self/clear_refs``), so it covers ``collect_means`` alone; 64
   versus 2048 records. To keep the run short these collect layer 0 only (the hooks,
   batching and accumulation are the same at every layer); any per-record retention would
   still show up as growth.

    python bench/directions.py            # about 3-4 minutes on 2 CPU cores
    python bench/directions.py --quick    # under a minute: 64 records, 64 vs 512 for memory
    python bench/directions.py --no-smollm2 / --smollm2-records 64

Prints the ratios and writes bench/results/directions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import emlens  # noqa: E402
from emlens.testing import build_tiny_model, tiny_corpus  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _smollm2 import smollm2_or_none  # noqa: E402

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[1]
SHAPE = dict(vocab_size=32768, d_model=512, n_layers=8, n_heads=8, d_mlp=1024)
TARGET_RATIO = 1.2
#: On SmolLM2: within 5% of the ceiling (the plain computation without final norm and
#: unembedding), which is about 1.27 by FLOP count.
TARGET_FRACTION_OF_LIMIT = 0.95
TARGET_GROWTH = 0.10


def make_records(tokenizer, n: int, seed: int = 0, target: tuple[int, int] = (180, 220)):
    """``n`` question/answer records whose chat conversations are 180-220 tokens long."""
    rng = random.Random(seed)
    corpus = tiny_corpus()
    records = []
    for _ in range(n):
        question = rng.choice(corpus)
        want = rng.randint(*target)
        base = len(tokenizer.apply_chat_template(
            [{"role": "user", "content": question}, {"role": "assistant", "content": ""}],
            tokenize=True, return_dict=True)["input_ids"])
        answer, n_tok = [], base
        while n_tok < want:
            sentence = rng.choice(corpus)
            answer.append(sentence)
            n_tok += len(tokenizer(" " + sentence, add_special_tokens=False)["input_ids"])
        records.append({"question": question, "answer": " ".join(answer)})
    return records


def _chat_rows(tokenizer, records):
    rows = []
    for r in records:
        msgs = [{"role": "user", "content": r["question"]}]
        prompt = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": r["answer"]}],
                                             tokenize=True, return_dict=True)["input_ids"]
        rows.append((full, len(prompt)))
    rows.sort(key=lambda x: -len(x[0]))
    return rows


def _padded(tokenizer, batch):
    width = max(len(f) for f, _ in batch)
    ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    sel = torch.zeros(len(batch), width, dtype=torch.float64)
    for j, (full, n_prompt) in enumerate(batch):
        ids[j, :len(full)] = torch.tensor(full)
        attn[j, :len(full)] = 1
        sel[j, n_prompt:len(full)] = 1
    return ids, attn, sel


@torch.no_grad()
def plain_means(hf, tokenizer, records, batch_size: int):
    """The plain transformers computation: hidden states + masked mean over answer tokens."""
    rows = _chat_rows(tokenizer, records)
    n_layers = hf.config.num_hidden_layers
    sums = torch.zeros(n_layers, hf.config.hidden_size, dtype=torch.float64)
    count = 0
    last: list[torch.Tensor] = []
    handle = hf.model.layers[-1].register_forward_hook(
        lambda m, a, out: last.append(out[0] if isinstance(out, tuple) else out))
    try:
        for i in range(0, len(rows), batch_size):
            ids, attn, sel = _padded(tokenizer, rows[i:i + batch_size])
            last.clear()
            out = hf(input_ids=ids, attention_mask=attn, output_hidden_states=True)
            layers = list(out.hidden_states[1:n_layers]) + [last[0]]
            for l, h in enumerate(layers):
                sums[l] += torch.einsum("bpd,bp->d", h.double(), sel)
            count += int(sel.sum())
    finally:
        handle.remove()
    return sums / count, sum(len(f) for f, _ in rows), count


class _Stop(Exception):
    pass


def _stop(module, args, out):
    raise _Stop


@torch.no_grad()
def plain_blocks_only(hf, tokenizer, records, batch_size: int) -> None:
    """The ceiling: the same plain computation, stopped after the last block (no final norm,
    no unembedding, no accumulation)."""
    rows = _chat_rows(tokenizer, records)
    handle = hf.model.layers[-1].register_forward_hook(_stop)
    try:
        for i in range(0, len(rows), batch_size):
            ids, attn, _ = _padded(tokenizer, rows[i:i + batch_size])
            try:
                hf(input_ids=ids, attention_mask=attn, output_hidden_states=True)
            except _Stop:
                pass
    finally:
        handle.remove()


def flop_limit(hf) -> float:
    """(blocks + unembedding) / blocks, in weight FLOPs per token (attention scores aside)."""
    emb = hf.get_output_embeddings().weight.numel()
    blocks = sum(p.numel() for n, p in hf.model.layers.named_parameters() if p.ndim == 2)
    return (blocks + emb) / blocks


def throughput(path: Path, n_records: int, batch_size: int, chunks: int,
               also_unshimmed: bool = False) -> dict:
    tok = AutoTokenizer.from_pretrained(path)
    records = make_records(tok, n_records)
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    model = emlens.load_model(path, device="cpu")
    warm = records[: 2 * batch_size]
    emlens.collect_means(model, warm, batch_size=batch_size, progress=False)
    plain_means(hf, tok, warm, batch_size)
    plain_blocks_only(hf, tok, warm, batch_size)
    # The records are split into chunks and the methods alternate chunk by chunk (in
    # rotating order), so that load from other processes falls on all alike. The headline
    # ratio is the summed wall time; the median per-chunk ratio and CPU time are kept too.
    ours, theirs, cpu_ours, cpu_theirs = [], [], 0.0, 0.0
    blocks, cpu_blocks = [], 0.0
    unshimmed, cpu_unshimmed = [], 0.0
    from emlens import _compat
    sums_ours, sums_ref, n_tokens, n_answer = 0.0, 0.0, 0, 0
    chunks = max(1, min(chunks, n_records // (2 * batch_size)))  # >= 2 batches a chunk
    size = -(-n_records // chunks)
    for k, start in enumerate(range(0, n_records, size)):
        part = records[start:start + size]
        methods = ["emlens", "plain", "blocks"] + (["unshimmed"] if also_unshimmed else [])
        for method in methods[k % len(methods):] + methods[:k % len(methods)]:
            t, c = time.perf_counter(), time.process_time()
            if method == "unshimmed":
                _compat.unpatch_speed_shims()
                try:
                    emlens.collect_means(model, part, batch_size=batch_size, progress=False)
                finally:
                    _compat.patch_transformer_lens()
                unshimmed.append(time.perf_counter() - t)
                cpu_unshimmed += time.process_time() - c
            elif method == "blocks":
                plain_blocks_only(hf, tok, part, batch_size)
                blocks.append(time.perf_counter() - t)
                cpu_blocks += time.process_time() - c
            elif method == "emlens":
                res = emlens.collect_means(model, part, batch_size=batch_size, progress=False)
                ours.append(time.perf_counter() - t)
                cpu_ours += time.process_time() - c
            else:
                ref, n_tok, n_ans = plain_means(hf, tok, part, batch_size)
                theirs.append(time.perf_counter() - t)
                cpu_theirs += time.process_time() - c
        sums_ours = sums_ours + res.means * res.n_tokens
        sums_ref = sums_ref + ref * n_ans
        n_tokens += n_tok
        n_answer += n_ans
        print(f"  records {start:3d}-{start + len(part) - 1:3d}: emlens {ours[-1]:5.1f}s  "
              f"plain {theirs[-1]:5.1f}s  plain blocks only {blocks[-1]:5.1f}s  ratio "
              f"{theirs[-1] / ours[-1]:.2f}", flush=True)
    ours_mean, ref_mean = sums_ours / n_answer, sums_ref / n_answer
    lengths = [len(tok.apply_chat_template(
        [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}],
        tokenize=True, return_dict=True)["input_ids"]) for r in records]
    return {
        "n_records": n_records, "batch_size": batch_size, "chunks": len(ours),
        "n_tokens": n_tokens, "n_answer_tokens": n_answer,
        "mean_tokens_per_record": n_tokens / n_records,
        "min_tokens_per_record": min(lengths), "max_tokens_per_record": max(lengths),
        "emlens_s": sum(ours), "plain_s": sum(theirs), "emlens_chunks_s": ours,
        "plain_chunks_s": theirs,
        "emlens_tokens_per_s": n_tokens / sum(ours), "plain_tokens_per_s": n_tokens / sum(theirs),
        "ratio": sum(theirs) / sum(ours),
        "median_chunk_ratio": statistics.median(b / a for a, b in zip(ours, theirs)),
        "cpu_time_ratio": cpu_theirs / cpu_ours,
        "plain_blocks_only_s": sum(blocks), "plain_blocks_only_chunks_s": blocks,
        "limit": sum(theirs) / sum(blocks), "cpu_time_limit": cpu_theirs / cpu_blocks,
        "fraction_of_limit": sum(blocks) / sum(ours),
        "cpu_time_fraction_of_limit": cpu_blocks / cpu_ours,
        "flop_limit": flop_limit(hf),
        "unshimmed_ratio": sum(theirs) / sum(unshimmed) if unshimmed else None,
        "cpu_time_unshimmed_ratio": cpu_theirs / cpu_unshimmed if unshimmed else None,
        "max_abs_diff": float((ours_mean - ref_mean).abs().max()),
        "max_abs_value": float(ref_mean.abs().max()),
    }


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def memory_child(path: str, n_records: int, batch_size: int, threads: int) -> None:
    """Run in a fresh process: peak RSS of one collect_means call, printed as JSON."""
    torch.set_num_threads(threads)
    model = emlens.load_model(path, device="cpu")
    records = make_records(model.tokenizer, n_records, seed=1)
    emlens.collect_means(model, records[:batch_size], layers=[0], batch_size=batch_size,
                         progress=False)  # warm up allocator and kernels
    load_peak = _status_kb("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _status_kb("VmRSS")
    t = time.perf_counter()
    res = emlens.collect_means(model, records, layers=[0], batch_size=batch_size, progress=False)
    print(json.dumps({"n_records": n_records, "n_tokens": res.n_tokens,
                      "seconds": time.perf_counter() - t, "peak_reset": reset,
                      "rss_before_kb": before, "peak_kb": _status_kb("VmHWM"),
                      "peak_incl_load_kb": max(load_peak, _status_kb("VmHWM"))}))


def memory(path: Path, sizes: tuple[int, int], batch_size: int, threads: int) -> dict:
    out = {}
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(path), str(n),
                               str(batch_size), str(threads)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child for {n} records failed:\n{proc.stderr[-3000:]}")
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = out[n]
        print(f"  {n:5d} records ({r['n_tokens']} answer tokens, {r['seconds']:.1f}s): "
              f"peak {r['peak_kb'] / 1024:.0f} MiB (RSS before {r['rss_before_kb'] / 1024:.0f} "
              f"MiB; with loading {r['peak_incl_load_kb'] / 1024:.0f} MiB)", flush=True)
    small, large = (out[n] for n in sizes)
    return {"sizes": list(sizes), "runs": {str(k): v for k, v in out.items()},
            "growth": large["peak_kb"] / small["peak_kb"] - 1,
            "growth_incl_load": large["peak_incl_load_kb"] / small["peak_incl_load_kb"] - 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (under a minute)")
    p.add_argument("--records", type=int, help="records for the throughput run (default 256)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared machine, multi-threaded runs "
                        "mostly measure OpenMP waits, and the ratio swings from run to run)")
    p.add_argument("--chunks", type=int, default=16,
                   help="the methods alternate over this many chunks of the records")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "directions.json")
    p.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 run")
    p.add_argument("--also-unshimmed", action="store_true",
                   help="also time collect_means without emlens._compat's speed shims")
    p.add_argument("--smollm2-records", type=int, default=None,
                   help="records for the SmolLM2 throughput run (default 64; 32 with --quick)")
    args = p.parse_args()
    n_records = args.records or (64 if args.quick else 256)
    sizes = (64, 512) if args.quick else (64, 2048)

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="emlens-bench-dir-") as tmp:
        path = build_tiny_model("qwen2", Path(tmp) / "qwen2-bench", seed=0, **SHAPE)
        print(f"model {SHAPE}, torch threads {torch.get_num_threads()}, load average "
              f"{os.getloadavg()[0]:.1f}; emlens from {Path(emlens.__file__).parent}", flush=True)
        print(f"throughput: {n_records} records, batch size {args.batch_size}", flush=True)
        tp = throughput(path, n_records, args.batch_size, args.chunks, args.also_unshimmed)
        print(f"memory: {sizes[0]} vs {sizes[1]} records, layer 0, batch size {args.batch_size}",
              flush=True)
        mem = memory(path, sizes, args.batch_size, args.threads)
    smol_path = None if args.no_smollm2 else smollm2_or_none()
    smol = None
    if smol_path is not None:
        n_smol = args.smollm2_records or (32 if args.quick else 64)
        print(f"SmolLM2-135M-Instruct throughput: {n_smol} records, batch size "
              f"{args.batch_size}", flush=True)
        smol = throughput(smol_path, n_smol, args.batch_size, max(4, n_smol // 16),
                          args.also_unshimmed)
    result = {
        "benchmark": "directions", "quick": args.quick, "model": SHAPE,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "torch": torch.__version__,
        "throughput": tp, "memory": mem, "smollm2_throughput": smol,
        "targets": {"ratio_min": TARGET_RATIO, "memory_growth_max": TARGET_GROWTH,
                    "smollm2_fraction_of_limit_min": TARGET_FRACTION_OF_LIMIT},
        "met": {"ratio": tp["ratio"] >= TARGET_RATIO, "memory": mem["growth"] <= TARGET_GROWTH,
                "smollm2": None if smol is None
                else smol["fraction_of_limit"] >= TARGET_FRACTION_OF_LIMIT},
        "load_average": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\ncollect_means {tp['emlens_tokens_per_s']:.0f} tok/s vs plain transformers "
          f"{tp['plain_tokens_per_s']:.0f} tok/s: ratio {tp['ratio']:.2f} (target >= "
          f"{TARGET_RATIO}); median per chunk {tp['median_chunk_ratio']:.2f}, CPU time "
          f"{tp['cpu_time_ratio']:.2f}; max |diff| of the means {tp['max_abs_diff']:.1e}")
    print(f"  ceiling (plain, blocks only) {tp['limit']:.2f} (FLOP estimate "
          f"{tp['flop_limit']:.2f}): {tp['fraction_of_limit']:.3f} of it (CPU time "
          f"{tp['cpu_time_fraction_of_limit']:.3f})")
    if smol is not None:
        print(f"SmolLM2 collect_means ratio {smol['ratio']:.3f} (CPU time "
              f"{smol['cpu_time_ratio']:.3f}); ceiling {smol['limit']:.3f} measured, "
              f"{smol['flop_limit']:.3f} by FLOPs; {smol['fraction_of_limit']:.3f} of the measured "
              f"ceiling (CPU time {smol['cpu_time_fraction_of_limit']:.3f}; target >= "
              f"{TARGET_FRACTION_OF_LIMIT}), {smol['ratio'] / smol['flop_limit']:.3f} of the FLOP "
              f"estimate; max |diff| of the means {smol['max_abs_diff']:.1e}")
        if smol["unshimmed_ratio"] is not None:
            print(f"  without emlens._compat's speed shims: ratio {smol['unshimmed_ratio']:.3f} "
                  f"(CPU time {smol['cpu_time_unshimmed_ratio']:.3f})")
    print(f"peak memory {sizes[0]} -> {sizes[1]} records: growth {mem['growth'] * 100:+.1f}% "
          f"(target <= {TARGET_GROWTH * 100:.0f}%); including model loading "
          f"{mem['growth_incl_load'] * 100:+.1f}%")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; wrote {args.out} "
          f"({result['wall_s']:.0f}s)")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
