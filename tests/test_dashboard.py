"""A unit's dashboard: its contexts, its column of the output layer, and the loss with it held at 0,
against brute force and a step-by-step float64 reference."""
import numpy as np
import pytest
import torch

from rnnviz import atlas as atlas_lib
from rnnviz import dashboard
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.trace import trace
from test_atlas_peaks import greedy
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


def test_contexts_are_the_separated_peaks_with_their_text(tmp_path):
    m = model("lstm")
    a = atlas_lib.build_atlas(m, TEXT, cache_dir=tmp_path, chunk=64, top_k=32)
    tr = trace(m, TEXT, chunk=64)
    for which, highest in (("top", True), ("bottom", False)):
        items = dashboard.contexts(a, 1, "c", 2, which, k=5, width=7)
        values = tr.layers[1]["c"][:, 2]
        assert [c["pos"] for c in items] == greedy(values, highest, n=5)  # brute force over every character
        got = sorted(c["pos"] for c in items)
        assert all(b - q > dashboard.SEPARATION for q, b in zip(got, got[1:]))
        np.testing.assert_array_equal(np.float32([c["value"] for c in items]), values[[c["pos"] for c in items]])
        for c in items:
            assert c["text"] == TEXT[c["start"]:c["pos"] + 8] and c["text"][c["peak"]] == TEXT[c["pos"]]
            bound = a.error_bound(1, "c")[2]  # the int8 states' stated bound
            np.testing.assert_allclose(c["values"], values[c["start"]:c["start"] + len(c["text"])], atol=bound + 1e-6)
    table = dashboard.unit_map(a)
    assert len(table) == 2 * 2 * 6 and table["label"].notna().all()
    with pytest.raises(ConfigError):
        dashboard.contexts(a, 1, "c", 2, "top", k=dashboard.PEAKS + 1)


def test_fewer_peaks_are_said():
    assert dashboard.fewer_peaks_note(8, 8) is None
    assert "Only 3 places more than 20 characters apart" in dashboard.fewer_peaks_note(3, 8)


