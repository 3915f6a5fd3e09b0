"""Why this character? Which earlier characters a prediction depends on (saliency), and what an edit changes."""
import numpy as np
import streamlit as st

import ui
from rnnviz import plots, render
from rnnviz import saliency as sal_lib
from rnnviz.counterfactual import OPS
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


def _sync_box():
    st.session_state["why_target"] = st.session_state["why_target_box"]


def _set_target(t: int):
    st.session_state["why_target"] = t  # in a callback: before the slider is drawn again


def _on_point():
    """A click on the distance plot: that point's position becomes the target (scatter selections work)."""
    s = why.selected_position(st.session_state.get("why_distance"))
    if s is not None and s >= 1:
        st.session_state["why_target"] = s


def target_controls(ctx, text: str, dt) -> int:
    ss = st.session_state
    n = len(text)
    t_def = dt.target
    # a new model or text: open again on its own default target
    if ss.get("_why_for") != (ctx.key, why.text_key(text)):
        ss["_why_for"] = (ctx.key, why.text_key(text))
        ss["why_target"] = t_def
    ui.default("why_target", t_def)
    ui.keep_in_range("why_target", 1, n - 1, t_def)
    ss["why_target_box"] = ss["why_target"]
    c1, c2 = st.columns([4, 1])
    if n > 2:  # a slider needs two values to choose from
        c1.slider("Target position t (the prediction after reading character t)", 1, n - 1, key="why_target")
        c2.number_input("t", 1, n - 1, step=1, key="why_target_box", on_change=_sync_box)
    else:
        c1.caption("A text of two characters has one target: t = 1.")
    ui.default("why_which", sal_lib.TRUE)
    ui.keep_choice("why_which", list(WHICH), sal_lib.TRUE)
    ui.default("why_measure", "grad_norm")
    ui.keep_choice("why_measure", list(plots.MEASURES), "grad_norm")
    c1, c2, c3 = st.columns([2, 2, 1])
    c1.radio("Character c", list(WHICH), key="why_which", format_func=WHICH.get, horizontal=True)
    c2.radio("Measure", list(plots.MEASURES), key="why_measure", horizontal=True,
             format_func={"grad_norm": "gradient norm", "grad_x_input": "gradient × input"}.get)
    c3.button("Far-looking target", key="why_reset", on_click=_set_target, args=(t_def,),
              help=f"Back to t = {t_def}: {dt.describe()}")
    return int(ss["why_target"])


def story(sal, measure: str, dt) -> str:
    """The sentence under the coloured text; every number in it is read off the arrays shown."""
    t, text = sal.target, sal.text
    v = np.abs(sal.value(measure))
    lines = [f"**t = {t}**, after reading `{render.char_label(text[t])}`: log p('{render.char_label(sal.char)}') = "
             f"{sal.logp:.2f} (p = {np.exp(sal.logp):.2f})."]
    share = sal.share_far(measure, FAR, SCAN_WINDOW)
    lines.append(f"Of the summed influence over the last {min(SCAN_WINDOW, t + 1)} characters, **{share:.0%}** "
                 f"comes from characters {FAR} or more back.")
    s = sal.strongest_far(measure, FAR)
    if s is not None:
        ratio = f", with {v[s] / v[t]:.2g}× the influence of the character at t itself" if v[t] > 0 else ""
        lines.append(f"The strongest of those is `{render.char_label(text[s])}` at #{s}, **{t - s} characters "
                     f"back**{ratio}.")
    if t == dt.target:
        lines.append(f"(The page opened here: {dt.describe()}.)")
    return " ".join(lines)


def saliency_section(ctx, text: str) -> tuple:
    ss = st.session_state
    dt = why.default_target(ctx.key, text, _model=ctx.model)
    t = target_controls(ctx, text, dt)
    sal = why.saliency(ctx.key, text, t, _model=ctx.model)[ss["why_which"]]
    measure = ss["why_measure"]
    v = sal.value(measure)  # (t+1,)
    lo = max(0, t - 160)
    hi = min(len(text), t + 41)
    shown = np.full(hi - lo, np.nan)
    shown[: t + 1 - lo] = v[lo:]
    rest = np.abs(v[:t]) if t else np.abs(v)  # the colour scale leaves out t itself, which is usually largest
    top = float(rest.max()) if rest.size and rest.max() > 0 else 1.0
    html = render.colored_text(text[lo:hi], shown, vmin=-top if measure == "grad_x_input" else 0.0, vmax=top,
                               diverging=measure == "grad_x_input", label=measure, mark=t - lo, first=lo)
    st.markdown(story(sal, measure, dt))
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
                    on_select=_on_point, selection_mode="points")
    c1.caption("Click a point to make that character the target.")
    rows = sal_lib.top_influence_table(sal, measure, top=10)
    c2.markdown("**The ten most influential positions**")
    c2.dataframe([{"#": r["position"], "distance": r["distance"], "char": render.char_label(r["char"]),
                   "value": float(f"{r['value']:.4g}")} for r in rows], hide_index=True)
    return t, sal, dt.target


# --- the aggregate over many targets, for the shipped LSTM, GRU and RNN -----------------------------

