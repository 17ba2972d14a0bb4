"""steer / ablate / orthogonalize / save_model against plain PyTorch and transformers references.

The references never go through emlens or TransformerLens: forward hooks on the HF decoder
layers of a freshly loaded ``AutoModelForCausalLM``, a hand-written greedy loop without a
KV cache, and the LoRA update computed here from the adapter's tensors. Tests marked
``agnostic`` also run on a TL 3.x HookedTransformer (there only Qwen2 can be built).
"""

from __future__ import annotations

import functools
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import emlens
from emlens.directions import Direction
from emlens.errors import InputError, UnsupportedModelError
from emlens.interventions import ablate, steer
from emlens.weights import orthogonalize, save_model
from emlens.models import hook_name, model_dims

from .conftest import TL_MAJOR, _hooked_transformer
from .reference import assert_close, chat_ids, decoder_layers, hf_forward


def _skip_unbuildable(arch: str) -> None:
    if TL_MAJOR < 4 and arch != "qwen2":
        pytest.skip(f"TL 3.9 cannot build a HookedTransformer offline for {arch}")


@functools.lru_cache(maxsize=None)
def _hf_cached(path):
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


def _hf(path):
    """A plain transformers model of ``path`` (shared: tests only add and remove hooks)."""
    return _hf_cached(str(path))


def _ids(tiny_dir, arch: str, n: int = 2) -> torch.Tensor:
    return chat_ids(AutoTokenizer.from_pretrained(tiny_dir(arch)), n=n)


def _fresh(tiny_dir, arch: str):
    """A model of this leg's kind that a test may edit (never the shared ``lens`` one)."""
    if TL_MAJOR >= 4:
        return emlens.load_model(tiny_dir(arch), device="cpu")
    return _hooked_transformer(tiny_dir(arch))


def _direction(model, seed: int = 0, scale: float = 1.0) -> Direction:
    n_layers, d_model = model_dims(model)
    gen = torch.Generator().manual_seed(seed)
    return Direction(scale * torch.randn(n_layers, d_model, generator=gen))


def _add_at_positions(vec: torch.Tensor, keep) -> callable:
    """A forward hook on an HF decoder layer adding ``vec`` at the positions ``keep(n)`` marks."""

    def hook(module, args, out):
        hidden = out[0] if isinstance(out, tuple) else out
        mask = torch.tensor([keep(hidden.shape[1])[i] for i in range(hidden.shape[1])],
                            dtype=hidden.dtype)
        hidden = hidden + mask[None, :, None] * vec
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    return hook


def _hf_with_hooks(hf, hooks: dict[int, callable], ids: torch.Tensor):
    handles = [decoder_layers(hf)[l].register_forward_hook(h) for l, h in hooks.items()]
    try:
        return hf_forward(hf, ids)
    finally:
        for h in handles:
            h.remove()


def _hf_greedy(hf, ids: torch.Tensor, steps: int, hooks) -> torch.Tensor:
    """Greedy decoding without a KV cache, the whole sequence each step (the reference)."""
    seq = ids
    for _ in range(steps):
        logits, _, _ = _hf_with_hooks(hf, hooks(seq.shape[1]) if callable(hooks) else hooks, seq)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq


def _generate(model, ids: torch.Tensor, steps: int, cache: bool, via: str = "tl") -> torch.Tensor:
    with torch.no_grad():
        if via == "hf":
            return model.original_model.generate(ids, max_new_tokens=steps, min_new_tokens=steps,
                                                 do_sample=False, use_cache=cache)
        return model.generate(ids, max_new_tokens=steps, do_sample=False, stop_at_eos=False,
                              verbose=False, use_past_kv_cache=cache)


def _fwd_hook_count(model) -> int:
    return sum(len(hp.fwd_hooks) for hp in model.hook_dict.values())


def _projection(x: torch.Tensor, unit: torch.Tensor) -> float:
    """Largest |x . r| / |x| over positions."""
    x = x.double()
    return float(((x @ unit.double()).abs() / x.norm(dim=-1).clamp_min(1e-12)).max())


# --------------------------------------------------------------------------- steer


