"""The Training history page (AppTest): the scrubber over a tiny trained history, what each step shows,
a broken snapshot named, and a model without history.

Fixtures (tiny models in temporary folders, empty caches, one torch thread) and helpers come from test_app.
"""
import html as html_lib
import shutil
import time

import pytest
import torch

from rnnviz import checkpoint, history
from rnnviz.corpora import load_corpus, split
from rnnviz.model import build
from rnnviz.training import TrainConfig, Trainer
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, choose, html, ok, spec, text_of, title


def train_with_history(folder, name, voc, steps=30, n=5):
    corpus = load_corpus("shakespeare", max_chars=50_000)
    train, val = split(corpus, 0.1)
    torch.manual_seed(0)
    model = build(voc, cell="lstm", hidden_size=16, num_layers=2, embed_size=8, seed=0)
    cfg = TrainConfig(seq_len=32, batch_size=4, lr=1e-2, warmup_steps=2, max_steps=steps, eval_every=1000,
                      eval_chars=1000, history=n, threads=1)
    t = Trainer(model, train, val, cfg, corpus={"name": "shakespeare"})
    t.run()
    return t.save(folder / name)


@pytest.fixture
def with_history(shipped, vocab):  # noqa: F811
    pre, _ = shipped
    path = train_with_history(pre, "h-lstm", vocab)
    return pre, path


def open_history(pre, path):
    at = app()
    choose(at, path)
    at.switch_page("pages/history_page.py").run()
    return at


def test_scrubber_shows_each_step(with_history):
    pre, path = with_history
    at = open_history(pre, path)
    ok(at)
    steps = history.read(path).steps
    slider = at.select_slider(key="hist_step")
    assert list(slider.options) == [f"{s:,}" for s in steps] and at.session_state["hist_step"] == steps[-1]
    figs = [spec(at, i) for i in range(len(at.get("plotly_chart")))]
    titles = [title(f) for f in figs]
    assert any("Loss" in t for t in titles) and any("Emergence" in t for t in titles)
    assert any("saturation" in t.lower() for t in titles)
    loss = figs[0]
    # the current step is marked on the loss curve
    assert any(s.get("type") == "line" and s.get("x0") == steps[-1] for s in loss["layout"].get("shapes", []))
    assert any(a.get("text") == f"step {steps[-1]}" for a in loss["layout"].get("annotations", []))
    # the sample at the last step is the snapshot's own, at the stated seed and temperature
    model, _ = history.load(history.read(path), steps[-1])
    want = history.sample_text(model, "\n", 200, 0.8, 1)
    assert html_lib.escape(want) in html(at)
    # the evolution table: one row per snapshot
    table = at.dataframe[-1].value
    assert list(table.step) == steps and table["sample"].str.len().eq(200).all()
    # scrub to the first step: the sample and the marked step follow
    at.select_slider(key="hist_step").set_value(steps[0]).run()
    ok(at)
    first, _ = history.load(history.read(path), steps[0])
    assert html_lib.escape(history.sample_text(first, "\n", 200, 0.8, 1)) in html(at)
    assert any(a.get("text") == f"step {steps[0]}" for a in spec(at, 0)["layout"].get("annotations", []))
    assert f"Step {steps[0]:,}" in text_of(at.markdown)


def test_moving_the_slider_again_is_quick(with_history):
    pre, path = with_history
    at = open_history(pre, path)
    steps = history.read(path).steps
    for s in steps:  # first visits
        at.select_slider(key="hist_step").set_value(s).run()
    times = []
    for s in (steps[1], steps[-1], steps[2]):
        t = time.perf_counter()
        at.select_slider(key="hist_step").set_value(s).run()
        times.append(time.perf_counter() - t)
    ok(at)
    print("rerun after first load (s):", [round(x, 3) for x in times])  # bench/history.py measures it


def test_unit_and_hypothesis_widgets(with_history):
    pre, path = with_history
    at = open_history(pre, path)
    at.selectbox(key="hist_hypothesis").set_value("vowel").run()
    ok(at)
    assert "best unit" in text_of(at.markdown)
    at.selectbox(key="hist_layer").set_value(0).run()
    at.selectbox(key="hist_kind").set_value("c").run()
    at.number_input(key="hist_unit").set_value(5).run()
    ok(at)
    assert "L0 c5=" in html(at)


def test_a_broken_snapshot_is_named(with_history):
    pre, path = with_history
    steps = history.read(path).steps
    (path / "history" / f"step-{steps[1]}" / "model.safetensors").write_bytes(b"\0" * 10)
    at = open_history(pre, path)
    assert not at.exception
    assert f"step {steps[1]}" in text_of(at.warning)
    assert steps[1] not in [int(o.replace(",", "")) for o in at.select_slider(key="hist_step").options]


def test_no_history_says_so_and_links_to_train(shipped):  # noqa: F811
    pre, _ = shipped
    at = app()
    choose(at, pre / "a-lstm")
    at.switch_page("pages/history_page.py").run()
    ok(at)
    assert "has no training history" in text_of(at.info)
    links = [e for e in at.get("page_link")]
    assert any("train" in e.proto.page.lower() for e in links)
    assert "No checkpoint here holds a history" in text_of(at.warning)


