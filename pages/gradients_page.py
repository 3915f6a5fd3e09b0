"""Gradients: the vanishing-gradient demo for RNN, GRU and LSTM, and a memory experiment."""
import streamlit as st

import ui
from rnnviz import checkpoint, experiments, plots
from rnnviz.gradients import fresh_model, gradient_norms
from rnnviz.jobs import Job

EXPLANATION = """
**What you see.** The model reads the text and makes a prediction at the last character. We ask: how
much would that last loss change if the hidden state *d* steps earlier had been different? That is the
gradient norm ‖∂L/∂h‖ at distance *d*, on a log scale.

**Why it matters.** Learning to use something seen *d* steps ago needs this gradient to arrive. In a
vanilla RNN it is multiplied at every step by the recurrent matrix and by the slope of tanh (at most 1),
so it shrinks roughly like σᵈ, where σ is the largest singular value of the recurrent matrix (the dashed
line). With σ below 1 it vanishes exponentially: after 50 steps there is nothing left to learn from.
Push the spectral radius above 1 and it can explode instead.

**What gates change.** An LSTM's cell state is updated by *adding*: c_t = f·c_(t−1) + i·g. When the
forget gate f is near 1 the gradient flows back almost untouched. A larger forget-gate bias keeps f near
1 from the start. A GRU does the same with its update gate.
"""


@st.cache_data(max_entries=32, show_spinner="Measuring gradients ...")
def fresh_flow(vocab: tuple, cell: str, hidden: int, radius, forget_bias, text: str):
    model = fresh_model(list(vocab), cell, hidden_size=hidden, num_layers=1, seed=0,
                        spectral_radius=radius, forget_bias=forget_bias)
    return gradient_norms(model, text)


@st.cache_data(max_entries=16, show_spinner="Measuring gradients ...")
def trained_flow(model_key: str, text: str, _model):
    return gradient_norms(_model, text)


def other_models(ctx) -> dict:
    """One loaded model per other cell type (shipped, saved or from this session): label -> (model, key)."""
    out, seen = {}, {ctx.cell}
    for entry in ui.model_entries().values():
        try:
            if entry.source in ("shipped", "saved"):
                cell = checkpoint.read_config(entry.path)["model"].get("cell")
                if cell in seen:
                    continue
            model, _, key = ui.load_entry(entry)
        except Exception:  # noqa: BLE001 - an unreadable extra model is simply left out
            continue
        if model.cell not in seen:
            seen.add(model.cell)
            out[f"{entry.label} ({model.cell.upper()})"] = (model, key)
    return out


def gradient_section(ctx):
    ss = st.session_state
    ui.default("grad_len", 100)
    ui.default("radius", 0.9)
    ui.default("forget_bias", 0.0)
    n = len(ctx.text)
    ui.keep_in_range("grad_len", 2, max(2, min(400, n - 1)), min(100, max(2, n - 1)))
    c1, c2, c3 = st.columns(3)
    c1.slider("Steps back (sequence length)", 2, max(3, min(400, n - 1)), key="grad_len")
    c2.slider("RNN spectral radius", 0.5, 1.5, step=0.05, key="radius",
              help="Largest |eigenvalue| of the fresh RNN's recurrent matrix: below 1 vanishes, above 1 may explode.")
    c3.slider("LSTM forget-gate bias", -3.0, 5.0, step=0.5, key="forget_bias",
              help="A bias of 1 or more keeps the forget gate open at the start: the cell remembers.")
    text = ctx.text[: int(ss["grad_len"]) + 1]
    hidden = min(ctx.hidden, 256)
    vocab = tuple(ctx.model.vocab.chars)
    fresh = {}
    for cell in ("rnn", "gru", "lstm"):
        label = {"rnn": f"RNN (ρ={ss['radius']:.2f})", "gru": "GRU",
                 "lstm": f"LSTM (forget bias {ss['forget_bias']:+.1f})"}[cell]
        fresh[label] = fresh_flow(vocab, cell, hidden, float(ss["radius"]) if cell == "rnn" else None,
                                  float(ss["forget_bias"]) if cell == "lstm" else None, text)
    trained = {f"{ctx.name} ({ctx.cell.upper()}, this model)": trained_flow(ctx.key, text, _model=ctx.model)}
    for label, (model, key) in other_models(ctx).items():
        trained[label] = trained_flow(key, text, _model=model)
    layers = min(f.dh.shape[0] for f in trained.values())
    ui.keep_choice("grad_layer", list(range(layers)), 0)
    left, right = st.columns(2)
    with left:
        fig = ui.legend_below(plots.gradient_decay(fresh, layer=0), "Freshly initialised: RNN vs GRU vs LSTM")
        st.plotly_chart(fig, key="grad_fresh", config={"displaylogo": False})
        st.caption(f"Freshly initialised, one layer of {hidden} units, same vocabulary and text.")
    with right:
        layer = int(ss.get("grad_layer", 0))
        fig = ui.legend_below(plots.gradient_decay(trained, layer=layer), f"Trained models, layer {layer}")
        st.plotly_chart(fig, key="grad_trained", config={"displaylogo": False})
        if layers > 1:
            st.selectbox("Layer of the trained models", list(range(layers)), key="grad_layer")
        st.caption("Trained: the model under study, and one loaded model of each other cell type "
                   "(train or upload one to compare).")


def memory_section():
    ss = st.session_state
    st.subheader("Memory experiment")
    st.markdown("Each cell type learns a task: remember a capital letter, read some filler, then repeat the "
                "letter after '='. The longer the gap, the harder it is. The same small budget for every cell.")
    ui.default("mem_seconds", 20)
    job = ss.get("memory_job")
    running = job is not None and job.running
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.slider("Seconds of training per cell", 5, 120, step=5, key="mem_seconds", disabled=running)
    if c2.button("Run the memory experiment", key="mem_start", type="primary", disabled=running,
                 icon=":material/play_arrow:"):
        seconds = float(ss["mem_seconds"])
        job = Job(lambda stop, report: experiments.memory_experiment(
            seconds_per_cell=seconds, stop_event=stop, report=report), name="memory", threads=ui.TRAIN_THREADS).start()
        ss["memory_job"] = job
        running = True
    if c3.button("Stop", key="mem_stop", disabled=not running, icon=":material/stop:"):
        job.stop()
    st.fragment(run_every=1.0 if running else None)(lambda: ui.guard(memory_status, running))()


def memory_status(was_running: bool):
    job = st.session_state.get("memory_job")
    if job is None:
        return
    snap = job.snapshot()
    if job.running:
        done, total = snap.get("done") or 0, snap.get("total") or 1
        st.progress(min(1.0, done / total), text=str(snap.get("message") or snap.get("state") or "starting"))
    elif job.error:
        st.error(f"The experiment failed: {job.error}", icon=":material/error:")
    elif job.result is not None and len(job.result):
        st.plotly_chart(plots.memory_accuracy(job.result), key="memory_chart", config={"displaylogo": False})
        st.dataframe(job.result, hide_index=True)
    if was_running and not job.running:
        st.rerun(scope="app")


def main():
    ctx = ui.require_model()
    st.title("Gradients through time")
    with st.expander("How to read this (a short explanation to read aloud)", expanded=True):
        st.markdown(EXPLANATION)
    gradient_section(ctx)
    memory_section()


ui.run_page(main)
