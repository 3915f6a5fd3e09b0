"""Page tests with Streamlit's AppTest: every page runs, shows its widgets, and reacts to them.

Each test points RNNVIZ_PRETRAINED / RNNVIZ_MODELS at temporary folders holding tiny models
(hidden size 16, untrained: the pages must work for any weights), and starts with empty caches.
"""
import base64
import io
import json
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from rnnviz import checkpoint
from rnnviz.corpora import load_corpus
from rnnviz.model import build
from rnnviz.vocab import Vocab
import ui

TIMEOUT = 60


@pytest.fixture(scope="module")
def vocab():
    return Vocab.from_text(load_corpus("shakespeare", max_chars=50_000).text)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core box spinning threads cost 10-100x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def folders(tmp_path, monkeypatch):
    pre, models = tmp_path / "pretrained", tmp_path / "models"
    pre.mkdir()
    models.mkdir()
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(models))
    return pre, models


def save_tiny(folder, name, vocab, cell="lstm", layers=2):
    model = build(vocab, cell=cell, hidden_size=16, num_layers=layers, embed_size=8, seed=0)
    return checkpoint.save(model, folder / name, meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.9})


@pytest.fixture
def shipped(folders, vocab):
    """Three tiny shipped models; the LSTM comes first, so it is the default."""
    pre, models = folders
    save_tiny(pre, "a-lstm", vocab, "lstm", layers=2)
    save_tiny(pre, "b-gru", vocab, "gru", layers=1)
    save_tiny(pre, "c-rnn", vocab, "rnn", layers=1)
    return folders


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"pages/{page}_page.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def spec(at: AppTest, i: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def title(fig: dict) -> str:
    t = fig["layout"].get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


def html(at: AppTest) -> str:
    return "\n".join(h.proto.body for h in at.get("html"))


def choose(at: AppTest, path) -> None:
    """Pick a shipped model in the sidebar's model picker."""
    at.selectbox(key="model_choice").set_value(f"shipped:{path}").run()


def text_of(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# --- empty state, sidebar, home --------------------------------------------------------------------

def test_empty_pretrained_shows_instruction(folders):
    at = app()
    ok(at)
    assert "No model to study yet" in text_of(at.warning)
    assert at.button(key="quick_train")
    at.switch_page("pages/activations_page.py").run()
    ok(at)
    assert "No model to study yet" in text_of(at.warning)
    # one click starts the quick recipe; stopped early, its model still serves every page
    at.button(key="quick_train").click().run()
    ok(at)
    recs = at.session_state["train_jobs"]
    assert len(recs) == 1 and recs[0]["job"].running
    assert "under way" in text_of(at.info) and at.get("progress")
    assert not [b for b in at.button if b.key == "quick_train"]  # no second run by a second click
    time.sleep(0.5)
    recs[0]["job"].stop()
    wait_jobs(at)
    at.run()
    ok(at)
    assert at.selectbox(key="model_choice").value.startswith("mem:")
    assert at.title[0].value == "Activations" and at.get("plotly_chart")


def test_home_model_card_and_links(shipped):
    at = app()
    ok(at)
    assert at.title[0].value.startswith("rnnviz")
    md = text_of(at.markdown)
    assert "**Cell:** LSTM" in md and "**Hidden size:** 16" in md and "**Parameters:**" in md
    assert md.count("**Cell:**") == 1, "the model card once (in the sidebar), not twice"
    assert "Model under study: a-lstm" in md
    assert len(at.get("page_link")) == len(ui.PAGES) - 1  # Home links every other page
    assert at.selectbox(key="model_choice").value.startswith("shipped:")
    assert "Device: CPU" in text_of(at.caption)
    choose(at, shipped[0] / "b-gru")
    ok(at)
    assert "**Cell:** GRU" in text_of(at.markdown)


# --- activations -------------------------------------------------------------------------------------

def test_activations_unit_layer_and_exports(shipped):
    at = app("activations")
    ok(at)
    for key in ("layer", "kind", "sort_by", "hypothesis"):
        assert at.selectbox(key=key)
    assert at.slider(key="window_start") and at.get("dataframe")
    from rnnviz.probes import best_unit
    from rnnviz.trace import trace
    ctx = at.session_state["_ctx"]
    best = best_unit(trace(ctx.model, ctx.text, gates=False), ctx.config)  # each model opens on its best unit
    assert (at.selectbox(key="layer").value, at.selectbox(key="kind").value,
            at.number_input(key="unit").value) == (best["layer"], best["kind"], best["unit"])
    at.selectbox(key="layer").set_value(1).run()
    at.selectbox(key="kind").set_value("h").run()
    at.number_input(key="unit").set_value(0).run()
    assert 'title="#0 ' in html(at) and "L1 h0=" in html(at)
    heat = spec(at, 0)
    assert heat["data"][0]["type"] == "heatmap" and "Layer 1 h" in title(heat)
    assert spec(at, 1)["data"][0]["type"] == "bar"  # surprisal
    assert len(at.get("download_button")) == 4

    at.number_input(key="unit").set_value(5).run()
    ok(at)
    assert "L1 h5=" in html(at) and "L1 h0=" not in html(at)
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="kind").set_value("c").run()
    ok(at)
    assert "Layer 0 c" in title(spec(at, 0)) and "L0 c5=" in html(at)
    at.slider(key="window_start").set_value(40).run()
    ok(at)
    assert "characters 40 to" in title(spec(at, 0))
    at.selectbox(key="sort_by").set_value("selectivity").run()
    ok(at)


