"""What one unit does, over a whole atlas corpus: its map entry, its contexts, and its effect on the prediction;
and the same panels for any activation over a text (a dictionary's features), from the array itself."""
from __future__ import annotations

import html
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .atlas import Atlas, Cancelled, tau
from .atlas.labels import _hypothesis_targets, _labels_frame, _score_atlas
from .atlas.stats import PEAK_DEPTH, PEAKS, SEPARATION, decile_bands, separated_peaks
from .errors import ConfigError
from .model import CharRNN
from .render import char_label
from .trace import _layer_params, _run_layer

CONTEXT = 40  # characters either side of a context's peak
HOLDS = {"zero": "0", "mean": "its corpus mean"}  # what an ablation holds a unit at


def unit_map(atlas: Atlas) -> pd.DataFrame:
    """Every unit with its best label: layer, kind, unit, label, direction, score, flagged, tau, sparsity,
    mean, std. tau is the unit's memory time constant from its layer's mean forget (update) gate."""
    units = atlas.units
    best = atlas.best_labels()[["layer", "kind", "unit", "hypothesis", "direction", "score", "binary", "flagged"]]
    df = units.merge(best, on=["layer", "kind", "unit"], how="left").rename(columns={"hypothesis": "label"})
    if "tau" not in df:
        df["tau"] = np.nan
    return df


def contexts(atlas: Atlas, layer: int, kind: str, unit: int, which: str = "top", k: int = 8,
             width: int = CONTEXT) -> list[dict]:
    """The k highest (which="top") or lowest ("bottom") separated peaks of a unit (no two within SEPARATION
    characters: one context per place, not eight neighbours of one), each with its exact value and its
    context: text[start:end] with the unit's stored values over it, and the peak's offset in it. Fewer
    than k only when the corpus holds no more such places."""
    if which not in ("top", "bottom"):
        raise ConfigError(f"which must be 'top' or 'bottom', not {which!r}")
    if not 1 <= k <= PEAKS:
        raise ConfigError(f"an atlas keeps {PEAKS} separated peaks per unit and side: ask for 1 to {PEAKS}, not {k}")
    pairs = atlas.peaks(layer, kind, unit, which, k)
    return [window(atlas, layer, kind, unit, pos, value, width) for pos, value in pairs]


def fewer_peaks_note(found: int, k: int) -> str | None:
    """Why fewer than k contexts are shown, or None when k are."""
    if found >= k:
        return None
    return (f"Only {found} place{'s' if found != 1 else ''} more than {SEPARATION} characters apart in this "
            f"corpus (of the {k} asked for): there are no more.")


def hold_value(atlas: Atlas, layer: int, kind: str, unit: int, how: str = "zero") -> float:
    """The value an ablation holds a unit at: 0, or ("mean") its mean over the atlas corpus (float64)."""
    if how not in HOLDS:
        raise ConfigError(f"hold a unit at one of {', '.join(HOLDS)}, not {how!r}")
    if how == "zero":
        return 0.0
    u = atlas.units
    row = u[(u.layer == layer) & (u.kind == kind) & (u.unit == unit)]
    if row.empty:
        raise ConfigError(f"this atlas has no unit L{layer} {kind}{unit}")
    return float(row["mean"].iloc[0])


