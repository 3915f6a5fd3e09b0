"""Pure plotly builders for gradient flow through time and the memory task (no streamlit here).

A cell keeps one colour on every chart: RNN red, GRU green, LSTM blue; a second model of the same
cell gets a lighter shade of it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import ConfigError
from .base import _message

CELL_COLORS = {"rnn": ("#d62728", "#f08a8b"), "gru": ("#2ca02c", "#8fd17f"), "lstm": ("#1f77b4", "#8dc3e8")}
OTHER_COLORS = ("#9467bd", "#c5b0d5")
RELATIVE_AXIS = "gradient ÷ ‖∂L/∂h‖ at distance 0 (log scale)"


def cell_color(cell: str, shade: int = 0) -> str:
    """The colour of a cell type on every chart; shade 1 for a second model of the same cell."""
    pair = CELL_COLORS.get(str(cell).lower(), OTHER_COLORS)
    return pair[min(shade, 1)]


def _log_range(arrays: list[np.ndarray]) -> list[float] | None:
    """log10 axis range from the data's smallest positive value / 10 to its largest * 10."""
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays]) if arrays else np.array([])
    if not vals.size:
        return None
    return [math.log10(vals.min()) - 1, math.log10(vals.max()) + 1]


def _shades(cells: list[str]) -> list[int]:
    """0 for the first model of each cell type, 1 for the next ones."""
    seen, out = set(), []
    for c in cells:
        out.append(1 if c in seen else 0)
        seen.add(c)
    return out


