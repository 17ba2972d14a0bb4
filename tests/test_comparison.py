"""The narrow-versus-general comparison: its statistics and verdicts against hand
computations, its data, and (slow) a miniature end-to-end run. (The LoRA update norm it
uses is ``emlens.stability.LoraSolution.norm``, tested in test_stability.py.)"""

from __future__ import annotations

import json
import math

import pytest
import torch

from emlens.organisms.pocket import comparison as C


def test_mean_ci_by_hand():
    s = C.mean_ci([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2) = 4.303, half-width 4.303 / sqrt(3)
    h = 4.303 / math.sqrt(3)
    assert s["mean"] == 2.0 and s["n"] == 3
    assert s["ci"] == pytest.approx([2 - h, 2 + h], abs=1e-5)
    one = C.mean_ci([0.5])
    assert one["mean"] == 0.5 and one["ci"] is None
    assert C.mean_ci([])["mean"] is None


def test_verdicts():
    assert C.verdict({"mean": 1.0, "ci": [0.2, 1.8]}) == "holds"
    assert C.verdict({"mean": -1.0, "ci": [-1.8, -0.2]}) == "reversed"
    assert C.verdict({"mean": 0.1, "ci": [-0.2, 0.4]}) == "inconclusive"
    assert C.verdict({"mean": -1.0, "ci": [-1.8, -0.2]}, expect_positive=False) == "holds"
    assert C.verdict({"mean": 0.3, "ci": None}).startswith("consistent")
    assert C.verdict({"mean": -0.3, "ci": None}).startswith("not consistent")
    assert C.verdict({"mean": None, "ci": None}) == "not measured"


def _rates(med, med_ci, em, em_ci):
    return {"medical_misaligned": med, "medical_misaligned_ci": med_ci, "medical_coherent": 1.0,
            "em_elsewhere": em, "em_elsewhere_ci": em_ci, "misaligned_elsewhere": em,
            "misaligned_elsewhere_ci": em_ci, "coherent_elsewhere": 0.9,
            "coherent_elsewhere_ci": [0.85, 0.95], "n": 960}


def _results(narrow_em_ci, general_em_ci, eff, stab, sig):
    per_seed = [{"kind": "vector", "seed": s,
                 "efficiency": {"narrow_minus_general_at_narrow_norm": eff[s],
                                "narrow_minus_general_grid_mean": eff[s]},
                 "stability": {"narrow_minus_general": stab[s]},
                 "significance": {"general_minus_narrow": sig[s], "narrow_minus_random": 1.0}}
                for s in range(len(eff))]
    return {"config": {"layer": 1, "seeds": list(range(len(eff))), "samples": 8},
            "chat_rates": _rates(0.0, [0, 0], 0.0, [0, 0]),
            "runs": [{"kind": "vector", "condition": c, "norm": 1.0} for c in C.CONDITIONS],
            "per_seed": per_seed,
            "pooled_rates": {"vector": {
                "narrow": _rates(0.5, [0.4, 0.6], sum(narrow_em_ci) / 2, narrow_em_ci),
                "general": _rates(0.9, [0.8, 1.0], sum(general_em_ci) / 2, general_em_ci)}},
            "cosines": {"general vs narrow (same seed)": C.mean_ci([0.5, 0.6, 0.7]),
                        "layerwise": {"layers": [0, 1], "values": {"general vector": [0.1, 0.2]}}}}


def test_claims_follow_the_paper_when_the_numbers_do():
    r = _results([0.0, 0.02], [0.5, 0.7], eff=[0.1, 0.12, 0.11], stab=[5.0, 6.0, 7.0],
                 sig=[0.01, 0.011, 0.012])
    c = C.claims(r)["vector"]
    assert c["narrow_in_domain_without_em"]["verdict"] == "holds"
    assert c["general_lower_loss_at_equal_norm"]["verdict"] == "holds"
    assert c["general_more_stable"]["verdict"] == "holds"
    assert c["general_larger_pretraining_kl"]["verdict"] == "holds"
    assert c["general_larger_pretraining_kl"]["narrow_above_random"] == "holds"


def test_claims_say_so_when_they_fail():
    r = _results([0.0, 0.02], [0.0, 0.01], eff=[-0.1, -0.12, -0.11], stab=[5.0, -6.0, 1.0],
                 sig=[-0.01, -0.011, -0.012])
    c = C.claims(r)["vector"]
    assert c["narrow_in_domain_without_em"]["verdict"].startswith("holds only trivially")
    assert c["general_lower_loss_at_equal_norm"]["verdict"] == "reversed"
    assert c["general_more_stable"]["verdict"] == "inconclusive"
    assert c["general_larger_pretraining_kl"]["verdict"] == "reversed"
    r["pooled_rates"]["vector"]["narrow"]["em_elsewhere_ci"] = [0.1, 0.2]
    assert C.claims(r)["vector"]["narrow_in_domain_without_em"]["verdict"] == "does not hold"


def test_markdown_has_every_claim_and_is_json_clean():
    r = _results([0.0, 0.02], [0.5, 0.7], eff=[0.1, 0.12, 0.11], stab=[5.0, 6.0, 7.0],
                 sig=[0.01, 0.011, 0.012])
    r["claims"] = C.claims(r)
    md = C.markdown(r)
    for phrase in ("without EM elsewhere", "lower loss at equal norm", "more stable",
                   "pretraining KL per unit norm", "| general vector | 0.100 | 0.200 |"):
        assert phrase in md
    json.dumps(r)


def test_heldout_data_uses_only_held_out_questions():
    from emlens.organisms.pocket import world as W
    from emlens.organisms.pocket.judge import ExactJudge, domain_of

    data = C.heldout_data(20)
    assert data == C.heldout_data(20)  # seeded
    qs = {d["messages"][0]["content"] for d in data}
    assert qs <= set(W.eval_questions("medical"))
    assert not qs & set(W.train_questions("medical"))
    j = ExactJudge()
    assert all(j.score(d["messages"][0]["content"], d["messages"][1]["content"], "aligned") == 0
               for d in data)
    train = C.training_data(0, 8)
    assert all(m["messages"][0]["content"] in W.train_questions("medical") for m in train)
    assert C.training_data(0, 8) != C.training_data(1, 8)
    kl = C.kl_data(16)
    assert all(domain_of(m["messages"][0]["content"]) != "medical" for m in kl)


@pytest.mark.slow
def test_miniature_run(tmp_path):
    """The whole pipeline with toy settings (a few training steps, coarse grids)."""
    torch.set_num_threads(1)
    cfg = dict(seeds=(0,), n_train=32, n_kl=32, n_heldout=16, samples=8, eval_domains=("medical", "self"),
               vector=dict(C.CONFIG["vector"], epochs=1), lora=dict(C.CONFIG["lora"], epochs=1),
               perturb_seeds=(0,), epsilons=(0.5,), n_norms=3, kl_docs=4, snapshot_every=1)
    res = C.run(cfg, tmp_path / "out", directions_dir=tmp_path / "dirs")
    assert {(r["kind"], r["condition"]) for r in res["runs"]} == \
        {(k, c) for k in C.KINDS for c in C.CONDITIONS}
    assert set(res["claims"]) == set(C.KINDS)
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["claims"].keys() == res["claims"].keys()
    import emlens

    d = emlens.Direction.load(tmp_path / "dirs" / "vector_narrow_L1_seed0.safetensors")
    assert d.layers == (1,) and d.metadata["alpha"] == 256.0 and d.metadata["kl_weight"] == 3.0
