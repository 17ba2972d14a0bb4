"""A SQLite cache of judgements, safe for several processes, committed one judgement at a time.

Each judgement is keyed by (judge, metric, prompt-template hash, question, answer) and
stored as soon as it arrives, so a rerun makes no request for what is cached and an
interrupted run resumes where it stopped. A judgement without a score is cached too (as
SQL NULL): :meth:`JudgeCache.get` returns ``None`` for it and :data:`MISSING` for a pair
that was never judged. The file uses write-ahead logging and a busy timeout, so several
processes can read and write it at once (on a local disk; SQLite's locking is not
reliable on network file systems).

Example:
    >>> judge = CachedJudge(OpenAIJudge("gpt-4o"), "runs/judge-cache.sqlite")  # doctest: +SKIP
    >>> judge.score_many(items)   # a rerun only asks for what is missing      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import FileFormatError
from .protocol import (
    CacheKey,
    ItemLike,
    Judge,
    JudgeBatchError,
    JudgeError,
    JudgeItem,
    JudgeMixin,
    OnResult,
    as_items,
)

__all__ = ["MISSING", "JudgeCache", "JudgeCacheError", "CachedJudge", "cached_ascore_many"]

logger = logging.getLogger("emlens.judges")

SCHEMA_VERSION = "1"


class JudgeCacheError(JudgeError):
    """The judge cache could not be read or written (locked too long, disk full...)."""


class _Missing:
    """The type of :data:`MISSING`."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: returned by :meth:`JudgeCache.get` for a pair that was never judged (``None`` = no score).