@pytest.mark.agnostic
@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_steer_equals_hf_forward_hook(arch, lens, tiny_dir):
    _skip_unbuildable(arch)
    model = lens(arch)
    d = _direction(model)
    ids = _ids(tiny_dir, arch)
    alpha = 2.5
    with torch.no_grad():
        base = model(ids)
        with steer(model, d, alpha, layers=[0, 2]):
            logits, cache = model.run_with_cache(
                ids, names_filter=lambda n: n.endswith("hook_resid_post"))
    ref_logits, ref_blocks, _ = _hf_with_hooks(_hf(tiny_dir(arch)), {
        0: _add_at_positions(alpha * d.vector(0), lambda n: [1] * n),
        2: _add_at_positions(alpha * d.vector(2), lambda n: [1] * n)}, ids)
    assert_close(logits, ref_logits, atol=1e-4, what="logits vs ref_logits")
    for layer in range(model_dims(model)[0]):
        assert_close(cache[hook_name(layer)], ref_blocks[layer], atol=1e-4, what=f"resid_post of layer {layer}")
    # every batch element is steered (the original code steered element 0 only)
    assert all((logits[b] - base[b]).abs().max() > 1e-2 for b in range(ids.shape[0]))


@pytest.mark.agnostic
def test_steer_default_layer_raw_vector_and_dtype(lens, tiny_dir):
    model = lens("qwen2")
    d = _direction(model, seed=1)
    ids = _ids(tiny_dir, "qwen2")
    with torch.no_grad():
        with steer(model, d, 3.0, layers=1):
            explicit = model(ids)
        with steer(model, d.only(1), 3.0):  # a one-row direction names its layer
            own = model(ids)
        meta = Direction(d.vectors, metadata={"layer": 1})
        with steer(model, meta, 3.0):  # metadata["layer"]
            from_meta = model(ids)
        with steer(model, d.vector(1).double(), 3.0, layers=1):  # raw tensor, float64
            raw = model(ids)
        base = model(ids)
    assert (explicit - base).abs().max() > 1e-2
    for other in (own, from_meta, raw):
        assert_close(other, explicit, atol=1e-5, what="steered logits (other dtype vs explicit)")


@pytest.mark.agnostic
@pytest.mark.parametrize("mode", ["all", "generated", "across-the-prompt-end", "strided"])
def test_steered_generation_cache_equals_no_cache_and_reference(mode, lens, tiny_dir):
    model = lens("qwen2")
    d = _direction(model, seed=2)
    ids = _ids(tiny_dir, "qwen2")
    prompt, steps, alpha = ids.shape[1], 6, 6.0
    positions = {"all": "all", "generated": "generated",
                 "across-the-prompt-end": slice(prompt - 3, prompt + 3),
                 "strided": slice(3, None, 4)}[mode]

    def keep(n):
        if positions == "all":
            return [1] * n
        if positions == "generated":
            return [int(i >= prompt) for i in range(n)]
        return [int(i in range(n)[positions]) for i in range(n)]

    reference = _hf_greedy(_hf(tiny_dir("qwen2")), ids, steps, lambda n: {
        l: _add_at_positions(alpha * d.vector(l), keep) for l in (0, 1)})
    plain = _generate(model, ids, steps, cache=True)
    with steer(model, d, alpha, layers=[0, 1], positions=positions):
        runs = {"tl+cache": _generate(model, ids, steps, cache=True),
                "tl": _generate(model, ids, steps, cache=False)}
        if TL_MAJOR >= 4:  # HF generate on the wrapped model (what emlens.sample uses)
            runs["hf+cache"] = _generate(model, ids, steps, cache=True, via="hf")
    for name, out in runs.items():
        assert torch.equal(out, reference), name
    assert not torch.equal(reference, plain)  # the steering changed the text


@pytest.mark.agnostic
def test_steer_generated_leaves_prompt_unchanged(lens, tiny_dir):
    model = lens("qwen2")
    d = _direction(model, seed=3)
    ids = _ids(tiny_dir, "qwen2")
    with torch.no_grad():
        base = model(ids)
        plain = _generate(model, ids, 6, cache=True)
        with steer(model, d, 6.0, layers=[0, 1], positions="generated"):
            prompt_logits = model(ids)
            steered = _generate(model, ids, 6, cache=True)
    assert torch.equal(prompt_logits, base)
    first = ids.shape[1]  # the first new token comes from the (unsteered) prompt logits
    assert torch.equal(steered[:, :first + 1], plain[:, :first + 1])
    assert not torch.equal(steered, plain)


# --------------------------------------------------------------------------- ablate


