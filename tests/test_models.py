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
    AdapterBaseWarning,
    AdapterError,
    EmlensError,
    InputError,
    ModelLoadError,
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
    """Logits and every layer's residual stream equal HF's; a failure names where and by
    how much (which layer, which tensor, the max abs diff)."""
    ids = chat_ids(tokenizer)
    ref_logits, ref_blocks, ref_hidden = hf_forward(ref, ids)
    n_layers = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_post" for l in range(n_layers)] + ["blocks.0.hook_resid_pre"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    logit_err = (logits - ref_logits).abs().max().item()
    assert logit_err < TOL, f"logits differ from HF by max abs {logit_err:.3g} (tolerance {TOL})"
    errs: dict[str, float] = {}
    for layer in range(n_layers):
        ours = cache[f"blocks.{layer}.hook_resid_post"]
        errs[f"layer {layer} resid_post vs block output"] = \
            (ours - ref_blocks[layer]).abs().max().item()
        if layer < n_layers - 1:  # HF's last hidden state has the final norm applied
            errs[f"layer {layer} resid_post vs hidden_states[{layer + 1}]"] = \
                (ours - ref_hidden[layer + 1]).abs().max().item()
    errs["layer 0 resid_pre vs hidden_states[0]"] = \
        (cache["blocks.0.hook_resid_pre"] - ref_hidden[0]).abs().max().item()
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, "residual stream differs from HF: " + "; ".join(
        f"{k}: max abs diff {v:.3g}" for k, v in bad.items()) + f" (tolerance {TOL})"
    # The residual stream is not trivially small (a near-zero stream would pass anything).
    last = cache[f"blocks.{n_layers - 1}.hook_resid_post"].abs().max().item()
    assert last > 0.1, f"layer {n_layers - 1} resid_post is near zero (max abs {last:.3g})"
    return logit_err, max(errs.values())


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
        effect = (hf_forward(plain, ids)[0] - hf_forward(ref, ids)[0]).abs().max().item()
        assert effect > 1e-2, f"the adapter changes the logits by only {effect:.3g}"
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


# --------------------------------------------------------------------------- load speed-ups


def _hook_snapshot(bridge):
    """Every registry entry and alias as (name, hook.name, module path of the hook)."""
    paths: dict[int, str] = {}
    for name, module in bridge.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), name)
    registry = [(k, v.name, paths.get(id(v))) for k, v in bridge._hook_registry.items()]
    aliases = sorted((k, v.name, paths.get(id(v))) for k, v in bridge.hook_dict.items())
    return registry, aliases


def test_speed_shims_installed():
    """The speed shims of emlens._compat match this transformer-lens (else they stay off)."""
    from emlens import _compat

    _compat.patch_transformer_lens()
    off = [name for name, on in _compat.speed_shims_installed().items() if not on]
    assert not off, (f"speed shims not installed: {off}. This transformer-lens changed those "
                     f"methods; check emlens/_compat.py against them and update the sha256")


def _without_speed_shims(monkeypatch):
    """Uninstall the speed shims and keep load_model from installing them again."""
    from emlens import _compat

    _compat.unpatch_speed_shims()
    monkeypatch.setattr(_compat, "_speed_shims", lambda: ())
    monkeypatch.setattr(_compat, "_FAST_COPIES_DISABLED", True)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fast_hook_scan_equals_transformer_lens_scan(tiny_dir, monkeypatch, arch):
    """emlens._compat's hook scan finds the same hooks, in the same order, with the same
    names as TransformerLens' own scan."""
    from emlens import _compat

    fast = _hook_snapshot(emlens.load_model(tiny_dir(arch), device="cpu"))
    real_shims = _compat._speed_shims
    _without_speed_shims(monkeypatch)
    try:
        slow = _hook_snapshot(emlens.load_model(tiny_dir(arch), device="cpu"))
    finally:
        monkeypatch.setattr(_compat, "_speed_shims", real_shims)
        monkeypatch.setattr(_compat, "_FAST_COPIES_DISABLED", False)
        _compat.patch_transformer_lens()
    for what, a, b in (("registry", fast[0], slow[0]), ("hook_dict", fast[1], slow[1])):
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        assert a == b, (f"{arch} {what}: {len(a)} vs {len(b)} entries; first differences "
                        f"(emlens, TL): {diff[:3]}")


