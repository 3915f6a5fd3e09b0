"""Why this character?: cached saliency, default target and edit, edits, and the server-wide aggregate jobs.

Import it as a module (`from ui import why`): the page lays out widgets, this module caches the library.
"""
from __future__ import annotations

import hashlib
import threading

import streamlit as st

from rnnviz import saliency as sal_lib
from rnnviz.counterfactual import Edit, counterfactual, default_edit
from rnnviz.errors import RnnvizError
from rnnviz.jobs import Job
from ui.models import load_entry, model_entries
from ui.state import TRAIN_THREADS

FAR = 20  # "far back": 20 or more characters before the target
SCAN_WINDOW = 60  # the default target's share of influence is taken over the last 60 characters
UNSURE = (0.05, 0.7)  # the default target: the model gives the true next character a p in this range
TRIO = ("shakespeare-lstm", "shakespeare-gru", "shakespeare-rnn")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@st.cache_data(max_entries=16, show_spinner="Finding a target where the model is unsure and looks far back ...")
def default_target(model_key: str, text: str, _model) -> sal_lib.DefaultTarget:
    return sal_lib.default_target(_model, text, min_distance=FAR, window=SCAN_WINDOW, p_range=UNSURE)


@st.cache_data(max_entries=64, show_spinner="Backpropagating to every input ...")
def saliency(model_key: str, text: str, t: int, _model) -> dict:
    return sal_lib.saliency(_model, text, t)


@st.cache_data(max_entries=16, show_spinner="Trying a few edits far before the target ...")
def story_edit(model_key: str, text: str, t: int, _model) -> tuple[str, int, str]:
    """(op, position, char) of the edit that moves p at target t the most (see counterfactual.default_edit)."""
    sal = saliency(model_key, text, t, _model=_model)[sal_lib.TRUE]
    edit, _ = default_edit(_model, text, t, min_gap=FAR, influence=sal.grad_norm)
    return edit.op, int(edit.position), edit.char or " "


@st.cache_data(max_entries=32, show_spinner="Running the model on both texts ...")
def run_edit(model_key: str, text: str, op: str, pos: int, char: str, _model):
    """(description, Counterfactual) of one edit."""
    edit = Edit(op, pos, char)
    return edit.describe(text), counterfactual(_model, text, edit)


@st.cache_data(max_entries=32, show_spinner="Taking the gradient's prediction forward ...")
def predicted(model_key: str, text: str, pos: int, char: str | None, length: int, _model):
    """(len(text),) the gradient's first-order change in log p of each character after the edit (NaN elsewhere)."""
    return sal_lib.predicted_change(_model, text, pos, char, length=length)


def selected_position(selection) -> int | None:
    """The position of the first point of a plotly selection event (its customdata), or None."""
    points = ((selection or {}).get("selection") or {}).get("points") or []
    if not points:
        return None
    try:
        return int(points[0]["customdata"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# --- the aggregate over many targets, for the shipped LSTM, GRU and RNN -----------------------------

def aggregate_models(ctx) -> dict:
    """label -> (cell, model, key): the shipped Shakespeare trio when the model under study is one of them
    (or is not shipped but they are here), else the model under study alone."""
    trio = {}
    for entry in model_entries().values():
        if entry.source == "shipped" and entry.path is not None and entry.path.name in TRIO:
            try:
                model, _, key = load_entry(entry)
            except RnnvizError:
                continue
            trio[entry.path.name] = (model.cell, model, key)
    if len(trio) >= 2 and ctx.name in trio:
        return {name: trio[name] for name in TRIO if name in trio}
    return {ctx.name: (ctx.cell, ctx.model, ctx.key)}


@st.cache_resource
def _aggregates() -> dict:
    """Server-wide: key -> the Job computing one set of aggregates (shared by every session)."""
    return {"jobs": {}, "lock": threading.Lock()}


def _agg_fn(models: dict, text: str, window: int, count: int):
    def run(stop_event, report):
        out = {}
        for i, (label, (cell, model, _)) in enumerate(models.items()):
            if stop_event.is_set():
                return None
            report(message=f"{label} ({i + 1} of {len(models)})", done=i, total=len(models))
            out[label] = (cell, sal_lib.aggregate(model, text, window=window, count=count))
        return out
    return run


def aggregate_key(models: dict, text: str, window: int) -> str:
    return "|".join([*(m[2] for m in models.values()), text_key(text), str(window)])


def aggregate_job(key: str) -> Job | None:
    return _aggregates()["jobs"].get(key)


def start_aggregate(key: str, models: dict, text: str, window: int, count: int) -> Job:
    """The job for `key`, started unless one is running or has a result (one per server, not per session)."""
    server = _aggregates()
    with server["lock"]:
        job = server["jobs"].get(key)
        if job is None or (not job.running and job.result is None):
            job = Job(_agg_fn(models, text, window, count), name="why-aggregate", threads=TRAIN_THREADS).start()
            server["jobs"][key] = job
    return job