def unit_csv(atlas: Atlas, layer: int, kind: str, unit: int, k: int = 8, width: int = CONTEXT,
             decile_n: int = 1) -> str:
    """What the dashboard plots, as one CSV: a row per context (its exact peak value, its text and the
    stored value of every character of it), per histogram bin and per decile example; `section` says which."""
    rows = []
    for which, section in (("top", "highest"), ("bottom", "lowest")):
        for rank, c in enumerate(contexts(atlas, layer, kind, unit, which, k, width), 1):
            rows.append({"section": section, "rank": rank, "pos": c["pos"], "value": c["value"],
                         "start": c["start"], "text": c["text"],
                         "values": " ".join(f"{v:.4f}" for v in c["values"])})
    counts, edges = atlas.histogram(layer, kind, unit)
    for i, n in enumerate(counts):
        rows.append({"section": "histogram", "rank": i + 1, "low": float(edges[i]), "high": float(edges[i + 1]),
                     "count": int(n)})
    for band in decile_examples(atlas, layer, kind, unit, n=decile_n, width=width // 2):
        for c in band["contexts"] or [{}]:
            rows.append({"section": "decile", "rank": band["decile"], "low": band["low"], "high": band["high"],
                         "count": band["count"], "pos": c.get("pos"), "value": c.get("value"),
                         "start": c.get("start"), "text": c.get("text"),
                         "values": " ".join(f"{v:.4f}" for v in c["values"]) if c else None})
    cols = ["section", "rank", "pos", "value", "start", "text", "values", "low", "high", "count"]
    df = pd.DataFrame(rows, columns=cols)
    for col in ("pos", "start", "count"):
        df[col] = df[col].astype("Int64")
    return df.to_csv(index=False)


def window(atlas: Atlas, layer: int, kind: str, unit: int, pos: int, value: float | None = None,
           width: int = CONTEXT) -> dict:
    """One context: {pos, value, start, text, values (stored, within the atlas's bound), peak}."""
    start, text = atlas.context(pos, width)
    values = atlas.unit_values(layer, kind, unit, start, start + len(text))
    value = float(values[pos - start]) if value is None else value
    return {"pos": pos, "value": value, "start": start, "text": text, "values": values, "peak": pos - start}


def decile_examples(atlas: Atlas, layer: int, kind: str, unit: int, n: int = 2, width: int = 20) -> list[dict]:
    """Per decile band of the unit's values, its bounds and n short contexts of positions in it, spread
    through the corpus (the band's first and last members, at the corpus's two ends, are skipped)."""
    out = []
    for band in atlas.deciles(layer, kind, unit, n + 2):
        inner = band["examples"][1:-1] or band["examples"]
        out.append({**band, "contexts": [window(atlas, layer, kind, unit, int(p), v, width) for p, v in inner[:n]]})
    return out


def logit_effect(model: CharRNN, unit: int, k: int = 8) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The characters whose logits a top-layer h unit raises and lowers most: its column of the output
    layer, W_out[:, unit] (a unit at +1 adds this to every logit). Largest first in each list."""
    H = model.config.hidden_size
    if not 0 <= unit < H:
        raise ConfigError(f"unit must be from 0 to {H - 1}, not {unit}")
    w = model.head.weight.detach()[:, unit].double().cpu().numpy()  # (V,)
    order = np.argsort(-w)
    chars = model.vocab.chars
    up = [(chars[i], float(w[i])) for i in order[:k]]
    down = [(chars[i], float(w[i])) for i in order[::-1][:k]]
    return up, down


def logit_effect_html(up: list[tuple[str, float]], down: list[tuple[str, float]]) -> str:
    """logit_effect's sentence as HTML: each character labelled (render.char_label) and escaped in a code
    element, so a backtick, '<' or '*' shows as itself."""
    def fmt(pairs):
        return ", ".join(f"<code>{html.escape(char_label(ch), quote=False)}</code>&nbsp;{w:+.2f}" for ch, w in pairs)
    return f"<div>Its column of the output layer: at +1 it raises the logits of {fmt(up)}; it lowers {fmt(down)}.</div>"


@dataclass
class Ablation:
    """The loss per character with a unit held at a value, against the model's own."""

    layer: int
    kind: str
    unit: int
    value: float
    base: np.ndarray  # (T-1,) -ln p(text[t+1]) of the model
    held: np.ndarray  # (T-1,) the same with the unit held

    @property
    def delta(self) -> np.ndarray:
        return self.held - self.base

    def mean_change(self) -> float:
        """Mean change in loss over the whole corpus, nats/char (positive: the unit helped)."""
        return float(self.delta.mean())

    def most_changed(self, fraction: float = 0.01) -> tuple[np.ndarray, float]:
        """The positions of the `fraction` of characters whose loss the hold changes most (by |delta|),
        largest first, and the mean change over them."""
        n = max(1, int(round(len(self.delta) * fraction)))
        pos = np.argsort(-np.abs(self.delta), kind="stable")[:n]
        return pos, float(self.delta[pos].mean())


@torch.no_grad()
def ablation(model: CharRNN, text: str, layer: int, kind: str, unit: int, value: float = 0.0,
             chunk: int = 2048, report=None, stop_event: threading.Event | None = None) -> Ablation:
    """Run the model over `text` twice, as it is and with one unit held at `value` at every step (an
    LSTM's c or h, or a GRU's or RNN's h), and return both losses per character.

    The layers below the held one and the unheld run go through the fused kernel; the held layer steps
    one character at a time (holding a unit changes the recurrence); the layers above read its output.
    Chunks of `chunk` characters carry the state, so memory stays bounded on a long corpus; after each,
    `report(done=, total=, message=)` gets the characters done, and a set `stop_event` raises Cancelled.
    """
    L, H = model.config.num_layers, model.config.hidden_size
    if not 0 <= layer < L or not 0 <= unit < H:
        raise ConfigError(f"no unit {unit} in layer {layer} (layers 0 to {L - 1}, units 0 to {H - 1})")
    if kind not in ("h", "c") or (kind == "c" and model.cell != "lstm"):
        raise ConfigError("kind must be 'h', or 'c' for an LSTM")
    if not np.isfinite(value):
        raise ConfigError(f"the value must be a finite number, not {value!r}")
    if len(text) < 2:
        raise ConfigError("the text needs at least two characters (one to read, one to predict)")
    was = model.training
    model.eval()
    ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)
    base, held = [], []
    zero = lambda: torch.zeros(1, 1, H, device=model.device)  # noqa: E731
    lstm = model.cell == "lstm"
    states = {run: [(zero(), zero()) if lstm else zero() for _ in range(L)] for run in ("base", "held")}
    total = len(ids) - 1
    try:
        for a in range(0, total, chunk):
            if stop_event is not None and stop_event.is_set():
                raise Cancelled("the ablation was cancelled")
            x_ids = ids[a:a + chunk + 1]
            inputs, targets = x_ids[:-1], x_ids[1:]
            for run, out in (("base", base), ("held", held)):
                x = model.embed(inputs)
                for l in range(L):
                    params = _layer_params(model, l)
                    if run == "held" and l == layer:
                        x, states[run][l] = _held_layer(model.cell, x, states[run][l], params, kind, unit, value)
                    else:
                        x, states[run][l] = _run_layer(model.cell, x, states[run][l], params)
                logits = F.linear(x, model.head.weight, model.head.bias)
                out.append(F.cross_entropy(logits.float(), targets, reduction="none").cpu().numpy())
            if report is not None:
                done = min(total, a + chunk)
                report(done=done, total=total, message=f"holding the unit at {value:+.3f}: {done:,} of {total:,} "
                                                       "characters")
    finally:
        model.train(was)
    return Ablation(layer, kind, unit, float(value), np.concatenate(base), np.concatenate(held))