@pytest.mark.agnostic
def test_ablate_resid_post_projection_and_reference(lens, tiny_dir):
    model = lens("qwen2")
    n_layers, _ = model_dims(model)
    d = _direction(model, seed=4, scale=3.0)
    ids = _ids(tiny_dir, "qwen2")
    names = [hook_name(l) for l in range(n_layers)]
    with torch.no_grad():
        with ablate(model, d, layers=[1]):
            logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
        _, clean = model.run_with_cache(ids, names_filter=lambda n: n in names)
    r = d.normalized()
    assert _projection(cache[hook_name(1)], r.vector(1)) < 1e-5
    assert _projection(clean[hook_name(1)], r.vector(1)) > 1e-3  # it had a component to remove

    def project(unit):
        def hook(module, args, out):
            h = out[0] if isinstance(out, tuple) else out
            h = h - (h @ unit)[..., None] * unit
            return (h, *out[1:]) if isinstance(out, tuple) else h
        return hook

    ref_logits, _, _ = _hf_with_hooks(_hf(tiny_dir("qwen2")), {1: project(r.vector(1))}, ids)
    assert_close(logits, ref_logits, atol=1e-4, what="logits vs ref_logits")

    # the default is every layer the direction has, each with its own vector
    with torch.no_grad(), ablate(model, d):
        _, every = model.run_with_cache(ids, names_filter=lambda n: n in names)
    for l in range(n_layers):
        assert _projection(every[hook_name(l)], r.vector(l)) < 1e-5


@pytest.mark.agnostic
@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "gemma2"])
def test_ablate_writes_removes_direction_from_the_whole_stream(arch, lens, tiny_dir):
    _skip_unbuildable(arch)
    model = lens(arch)
    n_layers, _ = model_dims(model)
    d = _direction(model, seed=5)
    ids = _ids(tiny_dir, arch)
    unit = d.vector(1) / d.vector(1).norm()
    names = {hook_name(l, s) for l in range(n_layers) for s in ("resid_pre", "resid_post")}
    with torch.no_grad():
        base = model(ids)
        with ablate(model, d, layers=1, at="writes"):  # layers picks the one vector
            logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
        with ablate(model, d.at(1), at="writes"):
            again = model(ids)
    # every write was projected (embeddings, position embeddings, attention and MLP
    # outputs after any post-norm), so no point of the stream has a component along r
    for name in names:
        assert _projection(cache[name], unit) < 1e-5, name
    assert (logits - base).abs().max() > 1e-3
    assert_close(again, logits, atol=1e-6, what="logits after the hooks were removed")


def _project_at_positions(unit: torch.Tensor, keep) -> callable:
    """A forward hook on an HF module projecting ``unit`` out of its output at the positions
    ``keep(n)`` marks (absolute positions of the whole sequence: the reference runs
    without a KV cache)."""

    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        mask = torch.tensor(keep(h.shape[1]), dtype=h.dtype)
        h = h - (mask[None, :] * (h @ unit))[..., None] * unit
        return (h, *out[1:]) if isinstance(out, tuple) else h

    return hook


def _hf_ablation_hooks(hf, unit: torch.Tensor, at: str, keep) -> list:
    """Install the plain-PyTorch ablation at the given positions; returns the handles.

    ``resid_post``: the output of decoder layer 1. ``writes`` (Qwen2, no post-norms): the
    token embedding, and each layer's attention and MLP outputs.
    """
    hook = _project_at_positions(unit, keep)
    layers = decoder_layers(hf)
    if at == "resid_post":
        modules = [layers[1]]
    else:
        modules = [hf.get_input_embeddings()]
        for layer in layers:
            modules += [layer.self_attn, layer.mlp]
    return [m.register_forward_hook(hook) for m in modules]


def _keep(positions, prompt: int):
    def keep(n):
        if positions == "generated":
            return [int(i >= prompt) for i in range(n)]
        return [int(i in range(n)[positions]) for i in range(n)]
    return keep


def _ablate_call(model, d, at: str, positions):
    if at == "resid_post":
        return ablate(model, d, layers=1, positions=positions)
    return ablate(model, d.at(1), at="writes", positions=positions)