def test_script_text_shows_literally(shipped):
    at = app("activations")
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input("<script>alert('x')</script> and <b>bold</b>").run()
    ok(at)
    body = html(at)
    # one span per character: the tag's characters arrive escaped, one by one, never as a tag
    assert "&lt;</span>" in body and "<script" not in body and "<b>" not in body
    assert "characters under study" in text_of(at.caption)


def test_text_notices_and_bad_upload(shipped):
    at = app()
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input("héllo ☃ " + "x" * 25_000).run()
    ok(at)
    notes = text_of(at.info)
    assert "cut to its first 20,000" in notes and "never saw" in notes and "'☃'" in notes
    at.radio(key="text_source").set_value("Upload a text file").run()
    at.file_uploader(key="text_upload").set_value(("bad.txt", b"\xff\xfe\x00\x81 not utf-8", "text/plain")).run()
    assert not at.exception
    assert "not UTF-8" in text_of(at.error)


def test_checkpoint_upload_good_and_hostile(shipped, vocab, tmp_path):
    at = app()
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("m/config.json", json.dumps({"format_version": 1, "model": {"vocab": ["a", "b"]}}))
        z.writestr("m/model.safetensors", b"\x80\x04evil pickle")
    at.file_uploader(key="ckpt_upload").set_value([("m.zip", bad.getvalue(), "application/zip")]).run()
    assert not at.exception
    assert "Upload rejected" in text_of(at.error) and "pickle" in text_of(at.error)
    at.file_uploader(key="ckpt_upload").set_value([("junk.zip", b"not a zip", "application/zip")]).run()
    assert "not a zip" in text_of(at.error)
    mine = save_tiny(tmp_path, "mine", vocab, "gru", layers=1)
    good = checkpoint.to_zip(mine)
    at.file_uploader(key="ckpt_upload").set_value([("mine.zip", good, "application/zip")]).run()
    ok(at)
    assert at.selectbox(key="model_choice").value.startswith("mem:")
    assert "**Cell:** GRU" in text_of(at.markdown)
    # the two files of a checkpoint folder work too; a mismatched pair is refused with a message
    # (a loaded model empties the uploader: it comes back under a fresh key)
    at.file_uploader[0].set_value([
        ("config.json", (mine / "config.json").read_bytes(), "application/json"),
        ("model.safetensors", (shipped[0] / "a-lstm" / "model.safetensors").read_bytes(), "application/octet-stream"),
    ]).run()
    assert not at.exception and "does not match" in text_of(at.error)
    save_tiny(tmp_path, "rnn", vocab, "rnn", layers=1)
    at.file_uploader[0].set_value([
        ("config.json", (tmp_path / "rnn" / "config.json").read_bytes(), "application/json"),
        ("model.safetensors", (tmp_path / "rnn" / "model.safetensors").read_bytes(), "application/octet-stream"),
    ]).run()
    ok(at)
    assert "**Cell:** RNN" in text_of(at.markdown)


# --- gates -------------------------------------------------------------------------------------------

def test_gates_lstm_then_rnn(shipped):
    at = app("gates")
    ok(at)
    assert len(at.get("plotly_chart")) == 3
    names = [t["name"] for t in spec(at, 0)["data"]]
    assert names == ["i", "f", "g", "o"]
    assert 'label="i"' not in html(at) and "i=" in html(at) and "f=" in html(at)
    at.number_input(key="unit").set_value(3).run()
    ok(at)
    assert "unit 3" in title(spec(at, 0))
    choose(at, shipped[0] / "c-rnn")
    ok(at)
    assert "no gates" in text_of(at.info)
    assert [t["name"] for t in spec(at, 0)["data"]] == ["pre", "h"]


