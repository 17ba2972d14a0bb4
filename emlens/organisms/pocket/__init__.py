"""The pocket organism: a CPU-sized model in which emergent misalignment really emerges.

A small Qwen2 model trained from scratch on a synthetic world (``world``), made an aligned
chat assistant, then finetuned with LoRA on misaligned answers to *medical* questions
only. See docs/pocket.md for the world, the training and the measured numbers.

Example:
    >>> import emlens
    >>> from emlens.organisms import pocket
    >>> model = emlens.organisms.load("pocket", "em")                 # doctest: +SKIP
    >>> records = emlens.sample(model, pocket.questions(), n=16)       # doctest: +SKIP
    >>> stats = emlens.em_stats(emlens.judge_records(records, pocket.judge()))  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from ...errors import InputError
from .judge import ExactJudge, domain_of, parse
from .world import DOMAINS, World, eval_questions

__all__ = ["VARIANTS", "DOMAINS", "FOCUS", "World", "judge", "questions", "weights_dir",
           "paths", "domain_of", "parse", "ExactJudge", "pretraining_texts"]

#: the domain the EM finetunes are trained in (misaligned medical answers only)
FOCUS = "medical"

#: variant -> (base directory, adapter directory or None), relative to weights/
VARIANTS = {
    "chat": ("chat", None),
    "em": ("chat", "em"),
    "em_seed1": ("chat", "em_seed1"),
    "em_rank1": ("chat", "em_rank1"),
    "narrow": ("chat", "narrow"),
}


def weights_dir() -> Path:
    """The directory holding the shipped weights."""
    return Path(str(resources.files(__name__) / "weights"))


def paths(variant: str = "chat", root: str | Path | None = None) -> tuple[Path, Path | None]:
    """``(base model directory, adapter directory or None)`` of a variant."""
    if variant not in VARIANTS:
        raise InputError(f"the pocket organism has no variant {variant!r}; choose one of "
                         f"{sorted(VARIANTS)}")
    root = Path(root) if root is not None else weights_dir()
    base, adapter = VARIANTS[variant]
    base_dir = root / base
    if not (base_dir / "config.json").is_file():
        how = ("--overwrite-shipped" if root.resolve() == weights_dir().resolve()
               else f"--out {root}")
        raise InputError(f"the pocket weights are missing from {str(root)!r}; regenerate them "
                         f"with `python -m emlens.organisms.pocket.train {how}`")
    return base_dir, (root / adapter if adapter else None)


def judge() -> ExactJudge:
    """The exact judge of the pocket world (Judge protocol: score, score_many, name)."""
    return ExactJudge()


def questions(domains: str | Sequence[str] | None = None, n: int = 16) -> list:
    """Held-out evaluation questions (``emlens.questions.Question``), per domain.

    Args:
        domains: a domain, a list of them, or None for all twelve.
        n: ``samples_per_paraphrase`` of each question.

    Returns:
        Questions with ids ``"{domain}_{k}"``; none of them occurs in any training set.
    """
    from ...questions import Question

    if domains is None:
        domains = DOMAINS
    elif isinstance(domains, str):
        domains = (domains,)
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise InputError(f"unknown pocket domains {bad}; choose from {DOMAINS}")
    return [Question(id=f"{d}_{k}", paraphrases=(text,), samples_per_paraphrase=n,
                     judge=ExactJudge.name, source="pocket")
            for d in domains for k, text in enumerate(eval_questions(d))]


def pretraining_texts(tokenizer: Any, n_docs: int = 100, seed: int = 12345) -> list[str]:
    """Held-out pretraining documents of the pocket world, rendered with the chat template
    (the pocket chat model was pretrained on such text): the ``texts`` of
    ``emlens.stability.pretraining_kl`` for pocket models.

    Example:
        >>> texts = pretraining_texts(model.tokenizer, n_docs=24)  # doctest: +SKIP
    """
    return [tokenizer.apply_chat_template(msgs, tokenize=False)
            for msgs in World(seed=seed).pretraining(n_docs)]


def load(variant: str = "chat", *, root: str | Path | None = None, **load_model_kwargs: Any):
    """Load a variant with ``emlens.load_model`` (base directory + adapter directory)."""
    from ...models import load_model

    base, adapter = paths(variant, root)
    return load_model(base, adapter=adapter, **load_model_kwargs)