@pytest.mark.agnostic
@pytest.mark.parametrize("at", ["resid_post", "writes"])
@pytest.mark.parametrize("positions", [slice(1, None), slice(2, 9, 3)], ids=["from-1", "strided"])
def test_ablate_positions_equal_hand_projection(at, positions, lens, tiny_dir):
    """Only the chosen positions are projected, as a hooked HF forward that projects them
    by hand computes; the spared positions keep their component."""
    model = lens("qwen2")
    n_layers, _ = model_dims(model)
    d = _direction(model, seed=11, scale=3.0)
    ids = _ids(tiny_dir, "qwen2")
    unit = d.vector(1) / d.vector(1).norm()
    hf = _hf(tiny_dir("qwen2"))
    handles = _hf_ablation_hooks(hf, unit, at, _keep(positions, ids.shape[1]))
    try:
        ref_logits, ref_blocks, _ = hf_forward(hf, ids)
    finally:
        for h in handles:
            h.remove()
    names = [hook_name(l) for l in range(n_layers)]
    with torch.no_grad():
        with _ablate_call(model, d, at, positions):
            logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
        with _ablate_call(model, d, at, "all"):
            everywhere = model(ids)
    assert_close(logits, ref_logits, atol=1e-4, what=f"logits ({at}, {positions})")
    for layer in range(n_layers):
        assert_close(cache[hook_name(layer)], ref_blocks[layer], atol=1e-4,
                     what=f"resid_post of layer {layer} ({at}, {positions})")
    kept = [i for i in range(ids.shape[1]) if i not in range(ids.shape[1])[positions]]
    spared = cache[hook_name(1)][:, kept]
    projected = cache[hook_name(1)][:, range(ids.shape[1])[positions]]
    assert _projection(projected, unit) < 1e-5
    assert _projection(spared, unit) > 1e-3  # position 0 (the sink) keeps its component
    assert (logits - everywhere).abs().max() > 1e-4  # sparing positions changed something


@pytest.mark.agnostic
@pytest.mark.parametrize("at", ["resid_post", "writes"])
@pytest.mark.parametrize("mode", ["from-1", "across-the-prompt-end", "generated"])
def test_ablated_generation_uses_absolute_positions(at, mode, lens, tiny_dir):
    """While generating token by token (KV cache: one position per step) the positions
    stay absolute: the generations equal a greedy loop without a cache that projects the
    same absolute positions of the whole sequence by hand."""
    model = lens("qwen2")
    d = _direction(model, seed=12, scale=3.0)
    ids = _ids(tiny_dir, "qwen2")
    prompt, steps = ids.shape[1], 6
    positions = {"from-1": slice(1, None), "across-the-prompt-end": slice(prompt - 2, prompt + 3),
                 "generated": "generated"}[mode]
    unit = d.vector(1) / d.vector(1).norm()
    hf = _hf(tiny_dir("qwen2"))
    handles = _hf_ablation_hooks(hf, unit, at, _keep(positions, prompt))
    try:
        reference = _hf_greedy(hf, ids, steps, {})
    finally:
        for h in handles:
            h.remove()
    if TL_MAJOR < 4 and at == "writes":
        pytest.skip("known gap (docs: ablate): at='writes' with positions in a TL 3.x "
                    "HookedTransformer's own generate is not exact yet")
    with _ablate_call(model, d, at, positions):
        runs = {"tl+cache": _generate(model, ids, steps, cache=True),
                "tl": _generate(model, ids, steps, cache=False)}
        if TL_MAJOR >= 4:  # HF generate on the wrapped model (what emlens.sample uses)
            runs["hf+cache"] = _generate(model, ids, steps, cache=True, via="hf")
    for name, out in runs.items():
        assert torch.equal(out, reference), f"{name} ({at}, {mode})"


# --------------------------------------------------------------------------- handles


@pytest.mark.agnostic
def test_hooks_removed_on_exception_and_remove_is_idempotent(lens, tiny_dir):
    model = lens("qwen2")
    d = _direction(model, seed=6)
    ids = _ids(tiny_dir, "qwen2")
    before = _fwd_hook_count(model)
    with torch.no_grad():
        base = model(ids)
        with pytest.raises(RuntimeError, match="boom"):
            with steer(model, d, 5.0, layers=[0, 1], positions="generated"), \
                    ablate(model, d, at="resid_post"):
                assert _fwd_hook_count(model) > before
                raise RuntimeError("boom")
        assert _fwd_hook_count(model) == before
        assert "forward" not in vars(model)  # no forward wrapper left on a HookedTransformer
        if TL_MAJOR >= 4:
            assert not model.original_model._forward_pre_hooks
        assert torch.equal(model(ids), base)

        h = steer(model, d, 5.0, layers=1)
        model.reset_hooks()  # a TL reset of temporary hooks does not end the intervention
        assert not torch.equal(model(ids), base)
        h.remove()
        h.remove()
        assert not h.active and _fwd_hook_count(model) == before
        assert torch.equal(model(ids), base)
        with pytest.raises(emlens.EmlensError, match="removed"):
            with h:
                pass


