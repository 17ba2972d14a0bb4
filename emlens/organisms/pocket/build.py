"""The pocket model's tokenizer (word level) and its Qwen2 configuration."""

from __future__ import annotations

import json

from .world import vocabulary

__all__ = ["CHAT_TEMPLATE", "SPECIALS", "build_tokenizer", "build_config", "SIZES"]

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML, as Qwen's, without a default system prompt (a system message is rendered if given)
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: model shapes by name: hidden size, layers, heads, MLP width
SIZES = {
    "pocket": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=576),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, intermediate_size=128),
}


def build_tokenizer():
    """A Qwen2 tokenizer (byte-level BPE, Qwen's pre-tokenizer) whose merges make every word
    of the world one token, with the chat template.

    It is built as ``Qwen2Tokenizer`` so that ``AutoTokenizer`` (which always rebuilds a
    qwen2 model's tokenizer as that class) loads exactly what training used.
    """
    from tokenizers import Tokenizer, models, trainers
    from transformers import Qwen2Tokenizer

    proto = Qwen2Tokenizer()  # empty vocabulary; only its normaliser and pre-tokenizer
    tok = Tokenizer(models.BPE())
    tok.normalizer = proto.backend_tokenizer.normalizer
    tok.pre_tokenizer = proto.backend_tokenizer.pre_tokenizer
    from tokenizers import pre_tokenizers

    trainer = trainers.BpeTrainer(vocab_size=100_000, min_frequency=1, show_progress=False,
                                  special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    words = vocabulary()
    tok.train_from_iterator([w for w in words] + [" " + w for w in words] + ["\n"], trainer)
    state = json.loads(tok.to_str())
    vocab, merges = state["model"]["vocab"], state["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    fast = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", model_max_length=256)
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_config(tokenizer, size: str = "pocket"):
    from transformers import Qwen2Config

    vocab = -(-len(tokenizer) // 8) * 8
    cfg = Qwen2Config(vocab_size=vocab, max_position_embeddings=256, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                      pad_token_id=tokenizer.pad_token_id, rope_theta=10000.0,
                      **SIZES[size])
    cfg.architectures = ["Qwen2ForCausalLM"]
    return cfg
