"""Pure plotly figure builders: arrays in, go.Figure out (no streamlit here)."""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .errors import ConfigError
from .model import GATES
from .render import char_label

COLORS = qualitative.Plotly
TANH_GATES = ("g", "n")  # candidates: tanh, in [-1, 1]; the other gates are sigmoids in [0, 1]
LAYER_SYMBOLS = ("circle", "diamond", "square", "x", "triangle-up")
MAX_TICK_CHARS = 200  # above this many characters, the x axis shows positions instead of characters

__all__ = ["char_label", "activation_heatmap", "unit_scales", "unit_line", "gate_lines", "saturation_table",
           "saturation_scatter", "gate_histograms", "loss_curves", "temperature_distributions", "unit_scores",
           "surprisal_bars"]
# Gradient flow and the memory task have their own module: rnnviz.gradient_plots.


def _label(ch: str) -> str:
    """char_label, escaped for plotly's hover and tick text (which reads a few HTML tags)."""
    return html.escape(char_label(ch), quote=False)


def _labels(text: str) -> list[str]:
    return [_label(ch) for ch in text]


def _char_axis(fig: go.Figure, text: str, positions: np.ndarray, row=None, col=None) -> None:
    """Ticks that are the characters themselves when few enough to read."""
    if len(positions) <= MAX_TICK_CHARS:
        fig.update_xaxes(tickmode="array", tickvals=positions.tolist(), ticktext=_labels(text),
                         tickangle=0, row=row, col=col)


