"""Run directories: keyed config, records and scores on disk, written atomically, resumable.

A run directory holds ``config.json`` and JSONL files of results. The config holds the
run's *keys*: everything that changes its numbers (the model and adapters with their
hashes, the direction's hash, the questions, prompts and judge prompts, the judge and its
server, decoding settings, seeds, the grid). Reopening a directory with other keys is
refused with a :class:`~emlens.errors.RunMismatchError` naming each key that differs, so
a result computed under one setting is never reused, or mixed into, a run under another.
:class:`RunDir` is the one place where a stored config is compared with a new one.

Every write goes to a temporary file that is renamed into place, so a crash leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._version import __version__
from .errors import FileFormatError, InputError, RunMismatchError
from .io import atomic_write_text, json_default, read_jsonl, write_jsonl

__all__ = ["RunDir", "RUN_SCHEMA", "differences"]

#: the layout of a keyed config file; a config without it predates keyed runs.
RUN_SCHEMA = 2
#: config.json entries that are not keys: written by RunDir, never compared.
_RESERVED = ("run_schema", "emlens_version", "created", "info")
_ABSENT = "<absent>"
_SHOWN = 8


def _plain(value: Any) -> Any:
    """The JSON round trip of a value (what a stored config reads back as)."""
    return json.loads(json.dumps(value, default=json_default))


def _empty(value: Any) -> bool:
    return value == _ABSENT or (isinstance(value, (dict, list)) and not value)


def _same(x: Any, y: Any) -> bool:
    return x == y and isinstance(x, bool) == isinstance(y, bool)


def _diff(x: Any, y: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in list(x) + [k for k in y if k not in x]:
            _diff(x.get(k, _ABSENT), y.get(k, _ABSENT), f"{path}.{k}" if path else str(k), out)
    elif isinstance(x, list) and isinstance(y, list):
        for i in range(max(len(x), len(y))):
            _diff(x[i] if i < len(x) else _ABSENT, y[i] if i < len(y) else _ABSENT,
                  f"{path}[{i}]", out)
    elif _empty(x) and _empty(y):
        return  # an empty dict or list is the same as none
    elif not _same(x, y):
        out.append((path, x, y))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The keys whose values differ between two configs, as dotted paths.

    A part only one side has (an added adapter, say) is one difference at its own path;
    an empty dict or list equals a missing one.

    Args:
        old: the stored keys.
        new: the keys of the run asking to reuse them.

    Returns:
        ``(path, old value, new value)`` for each difference; the side that lacks the
        part reads ``"<absent>"``.

    Example:
        >>> differences({"model": {"dtype": "float32"}, "n": 4},
        ...             {"model": {"dtype": "bfloat16"}, "n": 4})
        [('model.dtype', 'float32', 'bfloat16')]
    """
    out: list[tuple[str, Any, Any]] = []
    _diff(_plain(old), _plain(new), "", out)
    return out


def _keys_of(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k not in _RESERVED}


