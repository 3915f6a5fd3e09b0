"""Features and Feature dashboard through AppTest: a tiny dictionary trained through the page (in the
background, through the queue), its metrics equal to the library's, units against features, one feature's
panels, steering in Sample (alpha 0 = the plain sample), and bad input answered with a message."""
import json
import re
import time

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rnnviz import checkpoint
from rnnviz import features as feat
from rnnviz.corpora import corpus_meta, quotes_task
from rnnviz.model import build
from rnnviz.vocab import Vocab

TIMEOUT = 120
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
TINY = dict(feat_size=48, feat_k=4, feat_steps=60)  # trains in about a second


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch):
    st.cache_data.clear()
    st.cache_resource.clear()
    pre = tmp_path / "pretrained"
    corpus = quotes_task(20_000, seed=0)
    model = build(Vocab.from_text(corpus.text), cell="lstm", hidden_size=12, num_layers=2, embed_size=6, seed=0)
    # its held-out split (2,000 characters) is the corpus a dictionary trains on
    checkpoint.save(model, pre / "shakespeare-lstm", meta={"corpus": corpus_meta(corpus, 0.1)})
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "atlas"))
    monkeypatch.setenv("RNNVIZ_FEATURES_DIR", str(tmp_path / "features"))
    yield pre
    st.cache_data.clear()
    st.cache_resource.clear()


def app(page: str) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"pages/{page}_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def trained(at: AppTest) -> AppTest:
    """Set the tiny settings, press Train, and rerun until the dictionary and its measurements are ready."""
    for k, v in TINY.items():
        at.number_input(key=k).set_value(v).run()
    assert any("No dictionary yet" in i.value for i in at.info)
    at.button(key="feat_train").click().run()
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not at.get("plotly_chart"):
        time.sleep(0.5)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_features_page_trains_and_shows_the_librarys_numbers(folders, tmp_path):
    at = trained(app("features"))
    from ui import features as fui
    study = next(iter(fui._server()["studies"].values()))
    d = study.dictionary
    assert (d.d_sae, d.k, d.layer, d.state) == (48, 4, 1, "h") and d.path.parent == tmp_path / "features"
    model, _ = checkpoint.load(folders / "shakespeare-lstm")
    want = feat.metrics(model, feat.load(d.path), study.text)  # an independent load and measurement
    shown = {m.label: m.value for m in at.metric}
    assert shown["FVU"] == f"{want['fvu']:.3f}" and shown["L0"] == f"{want['l0']:.3f}"
    ce = want["ce_recovered_out"]  # NaN on this tiny model (zeroing costs nothing): shown as n/a, not nan%
    assert shown["CE recovered (output)"] == (f"{ce:.1%}" if ce == ce else "n/a")
    assert shown["spliced in the recurrence"] == f"{want['loss_spliced_rec']:.4f}"
    md = "\n".join(m.value for m in at.markdown)
    assert f"**{want['loss_spliced_out']:.4f}** nats/char" in md
    table = at.dataframe[0].value
    assert len(table) == 48 and {"frequency", "max", "label", "score"} <= set(table.columns)
    acts = feat.feature_acts(model, d, study.text)
    np.testing.assert_allclose(table.sort_values("feature")["frequency"], (acts > 0).mean(0))
    vs = at.dataframe[1].value
    rows = feat.units_vs_features(model, d, study.text)
    assert list(vs.hypothesis) == [r["hypothesis"] for r in rows]
    np.testing.assert_allclose(vs["unit score"], [r["unit"]["score"] for r in rows])
    verdicts = [e.value for e in (*at.warning, *at.success, *at.info) if "feature" in e.value.lower()]
    assert verdicts, "the page says whether any feature beats the best unit"
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert fig["data"][0]["type"] == "scatter"
    # a feature's dashboard (the browser test clicks the map to open one)
    pick = int(table.iloc[0]["feature"])
    at.session_state["feat_feature"] = pick
    at.switch_page("pages/feature_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    md = "\n".join(m.value for m in at.markdown)
    assert f"### Feature {pick} of layer 1 h" in md and "nats/char" in md
    html = "\n".join(h.proto.body for h in at.get("html"))
    assert "outline" in html, "its top contexts mark their peaks"
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert len(charts) >= 4  # histogram, density, logit effect, loadings
    delta = feat.removal_effect(model, d, study.text, pick)
    assert f"**{delta:+.5f} nats/char**" in md


def test_steering_at_zero_is_the_plain_sample_and_bad_settings_get_a_message(folders):
    at = trained(app("features"))
    at.switch_page("pages/sample_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    plain = at.session_state["prime"], at.session_state["length"]
    assert not any("Steering with feature" in i.value for i in at.info)
    at.toggle(key="steer_on").set_value(True).run()
    at.number_input(key="steer_alpha").set_value(0.0).run()
    assert any("Steering with feature" in i.value and "α = 0" in i.value for i in at.info)  # said at the top
    assert not at.exception, [e.value for e in at.exception]
    html = [h.proto.body for h in at.get("html") if "rnnviz-text" in h.proto.body]
    assert len(html) >= 3  # the sample, and it beside the steered one
    assert html[-2] == html[-1], "alpha 0 adds nothing: the same text, drawn with the same probabilities"
    kl = [re.search(r"KL\(unsteered \|\| steered\) (\S+) nats", c.value) for c in at.caption]
    assert [float(m.group(1)) for m in kl if m][0] < 1e-9  # the fused and stepped runs differ only by rounding
    at.number_input(key="steer_alpha").set_value(5.0).run()
    html = [h.proto.body for h in at.get("html") if "rnnviz-text" in h.proto.body]
    assert html[-2] != html[-1], "a large alpha changes the sample"
    assert (at.session_state["prime"], at.session_state["length"]) == plain
    # measured on the text under study instead: the same dictionary, not retrained
    at.switch_page("pages/features_page.py").run()
    at.radio(key="feat_measure").set_value("the text under study").run()
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not any("Measured on the text under study" in c.value for c in at.caption):
        time.sleep(0.5)
        at.run()
    from ui import features as fui
    studies = list(fui._server()["studies"].values())
    assert len(studies) == 2 and studies[0].dictionary.path == studies[1].dictionary.path
    other = studies[1]
    assert other.text != studies[0].text
    model, _ = checkpoint.load(folders / "shakespeare-lstm")
    want = feat.metrics(model, other.dictionary, other.text)
    assert {m.label: m.value for m in at.metric}["FVU"] == f"{want['fvu']:.3f}"
    # bad settings on Features: a message, never a traceback
    at.number_input(key="feat_size").set_value(8).run()
    at.number_input(key="feat_k").set_value(32).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No dictionary with these settings" in e.value and "k" in e.value for e in at.error)


def test_cancel_saves_nothing(folders, tmp_path):
    at = app("features")
    at.number_input(key="feat_steps").set_value(100_000).run()  # long enough to cancel
    at.button(key="feat_train").click().run()
    from ui import features as fui
    job = next(iter(fui._server()["jobs"].values()))
    assert job.active
    job.stop()  # what the Cancel button calls
    job.join(60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No dictionary yet" in i.value for i in at.info) and not fui._server()["studies"]
    assert not [p for p in (tmp_path / "features").glob("*") if not p.name.startswith(".")], "nothing cached"
