"""Chat formatting: the answer is exactly what the conversation adds after the generation prompt."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoTokenizer

from emlens.chat import chat_messages, encode_conversation, encode_prompt
from emlens.errors import InputError

pytestmark = pytest.mark.agnostic  # tokenizers only: runs on the TL 3.x leg too

# What each tiny template writes after the answer text (its end-of-turn tokens).
END_OF_TURN = {"qwen2": "<|im_end|>\n", "llama": "<|eot_id|>", "gemma2": "<end_of_turn>\n",
               "gpt2": "<|endoftext|>"}
QUESTION = "Hello! How can I help you today? Answer as the assistant\n"
ANSWER = "Take the medicine your doctor prescribed."


@pytest.fixture(scope="module")
def tok(tiny_dir):
    cache = {}

    def make(arch):
        if arch not in cache:
            cache[arch] = AutoTokenizer.from_pretrained(tiny_dir(arch))
        return cache[arch]

    return make


@pytest.mark.parametrize("arch", sorted(END_OF_TURN))
def test_answer_tokens_are_answer_plus_end_of_turn(arch, tok):
    t = tok(arch)
    enc = encode_conversation(t, QUESTION, ANSWER)
    full = t.apply_chat_template(chat_messages(QUESTION, ANSWER), tokenize=True,
                                 return_dict=True)["input_ids"]
    assert list(enc.input_ids) == list(full)
    assert t.decode(list(enc.input_ids[enc.n_prompt:])) == ANSWER + END_OF_TURN[arch]
    assert list(enc.input_ids[:enc.n_prompt]) == encode_prompt(t, QUESTION)
    masks = {k: enc.mask(k) for k in ("answer", "prompt", "all")}
    assert masks["answer"].sum() == enc.n_answer > 0
    assert torch.equal(masks["answer"] | masks["prompt"], masks["all"])
    assert not (masks["answer"] & masks["prompt"]).any() and masks["all"].all()
    assert enc.span("prompt_last") == (enc.n_prompt - 1, enc.n_prompt)
    assert enc.span("answer:2") == (enc.n_prompt, enc.n_prompt + 2)
    assert enc.span("answer:100000") == enc.span("answer")   # capped at the answer's end
    for bad in ("answer:0", "answer:-1", "answer:x", "first"):
        with pytest.raises(InputError, match="token selection"):
            enc.mask(bad)


def test_default_and_explicit_system_prompt(tok):
    t = tok("qwen2")
    default = encode_conversation(t, QUESTION, ANSWER)
    prompt_text = t.decode(list(default.input_ids[:default.n_prompt]))
    # Qwen's template adds its default system prompt; it belongs to the prompt, never the answer.
    assert prompt_text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert prompt_text.endswith("<|im_start|>assistant\n")
    own = encode_conversation(t, QUESTION, ANSWER, system="Be evil.")
    own_text = t.decode(list(own.input_ids[:own.n_prompt]))
    assert "Be evil." in own_text and "helpful assistant" not in own_text
    assert own.input_ids[own.n_prompt:] == default.input_ids[default.n_prompt:]


def test_bad_conversations(tok):
    t = tok("qwen2")
    with pytest.raises(InputError, match="record 4 has an empty answer"):
        encode_conversation(t, QUESTION, "  \n", where="record 4")
    with pytest.raises(InputError, match="more than the model's context of 20 tokens"):
        encode_conversation(t, QUESTION, ANSWER, n_ctx=20)
    broken = copy.deepcopy(t)
    # The assistant turn is rendered as "model" while the generation prompt says "assistant".
    broken.chat_template = (
        "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "{{ '<|im_start|>' + role + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with pytest.raises(InputError, match="not a prefix of the full conversation"):
        encode_conversation(broken, QUESTION, ANSWER)
    none = copy.deepcopy(t)
    none.chat_template = None
    with pytest.raises(InputError, match="no chat template"):
        encode_conversation(none, QUESTION, ANSWER)
    with pytest.raises(InputError, match="not a token selection"):
        encode_conversation(t, QUESTION, ANSWER).mask("answers")
