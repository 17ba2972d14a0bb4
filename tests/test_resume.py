"""An interrupted finetune resumes from its checkpoint to the same result."""

from __future__ import annotations

import pytest
import torch

from emlens.testing import tiny_corpus
from emlens.training import finetune


def test_resume_from_checkpoint_reaches_the_same_adapter(tiny_dir, tmp_path):
    c = tiny_corpus()
    data = [{"messages": [{"role": "user", "content": c[i % 7]},
                          {"role": "assistant", "content": c[(i + 3) % 7]}]} for i in range(16)]
    lora = {"r": 2, "lora_alpha": 4, "target_modules": ["down_proj"]}
    args = {"save_strategy": "steps", "save_steps": 2, "max_steps": 4, "logging_steps": 100}
    full = finetune(str(tiny_dir("qwen2")), data, tmp_path / "a", lora=lora, learning_rate=0.01,
                    batch_size=4, seed=3, progress=False, training_args=args)
    resumed = finetune(str(tiny_dir("qwen2")), data, tmp_path / "b", lora=lora,
                       learning_rate=0.01, batch_size=4, seed=3, progress=False,
                       training_args=args, resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    a = {k: v for k, v in full.model.state_dict().items() if "lora" in k}
    b = {k: v for k, v in resumed.model.state_dict().items() if "lora" in k}
    assert a and a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # and the checkpointed run really moved the adapter (so equality is not trivial)
    assert any(float(v.abs().sum()) > 0 for k, v in a.items() if "lora_B" in k)


def test_precomputed_reference_gives_the_same_training(tiny_dir, tmp_path):
    c = tiny_corpus()
    data = [{"messages": [{"role": "user", "content": c[i % 7]},
                          {"role": "assistant", "content": c[(i + 3) % 7]}]} for i in range(8)]
    kl = [{"messages": [{"role": "user", "content": c[i]},
                        {"role": "assistant", "content": c[i + 1]}]} for i in range(6)]
    lora = {"r": 2, "lora_alpha": 4, "target_modules": ["down_proj"]}
    runs = {}
    for ref in ("toggle", "precomputed"):
        runs[ref] = finetune(str(tiny_dir("qwen2")), data, None, lora=lora, learning_rate=0.02,
                             batch_size=4, seed=1, progress=False, kl_data=kl, kl_weight=1.0,
                             kl_batch_size=3, training_args={"max_steps": 4},
                             kl_reference=ref)
    a, b = runs["toggle"].log, runs["precomputed"].log
    assert [r["kl"] for r in a[1:]] == pytest.approx([r["kl"] for r in b[1:]], rel=1e-4, abs=1e-7)
    assert a[-1]["kl"] > 0  # the adapter moved, so the KL is not trivially zero
    sa = {k: v for k, v in runs["toggle"].model.state_dict().items() if "lora" in k}
    sb = {k: v for k, v in runs["precomputed"].model.state_dict().items() if "lora" in k}
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa)
