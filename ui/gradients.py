"""The Gradients page's cached measures, its models, and the live memory experiment's panel."""
import streamlit as st

import ui
from rnnviz import checkpoint, experiments, lesson, losses, plots
from rnnviz.gradients import gradient_norms
from rnnviz.jobs import Job
from ui import jobs as ui_jobs

MEMORY_MODELS = {"rnn": "memory-rnn", "gru": "memory-gru", "lstm": "memory-lstm"}  # shipped in pretrained/
CHART = {"displaylogo": False}
HISTORY = 10  # snapshots per cell in the live experiment: recall is measured at each


@st.cache_data(max_entries=64, show_spinner="Measuring gradients ...")
def fresh_curve(key: str, vocab: tuple, text: str, hidden: int, knob: float):
    return lesson.fresh_curve(key, list(vocab), text, hidden, knob)


@st.cache_data(max_entries=64, show_spinner=False)
def move(key: str, vocab: tuple, text: str, hidden: int, knob: float):
    return lesson.move(key, list(vocab), text, hidden, knob)


def fresh_curves(vocab: tuple, text: str, hidden: int, radius: float, forget_bias: float, update_bias: float):
    """Each curve cached on its own: moving one control recomputes only the curve it drives."""
    knobs = {"rnn": radius, "lstm-open": forget_bias, "lstm-half": lesson.HALF_BIAS, "gru": update_bias}
    return [fresh_curve(key, vocab, text, hidden, knob) for key, knob in knobs.items()]


def memory_models() -> dict:
    """cell -> (model, cache key, model entry id) of the shipped memory-task models that are here."""
    out = {}
    for entry in ui.model_entries().values():
        if entry.source == "shipped" and entry.path.name in MEMORY_MODELS.values():
            model, _, key = ui.load_entry(entry)
            out[model.cell] = (model, key, entry.id)
    return {cell: out[cell] for cell in MEMORY_MODELS if cell in out}


@st.cache_data(max_entries=4, show_spinner="Measuring the memory models ...")
def memory_measures(keys: tuple, _models: dict):
    return experiments.recall_tables(_models), lesson.memory_curves(_models)


@st.cache_data(max_entries=16, show_spinner="Measuring gradients ...")
def trained_flow(model_key: str, text: str, _model):
    return gradient_norms(_model, text)


def other_models(ctx) -> dict:
    """One loaded model per other cell type trained on the same corpus (shipped, saved or from this session):
    label -> (model, key)."""
    own = losses.recorded_corpus(ctx.config)
    found = {}
    for entry in ui.model_entries().values():
        if entry.path is not None and entry.path.name in MEMORY_MODELS.values():
            continue  # the memory models have their own section
        try:
            if entry.source in ("shipped", "saved"):  # read the config first: a model is loaded only if chosen
                config = checkpoint.read_config(entry.path)
                found[entry.id] = (entry, config["model"].get("cell"), losses.recorded_corpus(config))
            else:
                model, config, _ = ui.load_entry(entry)
                found[entry.id] = (entry, model.cell, losses.recorded_corpus(config))
        except Exception:  # noqa: BLE001 - an unreadable extra model is simply left out
            continue
    chosen = lesson.like_with_like(ctx.cell, own, [(i, cell, corpus) for i, (_, cell, corpus) in found.items()])
    out = {}
    for i in chosen:
        entry, cell = found[i][0], found[i][1]
        try:
            model, _, key = ui.load_entry(entry)
        except Exception:  # noqa: BLE001
            continue
        out[f"{entry.label} ({cell.upper()})"] = (model, key)
    return out


def length_slider(key: str, n: int) -> None:
    """'Steps back': 2 to 400 characters of a text of n, 100 by default."""
    ui.keep_in_range(key, 2, max(2, min(400, n - 1)), min(100, max(2, n - 1)))
    st.slider("Steps back (sequence length)", 2, max(3, min(400, n - 1)), key=key)


