"""Hidden and cell states over the text: the heatmap, one unit's line, unit scores and surprisal."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import ConfigError
from .base import _char_axis, _check_len, _label, _labels, _message

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
