"""Activations: the hypothesis's labels under the unit's text, rows of the heatmap scaled per unit,
exports that work offline, and the unit each model opens on (its best for its default hypothesis).

Fixtures (tiny untrained models in temporary folders, empty caches, one torch thread) and helpers come
from test_app; the tests marked slow read the shipped models in pretrained/.
"""
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager

from rnnviz import hypotheses, plots, render
from rnnviz.trace import trace
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, html, ok, spec, text_of

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


def deferred_downloads(monkeypatch) -> dict:
    """file name -> the callable a download button registers; called as a click in the browser would."""
    found = {}
    real = MediaFileManager.add_deferred

    def spy(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        found[file_name] = data_callable
        return real(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    return found


def test_html_exports_embed_plotly_and_load_nothing_from_outside(shipped, monkeypatch):  # noqa: F811
    downloads = deferred_downloads(monkeypatch)
    at = app("activations")
    ok(at)
    pages = {name: str(make()) for name, make in downloads.items() if name.endswith(".html")}
    assert len(pages) == 2  # the heatmap and the surprisal
    for name, page in pages.items():
        assert "plotly.js v" in page and "Plotly.newPlot" in page, name  # the library itself, in the file
        assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I), name  # no script fetched from a CDN
        assert not re.search(r"<link[^>]*\bhref\s*=", page, re.I), name


def unit_values(at):
    """The trace of the text under study, rerun here, and the unit shown."""
    ss = at.session_state
    ctx = ss["_ctx"]
    tr = trace(ctx.model, ctx.text, gates=False)
    return tr, tr.get(int(ss["layer"]), ss["kind"])[:, int(ss["unit"])]


def test_the_labels_band_under_the_unit_text(shipped):  # noqa: F811
    """The coloured text is the unit on its own range with the hypothesis's labels under it, exactly as
    render draws it from labels computed here; switched off, no band."""
    at = app("activations")
    at.selectbox(key="hypothesis").set_value("uppercase").run()
    ok(at)
    tr, v = unit_values(at)
    name = "uppercase"
    labels, mask = hypotheses.HYPOTHESES[name](tr.text), hypotheses.hypothesis_mask(name, tr.text)
    band = labels if mask is None else np.where(mask, labels, np.nan)
    lim = float(np.percentile(np.abs(v.astype(np.float64)), 95))
    ss = at.session_state
    label = f"L{ss['layer']} {ss['kind']}{ss['unit']}"
    want = render.colored_text(tr.text, v, vmin=-lim, vmax=lim, label=label, band=band, band_label=name)
    assert want in html(at)
    assert "band under a character: uppercase holds there" in html(at)
    assert "purple band marks where *uppercase* holds" in text_of(at.caption)
    assert f"full red at +{lim:.3g}, full blue at −{lim:.3g}" in text_of(at.caption)
    at.toggle(key="act_band").set_value(False).run()
    ok(at)
    assert render.colored_text(tr.text, v, vmin=-lim, vmax=lim, label=label) in html(at)
    assert "band under a character" not in html(at)
    at.toggle(key="act_band").set_value(True).run()
    at.selectbox(key="hypothesis").set_value("position in line").run()  # a count: no yes/no band
    ok(at)
    assert at.toggle(key="act_band").disabled
    assert "band under a character" not in html(at) and "is a count, not yes/no" in text_of(at.caption)


def test_heatmap_rows_on_each_units_own_scale(shipped):  # noqa: F811
    at = app("activations")
    ok(at)
    assert spec(at, 0)["data"][0]["colorbar"]["title"]["text"] == "value"
    at.radio(key="heat_scale").set_value("unit").run()
    ok(at)
    tr, _ = unit_values(at)
    ss = at.session_state
    values = tr.get(int(ss["layer"]), ss["kind"])  # (T, H)
    heat = spec(at, 0)["data"][0]
    z = plots_z(heat)
    units = [int(u) for u in heat["y"]]
    for row, u in enumerate(units):
        np.testing.assert_allclose(z[row], values[:120, u] / np.abs(values[:, u]).max(), rtol=1e-5, atol=1e-7)
    assert "own scale" in heat["colorbar"]["title"]["text"].replace("<br>", " ")
    assert heat["zmin"] == -1 and heat["zmax"] == 1


def plots_z(heat: dict) -> np.ndarray:
    """A heatmap trace's z from the JSON spec (plain lists, or plotly's typed-array encoding)."""
    import base64
    z = heat["z"]
    if isinstance(z, dict):
        shape = z["shape"] if isinstance(z["shape"], list) else [int(x) for x in z["shape"].split(",")]
        return np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"]).reshape(shape)
    return np.array(z, dtype=np.float64)


def test_best_unit_is_the_top_of_a_ranking_by_hand():
    """probes.best_unit on a planted trace: the unit that follows the corpus's default hypothesis (inside
    quotes, for a quotes model) is found, with its hypothesis, and the hand ranking agrees."""
    from types import SimpleNamespace

    from rnnviz.probes import best_unit, default_hypothesis
    rng = np.random.default_rng(0)
    text = "".join(f'He said "{w} and {w}" then {w} left. ' for w in ("yes", "no", "maybe", "so") * 20)
    y = hypotheses.HYPOTHESES["inside quotes"](text)
    layers = [{k: rng.normal(size=(len(text), 6)).astype(np.float32) for k in ("h", "c")} for _ in range(2)]
    layers[1]["c"][:, 4] = -2.0 * y + rng.normal(scale=0.8, size=len(text))  # low inside quotes, noisy
    tr = SimpleNamespace(text=text, layers=layers)
    config = {"corpus": {"name": "quotes-seed0"}}
    assert default_hypothesis(config, text) == "inside quotes"
    got = best_unit(tr, config)
    mask = hypotheses.hypothesis_mask("inside quotes", text)
    keep = np.ones(len(text), dtype=bool) if mask is None else mask
    scores = {(li, k, u): max(a, 1 - a) for li, layer in enumerate(layers) for k in ("h", "c")
              for u, a in enumerate(auroc_by_ranks(layer[k][keep], y[keep]))}
    want = max(scores, key=scores.get)
    assert want == (1, "c", 4) and (got["layer"], got["kind"], got["unit"]) == want
    assert got["hypothesis"] == "inside quotes" and got["score"] == pytest.approx(scores[want])


# --- the shipped models -------------------------------------------------------------------------------

SPAN = re.compile(r'<span title="#(\d+) [^"]*? (L\d+ [hc]\d+)=[^"]*? label=([^"]*)" style="background-color: '
                  r'rgb\((\d+), (\d+), (\d+)\)')


def auroc_by_ranks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC of every column of x (T, U) against yes/no y, ties at their average rank."""
    out = []
    for col in x.T.astype(np.float64):
        order = np.argsort(col, kind="mergesort")
        ranks = np.empty(len(col))
        ranks[order] = np.arange(1, len(col) + 1)
        for v in np.unique(col[np.diff(np.sort(col), prepend=np.nan) == 0]):  # average the ranks of ties
            ranks[col == v] = ranks[col == v].mean()
        pos = y > 0.5
        out.append((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))
    return np.array(out)


def best_by_hand(model, text: str, hypothesis: str):
    """(layer, kind, unit) that best tells the hypothesis's 1 from 0 on its counted characters."""
    tr = trace(model, text, gates=False)
    y, mask = hypotheses.HYPOTHESES[hypothesis](text), hypotheses.hypothesis_mask(hypothesis, text)
    keep = np.ones(len(text), dtype=bool) if mask is None else mask
    best, where = -1.0, None
    for li, layer in enumerate(tr.layers):
        for kind in [k for k in ("h", "c") if k in layer]:
            au = auroc_by_ranks(layer[kind][keep], y[keep])
            score = np.maximum(au, 1 - au)
            if score.max() > best:
                best, where = float(score.max()), (li, kind, int(score.argmax()))
    return where


def shown_unit(at):
    ss = at.session_state
    return ss["_ctx"].name, (int(ss["layer"]), ss["kind"], int(ss["unit"]))


@pytest.mark.slow
def test_tour_stop_then_switching_models(folders, monkeypatch):  # noqa: F811
    """Tour stop 1 opens python-lstm's c59 on its own colour scale, and its words match its colours; the
    sidebar's switch to quotes-lstm opens that model's best unit for inside quotes (found by hand here),
    not a meaningless c59; back on python-lstm, c59 again; a link that sets model and unit is obeyed."""
    from rnnviz import tour
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(PRETRAINED))
    at = app()
    at.button(key="tour_go_quotes").click().run()
    ok(at)
    stop = tour.STOPS[tour.stop_index("quotes")]
    assert shown_unit(at) == ("python-lstm", tour.QUOTE_UNIT)
    assert at.radio(key="heat_scale").value == "unit"
    heat = spec(at, 0)["data"][0]
    z = plots_z(heat)
    row = [int(u) for u in heat["y"]].index(tour.QUOTE_UNIT[2])
    ctx = at.session_state["_ctx"]
    layer, kind, unit = tour.QUOTE_UNIT
    all_units = trace(ctx.model, ctx.text, gates=False).get(layer, kind)  # (T, H)
    v = all_units[:, unit]
    np.testing.assert_allclose(z[row], v[:120] / np.abs(v).max(), rtol=1e-5, atol=1e-7)
    # on its own scale c59 reaches 0.3 or more of full colour in this window; on the shared scale (the
    # largest |value| of the units shown) it stayed under a tenth: nearly white
    shown = [int(u) for u in heat["y"]]
    assert np.abs(z[row]).max() > 0.3 and np.abs(v[:120]).max() / np.abs(all_units[:120, shown]).max() < 0.1
    # the words and the colours: the paragraph's colour for code against the median code character's colour
    spans = [m for m in SPAN.findall(html(at)) if m[1] == "L1 c59"]
    assert len(spans) == len(at.session_state["_ctx"].text)
    code = [(255 - int(r)) / (255 - render.NEG_COLOR[0]) for _, _, lab, r, g, b in spans
            if lab == "0" and int(b) > int(r)]  # blue cells of code (label 0)
    labelled = sum(lab == "0" for _, _, lab, *_ in spans)
    assert len(code) > 0.9 * labelled  # code is blue
    depth = float(np.median(code + [0.0] * (labelled - len(code))))  # how far to full blue, 0 white, 1 full
    words = stop.paragraph()
    assert ("deep blue across ordinary code" in words) <= (depth >= 0.8)
    assert ("blue across ordinary code" in words) <= (depth >= 0.5)

    # the sidebar switches model, the unit keys unchanged: the new model opens on its best unit
    at.button(key="tour_end").click().run()
    at.selectbox(key="model_choice").set_value(f"shipped:{PRETRAINED / 'quotes-lstm'}").run()
    ok(at)
    ctx = at.session_state["_ctx"]
    want = best_by_hand(ctx.model, ctx.text, "inside quotes")
    assert shown_unit(at) == ("quotes-lstm", want) and want != tour.QUOTE_UNIT
    captions = text_of(at.caption)
    assert f"Opened on L{want[0]} {want[1]}{want[2]}" in captions and "*inside quotes*" in captions
    # the hypothesis the tour chose for Python goes back to this model's own, the one the unit was chosen for
    assert at.selectbox(key="hypothesis").value == "inside quotes"
    assert "purple band marks where *inside quotes* holds" in text_of(at.caption)
    # Python's strings on this text: no label 1 among the characters counted, and the page says so
    at.selectbox(key="hypothesis").set_value("inside a string (tokenize)").run()
    ok(at)
    counted = int(hypotheses.hypothesis_mask("inside a string (tokenize)", ctx.text).sum())
    assert hypotheses.HYPOTHESES["inside a string (tokenize)"](ctx.text).max() == 0
    assert f"holds on none of the {counted:,} characters it counts in this text" in text_of(at.caption)
    assert "purple band marks" not in text_of(at.caption)
    at.selectbox(key="model_choice").set_value(f"shipped:{PRETRAINED / 'python-lstm'}").run()
    ok(at)
    assert shown_unit(at) == ("python-lstm", tour.QUOTE_UNIT)  # the unit the tour set for that model
    # a link (Neuron search, Gradients) sets model and unit together: kept
    ss = at.session_state
    ss["model_choice"], ss["layer"], ss["kind"], ss["unit"] = f"shipped:{PRETRAINED / 'quotes-lstm'}", 0, "h", 7
    at.run()
    ok(at)
    assert shown_unit(at) == ("quotes-lstm", (0, "h", 7))


