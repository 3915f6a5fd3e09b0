"""The 2015 paper's sentences (rnnviz.paper.words) against hand-made tables: the numbers they quote are the
tables' own, and where a table does not show the paper's finding, the sentence says so."""
import numpy as np
import pandas as pd

from rnnviz import plots
from rnnviz.paper import words


def _row(cell, layers, budget, val):
    return {"cell": cell, "layers": layers, "width": 10, "params": budget, "budget": budget, "steps": 100,
            "train_loss": val - 0.01, "val_loss": val, "wall_s": 1.0, "device": "cpu"}


def _grid(losses):
    """losses: {(cell, layers, budget): val}."""
    return [_row(c, n, b, v) for (c, n, b), v in losses.items()]


HOLDS = _grid({("lstm", 1, 1000): 2.0, ("lstm", 2, 1000): 2.1, ("lstm", 1, 4000): 1.62, ("lstm", 2, 4000): 1.55,
               ("gru", 1, 4000): 1.64, ("gru", 2, 4000): 1.58, ("rnn", 1, 4000): 1.80, ("rnn", 2, 4000): 1.75})


def test_depth_and_cells_hold():
    depth = words.depth_sentence(HOLDS)
    assert "about 4,000 parameters" in depth and "as the paper found" in depth
    assert "LSTM 1.620 → 1.550 (2 layers)" in depth and "RNN 1.800 → 1.750" in depth
    assert "2.1" not in depth  # the smaller budget, where depth lost, is not the one reported
    cells = words.cells_sentence(HOLDS)
    assert "the LSTM (1.550) and the GRU (1.580) both beat the vanilla RNN (1.750)" in cells
    both = words.grid_sentence(HOLDS)
    assert both.startswith(depth) and both.endswith(cells.replace("At the largest budget (about 4,000 parameters)",
                                                                  "There"))


def test_grid_setup_says_what_the_runs_read():
    spec = {"corpus": "tinyshakespeare", "cells": ["lstm", "gru", "rnn"], "layers": [1, 2], "batch": 32, "seq_len": 64}
    s = words.grid_setup(spec, HOLDS, train_chars=1_000_000)
    assert s.startswith("8 runs on tinyshakespeare: LSTM, GRU, RNN at 1 and 2 layers, budgets of 1,000 and 4,000")
    assert "100 × 32 × 64 = 204,800 characters, 0.2 passes over the 1,000,000 training characters" in s
    assert "passes" not in words.grid_setup(spec, HOLDS)


def test_depth_and_cells_do_not_hold():
    rows = _grid({("lstm", 1, 4000): 1.50, ("lstm", 2, 4000): 1.55, ("gru", 1, 4000): 1.60, ("gru", 2, 4000): 1.58,
                  ("rnn", 1, 4000): 1.52, ("rnn", 2, 4000): 1.56})
    depth = words.depth_sentence(rows)
    assert "holds only in part" in depth
    assert "better with depth GRU 1.600 → 1.580" in depth and "not better LSTM 1.500 → 1.550" in depth
    cells = words.cells_sentence(rows)
    assert "only the LSTM beats the vanilla RNN (1.520)" in cells
    none = _grid({("lstm", 1, 9): 1.5, ("lstm", 2, 9): 1.6, ("rnn", 1, 9): 1.4, ("rnn", 2, 9): 1.45})
    assert "does not help any cell" in words.depth_sentence(none)
    assert "not beaten by the LSTM (1.500)" in words.cells_sentence(none)
    assert words.depth_sentence([]) == "No finished run in this grid yet."


def _sat(cell, per_layer, units=4, integr=None):
    """A saturation table where every sigmoid gate of layer l has left = right = per_layer[l] / 2, and the
    memory gate's `integr[l]` first units right-saturated 0.8 of the time (left 0)."""
    gates = {"lstm": "ifgo", "gru": "rzn"}[cell]
    rows = []
    for layer, s in enumerate(per_layer):
        for g in gates:
            for u in range(units):
                left = right = s / 2
                if g == words.MEMORY_GATE[cell] and integr and u < integr[layer]:
                    left, right = 0.0, s  # still s saturated in all, all of it on the right
                if g in "gn":
                    left = right = 0.45  # the tanh candidate: left out of the shares
                rows.append({"layer": layer, "gate": g, "unit": u, "left": left, "right": right})
    return pd.DataFrame(rows)


