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


# --------------------------------------------------------------------------- one colour per model


def _trace_colors(fig):
    """name -> colour of each named trace (line, marker or bar)."""
    out = {}
    for t in fig.data:
        c = None
        if getattr(t, "line", None) is not None and t.line.color:
            c = t.line.color
        if getattr(t, "marker", None) is not None and isinstance(t.marker.color, str):
            c = c or t.marker.color
        if t.name and c:
            out.setdefault(t.name, c)
    return out


def test_a_model_has_one_colour_in_every_figure():
    models = ["chat", "em", "narrow"]
    records = [{"question_id": "q", "aligned": 10.0 * i, "coherent": 80.0, "model": m}
               for i in range(3) for m in models]
    stats = {m: em_stats([r for r in records if r["model"] == m]) for m in models}
    log = pd.DataFrame({"step": [0, 1, 2], "param_norm": [0.0, 1.0, 1.5]})
    figs = [
        plots.aligned_vs_coherent(records, color_by="model"),
        plots.em_per_question(stats),
        plots.loss_vs_scale(pd.DataFrame({"solution": ["em", "em", "narrow", "narrow"],
                                          "norm": [0, 1, 0, 1], "loss": [2, 1, 2, 1.5]})),
        plots.perturbation(pd.DataFrame({"solution": ["em", "narrow"], "epsilon": [0.5, 0.5],
                                         "mean": [10.0, 40.0], "std": [1.0, 2.0]})),
        plots.training_trajectory({"em": log, "narrow": log}),
    ]
    seen: dict[str, set] = {}
    for fig in figs:
        for name, c in _trace_colors(fig).items():
            seen.setdefault(name, set()).add(c)
    assert set(models) <= set(seen)
    for name, colours in seen.items():
        assert len(colours) == 1, (name, colours)
    assert len({next(iter(seen[m])) for m in models}) == 3  # chat, em and narrow differ
    # names that carry a model keep its colour; a random control is grey everywhere
    assert plots.color("general (em)") == plots.color("misaligned (em)") == plots.color("em")
    assert plots.color("aligned (chat)") == plots.color("chat") != plots.color("em")
    assert plots.color("layer 2 (random)") == plots.color("random") == plots.COLORS["random"]
    kl = plots.pretraining_kl(pd.DataFrame({"vector": ["general (em)", "narrow", "random"],
                                            "norm": [1.0] * 3, "kl": [0.2, 0.1, 0.01]}))
    kl_colors = _trace_colors(kl)
    assert kl_colors["general (em)"] == next(iter(seen["em"]))
    assert kl_colors["narrow"] == next(iter(seen["narrow"]))
    cos = plots.layer_cosine({"em vs narrow": (_dir(0), _dir(1))})
    assert _trace_colors(cos)["em vs narrow"] == next(iter(seen["narrow"]))
    # an unknown name gets the same colour in every figure too, fixed by the name
    assert plots.color("my_finetune") == plots.color("my_finetune")
    assert plots.color("my_finetune") not in {plots.COLORS[m] for m in models}


def test_cosine_heatmap_prints_values_on_a_fixed_diverging_scale():
    a, b = _dir(0), _dir(1)
    heat = plots.cosine_heatmap(a, b, names=("em", "narrow")).data[0]
    assert heat.texttemplate == "%{z:.2f}"  # every cell shows its value
    assert (heat.zmin, heat.zmid, heat.zmax) == (-1, 0, 1)
    assert heat.colorscale[0][1] != heat.colorscale[-1][1]  # two ends of a diverging scale
    # the scale does not stretch to the data: nearly equal directions stay on [-1, 1]
    same = plots.cosine_heatmap(a, a).data[0]
    assert (same.zmin, same.zmax) == (-1, 1) and same.z.max() == pytest.approx(1.0, abs=1e-6)


def test_trajectory_axis_says_what_the_norm_is_and_marks_the_kept_checkpoint():
    log = pd.DataFrame({"step": [0, 8, 16, 24], "param_norm": [6.0, 6.5, 7.0, 7.2]})
    fig = plots.training_trajectory({"em": log, "narrow": log}, marks={"em": 16})
    assert "L2 norm" in fig.layout.yaxis.title.text and "LoRA" in fig.layout.yaxis.title.text
    assert fig.layout.xaxis.title.text == "optimizer step"
    marks = [t for t in fig.data if t.name and "kept checkpoint" in t.name]
    assert len(marks) == 1 and list(marks[0].x) == [16] and list(marks[0].y) == [7.0]
    assert marks[0].marker.color == plots.color("em")


def test_kl_axis_relates_norm_to_alpha_and_marks_the_steering_alphas():
    kl = pd.DataFrame({"vector": ["general (em)"] * 3, "norm": [0.0, 4.0, 8.0],
                       "kl": [0.0, 0.1, 0.3]})
    fig = plots.pretraining_kl(kl, marks={"alpha 1": 4.0, "alpha 2": 8.0})
    assert "alpha x |v|" in fig.layout.xaxis.title.text
    xs = sorted(s.x0 for s in fig.layout.shapes)
    assert xs == [4.0, 8.0]
    assert {a.text for a in fig.layout.annotations} == {"alpha 1", "alpha 2"}


def test_to_html_writes_captions_under_their_figures(tmp_path):
    fig = plots.pretraining_kl(pd.DataFrame({"vector": ["em"], "norm": [1.0], "kl": [0.1]}))
    text = plots.to_html({"KL <1>": fig, "other": fig}, tmp_path / "r.html",
                         captions={"KL <1>": "norm = alpha x |v| & more"}).read_text()
    assert '<p class="caption">norm = alpha x |v| &amp; more</p>' in text
    assert text.count('class="caption"') == 1


def test_one_layer_steering_draws_the_random_control_in_the_random_colour():
    rows = [{"condition": "baseline", "layer": None, "alpha": 0.0, "em_rate": 0.0,
             "coherent_rate": 0.9}]
    rows += [{"condition": c, "layer": 2, "alpha": a, "em_rate": 0.0, "coherent_rate": 0.9}
             for c in ("steer", "steer_random") for a in (2.0, 4.0)]
    colours = _trace_colors(plots.em_vs_alpha(pd.DataFrame(rows)))
    assert colours["layer 2 (random)"] == plots.COLORS["random"] != colours["layer 2"]
