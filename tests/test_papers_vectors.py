"""The papers' published steering vectors (.pt dicts) through the three metrics, on a tiny
random model: the path docs/narrow_vs_general.md documents for Qwen2.5 on a GPU."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import emlens
from emlens.directions import Direction
from emlens.stability import (
    answer_loss,
    compare_at_norm,
    perturbation_curve,
    pretraining_kl,
    rescale_curve,
)
from emlens.testing import tiny_corpus

LAYER, ALPHA = 1, 8.0


def _chats(idx):
    c = tiny_corpus()
    return [{"messages": [{"role": "user", "content": c[i]},
                          {"role": "assistant", "content": c[(i + 5) % len(c)]}]} for i in idx]


def _descent_vector(path, data, step):
    """A vector that lowers the answer loss: one plain-PyTorch gradient step from zero at
    LAYER's output (stands in for a trained vector; the files' format is what matters)."""
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    v = torch.zeros(hf.config.hidden_size, requires_grad=True)
    hf.model.layers[LAYER].register_forward_hook(
        lambda m, a, o: (o[0] + ALPHA * v, *o[1:]) if isinstance(o, tuple) else o + ALPHA * v)
    total = 0.0
    for conv in data:
        msgs = conv["messages"]
        prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"]
        full = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
        logits = hf(torch.tensor([full])).logits[0, :-1]
        tgt = torch.tensor(full[1:])
        nll = torch.nn.functional.cross_entropy(logits, tgt, reduction="none")
        total = total + nll[len(prompt) - 1:].mean()
    total.backward()
    g = v.grad.detach()
    return -step * g / g.norm()


@pytest.fixture(scope="module")
def setup(tiny_dir, tmp_path_factory):
    path = tiny_dir("qwen2")
    data = _chats(range(8))
    tmp = tmp_path_factory.mktemp("papers-vectors")
    d_model = AutoModelForCausalLM.from_pretrained(path).config.hidden_size
    files = {}
    for name, idx, step in (("general", range(8), 0.05), ("narrow", range(0, 8, 2), 0.03)):
        v = _descent_vector(path, _chats(idx), step)
        # the papers' format: {steering_vector, layer_idx, d_model, alpha}
        f = tmp / f"{name}_steering_vector.pt"
        torch.save({"steering_vector": v, "layer_idx": LAYER, "d_model": d_model,
                    "alpha": ALPHA}, f)
        files[name] = f
    model = emlens.load_model(path, device="cpu")
    return model, data, files


def test_import_papers_pt(setup):
    _, _, files = setup
    raw = torch.load(files["general"], weights_only=True)
    d = Direction.from_pt(files["general"])
    assert d.layers == (LAYER,) and d.metadata["layer"] == LAYER
    assert d.metadata["alpha"] == ALPHA
    assert torch.equal(d.vector(LAYER), raw["steering_vector"].float())


def test_three_metrics_on_imported_vectors(setup, tmp_path):
    model, data, files = setup
    dg, dn = Direction.from_pt(files["general"]), Direction.from_pt(files["narrow"])

    # efficiency: alpha comes from the file; scale 1 is the vector as published
    curve = rescale_curve(model, data, dg, scales=(0.0, 0.5, 1.0))
    base = answer_loss(model, data)
    with emlens.steer(model, dg, dg.metadata["alpha"]):
        steered = answer_loss(model, data)
    assert curve.loss.iloc[0] == pytest.approx(base, rel=1e-6)
    assert curve.loss.iloc[2] == pytest.approx(steered, rel=1e-6)
    assert steered < base  # the vector lowers the loss, as a trained one does
    norm = float(dn.vector(LAYER).norm())
    cmp = compare_at_norm(model, data, {"general": dg, "narrow": dn}, norms=(norm,))
    assert set(cmp.solution) == {"general", "narrow"}
    assert cmp.set_index("solution").scale["narrow"] == pytest.approx(1.0)

    # stability
    per_seed, summary = perturbation_curve(model, data, dg, epsilons=(0.1, 1.0), seeds=range(2))
    assert len(per_seed) == 4 and summary["n"].tolist() == [2, 2]
    assert all(math.isfinite(x) for x in per_seed.rel_increase)
    assert summary.attrs["loss_base"] == pytest.approx(base, rel=1e-6)

    # pretraining significance, on a text file (documents separated by blank lines)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(tiny_corpus()))
    kl = pretraining_kl(model, {"general": dg, "narrow": dn}, texts=corpus, norms=(0.0, 1.0, 4.0))
    assert set(kl.vector) == {"general", "narrow", "random"}
    assert (kl[kl.norm == 0].kl.abs() < 1e-6).all()
    for _, g in kl.groupby("vector"):
        g = g.sort_values("norm")
        assert g.kl.iloc[-1] > g.kl.iloc[1] > 0


def test_bfloat16_file_imports(setup, tmp_path):
    _, _, files = setup
    raw = torch.load(files["narrow"], weights_only=True)
    f = tmp_path / "bf16.pt"
    torch.save({**raw, "steering_vector": raw["steering_vector"].to(torch.bfloat16)}, f)
    d = Direction.from_pt(f)
    assert d.vectors.dtype == torch.float32
    assert torch.allclose(d.vector(LAYER), raw["steering_vector"], atol=1e-2 * float(
        raw["steering_vector"].abs().max()))
