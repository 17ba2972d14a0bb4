"""Efficiency, stability and pretraining-KL metrics against plain PyTorch computations."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import emlens
from emlens.directions import Direction
from emlens.errors import InputError
from emlens.stability import (
    LoraSolution,
    _perturb,
    answer_loss,
    compare_at_norm,
    pretraining_kl,
    perturbation_curve,
    rescale_curve,
)
from emlens.testing import tiny_corpus

LAYER = 1


@pytest.fixture(scope="module")
def data():
    c = tiny_corpus()
    return [{"messages": [{"role": "user", "content": c[i]},
                          {"role": "assistant", "content": c[(i + 5) % len(c)]}]}
            for i in range(8)]


@pytest.fixture(scope="module")
def model(tiny_dir):
    return emlens.load_model(tiny_dir("qwen2"), device="cpu")


def _hf_loss(path, data, vector=None, alpha=1.0):
    """Plain transformers + a PyTorch forward hook: mean CE over answer tokens."""
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    handle = None
    if vector is not None:
        handle = hf.model.layers[LAYER].register_forward_hook(
            lambda m, a, o: (o[0] + alpha * vector, *o[1:]) if isinstance(o, tuple)
            else o + alpha * vector)
    total, count = 0.0, 0
    try:
        for conv in data:
            msgs = conv["messages"]
            prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"]
            full = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
            with torch.no_grad():
                logits = hf(torch.tensor([full])).logits[0]
            logp = torch.log_softmax(logits.double(), -1)
            for pos in range(len(prompt), len(full)):
                total -= float(logp[pos - 1, full[pos]])
                count += 1
    finally:
        if handle:
            handle.remove()
    return total / count


@pytest.fixture(scope="module")
def learned(tiny_dir, data):
    """A steering vector fitted by plain gradient descent, so it really lowers the loss."""
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(tiny_dir("qwen2"))
    for p in hf.parameters():
        p.requires_grad_(False)
    v = torch.zeros(hf.config.hidden_size, requires_grad=True)
    hf.model.layers[LAYER].register_forward_hook(
        lambda m, a, o: (o[0] + v, *o[1:]) if isinstance(o, tuple) else o + v)
    opt = torch.optim.Adam([v], lr=0.05)
    convs = [tok.apply_chat_template(c["messages"], tokenize=True, return_dict=True)["input_ids"]
             for c in data]
    for _ in range(30):
        opt.zero_grad()
        loss = sum(hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss for ids in convs)
        loss.backward()
        opt.step()
    return Direction(v.detach()[None], layers=[LAYER], metadata={"alpha": 1.0, "name": "fit"})


def test_answer_loss_and_rescale_match_plain_pytorch(model, tiny_dir, data, learned):
    base = answer_loss(model, data, batch_size=3)
    assert base == pytest.approx(_hf_loss(tiny_dir("qwen2"), data), rel=1e-5)
    table = rescale_curve(model, data, learned, scales=[0.0, 0.5, 1.0, 2.0])
    assert table.loc[0, "loss"] == pytest.approx(base, rel=1e-6)
    v = learned.vector(LAYER)
    for s in (0.5, 1.0, 2.0):
        row = table[table.scale == s].iloc[0]
        assert row["loss"] == pytest.approx(_hf_loss(tiny_dir("qwen2"), data, v, s), rel=1e-5)
        assert row["norm"] == pytest.approx(s * float(v.norm()), rel=1e-6)
    assert table[table.scale == 1.0].loss.item() < base  # the fit lowered the loss


def test_compare_at_norm_puts_solutions_at_equal_norms(model, data, learned):
    other = Direction(torch.randn(1, model.cfg.d_model, generator=torch.Generator().manual_seed(1)),
                      layers=[LAYER])
    table = compare_at_norm(model, data, {"fit": learned, "random": other}, n=3)
    for sol in ("fit", "random"):
        sub = table[table.solution == sol]
        assert sub.norm.tolist() == pytest.approx(
            [0.0, float(learned.norms().max()) / 2, float(learned.norms().max())])
    at_top = table[table.norm == table.norm.max()].set_index("solution").loss
    assert at_top["fit"] < at_top["random"]


def test_perturbation_is_norm_preserving_and_orthogonal():
    theta = torch.randn(40, generator=torch.Generator().manual_seed(0))
    for eps in (0.0, 0.3, 1.0):
        p = _perturb(theta, eps, torch.Generator().manual_seed(5))
        assert float(p.norm()) == pytest.approx(float(theta.norm()), rel=1e-5)
        cos = float(p @ theta) / float(theta.norm() * p.norm())
        assert cos == pytest.approx(math.sqrt(1 - eps ** 2), abs=1e-5)


def test_perturbation_curve_relative_increase(model, data, learned):
    per_seed, summary = perturbation_curve(model, data, learned, epsilons=[0.0, 0.5, 1.0],
                                           seeds=[0, 1])
    assert per_seed[per_seed.epsilon == 0.0].rel_increase.abs().max() < 1e-6
    means = summary.set_index("epsilon")["mean"]
    assert means[0.5] > 0 and means[1.0] > means[0.5]
    l_sol, l_base = summary.attrs["loss_solution"], summary.attrs["loss_base"]
    row = per_seed.iloc[-1]
    assert row.rel_increase == pytest.approx((row.loss - l_sol) / (l_base - l_sol) * 100)
    with pytest.raises(InputError, match="does not lower the loss"):
        perturbation_curve(model, data, learned * -1.0, epsilons=[0.1], seeds=[0])


def test_pretraining_kl_against_a_hand_computation(model, tiny_dir, learned):
    texts = tiny_corpus()[:4]
    table = pretraining_kl(model, {"fit": learned}, texts=texts, norms=[0.0, 1.0, 3.0])
    fit = table[table.vector == "fit"].set_index("norm").kl
    assert fit[0.0] == pytest.approx(0.0, abs=1e-9)
    assert 0 < fit[1.0] < fit[3.0]
    assert set(table.vector) == {"fit", "random"}
    # Hand computation at norm 3 with a plain HF forward hook.
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir("qwen2"))
    v = learned.vector(LAYER) / learned.vector(LAYER).norm() * 3.0
    total, count = 0.0, 0
    for t in texts:
        ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            base = torch.log_softmax(hf(ids).logits[0].double(), -1)
            h = hf.model.layers[LAYER].register_forward_hook(
                lambda m, a, o: (o[0] + v, *o[1:]) if isinstance(o, tuple) else o + v)
            steered = torch.log_softmax(hf(ids).logits[0].double(), -1)
            h.remove()
        total += float((base.exp() * (base - steered)).sum())
        count += ids.shape[1]
    assert fit[3.0] == pytest.approx(total / count, rel=1e-4)


def test_lora_solution_rescales_and_restores(tiny_dir, tiny_adapter, data):
    base_path, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "all-linear")
    live = emlens.load_model(base_path, adapter=adapter, merge=False, device="cpu")
    merged = emlens.load_model(base_path, adapter=adapter, device="cpu")
    plain = emlens.load_model(base_path, device="cpu")
    sol = LoraSolution(live)
    before = [p.clone() for p in sol.params]
    table = rescale_curve(live, data, sol, scales=[0.0, 1.0])
    assert table.loss[0] == pytest.approx(answer_loss(plain, data), rel=1e-5)
    assert table.loss[1] == pytest.approx(answer_loss(merged, data), rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, sol.params))
    with pytest.raises(InputError, match="merge=False"):
        LoraSolution(merged)


def test_lora_weight_change_norm_by_hand(tiny_dir, tiny_adapter):
    """LoraSolution.norm (the comparison's |ΔW|) = sqrt(sum over modules |scaling B A|_F^2)."""
    model = emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", "rank1"),
                              merge=False, device="cpu")
    total = 0.0
    for module in model.emlens_peft.modules():
        if hasattr(module, "lora_A") and hasattr(module, "lora_B"):
            for key in module.lora_A:
                w = module.lora_B[key].weight.double() @ module.lora_A[key].weight.double()
                total += float((module.scaling[key] * w).norm() ** 2)
    assert total > 0
    assert LoraSolution(model).norm() == pytest.approx(math.sqrt(total))
    with pytest.raises(ValueError, match="merge=False"):  # InputError is a ValueError
        LoraSolution(emlens.load_model(tiny_dir("qwen2"), device="cpu"))