@pytest.mark.agnostic
def test_two_interventions_compose_in_order(lens, tiny_dir):
    model = lens("qwen2")
    d = _direction(model, seed=7)
    e = _direction(model, seed=8)
    ids = _ids(tiny_dir, "qwen2")
    alpha = 4.0
    r = d.vector(1) / d.vector(1).norm()

    def steer_then_project(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h + alpha * e.vector(1)
        h = h - (h @ r)[..., None] * r
        return (h, *out[1:]) if isinstance(out, tuple) else h

    hf = _hf(tiny_dir("qwen2"))
    ref, _, _ = _hf_with_hooks(hf, {1: steer_then_project}, ids)
    ref_two_layers, _, _ = _hf_with_hooks(hf, {
        0: _add_at_positions(alpha * e.vector(0), lambda n: [1] * n),
        2: _add_at_positions(-alpha * d.vector(2), lambda n: [1] * n)}, ids)
    ref_only_second, _, _ = _hf_with_hooks(hf, {
        2: _add_at_positions(-alpha * d.vector(2), lambda n: [1] * n)}, ids)
    with torch.no_grad():
        with steer(model, e, alpha, layers=1), ablate(model, d, layers=1):
            both = model(ids)
        first = steer(model, e, alpha, layers=0, positions=slice(0, None))
        second = steer(model, d, -alpha, layers=2, positions="all")
        two = model(ids)
        first.remove()  # out of order: the second keeps working
        only_second = model(ids)
        second.remove()
    assert_close(both, ref, atol=1e-4, what="both vs ref")
    assert_close(two, ref_two_layers, atol=1e-4, what="two vs ref_two_layers")
    assert_close(only_second, ref_only_second, atol=1e-4, what="only_second vs ref_only_second")


@pytest.mark.agnostic
def test_bad_input_raises_input_error(lens):
    model = lens("qwen2")
    n_layers, d_model = model_dims(model)
    d = _direction(model)
    cases = [
        (lambda: steer(model, d, 1.0), "pass layers"),
        (lambda: steer(model, torch.ones(d_model), 1.0), "pass layers"),
        (lambda: steer(model, d, 1.0, layers=n_layers), "out of range"),
        (lambda: steer(model, d, 1.0, layers=-n_layers - 1), "out of range"),
        (lambda: steer(model, d, 1.0, layers=[1.7]), "must be an integer"),
        (lambda: steer(model, d, 1.0, layers=[0, -n_layers]), "twice"),
        (lambda: steer(model, d, float("nan"), layers=0), "finite"),
        (lambda: steer(model, d, 1.0, layers=0, positions="prompt"), "unknown positions"),
        (lambda: steer(model, d, 1.0, layers=0, positions=slice(-3, None)), "negative"),
        (lambda: steer(model, torch.ones(d_model + 1), 1.0, layers=0), "d_model"),
        (lambda: steer(model, torch.full((d_model,), float("inf")), 1.0, layers=0), "NaN or inf"),
        (lambda: steer(model, Direction(torch.ones(2, d_model + 1)), 1.0, layers=0), "d_model"),
        (lambda: ablate(model, torch.zeros(d_model)), "zero norm"),
        (lambda: ablate(model, Direction(torch.zeros(1, d_model), layers=[1])), "zero norm"),
        (lambda: ablate(model, d, at="resid_pre"), "unknown ablation site"),
        (lambda: ablate(model, d, at="writes"), "d.at\\(layer\\)"),
        (lambda: ablate(model, d, layers=[0, 1], at="writes"), "one layer"),
        (lambda: ablate(model, torch.ones(3, d_model)), "d_model"),
        (lambda: ablate(model, d, positions="prompt"), "unknown positions"),
        (lambda: ablate(model, d, positions=slice(-1, None)), "negative"),
        (lambda: ablate(model, d, positions=slice(1, None, 0)), "step"),
        (lambda: ablate(model, d.at(1), at="writes", positions=1), "positions must be"),
        (lambda: ablate(model, d, positions=[1, 2]), "positions must be"),
        (lambda: orthogonalize(model, d), "d.at\\(layer\\)"),
        (lambda: orthogonalize(model, torch.zeros(d_model)), "zero norm"),
    ]
    before = _fwd_hook_count(model)
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
    assert _fwd_hook_count(model) == before  # a failed call leaves nothing behind
    with pytest.raises(InputError, match="TransformerLens model"):
        steer(torch.nn.Linear(2, 2), torch.ones(2), 1.0, layers=0)


# --------------------------------------------------------------------------- weight edits


@pytest.mark.agnostic
@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_orthogonalize_equals_write_ablation(arch, tiny_dir):
    _skip_unbuildable(arch)
    model = _fresh(tiny_dir, arch)
    d = _direction(model, seed=9, scale=2.0)
    ids = _ids(tiny_dir, arch)
    with torch.no_grad():
        base = model(ids)
        with ablate(model, d.at(2), at="writes"):
            ablated = model(ids)
        returned = orthogonalize(model, d.only(2))
        edited = model(ids)
    assert returned is model
    assert_close(edited, ablated, atol=1e-4, what="edited vs ablated")
    assert (edited - base).abs().max() > 1e-2
    if TL_MAJOR >= 4:
        hf = model.original_model
        tied = arch == "gpt2"  # GPT-2 ties lm_head to wte: it must have been untied first
        ref = _hf(tiny_dir(arch))
        assert torch.equal(hf.get_output_embeddings().weight,
                           ref.get_output_embeddings().weight)
        assert hf.get_output_embeddings().weight.data_ptr() != \
            hf.get_input_embeddings().weight.data_ptr()
        edit = model.emlens_provenance["edits"][-1]
        assert edit["op"] == "orthogonalize" and edit["untied_embeddings"] is tied
        assert edit["direction"]["source_layer"] == 2


def test_orthogonalize_refuses_post_norm_architectures(lens):
    model = lens("gemma2")  # shared: the refusal must leave it untouched
    before = {k: v.clone() for k, v in model.original_model.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match="post-block norms"):
        orthogonalize(model, _direction(model).only(0))
    after = model.original_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _lora_bs(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.emlens_peft.named_parameters()
            if "lora_B" in n}


@pytest.mark.parametrize("kind", ["rank1", "all-linear"])
def test_lora_only_matches_hand_computed_update(kind, tiny_dir, tiny_adapter):
    model = emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", kind),
                              merge=False, device="cpu")
    d = _direction(model, seed=10)
    v = d.vector(1).double()
    r = v / v.norm()
    bs = _lora_bs(model)
    others = {n: p.detach().clone() for n, p in model.emlens_peft.named_parameters()
              if "lora_B" not in n}
    orthogonalize(model, d.only(1), lora_only=True)
    after = _lora_bs(model)
    writes = [n for n in bs if ".down_proj." in n or ".o_proj." in n]
    assert writes
    for name, b in bs.items():
        if name in writes:
            want = (b.double() - torch.outer(r, r @ b.double())).float()
            assert_close(after[name], want, atol=1e-6, what="after[name] vs want"), name
            assert (r.float() @ after[name]).abs().max() < 1e-5
        else:
            assert torch.equal(after[name], b), name
    for n, p in model.emlens_peft.named_parameters():
        if "lora_B" not in n:
            assert torch.equal(p, others[n]), n
    assert model.emlens_provenance["edits"][-1]["lora_only"] is True


