"""The vanishing-gradient lesson: the curves the Gradients page opens on, and the sentences that read them.

Three fresh cells on the same text tell it: a tanh RNN loses its gradient step by step; an LSTM
whose forget gate is open (f near 1) carries it; the very same LSTM with f near 0.5 loses it too,
so the gate, not the name of the architecture, does the work. Trained models tell it again on the
memory task, where the RNN's recall fails at the gaps over which its gradient has vanished.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .experiments import CHANCE, recall_example
from .gradients import GradientFlow, fresh_model, gradient_norms, path_gain
from .hypotheses import HYPOTHESES, hypothesis_mask
from .model import CharRNN
from .render import char_label
from .trace import trace
from .vocab import Vocab

RADIUS = 0.9  # the fresh RNN's spectral radius: below 1, its gradient vanishes
OPEN_BIAS = 3.0  # forget-gate bias of the LSTM that remembers: f = sigmoid(3 + ...) ~ 0.95
HALF_BIAS = 0.0  # the same LSTM with its forget gate half shut: f ~ 0.5, PyTorch's default
UPDATE_BIAS = 3.0  # the GRU's update-gate bias: z ~ 0.95 keeps its state (PyTorch's convention)
DISTANCE = 50  # the distance the sentences and the tests read the curves at
MEMORY_GAP = 64  # the recall example of the trained memory models: the longest gap they learned


# The Gradients page's "How to read this", kept with the lesson whose charts it explains.
EXPLANATION = """
**The question.** A model reads a text and predicts its last character. How much would that prediction's loss
change if the state *d* steps earlier had been different? That is the gradient ‖∂L/∂h‖ at distance *d*. Learning
to use something seen *d* steps ago needs this gradient to arrive; the charts show, on a log scale, its size
divided by the gradient at the predicted character (distance 0): below 1 it has shrunk, above 1 it has grown.

**A vanilla RNN (red)** multiplies the gradient at every step by its recurrent matrix and by the slope of tanh
(at most 1). With a spectral radius ρ below 1 the share left falls by a roughly constant factor per step: after 50
steps almost nothing is left. The red dotted line is the most any gradient could keep along this text, the norm of
the product of the RNN's own step Jacobians; the solid curve runs under it.

**An LSTM (blue)** keeps a cell state updated by *adding*: c = f·c + i·g. Back through time, the cell's gradient
(dashed) is multiplied by the forget gate f at each step, so where f stays near 1 it is carried across. The dark
blue LSTM's forget gates are open (f̄ ≈ 0.95); the light blue one is **the same LSTM with f̄ ≈ 0.5**, and it loses
its gradient (how fast, against the RNN, is said under the chart). The gate, not the name of the architecture, does
the work. The cell's gradient (dashed) may rise above 1: each step back it gathers the gradient of that step's h,
and open forget gates carry the sum along. The dotted blue lines are the product of the forget gates met along the
text (the largest over units): what the cell path alone carries.

