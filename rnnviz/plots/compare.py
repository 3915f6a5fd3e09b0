"""Pure plot builders for comparing two predictors: class breakdown, closing accuracy against distance, difference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..render import char_label

COLORS = ("#1f77b4", "#d62728")  # A blue, B red


def class_breakdown(bd: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    """Mean surprisal per character class for A and B, side by side; hover gives counts and A's win share."""
    fig = go.Figure()
    labels = [f"{c} ({n:,})" for c, n in zip(bd["class"], bd["count"])]
    for col, name, color in (("mean_a", name_a, COLORS[0]), ("mean_b", name_b, COLORS[1])):
        fig.add_bar(x=labels, y=bd[col], name=name, marker_color=color,
                    customdata=np.stack([bd["count"], bd["diff"], bd["a_wins"]], axis=1),
                    hovertemplate=(f"{name}<br>%{{x}}<br>mean surprisal %{{y:.3f}} nats/char<br>"
                                   f"{name_a} − {name_b}: %{{customdata[1]:+.3f}}<br>"
                                   f"{name_a} lower on %{{customdata[2]:.0%}} of %{{customdata[0]:,}} chars"
                                   "<extra></extra>"))
    fig.update_layout(barmode="group", yaxis_title="mean surprisal (nats/char)", xaxis_title="class (characters)",
                      title=f"Where each model is surprised: {name_a} vs {name_b}", height=420,
                      margin=dict(t=50, b=10))
    return fig


def accuracy_vs_distance(acc: pd.DataFrame) -> go.Figure:
    """Closing-bracket and closing-quote accuracy against the distance to the opener, a line per model and kind."""
    fig = go.Figure()
    models = list(dict.fromkeys(acc["model"]))
    for i, model in enumerate(models):
        for kind, dash in (("bracket", "solid"), ("quote", "dash")):
            t = acc[(acc["model"] == model) & (acc["kind"] == kind) & (acc["count"] > 0)]
            if t.empty:
                continue
            fig.add_scatter(x=t["bucket"], y=t["accuracy"], mode="lines+markers", name=f"{model}: closing {kind}",
                            line=dict(color=COLORS[i % 2], dash=dash),
                            customdata=np.stack([t["count"], t["correct"]], axis=1),
                            hovertemplate=(f"{model}, closing {kind}s at distance %{{x}}<br>accuracy %{{y:.1%}}"
                                           " (%{customdata[1]} of %{customdata[0]})<extra></extra>"))
    buckets = list(dict.fromkeys(acc["bucket"]))
    fig.update_layout(xaxis=dict(title="distance to the opener (characters)", categoryorder="array",
                                 categoryarray=buckets),
                      yaxis=dict(title="accuracy (top guess = true character)", range=[0, 1.02], tickformat=".0%"),
                      title="Closing brackets and quotes: accuracy against distance", height=400,
                      margin=dict(t=50, b=10))
    if not fig.data:
        fig.add_annotation(text="no closing brackets or quotes in this text", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def difference_by_position(text: str, diff: np.ndarray, name_a: str, name_b: str, window: int = 50) -> go.Figure:
    """Per next character, A's surprisal minus B's (points), and its running mean over `window` characters."""
    d = np.asarray(diff, np.float64)  # (T-1,), NaN where left out
    x = np.arange(1, len(d) + 1)
    chars = [char_label(c) for c in text[1:len(d) + 1]]
    fig = go.Figure()
    fig.add_scatter(x=x, y=d, mode="markers", name="per character", marker=dict(size=3, color="#888"),
                    customdata=chars, hovertemplate="#%{x} '%{customdata}' %{y:+.2f} nats<extra></extra>")
    ok = np.isfinite(d)
    if ok.sum() >= 2:
        w = max(1, min(window, int(ok.sum())))
        s = np.convolve(np.where(ok, d, 0.0), np.ones(w), "same")
        n = np.convolve(ok.astype(float), np.ones(w), "same")
        fig.add_scatter(x=x, y=np.where(n > 0, s / np.maximum(n, 1), np.nan), mode="lines",
                        name=f"running mean ({w} chars)", line=dict(color="black"))
    fig.add_hline(y=0, line=dict(color="#bbb", width=1))
    fig.update_layout(xaxis_title="position in the text", yaxis_title=f"{name_a} − {name_b} (nats)",
                      title=f"Below 0: {name_a} predicts better", height=320, margin=dict(t=50, b=10))
    return fig