def test_fast_ordered_dict_copy_is_deepcopy():
    """fast_boot_copies' OrderedDict copier gives what copy.deepcopy gives: same contents,
    attributes, shared and self references; the dispatch table is restored after."""
    import collections
    import copy

    from emlens import _compat

    shared = [1, [2]]
    inner = collections.OrderedDict(a=shared, b=torch.ones(2))
    inner.note = {"x": shared}  # an instance attribute, as a subclass-free OrderedDict may have
    outer = collections.OrderedDict(inner=inner, again=inner, shared=shared)
    outer["self"] = outer

    class Sub(collections.OrderedDict):
        pass

    tree = {"outer": outer, "sub": Sub(z=shared), "empty": collections.OrderedDict()}

    def describe(t):
        o = t["outer"]
        return (list(o), list(o["inner"]), o["inner"].note, o["again"] is o["inner"],
                o["self"] is o, o["shared"] is o["inner"]["a"] is o["inner"].note["x"],
                t["sub"]["z"] is o["shared"], type(t["sub"]), type(t["empty"]),
                o["inner"]["b"].tolist())

    expected = copy.deepcopy(tree)
    with _compat.fast_boot_copies():
        assert copy._deepcopy_dispatch.get(collections.OrderedDict) is \
            _compat._deepcopy_ordered_dict
        fast = copy.deepcopy(tree)
    assert collections.OrderedDict not in copy._deepcopy_dispatch
    assert describe(fast) == describe(expected)
    assert fast["outer"] is not outer and fast["outer"]["inner"] is not inner
    assert fast["outer"]["shared"] is not shared


def _run_everything(model):
    """Logits, every hook's activation, a hook edit on a norm, and a steered generation."""
    ids = chat_ids(model.tokenizer)
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids)
        edit = "blocks.0.ln1.hook_normalized"
        with model.hooks(fwd_hooks=[(edit, lambda act, hook: act * 0.5)]):
            edited = model(ids)
        vec = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
        with emlens.steer(model, vec, 3.0, layers=1):
            gen = model.original_model.generate(
                input_ids=ids[:, :6], attention_mask=torch.ones_like(ids[:, :6]),
                max_new_tokens=6, do_sample=False, pad_token_id=0)
    return logits, dict(cache.items()), edited, gen


@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_speed_shims_change_no_number(tiny_dir, monkeypatch, arch):
    """With and without the speed shims: bit-identical logits, caches (hook_scale and
    hook_normalized included: they still fire when hooked), norm edits and generations."""
    from emlens import _compat

    model = emlens.load_model(tiny_dir(arch), device="cpu")
    with_shims = _run_everything(model)
    real_shims = _compat._speed_shims
    _without_speed_shims(monkeypatch)
    try:
        without = _run_everything(model)
        plain_boot = _run_everything(emlens.load_model(tiny_dir(arch), device="cpu"))
    finally:
        monkeypatch.setattr(_compat, "_speed_shims", real_shims)
        monkeypatch.setattr(_compat, "_FAST_COPIES_DISABLED", False)
        _compat.patch_transformer_lens()
    # A bridge built without any shim computes the same numbers too.
    for a, b in zip(without, plain_boot):
        if isinstance(a, dict):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        else:
            assert torch.equal(a, b)
    logits, cache, edited, gen = with_shims
    assert torch.equal(logits, without[0]), "logits differ with the speed shims"
    assert cache.keys() == without[1].keys(), set(cache) ^ set(without[1])
    assert any(k.endswith("hook_normalized") for k in cache) and \
        any(k.endswith("hook_scale") for k in cache)
    bad = [k for k in cache if not torch.equal(cache[k], without[1][k])]
    assert not bad, f"activations differ with the speed shims at {bad[:5]}"
    assert torch.equal(edited, without[2]), "a hook_normalized edit acts differently"
    assert not torch.equal(edited, logits), "the hook_normalized edit did nothing"
    assert torch.equal(gen, without[3]), "steered generation differs with the speed shims"