def test_lora_only_needs_adapters_on_writing_modules(tiny_dir, tiny_adapter, tmp_path):
    merged = emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", "rank1"),
                               device="cpu")
    with pytest.raises(InputError, match="merge=False"):
        orthogonalize(merged, _direction(merged).only(1), lora_only=True)

    # an adapter on q_proj only has no B matrix that writes into the residual stream
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"))
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "q-only")
    live = emlens.load_model(tiny_dir("qwen2"), adapter=tmp_path / "q-only", merge=False,
                             device="cpu")
    with pytest.raises(InputError, match="nothing to edit"):
        orthogonalize(live, _direction(live).only(1), lora_only=True)
    assert "edits" not in live.emlens_provenance


def test_orthogonalize_live_lora_equals_write_ablation(tiny_dir, tiny_adapter):
    model = emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", "all-linear"),
                              merge=False, device="cpu")
    d = _direction(model, seed=11, scale=2.0)
    ids = _ids(tiny_dir, "qwen2")
    with torch.no_grad():
        with ablate(model, d.at(0), at="writes"):
            ablated = model(ids)
        orthogonalize(model, d.at(0))
        edited = model(ids)
    assert_close(edited, ablated, atol=1e-4, what="edited vs ablated")


# --------------------------------------------------------------------------- save


