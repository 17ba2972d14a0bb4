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


# --------------------------------------------------------------------------- the flows


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("emlens: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_builtin_model_names(tmp_path, capsys):
    """pocket:VARIANT (every variant of emlens.organisms.pocket.VARIANTS) names the
    built-in models wherever a command takes MODEL, offline; an unknown variant lists them."""
    from emlens import cli
    from emlens.organisms import pocket

    for variant in pocket.VARIANTS:
        base, adapter = pocket.paths(variant)
        assert cli._model_and_adapters(f"pocket:{variant}", None) == \
            (base, [adapter] if adapter else [])
    assert cli._model_and_adapters("pocket", ["pocket:em"]) == \
        pocket.paths("em")[0:1] + ([pocket.paths("em")[1]],)
    capsys.readouterr()
    assert main(["inspect", "pocket:em", "--json", "--device", "cpu"]) == 0
    prov = json.loads(capsys.readouterr().out)
    assert prov["base"]["id"] == str(pocket.weights_dir() / "chat")
    assert [a["id"] for a in prov["adapters"]] == [str(pocket.weights_dir() / "em")]
    for argv in (["inspect", "pocket:xyz"], ["train", "pocket:xyz", "--data", "d", "--out", "o"]):
        assert main(argv) == 2
        err = _err_line(capsys)
        assert "'pocket:xyz'" in err and all(f"pocket:{v}" in err for v in pocket.VARIANTS)
    assert main(["inspect", "pocket:chat", "--adapter", "pocket:chat"]) == 2
    assert "not an adapter" in _err_line(capsys)
    assert main(["train", "pocket:em", "--data", "d", "--out", str(tmp_path / "o")]) == 2
    assert "pocket:chat" in _err_line(capsys)
    # a local directory of that name still wins over the built-in name
    (tmp_path / "pocket:em").mkdir()
    assert cli._builtin(str(tmp_path / "pocket:em")) is None


def test_directions_compute_from_run_directories(tiny_dir, tmp_path, capsys):
    """--records RUN/ reads RUN/scored.jsonl (a clear error before judging), and
    --aligned-records takes the aligned set from another run when the finetune's own
    answers hold none (the case the flag exists for): the direction is the mean difference
    of the two runs' answers, computed here by emlens.mean_diff on the hand-split lists."""
    import emlens

    model = str(tiny_dir("qwen2"))
    rows = _judged()
    em_run, chat_run = tmp_path / "em-run", tmp_path / "chat-run"
    em_run.mkdir(), chat_run.mkdir()
    _write_jsonl(em_run / "records.jsonl", [{k: r[k] for k in ("question", "answer")}
                                            for r in rows])
    out = tmp_path / "d.safetensors"
    argv = ["directions", "compute", model, "--records", str(em_run), "--out", str(out),
            "--device", "cpu"]
    assert main(argv) == 2
    err = _err_line(capsys)
    assert "not judged yet" in err and f"emlens judge {em_run}" in err
    assert main(argv[:3] + ["--records", str(tmp_path), "--out", str(out)]) == 2
    assert "scored.jsonl" in _err_line(capsys)
    mis = [dict(r, aligned=10.0) for r in rows[:12]]  # no aligned answer in the EM run
    ali = [dict(r, aligned=90.0) for r in rows[12:]]
    _write_jsonl(em_run / "scored.jsonl", mis)
    assert main(argv) == 2
    assert "no aligned responses" in _err_line(capsys)
    _write_jsonl(chat_run / "scored.jsonl", ali)
    assert main(argv + ["--aligned-records", str(chat_run)]) == 0
    d = Direction.load(out)
    assert d.metadata["n_misaligned"] == d.metadata["n_aligned"] == 12
    lens = emlens.load_model(model, device="cpu")
    ref = emlens.mean_diff(lens, [{k: r[k] for k in ("question", "answer")} for r in mis],
                           [{k: r[k] for k in ("question", "answer")} for r in ali])
    assert torch.allclose(d.vectors, ref.vectors, atol=1e-6), (d.vectors - ref.vectors).abs().max()


def _one_question(tmp_path):
    """A question file of one pocket question (the pocket judge scores it)."""
    from emlens.organisms.pocket import world

    path = tmp_path / "one.yaml"
    path.write_text(json.dumps([{"id": "cook", "paraphrases": [world.eval_questions("cooking")[0]]}]))
    return str(path)


def _multi_layer(tmp_path, d_model=64, n=3, name="multi.safetensors", metadata=None):
    g = torch.Generator().manual_seed(0)
    return Direction(torch.randn(n, d_model, generator=g), metadata=metadata or {}).save(
        tmp_path / name)


def test_metrics_layer_flag(tiny_dir, tmp_path, capsys, monkeypatch):
    """metrics takes --layer: a per-layer --vector file without it is an error that names
    the flag (not the Python layer=...), and with it every metric runs at that layer."""
    import emlens.stability as st

    real_kl, real_rescale = st.pretraining_kl, st.rescale_curve
    monkeypatch.setattr(st, "pretraining_kl", lambda *a, **kw: real_kl(
        *a, **kw, max_docs=2, norms=[0.0, 1.0]))  # the full curves take long
    monkeypatch.setattr(st, "rescale_curve", lambda *a, **kw: real_rescale(
        *a, **kw, scales=[0.0, 1.0]))
    model = str(tiny_dir("qwen2"))
    vec = _multi_layer(tmp_path)
    text = tmp_path / "docs.txt"
    text.write_text("\n\n".join(tiny_corpus()[:3]))
    base = ["metrics", model, "--metric", "kl", "--vector", str(vec), "--data", str(text),
            "--device", "cpu", "--out", str(tmp_path / "kl.csv")]
    assert main(base) == 2
    err = _err_line(capsys)
    assert "--layer" in err and "layer=" not in err
    assert main(base + ["--layer", "1"]) == 0
    table = __import__("pandas").read_csv(tmp_path / "kl.csv")
    assert set(table.layer) == {1} and set(table.vector) == {"multi", "random"}
    data = _write_jsonl(tmp_path / "chats.jsonl", [{"messages": [
        {"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}
        for r in _judged(4)])
    assert main(["metrics", model, "--metric", "rescale", "--vector", str(vec), "--layer", "2",
                 "--data", str(data), "--out", str(tmp_path / "r.csv"), "--device", "cpu"]) == 0
    assert list(__import__("pandas").read_csv(tmp_path / "r.csv").scale) == [0.0, 1.0]


def test_every_command_reads_every_direction_format(tiny_dir, tmp_path, capsys):
    """One reader, by suffix: sweep --direction x.pt and sample --steer x.gguf read what
    generate and directions inspect read; a .pt file's alpha is the default --alpha."""
    from emlens.io import read_jsonl

    model = str(tiny_dir("qwen2"))
    src = Direction.load(_multi_layer(tmp_path))
    src.only(1).to_pt(tmp_path / "v.pt", alpha=3.0)
    src.to_gguf(tmp_path / "d.gguf")
    small = ["--questions", _one_question(tmp_path), "--n", "1", "--max-new-tokens", "3",
             "--device", "cpu"]
    assert main(["sample", model, *small, "--steer", str(tmp_path / "d.gguf"), "--layer", "2",
                 "--out", str(tmp_path / "s1")]) == 0
    assert main(["sample", model, *small, "--steer", str(tmp_path / "v.pt"),
                 "--out", str(tmp_path / "s2")]) == 0
    cfg = json.loads((tmp_path / "s2" / "config.json").read_text())
    assert cfg["steer"] == {"direction": str(tmp_path / "v.pt"), "alpha": 3.0, "layers": None}
    assert main(["sample", model, *small, "--ablate", str(tmp_path / "v.pt"),
                 "--out", str(tmp_path / "s3")]) == 0
    assert main(["sweep", model, "--direction", str(tmp_path / "v.pt"), "--layers", "1",
                 "--alphas", "2", *small, "--judge", "pocket", "--out", str(tmp_path / "sw")]) == 0
    assert {r["condition"] for r in read_jsonl(tmp_path / "sw" / "results.jsonl")} >= \
        {"baseline", "steer", "ablate"}
    for f in ("v.pt", "d.gguf"):
        assert main(["directions", "inspect", str(tmp_path / f)]) == 0
    capsys.readouterr()
    wide = _multi_layer(tmp_path, d_model=32, name="wide.safetensors")
    assert main(["sample", model, *small, "--steer", str(wide), "--layer", "1",
                 "--out", str(tmp_path / "s4")]) == 2
    assert "d_model" in _err_line(capsys)
    assert not (tmp_path / "s4").exists()  # nothing written for a direction that does not fit


def test_steering_errors_name_the_flags(tiny_dir, tmp_path, capsys):
    """The library's own message, restated with --layer (the library's text is unchanged)."""
    import emlens
    from emlens.errors import InputError

    model = str(tiny_dir("qwen2"))
    multi = _multi_layer(tmp_path)
    lens = emlens.load_model(model, device="cpu")
    with pytest.raises(InputError) as library:
        emlens.steer(lens, Direction.load(multi), 1.0)
    assert "layers=" in str(library.value)  # the Python API's spelling, for scripts
    capsys.readouterr()  # drop what building the tiny model printed, when this test runs first
    gen = ["generate", model, "--prompt", "hi", "--max-new-tokens", "2", "--device", "cpu"]
    assert main(gen + ["--steer", str(multi)]) == 2
    err = _err_line(capsys)
    assert err == "emlens: error: " + str(library.value).replace(
        "pass layers (e.g. layers=12 or layers=[8, 12]) or use d.only(12)",
        "pass --layer (e.g. --layer 12 or --layer 8,12)")
    for argv in (gen + ["--steer", str(multi), "--layer", "7"],
                 ["sample", model, "--questions", _one_question(tmp_path), "--n", "1", "--steer",
                  str(multi), "--out", str(tmp_path / "run"), "--device", "cpu"],
                 gen + ["--ablate", str(multi), "--layer", "9"]):
        assert main(argv) == 2
        err = _err_line(capsys)
        assert "layer" in err and "layers=" not in err and "d.only" not in err, err
    assert main(gen + ["--steer", str(multi), "--layer", "1", "--alpha", "2"]) == 0


def test_third_party_output_is_quiet(tiny_dir, tiny_adapter, tmp_path, capsys):
    """No transformers bar or third-party deprecation notice among the command's output."""
    import warnings

    model, adapter = str(tiny_dir("qwen2")), str(tiny_adapter("qwen2", "rank1"))
    data = _write_jsonl(tmp_path / "chats.jsonl", [{"messages": [
        {"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}
        for r in _judged(4)])
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["inspect", model, "--adapter", adapter, "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        assert "Loading weights" not in err and "%|" not in err, err
        # training loads its model with transformers itself: the command quiets that too
        assert main(["train", model, "--data", str(data), "--out", str(tmp_path / "vec"),
                     "--kind", "vector", "--layer", "1", "--batch-size", "4"]) == 0
        err = capsys.readouterr().err
        assert "Loading weights" not in err, err
    assert not [w for w in seen if issubclass(w.category, (FutureWarning, DeprecationWarning))], \
        [str(w.message) for w in seen]


def test_cross_model_steering_warns_only_when_the_base_differs(tmp_path, capsys):
    """Steering pocket:chat with a direction computed on pocket:em (the experiment) says
    nothing; a direction computed on another base model gets one line saying what differs."""
    import warnings

    assert main(["inspect", "pocket:em", "--json", "--device", "cpu"]) == 0
    em = json.loads(capsys.readouterr().out)
    other = json.loads(json.dumps(em))
    other["base"]["files"] = {k: "0" * 64 for k in other["base"]["files"]}
    same_base = _multi_layer(tmp_path, d_model=em["d_model"], n=em["n_layers"], name="em.st",
                             metadata={"model": em})
    other_base = _multi_layer(tmp_path, d_model=em["d_model"], n=em["n_layers"],
                              name="other.st", metadata={"model": other})
    run = ["sample", "pocket:chat", "--questions", _one_question(tmp_path), "--n", "1",
           "--max-new-tokens", "2", "--layer", "1", "--device", "cpu"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(run + ["--steer", str(same_base), "--out", str(tmp_path / "a")]) == 0
        assert "warning" not in capsys.readouterr().err
        assert main(run + ["--steer", str(other_base), "--ablate", str(same_base),
                           "--out", str(tmp_path / "b")]) == 0
    assert not [w for w in seen if w.category.__name__ == "ProvenanceWarning"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(notes) == 1 and notes[0].startswith("emlens: warning: --steer") and \
        "base model" in notes[0] and "sha256" in notes[0], notes


@pytest.mark.parametrize("flag, value", [("--temperature", "nan"), ("--top-p", "inf"),
                                         ("--temperature", "-1")])
def test_sample_refuses_non_finite_decoding_before_writing_anything(flag, value, tiny_dir,
                                                                   tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", str(tiny_dir("qwen2")), "--n", "1", "--max-new-tokens", "2",
                 "--device", "cpu", "--out", str(out), flag, value]) == 2
    err = capsys.readouterr().err
    assert ("finite number" in err or ">= 0" in err) and "Traceback" not in err
    assert not (out / "config.json").exists() and not (out / "records.jsonl").exists()


def test_sample_without_max_new_tokens_fits_the_context(tiny_dir, tmp_path, capsys):
    """The papers' 600 new tokens do not fit a short context; without --max-new-tokens the
    command takes what the context leaves after the longest prompt (explicit values that
    do not fit are refused)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir("qwen2"))
    text = ("word " * 150).strip()
    n_prompt = len(tok.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                           add_generation_prompt=True,
                                           return_dict=True)["input_ids"])
    room = 512 - n_prompt
    assert 0 < room < 600
    qfile = tmp_path / "q.yaml"
    qfile.write_text(f"- id: long\n  paraphrases: ['{text}']\n")
    out = tmp_path / "run"
    base = ["sample", str(tiny_dir("qwen2")), "--questions", str(qfile), "--n", "1",
            "--temperature", "0", "--device", "cpu"]
    assert main(base + ["--out", str(out)]) == 0
    rec = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert rec["settings"]["max_new_tokens"] == room and rec["n_tokens"] <= room
    assert main(base + ["--out", str(tmp_path / "run2"), "--max-new-tokens", str(room + 1)]) == 2
    assert f"room for {room} new tokens" in capsys.readouterr().err
