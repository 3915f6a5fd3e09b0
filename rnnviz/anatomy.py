"""One exact step of one unit: every quantity of the cell's arithmetic at one character, from a Trace.

A Trace (rnnviz/trace.py) already holds h, c and every gate per character; a step reads h_{t-1},
c_{t-1} and the layer's input x_t from it and redoes one unit's rows of the arithmetic in float64
(a few small dot products, no rerun), so the pre-activation can be split into its three parts:

    input      W_ih[row] . x_t          x_t: the character's embedding row (layer 0; an unknown
                                        character uses the unknown id 0, as trace does), else
                                        layer l-1's h at t
    recurrent  W_hh[row] . h_{t-1}
    bias       b_ih[row] + b_hh[row]

The GRU's candidate follows PyTorch: n = tanh(W_in x + b_in + r * (W_hn h_{t-1} + b_hn)), the reset
gate multiplying W_hn h_{t-1} and b_hn both. Its parts are therefore
    input = W_in[row] . x_t,  recurrent = r * (W_hn[row] . h_{t-1}),  bias = b_in[row] + r * b_hn[row],
and its contributors are r * W_hn[row, j] * h_{t-1}[j], so that they add up to its recurrent part.
The parts of every gate add up to its pre-activation exactly (to float64 rounding).

Position 0 starts from the zero state, as trace does without a `state`.

The tour's stop "cell" (rnnviz/tour.py) opens pages/cell_page.py with these session-state keys:
"layer", "unit" (the quote cell), "cell_pos" (the position of the opening quote in the stop's text),
plus "text_source" and "excerpt_len" (the held-out excerpt every stop shows).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ConfigError
from .model import GATES, CharRNN
from .trace import Trace, trace as run_trace

VALUE_NAMES = {
    "lstm": ("h_prev", "c_prev", "i", "f", "g", "o", "f_c_prev", "i_g", "c", "tanh_c", "h"),
    "gru": ("h_prev", "r", "z", "n", "r_hn", "one_minus_z_n", "z_h_prev", "h"),
    "rnn": ("h_prev", "pre", "h"),
}
PARTS = ("input", "recurrent", "bias")


@dataclass
class CellStep:
    """Every quantity of one unit's step at one character; plain floats."""

    cell: str  # "lstm" | "gru" | "rnn"
    layer: int
    unit: int
    pos: int
    char: str
    values: dict[str, float]  # VALUE_NAMES[cell], in that order
    preact: dict[str, dict[str, float]]  # gate or candidate -> {"input", "recurrent", "bias"}
    contributors: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # gate -> [(j, value)]

    def total(self, gate: str) -> float:
        """The pre-activation of a gate or candidate: the sum of its three parts."""
        return sum(self.preact[gate].values())

    def to_json(self) -> dict:
        """The CLI's object: cell, layer, unit, pos, char, values, preact, contributors [{unit, value}]."""
        return {"cell": self.cell, "layer": self.layer, "unit": self.unit, "pos": self.pos, "char": self.char,
                "values": dict(self.values), "preact": {g: dict(p) for g, p in self.preact.items()},
                "contributors": {g: [{"unit": j, "value": v} for j, v in lst]
                                 for g, lst in self.contributors.items()}}


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _check(model: CharRNN, tr: Trace, pos: int, layer: int, unit: int, top: int) -> None:
    """Clear errors for a trace of another model, or a position, layer, unit or top out of range."""
    L, H = model.config.num_layers, model.config.hidden_size
    if tr.cell != model.cell or len(tr.layers) != L or tr.layers[0]["h"].shape[1] != H:
        raise ConfigError(f"this trace is of a {tr.cell.upper()} {len(tr.layers)}x{tr.layers[0]['h'].shape[1]}, "
                          f"not of this {model.cell.upper()} {L}x{H}")
    for name, v, n in (("pos", pos, len(tr)), ("layer", layer, L), ("unit", unit, H)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
            raise ConfigError(f"{name} must be a whole number from 0 to {n - 1}, not {v!r}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise ConfigError(f"top must be a whole number, 0 or more, not {top!r}")


def _rows(model: CharRNN, layer: int, unit: int):
    """This unit's rows of the layer's weights, one per gate, float64: W_ih (G, in), W_hh (G, H), b_ih, b_hh (G,)."""
    w = model.layer_weights(layer)
    G = len(GATES[model.cell]) or 1
    H = model.config.hidden_size
    idx = torch.arange(G, device=w["weight_hh"].device) * H + unit
    with torch.no_grad():
        return tuple(w[k].detach()[idx].double().cpu().numpy()
                     for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _layer_input(model: CharRNN, tr: Trace, pos: int, layer: int) -> np.ndarray:
    """x_t of the layer (in,): the character's embedding row, or the layer below's h at pos."""
    if layer > 0:
        return tr.layers[layer - 1]["h"][pos].astype(np.float64)
    with torch.no_grad():
        return model.embed.weight.detach()[int(tr.ids[pos])].double().cpu().numpy()


def _top(terms: np.ndarray, top: int) -> list[tuple[int, float]]:
    """The `top` largest |terms| as (j, signed value), largest first, ties by j; zero terms are left out."""
    order = np.argsort(-np.abs(terms), kind="stable")[:top]
    return [(int(j), float(terms[j])) for j in order if terms[j] != 0.0]


def step(model: CharRNN, trace: Trace, pos: int, layer: int, unit: int, top: int = 5) -> CellStep:
    """One unit's step at `pos`, read from a Trace of `model` (no rerun): values, pre-activation parts,
    the `top` recurrent contributors of each gate and candidate.

    Contributors are the terms W_hh[row, j] * h_{t-1}[j] (for the GRU's n, times r, as its recurrent part),
    largest |value| first; zero terms are left out, so at position 0 (h_{t-1} = 0) the lists are empty.
    """
    _check(model, trace, pos, layer, unit, top)
    cell = model.cell
    H = model.config.hidden_size
    w_ih, w_hh, b_ih, b_hh = _rows(model, layer, unit)  # (G, in), (G, H), (G,), (G,)
    here = trace.layers[layer]
    h_all = here["h"]
    h_prev_vec = h_all[pos - 1].astype(np.float64) if pos > 0 else np.zeros(H)  # (H,)
    x = _layer_input(model, trace, pos, layer)  # (in,)
    terms = w_hh * h_prev_vec  # (G, H): each gate's recurrent terms
    inp, rec = w_ih @ x, terms.sum(1)  # (G,), (G,)
    names = GATES[cell] or ("pre",)
    h_prev = float(h_prev_vec[unit])
    preact, contributors = {}, {}
    for k, name in enumerate(names):
        preact[name] = {"input": float(inp[k]), "recurrent": float(rec[k]), "bias": float(b_ih[k] + b_hh[k])}
        contributors[name] = _top(terms[k], top)
    if cell == "lstm":
        c_prev = float(here["c"][pos - 1, unit]) if pos > 0 else 0.0
        a = {n: sum(preact[n].values()) for n in names}
        i, f, o = _sigmoid(a["i"]), _sigmoid(a["f"]), _sigmoid(a["o"])
        g = float(np.tanh(a["g"]))
        c = f * c_prev + i * g
        tanh_c = float(np.tanh(c))
        values = dict(h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, f_c_prev=f * c_prev, i_g=i * g, c=c,
                      tanh_c=tanh_c, h=o * tanh_c)
    elif cell == "gru":
        r = _sigmoid(sum(preact["r"].values()))
        z = _sigmoid(sum(preact["z"].values()))
        # PyTorch: r scales W_hn h_{t-1} + b_hn, so both move into n's recurrent and bias parts times r
        preact["n"] = {"input": float(inp[2]), "recurrent": r * float(rec[2]),
                       "bias": float(b_ih[2]) + r * float(b_hh[2])}
        contributors["n"] = _top(r * terms[2], top)
        n = float(np.tanh(sum(preact["n"].values())))
        values = dict(h_prev=h_prev, r=r, z=z, n=n, r_hn=r * (float(rec[2]) + float(b_hh[2])),
                      one_minus_z_n=(1 - z) * n, z_h_prev=z * h_prev, h=(1 - z) * n + z * h_prev)
    else:
        pre = sum(preact["pre"].values())
        values = dict(h_prev=h_prev, pre=pre, h=float(np.tanh(pre)))
    return CellStep(cell=cell, layer=int(layer), unit=int(unit), pos=int(pos), char=trace.text[pos], values=values,
                    preact=preact, contributors=contributors)


def cell_step(model: CharRNN, text: str, pos: int, layer: int, unit: int, top: int = 5) -> CellStep:
    """Trace `text` from its first character up to `pos` (the state there depends on nothing after it), then step()."""
    if isinstance(text, str) and text and (isinstance(pos, bool) or not isinstance(pos, (int, np.integer))
                                           or not 0 <= pos < len(text)):
        raise ConfigError(f"pos must be a whole number from 0 to {len(text) - 1}, not {pos!r}")
    tr = run_trace(model, text[: pos + 1] if isinstance(text, str) and text else text, top_k=1)
    return step(model, tr, pos, layer, unit, top)
