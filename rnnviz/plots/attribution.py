"""Pure plotly builders for input saliency and counterfactual edits (no streamlit here)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..render import char_label
from .gradients import _log_range, cell_color

LAYER_COLORS = ("#4b2991", "#999999", "#c0369d")  # the top layer dark, the ones below grey and pink
MEASURES = {"grad_norm": "‖∂ log p(c) / ∂e_s‖", "grad_x_input": "|gradient × input|"}


def influence_distance(sal, measure: str = "grad_norm", log_x: bool = True, mark: int | None = None,
                       title: str = "") -> go.Figure:
    """One target's influence of each earlier position against its distance t − s (log y; log x on d + 1)."""
    d = sal.distance  # (t+1,)
    v = np.abs(sal.value(measure))
    x = d + 1 if log_x else d
    chars = [char_label(sal.text[s]) for s in range(len(d))]
    fig = go.Figure(go.Scatter(
        x=x, y=v, mode="lines+markers", marker=dict(size=4, color="#1f77b4"), line=dict(width=1, color="#1f77b4"),
        customdata=np.stack([np.arange(len(d)), d, chars], 1), name=MEASURES[measure],
        hovertemplate="#%{customdata[0]} '%{customdata[2]}'<br>distance %{customdata[1]}<br>%{y:.3g}<extra></extra>"))
    if mark is not None and 0 <= mark < len(d):
        fig.add_vline(x=mark + 1 if log_x else mark, line=dict(color="#999", dash="dot"),
                      annotation_text=f"{mark} back", annotation_position="top")
    rng = _log_range([v])
    fig.update_yaxes(type="log", title=MEASURES[measure], range=rng, exponentformat="power")
    fig.update_xaxes(type="log" if log_x else "linear", title="distance t − s" + (" + 1 (log)" if log_x else ""))
    fig.update_layout(title=title, height=340, margin=dict(t=50, b=40, l=60, r=20), showlegend=False)
    return fig


def aggregate_distance(aggs: dict, measure: str = "grad_norm", relative: bool = True, log_x: bool = True,
                       title: str = "") -> go.Figure:
    """Mean influence against distance over many targets, one line per model (label -> (cell, Aggregate))."""
    fig, shown = go.Figure(), []
    for label, (cell, agg) in aggs.items():
        y = agg.relative(measure) if relative else agg.mean(measure)  # (W,)
        shown.append(y)
        d = agg.distance
        fig.add_trace(go.Scatter(x=d + 1 if log_x else d, y=y, mode="lines", name=label,
                                 line=dict(color=cell_color(cell), width=2.5), customdata=d,
                                 hovertemplate=f"{label}<br>distance %{{customdata}}<br>%{{y:.3g}}<extra></extra>"))
    fig.update_yaxes(type="log", title="mean, over distance 0" if relative else f"mean {MEASURES[measure]}",
                     range=_log_range(shown), exponentformat="power")
    fig.update_xaxes(type="log" if log_x else "linear", title="distance t − s" + (" + 1 (log)" if log_x else ""))
    fig.update_layout(title=title, height=380, margin=dict(t=50, b=40, l=60, r=20),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))
    return fig


def counterfactual_chart(cf, predicted: np.ndarray | None = None, title: str = "", mark: int | None = None) -> go.Figure:
    """Top: the actual change in log p of each character after the edit, beside the gradient's (first-order)
    prediction where there is one. Bottom: ‖Δh‖ per layer after reading each character (log y).
    `mark`: a position of the original text to draw a line at (the character a chosen target predicts)."""
    pos = cf.positions  # (n,) original positions
    chars = [char_label(cf.text[k]) for k in pos]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("change in log p(character) after the edit", "‖Δh‖ after reading it"))
    actual = -cf.d_surprisal  # Δ log p
    custom = np.stack([pos, chars], 1)
    fig.add_trace(go.Bar(x=pos, y=actual, name="actual (both texts run)", marker_color="#d62728", customdata=custom,
                         hovertemplate="#%{customdata[0]} '%{customdata[1]}'<br>Δ log p %{y:.3g}<extra>actual</extra>"),
                  row=1, col=1)
    if predicted is not None:
        fig.add_trace(go.Scatter(x=pos, y=predicted, mode="markers", name="gradient's prediction (first order)",
                                 marker=dict(color="#111", size=6, symbol="x"), customdata=custom,
                                 hovertemplate="#%{customdata[0]} '%{customdata[1]}'<br>predicted %{y:.3g}"
                                               "<extra>gradient</extra>"), row=1, col=1)
    L = cf.dh.shape[0]
    for l in range(L):
        fig.add_trace(go.Scatter(x=pos, y=cf.dh[l], mode="lines", name=f"‖Δh‖ layer {l}", customdata=custom,
                                 line=dict(width=2, color=LAYER_COLORS[(L - 1 - l) % len(LAYER_COLORS)],
                                           dash="solid" if l == L - 1 else "dot"),
                                 hovertemplate=f"#%{{customdata[0]}} '%{{customdata[1]}}'<br>layer {l}: "
                                               "%{y:.3g}<extra></extra>"), row=2, col=1)
    dh = cf.dh[cf.dh > 0]
    if dh.size:
        fig.update_yaxes(type="log", range=_log_range([dh]), exponentformat="power", row=2, col=1)
    if mark is not None and len(pos) and pos[0] <= mark <= pos[-1]:
        for row in (1, 2):
            fig.add_vline(x=mark, line=dict(color="#555", dash="dash", width=1), row=row, col=1)
        fig.add_annotation(x=mark, y=0, yref="y domain", text=" the target's character", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(size=11, color="#555"), row=1, col=1)
    fig.update_yaxes(title="Δ log p", row=1, col=1)
    fig.update_xaxes(title="position in the original text", row=2, col=1)
    fig.update_layout(title=title, height=520, margin=dict(t=60, b=40, l=60, r=20), barmode="overlay",
                      legend=dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0))
    return fig
