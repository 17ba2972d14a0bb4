"""Judge throughput against a loopback chat-completions server with fixed latency per request.

The fake server (tests/fake_openai.py) runs in its own process and answers every request
after ``--latency`` seconds. With ``--concurrency`` requests in flight, no client can
exceed ``concurrency / latency`` requests per second: that bound is the baseline, and the
ratio of achieved to ideal throughput is the result (target >= 0.8). Beside it the same
requests are timed through a bare ``aiohttp`` loop (no scoring, retries or
cache) and through the judge with a SQLite cache committing every judgement, in the
same run.

    python bench/judges.py                      # prints, writes bench/results/judges.json
    python bench/judges.py --n 4000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emlens.judges import CachedJudge, OpenAIJudge  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise SystemExit(f"the fake server did not start (got {port!r})")
    return proc, f"http://127.0.0.1:{port}/v1"


async def bare_aiohttp(base_url: str, n: int, concurrency: int) -> None:
    import aiohttp

    todo = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            for i in todo:
                body = {"model": "bench", "messages": [{"role": "user", "content": f"bare {i}"}],
                        "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 20}
                async with session.post(f"{base_url}/chat/completions", json=body) as r:
                    json.loads(await r.read())
        await asyncio.gather(*(worker() for _ in range(concurrency)))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "judges.json"))
    args = parser.parse_args()

    proc, base_url = start_server(args.latency)
    ideal = args.concurrency / args.latency
    rows = {"bare_aiohttp": [], "judge": [], "judge_cached": []}
    try:
        judge = OpenAIJudge("bench", base_url=base_url, api_key="bench-key",
                            concurrency=args.concurrency, timeout=30)
        judge.score_many([(f"warm {i}", "a", "aligned") for i in range(args.concurrency)])
        for r in range(args.repeats):
            items = [(f"question {r}-{i}", f"answer {i}", "aligned") for i in range(args.n)]
            rows["bare_aiohttp"].append(args.n / timed(
                lambda: asyncio.run(bare_aiohttp(base_url, args.n, args.concurrency))))
            rows["judge"].append(args.n / timed(lambda items=items: judge.score_many(items)))
            with tempfile.TemporaryDirectory() as tmp:
                cached = CachedJudge(judge, Path(tmp) / "cache.sqlite")
                cached_items = [(q + " cached", a, m) for q, a, m in items]
                rows["judge_cached"].append(args.n / timed(
                    lambda c=cached, it=cached_items: c.score_many(it)))
                cached.cache.close()
    finally:
        proc.terminate()
        proc.wait(10)

    best = {k: max(v) for k, v in rows.items()}
    result = {
        "benchmark": "judge throughput, loopback server",
        "n_requests": args.n, "concurrency": args.concurrency, "latency_s": args.latency,
        "repeats": args.repeats, "ideal_req_per_s": ideal,
        "req_per_s": rows,
        "ratio_judge_to_ideal": best["judge"] / ideal,
        "ratio_judge_cached_to_ideal": best["judge_cached"] / ideal,
        "ratio_bare_aiohttp_to_ideal": best["bare_aiohttp"] / ideal,
        "ratio_judge_to_bare_aiohttp": best["judge"] / best["bare_aiohttp"],
        "target_ratio": 0.8,
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    for name in rows:
        print(f"{name:<13} best {best[name]:7.1f} req/s  ratio to ideal "
              f"{best[name] / ideal:.3f}  (runs: {', '.join(f'{x:.0f}' for x in rows[name])})")
    print(f"ideal {ideal:.0f} req/s (concurrency {args.concurrency} / latency {args.latency} s); "
          f"judge ratio {result['ratio_judge_to_ideal']:.3f} (target >= 0.8)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
