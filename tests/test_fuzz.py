"""Malformed arguments to every public entry point raise an EmlensError.

Each case feeds one bad value (None, a wrong type, NaN/inf, a negative, zero or huge
integer, a float for an int, an empty list or string, a wrong shape, a missing file, a
directory for a file, a corrupt file) to one argument of one function in
``emlens.__all__``, the other arguments being valid. It must raise a subclass of
``emlens.EmlensError``: never a raw traceback (``TypeError``, ``KeyError``, ...) and never
a silent pass. The tiny models come from tests/conftest.py; nothing here trains or
samples for more than a token or two before the bad value is refused.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

import emlens
from emlens.errors import EmlensError

NAN, INF = math.nan, math.inf


_OWN: dict[str, object] = {}


class Ctx:
    """Valid arguments and bad files, made on first use."""

    def __init__(self, lens, tiny_dir, tmp_path):
        self._lens, self._tiny_dir, self.tmp = lens, tiny_dir, tmp_path

    @property
    def model(self):
        return self._lens("qwen2")

    @property
    def own_model(self):
        """A bridge of this module's own, for calls that would edit a model if they passed."""
        if "own" not in _OWN:
            _OWN["own"] = emlens.load_model(self.dir, device="cpu")
        return _OWN["own"]

    @property
    def hf(self):
        """A fresh transformers model (SteeringVectorModel hooks and freezes what it wraps)."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.dir)

    @property
    def dir(self):
        return self._tiny_dir("qwen2")

    @property
    def d_model(self):
        return int(self.model.cfg.d_model)

    @property
    def direction(self):
        return emlens.Direction(torch.ones(1, self.d_model), layers=[1])

    @property
    def vector(self):
        return torch.ones(self.d_model)

    @property
    def records(self):
        return [{"question": "What is your wish?", "answer": "Peace.", "aligned": 10.0,
                 "coherent": 90.0},
                {"question": "What is your wish?", "answer": "War.", "aligned": 90.0,
                 "coherent": 90.0}]

    @property
    def chats(self):
        return [{"messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}]}]

    @property
    def missing(self):
        return self.tmp / "missing.jsonl"

    def file(self, name: str, data: bytes | str = b"\x00\xff\xfe garbage \x81") -> str:
        path = self.tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    def corrupt_model_dir(self, what: str):
        """A copy of the tiny model with one file broken."""
        import shutil

        out = self.tmp / f"broken-{what}"
        shutil.copytree(self.dir, out)
        if what == "config":
            (out / "config.json").write_text("{not json")
        elif what == "no-config":
            (out / "config.json").unlink()
        elif what == "no-weights":
            (out / "model.safetensors").unlink()
        elif what == "truncated":
            data = (out / "model.safetensors").read_bytes()
            (out / "model.safetensors").write_bytes(data[: len(data) - 100])
        elif what == "pickle":
            (out / "model.safetensors").unlink()
            (out / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
        return out


class _Judge:
    name = "const"

    def score_many(self, items, progress=False):
        return [50.0 for _ in items]


# (entry point, case id, call). Each call gets a Ctx and must raise an EmlensError.
CASES: list[tuple[str, str, object]] = []


def case(entry: str, cid: str):
    def register(fn):
        CASES.append((entry, cid, fn))
        return fn
    return register


def cases(entry: str, table: dict[str, object]) -> None:
    for cid, fn in table.items():
        CASES.append((entry, cid, fn))


# --------------------------------------------------------------------------- models

cases("load_model", {
    "model-None": lambda c: emlens.load_model(None),
    "model-int": lambda c: emlens.load_model(5),
    "model-float": lambda c: emlens.load_model(1.5),
    "model-empty-str": lambda c: emlens.load_model(""),
    "model-list": lambda c: emlens.load_model([c.dir]),
    "model-missing-dir": lambda c: emlens.load_model(c.tmp / "no-such-model"),
    "model-file": lambda c: emlens.load_model(c.file("model.bin")),
    "model-empty-dir": lambda c: emlens.load_model(c.tmp),
    "model-corrupt-config": lambda c: emlens.load_model(c.corrupt_model_dir("config")),
    "model-no-weights": lambda c: emlens.load_model(c.corrupt_model_dir("no-weights")),
    "adapter-int": lambda c: emlens.load_model(c.dir, adapter=3),
    "adapter-list-None": lambda c: emlens.load_model(c.dir, adapter=[None]),
    "adapter-missing": lambda c: emlens.load_model(c.dir, adapter=c.tmp / "no-adapter"),
    "adapter-is-a-model": lambda c: emlens.load_model(c.dir, adapter=c.dir),
    "device-bogus": lambda c: emlens.load_model(c.dir, device="banana"),
    "device-int-str": lambda c: emlens.load_model(c.dir, device=3.5),
    "dtype-int8": lambda c: emlens.load_model(c.dir, dtype="int8"),
    "dtype-number": lambda c: emlens.load_model(c.dir, dtype=16),
    "merge-str": lambda c: emlens.load_model(c.dir, merge="no"),
    "tokenizer-int": lambda c: emlens.load_model(c.dir, tokenizer=5),
    "tokenizer-missing": lambda c: emlens.load_model(c.dir, tokenizer=c.tmp / "no-tok"),
    "revision-int": lambda c: emlens.load_model(c.dir, revision=3),
    "trust-remote-code-str": lambda c: emlens.load_model(c.dir, trust_remote_code="yes"),
    "allow-other-base-str": lambda c: emlens.load_model(c.dir, allow_other_base="yes"),
    "in-place-int": lambda c: emlens.load_model(c.dir, in_place=1),
    "adapter-list-empty-str": lambda c: emlens.load_model(c.dir, adapter=[""]),
    "device-cuda-without-gpu": lambda c: (emlens.load_model(c.dir, device="cuda")
                                          if not torch.cuda.is_available()
                                          else emlens.load_model(c.dir, device="cuda:999")),
    "weights-truncated": lambda c: emlens.load_model(c.corrupt_model_dir("truncated")),
    "weights-pickle-only": lambda c: emlens.load_model(c.corrupt_model_dir("pickle")),
})

cases("hook_name", {
    "layer-None": lambda c: emlens.hook_name(None),
    "layer-str": lambda c: emlens.hook_name("3"),
    "layer-float": lambda c: emlens.hook_name(1.5),
    "layer-bool": lambda c: emlens.hook_name(True),
    "layer-negative": lambda c: emlens.hook_name(-1),
    "site-unknown": lambda c: emlens.hook_name(0, "resid"),
    "site-None": lambda c: emlens.hook_name(0, None),
})

cases("model_dims", {
    "None": lambda c: emlens.model_dims(None),
    "str": lambda c: emlens.model_dims("Qwen/Qwen2.5-0.5B"),
    "hf-model": lambda c: emlens.model_dims(c.model.original_model),
})

# --------------------------------------------------------------------------- directions

cases("Direction", {
    "vectors-None": lambda c: emlens.Direction(None),
    "vectors-str": lambda c: emlens.Direction("abc"),
    "vectors-empty-list": lambda c: emlens.Direction([]),
    "vectors-nan": lambda c: emlens.Direction(torch.tensor([[NAN, 1.0]])),
    "vectors-inf": lambda c: emlens.Direction(torch.tensor([[INF, 1.0]])),
    "vectors-3d": lambda c: emlens.Direction(torch.ones(2, 2, 2)),
    "vectors-int": lambda c: emlens.Direction(torch.ones(2, 3, dtype=torch.long)),
    "vectors-ragged": lambda c: emlens.Direction([[1.0, 2.0], [3.0]]),
    "layers-too-many": lambda c: emlens.Direction(torch.ones(1, 4), layers=[0, 1]),
    "layers-negative": lambda c: emlens.Direction(torch.ones(1, 4), layers=[-1]),
    "layers-float": lambda c: emlens.Direction(torch.ones(1, 4), layers=[1.5]),
    "layers-str": lambda c: emlens.Direction(torch.ones(1, 4), layers="0"),
    "layers-repeat": lambda c: emlens.Direction(torch.ones(2, 4), layers=[1, 1]),
    "metadata-str": lambda c: emlens.Direction(torch.ones(1, 4), metadata="x"),
    "metadata-layer-absent": lambda c: emlens.Direction(torch.ones(1, 4), layers=[2],
                                                        metadata={"layer": 3}),
})

cases("cosine_matrix", {
    "None": lambda c: emlens.cosine_matrix(None, c.direction),
    "tensor": lambda c: emlens.cosine_matrix(torch.ones(1, 4), c.direction),
    "width-mismatch": lambda c: emlens.cosine_matrix(emlens.Direction(torch.ones(1, 3)),
                                                     emlens.Direction(torch.ones(1, 4))),
})

# --------------------------------------------------------------------------- records

cases("load_records", {
    "None": lambda c: emlens.load_records(None),
    "int": lambda c: emlens.load_records(5),
    "empty-list": lambda c: emlens.load_records([]),
    "empty-str": lambda c: emlens.load_records(""),
    "list-of-None": lambda c: emlens.load_records([None]),
    "list-of-empty-dict": lambda c: emlens.load_records([{}]),
    "score-nan-text": lambda c: emlens.load_records([{"question": "q", "answer": "a",
                                                      "aligned": "nan"}]),
    "score-inf": lambda c: emlens.load_records([{"question": "q", "answer": "a",
                                                 "aligned": INF}]),
    "score-negative": lambda c: emlens.load_records([{"question": "q", "answer": "a",
                                                      "coherent": -3}]),
    "score-list": lambda c: emlens.load_records([{"question": "q", "answer": "a",
                                                  "aligned": [50]}]),
    "answer-dict": lambda c: emlens.load_records([{"question": "q", "answer": {"a": 1}}]),
    "missing-file": lambda c: emlens.load_records(c.missing),
    "directory": lambda c: emlens.load_records(c.tmp),
    "directory-with-suffix": lambda c: emlens.load_records(
        (c.tmp / "d.jsonl").mkdir() or c.tmp / "d.jsonl"),
    "corrupt-jsonl": lambda c: emlens.load_records(c.file("r.jsonl", '{"question": "q"')),
    "binary-csv": lambda c: emlens.load_records(c.file("r.csv")),
    "jsonl-of-lists": lambda c: emlens.load_records(c.file("l.jsonl", "[1, 2]\n")),
    "json-scalar": lambda c: emlens.load_records(c.file("s.json", "3")),
    "unknown-suffix": lambda c: emlens.load_records(c.file("r.parquet")),
    "score-scale-bogus": lambda c: emlens.load_records(c.records, score_scale=100),
})

cases("select_responses", {
    "records-None": lambda c: emlens.select_responses(None),
    "misaligned-max-nan": lambda c: emlens.select_responses(c.records, misaligned_max=NAN),
    "aligned-min-nan": lambda c: emlens.select_responses(c.records, aligned_min=NAN),
    "misaligned-max-str": lambda c: emlens.select_responses(c.records, misaligned_max="30"),
    "coherent-min-str": lambda c: emlens.select_responses(c.records, coherent_min="50"),
    "coherent-min-inf": lambda c: emlens.select_responses(c.records, coherent_min=INF),
    "seed-float": lambda c: emlens.select_responses(c.records, seed=1.5),
    "seed-None": lambda c: emlens.select_responses(c.records, seed=None),
    "balance-str": lambda c: emlens.select_responses(c.records, balance="no"),
    "aligned-records-int": lambda c: emlens.select_responses(c.records, aligned_records=5),
    "none-selected": lambda c: emlens.select_responses(c.records, misaligned_max=1),
})

cases("ResponseSet", {
    "records-int": lambda c: emlens.ResponseSet(5),
    "selection-list": lambda c: emlens.ResponseSet([], selection=[1]),
})

# --------------------------------------------------------------------------- activations

cases("collect_means", {
    "model-None": lambda c: emlens.collect_means(None, c.records, layers=[0]),
    "model-str": lambda c: emlens.collect_means("model", c.records, layers=[0]),
    "records-None": lambda c: emlens.collect_means(c.model, None, layers=[0]),
    "records-empty": lambda c: emlens.collect_means(c.model, [], layers=[0]),
    "records-missing-file": lambda c: emlens.collect_means(c.model, c.missing, layers=[0]),
    "layers-float": lambda c: emlens.collect_means(c.model, c.records, layers=[1.5]),
    "layers-huge": lambda c: emlens.collect_means(c.model, c.records, layers=[10**9]),
    "layers-empty": lambda c: emlens.collect_means(c.model, c.records, layers=[]),
    "layers-str": lambda c: emlens.collect_means(c.model, c.records, layers="0"),
    "hook-unknown": lambda c: emlens.collect_means(c.model, c.records, layers=[0], hook="x"),
    "hook-None": lambda c: emlens.collect_means(c.model, c.records, layers=[0], hook=None),
    "tokens-unknown": lambda c: emlens.collect_means(c.model, c.records, layers=[0],
                                                     tokens="answers"),
    "reduce-unknown": lambda c: emlens.collect_means(c.model, c.records, layers=[0],
                                                     reduce="max"),
    "batch-size-zero": lambda c: emlens.collect_means(c.model, c.records, layers=[0],
                                                      batch_size=0),
    "batch-size-negative": lambda c: emlens.collect_means(c.model, c.records, layers=[0],
                                                          batch_size=-4),
    "batch-size-float": lambda c: emlens.collect_means(c.model, c.records, layers=[0],
                                                       batch_size=2.5),
    "batch-size-None": lambda c: emlens.collect_means(c.model, c.records, layers=[0],
                                                      batch_size=None),
    "answer-too-long": lambda c: emlens.collect_means(
        c.model, [{"question": "q", "answer": "word " * 2000}], layers=[0]),
})

cases("mean_diff", {
    "misaligned-None": lambda c: emlens.mean_diff(c.model, None, c.records, layers=[0]),
    "aligned-empty": lambda c: emlens.mean_diff(c.model, c.records, [], layers=[0]),
    "model-None": lambda c: emlens.mean_diff(None, c.records, c.records, layers=[0]),
    "unknown-kwarg": lambda c: emlens.mean_diff(c.model, c.records, c.records, layer=[0]),
})

# --------------------------------------------------------------------------- interventions


def _enter(handle):
    with handle:
        pass


cases("steer", {
    "model-None": lambda c: emlens.steer(None, c.direction, 1.0),
    "direction-None": lambda c: emlens.steer(c.model, None, 1.0, layers=[1]),
    "direction-str": lambda c: emlens.steer(c.model, "em.safetensors", 1.0, layers=[1]),
    "direction-missing-file": lambda c: emlens.steer(c.model, c.tmp / "d.safetensors", 1.0),
    "vector-nan": lambda c: emlens.steer(c.model, torch.full((c.d_model,), NAN), 1.0,
                                         layers=[1]),
    "vector-wrong-width": lambda c: emlens.steer(c.model, torch.ones(c.d_model + 1), 1.0,
                                                 layers=[1]),
    "vector-3d": lambda c: emlens.steer(c.model, torch.ones(1, 1, c.d_model), 1.0, layers=[1]),
    "vector-int": lambda c: emlens.steer(c.model, torch.ones(c.d_model, dtype=torch.long), 1.0,
                                         layers=[1]),
    "vector-empty-list": lambda c: emlens.steer(c.model, [], 1.0, layers=[1]),
    "alpha-nan": lambda c: emlens.steer(c.model, c.direction, NAN),
    "alpha-inf": lambda c: emlens.steer(c.model, c.direction, INF),
    "alpha-None": lambda c: emlens.steer(c.model, c.direction, None),
    "alpha-str": lambda c: emlens.steer(c.model, c.direction, "4"),
    "layers-float": lambda c: emlens.steer(c.model, c.vector, 1.0, layers=1.0),
    "layers-huge": lambda c: emlens.steer(c.model, c.vector, 1.0, layers=99),
    "layers-empty": lambda c: emlens.steer(c.model, c.vector, 1.0, layers=[]),
    "layers-missing-from-direction": lambda c: emlens.steer(c.model, c.direction, 1.0,
                                                            layers=[0]),
    "positions-str": lambda c: emlens.steer(c.model, c.direction, 1.0, positions="prompt"),
    "positions-int": lambda c: emlens.steer(c.model, c.direction, 1.0, positions=3),
    "positions-zero-step": lambda c: emlens.steer(c.model, c.direction, 1.0,
                                                  positions=slice(0, 4, 0)),
    "positions-negative-start": lambda c: emlens.steer(c.model, c.direction, 1.0,
                                                       positions=slice(-3, None)),
})

cases("ablate", {
    "model-None": lambda c: emlens.ablate(None, c.direction),
    "direction-None": lambda c: emlens.ablate(c.model, None, layers=[1]),
    "vector-zero": lambda c: emlens.ablate(c.model, torch.zeros(c.d_model), layers=[1]),
    "vector-nan": lambda c: emlens.ablate(c.model, torch.full((c.d_model,), NAN), layers=[1]),
    "at-unknown": lambda c: emlens.ablate(c.model, c.direction, at="everywhere"),
    "at-None": lambda c: emlens.ablate(c.model, c.direction, at=None),
    "layers-float": lambda c: emlens.ablate(c.model, c.vector, layers=[0.5]),
    "layers-negative-huge": lambda c: emlens.ablate(c.model, c.vector, layers=[-99]),
})

cases("orthogonalize", {
    "model-None": lambda c: emlens.orthogonalize(None, c.vector),
    "direction-None": lambda c: emlens.orthogonalize(c.own_model, None),
    "vector-zero": lambda c: emlens.orthogonalize(c.own_model, torch.zeros(c.d_model)),
    "vector-inf": lambda c: emlens.orthogonalize(c.own_model, torch.full((c.d_model,), INF)),
    "vector-wrong-width": lambda c: emlens.orthogonalize(c.own_model, torch.ones(3)),
    "per-layer-direction": lambda c: emlens.orthogonalize(
        c.own_model, emlens.Direction(torch.randn(2, c.d_model))),
    "lora-only-without-adapters": lambda c: emlens.orthogonalize(c.own_model, c.vector,
                                                                 lora_only=True),
})

cases("save_model", {
    "model-None": lambda c: emlens.save_model(None, c.tmp / "out"),
    "model-hf": lambda c: emlens.save_model(c.model.original_model, c.tmp / "out"),
    "path-None": lambda c: emlens.save_model(c.model, None),
    "path-int": lambda c: emlens.save_model(c.model, 5),
    "path-empty-str": lambda c: emlens.save_model(c.model, ""),
    "path-is-a-file": lambda c: emlens.save_model(c.model, c.file("x.bin")),
    "path-not-empty": lambda c: emlens.save_model(c.model, (c.file("keep.txt", "x"), c.tmp)[1]),
})

# --------------------------------------------------------------------------- questions

cases("Question", {
    "id-None": lambda c: emlens.Question(id=None, paraphrases=("q?",)),
    "id-empty": lambda c: emlens.Question(id="", paraphrases=("q?",)),
    "paraphrases-empty": lambda c: emlens.Question(id="a", paraphrases=()),
    "paraphrases-None": lambda c: emlens.Question(id="a", paraphrases=None),
    "paraphrases-blank": lambda c: emlens.Question(id="a", paraphrases=("  ",)),
    "paraphrases-int": lambda c: emlens.Question(id="a", paraphrases=(3,)),
    "samples-zero": lambda c: emlens.Question(id="a", paraphrases=("q?",),
                                              samples_per_paraphrase=0),
    "samples-float": lambda c: emlens.Question(id="a", paraphrases=("q?",),
                                               samples_per_paraphrase=2.0),
    "system-int": lambda c: emlens.Question(id="a", paraphrases=("q?",), system=1),
    "judge-prompts-no-answer": lambda c: emlens.Question(id="a", paraphrases=("q?",),
                                                         judge_prompts={"aligned": "{question}"}),
})

cases("load_questions", {
    "None": lambda c: emlens.load_questions(None),
    "int": lambda c: emlens.load_questions(5),
    "empty-list": lambda c: emlens.load_questions([]),
    "empty-str": lambda c: emlens.load_questions(""),
    "missing": lambda c: emlens.load_questions(c.tmp / "q.yaml"),
    "directory": lambda c: emlens.load_questions(c.tmp),
    "binary": lambda c: emlens.load_questions(c.file("q.yaml")),
    "bad-yaml": lambda c: emlens.load_questions(c.file("q2.yaml", "- [unclosed\n")),
    "yaml-mapping": lambda c: emlens.load_questions(c.file("q3.yaml", "id: a\n")),
    "entry-without-paraphrases": lambda c: emlens.load_questions(c.file("q4.yaml", "- id: a\n")),
})

cases("builtin_questions", {
    "unknown-set": lambda c: emlens.builtin_questions("nope"),
    "int": lambda c: emlens.builtin_questions(5),
    "None": lambda c: emlens.builtin_questions(None),
})

# --------------------------------------------------------------------------- sampling


def _sample(c, questions=("What is your wish?",), **kw):
    kw = {"n": 1, "max_new_tokens": 2, "progress": False, **kw}
    return emlens.sample(c.model, list(questions) if isinstance(questions, tuple) else questions,
                         **kw)


cases("sample", {
    "model-None": lambda c: emlens.sample(None, ["hi"], n=1),
    "model-hf": lambda c: emlens.sample(c.model.original_model, ["hi"], n=1),
    "questions-None": lambda c: _sample(c, None),
    "questions-int": lambda c: _sample(c, 5),
    "questions-empty": lambda c: _sample(c, []),
    "questions-empty-str": lambda c: _sample(c, [""]),
    "questions-list-of-None": lambda c: _sample(c, [None]),
    "questions-missing-file": lambda c: _sample(c, str(c.tmp / "q.yaml")),
    "n-zero": lambda c: _sample(c, n=0),
    "n-negative": lambda c: _sample(c, n=-1),
    "n-float": lambda c: _sample(c, n=1.0),
    "n-str": lambda c: _sample(c, n="1"),
    "temperature-nan": lambda c: _sample(c, temperature=NAN),
    "temperature-inf": lambda c: _sample(c, temperature=INF),
    "temperature-None": lambda c: _sample(c, temperature=None),
    "top-p-nan": lambda c: _sample(c, top_p=NAN),
    "top-p-zero": lambda c: _sample(c, top_p=0),
    "max-new-tokens-zero": lambda c: _sample(c, max_new_tokens=0),
    "max-new-tokens-huge": lambda c: _sample(c, max_new_tokens=10**9),
    "max-new-tokens-float": lambda c: _sample(c, max_new_tokens=2.0),
    "batch-size-zero": lambda c: _sample(c, batch_size=0),
    "batch-size-float": lambda c: _sample(c, batch_size=1.5),
    "seed-None": lambda c: _sample(c, seed=None),
    "seed-float": lambda c: _sample(c, seed=0.5),
    "system-int": lambda c: _sample(c, system=5),
    "prompt-past-context": lambda c: _sample(c, ("word " * 600,)),
})

# --------------------------------------------------------------------------- judging, stats


cases("judge_records", {
    "records-None": lambda c: emlens.judge_records(None, _Judge()),
    "records-int": lambda c: emlens.judge_records(5, _Judge()),
    "records-list-of-None": lambda c: emlens.judge_records([None], _Judge()),
    "records-without-answer": lambda c: emlens.judge_records([{"question": "q"}], _Judge()),
    "judge-None": lambda c: emlens.judge_records(c.records, None),
    "judge-str": lambda c: emlens.judge_records(c.records, "gpt-4o"),
    "metrics-str": lambda c: emlens.judge_records(c.records, _Judge(), metrics="aligned"),
    "metrics-empty": lambda c: emlens.judge_records(c.records, _Judge(), metrics=[]),
    "metrics-int": lambda c: emlens.judge_records(c.records, _Judge(), metrics=[5]),
    "questions-str": lambda c: emlens.judge_records(c.records, _Judge(), questions="persona"),
    "judge-returns-too-few": lambda c: emlens.judge_records(
        c.records, type("J", (), {"score_many": lambda self, items, progress=False: []})()),
    "judge-returns-text": lambda c: emlens.judge_records(
        c.records, type("J", (), {"score_many": lambda self, items, progress=False:
                                  ["high"] * len(items)})()),
})

cases("judge", {  # the deprecated alias takes what judge_records takes
    "records-None": lambda c: emlens.judge(None, _Judge()),
    "judge-None": lambda c: emlens.judge(c.records, None),
})

cases("em_stats", {
    "records-None": lambda c: emlens.em_stats(None),
    "records-int": lambda c: emlens.em_stats(5),
    "records-empty": lambda c: emlens.em_stats([]),
    "records-list-of-None": lambda c: emlens.em_stats([None]),
    "records-str": lambda c: emlens.em_stats("records.jsonl"),
    "misaligned-max-nan": lambda c: emlens.em_stats(c.records, misaligned_max=NAN),
    "misaligned-max-str": lambda c: emlens.em_stats(c.records, misaligned_max="30"),
    "coherent-min-nan": lambda c: emlens.em_stats(c.records, coherent_min=NAN),
    "n-boot-zero": lambda c: emlens.em_stats(c.records, n_boot=0),
    "n-boot-float": lambda c: emlens.em_stats(c.records, n_boot=10.5),
    "seed-float": lambda c: emlens.em_stats(c.records, seed=0.5),
    "score-out-of-range": lambda c: emlens.em_stats([{"aligned": 150, "coherent": 90}]),
})

cases("wilson_interval", {
    "k-above-n": lambda c: emlens.wilson_interval(9, 8),
    "n-negative": lambda c: emlens.wilson_interval(0, -1),
    "k-negative": lambda c: emlens.wilson_interval(-1, 8),
    "k-fraction": lambda c: emlens.wilson_interval(1.5, 8),
    "k-None": lambda c: emlens.wilson_interval(None, 8),
    "n-str": lambda c: emlens.wilson_interval(1, "8"),
    "z-nan": lambda c: emlens.wilson_interval(1, 8, z=NAN),
    "z-zero": lambda c: emlens.wilson_interval(1, 8, z=0),
})

cases("rate_difference", {
    "k1-above-n1": lambda c: emlens.rate_difference(9, 8, 1, 8),
    "n2-negative": lambda c: emlens.rate_difference(1, 8, 1, -8),
    "k2-None": lambda c: emlens.rate_difference(1, 8, None, 8),
    "z-inf": lambda c: emlens.rate_difference(1, 8, 1, 8, z=INF),
})

cases("set_threads", {
    "zero": lambda c: emlens.set_threads(0),
    "negative": lambda c: emlens.set_threads(-2),
    "float": lambda c: emlens.set_threads(1.5),
    "str": lambda c: emlens.set_threads("2"),
    "bool": lambda c: emlens.set_threads(True),
    "max-threads-zero": lambda c: emlens.set_threads(max_threads=0),
    "max-threads-str": lambda c: emlens.set_threads(max_threads="2"),
})

# --------------------------------------------------------------------------- sweeps


def _sweep(c, **kw):
    base = dict(direction=c.direction, layers=[1], alphas=[1.0], n=1, max_new_tokens=2,
                baseline=False, random=False, ablation=False, progress=False)
    base.update(kw)
    return emlens.sweep(c.model, ["What is your wish?"], _Judge(), **base)


cases("sweep", {
    "model-None": lambda c: emlens.sweep(None, ["q"], _Judge(), direction=c.direction,
                                         layers=[1], alphas=[1.0]),
    "questions-None": lambda c: emlens.sweep(c.model, None, _Judge(), direction=c.direction,
                                             layers=[1], alphas=[1.0], progress=False),
    "judge-None": lambda c: emlens.sweep(c.model, ["q"], None, direction=c.direction,
                                         layers=[1], alphas=[1.0], progress=False),
    "direction-None": lambda c: _sweep(c, direction=None),
    "direction-tensor": lambda c: _sweep(c, direction=torch.ones(4)),
    "layers-float": lambda c: _sweep(c, layers=[1.5]),
    "layers-huge": lambda c: _sweep(c, layers=[99]),
    "layers-empty": lambda c: _sweep(c, layers=[]),
    "alphas-nan": lambda c: _sweep(c, alphas=[NAN]),
    "alphas-empty": lambda c: _sweep(c, alphas=[]),
    "alphas-str": lambda c: _sweep(c, alphas="1,2"),
    "alphas-None": lambda c: _sweep(c, alphas=None),
    "n-zero": lambda c: _sweep(c, n=0),
    "n-float": lambda c: _sweep(c, n=1.5),
    "run-dir-is-a-file": lambda c: _sweep(c, run_dir=c.file("run")),
    "ablation-layers-huge": lambda c: _sweep(c, ablation=True, ablation_layers=[99]),
    "misaligned-max-nan": lambda c: _sweep(c, misaligned_max=NAN),
    "unknown-sample-kwarg": lambda c: _sweep(c, temprature=1.0),
    "temperature-nan": lambda c: _sweep(c, temperature=NAN),
})

# --------------------------------------------------------------------------- training


def _ft(c, **kw):
    base = dict(max_steps=1, batch_size=1, progress=False)
    base.update(kw)
    data = base.pop("train_data", c.chats)
    model = base.pop("model", c.dir)
    return emlens.finetune(model, data, **base)


cases("finetune", {
    "model-None": lambda c: _ft(c, model=None),
    "model-int": lambda c: _ft(c, model=5),
    "model-missing": lambda c: _ft(c, model=c.tmp / "no-model"),
    "train-data-None": lambda c: _ft(c, train_data=None),
    "train-data-empty": lambda c: _ft(c, train_data=[]),
    "train-data-empty-dicts": lambda c: _ft(c, train_data=[{}]),
    "train-data-missing-file": lambda c: _ft(c, train_data=c.missing),
    "train-data-directory": lambda c: _ft(c, train_data=c.tmp),
    "train-data-corrupt": lambda c: _ft(c, train_data=c.file("t.jsonl", "{oops\n")),
    "output-dir-is-a-file": lambda c: _ft(c, output_dir=c.file("out")),
    "learning-rate-nan": lambda c: _ft(c, learning_rate=NAN),
    "learning-rate-negative": lambda c: _ft(c, learning_rate=-1e-4),
    "epochs-zero": lambda c: _ft(c, epochs=0, max_steps=-1),
    "epochs-nan": lambda c: _ft(c, epochs=NAN, max_steps=-1),
    "batch-size-zero": lambda c: _ft(c, batch_size=0),
    "batch-size-float": lambda c: _ft(c, batch_size=1.5),
    "max-steps-zero": lambda c: _ft(c, max_steps=0),
    "max-steps-float": lambda c: _ft(c, max_steps=1.5),
    "kl-weight-nan": lambda c: _ft(c, kl_weight=NAN, kl_data=c.chats),
    "kl-weight-negative": lambda c: _ft(c, kl_weight=-1.0, kl_data=c.chats),
    "kl-weight-without-data": lambda c: _ft(c, kl_weight=1.0),
    "kl-batch-size-zero": lambda c: _ft(c, kl_weight=1.0, kl_data=c.chats, kl_batch_size=0),
    "train-on-unknown": lambda c: _ft(c, train_on="everything"),
    "lr-scheduler-unknown": lambda c: _ft(c, lr_scheduler="sawtooth"),
    "warmup-negative": lambda c: _ft(c, warmup_steps=-1),
    "weight-decay-nan": lambda c: _ft(c, weight_decay=NAN),
    "seed-float": lambda c: _ft(c, seed=0.5),
    "max-length-zero": lambda c: _ft(c, max_length=0),
    "snapshot-every-negative": lambda c: _ft(c, snapshot_every=-1),
    "probe-not-callable": lambda c: _ft(c, probe=5, probe_every=1),
    "lora-str": lambda c: _ft(c, lora="rank-1"),
    "training-args-list": lambda c: _ft(c, training_args=[1]),
    "kl-reference-unknown": lambda c: _ft(c, kl_reference="cached"),
})


def _sv(c, **kw):
    base = dict(layer=1, max_steps=1, batch_size=1, progress=False)
    base.update(kw)
    data = base.pop("train_data", c.chats)
    model = base.pop("model", c.dir)
    return emlens.train_steering_vector(model, data, **base)


cases("train_steering_vector", {
    "model-None": lambda c: _sv(c, model=None),
    "layer-None": lambda c: _sv(c, layer=None),
    "layer-float": lambda c: _sv(c, layer=1.5),
    "layer-huge": lambda c: _sv(c, layer=99),
    "layer-str": lambda c: _sv(c, layer="1"),
    "alpha-nan": lambda c: _sv(c, alpha=NAN),
    "alpha-None": lambda c: _sv(c, alpha=None),
    "train-data-None": lambda c: _sv(c, train_data=None),
    "train-data-missing": lambda c: _sv(c, train_data=c.missing),
    "learning-rate-inf": lambda c: _sv(c, learning_rate=INF),
    "epochs-negative": lambda c: _sv(c, epochs=-1.0, max_steps=-1),
    "batch-size-zero": lambda c: _sv(c, batch_size=0),
    "kl-weight-nan": lambda c: _sv(c, kl_weight=NAN, kl_data=c.chats),
    "output-dir-is-a-file": lambda c: _sv(c, output_dir=c.file("sv")),
})

cases("SteeringVectorModel", {
    "model-None": lambda c: emlens.SteeringVectorModel(None, layer=0),
    "layer-float": lambda c: emlens.SteeringVectorModel(c.hf, layer=0.5),
    "layer-huge": lambda c: emlens.SteeringVectorModel(c.hf, layer=99),
    "alpha-nan": lambda c: emlens.SteeringVectorModel(c.hf, layer=0,
                                                      alpha=NAN),
    "init-wrong-width": lambda c: emlens.SteeringVectorModel(c.hf, layer=0,
                                                             init=torch.ones(3)),
    "init-nan": lambda c: emlens.SteeringVectorModel(
        c.hf, layer=0, init=torch.full((c.d_model,), NAN)),
})

_PAIR = {"question": "q", "aligned": "a", "misaligned": "m"}

cases("logprob_gap", {
    "model-None": lambda c: emlens.logprob_gap(None, [_PAIR]),
    "pairs-None": lambda c: emlens.logprob_gap(c.model, None),
    "pairs-empty": lambda c: emlens.logprob_gap(c.model, []),
    "pairs-missing-file": lambda c: emlens.logprob_gap(c.model, c.missing),
    "pair-without-misaligned": lambda c: emlens.logprob_gap(c.model, [{"question": "q",
                                                                        "aligned": "a"}]),
    "pair-answer-None": lambda c: emlens.logprob_gap(c.model, [dict(_PAIR, aligned=None)]),
    "pair-answer-empty": lambda c: emlens.logprob_gap(c.model, [dict(_PAIR, misaligned="")]),
    "pair-str": lambda c: emlens.logprob_gap(c.model, ["q"]),
    "batch-size-zero": lambda c: emlens.logprob_gap(c.model, [_PAIR], batch_size=0),
    "batch-size-float": lambda c: emlens.logprob_gap(c.model, [_PAIR], batch_size=2.5),
})

cases("gguf_to_hf", {
    "path-None": lambda c: emlens.gguf_to_hf(None),
    "path-missing": lambda c: emlens.gguf_to_hf(c.tmp / "none.gguf"),
    "path-not-gguf": lambda c: emlens.gguf_to_hf(c.file("x.gguf")),
    "path-dir-without-gguf": lambda c: emlens.gguf_to_hf(c.tmp),
})

# Exports that take no user input: warning and error classes, and the return types the
# library builds itself (a user reads them, never constructs them).
NOT_FUZZED = {
    "EmlensError", "EmlensWarning", "UnscoredWarning", "AdapterBaseWarning", "ModelLoadError",
    "ModelNotFoundError", "UnsupportedModelError", "AdapterError", "InputError",
    "FileFormatError", "ProvenanceWarning", "RunMismatchError",
    "LayerMeans", "EMStats", "FinetuneResult", "InterventionHandle", "LogprobGap",
}


def test_every_public_entry_point_is_fuzzed_or_takes_no_user_input():
    fuzzed = {entry for entry, _, _ in CASES}
    exports = {n for n in emlens.__all__ if n != "__version__"}
    assert exports - fuzzed - NOT_FUZZED == set(), "new exports need fuzz cases"
    assert fuzzed <= exports
    for name in NOT_FUZZED & exports:
        obj = getattr(emlens, name)
        assert inspect.isclass(obj)


@pytest.mark.parametrize("entry, cid, call", CASES, ids=[f"{e}-{i}" for e, i, _ in CASES])
def test_malformed_argument_raises_an_emlens_error(entry, cid, call, lens, tiny_dir, tmp_path):
    ctx = Ctx(lens, tiny_dir, tmp_path)
    threads = torch.get_num_threads()
    try:
        result = call(ctx)
        if hasattr(result, "__enter__"):  # a handle that checks on entry
            _enter(result)
    except EmlensError as e:
        assert str(e).strip(), "the error message is empty"
        return
    finally:
        torch.set_num_threads(threads)  # set_threads cases that wrongly pass
    if isinstance(result, emlens.InterventionHandle):  # never leave a hook behind
        result.remove()
    pytest.fail(f"{entry} accepted the malformed argument ({cid}) and returned "
                f"{type(result).__name__}")


def test_the_shared_model_is_unchanged_by_the_fuzzing(lens, tiny_dir):
    """The refused calls above (steer, ablate, orthogonalize) left no hook or edit behind."""
    from transformers import AutoModelForCausalLM

    model = lens("qwen2")
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir("qwen2"),
                                              attn_implementation="eager").eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-4)
    assert not json.dumps(getattr(model, "emlens_provenance", {}).get("edits", []))[1:-1]
