"""Pure plotly builders for the atlas: the map of every unit, a unit's histogram, the match heatmap."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..render import char_label
from .base import LAYER_SYMBOLS, _message

LAYER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def unit_map(df: pd.DataFrame, title: str = "Every unit: memory against its best label") -> go.Figure:
    """One point per unit: x its memory time constant tau (log), or its std for a tanh RNN; y its best
    label's score; colour and symbol its layer. customdata = (layer, kind, unit) for a click. tau comes
    from the mean forget gate f of an LSTM or the mean update gate z of a GRU (df's f_mean or z_mean)."""
    if df.empty:
        return _message("No units to show.", title)
    memory = "tau" in df and df["tau"].notna().any()
    gate = "z" if "z_mean" in df else "f"
    fig = go.Figure()
    for (layer, kind), part in df.groupby(["layer", "kind"], sort=True):
        x = part["tau"].clip(lower=0.1, upper=1e4) if memory else part["std"]
        label = part["label"].fillna("none").astype(str).map(lambda s: html.escape(s, quote=False))
        fig.add_trace(go.Scatter(
            x=x, y=part["score"], mode="markers", name=f"layer {layer} {kind}",
            marker=dict(size=7, opacity=0.75, color=LAYER_COLORS[int(layer) % len(LAYER_COLORS)],
                        symbol=LAYER_SYMBOLS[(int(layer) * 2 + (kind == "c")) % len(LAYER_SYMBOLS)]),
            customdata=np.stack([part["layer"], np.full(len(part), kind), part["unit"], label,
                                 part["direction"].fillna("").astype(str)], axis=1),
            hovertemplate=("L%{customdata[0]} %{customdata[1]}%{customdata[2]}<br>%{customdata[4]} %{customdata[3]}"
                           "<br>score %{y:.3f}<br>" + ("τ %{x:.1f} characters" if memory else "std %{x:.3f}")
                           + "<extra></extra>")))
    fig.update_xaxes(title=f"memory time constant τ = −1/ln {gate}\u0304 (characters, log)" if memory
                     else "std of the unit",
                     type="log" if memory else "linear")
    fig.update_yaxes(title="best label's score (AUROC either way, or |r|)")
    fig.update_layout(title=title, clickmode="event+select", height=480, legend_title="layer")
    return fig


def unit_histogram(counts: np.ndarray, edges: np.ndarray, title: str = "") -> go.Figure:
    """The distribution of one unit over the atlas corpus: counts per bin [edges[k], edges[k+1])."""
    counts, edges = np.asarray(counts), np.asarray(edges, dtype=np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, width=np.diff(edges), marker_color="#1f77b4",
                           customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                           hovertemplate="[%{customdata[0]:.3f}, %{customdata[1]:.3f})<br>%{y:,} characters"
                                         "<extra></extra>"))
    fig.update_xaxes(title="value")
    fig.update_yaxes(title="characters", type="log")
    fig.update_layout(title=title, height=300, bargap=0)
    return fig


def match_heatmap(heat: np.ndarray, units: list[int], matches: pd.DataFrame, text: str,
                  title: str = "Selected units over the matches") -> go.Figure:
    """(S, M) mean state of each selected unit over each match; a column per match, labelled by its text."""
    heat = np.asarray(heat, dtype=np.float64)
    if heat.size == 0:
        return _message("No matches.", title)
    cols = [f"#{i + 1} @{int(r.start):,}" for i, r in enumerate(matches.itertuples())]
    snippets = ["".join(char_label(ch) for ch in text[int(r.start):int(r.end)][:30]) for r in matches.itertuples()]
    fig = go.Figure(go.Heatmap(
        z=heat, x=cols, y=[f"unit {u}" for u in units], colorscale="RdBu", zmid=0, reversescale=True,
        customdata=np.array([[html.escape(s, quote=False) for s in snippets]] * len(units)),
        hovertemplate="%{y}, match %{x}<br>%{customdata}<br>mean %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=160 + 18 * len(units))
    return fig