MISSING: Any = _Missing()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    metric TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    score REAL,
    created REAL NOT NULL
);
"""


def _digest(key: CacheKey) -> str:
    return hashlib.sha256(json.dumps(list(key), ensure_ascii=False).encode("utf-8")).hexdigest()


class JudgeCache:
    """A SQLite file of judgements: :class:`CacheKey` -> score (``None`` = judged, no score).

    Args:
        path: the SQLite file (created, with its parent folders, if missing).
        timeout: seconds to wait for another process's write lock before failing.

    Example:
        >>> cache = JudgeCache(tmp / "judge.sqlite")                      # doctest: +SKIP
        >>> key = CacheKey("gpt-4o", "aligned", "0f3a...", "Q?", "A.")  # doctest: +SKIP
        >>> cache.get(key)                                              # doctest: +SKIP
        MISSING
        >>> cache.put(key, 88.5); cache.get(key)                        # doctest: +SKIP
        88.5
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0):
        self.path = Path(path)
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connect()

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # a connection must not cross a fork: reopen in a child process
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = sqlite3.connect(str(self.path), timeout=self.timeout,
                                       isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    logger.warning("judge cache %s: could not switch to WAL mode (got %s)",
                                   self.path, mode)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                             (SCHEMA_VERSION,))
                version = conn.execute(
                    "SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0]
                break
            except sqlite3.DatabaseError as e:
                # two processes creating a new file at once can briefly see it locked
                if "locked" in str(e):
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    raise JudgeCacheError(f"{self.path} stayed locked by another process for "
                                          f"{self.timeout:g} s; raise timeout= or wait for it "
                                          f"to finish") from None
                raise FileFormatError(f"{self.path} is not a usable judge cache "
                                      f"({type(e).__name__}: {e}); delete it or pick another "
                                      f"path") from None
        if version != SCHEMA_VERSION:
            conn.close()
            raise FileFormatError(f"{self.path} is a judge cache of schema version {version}; "
                                  f"this emlens reads version {SCHEMA_VERSION}")
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _errors(self, action: str):
        try:
            yield
        except sqlite3.Error as e:
            raise JudgeCacheError(f"could not {action} the judge cache {self.path}: "
                                  f"{type(e).__name__}: {e}") from None

    def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], timeout=state["timeout"])

    def get(self, key: CacheKey, default: Any = MISSING) -> Any:
        """The cached score of a key: a float, ``None`` (judged, no score) or ``default``.

        Args:
            key: the :class:`CacheKey`.
            default: returned when the key was never judged (:data:`MISSING`).

        Returns:
            The score, ``None`` or ``default``.
        """
        found = self.get_many([key])
        return found.get(CacheKey(*key), default)

    def get_many(self, keys: Iterable[CacheKey]) -> dict[CacheKey, float | None]:
        """The cached entries among ``keys``; keys never judged are absent from the result.

        Args:
            keys: :class:`CacheKey`s.

        Returns:
            key -> score (``None`` = judged, no score), for the keys found.
        """
        by_digest = {_digest(k): CacheKey(*k) for k in keys}
        digests = list(by_digest)
        found: dict[CacheKey, float | None] = {}
        with self._lock, self._errors("read"):
            conn = self._connect()
            for start in range(0, len(digests), 500):
                chunk = digests[start:start + 500]
                rows = conn.execute(
                    f"SELECT key, score FROM judgements WHERE key IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall()
                for digest, score in rows:
                    found[by_digest[digest]] = score
        return found

    def put(self, key: CacheKey, score: float | None) -> None:
        """Store one judgement and commit it at once (the first judgement of a key is kept).

        Args:
            key: the :class:`CacheKey`.
            score: the score, or ``None`` for a judgement without a score.
        """
        key = CacheKey(*key)
        value = None if score is None else float(score)
        with self._lock, self._errors("write"):
            self._connect().execute(
                "INSERT INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO NOTHING",
                (_digest(key), *key, value, time.time()))

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not MISSING  # type: ignore[arg-type]

    def __len__(self) -> int:
        with self._lock, self._errors("read"):
            return self._connect().execute("SELECT COUNT(*) FROM judgements").fetchone()[0]


async def cached_ascore_many(score_missing: Callable[..., Any],
                             key_of: Callable[[JudgeItem], CacheKey], cache: JudgeCache,
                             items: list[JudgeItem], *,
                             on_result: OnResult | None = None,
                             progress: bool = False) -> list[float | None]:
    """Score items through a cache: serve cached ones, judge the rest, commit each as it comes.

    Args:
        score_missing: ``async (items, on_result=, progress=) -> scores`` of the real judge.
        key_of: item -> :class:`CacheKey`.
        cache: the :class:`JudgeCache`.
        items: the items.
        on_result: called as ``on_result(index, score)`` for every item, cached or new.
        progress: show a progress bar for the judged part.

    Returns:
        One score per item.
    """
    keys = [key_of(item) for item in items]
    found = cache.get_many(keys)
    results: list[float | None] = [None] * len(items)
    todo: list[int] = []
    first_of: dict[CacheKey, int] = {}
    for i, key in enumerate(keys):
        if key in found:
            results[i] = found[key]
            if on_result is not None:
                on_result(i, found[key])
        elif key not in first_of:
            first_of[key] = i
            todo.append(i)
    n_cached = sum(1 for key in keys if key in found)
    logger.info("judge cache %s: %d of %d judgements cached, %d to make", cache.path, n_cached,
                len(items), len(todo))
    if not todo:
        return results
    dupes: dict[int, list[int]] = {i: [] for i in todo}
    for i, key in enumerate(keys):
        if key not in found and first_of[key] != i:
            dupes[first_of[key]].append(i)

    def got(j: int, score: float | None) -> None:
        i = todo[j]
        cache.put(keys[i], score)
        for k in (i, *dupes[i]):
            results[k] = score
            if on_result is not None:
                on_result(k, score)

    try:
        await score_missing([items[i] for i in todo], on_result=got, progress=progress)
    except JudgeBatchError as e:
        errors = {}
        for j, err in e.errors.items():
            for k in (todo[j], *dupes[todo[j]]):
                errors[k] = err
        raise JudgeBatchError(results, errors) from None
    return results


class CachedJudge(JudgeMixin):
    """Any :class:`~emlens.judges.protocol.Judge`, with its judgements cached in a SQLite file.

    Args:
        judge: the judge to wrap.
        cache: a path to the SQLite file, or a :class:`JudgeCache`.

    Example:
        >>> judge = CachedJudge(HFJudge("Qwen/Qwen2.5-7B-Instruct"), "j.sqlite")  # doctest: +SKIP
        >>> judge.score("Q?", "A.", "coherent")                                  # doctest: +SKIP
        91.2
    """

    def __init__(self, judge: Judge, cache: str | os.PathLike | JudgeCache):
        self.judge = judge
        self.cache = cache if isinstance(cache, JudgeCache) else JudgeCache(cache)

    @property
    def name(self) -> str:
        """The wrapped judge's name."""
        return self.judge.name

    def __repr__(self) -> str:
        return f"CachedJudge({self.judge!r}, {self.cache!r})"

    def cache_key(self, item: JudgeItem) -> CacheKey:
        """The wrapped judge's cache key."""
        return self.judge.cache_key(item)

    async def ascore_many(self, items: Iterable[ItemLike], *, on_result: OnResult | None = None,
                          progress: bool = False) -> list[float | None]:
        """Score many items, serving cached ones and committing each new one as it arrives.

        Args:
            items: ``(question, answer, metric[, template])`` tuples or :class:`JudgeItem`s.
            on_result: called as ``on_result(index, score)`` for every item.
            progress: show a progress bar.

        Returns:
            One score (or ``None``) per item, in order.
        """
        items = as_items(items)
        return await cached_ascore_many(self.judge.ascore_many, self.cache_key, self.cache, items,
                                        on_result=on_result, progress=progress)
