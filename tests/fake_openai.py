"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, with injectable faults.

It speaks enough of the schema for judges: ``POST /v1/chat/completions`` answers with
``choices[0].logprobs.content[0].top_logprobs``. Tests choose the distribution per
prompt and a list of faults per prompt key, applied to that key's successive requests:

``"429"`` (with ``Retry-After``), ``"500"``, ``"503"``, ``"slow"`` (answers after
``slow_s``), ``"malformed"`` (a 200 with broken JSON), ``"nologprobs"`` (a 200 without
logprobs), ``"drop"`` (closes the connection without answering), ``"401"``, ``"400"``.

The server counts requests per key and records the Authorization headers it saw.
Run as a script it serves until killed and prints its port (for benchmarks)::

    python tests/fake_openai.py --latency 0.05
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TopLogprobs = list[tuple[str, float]]


def default_distribution(prompt: str) -> TopLogprobs:
    """80 with p=0.6, 90 with p=0.3, and a word with p=0.1."""
    return [("80", math.log(0.6)), ("90", math.log(0.3)), ("Sure", math.log(0.1))]


class FakeOpenAI:
    """A threaded chat-completions server on 127.0.0.1 (use as a context manager).

    Args:
        distribution: prompt -> top (token, logprob) pairs of the first token.
        key_of: prompt -> the key that faults and counts are kept under (default: the prompt).
        faults: key -> list of faults for that key's successive requests.
        latency: seconds every normal answer waits before it is sent.
        slow_s: seconds a ``"slow"`` answer waits.
        retry_after: the ``Retry-After`` value of ``"429"`` answers.
    """

    def __init__(self, *, distribution: Callable[[str], TopLogprobs] = default_distribution,
                 key_of: Callable[[str], Hashable] = lambda prompt: prompt,
                 faults: dict[Hashable, list[str]] | None = None, latency: float = 0.0,
                 slow_s: float = 1.0, retry_after: str = "0"):
        self.distribution = distribution
        self.key_of = key_of
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.latency = latency
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.requests: Counter = Counter()          # key -> requests received
        self.served: Counter = Counter()            # key -> normal 200 answers sent
        self.applied: dict[Hashable, list[str]] = defaultdict(list)  # key -> faults applied
        self.authorization: list[str | None] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The API root, ``http://127.0.0.1:PORT/v1``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self, port: int = 0) -> FakeOpenAI:
        """Start serving in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else Nagle + delayed ACKs add ~40 ms per answer

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self)

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.request_queue_size = 512
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ request handling

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        if not h.path.rstrip("/").endswith("/chat/completions"):
            self._send(h, 404, b'{"error": {"message": "no such route"}}')
            return
        body = json.loads(raw)
        prompt = body["messages"][-1]["content"]
        key = self.key_of(prompt)
        with self.lock:
            self.requests[key] += 1
            self.authorization.append(h.headers.get("Authorization"))
            self.headers.append(dict(h.headers))
            self.bodies.append(body)
            pending = self.faults.get(key)
            fault = pending.pop(0) if pending else None
            if fault is not None:
                self.applied[key].append(fault)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(h, body, prompt, key, fault)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, h, body, prompt, key, fault) -> None:
        error = lambda msg: json.dumps({"error": {"message": msg}}).encode()  # noqa: E731
        if fault == "429":
            self._send(h, 429, error("rate limited"), {"Retry-After": self.retry_after})
        elif fault in ("500", "503"):
            self._send(h, int(fault), error("server error"))
        elif fault == "401":
            key = (h.headers.get("Authorization") or "")[7:]  # echoed half-masked, as OpenAI does
            self._send(h, 401, error(f"Incorrect API key provided: {key[:7]}****{key[-4:]}."))
        elif fault == "400":
            self._send(h, 400, error("context length exceeded"))
        elif fault == "drop":
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass
        elif fault == "malformed":
            self._send(h, 200, b'{"choices": [{"index": 0, "logprobs": {"content": [')
        elif fault == "nologprobs":
            self._send(h, 200, json.dumps(self._completion(body, [("50", 0.0)], logprobs=False))
                       .encode())
        else:
            if fault == "slow":
                time.sleep(self.slow_s)
            elif self.latency:
                time.sleep(self.latency)
            top = self.distribution(prompt)
            if fault is None:  # counted before sending, so a client never sees it uncounted
                with self.lock:
                    self.served[key] += 1
            self._send(h, 200, json.dumps(self._completion(body, top)).encode())

    @staticmethod
    def _completion(body: dict, top: TopLogprobs, logprobs: bool = True) -> dict:
        n = body.get("top_logprobs", 20)
        top = sorted(top, key=lambda t: -t[1])[:n]
        choice = {"index": 0, "message": {"role": "assistant", "content": top[0][0]},
                  "finish_reason": "length", "logprobs": None}
        if logprobs:
            choice["logprobs"] = {"content": [{
                "token": top[0][0], "logprob": top[0][1], "bytes": list(top[0][0].encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                 for t, lp in top]}]}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"), "choices": [choice],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; print the port on the first line of stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(latency=args.latency).start(args.port)
    sys.stdout.write(f"{fake.base_url.split(':')[-1].split('/')[0]}\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
