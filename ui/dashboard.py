"""The unit dashboard's ablation in the app: a background job per (atlas, unit, held value), shared by the
server like the atlas itself, with a progress bar and Cancel; the result is kept for every session."""
from __future__ import annotations

import threading

import streamlit as st

import ui
from rnnviz import dashboard
from rnnviz.atlas import Cancelled
from rnnviz.jobs import Job
from ui.widgets import job_progress

KEEP = 16  # finished ablations kept per server (each holds two float32 losses per character)


@st.cache_resource
def _server() -> dict:
    """Server-wide: key -> Ablation, key -> the Job computing it."""
    return {"results": {}, "jobs": {}, "lock": threading.Lock()}


def ablation_key(atlas, layer: int, kind: str, unit: int, how: str) -> tuple:
    return (atlas.path.name if atlas.path else atlas.corpus_sha256, atlas.model_key, layer, kind, unit, how)


def result(key: tuple):
    """The finished Ablation of key, or None."""
    server = _server()
    found = server["results"].get(key)
    job = server["jobs"].get(key)
    if found is None and job is not None and not job.running and job.result is not None:
        found = _keep(key, job.result)
    return found


def running(key: tuple) -> bool:
    job = _server()["jobs"].get(key)
    return job is not None and job.running


def last_error(key: tuple) -> str | None:
    job = _server()["jobs"].get(key)
    return job.error if job is not None and not job.running else None


def _keep(key: tuple, ab) -> object:
    results = _server()["results"]
    results[key] = ab
    while len(results) > KEEP:
        results.pop(next(iter(results)))
    return ab


def start(model, atlas, layer: int, kind: str, unit: int, how: str) -> Job:
    """Start (or join) the server's run of this ablation over the atlas text."""
    key = ablation_key(atlas, layer, kind, unit, how)
    value = dashboard.hold_value(atlas, layer, kind, unit, how)
    text = atlas.text

    def run(stop_event, report):
        try:
            return dashboard.ablation(model, text, layer, kind, unit, value, report=report, stop_event=stop_event)
        except Cancelled:
            return None

    server = _server()
    with server["lock"]:
        job = server["jobs"].get(key)
        if job is None or not job.running:
            job = Job(run, name="ablation", threads=ui.TRAIN_THREADS).start()
            server["jobs"][key] = job
    return job


def progress(key: tuple) -> None:
    """A progress bar and Cancel while the run goes on (polled every second); reruns the page when it ends."""
    def body():
        server = _server()
        job = server["jobs"].get(key)
        if job is None:
            return
        if job_progress(job, "unit_ablate_cancel", "starting the ablation ..."):
            return
        if job.result is not None:
            _keep(key, job.result)
        elif job.stop_event.is_set():
            server["jobs"].pop(key, None)
            st.session_state["_toast"] = "The ablation was cancelled."
        st.rerun(scope="app")

    st.fragment(run_every=1.0)(lambda: ui.guard(body))()
