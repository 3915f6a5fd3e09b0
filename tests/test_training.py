import math
import threading

import pytest
import torch

from rnnviz import checkpoint
from rnnviz.errors import ConfigError, TextError
from rnnviz.model import build
from rnnviz.trace import trace
from rnnviz.training import TrainConfig, Trainer, evaluate

TEXT = "".join(f"{w} {w[::-1]}.\n" for w in ["abc", "hello", "rnn", "gate", "cell", "state"] * 60)
SPLIT = int(len(TEXT) * 0.9)


def _trainer(cell="lstm", seed=0, **kw):
    model = build(sorted(set(TEXT)), cell=cell, hidden_size=32, num_layers=2, embed_size=16, seed=seed)
    cfg = TrainConfig(**{"seq_len": 32, "batch_size": 8, "lr": 1e-2, "max_steps": 60, "eval_every": 20,
                         "seed": seed, "device": "cpu", **kw})
    return Trainer(model, TEXT[:SPLIT], TEXT[SPLIT:], cfg)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_loss_falls_and_val_is_reported(cell):
    tr = _trainer(cell)
    result = tr.run()
    assert result.status == "finished" and result.steps == 60
    first, last = result.curve[0]["train_loss"], result.curve[-1]["train_loss"]
    assert first > math.log(len(tr.vocab)) * 0.8 and last < 0.6 * first
    assert result.val_loss == pytest.approx(evaluate(tr.model, TEXT[SPLIT:]), rel=1e-6)
    assert result.curve[19]["val_bpc"] == pytest.approx(result.curve[19]["val_loss"] / math.log(2))


def test_evaluate_agrees_with_trace_surprisal():
    tr = _trainer()
    tr.run()
    text = TEXT[SPLIT:SPLIT + 500]
    assert evaluate(tr.model, text, chunk=77) == pytest.approx(trace(tr.model, text).mean_loss(), rel=1e-5)


@pytest.mark.parametrize("bptt", ["stateful", "random"])
def test_seeded_runs_are_reproducible(bptt):
    a, b = _trainer(bptt=bptt, max_steps=15), _trainer(bptt=bptt, max_steps=15)
    ra, rb = a.run(), b.run()
    assert [p["train_loss"] for p in ra.curve] == [p["train_loss"] for p in rb.curve]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    c = _trainer(bptt=bptt, max_steps=15, seed=1).run()
    assert [p["train_loss"] for p in c.curve] != [p["train_loss"] for p in ra.curve]


def test_nan_loss_stops_with_last_good_weights():
    tr = _trainer(lr=1e30, warmup_steps=0, max_steps=50)
    seen = [[p.detach().clone() for p in tr.model.parameters()]]  # seen[k]: the weights after step k
    tr.add_callback("on_step", lambda t, loss: seen.append([p.detach().clone() for p in t.model.parameters()]))
    result = tr.run()
    assert result.status == "failed" and "the loss became" in result.reason
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert result.steps == len(seen) - 1
    # the weights of the last step gave the non-finite loss; the ones before them are kept, and said so
    kept_step = result.steps - 1
    assert f"kept the weights of step {kept_step}," in result.reason
    assert all(torch.equal(k, s) for k, s in zip(tr.model.parameters(), seen[kept_step]))
    assert math.isfinite(evaluate(tr.model, TEXT[:200]))


def test_stop_event_and_time_budget():
    stop = threading.Event()
    tr = _trainer(max_steps=10_000)
    tr.stop_event = stop
    tr.add_callback("on_step", lambda t, loss: t.step == 5 and stop.set())
    result = tr.run()
    assert result.status == "stopped" and result.steps == 5
    timed = _trainer(max_steps=None, max_seconds=0.5).run()
    assert timed.status == "finished" and "time" in timed.reason and timed.steps > 0


def test_callbacks_samples_and_snapshot():
    tr = _trainer(max_steps=20, sample_every=10, sample_length=30)
    evals, samples = [], []
    tr.add_callback("on_eval", lambda t, val_loss: evals.append(val_loss))
    tr.add_callback("on_sample", lambda t, text: samples.append(text))
    tr.run()
    assert len(evals) == 1 and len(samples) == 2 and all(len(s) == 30 for s in samples)
    snap = tr.snapshot()
    assert snap["state"] == "finished" and snap["step"] == 20 and len(snap["curve"]) == 20
    assert snap["chars_per_sec"] > 0


def test_save_and_resume(tmp_path):
    tr = _trainer(max_steps=20)
    result = tr.run()
    tr.save(tmp_path / "m", result)
    model, config = checkpoint.load(tmp_path / "m")
    assert config["training"]["steps"] == 20 and len(config["training"]["curve"]) == 20
    assert config["val_loss"] == pytest.approx(result.val_loss)
    cont = Trainer(model, TEXT[:SPLIT], TEXT[SPLIT:], TrainConfig(seq_len=32, batch_size=8, lr=1e-2, max_steps=10,
                                                                   device="cpu")).resume(tmp_path / "m")
    saved = checkpoint.load_optimizer_state(tmp_path / "m")
    p = dict(cont.model.named_parameters())["head.weight"]
    assert torch.equal(cont.optimizer.state[p]["exp_avg"], saved["head.weight.exp_avg"])
    r2 = cont.run()
    assert r2.steps == 30 and len(r2.curve) == 30 and r2.curve[-1]["step"] == 30
    assert r2.curve[20]["train_loss"] < result.curve[0]["train_loss"]


def test_bad_settings():
    with pytest.raises(ConfigError):
        _trainer(batch_size=0)
    with pytest.raises(ConfigError):
        _trainer(lr=float("nan"))
    with pytest.raises(ConfigError):
        _trainer(max_steps=None, max_seconds=None)
    model = build(list("ab"), hidden_size=4)
    with pytest.raises(TextError):
        Trainer(model, "", None, TrainConfig())
    with pytest.raises(TextError, match="needs more than"):
        Trainer(model, "abab", None, TrainConfig(seq_len=32)).run()
