"""Gradients: why a vanilla RNN forgets and an LSTM does not, told by fresh and by trained models."""
import streamlit as st

import ui
from rnnviz import experiments, exports, lesson, losses, plots
from ui import gradients as gui
from ui import tour as tour_ui
from ui.gradients import CHART, csv_button, length_slider


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
    hidden, vocab = min(ctx.hidden, 256), tuple(ctx.model.vocab.chars)
    curves = gui.fresh_curves(vocab, text, hidden, float(ss["radius"]), float(ss["forget_bias"]),
                              float(ss["update_bias"]))
    d = min(lesson.DISTANCE, len(text) - 2)
    st.plotly_chart(plots.gradient_lesson(curves, "Freshly initialised models: the gradient left, against distance 0",
                                          mark=d, mark_text=f"{d} steps"), key="grad_fresh", config=CHART)
    st.markdown(lesson.summary(curves, d))
    st.caption(f"One layer of {hidden} units each, seeded, on the first {len(text)} characters of the text under study.")
    csv_button("The curves (CSV)", lambda: exports.gradient_curves(curves), "gradients-fresh.csv", "grad_fresh_csv")
    hot = gui.move("rnn", vocab, text, hidden, lesson.HOT_RADIUS)  # what the moves below would draw
    overwrite = gui.move("gru", vocab, text, hidden, lesson.OVERWRITE_BIAS)
    st.markdown(lesson.try_this(curves, hot, overwrite, d))


def memory_section():
    st.subheader("Trained on the memory task: the same story")
    models = gui.memory_models()
    if len(models) < 2:
        st.info("The shipped memory-task models (memory-rnn, memory-gru, memory-lstm) are not in the models folder; "
                "run the live experiment below instead.", icon=":material/info:")
        return
    table, curves = gui.memory_measures(tuple(k for _, k, _ in models.values()),
                                        {c: m for c, (m, _, _) in models.items()})
    st.markdown("Each model read a capital letter (the key), then filler, then `=`, and learned to repeat the key: "
                f"{experiments.STEPS:,} steps each, every gap from 2 to 64 mixed. Left: recall on fresh text, "
                f"{experiments.EVAL_SEGMENTS} recalls per gap. Right: the gradient of one recall's loss at gap "
                f"{lesson.MEMORY_GAP}, reaching back to the key.")
    left, right = st.columns(2)
    left.plotly_chart(plots.memory_accuracy(table), key="memory_shipped", config=CHART)
    right.plotly_chart(plots.gradient_lesson(curves, "The gradient of a recall, back to its key",
                                             mark=lesson.MEMORY_GAP - 1, mark_text="the key", show_gain=False),
                       key="grad_memory", config=CHART)
    csv_button("Recall (CSV)", lambda: table, "memory-recall.csv", "memory_recall_csv", left)
    csv_button("The gradients (CSV)", lambda: exports.gradient_curves(curves), "memory-gradients.csv",
               "memory_grad_csv", right)
    st.markdown(lesson.memory_summary(table, curves))
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
    st.caption(lesson.memory_units_caption(top))
    cols = st.columns(6)
    for i, u in enumerate(top[:6]):
        cols[i].button(f"c{u['unit']}: {u['share']:.0%}, ∏f {u['gate_product']:.2f}", key=f"mem_unit_{u['unit']}",
                       on_click=gui.show_unit, args=(models["lstm"][2], u["unit"]), help="Show this unit in Activations")


def trained_section(ctx):
    with st.expander("Your model and the other trained models, on the text under study"):
        # its own length: the first screen's controls then redraw only the first screen (a fragment)
        length_slider("trained_len", len(ctx.text))
        text = ctx.text[: int(st.session_state["trained_len"]) + 1]
        flows = {f"{ctx.name} (this model)": gui.trained_flow(ctx.key, text, _model=ctx.model)}
        others = gui.other_models(ctx)
        for label, (model, key) in others.items():
            flows[label] = gui.trained_flow(key, text, _model=model)
        layers = min(f.dh.shape[0] for f in flows.values())
        ui.keep_choice("grad_layer", list(range(layers)), layers - 1)
        layer = int(st.session_state["grad_layer"])
        st.plotly_chart(plots.gradient_decay(flows, layer=layer), key="grad_trained", config=CHART)
        csv_button("These norms (CSV)", lambda: exports.gradient_flows(flows, layer), "gradients-trained.csv",
                   "grad_trained_csv")
        if layers > 1:
            st.selectbox("Layer", list(range(layers)), key="grad_layer")
        st.caption(lesson.trained_caption(losses.corpus_name(ctx.config), list(others)))


def experiment_section():
    st.subheader("Watch it learn: the live memory experiment")
    st.markdown("Train fresh RNN, GRU and LSTM models on the memory task here. Every cell gets the **same number of "
                f"training steps**; accuracy is measured on {experiments.EVAL_SEGMENTS} fresh recalls per gap.")
    gui.experiment_panel()


def main():
    ctx = ui.require_model()
    st.title("Gradients through time")
    touring = tour_ui.running_key()
    # on a tour the banner reads the chart aloud: the explanation waits, closed, so the chart is in view
    with st.expander("How to read this (a short explanation to read aloud)", expanded=touring is None):
        st.markdown(lesson.EXPLANATION)
    if touring == "memory":  # the stop speaks of the memory models: they come first
        memory_section()
    # its four sliders redraw only its chart and summary, not the memory models or the trained ones
    st.fragment(lambda: ui.guard(fresh_section, ctx))()
    if touring != "memory":
        memory_section()
    trained_section(ctx)
    experiment_section()


ui.run_page(main)
