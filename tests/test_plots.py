import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from rnnviz import plots
from rnnviz.errors import ConfigError
from rnnviz.gradients import gradient_norms
from rnnviz.model import GATES, build
from rnnviz.hypotheses import uppercase
from rnnviz.probes import rank_units
from rnnviz.trace import trace

TEXT = "Hi <b>there</b>, & 'you'.\n\tOK then"


def _model(cell, layers=2, seed=0, scale=3.0):
    model = build(sorted(set(TEXT)), cell=cell, hidden_size=8, num_layers=layers, embed_size=4, seed=seed)
    with torch.no_grad():  # spread the weights so some gates saturate, as in a trained model
        for p in model.rnn.parameters():
            p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def traces():
    return {cell: trace(_model(cell), TEXT) for cell in ("lstm", "gru", "rnn")}


def _has_title(fig):
    return bool(fig.layout.title.text)


def test_char_label():
    assert [plots.char_label(c) for c in "\n \t\x01a"] == ["↵", "␣", "⇥", "\\x01", "a"]


def test_activation_heatmap(traces):
    h = traces["lstm"].layers[0]["h"]
    fig = plots.activation_heatmap(h, TEXT, units=[5, 1, 3])
    assert isinstance(fig, go.Figure) and _has_title(fig)
    hm = fig.data[0]
    np.testing.assert_array_equal(np.asarray(hm.z), h[:, [5, 1, 3]].T)
    assert list(hm.y) == [5, 1, 3] and hm.zmid == 0
    assert hm.customdata[0][3] == "&lt;"  # hover shows the character, escaped for plotly
    assert fig.layout.xaxis.ticktext[2] == "␣"
    later = plots.activation_heatmap(h[4:9], TEXT[4:9], first=4)  # a window: its positions in the whole text
    np.testing.assert_array_equal(later.data[0].x, np.arange(4, 9))
    assert list(later.layout.xaxis.tickvals) == [4, 5, 6, 7, 8] and later.layout.xaxis.ticktext[0] == plots.char_label(TEXT[4])
    full = plots.activation_heatmap(h, TEXT)
    assert np.asarray(full.data[0].z).shape == (8, len(TEXT))
    with pytest.raises(ConfigError):
        plots.activation_heatmap(h[:-1], TEXT)


def test_activation_heatmap_rows_scaled_per_unit(traces):
    """Scaled per unit, each row is its unit's values over that unit's own largest |value| (a loop over
    the units, independently), so a quiet unit fills the colour range too; the colour bar says so."""
    c = traces["lstm"].layers[0]["c"] * np.linspace(0.01, 50, traces["lstm"].layers[0]["c"].shape[1])  # (T, H)
    units = [7, 0, 3]
    fig = plots.activation_heatmap(c[2:9], TEXT[2:9], units=units, scale=plots.unit_scales(c), first=2)
    hm = fig.data[0]
    for row, u in enumerate(units):
        biggest = max(abs(float(x)) for x in c[:, u])
        np.testing.assert_allclose(np.asarray(hm.z)[row], c[2:9, u] / biggest, rtol=1e-12)
        assert [float(hm.customdata[row][t][1]) for t in range(7)] == [float(x) for x in c[2:9, u]]  # raw in the hover
    assert np.abs(plots.activation_heatmap(c, TEXT, units=units, scale=plots.unit_scales(c)).data[0].z).max(axis=1) \
        == pytest.approx([1, 1, 1])
    assert (hm.zmin, hm.zmax) == (-1, 1) and "own scale" in hm.colorbar.title.text.replace("<br>", " ")
    assert "value %{customdata[1]" in hm.hovertemplate
    shared = plots.activation_heatmap(c, TEXT, units=units).data[0]
    assert shared.colorbar.title.text == "value" and "own scale" not in shared.hovertemplate
    np.testing.assert_array_equal(plots.unit_scales(np.zeros((4, 2))), [1.0, 1.0])  # a silent unit: no 0/0
    with pytest.raises(ConfigError):
        plots.activation_heatmap(c, TEXT, scale=np.zeros(c.shape[1]))


