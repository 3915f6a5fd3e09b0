"""Inside the cell: one unit's step drawn as Olah draws it (the belt, the gates, × and +, tanh), the text
strip above it, the pre-activation parts beside it and the unit along the window under it.

The diagram reads a step's named values (rnnviz.anatomy.CellStep.values): each wire is coloured by its
value on one diverging scale, and carries its value written on it (an annotation whose `name` is the
value's key, so a test can read the figure back).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from ..errors import ConfigError
from ..model import GATES
from .base import _labels

# blue (negative) through grey (zero: a white wire would vanish on the page) to red (positive)
WIRE_SCALE = [[0.0, "rgb(33,102,172)"], [0.5, "rgb(200,200,200)"], [1.0, "rgb(178,24,43)"]]
WIRE_LIMIT = 1.0  # the scale's ends; a value beyond (a cell state of 3, say) gets the end's colour
BUS_WORDS = "[h<sub>t−1</sub>, x<sub>t</sub>]: every unit's h<sub>t−1</sub> and the character"
BUS = "rgb(90,90,90)"  # the vector [h_(t-1), x_t]: no single value, so no value colour
BOX = "rgb(253,231,151)"  # Olah's yellow layer boxes
OP = "rgb(248,200,207)"  # and his pink pointwise operations
STATE_COLORS = {"c": "rgb(106,61,154)", "h": "rgb(230,120,0)"}  # apart from the red and blue of values
FONT = 15  # readable on a projector at 1280 x 800
REQUIRED = {"lstm": ("h_prev", "c_prev", "i", "f", "g", "o", "f_c_prev", "i_g", "c", "tanh_c", "h"),
            "gru": ("h_prev", "r", "z", "n", "r_hn", "one_minus_z_n", "z_h_prev", "h"),
            "rnn": ("h_prev", "pre", "h")}
# what each value is called on the diagram (plotly reads <sub>)
NAMES = {"h_prev": "h<sub>t−1</sub>", "c_prev": "c<sub>t−1</sub>", "f_c_prev": "f·c<sub>t−1</sub>", "i_g": "i·g",
         "c": "c<sub>t</sub>", "tanh_c": "tanh(c<sub>t</sub>)", "h": "h<sub>t</sub>", "pre": "pre",
         "r_hn": "r·(W<sub>hn</sub>h+b<sub>hn</sub>)", "one_minus_z_n": "(1−z)·n", "z_h_prev": "z·h<sub>t−1</sub>",
         "one_minus_z": "1−z"}


class _Drawing:
    """Traces, shapes and annotations gathered as plain dicts and validated once into a Figure: plotly's
    add_shape and add_annotation copy and re-validate the whole list on every call (seconds per redraw here)."""

    def __init__(self):
        self.data, self.shapes, self.annotations = [], [], []

    def add_trace(self, **trace) -> None:
        self.data.append(trace)

    def add_shape(self, **shape) -> None:
        self.shapes.append(shape)

    def add_annotation(self, **annotation) -> None:
        self.annotations.append(annotation)


def wire_color(value: float) -> str:
    """The colour of a wire carrying `value` (clipped to ±WIRE_LIMIT)."""
    t = (float(np.clip(value, -WIRE_LIMIT, WIRE_LIMIT)) + WIRE_LIMIT) / (2 * WIRE_LIMIT)
    return sample_colorscale(WIRE_SCALE, [t])[0]


def _wire(fig: _Drawing, points, key: str | None, value: float | None, width: int = 6) -> None:
    """A polyline through points; coloured by value (None: the grey bus), its exact value on hover."""
    xs, ys = zip(*points)
    color = BUS if value is None else wire_color(value)
    hover = "skip" if value is None else None
    fig.add_trace(type="scatter", x=xs, y=ys, mode="lines",
                  line=dict(color=color, width=width if value is not None else 3),
                  hoverinfo=hover, showlegend=False, name=key or "bus",  # the value's key: a test reads it back
                  hovertemplate=None if value is None else f"{NAMES.get(key, key)} = {value:+.5f}<extra></extra>")


def _label(fig: _Drawing, key: str, value: float, x: float, y: float, anchor: str = "left") -> None:
    """The value written beside its wire; `name` is the value's key."""
    fig.add_annotation(x=x, y=y, text=f"{NAMES.get(key, key)} = {value:+.3f}", name=key, showarrow=False,
                       xanchor=anchor, yanchor="middle", font=dict(size=FONT, color="black"),
                       bgcolor="rgba(255,255,255,0.9)", bordercolor=wire_color(value), borderwidth=2, borderpad=2)


