"""Sampling: the next-character distribution at several temperatures."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from ..errors import ConfigError
from .base import COLORS, _label


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
