"""Inside the cell: one unit's step drawn as Olah draws the cell, with the model's own numbers, one character
at a time: the text strip to step through, the diagram, the pre-activation's parts, the unit along the text."""
import streamlit as st

import ui
from ui import cell as cui
from ui import text as text_ui

CONFIG = {"displaylogo": False}
INTRO = {
    "lstm": "The cell state c runs along the top like a conveyor belt: c(t) = f·c(t−1) + i·g, and h(t) = o·tanh(c(t)).",
    "gru": "The state h runs along the top: h(t) = z·h(t−1) + (1−z)·n, in PyTorch's convention (z near 1 keeps the "
           "old state); r decides how much of it the candidate n reads.",
    "rnn": "A vanilla RNN has no gates: h(t) = tanh(W x(t) + U h(t−1) + b).",
}


def main():
    ctx = ui.require_model()
    st.title("Inside the cell")
    tr = ctx.trace()
    st.markdown(f"One step of one unit, drawn as Olah draws the cell, with **this model's own numbers** at the "
                f"character outlined in the strip. {INTRO[ctx.cell]}")
    text_ui.unit_pickers(ctx)
    cui.open_position(ctx, tr)
    ss = st.session_state
    layer, unit = int(ss["layer"]), int(ss["unit"])
    playing = cui.playing()
    # a move (◀ ▶, the slider, a click on the strip, a play step) reruns only this part, not the page
    st.fragment(lambda: ui.guard(stepper, ctx, tr, layer, unit, playing),
                run_every=cui.PLAY_SECONDS if playing else None)()


def stepper(ctx, tr, layer: int, unit: int, playing: bool):
    ss = st.session_state
    if bool(ss.get("cell_playing")) != playing or (int(ss["layer"]), int(ss["unit"])) != (layer, unit):
        st.rerun()  # play started or stopped, or a contributor chose another unit: the page redraws with it
    n = len(tr.text)
    if playing:
        cui.advance(n)
        if not ss.get("cell_playing"):
            st.rerun()  # the end of the text: the play stops
    c1, c2, c3, c4 = st.columns([1.1, 1.1, 1.1, 6], vertical_alignment="bottom")
    c1.button("Back", key="cell_back", icon=":material/chevron_left:", on_click=cui.move, args=(-1, n),
              help="One character back")
    c2.button("Next", key="cell_next", icon=":material/chevron_right:", on_click=cui.move, args=(1, n),
              help="One character on")
    if playing:
        c3.button("Stop", key="cell_stop", icon=":material/stop:", on_click=cui.set_playing, args=(False,))
    else:
        c3.button("Play", key="cell_play", icon=":material/play_arrow:", on_click=cui.set_playing, args=(True,),
                  help=f"Walk through the text, one character every {cui.PLAY_SECONDS:g} s")
    c4.slider("Position in the text under study", 0, max(1, n - 1), key="cell_pos", disabled=n < 2)
    pos = int(ss["cell_pos"])
    figs = cui.figures(ctx.model, tr, layer, unit, pos)
    st.plotly_chart(figs["strip"], key="cell_strip", on_select=cui.on_strip_select, selection_mode="points",
                    config=CONFIG)
    st.caption(f"Characters {figs['start']} to {figs['end'] - 1} of the text under study; click one to step there.")
    # the diagram takes the whole width: at 1280 x 800 (a projector) a narrower one crowds its numbers
    st.plotly_chart(figs["diagram"], key="cell_diagram", config=CONFIG)
    cui.sentence(figs["step"])
    st.caption("Each wire carries this unit's value at this step, written on it and coloured by it (the colour bar; "
               "hover a wire for more digits). The grey bus carries every unit's h(t−1) and the character into the "
               "gates.")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Into each gate**: its pre-activation in three parts, from the character (input), from "
                    "every unit's h(t−1) (recurrent) and the bias; their sum goes through σ or tanh.")
        st.plotly_chart(figs["bars"], key="cell_bars", config=CONFIG)
    with right:
        cui.contributors(figs["step"])
    st.plotly_chart(figs["window"], key="cell_window", config=CONFIG)
    gates = "the sigmoid gates from white (0, shut) to green (1, open), the candidate from blue (−1) to red (+1)"
    st.caption(f"Unit {unit} of layer {layer} along characters {figs['start']} to {figs['end'] - 1}: its state"
               f"{'s c and h' if ctx.cell == 'lstm' else ' h'} above, each gate's ribbon under them "
               f"({gates if ctx.cell != 'rnn' else 'the pre-activation from blue (−1) to red (+1)'}); "
               "the dotted line is the step drawn above.")
    cui.remember_position()


ui.run_page(main)
