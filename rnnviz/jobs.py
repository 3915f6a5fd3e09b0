"""Background jobs: training (or any long function) in a worker thread with a stop event."""
from __future__ import annotations

import copy
import threading

import torch
import time
import traceback
from typing import Callable

from .errors import RnnvizError
from .model import CharRNN
from .training import TrainConfig, Trainer, TrainResult


class Job:
    """Runs fn(stop_event, report) in a daemon thread; `report(**kw)` updates a lock-protected snapshot.

    The thread never touches any UI: a page polls `snapshot()` and calls `stop()`. `threads` sets
    torch's CPU threads for this worker only (torch's setting is per thread).
    """

    def __init__(self, fn: Callable, name: str = "job", threads: int | None = None):
        self.name = name
        self.threads = threads
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._state: dict = {"state": "starting", "started": time.time()}
        self.result = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._main, args=(fn,), name=f"rnnviz-{name}", daemon=True)

    def start(self) -> "Job":
        self._thread.start()
        return self

    def _main(self, fn) -> None:
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

    def report(self, **kw) -> None:
        with self._lock:
            self._state.update(kw)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._state)

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class TrainingJob(Job):
    """A Trainer on its own copy of the model, in a worker thread; snapshot() holds curve and samples."""

    def __init__(self, model: CharRNN, train_text: str, val_text: str | None, config: TrainConfig,
                 corpus: dict | None = None, name: str = "training"):
        # Never train a model someone else holds (a cached, shared one): train a private copy.
        self.trainer = Trainer(copy.deepcopy(model).cpu(), train_text, val_text, config, corpus=corpus)
        super().__init__(self._train, name, threads=config.threads)
        self.stop_event = self.trainer.stop_event

    def _train(self, stop_event, report) -> TrainResult:
        result = self.trainer.run()
        if result.status == "failed":
            report(message=result.reason)
        return result

    def snapshot(self) -> dict:
        snap = {**self.trainer.snapshot(), **{k: v for k, v in super().snapshot().items() if k != "state"}}
        job_state = super().snapshot()["state"]
        if job_state == "failed" or (job_state in ("finished", "stopped") and self.result is not None):
            snap["state"] = self.result.status if self.result is not None else "failed"
        return snap

    @property
    def model(self) -> CharRNN:
        return self.trainer.model