def _box(fig: _Drawing, x: float, y: float, symbol: str, caption: str, w: float = 3.2, h: float = 3.2) -> None:
    """A layer (σ or tanh) as Olah's yellow box, its role in small grey words under it."""
    fig.add_shape(type="rect", x0=x - w, x1=x + w, y0=y - h, y1=y + h, fillcolor=BOX,
                  line=dict(color="black", width=1.5), layer="above")
    fig.add_annotation(x=x, y=y, text=symbol, showarrow=False, font=dict(size=FONT + 2, color="black"))
    if caption:
        fig.add_annotation(x=x, y=y - h - 0.6, text=caption, showarrow=False, yanchor="top",
                           font=dict(size=FONT - 3, color="rgb(90,90,90)"))


def _op(fig: _Drawing, x: float, y: float, symbol: str, r: float = 2.2) -> None:
    """A pointwise operation (×, +, 1−, tanh) as a pink circle."""
    wide = 1.6 if len(symbol) > 1 else 1.0
    fig.add_shape(type="circle", x0=x - r * wide, x1=x + r * wide, y0=y - r, y1=y + r, fillcolor=OP,
                  line=dict(color="black", width=1.5), layer="above")
    fig.add_annotation(x=x, y=y, text=symbol, showarrow=False, font=dict(size=FONT + 1, color="black"))


def _input(fig: _Drawing, char: str, bus_end: float, feeds: list[float], caption: str) -> None:
    """x_t rising into the bus [h_(t-1), x_t], the bus, and its feeds up into the layer boxes at y = 20.8."""
    _wire(fig, [(10, -2), (10, 8)], None, None)
    fig.add_annotation(x=10, y=-2.5, text=f"x<sub>t</sub> = {_labels(char)[0]!r}" if char else "x<sub>t</sub>",
                       showarrow=False, yanchor="top", font=dict(size=FONT, color="black"))
    _wire(fig, [(10, 8), (bus_end, 8)], None, None)
    for x in feeds:
        _wire(fig, [(x, 8), (x, 20.8)], None, None)
    fig.add_annotation(x=(10 + bus_end) / 2, y=7.2, text=caption, showarrow=False, yanchor="top",
                       font=dict(size=FONT - 3, color="rgb(90,90,90)"))


def _lstm(fig: _Drawing, v: dict, char: str) -> None:
    belt = 52
    _wire(fig, [(0, belt), (25.8, belt)], "c_prev", v["c_prev"])
    _wire(fig, [(30.2, belt), (49.8, belt)], "f_c_prev", v["f_c_prev"])
    _wire(fig, [(54.2, belt), (100, belt)], "c", v["c"])
    _wire(fig, [(28, 27.2), (28, 49.8)], "f", v["f"])
    _wire(fig, [(42, 27.2), (42, 38), (49.8, 38)], "i", v["i"])
    _wire(fig, [(62, 27.2), (62, 38), (54.2, 38)], "g", v["g"])
    _wire(fig, [(52, 40.2), (52, 49.8)], "i_g", v["i_g"])
    _wire(fig, [(86, belt), (86, 41.2)], "c", v["c"])
    _wire(fig, [(86, 36.8), (86, 26.2)], "tanh_c", v["tanh_c"])
    _wire(fig, [(75.2, 24), (83.8, 24)], "o", v["o"])
    _wire(fig, [(88.2, 24), (100, 24)], "h", v["h"])
    _wire(fig, [(0, 8), (10, 8)], "h_prev", v["h_prev"])
    _input(fig, char, 72, [28, 42, 62], BUS_WORDS)
    _wire(fig, [(62, 8), (72, 8), (72, 20.8)], None, None)
    for x, sym, cap in ((28, "σ", "forget"), (42, "σ", "input"), (62, "tanh", "candidate"), (72, "σ", "output")):
        _box(fig, x, 24, sym, cap, w=4 if sym == "tanh" else 3.2)
    _op(fig, 28, belt, "×")
    _op(fig, 52, belt, "+")
    _op(fig, 52, 38, "×")
    _op(fig, 86, 39, "tanh")
    _op(fig, 86, 24, "×")
    _label(fig, "c_prev", v["c_prev"], 1, belt + 3.5)
    _label(fig, "f", v["f"], 29.5, 40)
    _label(fig, "f_c_prev", v["f_c_prev"], 31, belt + 3.5)
    _label(fig, "i", v["i"], 40.5, 33, "right")
    _label(fig, "g", v["g"], 63.5, 33)
    _label(fig, "i_g", v["i_g"], 53.5, 44.5)
    _label(fig, "c", v["c"], 62, belt + 3.5)
    _label(fig, "tanh_c", v["tanh_c"], 87.5, 31.5)
    _label(fig, "o", v["o"], 79.5, 28, "center")
    _label(fig, "h", v["h"], 99, 19.5, "right")
    _label(fig, "h_prev", v["h_prev"], 1, 11.5)


