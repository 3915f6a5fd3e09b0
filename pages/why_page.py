"""Why this character? Which earlier characters a prediction depends on (saliency), and what an edit changes."""
import streamlit as st

import ui
from rnnviz import plots, render
from rnnviz import saliency as sal_lib
from rnnviz.counterfactual import OPS, prediction_length
from rnnviz.counterfactual import summary as edit_summary
from ui import circuit as circuit_ui
from ui import why
from ui.why import FAR, SCAN_WINDOW

MAX_CHARS = 5_000  # saliency runs the model over text[:t+1]: the page studies the first 5,000 characters
AGG_WINDOW, AGG_TARGETS = 100, 200
SHOW_AFTER = 150  # the edit chart (and the gradient's prediction, one forward-mode step each) covers this many
PRED_REACH = 1_000  # the gradient's prediction at t is taken this far after the edit, at most
CHART = {"displaylogo": False}
WHICH = {sal_lib.TRUE: "the true next character", sal_lib.TOP: "the top predicted character"}

INTRO = """
After reading the text up to position *t*, the model gives each possible next character a probability *p(c)*.
**How much does each earlier character move it?** For every position *s ≤ t*, the page shows the gradient of
log *p(c)* with respect to the input embedding *e_s* of that character: its norm ‖∂ log p(c)/∂e_s‖ (how sensitive
the prediction is to that input), or gradient × input (a signed, first-order estimate of that input's
contribution). One exact backward pass through the model, per target.
"""


def target_controls(ctx, text: str, dt) -> int:
    ss = st.session_state
    n = len(text)
    why.prepare_target(ctx.key, text, dt.target, tuple(WHICH), tuple(plots.MEASURES))
    c1, c2 = st.columns([4, 1])
    if n > 2:  # a slider needs two values to choose from
        c1.slider("Target position t (the prediction after reading character t)", 1, n - 1, key="why_target")
        c2.number_input("t", 1, n - 1, step=1, key="why_target_box", on_change=why.on_box)
    else:
        c1.caption("A text of two characters has one target: t = 1.")
    c1, c2, c3 = st.columns([2, 2, 1])
    c1.radio("Character c", list(WHICH), key="why_which", format_func=WHICH.get, horizontal=True)
    c2.radio("Measure", list(plots.MEASURES), key="why_measure", horizontal=True,
             format_func={"grad_norm": "gradient norm", "grad_x_input": "gradient × input"}.get)
    c3.button("Far-looking target", key="why_reset", on_click=why.set_target, args=(dt.target,),
              help=f"Back to t = {dt.target}: {dt.describe()}")
    return int(ss["why_target"])


def saliency_section(ctx, text: str) -> tuple:
    ss = st.session_state
    dt = why.default_target(ctx.key, text, _model=ctx.model)
    t = target_controls(ctx, text, dt)
    sal = why.saliency(ctx.key, text, t, _model=ctx.model)[ss["why_which"]]
    measure = ss["why_measure"]
    lo, hi, shown, top = sal_lib.colour_window(sal.value(measure), len(text))
    html = render.colored_text(text[lo:hi], shown, vmin=-top if measure == "grad_x_input" else 0.0, vmax=top,
                               diverging=measure == "grad_x_input", label=measure, mark=t - lo, first=lo)
    st.markdown(sal_lib.story(sal, measure, FAR, SCAN_WINDOW, opened=dt))
    ui.scroll_html(html, height=260, text=text[lo:hi])
    st.caption(f"Characters #{lo} to #{hi - 1}; the outlined one is t. "
               + ("Green: gradient norm, white 0 to full green at the largest before t (t itself is off the scale). "
                  if measure == "grad_norm" else
                  "Red raises log p(c), blue lowers it (first order); full colour at the largest before t. ")
               + "Grey: after t, not yet read. Hover a character for its value.")
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(plots.influence_distance(sal, measure, log_x=True,
                                          title=f"Influence on p('{render.char_label(sal.char)}') at t = {t}, "
                                                "against distance"), key="why_distance", config=CHART,
                    on_select=why.on_point, selection_mode="points")
    c1.caption("Click a point to make that character the target.")
    rows = sal_lib.top_influence_table(sal, measure, top=10)
    c2.markdown("**The ten most influential positions**")
    c2.dataframe([{"#": r["position"], "distance": r["distance"], "char": render.char_label(r["char"]),
                   "value": float(f"{r['value']:.4g}")} for r in rows], hide_index=True)
    # below the chart: above the coloured text it broke the chart's click-to-target (test_why_browser)
    st.button("How it was computed: the units and steps that carry this prediction", key="why_to_circuit",
              icon=":material/account_tree:", on_click=circuit_ui.open_here,
              args=(ctx.key, text, t, sal.char if ss["why_which"] == sal_lib.TOP else ""))
    return t, dt.target


