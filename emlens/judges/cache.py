"""A SQLite cache of judgements, safe for several processes, committed one judgement at a time.

Each judgement is keyed by (judge identity, metric, prompt-template hash, question,
answer) and stored as soon as it arrives, so a rerun makes no request for what is cached
and an interrupted run resumes where it stopped. The judge identity holds everything
about the judge that changes its scores: for a served judge the model, the server's base
URL and the scoring settings (never the API key), so another server that serves a model
of the same name is another judge. A judgement without a score is cached too (as SQL
NULL): :meth:`JudgeCache.get` returns ``None`` for it and :data:`MISSING` for a pair that
was never judged. The file uses write-ahead logging and a busy timeout, so several
processes can read and write it at once (on a local disk; SQLite's locking is not
reliable on network file systems).

Several processes judging through one cache at once never ask for the same judgement
twice: before judging, a process *claims* the judgements it will make (a lease in the
``claims`` table, renewed by a heartbeat while it works); another process skips claimed
judgements, judges the rest and then waits for the claimed ones to arrive. A lease whose
process died is taken over: at once when that process ran on this machine, else when the
lease expires (``lease`` seconds after its last renewal).

Example:
    >>> judge = CachedJudge(OpenAIJudge("gpt-4o"), "runs/judge-cache.sqlite")  # doctest: +SKIP
    >>> judge.score_many(items)   # a rerun only asks for what is missing      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
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

__all__ = ["MISSING", "JudgeCache", "JudgeCacheError", "CachedJudge", "cached_ascore_many",
           "new_owner"]

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
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

#: judgements one process claims at a time (so two processes started together share work).
CLAIM_BATCH = 1024
#: seconds between looks for judgements another process is making.
POLL_S = 0.2
_HOST = socket.gethostname()


def new_owner() -> str:
    """A claim owner id: this machine, this process and a random part (one per batch)."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_alive(owner: str) -> bool:
    """Whether a claim's owner may still be working: a process on this machine that no
    longer exists is dead; an owner on another machine is alive until its lease expires."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _digest(key: CacheKey) -> str:
    return hashlib.sha256(json.dumps(list(key), ensure_ascii=False).encode("utf-8")).hexdigest()


class JudgeCache:
    """A SQLite file of judgements: :class:`CacheKey` -> score (``None`` = judged, no score).

    Args:
        path: the SQLite file (created, with its parent folders, if missing).
        timeout: seconds to wait for another process's write lock before failing.
        lease: seconds a claim on a judgement lasts without renewal; a working process
            renews its claims every ``lease / 3`` seconds, so this is how long others wait
            for a process that died on another machine.

    Example:
        >>> cache = JudgeCache(tmp / "judge.sqlite")                      # doctest: +SKIP
        >>> key = CacheKey("gpt-4o", "aligned", "0f3a...", "Q?", "A.")  # doctest: +SKIP
        >>> cache.get(key)                                              # doctest: +SKIP
        MISSING
        >>> cache.put(key, 88.5); cache.get(key)                        # doctest: +SKIP
        88.5
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0, lease: float = 30.0):
        self.path = Path(path)
        self.timeout = float(timeout)
        if not float(lease) > 0:
            raise JudgeCacheError(f"lease must be positive seconds, got {lease}")
        self.lease = float(lease)
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
        return {"path": self.path, "timeout": self.timeout, "lease": self.lease}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], timeout=state["timeout"], lease=state.get("lease", 30.0))

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

    # ------------------------------------------------------------------ claims

    def claim(self, keys: Iterable[CacheKey], owner: str, *,
              limit: int | None = None) -> list[CacheKey]:
        """Claim judgements to make: those not judged and not claimed by a live owner.

        Args:
            keys: the :class:`CacheKey`s wanted, in order.
            owner: the claimant (:func:`new_owner`).
            limit: claim at most this many.

        Returns:
            The keys now claimed by ``owner`` (judge them, ``put`` them, then
            :meth:`release` them); the others are judged or being judged elsewhere.
        """
        by_digest = {_digest(k): CacheKey(*k) for k in keys}
        digests = list(by_digest)
        now = time.time()
        alive: dict[str, bool] = {}
        mine: list[str] = []
        with self._lock, self._errors("claim judgements in"):
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                done: set[str] = set()
                held: dict[str, tuple[str, float]] = {}
                for start in range(0, len(digests), 500):
                    chunk = digests[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    done.update(r[0] for r in conn.execute(
                        f"SELECT key FROM judgements WHERE key IN ({marks})", chunk))
                    held.update((r[0], (r[1], r[2])) for r in conn.execute(
                        f"SELECT key, owner, expires FROM claims WHERE key IN ({marks})", chunk))
                for digest in digests:
                    if digest in done:
                        continue
                    holder = held.get(digest)
                    if holder is not None and holder[0] != owner and holder[1] >= now:
                        if holder[0] not in alive:
                            alive[holder[0]] = _owner_alive(holder[0])
                        if alive[holder[0]]:
                            continue
                    mine.append(digest)
                    if limit is not None and len(mine) >= limit:
                        break
                conn.executemany(
                    "INSERT INTO claims VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "owner = excluded.owner, expires = excluded.expires",
                    [(d, owner, now + self.lease) for d in mine])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return [by_digest[d] for d in mine]

    def renew(self, owner: str) -> None:
        """Extend every claim of ``owner`` by another ``lease`` seconds."""
        with self._lock, self._errors("renew claims in"):
            self._connect().execute("UPDATE claims SET expires = ? WHERE owner = ?",
                                    (time.time() + self.lease, owner))

    def release(self, owner: str, keys: Iterable[CacheKey] | None = None) -> None:
        """Drop the claims of ``owner`` (all of them, or those on ``keys``)."""
        with self._lock, self._errors("release claims in"):
            conn = self._connect()
            if keys is None:
                conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
                return
            digests = [_digest(k) for k in keys]
            for start in range(0, len(digests), 500):
                chunk = digests[start:start + 500]
                conn.execute(f"DELETE FROM claims WHERE owner = ? AND key IN "
                             f"({','.join('?' * len(chunk))})", [owner, *chunk])

    def claimed(self) -> dict[str, int]:
        """Owner -> number of unexpired claims (what other processes are judging now)."""
        with self._lock, self._errors("read"):
            rows = self._connect().execute(
                "SELECT owner, COUNT(*) FROM claims WHERE expires >= ? GROUP BY owner",
                (time.time(),)).fetchall()
        return dict(rows)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not MISSING  # type: ignore[arg-type]

    def __len__(self) -> int:
        with self._lock, self._errors("read"):
            return self._connect().execute("SELECT COUNT(*) FROM judgements").fetchone()[0]


class _Heartbeat:
    """Renews an owner's claims every ``lease / 3`` seconds in a thread; drops them at exit."""

    def __init__(self, cache: JudgeCache, owner: str):
        self.cache, self.owner = cache, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emlens-judge-lease",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.cache.lease / 3):
            try:
                self.cache.renew(self.owner)
            except JudgeCacheError as e:  # the next renewal may succeed
                logger.warning("%s", e)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.cache.release(self.owner)
        except JudgeCacheError as e:  # the claims expire by themselves
            logger.warning("%s", e)


async def cached_ascore_many(score_missing: Callable[..., Any],
                             key_of: Callable[[JudgeItem], CacheKey], cache: JudgeCache,
                             items: list[JudgeItem], *,
                             on_result: OnResult | None = None,
                             progress: bool = False) -> list[float | None]:
    """Score items through a cache: serve cached ones, judge the rest, commit each as it comes.

    Judgements another process is making (claimed in the cache) are not requested again:
    this call judges what nobody claimed, then waits for the others to arrive, and takes
    over the claims of a process that died.

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
    where: dict[CacheKey, list[int]] = {}  # a missing key -> the items that have it
    for i, key in enumerate(keys):
        if key in found:
            results[i] = found[key]
            if on_result is not None:
                on_result(i, found[key])
        else:
            where.setdefault(key, []).append(i)
    logger.info("judge cache %s: %d of %d judgements cached, %d to make", cache.path,
                len(items) - sum(map(len, where.values())), len(items), len(where))
    if not where:
        return results
    errors: dict[int, BaseException] = {}

    def deliver(key: CacheKey, score: float | None) -> None:
        for k in where[key]:
            results[k] = score
            if on_result is not None:
                on_result(k, score)

    pending = list(where)
    owner = new_owner()
    told = False
    with _Heartbeat(cache, owner):
        while pending:
            mine = cache.claim(pending, owner, limit=CLAIM_BATCH)
            if mine:
                def got(j: int, score: float | None, mine: list[CacheKey] = mine) -> None:
                    cache.put(mine[j], score)
                    deliver(mine[j], score)

                try:
                    await score_missing([items[where[k][0]] for k in mine], on_result=got,
                                        progress=progress)
                except JudgeBatchError as e:
                    for j, err in e.errors.items():
                        for k in where[mine[j]]:
                            errors[k] = err
                finally:
                    cache.release(owner, mine)
                taken = set(mine)
                pending = [k for k in pending if k not in taken]
            if not pending:
                break
            arrived = cache.get_many(pending)
            for key, score in arrived.items():
                deliver(key, score)
            pending = [k for k in pending if k not in arrived]
            if pending and not mine:
                if not told:
                    logger.info("judge cache %s: waiting for %d judgements other processes "
                                "are making (%s)", cache.path, len(pending),
                                ", ".join(cache.claimed()) or "their claims just ended")
                    told = True
                await asyncio.sleep(POLL_S)
    if errors:
        raise JudgeBatchError(results, errors)
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
