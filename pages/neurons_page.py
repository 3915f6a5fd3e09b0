"""Neuron search: rank every unit of every layer by how well it tracks a hypothesis, with the
evidence the score rests on (how many characters and separate spans) and its chance level."""
import math

import numpy as np
import streamlit as st

import ui
from ui import atlas as atlas_ui
from rnnviz import plots, render
from rnnviz.errors import RnnvizError
from rnnviz.hypotheses import HYPOTHESES, hypothesis_mask, is_binary
from rnnviz.probes import CHANCE_SHIFTS, direction_words, evidence, rank_units, shift_offsets

SHOW_CHARS = 1500
TOP = 3


@st.cache_data(max_entries=16, show_spinner="Ranking units ...")
def ranked(model_key: str, text: str, hypothesis: str, _labels, _mask, _trace):
    return rank_units(_trace, _labels, _mask, shifts=CHANCE_SHIFTS)


def send_to_activations(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["layer"], ss["kind"], ss["unit"] = layer, kind, unit
    st.switch_page("pages/activations_page.py")


def send_to_clamp(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["clamp_layer"], ss["clamp_kind"], ss["clamp_unit"], ss["clamp_on"] = layer, kind, unit, True
    st.switch_page("pages/sample_page.py")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def evidence_text(ev: dict, chance: float, n_shifts: int, min_shift: int) -> str:
    """What the scores rest on, and what the best unit scores by chance, in words."""
    holds = "holds" if ev["binary"] else "is above its smallest value"
    text = (f"**Evidence:** the hypothesis {holds} on {plural(ev['positives'], 'character')} of "
            f"{ev['counted']:,}, in {plural(ev['spans'], 'separate span')}; it "
            f"{'does not hold' if ev['binary'] else 'is at its smallest'} on {ev['negatives']:,}, in "
            f"{plural(ev['negative_spans'], 'span')}. ")
    if math.isnan(chance):
        return text + "**Chance level:** none (the text is too short to shift its labels)."
    return text + (f"**Chance level: {chance:.3f}**, the best score any unit reaches against the same labels "
                   f"circularly shifted round the text by {plural(n_shifts, 'random offset')} (each at least "
                   f"{min_shift:,} characters either way; a shift keeps the labels' clumps but unhooks them from "
                   "the text): a detector should score well above it.")


def main():
    ctx = ui.require_model()
    st.title("Neuron search")
    st.markdown("Pick a hypothesis about the text; every unit (h, and c for an LSTM) of every layer is scored by "
                "how well it follows it, whichever way. For yes/no hypotheses, **AUROC** is the chance that the "
                "unit is higher on a character where the hypothesis holds than on one where it does not: near 1 "
                "for a unit *high* there, near 0 for a unit *low* there; **score** = max(AUROC, 1 − AUROC). "
                "For counts, score = |correlation r|, and a unit *rises* or *falls* with the count. "
                "A score is only as good as what it rests on: the page says on how many characters and separate "
                "spans the hypothesis holds, and what the best unit scores by chance.")
    ui.default("rank_over", "the text under study")
    over = st.radio("Rank over", ["the text under study", "the atlas corpus"], key="rank_over", horizontal=True,
                    help="The atlas corpus is the whole held-out split (or the corpus chosen on Unit atlas).")
    tr = ctx.trace()
    ui.hypothesis_widgets()
    if over == "the atlas corpus":
        atlas_ranking(ctx)
        return
    try:
        labels, name = ui.hypothesis_labels(tr.text)
    except RnnvizError as e:
        st.error(str(e), icon=":material/error:")
        return
    if labels is None:
        st.info("Type a regular expression to search for.", icon=":material/info:")
        return
    mask = hypothesis_mask(name, tr.text)  # None: every character counts
    counted = labels if mask is None else labels[mask]
    if counted.size == 0 or counted.min() == counted.max():
        st.warning(f"The hypothesis {name} has the same value on every character of this text"
                   f"{'' if mask is None else ' that it counts'}, so nothing can track it. Choose another one, "
                   "or another text in the sidebar.", icon=":material/warning:")
        return
    df = ranked(ctx.key, tr.text, name, _labels=labels, _mask=mask, _trace=tr)
    binary = is_binary(counted)
    ev = evidence(labels, mask)
    offsets = shift_offsets(len(counted), CHANCE_SHIFTS)
    chance = float(df["chance"].max()) if len(offsets) else float("nan")
    words = [direction_words(d, name, binary) for d in df.direction]
    best = df.iloc[0]
    best_name = f"layer {int(best.layer)} {best.kind}{int(best.unit)}"
    apart = int(np.minimum(offsets, len(counted) - offsets).min()) if len(offsets) else 0  # either way round
    st.markdown(evidence_text(ev, chance, len(offsets), apart))
    if mask is not None:
        st.caption(f"Counted: {ev['counted']:,} of {len(labels):,} characters. Docstrings, multi-line strings, "
                   "comments and what tokenize cannot read are left out, so the score sets one-line strings "
                   "against code.")
    if ev["flagged"]:
        st.warning(f"**Not a detector: too little evidence.** {ev['reason']} The ranking below is shown for "
                   f"exploring only: its best unit ({best_name}, score {best.score:.3f}) is not shown to track {name}. "
                   "A longer text in the sidebar may hold enough.", icon=":material/warning:")
    elif math.isnan(chance):
        st.info(f"**{best_name}: {words[0]}**, score {best.score:.3f}; the text is too short for a chance level.",
                icon=":material/info:")
    elif not best.score > chance:
        st.warning(f"**No unit beats chance.** The best, {best_name}, scores {best.score:.3f}; against the "
                   f"shifted labels some unit reaches {chance:.3f}.", icon=":material/warning:")
    else:
        st.success(f"**{best_name}: {words[0]}**, score {best.score:.3f}, above the chance level {chance:.3f} "
                   f"(its own: {best.chance:.3f}).", icon=":material/check_circle:")
    left, right = st.columns([1, 1])
    with left:
        st.caption(f"All {len(df):,} units, best first ({'AUROC' if binary else 'correlation'} with {name}).")
        shown = df.assign(direction=words)[["layer", "kind", "unit", "direction", "auroc", "score", "corr"]
                                           if binary else ["layer", "kind", "unit", "direction", "score", "corr"]]
        st.dataframe(shown, hide_index=True, height=420,
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("corr", "auroc", "score")})
    with right:
        st.plotly_chart(plots.unit_scores(df, top=20), key="unit_scores", config={"displaylogo": False})

    n = min(len(tr.text), SHOW_CHARS)
    st.subheader("The hypothesis and the best-scoring units, not detectors" if ev["flagged"]
                 else "The hypothesis and the best units")
    st.markdown(f"**Hypothesis: {name}** ({plural(ev['positives'], 'character')} in "
                f"{plural(ev['spans'], 'span')})")
    ui.scroll_html(render.colored_text(tr.text[:n], labels[:n], diverging=False, label=name), 200, tr.text[:n])
    for i, row in df.head(TOP).iterrows():
        layer, kind, unit = int(row.layer), str(row.kind), int(row.unit)
        how = f"AUROC {row.auroc:.3f}, score {row.score:.3f}" if binary else f"r {row['corr']:+.3f}"
        if not math.isnan(row.chance):
            how += f"; chance {row.chance:.3f}"
        head = f"#{i + 1} best score: layer {layer}" if ev["flagged"] else f"#{i + 1}: layer {layer}"
        st.markdown(f"**{head} {kind}{unit}**: {words[i]} ({how})" + (" — not a detector" if ev["flagged"] else ""))
        ui.scroll_html(render.colored_text(tr.text[:n], tr.get(layer, kind)[:n, unit], label=f"L{layer} {kind}{unit}"),
                       200, tr.text[:n])
        c1, c2, _ = st.columns([1, 1, 2])
        if c1.button("Show in Activations", key=f"act_{i}", icon=":material/format_color_text:"):
            send_to_activations(layer, kind, unit)
        if c2.button("Clamp it in Sample", key=f"clamp_{i}", icon=":material/edit_note:"):
            send_to_clamp(layer, kind, unit)


def atlas_ranking(ctx):
    """Every unit ranked over the atlas corpus, from the atlas's labels (built on the Unit atlas page)."""
    found, src, _ = atlas_ui.current(ctx)
    if found is None:
        st.info(f"No atlas of {ctx.name} over {src.name} yet: build it on the Unit atlas page.", icon=":material/info:")
        st.page_link("pages/atlas_page.py", label="Unit atlas", icon=":material/hub:")
        return
    name = st.session_state.get("hypothesis")
    if name not in HYPOTHESES:
        st.info("Over the atlas corpus, units are ranked against the built-in hypotheses; a custom regex is "
                "ranked over the text under study.", icon=":material/info:")
        return
    df = found.labels().query("hypothesis == @name").reset_index(drop=True)
    ev = df.iloc[0]
    st.markdown(f"Over **{len(found):,} characters** of {src.name}: the hypothesis holds on "
                f"{plural(int(ev.positives), 'character')} in {plural(int(ev.spans), 'separate span')}.")
    if ev.flagged:
        st.warning(f"**Not a detector: too little evidence.** {ev.reason}", icon=":material/warning:")
    binary = bool(ev.binary)
    words = [direction_words(d, name, binary) for d in df.direction]
    st.dataframe(df.assign(direction=words)[["layer", "kind", "unit", "direction", "auroc", "score", "corr"]
                                            if binary else ["layer", "kind", "unit", "direction", "score", "corr"]],
                 hide_index=True, height=360,
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("corr", "auroc", "score")})
    for i, row in df.head(TOP).iterrows():
        st.markdown(f"**#{i + 1}: layer {int(row.layer)} {row.kind}{int(row.unit)}**: {words[i]}, score {row.score:.3f}")
        if st.button("Open its dashboard", key=f"dash_{i}", icon=":material/dashboard:"):
            ss = st.session_state
            ss["layer"], ss["kind"], ss["unit"] = int(row.layer), str(row.kind), int(row.unit)
            st.switch_page("pages/unit_page.py")


ui.run_page(main)