def aggregate_section(ctx, text: str):
    st.subheader("How far back each model looks, on average")
    models = why.aggregate_models(ctx)
    window = min(AGG_WINDOW, len(text) - 2)
    if window < 2:
        st.info("The text is too short for the aggregate: give it at least a few characters more.",
                icon=":material/info:")
        return
    key = why.aggregate_key(models, text, window)
    job = why.aggregate_job(key)
    if job is None or (not job.running and job.result is None):
        if job is not None and job.error:
            st.error(f"The last run failed: {job.error}", icon=":material/error:")
        names = ", ".join(models)
        st.markdown(f"The mean influence against distance over {AGG_TARGETS} targets spread over the text, in "
                    f"windows of {window} characters ending at each target, for {names}.")
        if not st.button("Compute the aggregate", key="why_agg", type="primary", icon=":material/play_arrow:"):
            return
        job = why.start_aggregate(key, models, text, window, AGG_TARGETS)
    if job.running:
        st.fragment(run_every=1.0)(lambda: ui.guard(_agg_progress, key))()
        return
    draw_aggregate(job.result, window)


def _agg_progress(key: str):
    job = why.aggregate_job(key)
    if job is None:
        return
    if job.running:
        snap = job.snapshot()
        st.progress(min(1.0, (snap.get("done") or 0) / (snap.get("total") or 1)),
                    text=f"Measuring {snap.get('message') or '...'}")
    else:
        st.rerun(scope="app")


def draw_aggregate(aggs: dict, window: int):
    measure = st.session_state.get("why_measure", "grad_norm")
    st.plotly_chart(plots.aggregate_distance(aggs, measure, relative=True,
                                          title="Mean influence against distance, over its value at distance 0"),
                    key="why_aggregate", config=CHART)
    d = 40 if window > 40 else window - 1
    far = window - 10 if window > 50 else window - 1
    rows = [f"- **{label}** ({cell.upper()}): at distance {d}, {agg.relative(measure)[d]:.3g} of its influence at "
            f"distance 0; at distance 10, {agg.relative(measure)[10 if window > 10 else 0]:.3g}; at distance {far}, "
            f"{agg.relative(measure)[far]:.3g}" for label, (cell, agg) in aggs.items()]
    if len(aggs) > 1:
        best = {dd: max(aggs, key=lambda k: aggs[k][1].relative(measure)[dd]) for dd in (d, far)}
        worst = min(aggs, key=lambda k: aggs[k][1].relative(measure)[far])
        rows.append(f"\nAt distance {d} the most influence is left in **{best[d]}**; at distance {far}, in "
                    f"**{best[far]}**, and the least in **{worst}**.")
    st.markdown("\n".join(rows))
    n = len(next(iter(aggs.values()))[1].targets)
    st.caption(f"Each curve: the mean over {n} targets of |{plots.MEASURES[measure]}| at each distance, divided by the "
               "mean at distance 0. Each window starts from the state the model reached over the text before it, "
               "so the gradients inside it are exact.")


# --- counterfactual edits ------------------------------------------------------------------------

def _p_pair(a: float, b: float) -> tuple[str, str]:
    """Two probabilities with enough decimals (3 to 6) to tell them apart when they differ."""
    for d in range(3, 7):
        x, y = f"{a:.{d}f}", f"{b:.{d}f}"
        if x != y:
            break
    return x, y


def edit_line(what: str, cf, pred, text: str, t: int, pos: int) -> str:
    """The sentence over the edit chart: p at t before and after, the gradient's prediction where it has one,
    and the largest change."""
    line = f"**{what}.** "
    k_t = np.flatnonzero(cf.positions == t + 1)  # the character t predicts, if it is downstream
    if k_t.size:
        j = int(k_t[0])
        before, after = _p_pair(cf.p[j], cf.p_edited[j])
        line += (f"At t = {t}, p('{render.char_label(text[t + 1])}') goes from {before} to {after} "
                 f"(surprisal {cf.surprisal[j]:.2f} → {cf.surprisal_edited[j]:.2f} nats)")
        if pred is not None and np.isfinite(pred[t + 1]):
            line += (f"; the gradient predicted a change in log p of {pred[t + 1]:+.3f}, the actual is "
                     f"{-cf.d_surprisal[j]:+.3f}")
        elif pred is not None:
            line += (f"; t lies {t + 1 - pos} characters after the edit, beyond the {PRED_REACH:,} the gradient's "
                     "prediction is taken over")
        line += ". "
    big = np.nanargmax(np.abs(cf.d_surprisal)) if np.isfinite(cf.d_surprisal).any() else None
    if big is not None:
        k = int(cf.positions[big])
        line += (f"The largest change is at #{k} ('{render.char_label(text[k])}', {k - pos} after the edit): "
                 f"surprisal {cf.d_surprisal[big]:+.2f} nats.")
    return line


def edit_section(ctx, text: str, t: int, t_def: int):
    ss = st.session_state
    st.subheader("Change a character: what actually changes downstream")
    op_def, pos_def, char_def = why.story_edit(ctx.key, text, t_def, _model=ctx.model)
    if ss.get("_why_edit_for") != (ctx.key, why.text_key(text)):  # a new model or text: the story's default edit
        ss["_why_edit_for"] = (ctx.key, why.text_key(text))
        ss["why_op"], ss["why_pos"], ss["why_char"] = op_def, pos_def, char_def
    ui.default("why_op", op_def)
    ui.keep_choice("why_op", list(OPS), op_def)
    ui.default("why_pos", pos_def)
    ui.keep_in_range("why_pos", 0, len(text), pos_def)
    ui.default("why_char", char_def)
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
        # the chart's span, stretched to reach t when t is not too far: one forward-mode step per character
        length = max(SHOW_AFTER, t + 1 - pos) if t + 1 - pos <= PRED_REACH else SHOW_AFTER
        pred = why.predicted(ctx.key, text, pos, char if op == "replace" else None, length, _model=ctx.model)
    st.markdown(edit_line(what, cf, pred, text, t, pos))
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
    t, sal, t_def = saliency_section(ctx, text)
    ui.guard(edit_section, ctx, text, t, t_def)
    ui.guard(aggregate_section, ctx, text)


ui.run_page(main)
