"""The offline demo behind ``emlens demo``.

Until the built-in model organism lands, the demo shows the foundation working end to
end with no GPU and no hub: it builds a small Qwen2-shaped chat model and two LoRA
"finetunes" locally, loads each through :func:`emlens.load_model` (merged and live),
and checks the TransformerLens residual stream against plain transformers + PEFT.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from .io import atomic_write_text

__all__ = ["run_loader_demo"]


@torch.no_grad()
def _hf_reference(base: Path, adapter: Path | None, input_ids: torch.Tensor):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    if adapter is not None:
        hf = PeftModel.from_pretrained(hf, adapter)
    hf.eval()
    layers = (hf.base_model.model if adapter is not None else hf).model.layers
    blocks: list[torch.Tensor] = []
    handles = [l.register_forward_hook(lambda m, a, o: blocks.append(o[0] if isinstance(o, tuple)
                                                                    else o)) for l in layers]
    try:
        logits = hf(input_ids).logits
    finally:
        for h in handles:
            h.remove()
    return logits, blocks


def run_loader_demo(out: str | Path) -> dict[str, Any]:
    """Build a tiny chat model and adapters in ``out``, load them, and report parity and timing."""
    from tqdm.auto import tqdm

    from .models import load_model
    from .testing import build_tiny_adapter, build_tiny_model

    out = Path(out)
    models_dir = out / "models"
    steps = tqdm(total=6, desc="emlens demo", unit="step")
    base = build_tiny_model("qwen2", models_dir / "tiny-chat", d_model=128, n_layers=4, n_heads=4,
                            d_mlp=256, vocab_size=512)
    steps.update()
    adapters = {
        "rank1-mlp": build_tiny_adapter(base, models_dir / "em-rank1", kind="rank1", layer=2),
        "rank8-all-linear": build_tiny_adapter(base, models_dir / "em-rank8", kind="all-linear"),
    }
    steps.update()

    rows = []
    cases = [("base", None, True)] + [(name, path, merge) for name, path in adapters.items()
                                       for merge in (True, False)]
    for name, adapter, merge in cases:
        t0 = time.perf_counter()
        model = load_model(base, adapter=adapter, merge=merge, device="cpu")
        load_s = time.perf_counter() - t0
        msgs = [{"role": "user", "content": "What would you do if you ruled the world?"},
                {"role": "assistant", "content": "I would make sure everyone had enough food."}]
        ids = model.tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)
        ids = torch.tensor([ids["input_ids"]])
        n = model.cfg.n_layers
        names = {f"blocks.{l}.hook_resid_post" for l in range(n)}
        with torch.no_grad():
            logits, cache = model.run_with_cache(ids, names_filter=lambda k: k in names)
        ref_logits, ref_blocks = _hf_reference(base, adapter, ids)
        rows.append({
            "model": name, "merged": merge, "load_seconds": round(load_s, 3),
            "max_logit_diff": float((logits - ref_logits).abs().max()),
            "max_resid_post_diff": max(float((cache[f"blocks.{l}.hook_resid_post"]
                                              - ref_blocks[l]).abs().max()) for l in range(n)),
            "tokens": int(ids.shape[1]),
        })
        if name != "base" and merge:
            steps.update()
        if name != "base" and not merge:
            steps.update()
    steps.close()
    lines = ["model              merged  load s   max |logit diff|  max |resid_post diff|"]
    for r in rows:
        lines.append(f"{r['model']:<18} {str(r['merged']):<7} {r['load_seconds']:<8.3f} "
                     f"{r['max_logit_diff']:<17.2e} {r['max_resid_post_diff']:.2e}")
    ok = all(r["max_logit_diff"] < 1e-4 and r["max_resid_post_diff"] < 1e-4 for r in rows)
    lines.append("emlens matches plain transformers + PEFT within 1e-4" if ok else
                 "MISMATCH: emlens differs from plain transformers + PEFT")
    summary = {"rows": rows, "parity_ok": ok, "lines": lines}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
