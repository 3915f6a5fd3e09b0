"""Pure plotly builders for a training history: the loss curve with the current step, the emergence
timeline, gate saturation over the steps (no streamlit here)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .base import COLORS, _message


def loss_with_step(curve: pd.DataFrame, snapshot_steps: list[int], current: int | None = None,
                   log_x: bool = True) -> go.Figure:
    """Train loss (thin) and validation loss (markers) against step, each snapshot a tick on the
    validation line, the current snapshot's step a vertical line. Snapshots are log-spaced, so the
    x axis is too by default."""
    if curve is None or not len(curve):
        return _message("This checkpoint records no loss curve.", "Loss")
    fig = go.Figure()
    train = curve.dropna(subset=["train_loss"])
    fig.add_trace(go.Scatter(x=train.step, y=train.train_loss, mode="lines", name="train (each step)",
                             line=dict(color=COLORS[0], width=1), opacity=0.5,
                             hovertemplate="train<br>step %{x}<br>%{y:.3f} nats/char<extra></extra>"))
    val = curve.dropna(subset=["val_loss"])
    if len(val):
        fig.add_trace(go.Scatter(x=val.step, y=val.val_loss, mode="lines+markers", name="validation",
                                 line=dict(color=COLORS[1], width=2), marker=dict(size=5),
                                 customdata=val.val_loss / math.log(2),
                                 hovertemplate="validation<br>step %{x}<br>%{y:.3f} nats/char "
                                               "(%{customdata:.3f} bits/char)<extra></extra>"))
    by_step = curve.set_index("step")
    snaps = [s for s in snapshot_steps if s in by_step.index]
    if snaps:
        y = [by_step.loc[s, "val_loss"] if not pd.isna(by_step.loc[s, "val_loss"]) else by_step.loc[s, "train_loss"]
             for s in snaps]
        fig.add_trace(go.Scatter(x=snaps, y=y, mode="markers", name="snapshots",
                                 marker=dict(symbol="diamond", size=10, color="rgba(0,0,0,0)",
                                             line=dict(color="#333", width=1.5)),
                                 hovertemplate="snapshot at step %{x}<br>%{y:.3f} nats/char<extra></extra>"))
    if current is not None:
        # a shape takes data coordinates on a log axis, an annotation its log10
        fig.add_vline(x=current, line=dict(color="#d62728", width=2))
        fig.add_annotation(x=math.log10(current) if log_x and current > 0 else current, y=1, yref="paper",
                           text=f"step {current}", showarrow=False, xanchor="left", yanchor="bottom",
                           font=dict(color="#d62728"))
    fig.update_layout(title="Loss per character (lower is better)", xaxis_title="step", yaxis_title="loss (nats/char)",
                      legend=dict(orientation="h", y=-0.25), margin=dict(t=50, b=10))
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def _unit_name(row) -> str:
    return f"L{int(row.layer)} {row.kind}{int(row.unit)}"


def emergence_timeline(table: pd.DataFrame, threshold: float | None = None, hypothesis: str = "",
                       current: int | None = None) -> go.Figure:
    """The best unit's score at each snapshot (a marker labelled with the unit; filled where it is the
    final best unit) and the final best unit's score at every snapshot (a line), on a log step axis."""
    if table is None or not len(table):
        return _message("No snapshot to rank.", "Emergence")
    last = table.iloc[-1]
    final = _unit_name(last)
    names = [_unit_name(r) for r in table.itertuples()]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=table.step, y=table.final_unit_score, mode="lines+markers", name=f"{final} (final best)",
                             line=dict(color=COLORS[0], width=2),
                             hovertemplate=f"{final}<br>step %{{x}}<br>score %{{y:.3f}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=table.step, y=table.score, mode="markers+text", name="best unit at that step",
                             text=[n if not same else "" for n, same in zip(names, table.same_as_final)],
                             textposition="top center",
                             marker=dict(size=11, symbol=["circle" if s else "circle-open" for s in table.same_as_final],
                                         color=COLORS[1], line=dict(width=2, color=COLORS[1])),
                             customdata=np.array(names, dtype=object)[:, None],
                             hovertemplate="best at step %{x}: %{customdata[0]}<br>score %{y:.3f}<extra></extra>"))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="#888", dash="dot"), annotation_text=f"threshold {threshold:g}",
                      annotation_position="bottom right")
    if current is not None and current > 0:
        fig.add_vline(x=current, line=dict(color="#d62728", width=1.5))  # data coordinates, also on a log axis
    fig.update_layout(title=f"Emergence: the best unit for '{hypothesis}' at each snapshot" if hypothesis
                      else "Emergence: the best unit at each snapshot",
                      xaxis_title="step", yaxis_title="score (max(AUROC, 1 - AUROC), or |r|)",
                      legend=dict(orientation="h", y=-0.25), margin=dict(t=50, b=10))
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[min(0.45, float(np.nanmin(table[["score", "final_unit_score"]].values)) - 0.02), 1.02])
    return fig


