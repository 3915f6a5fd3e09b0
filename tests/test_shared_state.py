"""State shared by the server processes (rnnviz.shared_state), tried with real separate processes: one class
board, the machine's training slots and its line, a killed holder, a build done once, and a damaged file."""
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rnnviz import cli, quotas, shannon, shared_state
from rnnviz.jobs import Job, JobQueue

ROOT = Path(__file__).resolve().parent.parent


def spawn(code: str, db: Path, **env) -> subprocess.Popen:
    """A separate Python process running `code` against the shared file `db`; its stdout is a pipe of lines."""
    full = {**os.environ, "RNNVIZ_SHARED_DB": str(db), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=full, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def line(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """The process's next line of output (fails with its stderr if it ends first)."""
    out = proc.stdout.readline()
    if not out:
        proc.wait(timeout)
        pytest.fail(f"the process ended without a line: {proc.stderr.read()[-2000:]}")
    return out.strip()


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return out


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


POST = """
    import sys
    from rnnviz import shannon, shared_state
    board = shannon.Board(size=2, shared=shared_state.default())
    board.post(sys.argv[1], [1, 2, 1], "tiny")
    print(",".join(r["nickname"] for r in board.rows()))
"""


def test_two_processes_see_one_class_board(tmp_path):
    db = tmp_path / "shared.sqlite3"
    for nick in ("ada", "bob"):
        finish(subprocess.Popen([sys.executable, "-c", textwrap.dedent(POST), nick], text=True, cwd=ROOT,
                                env={**os.environ, "RNNVIZ_SHARED_DB": str(db), "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    board = shannon.Board(size=2, shared=shared_state.SharedState(db))
    assert sorted(r["nickname"] for r in board.rows()) == ["ada", "bob"]  # each posted from its own process
    assert board.rows()[0]["lower (bits/char)"] == round(shannon.bounds([1, 2, 1]).lower, 3)
    board.post("cy", [1], "tiny")  # a third: the board keeps the latest 2, so ada (the oldest) goes
    assert sorted(r["nickname"] for r in board.rows()) == ["bob", "cy"]


SUBMIT = """
    import os, sys, time
    from pathlib import Path
    from rnnviz import shared_state
    from rnnviz.jobs import Job, JobQueue
    name, folder = sys.argv[1], Path(sys.argv[2])
    print("ready", flush=True)  # imported (torch is slow to import): the test now decides the order of arrival
    while not (folder / f"{name}.go").exists():
        time.sleep(0.01)

    def work(stop, report):
        (folder / f"{name}.started").write_text(str(time.time()))
        while not (folder / f"{name}.release").exists():
            time.sleep(0.02)
        (folder / f"{name}.ended").write_text(str(time.time()))

    q = JobQueue(shared=shared_state.default(), poll_seconds=0.05)  # slots from RNNVIZ_MAX_JOBS
    job = q.submit(Job(work, name=name, expected_seconds=10), owner=name)
    wait = q.estimated_wait(job)
    print("place", q.place(job), "counts", *q.counts(), "wait", -1 if wait is None else round(wait), flush=True)
    while job.queued:
        time.sleep(0.02)
    print("running", flush=True)
    job.join(60)
    print("done", job.snapshot()["state"], flush=True)
"""


@pytest.mark.slow
def test_trainings_beyond_the_limit_queue_across_processes(tmp_path):
    """RNNVIZ_MAX_JOBS=1 over three processes: one runs, the others wait in the order they came, each told
    its true place in the machine's line; each starts only after the one before it ended."""
    db = tmp_path / "shared.sqlite3"
    procs = {}
    for name in "abc":
        procs[name] = p = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(SUBMIT), name, str(tmp_path)], text=True, cwd=ROOT,
            env={**os.environ, "RNNVIZ_SHARED_DB": str(db), "RNNVIZ_MAX_JOBS": "1", "OMP_NUM_THREADS": "1",
                 "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for name in "abc":
        assert line(procs[name]) == "ready"
    for name in "abc":
        (tmp_path / f"{name}.go").touch()
        first = line(procs[name]).split()  # submitted before the next one goes: the order of arrival is a, b, c
        assert first[:5] == {"a": "place None counts 1 0", "b": "place 1 counts 1 1",
                             "c": "place 2 counts 1 2"}[name].split()
        # each job says it takes 10 s: b waits for what is left of a's 10 s, c for that and b's 10 s more
        assert {"a": int(first[6]) == -1, "b": 5 <= int(first[6]) <= 10, "c": 15 <= int(first[6]) <= 20}[name]
    assert line(procs["a"]) == "running"
    time.sleep(0.5)  # b and c poll 10 times a second: neither may start while a holds the only slot
    assert not (tmp_path / "b.started").exists() and not (tmp_path / "c.started").exists()
    (tmp_path / "a.release").touch()
    assert line(procs["b"]) == "running"
    assert shared_state.SharedState(db).slot_counts() == (1, 1)
    time.sleep(0.3)
    assert not (tmp_path / "c.started").exists()
    (tmp_path / "b.release").touch()
    assert line(procs["c"]) == "running"
    (tmp_path / "c.release").touch()
    for p in procs.values():
        assert finish(p).strip() == "done finished"
    t = {n: (float((tmp_path / f"{n}.started").read_text()), float((tmp_path / f"{n}.ended").read_text()))
         for n in "abc"}
    assert t["a"][1] <= t["b"][0] and t["b"][1] <= t["c"][0]  # never two at once, first in first out
    assert shared_state.SharedState(db).slot_counts() == (0, 0)  # every row went with its job


HOLD = """
    import os, time
    from rnnviz import shared_state
    state = shared_state.default()
    assert state.slot_request("killed-job", "someone", 60.0, slots=1)
    assert state.try_lock("atlas:/cache/entry") and state.try_lock("quota:save")
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_process_leaves_nothing_that_blocks(tmp_path, monkeypatch, capsys):
    """SIGKILL while holding the only training slot, a build lock and the save lock: the next process gets all
    three at once (the holder's pid is dead), with no wait for a heartbeat to grow old."""
    db = tmp_path / "shared.sqlite3"
    holder = spawn(HOLD, db)
    assert line(holder) == "holding"
    state = shared_state.SharedState(db)  # stale_seconds 30: only the dead pid can free these in time
    assert state.slot_counts() == (1, 0) and state.lock_holder("atlas:/cache/entry") == holder.pid
    assert state.try_lock("atlas:/cache/entry") is None  # a live holder keeps it
    monkeypatch.setenv("RNNVIZ_SHARED_DB", str(db))
    assert cli.main(["shared", "--json"]) == 0  # what a teacher sees: the slot and both locks, the holder's pid
    shown = json.loads(capsys.readouterr().out)
    assert (shown["running"], shown["waiting"], [j["pid"] for j in shown["jobs"]]) == (1, 0, [holder.pid])
    assert [(lk["key"], lk["pid"]) for lk in shown["locks"]] == [("atlas:/cache/entry", holder.pid),
                                                                ("quota:save", holder.pid)]
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    t0 = time.time()
    q = JobQueue(slots=1, shared=state)
    job = q.submit(Job(lambda stop, report: "ran", name="next"), owner="next")
    job.join(10)
    assert job.result == "ran" and not job.left
    with state.lock("atlas:/cache/entry"):
        assert state.lock_holder("atlas:/cache/entry") == os.getpid()
    with quotas.SAVE_LOCK:  # the lock around the quota check and the save, across processes
        assert state.lock_holder("quota:save") == os.getpid()
    assert time.time() - t0 < 5.0
    assert state.slot_counts() == (0, 0) and state.lock_holder("quota:save") is None
    assert cli.main(["shared"]) == 0
    assert "0 trainings running, 0 waiting; 0 locks held" in capsys.readouterr().out


def test_a_stale_heartbeat_frees_a_row_of_another_machine(tmp_path):
    """A host's pids cannot be checked from another: there only the heartbeat's age tells a holder is gone."""
    state = shared_state.SharedState(tmp_path / "s.sqlite3", stale_seconds=30)
    with state._write() as con:
        con.execute("INSERT INTO locks VALUES ('fresh', 't1', 1, 'elsewhere', ?)", (time.time(),))
        con.execute("INSERT INTO locks VALUES ('old', 't2', 1, 'elsewhere', ?)", (time.time() - 31,))
    assert state.try_lock("fresh") is None and state.lock_holder("fresh") == 1
    assert state.try_lock("old") is not None


FIT = """
    import sys, time
    from pathlib import Path
    from rnnviz import ngram
    folder = Path(sys.argv[1])
    real_fit = ngram.fit

    def counted_fit(*a, **kw):
        with open(folder / "fits.log", "a") as f:
            f.write("fit\\n")
        time.sleep(1.5)  # long enough that the other process arrives while this one builds
        return real_fit(*a, **kw)

    ngram.fit = counted_fit
    print("ready", flush=True)
    while not (folder / "go").exists():
        time.sleep(0.01)
    m = ngram.fit_cached("the cat sat on the mat. " * 20, order=3, folder=folder / "cache")
    print(m.loss("the cat"), flush=True)
"""


def test_a_build_is_done_once_and_the_other_process_reuses_it(tmp_path):
    db = tmp_path / "shared.sqlite3"
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(FIT), str(tmp_path)], text=True, cwd=ROOT,
                              env={**os.environ, "RNNVIZ_SHARED_DB": str(db), "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        assert line(p) == "ready"
    (tmp_path / "go").touch()  # both ask for the same n-gram model at once
    losses = [finish(p).strip() for p in procs]
    assert (tmp_path / "fits.log").read_text().count("fit") == 1  # one fitted, the other waited and read it
    assert losses[0] == losses[1]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_a_damaged_file_is_replaced_with_a_log_line_never_trusted(tmp_path, caplog, monkeypatch):
    db = tmp_path / "shared.sqlite3"
    db.write_bytes(b"not a database at all, " * 100)
    with caplog.at_level(logging.WARNING, logger="rnnviz.shared_state"):
        state = shared_state.SharedState(db)
    assert any("not a usable SQLite file" in r.message and "replaced" in r.message for r in caplog.records)
    board = shannon.Board(shared=state)
    board.post("ada", [1, 1], "tiny")
    assert [r["nickname"] for r in board.rows()] == ["ada"]
    with sqlite3.connect(db) as con:  # the new file is a real SQLite file, in WAL mode
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # A place where no file can be made at all: no shared state (said in the log), one process's own queue.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("RNNVIZ_SHARED_DB", str(blocker / "shared.sqlite3"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rnnviz.shared_state"):
        assert shared_state.default() is None
    assert any("cannot open the shared state file" in r.message for r in caplog.records)
    with quotas.SAVE_LOCK:  # still a lock within the process, without a shared file
        pass
