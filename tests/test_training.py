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
    # the weights after the last update gave the non-finite loss: that update is undone, and the count with it
    assert result.steps == len(seen) - 2 == len(result.curve)
    assert f"kept the weights of step {result.steps}," in result.reason
    assert all(torch.equal(k, s) for k, s in zip(tr.model.parameters(), seen[result.steps]))
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
    tr = _trainer(max_steps=20, warmup_steps=5)
    result = tr.run()
    tr.save(tmp_path / "m", result)
    model, config = checkpoint.load(tmp_path / "m")
    assert config["training"]["steps"] == 20 and len(config["training"]["curve"]) == 20
    assert config["val_loss"] == pytest.approx(result.val_loss)
    # max_steps counts from the start of the original run: 30 trains 10 more, past the saved 20-step schedule
    cont = Trainer(model, TEXT[:SPLIT], TEXT[SPLIT:], TrainConfig(seq_len=32, batch_size=8, lr=1e-2, max_steps=30,
                                                                   device="cpu")).resume(tmp_path / "m")
    saved = checkpoint.load_optimizer_state(tmp_path / "m")
    p = dict(cont.model.named_parameters())["head.weight"]
    assert torch.equal(cont.optimizer.state[p]["exp_avg"], saved["head.weight.exp_avg"])
    r2 = cont.run()
    assert r2.steps == 30 and len(r2.curve) == 30 and r2.curve[-1]["step"] == 30
    assert r2.curve[20]["train_loss"] < result.curve[0]["train_loss"]
    # the schedule is never stretched: the extra steps stay at min_lr, where the saved one ended
    assert result.curve[-1]["lr"] == cont.config.min_lr
    assert all(p["lr"] == cont.config.min_lr for p in r2.curve[20:])
    with pytest.raises(ConfigError, match="already"):
        Trainer(checkpoint.load(tmp_path / "m")[0], TEXT[:SPLIT], None,
                TrainConfig(seq_len=32, batch_size=8, max_steps=10, device="cpu")).resume(tmp_path / "m")


def _schedule(lr, min_lr, warmup, total):
    """The documented schedule, written out on its own: lr of each of `total` steps."""
    out = []
    for s in range(total):  # s updates done before this one
        if s < warmup:
            out.append(lr * (s + 1) / warmup)
        else:
            left = total - 1 - warmup
            t = (s - warmup) / left if left > 0 else 1.0
            out.append(min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t)) / 2)
    return out


def _lrs(curve):
    return [p["lr"] for p in curve]


@pytest.mark.parametrize("lr, min_lr, warmup, steps", [(1e-2, 0.0, 3, 10), (1e-2, 1e-4, 5, 17), (5e-3, 1e-3, 0, 6),
                                                       (5e-3, 1e-3, 4, 5), (5e-3, 1e-3, 6, 4)])
def test_lr_schedule_warms_up_then_ends_at_min_lr(lr, min_lr, warmup, steps):
    result = _trainer(lr=lr, min_lr=min_lr, warmup_steps=warmup, max_steps=steps, bptt="random").run()
    lrs = _lrs(result.curve)
    assert lrs == pytest.approx(_schedule(lr, min_lr, warmup, steps), rel=1e-12, abs=1e-15)
    if steps > warmup:  # the cosine starts at lr right after the warm-up and its last step is min_lr, exactly
        assert lrs[-1] == min_lr and (steps == warmup + 1 or lrs[warmup] == lr)
    else:  # a budget within the warm-up is all warm-up
        assert lrs[-1] == pytest.approx(lr * steps / warmup)


def _stop_at(tr, k):
    tr.add_callback("on_step", lambda t, loss: t.step == k and t.stop_event.set())
    return tr


def _adam(tr):
    return {n: dict(tr.optimizer.state[p]) for n, p in tr.model.named_parameters()}


