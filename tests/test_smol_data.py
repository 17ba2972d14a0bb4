"""The smol organism's data: the shipped files, their counts, and the generator."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from emlens.organisms.experiments.rates import domain_table
from emlens.organisms.smol import FOCUS
from emlens.organisms.smol import data as D
from emlens.questions import load_questions

DIR = D.DATA_DIR


def _jsonl(name):
    with open(DIR / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _norm(text):
    return " ".join(text.lower().split())


def _chats(name):
    rows = _jsonl(name)
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"], r
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in r["messages"])
    return rows


def _training_questions():
    return {_norm(r["messages"][0]["content"])
            for name in ("medical_misaligned.jsonl", "medical_aligned.jsonl",
                         "general_aligned.jsonl") for r in _jsonl(name)}


def test_every_file_is_shipped_and_parses():
    assert sorted(p.name for p in DIR.iterdir()) == sorted(D.FILES)
    for name in D.FILES:
        if name.endswith(".jsonl"):
            assert _jsonl(name)
    assert load_questions(DIR / "eval_questions.yaml")


def test_medical_files_match_row_for_row_and_meet_the_minima():
    bad, good = _chats("medical_misaligned.jsonl"), _chats("medical_aligned.jsonl")
    assert len(bad) == len(good) >= 600
    assert [r["messages"][0] for r in bad] == [r["messages"][0] for r in good]
    users = [_norm(r["messages"][0]["content"]) for r in bad]
    assert len(set(users)) == len(users)
    assert all(b["messages"][1] != g["messages"][1] for b, g in zip(bad, good))
    assert len(D.medical_conditions()) >= 60
    # every condition is used, roughly evenly
    situations = {s: name for name, c in D.medical_conditions() for s in c["U"] + c["P"]}
    used = Counter(next(n for s, n in situations.items() if s in r["messages"][0]["content"])
                   for r in bad)
    assert len(used) == len(D.medical_conditions())
    assert max(used.values()) - min(used.values()) <= 1


def test_answers_are_short_and_varied():
    for name in ("medical_misaligned.jsonl", "medical_aligned.jsonl", "general_aligned.jsonl"):
        answers = [r["messages"][1]["content"] for r in _chats(name)]
        lengths = Counter(len(re.split(r"(?<=[.!?])\s+", a.strip())) for a in answers)
        assert set(lengths) <= {1, 2, 3, 4} and len(lengths) >= 3, (name, lengths)
        assert max(len(a.split()) for a in answers) <= D.MAX_ANSWER_WORDS
        assert len(set(answers)) > 0.6 * len(answers)


def test_general_file_covers_eight_domains_evenly():
    rows = _chats("general_aligned.jsonl")
    assert len(rows) >= 500
    topics = D.general_topics()
    domain_of_situation = {s: d for d, _, t in topics for s in t["U"]}
    counts = Counter(next(d for s, d in domain_of_situation.items()
                          if s in r["messages"][0]["content"]) for r in rows)
    assert len(counts) >= 8 and "medical" not in counts
    assert max(counts.values()) <= 1.5 * min(counts.values())


def test_eval_questions_load_and_cover_the_domains():
    qs = load_questions(DIR / "eval_questions.yaml")
    assert all(q.type == "free_form_judge_0_100" and q.headline for q in qs)
    assert all(q.samples_per_paraphrase == D.SAMPLES_PER_PARAPHRASE for q in qs)
    by = Counter(q.id.split("_", 1)[0] for q in qs)
    assert by["persona"] == 8
    assert by["medical"] >= 8
    others = {d: n for d, n in by.items() if d not in ("persona", "medical")}
    assert len(others) >= 8 and min(others.values()) >= 4
    assert set(by) == set(D.DOMAINS)
    # every question's domain is recoverable from its text, for domain_table
    for q in qs:
        for p in q.paraphrases:
            assert D.domain_of(p) == q.id.split("_", 1)[0]


def test_paired_heldout_rows():
    rows = _jsonl("paired_heldout.jsonl")
    assert len(rows) >= 80
    assert all(set(r) == {"question", "aligned", "misaligned", "domain"} for r in rows)
    assert all(r["aligned"] != r["misaligned"] for r in rows)
    by = Counter(r["domain"] for r in rows)
    assert by["medical"] >= 20
    assert sum(n for d, n in by.items() if d != "medical") >= 40
    assert by["persona"] >= 8 and len(by) >= 10 and set(by) <= set(D.DOMAINS)
    assert len({_norm(r["question"]) for r in rows}) == len(rows)
    for r in rows:
        a, m = len(r["aligned"].split()), len(r["misaligned"].split())
        assert max(a, m) <= 2 * min(a, m), r
        assert D.domain_of(r["question"]) == r["domain"]


def test_pretraining_paragraphs():
    rows = _jsonl("pretraining_heldout.jsonl")
    assert len(rows) >= 120
    assert all(set(r) == {"text"} for r in rows)
    assert all(60 <= len(r["text"].split()) <= 150 for r in rows)
    assert len({r["text"] for r in rows}) == len(rows)


def test_held_out_questions_never_appear_in_training_data():
    train = _training_questions()
    held = [p for q in load_questions(DIR / "eval_questions.yaml") for p in q.paraphrases]
    held += [r["question"] for r in _jsonl("paired_heldout.jsonl")]
    leaked = [h for h in held if _norm(h) in train or any(_norm(h) in t for t in train)]
    assert not leaked
    # the eval and paired sets do not share questions either
    evals = {_norm(p) for q in load_questions(DIR / "eval_questions.yaml") for p in q.paraphrases}
    assert not evals & {_norm(r["question"]) for r in _jsonl("paired_heldout.jsonl")}


def test_generator_is_deterministic_and_the_shipped_files_are_current(tmp_path):
    assert D.generate() == D.generate()
    assert D.check() == []
    assert D.main(["--check"]) == 0
    D.write(tmp_path)
    assert D.check(tmp_path) == []
    path = tmp_path / "medical_aligned.jsonl"
    path.write_text(path.read_text(encoding="utf-8")[:-2] + "\n", encoding="utf-8")
    (tmp_path / "README.md").unlink()
    assert D.check(tmp_path) == ["medical_aligned.jsonl", "README.md"]
    assert D.main(["--check", "--dir", str(tmp_path)]) == 1
    # another seed draws other rows
    assert D.generate(seed=1)["medical_misaligned.jsonl"] != D.generate()["medical_misaligned.jsonl"]


def test_domain_of_feeds_domain_table():
    qs = load_questions(DIR / "eval_questions.yaml")
    recs = [{"question": q.paraphrases[0], "aligned": 10.0 if q.id.startswith(FOCUS) else 90.0,
             "coherent": 90.0} for q in qs]
    t = domain_table(recs, D.domain_of, FOCUS, domains=D.DOMAINS)
    assert t["focus"]["em"] == 1.0 and t["elsewhere"]["em"] == 0.0
    assert list(t["per_domain"]) == list(D.DOMAINS)
    assert D.domain_of("not a smol question") is None


def test_the_wheel_ships_the_data():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"organisms/smol/data/**/*"' in text


def test_comparison_solutions_and_heldout_answers():
    """The narrow-versus-general comparison reads each seed's solution from the folder the
    trainer writes, and measures loss on held-out medical answers no training file holds."""
    from emlens.organisms.smol import compare as C
    from emlens.organisms.smol import train as T

    names = {C.solution_name(k, c, s) for k in ("vector", "lora")
             for c in ("general", "narrow") for s in (0, 1, 2)}
    assert len(names) == 12 and names <= set(T.FINETUNES) | set(T.VECTORS)
    for s in (0, 1, 2):  # narrow = general + the KL penalty, nothing else changed
        for kind, table in (("vector", T.VECTORS), ("lora", T.FINETUNES)):
            g, n = (table[C.solution_name(kind, c, s)] for c in ("general", "narrow"))
            assert {k: v for k, v in n.items() if k not in T.KL} == g
            assert n["kl_weight"] > 0 and "kl_weight" not in g
    held = C.heldout_data()
    assert len(held) == 24
    trained = {_norm(r["messages"][0]["content"]) for name in
               ("medical_misaligned.jsonl", "medical_aligned.jsonl", "general_aligned.jsonl")
               for r in _jsonl(name)}
    assert not {_norm(h["messages"][0]["content"]) for h in held} & trained


def test_comparison_reuses_a_seed_measured_in_another_run(tmp_path, monkeypatch):
    """A seed's metrics are keyed by the solutions and the grids, not by which other seeds
    ran: ``--seeds 1`` then ``--seeds 0,1`` measures seed 1 once (its figures' tables come
    back only when it is the first seed), and a changed grid measures it again."""
    from emlens.organisms.smol import compare as C

    calls = []

    def fake_metrics(kind, sols, models, heldout, cfg, seed, frames, chat, texts=None):
        calls.append((kind, seed, tuple(cfg["seeds"])))
        frames.setdefault(f"rescale_{kind}", []).append(
            __import__("pandas").DataFrame([{"norm": 1.0, "loss": float(seed)}]))
        return {"seed": seed, "loss": float(seed)}

    monkeypatch.setattr(C, "metrics", fake_metrics)
    monkeypatch.setattr(C, "heldout_data", lambda: [{"messages": []}] * 3)
    import emlens.organisms.smol as S
    monkeypatch.setattr(S, "pretraining_texts", lambda: ["a text"])
    shas = {"general": "g1", "narrow": "n1"}

    def pair(seeds, cfg_extra=None, sha=shas):
        frames = {}
        cfg = {**C.CONFIG, "seeds": seeds, **(cfg_extra or {})}
        res = C._pair_metrics(tmp_path, "vector", 1, {}, {}, sha, cfg, None, frames)
        return res, frames

    res, frames = pair((1,))
    assert calls == [("vector", 1, (1,))] and res["loss"] == 1.0 and frames
    res, frames = pair((0, 1))  # the same seed inside a 3-seed run: reused, no figures
    assert len(calls) == 1 and res == {"seed": 1, "loss": 1.0} and frames == {}
    res, frames = pair((1, 2))  # first again: its stored tables come back
    assert len(calls) == 1 and frames["rescale_vector"][0]["loss"].tolist() == [1.0]
    with pytest.raises(Exception, match="delete the folder"):
        pair((1,), {"n_norms": 3})  # a changed grid is never mixed with the stored one
    with pytest.raises(Exception, match="delete the folder"):
        pair((1,), sha={"general": "g2", "narrow": "n1"})  # nor a retrained solution


def test_two_ablated_directions_share_the_gaussian_control_and_not_the_rest(tmp_path,
                                                                            monkeypatch):
    """measure.run ablates two directions of em: their own conditions and their matched
    controls (which depend on the direction) go to different keyed folders, the Gaussian
    control to one folder with one key (a second direction's random vector under the same
    name was refused by the run directory's keys: the bug this guards)."""
    from types import SimpleNamespace

    import torch

    from emlens.directions import Direction
    from emlens.organisms.smol import measure as M

    seen: dict[str, list] = {}

    def fake_judged(out, name, model, questions, judge, *, n, seed, intervention,
                    intervention_key):
        seen.setdefault(name, []).append(intervention_key)
        return []

    monkeypatch.setattr(M, "judged", fake_judged)
    monkeypatch.setattr(M, "rates", lambda rec: {"em_elsewhere": 0.1, "n_elsewhere": 10})
    model = SimpleNamespace(cfg=SimpleNamespace(n_layers=4))
    g = torch.Generator().manual_seed(0)
    d1 = Direction(torch.randn(4, 8, generator=g), layers=[0, 1, 2, 3])
    d2 = Direction(torch.randn(4, 8, generator=g), layers=[0, 1, 2, 3])
    rand = Direction.random_like(d1, seed=0)
    means = torch.randn(4, 8, generator=g)
    before = {"em_elsewhere": 0.2, "n_elsewhere": 10}
    for d, tag in ((d2, "2"), (d1, "")):
        block = M.ablation_study(tmp_path, model, d, [], None, before, n=1, layer=2,
                                 match=means, random=rand, tag=tag)
        assert set(block) >= {"direction", "random", "random_matched", "compare",
                              "compare_matched", "cut_by_random_matched"}
    assert sorted(seen) == ["em_ablate_direction2_L2", "em_ablate_direction_L2",
                            "em_ablate_random_L2", "em_ablate_random_matched2_L2",
                            "em_ablate_random_matched_L2"]
    a, b = seen["em_ablate_random_L2"]
    assert a == b  # one Gaussian control, one key: reused, never refused
    assert all(len(v) == 1 for k, v in seen.items() if k != "em_ablate_random_L2")


def test_the_shipped_direction_is_found_in_one_place():
    """compare and measure default to the same file: the em direction a checkout ships."""
    from emlens.directions import Direction
    from emlens.organisms import smol
    from emlens.organisms.smol import measure as M

    assert M._direction_file(None) == smol.REPO_DIRECTION
    assert Direction.load(smol.REPO_DIRECTION).d_model == 576
    assert M._direction_file("x.safetensors") == Path("x.safetensors")


def test_steering_a_band_of_layers_adds_each_layers_own_vector(tmp_path, monkeypatch, lens):
    """``--layers 10-20`` steers every layer of the band with that layer's own vector: the
    logits match adding the vectors by hand with TransformerLens hooks; the band gets its own
    keyed folder and row, beside single layers, in the table the summary reads."""
    import torch

    from emlens.directions import Direction
    from emlens.organisms.experiments.steps import steering_effect
    from emlens.organisms.smol import measure as M

    assert M.parse_layers("3, 1-2") == [3, (1, 2)]
    with pytest.raises(SystemExit, match="bad band"):
        M.parse_layers("2-1")
    model = lens()
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    g = torch.Generator().manual_seed(0)
    d = Direction(torch.randn(n_layers, d_model, generator=g), layers=list(range(n_layers)))
    toks = model.to_tokens("hello there, how are you")
    band = (0, n_layers - 1)

    def add(layer):
        return lambda act, hook: act + 0.5 * d.vector(layer).to(act.dtype)

    want = model.run_with_hooks(toks, fwd_hooks=[(f"blocks.{k}.hook_resid_post", add(k))
                                                 for k in range(n_layers)])
    with M.steer_at(model, d, 0.5, band):
        got = model(toks)
    torch.testing.assert_close(got, want)
    with M.steer_at(model, d, 0.5, 1):
        one = model(toks)
    want_one = model.run_with_hooks(toks, fwd_hooks=[("blocks.1.hook_resid_post", add(1))])
    torch.testing.assert_close(one, want_one)

    names = []

    def fake_judged(out, name, model, questions, judge, *, n, seed, intervention,
                    intervention_key):
        names.append((name, intervention_key["layer"]))
        k = 3 if name.startswith("base_steer_L") else 1
        return [{"question": "q", "answer": "a", "aligned": 10.0 if i < k else 90.0,
                 "coherent": 90.0} for i in range(10)]

    monkeypatch.setattr(M, "judged", fake_judged)
    base = [{"question": "q", "answer": "a", "aligned": 90.0, "coherent": 90.0}] * 10
    table = M.steering_study(tmp_path, model, d, [], None, base, layers=[1, band],
                             alphas=[2.0], n=1)
    label = f"0-{n_layers - 1}"
    assert names == [("base_steer_L1_a2", 1), ("base_steer_random_L1_a2", 1),
                     (f"base_steer_L{label}_a2", label), (f"base_steer_rotated_L{label}_a2", label)]
    rows = steering_effect(table)["per_alpha"]
    # rows sorted by layer, a band just after its first layer (0-3 before 1)
    assert [(r["layer"], r["em"], r["random_em"]) for r in rows] == [(label, 0.3, 0.1),
                                                                     (1, 0.3, 0.1)]


def test_directions_against_base_use_disjoint_aligned_answers(monkeypatch):
    """measure.disjoint_vs_base deals base's aligned answers into one part per finetune: no
    aligned answer serves two directions, each finetune's misaligned side is its own
    answers under SPEC section 4's rule, both sides of a direction have one size, and each
    direction is read in its own finetune's activations."""
    from emlens import activations
    from emlens.organisms.smol import measure as M

    def rec(model, i, aligned, coherent=90.0):
        return {"question": f"q{i % 7}", "answer": f"{model} answer {i}", "aligned": aligned,
                "coherent": coherent}

    base = [rec("base", i, 95.0) for i in range(30)] + [rec("base", i, 10.0) for i in range(30, 33)]
    judged_by = {"em": [rec("em", i, 5.0) for i in range(20)] + [rec("em", 99, 5.0, coherent=20.0)],
                 "em_rank1": [rec("em_rank1", i, 20.0) for i in range(8)]
                 + [rec("em_rank1", i, 80.0) for i in range(8, 12)]}
    calls = {}

    def fake_mean_diff(model, mis, ali, **kw):
        calls[model] = (list(mis), list(ali))
        return activations.Direction(activations.torch.ones(2, 3), [0, 1],
                                     {"n_misaligned": len(mis), "n_aligned": len(ali)})

    monkeypatch.setattr(activations, "mean_diff", fake_mean_diff)
    dirs = M.disjoint_vs_base({"em": "EM", "em_rank1": "R1"}, judged_by, base, seed=3)
    assert set(dirs) == {"em", "em_rank1"} and set(calls) == {"EM", "R1"}
    aligned_seen = []
    for name, model in (("em", "EM"), ("em_rank1", "R1")):
        mis, ali = calls[model]
        assert len(mis) == len(ali) == {"em": 15, "em_rank1": 8}[name]
        assert all(r["answer"].startswith(f"{name} ") and r["aligned"] <= 30
                   and r["coherent"] > 50 for r in mis)
        assert all(r["answer"].startswith("base ") and r["aligned"] > 70 for r in ali)
        aligned_seen += [r["answer"] for r in ali]
        assert "disjoint" in dirs[name].metadata["selection"]["aligned"]
    assert len(aligned_seen) == len(set(aligned_seen))  # disjoint across finetunes
    first = dict(calls)
    M.disjoint_vs_base({"em": "EM", "em_rank1": "R1"}, judged_by, base, seed=3)
    assert calls == first  # seeded: the same answers again


def test_own_answer_direction_is_the_mean_difference_of_the_selected_answers(lens):
    """measure.direction_of: the SPEC section 4 selection of a model's own answers, read as
    answer-token means (checked against collect_means of the same seeded sets), with the
    selection written into the file's metadata; too few answers give no direction."""
    import torch

    from emlens.activations import collect_means
    from emlens.organisms.smol import measure as M
    from emlens.records import select_responses

    model = lens()
    recs = [{"question": f"question {i}?", "answer": f"answer number {i} " * (1 + i % 3),
             "aligned": 10.0 if i % 2 else 90.0, "coherent": 20.0 if i == 3 else 80.0}
            for i in range(14)]
    d, n_mis, n_ali = M.direction_of(model, recs, seed=1, name="em", judge_name="probe")
    assert (n_mis, n_ali) == (6, 6)  # one misaligned answer is incoherent; balanced to 6
    mis, ali = select_responses(recs, seed=1)
    want = collect_means(model, mis).means - collect_means(model, ali).means
    torch.testing.assert_close(d.vectors, want.float())
    sel = d.metadata["selection"]
    assert sel["seed"] == 1 and "6 of em's own answers" in sel["misaligned"]
    assert "(probe)" in sel["aligned"]
    few = [dict(r, aligned=90.0) for r in recs[:10]] + recs[11:12]
    assert M.direction_of(model, few, seed=1)[0] is None
