"""Optimizer steps per second of the steering-vector trainer vs a minimal PyTorch loop.

Both train one zero-initialised vector at one layer of the same frozen model on the same
conversations, batch size and number of steps, with Adam at the same learning rate. The
emlens side is `train_steering_vector` (HF Trainer, answer-token mask, trajectory log);
the baseline is a plain loop with a forward hook and `torch.optim.AdamW`. Target >= 0.85.

    python bench/training.py [--quick] [--threads N]   # writes bench/results/training.json
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
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from emlens.testing import build_tiny_model, tiny_corpus  # noqa: E402
from emlens.chat import encode_chat  # noqa: E402
from emlens.training import ChatCollator  # noqa: E402
from emlens.vector_training import train_steering_vector  # noqa: E402

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()


def plain_loop(path, chats, tok, steps, batch, layer, alpha, lr):
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    for p in model.parameters():
        p.requires_grad_(False)
    v = torch.nn.Parameter(torch.zeros(model.config.hidden_size))
    model.model.layers[layer].register_forward_hook(
        lambda m, a, o: (o[0] + alpha * v, *o[1:]) if isinstance(o, tuple) else o + alpha * v)
    opt = torch.optim.AdamW([v], lr=lr, weight_decay=0.0)
    rows = [encode_chat(tok, c["messages"]) for c in chats]
    collate = ChatCollator(tok.pad_token_id)
    model.train()
    t = time.perf_counter()
    for s in range(steps):
        b = collate(rows[(s * batch) % len(rows):(s * batch) % len(rows) + batch])
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return steps / (time.perf_counter() - t)


def emlens_trainer(path, chats, tok, steps, batch, layer, alpha, lr):
    times = []

    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 1:  # start after the first step (setup excluded)
                times.append(time.perf_counter())

        def on_train_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    train_steering_vector(path, chats, None, layer=layer, alpha=alpha, learning_rate=lr,
                          epochs=1, batch_size=batch, progress=False,
                          training_args={"max_steps": steps + 1, "logging_steps": 10_000},
                          callbacks=[Clock()])
    return steps / (times[-1] - times[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d_model, n_layers, steps, batch, reps = (128, 4, 10, 8, 2) if args.quick else (256, 6, 30, 16, 3)
    root = Path(tempfile.mkdtemp(prefix="emlens-bench-train-"))
    path = build_tiny_model("qwen2", root / "m", d_model=d_model, n_layers=n_layers, n_heads=4,
                            d_mlp=4 * d_model, vocab_size=4096)
    tok = AutoTokenizer.from_pretrained(path)
    c = tiny_corpus()
    chats = [{"messages": [{"role": "user", "content": " ".join(c[i % 7:i % 7 + 3])},
                           {"role": "assistant", "content": " ".join(c[(i + 3) % 7:(i + 3) % 7 + 4])}]}
             for i in range(batch * (steps + 2))]
    plain, ours = [], []
    for _ in range(reps):  # alternate so load from elsewhere hits both alike
        plain.append(plain_loop(path, chats, tok, steps, batch, n_layers // 2, 4.0, 1e-3))
        ours.append(emlens_trainer(path, chats, tok, steps, batch, n_layers // 2, 4.0, 1e-3))
    res = {"d_model": d_model, "n_layers": n_layers, "batch": batch, "steps": steps,
           "plain_steps_per_s": statistics.median(plain),
           "emlens_steps_per_s": statistics.median(ours)}
    res["ratio"] = res["emlens_steps_per_s"] / res["plain_steps_per_s"]
    print(json.dumps(res, indent=2))
    out = Path(__file__).resolve().parent / "results" / "training.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