def _assert_same_state(a, b):
    """Same weights and the same AdamW moments and step counts, bit for bit."""
    assert a.step == b.step
    for (n, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(pa, pb), n
    sa, sb = _adam(a), _adam(b)
    for n in sa:
        assert sa[n].keys() == sb[n].keys() and all(torch.equal(sa[n][k], sb[n][k]) for k in sa[n]), n


def _resume(path, **kw):
    """A resume as the CLI does it without a recipe: the caller's lr and warm-up are not the saved run's."""
    model, _ = checkpoint.load(path)
    cfg = TrainConfig(**{"seq_len": 32, "batch_size": 8, "device": "cpu", "max_steps": 20, **kw})
    return Trainer(model, TEXT[:SPLIT], TEXT[SPLIT:], cfg).resume(path)


def test_resume_continues_the_schedule_and_the_weights(tmp_path):
    kw = dict(bptt="random", max_steps=20, warmup_steps=5, eval_every=7)
    full = _trainer(**kw)
    rf = full.run()
    part = _stop_at(_trainer(**kw), 8)
    rp = part.run()
    assert rp.status == "stopped" and rp.steps == 8
    part.save(tmp_path / "m", rp)
    # the caller's lr, warm-up and time budget are not the saved run's: its step schedule goes on regardless
    cont = _resume(tmp_path / "m", bptt="random", lr=3e-3, warmup_steps=0, max_seconds=1e6)
    assert (cont.config.schedule_steps, cont.config.schedule_seconds) == (20, None)
    rc = cont.run()
    assert rc.status == "finished" and rc.steps == 20 and len(rc.curve) == 20
    assert _lrs(rc.curve) == _lrs(rf.curve) == _schedule(1e-2, 1e-4, 5, 20)
    assert [p["train_loss"] for p in rc.curve] == [p["train_loss"] for p in rf.curve]
    _assert_same_state(cont, full)


def test_stateful_resume_reads_the_same_batches(tmp_path):
    """The carried state starts from zeros after a resume, but the batches are the uninterrupted run's."""
    def recording(tr):
        seen = []

        def record(m, args):  # the training batches only, not the evaluations
            if m.training:
                seen.append(args[0].clone())
        tr.model.register_forward_pre_hook(record)
        return seen
    full = _trainer(max_steps=20, seq_len=64)  # few streams: passes over the text end, and restart, within 20 steps
    seen_full = recording(full)
    full.run()
    part = _stop_at(_trainer(max_steps=20, seq_len=64), 6)
    part.save(tmp_path / "m", part.run())
    cont = _resume(tmp_path / "m", seq_len=64)
    seen_cont = recording(cont)
    rc = cont.run()
    assert rc.steps == 20 and len(seen_cont) == 14
    assert all(torch.equal(a, b) for a, b in zip(seen_cont, seen_full[6:]))


class _Clock:
    """Stands in for the time module: the clock moves one second per training forward, and only then."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def time(self):
        return 1e9 + self.now

    def ticking(self, tr):
        def tick(m, args):
            if m.training:
                self.now += 1.0
        tr.model.register_forward_pre_hook(tick)
        return tr


def test_time_budget_schedule_and_its_resume(tmp_path, monkeypatch):
    from rnnviz import training
    clock = _Clock()
    monkeypatch.setattr(training, "time", clock)
    kw = dict(bptt="random", max_steps=None, max_seconds=12.0, warmup_steps=3)
    full = clock.ticking(_trainer(**kw))
    rf = full.run()
    assert rf.steps == 12
    # warm-up by steps, then the cosine over the time left after it (step s starts at s seconds)
    expected = [1e-2 * (s + 1) / 3 if s < 3 else 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * (s - 3) / 9)) / 2
                for s in range(12)]
    assert _lrs(rf.curve) == pytest.approx(expected, rel=1e-12)
    part = clock.ticking(_stop_at(_trainer(**kw), 5))
    part.save(tmp_path / "m", part.run())
    cont = clock.ticking(_resume(tmp_path / "m", bptt="random", max_steps=None, max_seconds=12.0))
    rc = cont.run()
    assert rc.steps == 12 and _lrs(rc.curve) == _lrs(rf.curve)
    _assert_same_state(cont, full)


def test_nan_rolls_back_weights_moments_count_and_curve(tmp_path):
    kw = dict(bptt="random", max_steps=16, warmup_steps=3)
    ref = _stop_at(_trainer(**kw), 5)  # 5 good updates, nothing else
    ref.run()

    def poison(t, loss):  # update 6 gives weights whose loss is not finite
        if t.step == 6:
            with torch.no_grad():
                t.model.head.weight.fill_(float("nan"))
    tr = _trainer(**kw)
    tr.add_callback("on_step", poison)
    result = tr.run()
    assert result.status == "failed" and result.steps == 5 and len(result.curve) == 5
    assert "the loss became nan at step 7" in result.reason and "kept the weights of step 5," in result.reason
    assert [p["train_loss"] for p in result.curve] == [p["train_loss"] for p in ref.curve]
    assert _lrs(result.curve) == _lrs(ref.curve)
    _assert_same_state(tr, ref)
    tr.save(tmp_path / "m", result)
    assert checkpoint.read_config(tmp_path / "m")["training"]["steps"] == 5
    cont = _resume(tmp_path / "m", bptt="random", max_steps=16)
    rc = cont.run()
    full = _trainer(**kw)
    rf = full.run()
    assert rc.steps == 16 and _lrs(rc.curve) == _lrs(rf.curve)
    _assert_same_state(cont, full)


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


@pytest.mark.parametrize("history", [3, [10]])
def test_last_snapshot_records_the_final_val_loss(tmp_path, history):
    """The end-of-run snapshot is the final model, so its record holds that model's val loss (history=3
    snapshots step 50 in the loop, [10] after it; step 50 is no eval_every step, so the run evaluates last)."""
    tr = _trainer(max_steps=50, history=history)
    result = tr.run()
    assert result.curve[-1]["step"] == 50 and result.val_loss is not None
    tr.save(tmp_path / "m", result)
    step, folder = checkpoint.history_folders(tmp_path / "m")[-1]
    snap_model, snap_config = checkpoint.load(folder)
    assert step == 50 and snap_config["val_loss"] == pytest.approx(result.val_loss, rel=1e-9)
    # an independent measure: the snapshot's own (float16) weights on the held-out text
    assert evaluate(snap_model, TEXT[SPLIT:]) == pytest.approx(result.val_loss, abs=2e-3)


def test_every_device_offered_is_one_a_run_can_use(monkeypatch):
    from rnnviz import training
    from rnnviz.model import pick_device

    here = training.devices()
    assert here[:2] == ["auto", "cpu"]
    for name in here:  # each choice is accepted by the trainer's own device rule
        pick_device(name)
    assert ("cuda" in here) == torch.cuda.is_available() and ("mps" in here) == torch.backends.mps.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert training.devices() == ["auto", "cpu", "cuda"]


def test_progress_names_the_text_its_val_loss_was_measured_on():
    """The Train page's 'val loss' says how many held-out characters it read, and that many give that loss."""
    from rnnviz.losses import progress_words
    tr = _trainer(max_steps=20, eval_every=10, eval_chars=150)
    tr.run()
    snap = tr.snapshot()
    assert snap["val_chars"] == 150
    assert progress_words(snap) == f"val loss {snap['val_loss']:.3f} on the first 150 held-out characters"
    assert evaluate(tr.model, TEXT[SPLIT:][:150]) == pytest.approx(snap["val_loss"], rel=1e-6)
    assert evaluate(tr.model, TEXT[SPLIT:][:300]) != pytest.approx(snap["val_loss"], rel=1e-6)
    assert progress_words({"val_loss": None}) == "" and progress_words({"val_loss": 1.5}) == "val loss 1.500"
