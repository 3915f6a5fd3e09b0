"""What every plot builder shares: colours, symbols, the character axis and the empty-figure message."""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from ..errors import ConfigError
from ..render import char_label
from ..saturation import TANH_GATES

COLORS = qualitative.Plotly

LAYER_SYMBOLS = ("circle", "diamond", "square", "x", "triangle-up")
MAX_TICK_CHARS = 200  # above this many characters, the x axis shows positions instead of characters


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