def csv_button(label: str, table, file_name: str, key: str, where=st) -> None:
    """A CSV download of a table built only when clicked (table: a callable returning a DataFrame)."""
    where.download_button(label, data=lambda: table().to_csv(index=False), file_name=file_name, mime="text/csv",
                          key=key, icon=":material/download:")


def show_unit(entry_id: str, unit: int):
    """A callback: study one memory unit's cell state in Activations."""
    ss = st.session_state
    ss["model_choice"], ss["layer"], ss["kind"], ss["unit"] = entry_id, 0, "c", unit
    ss["_goto"] = "pages/activations_page.py"  # app.py switches there on the next run


# --- the live memory experiment: a job of this session, polled in a fragment --------------------

def experiment_panel():
    """Start and stop the live memory experiment; its progress and results below, polled while it runs."""
    ss = st.session_state
    ui.default("mem_steps", experiments.STEPS)
    job = ss.get("memory_job")
    running = job is not None and job.active  # waiting in the server's queue, or running
    other = ui_jobs.session_job()  # a training of this session counts too: one job per session
    busy = other is not None and other is not job
    if busy:
        st.info(f"This session's training {other.name} is under way (on Train); one job at a time per session.",
                icon=":material/info:")
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.slider("Training steps per cell", 100, 3000, step=100, key="mem_steps", disabled=running)
    if c2.button("Run the memory experiment", key="mem_start", type="primary", disabled=running or busy,
                 icon=":material/play_arrow:"):
        steps = int(ss["mem_steps"])
        job = ui.guard(ui_jobs.submit, Job(lambda stop, report: memory_run(steps, stop, report),
                                           name="memory experiment", threads=ui_jobs.job_threads()))
        if job is not None:
            ss["memory_job"] = job
            running = True
    if c3.button("Stop", key="mem_stop", disabled=not running, icon=":material/stop:",
                 help="Stops the experiment, or takes it out of the queue."):
        job.stop()
    every = ui_jobs.poll_every([job] if running else [])
    st.fragment(run_every=every)(lambda: ui.guard(memory_status, running, every))()


def memory_run(steps: int, stop, report):
    """The live experiment, in the worker: the final recall table, and each cell's recall at its snapshots."""
    learning = {}
    table = experiments.memory_experiment(steps_per_cell=steps, stop_event=stop, report=report,
                                          history=HISTORY, learning=learning)
    return table, learning


def memory_status(was_running: bool, every: float | None = None):
    """The experiment's queue place, progress, error or results (the table, and recall during training)."""
    job = st.session_state.get("memory_job")
    if job is None:
        return
    if every is not None and every != ui_jobs.poll_every([job] if job.active else []):
        st.rerun(scope="app")  # it started (or ended) since: poll at the new pace
    if ui_jobs.queue_status(job, key="mem_leave"):
        return
    snap = job.snapshot()
    if job.left:
        st.info("The experiment left the queue before it ran.", icon=":material/info:")
    elif job.running:
        done, total = snap.get("done") or 0, snap.get("total") or 1
        st.progress(min(1.0, done / total), text=str(snap.get("message") or snap.get("state") or "starting"))
    elif job.error:
        st.error(f"The experiment failed: {job.error}", icon=":material/error:")
    elif job.result is not None and len(job.result[0]):
        table, learning = job.result
        st.plotly_chart(plots.memory_accuracy(table), key="memory_chart", config=CHART)
        st.dataframe(table, hide_index=True)
        if learning:
            gaps = sorted(table.gap.unique())
            ui.keep_choice("mem_gap", gaps, gaps[-1])
            st.select_slider("Gap to follow during training", gaps, key="mem_gap")
            st.plotly_chart(plots.recall_during_training(learning, int(st.session_state["mem_gap"])),
                            key="memory_learning", config=CHART)
            st.caption(f"Each cell's recall at {HISTORY} snapshots taken during its training (log-spaced steps), on "
                       "the same fresh draws as the table: when, if ever, each cell learns to bridge this gap.")
    if was_running and not job.active:
        st.rerun(scope="app")
