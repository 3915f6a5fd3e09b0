"""The atlas's figures say what they plot: the map's memory axis names the gate its τ comes from."""
import pytest

from rnnviz import atlas as A
from rnnviz import dashboard, plots
from rnnviz.model import build

TEXT = "the cell keeps what the gate lets through; \"quoted\" (bracketed) words.\n" * 4


@pytest.mark.parametrize("cell, gate", [("lstm", "f"), ("gru", "z")])
def test_unit_map_axis_names_the_gate_tau_comes_from(tmp_path, cell, gate):
    model = build(sorted(set(TEXT)), cell=cell, hidden_size=6, num_layers=1, embed_size=4, seed=0)
    at = A.build_atlas(model, TEXT, cache_dir=tmp_path, chunk=64, top_k=32)
    df = dashboard.unit_map(at)
    title = plots.unit_map(df).layout.xaxis.title.text
    assert f"τ = −1/ln {gate}\u0304" in title, title
    other = {"f": "z", "z": "f"}[gate]
    assert f"ln {other}\u0304" not in title
    # the points' x is that gate's tau: -1/ln(mean gate) of each unit, from the atlas's own gate means
    xs = sorted(x for tr in plots.unit_map(df).data for x in tr.x)
    want = sorted(df["tau"].clip(lower=0.1, upper=1e4))
    assert xs == pytest.approx(want)
    assert df[f"{gate}_mean"].to_numpy() == pytest.approx(at.gate_mean(0)[df.unit.to_numpy()])


def test_unit_map_of_a_tanh_rnn_plots_the_std(tmp_path):
    model = build(sorted(set(TEXT)), cell="rnn", hidden_size=6, num_layers=1, embed_size=4, seed=0)
    at = A.build_atlas(model, TEXT, cache_dir=tmp_path, chunk=64, top_k=32)
    fig = plots.unit_map(dashboard.unit_map(at))
    assert fig.layout.xaxis.title.text == "std of the unit" and fig.layout.xaxis.type == "linear"
