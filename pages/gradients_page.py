"""Gradients: why a vanilla RNN forgets and an LSTM does not, told by fresh and by trained models."""
import streamlit as st

import ui
from ui import jobs as ui_jobs
from ui import tour as tour_ui
from rnnviz import checkpoint, experiments, exports, lesson, plots
from rnnviz.gradients import gradient_norms
from rnnviz.jobs import Job

MEMORY_MODELS = {"rnn": "memory-rnn", "gru": "memory-gru", "lstm": "memory-lstm"}  # shipped in pretrained/
CHART = {"displaylogo": False}
HISTORY = 10  # snapshots per cell in the live experiment: recall is measured at each

EXPLANATION = """
**The question.** A model reads a text and predicts its last character. How much would that prediction's loss
change if the state *d* steps earlier had been different? That is the gradient ‖∂L/∂h‖ at distance *d*. Learning
to use something seen *d* steps ago needs this gradient to arrive; the charts show, on a log scale, its size
divided by the gradient at the predicted character (distance 0): below 1 it has shrunk, above 1 it has grown.

**A vanilla RNN (red)** multiplies the gradient at every step by its recurrent matrix and by the slope of tanh
(at most 1). With a spectral radius ρ below 1 the share left falls by a roughly constant factor per step: after 50
steps almost nothing is left. The red dotted line is the most any gradient could keep along this text, the norm of
the product of the RNN's own step Jacobians; the solid curve runs under it.

**An LSTM (blue)** keeps a cell state updated by *adding*: c = f·c + i·g. Back through time, the cell's gradient
(dashed) is multiplied by the forget gate f at each step, so where f stays near 1 it is carried across. The dark
blue LSTM's forget gates are open (f̄ ≈ 0.95); the light blue one is **the same LSTM with f̄ ≈ 0.5**, and it loses
its gradient (how fast, against the RNN, is said under the chart). The gate, not the name of the architecture, does
the work. The cell's gradient (dashed) may rise above 1: each step back it gathers the gradient of that step's h,
and open forget gates carry the sum along. The dotted blue lines are the product of the forget gates met along the
text (the largest over units): what the cell path alone carries.

**A GRU (green)** does the same with its update gate z: h = (1 − z)·n + z·h_prev, so z near 1 keeps the state
(this is PyTorch's convention; in Cho et al.'s paper z is the other way round). Its dotted line is the product of z.
"""


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
    rows = [{"cell": cell, **row} for cell, m in _models.items() for row in experiments.recall_table(m)]
    return experiments.pd.DataFrame(rows), lesson.memory_curves(_models)


@st.cache_data(max_entries=16, show_spinner="Measuring gradients ...")
def trained_flow(model_key: str, text: str, _model):
    return gradient_norms(_model, text)


def length_slider(key: str, n: int) -> None:
    """'Steps back': 2 to 400 characters of a text of n, 100 by default."""
    ui.keep_in_range(key, 2, max(2, min(400, n - 1)), min(100, max(2, n - 1)))
    st.slider("Steps back (sequence length)", 2, max(3, min(400, n - 1)), key=key)


def fresh_section(ctx):
    ss = st.session_state
    # stored back on every run: a stale or broken value is mended, and the slider shows the value used
    ui.keep_in_range("radius", 0.5, 1.5, lesson.RADIUS)
    ui.keep_in_range("forget_bias", -3.0, 5.0, lesson.OPEN_BIAS)
    ui.keep_in_range("update_bias", -3.0, 5.0, lesson.UPDATE_BIAS)
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        length_slider("grad_len", len(ctx.text))
    c2.slider("RNN spectral radius ρ", 0.5, 1.5, step=0.05, key="radius",
              help="Largest |eigenvalue| of the fresh RNN's recurrent matrix: below 1 vanishes, above 1 may explode.")
    c3.slider("LSTM forget-gate bias", -3.0, 5.0, step=0.5, key="forget_bias",
              help="The dark blue LSTM. 3 keeps the forget gate open (f ≈ 0.95); the light blue one stays at 0.")
    c4.slider("GRU update-gate bias", -3.0, 5.0, step=0.5, key="update_bias",
              help="Positive keeps the GRU's state (z near 1, PyTorch's convention); negative overwrites it.")
    text = ctx.text[: int(ss["grad_len"]) + 1]
    hidden = min(ctx.hidden, 256)
    curves = fresh_curves(tuple(ctx.model.vocab.chars), text, hidden, float(ss["radius"]), float(ss["forget_bias"]),
                          float(ss["update_bias"]))
    d = min(lesson.DISTANCE, len(text) - 2)
    st.plotly_chart(plots.gradient_lesson(curves, "Freshly initialised models: the gradient left, against distance 0",
                                       mark=d, mark_text=f"{d} steps"), key="grad_fresh", config=CHART)
    st.markdown(lesson.summary(curves, d))
    st.caption(f"One layer of {hidden} units each, seeded, on the first {len(text)} characters of the text under study.")
    csv_button("The curves (CSV)", lambda: exports.gradient_curves(curves), "gradients-fresh.csv", "grad_fresh_csv")
    vocab = tuple(ctx.model.vocab.chars)
    hot = move("rnn", vocab, text, hidden, lesson.HOT_RADIUS)  # what the moves below would draw
    overwrite = move("gru", vocab, text, hidden, lesson.OVERWRITE_BIAS)
    st.markdown(lesson.try_this(curves, hot, overwrite, d))