def _held_layer(cell: str, x: torch.Tensor, state, params, kind: str, unit: int, value: float):
    """One layer, step by step, with h[unit] (or c[unit]) set to `value` after every step."""
    w_ih, w_hh, b_ih, b_hh = params
    gi = torch.addmm(b_ih, x, w_ih.t())  # (T, G*H) the input part, for every step at once
    H = w_hh.shape[1]
    if cell == "lstm":
        h, c = state[0][0, 0].clone(), state[1][0, 0].clone()
    else:
        h, c = state[0, 0].clone(), None
    hs = torch.empty(x.shape[0], H, dtype=x.dtype, device=x.device)
    for t in range(x.shape[0]):
        gh = torch.addmv(b_hh, w_hh, h)
        if cell == "lstm":
            i, f, g, o = (gi[t] + gh).chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            if kind == "c":
                c[unit] = value
            h = torch.sigmoid(o) * torch.tanh(c)
        elif cell == "gru":
            r, z = torch.sigmoid(gi[t, :2 * H] + gh[:2 * H]).chunk(2)
            n = torch.tanh(gi[t, 2 * H:] + r * gh[2 * H:])
            h = (1 - z) * n + z * h
        else:
            h = torch.tanh(gi[t] + gh)
        if kind == "h":
            h[unit] = value
        hs[t] = h
    new = (h[None, None].clone(), c[None, None].clone()) if cell == "lstm" else h[None, None].clone()
    return hs, new


def unit_tau(atlas: Atlas, layer: int, unit: int) -> float | None:
    """The memory time constant of one unit, -1 / ln(mean gate), or None for a tanh RNN."""
    if atlas.cell == "rnn":
        return None
    return float(tau(atlas.gate_mean(layer)[unit]))


# --- any activation over a text: the unit dashboard's panels from an array (a dictionary's features) ------

def array_peaks(values: np.ndarray, which: str = "top", k: int = 8, sep: int = SEPARATION,
                active_only: bool = False) -> list[tuple[int, float]]:
    """Up to k separated peaks (position, value) of values (T,), best first, exactly as an atlas picks a
    unit's: greedy, each more than `sep` characters from every earlier one. active_only keeps only values
    above 0 (a feature's peaks are where it fires)."""
    if which not in ("top", "bottom"):
        raise ConfigError(f"which must be 'top' or 'bottom', not {which!r}")
    x = np.asarray(values, dtype=np.float32).ravel()
    sign = np.float32(1 if which == "top" else -1)
    depth = min(len(x), (k - 1) * (2 * sep + 1) + 1 if k > 0 else 0, max(PEAK_DEPTH, k))
    if depth == 0:
        return []
    cand = np.argpartition(-sign * x, depth - 1)[:depth]
    cand = cand[np.lexsort((cand, -sign * x[cand]))]  # best first; equal values: earlier first
    if active_only:
        cand = cand[x[cand] > 0]
    pos, val = separated_peaks(cand[:, None].astype(np.int64), x[cand][:, None], k, sep)
    return [(int(p), float(v)) for p, v in zip(pos[:, 0], val[:, 0]) if p >= 0]


