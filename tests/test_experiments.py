import threading

import numpy as np
import pytest

from rnnviz import corpora, heldout
from rnnviz.errors import ConfigError
from rnnviz.experiments import CHANCE, COLUMNS, memory_experiment, mixed_memory_text


pytestmark = pytest.mark.usefixtures("one_thread")


def test_mixed_text_holds_whole_segments_of_every_gap():
    text = mixed_memory_text([2, 5], 30, seed=0)
    lines = text.split("\n")[:-1]
    assert len(lines) == 60
    # each segment is KEY + filler + "=" + KEY: the recall copies the key
    assert all(line[0] == line[-1] and line[-2] == "=" and line[0].isupper() for line in lines)
    assert sorted({len(line) + 1 for line in lines}) == [4, 7]  # gap + 2 characters each
    assert mixed_memory_text([2, 5], 30, seed=0) == text


def test_small_run_has_the_right_frame():
    calls = []
    df = memory_experiment(cells=("rnn", "gru", "lstm"), gaps=(3, 2), hidden_size=8, max_steps=3,
                           train_segments=50, eval_segments=20, report=lambda **kw: calls.append(kw), device="cpu")
    assert list(df.columns) == COLUMNS
    assert len(df) == 6
    assert list(df.cell) == ["rnn", "rnn", "gru", "gru", "lstm", "lstm"]
    assert list(df.gap) == [2, 3] * 3
    assert df.accuracy.between(0, 1).all()
    assert np.allclose(df.chance, 1 / 26) and CHANCE == pytest.approx(1 / 26)
    assert (df.steps == 3).all() and (df.seconds >= 0).all()  # the same number of updates for every cell
    assert (df["items"] == 20).all()  # each accuracy says how many recalls it rests on
    assert calls[0]["cell"] == "rnn" and calls[0]["done"] == 0 and calls[0]["total"] == 3
    assert calls[-1]["done"] == 3 and "message" in calls[-1]


def test_stop_event_returns_what_was_measured():
    stop = threading.Event()

    def report(**kw):
        if kw.get("done") == 1:  # the first cell is measured: stop before the second
            stop.set()

    df = memory_experiment(cells=("rnn", "lstm"), gaps=(2,), hidden_size=8, max_steps=2, train_segments=40,
                           eval_segments=10, stop_event=stop, report=report, device="cpu")
    assert list(df.cell) == ["rnn"]
    stop.set()
    empty = memory_experiment(cells=("rnn",), gaps=(2,), max_steps=2, stop_event=stop)
    assert empty.empty and list(empty.columns) == COLUMNS


def test_bad_arguments():
    with pytest.raises(ConfigError):
        memory_experiment(cells=("transformer",), max_steps=1)
    with pytest.raises(ConfigError):
        memory_experiment(gaps=(1,), max_steps=1)


def test_scoring_counts_only_the_cue_positions():
    task = corpora.memory_task(60, 4, seed=3)
    assert task.labels["target"].sum() == 10  # one cue per segment of gap + 2 = 6 characters


@pytest.mark.slow
def test_lstm_learns_to_recall_over_a_short_gap():
    df = memory_experiment(cells=("lstm",), gaps=(4,), hidden_size=64, max_steps=200, train_segments=1000,
                           eval_segments=200, device="cpu")
    acc = float(df.accuracy.iloc[0])
    assert acc > 10 * CHANCE, f"an LSTM should recall over 4 steps after 200 steps, got {acc:.3f}"


def test_history_measures_recall_at_every_snapshot(tmp_path):
    """With history, each cell's recall at each snapshot comes back in `learning`: the snapshot steps
    of the schedule, every gap, and numbers a step-by-step numpy cell recomputes from those weights;
    the CLI saves the snapshots beside each model."""
    import torch

    import reference
    from rnnviz import checkpoint, history
    from rnnviz.cli import main
    from rnnviz.experiments import snapshot_models
    from rnnviz.training import history_steps

    trainers, learning = {}, {}
    memory_experiment(cells=["gru"], gaps=[2, 4], steps_per_cell=30, hidden_size=8, eval_segments=20,
                      train_segments=50, device="cpu", trainers=trainers, history=4, learning=learning)
    trainer, _ = trainers["gru"]
    df = learning["gru"]
    assert sorted(df.step.unique()) == history_steps(trainer.config) and sorted(df.gap.unique()) == [2, 4]
    models = snapshot_models(trainer)
    for snap in trainer.history:  # the copies hold the snapshots' weights, not the final model's
        assert all(torch.equal(models[snap["step"]].state_dict()[k], v.float()) for k, v in snap["tensors"].items())
    step = int(df.step.iloc[0])
    model = models[step]
    task = corpora.memory_task(20 * 6, 4, seed=0 + 7919 + 4)  # recall_table's draws for gap 4
    ids = np.array([model.vocab.index[c] for c in task.text])
    _, logits = reference.forward(model.state_dict(), "gru", 1, ids)
    cues = np.flatnonzero(task.labels["target"] == 1)
    want = float(np.mean(logits[cues].argmax(1) == ids[cues + 1]))
    assert df[(df.step == step) & (df.gap == 4)].accuracy.item() == pytest.approx(want, abs=1e-12)

    assert main(["memory", "--cells", "rnn", "--gaps", "2", "--steps", "20", "--hidden", "8", "--threads", "1",
                 "--history", "3", "--save", str(tmp_path)]) == 0
    h = history.read(tmp_path / "memory-rnn")
    assert len(h.steps) == 3 and not h.bad and h.steps[-1] == 20
    assert checkpoint.read_config(tmp_path / "memory-rnn")["memory"]["gaps"] == [2]


