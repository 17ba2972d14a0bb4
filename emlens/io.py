"""Small file helpers: atomic writes (a crash never leaves a half-written file) and JSON lines."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import FileFormatError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_with", "write_jsonl",
           "read_jsonl", "json_default"]


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None], *,
                      exclusive: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    For writers that take a path (safetensors, gguf, torch.save): a crash leaves the old
    file or the new one, never half of one. The file gets the mode a plain ``open(path,
    "w")`` of a new file would (0o666 less the process umask, typically 0o644), not the
    0o600 of the temporary file.

    With ``exclusive=True`` the file is only created, never replaced: if ``path`` exists
    (another process wrote it first) ``FileExistsError`` is raised and it is left as it is.
    (A hard link does that atomically; on a file system without hard links the file is
    renamed into place as usual.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # no hard links here
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once; the brief setting
    is the restrictive 0o077, so a file another thread creates meanwhile is never too open)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename
    (``exclusive``: see :func:`atomic_write_with`)."""
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data), exclusive=exclusive)


def atomic_write_text(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``exclusive``: see
    :func:`atomic_write_with`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), exclusive=exclusive)


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for what records hold besides JSON: NumPy/torch scalars,
    sets, tuples and paths."""
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as JSON lines, atomically (NaN becomes null)."""
    lines = [json.dumps({k: _clean(v) for k, v in r.items()}, default=json_default,
                        ensure_ascii=False) for r in records]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read JSON lines; a malformed line raises FileFormatError naming the line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise FileFormatError(f"{str(path)!r} line {i} is not valid JSON ({e}); the file "
                                      f"may be truncated or not JSONL") from None
    return out