def _gru(fig: _Drawing, v: dict, char: str) -> None:
    belt = 52
    _wire(fig, [(0, belt), (27.8, belt)], "h_prev", v["h_prev"])
    _wire(fig, [(5, belt), (5, 8), (10, 8)], "h_prev", v["h_prev"])
    _wire(fig, [(32.2, belt), (67.8, belt)], "z_h_prev", v["z_h_prev"])
    _wire(fig, [(72.2, belt), (100, belt)], "h", v["h"])
    _wire(fig, [(30, 25.2), (30, 49.8)], "z", v["z"])
    one_minus_z = 1.0 - v["z"]
    _wire(fig, [(30, 36), (46.5, 36)], "z", v["z"])
    _wire(fig, [(53.5, 36), (67.8, 36)], "one_minus_z", one_minus_z)
    _wire(fig, [(70, 25.2), (70, 33.8)], "n", v["n"])
    _wire(fig, [(70, 38.2), (70, 49.8)], "one_minus_z_n", v["one_minus_z_n"])
    _wire(fig, [(47.2, 22), (55.8, 22)], "r", v["r"])
    _wire(fig, [(60.2, 22), (66.8, 22)], "r_hn", v["r_hn"])
    _input(fig, char, 70, [30, 44, 70], BUS_WORDS)
    _wire(fig, [(58, 8), (58, 19.8)], None, None)
    fig.add_annotation(x=57.2, y=12.5, text="W<sub>hn</sub>h<sub>t−1</sub>+b<sub>hn</sub>", showarrow=False,
                       xanchor="right", font=dict(size=FONT - 3, color="rgb(90,90,90)"))
    for x, sym, cap in ((30, "σ", "update"), (44, "σ", "reset"), (70, "tanh", "candidate")):
        _box(fig, x, 22, sym, cap, w=3.2)
    _op(fig, 30, belt, "×")
    _op(fig, 70, belt, "+")
    _op(fig, 50, 36, "1−")
    _op(fig, 70, 36, "×")
    _op(fig, 58, 22, "×")
    _label(fig, "h_prev", v["h_prev"], 7, belt + 3.5)
    _label(fig, "z", v["z"], 28.5, 44, "right")
    _label(fig, "z_h_prev", v["z_h_prev"], 36, belt + 3.5)
    _label(fig, "one_minus_z_n", v["one_minus_z_n"], 71.5, 44)
    _label(fig, "n", v["n"], 71.5, 30)
    _label(fig, "r", v["r"], 44, 29, "center")  # above the reset box, whose output it is
    _label(fig, "r_hn", v["r_hn"], 60, 29, "center")
    _label(fig, "h", v["h"], 99, belt + 3.5, "right")


def _rnn(fig: _Drawing, v: dict, char: str) -> None:
    _wire(fig, [(0, 8), (10, 8)], "h_prev", v["h_prev"])
    _input(fig, char, 50, [], BUS_WORDS)
    _wire(fig, [(50, 8), (50, 32.8)], "pre", v["pre"])
    _wire(fig, [(50, 39.2), (50, 48), (100, 48)], "h", v["h"])
    _box(fig, 50, 36, "tanh", "", w=4)
    _label(fig, "h_prev", v["h_prev"], 1, 11.5)
    _label(fig, "pre", v["pre"], 51.5, 22)
    _label(fig, "h", v["h"], 99, 52, "right")


DRAW = {"lstm": _lstm, "gru": _gru, "rnn": _rnn}


