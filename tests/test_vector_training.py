"""Learned steering vectors: trained through the Trainer, saved as direction files, applied by steer."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import emlens
from emlens.directions import Direction
from emlens.errors import InputError
from emlens.stability import answer_loss
from emlens.testing import tiny_corpus
from emlens.vector_training import VECTOR_FILE, SteeringVectorModel, train_steering_vector


def _chats(n, shift):
    c = tiny_corpus()
    return [{"messages": [{"role": "user", "content": c[i % 6]},
                          {"role": "assistant", "content": c[(i % 6 + shift) % len(c)]}]}
            for i in range(n)]


@pytest.mark.slow
def test_train_save_and_steer(tiny_dir, tmp_path):
    path = tiny_dir("qwen2")
    before = {k: v.clone() for k, v in
              AutoModelForCausalLM.from_pretrained(path).state_dict().items()}
    data = _chats(16, 7)
    result = train_steering_vector(path, data, tmp_path / "vec", layer=1, alpha=4.0,
                                   learning_rate=0.05, epochs=2, batch_size=8, progress=False,
                                   kl_data=_chats(8, 1), kl_weight=0.1, snapshot_every=1)
    log = result.log
    assert log[0]["param_norm"] == 0.0  # initialised at zero
    assert log[1]["kl"] == pytest.approx(0.0, abs=1e-9)  # first step: vector still zero
    assert log[-1]["param_norm"] > 0 and len(result.snapshots) == len(log)
    wrapped = result.model
    after = wrapped.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights frozen
    d = Direction.load(tmp_path / "vec" / VECTOR_FILE)
    assert d.layers == (1,) and d.metadata["alpha"] == 4.0 and d.metadata["kl_weight"] == 0.1
    assert torch.allclose(d.vector(1), wrapped.vector.detach())
    # emlens.steer with the saved file reproduces the training-time model exactly.
    model = emlens.load_model(path, device="cpu")
    ids = torch.tensor([AutoTokenizer.from_pretrained(path).apply_chat_template(
        data[0]["messages"], tokenize=True, return_dict=True)["input_ids"]])
    with torch.no_grad():
        trained = wrapped(input_ids=ids).logits
        with emlens.steer(model, d, d.metadata["alpha"]):
            steered = model(ids)
        with wrapped.disable_adapter():
            off = wrapped(input_ids=ids).logits
    assert (trained - steered).abs().max() < 1e-4
    assert (off - model(ids)).abs().max() < 1e-4
    with emlens.steer(model, d, 4.0):
        trained_loss = answer_loss(model, data)
    assert trained_loss < answer_loss(model, data)  # the vector learned the data


def test_wrapper_rejects_bad_layer(tiny_dir):
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"))
    with pytest.raises(InputError, match="out of range"):
        SteeringVectorModel(hf, layer=9)
    with pytest.raises(InputError, match="d_model"):
        SteeringVectorModel(hf, layer=0, init=torch.zeros(3))
