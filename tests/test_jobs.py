import dataclasses
import time

import torch

from rnnviz.jobs import Job, TrainingJob
from rnnviz.model import build
from rnnviz.training import TrainConfig

TEXT = "abcabcabd " * 300


def _wait(job, timeout=60):
    deadline = time.time() + timeout
    while job.running and time.time() < deadline:
        time.sleep(0.05)
    assert not job.running


def test_training_job_runs_in_background_and_stops():
    model = build(sorted(set(TEXT)), hidden_size=16, num_layers=1, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    job = TrainingJob(model, TEXT[:2500], TEXT[2500:], TrainConfig(seq_len=16, batch_size=4, max_steps=100_000,
                                                                  eval_every=50, device="cpu")).start()
    deadline = time.time() + 30
    while job.snapshot().get("step", 0) < 5 and time.time() < deadline:
        time.sleep(0.02)
    assert job.running and job.snapshot()["state"] == "running"
    job.stop()
    _wait(job)
    snap = job.snapshot()
    assert snap["state"] == "stopped" and snap["step"] >= 5 and len(snap["curve"]) == snap["step"]
    # the caller's model (a shared, cached one, say) is never touched
    assert all((a == b).all() for a, b in zip(before, model.parameters()))
    assert any((a != b).any() for a, b in zip(before, job.model.parameters()))


def test_job_errors_become_messages():
    def boom(stop, report):
        report(step=1)
        raise ValueError("bad thing")

    job = Job(boom).start()
    _wait(job)
    snap = job.snapshot()
    assert snap["state"] == "failed" and "bad thing" in snap["message"] and snap["step"] == 1


def test_nan_training_job_reports_reason():
    model = build(sorted(set(TEXT)), hidden_size=16, num_layers=1, seed=0)
    job = TrainingJob(model, TEXT, None, TrainConfig(seq_len=16, batch_size=4, lr=1e30, warmup_steps=0,
                                                     max_steps=200, device="cpu")).start()
    _wait(job)
    snap = job.snapshot()
    assert snap["state"] == "failed" and "kept the weights" in snap["message"]


def test_job_threads_apply_to_its_worker_only():
    """The app gives each worker its own torch thread count; the caller's setting must not change."""
    before = torch.get_num_threads()
    seen = []
    job = Job(lambda stop, report: seen.append(torch.get_num_threads()), threads=before + 1).start()
    job.join(10)
    assert seen == [before + 1]
    assert torch.get_num_threads() == before


def test_two_trainings_at_once_do_not_interfere():
    """Two sessions training at the same moment get exactly what each would get alone."""
    model = build(sorted(set(TEXT)), hidden_size=16, num_layers=2, seed=0)
    cfg = TrainConfig(seq_len=16, batch_size=4, max_steps=60, eval_every=20, seed=3, threads=1)

    def run(*jobs):
        for j in jobs:
            j.start()
        for j in jobs:
            _wait(j)
        return [(j.result.curve, [p.detach().clone() for p in j.trainer.model.parameters()]) for j in jobs]

    (alone_curve, alone_w), = run(TrainingJob(model, TEXT[:2500], TEXT[2500:], cfg))
    both = run(*(TrainingJob(model, TEXT[:2500], TEXT[2500:], cfg) for _ in range(2)))
    for curve, weights in both:
        assert [p["train_loss"] for p in curve] == [p["train_loss"] for p in alone_curve]
        assert [p.get("val_loss") for p in curve] == [p.get("val_loss") for p in alone_curve]
        assert all(torch.equal(a, b) for a, b in zip(weights, alone_w))
    other = run(TrainingJob(model, TEXT[:2500], TEXT[2500:], dataclasses.replace(cfg, seed=4)))
    assert [p["train_loss"] for p in other[0][0]] != [p["train_loss"] for p in alone_curve]
