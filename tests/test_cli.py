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


def test_cli_demo_help_and_bad_output_dir(tmp_path, capsys):
    """``demo --help`` works; an output directory that cannot be one is a one-line error
    (status 2), raised before any model is loaded."""
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    assert "report.html" in capsys.readouterr().out
    afile = tmp_path / "a-file"
    afile.write_text("not a directory")
    for bad in (afile, afile / "under-a-file"):
        assert main(["demo", "--out", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("emlens: error:") and "\n" not in err and "Traceback" not in err
        assert str(bad) in err and "directory" in err


def test_metrics_kl_needs_text(tiny_dir, tmp_path, capsys, monkeypatch):
    """``--metric kl`` without --data (or --organism) says what to pass; --organism pocket
    supplies the organism's held-out pretraining text."""
    import emlens.organisms
    import emlens.stability

    model = str(tiny_dir("qwen2"))
    d = Direction(torch.randn(1, 64, generator=torch.Generator().manual_seed(0)), layers=[1])
    vec = d.save(tmp_path / "v.safetensors")
    base = ["metrics", model, "--metric", "kl", "--vector", str(vec), "--device", "cpu",
            "--out", str(tmp_path / "kl.csv")]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emlens: error:") and "\n" not in err
    assert "--data" in err and "--organism" in err
    text = tmp_path / "docs.txt"
    text.write_text("\n\n".join(tiny_corpus()[:3]))
    assert main(base + ["--data", str(text), "--organism", "pocket"]) == 2
    assert "not both" in capsys.readouterr().err
    real_kl, seen = emlens.stability.pretraining_kl, {}

    def few_docs_kl(model, vectors, *, texts, **kw):  # the whole pocket corpus takes minutes
        seen.update(texts=texts, tokenizer=model.tokenizer)
        return real_kl(model, vectors, texts=texts, max_docs=2, norms=[0.0, 1.0])

    monkeypatch.setattr(emlens.stability, "pretraining_kl", few_docs_kl)
    assert main(base + ["--organism", "pocket"]) == 0
    assert seen["texts"] == emlens.organisms.pretraining_texts("pocket", seen["tokenizer"])
    assert set(__import__("pandas").read_csv(tmp_path / "kl.csv").vector) == {"v", "random"}
    monkeypatch.setattr(emlens.stability, "pretraining_kl", real_kl)
    assert main(base + ["--data", str(text)]) == 0
    assert set(__import__("pandas").read_csv(tmp_path / "kl.csv").vector) == {"v", "random"}
    for metric in ("rescale", "perturb"):
        assert main(["metrics", model, "--metric", metric, "--vector", str(vec), "--out",
                     str(tmp_path / "x.csv")]) == 2
        assert "needs --data" in capsys.readouterr().err