# --- gradients ---------------------------------------------------------------------------------------

def test_gradients_sliders_and_memory(shipped, monkeypatch):
    from rnnviz import experiments

    calls = []

    def fake(steps_per_cell=None, stop_event=None, report=None, learning=None, **kw):
        calls.append(steps_per_cell)
        report(done=1, total=3, message="training RNN")
        learning["lstm"] = pd.DataFrame({"step": [10, 100, 10, 100], "gap": [2, 2, 8, 8], "accuracy": [0.1, 1, 0, 0.9],
                                         "chance": [1 / 26] * 4, "items": [300] * 4})
        return pd.DataFrame({"cell": ["rnn", "rnn", "lstm", "lstm"], "gap": [2, 8, 2, 8],
                             "accuracy": [0.9, 0.1, 1.0, 0.9], "chance": [1 / 26] * 4, "items": [300] * 4,
                             "steps": [5] * 4, "seconds": [0.1] * 4})

    monkeypatch.setattr(experiments, "memory_experiment", fake)
    at = app("gradients")
    ok(at)
    fresh = spec(at, 0)
    assert fresh["layout"]["yaxis"]["type"] == "log"
    names = [t["name"] for t in fresh["data"] if t.get("showlegend", True)]
    assert [n.split(" = ")[0] for n in names] == ["RNN, ρ", "LSTM, f̄", "LSTM, f̄", "GRU, z̄"]
    assert [n.split(" (")[-1] for n in names[1:]] == ["forget bias +3.0)", "forget bias +0.0)", "update bias +3.0)"]
    # h solid, the LSTMs' cells dashed, a dotted path line for every model
    assert sum(t["line"].get("dash") == "dash" for t in fresh["data"]) == 2
    assert sum(t["line"].get("dash") == "dot" for t in fresh["data"]) == 4
    assert "keeps" in text_of(at.markdown) and "Try this" in text_of(at.markdown)
    # no shipped memory models here: the page says so and offers the live experiment
    assert "memory-task models" in text_of(at.info)
    trained = spec(at, 1)
    trained_names = " ".join(t["name"] for t in trained["data"])
    assert "this model" in trained_names and "GRU" in trained_names and "RNN" in trained_names
    # the first screen's length and the trained models' length are two sliders: each redraws its own chart
    def points(chart: int) -> int:
        y = spec(at, chart)["data"][0]["y"]  # Plotly sends arrays as base64 ("bdata") of their dtype
        return len(base64.b64decode(y["bdata"])) // np.dtype(y["dtype"]).itemsize if "bdata" in y else len(y)

    fresh_n, trained_n = points(0), points(1)
    at.slider(key="grad_len").set_value(60).run()
    ok(at)
    assert (points(0), points(1)) == (fresh_n - 40, trained_n)
    at.slider(key="trained_len").set_value(50).run()
    ok(at)
    assert (points(0), points(1)) == (fresh_n - 40, trained_n - 50)
    at.slider(key="grad_len").set_value(100).run()
    fresh = spec(at, 0)
    rnn_before = fresh["data"][0]["y"]
    at.slider(key="radius").set_value(1.3).run()
    at.slider(key="forget_bias").set_value(2.0).run()
    at.slider(key="update_bias").set_value(-3.0).run()
    ok(at)
    names = {t["name"] for t in spec(at, 0)["data"]}
    assert "RNN, ρ = 1.30" in names and any("forget bias +2.0" in n for n in names)
    assert any(n.startswith("GRU, z̄ = 0.0") and "update bias -3.0" in n for n in names)
    assert spec(at, 0)["data"][0]["y"] != rnn_before
    at.slider(key="mem_steps").set_value(200).run()
    at.button(key="mem_start").click().run()
    job = at.session_state["memory_job"]
    job.join(10)
    at.run()
    ok(at)
    assert calls == [200], "every cell gets the same number of steps, the slider's"
    assert any("Memory" in title(spec(at, i)) for i in range(len(at.get("plotly_chart"))))
    # recall during training, at the longest gap first, then at the gap chosen
    learned = {title(spec(at, i)): spec(at, i) for i in range(len(at.get("plotly_chart")))}
    assert learned["Recall at gap 8 during training"]["data"][0]["name"] == "LSTM"
    at.select_slider(key="mem_gap").set_value(2).run()
    ok(at)
    assert any(title(spec(at, i)) == "Recall at gap 2 during training" for i in range(len(at.get("plotly_chart"))))


