"""A unit's dashboard: its contexts, its column of the output layer, and the loss with it held at 0,
against brute force and a step-by-step float64 reference."""
import numpy as np
import pytest

from rnnviz import atlas as atlas_lib
from rnnviz import dashboard
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.trace import trace
from test_sampling import clamped_reference

TEXT = ('x = "ab" + (c)\n' * 3 + "def f(y):\n    return 'q' * y\n") * 4
pytestmark = pytest.mark.usefixtures("one_thread")


def model(cell, layers=2):
    return build(sorted(set(TEXT)), cell=cell, hidden_size=6, num_layers=layers, embed_size=4, seed=2)


def log_loss(logits, targets):
    z = logits - logits.max(-1, keepdims=True)
    return np.log(np.exp(z).sum(-1)) - z[np.arange(len(targets)), targets]


@pytest.mark.parametrize("cell,layer,kind", [("lstm", 0, "c"), ("lstm", 1, "h"), ("gru", 0, "h"), ("rnn", 1, "h")])
def test_ablation_matches_a_clamped_step_by_step_reference(cell, layer, kind):
    m = model(cell)
    ab = dashboard.ablation(m, TEXT, layer, kind, 3, 0.0, chunk=17)  # chunks carry the state
    ids = [m.vocab.index[ch] for ch in TEXT]
    sd = m.state_dict()
    base = log_loss(clamped_reference(sd, cell, 2, ids[:-1]), np.array(ids[1:]))
    held = log_loss(clamped_reference(sd, cell, 2, ids[:-1], (layer, [3], 0.0, kind)), np.array(ids[1:]))
    np.testing.assert_allclose(ab.base, base, atol=1e-5)
    np.testing.assert_allclose(ab.held, held, atol=1e-5)
    assert ab.mean_change() == pytest.approx(float((held - base).mean()), abs=1e-5)
    pos, mean = ab.most_changed(0.05)
    # the text repeats, so changes tie: compare the sizes picked, not the positions
    brute = np.sort(np.abs(held - base))[::-1][:len(pos)]
    np.testing.assert_allclose(np.sort(np.abs(held - base)[pos])[::-1], brute, atol=1e-5)
    assert mean == pytest.approx(float((held - base)[pos].mean()), abs=1e-5)


def test_ablation_rejects_what_does_not_exist():
    m = model("gru")
    for args in ((2, "h", 0), (0, "c", 0), (0, "h", 6)):
        with pytest.raises(ConfigError):
            dashboard.ablation(m, TEXT, *args)
    with pytest.raises(ConfigError):
        dashboard.ablation(m, TEXT, 0, "h", 0, float("nan"))


def test_logit_effect_is_the_units_column_of_the_output_layer():
    m = model("lstm")
    up, down = dashboard.logit_effect(m, 4, k=3)
    w = m.head.weight.detach().numpy()[:, 4]
    assert [c for c, _ in up] == [m.vocab.chars[i] for i in np.argsort(-w)[:3]]
    assert [c for c, _ in down] == [m.vocab.chars[i] for i in np.argsort(w)[:3]]
    assert up[0][1] == pytest.approx(w.max()) and down[0][1] == pytest.approx(w.min())


def test_contexts_are_the_atlas_top_positions_with_their_text(tmp_path):
    m = model("lstm")
    a = atlas_lib.build_atlas(m, TEXT, cache_dir=tmp_path, chunk=64, top_k=32)
    tr = trace(m, TEXT)
    for which, order in (("top", -1), ("bottom", 1)):
        items = dashboard.contexts(a, 1, "c", 2, which, k=5, width=7)
        values = tr.layers[1]["c"][:, 2]
        assert [c["pos"] for c in items] == list(np.argsort(order * values, kind="stable")[:5])
        for c in items:
            assert c["text"] == TEXT[c["start"]:c["pos"] + 8] and c["text"][c["peak"]] == TEXT[c["pos"]]
            bound = a.error_bound(1, "c")[2]  # the int8 states' stated bound
            np.testing.assert_allclose(c["values"], values[c["start"]:c["start"] + len(c["text"])], atol=bound + 1e-6)
    table = dashboard.unit_map(a)
    assert len(table) == 2 * 2 * 6 and table["label"].notna().all()
