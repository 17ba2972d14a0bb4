"""Shared fixtures: tiny random models in HF format, built locally, never downloaded.

The environment is made hermetic before anything imports huggingface_hub: no network
(HF_HUB_OFFLINE=1), a private HF cache and a private emlens cache per test session.

``lens(arch)`` gives the model that model-agnostic tests run on: an emlens-loaded
TransformerBridge under TransformerLens 4.x, or a HookedTransformer built from the same
directory under TransformerLens 3.x (the second CI leg).
"""

from __future__ import annotations

import os
import tempfile

_SESSION_DIR = tempfile.mkdtemp(prefix="emlens-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_SESSION_DIR, "hf-home")
os.environ["HF_HUB_CACHE"] = os.path.join(_SESSION_DIR, "hf-home", "hub")
os.environ["EMLENS_CACHE"] = os.path.join(_SESSION_DIR, "emlens-cache")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
# emlens' own choice: OMP_NUM_THREADS if set, else the idle physical cores (at most 2).
from emlens.threads import set_threads  # noqa: E402

set_threads()

TL_MAJOR = int(version("transformer-lens").split(".")[0])


def pytest_collection_modifyitems(config, items):
    """Under TransformerLens 3.x only the model-agnostic tests can run."""
    if TL_MAJOR >= 4:
        return
    skip = pytest.mark.skip(reason="needs TransformerLens 4.x (this is the TL 3.x leg)")
    for item in items:
        if "agnostic" not in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """``tiny_dir(arch, **shape)`` -> directory of a tiny random HF model (built once per session)."""
    from emlens.testing import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[tuple, Path] = {}

    def make(arch: str = "qwen2", **shape) -> Path:
        key = (arch, tuple(sorted(shape.items())))
        if key not in built:
            name = arch + "".join(f"-{k}{v}" for k, v in key[1])
            built[key] = build_tiny_model(arch, root / name, **shape)
        return built[key]

    return make


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, tiny_dir):
    """``tiny_adapter(arch, kind, **kw)`` -> directory of a PEFT adapter with non-zero B."""
    from emlens.testing import build_tiny_adapter

    root = tmp_path_factory.mktemp("tiny-adapters")
    built: dict[tuple, Path] = {}

    def make(arch: str = "qwen2", kind: str = "rank1", **kw) -> Path:
        key = (arch, kind, tuple(sorted(kw.items())))
        if key not in built:
            name = f"{arch}-{kind}" + "".join(f"-{k}{v}" for k, v in key[2])
            built[key] = build_tiny_adapter(tiny_dir(arch), root / name, kind=kind, **kw)
        return built[key]

    return make


def _hooked_transformer(path: Path):
    """A TL 3.x HookedTransformer with raw HF numerics, built offline from a local directory."""
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    cfg = get_pretrained_model_config(str(path), fold_ln=False, device="cpu", dtype=torch.float32)
    state = get_pretrained_state_dict(str(path), cfg, hf)
    model = HookedTransformer(cfg, tok, move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    return model.eval()


@pytest.fixture(scope="session")
def lens(tiny_dir):
    """``lens(arch)`` -> the TransformerLens model the model-agnostic tests use."""
    cache: dict[str, object] = {}

    def make(arch: str = "qwen2"):
        if arch not in cache:
            if TL_MAJOR >= 4:
                import emlens

                cache[arch] = emlens.load_model(tiny_dir(arch), device="cpu")
            else:
                cache[arch] = _hooked_transformer(tiny_dir(arch))
        return cache[arch]

    return make
