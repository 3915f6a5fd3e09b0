"""Training history: scrub through a run's snapshots, watch samples turn into words and a unit emerge."""
import hashlib
from pathlib import Path

import streamlit as st

import ui
from rnnviz import history, losses, plots
from rnnviz.hypotheses import HYPOTHESES
from rnnviz.probes import default_hypothesis
from ui import history as hui


def pick_history(ctx):
    """The history chosen (the model under study's first, when it has one), or None when there is none."""
    ss = st.session_state
    choices = hui.checkpoints_with_history()
    own = Path(ctx.entry.path) if ctx.entry.path is not None else None
    if own is not None and history.has_history(own):
        choices = {f"{ctx.name} (the model under study)": own, **{k: v for k, v in choices.items() if v != own}}
    else:
        hui.no_history(ctx)
    if not choices:
        st.warning("No checkpoint here holds a history yet.")
        return None, None
    ui.keep_choice("hist_model", list(choices))
    path = choices[st.selectbox("History of", list(choices), key="hist_model")]
    hist = hui.read(path)
    if ss.get("hist_for") != str(path):  # another history: from its last step, its own hypothesis and unit
        ss["hist_for"] = str(path)
        ss["hist_hypothesis"] = default_hypothesis(hist.config)
        for k in ("hist_step", "hist_layer", "hist_kind", "hist_unit"):
            ss.pop(k, None)
    for line in hist.problems():
        st.warning(f"A snapshot could not be loaded and is left out: {line}", icon=":material/warning:")
    if not hist.steps:
        st.error("None of this history's snapshots can be loaded.")
        return None, None
    return hist, path


def step_controls(hist) -> int:
    """The snapshot slider, its losses, temperature and seed beside the loss curve; returns the step."""
    ss, steps = st.session_state, hist.steps
    ui.keep_choice("hist_step", steps, steps[-1])
    left, right = st.columns([2, 3])
    with left:
        st.select_slider("Snapshot (training step)", options=steps, key="hist_step", format_func=lambda s: f"{s:,}")
        step = int(ss["hist_step"])
        st.markdown(history.step_summary(hist, step))
        ui.default("hist_temp", 0.8)
        ui.keep_in_range("hist_temp", 0.0, 2.0, 0.8)
        ui.default("hist_seed", 1)
        ui.keep_in_range("hist_seed", 0, 2**31 - 1, 1)
        c1, c2 = st.columns(2)
        c1.slider("Temperature", 0.0, 2.0, step=0.05, key="hist_temp")
        c2.number_input("Seed", 0, 2**31 - 1, step=1, key="hist_seed")
    with right:
        st.plotly_chart(plots.loss_with_step(hist.curve(), steps, step), key="hist_loss", config=hui.CONFIG)
        st.caption(f"In nats/char. Train: each step's loss on {losses.train_basis(hist.config)}. Validation: "
                   f"on {losses.eval_basis(hist.config)}. The model card's validation loss may be over "
                   "another text: it says which.")
    return step


def emergence(hist, step: int, text: str, where: str):
    """When the best unit for a hypothesis appeared; the Emergence, or None where it cannot be ranked."""
    ss = st.session_state
    st.subheader("Emergence")
    names = list(HYPOTHESES)
    ui.keep_choice("hist_hypothesis", names, default_hypothesis(hist.config))
    ui.default("hist_threshold", 0.9)
    ui.keep_in_range("hist_threshold", 0.5, 1.0, 0.9)
    c1, c2 = st.columns([3, 2])
    c1.selectbox("Hypothesis", names, key="hist_hypothesis")
    c2.slider("Threshold (score)", 0.5, 1.0, step=0.01, key="hist_threshold")
    hypothesis, threshold = ss["hist_hypothesis"], float(ss["hist_threshold"])
    text_key = hashlib.sha256(text.encode()).hexdigest()[:16]
    em = ui.guard(hui.emergence, hui.key(hist, "all") + text_key, text, hypothesis, threshold, _hist=hist)
    if em is not None:
        st.markdown(f"Over {len(text):,} characters of {where}: {em.summary()}")
        st.plotly_chart(plots.emergence_timeline(em.table, threshold, hypothesis, step), key="hist_emergence",
                        config=hui.CONFIG)
    return em


def main():
    ctx = ui.require_model()
    st.title("Training history")
    st.caption("A run's snapshots, from the first steps to the last: drag the slider to see what the network "
               "had learned by then. Every number is computed from that snapshot's own weights (float16 as saved).")
    hist, path = pick_history(ctx)
    if hist is None:
        return
    text, where = hui.text_for(ctx, path, hist.config)
    step = step_controls(hist)
    temperature, seed = float(st.session_state["hist_temp"]), int(st.session_state["hist_seed"])
    hui.sample_panel(hist, step, temperature, seed)
    if isinstance(hist.config.get("memory"), dict):
        hui.recall_panel(hist, step)
    em = emergence(hist, step, text, where)
    hui.unit_panel(hist, step, text, em)
    hui.gates_and_gradients(hist, step, text)
    hui.evolution_panel(hist, text, where, temperature, seed)


ui.run_page(main)