def test_offloaded_module_still_aligned(tiny_dir, monkeypatch):
    """A wrapped module with an accelerate hook (``_hf_hook``) still goes through
    align_module_device; the others skip it."""
    import contextlib

    from transformer_lens.model_bridge.generalized_components import base

    model = emlens.load_model(tiny_dir("llama"), device="cpu")
    seen: list[object] = []
    real = base.align_module_device

    @contextlib.contextmanager
    def spy(module, *a, **k):
        seen.append(module)
        with real(module, *a, **k):
            yield

    monkeypatch.setattr(base, "align_module_device", spy)
    target = model.blocks[1].mlp.original_component
    ids = chat_ids(model.tokenizer)
    with torch.no_grad():
        ref = model(ids)
        assert seen == []
        target.__dict__["_hf_hook"] = None  # present, not an offload hook: a no-op align
        try:
            out = model(ids)
        finally:
            del target.__dict__["_hf_hook"]
    assert seen == [target]
    assert torch.equal(out, ref)


def _zero_b_lora(base, tmp_path):
    """A live LoRA on GPT-2's fused c_attn with PEFT's default init (B = 0): it does not
    change the logits yet, but training it through the bridge would do nothing."""
    from peft import LoraConfig, get_peft_model

    hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    pm = get_peft_model(hf, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"],
                                       fan_in_fan_out=True))
    pm.save_pretrained(tmp_path / "zero-b")
    return pm, tmp_path / "zero-b"


def test_loaded_model_is_in_eval_mode_throughout(tiny_dir, tiny_adapter):
    """No module left in training mode (dropout at inference), live LoRA included."""
    for model in (emlens.load_model(tiny_dir("gemma2"), device="cpu"),
                  emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", "rank1"),
                                    merge=False, device="cpu")):
        training = [n for root in (model, model.original_model)
                    for n, m in root.named_modules() if m.training]
        assert not training, f"modules in training mode: {training[:5]}"


