"""Gates over the text: one unit's gate lines, the saturation of Karpathy, Johnson & Fei-Fei (2015), histograms."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ConfigError
from ..model import GATES
from ..saturation import saturation_table, thresholds
from .base import COLORS, LAYER_SYMBOLS, TANH_GATES, _labels, _message


def _gate_kinds(trace) -> list[str]:
    """Gate names of the trace's cell; for a vanilla RNN, its pre-activation and h."""
    return list(GATES[trace.cell]) or ["pre", "h"]


def gate_lines(trace, layer: int, unit: int, first: int = 0) -> go.Figure:
    """Each gate of one unit per character (i f g o, r z n; a vanilla RNN's pre-activation and h);
    `first` is the position of the trace's first character in the text it was cut from.

    The x axis numbers positions rather than spelling the characters (the ribbons above it on the
    Gates page do, and the hover names each point's character): a tick label per character made
    the browser measure 120 labels on every redraw, two thirds of a window move's felt latency.
    """
    pos = first + np.arange(len(trace.text))
    labels = _labels(trace.text)
    fig = go.Figure()
    for j, kind in enumerate(_gate_kinds(trace)):
        values = trace.get(layer, kind)  # (T, H)
        if not 0 <= unit < values.shape[1]:
            raise ConfigError(f"unit must be from 0 to {values.shape[1] - 1}, not {unit}")
        fig.add_trace(go.Scatter(x=pos, y=values[:, unit], mode="lines+markers", name=kind, customdata=labels,
                                 marker=dict(size=4, color=COLORS[j % len(COLORS)]), line=dict(width=1),
                                 hovertemplate=f"#%{{x}} '%{{customdata}}'<br>{kind} %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=f"Gates of unit {unit}, layer {layer} ({trace.cell.upper()})",
                      xaxis_title="character position (hover a point for its character)", yaxis_title="gate value",
                      legend_title="gate")
    return fig


# --- gate saturation (Karpathy, Johnson & Fei-Fei 2015, fig. 3) --------------------------------------

def saturation_scatter(trace) -> go.Figure:
    """Each unit a dot at (fraction of steps < low, fraction > high), a subplot per gate, a symbol per layer.

    Dots near the x+y=1 diagonal are units that are almost always saturated one way or the other:
    a forget gate at the top left remembers, at the bottom right it forgets.
    """
    gates = GATES[trace.cell]
    if not gates:
        return _message("A vanilla RNN has no gates: every step is h = tanh(W x + U h).", "Gate saturation")
    table = saturation_table(trace)
    fig = make_subplots(rows=1, cols=len(gates), subplot_titles=[f"gate {g}" for g in gates],
                        horizontal_spacing=0.06)
    for c, gate in enumerate(gates, start=1):
        lo, hi = thresholds(gate)
        fig.add_trace(go.Scatter(x=[0, 1], y=[1, 0], mode="lines", line=dict(dash="dash", color="#999", width=1),
                                 showlegend=False, hoverinfo="skip", name="x+y=1"), row=1, col=c)
        for layer in range(len(trace.layers)):
            part = table[(table.gate == gate) & (table.layer == layer)]
            fig.add_trace(go.Scatter(
                x=part.left.to_numpy(), y=part.right.to_numpy(), mode="markers", name=f"layer {layer}",
                legendgroup=f"layer {layer}", showlegend=c == 1, customdata=part.unit.to_numpy(),
                marker=dict(symbol=LAYER_SYMBOLS[layer % len(LAYER_SYMBOLS)], color=COLORS[layer % len(COLORS)],
                            size=7, opacity=0.75),
                hovertemplate=(f"layer {layer} gate {gate} unit %{{customdata}}<br>< {lo:g}: %{{x:.2f}} of steps"
                               f"<br>> {hi:g}: %{{y:.2f}} of steps<extra></extra>")), row=1, col=c)
        tanh = " (tanh, −1..1)" if gate in TANH_GATES else ""
        fig.update_xaxes(title=f"fraction < {lo:g}{tanh}", range=[-0.03, 1.03], row=1, col=c)
        fig.update_yaxes(title=f"fraction > {hi:g}{tanh}", range=[-0.03, 1.03], row=1, col=c)
    fig.update_layout(title=f"Gate saturation ({trace.cell.upper()}): fraction of steps each unit is saturated",
                      legend_title="layer")
    return fig


def gate_histograms(trace, layer: int, bins: int = 50) -> go.Figure:
    """Histograms of one layer's gate values (all units, all steps), one subplot per gate."""
    kinds = _gate_kinds(trace)
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[f"{k}" for k in kinds], horizontal_spacing=0.05)
    for c, kind in enumerate(kinds, start=1):
        v = trace.get(layer, kind).ravel()
        v = v[np.isfinite(v)]
        # fixed ranges for the squashed gates, so histograms of different models compare
        if kind in TANH_GATES or kind == "h":
            lo, hi = -1.0, 1.0
        elif kind == "pre":
            lo, hi = (float(v.min()), float(v.max())) if v.size else (-1.0, 1.0)
        else:
            lo, hi = 0.0, 1.0
        # counted here, not by the browser: a (T, H) gate can hold millions of values
        counts, edges = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1))
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=kind,
                             marker_color=COLORS[(c - 1) % len(COLORS)], showlegend=False,
                             customdata=np.stack([edges[:-1], edges[1:]], 1),
                             hovertemplate=f"{kind} in [%{{customdata[0]:.2f}}, %{{customdata[1]:.2f}}): "
                                           "%{y} values<extra></extra>"), row=1, col=c)
        fig.update_xaxes(title="value", row=1, col=c)
    fig.update_yaxes(title="count", row=1, col=1)
    fig.update_layout(title=f"Gate values of layer {layer} ({trace.cell.upper()}), all units and steps", bargap=0)
    return fig