def test_mean_ablation_matches_a_step_by_step_rerun_at_the_corpus_mean(tmp_path):
    m = model("lstm")
    a = atlas_lib.build_atlas(m, TEXT, cache=False, chunk=64, top_k=32)
    mean = dashboard.hold_value(a, 0, "c", 3, "mean")
    assert mean == pytest.approx(float(trace(m, TEXT).layers[0]["c"][:, 3].astype(np.float64).mean()), abs=1e-9)
    assert mean != 0.0 and dashboard.hold_value(a, 0, "c", 3, "zero") == 0.0
    seen = []
    ab = dashboard.ablation(m, TEXT, 0, "c", 3, mean, chunk=50, report=lambda **kw: seen.append(kw))
    ids = [m.vocab.index[ch] for ch in TEXT]
    sd = m.state_dict()
    held = log_loss(clamped_reference(sd, "lstm", 2, ids[:-1], (0, [3], mean, "c")), np.array(ids[1:]))
    np.testing.assert_allclose(ab.held, held, atol=1e-5)
    assert ab.value == mean
    done = [kw["done"] for kw in seen]
    assert done == sorted(done) and done[-1] == len(TEXT) - 1 and len(done) == -(-(len(TEXT) - 1) // 50)
    with pytest.raises(ConfigError):
        dashboard.hold_value(a, 0, "c", 3, "median")


def test_ablation_stops_when_asked():
    import threading

    stop = threading.Event()
    calls = []

    def report(**kw):
        calls.append(kw)
        stop.set()  # cancel after the first chunk

    with pytest.raises(atlas_lib.Cancelled):
        dashboard.ablation(model("gru"), TEXT, 0, "h", 1, 0.0, chunk=20, report=report, stop_event=stop)
    assert len(calls) == 1


def test_output_column_words_show_a_backtick_as_itself():
    m = build(sorted(set(TEXT + "`<*")), cell="lstm", hidden_size=6, num_layers=1, embed_size=4, seed=2)
    with torch.no_grad():
        m.head.weight[:, 1] = 0.0
        for ch, w in (("`", 3.0), ("<", 2.0), ("*", -3.0)):
            m.head.weight[m.vocab.index[ch], 1] = w
    up, down = dashboard.logit_effect(m, 1, k=3)
    out = dashboard.logit_effect_html(up, down)
    assert "<code>`</code>&nbsp;+3.00" in out and "<code>&lt;</code>&nbsp;+2.00" in out
    assert "<code>*</code>&nbsp;-3.00" in out and "```" not in out


def test_unit_csv_holds_what_the_dashboard_plots(tmp_path):
    import io

    import pandas as pd

    m = model("lstm")
    a = atlas_lib.build_atlas(m, TEXT, cache=False, chunk=64, top_k=32)
    df = pd.read_csv(io.StringIO(dashboard.unit_csv(a, 1, "h", 4, k=3)), keep_default_na=False, na_values=[""])
    for section, which in (("highest", "top"), ("lowest", "bottom")):
        rows = df[df.section == section]
        items = dashboard.contexts(a, 1, "h", 4, which, k=3)
        assert rows["pos"].tolist() == [c["pos"] for c in items]
        np.testing.assert_allclose(rows["value"], [c["value"] for c in items], rtol=1e-6)
        assert rows["text"].tolist() == [c["text"] for c in items]
        for got, c in zip(rows["values"], items):
            np.testing.assert_allclose([float(v) for v in got.split()], c["values"], atol=5e-5)
    counts, edges = a.histogram(1, "h", 4)
    hist = df[df.section == "histogram"]
    assert hist["count"].tolist() == counts.tolist()
    np.testing.assert_allclose(hist["low"], edges[:-1]) and np.testing.assert_allclose(hist["high"], edges[1:])
    dec = df[df.section == "decile"]
    bands = dashboard.decile_examples(a, 1, "h", 4, n=1, width=20)
    assert dec["rank"].tolist() == [b["decile"] for b in bands for _ in (b["contexts"] or [None])]
    assert dec["pos"].tolist() == [c["pos"] for b in bands for c in b["contexts"]]


def test_cli_lists_separated_peaks(tmp_path, capsys):
    import json

    from rnnviz import checkpoint
    from rnnviz.cli import main
    from test_atlas_peaks import LINE, _model

    m = _model("lstm")  # saturating: a unit's best values sit side by side on plateaus
    text = (LINE * 30)[:1500]
    values = trace(m, text).layers[1]["c"]  # (T, H); the atlas reads it in one chunk, as here
    pos = np.arange(len(text))
    crowded = [u for u in range(8) if np.ptp(np.lexsort((pos, -values[:, u]))[:6][:2]) <= 20]
    assert crowded, "a unit whose two best characters are neighbours"
    u = crowded[0]
    ck = checkpoint.save(m, tmp_path / "model")
    f = tmp_path / "corpus.txt"
    f.write_text(text, encoding="utf-8")
    assert main(["atlas", str(ck), "--corpus", str(f), "--unit", f"1:c:{u}", "--top", "6", "--json",
                 "--out", str(tmp_path / "cache")]) == 0
    obj = json.loads(capsys.readouterr().out)
    for side, highest in (("top", True), ("bottom", False)):
        got = [r["pos"] for r in obj[side]]
        assert len(got) == 6 and got == greedy(values[:, u], highest, n=6)
        assert all(abs(p - q) > 20 for i, p in enumerate(got) for q in got[:i])
        assert [r["value"] for r in obj[side]] == pytest.approx(values[got, u].tolist(), abs=1e-6)
    assert obj["separation"] == 20
    assert main(["atlas", str(ck), "--corpus", str(f), "--unit", "1:c:2", "--top", "17", "--out", str(tmp_path / "c")])
    assert "at most 16" in capsys.readouterr().err


# --- the same panels from an activation array (a dictionary's features) ---------------------------------

def test_array_peaks_are_the_brute_force_greedy_picks_and_contexts_hold_their_text():
    rng = np.random.default_rng(5)
    x = np.cumsum(rng.normal(size=3000)).astype(np.float32)  # drifts: many high neighbours to suppress
    for which in ("top", "bottom"):
        got = dashboard.array_peaks(x, which, 8)
        assert [p for p, _ in got] == greedy(x, which == "top", 8)
        assert all(v == x[p] for p, v in got)
    sparse = np.where(rng.random(3000) < 0.01, rng.random(3000), 0).astype(np.float32)  # fires ~30 times
    fired = dashboard.array_peaks(sparse, "top", 16, active_only=True)
    assert fired and all(v > 0 for _, v in fired)
    assert [p for p, _ in fired] == greedy(sparse, True, 16)[:len(fired)]
    text = "".join(rng.choice(list("abc \n"), 3000))
    for c in dashboard.array_contexts(text, x, "top", 3, width=10):
        assert c["text"] == text[c["start"]:c["pos"] + 11] and c["values"][c["peak"]] == c["value"]
        np.testing.assert_array_equal(c["values"], x[c["start"]:c["start"] + len(c["text"])])


def test_array_deciles_and_histogram_of_the_active_values():
    rng = np.random.default_rng(1)
    x = np.where(rng.random(2000) < 0.2, rng.random(2000) + 0.5, 0).astype(np.float32)
    text = "a" * 2000
    bands = dashboard.array_deciles(text, x, n=1, active_only=True)
    active = x[x > 0]
    assert sum(b["count"] for b in bands) == len(active)
    assert bands[0]["low"] == pytest.approx(active.min()) and bands[-1]["high"] == pytest.approx(active.max())
    assert all(b["low"] <= c["value"] <= b["high"] for b in bands for c in b["contexts"])
    counts, edges = dashboard.array_histogram(x, active_only=True)
    assert counts.sum() == len(active) and edges[0] == pytest.approx(active.min())


def test_column_labels_score_each_column_as_probes_does():
    """Each column against each hypothesis: the score, direction and evidence of probes.score_units."""
    from rnnviz import probes
    from rnnviz.hypotheses import HYPOTHESES, hypothesis_mask
    tr = trace(model("lstm"), TEXT)
    values = np.maximum(np.concatenate([tr.get(1, "h"), tr.get(0, "c")], axis=1), 0)  # (T, 12), zeros as features have
    df = dashboard.column_labels(values, TEXT)
    assert len(df) == values.shape[1] * len(HYPOTHESES)
    for name in ("inside quotes", "bracket depth", "indentation"):
        want = probes.score_units(values, HYPOTHESES[name](TEXT), hypothesis_mask(name, TEXT))
        got = df[df.hypothesis == name].sort_values("column")
        np.testing.assert_allclose(got.score, want.score, atol=1e-9)
        assert list(got.direction) == list(want.direction)
        assert int(got.positives.iloc[0]) == probes.evidence(HYPOTHESES[name](TEXT))["positives"]
    table = dashboard.column_table(df, (values > 0).mean(0), values.max(0))
    assert list(table.column) == list(range(values.shape[1]))
    best = df[~df.flagged.astype(bool)].sort_values("score", ascending=False).drop_duplicates("column")
    assert dict(zip(table.column, table.score)) == pytest.approx(dict(zip(best.column, best.score)))
    with pytest.raises(ConfigError):
        dashboard.column_labels(values[:5], TEXT)