def test_no_history_offers_a_shipped_one(with_history):
    pre, path = with_history
    at = app()
    choose(at, pre / "b-gru")
    at.switch_page("pages/history_page.py").run()
    ok(at)
    assert "has no training history" in text_of(at.info)
    assert at.selectbox(key="hist_model").value == "h-lstm (shipped)"
    assert at.get("plotly_chart")


def test_session_state_survives_a_page_switch(with_history):
    pre, path = with_history
    at = open_history(pre, path)
    steps = history.read(path).steps
    at.select_slider(key="hist_step").set_value(steps[2]).run()
    at.switch_page("pages/home_page.py").run()
    at.switch_page("pages/history_page.py").run()
    ok(at)
    assert at.session_state["hist_step"] == steps[2]


def test_copy_of_history_in_saved_models(with_history, folders):  # noqa: F811
    pre, path = with_history
    _, models = folders
    shutil.copytree(path, models / "mine")
    at = open_history(pre, path)
    assert "mine (saved)" in at.selectbox(key="hist_model").options
    assert checkpoint.list_checkpoints(models) == [models / "mine"]


def reference_recall(model, gap: int, segments: int, seed: int) -> float:
    """Recall by the numpy cell of tests/reference.py: the argmax after each cue is the key."""
    import numpy as np

    import reference
    from rnnviz.corpora import memory_task

    task = memory_task(segments * (gap + 2), gap, seed=seed)
    ids = np.array([model.vocab.index[c] for c in task.text])
    _, logits = reference.forward(model.state_dict(), model.cell, model.config.num_layers, ids)
    cues = np.flatnonzero(task.labels["target"] == 1)
    return float(np.mean(logits[cues].argmax(1) == ids[cues + 1]))


def test_memory_history_shows_recall_growing_step_by_step(folders, vocab):  # noqa: F811
    """A memory-lstm saved with its history (`memory --history`): the recall section's numbers are the
    snapshot's own (a numpy cell recomputes one), from about nothing to the recorded final recall."""
    from rnnviz import experiments
    from rnnviz.cli import main

    pre, _ = folders
    assert main(["memory", "--cells", "lstm", "--steps", "300", "--history", "6", "--threads", "1",
                 "--save", str(pre)]) == 0
    path = pre / "memory-lstm"
    hist = history.read(path)
    assert len(hist.steps) == 6 and not hist.bad
    at = open_history(pre, path)
    ok(at)
    figs = {title(spec(at, i)): spec(at, i) for i in range(len(at.get("plotly_chart")))}
    recall = next(f for t, f in figs.items() if t.startswith("Recall across the gap"))
    longest = next(tr for tr in recall["data"] if tr["name"] == "gap 64")
    import base64

    import numpy as np

    def values(a):
        return np.frombuffer(base64.b64decode(a["bdata"]), a["dtype"]) if isinstance(a, dict) else np.array(a)

    steps, acc = values(longest["x"]), values(longest["y"])
    assert list(steps) == hist.steps
    assert acc[0] < 0.1 and acc[-1] == pytest.approx(hist.config["memory"]["recall"]["64"], abs=0.01)
    # one snapshot recomputed by the step-by-step numpy cell, on the page's own draws
    mid = hist.steps[len(hist.steps) // 2]
    model, _ = checkpoint.load(hist.snapshot(mid).path)
    seed = 0 + 7919 + 64  # recall_table's draws for gap 64
    want = reference_recall(model, 64, experiments.EVAL_SEGMENTS, seed)
    assert acc[hist.steps.index(mid)] == pytest.approx(want, abs=1e-9)
    at.select_slider(key="hist_step").set_value(mid).run()
    ok(at)
    assert f"**{want:.0%}** at gap 64" in text_of(at.markdown)


def test_every_loss_says_which_text_and_how_many_characters(with_history):
    """The step line, the chart's caption and the table's caption name the text of each loss; the count is the
    one the run used: its last validation loss is reproduced by evaluating the last snapshot on exactly that
    many characters of the held-out split."""
    from rnnviz.training import evaluate
    pre, path = with_history
    at = open_history(pre, path)
    ok(at)
    basis = "the first 1,000 characters of shakespeare's held-out split"
    captions, md = text_of(at.caption), text_of(at.markdown)
    assert f"Validation: on {basis}" in captions and f"validation loss where it evaluated that step (on {basis})" \
        in captions
    assert "Train: each step's loss on one batch of 4 × 32 = 128 characters of the training split" in captions
    hist = history.read(path)
    last = hist.snapshot(hist.steps[-1])
    assert f"validation loss {last.config['val_loss']:.3f} nats/char on {basis}" in md
    _, val = split(load_corpus("shakespeare", max_chars=50_000), 0.1)
    assert len(val) > 1000
    model = checkpoint.load(last.path)[0]
    assert evaluate(model, val[:1000]) == pytest.approx(last.config["val_loss"], abs=1e-5)
    assert abs(evaluate(model, val[:2000]) - last.config["val_loss"]) > 1e-4  # another count would not match