def test_bypassed_live_lora_is_refused_even_when_it_does_nothing_yet(tiny_dir, tmp_path):
    base = tiny_dir("gpt2")
    pm, adapter_dir = _zero_b_lora(base, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(base)
    match = r"never runs the live adapter modules transformer\.h\.0\.attn\.c_attn.*merge=True"
    with pytest.raises(UnsupportedModelError, match=match):
        emlens.load_model(base, adapter=adapter_dir, merge=False, device="cpu")
    with pytest.raises(UnsupportedModelError, match=match):
        emlens.load_model(pm, merge=False, tokenizer=tokenizer, device="cpu")
    # LoRA layers injected into a plain HF model object (no PeftModel wrapper) as well.
    pm2, _ = _zero_b_lora(base, tmp_path / "again")
    with pytest.raises(UnsupportedModelError, match=match):
        emlens.load_model(pm2.base_model.model, tokenizer=tokenizer, device="cpu")
    # Merged, the same adapter is just weights the bridge reads: fine.
    emlens.load_model(base, adapter=adapter_dir, merge=True, device="cpu")


def test_parity_probe_runs_only_where_it_can_fail(tiny_dir, tiny_adapter, monkeypatch):
    from emlens import models

    calls: list[str] = []
    real = models._reference_logits

    def spy(hf_model):
        calls.append(type(hf_model).__name__)
        return real(hf_model)

    monkeypatch.setattr(models, "_reference_logits", spy)
    base, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    emlens.load_model(base, device="cpu")
    emlens.load_model(base, adapter=adapter, device="cpu")  # merged: plain weights
    assert calls == [], "a tested architecture without live adapters needs no probe"
    emlens.load_model(base, adapter=adapter, merge=False, device="cpu")
    assert calls == ["Qwen2ForCausalLM"], "live LoRA must be probed"
    emlens.load_model(AutoModelForCausalLM.from_pretrained(base), device="cpu",
                      tokenizer=AutoTokenizer.from_pretrained(base))
    assert len(calls) == 2, "a model object must be probed (it may have been altered)"
    monkeypatch.setattr(models, "_TESTED_ARCHITECTURES", ("LlamaForCausalLM",))
    emlens.load_model(base, device="cpu")
    assert len(calls) == 3, "an untested architecture must be probed"


def test_unfaithful_bridge_is_refused_with_where_and_how_much(tiny_dir, monkeypatch):
    from emlens import models

    real = models._reference_logits

    def off_by_one_position(hf_model):  # stands in for a bridge that differs from HF
        probe, ref = real(hf_model)
        ref = ref.clone()
        ref[0, 2] += 1.0
        return probe, ref

    monkeypatch.setattr(models, "_reference_logits", off_by_one_position)
    monkeypatch.setattr(models, "_TESTED_ARCHITECTURES", ())
    with pytest.raises(UnsupportedModelError,
                       match=r"max abs diff 1 at probe position 2 .*not supported faithfully"):
        emlens.load_model(tiny_dir("llama"), device="cpu")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tokenizer_is_the_one_the_bridge_would_make(tiny_dir, arch):
    """Loading the tokenizer with add_bos_token=True up front (to spare the bridge a second
    load) gives what TransformerLens' own get_tokenizer_with_bos gives."""
    from transformer_lens.utilities.tokenize_utils import get_tokenizer_with_bos

    base = tiny_dir(arch)
    ours = emlens.load_model(base, device="cpu").tokenizer
    theirs = get_tokenizer_with_bos(AutoTokenizer.from_pretrained(base))
    assert type(ours) is type(theirs)
    assert ours.init_kwargs == theirs.init_kwargs
    assert getattr(ours, "add_bos_token", None) == getattr(theirs, "add_bos_token", None)
    text = "The quick brown fox, 42 times."
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    msgs = [{"role": "user", "content": text}]
    assert ours.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                    return_dict=True)["input_ids"] == \
        theirs.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                   return_dict=True)["input_ids"]


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


# --------------------------------------------------------------------------- weight files


def _copy_model(tiny_dir, tmp_path, name="broken"):
    d = tmp_path / name
    shutil.copytree(tiny_dir("qwen2"), d)
    return d


def test_truncated_or_corrupt_safetensors_is_a_model_load_error(tiny_dir, tmp_path):
    d = _copy_model(tiny_dir, tmp_path)
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"model.safetensors' has \d+ bytes, but its header "
                                             r"describes \d+: it is truncated.*download"):
        emlens.load_model(d, device="cpu")
    weights.write_bytes(data[:5])
    with pytest.raises(ModelLoadError, match="too few for a safetensors header"):
        emlens.load_model(d, device="cpu")
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        emlens.load_model(d, device="cpu")
    weights.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\x00" * 8)
    with pytest.raises(ModelLoadError, match="unreadable header"):
        emlens.load_model(d, device="cpu")
    # A sharded checkpoint whose index names a shard that is not there.
    weights.write_bytes(data)
    weights.rename(d / "model-00001-of-00002.safetensors")
    keys = json.loads(  # the real tensor names, split over two shards
        (d / "model-00001-of-00002.safetensors").read_bytes()[8:8 + int.from_bytes(data[:8],
                                                                                    "little")])
    names = [k for k in keys if k != "__metadata__"]
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        k: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, k in enumerate(names)}}))
    with pytest.raises(ModelLoadError, match="shard.*missing.*model-00002-of-00002"):
        emlens.load_model(d, device="cpu")


