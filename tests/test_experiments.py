import threading

import numpy as np
import pytest

from rnnviz import corpora
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
