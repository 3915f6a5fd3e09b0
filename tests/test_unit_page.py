"""The unit dashboard through AppTest: separated contexts, the output column's characters as themselves,
the CSV of what it plots, and zero or mean ablation run in the background with progress."""
import re
import time

import pytest
import streamlit as st
import torch

from rnnviz import checkpoint
from rnnviz.corpora import corpus_meta, quotes_task
from rnnviz.model import build
from rnnviz.vocab import Vocab
from test_atlas_pages import TIMEOUT, app, built

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch):
    st.cache_data.clear()
    st.cache_resource.clear()
    pre = tmp_path / "pretrained"
    corpus = quotes_task(20_000, seed=0)
    model = build(Vocab.from_text(corpus.text + "`<"), cell="lstm", hidden_size=12, num_layers=2, embed_size=6,
                  seed=0)
    with torch.no_grad():  # h0 of the top layer raises '`' and '<' most: the output column must show them
        model.head.weight[model.vocab.index["`"], 0] = 9.0
        model.head.weight[model.vocab.index["<"], 0] = 8.0
    checkpoint.save(model, pre / "shakespeare-lstm", meta={"corpus": corpus_meta(corpus, 0.1)})
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "atlas"))
    yield pre
    st.cache_data.clear()
    st.cache_resource.clear()


def _html(at) -> str:
    return "\n".join(h.proto.body for h in at.get("html"))


def _wait_for(at, text: str):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not any(text in m.value for m in at.markdown):
        time.sleep(0.5)
        at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_dashboard_contexts_output_column_csv_and_mean_ablation():
    at = built(app("unit"))
    html = _html(at)
    # the output column: a backtick and '<' as themselves, in code elements, never a broken code span
    assert "<code>`</code>" in html and "<code>&lt;</code>" in html
    assert not any("```" in m.value for m in at.markdown)
    # contexts: separated peaks
    heads = [m.value for m in at.markdown if m.value.startswith("**Highest**") or m.value.startswith("**Lowest**")]
    assert len(heads) == 2 and all("no two peaks within 20 characters" in h for h in heads)
    pos = [int(p.replace(",", "")) for p in re.findall(r"#([\d,]+): [+-]", html)]
    assert len(pos) == 16
    for side in (pos[:8], pos[8:]):
        assert all(abs(a - b) > 20 for i, a in enumerate(side) for b in side[:i])
    # the CSV of what it plots
    dl = [d for d in at.get("download_button") if "unit_csv" in d.proto.id]
    assert dl, "a CSV download"
    # mean ablation: chosen, run in the background, and named on screen
    at.radio(key="unit_hold").set_value("mean").run()
    assert any("its corpus mean" in b.label for b in at.button if b.key == "unit_ablate")
    at.button(key="unit_ablate").click().run()
    _wait_for(at, "nats/char")
    md = "\n".join(m.value for m in at.markdown)
    assert "Held at its corpus mean (" in md and "nats/char" in md
    # the value held is the atlas mean, and the loss change is the library's
    from ui import dashboard as dashboard_ui
    done = [v for v in dashboard_ui._server()["results"].values()]
    assert len(done) == 1 and done[0].value != 0.0
    assert f"{done[0].mean_change():+.4f} nats/char" in md
    # zero is its own run, not the mean's result
    at.radio(key="unit_hold").set_value("zero").run()
    assert not any("Held at" in m.value for m in at.markdown)
    assert any(b.label.startswith("Measure: hold it at 0 ") for b in at.button if b.key == "unit_ablate")



def test_ablation_job_cancels_and_then_finishes():
    from rnnviz import atlas as atlas_lib
    from rnnviz import dashboard
    from ui import dashboard as dashboard_ui

    corpus = quotes_task(20_000, seed=1).text
    model = build(Vocab.from_text(corpus), cell="gru", hidden_size=8, num_layers=1, embed_size=4, seed=0)
    atlas = atlas_lib.build_atlas(model, corpus, cache=False)
    key = dashboard_ui.ablation_key(atlas, 0, "h", 1, "mean")
    job = dashboard_ui.start(model, atlas, 0, "h", 1, "mean")
    job.stop()
    job.join(60)
    assert job.result is None and job.error is None and not dashboard_ui.running(key)
    assert dashboard_ui.result(key) is None
    job = dashboard_ui.start(model, atlas, 0, "h", 1, "mean")
    job.join(120)
    ab = dashboard_ui.result(key)
    assert ab is not None and ab.value == dashboard.hold_value(atlas, 0, "h", 1, "mean") != 0.0
    assert len(ab.held) == len(corpus) - 1
