"""Background jobs: training (or any long function) in a worker thread with a stop event, and the
admission queue that lets at most N of them run at once (the rest wait, first in first out). The server's
queue admits through rnnviz.shared_state, so N holds for all the server processes of the machine."""
from __future__ import annotations

import copy
import os
import sqlite3
import threading
import uuid

import torch
import time
import traceback
from typing import Callable

from .errors import ConfigError, RnnvizError
from . import shared_state
from .model import CharRNN
from .training import TrainConfig, Trainer, TrainResult


class Job:
    """Runs fn(stop_event, report) in a daemon thread; `report(**kw)` updates a lock-protected snapshot.

    The thread never touches any UI: a page polls `snapshot()` and calls `stop()`. `threads` sets
    torch's CPU threads for this worker only (torch's setting is per thread).
    """

    def __init__(self, fn: Callable, name: str = "job", threads: int | None = None,
                 expected_seconds: float | None = None):
        self.name = name
        self.threads = threads
        self.expected_seconds = expected_seconds  # for the queue's estimated wait; None: unknown
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._state: dict = {"state": "starting", "started": time.time()}
        self.result = None
        self.error: str | None = None
        self.began: float | None = None  # when the worker started (after any wait in a queue)
        self.ended: float | None = None
        self._queue: "JobQueue | None" = None
        self._queued = False  # waiting in self._queue; set and cleared under the queue's lock
        self._left = False
        self._shared_id: str | None = None  # its row in the machine's queue (rnnviz.shared_state)
        self._done_callbacks: list[Callable] = []
        self._thread = threading.Thread(target=self._main, args=(fn,), name=f"rnnviz-{name}", daemon=True)

    def start(self) -> "Job":
        self.began = time.time()
        self._thread.start()
        return self

    def _main(self, fn) -> None:
        try:
            if self.threads:
                torch.set_num_threads(self.threads)
            self.report(state="running")
            try:
                self.result = fn(self.stop_event, self.report)
                self.report(state="stopped" if self.stop_event.is_set() else "finished")
            except RnnvizError as e:  # a message meant for the user
                self.error = str(e)
                self.report(state="failed", message=self.error)
            except Exception as e:  # anything else: keep the details for the log, show a short line
                self.error = f"{type(e).__name__}: {e}"
                self.report(state="failed", message=self.error, traceback=traceback.format_exc())
        finally:
            self.ended = time.time()
            for cb in self._done_callbacks:  # the queue frees the slot and starts the next job
                cb(self)

    def report(self, **kw) -> None:
        with self._lock:
            self._state.update(kw)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._state)

    def stop(self) -> None:
        """Stop a running job, or take a waiting one out of its queue."""
        self.stop_event.set()
        if self._queue is not None:
            self._queue.leave(self)

    @property
    def running(self) -> bool:
        """The worker thread is alive (a job waiting in a queue is not running yet)."""
        return self._thread.is_alive()

    @property
    def queued(self) -> bool:
        return self._queued

    @property
    def left(self) -> bool:
        """It left its queue before it ever ran."""
        return self._left

    @property
    def active(self) -> bool:
        """Waiting or running. `_queued` is read first: it turns False only after the thread started."""
        return self._queued or self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the job to end (a waiting job first has to start, or leave its queue)."""
        deadline = None if timeout is None else time.time() + timeout
        while self._queued and (deadline is None or time.time() < deadline):
            time.sleep(0.02)
        if self._thread.ident is not None:  # started: a thread that never started cannot be joined
            self._thread.join(None if deadline is None else max(0.0, deadline - time.time()))


class TrainingJob(Job):
    """A Trainer on its own copy of the model, in a worker thread; snapshot() holds curve and samples."""

    def __init__(self, model: CharRNN, train_text: str, val_text: str | None, config: TrainConfig,
                 corpus: dict | None = None, name: str = "training"):
        # Never train a model someone else holds (a cached, shared one): train a private copy.
        self.trainer = Trainer(copy.deepcopy(model).cpu(), train_text, val_text, config, corpus=corpus)
        super().__init__(self._train, name, threads=config.threads, expected_seconds=config.max_seconds)
        self.stop_event = self.trainer.stop_event

    def _train(self, stop_event, report) -> TrainResult:
        result = self.trainer.run()
        if result.status == "failed":
            report(message=result.reason)
        return result

    def snapshot(self) -> dict:
        snap = {**self.trainer.snapshot(), **{k: v for k, v in super().snapshot().items() if k != "state"}}
        job_state = super().snapshot()["state"]
        if job_state in ("queued", "left"):
            snap["state"] = job_state
        elif job_state == "failed" or (job_state in ("finished", "stopped") and self.result is not None):
            snap["state"] = self.result.status if self.result is not None else "failed"
        return snap

    @property
    def model(self) -> CharRNN:
        return self.trainer.model


class QueueError(RnnvizError):
    """A job the queue cannot take (this owner already has one waiting or running)."""


def default_slots(cores: int | None = None) -> int:
    """How many jobs run at once: RNNVIZ_MAX_JOBS, else half the cores (the other half serves pages)."""
    env = os.environ.get("RNNVIZ_MAX_JOBS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ConfigError(f"RNNVIZ_MAX_JOBS must be a whole number of jobs, not {env!r}") from None
        if n < 1:
            raise ConfigError(f"RNNVIZ_MAX_JOBS must be at least 1, not {n}")
        return n
    return max(1, (cores or os.cpu_count() or 2) // 2)


class JobQueue:
    """First in, first out admission: at most `slots` jobs run at once; one active job per owner.

    submit() starts a job at once when a slot is free, else it waits in order; when a running job
    ends its slot goes to the first waiting one. Thread-safe: sessions submit from their own threads,
    and jobs end on theirs.

    With `shared` (a shared_state.SharedState) the slots and the line are the machine's, across processes:
    admission and place() read the shared table, and a poller thread starts this process's waiting jobs when
    their turn comes (a slot freed in another process). One owner's jobs stay in one process (a session is
    pinned to its process), so the one-job-per-owner rule stays in memory.
    """

    def __init__(self, slots: int | None = None, default_seconds: float = 60.0,
                 shared: "shared_state.SharedState | None" = None, poll_seconds: float = 0.25):
        self.slots = default_slots() if slots is None else int(slots)
        if self.slots < 1:
            raise ConfigError(f"a job queue needs at least 1 slot, not {self.slots}")
        self.default_seconds = default_seconds  # a job's length when neither it nor history says
        self._lock = threading.RLock()
        self._running: list[Job] = []
        self._waiting: list[Job] = []
        self._owner: dict[int, str] = {}  # id(job) -> owner, for active jobs
        self._durations: list[float] = []  # of the jobs that ended, for jobs of unknown length
        self.shared = shared
        self.poll_seconds = poll_seconds
        self._poller: threading.Thread | None = None

    def submit(self, job: Job, owner: str) -> Job:
        """Start `job` now if a slot is free, else queue it; QueueError if `owner` has an active job."""
        with self._lock:
            mine = self.active_job(owner)
            if mine is not None:
                what = "waiting in the queue" if mine.queued else "running"
                raise QueueError(f"you already have a job {what} ({mine.name}); one at a time per session: "
                                 "stop it or wait for it to end")
            job._queue = self
            job._done_callbacks.append(self._done)
            self._owner[id(job)] = owner
            if self.shared is not None:
                job._shared_id = uuid.uuid4().hex
                free = self.shared.slot_request(job._shared_id, owner, self._length(job), self.slots)
            else:
                free = len(self._running) < self.slots
            if free:
                self._running.append(job)
                job.start()
            else:
                job._queued = True
                job.report(state="queued")
                self._waiting.append(job)
                self._start_poller()
        return job

    def _start_poller(self) -> None:
        """While this process has jobs waiting in the machine's line, look every poll_seconds for their turn."""
        if self.shared is None or (self._poller is not None and self._poller.is_alive()):
            return
        self._poller = threading.Thread(target=self._poll, name="rnnviz-queue-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while True:
            time.sleep(self.poll_seconds)
            with self._lock:
                if not self._waiting:
                    self._poller = None
                    return
                try:
                    self._admit()
                except sqlite3.Error as e:  # a busy or briefly unreadable file: try again next time
                    shared_state.log.warning("rnnviz: the job queue could not read the shared file: %s", e)

    def _admit(self) -> None:
        """Start the waiting jobs whose turn it is: in memory, the first ones while slots are free; with a
        shared table, those of this process among the machine's first waiting rows."""
        with self._lock:
            if self.shared is None:
                while self._waiting and len(self._running) < self.slots:
                    self._begin(self._waiting.pop(0))
                return
            if not self._waiting:
                return
            by_id = {j._shared_id: j for j in self._waiting}
            for jid in self.shared.slot_admit(by_id, self.slots):
                self._waiting.remove(by_id[jid])
                self._begin(by_id[jid])

    def _begin(self, job: Job) -> None:
        self._running.append(job)
        job.start()  # the thread is alive before _queued turns False (see Job.active)
        job._queued = False

    def leave(self, job: Job) -> bool:
        """Take a waiting job out of the queue (it never runs); False if it was not waiting."""
        with self._lock:
            if job not in self._waiting:
                return False
            self._waiting.remove(job)
            self._owner.pop(id(job), None)
            if self.shared is not None:
                self.shared.slot_release(job._shared_id)
            job._left = True
            job._queued = False
            job.report(state="left")
            return True

    def _done(self, job: Job) -> None:
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            self._owner.pop(id(job), None)
            if job.began is not None and job.ended is not None:
                self._durations = (self._durations + [job.ended - job.began])[-20:]
            if self.shared is not None and job._shared_id is not None:
                self.shared.slot_release(job._shared_id)
            self._admit()

    def active_job(self, owner: str) -> Job | None:
        """The owner's job that is waiting or running, if any."""
        with self._lock:
            for job in self._running + self._waiting:
                if self._owner.get(id(job)) == owner:
                    return job
        return None

    def place(self, job: Job) -> int | None:
        """1 for the first waiting job, 2 for the next ...; None when it is not waiting."""
        with self._lock:
            if job not in self._waiting:
                return None
            if self.shared is not None:
                return self.shared.slot_place(job._shared_id)
            return self._waiting.index(job) + 1

    def _length(self, job: Job) -> float:
        if job.expected_seconds:
            return float(job.expected_seconds)
        return sum(self._durations) / len(self._durations) if self._durations else self.default_seconds

    def estimated_wait(self, job: Job, now: float | None = None) -> float | None:
        """Seconds until `job` should start: the running jobs' remaining time, then each job ahead of it
        taking the next free slot. None when it is not waiting. An estimate: a job may stop early."""
        now = time.time() if now is None else now
        with self._lock:
            if job not in self._waiting:
                return None
            if self.shared is not None:
                running, waiting = self.shared.slot_rows()
                ids = [w[0] for w in waiting]
                free = sorted(max(0.0, length - (now - began)) for began, length in running)
                ahead = [w[1] for w in waiting[:ids.index(job._shared_id)]] if job._shared_id in ids else []
            else:
                free = sorted(max(0.0, self._length(r) - (now - (r.began or now))) for r in self._running)
                ahead = [self._length(a) for a in self._waiting[:self._waiting.index(job)]]
            free += [0.0] * (self.slots - len(free))
            for length in ahead:
                free.sort()
                free[0] += length
            return min(free)

    def counts(self) -> tuple[int, int]:
        """(running, waiting): the machine's with a shared table, else this queue's."""
        with self._lock:
            if self.shared is not None:
                return self.shared.slot_counts()
            return len(self._running), len(self._waiting)


_DEFAULT: JobQueue | None = None
_DEFAULT_LOCK = threading.Lock()


def default_queue() -> JobQueue:
    """The process's queue: every session of one server shares it, and its slots are the machine's (every
    server process shares them through rnnviz.shared_state; without a usable shared file, the process's own)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = JobQueue(shared=shared_state.default())
        return _DEFAULT