def cell_diagram(cell: str, values: dict[str, float], char: str = "", title: str = "") -> go.Figure:
    """One unit's step as Olah draws the cell (LSTM, GRU in PyTorch's convention, tanh RNN): every wire
    coloured by the value it carries, the value written beside it; the bus [h_(t-1), x_t] in grey."""
    if cell not in DRAW:
        raise ConfigError(f"no diagram for a {cell!r} cell; there is one for {', '.join(DRAW)}")
    missing = [k for k in REQUIRED[cell] if k not in values]
    if missing:
        raise ConfigError(f"a {cell.upper()} step needs {', '.join(missing)}")
    fig = _Drawing()
    DRAW[cell](fig, {k: float(v) for k, v in values.items()}, char)
    # the colour bar: one invisible point carries the wires' scale
    fig.add_trace(type="scatter", x=[-50], y=[-50], mode="markers", hoverinfo="skip", showlegend=False,
                  marker=dict(color=[0.0], colorscale=WIRE_SCALE, cmin=-WIRE_LIMIT, cmax=WIRE_LIMIT, showscale=True,
                              colorbar=dict(title=dict(text="value on<br>the wire", font=dict(size=FONT - 2)),
                                            tickvals=[-WIRE_LIMIT, 0, WIRE_LIMIT],
                                            ticktext=[f"≤ −{WIRE_LIMIT:g}", "0", f"≥ +{WIRE_LIMIT:g}"],
                                            tickfont=dict(size=FONT - 2), thickness=14, len=0.8)))
    return go.Figure(data=fig.data, layout=dict(
        shapes=fig.shapes, annotations=fig.annotations,
        xaxis=dict(visible=False, range=[-1, 101], fixedrange=True),
        yaxis=dict(visible=False, range=[-7, 58 if cell != "rnn" else 56], fixedrange=True),
        title=dict(text=title, font=dict(size=FONT + 2)) if title else None, height=470 if cell != "rnn" else 400,
        margin=dict(l=10, r=10, t=50 if title else 10, b=10), plot_bgcolor="white",
        hoverlabel=dict(font_size=FONT), dragmode=False))


def text_strip(text: str, first: int, pos: int) -> go.Figure:
    """The characters of a window of the text as a clickable row (each point's x: its position in the
    whole text), the character at `pos` outlined."""
    x = first + np.arange(len(text))
    fig = go.Figure(go.Scatter(
        x=x, y=np.zeros(len(text)), mode="markers+text", text=_labels(text),
        textfont=dict(size=FONT + 3, family="monospace", color="black"),
        marker=dict(symbol="square", size=18, color="rgba(0,0,0,0)"),  # invisible, but a click target
        hovertemplate="#%{x}: %{text}<extra>click to step here</extra>", showlegend=False))
    # the cell of the character studied, exactly one character wide whatever the chart's width
    fig.add_shape(type="rect", x0=pos - 0.5, x1=pos + 0.5, y0=-0.9, y1=0.9, fillcolor="rgb(255,236,160)",
                  line=dict(color="black", width=3), layer="below")
    fig.update_xaxes(visible=False, range=[first - 0.7, first + max(len(text), 1) - 0.3], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-1, 1], fixedrange=True)
    fig.update_layout(height=56, margin=dict(l=10, r=10, t=4, b=4), plot_bgcolor="rgb(245,245,245)",
                      dragmode=False, clickmode="event+select")
    return fig


PART_NAMES = {"input": "input x", "recurrent": "recurrent h", "bias": "bias"}


def _rows(n: int, gap: float, top: float = 1.0) -> list[list[float]]:
    """n stacked plot domains, top first, in [0, top] of the paper, `gap` between them."""
    h = (top - gap * (n - 1)) / n
    return [[max(0.0, top - k * (h + gap) - h), top - k * (h + gap)] for k in range(n)]


def _axis(k: int) -> str:
    """The name of plotly's k-th axis (0-based): '', '2', '3' ..."""
    return "" if k == 0 else str(k + 1)