**A GRU (green)** does the same with its update gate z: h = (1 − z)·n + z·h_prev, so z near 1 keeps the state
(this is PyTorch's convention; in Cho et al.'s paper z is the other way round). Its dotted line is the product of z.
"""


class _Shares:
    """The gradient left at each distance, read from a GradientFlow `flow`."""

    def relative(self, kind: str = "h") -> np.ndarray:
        """(T,) ||dL/dh_t|| (or ||dL/dc_t||) of the top layer over ||dL/dh_(T-1)||: the share left."""
        norms = self.flow.dh if kind == "h" else self.flow.dc
        return norms[-1] / self.flow.dh[-1, -1]

    def at(self, distance: int, kind: str = "h") -> float:
        """The share left `distance` steps before the loss (clipped to the text's length)."""
        y = self.relative(kind)
        return float(y[max(0, len(y) - 1 - distance)])


@dataclass
class Curve(_Shares):
    """One model's gradient through time, with the path gain and the gate mean that explain it."""

    key: str  # "rnn", "lstm-open", "lstm-half", "gru"
    label: str
    cell: str
    shade: int  # 0: the cell's own colour; 1: a lighter one, for a second model of the same cell
    flow: GradientFlow
    gain: np.ndarray  # (T,) path_gain of the top layer, 1 at the last step
    gain_name: str
    gate_mean: float | None  # f-bar of an LSTM or z-bar of a GRU over the text; None for an RNN


@dataclass
class Move(_Shares):
    """What one Try-this move would draw: a fresh model's gradient and gate mean, without the path gain
    (for an RNN the gain costs several times the gradient, and the words need only the curve)."""

    key: str
    flow: GradientFlow
    gate_mean: float | None


def curve(key: str, label: str, model: CharRNN, text: str, shade: int = 0, per_unit: bool = False) -> Curve:
    """Measure one model on `text` (its last character is the one predicted)."""
    flow = gradient_norms(model, text, per_unit=per_unit)
    gain, name = path_gain(model, text)
    gate = {"lstm": "f", "gru": "z"}.get(model.cell)
    mean = float(trace(model, text[:-1], top_k=1).layers[-1][gate].mean()) if gate else None
    return Curve(key, label, model.cell, shade, flow, gain, name, mean)


# key -> (cell, the fresh_model knob that key's control sets)
_KNOBS = {"rnn": lambda k: ("rnn", {"spectral_radius": RADIUS if k is None else k}),
          "lstm-open": lambda k: ("lstm", {"forget_bias": OPEN_BIAS if k is None else k}),
          "lstm-half": lambda k: ("lstm", {"forget_bias": HALF_BIAS if k is None else k}),
          "gru": lambda k: ("gru", {"update_bias": UPDATE_BIAS if k is None else k})}


def fresh_curve(key: str, vocab: Vocab | list[str], text: str, hidden: int = 256, knob: float | None = None,
                seed: int = 0) -> Curve:
    """One curve of the first screen: key is rnn (knob: ρ), lstm-open or lstm-half (knob: the forget
    bias) or gru (knob: the update bias). One at a time, so a control recomputes only its own curve."""
    cell, knobs = _KNOBS[key](knob)
    model = fresh_model(vocab, cell, hidden_size=hidden, num_layers=1, seed=seed, **knobs)
    (value,) = knobs.values()
    if key == "rnn":
        return curve(key, f"RNN, ρ = {value:.2f}", model, text)
    c = curve(key, "", model, text, shade=int(key == "lstm-half"))
    c.label = (f"LSTM, f̄ = {c.gate_mean:.2f} (forget bias {value:+.1f})" if cell == "lstm"
               else f"GRU, z̄ = {c.gate_mean:.2f} (update bias {value:+.1f})")
    return c


def move(key: str, vocab: Vocab | list[str], text: str, hidden: int = 256, knob: float | None = None,
         seed: int = 0) -> Move:
    """The model fresh_curve(key, ..., knob) would draw, measured without its path gain."""
    cell, knobs = _KNOBS[key](knob)
    model = fresh_model(vocab, cell, hidden_size=hidden, num_layers=1, seed=seed, **knobs)
    gate = {"lstm": "f", "gru": "z"}.get(cell)
    mean = float(trace(model, text[:-1], top_k=1).layers[-1][gate].mean()) if gate else None
    return Move(key, gradient_norms(model, text), mean)


def fresh_curves(vocab: Vocab | list[str], text: str, hidden: int = 256, radius: float = RADIUS,
                 forget_bias: float = OPEN_BIAS, half_bias: float = HALF_BIAS, update_bias: float = UPDATE_BIAS,
                 seed: int = 0) -> list[Curve]:
    """The first screen: fresh one-layer RNN, LSTM (gate open and half shut) and GRU on one text."""
    knobs = {"rnn": radius, "lstm-open": forget_bias, "lstm-half": half_bias, "gru": update_bias}
    return [fresh_curve(key, vocab, text, hidden, knob, seed) for key, knob in knobs.items()]


def memory_curves(models: dict[str, CharRNN], gap: int = MEMORY_GAP, seed: int = 123) -> list[Curve]:
    """Trained memory models on one recall example: the loss is the recall, `gap` - 1 steps after the key."""
    text = recall_example(gap, seed)
    out = []
    for cell, model in models.items():
        c = curve(cell, "", model, text, per_unit=True)
        c.label = cell.upper() + (f", {'f' if cell == 'lstm' else 'z'}̄ = {c.gate_mean:.2f}" if c.gate_mean else "")
        out.append(c)
    return out


def _share(x: float) -> str:
    return f"{x:.2f}" if x >= 0.01 else f"{x:.0e}".replace("e-0", "e-")


def summary(curves: list[Curve], distance: int = DISTANCE) -> str:
    """One sentence per curve: what share of the gradient is left `distance` steps back."""
    lines = []
    for c in curves:
        d = min(distance, len(c.flow.text) - 1)
        v = c.at(d)
        line = (f"**{c.label}** keeps **{_share(v)}** of its gradient {d} steps back" if v <= 1 else
                f"**{c.label}**: {d} steps back its gradient has grown to **{_share(v)}** times its start")
        if c.flow.dc is not None:
            line += f" (its cell state: {_share(c.at(d, 'c'))})"
        lines.append(f"- {line}.")
    return "\n".join(lines)


def memory_units(c: Curve, model: CharRNN, top: int = 8) -> list[dict]:
    """The units whose gradient reaches furthest back on the recall example: the long-memory units.

    Ranked by |dL/dc| (|dL/dh| without a cell) at the key, the first character; each with its share of
    that gradient, and its forget gate (an LSTM's f, a GRU's z) over the steps from the key to the
    recall: the mean, and the product, which is the share the cell path alone carries across.
    """
    at_key = c.flow.units[-1, 0]  # (H,) top layer, t = 0: the key
    order = np.argsort(-at_key)[:top]
    total = at_key.sum() or 1.0
    gate = {"lstm": "f", "gru": "z"}.get(model.cell)
    g = trace(model, c.flow.text, top_k=1).layers[-1][gate][1:].astype(np.float64) if gate else None  # (T-1, H)
    out = []
    for u in order:
        row = {"unit": int(u), "at_key": float(at_key[u]), "share": float(at_key[u] / total)}
        if g is not None:
            row.update(gate_mean=float(g[:, u].mean()), gate_product=float(np.prod(g[:, u])))
        out.append(row)
    return out


# --- the words beside the charts, each number read from the curves it speaks of ------------------

def memory_summary(table, curves: list[Curve], gap: int = MEMORY_GAP, chance: float = CHANCE) -> str:
    """The words under the memory models' charts: each cell's recall at `gap` and its gradient at the key.

    table: recall per (cell, gap) (experiments.recall_tables); curves: memory_curves at the same gap.
    """
    longest = table[table.gap == table.gap.max()].set_index("cell").accuracy
    return ("\n".join(f"- **{c.label}**: recalls {longest[c.key]:.0%} at gap {gap}; keeps "
                      f"{_share(c.at(gap - 1))} of its gradient at the key." for c in curves)
            + f"\n\nChance is {chance:.0%}. Where the gradient from the recall no longer reaches the key, "
              "training cannot teach the model to keep it: what the RNN still recalls at long gaps, it learned from "
              "the short ones, the only ones that sent it a gradient.")


def memory_units_caption(units: list[dict], open_product: float = 0.5) -> str:
    """The words under the memory units' map: how many of `units` (memory_units) keep their forget gate open
    across the gap (a product of f above `open_product`), and what share of the gradient they carry."""
    keep = [u for u in units if u.get("gate_product", 0.0) > open_product]
    if not keep:
        return "No unit keeps its forget gate open across the gap."
    return (f"The {len(units)} units through which most of the recall's gradient reaches the key, the most on top. "
            f"{len(keep)} of them carry {sum(u['share'] for u in keep):.0%} of it, bright all the way from the "
            f"recall to the key: their forget gates stay open across the gap (mean f from "
            f"{min(u['gate_mean'] for u in keep):.3f} to {max(u['gate_mean'] for u in keep):.3f}), the long-memory "
            "units. Each button shows its share and the product of its forget gates across the gap; click one "
            "to see it in Activations.")


HOT_RADIUS = 1.5  # the "push rho" move of Try this
OVERWRITE_BIAS = -3.0  # the "overwrite" move of Try this: the GRU's update-gate bias


def _times(ratio: float) -> str:
    """A ratio in words a class can read aloud: '30', '4,700', 'a million', '2e+09'."""
    if ratio >= 1e9:
        return f"{ratio:.0e}"
    if ratio >= 1e6:
        return f"{ratio / 1e6:.0f} million" if ratio >= 1.5e6 else "a million"
    return f"{float(f'{ratio:.2g}'):,.0f}" if ratio >= 10 else f"{ratio:.1f}"  # 147,303 -> 150,000


def try_this(curves: list[Curve], hot: Move | Curve, overwrite: Move | Curve, distance: int = DISTANCE) -> str:
    """The three moves of 'Try this', each with what its curve shows `distance` steps back.

    curves: the four on the chart now; hot: the RNN at HOT_RADIUS; overwrite: the GRU at
    OVERWRITE_BIAS. The comparisons (faster, slower, above 1) are decided by the numbers, so the
    sentence says what the chart draws whatever the sliders and the text.
    """
    by = {c.key: c for c in curves}
    rnn, half = by["rnn"], by["lstm-half"]
    d = min(distance, len(rnn.flow.text) - 1)
    far = len(hot.flow.text) - 1
    h = hot.at(d)
    if h > 1:
        one = (f"The red curve stops falling: {d} steps back it is at **{_share(h)}**, above where it started, "
               f"and {_share(hot.at(far))} at {far} steps. The gradient grows, but slowly, nothing like the "
               f"{HOT_RADIUS:g}^{d} ≈ {HOT_RADIUS ** d:.0e} of the matrix alone: tanh's slope, below 1, holds it back.")
    else:
        one = f"The red curve falls far less: {d} steps back it keeps **{_share(h)}**, against {_share(rnn.at(d))} now."
    r, f = rnn.at(d), half.at(d)
    if f < r:
        how = f"**{_times(r / f)} times less** than the RNN's {_share(r)}: the half-shut LSTM forgets faster than the RNN"
    else:
        how = f"more than the RNN's {_share(r)}: at this ρ the RNN forgets faster than the half-shut LSTM"
    two = (f"The dark blue curves fall onto the light blue ones (f̄ ≈ {half.gate_mean:.2f}), which keep "
           f"**{_share(f)}** {d} steps back, {how}.")
    o = overwrite.at(d)
    three = (f"z̄ drops to {overwrite.gate_mean:.2f}, and the green curve keeps **{_share(o)}** {d} steps back"
             + (f", less than the RNN's {_share(r)}: a GRU that overwrites its state at every step carries "
                "almost nothing back." if o < r else f" (the RNN: {_share(r)})."))
    return ("**Try this** (each move changes only one curve):\n"
            f"1. **Push the RNN's ρ to {HOT_RADIUS:g}.** {one}\n"
            f"2. **Set the LSTM's forget-gate bias to 0.** {two}\n"
            f"3. **Set the GRU's update-gate bias to {OVERWRITE_BIAS:g}.** {three}".replace("to -", "to −"))


NEAR_DIAGONAL = 0.8  # a gate saturated one way or the other on more than this share of characters: a switch


def saturation_caption(table, near: float = NEAR_DIAGONAL) -> str:
    """The words under the Gates page's saturation chart: how many dots sit near its diagonal.

    table: saturation.saturation_table (layer, gate, unit, left, right). A dot near x + y = 1 is a gate
    saturated on almost every character, a switch; the counts say how many there are per gate.
    """
    if table is None or not len(table):
        return "A vanilla RNN has no gates."
    parts, total, switches = [], 0, 0
    for gate, part in table.groupby("gate", sort=False):
        s = (part.left + part.right).to_numpy()  # (units,) share of characters saturated either way
        k = int((s > near).sum())
        total, switches = total + len(s), switches + k
        parts.append(f"{gate}: {k} of {len(s)}")
    few = switches <= 0.1 * total
    return (f"Each dot is a unit: how often its gate is nearly closed (x) or nearly open (y), over the whole text. "
            f"A dot near the dashed diagonal (x + y = 1) would be a gate that acts like a switch, saturated one way "
            f"or the other on almost every character. Saturated on more than {near:.0%} of characters: "
            + "; ".join(parts) + ". "
            + ("So few dots sit near the diagonal: most gates spend much of the text in between, neither shut "
               "nor open." if few else "Many dots sit near the diagonal: these gates mostly act as switches."))


def like_with_like(cell: str, corpus: str | None, candidates: list[tuple[str, str, str | None]]) -> list[str]:
    """Of candidates (label, cell, corpus), the first of each other cell type trained on `corpus`: the models
    whose gradient curves can fairly sit beside a `cell` model of that corpus (one read off other text
    would say more about the text than about its cell). A corpus not recorded (None) matches nothing."""
    seen, out = {cell}, []
    for label, c, trained_on in candidates:
        if c not in seen and corpus is not None and trained_on == corpus:
            seen.add(c)
            out.append(label)
    return out


def trained_caption(corpus: str, others: list[str]) -> str:
    """The words under the trained models' gradient chart: which models it holds and why no others."""
    if not others:
        return (f"Your model alone: no model of another cell here was trained on {corpus}, and a model trained on "
                "other text, reading this one, would not be a fair comparison. Train a GRU or an RNN on the same "
                "corpus (Train) and it appears here. The loss is the last character's.")
    return (f"Models of each cell trained on {corpus}, the same corpus as yours: the loss of the last character. "
            "Their gates were learned, not set, so the curves say what each model needs, not what it can do: "
            "compare with the memory models.")


# --- Inside the cell: where it opens, and the words under its diagram --------------------------------

def cell_opening(text: str, hypothesis: str, labels=None) -> int:
    """Where Inside the cell opens on a text: the first character at which `hypothesis` turns on among the
    characters it counts after the first (where the state is still zero); for a span that holds a quote, its
    first quote (a string's opening quote, past a prefix such as f); 0 when it never turns on. `labels`
    (one per character) stand in for a hypothesis not in HYPOTHESES, such as a user's regex."""
    if labels is None and hypothesis not in HYPOTHESES or not text:
        return 0
    y = np.asarray(HYPOTHESES[hypothesis](text) if labels is None else labels) > 0  # (T,)
    on = y & np.r_[True, ~y[:-1]]
    mask = hypothesis_mask(hypothesis, text)
    if mask is not None:
        on &= mask
    starts = np.flatnonzero(on[1:]) + 1  # not the first character: there the state is still the zero state
    for s in starts:  # the span's opening quote: past a prefix such as f or rb
        q = int(s)
        while q < len(text) and y[q] and text[q] not in "'\"":
            q += 1
        if q < len(text) and y[q]:
            return q
    return int(starts[0]) if starts.size else 0


def _pct(x: float) -> str:
    """A gate's share as a percentage that never rounds a near-1 gate up to all, or a near-0 one down to none."""
    if 0.995 <= x < 1:
        return "over 99%"
    if 0 < x < 0.005:
        return "under 1%"
    return f"{x:.0%}"


def describe_step(step) -> str:
    """The words under the Inside-the-cell diagram: what each gate did at this step, in the step's own
    numbers (step: an rnnviz.anatomy.CellStep). Plain text: the page escapes it."""
    v = step.values
    at = f"At #{step.pos} {char_label(step.char)!r}, unit {step.unit} of layer {step.layer}: "
    if step.cell == "lstm":
        return (at + f"the forget gate f = {v['f']:.3f} keeps {_pct(v['f'])} of the old cell state "
                f"c(t-1) = {v['c_prev']:+.3f}, giving f·c(t-1) = {v['f_c_prev']:+.3f}; the input gate i = {v['i']:.3f} "
                f"lets in {_pct(v['i'])} of the candidate g = {v['g']:+.3f}, adding i·g = {v['i_g']:+.3f}; so the "
                f"new cell state is c(t) = {v['f_c_prev']:+.3f} + ({v['i_g']:+.3f}) = {v['c']:+.3f}. The output gate "
                f"o = {v['o']:.3f} passes {_pct(v['o'])} of tanh(c(t)) = {v['tanh_c']:+.3f} on as h(t) = {v['h']:+.3f}.")
    if step.cell == "gru":
        z = v["z"]
        return (at + f"the update gate z = {z:.3f} keeps {_pct(z)} of the old state h(t-1) = {v['h_prev']:+.3f}, "
                f"giving z·h(t-1) = {v['z_h_prev']:+.3f}, and takes {_pct(1 - z)} of the candidate n = {v['n']:+.3f}, "
                f"giving (1-z)·n = {v['one_minus_z_n']:+.3f}; so h(t) = {v['z_h_prev']:+.3f} + "
                f"({v['one_minus_z_n']:+.3f}) = {v['h']:+.3f}. The reset gate r = {v['r']:.3f} lets the candidate "
                f"read {_pct(v['r'])} of its recurrent part: r·(W_hn h(t-1) + b_hn) = {v['r_hn']:+.3f}. "
                "(PyTorch's convention: z near 1 keeps the old state.)")
    p = step.preact["pre"]
    return (at + f"the pre-activation is {v['pre']:+.3f}: {p['input']:+.3f} from the character, "
            f"{p['recurrent']:+.3f} from h(t-1) (every unit's; this unit's own was {v['h_prev']:+.3f}) and "
            f"{p['bias']:+.3f} of bias; "
            f"so h(t) = tanh({v['pre']:+.3f}) = {v['h']:+.3f}.")