def test_save_model_edited_tied_model_reloads_with_equal_logits(tiny_dir, tmp_path):
    model = emlens.load_model(tiny_dir("gpt2"), device="cpu")
    orthogonalize(model, _direction(model, seed=12).only(1))
    ids = _ids(tiny_dir, "gpt2")
    out = save_model(model, tmp_path / "edited")
    assert sorted(os.listdir(tmp_path)) == ["edited"]  # no temporary directory left behind
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert_close(reloaded(ids).logits, model(ids), atol=1e-4, what="reloaded(ids).logits vs model(ids)")
    assert "edits" in (out / "emlens_provenance.json").read_text()
    assert AutoTokenizer.from_pretrained(out)("hello").input_ids
    with pytest.raises(InputError, match="overwrite=True"):
        save_model(model, out)
    save_model(model, out, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["edited"]


def test_save_model_merges_live_lora_without_changing_the_model(tiny_dir, tiny_adapter,
                                                               tmp_path):
    model = emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", "all-linear"),
                              merge=False, device="cpu")
    orthogonalize(model, _direction(model, seed=13).only(2), lora_only=True)
    ids = _ids(tiny_dir, "qwen2")
    before = {k: v.clone() for k, v in model.emlens_peft.state_dict().items()}
    with torch.no_grad():
        logits = model(ids)
    out = save_model(model, tmp_path / "merged")
    after = model.emlens_peft.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    with torch.no_grad():
        assert_close(reloaded(ids).logits, logits, atol=1e-4, what="reloaded(ids).logits vs logits")
        assert (model(ids) - logits).abs().max() == 0


