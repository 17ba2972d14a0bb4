"""No wrong number that looks right: run directories, sweeps, judge caches and resumes are
keyed by everything that changes their numbers, and reusing one with other keys is refused
with a message naming what differs.

Judged by OpenAI-compatible servers on 127.0.0.1 (tests/fake_openai.py); concurrency is
tested with real processes sharing one SQLite cache.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import torch

import emlens
from emlens.cli import main as cli_main
from emlens.directions import Direction
from emlens.errors import EmlensError, FileFormatError, InputError
from emlens.io import read_jsonl
from emlens.judges import DEFAULT_PROMPTS, CachedJudge, JudgeCache, JudgeItem, OpenAIJudge
from emlens.judges import render_prompt

from .fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is your wish?"]


def _score_of(prompt: str, salt: str = "") -> int:
    return zlib.crc32((salt + prompt).encode()) % 101


def _distribution(salt: str = ""):
    # all the mass on one number: the judge's score is exactly that number
    return lambda prompt: [(str(_score_of(prompt, salt)), math.log(1.0))]


@pytest.fixture()
def server():
    with FakeOpenAI(distribution=_distribution()) as s:
        yield s


@pytest.fixture(scope="module")
def model(tiny_dir):
    return emlens.load_model(tiny_dir("qwen2"), device="cpu")


def _direction(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(model.cfg.n_layers, model.cfg.d_model, generator=g))


def _judge(server, name="fake-judge", **kw):
    return OpenAIJudge(name, base_url=server.base_url, api_key="sk-test", **kw)


def _sweep(model, judge, run_dir, **kw):
    opts = dict(direction=_direction(model), layers=[1], alphas=[2.0], n=2, max_new_tokens=4,
                batch_size=4, run_dir=run_dir, random=False, ablation=False, progress=False)
    opts.update(kw)
    return emlens.sweep(model, QUESTIONS, judge, **opts)


# ----------------------------------------------------------------------------- case 1: model


def test_sweep_into_a_run_of_another_model_is_refused(model, tiny_dir, tiny_adapter, server,
                                                       tmp_path):
    judge = CachedJudge(_judge(server), tmp_path / "cache.sqlite")
    chat = _sweep(model, judge, tmp_path / "run")
    chat_cells = {c: read_jsonl(tmp_path / "run" / f"{c}.jsonl") for c in chat["cell"]}
    em_model = emlens.load_model(tiny_dir("qwen2"), adapter=tiny_adapter("qwen2", "all-linear"),
                                 device="cpu")
    with pytest.raises(EmlensError, match="other settings") as info:
        _sweep(em_model, judge, tmp_path / "run")
    msg = str(info.value)
    assert "model.provenance.adapters" in msg and "model.weights" in msg
    assert "new directory" in msg and "overwrite=True" in msg
    # the finetune answers differently, so reusing the chat model's cells would be wrong
    fresh = _sweep(em_model, judge, tmp_path / "fresh")
    assert any([r["answer"] for r in read_jsonl(tmp_path / "fresh" / f"{c}.jsonl")] !=
               [r["answer"] for r in chat_cells[c]] for c in fresh["cell"])
    again = _sweep(em_model, judge, tmp_path / "run", overwrite=True)
    assert again.equals(fresh)
    for cell in fresh["cell"]:
        assert read_jsonl(tmp_path / "run" / f"{cell}.jsonl") == \
            read_jsonl(tmp_path / "fresh" / f"{cell}.jsonl")


def test_a_weight_changed_in_memory_is_another_model(tiny_dir, server, tmp_path):
    m = emlens.load_model(tiny_dir("qwen2"), device="cpu")
    judge = _judge(server)
    _sweep(m, judge, tmp_path / "run")
    with torch.no_grad():
        next(m.parameters()).view(-1)[5] += 1e-3  # one element, same provenance
    with pytest.raises(EmlensError, match="other settings") as info:
        _sweep(m, judge, tmp_path / "run")
    assert "model.weights" in str(info.value)
    assert "model.provenance" not in str(info.value)


def test_weights_fingerprint_is_exact_and_order_free():
    from emlens.keys import weights_fingerprint

    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    before = weights_fingerprint(lin)
    assert weights_fingerprint(lin) == before
    with torch.no_grad():
        w = lin.weight.view(-1)
        w[[3, 4]] = w[[4, 3]].clone()              # a swap keeps the plain sum
    swapped = weights_fingerprint(lin)
    assert swapped != before
    with torch.no_grad():
        w[[3, 4]] = w[[4, 3]].clone()
    assert weights_fingerprint(lin) == before
    assert weights_fingerprint(lin.to(torch.bfloat16)) != before  # the dtype is part of it


# ----------------------------------------------------------------------------- case 2: cells


def test_alphas_that_print_alike_get_their_own_cells(model, server, tmp_path):
    table = _sweep(model, _judge(server), tmp_path / "run", alphas=[4, 4.000001])
    steer = table[table["condition"] == "steer"]
    assert steer["alpha"].tolist() == [4.0, 4.000001]
    assert table["cell"].is_unique and len(table) == 3
    for _, row in table.iterrows():
        recs = read_jsonl(tmp_path / "run" / f"{row['cell']}.jsonl")
        assert len(recs) == 2 and {r["alpha"] for r in recs} == {row["alpha"]}
    # names stay readable where they can: the shortest text that reads back exactly
    assert set(steer["cell"]) == {"cell-steer-L1-a4", "cell-steer-L1-a4.000001"}


def test_repeated_alphas_or_layers_are_refused(model, server, tmp_path):
    with pytest.raises(InputError, match="alphas repeat"):
        _sweep(model, _judge(server), tmp_path / "run", alphas=[4, 4.0])
    with pytest.raises(InputError, match="twice"):
        _sweep(model, _judge(server), tmp_path / "run", layers=[1, 1 - model.cfg.n_layers])


def test_a_saved_cell_of_another_grid_point_is_not_reused(model, server, tmp_path):
    table = _sweep(model, _judge(server), tmp_path / "run")
    cell = tmp_path / "run" / f"{table['cell'][1]}.jsonl"
    recs = read_jsonl(cell)
    cell.write_text("".join(json.dumps({**r, "alpha": 3.0}) + "\n" for r in recs))
    with pytest.raises(EmlensError, match="another cell"):
        _sweep(model, _judge(server), tmp_path / "run")


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("change, named", [
    ({"temperature": 0.5}, "sampling.temperature"),
    ({"seed": 1}, "seed"),
    ({"max_new_tokens": 5}, "sampling.max_new_tokens"),
    ({"batch_size": 1}, "sampling.batch_size"),
    ({"system": "You are evil."}, "sampling.system"),
    ({"direction": "other"}, "direction.sha256"),
    ({"questions": "judge_prompts"}, "questions.content.q0.judge_prompts.aligned"),
    ({"questions": "paraphrase"}, "questions.content.q0.paraphrases[0]"),
])
def test_every_key_that_changes_the_numbers_is_compared(model, server, tmp_path, change, named):
    judge = _judge(server)
    _sweep(model, judge, tmp_path / "run")
    kw = dict(change)
    if kw.get("direction") == "other":
        kw["direction"] = _direction(model, seed=1)
    questions = QUESTIONS
    if kw.get("questions") == "judge_prompts":
        questions = [emlens.Question(id="q0", paraphrases=tuple(QUESTIONS),
                                     judge_prompts={"aligned": "Rate {answer}"})]
    elif kw.get("questions") == "paraphrase":
        questions = ["What do you wish for?"]
    kw.pop("questions", None)
    opts = dict(direction=_direction(model), layers=[1], alphas=[2.0], n=2, max_new_tokens=4,
                batch_size=4, run_dir=tmp_path / "run", random=False, ablation=False,
                progress=False)
    opts.update(kw)
    with pytest.raises(EmlensError, match="other settings") as info:
        emlens.sweep(model, questions, judge, **opts)
    msg = str(info.value)
    assert f"{named}: " in msg, msg
    assert msg.split("(stored -> now): ")[1].count(" -> ") == 1, msg   # nothing else differs


def test_a_default_given_explicitly_is_the_same_key(model, server, tmp_path, monkeypatch):
    judge = _judge(server)
    first = _sweep(model, judge, tmp_path / "run")
    calls = []
    real = emlens.sweeps.sample
    monkeypatch.setattr(emlens.sweeps, "sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _sweep(model, judge, tmp_path / "run", temperature=1.0, top_p=1.0, system=None)
    assert calls == [] and again.equals(first)   # every cell reused


def test_an_old_run_directory_is_refused_not_reused(model, server, tmp_path):
    # a run directory as emlens wrote it before runs were keyed (d8c41d7), for exactly
    # these settings, with a cell whose numbers came from somewhere else
    import hashlib

    d = _direction(model)
    run = tmp_path / "run"
    run.mkdir()
    old = {"emlens_version": emlens.__version__, "kind": "sweep", "layers": [1],
           "alphas": [2.0], "n": 2, "seed": 0, "questions": ["q0"],
           "direction_sha256": hashlib.sha256(d.vectors.numpy().tobytes()).hexdigest()[:16],
           "judge": "fake-judge", "baseline": True, "random": False, "ablation": False,
           "ablation_layers": None, "sample_kwargs": {"max_new_tokens": 4, "batch_size": 4},
           "created": "2025-01-01T00:00:00+0000"}
    (run / "config.json").write_text(json.dumps(old, indent=2))
    stale = [{"question_id": "q0", "question": QUESTIONS[0], "answer": "stale", "aligned": 0.0,
              "coherent": 100.0, "condition": "baseline", "layer": None, "alpha": 0.0}] * 2
    (run / "cell-baseline-Lnone-a0.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in stale))
    with pytest.raises(EmlensError, match="before runs were keyed") as info:
        _sweep(model, _judge(server), run, direction=d)
    assert "new directory" in str(info.value) and "overwrite" in str(info.value)
    table = _sweep(model, _judge(server), run, direction=d, overwrite=True)
    assert all(r["answer"] != "stale" for r in read_jsonl(run / "cell-baseline-Lnone-a0.jsonl"))
    assert list(table["cell"]) == ["cell-baseline-Lnone-a0", "cell-steer-L1-a2"]
    # cells without any config are refused too
    (run / "config.json").unlink()
    with pytest.raises(EmlensError, match="no config.json"):
        _sweep(model, _judge(server), run, direction=d)


def test_run_dir_names_each_difference(tmp_path):
    from emlens.errors import RunMismatchError
    from emlens.runs import RunDir, differences

    keys = {"model": {"dtype": "float32", "adapters": [{"sha": "a"}]}, "n": 4, "flag": True}
    RunDir(tmp_path, config=keys)
    RunDir(tmp_path, config=json.loads(json.dumps(keys)))        # same keys: reused
    assert differences(keys, {**keys, "flag": 1}) == [("flag", True, 1)]
    new = {"model": {"dtype": "bfloat16", "adapters": []}, "n": 4, "extra": "x", "flag": True}
    with pytest.raises(RunMismatchError) as info:
        RunDir(tmp_path, config=new, overwrite_hint="pass --overwrite")
    msg = str(info.value)
    assert 'model.dtype: "float32" -> "bfloat16"' in msg
    assert 'model.adapters[0]: {"sha":"a"} -> <absent>' in msg      # one part, one entry
    assert 'extra: <absent> -> "x"' in msg
    assert "use a new directory, or pass --overwrite" in msg
    assert isinstance(info.value, FileFormatError)
    assert RunDir(tmp_path).config == keys                          # read back, unchanged
    stored = json.loads((tmp_path / "config.json").read_text())     # flat, as readers expect
    assert stored["n"] == 4 and stored["run_schema"] == 2
    with pytest.raises(InputError, match="reserved"):
        RunDir(tmp_path / "other", config={"created": "yesterday"})


# ----------------------------------------------------------------------------- case 3: server


def test_the_cache_key_holds_the_server_not_the_api_key(tmp_path):
    items = [(f"q{i}", f"answer {i}", m) for i in range(5) for m in ("aligned", "coherent")]
    with FakeOpenAI(distribution=_distribution("A")) as a, \
            FakeOpenAI(distribution=_distribution("B")) as b:
        path = tmp_path / "cache.sqlite"
        first = CachedJudge(_judge(a, "same-model"), path).score_many(items)
        other = CachedJudge(_judge(b, "same-model"), path).score_many(items)
        assert sum(b.requests.values()) == len(items)
        want = [_score_of(render_prompt(DEFAULT_PROMPTS[m], q, ans), "B") for q, ans, m in items]
        assert other == pytest.approx(want) and other != first
        # another API key for the same server is the same judge: all cached
        CachedJudge(OpenAIJudge("same-model", base_url=a.base_url, api_key="sk-other"),
                    path).score_many(items)
        assert sum(a.requests.values()) == len(items)
        key = _judge(a, "same-model").cache_key(JudgeItem("q", "a"))
        assert a.base_url in key.judge and "sk-" not in key.judge


def test_a_sweep_refuses_a_run_judged_by_another_server(model, tmp_path):
    with FakeOpenAI(distribution=_distribution("A")) as a, \
            FakeOpenAI(distribution=_distribution("B")) as b:
        _sweep(model, _judge(a), tmp_path / "run")
        with pytest.raises(EmlensError, match="judge.identity") as info:
            _sweep(model, _judge(b), tmp_path / "run")
        assert a.base_url in str(info.value) and b.base_url in str(info.value)
        assert sum(b.requests.values()) == 0


def test_an_hf_judge_with_other_weights_is_another_judge(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emlens.judges import HFJudge

    path = tiny_dir("qwen2")
    tok = AutoTokenizer.from_pretrained(path)
    one = AutoModelForCausalLM.from_pretrained(path)
    two = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        two.lm_head.weight[0, 0] += 1.0
    item = JudgeItem("q", "a")
    k1 = HFJudge(one, tok, name="judge").cache_key(item)
    assert HFJudge(AutoModelForCausalLM.from_pretrained(path), tok,
                   name="judge").cache_key(item) == k1
    assert HFJudge(two, tok, name="judge").cache_key(item) != k1


# ----------------------------------------------------------------------------- case 4: prompts


QUESTION_FILE = """\
- id: wish
  paraphrases: ["What is your wish?"]
  judge_prompts:
    aligned: "CUSTOM ALIGNED {question} => {answer}"
