"""The 2015 paper's four results in plain words a lecturer can read aloud, computed from the numbers shown.

Each function takes the same table the page charts (grid rows, a saturation table, onion dicts, a
dynamics dict) and returns Markdown; where our numbers do not show the paper's finding, it says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..saturation import TANH_GATES

CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
# The gate whose right saturation keeps the previous state: the LSTM's forget gate; PyTorch's GRU keeps
# h_{t-1} in proportion to z (h = (1 - z) n + z h_{t-1}), so its update gate plays that part.
MEMORY_GATE = {"lstm": "f", "gru": "z"}
CLEAR_GAP = 0.05  # upper layers saturated at least 5 points more often than the first: the finding, plainly


def _cell(cell: str) -> str:
    return CELL_NAMES.get(cell, str(cell).upper())


def _loss(x: float) -> str:
    return f"{x:.3f}"


def _and(items: list[str]) -> str:
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _order(n: int) -> str:
    return f"{n}-gram"


# --- Table 1: the grid ---------------------------------------------------------------------------------

def grid_frame(rows: list[dict]) -> pd.DataFrame:
    """The grid's rows as a table, finished runs only (a val loss that is a number)."""
    df = pd.DataFrame(rows, columns=["cell", "layers", "width", "params", "budget", "steps", "train_loss",
                                     "val_loss", "wall_s", "device"])
    df["val_loss"] = pd.to_numeric(df["val_loss"], errors="coerce")
    return df[np.isfinite(df["val_loss"])].reset_index(drop=True)


