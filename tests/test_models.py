"""load_model: parity with HF/PEFT, adapters, provenance, sources, and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

import emlens
from emlens.errors import (
    AdapterError,
    EmlensError,
    InputError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from emlens.testing import ARCHITECTURES

from .reference import chat_ids, hf_forward

TOL = 1e-4


def _reference_model(base, adapters=(), merged=False):
    """The independent reference: HF eager, with PEFT adapters applied by PEFT itself."""
    hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    if not adapters:
        return hf.eval()
    if merged:
        for a in adapters:
            hf = PeftModel.from_pretrained(hf, a).merge_and_unload()
        return hf.eval()
    pm = PeftModel.from_pretrained(hf, adapters[0], adapter_name="a0")
    for i, a in enumerate(adapters[1:], 1):
        pm.load_adapter(a, adapter_name=f"a{i}")
    if len(adapters) > 1:
        pm.base_model.set_adapter([f"a{i}" for i in range(len(adapters))])
    return pm.eval()


def _assert_parity(model, ref, tokenizer):
    ids = chat_ids(tokenizer)
    ref_logits, ref_blocks, ref_hidden = hf_forward(ref, ids)
    n_layers = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_post" for l in range(n_layers)] + ["blocks.0.hook_resid_pre"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    logit_err = (logits - ref_logits).abs().max().item()
    assert logit_err < TOL, logit_err
    errs = []
    for layer in range(n_layers):
        ours = cache[f"blocks.{layer}.hook_resid_post"]
        errs.append((ours - ref_blocks[layer]).abs().max().item())
        if layer < n_layers - 1:  # HF's last hidden state has the final norm applied
            errs.append((ours - ref_hidden[layer + 1]).abs().max().item())
    errs.append((cache["blocks.0.hook_resid_pre"] - ref_hidden[0]).abs().max().item())
    assert max(errs) < TOL, errs
    # The residual stream is not trivially small (a near-zero stream would pass anything).
    assert cache[f"blocks.{n_layers - 1}.hook_resid_post"].abs().max() > 0.1
    return logit_err, max(errs)


PARITY_CASES = [(arch, kind, merge) for arch in ARCHITECTURES
                for kind, merge in [(None, True), ("rank1", True), ("rank1", False),
                                    ("all-linear", True), ("all-linear", False)]]


@pytest.mark.parametrize("arch,kind,merge", PARITY_CASES,
                         ids=[f"{a}-{k or 'base'}-{'merged' if m else 'live'}"
                              for a, k, m in PARITY_CASES])
def test_parity_with_hf_and_peft(arch, kind, merge, tiny_dir, tiny_adapter):
    base = tiny_dir(arch)
    adapters = [tiny_adapter(arch, kind)] if kind else []
    if arch == "gpt2" and kind == "all-linear" and not merge:
        # The bridge rebuilds GPT-2's fused c_attn from raw weights, so a live LoRA on it
        # would silently do nothing: load_model must refuse instead of returning that.
        with pytest.raises(UnsupportedModelError, match="merge=True"):
            emlens.load_model(base, adapter=adapters, merge=False, device="cpu")
        return
    model = emlens.load_model(base, adapter=adapters or None, merge=merge, device="cpu")
    ref = _reference_model(base, adapters, merged=False)
    tokenizer = AutoTokenizer.from_pretrained(base)
    _assert_parity(model, ref, tokenizer)
    if adapters:
        # The adapter really changes the model (else parity would prove nothing about it).
        plain = _reference_model(base)
        ids = chat_ids(tokenizer)
        assert (hf_forward(plain, ids)[0] - hf_forward(ref, ids)[0]).abs().max() > 1e-2
        assert (model.emlens_peft is None) == merge


def test_adapter_list_applied_in_order(tiny_dir, tiny_adapter):
    base = tiny_dir("llama")
    adapters = [tiny_adapter("llama", "rank1"), tiny_adapter("llama", "all-linear")]
    tokenizer = AutoTokenizer.from_pretrained(base)
    merged = emlens.load_model(base, adapter=adapters, device="cpu")
    _assert_parity(merged, _reference_model(base, adapters, merged=True), tokenizer)
    live = emlens.load_model(base, adapter=adapters, merge=False, device="cpu")
    _assert_parity(live, _reference_model(base, adapters, merged=False), tokenizer)
    assert [a["id"] for a in merged.emlens_provenance["adapters"]] == [str(a) for a in adapters]


def test_hook_sites_cache_and_hooks(tiny_dir):
    model = emlens.load_model(tiny_dir("qwen2"), device="cpu")
    ids = chat_ids(model.tokenizer)
    sites = ["resid_pre", "resid_post", "attn_out", "mlp_out"]
    names = [emlens.models.hook_name(l, s) for l in range(model.cfg.n_layers) for s in sites]
    logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    for layer in range(model.cfg.n_layers):
        pre, post = cache[f"blocks.{layer}.hook_resid_pre"], cache[f"blocks.{layer}.hook_resid_post"]
        attn, mlp = cache[f"blocks.{layer}.hook_attn_out"], cache[f"blocks.{layer}.hook_mlp_out"]
        assert pre.shape == post.shape == attn.shape == mlp.shape == (*ids.shape, model.cfg.d_model)
        # Qwen2 blocks are pre-norm: the stream is the sum of what the block writes.
        assert (pre + attn + mlp - post).abs().max() < 1e-4
    # A hook that edits hook_mlp_out changes the output; the context manager removes it.
    def zero(act, hook):
        return torch.zeros_like(act)

    with model.hooks(fwd_hooks=[("blocks.1.hook_mlp_out", zero)]):
        edited = model(ids)
    assert (edited - logits).abs().max() > 1e-3
    assert torch.allclose(model(ids), logits)


def test_provenance_records_hashes_and_settings(tiny_dir, tiny_adapter):
    base, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    model = emlens.load_model(base, adapter=adapter, dtype="float32", device="cpu")
    prov = model.emlens_provenance
    digest = hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()
    assert prov["base"]["id"] == str(base)
    assert prov["base"]["files"]["model.safetensors"] == f"sha256:{digest}"
    adigest = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert prov["adapters"][0]["files"]["adapter_model.safetensors"] == f"sha256:{adigest}"
    assert prov["adapters"][0]["r"] == 1
    assert prov["dtype"] == "float32" and prov["merged"] is True
    assert prov["architecture"] == "Qwen2ForCausalLM"
    assert prov["n_layers"] == 3 and prov["d_model"] == 64
    assert prov["emlens_version"] == emlens.__version__
    assert prov["transformer_lens_version"].startswith("4.")
    json.dumps(prov)  # it must go into file metadata as JSON


def test_bfloat16_load(tiny_dir):
    model = emlens.load_model(tiny_dir("qwen2"), dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.emlens_provenance["dtype"] == "bfloat16"
    with pytest.raises(InputError, match="dtype"):
        emlens.load_model(tiny_dir("qwen2"), dtype="int8", device="cpu")


def test_model_objects(tiny_dir, tiny_adapter):
    base, adapter = tiny_dir("gemma3"), tiny_adapter("gemma3", "rank1")
    tokenizer = AutoTokenizer.from_pretrained(base)
    hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    model = emlens.load_model(hf, adapter=adapter, device="cpu")
    _assert_parity(model, _reference_model(base, [adapter]), tokenizer)
    assert model.emlens_provenance["base"]["id"] == str(base)
    # A PeftModel object: merged or live.
    for merge in (True, False):
        pm = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager"), adapter)
        model = emlens.load_model(pm, merge=merge, tokenizer=tokenizer, device="cpu")
        _assert_parity(model, _reference_model(base, [adapter]), tokenizer)


def test_adapter_directory_as_model_loads_its_base(tiny_dir, tiny_adapter):
    base, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    model = emlens.load_model(adapter, device="cpu")
    assert model.emlens_provenance["base"]["id"] == str(base)
    assert model.emlens_provenance["adapters"][0]["id"] == str(adapter)
    _assert_parity(model, _reference_model(base, [adapter]), AutoTokenizer.from_pretrained(base))


def test_adapter_folder_naming_its_base_relatively_finds_it_beside_itself(
        tiny_dir, tiny_adapter, tmp_path, monkeypatch):
    """An adapter whose ``base_model_name_or_path`` is a bare folder name (as the pocket
    organism ships: ``em/`` names ``"chat"``) loads from any working directory when that
    folder sits beside it."""
    base, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    shipped = tmp_path / "weights"
    shutil.copytree(base, shipped / "chat")
    shutil.copytree(adapter, shipped / "em")
    cfg_path = shipped / "em" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "base_model_name_or_path": "chat"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = emlens.load_model(shipped / "em", device="cpu")
    assert model.emlens_provenance["base"]["id"] == str(shipped / "chat")
    _assert_parity(model, _reference_model(base, [adapter]), AutoTokenizer.from_pretrained(base))
    cfg_path.write_text(json.dumps({**cfg, "base_model_name_or_path": "no-such-folder/x"}))
    with pytest.raises(ModelNotFoundError, match="no-such-folder/x"):
        emlens.load_model(shipped / "em", device="cpu")


def _fake_hub_cache(src, repo_id: str, commit: str = "a" * 40):
    """Lay out ``src`` as the HF cache does after a download of ``repo_id``."""
    import os

    cache = os.environ["HF_HUB_CACHE"]
    repo = f"models--{repo_id.replace('/', '--')}"
    snap = f"{cache}/{repo}/snapshots/{commit}"
    shutil.copytree(src, snap, dirs_exist_ok=True)
    os.makedirs(f"{cache}/{repo}/refs", exist_ok=True)
    with open(f"{cache}/{repo}/refs/main", "w") as f:
        f.write(commit)
    return commit


def test_cached_hub_id_loads_offline(tiny_dir, tiny_adapter):
    commit = _fake_hub_cache(tiny_dir("llama"), "emlens-test/tiny-llama")
    acommit = _fake_hub_cache(tiny_adapter("llama", "rank1"), "emlens-test/tiny-llama-em", "b" * 40)
    model = emlens.load_model("emlens-test/tiny-llama", adapter="emlens-test/tiny-llama-em",
                              device="cpu")
    prov = model.emlens_provenance
    assert prov["base"] == {**prov["base"], "id": "emlens-test/tiny-llama", "revision": commit}
    assert prov["adapters"][0]["revision"] == acommit
    _assert_parity(model, _reference_model(tiny_dir("llama"), [tiny_adapter("llama", "rank1")]),
                   AutoTokenizer.from_pretrained(tiny_dir("llama")))


def test_uncached_hub_id_offline_names_the_id():
    with pytest.raises(ModelNotFoundError) as err:
        emlens.load_model("ModelOrganismsForEM/not-cached-model", device="cpu")
    assert "ModelOrganismsForEM/not-cached-model" in str(err.value)
    assert "HF_HUB_OFFLINE" in str(err.value)


# --------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        emlens.load_model(str(tmp_path / "nowhere" / "model"), device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        emlens.load_model("./no-such-dir", device="cpu")


def test_directory_without_config(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        emlens.load_model(tmp_path, device="cpu")


def test_adapter_with_wrong_shapes(tiny_dir, tiny_adapter):
    wide = tiny_dir("qwen2", d_mlp=96)  # same module names, other MLP width
    with pytest.raises(AdapterError, match="does not fit the model's shapes") as err:
        emlens.load_model(wide, adapter=tiny_adapter("qwen2", "rank1"), device="cpu")
    assert "down_proj" in str(err.value) and "trained on" in str(err.value)


def test_adapter_targeting_missing_modules(tiny_dir, tiny_adapter):
    with pytest.raises(AdapterError, match="targets modules the model lacks") as err:
        emlens.load_model(tiny_dir("gpt2"), adapter=tiny_adapter("llama", "rank1"), device="cpu")
    assert "down_proj" in str(err.value)


def test_not_an_adapter(tiny_dir):
    with pytest.raises(AdapterError, match="full model"):
        emlens.load_model(tiny_dir("qwen2"), adapter=tiny_dir("llama"), device="cpu")


def test_unsupported_architecture(tmp_path, tiny_dir):
    d = tmp_path / "bert-like"
    shutil.copytree(tiny_dir("qwen2"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="BertForMaskedLM"):
        emlens.load_model(d, device="cpu")


def test_remote_code_needs_consent(tmp_path, tiny_dir):
    d = tmp_path / "custom"
    shutil.copytree(tiny_dir("qwen2"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="pocketwizard",
               auto_map={"AutoModelForCausalLM": "modeling_pocket.PocketForCausalLM"})
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="trust_remote_code=True"):
        emlens.load_model(d, device="cpu")


def test_truncated_adapter_weights(tmp_path, tiny_adapter):
    d = tmp_path / "broken"
    shutil.copytree(tiny_adapter("qwen2", "rank1"), d)
    data = (d / "adapter_model.safetensors").read_bytes()
    (d / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    base = json.loads((d / "adapter_config.json").read_text())["base_model_name_or_path"]
    with pytest.raises(AdapterError, match="truncated"):
        emlens.load_model(base, adapter=d, device="cpu")


def test_errors_share_one_base():
    for cls in (AdapterError, ModelNotFoundError, UnsupportedModelError, InputError):
        assert issubclass(cls, EmlensError)
    with pytest.raises(InputError):
        emlens.load_model(42)


def test_loading_is_quiet_and_restores_third_party_settings(tiny_dir, tiny_adapter, capsys):
    """No transformers "Loading weights" bar and no peft/transformers deprecation notice
    while load_model loads (a plain transformers + PEFT load, the reference, draws the bar
    and, with peft 0.21 / transformers 5.24, warns that is_gradient_checkpointing is deprecated);
    the progress-bar switches and the warning filters are as before afterwards."""
    import warnings

    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    base, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    capsys.readouterr()

    def loud(load):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            load()
        return capsys.readouterr().err, [w for w in seen
                                         if issubclass(w.category, (FutureWarning,
                                                                    DeprecationWarning))]

    err, _ = loud(lambda: PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), adapter))
    assert "Loading weights" in err  # the reference is loud: the check below means something
    before = (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled(),
              list(warnings.filters))
    err, ours = loud(lambda: emlens.load_model(base, adapter=adapter, device="cpu"))
    assert "Loading weights" not in err, err
    assert not ours, [str(w.message) for w in ours]
    assert (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled(),
            list(warnings.filters)) == before