def _message(text: str, title: str = "") -> go.Figure:
    """An empty figure that says why there is nothing to plot."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=15))
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False)
    return fig


def _check_len(values: np.ndarray, text: str) -> None:
    if values.shape[0] != len(text):
        raise ConfigError(f"{len(text)} characters but {values.shape[0]} rows of values: give one per character")


# --- activations --------------------------------------------------------------------------------

def activation_heatmap(values: np.ndarray, text: str, units: list[int] | None = None, title: str = "",
                       first: int = 0, scale: np.ndarray | None = None) -> go.Figure:
    """Units x characters heatmap of (T, U) activations, blue-white-red around 0; `first` is the
    position of text's first character in the text it was cut from (the x values and the hover).

    One colour scale for all units by default. Given `scale` (U,), one positive number per column of
    values (a unit's largest |value| on the whole text, say), each row is drawn as value / scale, so
    every unit fills -1..1 on its own range; the colour bar says so and the hover keeps the raw value."""
    values = np.asarray(values)  # (T, U)
    _check_len(values, text)
    units = list(range(values.shape[1])) if units is None else [int(u) for u in units]
    raw = values[:, units].T  # (U', T)
    pos = first + np.arange(len(text))
    chars = np.broadcast_to(np.array(_labels(text), dtype=object), raw.shape)  # (U', T) for the hover
    if scale is None:
        heat = go.Heatmap(z=raw, x=pos, y=units, zmid=0, colorscale="RdBu_r", customdata=chars,
                          colorbar=dict(title="value"),
                          hovertemplate="#%{x} '%{customdata}'<br>unit %{y}<br>value %{z:.3f}<extra></extra>")
    else:
        s = np.asarray(scale, dtype=np.float64)[units]  # (U',)
        if not np.all(np.isfinite(s) & (s > 0)):
            raise ConfigError("each unit's scale must be a positive finite number")
        custom = np.stack([chars, raw.astype(object)], axis=-1)  # (U', T, 2): character, raw value
        heat = go.Heatmap(z=raw / s[:, None], x=pos, y=units, zmin=-1, zmax=1, colorscale="RdBu_r", customdata=custom,
                          colorbar=dict(title=dict(text="value ÷ the<br>unit's largest<br>|value| (each<br>"
                                                        "row its own<br>scale)", side="top")),
                          hovertemplate="#%{x} '%{customdata[0]}'<br>unit %{y}<br>value %{customdata[1]:.3f}"
                                        "<br>%{z:.2f} of the unit's largest |value|<extra></extra>")
    fig = go.Figure(heat)
    fig.update_yaxes(type="category", title="unit")  # units need not be contiguous
    fig.update_xaxes(title="character position")
    _char_axis(fig, text, pos)
    fig.update_layout(title=title or "Activations: units × characters")
    return fig


def unit_scales(values: np.ndarray) -> np.ndarray:
    """Each unit's largest |value| over the text (T, U) -> (U,), 1 for a unit that is 0 throughout,
    the divisor of activation_heatmap's rows scaled per unit."""
    m = np.abs(np.asarray(values, dtype=np.float64)).max(axis=0) if len(values) else np.ones(np.shape(values)[1])
    return np.where(m > 0, m, 1.0)


def unit_line(values: np.ndarray, text: str, title: str = "") -> go.Figure:
    """One unit's value per character, as a line with selectable markers."""
    values = np.asarray(values).reshape(-1)  # (T,)
    _check_len(values, text)
    pos = np.arange(len(text))
    fig = go.Figure(go.Scatter(x=pos, y=values, mode="lines+markers", customdata=_labels(text), name="value",
                               marker=dict(size=5), line=dict(width=1),
                               hovertemplate="#%{x} '%{customdata}'<br>value %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title or "One unit over the text", xaxis_title="character position", yaxis_title="value")
    _char_axis(fig, text, pos)
    return fig


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

def _thresholds(gate: str) -> tuple[float, float]:
    """Saturation thresholds: 0.1 / 0.9 for a sigmoid gate, -0.9 / 0.9 for a tanh candidate."""
    return (-0.9, 0.9) if gate in TANH_GATES else (0.1, 0.9)


def saturation_table(trace) -> pd.DataFrame:
    """Per layer, gate and unit: fraction of steps left-saturated (< low) and right-saturated (> high)."""
    rows = []
    for layer in range(len(trace.layers)):
        for gate in GATES[trace.cell]:
            v = trace.get(layer, gate)  # (T, H)
            lo, hi = _thresholds(gate)
            rows.append(pd.DataFrame({"layer": layer, "gate": gate, "unit": np.arange(v.shape[1]),
                                      "left": (v < lo).mean(0), "right": (v > hi).mean(0)}))
    if not rows:
        return pd.DataFrame(columns=["layer", "gate", "unit", "left", "right"])
    return pd.concat(rows, ignore_index=True)


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
        lo, hi = _thresholds(gate)
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


# --- gradients -----------------------------------------------------------------------------------

# --- training ------------------------------------------------------------------------------------

def loss_curves(runs: dict[str, list[dict]], chars_per_step: dict[str, int] | None = None) -> go.Figure:
    """Train loss (thin) and validation loss (markers) per run, in nats/char, against step; or, given
    each run's characters per step (rnnviz.runs.chars_per_step), against the characters seen, so that
    runs of different speeds are compared after the same amount of text (a dotted line marks the most
    every run has read)."""
    fig = go.Figure()
    per = {name: (chars_per_step or {}).get(name) for name in runs}
    by_chars = chars_per_step is not None and all(per.values())
    for j, (name, curve) in enumerate(runs.items()):
        color = COLORS[j % len(COLORS)]
        scale = per[name] if by_chars else 1
        for kind, width, mode, word in (("train_loss", 1, "lines", "train"), ("val_loss", 2, "lines+markers", "val")):
            pts = [p for p in curve if p.get(kind) is not None]
            if not pts:
                continue
            y = np.array([p[kind] for p in pts], dtype=np.float64)
            steps = np.array([p["step"] for p in pts])
            fig.add_trace(go.Scatter(
                x=steps * scale, y=y, mode=mode, name=f"{name} {word}", legendgroup=name,
                line=dict(color=color, width=width), opacity=0.6 if word == "train" else 1.0,
                marker=dict(size=7) if word == "val" else None, customdata=y / math.log(2), text=steps,
                hovertemplate=f"{name} {'validation' if word == 'val' else 'train'}<br>step %{{text}}"
                              + (", %{x:,} characters seen" if by_chars else "")
                              + "<br>%{y:.3f} nats/char (%{customdata:.3f} bits/char)<extra></extra>"))
    if not fig.data:
        return _message("No training steps yet.", "Loss")
    if by_chars:
        reach = [curve[-1]["step"] * per[name] for name, curve in runs.items() if curve]
        if len(reach) > 1:
            fig.add_vline(x=min(reach), line=dict(color="#555", width=1, dash="dot"),
                          annotation_text="every run has read this much", annotation_position="top left")
        fig.update_layout(title="Loss per character against characters seen: runs compared after the same "
                                "amount of text, not the same time (lower is better)",
                          xaxis_title="characters seen (steps × batch size × sequence length)")
    else:
        fig.update_layout(title="Loss per character (lower is better)", xaxis_title="step")
    fig.update_layout(yaxis_title="loss (nats/char)", legend_title="run")
    return fig


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T); T = 0 is the argmax as a one-hot."""
    if temperature == 0:
        p = np.zeros_like(logits)
        p[np.argmax(logits)] = 1.0
        return p
    z = logits / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def _unique(labels: list[str]) -> list[str]:
    """Bar categories must differ: a literal '↵' and a newline would share one bar otherwise."""
    seen, out = {}, []
    for s in labels:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s} ({seen[s]})")
    return out


def temperature_distributions(logits: np.ndarray, vocab: list[str], temperatures=(0.5, 0.8, 1.0, 1.5),
                              top: int = 15) -> go.Figure:
    """Grouped bars: the next-character distribution at several temperatures, over the top characters at T=1."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)  # (V,)
    if len(logits) != len(vocab):
        raise ConfigError(f"{len(logits)} logits for a vocabulary of {len(vocab)}")
    for t in temperatures:
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
            raise ConfigError(f"a temperature must be a finite number >= 0, not {t!r}")
    order = np.argsort(-_softmax(logits, 1.0), kind="stable")[:top]  # (top,) most likely first at T=1
    names = _unique([_label(vocab[i]) for i in order])
    fig = go.Figure()
    for j, t in enumerate(temperatures):
        p = _softmax(logits, float(t))[order]
        fig.add_trace(go.Bar(x=names, y=p, name=f"T={t:g}" + (" (argmax)" if t == 0 else ""),
                             marker_color=COLORS[j % len(COLORS)],
                             hovertemplate=f"T={t:g}<br>'%{{x}}' p=%{{y:.3f}}<extra></extra>"))
    fig.update_layout(title="Next-character distribution at several temperatures", barmode="group",
                      xaxis_title="next character (top by probability at T=1)", yaxis_title="probability",
                      legend_title="temperature")
    fig.update_xaxes(type="category")
    return fig


# --- probes and experiments ----------------------------------------------------------------------

def unit_scores(df: pd.DataFrame, top: int = 20) -> go.Figure:
    """Bars of rank_units' best rows, labelled 'L{layer} {kind}{unit}', best at the top."""
    if df.empty:
        return _message("No units to rank.", "Units that track the hypothesis")
    part = df.head(top)
    names = [f"L{l} {k}{u}" for l, k, u in zip(part.layer, part.kind, part.unit)]
    extra = np.stack([part[c].to_numpy(dtype=np.float64) if c in part else np.full(len(part), np.nan)
                      for c in ("corr", "auroc")], 1)
    fig = go.Figure(go.Bar(x=part.score.to_numpy(), y=names, orientation="h", customdata=extra,
                           hovertemplate="%{y}<br>score %{x:.3f}<br>corr %{customdata[0]:.3f}"
                                         "<br>AUROC %{customdata[1]:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category", title="unit")
    fig.update_layout(title=f"Top {len(part)} units by score", xaxis_title="score", height=max(300, 22 * len(part)))
    return fig


def surprisal_bars(trace, start: int = 0, end: int | None = None) -> go.Figure:
    """Per-character surprisal -ln p(next character) in nats, for trace.text[start:end]."""
    T = len(trace.text)
    start, end = max(0, int(start)), T if end is None else min(T, int(end))
    if end <= start:
        raise ConfigError(f"empty range: start {start} must be before end {end} (the text has {T} characters)")
    pos = np.arange(start, end)
    text = trace.text[start:end]
    nxt = [_label(trace.text[t + 1]) if t + 1 < T else "(end)" for t in pos]
    fig = go.Figure(go.Bar(x=pos, y=trace.loss[start:end], customdata=np.stack([_labels(text), nxt], 1),
                           hovertemplate="#%{x} '%{customdata[0]}' → '%{customdata[1]}'<br>%{y:.3f} nats"
                                         "<extra></extra>"))
    # positions, not a tick label per character: the predictions above it spell them, the hover names
    # them, and the browser measures every tick label on each redraw (see gate_lines)
    fig.update_layout(title="Surprisal of the next character", xaxis_title="character position (hover a bar for its "
                      "character)", yaxis_title="surprisal (nats)")
    return fig