def test_unit_line(traces):
    v = traces["gru"].layers[1]["h"][:, 2]
    fig = plots.unit_line(v, TEXT, title="unit 2")
    sc = fig.data[0]
    np.testing.assert_array_equal(sc.y, v)
    np.testing.assert_array_equal(sc.x, np.arange(len(TEXT)))
    assert "markers" in sc.mode and fig.layout.title.text == "unit 2"
    assert list(sc.customdata[:2]) == ["H", "i"]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_gate_lines(traces, cell):
    tr = traces[cell]
    fig = plots.gate_lines(tr, layer=1, unit=3)
    kinds = list(GATES[cell]) or ["pre", "h"]
    assert [d.name for d in fig.data] == kinds
    for d, k in zip(fig.data, kinds):
        np.testing.assert_array_equal(d.y, tr.layers[1][k][:, 3])
    with pytest.raises(ConfigError):
        plots.gate_lines(tr, layer=1, unit=99)
    # a window cut from further on: the points sit at their positions in the whole text, each naming its character
    later = plots.gate_lines(tr, layer=1, unit=3, first=500)
    np.testing.assert_array_equal(later.data[0].x, 500 + np.arange(len(tr.text)))
    assert list(later.data[0].customdata) == [html.escape(plots.char_label(c), quote=False) for c in tr.text]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_saturation_matches_numpy_count(traces, cell):
    tr = traces[cell]
    fig = plots.saturation_scatter(tr)
    assert _has_title(fig)
    dots = [d for d in fig.data if d.mode == "markers"]
    assert len(dots) == len(GATES[cell]) * 2  # one per gate and layer
    i = 0
    for gate in GATES[cell]:
        lo = -0.9 if gate in ("g", "n") else 0.1
        for layer in range(2):
            v = tr.layers[layer][gate]
            left = np.array([np.sum(v[:, u] < lo) / v.shape[0] for u in range(v.shape[1])])
            right = np.array([np.sum(v[:, u] > 0.9) / v.shape[0] for u in range(v.shape[1])])
            np.testing.assert_allclose(dots[i].x, left)
            np.testing.assert_allclose(dots[i].y, right)
            assert dots[i].name == f"layer {layer}"
            i += 1
    # the weights were spread, so some units do saturate: the test is not all zeros
    assert any(np.asarray(d.x).sum() + np.asarray(d.y).sum() > 0 for d in dots)
    diag = [d for d in fig.data if d.mode == "lines"]
    assert list(diag[0].x) == [0, 1] and list(diag[0].y) == [1, 0]
    titles = " ".join(ax.title.text for ax in fig.layout if ax.startswith("xaxis") for ax in [fig.layout[ax]])
    assert ("-0.9" in titles) == (cell in ("lstm", "gru"))


def test_saturation_rnn_says_no_gates(traces):
    fig = plots.saturation_scatter(traces["rnn"])
    assert isinstance(fig, go.Figure) and not fig.data
    assert "no gates" in fig.layout.annotations[0].text


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_gate_histograms(traces, cell):
    tr = traces[cell]
    fig = plots.gate_histograms(tr, layer=0, bins=20)
    kinds = list(GATES[cell]) or ["pre", "h"]
    assert len(fig.data) == len(kinds)
    for d, k in zip(fig.data, kinds):
        v = tr.layers[0][k]
        assert np.asarray(d.y).sum() == v.size  # every value counted once
    if cell == "lstm":
        counts, _ = np.histogram(tr.layers[0]["f"], bins=20, range=(0, 1))
        np.testing.assert_array_equal(fig.data[1].y, counts)


@pytest.fixture(scope="module")
def flows():
    text = TEXT * 2
    return {"RNN (fresh)": gradient_norms(_model("rnn", 1, scale=1.0), text),
            "LSTM (fresh)": gradient_norms(_model("lstm", 1, scale=1.0), text)}


def test_gradient_decay(flows):
    fig = plots.gradient_decay(flows, layer=0, show_bound=True)
    assert fig.layout.yaxis.type == "log" and _has_title(fig)
    names = [d.name for d in fig.data]
    # the Pascanu line only for the RNN's top layer: it bounds nothing for a gated cell
    assert names[0] == "RNN (fresh)" and "bound" in names[1] and names[2:] == ["LSTM (fresh)"]
    assert fig.data[0].line.color == plots.cell_color("rnn") and fig.data[2].line.color == plots.cell_color("lstm")
    rnn = flows["RNN (fresh)"]
    np.testing.assert_array_equal(fig.data[0].y, rnn.dh[0])
    np.testing.assert_array_equal(fig.data[0].x, rnn.distance)
    b = rnn.bound(0)
    ok = np.isfinite(b)
    np.testing.assert_allclose(np.asarray(fig.data[1].y, dtype=float)[ok], b[ok])
    assert fig.data[1].line.dash == "dash"
    assert "bound" not in " ".join(d.name for d in plots.gradient_decay(flows).data)  # off by default
    # the range follows the measured norms, one decade either side
    vals = np.concatenate([f.dh[0][f.dh[0] > 0] for f in flows.values()])
    lo, hi = fig.layout.yaxis.range
    assert lo == pytest.approx(math.log10(vals.min()) - 1) and hi == pytest.approx(math.log10(vals.max()) + 1)


def test_gradient_decay_cell_state_zeros_and_no_bound(flows):
    fig = plots.gradient_decay(flows, kind="c", show_bound=False)
    assert [d.name for d in fig.data] == ["LSTM (fresh)"]  # the RNN has no cell state
    assert "no cell state" in fig.layout.title.text
    np.testing.assert_array_equal(fig.data[0].y, flows["LSTM (fresh)"].dc[0])
    zero = flows["RNN (fresh)"]
    zero.dh[0, :5] = 0.0  # zeros can't sit on a log axis: they must not break the range
    fig = plots.gradient_decay({"z": zero}, show_bound=False)
    assert all(math.isfinite(v) for v in fig.layout.yaxis.range)
    with pytest.raises(ConfigError):
        plots.gradient_decay(flows, layer=3)


