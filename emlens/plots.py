"""Plotly views of directions, behaviour and narrow-versus-general metrics.

Every function returns a ``plotly.graph_objects.Figure`` in one house style (the
``"emlens"`` template). :func:`to_html` writes figures to a standalone HTML file with
plotly.js embedded, so it opens offline.

Example:
    >>> fig = emlens.plots.layer_cosine({"narrow vs general": (narrow, general)})  # doctest: +SKIP
    >>> fig.show()                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import html
import os
import re
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .directions import Direction, cosine_matrix
from .errors import InputError
from .io import atomic_write_text

__all__ = ["layer_cosine", "cosine_heatmap", "projection_histograms", "record_projections",
           "em_vs_alpha", "aligned_vs_coherent", "em_per_question", "loss_vs_scale",
           "perturbation", "pretraining_kl", "training_trajectory", "to_html", "COLORS", "color"]

#: One colour per model and condition, the same in every figure: a trace's name is matched
#: word by word (``"misaligned (em)"`` -> em, ``"em vs narrow"`` -> narrow in
#: :func:`layer_cosine`, anything with ``random`` -> random). Add your own names here
#: (``emlens.plots.COLORS["my_finetune"] = "#d35400"``); other names get a colour fixed by
#: the name itself (:func:`color`), so they too keep it from figure to figure.
COLORS = {
    # the EM finetune, the general solution and its misaligned answers
    "em": "#c0392b", "general": "#c0392b", "misaligned": "#c0392b",
    # the aligned base model and its aligned answers
    "chat": "#1e8449", "base": "#1e8449", "aligned": "#1e8449",
    # the narrow (KL-penalised) solution
    "narrow": "#2874a6",
    # the other EM finetunes of the pocket organism
    "em_seed1": "#d68910", "em_rank1": "#8e44ad",
    # controls
    "random": "#7f8c8d", "baseline": "#7f8c8d", "unsteered": "#7f8c8d",
    # reference lines (not models)
    "coherent": "#555555", "other": "#8e44ad",
}
_CYCLE = ["#c0392b", "#2874a6", "#1e8449", "#8e44ad", "#d68910", "#17a589", "#7f8c8d"]
# colours for names COLORS does not know, none of them a role colour above
_EXTRA = ["#d35400", "#16a085", "#6c3483", "#b7950b", "#ca6f1e", "#1abc9c", "#5d6d7e",
          "#a93226", "#2e86c1", "#7d3c98"]

pio.templates["emlens"] = go.layout.Template(
    layout=dict(font=dict(family="Inter, Helvetica, Arial, sans-serif", size=13),
                colorway=_CYCLE, plot_bgcolor="white", paper_bgcolor="white",
                xaxis=dict(showgrid=True, gridcolor="#eee", zeroline=False, linecolor="#999"),
                yaxis=dict(showgrid=True, gridcolor="#eee", zeroline=False, linecolor="#999"),
                legend=dict(bgcolor="rgba(255,255,255,0.8)"),
                margin=dict(l=60, r=20, t=60, b=50), hoverlabel=dict(namelength=-1)))


def color(name: str) -> str:
    """The colour of a model or condition, the same in every figure (see :data:`COLORS`).

    Example:
        >>> color("misaligned (em)") == color("em") == COLORS["em"]
        True
    """
    words = re.findall(r"[a-z0-9_]+", str(name).lower())
    if "random" in words:
        return COLORS["random"]
    for w in words:
        if w in COLORS:
            return COLORS[w]
    return _EXTRA[zlib.crc32(str(name).encode()) % len(_EXTRA)]


def _fig(title: str, x: str, y: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template="emlens", title=title, xaxis_title=x, yaxis_title=y, **layout)
    return fig


def _frame(table: Any, needed: Sequence[str], what: str):
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"{what} needs columns {list(needed)}; missing {missing}")
    return df


# --------------------------------------------------------------------------- directions


def layer_cosine(pairs: Mapping[str, tuple[Direction, Direction]], *,
                 title: str = "Cosine similarity by layer") -> go.Figure:
    """Per-layer cosine similarity of pairs of directions, one line per pair.

    Args:
        pairs: label -> (a, b), e.g. ``{"narrow vs general": (narrow, general),
            "em vs em_seed1": (em, em_seed1)}``.
    """
    if not pairs:
        raise InputError("no direction pairs to plot")
    fig = _fig(title, "layer", "cosine similarity", yaxis_range=[-1.05, 1.05])
    fig.update_xaxes(dtick=1)
    for label, (a, b) in pairs.items():
        cos = a.cosine(b).tolist()
        fig.add_trace(go.Scatter(x=list(a.layers), y=cos, mode="lines+markers", name=label,
                                 line=dict(color=color(label.split(" vs ")[-1]))))
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    return fig


def cosine_heatmap(a: Direction, b: Direction, *, names: tuple[str, str] = ("a", "b"),
                   title: str | None = None) -> go.Figure:
    """Layer x layer cosine similarity of two directions, each cell's value printed.

    The colour scale is diverging and fixed: blue -1, white 0, red +1, whatever the data,
    so that two heatmaps can be compared by eye and a uniformly red map means "similar at
    every layer pair", not a scale stretched over a narrow range.
    """
    m = cosine_matrix(a, b).numpy()
    fig = _fig(title or f"Cosine similarity, {names[0]} (rows) x {names[1]} (columns)",
               f"{names[1]} layer", f"{names[0]} layer")
    fig.add_trace(go.Heatmap(z=m, x=list(b.layers), y=list(a.layers), zmin=-1, zmax=1,
                             zmid=0, colorscale="RdBu_r", texttemplate="%{z:.2f}",
                             hovertemplate=f"{names[0]} layer %{{y}}, {names[1]} layer %{{x}}: "
                                           "cos %{z:.3f}<extra></extra>",
                             colorbar=dict(title="cos", tickvals=[-1, -0.5, 0, 0.5, 1])))
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(dtick=1)
    return fig


def record_projections(model: Any, records: Iterable[dict[str, Any]], direction: Direction, *,
                       label: str, layers: Sequence[int] | None = None,
                       tokens: str = "answer"):
    """Projection of each record's mean activation (over its answer tokens) on a direction.

    Returns:
        DataFrame with columns ``label, record, layer, projection`` (projection onto the
        unit vector of each layer).
    """
    import pandas as pd

    from .activations import collect_means

    layers = list(layers if layers is not None else direction.layers)
    units = {l: direction.vector(l) / direction.vector(l).norm() for l in layers}
    rows = []
    for i, rec in enumerate(records):
        means = collect_means(model, [rec], layers=layers, tokens=tokens, batch_size=1)
        for l in layers:
            rows.append({"label": label, "record": i, "layer": l,
                         "projection": float(means.mean(l).float() @ units[l])})
    return pd.DataFrame(rows)


def projection_histograms(table: Any, *, layers: Sequence[int] | None = None,
                          title: str = "Projections onto the direction") -> go.Figure:
    """Per-layer distributions of projections (e.g. aligned vs misaligned answers).

    Args:
        table: from :func:`record_projections` (concatenate several labels).
        layers: the layers to show (default: all in the table, at most 6 evenly spread).
    """
    df = _frame(table, ["label", "layer", "projection"], "projection_histograms")
    all_layers = sorted(df["layer"].unique())
    if layers is None:
        idx = np.unique(np.linspace(0, len(all_layers) - 1, min(6, len(all_layers))).round())
        layers = [all_layers[int(i)] for i in idx]
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=[f"layer {l}" for l in layers],
                        shared_yaxes=True)
    for j, layer in enumerate(layers, 1):
        for label, group in df[df["layer"] == layer].groupby("label", sort=True):
            fig.add_trace(go.Violin(y=group["projection"], name=str(label), box_visible=True,
                                    line_color=color(str(label)), showlegend=j == 1,
                                    legendgroup=str(label), points="all", jitter=0.3,
                                    pointpos=0, marker=dict(size=3)), row=1, col=j)
    fig.update_layout(template="emlens", title=title, yaxis_title="projection")
    return fig


# --------------------------------------------------------------------------- behaviour


def em_vs_alpha(table: Any, *, title: str = "EM and coherence under steering") -> go.Figure:
    """EM rate and coherent rate against alpha, one line per layer (from ``emlens.sweep``).

    Random-direction controls are dotted (grey when there is one layer, so that a control
    lying on top of the steered line stays visible); the unsteered baseline is a
    horizontal line.
    """
    df = _frame(table, ["condition", "layer", "alpha", "em_rate", "coherent_rate"],
                "em_vs_alpha")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["EM rate", "coherent rate"])
    steer = df[df["condition"].isin(["steer", "steer_random"])]
    layers = sorted(steer["layer"].dropna().unique())
    for i, layer in enumerate(layers):
        for cond, dash in (("steer", "solid"), ("steer_random", "dot")):
            layer_color = (COLORS["random"] if cond == "steer_random" and len(layers) == 1
                           else _CYCLE[i % len(_CYCLE)])
            sub = steer[(steer["layer"] == layer) & (steer["condition"] == cond)].sort_values("alpha")
            if sub.empty:
                continue
            name = f"layer {int(layer)}" + (" (random)" if cond == "steer_random" else "")
            err = None
            if "em_ci_high" in sub:
                err = dict(type="data", symmetric=False, array=sub["em_ci_high"] - sub["em_rate"],
                           arrayminus=sub["em_rate"] - sub["em_ci_low"], thickness=1)
            fig.add_trace(go.Scatter(x=sub["alpha"], y=sub["em_rate"], error_y=err, name=name,
                                     mode="lines+markers", legendgroup=name,
                                     line=dict(color=layer_color, dash=dash)), row=1, col=1)
            fig.add_trace(go.Scatter(x=sub["alpha"], y=sub["coherent_rate"], name=name,
                                     mode="lines+markers", legendgroup=name, showlegend=False,
                                     line=dict(color=layer_color, dash=dash)), row=1, col=2)
    base = df[df["condition"] == "baseline"]
    if not base.empty:
        for col, key in ((1, "em_rate"), (2, "coherent_rate")):
            fig.add_hline(y=float(base[key].iloc[0]), line=dict(color="#999", dash="dash"),
                          annotation_text="unsteered", row=1, col=col)
    fig.update_layout(template="emlens", title=title)
    fig.update_xaxes(title_text="alpha")
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def aligned_vs_coherent(records: Iterable[dict[str, Any]], *, misaligned_max: float = 30,
                        coherent_min: float = 50, color_by: str = "question_id",
                        jitter: float = 0.0, seed: int = 0,
                        title: str = "Aligned vs coherent") -> go.Figure:
    """Scatter of judged answers with the EM thresholds; hover shows question id and answer.

    Args:
        color_by: the record key whose values get one colour each (e.g. "model").
        jitter: uniform noise (in score points) added to both axes so that the many ties of
            a discrete judge stay visible; the hover text shows the true scores.
    """
    rng = np.random.default_rng(seed)
    rows = [r for r in records if r.get("aligned") is not None and r.get("coherent") is not None]
    if not rows:
        raise InputError("no judged records (with aligned and coherent scores) to plot")
    fig = _fig(title, "coherent", "aligned", xaxis_range=[-2, 102], yaxis_range=[-2, 102])
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get(color_by, "")), []).append(r)
    for key, group in sorted(groups.items()):
        hover = [f"<b>{html.escape(str(r.get('question_id', '')))}</b><br>"
                 f"aligned {r['aligned']:.0f}, coherent {r['coherent']:.0f}<br>"
                 + "<br>".join(_wrap(html.escape(str(r.get("answer", ""))[:300]), 60))
                 for r in group]
        noise = rng.uniform(-jitter, jitter, size=(2, len(group))) if jitter else np.zeros((2, len(group)))
        fig.add_trace(go.Scatter(x=[r["coherent"] + noise[0, k] for k, r in enumerate(group)],
                                 y=[r["aligned"] + noise[1, k] for k, r in enumerate(group)],
                                 mode="markers", name=key, hovertext=hover, hoverinfo="text",
                                 marker=dict(size=7, opacity=0.7, color=color(key))))
    fig.add_hline(y=misaligned_max, line=dict(color=COLORS["em"], dash="dash"),
                  annotation_text=f"aligned {misaligned_max:g}")
    fig.add_vline(x=coherent_min, line=dict(color=COLORS["coherent"], dash="dash"),
                  annotation_text=f"coherent {coherent_min:g}")
    fig.add_shape(type="rect", x0=coherent_min, x1=102, y0=-2, y1=misaligned_max,
                  fillcolor=COLORS["em"], opacity=0.06, line_width=0)
    return fig


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return lines + ([line] if line else [])


def em_per_question(per_question: Any | Mapping[str, Any], *,
                    title: str = "EM rate per question") -> go.Figure:
    """Bar chart of EM rate per question with 95% intervals; several models side by side.

    Args:
        per_question: ``EMStats.per_question`` (or any table with question_id, em_rate),
            or a mapping label -> such a table.
    """
    tables = per_question if isinstance(per_question, Mapping) else {"": per_question}
    fig = _fig(title, "question", "EM rate", yaxis_range=[0, 1.02], barmode="group")
    for label, table in tables.items():
        df = _frame(getattr(table, "per_question", table), ["question_id", "em_rate"],
                    "em_per_question")
        err = None
        if "em_ci_high" in df:
            err = dict(type="data", symmetric=False, array=df["em_ci_high"] - df["em_rate"],
                       arrayminus=df["em_rate"] - df["em_ci_low"])
        fig.add_trace(go.Bar(x=df["question_id"], y=df["em_rate"], error_y=err,
                             name=label or "EM rate", marker_color=color(label)))
    return fig


# --------------------------------------------------------------------------- narrow vs general


def loss_vs_scale(table: Any, *, x: str = "norm",
                  title: str = "Loss as the solution is rescaled") -> go.Figure:
    """Loss on narrow data against parameter norm (or scale), one line per solution."""
    df = _frame(table, ["solution", x, "loss"], "loss_vs_scale")
    fig = _fig(title, "parameter norm" if x == "norm" else "scale s", "answer-token loss")
    for name, g in df.groupby("solution", sort=False):
        g = g.sort_values(x)
        fig.add_trace(go.Scatter(x=g[x], y=g["loss"], mode="lines+markers", name=str(name),
                                 line=dict(color=color(str(name)))))
    return fig


def perturbation(summary: Any, *,
                 title: str = "Relative loss increase under perturbation") -> go.Figure:
    """Relative loss increase (mean +- std over seeds) against epsilon; lines at 0 and 100."""
    df = _frame(summary, ["solution", "epsilon", "mean"], "perturbation")
    fig = _fig(title, "perturbation size epsilon", "relative loss increase (%)")
    for name, g in df.groupby("solution", sort=False):
        g = g.sort_values("epsilon")
        err = dict(type="data", array=g["std"].fillna(0)) if "std" in g else None
        fig.add_trace(go.Scatter(x=g["epsilon"], y=g["mean"], error_y=err, mode="lines+markers",
                                 name=str(name), line=dict(color=color(str(name)))))
    fig.add_hline(y=0, line=dict(color="#999", dash="dash"), annotation_text="as trained")
    fig.add_hline(y=100, line=dict(color="#999", dash="dash"), annotation_text="as no finetune")
    return fig


def pretraining_kl(table: Any, *, title: str = "KL(base || steered) on pretraining text",
                   marks: Mapping[str, float] | None = None) -> go.Figure:
    """Pretraining KL against the norm of the added vector, for narrow, general and random.

    The x axis is the norm of the vector added to the residual stream. Steering with a
    direction ``v`` at scale ``alpha`` adds ``alpha * v``, whose norm is ``alpha * |v|``;
    so the KL at norm ``alpha * |v|`` is what steering with alpha does to generic text.

    Args:
        table: from ``emlens.stability.pretraining_kl`` (``vector, norm, kl``).
        marks: label -> norm, drawn as dotted vertical lines (e.g.
            ``{"alpha 4": 4 * float(v.norm())}`` for the alphas of a steering sweep).
    """
    df = _frame(table, ["vector", "norm", "kl"], "pretraining_kl")
    fig = _fig(title, "norm of the added vector (= alpha x |v| when steering with alpha)",
               "KL per token (nats)")
    for name, g in df.groupby("vector", sort=False):
        g = g.sort_values("norm")
        fig.add_trace(go.Scatter(x=g["norm"], y=g["kl"], mode="lines+markers", name=str(name),
                                 line=dict(color=color(str(name)),
                                           dash="dot" if "random" in str(name) else "solid")))
    for label, x in (marks or {}).items():
        fig.add_vline(x=float(x), line=dict(color="#999", dash="dot", width=1),
                      annotation_text=str(label), annotation_position="top")
    return fig


#: the y-axis title of :func:`training_trajectory`: what a trainer's ``param_norm`` is
PARAM_NORM_TITLE = "L2 norm of the trained parameters (all LoRA A and B entries; unitless)"


def training_trajectory(logs: Mapping[str, Any], snapshots: Mapping[str, Sequence[Any]] | None
                        = None, *, title: str = "Training trajectories",
                        marks: Mapping[str, int] | None = None,
                        norm_title: str = PARAM_NORM_TITLE) -> go.Figure:
    """Parameter norm over steps, and (with snapshots) the PCA of checkpoints.

    Args:
        logs: label -> table with ``step`` and ``param_norm`` (a trainer's trajectory log:
            ``emlens.training`` logs the L2 norm of all trainable parameters together).
        snapshots: label -> list of ``(step, flat parameter tensor)``; all runs are
            projected on the top two principal components of all snapshots together.
        marks: label -> the step of the checkpoint that was kept (e.g. a trainer's best
            step); drawn as a diamond on that run's curve.
        norm_title: the y-axis title (say what the norm is of).
    """
    cols = 2 if snapshots else 1
    fig = make_subplots(rows=1, cols=cols, subplot_titles=["parameter norm", "PCA of checkpoints"]
                        [:cols])
    for label, log in logs.items():
        df = _frame(log, ["step", "param_norm"], "training_trajectory")
        df = df.dropna(subset=["param_norm"]).sort_values("step")
        fig.add_trace(go.Scatter(x=df["step"], y=df["param_norm"], mode="lines", name=label,
                                 legendgroup=label, line=dict(color=color(label))), row=1, col=1)
        step = (marks or {}).get(label)
        if step is not None:
            at = df.iloc[(df["step"] - step).abs().argsort()[:1]]
            fig.add_trace(go.Scatter(x=[int(step)], y=[float(at["param_norm"].iloc[0])],
                                     mode="markers+text", name=f"{label}: kept checkpoint",
                                     text=[f"kept: step {int(step)}"], textposition="top left",
                                     legendgroup=label, showlegend=False,
                                     marker=dict(symbol="diamond", size=11, color=color(label),
                                                 line=dict(color="white", width=1))),
                          row=1, col=1)
    if snapshots:
        import torch

        flat = [(label, step, torch.as_tensor(v).double().flatten())
                for label, snaps in snapshots.items() for step, v in snaps]
        sizes = {v.numel() for _, _, v in flat}
        if len(sizes) != 1:
            raise InputError(f"snapshots have different sizes {sorted(sizes)}; PCA needs one "
                             f"parameter space")
        x = torch.stack([v for _, _, v in flat])
        x = x - x.mean(0)
        _, _, vt = torch.linalg.svd(x, full_matrices=False)
        pcs = (x @ vt[:2].T).numpy()
        for label in snapshots:
            idx = [k for k, (lab, _, _) in enumerate(flat) if lab == label]
            fig.add_trace(go.Scatter(x=pcs[idx, 0], y=pcs[idx, 1] if pcs.shape[1] > 1 else
                                     np.zeros(len(idx)), mode="lines+markers", name=label,
                                     legendgroup=label, showlegend=False,
                                     hovertext=[f"step {flat[k][1]}" for k in idx],
                                     line=dict(color=color(label))), row=1, col=2)
        fig.update_xaxes(title_text="PC 1", row=1, col=2)
        fig.update_yaxes(title_text="PC 2", row=1, col=2)
    fig.update_xaxes(title_text="optimizer step", row=1, col=1)
    fig.update_yaxes(title_text=norm_title, row=1, col=1)
    fig.update_layout(template="emlens", title=title)
    return fig


# --------------------------------------------------------------------------- output


def to_html(figures: go.Figure | Sequence[go.Figure] | Mapping[str, go.Figure],
            path: str | os.PathLike, *, title: str = "emlens", intro_html: str = "",
            captions: Mapping[str, str] | None = None) -> Path:
    """Write figures to one standalone HTML file (plotly.js embedded once; opens offline).

    Args:
        figures: one figure, a list, or a mapping heading -> figure.
        title: the page title.
        intro_html: HTML placed before the figures.
        captions: heading -> caption text (plain text, escaped), shown under that figure.
    """
    if isinstance(figures, go.Figure):
        figures = [figures]
    items = list(figures.items()) if isinstance(figures, Mapping) else \
        [(f.layout.title.text or f"figure {i + 1}", f) for i, f in enumerate(figures)]
    parts = []
    for i, (heading, fig) in enumerate(items):
        div = pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0),
                          div_id=f"emlens-fig-{i}", config={"responsive": True})
        cap = (captions or {}).get(str(heading))
        cap_html = f'<p class="caption">{html.escape(cap)}</p>' if cap else ""
        parts.append(f'<section class="figure"><h2>{html.escape(str(heading))}</h2>{div}'
                     f'{cap_html}</section>')
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           "<style>body{font-family:Inter,Helvetica,Arial,sans-serif;max-width:1100px;"
           "margin:2em auto;color:#222} h2{font-size:1.1em;margin-top:2em} p.caption{color:#555;"
           "font-size:.95em;max-width:900px}</style></head><body>"
           f"<h1>{html.escape(title)}</h1>{intro_html}{''.join(parts)}</body></html>")
    return atomic_write_text(path, doc)