def test_saturation_holds_and_not():
    table = _sat("lstm", [0.1, 0.4], integr=[0, 3])
    shares = words.layer_saturation_shares(table)
    assert np.allclose(shares["saturated"], [0.1, 0.4])
    s = words.saturation_sentence(table, "lstm")
    assert "least often saturated (10.0% of the time)" in s and "layer 1's 40.0%" in s and "as the paper" in s
    # right > 0.5 needs s > 0.5: the integrators here are none; a second table has some
    assert "0 of 4 in layer 0 and 0 of 4 in layer 1" in s
    table = _sat("gru", [0.6, 0.9], integr=[1, 3])
    assert "(z)" in words.saturation_sentence(table, "gru")
    assert "1 of 4 in layer 0 and 3 of 4 in layer 1" in words.saturation_sentence(table, "gru")
    flat = words.saturation_sentence(_sat("lstm", [0.5, 0.3]), "lstm")
    assert "saturated 50.0% of the time, against layer 1's 30.0%" in flat and "unlike the paper" in flat
    slight = words.saturation_sentence(_sat("lstm", [0.5, 0.53]), "lstm")
    assert "only slightly more often (layer 1's 53.0%): the paper's direction, but a small difference" in slight
    assert "has one layer" in words.saturation_sentence(_sat("lstm", [0.2]), "lstm")
    assert "no gates" in words.saturation_sentence(pd.DataFrame(columns=["layer", "gate", "unit", "left", "right"]),
                                                   "rnn")


def _onion(chars, counts):
    errors = sum(counts.values())
    return {"chars": chars, "errors": errors,
            "categories": [{"name": n, "count": c, "share": c / max(1, errors)} for n, c in counts.items()]}


NAMES = ("n-gram", "dynamic memory", "rare words", "word model", "punctuation", "boost")


def test_onion_holds_and_not():
    small = _onion(1000, dict(zip(NAMES, (100, 40, 30, 50, 20, 60))))
    large = _onion(1000, dict(zip(NAMES, (60, 35, 28, 45, 18, 54))))
    s = words.onion_sentence(small, large, "small", "large")
    assert "small makes 300 errors in 1,000 characters (30.0%), large 240" in s
    assert "mostly n-gram errors, as the paper found: 40 of the 60 fewer errors (67%)" in s
    assert "n-gram 100 → 60" in s and "boost 60 → 54" in s
    large = _onion(1000, dict(zip(NAMES, (95, 35, 28, 20, 18, 54))))
    s = words.onion_sentence(small, large, "small", "large")
    assert "here the largest drop is in word model (30 of 50 fewer errors, 60%), against 5 for the n-gram" in s
    assert "does not make fewer errors" in words.onion_sentence(small, small, "a", "b")


def test_dynamics_holds_and_not():
    steps, orders = [100, 200, 400, 800], [1, 2, 3, 4, 5]
    kl = np.array([[0.1, 0.3, 0.5, 0.6, 0.7],  # nearest: 1-gram
                   [0.3, 0.2, 0.4, 0.5, 0.6],  # 2-gram
                   [0.5, 0.3, 0.25, 0.3, 0.4],  # 3-gram
                   [0.7, 0.5, 0.3, 0.2, 0.21]])  # 4-gram
    assert words.closest_orders(steps, orders, kl) == [(100, 1), (200, 2), (400, 3), (800, 4)]
    s = words.dynamics_sentence(steps, orders, kl, "m")
    assert "At step 100, m's predictions are closest to the 1-gram's (symmetric KL 0.100 nats)" in s
    assert "to the 2-gram from step 200, to the 3-gram from step 400 and to the 4-gram from step 800" in s
    assert "as the paper found" in s and "(KL 0.200)" in s
    stuck = words.dynamics_sentence(steps, orders, np.tile(kl[1], (4, 1)), "m")
    assert "stay closest to it" in stuck and "does not show" in stuck
    back = words.dynamics_sentence(steps[:2], orders, kl[1::-1], "m")
    assert "ending no higher than it began" in back


def test_builders_draw_the_numbers():
    fig = plots.grid_bars(HOLDS)
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {"1 layer", "2 layers"} and len(bars) == 4  # 2 budgets x 2 depths
    two = next(t for t in bars if t.name == "2 layers" and t.xaxis == "x2")
    assert list(two.x) == ["LSTM", "GRU", "RNN"] and np.allclose(list(two.y), [1.55, 1.58, 1.75])
    table = _sat("lstm", [0.1, 0.4], integr=[0, 3])
    fig = plots.saturation_by_layer(table, "lstm")
    dots = [t for t in fig.data if t.mode == "markers"]
    assert {t.name for t in dots} == {"gate i", "gate f", "gate o"} and len(dots) == 6  # g left out, 2 layers
    f1 = next(t for t in dots if t.name == "gate f" and t.xaxis == "x2")
    assert np.allclose(f1.y, [0.4, 0.4, 0.4, 0.2])
    small = _onion(1000, dict(zip(NAMES, (100, 40, 30, 50, 20, 60))))
    fig = plots.onion_bars([small, small], ["a", "b"])
    assert [t.name for t in fig.data] == list(NAMES) and np.allclose(fig.data[0].y, [10.0, 10.0])
    kl = np.arange(10.0).reshape(2, 5)
    fig = plots.dynamics_curves([1, 2], [1, 2, 3, 4, 5], kl)
    assert [t.name for t in fig.data] == [f"{n}-gram" for n in range(1, 6)] and list(fig.data[2].y) == [2.0, 7.0]
