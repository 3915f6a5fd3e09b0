"""Why this character?: cached saliency, default target and edit, edits, the widgets' session state, and the
aggregate panel with its server-wide jobs.

Import it as a module (`from ui import why`): the page lays out widgets, this module caches the library.
"""
from __future__ import annotations

import hashlib
import threading

import streamlit as st

from rnnviz import plots
from rnnviz import saliency as sal_lib
from rnnviz.counterfactual import Edit, counterfactual, default_edit
from rnnviz.errors import RnnvizError
from rnnviz.jobs import Job
from ui.models import load_entry, model_entries
from ui.state import TRAIN_THREADS, default, guard, keep_choice, keep_in_range

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


def on_box():
    """The number box moved: the slider follows."""
    st.session_state["why_target"] = st.session_state["why_target_box"]


def set_target(t: int):
    """Button callback: before the slider is drawn again."""
    st.session_state["why_target"] = t


def on_point():
    """A click on the distance plot: that point's position becomes the target (scatter selections work)."""
    s = selected_position(st.session_state.get("why_distance"))
    if s is not None and s >= 1:
        st.session_state["why_target"] = s


def prepare_target(model_key: str, text: str, t_def: int, choices: tuple, measures: tuple):
    """Session state for the target widgets: a new model or text opens again on its own default target."""
    ss = st.session_state
    if ss.get("_why_for") != (model_key, text_key(text)):
        ss["_why_for"] = (model_key, text_key(text))
        ss["why_target"] = t_def
    default("why_target", t_def)
    keep_in_range("why_target", 1, len(text) - 1, t_def)
    ss["why_target_box"] = ss["why_target"]
    default("why_which", choices[0])
    keep_choice("why_which", list(choices), choices[0])
    default("why_measure", measures[0])
    keep_choice("why_measure", list(measures), measures[0])


def prepare_edit(model_key: str, text: str, op: str, pos: int, char: str, ops: tuple):
    """Session state for the edit widgets: a new model or text opens on the story's default edit."""
    ss = st.session_state
    if ss.get("_why_edit_for") != (model_key, text_key(text)):
        ss["_why_edit_for"] = (model_key, text_key(text))
        ss["why_op"], ss["why_pos"], ss["why_char"] = op, pos, char
    default("why_op", op)
    keep_choice("why_op", list(ops), op)
    default("why_pos", pos)
    keep_in_range("why_pos", 0, len(text), pos)
    default("why_char", char)


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
    plain = {label: (cell, model) for label, (cell, model, _) in models.items()}
    return lambda stop_event, report: sal_lib.aggregate_models(plain, text, window, count, report, stop_event)


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


def aggregate_progress(key: str):
    """The running aggregate's progress bar; once it is done, the whole page again (to draw the result)."""
    job = aggregate_job(key)
    if job is None:
        return
    if job.running:
        snap = job.snapshot()
        st.progress(min(1.0, (snap.get("done") or 0) / (snap.get("total") or 1)),
                    text=f"Measuring {snap.get('message') or '...'}")
    else:
        st.rerun(scope="app")


def aggregate_panel(ctx, text: str, max_window: int = 100, count: int = 200):
    """The Why page's panel: how far back each model looks, averaged over `count` targets (a server-wide job)."""
    st.subheader("How far back each model looks, on average")
    models = aggregate_models(ctx)
    window = min(max_window, len(text) - 2)
    if window < 2:
        st.info("The text is too short for the aggregate: give it at least a few characters more.",
                icon=":material/info:")
        return
    key = aggregate_key(models, text, window)
    job = aggregate_job(key)
    if job is None or (not job.running and job.result is None):
        if job is not None and job.error:
            st.error(f"The last run failed: {job.error}", icon=":material/error:")
        names = ", ".join(models)
        st.markdown(f"The mean influence against distance over {count} targets spread over the text, in "
                    f"windows of {window} characters ending at each target, for {names}.")
        if not st.button("Compute the aggregate", key="why_agg", type="primary", icon=":material/play_arrow:"):
            return
        job = start_aggregate(key, models, text, window, count)
    if job.running:
        st.fragment(run_every=1.0)(lambda: guard(aggregate_progress, key))()
        return
    draw_aggregate(job.result)


def draw_aggregate(aggs: dict):
    """The aggregate's chart, its numbers in words, and what the curves are."""
    measure = st.session_state.get("why_measure", "grad_norm")
    st.plotly_chart(plots.aggregate_distance(aggs, measure, relative=True,
                                          title="Mean influence against distance, over its value at distance 0"),
                    key="why_aggregate", config={"displaylogo": False})
    st.markdown(sal_lib.aggregate_summary(aggs, measure))
    n = len(next(iter(aggs.values()))[1].targets)
    st.caption(f"Each curve: the mean over {n} targets of |{plots.MEASURES[measure]}| at each distance, divided by the "
               "mean at distance 0. Each window starts from the state the model reached over the text before it, "
               "so the gradients inside it are exact.")