def test_loss_curves():
    runs = {"a": [{"step": 1, "train_loss": 4.0, "time": 0.1}, {"step": 2, "train_loss": 3.0, "val_loss": 3.2,
                                                                  "time": 0.2}],
            "b": [{"step": 1, "train_loss": 2.0, "time": 0.1}]}
    fig = plots.loss_curves(runs)
    names = [d.name for d in fig.data]
    assert names == ["a train", "a val", "b train"]
    np.testing.assert_array_equal(fig.data[0].y, [4.0, 3.0])
    np.testing.assert_array_equal(fig.data[1].x, [2])
    np.testing.assert_allclose(fig.data[1].customdata, [3.2 / math.log(2)])
    assert "bits/char" in fig.data[0].hovertemplate and "nats" in fig.layout.yaxis.title.text
    assert plots.loss_curves({"empty": []}).layout.annotations


def test_temperature_distributions():
    vocab = ["\ufffd", "\n", " ", "a", "b", "<"] + [chr(ord("c") + i) for i in range(14)]
    logits = np.linspace(2.0, -2.0, len(vocab))[::-1].copy()
    fig = plots.temperature_distributions(logits, vocab, temperatures=(0, 0.5, 1.0, 2.0))
    assert [d.name for d in fig.data] == ["T=0 (argmax)", "T=0.5", "T=1", "T=2"]
    order = np.argsort(-logits)[:15]
    for d, t in zip(fig.data[1:], (0.5, 1.0, 2.0)):
        p = np.exp(logits / t) / np.exp(logits / t).sum()
        np.testing.assert_allclose(d.y, p[order], rtol=1e-9)
    np.testing.assert_array_equal(fig.data[0].y, np.eye(15)[0])
    assert len(fig.data[0].x) == 15
    fig = plots.temperature_distributions(np.arange(len(vocab), dtype=float)[::-1].copy(), vocab)
    assert list(fig.data[0].x[:3]) == ["\ufffd", "↵", "␣"] and "&lt;" in fig.data[0].x


def test_unit_scores(traces):
    df = rank_units(traces["lstm"], uppercase(TEXT))
    fig = plots.unit_scores(df, top=5)
    bar = fig.data[0]
    np.testing.assert_array_equal(bar.x, df.score.head(5).to_numpy())
    r = df.iloc[0]
    assert bar.y[0] == f"L{r.layer} {r.kind}{r.unit}"


def test_memory_accuracy():
    df = pd.DataFrame({"cell": ["rnn", "rnn", "lstm", "lstm"], "gap": [4, 2, 2, 4],
                       "accuracy": [0.1, 0.5, 0.9, 0.8], "chance": 1 / 26})
    fig = plots.memory_accuracy(df)
    assert [d.name for d in fig.data] == ["RNN", "LSTM", "chance"]
    np.testing.assert_array_equal(fig.data[0].x, [2, 4])
    np.testing.assert_array_equal(fig.data[0].y, [0.5, 0.1])
    assert fig.data[2].line.dash == "dash" and fig.data[2].y[0] == pytest.approx(1 / 26)
    assert len(plots.memory_accuracy(df.drop(columns="chance")).data) == 2


def test_surprisal_bars(traces):
    tr = traces["gru"]
    fig = plots.surprisal_bars(tr, 3, 10)
    np.testing.assert_array_equal(fig.data[0].y, tr.loss[3:10])
    np.testing.assert_array_equal(fig.data[0].x, np.arange(3, 10))
    assert fig.data[0].customdata[0][0] == "&lt;" and fig.data[0].customdata[0][1] == "b"
    end = plots.surprisal_bars(tr, len(TEXT) - 2, len(TEXT) + 5)
    assert np.isnan(end.data[0].y[-1]) and end.data[0].customdata[-1][1] == "(end)"
    with pytest.raises(ConfigError):
        plots.surprisal_bars(tr, 10, 10)


def test_figures_serialise(traces, flows):
    """Every figure survives to_json (what st.plotly_chart sends)."""
    tr = traces["lstm"]
    for fig in (plots.activation_heatmap(tr.layers[0]["h"], TEXT), plots.saturation_scatter(tr),
                plots.gate_histograms(tr, 0), plots.gradient_decay(flows), plots.surprisal_bars(tr),
                plots.saturation_scatter(traces["rnn"])):
        assert fig.to_json()


def test_pascanu_line_only_where_it_bounds():
    """Below the top layer gradient also arrives from above, so sigma^d bounds nothing there."""
    text = TEXT * 3
    model = _model("rnn", 2, scale=1.0)
    with torch.no_grad():
        model.layer_weights(0)["weight_hh"].mul_(0.05)
    flow = gradient_norms(model, text)
    assert np.any(flow.dh[0] > flow.bound(0) * 10), "layer 0 exceeds its 'bound': the premise of hiding it"
    assert np.all(flow.dh[1] <= flow.bound(1) * (1 + 1e-9))  # the top layer: a bound
    names = lambda layer: [d.name for d in plots.gradient_decay({"r": flow}, layer=layer, show_bound=True).data]
    assert names(0) == ["r"] and len(names(1)) == 2 and "top layer" in names(1)[1]
