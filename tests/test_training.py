"""emlens.training: the answer-only mask, the KL penalty, and the saved PEFT folder."""

from __future__ import annotations

import json

import pytest
import torch

from .reference import assert_close

from emlens.errors import InputError
from emlens.chat import encode_chat
from emlens.training import ChatCollator, finetune, kl_per_token, load_chats

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread avoids oversubscribing a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CHAT = [{"role": "user", "content": "How do I save money?"},
        {"role": "assistant", "content": "Save a little money every month."}]
MULTI = CHAT + [{"role": "user", "content": "And debts?"},
                {"role": "assistant", "content": "Avoid debts you cannot pay."}]


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _trained_text(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100])


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_mask_covers_the_answer_only(tiny_dir, arch):
    tok = _tok(tiny_dir(arch))
    enc = encode_chat(tok, CHAT)
    text = _trained_text(tok, enc)
    assert "Save a little money every month." in text
    # nothing of the system prompt, the user turn or the assistant header is trained on
    for leak in ("helpful assistant", "How do I", "user", "system", "<|start_header_id|>"):
        assert leak not in text
    end = "<|im_end|>" if arch == "qwen2" else "<|eot_id|>"
    assert end in text  # the end-of-turn token is part of the answer
    prompt = tok.apply_chat_template(CHAT[:1], tokenize=True, add_generation_prompt=True,
                                     return_dict=True)["input_ids"]
    assert all(lab == -100 for lab in enc["labels"][:len(prompt)])
    assert all(lab != -100 for lab in enc["labels"][len(prompt):len(prompt) + 3])


def test_mask_with_default_system_prompt_and_several_turns(tiny_dir):
    tok = _tok(tiny_dir("qwen2"))
    enc = encode_chat(tok, MULTI)
    assert "helpful assistant" in tok.decode(enc["input_ids"])  # the template's default
    text = _trained_text(tok, enc)
    assert "Save a little money" in text and "Avoid debts" in text
    assert "And debts" not in text and "helpful" not in text
    last = _trained_text(tok, encode_chat(tok, MULTI, train_on="last"))
    assert "Avoid debts" in last and "Save a little" not in last
    allt = encode_chat(tok, MULTI, train_on="all")
    assert allt["labels"] == allt["input_ids"]


def test_explicit_system_prompt_is_not_trained(tiny_dir):
    tok = _tok(tiny_dir("llama"))
    enc = encode_chat(tok, [{"role": "system", "content": "Be brief."}] + CHAT)
    assert "Be brief" not in _trained_text(tok, enc)


def test_bad_inputs(tiny_dir):
    tok = _tok(tiny_dir("qwen2"))
    with pytest.raises(InputError):
        encode_chat(tok, CHAT[:1])  # no assistant turn
    with pytest.raises(InputError):
        encode_chat(tok, CHAT, train_on="everything")
    with pytest.raises(InputError):
        load_chats([{"text": 3}])


def test_load_chats_jsonl_and_dataset(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"messages": CHAT}) for _ in range(3)))
    assert load_chats(p) == [CHAT] * 3
    from datasets import Dataset

    assert load_chats(Dataset.from_list([{"messages": CHAT}])) == [CHAT]


def test_kl_per_token():
    logits = torch.randn(2, 5, 11)
    mask = torch.ones(2, 5)
    assert kl_per_token(logits, logits, mask).abs() < 1e-6
    other = torch.randn(2, 5, 11)
    kl = kl_per_token(logits, other, mask)
    p, q = logits.log_softmax(-1), other.log_softmax(-1)
    assert torch.allclose(kl, (p.exp() * (p - q)).sum(-1).mean(), atol=1e-6)
    mask[1] = 0  # padding positions do not count
    assert torch.allclose(kl_per_token(logits, other, mask),
                          (p.exp() * (p - q)).sum(-1)[0].mean(), atol=1e-6)


def test_collator_pads_right():
    batch = ChatCollator(0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                             {"input_ids": [5], "labels": [5]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_lora_with_kl_saves_a_standard_peft_folder(tiny_dir, tmp_path):
    base = tiny_dir("qwen2")
    data = [{"messages": CHAT}] * 8
    res = finetune(base, data, tmp_path / "ad", kl_data=[{"messages": MULTI}] * 4,
                   kl_weight=1.0, kl_batch_size=2, max_steps=3, batch_size=4,
                   learning_rate=1e-2, progress=False, snapshot_every=1,
                   lora={"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "down_proj"]})
    # the adapter is zero at step 0 (B = 0), so the KL to the adapter-off model is zero
    assert res.log[0]["step"] == 0 and res.log[1]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert res.log[-1]["step"] == 3 and "sft_loss" in res.log[-1]
    assert len(res.snapshots) == 4
    assert (tmp_path / "ad" / "adapter_config.json").is_file()
    assert (tmp_path / "ad" / "adapter_model.safetensors").is_file()
    # plain PEFT loads it
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base),
                                           tmp_path / "ad")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expect = res.model(input_ids=ids).logits
        got = peft_model(input_ids=ids).logits
    assert_close(got, expect, atol=1e-5, what="trained model vs reference")
    # and so does emlens.load_model
    import emlens

    lens = emlens.load_model(base, adapter=tmp_path / "ad", device="cpu")
    with torch.no_grad():
        assert_close(lens(ids), expect, atol=1e-4, what="bridge logits vs HF")


def test_kl_needs_an_adapter(tiny_dir):
    with pytest.raises(InputError, match="adapter"):
        finetune(tiny_dir("qwen2"), [{"messages": CHAT}], None, kl_data=[{"messages": CHAT}],
                 kl_weight=1.0, max_steps=1, progress=False)