def csv_button(label: str, table, file_name: str, key: str, where=st) -> None:
    """A CSV download of a table built only when clicked (table: a callable returning a DataFrame)."""
    where.download_button(label, data=lambda: table().to_csv(index=False), file_name=file_name, mime="text/csv",
                          key=key, icon=":material/download:")


def memory_section():
    st.subheader("Trained on the memory task: the same story")
    models = memory_models()
    if len(models) < 2:
        st.info("The shipped memory-task models (memory-rnn, memory-gru, memory-lstm) are not in the models folder; "
                "run the live experiment below instead.", icon=":material/info:")
        return
    table, curves = memory_measures(tuple(k for _, k, _ in models.values()), {c: m for c, (m, _, _) in models.items()})
    st.markdown("Each model read a capital letter (the key), then filler, then `=`, and learned to repeat the key: "
                f"{experiments.STEPS:,} steps each, every gap from 2 to 64 mixed. Left: recall on fresh text, "
                f"{experiments.EVAL_SEGMENTS} recalls per gap. Right: the gradient of one recall's loss at gap "
                f"{lesson.MEMORY_GAP}, reaching back to the key.")
    left, right = st.columns(2)
    left.plotly_chart(plots.memory_accuracy(table), key="memory_shipped", config=CHART)
    key_d = lesson.MEMORY_GAP - 1
    right.plotly_chart(plots.gradient_lesson(curves, "The gradient of a recall, back to its key", mark=key_d,
                                          mark_text="the key", show_gain=False), key="grad_memory", config=CHART)
    csv_button("Recall (CSV)", lambda: table, "memory-recall.csv", "memory_recall_csv", left)
    csv_button("The gradients (CSV)", lambda: exports.gradient_curves(curves), "memory-gradients.csv",
               "memory_grad_csv", right)
    longest = table[table.gap == table.gap.max()].set_index("cell").accuracy
    st.markdown("\n".join(
        f"- **{c.label}**: recalls {longest[c.key]:.0%} at gap {lesson.MEMORY_GAP}; keeps "
        f"{lesson._share(c.at(key_d))} of its gradient at the key." for c in curves)
        + f"\n\nChance is {experiments.CHANCE:.0%}. Where the gradient from the recall no longer reaches the key, "
          "training cannot teach the model to keep it: what the RNN still recalls at long gaps, it learned from "
          "the short ones, the only ones that sent it a gradient.")
    units_section(next((c for c in curves if c.cell == "lstm"), None), models)


