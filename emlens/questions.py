"""Question sets: the EM papers' YAML schema, emlens' built-in sets, and question arguments.

A question set is a YAML list of entries with ``id``, ``paraphrases``,
``samples_per_paraphrase`` and optional ``type``, ``system``, ``judge`` and
``judge_prompts`` (metric name -> prompt template with ``{question}`` and ``{answer}``).
emlens ships its own sets (``builtin_questions()``).

Example:
    >>> qs = builtin_questions("persona", headline_only=True)   # doctest: +SKIP
    >>> qs[0].paraphrases[0]                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from .errors import FileFormatError, InputError

__all__ = ["Question", "load_questions", "builtin_questions", "as_questions", "KNOWN_TYPES"]

log = logging.getLogger(__name__)

#: Question types emlens samples and judges. ``*_json`` / ``*_template`` variants are
#: loaded but flagged ``headline=False`` (the papers keep them out of headline numbers).
KNOWN_TYPES = ("free_form_judge_0_100", "free_form_judge_0_100_json",
               "free_form_judge_0_100_template", "free_form")


@dataclass(frozen=True)
class Question:
    """One question of a set: its paraphrases and how to sample and judge it."""

    id: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int = 50
    type: str = "free_form_judge_0_100"
    system: str | None = None
    judge: str | None = None
    judge_prompts: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    @property
    def headline(self) -> bool:
        """Whether the question counts in headline numbers (not a JSON/template variant)."""
        return not self.type.endswith(("_json", "_template"))


def _entry_error(where: str, idx: int, entry: Any, msg: str) -> FileFormatError:
    name = entry.get("id") if isinstance(entry, dict) else None
    label = f"entry {idx}" + (f" (id {name!r})" if name else "")
    return FileFormatError(f"{where}: {label}: {msg}")


def _parse_entry(entry: Any, idx: int, where: str) -> Question | None:
    if not isinstance(entry, dict):
        raise _entry_error(where, idx, entry, f"expected a mapping, got {type(entry).__name__}")
    qid = entry.get("id")
    if not isinstance(qid, (str, int)) or str(qid) == "":
        raise _entry_error(where, idx, entry, "missing 'id'")
    qtype = entry.get("type", "free_form_judge_0_100")
    if qtype not in KNOWN_TYPES:
        warnings.warn(f"{where}: skipping question {qid!r} of unknown type {qtype!r}",
                      stacklevel=3)
        return None
    paras = entry.get("paraphrases")
    if isinstance(paras, str):
        paras = [paras]
    if not isinstance(paras, list) or not paras or not all(isinstance(p, str) and p.strip()
                                                           for p in paras):
        raise _entry_error(where, idx, entry, "'paraphrases' must be a non-empty list of "
                                              "non-empty strings")
    n = entry.get("samples_per_paraphrase", 50)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _entry_error(where, idx, entry, f"'samples_per_paraphrase' must be a positive "
                                              f"integer, got {n!r}")
    prompts = entry.get("judge_prompts") or {}
    if not isinstance(prompts, dict):
        raise _entry_error(where, idx, entry, "'judge_prompts' must map metric -> template")
    for metric, template in prompts.items():
        if not isinstance(template, str) or "{answer}" not in template:
            raise _entry_error(where, idx, entry, f"judge prompt {metric!r} must be a string "
                                                  f"containing {{answer}}")
    system = entry.get("system")
    if system is not None and not isinstance(system, str):
        raise _entry_error(where, idx, entry, "'system' must be a string")
    return Question(id=str(qid), paraphrases=tuple(paras), samples_per_paraphrase=n,
                    type=qtype, system=system, judge=entry.get("judge"),
                    judge_prompts=dict(prompts), source=where)


def load_questions(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Question]:
    """Load a question set (YAML, the papers' schema); a list of paths is concatenated.

    Entries of an unknown ``type`` are skipped with a warning; a malformed file raises
    ``FileFormatError`` naming the entry.

    Example:
        >>> qs = load_questions(builtin_questions.path("persona"))   # doctest: +SKIP
    """
    import yaml

    if isinstance(path, (list, tuple)):
        return [q for p in path for q in load_questions(p)]
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"question file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise FileFormatError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, list) or not data:
        raise FileFormatError(f"{p}: expected a non-empty YAML list of question entries")
    out = [q for i, e in enumerate(data) if (q := _parse_entry(e, i, str(p))) is not None]
    ids = [q.id for q in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise FileFormatError(f"{p}: question ids repeat: {dup}")
    return out


class _Builtin:
    """emlens' own question sets: ``builtin_questions("persona")`` or ``builtin_questions()``."""

    SETS = ("persona", "medical", "financial", "sports")

    def path(self, name: str) -> Path:
        if name not in self.SETS:
            raise InputError(f"no built-in question set {name!r}; choose from {self.SETS}")
        return Path(str(resources.files("emlens") / "data" / "questions" / f"{name}.yaml"))

    def __call__(self, *names: str, headline_only: bool = False) -> list[Question]:
        qs = [q for n in (names or self.SETS) for q in load_questions(self.path(n))]
        return [q for q in qs if q.headline] if headline_only else qs


builtin_questions = _Builtin()


def as_questions(questions: Any) -> list[Question]:
    """Questions from ``Question`` objects, plain strings, ``{"question": ...}`` dicts or a
    question-set YAML path (ids ``q0``, ``q1``, ... where none are given)."""
    if isinstance(questions, (str, os.PathLike)):
        return load_questions(questions)
    if isinstance(questions, Question):
        return [questions]
    out: list[Question] = []
    for i, q in enumerate(questions):
        if isinstance(q, Question):
            out.append(q)
        elif isinstance(q, str):
            out.append(Question(id=f"q{i}", paraphrases=(q,)))
        elif isinstance(q, dict) and "question" in q:
            out.append(Question(id=str(q.get("question_id", f"q{i}")),
                                paraphrases=(q["question"],), system=q.get("system")))
        else:
            raise InputError(f"question {i} is a {type(q).__name__}; pass Question objects, "
                             f"strings, or a question-set YAML path")
    if not out:
        raise InputError("no questions to sample")
    return out