def test_switching_model_opens_the_new_models_best_unit(shipped):  # noqa: F811
    """Tiny models: a unit picked on the LSTM is not carried to the GRU (which opens on its own best unit,
    found by hand), and comes back with the LSTM."""
    from rnnviz.probes import default_hypothesis
    pre, _ = shipped
    at = app("activations")
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="kind").set_value("c").run()
    at.number_input(key="unit").set_value(9).run()
    ok(at)
    at.selectbox(key="model_choice").set_value(f"shipped:{pre / 'b-gru'}").run()
    ok(at)
    ctx = at.session_state["_ctx"]
    want = best_by_hand(ctx.model, ctx.text, default_hypothesis(ctx.config, ctx.text))
    assert shown_unit(at) == ("b-gru", want) and want != (0, "h", 9)
    at.selectbox(key="model_choice").set_value(f"shipped:{pre / 'a-lstm'}").run()
    ok(at)
    assert shown_unit(at) == ("a-lstm", (0, "c", 9))  # the unit the user picked for that model


def test_gates_carries_the_unit_across_models_as_activations_does(folders, vocab):  # noqa: F811
    """A model switched on Gates does not hand Activations a clamped unit: Gates opens the new model's best
    unit (found by hand; Activations then shows the same), and the first model's unit comes back with it."""
    from rnnviz import checkpoint
    from rnnviz.model import build
    from rnnviz.probes import default_hypothesis
    from test_app import choose, save_tiny
    pre, _ = folders
    save_tiny(pre, "a-lstm", vocab, "lstm", layers=2)  # 16 units a layer
    small = build(vocab, cell="gru", hidden_size=8, num_layers=1, embed_size=8, seed=0)
    checkpoint.save(small, pre / "b-gru", meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.9})
    at = app("activations")
    at.selectbox(key="layer").set_value(1).run()
    at.selectbox(key="kind").set_value("c").run()
    at.number_input(key="unit").set_value(12).run()
    ok(at)
    at.switch_page("pages/gates_page.py").run()
    choose(at, pre / "b-gru")
    ok(at)
    ctx = at.session_state["_ctx"]
    want = best_by_hand(ctx.model, ctx.text, default_hypothesis(ctx.config, ctx.text))
    assert shown_unit(at) == ("b-gru", want) and want != (0, "h", 7)  # 7: unit 12 clamped to this model
    assert f"Opened on L{want[0]} {want[1]}{want[2]}" in text_of(at.caption)
    assert f"unit {want[2]}, layer {want[0]}" in text_of(at.markdown)  # the ribbons are of that unit
    at.switch_page("pages/activations_page.py").run()
    ok(at)
    assert shown_unit(at) == ("b-gru", want)
    at.switch_page("pages/gates_page.py").run()
    choose(at, pre / "a-lstm")
    ok(at)
    assert shown_unit(at) == ("a-lstm", (1, "c", 12))  # the unit picked for that model
    at.switch_page("pages/activations_page.py").run()
    ok(at)
    assert shown_unit(at) == ("a-lstm", (1, "c", 12))