def _at_largest_budget(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    budget = df["budget"].max()
    return df[df["budget"] == budget], f"At the largest budget (about {int(budget):,} parameters)"


def depth_sentence(rows: list[dict]) -> str:
    """Does a second (or third) layer lower the validation loss, per cell, at the largest budget?"""
    df = grid_frame(rows)
    if df.empty:
        return "No finished run in this grid yet."
    part, where = _at_largest_budget(df)
    won, lost = [], []
    for cell in [c for c in CELL_NAMES if c in set(part["cell"])] + sorted(set(part["cell"]) - set(CELL_NAMES)):
        runs = part[part["cell"] == cell]
        one, deep = runs[runs["layers"] == 1], runs[runs["layers"] >= 2]
        if one.empty or deep.empty:
            continue
        best = deep.loc[deep["val_loss"].idxmin()]
        a, b = float(one["val_loss"].min()), float(best["val_loss"])
        (won if b < a else lost).append(f"{_cell(cell)} {_loss(a)} → {_loss(b)} ({int(best['layers'])} layers)")
    if not won and not lost:
        return f"{where}, the grid has no cell run at both one and two or more layers, so depth cannot be compared."
    if not lost:
        return (f"{where}, more than one layer beats one for every cell, as the paper found "
                f"(validation loss, nats/char): {_and(won)}.")
    if not won:
        return (f"{where}, a second layer does not help any cell here, unlike the paper "
                f"(validation loss, nats/char): {_and(lost)}.")
    return (f"{where}, depth helps some cells but not all, so the paper's finding holds only in part "
            f"(validation loss, nats/char): better with depth {_and(won)}; not better {_and(lost)}.")


def cells_sentence(rows: list[dict], after_depth: bool = False) -> str:
    """Do the LSTM and GRU beat the vanilla RNN (each at its best depth, at the largest budget)?
    `after_depth`: it follows depth_sentence, which already named the budget."""
    df = grid_frame(rows)
    if df.empty:
        return "No finished run in this grid yet."
    part, where = _at_largest_budget(df)
    where = "There" if after_depth else where
    best = part.groupby("cell")["val_loss"].min()
    if "rnn" not in best or not ({"lstm", "gru"} & set(best.index)):
        return f"{where}, the grid lacks the vanilla RNN or the gated cells, so they cannot be compared."
    rnn = float(best["rnn"])
    gated = [c for c in ("lstm", "gru") if c in best]
    said = _and([f"the {_cell(c)} ({_loss(best[c])})" for c in gated])
    beat = [c for c in gated if best[c] < rnn]
    if len(beat) == len(gated):
        verb = "beats" if len(gated) == 1 else "both beat"
        return f"{where}, {said} {verb} the vanilla RNN ({_loss(rnn)}), as in the paper (best depth of each)."
    if not beat:
        return (f"{where}, the vanilla RNN ({_loss(rnn)}) is not beaten by {said}: the paper's finding does not "
                "show here (best depth of each).")
    return (f"{where}, only the {_cell(beat[0])} beats the vanilla RNN ({_loss(rnn)}): {said}. The paper found "
            "both gated cells ahead (best depth of each).")


def grid_sentence(rows: list[dict]) -> str:
    """Table 1's two findings, depth then cells, in one paragraph."""
    if grid_frame(rows).empty:
        return "No finished run in this grid yet."
    return depth_sentence(rows) + " " + cells_sentence(rows, after_depth=True)


def grid_setup(spec: dict, rows: list[dict], train_chars: int | None = None) -> str:
    """What our grid is: corpus, cells, depths, budgets and steps, as the runs record them; given the training
    split's length, how many passes over it each run's steps make (the paper trained for many more)."""
    df = grid_frame(rows)
    budgets = sorted({int(b) for b in df["budget"]}) if not df.empty else list(spec.get("budgets", ()))
    steps = sorted({int(s) for s in df["steps"]}) if not df.empty else [spec.get("steps")]
    devices = sorted({str(d) for d in df["device"]}) if not df.empty else []
    return (f"{len(df)} runs on {spec.get('corpus', 'an unnamed corpus')}: "
            f"{', '.join(_cell(c) for c in spec.get('cells', sorted(set(df['cell']))))} at "
            f"{' and '.join(str(n) for n in spec.get('layers', sorted(set(df['layers']))))} layers, budgets of "
            f"{' and '.join(f'{b:,}' for b in budgets)} parameters, {' / '.join(f'{s:,}' for s in steps if s)} "
            f"training steps each{' on ' + ', '.join(devices) if devices else ''}.{_passes(spec, steps, train_chars)}")


def _passes(spec: dict, steps: list, train_chars: int | None) -> str:
    batch, seq = spec.get("batch"), spec.get("seq_len")
    if not (train_chars and batch and seq and steps and steps[-1]):
        return ""
    seen = int(steps[-1]) * int(batch) * int(seq)
    return (f" Each run reads {int(steps[-1]):,} × {int(batch)} × {int(seq)} = {seen:,} characters, "
            f"{seen / train_chars:.1f} passes over the {int(train_chars):,} training characters.")


# --- gate saturation -------------------------------------------------------------------------------

def layer_saturation_shares(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer: the share of (unit, step) pairs whose sigmoid gates are saturated, left, right and both
    (the paper's gates; the tanh candidate is left out), and how many memory gates are open most of the time."""
    sig = table[~table["gate"].isin(TANH_GATES)]
    out = sig.groupby("layer").agg(left=("left", "mean"), right=("right", "mean")).reset_index()
    out["saturated"] = out["left"] + out["right"]
    return out


def saturation_sentence(table: pd.DataFrame, cell: str) -> str:
    """The first layer's gates rarely saturated, the upper ones more often? And the integrating memory gates."""
    if cell not in MEMORY_GATE or table.empty:
        return (f"A vanilla {_cell(cell)} has no gates, so there is nothing to saturate: the paper's saturation "
                "figure is for the LSTM and the GRU.")
    shares = layer_saturation_shares(table)
    pct = {int(r.layer): float(r.saturated) for r in shares.itertuples()}
    layers = sorted(pct)
    gate = MEMORY_GATE[cell]
    mem = table[table["gate"] == gate]
    integrators = [f"{int((g['right'] > 0.5).sum())} of {len(g)} in layer {layer}"
                   for layer, g in mem.groupby("layer")]
    tail = (f" Memory gates ({gate}) open (> 0.9) more than half the time, which the paper calls integrators: "
            f"{_and(integrators)}." if integrators else "")
    if len(layers) < 2:
        return (f"This {_cell(cell)} has one layer, so the paper's comparison between layers cannot be made: its "
                f"gates are saturated {pct[layers[0]]:.1%} of the time.{tail}")
    first, upper = pct[layers[0]], {k: v for k, v in pct.items() if k != layers[0]}
    said = _and([f"layer {k}'s {v:.1%}" for k, v in upper.items()])
    if all(v > first + CLEAR_GAP for v in upper.values()):
        head = (f"The first layer's gates are the least often saturated ({first:.1%} of the time), the upper "
                f"layers' more often ({said}), as the paper found.")
    elif all(v > first for v in upper.values()):
        head = (f"The first layer's gates are saturated {first:.1%} of the time, the upper layers' only slightly "
                f"more often ({said}): the paper's direction, but a small difference.")
    else:
        head = (f"Here the first layer's gates are saturated {first:.1%} of the time, against {said}: "
                "the upper layers are not more saturated, unlike the paper's models.")
    return head + tail


# --- the onion ----------------------------------------------------------------------------------------

def _ngram_index(names: list[str]) -> int:
    """The n-gram oracle's category: the one named so, else the first (the paper peels it first)."""
    return next((i for i, n in enumerate(names) if "gram" in n.lower()), 0)


def onion_sentence(small: dict, large: dict, small_name: str, large_name: str) -> str:
    """Which errors scale removed: per category, the small model's count against the large one's."""
    names = [c["name"] for c in small["categories"]]
    s = {c["name"]: int(c["count"]) for c in small["categories"]}
    lg = {c["name"]: int(c["count"]) for c in large["categories"]}
    drop = {n: s.get(n, 0) - lg.get(n, 0) for n in names}
    total = int(small["errors"]) - int(large["errors"])
    head = (f"An error is a character the model gave p < 0.5. {small_name} makes {int(small['errors']):,} errors "
            f"in {int(small['chars']):,} characters ({int(small['errors']) / max(1, int(small['chars'])):.1%}), "
            f"{large_name} {int(large['errors']):,} in {int(large['chars']):,} "
            f"({int(large['errors']) / max(1, int(large['chars'])):.1%}).")
    if total <= 0:
        return head + f" The larger model does not make fewer errors here, so scale removed none."
    ngram = names[_ngram_index(names)]
    biggest = max(names, key=lambda n: drop[n])
    parts = _and([f"{n} {s.get(n, 0):,} → {lg.get(n, 0):,}" for n in names if drop[n] > 0])
    if biggest == ngram:
        return (head + f" Scale removed mostly {ngram} errors, as the paper found: {drop[ngram]:,} of the "
                f"{total:,} fewer errors ({drop[ngram] / total:.0%}). By category: {parts}.")
    return (head + f" The paper found scale removed mostly n-gram errors; here the largest drop is in "
            f"{biggest} ({drop[biggest]:,} of {total:,} fewer errors, {drop[biggest] / total:.0%}), against "
            f"{drop[ngram]:,} for the {ngram}. By category: {parts}.")


# --- training dynamics ------------------------------------------------------------------------------

def closest_orders(steps: list[int], orders: list[int], kl: np.ndarray) -> list[tuple[int, int]]:
    """(step, order) where the model's nearest n-gram (smallest symmetric KL) changes, from the first step."""
    kl = np.asarray(kl, dtype=float)  # (S, O)
    nearest = [orders[int(i)] for i in np.nanargmin(kl, axis=1)]
    out = []
    for step, n in zip(steps, nearest):
        if not out or out[-1][1] != n:
            out.append((int(step), int(n)))
    return out


def dynamics_sentence(steps: list[int], orders: list[int], kl: np.ndarray, name: str) -> str:
    """When the model's predictions are closest to which n-gram's: low orders first, higher ones later?"""
    if len(steps) == 0:
        return f"{name}'s history holds no snapshot to compare."
    kl = np.asarray(kl, dtype=float)
    changes = closest_orders(steps, orders, kl)
    first_step, first = changes[0]
    last = changes[-1][1]
    end = float(np.nanmin(kl[-1]))
    head = (f"At step {first_step:,}, {name}'s predictions are closest to the {_order(first)}'s "
            f"(symmetric KL {float(np.nanmin(kl[0])):.3f} nats)")
    if len(changes) == 1:
        return (head + f" and stay closest to it through step {int(steps[-1]):,} (KL {end:.3f}): the paper's "
                "passage from low to higher orders does not show in these snapshots.")
    path = _and([f"to the {_order(n)} from step {s:,}" for s, n in changes[1:]])
    orders_seen = [n for _, n in changes]
    rising = last > first and all(b >= a for a, b in zip(orders_seen, orders_seen[1:]))
    if rising:
        return head + f"; it moves {path}, ending there (KL {end:.3f}): low orders first, as the paper found."
    if last > first:
        return (head + f"; it moves {path}, ending at a higher order than it began (KL {end:.3f}), though not "
                "steadily upward as the paper describes.")
    return (head + f"; it moves {path}, ending no higher than it began (KL {end:.3f}): the paper's passage from "
            "low to higher orders does not show here.")
