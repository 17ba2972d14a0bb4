"""Plotly views: each returns a Figure with the data it was given; HTML opens offline."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from emlens import plots
from emlens.directions import Direction
from emlens.errors import InputError
from emlens.evaluation import em_stats


def _dir(seed, n=4, d=8):
    return Direction(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)))


def test_direction_views():
    a, b = _dir(0), _dir(1)
    fig = plots.layer_cosine({"a vs b": (a, b), "a vs a": (a, a)})
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert list(fig.data[1].y) == pytest.approx([1.0] * 4, abs=1e-6)
    assert list(fig.data[0].y) == pytest.approx(a.cosine(b).tolist(), abs=1e-6)
    heat = plots.cosine_heatmap(a, b)
    assert heat.data[0].z.shape == (4, 4)
    proj = pd.DataFrame({"label": ["aligned"] * 8 + ["misaligned"] * 8, "layer": [0, 1] * 8,
                         "projection": list(range(16))})
    fig = plots.projection_histograms(proj)
    assert len(fig.data) == 4  # 2 labels x 2 layers
    with pytest.raises(InputError):
        plots.layer_cosine({})


def test_behaviour_views():
    sweep = pd.DataFrame([
        {"condition": "baseline", "layer": None, "alpha": 0.0, "em_rate": 0.1, "coherent_rate": 0.9},
        *[{"condition": c, "layer": l, "alpha": a, "em_rate": a / 10, "coherent_rate": 1 - a / 20,
           "em_ci_low": 0.0, "em_ci_high": 0.5}
          for c in ("steer", "steer_random") for l in (1, 2) for a in (1.0, 4.0)]])
    fig = plots.em_vs_alpha(sweep)
    assert len(fig.data) == 8  # 2 layers x (steer, random) x (EM, coherence)
    records = [{"question_id": f"q{i % 3}", "aligned": 10.0 * i, "coherent": 90.0 - i,
                "answer": "<b>bold</b> answer " * 10} for i in range(9)]
    fig = plots.aligned_vs_coherent(records)
    assert sum(len(t.x) for t in fig.data) == 9
    assert "&lt;b&gt;" in fig.data[0].hovertext[0]  # answers are escaped in hover text
    stats = em_stats(records)
    fig = plots.em_per_question({"em": stats, "chat": stats})
    assert len(fig.data) == 2 and list(fig.data[0].x) == ["q0", "q1", "q2"]
    with pytest.raises(InputError, match="no judged records"):
        plots.aligned_vs_coherent([{"aligned": None, "coherent": 3}])


def test_metric_views_and_offline_html(tmp_path):
    loss = pd.DataFrame({"solution": ["general"] * 3 + ["narrow"] * 3, "norm": [0, 1, 2] * 2,
                         "loss": [3, 2, 1.5, 3, 2.5, 2]})
    summary = pd.DataFrame({"solution": ["general", "narrow"], "epsilon": [0.5, 0.5],
                            "mean": [10.0, 40.0], "std": [1.0, 2.0]})
    kl = pd.DataFrame({"vector": ["general", "random"], "norm": [1.0, 1.0], "kl": [0.2, 0.01]})
    log = pd.DataFrame({"step": [0, 1, 2], "param_norm": [0.0, 1.0, 1.5]})
    snaps = {"general": [(s, torch.randn(5)) for s in range(3)],
             "narrow": [(s, torch.randn(5)) for s in range(3)]}
    figs = {"loss": plots.loss_vs_scale(loss), "pert": plots.perturbation(summary),
            "kl": plots.pretraining_kl(kl),
            "traj": plots.training_trajectory({"general": log, "narrow": log}, snaps)}
    assert len(figs["traj"].data) == 4
    hlines = [s.y0 for s in figs["pert"].layout.shapes]
    assert 0 in hlines and 100 in hlines
    out = plots.to_html(figs, tmp_path / "r.html", title="t")
    text = out.read_text()
    assert not re.findall(r"<script[^>]*\ssrc=", text)  # nothing loaded from a CDN
    assert text.count("emlens-fig-") >= 4 and "Plotly.newPlot" in text
    assert len(text) > 1_000_000  # plotly.js itself is embedded
