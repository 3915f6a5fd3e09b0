"""The 2015 paper page's data: the shipped results (read once per server), the user's own grid run through
the training queue, and the analyses of a model that has none shipped, computed in a background job."""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from rnnviz import history
from rnnviz.errors import RnnvizError
from rnnviz.jobs import Job
from rnnviz.paper import grid, shipped
from rnnviz.paper.dynamics import dynamics, history_snapshots
from rnnviz.paper.saturation import layer_saturation
from rnnviz.paper.texts import held_out_sample
from ui import jobs as jobs_ui
from ui.state import PAGE_THREADS, guard, log, session_dir
from ui.widgets import job_progress

GRID_JOB = "paper_grid_job"  # session key: this session's grid run (a Job from grid.grid_job)
SATURATION_CHARS = 5_000  # held-out characters for a model whose saturation is not shipped
DYNAMICS_CHARS = 2_000  # and for its dynamics: every snapshot reads them
MAX_RESULTS = 16  # analyses kept per server; the oldest go first


def _mtime(path: Path) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(max_entries=2, show_spinner=False)
def _shipped_grid(path: str, mtime_ns: int) -> dict | None:
    try:
        return grid.shipped_results()
    except (RnnvizError, OSError, ValueError):
        return None


def shipped_grid() -> dict | None:
    """The shipped default grid's results {spec, command, machine, rows}, or None when missing or damaged."""
    return _shipped_grid(str(grid.SHIPPED_RESULTS), _mtime(grid.SHIPPED_RESULTS))


@st.cache_data(max_entries=2, show_spinner=False)
def _shipped_analyses(path: str, mtime_ns: int) -> dict | None:
    return shipped.shipped_analyses(Path(path))


def shipped_analyses() -> dict | None:
    """The analyses shipped for the shipped models (onion, dynamics, saturation), or None."""
    return _shipped_analyses(str(shipped.SHIPPED), _mtime(shipped.SHIPPED))


# --- the user's own grid run, through the training queue ---------------------------------------------------

def grid_dir() -> Path:
    return session_dir() / "paper-grid"


def start_grid() -> None:
    """Queue the default grid for this session (a button's callback: errors are kept for the page)."""
    ss = st.session_state
    ss.pop("paper_grid_error", None)
    try:
        ss[GRID_JOB] = jobs_ui.submit(grid.grid_job(grid.default_spec(), grid_dir(), threads=jobs_ui.job_threads()))
    except RnnvizError as e:
        ss["paper_grid_error"] = str(e)


def grid_job() -> Job | None:
    return st.session_state.get(GRID_JOB)


def own_grid() -> dict | None:
    """This session's run {spec, command, machine, rows} as its results.json says: every run once the grid
    ended, those finished before a Cancel; None while it runs or before any run finished."""
    job = grid_job()
    if job is None or job.active:
        return None
    path = grid_dir() / grid.RESULTS_JSON
    try:
        rows = grid.load_results(path)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (RnnvizError, OSError, ValueError):
        return None
    return {**data, "rows": rows} if rows and isinstance(data.get("spec"), dict) else None


def _grid_line(snap: dict) -> str:
    done, total = int(snap.get("done") or 0), int(snap.get("total") or 0)
    parts = [f"run {min(done + 1, total)} of {total}" if total else "starting"]
    if snap.get("run"):
        parts.append(str(snap["run"]))
    if snap.get("loss") is not None:
        parts.append(f"loss {float(snap['loss']):.3f}")
    return " · ".join(parts)


def grid_progress() -> None:
    """While this session's grid waits or runs: its place in the queue or its progress, with Cancel."""
    job = grid_job()
    if job is None or not job.active:
        return

    def body():
        if jobs_ui.queue_status(job, key="paper_grid_leave"):
            return
        if not job.active:
            st.rerun(scope="app")  # it ended: the page shows its table
        snap = job.snapshot()
        total = int(snap.get("total") or 0) or 1
        st.progress(min(1.0, int(snap.get("done") or 0) / total), text=_grid_line(snap))
        st.button("Cancel", key="paper_grid_cancel", on_click=job.stop, icon=":material/stop:")

    st.fragment(run_every=jobs_ui.poll_every([job]))(lambda: guard(body))()


# --- analyses of a model with none shipped, off the page's thread ---------------------------------------

@st.cache_resource
def _server() -> dict:
    return {"results": {}, "jobs": {}, "lock": threading.Lock()}


