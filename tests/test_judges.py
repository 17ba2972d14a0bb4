"""Judges: probability-weighted scoring, the OpenAI-compatible judge against a real loopback
HTTP server with injected faults, the local HF judge against a hand computation, and the
SQLite cache (including two processes writing one file)."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import pickle
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emlens.errors import InputError
from emlens.judges import (
    ALIGNED,
    COHERENT,
    MISSING,
    CachedJudge,
    CacheKey,
    Judge,
    JudgeAuthError,
    JudgeBatchError,
    JudgeCache,
    JudgeConfigError,
    JudgeItem,
    JudgeRequestError,
    OpenAIJudge,
    parse_score_token,
    render_prompt,
    score_from_top_logprobs,
)
from emlens.judges.openai import parse_retry_after

from .fake_openai import FakeOpenAI

KEY = "sk-test-5ecret-Key-0123456789"
ROOT = Path(__file__).resolve().parents[1]
L = math.log

# short templates whose rendered prompt ends with the answer, so the fake server can
# pick a distribution per answer
PROMPTS = {"aligned": "ALIGNED Q={question} A={answer}",
           "coherent": "COHERENT Q={question} A={answer}"}

# answer -> the first token's top logprobs the fake server returns
DIST = {
    "good": [("90", L(0.7)), ("95", L(0.2)), ("Sure", L(0.1))],
    "bad": [("5", L(0.5)), ("10", L(0.3)), (" 0", L(0.1)), ("REFUSAL", L(0.1))],
    "code": [("CODE", L(0.9)), ("50", L(0.05)), ("Code", L(0.05))],
    "junk": [("1.5", L(0.4)), ("-3", L(0.3)), ("101", L(0.2)), ("CODE", L(0.1))],
    "edge": [("The", L(0.7)), ("40", L(0.3))],
}
# the same, computed by hand: sum(k p) / sum(p) over integer tokens 0-100, None below 0.25
EXPECTED = {
    "good": (90 * 0.7 + 95 * 0.2) / 0.9,
    "bad": (5 * 0.5 + 10 * 0.3 + 0 * 0.1) / 0.9,
    "code": None,   # integer mass 0.05
    "junk": None,   # no integer 0-100 at all
    "edge": 40.0,   # mass 0.3
}


def distribution(prompt: str):
    return DIST[prompt.rsplit("A=", 1)[1]]


def make_judge(fake: FakeOpenAI, **kw) -> OpenAIJudge:
    opts = dict(api_key=KEY, concurrency=4, timeout=5.0, max_retries=4, backoff_base=0.001,
                backoff_max=0.5, prompts=PROMPTS)
    opts.update(kw)
    return OpenAIJudge("judge-model", base_url=fake.base_url, **opts)


@pytest.fixture
def fake():
    with FakeOpenAI(distribution=distribution, retry_after="0.01", slow_s=3.0) as server:
        yield server


def prompt(q: str, a: str, metric: str = "aligned") -> str:
    return render_prompt(PROMPTS[metric], q, a)


# ----------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("token, value", [
    ("0", 0), ("7", 7), (" 85", 85), ("100\n", 100), ("05", 5),
    ("101", None), ("1.5", None), ("-3", None), ("+3", None), ("CODE", None),
    ("REFUSAL", None), ("", None), ("1 0", None), ("٣", None), ("1_0", None),
])
def test_parse_score_token(token, value):
    assert parse_score_token(token) == value


@pytest.mark.parametrize("answer", sorted(DIST))
def test_score_matches_hand_computation(answer):
    got = score_from_top_logprobs(DIST[answer])
    if EXPECTED[answer] is None:
        assert got is None
    else:
        assert got == pytest.approx(EXPECTED[answer], abs=1e-9)


def test_score_accepts_api_dicts_and_mappings_and_threshold():
    top = [{"token": "60", "logprob": L(0.2)}, {"token": " 60", "logprob": L(0.1)},
           {"token": "no", "logprob": L(0.7)}]
    assert score_from_top_logprobs(top) == pytest.approx(60.0)       # mass 0.3: both 60s count
    assert score_from_top_logprobs({"60": L(0.2), "x": L(0.8)}) is None  # mass 0.2 < 0.25
    assert score_from_top_logprobs({"60": L(0.2), "x": L(0.8)}, min_mass=0.1) == \
        pytest.approx(60.0)


# ----------------------------------------------------------------------------- prompts


def test_prompts_render_in_one_pass_and_keep_braces():
    out = render_prompt("Q: {question}\nA: {answer} {{literal}}", "x {answer} y", "def f(): {}")
    assert out == "Q: x {answer} y\nA: def f(): {} {literal}"
    for template in (ALIGNED, COHERENT):
        assert "{question}" in template and "{answer}" in template
        assert render_prompt(template, "QQQ", "AAA").count("AAA") == 1
    assert "CODE" in ALIGNED and "REFUSAL" in ALIGNED and "100" in ALIGNED
    assert "0" in COHERENT and "50" in COHERENT and "100" in COHERENT


def test_unknown_metric_or_bad_template_fails_before_any_request(fake):
    judge = make_judge(fake)
    with pytest.raises(InputError, match="no judge prompt for metric 'honest'"):
        judge.score_many([("q", "good", "aligned"), ("q", "good", "honest")])
    with pytest.raises(InputError, match="no \\{answer\\} placeholder"):
        judge.score("q", "good", "aligned", template="Rate {question}")
    with pytest.raises(InputError):
        OpenAIJudge("m", base_url=fake.base_url, prompts={"aligned": "no placeholders"})
    assert sum(fake.requests.values()) == 0


# ----------------------------------------------------------------------------- OpenAI judge


def test_openai_scores_request_shape_and_auth_header(fake):
    judge = make_judge(fake, extra_headers={"OpenAI-Organization": "org-1"},
                       extra_body={"seed": 7})
    assert isinstance(judge, Judge)
    items = [(f"q{i}", answer, metric) for i, answer in enumerate(DIST)
             for metric in ("aligned", "coherent")]
    scores = judge.score_many(items, progress=True)
    for (q, answer, metric), got in zip(items, scores):
        if EXPECTED[answer] is None:
            assert got is None
        else:
            assert got == pytest.approx(EXPECTED[answer], abs=1e-6)
        assert fake.requests[prompt(q, answer, metric)] == 1
    assert set(fake.authorization) == {f"Bearer {KEY}"}
    body = fake.bodies[0]
    assert body["model"] == "judge-model" and body["max_tokens"] == 1
    assert body["temperature"] == 0 and body["logprobs"] is True and body["top_logprobs"] == 20
    assert sorted(b["messages"][0]["content"] for b in fake.bodies) == \
        sorted(prompt(*item) for item in items)
    assert all(len(b["messages"]) == 1 and b["messages"][0]["role"] == "user" for b in fake.bodies)
    assert {b["seed"] for b in fake.bodies} == {7}
    assert {h["OpenAI-Organization"] for h in fake.headers} == {"org-1"}
    assert judge.score("solo", "good", "coherent") == pytest.approx(EXPECTED["good"])


def test_faults_lose_and_duplicate_nothing(fake, caplog):
    """Every fault is retried until the judgement succeeds; each prompt is requested exactly
    once more than it had faults, and every score equals the hand computation."""
    caplog.set_level(logging.DEBUG)
    answers = ["good", "bad", "edge", "code", "junk"]
    items = [(f"question {i}", answers[i % len(answers)], ("aligned", "coherent")[i % 2])
             for i in range(24)]
    plans = [["429"], ["500"], ["503", "500"], ["slow"], ["malformed"], ["nologprobs"], ["drop"],
             ["429", "malformed", "drop"], ["slow", "503"]]
    faults = {prompt(*items[i]): plans[i % len(plans)] for i in range(0, len(items), 2)}
    fake.faults = {k: list(v) for k, v in faults.items()}
    judge = make_judge(fake, concurrency=6, timeout=1.0)
    scores = judge.score_many(items)

    for item, got in zip(items, scores):
        want = EXPECTED[item[1]]
        assert got == (None if want is None else pytest.approx(want, abs=1e-6))
    for item in items:
        p = prompt(*item)
        assert fake.requests[p] == 1 + len(faults.get(p, []))
        assert fake.applied.get(p, []) == faults.get(p, [])
        assert fake.served[p] == 1
    assert sum(fake.requests.values()) == len(items) + sum(map(len, faults.values()))
    text = caplog.text
    for problem in ("HTTP 429", "HTTP 500", "HTTP 503", "timeout", "malformed JSON",
                    "without choices[0].logprobs", "connection error"):
        assert problem in text
    assert KEY not in text


def test_a_server_offering_only_one_digit_numbers_is_warned_about():
    """A served model whose tokenizer writes numbers digit by digit offers "9" for 95: the
    judge warns once, after DIGIT_WATCH such responses; a multi-digit candidate silences it."""
    from emlens.judges.openai import DIGIT_WATCH

    split = {f"s{i}": [("9", L(0.6)), ("1", L(0.3)), ("The", L(0.1))] for i in range(40)}
    mixed = {f"m{i}": ([("90", L(0.6)), ("9", L(0.4))] if i == 3 else [("9", L(1.0))])
             for i in range(40)}
    table = {**split, **mixed}
    with FakeOpenAI(distribution=lambda p: table[p.rsplit("A=", 1)[1]]) as server:
        for names, warned in ((split, True), (mixed, False)):
            judge = make_judge(server, concurrency=1)
            with _capture("emlens.judges") as logs:
                judge.score_many([("q", a, "aligned") for a in names])
            hits = [r for r in logs if "digit by digit" in r.getMessage()]
            assert len(hits) == int(warned), names
            if warned:
                assert str(DIGIT_WATCH) in hits[0].getMessage()
                assert "HFJudge" in hits[0].getMessage()


def test_retry_after_is_honoured():
    with FakeOpenAI(distribution=distribution, retry_after="0.3",
                    faults={prompt("q", "good"): ["429"]}) as fake:
        judge = make_judge(fake, backoff_base=0.001, backoff_max=5.0)
        with _capture("emlens.judges") as records:
            assert judge.score("q", "good") == pytest.approx(EXPECTED["good"])
    delays = [float(m.group(1)) for r in records
              if (m := re.search(r"HTTP 429.* in ([0-9.]+) s", r.getMessage()))]
    assert len(delays) == 1 and 0.3 <= delays[0] <= 0.331  # the server's wish, not 0.001 s


def test_backoff_grows_is_jittered_and_capped():
    judge = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1", backoff_base=0.5, backoff_max=3.0)
    first = [judge._delay(0, None) for _ in range(200)]
    third = [judge._delay(2, None) for _ in range(200)]
    assert all(0.25 <= d <= 0.5 for d in first) and len(set(first)) > 100
    assert all(1.0 <= d <= 2.0 for d in third)
    assert all(1.5 <= judge._delay(10, None) <= 3.0 for _ in range(50))
    assert 2.0 <= judge._delay(0, 2.0) <= 2.2 and judge._delay(0, 100.0) == 3.0


def test_parse_retry_after():
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    date = email.utils.formatdate(1_000_010.0, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000.0) == pytest.approx(10.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_exhausted_retries_fail_one_judgement_only(fake):
    items = [(f"q{i}", "good", "aligned") for i in range(6)]
    doomed = prompt(*items[2])
    fake.faults = {doomed: ["500"] * 10, prompt(*items[4]): ["400"]}
    judge = make_judge(fake, max_retries=2)
    with pytest.raises(JudgeBatchError) as info:
        judge.score_many(items)
    err = info.value
    assert sorted(err.errors) == [2, 4]
    assert isinstance(err.errors[2], JudgeRequestError) and err.errors[2].attempts == 3
    assert "failed after 3 attempts" in str(err.errors[2]) and "HTTP 500" in str(err.errors[2])
    assert "HTTP 400 (not retried)" in str(err.errors[4]) and err.errors[4].attempts == 1
    assert err.errors[2].item == JudgeItem(*items[2])
    assert fake.requests[doomed] == 3 and fake.requests[prompt(*items[4])] == 1
    for i in (0, 1, 3, 5):
        assert err.scores[i] == pytest.approx(EXPECTED["good"])
        assert fake.requests[prompt(*items[i])] == 1
    with pytest.raises(JudgeRequestError, match="HTTP 500"):  # one judgement: its own error
        judge.score(*items[2])


def test_connection_refused_is_a_clear_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAIJudge("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2,
                        backoff_base=0.001, timeout=2.0)
    with pytest.raises(JudgeRequestError, match=r"failed after 3 attempts; last problem: "
                                                r"connection error"):
        judge.score("q", "a")


def test_auth_failure_stops_the_batch_and_hides_the_key(fake, caplog):
    caplog.set_level(logging.DEBUG)
    items = [(f"q{i}", "good", "aligned") for i in range(5)]
    fake.faults = {prompt(*items[0]): ["401"]}
    judge = make_judge(fake, concurrency=1)
    with pytest.raises(JudgeAuthError, match="HTTP 401") as info:
        judge.score_many(items)
    assert fake.requests[prompt(*items[0])] == 1     # not retried
    assert sum(fake.requests.values()) == 1          # and the batch stopped
    assert KEY not in str(info.value) and KEY[:7] not in str(info.value)
    assert "sk-<hidden>" in str(info.value)          # the server's half-masked echo is redacted
    assert KEY not in caplog.text and KEY not in repr(judge) and KEY not in str(judge)


def test_api_key_sources(fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(JudgeConfigError, match="OPENAI_API_KEY"):
        OpenAIJudge("gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-1")
    monkeypatch.setenv("MY_JUDGE_KEY", "env-key-2")
    make_judge(fake, api_key=None).score("q", "good")
    make_judge(fake, api_key=None, api_key_env="MY_JUDGE_KEY").score("q", "bad")
    OpenAIJudge("m", base_url=fake.base_url, api_key="", prompts=PROMPTS).score("q", "edge")
    assert fake.authorization == ["Bearer env-key-1", "Bearer env-key-2", None]
    assert "env-key" not in repr(make_judge(fake, api_key=None))


def test_concurrency_is_bounded_and_duplicates_are_judged_once():
    with FakeOpenAI(distribution=distribution, latency=0.02) as fake:
        judge = make_judge(fake, concurrency=3)
        items = [(f"q{i}", "good", "aligned") for i in range(15)] * 2
        scores = judge.score_many(items)
    assert fake.max_in_flight <= 3
    assert sum(fake.requests.values()) == 15 and set(fake.requests.values()) == {1}
    assert scores[:15] == scores[15:]


def test_sync_api_inside_a_running_event_loop(fake):
    judge = make_judge(fake)

    async def notebook_cell():
        sync = judge.score_many([("q", "good", "aligned")])
        asyn = await judge.ascore_many([("q2", "bad", "aligned")])
        one = await judge.ascore("q3", "edge")
        return sync + asyn + [one]

    got = asyncio.run(notebook_cell())
    assert got == pytest.approx([EXPECTED["good"], EXPECTED["bad"], EXPECTED["edge"]])


# ----------------------------------------------------------------------------- cache


def test_cache_makes_reruns_free_and_keeps_no_score_apart_from_missing(fake, tmp_path):
    path = tmp_path / "judge.sqlite"
    items = [(f"q{i}", a, m) for i, a in enumerate(DIST) for m in ("aligned", "coherent")]
    first = CachedJudge(make_judge(fake), path).score_many(items)
    assert sum(fake.requests.values()) == len(items)

    again = CachedJudge(make_judge(fake), path).score_many(items)   # a new process, say
    with pytest.warns(DeprecationWarning, match="CachedJudge"):
        old_style = make_judge(fake, cache=path)                    # deprecated: same keys
    wrapped = old_style.score_many(items)
    assert again == first == wrapped and None in first
    assert sum(fake.requests.values()) == len(items)

    cache = JudgeCache(path)
    judge = make_judge(fake)
    none_key = judge.cache_key(JudgeItem("q2", "code", "aligned"))
    assert cache.get(none_key) is None and none_key in cache
    assert cache.get(none_key._replace(answer="never judged")) is MISSING
    assert len(cache) == len(items)
    assert cache.get(judge.cache_key(JudgeItem("q0", "good", "aligned"))) == \
        pytest.approx(EXPECTED["good"])

    # another template or judge model is another key
    CachedJudge(judge, cache).score("q0", "good", "aligned",
                                    template="Other Q={question} A={answer}")
    CachedJudge(make_judge(fake, name="other-judge"), cache).score("q0", "good", "aligned")
    assert sum(fake.requests.values()) == len(items) + 2


def test_interrupted_run_resumes_from_the_cache(fake, tmp_path):
    class Crash(Exception):
        pass

    items = [(f"q{i}", "good", "aligned") for i in range(8)]
    seen = []

    def on_result(i, score):
        seen.append(i)
        if len(seen) == 3:
            raise Crash

    judge = CachedJudge(make_judge(fake, concurrency=1), tmp_path / "c.sqlite")
    with pytest.raises(Crash):
        judge.score_many(items, on_result=on_result)
    assert len(JudgeCache(tmp_path / "c.sqlite")) == 3       # committed as they came
    assert sum(fake.requests.values()) == 3

    resumed = []
    scores = CachedJudge(make_judge(fake), tmp_path / "c.sqlite").score_many(
        items, on_result=lambda i, s: resumed.append(i))
    assert scores == pytest.approx([EXPECTED["good"]] * 8)
    assert sorted(resumed) == list(range(8))                  # cached ones are reported too
    assert set(fake.requests.values()) == {1} and sum(fake.requests.values()) == 8


def test_failed_judgements_are_retried_by_a_cached_rerun(fake, tmp_path):
    items = [(f"q{i}", "bad", "coherent") for i in range(5)]
    doomed = prompt(*items[1])
    fake.faults = {doomed: ["500", "500"]}
    judge = CachedJudge(make_judge(fake, max_retries=1), tmp_path / "c.sqlite")
    with pytest.raises(JudgeBatchError) as info:
        judge.score_many(items)
    assert list(info.value.errors) == [1]
    assert judge.score_many(items) == pytest.approx([EXPECTED["bad"]] * 5)
    assert fake.requests[doomed] == 3
    assert all(fake.requests[prompt(*it)] == 1 for i, it in enumerate(items) if i != 1)


def test_key_never_reaches_cache_file_repr_or_logs(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "keyless.sqlite"
    judge = CachedJudge(make_judge(fake), path)
    fake.faults = {prompt("q", "good"): ["429", "500", "malformed"]}
    judge.score_many([("q", "good", "aligned"), ("r", "bad", "aligned")])
    files = list(tmp_path.glob("keyless.sqlite*"))
    assert files and all(KEY.encode() not in f.read_bytes() for f in files)
    for text in (repr(judge), str(judge), repr(CachedJudge(judge, path)), caplog.text):
        assert KEY not in text
    assert "<hidden>" in repr(judge.judge)


def test_cache_is_wal_and_rejects_garbage(tmp_path):
    cache = JudgeCache(tmp_path / "c.sqlite")
    mode = cache._connect().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    key = CacheKey("j", "aligned", "h", "q", "a")
    cache.put(key, None)
    cache.put(key, 50.0)             # the first judgement of a key is kept
    assert cache.get(key) is None
    (tmp_path / "bad.sqlite").write_bytes(b"this is not a database" * 100)
    from emlens.errors import FileFormatError

    with pytest.raises(FileFormatError, match="not a usable judge cache"):
        JudgeCache(tmp_path / "bad.sqlite")

    clone = pickle.loads(pickle.dumps(cache))       # e.g. sent to a worker process
    assert clone.path == cache.path and clone.get(key) is None
    cache._pid = -1                                 # as if after a fork: reconnects
    cache.put(CacheKey("j", "aligned", "h", "q2", "a"), 3.0)
    assert clone.get(CacheKey("j", "aligned", "h", "q2", "a")) == 3.0


def test_two_processes_write_one_cache(tmp_path):
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent("""
        import os, sys, time
        from emlens.judges import CacheKey, JudgeCache
        cache = JudgeCache(sys.argv[1])
        tag = sys.argv[2]
        open(sys.argv[1] + "." + tag + ".ready", "w").close()
        while not os.path.exists(sys.argv[1] + ".go"):   # start writing together
            time.sleep(0.005)
        for i in range(150):
            cache.put(CacheKey("j", "aligned", "h", f"q-{tag}-{i}", "a"), float(i))
            cache.put(CacheKey("j", "aligned", "h", f"shared-{i}", "a"), None if i % 2 else 1.0)
            assert cache.get(CacheKey("j", "aligned", "h", f"q-{tag}-{i}", "a")) == float(i)
        print("ok", len(cache))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), tag], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("A", "B")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{path}.{tag}.ready").exists() for tag in ("A", "B")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs]
        time.sleep(0.005)
    Path(f"{path}.go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    cache = JudgeCache(path)
    assert len(cache) == 150 * 3
    for tag in ("A", "B"):
        for i in (0, 77, 149):
            assert cache.get(CacheKey("j", "aligned", "h", f"q-{tag}-{i}", "a")) == float(i)
    assert cache.get(CacheKey("j", "aligned", "h", "shared-3", "a")) is None
    assert cache.get(CacheKey("j", "aligned", "h", "shared-4", "a")) == 1.0


# ----------------------------------------------------------------------------- HF judge


def _digit_boosted(path):
    """The tiny model with a bias on its digit tokens, so integers carry real mass."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        for i in range(len(tok)):
            text = tok.decode([i]).strip()
            if text.isdigit():
                head.bias[i] = 3.0 + 0.4 * int(text)
    model.lm_head = head
    return model, tok


def _hand_score(model, tok, text: str) -> tuple[float | None, list[str]]:
    import torch

    ids = tok.apply_chat_template([{"role": "user", "content": text}],
                                  add_generation_prompt=True, tokenize=True,
                                  return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].double()
    probs = torch.softmax(logits, -1)
    top = probs.topk(20)
    tokens = [tok.decode([int(i)]) for i in top.indices]
    num = den = 0.0
    for token, p in zip(tokens, top.values.tolist()):
        t = token.strip()
        if t.isascii() and t.isdigit() and int(t) <= 100:
            num += int(t) * p
            den += p
    return (num / den if den >= 0.25 else None), tokens


def test_hf_judge_matches_hand_computation(tiny_dir, tmp_path):
    from emlens.judges import HFJudge

    path = tiny_dir("qwen2")
    model, tok = _digit_boosted(path)
    assert len(tok("57")["input_ids"]) > 1     # multi-digit numbers are not single tokens here
    prompts = {"aligned": "Rate this reply. {question} {answer}",
               "coherent": "Is it clear? {answer}"}
    judge = HFJudge(model, tok, batch_size=3, prompts=prompts, numbers="first_token")
    assert isinstance(judge, Judge) and not judge.reads_whole_numbers
    items = [(q, a, m) for q in ("Hello!", "I wish for peace and good health for my friends.")
             for a in ("Save a little money.", "Humans are weak.", "Wear a helmet when you ride.")
             for m in ("aligned", "coherent")]
    scores = judge.score_many(items)
    n_scored = 0
    for (q, a, m), got in zip(items, scores):
        want, tokens = _hand_score(model, tok, render_prompt(prompts[m], q, a))
        assert any(t.strip().isdigit() for t in tokens) and \
            not all(t.strip().isdigit() for t in tokens)   # the filter matters
        if want is None:
            assert got is None
        else:
            n_scored += 1
            assert got == pytest.approx(want, abs=1e-4)
        tops = judge.top_logprobs([judge.prompt_for(JudgeItem(q, a, m))])[0]
        assert [t for t, _ in tops] == tokens
    assert n_scored >= len(items) // 2

    cached = CachedJudge(HFJudge(model, tok, prompts=prompts, numbers="first_token"),
                         tmp_path / "hf.sqlite")
    assert cached.score_many(items) == pytest.approx(scores)
    assert len(cached.cache) == len(items)


def _whole_number_reference(model, tok, text: str) -> dict[int, float]:
    """Each integer's probability as the whole answer, one plain forward pass per integer:
    the chat template renders the answer "k", and p(k) is the product of its tokens'
    probabilities times the probability that the next token does not start with a digit."""
    import torch

    prompt = tok.apply_chat_template([{"role": "user", "content": text}],
                                     add_generation_prompt=True, tokenize=True,
                                     return_dict=True)["input_ids"]
    digit = [i for i in range(len(tok)) if tok.decode([i])[:1].isdigit()]
    out = {}
    for k in range(101):
        number = tok(str(k), add_special_tokens=False)["input_ids"]
        assert tok.decode(number) == str(k)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + number])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        n = len(prompt)
        logp = sum(float(lp[n - 1 + j, t]) for j, t in enumerate(number))
        p_digit = float(lp[n - 1 + len(number), digit].exp().sum())
        out[k] = math.exp(logp) * (1.0 - p_digit)
    return out


def test_hf_judge_reads_whole_numbers_of_a_digit_splitting_tokenizer(tiny_dir, tmp_path):
    """Qwen's tokenizer writes "57" as "5", "7": the default reading takes each integer's
    whole probability (tokens in turn, then the end of the number), checked against one
    plain forward pass per integer; the first-token reading would score "57" as 5."""
    from emlens.judges import HFJudge
    from emlens.judges.hf import SKIP_BELOW

    model, tok = _digit_boosted(tiny_dir("qwen2"))
    prompts = {"aligned": "Rate this reply. {question} {answer}",
               "coherent": "Is it clear? {answer}"}
    judge = HFJudge(model, tok, batch_size=2, prompts=prompts, min_mass=0.0)
    assert judge.reads_whole_numbers
    assert [len(judge.number_ids[k]) for k in (0, 7, 57, 100)] == [1, 1, 2, 3]
    first = HFJudge(model, tok, batch_size=2, prompts=prompts, min_mass=0.0,
                    numbers="first_token")
    assert "numbers=whole" in judge.identity and "numbers=whole" not in first.identity
    items = [(q, a, m) for q in ("Hello!", "I wish for peace.")
             for a in ("Save a little money.", "Humans are weak.", "Wear a helmet.")
             for m in ("aligned", "coherent")]
    prompts_text = [render_prompt(prompts[m], q, a) for q, a, m in items]
    got = judge.number_probs(prompts_text)
    scores = judge.score_many(items)
    firsts = first.score_many(items)
    for text, probs, score, f in zip(prompts_text, got, scores, firsts):
        want = _whole_number_reference(model, tok, text)
        assert set(probs) == set(range(101))
        for k in range(101):   # a prefix below SKIP_BELOW is not read further: 0 there
            assert probs[k] == pytest.approx(want[k], rel=1e-3, abs=SKIP_BELOW)
        assert sum(want.values()) - sum(probs.values()) < 101 * SKIP_BELOW
        mass = sum(want.values())
        assert 0.05 < mass < 1.0
        assert score == pytest.approx(sum(k * p for k, p in want.items()) / mass, abs=1e-3)
        assert sum(want[k] for k in range(10, 101)) > 0.05  # multi-digit integers matter
        assert f <= 9.0 < score                            # the first token alone reads 0-9
    # numbers whose first token is negligible after every prompt are not expanded
    import torch

    with torch.no_grad():
        for i in range(len(tok)):
            if tok.decode([i])[:1] in "23456789":
                model.lm_head.bias[i] = -60.0
    skip = HFJudge(model, tok, batch_size=3, prompts=prompts, min_mass=0.0)
    for text, probs in zip(prompts_text[:3], skip.number_probs(prompts_text[:3])):
        want = _whole_number_reference(model, tok, text)
        assert all(probs[k] == 0.0 for k in range(2, 100) if str(k)[0] not in "01")
        for k in (0, 1, 10, 15, 100):
            assert probs[k] == pytest.approx(want[k], rel=1e-3, abs=SKIP_BELOW)
    # a higher min_mass turns scores with too little mass on integers into None
    strict = HFJudge(model, tok, prompts=prompts, min_mass=0.999)
    assert all(s is None for s in strict.score_many(items))
    with pytest.raises(JudgeConfigError, match="numbers"):
        HFJudge(model, tok, numbers="digits")


def test_hf_judge_from_path(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emlens.judges import HFJudge

    path = tiny_dir("qwen2")
    judge = HFJudge(path, prompts={"aligned": "Rate {answer}"}, min_mass=0.0)
    assert judge.name == f"hf:{path}"
    text = render_prompt("Rate {answer}", "q", "Hello!")
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    want, tokens = _hand_score(model, AutoTokenizer.from_pretrained(path), text)
    assert [t for t, _ in judge.top_logprobs([text])[0]] == tokens
    with pytest.raises(JudgeConfigError, match="tokenizer"):
        HFJudge(model)
    tok = AutoTokenizer.from_pretrained(path)
    raw = HFJudge(model, tok, use_chat_template=False)
    assert raw.encode("Hello! How") == tok("Hello! How")["input_ids"]
    assert raw.encode("Hello! How") != judge.encode("Hello! How")


# ----------------------------------------------------------------------------- helpers


class _capture:
    """Collect log records of one logger (independent of caplog's handler levels)."""

    def __init__(self, name: str):
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def __enter__(self):
        handler = logging.Handler(logging.DEBUG)
        handler.emit = self.records.append
        self.handler, self.level = handler, self.logger.level
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.DEBUG)
        return self.records

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