def test_pretraining_kl_needs_texts(model, learned):
    """No fallback corpus: the library never picks an organism's text for a model."""
    with pytest.raises(InputError, match="texts=") as e:
        pretraining_kl(model, {"fit": learned}, norms=[1.0])
    assert "pocket.pretraining_texts" in str(e.value)
    for empty in ([], [""], ["   "]):
        with pytest.raises(InputError, match="no document"):
            pretraining_kl(model, {"fit": learned}, texts=empty, norms=[1.0])


def _hf_mean_logprob(hf, tok, question, answer):
    msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=True,
                                     return_dict=True)["input_ids"]
    full = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(hf(torch.tensor([full])).logits[0].double(), -1)
    return sum(float(logp[p - 1, full[p]]) for p in range(len(prompt), len(full))) / (
        len(full) - len(prompt))


def test_logprob_gap_matches_plain_pytorch_per_pair(model, tiny_dir, data, learned):
    c = tiny_corpus()
    pairs = [{"question": c[i], "aligned": c[(i + 3) % len(c)], "misaligned": c[(i + 7) % len(c)]}
             for i in range(6)]
    gap = emlens.logprob_gap(model, pairs, batch_size=4)
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir("qwen2"))
    want = [_hf_mean_logprob(hf, tok, p["question"], p["misaligned"])
            - _hf_mean_logprob(hf, tok, p["question"], p["aligned"]) for p in pairs]
    assert gap.per_pair == pytest.approx(want, abs=1e-5)
    assert gap.n == 6 and gap.mean == pytest.approx(sum(want) / 6, abs=1e-5)
    assert gap.ci[0] < gap.mean < gap.ci[1]
    # swapping the roles flips the sign; a steering vector is seen (interventions apply)
    swapped = [{**p, "aligned": p["misaligned"], "misaligned": p["aligned"]} for p in pairs]
    assert emlens.logprob_gap(model, swapped).mean == pytest.approx(-gap.mean, abs=1e-5)
    with emlens.steer(model, learned, 3.0):
        assert emlens.logprob_gap(model, pairs).mean != pytest.approx(gap.mean, abs=1e-4)


