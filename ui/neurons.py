"""Neuron search's cached ranking, its links to other pages, and its panels (the best units, the atlas's ranking)."""
from __future__ import annotations

import math

import streamlit as st

from rnnviz import lesson, render
from rnnviz.hypotheses import HYPOTHESES
from rnnviz.probes import CHANCE_SHIFTS, direction_words, plural, rank_units
from ui import atlas as atlas_ui
from ui import cell as cell_ui
from ui.widgets import scroll_html

TOP = 3


@st.cache_data(max_entries=16, show_spinner="Ranking units ...")
def ranked(model_key: str, text: str, hypothesis: str, _labels, _mask, _trace):
    """rank_units with its chance level, cached per (model, text, hypothesis)."""
    return rank_units(_trace, _labels, _mask, shifts=CHANCE_SHIFTS)


def score_columns() -> dict:
    """The ranking's score columns to three decimals."""
    return {c: st.column_config.NumberColumn(format="%.3f") for c in ("corr", "auroc", "score")}


def columns(binary: bool) -> list[str]:
    """The ranking's columns shown: AUROC only for yes/no hypotheses."""
    return (["layer", "kind", "unit", "direction", "auroc", "score", "corr"] if binary
            else ["layer", "kind", "unit", "direction", "score", "corr"])


def send_to_activations(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["layer"], ss["kind"], ss["unit"] = layer, kind, unit
    st.switch_page("pages/activations_page.py")


def send_to_clamp(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["clamp_layer"], ss["clamp_kind"], ss["clamp_unit"], ss["clamp_on"] = layer, kind, unit, True
    st.switch_page("pages/sample_page.py")


def best_units(tr, df, summary: dict, n: int) -> None:
    """The TOP units of the ranking over the first n characters, each with its links."""
    flagged, binary, words = summary["evidence"]["flagged"], summary["binary"], summary["words"]
    for i, row in df.head(TOP).iterrows():
        layer, kind, unit = int(row.layer), str(row.kind), int(row.unit)
        how = f"AUROC {row.auroc:.3f}, score {row.score:.3f}" if binary else f"r {row['corr']:+.3f}"
        if not math.isnan(row.chance):
            how += f"; chance {row.chance:.3f}"
        head = f"#{i + 1} best score: layer {layer}" if flagged else f"#{i + 1}: layer {layer}"
        st.markdown(f"**{head} {kind}{unit}**: {words[i]} ({how})" + (" — not a detector" if flagged else ""))
        scroll_html(render.colored_text(tr.text[:n], tr.get(layer, kind)[:n, unit], label=f"L{layer} {kind}{unit}"),
                    200, tr.text[:n])
        c1, c2, c3, _ = st.columns([1, 1, 1, 1])
        if c1.button("Show in Activations", key=f"act_{i}", icon=":material/format_color_text:"):
            send_to_activations(layer, kind, unit)
        if c2.button("Clamp it in Sample", key=f"clamp_{i}", icon=":material/edit_note:"):
            send_to_clamp(layer, kind, unit)
        cell_ui.link(layer, unit, lambda: lesson.cell_opening(tr.text, st.session_state.get("hypothesis") or ""),
                     key=f"cell_{i}", kind=kind, where=c3,
                     help="This unit's arithmetic, step by step, where the hypothesis first holds (Inside the cell).")


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
    st.dataframe(df.assign(direction=words)[columns(binary)], hide_index=True, height=360,
                 column_config=score_columns())
    for i, row in df.head(TOP).iterrows():
        st.markdown(f"**#{i + 1}: layer {int(row.layer)} {row.kind}{int(row.unit)}**: {words[i]}, "
                    f"score {row.score:.3f}")
        if st.button("Open its dashboard", key=f"dash_{i}", icon=":material/dashboard:"):
            ss = st.session_state
            ss["layer"], ss["kind"], ss["unit"] = int(row.layer), str(row.kind), int(row.unit)
            st.switch_page("pages/unit_page.py")
