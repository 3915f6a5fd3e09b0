"""Overlaid training runs compared fairly (issue 24, the teacher, 2): by characters seen, not by time.
A time budget gives the cheaper cell more steps; the chart's axis and the words under it must compare
the runs after the same amount of text."""
import numpy as np
import pytest

from rnnviz import plots, runs
from rnnviz.corpora import load_corpus
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.training import TrainConfig, Trainer
from rnnviz.vocab import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")


def test_chars_per_step_is_batch_times_sequence():
    assert runs.chars_per_step(TrainConfig(seq_len=64, batch_size=32)) == 2048
    assert runs.chars_per_step({"seq_len": 10, "batch_size": 3}) == 30
    for bad in ({"seq_len": 10}, {"seq_len": 0, "batch_size": 3}, {"seq_len": True, "batch_size": 3}):
        with pytest.raises(ConfigError):
            runs.chars_per_step(bad)


@pytest.fixture(scope="module")
def race():
    """A slow cell and a fast one under 'the same time': the RNN gets three times the LSTM's steps."""
    text = load_corpus("shakespeare", max_chars=8_000).text
    train, val = text[:7_000], text[7_000:]
    vocab = Vocab.from_text(text)
    out = {}
    for cell, steps, batch in (("lstm", 6, 8), ("rnn", 18, 4)):  # different batches too: chars, not steps
        model = build(vocab, cell=cell, hidden_size=16, num_layers=1, embed_size=8, seed=0)
        cfg = TrainConfig(seq_len=32, batch_size=batch, max_steps=steps, eval_every=3, eval_chars=300,
                          warmup_steps=2, device="cpu", sample_every=0)
        result = Trainer(model, train, val, cfg).run()
        out[cell] = (result.curve, runs.chars_per_step(cfg))
    return out


@pytest.mark.slow
def test_the_chart_overlays_runs_against_characters_seen(race):
    curves = {k: c for k, (c, _) in race.items()}
    per = {k: p for k, (_, p) in race.items()}
    fig = plots.loss_curves(curves, per)
    assert "characters seen" in fig.layout.xaxis.title.text and "same amount of text" in fig.layout.title.text
    for t in fig.data:
        run = t.name.split()[0]
        kind = "val_loss" if t.name.endswith("val") else "train_loss"
        pts = [p for p in curves[run] if p.get(kind) is not None]
        np.testing.assert_array_equal(t.x, [p["step"] * per[run] for p in pts])  # steps x batch x seq_len
        np.testing.assert_array_equal(t.y, [p[kind] for p in pts])
    (line,) = fig.layout.shapes
    assert line.x0 == min(6 * 8 * 32, 18 * 4 * 32) == 6 * 8 * 32
    # without the characters per step, the old chart: against steps
    assert plots.loss_curves(curves).layout.xaxis.title.text == "step"


@pytest.mark.slow
def test_runs_are_compared_after_the_same_characters(race):
    table = runs.at_equal_chars(race).set_index("run")
    limit = 6 * 8 * 32  # the LSTM's whole run; the RNN (4 x 32 a step) reached it at step 12
    assert (table.chars == limit).all()
    assert table.step.to_dict() == {"lstm": 6, "rnn": 12}
    for run, (curve, per) in race.items():
        evals = [p for p in curve if "val_loss" in p and p["step"] * per <= limit]
        assert table.val_loss[run] == evals[-1]["val_loss"] and table.val_chars[run] == evals[-1]["step"] * per
        late = [p["train_loss"] for p in curve if 0.9 * limit < p["step"] * per <= limit]
        assert table.train_loss[run] == pytest.approx(np.mean(late))
    words = runs.summary(runs.at_equal_chars(race))
    assert f"{limit:,} characters" in words and "cheapest step" in words
    assert f"validation loss **{table.val_loss['rnn']:.3f}** (evaluated at {12 * 4 * 32:,} characters)" in words
    # a run that has not stepped yet: no comparison, said plainly
    assert runs.at_equal_chars({**race, "new": ([], 2048)}).empty
    assert "once each has taken a step" in runs.summary(runs.at_equal_chars({"new": ([], 2048)}))


def test_validation_is_read_where_every_run_was_evaluated():
    """A run that ended on a time budget is evaluated once more, off the shared grid: the comparison
    takes the last evaluation every run has after the same characters, not each run's last."""
    per = 100
    lstm = [{"step": s, "train_loss": 3.0 - s / 100, **({"val_loss": 3.1 - s / 100} if s % 50 == 0 or s == 119
                                                          else {})} for s in range(1, 120)]
    rnn = [{"step": s, "train_loss": 2.9 - s / 200, **({"val_loss": 3.0 - s / 200} if s % 50 == 0 else {})}
           for s in range(1, 300)]
    table = runs.at_equal_chars({"lstm": (lstm, per), "rnn": (rnn, per)}).set_index("run")
    assert (table.chars == 119 * per).all() and table.step.to_dict() == {"lstm": 119, "rnn": 119}
    assert (table.val_chars == 100 * per).all()  # both at step 100, not the LSTM's extra one at 119
    assert table.val_loss.to_dict() == pytest.approx({"lstm": 3.1 - 1.0, "rnn": 3.0 - 0.5})
    # with no shared evaluation (other batch sizes), each run's last one before the point, said where
    table = runs.at_equal_chars({"lstm": (lstm, per), "rnn": (rnn, 70)}).set_index("run")
    assert table.val_chars.to_dict() == {"lstm": 119 * per, "rnn": 150 * 70}


def test_a_run_is_named_by_its_number_shape_and_text():
    assert runs.run_name(2, "gru", 2, 64, "tinyshakespeare.txt") == "run2-gru2x64-tinyshakespeare"
    long = runs.run_name(11, "lstm", 1, 128, "a_rather_long_file_name_for_a_corpus.v2.txt")
    assert long == "run11-lstm1x128-" + "a_rather_long_file_name_for_a_corpus"[:20]
    assert runs.run_name(1, "rnn", 3, 16, "pasted text") == "run1-rnn3x16-pasted text"
    names = {runs.run_name(n, "lstm", 1, 128, "shakespeare") for n in range(1, 6)}
    assert len(names) == 5, "each run of a session has its own name"
