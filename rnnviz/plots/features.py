"""Pure plotly builders for a dictionary's features: the map of every feature, the feature density, a
feature's logit effect and loadings, and units against features per hypothesis."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .base import _label, _message

FEATURE_COLOR = "#9467bd"
UNIT_COLOR = "#1f77b4"


def _esc(values) -> list[str]:
    return [html.escape(str(v), quote=False) for v in values]


def feature_map(df: pd.DataFrame, title: str = "Every feature: how often it fires against its best label") -> go.Figure:
    """One point per feature (df: feature, frequency, max, label, direction, score): x the share of characters
    it fires on (log), y its best label's score, colour its largest activation. customdata = (feature, label,
    direction, max) for a click."""
    if df.empty:
        return _message("No features to show.", title)
    live = df[df["frequency"] > 0]
    if live.empty:
        return _message("No feature fires on this text.", title)
    label = live["label"].fillna("none")
    fig = go.Figure(go.Scatter(
        x=live["frequency"], y=live["score"].fillna(0.5), mode="markers",
        marker=dict(size=6, opacity=0.7, color=live["max"], colorscale="Viridis",
                    colorbar=dict(title="max", thickness=12)),
        customdata=np.stack([live["feature"], _esc(label), _esc(live["direction"].fillna("")), live["max"]], axis=1),
        hovertemplate=("feature %{customdata[0]}<br>%{customdata[2]} %{customdata[1]}: score %{y:.3f}"
                       "<br>fires on %{x:.2%} of characters<br>max %{customdata[3]:.3f}<extra></extra>")))
    fig.update_xaxes(title="share of characters it fires on (log)", type="log")
    fig.update_yaxes(title="best label's score (AUROC either way, or |r|)")
    fig.update_layout(title=title, clickmode="event+select", height=440)
    return fig


def feature_density(frequency: np.ndarray, feature: int | None = None,
                    title: str = "Feature density: how often each feature fires") -> go.Figure:
    """Histogram of log10(share of characters each feature fires on) over the features that fire; a
    line marks `feature`. Features that never fire are counted in the title."""
    f = np.asarray(frequency, dtype=np.float64)
    live = f[f > 0]
    dead = int((f == 0).sum())
    if not live.size:
        return _message("No feature fires on this text.", title)
    fig = go.Figure(go.Histogram(x=np.log10(live), nbinsx=40, marker_color=FEATURE_COLOR,
                                 hovertemplate="10^%{x} of characters<br>%{y} features<extra></extra>"))
    if feature is not None and f[feature] > 0:
        fig.add_vline(x=float(np.log10(f[feature])), line_color="#d62728", line_width=2,
                      annotation_text=f"feature {feature}", annotation_position="top")
    fig.update_xaxes(title="log10 share of characters it fires on")
    fig.update_yaxes(title="features")
    fig.update_layout(title=f"{title} ({dead:,} never fire)" if dead else title, height=300, bargap=0.02)
    return fig


def feature_logit_effect(effect: np.ndarray, chars: list[str], k: int = 10,
                 title: str = "Its decoder direction read by the output layer") -> go.Figure:
    """The k characters whose logits the direction raises most and the k it lowers most (W_dec[i] · head.weight)."""
    e = np.asarray(effect, dtype=np.float64)
    order = np.argsort(e)
    pick = np.concatenate([order[:k], order[::-1][:k][::-1]]) if len(e) > 2 * k else order
    fig = go.Figure(go.Bar(x=e[pick], y=[f"{_label(chars[i])} " for i in pick], orientation="h",
                           marker_color=np.where(e[pick] > 0, "#2ca02c", "#d62728"),
                           hovertemplate="%{y}: %{x:+.3f} per unit of activation<extra></extra>"))
    fig.update_xaxes(title="change in the logit per unit of activation")
    fig.update_yaxes(type="category", dtick=1)
    fig.update_layout(title=title, height=140 + 22 * len(pick))
    return fig


def feature_loadings(pairs: list[tuple[int, float]], layer: int, state: str,
             title: str = "The units its decoder direction loads on most") -> go.Figure:
    """Bars of W_dec[i] on the units it weighs most, (unit, weight) largest |weight| first."""
    if not pairs:
        return _message("No loadings.", title)
    units = [f"L{layer} {state}{u}" for u, _ in pairs][::-1]
    w = np.array([v for _, v in pairs])[::-1]
    fig = go.Figure(go.Bar(x=w, y=units, orientation="h", marker_color=np.where(w > 0, UNIT_COLOR, "#ff7f0e"),
                           hovertemplate="%{y}: %{x:+.3f}<extra></extra>"))
    fig.update_xaxes(title="weight in the decoder row (a unit-norm direction)")
    fig.update_yaxes(type="category", dtick=1)
    fig.update_layout(title=title, height=140 + 24 * len(pairs))
    return fig


def units_vs_features(rows: list[dict], title: str = "The best unit against the best feature, per hypothesis"
                      ) -> go.Figure:
    """Paired bars per hypothesis: the best unit's score and the best feature's; the hover adds which unit or
    feature, and its chance level (the best score any reaches against labels shifted round the text)."""
    if not rows:
        return _message("No hypothesis varies on this text.", title)
    names = _esc(r["hypothesis"] for r in rows)
    fig = go.Figure()
    for side, color, name in (("unit", UNIT_COLOR, "best unit"), ("feature", FEATURE_COLOR, "best feature")):
        what = [f"L{r['unit']['layer']} {r['unit']['state']}{r['unit']['unit']}" if side == "unit"
                else f"feature {r['feature']['feature']}" for r in rows]
        chance = [r[side].get("chance", float("nan")) for r in rows]
        fig.add_trace(go.Bar(y=names, x=[r[side]["score"] for r in rows], orientation="h", name=name,
                             marker_color=color, customdata=np.stack([what, chance], axis=1),
                             hovertemplate="%{y}<br>%{customdata[0]}: score %{x:.3f}<br>chance %{customdata[1]:.3f}"
                                           "<extra></extra>"))
    fig.update_layout(barmode="group", title=title, height=140 + 44 * len(rows), legend_orientation="h",
                      legend_y=-0.15)
    low = min(min(r[side]["score"] for r in rows) for side in ("unit", "feature"))
    fig.update_xaxes(title="score (AUROC either way, or |r|)", range=[min(0.5, max(0.0, low - 0.05)), 1.0])
    fig.update_yaxes(autorange="reversed")
    return fig
