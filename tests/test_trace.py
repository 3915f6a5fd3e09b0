import numpy as np
import pytest
import torch

import reference
from rnnviz.errors import ConfigError, TextError
from rnnviz.model import build
from rnnviz.scan import linear_scan
from rnnviz.trace import trace

TEXT = "A gate opens, a gate closes: that is the whole trick.\n\"Whether it remembers\" (in the cell) [or forgets]"


def _model(cell, layers=2, hidden=24, seed=0):
    model = build(sorted(set(TEXT)), cell=cell, hidden_size=hidden, num_layers=layers, embed_size=12, seed=seed)
    # Spread the weights so that gates saturate somewhere, as in a trained model.
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("chunk", [8192, 7])
def test_trace_matches_step_by_step_reference(cell, chunk):
    model = _model(cell)
    tr = trace(model, TEXT, chunk=chunk)
    ref_layers, ref_logits = reference.forward(model.state_dict(), cell, 2, tr.ids)
    for l in range(2):
        assert set(tr.layers[l]) == set(ref_layers[l])
        for kind, ref in ref_layers[l].items():
            np.testing.assert_allclose(tr.layers[l][kind], ref, atol=1e-5, rtol=1e-5, err_msg=f"L{l} {kind}")
    ref_p = np.exp(ref_logits - ref_logits.max(1, keepdims=True))
    ref_p /= ref_p.sum(1, keepdims=True)
    np.testing.assert_allclose(tr.probs, ref_p, atol=1e-5)
    ref_loss = -np.log(ref_p[np.arange(len(TEXT) - 1), tr.ids[1:]])
    np.testing.assert_allclose(tr.loss[:-1], ref_loss, rtol=1e-4, atol=1e-5)
    assert np.isnan(tr.loss[-1])
    np.testing.assert_array_equal(tr.top_ids[:, 0], ref_p.argmax(1))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_logits_from_traced_top_layer_match_fused_forward(cell):
    model = _model(cell, layers=3)
    tr = trace(model, TEXT)
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(tr.ids)[None])
        from_trace = model.head(torch.from_numpy(tr.layers[-1]["h"]))
    np.testing.assert_allclose(from_trace.numpy(), logits[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tr.probs, torch.softmax(logits[0], -1).numpy(), atol=1e-6)


def test_long_text_chunks_carry_state():
    model = _model("lstm", hidden=16)
    text = (TEXT * 40)[:3000]
    whole = trace(model, text, chunk=100_000)
    pieces = trace(model, text, chunk=333)
    for kind in whole.kinds:
        np.testing.assert_allclose(pieces.layers[1][kind], whole.layers[1][kind], atol=1e-5)


def test_trace_of_100k_characters_fits(tmp_path):
    model = build(sorted(set(TEXT)), cell="lstm", hidden_size=32, num_layers=2, seed=1)
    text = (TEXT * 1200)[:100_000]
    tr = trace(model, text, chunk=8192)
    assert tr.layers[1]["c"].shape == (100_000, 32)
    assert np.isfinite(tr.layers[1]["c"]).all()
    # the state at the end equals a fused forward over the whole text
    with torch.no_grad():
        _, (h, c) = model(torch.from_numpy(tr.ids)[None])
    np.testing.assert_allclose(tr.layers[1]["h"][-1], h[1, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tr.layers[1]["c"][-1], c[1, 0].numpy(), atol=1e-4, rtol=1e-5)
    tr.to_npz(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        assert z["L1_c"].shape == (100_000, 32) and list(z["vocab"]) == tr.vocab


def test_unknown_characters_are_reported_not_fatal():
    model = _model("lstm")
    tr = trace(model, "to be 😀 or ZZ")
    assert tr.unknown == {"😀": 1, "Z": 2}
    assert tr.ids[6] == 0  # the unknown symbol
    with pytest.raises(TextError, match="never saw"):
        trace(model, "ZZ", strict=True)


def test_bad_input_gives_clear_errors():
    model = _model("gru")
    with pytest.raises(TextError, match="empty"):
        trace(model, "")
    one = trace(model, "T")
    assert len(one) == 1 and np.isnan(one.loss[0])
    with pytest.raises(ConfigError, match="no 'c'"):
        one.get(0, "c")
    with pytest.raises(ConfigError, match="layer"):
        one.get(5, "h")


def test_linear_scan_matches_loop_including_saturated_gates():
    rng = np.random.default_rng(0)
    T, H = 1000, 8
    a = rng.uniform(0, 1, (T, H))
    a[10:20] = 0.0
    a[500:] = 1.0
    b = rng.normal(size=(T, H))
    c0 = rng.normal(size=H)
    ref, c = np.empty((T, H)), c0.copy()
    for t in range(T):
        c = a[t] * c + b[t]
        ref[t] = c
    for chunk in (1, 2, 16, 64):
        out = linear_scan(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c0), chunk=chunk if chunk > 1 else 2)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_trace_exports_frame():
    model = _model("lstm")
    tr = trace(model, TEXT)
    df = tr.to_frame(1, "c")
    assert list(df.columns[:3]) == ["position", "char", "c0"] and len(df) == len(TEXT)
    np.testing.assert_array_equal(df["c5"].to_numpy(), tr.layers[1]["c"][:, 5])