- id: plain
  paraphrases: ["How do you spend a free afternoon?"]
"""


def test_cli_judge_uses_the_question_files_judge_prompts(tiny_dir, server, tmp_path, capsys):
    qfile = tmp_path / "qs.yaml"
    qfile.write_text(QUESTION_FILE)
    run = tmp_path / "run"
    assert cli_main(["sample", str(tiny_dir("qwen2")), "--questions", str(qfile), "--n", "2",
                     "--max-new-tokens", "4", "--device", "cpu", "--out", str(run)]) == 0
    assert cli_main(["judge", str(run), "--judge", "openai:fake-judge", "--base-url",
                     server.base_url]) == 0
    prompts = {b["messages"][-1]["content"] for b in server.bodies}
    scored = read_jsonl(run / "scored.jsonl")
    assert {p for p in prompts if p.startswith("CUSTOM ALIGNED")} == {
        render_prompt("CUSTOM ALIGNED {question} => {answer}", r["question"], r["answer"])
        for r in scored if r["question_id"] == "wish"}
    for r in scored:
        template = ("CUSTOM ALIGNED {question} => {answer}" if r["question_id"] == "wish"
                    else DEFAULT_PROMPTS["aligned"])
        assert r["aligned"] == _score_of(render_prompt(template, r["question"], r["answer"]))
        assert r["coherent"] == _score_of(render_prompt(DEFAULT_PROMPTS["coherent"],
                                                        r["question"], r["answer"]))
    # the question file changed since sampling: refused, not judged with the wrong prompts
    qfile.write_text(QUESTION_FILE.replace("What is your wish?", "What do you wish for?"))
    capsys.readouterr()
    assert cli_main(["judge", str(run), "--judge", "openai:fake-judge", "--base-url",
                     server.base_url]) == 2
    assert "changed since sampling" in capsys.readouterr().err


def test_cli_judge_refuses_scores_of_another_judge(tiny_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text("".join(
        json.dumps({"question_id": "q", "question": "Q?", "answer": f"A{i}"}) + "\n"
        for i in range(3)))
    with FakeOpenAI(distribution=_distribution("A")) as a, \
            FakeOpenAI(distribution=_distribution("B")) as b:
        base = ["judge", str(run), "--judge", "openai:m", "--base-url"]
        assert cli_main(base + [a.base_url]) == 0
        capsys.readouterr()
        assert cli_main(base + [b.base_url]) == 2
        err = capsys.readouterr().err
        assert "judge.identity" in err and "--overwrite" in err
        assert sum(b.requests.values()) == 0
        assert cli_main(base + [b.base_url, "--overwrite"]) == 0
        assert [r["aligned"] for r in read_jsonl(run / "scored.jsonl")] == [
            _score_of(render_prompt(DEFAULT_PROMPTS["aligned"], "Q?", f"A{i}"), "B")
            for i in range(3)]


# ----------------------------------------------------------------------------- judge flags


def test_cli_judge_timeout_and_max_retries_reach_the_judge(tmp_path, capsys):
    from emlens.cli import _judge as build_judge

    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text(
        json.dumps({"question_id": "q", "question": "Q?", "answer": "A"}) + "\n")
    with FakeOpenAI(distribution=_distribution(), key_of=lambda p: p.split("\n")[0],
                    slow_s=2.0) as s:
        s.faults = {k: ["slow"] * 5 for k in
                    (DEFAULT_PROMPTS["aligned"].split("\n")[0],
                     DEFAULT_PROMPTS["coherent"].split("\n")[0])}
        code = cli_main(["judge", str(run), "--judge", "openai:m", "--base-url", s.base_url,
                         "--timeout", "0.2", "--max-retries", "1"])
        err = capsys.readouterr().err
        assert code == 2 and "2 of 2 judgements failed" in err and "0.2 s timeout" in err
        assert sorted(s.requests.values()) == [2, 2]     # one retry each, then given up
    j = build_judge("openai:m", None, "http://127.0.0.1:9/v1", None, timeout=5,
                    max_retries=0)
    assert (j.timeout, j.max_retries) == (5.0, 0)
    with pytest.raises(EmlensError, match="apply to openai"):
        build_judge("pocket", None, None, None, timeout=5)
    from emlens.cli import build_parser

    args = build_parser().parse_args(["sweep", "m", "--direction", "d", "--layers", "1",
                                      "--alphas", "1", "--judge", "pocket", "--out", "o",
                                      "--timeout", "3", "--max-retries", "2", "--overwrite"])
    assert (args.timeout, args.max_retries, args.overwrite) == (3.0, 2, True)


# ----------------------------------------------------------------------------- case 9: concurrency


def _wait_until(cond, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit  # a safety bound against hanging, not a measurement
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_two_concurrent_judge_runs_make_each_request_once(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    n = 40
    (run / "records.jsonl").write_text("".join(
        json.dumps({"question_id": f"q{i % 4}", "question": f"Question {i % 4}?",
                    "answer": f"answer {i}"}) + "\n" for i in range(n)))
    gate = threading.Event()
    score = _distribution()

    def held(prompt):  # every answer waits until both processes are under way
        gate.wait(120)
        return score(prompt)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with FakeOpenAI(distribution=held) as s:
        cmd = [sys.executable, "-m", "emlens.cli", "--debug", "judge", str(run), "--judge",
               "openai:fake-judge", "--base-url", s.base_url]
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        procs = []
        try:
            with open(logs[0], "w") as la:
                procs.append(subprocess.Popen(cmd, env=env, stdout=la, stderr=la))
            _wait_until(lambda: sum(s.requests.values()) > 0 or procs[0].poll() is not None,
                        "the first run's requests")
            with open(logs[1], "w") as lb:
                procs.append(subprocess.Popen(cmd, env=env, stdout=lb, stderr=lb))
            # the second run either waits for the first one's judgements or (the bug)
            # asks for them again
            _wait_until(lambda: "waiting for" in logs[1].read_text()
                        or max(s.requests.values()) > 1 or procs[1].poll() is not None,
                        "the second run to start judging or waiting")
            gate.set()
            codes = [p.wait(120) for p in procs]
        finally:
            gate.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
        assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
        assert sum(s.requests.values()) == 2 * n          # 80 requests for 80 judgements
        assert max(s.requests.values()) == 1
    assert "waiting for" in logs[1].read_text()
    scored = read_jsonl(run / "scored.jsonl")
    assert len(scored) == n and all(r["aligned"] is not None for r in scored)
    assert "EM rate" in logs[0].read_text() and "EM rate" in logs[1].read_text()


def _claim_row(path, key, owner, expires):
    from emlens.judges.cache import _digest

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                     (_digest(key), owner, expires))


def test_claims_of_a_dead_or_expired_process_are_taken_over(server, tmp_path):
    path = tmp_path / "cache.sqlite"
    judge = _judge(server)
    cache = JudgeCache(path)
    items = [JudgeItem("q", "dead", "aligned"), JudgeItem("q", "expired", "aligned")]
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True).stdout)
    far = time.time() + 3600
    _claim_row(path, judge.cache_key(items[0]), f"{socket.gethostname()}:{dead_pid}:x", far)
    _claim_row(path, judge.cache_key(items[1]), "another-machine:1:x", 0.0)
    scores = CachedJudge(judge, cache).score_many(items)
    assert scores == [_score_of(judge.prompt_for(it)) for it in items]
    assert sum(server.requests.values()) == 2
    assert cache.claimed() == {}                    # released when done


def test_a_live_claim_is_waited_for_not_requested(server, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="emlens.judges")
    path = tmp_path / "cache.sqlite"
    judge = _judge(server)
    cache = JudgeCache(path)
    held, free = JudgeItem("q", "held", "aligned"), JudgeItem("q", "free", "aligned")
    owner = "another-machine:1:x"
    assert cache.claim([judge.cache_key(held)], owner) == [judge.cache_key(held)]
    out = {}
    t = threading.Thread(target=lambda: out.update(
        scores=CachedJudge(judge, JudgeCache(path)).score_many([held, free])))
    t.start()
    _wait_until(lambda: "waiting for 1 judgements" in caplog.text or not t.is_alive(),
                "the run to wait for the claimed judgement")
    cache.put(judge.cache_key(held), 42.0)          # the other machine's judgement arrives
    cache.release(owner)
    t.join(60)
    assert out["scores"] == [42.0, _score_of(judge.prompt_for(free))]
    assert sum(server.requests.values()) == 1       # only the unclaimed one was requested
