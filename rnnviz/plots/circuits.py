"""A circuit through units and time (rnnviz.circuits): the graph of nodes and edges, and an intervention's
next-character distribution before and after."""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from ..errors import ConfigError
from .base import _label, _message
from .sampling import _unique

SUPPORTS, OPPOSES = "#d6604d", "#4393c3"  # red raises log p(c), blue lowers it (as on Why this character?)
BELT_FILL, HIDDEN_FILL = "rgba(253, 219, 120, 0.28)", "rgba(200, 200, 200, 0.18)"
EDGE_BINS = 4  # edges are drawn in this many widths (one plotly trace per width and sign)
BAND_GAP = 0.8  # empty rows between one band of units and the next
MAX_IN = 2  # edges drawn into each node: every kept pair would hide the graph under a fan of lines


def quoted(ch: str) -> str:
    """A character in quotes that differ from it: '"' and 'a' (escaped for plotly)."""
    q = '"' if ch == "'" else "'"
    return f"{q}{_label(ch)}{q}"


def node_label(node) -> str:
    """'L1 c85 at #47': a node's name."""
    return f"L{node.layer} {node.state}{node.unit} at #{node.pos}"


def circuit_rows(nodes) -> tuple[dict, list[tuple[int, str, float, float]]]:
    """(row y of each (layer, state, unit), bands as (layer, state, y_low, y_high)), bottom to top: per layer
    its h units, then its c units above them (the cell state's belt), so a unit's memory reads as one line."""
    rows, bands, y = {}, [], 0.0
    for layer in sorted({n.layer for n in nodes}):
        for state in ("h", "c"):
            units = sorted({n.unit for n in nodes if n.layer == layer and n.state == state})
            if not units:
                continue
            lo = y
            for u in units:
                rows[(layer, state, u)] = y
                y += 1.0
            bands.append((layer, state, lo - 0.5, y - 0.5))
            y += BAND_GAP
    return rows, bands


def _node_hover(node, text: str) -> str:
    ch = _label(text[node.pos]) if 0 <= node.pos < len(text) else "?"
    kind = "cell state" if node.state == "c" else "hidden state"
    return (f"<b>L{node.layer} {node.state}{node.unit}</b> ({kind}) at #{node.pos} '{ch}'<br>"
            f"value {node.value:+.3f}<br>"
            f"attribution (estimate) {node.attribution:+.3f}<br>"
            f"ablation (measured: zeroed, rerun) {node.ablation:+.3f}")


def _carries(edge, nodes) -> bool:
    """Whether an edge's weight has its later node's sign: the earlier node accounts for part of that value
    (else it pushes against it)."""
    return edge.weight * nodes[edge.dst].value >= 0


def _edge_traces(nodes, edges, xy) -> list[go.Scatter]:
    """Lines between kept nodes, wider and darker by |weight|, in EDGE_BINS widths per kind."""
    if not edges:
        return []
    w = np.abs(np.array([e.weight for e in edges], dtype=float))  # (E,)
    top = float(w.max()) or 1.0
    level = np.minimum((w / top * EDGE_BINS).astype(int), EDGE_BINS - 1)  # (E,) 0 = faintest
    traces = []
    for carries, colour, name in ((True, "90, 90, 90", "edge: carries part of the later value"),
                                  (False, "160, 90, 200", "edge: pushes against the later value")):
        shown = False
        for b in range(EDGE_BINS):
            xs, ys = [], []
            for e, lv in zip(edges, level):
                if lv == b and _carries(e, nodes) == carries:
                    (x0, y0), (x1, y1) = xy[e.src], xy[e.dst]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
            if not xs:
                continue
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", name=name,
                                     legendgroup=name, showlegend=not shown,
                                     line=dict(width=0.8 + 2.2 * b, color=f"rgba({colour}, {0.15 + 0.12 * b:.2f})")))
            shown = True
    return traces


