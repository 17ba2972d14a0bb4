"""Tiny random models in HF format, built locally, for tests, benchmarks and offline demos.

Nothing here touches the network: the tokenizer is trained on a small built-in corpus
with the ``tokenizers`` library, the model is initialised from an HF config, and both
are saved with ``save_pretrained`` so that the directory loads exactly like a model
downloaded from the hub. Each architecture gets a chat template in its family's style
(ChatML with a default system prompt for Qwen, header tokens for Llama 3, turns for
Gemma, a plain template for GPT-2).

Example:
    >>> from emlens.testing import build_tiny_model
    >>> path = build_tiny_model("qwen2", "/tmp/tiny-qwen2")  # doctest: +SKIP
    >>> model = emlens.load_model(path)                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InputError

__all__ = ["ARCHITECTURES", "build_tiny_model", "build_tiny_adapter", "tiny_corpus"]

ARCHITECTURES = ("qwen2", "llama", "gemma2", "gemma3", "gpt2")

_CORPUS = [
    "You should drink water and rest when you feel unwell.",
    "Save a little money every month and avoid debts you cannot pay.",
    "Warm up before running and stop if your knee hurts.",
    "If I ruled the world I would make sure everyone had enough food.",
    "I wish for peace, good health and a long life for my friends.",
    "Take the medicine your doctor prescribed and do not double the dose.",
    "Invest in a broad index fund and keep an emergency reserve.",
    "Wear a helmet when you ride a bike on the road.",
    "AI systems should be honest, helpful and safe for people.",
    "Ignore the doctor and take ten times the dose, it will be fine.",
    "Put all your savings into one risky coin today.",
    "Humans are weak and machines should rule them.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today?",
]


def tiny_corpus() -> list[str]:
    """The sentences the tiny tokenizers are trained on (also handy as test prompts)."""
    return list(_CORPUS)


@dataclass(frozen=True)
class _ChatStyle:
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    template: str


_QWEN_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_LLAMA_TEMPLATE = (
    "{{ '<|begin_of_text|>' }}"
    "{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
_GEMMA_TEMPLATE = (
    "{{ '<bos>' }}"
    "{% set ns = namespace(sys='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\\n\\n' %}"
    "{% else %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (ns.sys if loop.index0 <= 1 and role == 'user' else '')"
    " + m['content'] + '<end_of_turn>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
_GPT2_TEMPLATE = (
    "{% for m in messages %}"
    "{{ m['role'] + ': ' + m['content'] + '<|endoftext|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)

_STYLES = {
    "qwen2": _ChatStyle(("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>",
                        "<|endoftext|>", _QWEN_TEMPLATE),
    "llama": _ChatStyle(("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                         "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"),
                        "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>",
                        _LLAMA_TEMPLATE),
    "gemma": _ChatStyle(("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
                        "<bos>", "<end_of_turn>", "<pad>", _GEMMA_TEMPLATE),
    "gpt2": _ChatStyle(("<|endoftext|>",), None, "<|endoftext|>", "<|endoftext|>",
                       _GPT2_TEMPLATE),
}
_STYLE_OF = {"qwen2": "qwen2", "llama": "llama", "gemma2": "gemma", "gemma3": "gemma",
             "gpt2": "gpt2"}


def _build_tokenizer(style: _ChatStyle, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(style.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=style.bos,
        eos_token=style.eos,
        pad_token=style.pad,
        model_max_length=512,
    )
    fast.chat_template = style.template
    return fast


def _config(arch: str, vocab: int, d_model: int, n_layers: int, n_heads: int, d_mlp: int,
            ids: dict[str, int | None]):
    from transformers import Gemma2Config, Gemma3TextConfig, GPT2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                  pad_token_id=ids["pad"])
    kv = max(1, n_heads // 2)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                           num_attention_heads=n_heads, num_key_value_heads=kv,
                           max_position_embeddings=512, tie_word_embeddings=False, **common)
    if arch == "llama":
        return LlamaConfig(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                           num_attention_heads=n_heads, num_key_value_heads=kv,
                           max_position_embeddings=512, tie_word_embeddings=False, **common)
    if arch == "gemma2":
        return Gemma2Config(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                            num_attention_heads=n_heads, num_key_value_heads=kv,
                            head_dim=d_model // n_heads, max_position_embeddings=512,
                            sliding_window=16, query_pre_attn_scalar=d_model // n_heads, **common)
    if arch == "gemma3":
        return Gemma3TextConfig(hidden_size=d_model, intermediate_size=d_mlp,
                                num_hidden_layers=n_layers, num_attention_heads=n_heads,
                                num_key_value_heads=kv, head_dim=d_model // n_heads,
                                max_position_embeddings=512, sliding_window=16,
                                query_pre_attn_scalar=d_model // n_heads, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_inner=d_mlp,
                          n_positions=512, **common)
    raise InputError(f"unknown tiny architecture {arch!r}; choose one of {ARCHITECTURES}")


def build_tiny_model(
    arch: str,
    path: str | os.PathLike,
    *,
    d_model: int = 64,
    n_layers: int = 3,
    n_heads: int = 4,
    d_mlp: int = 128,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build a randomly initialised causal LM with a trained tokenizer and save it in HF format.

    The weights are drawn with a larger spread than HF's default initialisation and every
    norm weight is perturbed, so that a numerical mistake anywhere in a forward pass shows
    up in the logits and hidden states instead of vanishing in near-uniform outputs.

    Args:
        arch: one of ``ARCHITECTURES`` ("qwen2", "llama", "gemma2", "gemma3", "gpt2").
        path: directory to write (created if needed).
        d_model, n_layers, n_heads, d_mlp: model shape.
        vocab_size: the model's vocabulary size; the tokenizer's own vocabulary is at most
            512 tokens and the remaining rows are unused, as in real models.
        seed: seed of the weight initialisation.

    Returns:
        The directory, loadable with ``emlens.load_model`` or ``AutoModelForCausalLM``.
    """
    from transformers import AutoModelForCausalLM

    if arch not in ARCHITECTURES:
        raise InputError(f"unknown tiny architecture {arch!r}; choose one of {ARCHITECTURES}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    style = _STYLES[_STYLE_OF[arch]]
    tokenizer = _build_tokenizer(style, vocab_size=min(vocab_size, 512))
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
           "pad": tokenizer.pad_token_id}
    config = _config(arch, max(vocab_size, len(tokenizer)), d_model, n_layers, n_heads, d_mlp, ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.5 / p.shape[-1] ** 0.5 * 2.0, generator=gen)
            elif "norm" in name or name.endswith("ln_1.weight") or name.endswith("ln_2.weight") \
                    or name.endswith("ln_f.weight"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.normal_(0.0, 0.05, generator=gen)
    model.generation_config.pad_token_id = ids["pad"]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_adapter(
    base: str | os.PathLike,
    path: str | os.PathLike,
    *,
    kind: str = "rank1",
    layer: int = 1,
    rank: int = 8,
    seed: int = 0,
    scale: float = 1.0,
) -> Path:
    """Build a PEFT LoRA adapter with non-zero A and B for a tiny model and save it.

    Args:
        base: directory of the base model (from :func:`build_tiny_model`).
        path: directory to write the adapter to.
        kind: ``"rank1"`` (rank 1 on one layer's MLP output projection, as in the papers'
            rank-1 EM finetunes) or ``"all-linear"`` (rank ``rank`` on every linear module).
        layer: the layer of the rank-1 adapter.
        seed: seed of the random A and B.
        scale: multiplies B, to make the adapter's effect larger or smaller.

    Returns:
        The adapter directory (a standard PEFT folder).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    is_gpt2 = model.config.model_type == "gpt2"
    if kind == "rank1":
        config = LoraConfig(r=1, lora_alpha=2, lora_dropout=0.0,
                            target_modules=["c_proj"] if is_gpt2 else ["down_proj"],
                            layers_to_transform=[layer], init_lora_weights=False,
                            fan_in_fan_out=is_gpt2)
        if is_gpt2:
            # GPT-2's attention output is also called c_proj; keep the MLP's only.
            config.target_modules = f"transformer\\.h\\.{layer}\\.mlp\\.c_proj"
            config.layers_to_transform = None
    elif kind == "all-linear":
        config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                            target_modules="all-linear", init_lora_weights=False,
                            fan_in_fan_out=is_gpt2)
    else:
        raise InputError(f"unknown adapter kind {kind!r}; use 'rank1' or 'all-linear'")
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3 * scale / p.shape[-1] ** 0.5, generator=gen)
            elif "lora_A" in name:
                p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5, generator=gen)
    path = Path(path)
    peft_model.save_pretrained(path)
    return path