def background(key: str, fn, what: str):
    """fn()'s result, computed once per server in a background job: None (with progress and Cancel shown)
    until it is there. A failed run shows its message; a cancelled one can be started again."""
    server = _server()
    if key in server["results"]:
        return server["results"][key]
    with server["lock"]:
        job = server["jobs"].get(key)
        if job is None or (job.stop_event.is_set() and not job.running):
            job = Job(lambda stop, report: fn(), name=what, threads=PAGE_THREADS).start()
            job.report(message=f"{what} ...")
            server["jobs"][key] = job
    if job.error:
        st.error(f"{what} failed: {job.error}", icon=":material/error:")
        return None
    if not job.running and job.result is not None:
        server["results"][key] = job.result
        while len(server["results"]) > MAX_RESULTS:
            server["results"].pop(next(iter(server["results"])))
        return job.result

    def body():
        if not job_progress(job, f"cancel_{key}", what):
            st.rerun(scope="app")

    st.fragment(run_every=1.0)(lambda: guard(body))()
    return None


def saturation_of(ctx) -> tuple[pd.DataFrame | None, str]:
    """(the model's per-unit saturation table, over what text), shipped or computed; None while computing."""
    data = shipped_analyses() or {}
    entry = data.get("saturation", {}).get(ctx.name) if ctx.entry.source == "shipped" else None
    if entry is not None:
        try:
            return shipped.saturation_frame(entry), f"{int(entry['chars']):,} held-out characters (shipped analysis)"
        except (KeyError, TypeError, ValueError):
            log.warning("the shipped saturation of %s is damaged: measuring it again", ctx.name)
    try:
        text, _ = held_out_sample(ctx.config, SATURATION_CHARS)
        where = f"{len(text):,} held-out characters"
    except RnnvizError:
        text, where = ctx.text, f"the text under study ({len(ctx.text):,} characters; no held-out text here)"
    table = background(f"sat:{ctx.key}:{hashlib.sha256(text.encode()).hexdigest()[:16]}", lambda: layer_saturation(ctx.model, text),
                       f"Measuring the gates of {ctx.name} over {where}")
    return table, where


def dynamics_of(ctx) -> tuple[dict | None, str, str | None]:
    """(dynamics {steps, orders, kl}, whose, notice): the model's own when it has a history (shipped or
    computed once asked), else shakespeare-small's shipped ones with a notice saying why."""
    data = shipped_analyses() or {}
    shipped_dyn = data.get("dynamics", {})
    path = Path(ctx.entry.path) if ctx.entry.path is not None else None
    own = path is not None and history.has_history(path)
    if own and ctx.entry.source == "shipped" and ctx.name in shipped_dyn:
        return _as_dynamics(shipped_dyn[ctx.name]), ctx.name, None
    fallback = shipped.DYNAMICS_MODELS[0]
    if own and st.session_state.get(f"paper_dyn_{ctx.key}"):
        result = background(f"dyn:{path}:{_mtime(path / 'history')}", lambda: _dynamics_of_path(path, ctx.config),
                            f"Comparing every snapshot of {ctx.name} with n-grams")
        return result, ctx.name, None  # None while it runs: its progress is shown, not another model's curves
    if own:
        st.button(f"Measure {ctx.name}'s own training history", key="paper_dyn_start", icon=":material/play_arrow:",
                  on_click=lambda: st.session_state.update({f"paper_dyn_{ctx.key}": True}))
        why = (f"Below, {fallback}'s dynamics, shipped with rnnviz, until you measure {ctx.name}'s own history with "
               "the button above (every snapshot is compared with n-grams fitted on its training text: it takes a while).")
    else:
        why = (f"{ctx.name} has no training history (no snapshots were kept when it trained), so this section shows "
               f"{fallback}'s, shipped with rnnviz. Train a model on the Train page to get one.")
    if fallback not in shipped_dyn:
        return None, fallback, why
    return _as_dynamics(shipped_dyn[fallback]), fallback, why


def _as_dynamics(entry: dict) -> dict:
    return {"steps": list(entry["steps"]), "orders": list(entry["orders"]), "kl": np.asarray(entry["kl"], float)}


def _dynamics_of_path(path: Path, config: dict) -> dict:
    from rnnviz.ngram import training_text

    text, _ = held_out_sample(config, DYNAMICS_CHARS)
    return dynamics(history_snapshots(path), text, train_text=training_text(config)[0])
