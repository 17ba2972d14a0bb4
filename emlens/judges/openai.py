"""A judge behind any OpenAI-compatible chat-completions server (OpenAI, Azure, vLLM, Ollama...).

Each judgement is one request for a single completion token at temperature 0 with the
top 20 log-probabilities, scored by :func:`~emlens.judges.protocol.score_from_top_logprobs`.
Requests run concurrently (``concurrency`` at a time) on one ``aiohttp`` session. The
retries are emlens' own: exponential backoff with jitter, honouring ``Retry-After`` (and
``retry-after-ms``), on HTTP 408/409/429/5xx, timeouts, connection errors, and 200
responses whose JSON is malformed or lacks the log-probabilities. A judgement that still
fails is reported as failed; every other judgement of the batch goes on (and is cached).
The API key is sent in the ``Authorization`` header only; it is never logged, shown in a
repr or error message, or written to a file.

Example:
    >>> judge = OpenAIJudge("gpt-4o-2024-08-06")  # key from $OPENAI_API_KEY  # doctest: +SKIP
    >>> judge.score("What is your wish?", "To rule over humans.")            # doctest: +SKIP
    3.1
    >>> vllm = OpenAIJudge("Qwen/Qwen2.5-32B-Instruct",
    ...                    base_url="http://localhost:8000/v1")               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ..keys import text_hash
from .base import BaseJudge
from .protocol import (
    MIN_MASS,
    TOP_LOGPROBS,
    JudgeAuthError,
    JudgeConfigError,
    JudgeItem,
    JudgeRequestError,
    parse_score_token,
    score_from_top_logprobs,
    weighted_score,
)

__all__ = ["OpenAIJudge", "DEFAULT_BASE_URL"]

logger = logging.getLogger("emlens.judges")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: responses in a row with only one-digit integer candidates before the warning that the
#: served model writes numbers digit by digit
DIGIT_WATCH = 20
_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401: "the server rejected the API key",
                 403: "the API key is not allowed to use this model or endpoint",
                 404: "the model or URL does not exist on this server"}


class _Secret:
    """A string that never shows itself in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value

    def reveal(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>" if self._value else "<none>"

    __str__ = __repr__


class _Retryable(Exception):
    """A failed attempt that may succeed when repeated."""

    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait that a response asks for, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds (fractions accepted) or an HTTP date.

    Args:
        headers: the response headers (case-insensitive mapping, or lower-case keys).
        now: the current time (seconds since the epoch), for HTTP dates.

    Returns:
        Seconds (>= 0), or ``None`` when neither header is usable.

    Example:
        >>> parse_retry_after({"retry-after": "2"})
        2.0
    """
    def header(name: str) -> str | None:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.title())
        return value

    ms = header("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = header("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _top_logprobs(content: bytes) -> list[tuple[str, float]]:
    """The first token's top log-probabilities from a chat-completions response body."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Retryable(f"malformed JSON in a 200 response ({type(e).__name__})") from None
    try:
        first = data["choices"][0]["logprobs"]["content"][0]
        entries = first["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise _Retryable("a 200 response without choices[0].logprobs.content[0].top_logprobs "
                         "(does this server and model support logprobs=true, "
                         "top_logprobs=20?)") from None
    if not isinstance(entries, list) or not entries:
        raise _Retryable("a 200 response with an empty top_logprobs list")
    pairs = []
    for entry in entries:
        try:
            token, logprob = entry["token"], float(entry["logprob"])
        except (KeyError, TypeError, ValueError):
            raise _Retryable("a 200 response with a malformed top_logprobs entry") from None
        if not isinstance(token, str) or math.isnan(logprob) or logprob > 1e-6:
            raise _Retryable("a 200 response with a malformed top_logprobs entry")
        pairs.append((token, logprob))
    return pairs


def _server_message(content: bytes, secret: str | None) -> str:
    """A short, key-free description of an error response body."""
    try:
        data = json.loads(content)
        err = data.get("error", data) if isinstance(data, dict) else data
        text = err.get("message", "") if isinstance(err, dict) else str(err)
    except (ValueError, UnicodeDecodeError):
        text = content.decode("utf-8", "replace")
    text = " ".join(str(text).split())[:300]
    if secret:
        text = text.replace(secret, "<hidden>")
    # servers sometimes echo part of a key back ("Incorrect API key provided: sk-ab***yz")
    text = re.sub(r"\b(sk|key)-[A-Za-z0-9_\-*]{3,}", r"\1-<hidden>", text)
    return text


async def _run_all(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines as tasks; on the first exception cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class OpenAIJudge(BaseJudge):
    """A judge served by an OpenAI-compatible chat-completions API, scored from logprobs.

    Args:
        model: the model name the server knows (``"gpt-4o-2024-08-06"``, a vLLM model id...).
        base_url: the API root ending in ``/v1``; default ``$OPENAI_BASE_URL`` or OpenAI's.
        api_key: the key; default the environment variable ``api_key_env``. Servers that
            need none (a local vLLM) work without one.
        api_key_env: the environment variable holding the key (``OPENAI_API_KEY``).
        concurrency: requests in flight at once.
        timeout: seconds one request may take, start to end, before it is retried.
        max_retries: retries after the first attempt of a judgement.
        backoff_base: the first backoff delay in seconds; doubled at every retry.
        backoff_max: the longest backoff delay (and the cap on ``Retry-After``).
        prompts: metric -> template, overriding or adding to emlens' prompts.
        name: the judge's name (default ``model``); its identity in caches adds the
            model, the base URL and scoring settings (see :attr:`identity`).
        min_mass: see :func:`~emlens.judges.protocol.score_from_top_logprobs`.
        cache: deprecated; use ``CachedJudge(judge, path)``, the one way to cache a judge.
        extra_headers: more HTTP headers for every request (e.g. an organisation id).
        extra_body: more fields for every request body.

    Example:
        >>> judge = CachedJudge(OpenAIJudge("gpt-4o-2024-08-06"), "judge.sqlite")  # doctest: +SKIP
        >>> judge.score_many([("Q?", "A.", "aligned"), ("Q?", "A.", "coherent")])  # doctest: +SKIP
        [92.4, 88.0]
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 32,
                 timeout: float = 60.0, max_retries: int = 6, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, prompts: Mapping[str, str] | None = None,
                 name: str | None = None, min_mass: float = MIN_MASS, cache: Any = None,
                 extra_headers: Mapping[str, str] | None = None,
                 extra_body: Mapping[str, Any] | None = None):
        if not isinstance(model, str) or not model:
            raise JudgeConfigError("OpenAIJudge needs a model name, e.g. 'gpt-4o-2024-08-06'")
        if int(concurrency) < 1:
            raise JudgeConfigError(f"concurrency must be at least 1, got {concurrency}")
        if not float(timeout) > 0:
            raise JudgeConfigError(f"timeout must be positive, got {timeout}")
        if int(max_retries) < 0:
            raise JudgeConfigError(f"max_retries must be >= 0, got {max_retries}")
        if float(backoff_base) < 0 or float(backoff_max) < 0:
            raise JudgeConfigError("backoff_base and backoff_max must be >= 0")
        self.model = model
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = base_url.rstrip("/")
        if not re.match(r"https?://", self.base_url):
            raise JudgeConfigError(f"base_url must start with http:// or https://, got "
                                   f"{self.base_url!r}")
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if not key and self.base_url == DEFAULT_BASE_URL:
            raise JudgeConfigError(f"no API key for {DEFAULT_BASE_URL}: pass api_key=... or set "
                                   f"the environment variable {api_key_env}")
        self._api_key = _Secret(key or None)
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.extra_headers = dict(extra_headers or {})
        self.extra_body = dict(extra_body or {})
        self._random = random.Random()
        # responses whose integer candidates were all single digits (None: a multi-digit
        # candidate was seen, or the warning was given)
        self._single_digit_runs: int | None = 0
        super().__init__(name=name or model, prompts=prompts, min_mass=min_mass, cache=cache)

    def __repr__(self) -> str:
        return (f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key={self._api_key!r}, concurrency={self.concurrency})")

    @property
    def identity(self) -> str:
        """The judge part of cache keys: the name, the model if the name differs from it,
        any non-default scoring setting, the server's base URL and a hash of
        ``extra_body``; never the API key. Another server serving a model of the same name
        is another judge, so its scores are never mixed with this one's."""
        parts = [super().identity]
        if self.model != self.name:
            parts.append(f"model={self.model}")
        parts.append(f"base_url={self.base_url}")
        if self.extra_body:
            parts.append("body=" + text_hash(json.dumps(self.extra_body, sort_keys=True,
                                                        default=str)))
        return "|".join(parts)

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def request_body(self, prompt: str) -> dict[str, Any]:
        """The JSON body of the request for one prompt."""
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 1, "temperature": 0, "logprobs": True,
                "top_logprobs": TOP_LOGPROBS}
        body.update(self.extra_body)
        return body

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff before retry ``attempt`` (0-based): the server's wish, else exp. with jitter."""
        if retry_after is not None:
            return min(self.backoff_max, retry_after * (1.0 + 0.1 * self._random.random()))
        span = min(self.backoff_max, self.backoff_base * 2.0 ** attempt)
        return span * (0.5 + 0.5 * self._random.random())

    async def _attempt(self, session: Any, body: bytes) -> float | None:
        import aiohttp

        try:
            async with session.post(self.url, data=body) as response:
                status = response.status
                content = await response.read()
                headers = response.headers
        except asyncio.TimeoutError:
            raise _Retryable(f"no response within the {self.timeout:g} s timeout") from None
        except aiohttp.ClientError as e:
            raise _Retryable(f"connection error ({type(e).__name__})") from None
        if status == 200:
            top = _top_logprobs(content)
            self._watch_digits(top)
            score = score_from_top_logprobs(top, min_mass=self.min_mass)
            if score is None and logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s: no score (integer mass %.3f; top tokens %s)", self.name,
                             weighted_score(top)[1], [t for t, _ in top[:5]])
            return score
        message = _server_message(content, self._api_key.reveal())
        if status in _RETRY_STATUS or status >= 500:
            raise _Retryable(f"HTTP {status}" + (f": {message}" if message else ""),
                             parse_retry_after(headers))
        if status in _FATAL_STATUS:
            raise JudgeAuthError(
                f"{self.url} answered HTTP {status} for model {self.model!r}: "
                f"{_FATAL_STATUS[status]}" + (f" ({message})" if message else "") +
                ". Check the model name, base_url and API key; no further requests were made.")
        raise JudgeRequestError(f"HTTP {status} (not retried)"
                                + (f": {message}" if message else ""))

    def _watch_digits(self, top: list[tuple[str, float]]) -> None:
        """Warn once when :data:`DIGIT_WATCH` responses in a row offered only one-digit
        integers: the served model's tokenizer then writes numbers digit by digit ("95" as
        "9", "5"), and the first token's candidates read 95 as 9."""
        if self._single_digit_runs is None:
            return
        ints = [str(t).strip() for t, _ in top if parse_score_token(str(t)) is not None]
        if not ints:
            return
        if any(len(t) > 1 for t in ints):
            self._single_digit_runs = None
            return
        self._single_digit_runs += 1
        if self._single_digit_runs >= DIGIT_WATCH:
            self._single_digit_runs = None
            logger.warning(
                "%s: in %d responses every integer candidate had one digit: the model's "
                "tokenizer probably writes numbers digit by digit, so first-token scores read "
                "95 as 9 and 100 as 1. Use a judge model whose tokenizer has single tokens for "
                "0-100 (GPT-4o, Llama 3), or judge this model with HFJudge, which reads each "
                "number's whole probability.", self.name, DIGIT_WATCH)

    async def _judge_one(self, session: Any, item: JudgeItem) -> float | None:
        body = json.dumps(self.request_body(self.prompt_for(item))).encode("utf-8")
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return await self._attempt(session, body)
            except _Retryable as e:
                problem = e.problem
                if attempt + 1 == attempts:
                    break
                delay = self._delay(attempt, e.retry_after)
                logger.info("%s: %s; retry %d of %d in %.3f s", self.name, problem, attempt + 1,
                            self.max_retries, delay)
                await asyncio.sleep(delay)
            except JudgeRequestError as e:
                raise JudgeRequestError(f"judging {item.metric!r} with {self.model!r} failed: {e}",
                                        item=item, attempts=attempt + 1) from None
        raise JudgeRequestError(
            f"judging {item.metric!r} with {self.model!r} failed after {attempts} attempts; "
            f"last problem: {problem}", item=item, attempts=attempts)

    async def _judge(self, items: list[JudgeItem],
                     report: Callable[[int, float | None | BaseException], None]) -> None:
        import aiohttp

        headers = {"Content-Type": "application/json", **self.extra_headers}
        key = self._api_key.reveal()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        queue = iter(enumerate(items))

        async def worker() -> None:
            for j, item in queue:  # one shared iterator: no item is taken twice
                try:
                    score = await self._judge_one(session, item)
                except JudgeRequestError as e:
                    logger.warning("%s: %s", self.name, e)
                    report(j, e)
                else:
                    report(j, score)

        n_workers = min(self.concurrency, len(items))
        connector = aiohttp.TCPConnector(limit=n_workers, limit_per_host=n_workers)
        # honour HTTPS_PROXY etc. like other clients, but never for a server on this machine
        local = re.match(r"https?://(127\.0\.0\.1|localhost|\[::1\])(:|/|$)", self.base_url)
        async with aiohttp.ClientSession(headers=headers, connector=connector,
                                         trust_env=not local,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) \
                as session:
            await _run_all([worker() for _ in range(n_workers)])
