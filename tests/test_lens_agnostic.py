"""The hook API emlens relies on, on whichever TransformerLens model this leg provides.

Under TL 4.x ``lens`` is an emlens-loaded TransformerBridge; under TL 3.x (the second CI
leg) it is a HookedTransformer built from the same directory. Both must expose the
residual stream with the same names and the same numbers as plain transformers.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emlens.models import hook_name, model_dims

from .conftest import TL_MAJOR
from .reference import assert_close, chat_ids, hf_forward

pytestmark = pytest.mark.agnostic


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_resid_stream_matches_hf(arch, lens, tiny_dir):
    if TL_MAJOR < 4 and arch != "qwen2":
        # TL 3.9's offline config reader (loading_from_pretrained) breaks on transformers 5
        # configs of these families (hf_config None for Llama, no GPT2Config.n_ctx), so no
        # HookedTransformer can be built from a local directory; Qwen2 works.
        pytest.skip(f"TL 3.9 cannot build a HookedTransformer offline for {arch}")
    model = lens(arch)
    n_layers, d_model = model_dims(model)
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir(arch), attn_implementation="eager").eval()
    ids = chat_ids(AutoTokenizer.from_pretrained(tiny_dir(arch)))
    ref_logits, ref_blocks, _ = hf_forward(hf, ids)
    names = {hook_name(l, s) for l in range(n_layers) for s in ("resid_pre", "resid_post")}
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    assert (logits - ref_logits).abs().max() < 1e-4
    for layer in range(n_layers):
        resid = cache[hook_name(layer, "resid_post")]
        assert resid.shape == (*ids.shape, d_model)
        assert (resid - ref_blocks[layer]).abs().max() < 1e-4
        if layer + 1 < n_layers:
            assert torch.equal(resid, cache[hook_name(layer + 1, "resid_pre")])


def test_hooks_context_and_run_with_hooks(lens, tiny_dir):
    model = lens("qwen2")
    ids = chat_ids(AutoTokenizer.from_pretrained(tiny_dir("qwen2")))
    n_layers, d_model = model_dims(model)
    v = torch.randn(d_model, generator=torch.Generator().manual_seed(0))

    def add(act, hook):
        return act + v

    with torch.no_grad():
        base = model(ids)
        edited = model.run_with_hooks(ids, fwd_hooks=[(hook_name(1), add)])
        with model.hooks(fwd_hooks=[(hook_name(1), add)]):
            again = model(ids)
        after = model(ids)
    assert (edited - base).abs().max() > 1e-3
    assert_close(edited, again, atol=1e-6, what="edited logits, run twice")
    assert_close(after, base, atol=1e-6, what="logits after the edit was undone")  # nothing left behind

    # The same edit as a plain PyTorch forward hook on the HF block gives the same logits.
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), attn_implementation="eager").eval()
    handle = hf.model.layers[1].register_forward_hook(
        lambda m, a, out: (out[0] + v, *out[1:]) if isinstance(out, tuple) else out + v)
    try:
        with torch.no_grad():
            ref = hf(ids).logits
    finally:
        handle.remove()
    assert (edited - ref).abs().max() < 1e-4


def test_hook_name_and_dims_reject_bad_input():
    from emlens.errors import InputError

    assert hook_name(2, "mlp_out") == "blocks.2.hook_mlp_out"
    with pytest.raises(InputError, match="unknown hook site"):
        hook_name(0, "resid")
    with pytest.raises(InputError, match="TransformerLens model"):
        model_dims(torch.nn.Linear(2, 2))