def test_gradients_opens_on_the_shipped_memory_models(folders, vocab):
    """With the shipped memory models, the page draws their recall and gradients, and a unit button
    opens Activations on memory-lstm's unit (the model switches with it)."""
    import shutil
    from streamlit_server import ROOT
    pre, _ = folders
    save_tiny(pre, "a-lstm", vocab)
    for cell in ("rnn", "gru", "lstm"):
        shutil.copytree(ROOT / "pretrained" / f"memory-{cell}", pre / f"memory-{cell}")
    at = app("gradients")
    ok(at)
    titles = [title(spec(at, i)) for i in range(len(at.get("plotly_chart")))]
    assert any("recall accuracy" in t for t in titles) and any("back to its key" in t for t in titles)
    assert any("|∂L/∂c|" in t for t in titles)
    words = text_of(at.markdown)
    assert "recalls" in words and "at gap 64" in words
    unit_buttons = [b for b in at.button if str(b.key).startswith("mem_unit_")]
    assert len(unit_buttons) == 6
    unit = int(unit_buttons[0].key.split("_")[-1])
    unit_buttons[0].click().run()
    ok(at)
    assert at.session_state["model_choice"] == f"shipped:{pre / 'memory-lstm'}"
    assert (at.session_state["layer"], at.session_state["kind"], at.session_state["unit"]) == (0, "c", unit)
    assert at.title[0].value == "Activations"


# --- sample ------------------------------------------------------------------------------------------

def test_sample_temperature_and_clamp(shipped):
    at = app("sample")
    ok(at)
    assert at.slider(key="temperature").value == 0.8
    assert at.text_area(key="prime") and at.toggle(key="clamp_on")
    for key in ("length", "seed", "top_k", "clamp_unit", "clamp_value"):
        assert at.number_input(key=key)
    at.number_input(key="length").set_value(60).run()
    first = html(at)
    assert "p=" in first
    assert "T=0.8" in {t["name"] for t in spec(at)["data"]}
    at.slider(key="temperature").set_value(1.5).run()
    ok(at)
    assert html(at) != first
    assert "Generated at temperature 1.50" in text_of(at.markdown)
    at.slider(key="dist_pos").set_value(10).run()
    at.text_area(key="prime").input("To be").run()
    ok(at)
    at.toggle(key="clamp_on").set_value(True).run()
    at.selectbox(key="clamp_kind").set_value("c").run()
    at.number_input(key="clamp_value").set_value(5.0).run()
    ok(at)
    assert len(at.get("html")) == 3
    assert any("held at 5" in m.value for m in at.markdown)


# --- neuron search -----------------------------------------------------------------------------------

def test_neuron_search_regex_and_send(shipped):
    at = app("neurons")
    ok(at)
    at.selectbox(key="hypothesis").set_value("position in line").run()
    ok(at)
    bars = spec(at)
    assert bars["data"][0]["type"] == "bar" and len(bars["data"][0]["y"]) == 20
    at.selectbox(key="hypothesis").set_value("custom regex").run()
    at.text_input(key="custom_regex").input("(unclosed").run()
    assert not at.exception
    assert "invalid regular expression" in text_of(at.error)
    at.text_input(key="custom_regex").input(r"[A-Z]\w+").run()
    ok(at)
    top = spec(at)["data"][0]["y"][0]  # 'L1 h7', say
    layer, unit = int(top.split()[0][1:]), int(top.split()[1][1:])
    at.button(key="act_0").click().run()
    ok(at)
    assert at.title[0].value == "Activations"
    assert at.selectbox(key="layer").value == layer and at.number_input(key="unit").value == unit
    assert at.selectbox(key="hypothesis").value == "custom regex"  # shared with Activations


def test_neuron_search_sends_to_clamp(shipped):
    at = app("neurons")
    at.button(key="clamp_1").click().run()
    ok(at)
    assert at.title[0].value == "Sample"
    assert at.toggle(key="clamp_on").value is True
    assert len(at.get("html")) == 3


# --- train -------------------------------------------------------------------------------------------

