"""Issue 24, the teacher: a memory unit is shown on its own task's text, with a banner naming the model
shown; the Train page's overlaid runs are compared at equal characters seen; Gates and Gradients offer
CSV downloads of what they plot (AppTest over tiny models and the shipped memory models)."""
import shutil

import pytest

from streamlit_server import ROOT
from test_app import clean_caches, folders, one_thread, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, save_tiny, text_of


def banner_title(at) -> str:
    return next(m.value for m in at.markdown if str(m.value).startswith("**Tour, stop"))


@pytest.mark.slow
def test_a_memory_unit_opens_on_fresh_memory_task_text_and_the_banner_names_it(folders, vocab):  # noqa: F811
    pre, _ = folders
    save_tiny(pre, "shakespeare-lstm", vocab)  # the stop's model, tiny: the page under test is the point
    for cell in ("rnn", "gru", "lstm"):
        shutil.copytree(ROOT / "pretrained" / f"memory-{cell}", pre / f"memory-{cell}")
    at = app()
    at.button(key="tour_go_memory").click().run()
    ok(at)
    assert at.title[0].value == "Gradients through time"
    assert banner_title(at).endswith("· model: shakespeare-lstm")
    csv = {b.proto.label for b in at.get("download_button")}  # every chart of the page has its table
    assert {"The curves (CSV)", "Recall (CSV)", "The gradients (CSV)", "The units' gradients (CSV)",
            "These norms (CSV)"} <= csv
    unit_button = next(b for b in at.button if str(b.key).startswith("mem_unit_"))
    unit_button.click().run()
    ok(at)
    assert at.title[0].value == "Activations"
    assert at.session_state["model_choice"] == f"shipped:{pre / 'memory-lstm'}"
    # the banner names the model on screen, and says which one the stop opened on
    title = banner_title(at)
    assert title.endswith("· model shown: memory-lstm (this stop opened on shakespeare-lstm)")
    # the text under study is a fresh draw of the memory task, in the model's own alphabet
    notices = text_of(at.sidebar.info)
    assert "No held-out text" not in notices and "never saw" not in notices
    assert "fresh draw of its memory task" in notices
    text = at.session_state["_ctx"].text
    lines = text.split("\n")[1:-1]
    assert len(lines) > 20 and all(ln[0] == ln[-1] and ln[-2] == "=" and ln[0].isupper() for ln in lines)
    at.button(key="tour_prev").click().run()  # back to the stop: its own model again
    ok(at)
    assert banner_title(at).endswith("· model: shakespeare-lstm")



@pytest.mark.slow
def test_train_overlays_two_cells_after_the_same_characters(folders):  # noqa: F811
    """An LSTM and an RNN given different step budgets (as a time budget would): the chart's axis is the
    characters seen, and the words compare them where both have read the same amount."""
    from test_app import small_training, spec, wait_jobs

    at = app("train")
    small_training(at, steps=6)
    at.button(key="tr_start").click().run()
    wait_jobs(at)
    at.run()
    small_training(at, steps=20)
    at.selectbox(key="tr_cell").set_value("rnn")
    at.number_input(key="tr_batch").set_value(2).run()
    at.button(key="tr_start").click().run()
    wait_jobs(at)
    at.run()
    ok(at)
    fig = spec(at)
    assert "characters seen" in fig["layout"]["xaxis"]["title"]["text"]
    assert len({t["name"].rsplit(" ", 1)[0] for t in fig["data"]}) == 2
    common = min(6 * 4 * 16, 20 * 2 * 16)  # steps x batch x sequence length
    words = text_of(at.markdown)
    assert f"After the same amount of text**, {common:,} characters" in words
    assert "step 6," in words and f"step {common // (2 * 16)}," in words  # the RNN where it had read as much


def test_gates_and_gradients_offer_csv_of_what_they_plot(folders, vocab):  # noqa: F811
    pre, _ = folders
    save_tiny(pre, "a-lstm", vocab)
    at = app("gates")
    ok(at)
    labels = {b.proto.label for b in at.get("download_button")}
    layer = at.session_state["layer"]
    assert {"Gates of unit 0, whole text (CSV)", "Saturation of every unit (CSV)",
            f"Histograms of layer {layer} (CSV)"} <= labels
    at.switch_page("pages/gradients_page.py").run()
    ok(at)
    assert "The curves (CSV)" in {b.proto.label for b in at.get("download_button")}


def test_trained_models_chart_compares_like_with_like(folders, vocab):  # noqa: F811
    """Gradients' 'other trained models' holds only other cells trained on the model's own corpus, and its
    words say so; a model with no such neighbour stands alone, and the caption says why."""
    import json

    from rnnviz import checkpoint
    from rnnviz.model import build
    pre, _ = folders

    def save(name, cell, corpus):
        model = build(vocab, cell=cell, hidden_size=16, num_layers=1, embed_size=8, seed=0)
        checkpoint.save(model, pre / name, meta={"corpus": {"name": corpus}, "val_loss": 3.9})

    save("a-lstm", "lstm", "quotes")
    save("b-gru", "gru", "shakespeare")
    save("c-rnn", "rnn", "quotes")
    at = app("gradients")
    ok(at)

    def trained_names():
        specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        names = [" ".join(str(d.get("name")) for d in s["data"]) for s in specs]
        return next(n for n in names if "(this model)" in n)

    names = trained_names()
    assert "c-rnn" in names and "b-gru" not in names
    assert "Models of each cell trained on quotes" in text_of(at.caption)
    at.selectbox(key="model_choice").set_value(f"shipped:{pre / 'b-gru'}").run()
    ok(at)
    names = trained_names()
    assert "a-lstm" not in names and "c-rnn" not in names
    assert "Your model alone: no model of another cell here was trained on shakespeare" in text_of(at.caption)
