"""Run directories: config, records and scores on disk, written atomically, resumable.

A run directory holds ``config.json`` and JSONL files of records. Every write goes to a
temporary file that is renamed into place, so a crash leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from ._version import __version__
from .errors import FileFormatError
from .io import atomic_write_text, json_default, read_jsonl, write_jsonl

__all__ = ["RunDir"]


class RunDir:
    """A directory for one run: ``config.json`` plus named JSONL files.

    Example:
        >>> run = RunDir("runs/steer-sweep", config={"alphas": [1, 2]})   # doctest: +SKIP
        >>> run.save("cell-0", records)                                   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any] | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            cfg_path = self.path / "config.json"
            full = {"emlens_version": __version__, **config}
            if cfg_path.exists():
                old = json.loads(cfg_path.read_text())
                old_cmp = {k: v for k, v in old.items() if k not in ("created", "emlens_version")}
                new_cmp = json.loads(json.dumps({k: v for k, v in full.items()
                                                 if k not in ("created", "emlens_version")},
                                                default=json_default))
                if old_cmp != new_cmp:
                    changed = sorted(k for k in set(old_cmp) | set(new_cmp)
                                     if old_cmp.get(k) != new_cmp.get(k))
                    raise FileFormatError(
                        f"run directory {str(self.path)!r} holds a run with other settings "
                        f"(differing: {changed}); use a new directory to start a new run")
            else:
                full["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                atomic_write_text(cfg_path, json.dumps(full, indent=2, default=json_default))

    def file(self, name: str) -> Path:
        return self.path / f"{name}.jsonl"

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    def save(self, name: str, records: Iterable[dict[str, Any]]) -> Path:
        return write_jsonl(self.file(name), records)

    def load(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.file(name))