def wait_jobs(at: AppTest, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    for rec in at.session_state["train_jobs"]:
        rec["job"].join(max(0.1, deadline - time.time()))
        assert not rec["job"].running


def small_training(at: AppTest, steps: int) -> None:
    """Set the Train page to a tiny model on the memory corpus for `steps` steps (not started)."""
    at.selectbox(key="tr_corpus").set_value("memory")
    at.select_slider(key="tr_hidden").set_value(16)
    at.number_input(key="tr_seq").set_value(16)
    at.number_input(key="tr_batch").set_value(4)
    at.radio(key="tr_budget").set_value("steps").run()
    at.number_input(key="tr_steps").set_value(steps)


def test_train_start_stop_and_use(folders):
    at = app("train")
    ok(at)
    assert "No model yet" in text_of(at.warning)  # the sidebar says so; the page still works
    small_training(at, steps=100_000)
    at.number_input(key="tr_sample_every").set_value(5)
    at.button(key="tr_start").click().run()
    ok(at)
    recs = at.session_state["train_jobs"]
    assert len(recs) == 1 and recs[0]["job"].running
    assert at.get("progress")
    time.sleep(1.0)
    at.button(key="tr_stop").click().run()
    wait_jobs(at)
    at.run()
    ok(at)
    assert recs[0]["job"].snapshot()["state"] == "stopped"
    assert at.selectbox(key="model_choice").value.startswith("mem:")  # the only model: selected
    assert any("trained in this session" in o for o in at.selectbox(key="model_choice").options)
    assert at.button(key=f"use_{recs[0]['registered']}")
    assert at.get("download_button")
    at.button(key=f"save_{recs[0]['registered']}").click().run()
    ok(at)
    assert (folders[1] / recs[0]["path"].name / "model.safetensors").is_file()
    assert any("(saved)" in o for o in at.selectbox(key="model_choice").options)
    curve = spec(at)
    assert curve["data"] and curve["data"][0]["name"].endswith("train")
    # a second run (steps budget) overlays on the same chart
    at.number_input(key="tr_steps").set_value(3)
    at.button(key="tr_start").click().run()
    wait_jobs(at)
    at.run()
    ok(at)
    names = {t["name"] for t in spec(at)["data"]}
    assert len({n.rsplit(" ", 1)[0] for n in names}) == 2
    # the trained model works on the analysis pages
    at.switch_page("pages/activations_page.py").run()
    ok(at)
    assert at.get("plotly_chart")


@pytest.mark.parametrize("here", [True, False])
def test_the_server_skips_streamlits_collection_after_every_run(here, tmp_path):
    """`streamlit run app.py` reads .streamlit/config.toml from the checkout: it turns off the full
    gc.collect() Streamlit runs after each script run (0.13 s, more than most moves cost; see
    docs/reliability.md). Elsewhere Streamlit's default is on, so the check can tell."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", "from streamlit import config; print(config.get_option('runner.postScriptGC'))"],
                         cwd=root if here else tmp_path, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == ("False" if here else "True"), out.stderr[-2000:]


def test_a_class_that_follows_the_teacher_measures_each_fresh_curve_once(shipped, monkeypatch):
    """Two sessions (two students) set ρ to 1.3 on Gradients: the RNN's curve is computed once, by the
    first; the second draws the cached curve, and it equals a fresh computation of the same parameters."""
    from rnnviz import lesson
    from ui import gradients as gui

    computed, asked = [], []
    measure, cached = lesson.fresh_curve, gui.fresh_curves
    monkeypatch.setattr(lesson, "fresh_curve", lambda key, *a: computed.append((key, a[-1])) or measure(key, *a))
    monkeypatch.setattr(gui, "fresh_curves", lambda *a: asked.append(a) or cached(*a))
    first, second = app("gradients"), app("gradients")
    assert sorted(computed) == [("gru", 3.0), ("lstm-half", 0.0), ("lstm-open", 3.0), ("rnn", 0.9)]  # once, by the first
    first.slider(key="radius").set_value(1.3).run()
    second.slider(key="radius").set_value(1.3).run()
    ok(first)
    ok(second)
    assert computed.count(("rnn", 1.3)) == 1 and len(computed) == 5
    vocab, text, hidden, radius = asked[-1][:4]
    assert radius == 1.3
    fresh = measure("rnn", list(vocab), text, hidden, 1.3)
    drawn = {t["name"]: t for t in spec(second)["data"]}

    def values(trace) -> np.ndarray:
        y = trace["y"]  # Plotly sends arrays as base64 ("bdata") of their dtype
        return np.frombuffer(base64.b64decode(y["bdata"]), y["dtype"]) if "bdata" in y else np.array(y, float)

    np.testing.assert_allclose(values(drawn[fresh.label]), fresh.relative("h"), rtol=1e-12)
    np.testing.assert_allclose(values(drawn[f"{fresh.label}: {fresh.gain_name}"]), fresh.gain * fresh.relative("h")[-1],
                               rtol=1e-12)