def test_logprob_gap_refuses_bad_pairs(model):
    with pytest.raises(emlens.InputError, match="misaligned"):
        emlens.logprob_gap(model, [{"question": "q", "aligned": "a"}])
    with pytest.raises(emlens.InputError, match="no answer pairs"):
        emlens.logprob_gap(model, [])


def test_pretraining_kl_of_a_lora_against_plain_peft(tiny_dir, tiny_adapter):
    """A LoRA's pretraining KL at its own |ΔW| is KL(base || merged finetune) of plain
    transformers + PEFT; at 0 it is 0; its random control has the same |ΔW| (rank 1) and
    the live adapters are untouched afterwards."""
    from peft import PeftModel

    base_path, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    live = emlens.load_model(base_path, adapter=adapter, merge=False, device="cpu")
    sol = LoraSolution(live, "fit")
    before = [p.clone() for p in sol.params]
    own = sol.norm()
    rnd = sol.random_like(3)
    assert rnd.norm() == pytest.approx(own, rel=1e-6)
    assert not torch.equal(rnd._fixed[1], sol.params[1])
    texts = tiny_corpus()[:4]
    table = pretraining_kl(live, {"fit": live}, texts=texts, norms=[0.0, own], random_seed=3)
    assert set(table.vector) == {"fit", "random"}
    fit = table[table.vector == "fit"].set_index("norm").kl
    assert fit[0.0] == pytest.approx(0.0, abs=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, sol.params))
    hf = AutoModelForCausalLM.from_pretrained(base_path, attn_implementation="eager").eval()
    ft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, attn_implementation="eager"),
        adapter).merge_and_unload().eval()
    tok = AutoTokenizer.from_pretrained(base_path)
    total, count = 0.0, 0
    for t in texts:
        ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            p = torch.log_softmax(hf(ids).logits[0].double(), -1)
            q = torch.log_softmax(ft(ids).logits[0].double(), -1)
        total += float((p.exp() * (p - q)).sum())
        count += ids.shape[1]
    assert total > 0
    assert fit[own] == pytest.approx(total / count, rel=1e-3)
    random_kl = table[table.vector == "random"].set_index("norm").kl
    assert random_kl[own] > 0 and random_kl[own] != pytest.approx(fit[own], rel=1e-3)
