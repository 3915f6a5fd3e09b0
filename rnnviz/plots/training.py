"""Training: loss curves of one or several runs, against steps or characters seen."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .base import COLORS, _message

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
