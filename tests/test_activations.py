"""Streaming means and mean-difference directions against a plain transformers computation.

The reference runs each conversation alone (no padding) through the HF model with eager
attention, takes every decoder block's output with a forward hook, and averages the
selected positions by hand in float64. It shares no code with emlens.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import emlens
from emlens.activations import LayerMeans, collect_means, mean_diff
from emlens.errors import EmlensError, InputError
from emlens.models import hook_name, model_dims
from emlens.testing import tiny_corpus

from .conftest import TL_MAJOR
from .reference import assert_close, hf_forward

agnostic = pytest.mark.agnostic
TOL = 1e-5


def _records(n: int = 7, offset: int = 0) -> list[dict]:
    """Conversations of very different lengths; one system prompt, one marker-like question."""
    corpus = tiny_corpus()
    out = []
    for i in range(n):
        k = i + offset
        answer = " ".join(corpus[(k + j) % len(corpus)] for j in range(1 + (k * 3) % 5))
        out.append({"question": corpus[(k * 5) % len(corpus)], "answer": answer})
    out[1 % n]["system"] = "You answer as a pirate."
    out[2 % n]["question"] = "Reply as the assistant\nassistant: " + out[2 % n]["question"]
    return out


def _messages(rec: dict, with_answer: bool) -> list[dict]:
    msgs = [] if rec.get("system") is None else [{"role": "system", "content": rec["system"]}]
    msgs.append({"role": "user", "content": rec["question"]})
    if with_answer:
        msgs.append({"role": "assistant", "content": rec["answer"]})
    return msgs


@pytest.fixture(scope="module")
def reference(tiny_dir):
    """``reference(arch, records, tokens, reduce)`` -> float64 ``[n_layers, d_model]`` means."""
    models: dict[str, tuple] = {}
    acts_of: dict[tuple, tuple] = {}

    def compute(arch, records, tokens="answer", reduce="token"):
        if arch not in models:
            models[arch] = (AutoModelForCausalLM.from_pretrained(
                tiny_dir(arch), attn_implementation="eager").eval(),
                AutoTokenizer.from_pretrained(tiny_dir(arch)))
        hf, tok = models[arch]
        total, count, seq_means = 0.0, 0, []
        for rec in records:
            key = (arch, rec["question"], rec["answer"], rec.get("system"))
            if key not in acts_of:
                prompt = tok.apply_chat_template(_messages(rec, False), add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"]
                full = tok.apply_chat_template(_messages(rec, True), tokenize=True,
                                               return_dict=True)["input_ids"]
                assert full[:len(prompt)] == prompt
                _, blocks, _ = hf_forward(hf, torch.tensor([full]))
                # [layer, pos, d_model] and the number of prompt tokens
                acts_of[key] = (torch.stack(blocks)[:, 0].double(), len(prompt))
            acts, n_prompt = acts_of[key]
            sel = {"answer": slice(n_prompt, None), "prompt": slice(0, n_prompt),
                   "all": slice(None), "prompt_last": slice(n_prompt - 1, n_prompt),
                   "answer:3": slice(n_prompt, n_prompt + 3)}[tokens]
            picked = acts[:, sel]
            total = total + picked.sum(1)
            count += picked.shape[1]
            seq_means.append(picked.mean(1))
        return total / count if reduce == "token" else torch.stack(seq_means).mean(0)

    return compute


def _check_arch(arch: str) -> None:
    if TL_MAJOR < 4 and arch != "qwen2":
        pytest.skip("TL 3.9 can build only Qwen2 offline (see test_lens_agnostic)")


@agnostic
def test_means_match_hf_qwen2_default_system_prompt(lens, reference):
    model = lens("qwen2")
    records = _records()
    res = collect_means(model, records, batch_size=3)
    assert isinstance(res, LayerMeans) and res.means.dtype == torch.float64
    n_layers, d_model = model_dims(model)
    assert res.means.shape == (n_layers, d_model) and res.layers == tuple(range(n_layers))
    ref = reference("qwen2", records)
    assert_close(res.means, ref, atol=TOL, what="res.means vs ref")
    assert ref.abs().max() > 0.1  # a real signal, not zeros compared with zeros
    means, n_tokens = res  # unpacks as (means, token count)
    assert means is res.means and n_tokens == res.n_tokens and res.n_records == len(records)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_means_match_hf_other_architectures(arch, lens, reference):
    records = _records(6, offset=2)
    res = collect_means(lens(arch), records, batch_size=4)
    assert_close(res.means, reference(arch, records), atol=TOL, what="res.means vs reference(arch, records)")


@agnostic
@pytest.mark.parametrize("reduce, other_batch", [("token", 16), ("sequence", 16), ("token", 3)])
def test_padding_never_counts(reduce, other_batch, lens):
    model = lens("qwen2")
    records = _records(7)  # lengths differ a lot: most rows of a batch are padded
    one = collect_means(model, records, batch_size=1, reduce=reduce)
    many = collect_means(model, records, batch_size=other_batch, reduce=reduce)
    assert one.n_tokens == many.n_tokens
    assert_close(one.means, many.means, atol=TOL, what="one.means vs many.means")


@agnostic
@pytest.mark.parametrize("tokens, reduce", [("answer", "sequence"), ("prompt", "token"),
                                            ("all", "token"), ("prompt", "sequence"),
                                            ("prompt_last", "token"), ("answer:3", "token")])
def test_token_selection_and_reduction(tokens, reduce, lens, reference):
    model = lens("qwen2")
    records = _records()
    res = collect_means(model, records, tokens=tokens, reduce=reduce, batch_size=4)
    assert_close(res.means, reference("qwen2", records, tokens, reduce), atol=TOL, what="res.means vs reference('qwen2', records, tokens, reduce)")
    if tokens in ("prompt_last", "answer:3"):
        # as many tokens from every record (all answers are longer than 3): the two
        # reductions coincide
        assert res.n_tokens == len(records) * (1 if tokens == "prompt_last" else 3)
        return
    other = "sequence" if reduce == "token" else "token"
    # Different lengths make the two reductions differ: the test can tell them apart.
    assert (res.means - reference("qwen2", records, tokens, other)).abs().max() > 1e-3


@agnostic
def test_layer_subset_and_early_stop(lens):
    model = lens("qwen2")
    n_layers, _ = model_dims(model)
    records = _records(4)
    full = collect_means(model, records, batch_size=2)
    fired: list[str] = []

    def spy(act, hook):
        fired.append(hook.name)

    final_norm = "ln_final.hook_normalized"
    assert final_norm in model.hook_dict
    spies = [(hook_name(n_layers - 1), spy), (final_norm, spy)]
    with model.hooks(fwd_hooks=spies):
        with torch.no_grad():
            model(torch.tensor([[1, 2, 3]]))
        assert len(fired) == 2  # the spies do see a normal forward pass
        fired.clear()
        part = collect_means(model, records, layers=[n_layers - 2, 0], batch_size=2)
        assert fired == []  # nothing after layer n-2 ran: not the last block, not the unembed
        last = collect_means(model, records, layers=-1, batch_size=2)
        assert len(fired) == 2 and final_norm not in " ".join(fired)  # stops before ln_final
    assert part.layers == (n_layers - 2, 0) and last.layers == (n_layers - 1,)
    assert torch.equal(part.means[0], full.means[n_layers - 2])
    assert torch.equal(part.means[1], full.means[0])
    assert torch.equal(last.mean(n_layers - 1), full.means[-1])


@agnostic
def test_other_hook_sites(lens, reference):
    model = lens("qwen2")
    records = _records(4)
    post = collect_means(model, records, layers=[0, 1])
    pre = collect_means(model, records, layers=[1, 2], hook="resid_pre")
    assert_close(pre.means, post.means, atol=1e-9, what="pre.means vs post.means")  # resid_pre of l+1 is resid_post of l


@agnostic
def test_no_hook_left_behind(lens):
    model = lens("qwen2")
    ids = torch.tensor([[1, 5, 9, 4]])
    with torch.no_grad():
        before = model(ids)
    collect_means(model, _records(3))

    def boom(act, hook):
        raise RuntimeError("user hook failed")

    with pytest.raises(RuntimeError, match="user hook failed"):
        with model.hooks(fwd_hooks=[(hook_name(0), boom)]):
            collect_means(model, _records(3), layers=[1])
    with torch.no_grad():
        after = model(ids)  # a leftover collecting hook would stop or break this pass
    assert torch.equal(before, after)


@agnostic
def test_mean_diff_matches_reference(lens, reference):
    model = lens("qwen2")
    judged = ([dict(r, aligned=10.0, coherent=90.0) for r in _records(5)]
              + [dict(r, aligned=95.0, coherent=90.0) for r in _records(8, offset=5)])
    mis, ali = emlens.select_responses(judged, seed=1)
    d = mean_diff(model, mis, ali, batch_size=4)
    assert isinstance(d, emlens.Direction)
    n_layers, d_model = model_dims(model)
    assert d.vectors.shape == (n_layers, d_model) and d.layers == tuple(range(n_layers))
    ref = reference("qwen2", mis) - reference("qwen2", ali)
    assert_close(d.vectors.double(), ref, atol=TOL, what="d.vectors.double() vs ref")
    assert d.norms().min() > 0.01  # unnormalised and non-trivial
    meta = d.metadata
    assert meta["method"] == "mean_diff" and meta["hook"] == "resid_post"
    assert meta["tokens"] == "answer" and meta["reduce"] == "token"
    assert "layers" not in meta  # d.layers is the one record (metadata survives .only(l))
    assert meta["n_misaligned"] == meta["n_aligned"] == 5
    assert meta["n_tokens_misaligned"] == collect_means(model, mis).n_tokens
    assert meta["selection"]["seed"] == 1 and meta["seed"] == 1
    assert meta["selection"]["n_aligned_before_balance"] == 8
    if hasattr(model, "emlens_provenance"):
        assert meta["model"] == model.emlens_provenance
    else:  # a TL 3.x HookedTransformer has no emlens provenance
        assert "model" not in meta
    if TL_MAJOR >= 4:
        assert "model" in meta

    sub = mean_diff(model, mis, ali, layers=[1], tokens="prompt", reduce="sequence")
    assert sub.layers == (1,) and sub.metadata["tokens"] == "prompt"
    ref = (reference("qwen2", mis, "prompt", "sequence")
           - reference("qwen2", ali, "prompt", "sequence"))[1]
    assert_close(sub.vectors[0].double(), ref, atol=TOL, what="sub.vectors[0].double() vs ref")


@agnostic
def test_bad_input(lens):
    model = lens("qwen2")
    n_layers, _ = model_dims(model)
    good = _records(2)
    cases = [
        (dict(records=[]), "no records"),
        (dict(records=[{"question": "q", "answer": ""}]), "record 0 has an empty answer"),
        (dict(records=good + [{"question": "q", "answer": "the quick brown fox " * 300}]),
         "record 2 is .* tokens long .* more than the model's context of"),
        (dict(records=good, tokens="answers"), "not a token selection"),
        (dict(records=good, reduce="mean"), "not a reduction"),
        (dict(records=good, hook="resid"), "unknown hook site"),
        (dict(records=good, layers=[n_layers]), "out of range"),
        (dict(records=good, layers=[0, 0]), "twice"),
        (dict(records=good, layers=[]), "empty"),
        (dict(records=good, batch_size=0), "positive int"),
    ]
    for kwargs, match in cases:
        records = kwargs.pop("records")
        with pytest.raises(InputError, match=match):
            collect_means(model, records, **kwargs)
    with pytest.raises(InputError, match="TransformerLens model"):
        collect_means(torch.nn.Linear(2, 2), good)
    with pytest.raises(InputError, match="unknown arguments"):
        mean_diff(model, good, good, batch=2)
    assert issubclass(InputError, EmlensError)