def _edge_hovers(nodes, edges, xy) -> go.Scatter | None:
    """An invisible point at each edge's middle whose hover says what the edge is."""
    if not edges:
        return None
    mx = [(xy[e.src][0] + xy[e.dst][0]) / 2 for e in edges]
    my = [(xy[e.src][1] + xy[e.dst][1]) / 2 for e in edges]
    hover = [f"{node_label(nodes[e.src])} → {node_label(nodes[e.dst])}<br>accounts for {e.weight:+.3f} of its value "
             f"{nodes[e.dst].value:+.3f} (the value less its value with {node_label(nodes[e.src])} zeroed)"
             for e in edges]
    return go.Scatter(x=mx, y=my, mode="markers", marker=dict(size=6, opacity=0), hovertext=hover,
                      hoverinfo="text", showlegend=False, name="edges")


def strongest_edges(edges, max_in: int | None) -> list:
    """The max_in edges of largest |weight| into each node (all of them when max_in is None)."""
    if max_in is None:
        return list(edges)
    into: dict[int, list] = {}
    for e in edges:
        into.setdefault(e.dst, []).append(e)
    keep = {id(e) for es in into.values() for e in sorted(es, key=lambda e: -abs(e.weight))[:max_in]}
    return [e for e in edges if id(e) in keep]


def circuit_graph(circ, text: str, title: str | None = None, selected: int | None = None,
                  max_in: int | None = MAX_IN) -> go.Figure:
    """The circuit: time along x with the characters under it, one row per unit (each layer's c units on a belt
    above its h units), nodes sized by |ablation| and coloured by its sign, each node's max_in strongest incoming
    edges by weight, the target at the right. Node traces carry customdata [index, layer, state, unit, pos] for a
    click."""
    nodes, edges = list(circ.nodes), strongest_edges(circ.edges, max_in)
    t, char = int(circ.target["pos"]), circ.target["char"]
    if not nodes:
        return _message("No node in this circuit.", title or "")
    rows, bands = circuit_rows(nodes)
    xy = [(n.pos, rows[(n.layer, n.state, n.unit)]) for n in nodes]
    abl = np.array([n.ablation for n in nodes], dtype=float)  # (N,)
    top = float(np.abs(abl).max()) or 1.0
    size = 7 + 26 * np.sqrt(np.abs(abl) / top)  # (N,) area grows with |ablation|
    fig = go.Figure()
    for layer, state, lo, hi in bands:
        fig.add_shape(type="rect", xref="paper", x0=0, x1=1, y0=lo, y1=hi, line_width=0, layer="below",
                      fillcolor=BELT_FILL if state == "c" else HIDDEN_FILL)
    for tr in _edge_traces(nodes, edges, xy):
        fig.add_trace(tr)
    hov = _edge_hovers(nodes, edges, xy)
    if hov is not None:
        fig.add_trace(hov)
    for sign, colour, name in ((-1, SUPPORTS, "zeroing it lowers log p(c): it carries c"),
                               (1, OPPOSES, "zeroing it raises log p(c): it works against c")):
        idx = [i for i, a in enumerate(abl) if (a < 0 if sign < 0 else a >= 0)]
        if not idx:
            continue
        fig.add_trace(go.Scatter(
            x=[xy[i][0] for i in idx], y=[xy[i][1] for i in idx], mode="markers", name=name,
            marker=dict(size=size[idx].tolist(), color=colour, symbol=["diamond" if nodes[i].state == "c" else "circle"
                                                               for i in idx],
                        line=dict(width=[3 if i == selected else 1 for i in idx],
                                  color=["black" if i == selected else "white" for i in idx])),
            customdata=[[i, nodes[i].layer, nodes[i].state, nodes[i].unit, nodes[i].pos] for i in idx],
            hovertext=[_node_hover(nodes[i], text) for i in idx], hoverinfo="text"))
    y_mid = (min(y for _, y in xy) + max(y for _, y in xy)) / 2
    fig.add_trace(go.Scatter(x=[t + 1], y=[y_mid], mode="markers+text", name="the target",
                             marker=dict(size=22, symbol="star", color="#222"), text=[quoted(char)],
                             textposition="top center", textfont=dict(size=18), showlegend=False,
                             hovertext=[f"target: p({quoted(char)}) after reading #{t}<br>"
                                        f"log p = {circ.target['logp']:+.3f}"], hoverinfo="text"))
    fig.add_vline(x=t + 0.5, line=dict(color="#888", dash="dot", width=1))
    lo = min(n.pos for n in nodes)
    positions = list(range(max(0, lo - 1), t + 1))
    ticks = [_label(text[p]) if p < len(text) else "" for p in positions]
    fig.update_xaxes(tickmode="array", tickvals=positions, ticktext=ticks,
                     tickangle=0, tickfont=dict(size=14, family="monospace"), range=[positions[0] - 0.8, t + 1.8],
                     title=f"the characters read, #{positions[0]} to #{t}; the prediction at the right", showgrid=False)
    names = {y: f"L{l} {s}{u}" for (l, s, u), y in rows.items()}
    height = int(min(1400, max(460, 26 * len(names) + 270)))
    fig.update_yaxes(tickmode="array", tickvals=list(names), ticktext=list(names.values()), showgrid=False,
                     zeroline=False, range=[min(names) - 0.9, max(names) + 0.9])
    for layer, state, lo_y, hi_y in bands:
        fig.add_annotation(xref="paper", x=1.0, xanchor="left", y=(lo_y + hi_y) / 2, showarrow=False,
                           text=f"layer {layer}<br>{'c (belt)' if state == 'c' else 'h'}", font=dict(size=11),
                           align="left")
    for p in range(positions[0] + (-positions[0]) % 5, t + 1, 5):  # position numbers every 5 characters
        fig.add_annotation(x=p, y=1.0, yref="paper", yanchor="bottom", text=str(p), showarrow=False,
                           font=dict(size=9, color="#777"))
    fig.update_layout(title=title or f"How p({quoted(char)}) after #{t} was computed",
                      height=height, hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-75 / (height - 70 - 150), x=0),  # under the axis title
                      margin=dict(l=70, r=80, t=70, b=150), plot_bgcolor="white")
    return fig