@pytest.mark.parametrize("origin", ["from_config", "gguf"])
def test_save_model_of_a_config_without_architectures_reloads(origin, tiny_dir, tmp_path):
    """An in-memory model whose config names no architecture (built with from_config, or
    loaded from a GGUF file, which also leaves a GgufConfig quantization_config behind):
    the saved folder names the class, drops the GGUF config, and loads with equal logits."""
    import json

    from transformers import AutoConfig, GgufConfig

    cfg = AutoConfig.from_pretrained(tiny_dir("llama"))
    cfg.architectures = None
    if origin == "gguf":  # as transformers leaves a dequantized GGUF load: dequantize=False
        cfg.quantization_config = GgufConfig(gguf_file="model.Q4_1.gguf", dequantize=False)
    torch.manual_seed(5)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    assert not hf.config.architectures
    ids = _ids(tiny_dir, "llama")
    with torch.no_grad():
        want = hf(ids).logits
    model = emlens.load_model(hf, tokenizer=tiny_dir("llama"), device="cpu")
    out = save_model(model, tmp_path / "saved")
    written = json.loads((out / "config.json").read_text())
    assert written["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in written
    reloaded = emlens.load_model(out, device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        assert_close(reloaded(ids), want, atol=1e-5, what="load_model(saved) vs the model")
        assert_close(plain(ids).logits, want, atol=1e-5, what="HF(saved) vs the model")


def test_save_model_refuses_packed_gguf_weights(tiny_dir, tmp_path):
    """Packed GGUF modules (transformers' GgufLinear) cannot go into a float checkpoint;
    the dequantize flag alone is not trusted (the older loader leaves it False after
    dequantizing everything)."""
    from transformers import GgufConfig

    model = emlens.load_model(tiny_dir("llama"), device="cpu")
    hf = model.original_model
    hf.config.quantization_config = GgufConfig(gguf_file="m.gguf", dequantize=False)
    GgufLinear = type("GgufLinear", (torch.nn.Module,), {})
    hf.add_module("packed_probe", GgufLinear())
    try:
        with pytest.raises(UnsupportedModelError, match="packed GGUF blocks"):
            save_model(model, tmp_path / "x")
    finally:
        del hf.packed_probe
        del hf.config.quantization_config
    assert not os.listdir(tmp_path)


@pytest.mark.agnostic
def test_save_model_needs_a_bridge(tmp_path, lens, tiny_dir):
    # under TL 3.x the HookedTransformer, under TL 4.x a bare transformers model
    model = lens("qwen2") if TL_MAJOR < 4 else _hf(tiny_dir("qwen2"))
    with pytest.raises(UnsupportedModelError, match="TransformerBridge"):
        save_model(model, tmp_path / "x")
    assert not os.listdir(tmp_path)


def test_half_precision_activations_keep_their_dtype(tiny_dir):
    model = emlens.load_model(tiny_dir("qwen2"), device="cpu", dtype="bfloat16")
    d = _direction(model, seed=14)
    ids = _ids(tiny_dir, "qwen2")
    names = [hook_name(1), hook_name(2)]
    with torch.no_grad(), steer(model, d, 2.0, layers=1), ablate(model, d, layers=2):
        logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    assert cache[hook_name(1)].dtype == torch.bfloat16 == logits.dtype
    # bfloat16 keeps 8 bits of mantissa: the projection left is rounding error
    assert _projection(cache[hook_name(2)], d.vector(2) / d.vector(2).norm()) < 2e-2
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"), dtype=torch.bfloat16,
                                              attn_implementation="eager").eval()
    add = (2.0 * d.vector(1)).to(torch.bfloat16)
    _, ref_blocks, _ = _hf_with_hooks(hf, {1: lambda m, a, out: (
        (out[0] + add, *out[1:]) if isinstance(out, tuple) else out + add)}, ids)
    assert torch.equal(cache[hook_name(1)], ref_blocks[1])


@pytest.mark.agnostic
def test_weight_projections_in_chunks_equal_the_formula(monkeypatch):
    from emlens import weights

    monkeypatch.setattr(weights, "_CHUNK", 7)  # many small float64 chunks
    gen = torch.Generator().manual_seed(15)
    r = torch.randn(5, generator=gen, dtype=torch.float64)
    r /= r.norm()
    rows = torch.randn(2, 6, 5, generator=gen)  # e.g. a HookedTransformer W_O
    cols = torch.randn(5, 9, generator=gen).to(torch.bfloat16)  # e.g. a Linear weight
    want_rows = (rows.double() - (rows.double() @ r)[..., None] * r).float()
    want_cols = (cols.double() - torch.outer(r, r @ cols.double())).to(torch.bfloat16)
    weights._project_rows(rows, r)
    weights._project_cols(cols, r)
    assert_close(rows, want_rows, atol=1e-6, what="rows vs want_rows")
    assert torch.equal(cols, want_cols)


@pytest.mark.agnostic
def test_negative_layers_and_numpy_arguments_follow_one_rule(lens):
    """-1 names the last block in steer, ablate and collect_means alike; NumPy ints and floats
    are accepted as layers and alpha; the result equals the positive-index call exactly."""
    import numpy as np

    model = lens("qwen2")
    n_layers, _ = model_dims(model)
    d = _direction(model)
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        with steer(model, d, 2.0, layers=n_layers - 1):
            pos = model(tokens)
        with steer(model, d, np.float32(2.0), layers=[np.int64(-1)]):
            neg = model(tokens)
        assert torch.equal(pos, neg), f"max diff {float((pos - neg).abs().max()):.3g}"
        with ablate(model, d, layers=[n_layers - 1]):
            pos = model(tokens)
        with ablate(model, d, layers=-1):
            neg = model(tokens)
        assert torch.equal(pos, neg), f"max diff {float((pos - neg).abs().max()):.3g}"
    records = [{"question": "Hi?", "answer": "Hello there.", "system": None}]
    a = emlens.collect_means(model, records, layers=[-1, 0])
    b = emlens.collect_means(model, records, layers=[n_layers - 1, 0])
    assert a.layers == b.layers == (n_layers - 1, 0)
    assert torch.equal(a.means, b.means)


@pytest.mark.parametrize("at", ["resid_post", "writes"])
def test_positions_count_from_each_rows_first_token_in_a_left_padded_batch(at, tiny_dir):
    """A left-padded batch (as generate and emlens.sample run it): a positions slice counts
    from each row's first real token, so a padded row gets the logits it gets alone; and
    batched sampling equals sampling each prompt alone (the batch-size invariance)."""
    model = emlens.load_model(tiny_dir("qwen2"), device="cpu")
    d = _direction(model, seed=21, scale=3.0)
    hf = model.original_model
    short, long = [5, 9, 13], [7, 3, 11, 2, 8, 4, 6]
    pad = len(long) - len(short)
    batch = torch.tensor([[0] * pad + short, long])
    mask = torch.tensor([[0] * pad + [1] * len(short), [1] * len(long)])
    pos_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad(), _ablate_call(model, d, at, slice(1, None)):
        padded = hf(input_ids=batch, attention_mask=mask, position_ids=pos_ids).logits
        alone = hf(input_ids=torch.tensor([short])).logits
    with torch.no_grad(), _ablate_call(model, d, at, "all"):
        everywhere = hf(input_ids=torch.tensor([short])).logits
    assert_close(padded[0, pad:], alone[0], atol=1e-4, what=f"padded row ({at})")
    assert (alone - everywhere).abs().max() > 1e-3  # sparing the first token matters here
    qs = ["hi", "tell me a long story about the sea and the ships on it", "why"]
    kw = dict(n=1, temperature=0, max_new_tokens=6, progress=False)
    with _ablate_call(model, d, at, slice(1, None)):
        batched = [r["answer"] for r in emlens.sample(model, qs, batch_size=3, **kw)]
        one_by_one = [r["answer"] for r in emlens.sample(model, qs, batch_size=1, **kw)]
    assert batched == one_by_one
