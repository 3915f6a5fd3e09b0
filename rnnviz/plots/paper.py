"""The 2015 paper's results on our models (Karpathy, Johnson & Fei-Fei): the Table 1 grid, gate saturation by
layer, the onion of errors, and the distance to n-grams over training."""
# Values go in as lists: a few thousand numbers at most, and the figure's JSON stays plain numbers a test
# (or a person) can read, not plotly's base64 arrays.
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..model import GATES
from ..saturation import TANH_GATES, thresholds
from .base import COLORS, _message

CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def grid_bars(rows: list[dict]) -> go.Figure:
    """Validation loss of every run of the grid: a panel per parameter budget, cells along x, a bar per depth."""
    df = pd.DataFrame(rows)
    if df.empty or "val_loss" not in df:
        return _message("No finished run in this grid yet.", "Table 1: validation loss")
    df = df[np.isfinite(pd.to_numeric(df["val_loss"], errors="coerce"))]
    budgets = sorted(df["budget"].unique())
    fig = make_subplots(rows=1, cols=len(budgets), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"budget ≈ {int(b):,} parameters" for b in budgets])
    depths = sorted(df["layers"].unique())
    cells = [c for c in CELL_NAMES if c in set(df["cell"])] + sorted(set(df["cell"]) - set(CELL_NAMES))
    for col, budget in enumerate(budgets, start=1):
        for j, depth in enumerate(depths):
            part = df[(df["budget"] == budget) & (df["layers"] == depth)].set_index("cell").reindex(cells)
            name = "1 layer" if depth == 1 else f"{int(depth)} layers"
            fig.add_trace(go.Bar(
                x=[CELL_NAMES.get(c, c) for c in cells], y=part["val_loss"].tolist(), name=name,
                legendgroup=str(depth), showlegend=col == 1, marker_color=COLORS[j % len(COLORS)],
                text=[f"{v:.3f}" if math.isfinite(v) else "" for v in part["val_loss"]], textposition="outside",
                customdata=np.stack([part["width"].fillna(0), part["params"].fillna(0)], 1).tolist(),
                hovertemplate=(f"%{{x}}, {int(depth)} layer(s): val loss %{{y:.3f}}<br>width %{{customdata[0]:.0f}}, "
                               "%{customdata[1]:,.0f} parameters<extra></extra>")), row=1, col=col)
    lo, hi = float(df["val_loss"].min()), float(df["val_loss"].max())
    # bars start near the smallest loss, not at 0: the differences between runs are tenths of a nat
    fig.update_yaxes(range=[math.floor(lo * 10) / 10 - 0.1, hi + 0.12 * (hi - lo + 0.1)], row=1, col=1)
    fig.update_yaxes(title="validation loss (nats/char; axis starts above 0)", row=1, col=1)
    # 360 px: on a projector's 800 px the sentence under the chart stays on the first screen
    fig.update_layout(title="Table 1 on our corpus: validation loss by cell, depth and budget", barmode="group",
                      legend_title="depth", height=360, margin=dict(t=70, b=40))
    return fig


