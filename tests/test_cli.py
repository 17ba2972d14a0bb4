"""Every `emlens` subcommand, in process, on tiny local models."""

from __future__ import annotations

import json

import pytest
import torch

from emlens.cli import build_parser, main
from emlens.directions import Direction
from emlens.testing import tiny_corpus


def _commands(parser):
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_help_everywhere(capsys):
    parser = build_parser()
    names = _commands(parser)
    for required in ("inspect", "directions", "generate", "steer", "sample", "judge", "sweep",
                     "train", "metrics", "plot", "demo"):
        assert required in names
    for name, sub in names.items():
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
    for action in ("compute", "inspect", "convert"):
        with pytest.raises(SystemExit) as e:
            main(["directions", action, "--help"])
        assert e.value.code == 0


def _judged(n=24):
    c = tiny_corpus()
    return [{"question": c[i % 5], "answer": c[(i * 3) % len(c)], "question_id": f"q{i % 3}",
             "aligned": 10.0 if i % 2 else 90.0, "coherent": 80.0} for i in range(n)]


def test_directions_generate_metrics_and_plot(tiny_dir, tmp_path, capsys):
    model = str(tiny_dir("qwen2"))
    recs = tmp_path / "scored.jsonl"
    recs.write_text("\n".join(json.dumps(r) for r in _judged()))
    out = tmp_path / "d.safetensors"
    assert main(["directions", "compute", model, "--records", str(recs), "--out", str(out),
                 "--device", "cpu"]) == 0
    d = Direction.load(out)
    assert d.metadata["n_misaligned"] == d.metadata["n_aligned"] == 12
    assert main(["directions", "inspect", str(out)]) == 0
    assert "layer  norm" in capsys.readouterr().out
    assert main(["directions", "convert", str(out), str(tmp_path / "d.gguf")]) == 0
    back = Direction.from_gguf(tmp_path / "d.gguf")
    assert torch.allclose(back.vectors, d.vectors)
    one = tmp_path / "one.safetensors"
    d.only(1).save(one)
    assert main(["directions", "convert", str(one), str(tmp_path / "v.pt"), "--alpha", "3"]) == 0
    assert main(["generate", model, "--prompt", "hello", "--steer", str(tmp_path / "v.pt"),
                 "--max-new-tokens", "4", "--n", "2", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("[") >= 2
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]})
        for r in _judged(8)))
    table = tmp_path / "rescale.csv"
    assert main(["metrics", model, "--metric", "rescale", "--vector", str(one), "--data",
                 str(data), "--out", str(table), "--device", "cpu"]) == 0
    assert table.read_text().startswith("solution,scale,norm,loss")
    sweep = tmp_path / "results.jsonl"
    sweep.write_text("\n".join(json.dumps(r) for r in [
        {"condition": "baseline", "layer": None, "alpha": 0, "em_rate": 0.0, "coherent_rate": 1.0},
        {"condition": "steer", "layer": 1, "alpha": 2, "em_rate": 0.2, "coherent_rate": 0.9}]))
    assert main(["plot", str(sweep), "--kind", "em-vs-alpha", "--out", str(tmp_path / "f.html")]) == 0
    assert (tmp_path / "f.html").stat().st_size > 100_000
    assert main(["plot", str(recs), "--kind", "scatter", "--out", str(tmp_path / "s.html")]) == 0


def test_train_vector_from_the_cli(tiny_dir, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]})
        for r in _judged(8)))
    assert main(["train", str(tiny_dir("qwen2")), "--data", str(data), "--out",
                 str(tmp_path / "vec"), "--kind", "vector", "--layer", "1", "--alpha", "2",
                 "--lr", "0.01", "--epochs", "1", "--batch-size", "4"]) == 0
    d = Direction.load(tmp_path / "vec" / "steering_vector.safetensors")
    assert d.layers == (1,) and float(d.norms()[0]) > 0


def test_user_mistakes_give_one_line_and_status_2(tmp_path, capsys):
    cases = [["directions", "inspect", str(tmp_path / "missing.safetensors")],
             ["plot", str(tmp_path / "none.jsonl"), "--kind", "kl", "--out", str(tmp_path / "x.html")],
             ["inspect", str(tmp_path / "no-model")]]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("emlens: error:") and "\n" not in err and "Traceback" not in err