def array_window(text: str, values: np.ndarray, pos: int, value: float | None = None,
                 width: int = CONTEXT) -> dict:
    """One context of an activation over a text, shaped as `window`'s: {pos, value, start, text, values, peak}."""
    if not 0 <= pos < len(text):
        raise ConfigError(f"position must be from 0 to {len(text) - 1:,}, not {pos}")
    start = max(0, pos - width)
    part = text[start:pos + width + 1]
    vals = np.asarray(values[start:start + len(part)], dtype=np.float32)
    return {"pos": pos, "value": float(vals[pos - start]) if value is None else value, "start": start,
            "text": part, "values": vals, "peak": pos - start}


def array_contexts(text: str, values: np.ndarray, which: str = "top", k: int = 8, width: int = CONTEXT,
                   active_only: bool = False) -> list[dict]:
    """The k best separated peaks of values (T,) over the text, each with its context (see array_peaks)."""
    return [array_window(text, values, p, v, width) for p, v in array_peaks(values, which, k, active_only=active_only)]


def array_deciles(text: str, values: np.ndarray, n: int = 1, width: int = 20, active_only: bool = False
                  ) -> list[dict]:
    """decile_examples for an array: per decile band of its values (of its values above 0 with active_only,
    where a sparse feature's zeros would fill every band), its bounds, count and n contexts."""
    x = np.asarray(values, dtype=np.float32).ravel()
    where = np.flatnonzero(x > 0) if active_only else np.arange(len(x))
    if not len(where):
        return []
    out = []
    for band in decile_bands(x[where], n + 2):
        inner = band["examples"][1:-1] or band["examples"]
        out.append({**band, "contexts": [array_window(text, x, int(where[p]), v, width) for p, v in inner[:n]]})
    return out


def array_histogram(values: np.ndarray, bins: int = 40, active_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of values (T,) over [min, max] in `bins` bins (of the values above 0 with active_only)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[x > 0] if active_only else x
    if not len(x):
        return np.zeros(bins, np.int64), np.linspace(0, 1, bins + 1)
    lo, hi = float(x.min()), float(x.max())
    return np.histogram(x, bins=bins, range=(lo, hi if hi > lo else lo + 1))


class _Columns:
    """An activation array (T, U) seen as an atlas of one layer and one kind, so atlas.labels scores it."""

    def __init__(self, values: np.ndarray, text: str):
        self.values, self.text, self.path = values, text, None
        self.num_layers, self.hidden_size, self.kinds = 1, values.shape[1], ("f",)

    def unit_states(self, layer: int, kind: str, units, start: int = 0, end: int | None = None) -> np.ndarray:
        return np.asarray(self.values[start:end, units], dtype=np.float32).T


def column_labels(values: np.ndarray, text: str, hypotheses: dict | None = None) -> pd.DataFrame:
    """Every column of values (T, U) against every hypothesis over the text, scored as the atlas scores its
    units (probes' conventions; masked hypotheses count only what their mask keeps): columns column,
    hypothesis, binary, auroc, direction, score, corr and the evidence (positives, spans, flagged, reason)."""
    from .hypotheses import HYPOTHESES
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] != len(text):
        raise ConfigError(f"give one row of values per character: {len(text):,} characters, shape {values.shape}")
    view = _Columns(values, text)
    names, Y, binary, masks = _hypothesis_targets(text, dict(HYPOTHESES if hypotheses is None else hypotheses))
    scores = _score_atlas(view, names, Y, binary, masks)
    df = _labels_frame(view, names, binary, scores, Y, masks)
    return df.drop(columns=["layer", "kind"]).rename(columns={"unit": "column"})


def column_table(labels: pd.DataFrame, frequency: np.ndarray, peak: np.ndarray) -> pd.DataFrame:
    """One row per column of an activation array: its frequency (the share of characters where it is above 0),
    its max (`peak`), and its best label (hypothesis, direction, score, flagged) from column_labels' frame; a
    label that is not a detector (too little evidence) ranks after every one that is."""
    df = pd.DataFrame({"column": np.arange(len(frequency)), "frequency": np.asarray(frequency, dtype=np.float64),
                       "max": np.asarray(peak, dtype=np.float64)})
    best = labels.dropna(subset=["score"]).sort_values(["flagged", "score"], ascending=[True, False], kind="stable")
    best = best.drop_duplicates("column")[["column", "hypothesis", "direction", "score", "flagged"]]
    return df.merge(best.rename(columns={"hypothesis": "label"}), on="column", how="left")
