"""Why this character? Which earlier characters a prediction depends on (saliency), and what an edit changes."""
import hashlib
import threading

import numpy as np
import streamlit as st

import ui
from rnnviz import attribution_plots as ap
from rnnviz import render
from rnnviz import saliency as sal_lib
from rnnviz.counterfactual import OPS, Edit, counterfactual, open_at
from rnnviz.errors import RnnvizError
from rnnviz.jobs import Job

MAX_CHARS = 5_000  # saliency runs the model over text[:t+1]: the page studies the first 5,000 characters
FAR = 20  # "far back": 20 or more characters before the target
SCAN_WINDOW, SCAN_TARGETS = 60, 60  # the default target: the most far-looking of 60 spread targets
AGG_WINDOW, AGG_TARGETS = 100, 200
SHOW_AFTER = 150  # the edit chart (and the gradient's prediction, one forward-mode step each) covers this many
TRIO = ("shakespeare-lstm", "shakespeare-gru", "shakespeare-rnn")
CHART = {"displaylogo": False}
WHICH = {sal_lib.TRUE: "the true next character", sal_lib.TOP: "the top predicted character"}

INTRO = """
After reading the text up to position *t*, the model gives each possible next character a probability *p(c)*.
**How much does each earlier character move it?** For every position *s ≤ t*, the page shows the gradient of
log *p(c)* with respect to the input embedding *e_s* of that character: its norm ‖∂ log p(c)/∂e_s‖ (how sensitive
the prediction is to that input), or gradient × input (a signed, first-order estimate of that input's
contribution). One exact backward pass through the model, per target.
"""


@st.cache_data(max_entries=16, show_spinner="Finding a target where the model looks far back ...")
def default_target(model_key: str, text: str, _model) -> tuple[int, float]:
    return sal_lib.long_range_target(_model, text, min_distance=FAR, window=min(SCAN_WINDOW, len(text) - 1),
                                     count=SCAN_TARGETS)


@st.cache_data(max_entries=64, show_spinner="Backpropagating to every input ...")
def saliency(model_key: str, text: str, t: int, _model):
    return sal_lib.saliency(_model, text, t)


@st.cache_data(max_entries=32, show_spinner="Running the model on both texts ...")
def run_edit(model_key: str, text: str, op: str, pos: int, char: str, _model):
    edit = Edit(op, pos, char)
    cf = counterfactual(_model, text, edit)
    if op == "insert":
        pred = None  # a shift of everything after it: no gradient of one input describes that
    else:
        pred = sal_lib.predicted_change(_model, text, pos, char if op == "replace" else None,
                                        length=SHOW_AFTER)[cf.positions]
    return edit.describe(text), cf, pred


@st.cache_resource
def _aggregates() -> dict:
    """Server-wide: key -> the Job computing one set of aggregates (shared by every session)."""
    return {"jobs": {}, "lock": threading.Lock()}


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def share_far(sal, measure: str) -> float:
    """The share of the summed |value| over the last SCAN_WINDOW characters that lies FAR or more back."""
    v = np.abs(sal.value(measure))[::-1][:SCAN_WINDOW]  # by distance
    return float(v[FAR:].sum() / v.sum()) if v.sum() > 0 else 0.0


def _sync_box():
    st.session_state["why_target"] = st.session_state["why_target_box"]


def _set_target(t: int):
    st.session_state["why_target"] = t  # in a callback: before the slider is drawn again


