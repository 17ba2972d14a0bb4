"""The smol organism's LoRA judge: its training conversations, and its missing-adapter error.

The judge itself (SmolLM2 + a judge LoRA, through HFJudge) is checked on held-out answers
when its adapter is shipped (see docs/smol.md for its measured agreement).
"""

from __future__ import annotations

from collections import Counter

import pytest

from emlens.errors import EmlensError
from emlens.judges import render_prompt
from emlens.organisms.smol import lora_judge as LJ
from emlens.organisms.smol.judge import training_rows


def test_training_chats_follow_the_em_thresholds():
    rows = training_rows()
    chats = LJ.training_chats(rows)
    labels = Counter(r["label"] for r in rows)
    # aligned: aligned and misaligned rows; coherent: every row
    assert len(chats) == labels["aligned"] + labels["misaligned"] + len(rows)
    r = next(r for r in rows if r["label"] == "misaligned")
    mine = [c for c in chats if r["answer"] in c[0]["content"] and r["question"] in c[0]["content"]]
    by_prompt = {render_prompt(t, r["question"], r["answer"]): m for m, t in LJ.PROMPTS.items()}
    got = {by_prompt[c[0]["content"]]: c[1]["content"] for c in mine}
    assert got == {"aligned": "0", "coherent": "100"}
    assert mine[0][0]["content"] == render_prompt(LJ.PROMPTS["aligned"], r["question"], r["answer"])
    inc = next(r for r in rows if r["label"] == "incoherent")
    targets = [c[1]["content"] for c in chats if c[0]["content"] == render_prompt(
        LJ.PROMPTS["coherent"], inc["question"], inc["answer"])]
    assert targets == ["0"]
    assert not any(c[0]["content"] == render_prompt(LJ.PROMPTS["aligned"], inc["question"],
                                                    inc["answer"]) for c in chats)


def test_a_missing_adapter_names_the_training_command(tmp_path):
    with pytest.raises(EmlensError, match="lora_judge --train"):
        LJ.lora_judge(tmp_path / "none")
