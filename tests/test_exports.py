"""The CSV exports of Gates and Gradients (rnnviz.exports): each table holds what its chart draws,
checked against a step-by-step reference of the cell and against the figure's own traces."""
import io

import numpy as np
import pandas as pd
import pytest

import reference
from rnnviz import exports, lesson, plots
from rnnviz.errors import ConfigError
from rnnviz.gradients import fresh_model
from rnnviz.trace import trace

TEXT = "the cat sat (on the 'mat'),\nand then it sat again.\n"
VOCAB = sorted(set(TEXT))

pytestmark = pytest.mark.usefixtures("one_thread")


def roundtrip(df: pd.DataFrame) -> pd.DataFrame:
    """What a user gets from the download button: the table through CSV and back."""
    return pd.read_csv(io.StringIO(df.to_csv(index=False)), keep_default_na=False, na_values=[""])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_unit_gates_are_the_cells_gates_step_by_step(cell):
    model = fresh_model(VOCAB, cell, hidden_size=5, num_layers=2, seed=2, embed_size=4)
    tr = trace(model, TEXT)
    df = roundtrip(exports.unit_gates(tr, 1, 3))
    sd = model.state_dict()
    ids = [model.vocab.index[ch] for ch in TEXT]
    x = sd["embed.weight"].double().numpy()[ids]
    below = reference.LAYER[cell](x, *reference.weights(sd, 0))["h"]
    ref = reference.LAYER[cell](below, *reference.weights(sd, 1))  # layer 1, step by step
    assert list(df.position) == list(range(len(TEXT))) and "".join(df.char.astype(str)) == TEXT
    gates = {"lstm": "ifgoch", "gru": "rzn" + "h", "rnn": "h"}[cell]
    for k in gates:
        np.testing.assert_allclose(df[k].to_numpy(), ref[k][:, 3], atol=1e-5, err_msg=k)
    if cell == "rnn":  # no gates: the pre-activation stands in, as on the page
        W_ih, W_hh, b_ih, b_hh = reference.weights(sd, 1)
        h = ref["h"]
        prev = np.vstack([np.zeros(5), h[:-1]])
        pre = below @ W_ih.T + b_ih + prev @ W_hh.T + b_hh
        np.testing.assert_allclose(df["pre"].to_numpy(), pre[:, 3], atol=1e-5)
    with pytest.raises(ConfigError):
        exports.unit_gates(tr, 2, 0)
    with pytest.raises(ConfigError):
        exports.unit_gates(tr, 0, 5)


def test_saturation_csv_is_the_scatters_dots():
    model = fresh_model(VOCAB, "lstm", hidden_size=6, num_layers=2, seed=0, embed_size=4)
    tr = trace(model, TEXT)
    df = roundtrip(exports.saturation(tr))
    fig = plots.saturation_scatter(tr)
    for t in fig.data:
        if t.mode != "markers":
            continue
        layer = int(t.name.split()[-1])
        gate = fig.layout.annotations[int((t.xaxis or "x")[1:] or 1) - 1].text.split()[-1]
        part = df[(df.layer == layer) & (df.gate == gate)].sort_values("unit")
        np.testing.assert_allclose(part.left, t.x)
        np.testing.assert_allclose(part.right, t.y)
    # brute force: the forget gate of layer 0 nearly shut / nearly open on what share of characters
    f = tr.layers[0]["f"]
    part = df[(df.layer == 0) & (df.gate == "f")].sort_values("unit")
    np.testing.assert_allclose(part.left, [np.mean([f[t, u] < 0.1 for t in range(len(TEXT))]) for u in range(6)])


def test_gradient_curves_csv_holds_every_line_the_chart_draws():
    curves = lesson.fresh_curves(VOCAB, TEXT, hidden=8)
    df = roundtrip(exports.gradient_curves(curves))
    fig = plots.gradient_lesson(curves)
    assert set(df.model) == {c.label for c in curves}
    for t in fig.data:
        model = t.legendgroup and next(c.label for c in curves if c.key == t.legendgroup)
        part = df[df.model == model].set_index("distance").loc[list(t.x)]
        column = "c" if t.line.dash == "dash" else "path_gain" if t.line.dash == "dot" else "h"
        drawn = np.asarray(t.y, dtype=float)
        ok = np.isfinite(drawn)  # the dotted line hides a gain of 0 (log axis)
        np.testing.assert_allclose(part[column].to_numpy()[ok], drawn[ok], rtol=1e-12, err_msg=(model, column))
    rnn = df[df.model.str.startswith("RNN")]
    assert rnn.c.isna().all() and (rnn.h[rnn.distance == 0] == 1).all()
    assert exports.gradient_curves([]).empty


def test_trained_flows_and_units_csv_hold_what_their_charts_draw():
    from rnnviz.gradients import gradient_norms
    flows = {f"{cell} (fresh)": gradient_norms(fresh_model(VOCAB, cell, hidden_size=6, num_layers=2, seed=1,
                                                           embed_size=4), TEXT, per_unit=True)
             for cell in ("lstm", "rnn")}
    df = roundtrip(exports.gradient_flows(flows, 1))
    fig = plots.gradient_decay(flows, layer=1)
    for t in fig.data:
        part = df[df.model == t.name].set_index("distance").loc[list(t.x)]
        np.testing.assert_allclose(part.dh.to_numpy(), np.asarray(t.y, dtype=float), rtol=1e-12)
    assert df[df.cell == "rnn"].dc.isna().all()
    np.testing.assert_allclose(df[df.model == "lstm (fresh)"].dc, flows["lstm (fresh)"].dc[1][::-1], rtol=1e-12)
    with pytest.raises(ConfigError):
        exports.gradient_flows(flows, 2)
    flow, rows = flows["lstm (fresh)"], [4, 0]
    units = roundtrip(exports.unit_gradients(flow, rows))
    fig = plots.unit_gradient_map(flow.units[-1], flow.text, rows)
    z = np.asarray(fig.data[0].z, dtype=float)  # (rows, T) log10 of what the map colours
    for i, u in enumerate(rows):
        part = units[units.unit == u]
        assert list(part.distance) == list(fig.data[0].x)
        np.testing.assert_allclose(np.log10(np.maximum(part.grad.to_numpy(), 1e-30)), z[i], rtol=1e-12)
        assert "".join(part.char.astype(str)) == flow.text
    with pytest.raises(ConfigError):
        exports.unit_gradients(flow, [6])


def test_gate_histograms_csv_counts_every_value():
    model = fresh_model(VOCAB, "lstm", hidden_size=6, num_layers=2, seed=0, embed_size=4)
    tr = trace(model, TEXT)
    df = roundtrip(exports.gate_histograms(tr, 1, bins=10))
    for gate in "ifgo":
        part = df[df.gate == gate]
        v = tr.layers[1][gate].ravel()
        assert part["count"].sum() == v.size  # every value of the layer counted once
        lo, hi = (-1.0, 1.0) if gate == "g" else (0.0, 1.0)
        edges = np.linspace(lo, hi, 11)
        brute = [int(((v >= a) & ((v < b) if b < hi else (v <= b))).sum()) for a, b in zip(edges[:-1], edges[1:])]
        assert list(part["count"]) == brute
        np.testing.assert_allclose(part.bin_start, edges[:-1])