class _Boom:
    """Unpickling this runs code: it touches a marker file (what a malicious .bin can do)."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_only_weights_are_refused_unread(tiny_dir, tmp_path):
    d = _copy_model(tiny_dir, tmp_path)
    marker = tmp_path / "unpickled"
    boom = _Boom()
    boom.marker = marker
    (d / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": boom}, d / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"only as pickle files \(pytorch_model.bin\).*"
                                             r"safetensors only.*arbitrary code.*Convert"):
        emlens.load_model(d, device="cpu")
    assert not marker.exists(), "the pickle was read"
    assert not any(d.glob("*.safetensors"))


# --------------------------------------------------------------------------- model objects


def _ids(tiny_dir):
    return chat_ids(AutoTokenizer.from_pretrained(tiny_dir("qwen2")))


def test_a_model_object_is_left_as_it_was(tiny_dir, tmp_path):
    """load_model(obj) wraps a copy: the object's modules, forward and save_pretrained are
    unchanged (the bridge replaces the modules of what it wraps)."""
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager")
    hf.eval()
    ids = _ids(tiny_dir)
    with torch.no_grad():
        before = hf(ids).logits.clone()
    layer_types = [type(m) for m in hf.model.layers]
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    model = emlens.load_model(hf, device="cpu")
    assert [type(m) for m in hf.model.layers] == layer_types
    assert hf.state_dict().keys() == state.keys()
    assert all(torch.equal(hf.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, before)
        assert (model(ids) - before).abs().max() < TOL
    hf.save_pretrained(tmp_path / "saved")  # raised on shared tensors when mutated
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved",
                                                 attn_implementation="eager").eval()
    with torch.no_grad():
        assert torch.equal(again(ids).logits, before)
    # The bridge does not share the object's weights: editing one leaves the other.
    emlens.orthogonalize(model, torch.randn(model.cfg.d_model))
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, before)


def test_in_place_wraps_the_object_itself(tiny_dir):
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager")
    ptr = hf.model.embed_tokens.weight.data_ptr()
    model = emlens.load_model(hf, device="cpu", in_place=True)
    assert model.original_model is hf
    assert model.original_model.get_input_embeddings().weight.data_ptr() == ptr
    hf2 = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager")
    hf2.hf_device_map = {"model.embed_tokens": 0, "model.layers": 1}  # as accelerate sets it
    with pytest.raises(InputError, match="several devices.*in_place=True"):
        emlens.load_model(hf2, device="cpu")
    with pytest.raises(InputError, match="in_place must be True or False"):
        emlens.load_model(hf2, device="cpu", in_place="yes")


def test_a_peft_model_object_is_not_merged_in_place(tiny_dir, tiny_adapter):
    base, adapter = tiny_dir("qwen2"), tiny_adapter("qwen2", "rank1")
    pm = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager"), adapter).eval()
    ids = _ids(tiny_dir)
    with torch.no_grad():
        before = pm(ids).logits.clone()
    n_lora = sum("lora_" in n for n, _ in pm.named_parameters())
    model = emlens.load_model(pm, merge=True, device="cpu")
    assert sum("lora_" in n for n, _ in pm.named_parameters()) == n_lora > 0
    with torch.no_grad():
        assert torch.equal(pm(ids).logits, before)
        assert (model(ids) - before).abs().max() < TOL


# --------------------------------------------------------------------------- adapter bases


def _adapter_naming(tiny_adapter, tmp_path, base_name, name="adapter"):
    d = tmp_path / name
    shutil.copytree(tiny_adapter("qwen2", "rank1"), d)
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path":
                                                       base_name}))
    return d


def _no_base_warning():
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error", AdapterBaseWarning)
    return ctx


def test_adapter_for_a_base_with_equal_shapes_but_other_weights_is_refused(
        tiny_dir, tiny_adapter):
    """The adapter names tiny qwen2 (seed 0); the model is a qwen2 of the same shapes with
    other weights (seed 1). Shapes pass; the base check does not."""
    other = tiny_dir("qwen2", seed=1)
    adapter = tiny_adapter("qwen2", "rank1")
    named = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == str(tiny_dir("qwen2"))
    with pytest.raises(AdapterError, match=r"trained on .*qwen2'.*applied to .*qwen2-seed1.*"
                                           r"other weights.*allow_other_base=True"):
        emlens.load_model(other, adapter=adapter, device="cpu")
    ctx = _no_base_warning()
    try:
        model = emlens.load_model(other, adapter=adapter, device="cpu", allow_other_base=True)
    finally:
        ctx.__exit__(None, None, None)
    assert model.emlens_provenance["adapters"][0]["base_check"] == "other"


def test_adapter_base_same_copy_mirror_and_relative_names_pass(tiny_dir, tiny_adapter, tmp_path,
                                                              monkeypatch):
    base = tiny_dir("qwen2")
    ctx = _no_base_warning()
    try:
        model = emlens.load_model(base, adapter=tiny_adapter("qwen2", "rank1"), device="cpu")
        assert model.emlens_provenance["adapters"][0]["base_check"] == "same"
        # A copy of the base under another name: the same weights.
        copy = tmp_path / "my-local-copy"
        shutil.copytree(base, copy)
        model = emlens.load_model(copy, adapter=tiny_adapter("qwen2", "rank1"), device="cpu")
        assert model.emlens_provenance["adapters"][0]["base_check"] == "same"
        # A hub mirror's name whose last part is the model's folder name: a weak match.
        mirror = _adapter_naming(tiny_adapter, tmp_path, "unsloth/qwen2", "mirror")
        model = emlens.load_model(base, adapter=mirror, device="cpu")
        assert model.emlens_provenance["adapters"][0]["base_check"] == "name"
        # A relative path from the working directory.
        monkeypatch.chdir(base.parent)
        rel = _adapter_naming(tiny_adapter, tmp_path, "./qwen2", "relative")
        model = emlens.load_model(base, adapter=rel, device="cpu")
        assert model.emlens_provenance["adapters"][0]["base_check"] == "same"
        # A model object keeps its name_or_path to compare with.
        hf = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
        model = emlens.load_model(hf, adapter=tiny_adapter("qwen2", "rank1"), device="cpu")
        assert model.emlens_provenance["adapters"][0]["base_check"] == "same"
    finally:
        ctx.__exit__(None, None, None)


def test_adapter_naming_another_model_warns_or_raises(tiny_dir, tiny_adapter, tmp_path):
    base = tiny_dir("qwen2")
    elsewhere = _adapter_naming(tiny_adapter, tmp_path, "Qwen/Qwen2.5-0.5B-Instruct")
    # A local model and a hub id that names something else: cannot compare the weights.
    with pytest.warns(AdapterBaseWarning, match=r"trained on 'Qwen/Qwen2.5-0.5B-Instruct'.*"
                                                r"names differ"):
        model = emlens.load_model(base, adapter=elsewhere, device="cpu")
    assert model.emlens_provenance["adapters"][0]["base_check"] == "differs"
    # Two hub ids that differ: clearly another base.
    _fake_hub_cache(base, "emlens-test/tiny-qwen2-base")
    with pytest.raises(AdapterError, match=r"'Qwen/Qwen2.5-0.5B-Instruct'.*different hub "
                                           r"repositories"):
        emlens.load_model("emlens-test/tiny-qwen2-base", adapter=elsewhere, device="cpu")
    # An adapter that names no base: nothing to compare, no warning.
    blank = _adapter_naming(tiny_adapter, tmp_path, None, "blank")
    ctx = _no_base_warning()
    try:
        model = emlens.load_model(base, adapter=blank, device="cpu")
    finally:
        ctx.__exit__(None, None, None)
    assert model.emlens_provenance["adapters"][0]["base_check"] == "unknown"