def _on_point():
    """A click on the distance plot: that point's position becomes the target (scatter selections work)."""
    ss = st.session_state
    points = ((ss.get("why_distance") or {}).get("selection") or {}).get("points") or []
    if points:
        try:
            s = int(points[0]["customdata"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return
        if s >= 1:
            ss["why_target"] = s


def target_controls(ctx, text: str) -> int:
    ss = st.session_state
    n = len(text)
    t_def, _ = default_target(ctx.key, text, _model=ctx.model)
    # a new model or text: open again on its own far-looking target
    if ss.get("_why_for") != (ctx.key, _text_key(text)):
        ss["_why_for"] = (ctx.key, _text_key(text))
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
    ui.keep_choice("why_measure", list(ap.MEASURES), "grad_norm")
    c1, c2, c3 = st.columns([2, 2, 1])
    c1.radio("Character c", list(WHICH), key="why_which", format_func=WHICH.get, horizontal=True)
    c2.radio("Measure", list(ap.MEASURES), key="why_measure", horizontal=True,
             format_func={"grad_norm": "gradient norm", "grad_x_input": "gradient × input"}.get)
    c3.button("Far-looking target", key="why_reset", on_click=_set_target, args=(t_def,),
              help=f"Back to t = {t_def}: among {SCAN_TARGETS} targets spread over the text, the one with the "
                   f"largest share of its influence {FAR} or more back")
    return int(ss["why_target"])


def story(sal, measure: str, t_def: int) -> str:
    """The sentence under the coloured text; every number in it is read off the arrays shown."""
    t, text = sal.target, sal.text
    v = np.abs(sal.value(measure))
    far = np.arange(0, max(0, t - FAR + 1))  # positions FAR or more back
    lines = [f"**t = {t}**, after reading `{render.char_label(text[t])}`: log p('{render.char_label(sal.char)}') = "
             f"{sal.logp:.2f} (p = {np.exp(sal.logp):.2f})."]
    share = share_far(sal, measure)
    lines.append(f"Of the summed influence over the last {min(SCAN_WINDOW, t + 1)} characters, **{share:.0%}** "
                 f"comes from characters {FAR} or more back.")
    if far.size:
        s = int(far[np.argmax(v[far])])
        lines.append(f"The strongest of those is `{render.char_label(text[s])}` at #{s}, **{t - s} characters "
                     f"back**, with {v[s] / v[t]:.2g}× the influence of the character at t itself.")
    if t == t_def:
        lines.append(f"(The page opened here: among {SCAN_TARGETS} targets spread over the text, this one has the "
                     f"largest share of its influence {FAR} or more characters back.)")
    return " ".join(lines)


def saliency_section(ctx, text: str) -> tuple:
    ss = st.session_state
    t = target_controls(ctx, text)
    t_def = default_target(ctx.key, text, _model=ctx.model)[0]
    sal = saliency(ctx.key, text, t, _model=ctx.model)[ss["why_which"]]
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
    st.markdown(story(sal, measure, t_def))
    ui.scroll_html(html, height=260, text=text[lo:hi])
    st.caption(f"Characters #{lo} to #{hi - 1}; the outlined one is t. "
               + ("Green: gradient norm, white 0 to full green at the largest before t (t itself is off the scale). "
                  if measure == "grad_norm" else
                  "Red raises log p(c), blue lowers it (first order); full colour at the largest before t. ")
               + "Grey: after t, not yet read. Hover a character for its value.")
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(ap.influence_distance(sal, measure, log_x=True,
                                          title=f"Influence on p('{render.char_label(sal.char)}') at t = {t}, "
                                                "against distance"), key="why_distance", config=CHART,
                    on_select=_on_point, selection_mode="points")
    c1.caption("Click a point to make that character the target.")
    rows = sal_lib.top_influence_table(sal, measure, top=10)
    c2.markdown("**The ten most influential positions**")
    c2.dataframe([{"#": r["position"], "distance": r["distance"], "char": render.char_label(r["char"]),
                   "value": float(f"{r['value']:.4g}")} for r in rows], hide_index=True)
    return t, sal


# --- the aggregate over many targets, for the shipped LSTM, GRU and RNN -----------------------------

def aggregate_models(ctx) -> dict:
    """label -> (cell, model, key): the shipped Shakespeare trio when the model under study is one of them
    (or is not shipped but they are here), else the model under study alone."""
    trio = {}
    for entry in ui.model_entries().values():
        if entry.source == "shipped" and entry.path is not None and entry.path.name in TRIO:
            try:
                model, _, key = ui.load_entry(entry)
            except RnnvizError:
                continue
            trio[entry.path.name] = (model.cell, model, key)
    if len(trio) >= 2 and ctx.name in trio:
        return {name: trio[name] for name in TRIO if name in trio}
    return {ctx.name: (ctx.cell, ctx.model, ctx.key)}


def _agg_fn(models: dict, text: str, window: int):
    def run(stop_event, report):
        out = {}
        for i, (label, (cell, model, _)) in enumerate(models.items()):
            if stop_event.is_set():
                return None
            report(message=f"{label} ({i + 1} of {len(models)})", done=i, total=len(models))
            out[label] = (cell, sal_lib.aggregate(model, text, window=window, count=AGG_TARGETS))
        return out
    return run


def aggregate_section(ctx, text: str):
    st.subheader("How far back each model looks, on average")
    models = aggregate_models(ctx)
    window = min(AGG_WINDOW, len(text) - 2)
    if window < 2:
        st.info("The text is too short for the aggregate: give it at least a few characters more.",
                icon=":material/info:")
        return
    key = "|".join([*(m[2] for m in models.values()), _text_key(text), str(window)])
    server = _aggregates()
    job = server["jobs"].get(key)
    if job is None or (not job.running and job.result is None):
        if job is not None and job.error:
            st.error(f"The last run failed: {job.error}", icon=":material/error:")
        names = ", ".join(models)
        st.markdown(f"The mean influence against distance over {AGG_TARGETS} targets spread over the text, in "
                    f"windows of {window} characters ending at each target, for {names}.")
        if st.button("Compute the aggregate", key="why_agg", type="primary", icon=":material/play_arrow:"):
            with server["lock"]:
                job = server["jobs"].get(key)
                if job is None or (not job.running and job.result is None):
                    job = Job(_agg_fn(models, text, window), name="why-aggregate", threads=ui.TRAIN_THREADS).start()
                    server["jobs"][key] = job
        else:
            return
    if job.running:
        st.fragment(run_every=1.0)(lambda: ui.guard(_agg_progress, key))()
        return
    draw_aggregate(job.result, window)


def _agg_progress(key: str):
    job = _aggregates()["jobs"].get(key)
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
    st.plotly_chart(ap.aggregate_distance(aggs, measure, relative=True,
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
    st.caption(f"Each curve: the mean over {n} targets of |{ap.MEASURES[measure]}| at each distance, divided by the "
               "mean at distance 0. Each window starts from the state the model reached over the text before it, "
               "so the gradients inside it are exact.")


# --- counterfactual edits ------------------------------------------------------------------------

def default_edit(text: str, t: int) -> tuple[str, int, str]:
    """The edit the section opens on: delete the quote or bracket still open at t (opened FAR or more back);
    with none, replace the last line break FAR or more before t by a space, joining two lines; else
    delete the character FAR back."""
    opener = open_at(text, t, min_gap=FAR)
    if opener is not None:
        return "delete", opener, " "
    nl = text.rfind("\n", max(0, t - 200), max(0, t - FAR + 1))
    if nl >= 0:
        return "replace", nl, " "
    return "delete", max(0, t - FAR), " "


def edit_section(ctx, text: str, t: int):
    ss = st.session_state
    st.subheader("Change a character: what actually changes downstream")
    op_def, pos_def, char_def = default_edit(text, t)
    if ss.get("_why_edit_for") != (ctx.key, _text_key(text)):  # a new model or text: the story's default edit
        ss["_why_edit_for"] = (ctx.key, _text_key(text))
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
    what, cf, pred = run_edit(ctx.key, text, op, pos, "" if op == "delete" else char, _model=ctx.model)
    if not len(cf.positions):
        st.info(f"{what}: nothing comes after the edit to compare.", icon=":material/info:")
        return
    upto = cf.positions <= pos + SHOW_AFTER  # the chart: the characters just after the edit
    k_t = np.flatnonzero(cf.positions == t + 1)  # the character t predicts, if it is downstream
    line = f"**{what}.** "
    if k_t.size:
        j = int(k_t[0])
        line += (f"At t = {t}, p('{render.char_label(text[t + 1])}') goes from {cf.p[j]:.3f} to {cf.p_edited[j]:.3f} "
                 f"(surprisal {cf.surprisal[j]:.2f} → {cf.surprisal_edited[j]:.2f} nats)")
        if pred is not None:
            line += f"; the gradient predicted a change in log p of {pred[j]:+.3f}, the actual is {-cf.d_surprisal[j]:+.3f}"
        line += ". "
    big = np.nanargmax(np.abs(cf.d_surprisal)) if np.isfinite(cf.d_surprisal).any() else None
    if big is not None:
        k = int(cf.positions[big])
        line += (f"The largest change is at #{k} ('{render.char_label(text[k])}', {k - pos} after the edit): "
                 f"surprisal {cf.d_surprisal[big]:+.2f} nats.")
    st.markdown(line)
    st.plotly_chart(ap.counterfactual_chart(cf.select(upto), None if pred is None else pred[upto],
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
    t, sal = saliency_section(ctx, text)
    ui.guard(edit_section, ctx, text, t)
    ui.guard(aggregate_section, ctx, text)


ui.run_page(main)