# --- the text a memory model is studied on (issue 24, the teacher, 1) --------------------------------

def test_a_memory_model_is_studied_on_fresh_memory_task_text():
    """Its corpus is generated: held_out gives a fresh draw of the same mixed task, not a built-in
    excerpt, in the model's vocabulary, and never the text it trained on."""
    import json
    from rnnviz import checkpoint, experiments
    from streamlit_server import ROOT
    folder = ROOT / "pretrained" / "memory-lstm"
    config = json.loads((folder / "config.json").read_text())
    train = experiments.memory_corpus(tuple(config["memory"]["gaps"]))  # as the shipped models were trained
    assert train.name == config["corpus"]["name"] and train.sha256 == config["corpus"]["sha256"]
    held = heldout.held_out(config)
    assert held is not None and "fresh draw of its memory task" in held.notice
    text = corpora.excerpt(held, 2000)
    assert len(text) == 2000 and text[:200] not in train.text  # a new draw, not training text
    model, _ = checkpoint.load(folder)
    assert not model.vocab.unknown(held.text)
    lines = held.text.split("\n")[:-1]
    assert all(line[0] == line[-1] and line[-2] == "=" and line[0].isupper() for line in lines)
    assert {len(line) - 1 for line in lines} == set(config["memory"]["gaps"])  # every gap mixed (gap + 2 with "\n")
    assert len(held.text) >= 20_000  # the longest text under study
    assert heldout.held_out(config).text == held.text  # the same draw each time: caches and tests agree
    # a name that only looks like one is left to the ordinary rules
    assert corpora.fresh_memory("memory-mix-1-seed0") is None and corpora.fresh_memory("memory-mix-x-seed0") is None
    assert corpora.fresh_memory("memory-mix-" + "-".join(["8"] * 40) + "-seed0") is None


def test_recall_tables_score_each_model_by_its_own_recalls():
    """The shipped memory models, scored against a reference that reads the keys from the text itself."""
    import torch

    from rnnviz import checkpoint, experiments
    from streamlit_server import ROOT

    models = {c: checkpoint.load(ROOT / "pretrained" / f"memory-{c}")[0] for c in ("lstm", "rnn")}
    table = experiments.recall_tables(models, gaps=(2, 64), segments=40, seed=5)
    assert list(table.columns) == ["cell", "gap", "accuracy", "chance", "items"]
    assert list(zip(table.cell, table.gap)) == [("lstm", 2), ("lstm", 64), ("rnn", 2), ("rnn", 64)]
    for row in table.itertuples():
        model = models[row.cell]
        text = corpora.memory_task(40 * (row.gap + 2), row.gap, seed=5 + 7919 + row.gap).text  # fresh draws
        with torch.no_grad():
            logits, _ = model(torch.tensor([[model.vocab.index[ch] for ch in text]]))
        guess = logits[0].argmax(-1).numpy()  # (T,) the model's most likely next character
        segments = text.split("\n")[:-1]
        assert len(segments) == 40
        hits, start = 0, 0
        for seg in segments:  # KEY, filler, "=", KEY: the guess after "=" must be the first character
            cue = start + seg.index("=")
            hits += model.vocab.chars[guess[cue]] == seg[0]
            start += len(seg) + 1
        assert row.accuracy == pytest.approx(hits / 40) and row.items == 40 and row.chance == CHANCE
    acc = table.set_index(["cell", "gap"]).accuracy
    assert acc["lstm", 64] > 0.9 > acc["rnn", 64], "the table tells the cells apart"