def saturation_by_layer(table: pd.DataFrame, cell: str) -> go.Figure:
    """The paper's saturation figure: a panel per layer, each gate of each unit a dot at (fraction of steps left-
    saturated, fraction right-saturated), a colour per gate; the candidate (tanh) is left out as in the paper.

    `table` has columns layer, gate, unit, left, right (rnnviz.saturation.saturation_table's shape).
    """
    gates = [g for g in GATES.get(cell, ()) if g not in TANH_GATES]
    if not gates or table.empty:
        return _message("A vanilla RNN has no gates: every step is h = tanh(W x + U h).", "Gate saturation by layer")
    layers = sorted(int(x) for x in table["layer"].unique())
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=[f"layer {l}" for l in layers],
                        horizontal_spacing=0.05, shared_yaxes=True)
    for col, layer in enumerate(layers, start=1):
        fig.add_trace(go.Scatter(x=[0, 1], y=[1, 0], mode="lines", line=dict(dash="dash", color="#999", width=1),
                                 showlegend=False, hoverinfo="skip", name="x+y=1"), row=1, col=col)
        for j, gate in enumerate(gates):
            lo, hi = thresholds(gate)
            part = table[(table["layer"] == layer) & (table["gate"] == gate)]
            fig.add_trace(go.Scatter(
                x=part["left"].tolist(), y=part["right"].tolist(), mode="markers", name=f"gate {gate}",
                legendgroup=gate, showlegend=col == 1, customdata=part["unit"].tolist(),
                marker=dict(color=COLORS[j % len(COLORS)], size=6, opacity=0.6),
                hovertemplate=(f"layer {layer} gate {gate} unit %{{customdata}}<br>< {lo:g}: %{{x:.2f}} of "
                               f"steps<br>> {hi:g}: %{{y:.2f}} of steps<extra></extra>")), row=1, col=col)
        fig.update_xaxes(title="fraction < 0.1", range=[-0.03, 1.03], row=1, col=col)
    fig.update_yaxes(title="fraction > 0.9", range=[-0.03, 1.03], row=1, col=1)
    fig.update_layout(title=f"Gate saturation by layer ({CELL_NAMES.get(cell, cell)}): each dot one gate of one unit",
                      legend=dict(title="gate", orientation="h", yanchor="top", y=-0.2, x=0))
    return fig


def onion_bars(onions: list[dict], names: list[str]) -> go.Figure:
    """The errors of each model as one stacked bar, a segment per category in the order they are peeled,
    as a share of the characters read (each onion is {"chars", "errors", "categories": [{name, count}]})."""
    if not onions:
        return _message("No error analysis to show.", "The onion")
    cats = [c["name"] for c in onions[0]["categories"]]
    fig = go.Figure()
    for j, cat in enumerate(cats):
        counts = [next((int(c["count"]) for c in o["categories"] if c["name"] == cat), 0) for o in onions]
        shares = [100 * n / max(1, int(o["chars"])) for n, o in zip(counts, onions)]
        fig.add_trace(go.Bar(x=names, y=shares, name=cat, marker_color=COLORS[j % len(COLORS)],
                             customdata=counts, text=[f"{s:.1f}" for s in shares], textposition="inside",
                             hovertemplate=f"%{{x}}: {cat} %{{customdata:,}} errors, %{{y:.2f}}% of characters"
                                           "<extra></extra>"))
    fig.update_layout(barmode="stack", title="Errors (p < 0.5) peeled by category, small model against large",
                      yaxis_title="errors, % of characters", legend_title="category (peeled in this order)",
                      legend_traceorder="normal")
    return fig


def dynamics_curves(steps: list[int], orders: list[int], kl: np.ndarray) -> go.Figure:
    """Symmetric KL between the model's predictions and each n-gram's over training, one line per order."""
    kl = np.asarray(kl, dtype=float)  # (S, O)
    if kl.size == 0:
        return _message("This history holds no snapshot.", "Training dynamics")
    fig = go.Figure()
    for j, n in enumerate(orders):
        fig.add_trace(go.Scatter(x=list(steps), y=kl[:, j].tolist(), mode="lines+markers", name=f"{n}-gram",
                                 marker=dict(size=5, color=COLORS[j % len(COLORS)]),
                                 hovertemplate=f"step %{{x:,}}: KL to the {n}-gram %{{y:.3f}} nats<extra></extra>"))
    fig.update_layout(title="Distance to n-grams over training: symmetric KL, lower is closer",
                      xaxis_title="training step", yaxis_title="symmetric KL (nats/char)", legend_title="n-gram order")
    # histories keep snapshots at log-spaced steps, and the KL spans orders of magnitude: log axes show
    # the early crossings that linear ones squeeze into the corner
    if len(steps) and min(steps) > 0:
        fig.update_xaxes(type="log", title="training step (log scale)")
    if np.all(kl > 0):
        fig.update_yaxes(type="log", title="symmetric KL (nats/char, log scale)")
    return fig
