"""Faults: kill -9 in the middle of checkpoint writes, saves racing recovery, NaN mid-training in the app,
Stop at any moment and page switches during a run. Nothing already saved may be lost.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from rnnviz import checkpoint
from rnnviz.model import build
from test_app import app, clean_caches, folders, ok, one_thread, text_of, wait_jobs  # noqa: F401 - fixtures

CHARS = sorted(set("abcdefghij .\n"))
# A child that saves forever: the same two names alternate between two sets of weights (seed 1, 2), and
# a fresh name n<i> is added each time. It prints each finished save, so the parent knows what landed.
SAVER = textwrap.dedent("""
    import sys
    from rnnviz import checkpoint
    from rnnviz.model import build
    folder, chars = sys.argv[1], list(sys.argv[2])
    models = [build(chars, hidden_size=384, num_layers=2, seed=s) for s in (1, 2)]
    print("ready", flush=True)
    i = 0
    while True:
        checkpoint.save(models[i % 2], f"{folder}/m", meta={"i": i})
        checkpoint.save(models[i % 2], f"{folder}/n{i}", meta={"i": i})
        print(i, flush=True)
        i += 1
""")


def _weights(seed):
    return build(CHARS, hidden_size=384, num_layers=2, seed=seed).state_dict()


def _same(model, weights) -> bool:
    return all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_kill_9_while_writing_checkpoints(tmp_path):
    """After each kill: every checkpoint loads and is one of the two weight sets; every finished save is there."""
    expected = [_weights(1), _weights(2)]
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(checkpoint.Path(checkpoint.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    interrupted, finished_total = 0, 0
    for kill in range(8):
        folder = tmp_path / f"run{kill}"
        folder.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(folder), "".join(CHARS)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        done = []
        reader = threading.Thread(target=lambda: done.extend(line.strip() for line in proc.stdout), daemon=True)
        reader.start()
        time.sleep(rng.uniform(0.3, 2.0))
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: no handler, no cleanup
        proc.wait()
        reader.join(5)
        leftovers = [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
        interrupted += bool(leftovers)
        finished = [int(x) for x in done if x.isdigit()]
        finished_total += len(finished)
        # "restart": what the app does when it lists the models folder
        names = [p.name for p in checkpoint.list_checkpoints(folder)]
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # leftovers cleaned
        for i in finished:
            assert f"n{i}" in names  # a save that finished is never lost
        if finished:
            assert "m" in names
        for name in names:  # every checkpoint there is complete: it loads, and it is one of the two models
            model, config = checkpoint.load(folder / name)
            assert _same(model, expected[config["i"] % 2]), (kill, name)
    print(f"kill -9 x8: {interrupted} kills landed inside a save, {finished_total} saves had finished; "
          "every checkpoint left loaded and matched")
    assert finished_total > 0
    assert interrupted > 0, "no kill landed inside a save: the test did not test anything"


def test_saves_in_one_session_survive_listing_in_others(tmp_path):
    """Many sessions list the models folder (which runs crash recovery) while another one saves."""
    model = build(CHARS, hidden_size=64, num_layers=1, seed=1)
    errors, stop = [], threading.Event()

    def lister():
        while not stop.is_set():
            try:
                for p in checkpoint.list_checkpoints(tmp_path):
                    checkpoint.read_config(p)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=lister) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            checkpoint.save(model, tmp_path / f"m{i % 4}", meta={"i": i})
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["m0", "m1", "m2", "m3"]


def test_recovery_leaves_a_live_save_of_another_process_alone(tmp_path):
    """A `.tmp-PID-*` folder of a running process is a save in progress, not debris."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".m.tmp-{other.pid}-abc"
        live.mkdir()
        dead = tmp_path / ".m.tmp-999999999-abc"
        dead.mkdir()
        checkpoint.recover(tmp_path)
        assert live.is_dir() and not dead.exists()
    finally:
        other.kill()
        other.wait()
    checkpoint.recover(tmp_path)
    assert not live.exists()


# --- the app: NaN, Stop at any moment, page switches ------------------------------------------------

def _train_settings(at, steps=100_000):
    at.selectbox(key="tr_corpus").set_value("memory")
    at.select_slider(key="tr_hidden").set_value(16)
    at.number_input(key="tr_seq").set_value(16)
    at.number_input(key="tr_batch").set_value(4)
    at.radio(key="tr_budget").set_value("steps").run()
    at.number_input(key="tr_steps").set_value(steps)
    at.number_input(key="tr_sample_every").set_value(0)


def test_nan_mid_training_in_the_app_keeps_the_last_good_weights(folders, monkeypatch):  # noqa: F811
    """The loss turns NaN at step 6: the page says so, and the model of step 4 (the last finite loss) is kept."""
    real = F.cross_entropy
    calls = {"n": 0}
    reached, release = threading.Event(), threading.Event()

    def poisoned(*args, **kw):
        loss = real(*args, **kw)
        if threading.current_thread().name.startswith("rnnviz-"):  # only the training worker's calls
            calls["n"] += 1
            if calls["n"] == 5:  # inside step 5, before its update: hold, so the test can copy step 4's weights
                reached.set()
                release.wait(60)
            if calls["n"] == 6:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    at = app("train")
    _train_settings(at)
    at.button(key="tr_start").click().run()
    rec = at.session_state["train_jobs"][0]
    assert reached.wait(60)
    step4 = {k: v.detach().clone() for k, v in rec["job"].trainer.model.state_dict().items()}
    release.set()
    wait_jobs(at)
    at.run()
    ok(at)
    shown = text_of(at.warning)
    assert "The run stopped early: the loss became nan at step 6" in shown and "kept the weights of step 4" in shown
    assert rec["registered"], "the last good weights were not offered as a model"
    model = at.session_state["mem_models"][rec["registered"]]["model"]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert _same(model, step4)  # exactly the weights after step 4
    at.button(key=f"save_{rec['registered']}").click().run()
    saved, _ = checkpoint.load(folders[1] / rec["path"].name)
    assert _same(saved, step4)


def test_stop_at_any_moment_and_page_switches_lose_nothing(folders):  # noqa: F811
    """A saved model stays; each stopped run (even one stopped before its first step) ends cleanly."""
    pre, models = folders
    keep = build(CHARS, hidden_size=16, num_layers=1, seed=7)
    checkpoint.save(keep, models / "kept", meta={"corpus": {"name": "memory"}})
    at = app("train")
    _train_settings(at)
    for delay in (0.0, 0.05, 0.4, 1.5):
        at.button(key="tr_start").click().run()
        rec = at.session_state["train_jobs"][-1]
        time.sleep(delay)
        if delay >= 0.4:  # leave the page while it trains, come back: the run went on without us
            step = rec["job"].snapshot().get("step", 0)
            at.switch_page("pages/activations_page.py").run()
            assert not at.exception
            time.sleep(0.5)
            at.switch_page("pages/train_page.py").run()
            assert rec["job"].running and rec["job"].snapshot().get("step", 0) > step
        at.button(key="tr_stop").click().run()
        wait_jobs(at)
        at.run()
        ok(at)
        snap = rec["job"].snapshot()
        assert snap["state"] == "stopped"
        if (rec["job"].result.steps if rec["job"].result else 0) > 0:
            assert rec["registered"], "a stopped run with steps done must give a model"
    loaded, _ = checkpoint.load(models / "kept")
    assert _same(loaded, keep.state_dict())
    assert len(at.session_state["train_jobs"]) == 4
    assert sum(bool(r["registered"]) for r in at.session_state["train_jobs"]) >= 2
