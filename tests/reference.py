"""Independent references: plain transformers / PEFT forwards, no emlens and no TransformerLens."""

from __future__ import annotations

import torch


def decoder_layers(hf_model) -> torch.nn.ModuleList:
    """The list of decoder blocks of an HF causal LM (or a PEFT model wrapping one)."""
    inner = hf_model
    for _ in range(3):  # PeftModel -> LoraModel -> HF model
        if hasattr(inner, "base_model") and inner.base_model is not inner \
                and type(inner).__module__.startswith("peft"):
            inner = inner.base_model.model if hasattr(inner.base_model, "model") else inner.base_model
    for path in ("model.layers", "transformer.h", "model.language_model.layers"):
        obj = inner
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise AttributeError(f"no decoder layers found on {type(hf_model).__name__}")


@torch.no_grad()
def hf_forward(hf_model, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], tuple]:
    """Logits, the raw output of every decoder block, and HF's ``hidden_states``."""
    outputs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(
        lambda mod, args, out: outputs.append((out[0] if isinstance(out, tuple) else out).clone()))
        for layer in decoder_layers(hf_model)]
    try:
        res = hf_model(input_ids, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return res.logits, outputs, res.hidden_states


def chat_ids(tokenizer, n: int = 2) -> torch.Tensor:
    """``n`` chat-formatted conversations of equal length, as a batch of token ids."""
    from emlens.testing import tiny_corpus

    corpus = tiny_corpus()
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": corpus[i]},
                {"role": "assistant", "content": corpus[-1 - i]}]
        rows.append(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"])
    length = min(len(r) for r in rows)
    return torch.tensor([r[:length] for r in rows])


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-6,
                 rtol: float = 0.0, what: str = "tensors") -> None:
    """``allclose``, with a failure message that says where and by how much they differ."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, \
        f"{what}: shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs()
    bound = atol + rtol * expected.double().abs()
    if bool((diff <= bound).all()):
        return
    worst = int(diff.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape))
    n_bad = int((diff > bound).sum())
    raise AssertionError(
        f"{what} differ at {n_bad} of {diff.numel()} entries; the largest difference is "
        f"{float(diff.max()):.3g} at index {index} (atol={atol:g}, rtol={rtol:g}): "
        f"{float(actual.flatten()[worst]):.6g} vs {float(expected.flatten()[worst]):.6g}")