def _show(value: Any) -> str:
    text = value if value == _ABSENT else json.dumps(value, ensure_ascii=False,
                                                      separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(diffs: Sequence[tuple[str, Any, Any]]) -> str:
    shown = [f"{p}: {_show(x)} -> {_show(y)}" for p, x, y in diffs[:_SHOWN]]
    more = len(diffs) - _SHOWN
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


class RunDir:
    """A directory for one run: a keyed config file plus named JSONL files.

    Args:
        path: the directory (created if missing).
        config: the run's keys, everything that changes its numbers. ``None`` opens the
            directory without checking (to read it).
        info: recorded beside the keys but not compared (the device, library versions,
            the full model provenance).
        config_file: the name of the config file (a directory may hold the keys of
            several stages, e.g. ``config.json`` for sampling and ``judge.json`` for the
            scores judged from it).
        outputs: glob patterns of the result files this config describes; they are
            deleted by ``overwrite=True``, and finding them with no config is refused.
        overwrite: discard results computed with other keys (or without keys) instead
            of refusing to open the directory.
        overwrite_hint: how the caller lets a user overwrite, for the error message
            (e.g. ``"pass overwrite=True (--overwrite)"``).

    Raises:
        RunMismatchError: the directory holds results computed with other keys (the
            message names each key that differs, stored -> now), results written before
            runs were keyed, or results without a config.

    Example:
        >>> run = RunDir("runs/steer-sweep", config={"alphas": [1, 2]})   # doctest: +SKIP
        >>> run.save("cell-0", records)                                   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any] | None = None, *,
                 info: dict[str, Any] | None = None, config_file: str = "config.json",
                 outputs: Sequence[str] = (), overwrite: bool = False,
                 overwrite_hint: str | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path = self.path / config_file
        self.outputs = tuple(outputs)
        self.config: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}
        if config is None:
            if self.config_path.is_file():
                stored = self._read()
                self.config = _keys_of(stored)
                self.info = stored.get("info") or {}
            return
        keys = _plain(config)
        reserved = sorted(set(keys) & set(_RESERVED))
        if reserved:
            raise InputError(f"run config keys {reserved} are reserved for the run directory "
                             f"itself; rename them")
        self.config, self.info = keys, _plain(info or {})
        how = (f"use a new directory, or {overwrite_hint} to discard the results in it"
               if overwrite_hint else f"use a new directory, or delete {str(self.path)!r} "
                                      f"to start over")
        if self.config_path.is_file():
            stored = self._read()
            if stored.get("run_schema") != RUN_SCHEMA:
                if not overwrite:
                    raise RunMismatchError(
                        f"run directory {str(self.path)!r} was written before runs were keyed "
                        f"(its {config_file} has no run_schema {RUN_SCHEMA}), so emlens cannot "
                        f"tell which model, settings and judge its results were computed "
                        f"with and will not reuse them; {how}")
                self._reset()
            else:
                diffs = differences(_keys_of(stored), keys)
                if diffs and not overwrite:
                    raise RunMismatchError(
                        f"run directory {str(self.path)!r} holds results computed with other "
                        f"settings, so they cannot be reused for this run. What differs "
                        f"(stored -> now): {_describe(diffs)}. To proceed, {how}")
                if diffs:
                    self._reset()
                else:
                    return
        else:
            orphans = self._existing_outputs()
            if orphans and not overwrite:
                raise RunMismatchError(
                    f"run directory {str(self.path)!r} holds results ({', '.join(orphans[:3])}"
                    f"{', ...' if len(orphans) > 3 else ''}) but no {config_file} saying what "
                    f"they were computed with, so emlens will not reuse them; {how}")
            if orphans:
                self._reset()
        self._write(exclusive=not overwrite)

    # ------------------------------------------------------------------ config file

    def _read(self) -> dict[str, Any]:
        try:
            stored = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise FileFormatError(f"{str(self.config_path)!r} is not valid JSON ({e}); delete "
                                  f"it or use a new run directory") from None
        if not isinstance(stored, dict):
            raise FileFormatError(f"{str(self.config_path)!r} is not a run config (a JSON "
                                  f"object); delete it or use a new run directory")
        return stored

    def _existing_outputs(self) -> list[str]:
        found = {p.name for pattern in self.outputs for p in self.path.glob(pattern)
                 if p.is_file()}
        return sorted(found)

    def _reset(self) -> None:
        for name in self._existing_outputs():
            (self.path / name).unlink(missing_ok=True)

    def _write(self, exclusive: bool) -> None:
        text = json.dumps({**(self.config or {}), "run_schema": RUN_SCHEMA,
                           "emlens_version": __version__,
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "info": self.info},
                          indent=2, default=json_default)
        try:
            # created only if no other process created it meanwhile; if one did, its keys
            # must equal ours
            atomic_write_text(self.config_path, text, exclusive=exclusive)
        except FileExistsError:
            diffs = differences(_keys_of(self._read()), self.config or {})
            if diffs:
                raise RunMismatchError(
                    f"another process started a run in {str(self.path)!r} with other "
                    f"settings at the same time (stored -> now): {_describe(diffs)}; use a "
                    f"new directory") from None

    # ------------------------------------------------------------------ results

    def file(self, name: str) -> Path:
        return self.path / f"{name}.jsonl"

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    def save(self, name: str, records: Iterable[dict[str, Any]]) -> Path:
        return write_jsonl(self.file(name), records)

    def load(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.file(name))