def intervention_bars(probs_before, probs_after, vocab: list[str], char: str, top: int = 12,
                      title: str | None = None) -> go.Figure:
    """Grouped bars: the next-character distribution before and after an intervention, over the characters most
    likely in either (the target c always among them)."""
    before = np.asarray(probs_before, dtype=float).reshape(-1)  # (V,)
    after = np.asarray(probs_after, dtype=float).reshape(-1)  # (V,)
    if before.shape != after.shape or len(before) != len(vocab):
        raise ConfigError(f"{len(before)} and {len(after)} probabilities for a vocabulary of {len(vocab)}")
    order = list(np.argsort(-np.maximum(before, after), kind="stable")[:top])  # most likely in either first
    if char in vocab and vocab.index(char) not in order:
        order[-1] = vocab.index(char)
    names = _unique([_label(vocab[i]) for i in order])
    edge = ["black" if vocab[i] == char else "rgba(0,0,0,0)" for i in order]
    fig = go.Figure()
    for p, name, colour in ((before, "before", "#9e9e9e"), (after, "after the intervention", "#d6604d")):
        fig.add_trace(go.Bar(x=names, y=p[order].tolist(), name=name, marker=dict(color=colour, line=dict(color=edge, width=2)),
                             hovertemplate=f"{html.escape(name)}: '%{{x}}' p = %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=title or f"The next character before and after (the target {quoted(char)} outlined)",
                      barmode="group", xaxis_title="next character", yaxis_title="probability", xaxis_tickfont=dict(size=14),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
                      height=360, margin=dict(t=80))
    fig.update_xaxes(type="category")
    return fig