def edit_section(ctx, text: str, t: int, t_def: int):
    ss = st.session_state
    st.subheader("Change a character: what actually changes downstream")
    op_def, pos_def, char_def = why.story_edit(ctx.key, text, t_def, _model=ctx.model)
    why.prepare_edit(ctx.key, text, op_def, pos_def, char_def, tuple(OPS))
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Edit", list(OPS), key="why_op")
    c2.number_input(f"Position (0 to {len(text) - 1}; insert: before it, {len(text)} = at the end)", 0, len(text),
                    step=1, key="why_pos")
    c3.text_input("Character (replace or insert)", key="why_char", max_chars=1,
                  disabled=ss["why_op"] == "delete")
    op, pos, char = ss["why_op"], int(ss["why_pos"]), ss.get("why_char") or ""
    if op != "delete":
        c3.caption(f"The character: '{render.char_label(char)}'" if len(char) == 1 else "Type one character.")
    what, cf = why.run_edit(ctx.key, text, op, pos, "" if op == "delete" else char, _model=ctx.model)
    if not len(cf.positions):
        st.info(f"{what}: nothing comes after the edit to compare.", icon=":material/info:")
        return
    pred = None  # an insert shifts everything after it: no gradient of one input describes that
    if op != "insert":
        length = prediction_length(t, pos, SHOW_AFTER, PRED_REACH)  # one forward-mode step per character
        pred = why.predicted(ctx.key, text, pos, char if op == "replace" else None, length, _model=ctx.model)
    st.markdown(edit_summary(what, cf, pred, t, pos, PRED_REACH))
    upto = cf.positions <= pos + SHOW_AFTER  # the chart: the characters just after the edit
    st.plotly_chart(plots.counterfactual_chart(cf.select(upto), None if pred is None else pred[cf.positions][upto],
                                            title="What actually changes, against what the gradient predicts",
                                            mark=t + 1),
                    key="why_edit_chart", config=CHART)
    st.caption("Red bars: the exact change in log p of each character after the edit (both texts run through the "
               "model). Black crosses: the gradient's first-order prediction of it ("
               + ("the embedding moved from the old character to the new one" if op == "replace" else
                  "the deleted character's embedding taken to zero; a deletion also shifts the text, which no "
                  "gradient describes" if op == "delete" else "none for an insert: it shifts the text") + "). "
               "Below: ‖Δh‖ per layer. Before the edit nothing changes.")


def main():
    ctx = ui.require_model()
    st.title("Why this character?")
    st.markdown(INTRO)
    text = ctx.text[:MAX_CHARS]
    if len(ctx.text) > MAX_CHARS:
        st.info(f"This page studies the first {MAX_CHARS:,} of the {len(ctx.text):,} characters.", icon=":material/info:")
    if len(text) < 2:
        st.warning("The text needs at least two characters.", icon=":material/warning:")
        return
    t, t_def = saliency_section(ctx, text)
    ui.guard(edit_section, ctx, text, t, t_def)
    ui.guard(why.aggregate_panel, ctx, text, AGG_WINDOW, AGG_TARGETS)


ui.run_page(main)