def units_section(curve, models):
    if curve is None:
        return
    st.subheader("Which units carry the memory")
    top = lesson.memory_units(curve, models["lstm"][0], top=12)
    rows = [u["unit"] for u in top]
    st.plotly_chart(plots.unit_gradient_map(curve.flow.units[-1], curve.flow.text, rows,
                                         "memory-lstm: |∂L/∂c| of each unit, from the recall back to the key"),
                    key="memory_units", config=CHART)
    csv_button("The units' gradients (CSV)", lambda: exports.unit_gradients(curve.flow, rows), "memory-units.csv",
               "memory_units_csv")
    keep = [u for u in top if u["gate_product"] > 0.5]
    st.caption(f"The 12 units through which most of the recall's gradient reaches the key, the most on top. "
               f"{len(keep)} of them carry {sum(u['share'] for u in keep):.0%} of it, bright all the way from the "
               f"recall to the key: their forget gates stay open across the gap (mean f from "
               f"{min(u['gate_mean'] for u in keep):.3f} to {max(u['gate_mean'] for u in keep):.3f}), the long-memory "
               "units. Each button shows its share and the product of its forget gates across the gap; click one "
               "to see it in Activations." if keep else "No unit keeps its forget gate open across the gap.")
    cols = st.columns(6)
    for i, u in enumerate(top[:6]):
        cols[i].button(f"c{u['unit']}: {u['share']:.0%}, ∏f {u['gate_product']:.2f}", key=f"mem_unit_{u['unit']}",
                       on_click=show_unit, args=(models["lstm"][2], u["unit"]), help="Show this unit in Activations")


def show_unit(entry_id: str, unit: int):
    ss = st.session_state
    ss["model_choice"], ss["layer"], ss["kind"], ss["unit"] = entry_id, 0, "c", unit
    ss["_goto"] = "pages/activations_page.py"  # app.py switches there on the next run


def other_models(ctx) -> dict:
    """One loaded model per other cell type (shipped, saved or from this session): label -> (model, key)."""
    out, seen = {}, {ctx.cell}
    for entry in ui.model_entries().values():
        if entry.path is not None and entry.path.name in MEMORY_MODELS.values():
            continue  # the memory models have their own section
        try:
            if entry.source in ("shipped", "saved"):
                if checkpoint.read_config(entry.path)["model"].get("cell") in seen:
                    continue
            model, _, key = ui.load_entry(entry)
        except Exception:  # noqa: BLE001 - an unreadable extra model is simply left out
            continue
        if model.cell not in seen:
            seen.add(model.cell)
            out[f"{entry.label} ({model.cell.upper()})"] = (model, key)
    return out


def trained_section(ctx):
    with st.expander("Your model and the other trained models, on the text under study"):
        # its own length: the first screen's controls then redraw only the first screen (a fragment)
        length_slider("trained_len", len(ctx.text))
        text = ctx.text[: int(st.session_state["trained_len"]) + 1]
        flows = {f"{ctx.name} (this model)": trained_flow(ctx.key, text, _model=ctx.model)}
        for label, (model, key) in other_models(ctx).items():
            flows[label] = trained_flow(key, text, _model=model)
        layers = min(f.dh.shape[0] for f in flows.values())
        ui.keep_choice("grad_layer", list(range(layers)), layers - 1)
        layer = int(st.session_state["grad_layer"])
        st.plotly_chart(plots.gradient_decay(flows, layer=layer), key="grad_trained", config=CHART)
        csv_button("These norms (CSV)", lambda: exports.gradient_flows(flows, layer), "gradients-trained.csv",
                   "grad_trained_csv")
        if layers > 1:
            st.selectbox("Layer", list(range(layers)), key="grad_layer")
        st.caption("Language models trained on text: the loss of the last character. Their gates were learned, not "
                   "set, so the curves say what each model needs, not what it can do: compare with the memory models.")


def experiment_section():
    ss = st.session_state
    st.subheader("Watch it learn: the live memory experiment")
    st.markdown("Train fresh RNN, GRU and LSTM models on the memory task here. Every cell gets the **same number of "
                f"training steps**; accuracy is measured on {experiments.EVAL_SEGMENTS} fresh recalls per gap.")
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


def main():
    ctx = ui.require_model()
    st.title("Gradients through time")
    touring = tour_ui.running_key()
    # on a tour the banner reads the chart aloud: the explanation waits, closed, so the chart is in view
    with st.expander("How to read this (a short explanation to read aloud)", expanded=touring is None):
        st.markdown(EXPLANATION)
    if touring == "memory":  # the stop speaks of the memory models: they come first
        memory_section()
    # its four sliders redraw only its chart and summary, not the memory models or the trained ones
    st.fragment(lambda: ui.guard(fresh_section, ctx))()
    if touring != "memory":
        memory_section()
    trained_section(ctx)
    experiment_section()


ui.run_page(main)
