"""Gates: what each gate of one unit does over the text, and how often the gates saturate."""
import streamlit as st

import ui
from ui import cell as cell_ui
from ui import text as text_ui
from rnnviz import exports, lesson, plots, render, saturation
from rnnviz.model import GATES

WINDOW = 120
MEANING = {
    "i": "input gate: how much of the candidate enters (0 to 1)",
    "f": "forget gate: how much of the old cell is kept (1 = all)",
    "g": "candidate: the new content for the cell (−1 to 1)",
    "o": "output gate: how much of the cell is shown as h",
    "r": "reset gate: how much of the old state the candidate may read",
    "z": "update gate: how much of the old state is kept (1 = keep the old h)",
    "n": "candidate: the new state proposed (−1 to 1)",
    "pre": "pre-activation W x_t + U h_(t−1) + b; h_t = tanh(pre)",
    "h": "hidden state h_t",
}


def main():
    ctx = ui.require_model()
    st.title("Gates")
    tr = ctx.trace()
    ss = st.session_state
    text_ui.unit_pickers(ctx, first_visit=False)  # a unit carried from another model opens as on Activations
    layer, unit = int(ss["layer"]), int(ss["unit"])
    gates = list(GATES[ctx.cell])
    # a move of the window slider reruns and redraws only this part; the whole-text charts below stay
    st.fragment(lambda: ui.guard(window, tr, layer, unit, gates))()
    # the window's start as it is when clicked: a window move reruns only the fragment, not this line
    cell_ui.link(layer, unit, lambda: int(st.session_state.get("gate_window") or 0), key="gates_to_cell",
                 help="This unit's arithmetic, step by step, from the first character of the window above.")
    if gates:
        st.subheader("Saturation")
        st.caption(lesson.saturation_caption(saturation.saturation_table(tr)))
        st.plotly_chart(plots.saturation_scatter(tr), key="saturation", config={"displaylogo": False})
        csv_button("Saturation of every unit (CSV)", lambda: exports.saturation(tr), "saturation.csv",
                   "saturation_csv")
    st.subheader("Distribution of values")
    st.plotly_chart(plots.gate_histograms(tr, layer), key="histograms", config={"displaylogo": False})
    csv_button(f"Histograms of layer {layer} (CSV)", lambda: exports.gate_histograms(tr, layer),
               f"gate-histograms-L{layer}.csv", "histograms_csv")


def csv_button(label: str, table, file_name: str, key: str) -> None:
    """A CSV download of a table built only when clicked (table: a callable returning a DataFrame)."""
    st.download_button(label, data=lambda: table().to_csv(index=False), file_name=file_name, mime="text/csv",
                       key=key, icon=":material/download:")


def window(tr, layer: int, unit: int, gates: list[str]) -> None:
    """The window slider and what it drives: one ribbon per gate of the unit, and their lines."""
    ss = st.session_state
    T = len(tr.text)
    ui.keep_in_range("gate_window", 0, max(0, T - 1), 0)
    # the slider and its sentence share a row: on a projector the ribbons then start in view
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    left.slider("Window start (character)", 0, max(1, T - 1), key="gate_window")
    start = int(ss["gate_window"])
    end = min(T, start + WINDOW)
    part = ui.slice_trace(tr, start, end)
    if not gates:
        st.info("A vanilla RNN has **no gates**: every step is simply h_t = tanh(W x_t + U h_(t−1) + b). "
                "Below is the pre-activation of the unit (what goes into the tanh) instead; where it is far "
                "from 0 the tanh saturates and gradients through it vanish.", icon=":material/info:")
        kinds = ["pre", "h"]
    else:
        right.markdown(f"Each ribbon is one gate of **unit {unit}, layer {layer}** over characters {start} to "
                       f"{end - 1}; hover a character for its value.")
        kinds = gates
    cols = st.columns(2)
    for j, kind in enumerate(kinds):
        values = part.get(layer, kind)[:, unit]
        sigmoid = kind in ("i", "f", "o", "r", "z")
        with cols[j % 2]:
            st.markdown(f"**{kind}**: {MEANING[kind]}")
            ui.scroll_html(render.colored_text(part.text, values, vmin=0.0 if sigmoid else None,
                                               vmax=1.0 if sigmoid else None, diverging=not sigmoid, label=kind), 200,
                           part.text)
    st.plotly_chart(plots.gate_lines(part, layer, unit, first=start), key="gate_lines", config={"displaylogo": False})
    csv_button(f"Gates of unit {unit}, whole text (CSV)", lambda: exports.unit_gates(tr, layer, unit),
               f"gates-L{layer}-u{unit}.csv", "gates_csv")


ui.run_page(main)
