"""The job queue: first in first out, at most N at once, leaving, one job per owner; across threads,
and across several AppTest sessions of the Train page sharing one server's queue."""
import threading
import time

import pytest

from rnnviz import jobs
from rnnviz.errors import ConfigError
from rnnviz.jobs import Job, JobQueue, QueueError
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, small_training, text_of


class Gate:
    """Jobs that record when they start and end, and block until released one by one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.now = 0
        self.peak = 0
        self.release: dict[str, threading.Event] = {}

    def job(self, name: str, expected: float | None = None) -> Job:
        ev = self.release.setdefault(name, threading.Event())

        def fn(stop, report):
            with self.lock:
                self.started.append(name)
                self.now += 1
                self.peak = max(self.peak, self.now)
            ev.wait(30)
            with self.lock:
                self.now -= 1
            return name
        return Job(fn, name=name, expected_seconds=expected)


def wait_for(cond, timeout=10.0):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_first_in_first_out_and_at_most_n_at_once():
    g, q = Gate(), JobQueue(slots=2)
    names = [f"j{i}" for i in range(7)]
    submitted = [q.submit(g.job(n), owner=n) for n in names]
    wait_for(lambda: len(g.started) == 2)
    assert g.started == ["j0", "j1"] and q.counts() == (2, 5)
    assert [q.place(j) for j in submitted] == [None, None, 1, 2, 3, 4, 5]
    assert all(j.active for j in submitted) and [j.running for j in submitted[:3]] == [True, True, False]
    assert submitted[2].snapshot()["state"] == "queued"
    # release them in a scrambled order: each freed slot goes to the first waiting job
    for i, n in enumerate(["j1", "j0", "j3", "j2", "j4", "j5", "j6"]):
        g.release[n].set()
        wait_for(lambda: len(g.started) == min(7, i + 3))
    for j in submitted:
        j.join(10)
    assert g.started == names and g.peak == 2
    assert all(j.result == j.name and not j.active for j in submitted) and q.counts() == (0, 0)


def test_leaving_the_queue():
    g, q = Gate(), JobQueue(slots=1)
    a, b, c, d = (q.submit(g.job(n), owner=n) for n in "abcd")
    wait_for(lambda: g.started == ["a"])
    assert q.leave(c) and c.left and not c.active and c.snapshot()["state"] == "left"
    assert [q.place(j) for j in (b, d)] == [1, 2]
    d.stop()  # Stop on a waiting job takes it out of the queue too
    assert d.left and q.counts() == (1, 1)
    assert not q.leave(a)  # a running job does not "leave"; stop() is what ends it
    assert q.submit(g.job("c2"), owner="c") is not None  # its owner may queue again
    for n in ("a", "b", "c2"):
        g.release[n].set()
    for j in (a, b):
        j.join(10)
    wait_for(lambda: "c2" in g.started)
    g.release["c2"].set()
    wait_for(lambda: q.counts() == (0, 0))
    assert g.started == ["a", "b", "c2"]  # c and d never ran
    c.join(1)  # joining a job that never ran returns at once


def test_one_active_job_per_owner_even_when_many_threads_try_at_once():
    g, q = Gate(), JobQueue(slots=1)
    q.submit(g.job("other"), owner="someone else")
    accepted, refused = [], []
    barrier = threading.Barrier(16)

    def press(i):
        barrier.wait()
        try:
            accepted.append(q.submit(g.job(f"mine{i}"), owner="me"))
        except QueueError as e:
            refused.append(str(e))
    threads = [threading.Thread(target=press, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 1 and len(refused) == 15
    assert "one at a time per session" in refused[0] and "waiting in the queue" in refused[0]
    assert q.active_job("me") is accepted[0]
    g.release["other"].set()
    wait_for(lambda: accepted[0].running)
    with pytest.raises(QueueError, match="running"):
        q.submit(g.job("again"), owner="me")
    g.release[accepted[0].name].set()
    accepted[0].join(10)
    q.submit(g.job("later"), owner="me")  # once it ended, the owner may start another
    g.release["later"].set()
    wait_for(lambda: q.counts() == (0, 0))


def test_many_threads_many_owners_never_pass_the_limit():
    """40 sessions submit from their own threads while jobs end on theirs: never more than 3 at once,
    every job runs exactly once, and the queue empties."""
    q = JobQueue(slots=3)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0, "runs": []}

    def work(i):
        def fn(stop, report):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
                state["runs"].append(i)
            time.sleep(0.002 * (i % 5))
            with lock:
                state["now"] -= 1
        return fn
    barrier = threading.Barrier(40)
    submitted = []

    def session(i):
        barrier.wait()
        submitted.append(q.submit(Job(work(i), name=f"s{i}"), owner=f"s{i}"))
    threads = [threading.Thread(target=session, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for j in submitted:
        j.join(30)
    assert state["peak"] <= 3 and sorted(state["runs"]) == list(range(40))
    assert q.counts() == (0, 0) and not any(j.active for j in submitted)


def test_estimated_wait_by_hand():
    """Slots 2. Running: r1 (10 s, began 4 s ago: 6 left) and r2 (30 s, began 10 s ago: 20 left).
    Waiting: w1 (5 s), w2 (unknown: the default 60 s), w3.
    w1 takes the slot free at 6; w2 the slot free at 6+5 = 11; w3 the slot free at min(20, 11+60) = 20."""
    g, q = Gate(), JobQueue(slots=2, default_seconds=60)
    r1 = q.submit(g.job("r1", expected=10), owner="r1")
    r2 = q.submit(g.job("r2", expected=30), owner="r2")
    w1 = q.submit(g.job("w1", expected=5), owner="w1")
    w2 = q.submit(g.job("w2"), owner="w2")
    w3 = q.submit(g.job("w3", expected=1), owner="w3")
    now = 1000.0
    r1.began, r2.began = now - 4, now - 10
    assert q.estimated_wait(w1, now) == pytest.approx(6)
    assert q.estimated_wait(w2, now) == pytest.approx(11)
    assert q.estimated_wait(w3, now) == pytest.approx(20)
    assert q.estimated_wait(r1, now) is None
    r1.began = now - 50  # past its expected end: its slot counts as free now
    assert q.estimated_wait(w1, now) == 0
    for n in ("r1", "r2", "w1", "w2", "w3"):
        g.release[n].set()
    wait_for(lambda: q.counts() == (0, 0))


def test_jobs_of_unknown_length_are_estimated_from_the_ones_that_ended():
    g, q = Gate(), JobQueue(slots=1, default_seconds=60)
    first = q.submit(g.job("first"), owner="a")
    time.sleep(0.3)
    g.release["first"].set()
    first.join(10)
    took = first.ended - first.began
    run = q.submit(g.job("run"), owner="a")
    wait = q.submit(g.job("wait"), owner="b")
    wait_for(lambda: run.running)
    est = q.estimated_wait(wait, run.began)
    assert est == pytest.approx(took) and took >= 0.3
    for n in ("run", "wait"):
        g.release[n].set()
    wait_for(lambda: q.counts() == (0, 0))


def test_slots_setting(monkeypatch):
    monkeypatch.delenv("RNNVIZ_MAX_JOBS", raising=False)
    assert jobs.default_slots(cores=2) == 1 and jobs.default_slots(cores=16) == 8 and jobs.default_slots(1) == 1
    monkeypatch.setenv("RNNVIZ_MAX_JOBS", "3")
    assert jobs.default_slots(cores=2) == 3 and JobQueue().slots == 3
    for bad in ("x", "0", "-2"):
        monkeypatch.setenv("RNNVIZ_MAX_JOBS", bad)
        with pytest.raises(ConfigError, match="RNNVIZ_MAX_JOBS"):
            jobs.default_slots()


# --- several sessions of the app share the server's queue ----------------------------------------

def _settings(at):
    small_training(at, steps=100_000)


def test_three_app_sessions_share_one_slot(folders, monkeypatch):  # noqa: F811
    """Slot 1: A trains, B and C wait (places 1 and 2, an estimated wait); B leaves, C moves up;
    Stop on A lets C run; a session cannot start a second job while one waits."""
    q = JobQueue(slots=1)
    monkeypatch.setattr(jobs, "_DEFAULT", q)
    sessions = {}
    for name in "ABC":
        at = app("train")
        _settings(at)
        at.button(key="tr_start").click().run()
        ok(at)
        sessions[name] = at
    a, b, c = (sessions[n].session_state["train_jobs"][0]["job"] for n in "ABC")
    wait_for(lambda: a.running)
    assert (q.place(b), q.place(c)) == (1, 2) and not b.running and not c.running
    for n, place in (("B", 1), ("C", 2)):
        at = sessions[n]
        at.run()
        shown = text_of(at.info)
        assert f"Waiting in the queue: place {place} of 2" in shown and "starts in about" in shown
        assert at.button(key="tr_start").disabled  # one job per session: no second Start while waiting
    assert not [i for i in sessions["A"].info if "Waiting in the queue" in str(i.value)]
    leave = [btn for btn in sessions["B"].button if btn.key and btn.key.startswith("leave_")]
    assert len(leave) == 1
    leave[0].click().run()
    ok(sessions["B"])
    assert b.left and sessions["B"].session_state["train_jobs"] == []  # the run is gone, not a failure
    assert not sessions["B"].button(key="tr_start").disabled
    at = sessions["C"]
    at.run()
    assert "place 1 of 1" in text_of(at.info)
    sessions["A"].button(key="tr_stop").click().run()
    a.join(30)
    wait_for(lambda: c.running, timeout=30)
    at.run()
    ok(at)
    assert "Waiting in the queue" not in text_of(at.info) and at.get("progress")
    at.button(key="tr_stop").click().run()
    c.join(30)
    wait_for(lambda: q.counts() == (0, 0))


def test_the_memory_experiment_waits_in_the_same_queue(shipped, monkeypatch):  # noqa: F811
    """Gradients' live memory experiment goes through the server's queue: with the one slot taken by
    another session, it waits with its place; leaving takes it out; and a session with a job waiting
    cannot start a training beside it."""
    from rnnviz import experiments

    q = JobQueue(slots=1)
    monkeypatch.setattr(jobs, "_DEFAULT", q)
    ran = []
    monkeypatch.setattr(experiments, "memory_experiment", lambda **kw: ran.append(kw) or None)
    g = Gate()
    other = q.submit(g.job("someone's training", expected=30), owner="another session")
    wait_for(lambda: other.running)
    at = app("gradients")
    at.button(key="mem_start").click().run()
    ok(at)
    job = at.session_state["memory_job"]
    assert job.queued and q.place(job) == 1 and not ran
    assert "Waiting in the queue: place 1 of 1" in text_of(at.info)
    at.switch_page("pages/train_page.py").run()
    assert at.button(key="tr_start").disabled and "one job at a time per session" in text_of(at.info)
    at.switch_page("pages/gradients_page.py").run()
    at.button(key="mem_leave").click().run()
    ok(at)
    assert job.left and q.counts() == (1, 0)
    assert "left the queue before it ran" in text_of(at.info)
    g.release["someone's training"].set()
    other.join(10)
    assert not ran  # it never ran


def test_waiting_sessions_poll_slowly():
    from ui.jobs import poll_every

    g, q = Gate(), JobQueue(slots=1)
    a = q.submit(g.job("a"), owner="a")
    b = q.submit(g.job("b"), owner="b")
    wait_for(lambda: a.running)
    assert poll_every([]) is None and poll_every([b]) == 5.0 and poll_every([a]) == 1.0 and poll_every([a, b]) == 1.0
    for n in "ab":
        g.release[n].set()
    wait_for(lambda: q.counts() == (0, 0))