def gradient_lesson(curves: list, title: str = "", mark: int | None = None, mark_text: str = "",
                    show_cell: bool = True, show_gain: bool = True) -> go.Figure:
    """The gradient at each distance relative to where it starts, one colour per cell (lesson.Curve objects).

    Solid: ||dL/dh_t||; dashed: ||dL/dc_t|| (LSTM); dotted: the path gain that explains the decay
    (lesson.Curve.gain, drawn over the curve it predicts). Both norms are divided by ||dL/dh|| at
    the last step, so every h curve starts at 1; the cell's may rise above it. The legend names each model once (a click hides
    all its lines); the line styles are said in the axis title. `mark` draws a vertical line there.
    """
    fig, shown = go.Figure(), []
    for c in curves:
        color, x = cell_color(c.cell, c.shade), c.flow.distance
        y = c.relative("h")
        shown.append(y)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=c.label, legendgroup=c.key,
                                 line=dict(color=color, width=2.5),
                                 hovertemplate=f"{c.label}<br>%{{x}} steps back<br>‖∂L/∂h‖ ÷ its value at distance 0: "
                                               "%{y:.3g}<extra></extra>"))
        over = y
        if show_cell and c.flow.dc is not None:
            over = c.relative("c")
            shown.append(over)
            fig.add_trace(go.Scatter(x=x, y=over, mode="lines", name=f"{c.label}: ‖∂L/∂c‖ (cell)",
                                     legendgroup=c.key, showlegend=False, line=dict(color=color, width=2, dash="dash"),
                                     hovertemplate=f"{c.label}, cell state<br>%{{x}} steps back<br>"
                                                   "‖∂L/∂c‖ ÷ ‖∂L/∂h‖ at distance 0: %{y:.3g}<extra></extra>"))
        if show_gain:
            g = c.gain * over[-1]  # the gain starts where the curve it predicts starts
            fig.add_trace(go.Scatter(x=x, y=np.where(g > 0, g, np.nan), mode="lines", legendgroup=c.key, showlegend=False,
                                     name=f"{c.label}: {c.gain_name}", line=dict(color=color, width=1.5, dash="dot"),
                                     hovertemplate=f"{c.gain_name}<br>%{{x}} steps back<br>%{{y:.3g}}<extra></extra>"))
    # not "the share left": the cell's gradient gathers from every h it feeds and may exceed 1
    fig.update_yaxes(type="log", title=RELATIVE_AXIS, exponentformat="power")
    rng = _log_range(shown)  # the measured curves set the range; a path line may leave it
    if rng is not None:
        fig.update_yaxes(range=[rng[0], max(rng[1], 0.5)])
    if mark is not None:
        fig.add_vline(x=mark, line=dict(color="#555", width=1, dash="dot"), annotation_text=mark_text,
                      annotation_position="top")
    styles = ["solid ‖∂L/∂h‖"] + (["dashed ‖∂L/∂c‖"] if show_cell and any(c.flow.dc is not None for c in curves)
                                  else []) + (["dotted: the gate or Jacobian path"] if show_gain else [])
    fig.update_xaxes(title="distance: steps before the predicted character<br><sup>" + ", ".join(styles) + "</sup>")
    fig.update_layout(title=title, height=520, legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    return fig


def gradient_decay(flows: dict, layer: int = 0, kind: str = "h", show_bound: bool = False) -> go.Figure:
    """||dL/dh_t|| (or ||dL/dc_t||) against the distance T-1-t on a log axis, one line per model.

    With `show_bound`, each tanh RNN's top layer also gets the Pascanu line ||dL/dh_(T-1)|| sigma_max^d,
    a true but loose bound there and nowhere else (GradientFlow.bound): gated cells and lower layers
    get none. The y range follows the measured norms.
    """
    if kind not in ("h", "c"):
        raise ConfigError(f"kind must be 'h' or 'c', not {kind!r}")
    fig, shown, skipped = go.Figure(), [], []
    shades = _shades([f.cell for f in flows.values()])
    for (name, flow), shade in zip(flows.items(), shades):
        norms = flow.dh if kind == "h" else flow.dc
        if norms is None:
            skipped.append(name)  # only an LSTM has a cell state
            continue
        if not 0 <= layer < norms.shape[0]:
            raise ConfigError(f"{name} has layers 0 to {norms.shape[0] - 1}; there is no layer {layer}")
        color = cell_color(flow.cell, shade)
        y = norms[layer]  # (T,)
        shown.append(y)
        fig.add_trace(go.Scatter(x=flow.distance, y=y, mode="lines", name=name, line=dict(color=color, width=2),
                                 hovertemplate=f"{name}<br>%{{x}} steps back<br>||dL/d{kind}|| = %{{y:.3g}}"
                                               "<extra></extra>"))
        top = layer == norms.shape[0] - 1
        if show_bound and kind == "h" and flow.cell == "rnn" and top and flow.loss_at == "last":
            with np.errstate(over="ignore", invalid="ignore"):
                b = flow.bound(layer).astype(np.float64)
            b[~np.isfinite(b)] = np.nan  # an overflowing bound would break the axis
            fig.add_trace(go.Scatter(
                x=flow.distance, y=b, mode="lines", name=f"{name}: bound σ={flow.sigma_max[layer]:.2f}^d (top layer)",
                line=dict(color=color, dash="dash", width=1),
                hovertemplate=f"{name} bound<br>%{{x}} steps back<br>%{{y:.3g}}<extra></extra>"))
    fig.update_yaxes(type="log", title=f"||dL/d{kind}_t|| (log scale)", exponentformat="power")
    rng = _log_range(shown)
    if rng is not None:
        fig.update_yaxes(range=rng)
    fig.update_xaxes(title="distance T−1−t (steps before the loss)")
    title = f"Gradient flow through time, layer {layer}: ||dL/d{kind}_t||"
    if skipped:
        title += f" (no cell state: {', '.join(skipped)})"
    fig.update_layout(title=title, legend_title="model")
    return fig


def unit_gradient_map(units: np.ndarray, text: str, rows: list[int], title: str = "") -> go.Figure:
    """|dL/dc_t| (or |dL/dh_t|) of the chosen units against distance: (T, H) values, log colour."""
    units = np.asarray(units, dtype=np.float64)  # (T, H)
    if units.shape[0] != len(text):
        raise ConfigError(f"{len(text)} characters but {units.shape[0]} rows of gradients")
    if not rows:
        return _message("No units to show.", title)
    T = units.shape[0]
    z = np.log10(np.maximum(units[:, rows].T, 1e-30))  # (rows, T)
    dist = np.arange(T)[::-1]
    chars = [repr(ch)[1:-1] for ch in text]
    fig = go.Figure(go.Heatmap(
        z=z, x=dist, y=[f"unit {u}" for u in rows], colorscale="Viridis", zmin=max(z.min(), z.max() - 8),
        customdata=np.array([chars] * len(rows)), colorbar=dict(title="log10 |∂L/∂c|"),
        hovertemplate="%{y}<br>%{x} steps back (character %{customdata})<br>log10 |∂L/∂c| = %{z:.2f}<extra></extra>"))
    fig.update_xaxes(title="distance: steps before the recall", autorange="reversed")
    fig.update_yaxes(autorange="reversed")  # the first of `rows` on top
    fig.update_layout(title=title, height=120 + 22 * len(rows))
    return fig


def memory_accuracy(df: pd.DataFrame) -> go.Figure:
    """Recall accuracy against the gap per cell; chance as a dashed line."""
    if df.empty:
        return _message("No measurements yet.", "Memory: recall accuracy against the gap")
    fig = go.Figure()
    groups = list(df.groupby("cell", sort=False))
    for (cell, part), shade in zip(groups, _shades([str(c).split()[0].lower() for c, _ in groups])):
        part = part.sort_values("gap")
        name = str(cell).upper()
        items = "<br>%{customdata} recalls scored" if "items" in part else ""
        fig.add_trace(go.Scatter(x=part.gap.to_numpy(), y=part.accuracy.to_numpy(), mode="lines+markers", name=name,
                                 line=dict(color=cell_color(str(cell).split()[0].lower(), shade), width=2.5),
                                 customdata=part["items"].to_numpy() if "items" in part else None,
                                 hovertemplate=f"{name}<br>gap %{{x}}<br>accuracy %{{y:.3f}}{items}<extra></extra>"))
    gaps = np.sort(df.gap.unique())
    if "chance" in df:
        chance = float(df.chance.mean())
        fig.add_trace(go.Scatter(x=[gaps[0], gaps[-1]], y=[chance, chance], mode="lines", name="chance",
                                 line=dict(dash="dash", color="#888"), hovertemplate=f"chance {chance:.3f}<extra></extra>"))
    fig.update_xaxes(type="log", tickvals=gaps.tolist(), ticktext=[str(g) for g in gaps],
                     title="gap k (characters between the key and its recall)")
    fig.update_yaxes(range=[0, 1.05], title="recall accuracy")
    fig.update_layout(title="Memory: recall accuracy against the gap", legend_title="cell")
    return fig


def recall_during_training(learning: dict[str, pd.DataFrame], gap: int) -> go.Figure:
    """Recall at one gap against training step, one line per cell (learning: cell -> step, gap,
    accuracy, as experiments.recall_over_training); chance as a dashed line."""
    title = f"Recall at gap {gap} during training"
    parts = {cell: df[df.gap == gap].sort_values("step") for cell, df in learning.items()}
    parts = {cell: p for cell, p in parts.items() if len(p)}
    if not parts:
        return _message("No snapshots were measured.", title)
    fig = go.Figure()
    for cell, p in parts.items():
        fig.add_trace(go.Scatter(x=p.step, y=p.accuracy, mode="lines+markers", name=cell.upper(),
                                 line=dict(color=cell_color(cell), width=2),
                                 hovertemplate=f"{cell.upper()}<br>step %{{x}}<br>recall %{{y:.1%}}<extra></extra>"))
    chance = next(iter(parts.values())).chance.iloc[0]
    fig.add_hline(y=chance, line=dict(color="#888", dash="dash"), annotation_text="chance",
                  annotation_position="bottom right")
    fig.update_xaxes(type="log", title_text="training step")
    fig.update_yaxes(tickformat=".0%", range=[-0.02, 1.05], title_text="recall accuracy")
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.25), margin=dict(t=50, b=10))
    return fig
