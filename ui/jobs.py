"""Training jobs of a session: start through the server's queue, poll, register the finished model,
show progress (or the place in the queue, with a button to leave it)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import time
import uuid

import streamlit as st

from rnnviz import checkpoint, jobs, losses, quotas
from rnnviz.corpora import corpus_meta, split
from rnnviz.errors import RnnvizError, TextError
from rnnviz.jobs import Job, TrainingJob
from rnnviz.model import build
from rnnviz.recipes import RECIPES, corpus_from_spec
from rnnviz.training import DEFAULT_HISTORY, TrainConfig
from rnnviz.vocab import Vocab
from ui.models import add_mem_model, check_mem_quota
from ui.state import TRAIN_THREADS, guard, session_dir


def owner() -> str:
    """This session's id in the job queue (one waiting or running job per session)."""
    return st.session_state.setdefault("_owner", uuid.uuid4().hex)


def job_threads() -> int:
    """Torch threads per job: RNNVIZ_TRAIN_THREADS when set, else the cores that half the machine gives
    each of the queue's slots (slots x threads never passes half the cores: the rest serve pages)."""
    if os.environ.get("RNNVIZ_TRAIN_THREADS"):
        return TRAIN_THREADS
    return max(1, min(TRAIN_THREADS, (os.cpu_count() or 2) // (2 * jobs.default_queue().slots)))


def submit(job: Job) -> Job:
    """Through the server's queue: starts now if a slot is free, else waits its turn."""
    return jobs.default_queue().submit(job, owner())


def session_job() -> Job | None:
    """This session's job that waits or runs (training or experiment), if any."""
    return jobs.default_queue().active_job(owner())


def job_records() -> list[dict]:
    """This session's training runs; "running" means waiting or running. Runs that left the queue go."""
    ss = st.session_state
    recs = ss.get("train_jobs", [])
    if any(r["job"].left for r in recs):
        recs[:] = [r for r in recs if not r["job"].left]
    for r in recs:
        r["running"] = r["job"].active
    return recs


def queue_line(job: Job) -> str | None:
    """'Waiting in the queue: place 2, about 1m 05s' while the job waits; None once it runs."""
    q = jobs.default_queue()
    place = q.place(job)
    if place is None:
        return None
    running, waiting = q.counts()
    return (f"Waiting in the queue: place {place} of {waiting} ({running} of {q.slots} slots busy on this server), "
            f"starts in about {_fmt_eta(q.estimated_wait(job))}")


def poll_every(active_jobs: list) -> float | None:
    """Seconds between progress polls: 1 while a job runs, 5 while all only wait (a full queue of
    waiting sessions must not rerun the server many times a second), None when none is active."""
    if not active_jobs:
        return None
    return 5.0 if all(j.queued for j in active_jobs) else 1.0


def queue_status(job: Job, key: str) -> bool:
    """Show a waiting job's place and estimated wait with a 'Leave the queue' button; False if it runs."""
    line = queue_line(job)
    if line is None:
        return False
    st.info(line, icon=":material/hourglass_top:")
    st.button("Leave the queue", key=key, on_click=job.stop, icon=":material/logout:")
    return True


def start_training(name: str, train_text: str, val_text: str, corpus_meta: dict, cell: str, layers: int,
                   hidden: int, cfg: TrainConfig, select_when_done: bool = False, embed_size: int = 64) -> dict:
    """Build a fresh model and train it in a worker thread; the record lives in session state."""
    if len(train_text) < cfg.seq_len + 2:
        raise TextError(f"the training text has {len(train_text):,} characters; it needs more than "
                        f"the sequence length + 1 ({cfg.seq_len + 1})")
    mine = session_job()
    if mine is not None:
        raise jobs.QueueError(f"this session already has a job {'waiting' if mine.queued else 'running'} "
                              f"({mine.name}): one at a time per session; stop it or wait for it to end")
    vocab = Vocab.from_text(train_text + (val_text or ""))
    model = build(vocab, cell=cell, hidden_size=hidden, num_layers=layers, embed_size=embed_size, seed=cfg.seed)
    check_mem_quota(quotas.model_bytes(model))  # before training: its model must fit in this session
    # the app's trainings keep a history (Training history scrubs through it) unless told otherwise
    cfg = dataclasses.replace(cfg, threads=cfg.threads or job_threads(), history=cfg.history or DEFAULT_HISTORY)
    job = submit(TrainingJob(model, train_text, val_text, cfg, corpus=corpus_meta, name=name))
    rec = {"name": name, "job": job, "registered": None, "select": select_when_done, "running": True,
           "started": time.time()}
    st.session_state["train_jobs"].append(rec)
    return rec


def quick_seconds() -> int:
    return int(RECIPES["quick"].train.max_seconds or 60)


def start_quick_training() -> None:
    """The 'quick' recipe of rnnviz.recipes, in a worker thread; its model is selected when done."""
    ss = st.session_state
    try:
        recipe = RECIPES["quick"]
        corpus = corpus_from_spec(recipe.corpus)
        train, val = split(corpus, recipe.val_fraction)
        cfg = dataclasses.replace(recipe.train, eval_every=50, eval_chars=5_000, sample_every=100)
        shape = recipe.model
        n = len(ss.get("train_jobs", [])) + 1
        start_training(f"quick-{shape['cell']}-{n}", train, val, corpus_meta(corpus, recipe.val_fraction),
                       shape["cell"], shape["num_layers"], shape["hidden_size"], cfg, select_when_done=True,
                       embed_size=shape.get("embed_size", 64))
    except RnnvizError as e:  # a callback: keep the message for the page to show
        ss["quick_error"] = str(e)


def sync_jobs() -> None:
    """Register the model of every finished run (once): saved to a temp folder, selectable everywhere."""
    ss = st.session_state
    for rec in job_records():
        if rec["running"] or rec["registered"] is not None:
            continue
        job = rec["job"]
        result = job.result
        if result is None or result.steps == 0:
            rec["registered"] = ""  # failed before training: nothing to register
            continue
        path = session_dir() / re.sub(r"[^A-Za-z0-9_.-]", "_", rec["name"])
        job.trainer.save(path, result)
        model, config = checkpoint.load(path)
        rec["path"] = path
        rec["registered"] = add_mem_model(model, config, rec["name"], "session", path=path,
                                          select=rec["select"] or context_missing(),
                                          check=False)  # its room was checked (and kept) at start
        ss["_toast"] = f"Model {rec['name']} is ready: pick it in the sidebar on any page."


def context_missing() -> bool:
    return st.session_state.get("model_choice") is None


def _fmt_eta(eta) -> str:
    if eta is None or not isinstance(eta, (int, float)) or not math.isfinite(eta):
        return "-"
    eta = int(eta)
    return f"{eta // 60}m {eta % 60:02d}s" if eta >= 60 else f"{eta}s"


def progress_line(snap: dict) -> str:
    cps = snap.get("chars_per_sec") or 0
    parts = [f"step {snap.get('step', 0):,}", f"{cps:,.0f} chars/s", f"ETA {_fmt_eta(snap.get('eta'))}"]
    if snap.get("train_loss") is not None:
        parts.append(f"train loss {snap['train_loss']:.3f}")
    if losses.progress_words(snap):
        parts.append(losses.progress_words(snap))
    return " · ".join(parts)


def training_progress() -> None:
    """Progress of the running jobs; polls every second while one runs (a fragment), then reruns the app."""
    running = any(r["running"] for r in job_records())

    def body():
        recs = job_records()
        for rec in recs:
            if not rec["running"] and rec["registered"] is not None:
                continue
            if queue_status(rec["job"], key=f"leave_{rec['name']}"):
                continue
            snap = rec["job"].snapshot()
            st.markdown(f"**{rec['name']}** - {snap.get('state', 'starting')}")
            st.progress(min(1.0, float(snap.get("fraction") or 0.0)), text=progress_line(snap))
        if running and not any(r["running"] for r in recs):
            st.rerun(scope="app")  # a run just ended: register its model everywhere
        if every != poll_every([r["job"] for r in recs if r["running"]]):
            st.rerun(scope="app")  # a waiting job started: poll it every second from now on

    every = poll_every([r["job"] for r in job_records() if r["running"]])
    st.fragment(run_every=every)(lambda: guard(body))()