def preact_bars(preact: dict[str, dict[str, float]], values: dict[str, float] | None = None) -> go.Figure:
    """Each gate's (and the candidate's) pre-activation split into its three parts, one small bar chart
    per gate on a shared axis; the title of each gives the sum and, with `values`, the gate's value."""
    gates = list(preact)
    if not gates:
        raise ConfigError("no pre-activations to draw")
    squash = {"g": "tanh", "n": "tanh"}
    parts = ["input", "recurrent", "bias"]
    data, layout, titles = [], {}, []
    for k, (gname, dom) in enumerate(zip(gates, _rows(len(gates), 0.1, 0.94))):
        xs = [float(preact[gname][p]) for p in parts]
        t = f"<b>{gname}</b>: sum {sum(xs):+.3f}"
        if values and gname in values and gname != "pre":
            t += f" → {squash.get(gname, 'σ')} = {values[gname]:+.3f}"
        titles.append(dict(text=t, x=0.5, y=dom[1], xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                           showarrow=False, font=dict(size=FONT - 1)))
        a = _axis(k)
        data.append(dict(type="bar", x=xs, y=[PART_NAMES[p] for p in parts], orientation="h", showlegend=False,
                         xaxis=f"x{a}", yaxis=f"y{a}", marker_color=[wire_color(1 if x > 0 else -1) for x in xs],
                         text=[f"{x:+.2f}" for x in xs], textposition="auto", textfont=dict(size=FONT - 3),
                         hovertemplate=f"{gname}, %{{y}}: %{{x:+.4f}}<extra></extra>"))
        layout[f"yaxis{a}"] = dict(domain=dom, anchor=f"x{a}", autorange="reversed", tickfont=dict(size=FONT - 4),
                                   fixedrange=True)
        layout[f"xaxis{a}"] = dict(anchor=f"y{a}", matches="x" if k else None, showticklabels=k == len(gates) - 1,
                                   zeroline=True, zerolinecolor="black", zerolinewidth=1, tickfont=dict(size=FONT - 4),
                                   fixedrange=True)
    return go.Figure(data=data, layout=dict(**layout, annotations=titles, height=110 * len(gates) + 50,
                                            margin=dict(l=95, r=10, t=30, b=25), bargap=0.25))


def unit_window(trace, layer: int, unit: int, first: int = 0, pos: int | None = None) -> go.Figure:
    """The unit's states along a window of the text (c and h; a GRU's or RNN's h), with each gate's
    ribbon aligned under them and the step studied marked; `trace` is the window's part of a Trace,
    `first` the position of its first character in the whole text."""
    gates = list(GATES[trace.cell]) or ["pre"]
    states = ["c", "h"] if trace.cell == "lstm" else ["h"]
    n = len(trace.text)
    x = first + np.arange(n)
    labels = _labels(trace.text)
    data = []
    for kind in states:
        values = trace.get(layer, kind)
        if not 0 <= unit < values.shape[1]:
            raise ConfigError(f"unit must be from 0 to {values.shape[1] - 1}, not {unit}")
        data.append(dict(type="scatter", x=x, y=values[:, unit], mode="lines+markers", name=f"{kind}{unit}",
                         customdata=labels, marker=dict(size=5, color=STATE_COLORS[kind]),
                         line=dict(width=2, color=STATE_COLORS[kind]),
                         hovertemplate=f"#%{{x}} '%{{customdata}}'<br>{kind} %{{y:+.3f}}<extra></extra>"))
    ribbons = _rows(len(gates), 0.015, 0.54)
    layout = {"yaxis": dict(domain=[0.6, 1.0], title=dict(text="value"), fixedrange=True)}
    for k, kind in enumerate(gates, start=1):
        values = trace.get(layer, kind)[:, unit]
        sigmoid = kind in ("i", "f", "o", "r", "z")
        data.append(dict(type="heatmap", x=x, y=[kind], z=[values], customdata=[labels], showscale=False,
                         xaxis="x", yaxis=f"y{k + 1}",
                         colorscale=[[0, "white"], [1, "rgb(49,163,84)"]] if sigmoid else WIRE_SCALE,
                         zmin=0 if sigmoid else -1, zmax=1,
                         hovertemplate=f"#%{{x}} '%{{customdata}}'<br>{kind} %{{z:.3f}}<extra></extra>"))
        layout[f"yaxis{k + 1}"] = dict(domain=ribbons[k - 1], tickfont=dict(size=FONT), fixedrange=True)
    layout["xaxis"] = dict(anchor=f"y{len(gates) + 1}", tickmode="array", tickvals=x.tolist(), ticktext=labels,
                           tickangle=0, tickfont=dict(size=FONT - 3), range=[first - 0.7, first + max(n, 1) - 0.3],
                           fixedrange=True)
    shapes = [] if pos is None else [dict(type="line", x0=pos, x1=pos, y0=0, y1=1, xref="x", yref="paper",
                                          line=dict(color="black", width=2, dash="dot"))]
    return go.Figure(data=data, layout=dict(
        **layout, shapes=shapes, height=260 + 42 * len(gates), margin=dict(l=60, r=10, t=30, b=30),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        hoverlabel=dict(font_size=FONT - 1)))