def saturation_over_steps(df: pd.DataFrame, current: int | None = None) -> go.Figure:
    """Per layer and gate, the mean fraction of steps right-saturated (> 0.9, top) and left-saturated
    (< 0.1, or < -0.9 for a tanh candidate; bottom) at each snapshot."""
    if df is None or not len(df):
        return _message("No gates to show.", "Gate saturation")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("right-saturated (> 0.9)", "left-saturated (< 0.1; tanh: < -0.9)"))
    gates = list(dict.fromkeys(df.gate))
    dashes = ("solid", "dash", "dot", "dashdot")
    for (layer, gate), part in df.groupby(["layer", "gate"], sort=False):
        color = COLORS[gates.index(gate) % len(COLORS)]
        name = f"L{layer} {gate}"
        line = dict(color=color, dash=dashes[int(layer) % len(dashes)])
        part = part.sort_values("step")
        for row, col in ((1, "right"), (2, "left")):
            fig.add_trace(go.Scatter(x=part.step, y=part[col], mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=row == 1, line=line,
                                     hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.1%}} of steps<extra></extra>"),
                          row=row, col=1)
    if current is not None and current > 0:
        fig.add_vline(x=current, line=dict(color="#d62728", width=1.5))  # data coordinates, also on a log axis
    fig.update_xaxes(type="log")
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_layout(title="Gate saturation over training (mean over units)", height=520, margin=dict(t=70, b=10))
    return fig


def recall_over_steps(df: pd.DataFrame, current: int | None = None, chance: float | None = None,
                      title: str = "Recall across the gap, snapshot by snapshot") -> go.Figure:
    """Memory-task recall accuracy against training step, one line per gap (dark = long), chance as a
    dashed line and the current snapshot as a vertical one. df: step, gap, accuracy (recall_over_training)."""
    if df is None or not len(df):
        return _message("No recall measured.", title)
    fig = go.Figure()
    gaps = sorted(df.gap.unique())
    for i, gap in enumerate(gaps):
        part = df[df.gap == gap].sort_values("step")
        shade = 0.25 + 0.75 * i / max(1, len(gaps) - 1)  # the longest gap darkest
        fig.add_trace(go.Scatter(x=part.step, y=part.accuracy, mode="lines+markers", name=f"gap {gap}",
                                 line=dict(color=f"rgba(31, 119, 180, {shade:.2f})", width=1 + 2 * shade),
                                 hovertemplate=f"gap {gap}<br>step %{{x}}<br>recall %{{y:.1%}}<extra></extra>"))
    if chance is not None:
        fig.add_hline(y=chance, line=dict(color="#888", dash="dash"), annotation_text="chance",
                      annotation_position="bottom right")
    if current is not None and current > 0:
        fig.add_vline(x=current, line=dict(color="#d62728", width=1.5))
    fig.update_xaxes(type="log", title_text="training step")
    fig.update_yaxes(tickformat=".0%", range=[-0.02, 1.05], title_text="recall accuracy")
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.25), margin=dict(t=50, b=10))
    return fig
