"""Select and match, as LSTMVis does it: choose a span of the text under study, take the units that stay on
through it, and find the spans of the atlas corpus where the same units are on."""
import numpy as np
import streamlit as st

import ui
from ui import atlas as atlas_ui
from rnnviz import matching, plots, render
from rnnviz.errors import ConfigError
from rnnviz.hypotheses import HYPOTHESES
from rnnviz.probes import default_hypothesis

SHOWN = 8  # matches drawn as text
MATCH_CHARS = 240  # a long match is drawn up to this many characters
QUERY_CHARS = 3000  # the span slider covers the first characters of the text under study


def default_span(ctx, text: str) -> tuple[int, int]:
    """The first stretch of 3 to 40 characters where the model's own default hypothesis holds."""
    labels = HYPOTHESES[default_hypothesis(ctx.config, text)](text) > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        if 3 <= b - a <= 40:
            return int(a), int(b)
    return 0, min(10, len(text))


def main():
    ctx = ui.require_model()
    st.title("Select and match")
    st.markdown("Choose a span of the text under study. The units that stay at or above the threshold through "
                "all of it (and, with padding, below it just before and after) are selected; the atlas corpus is "
                "then searched for the spans where the same units are on, most units first, then the closest "
                "length.")
    atlas = atlas_ui.panel(ctx)
    if atlas is None:
        return
    ss = st.session_state
    text = ctx.text[:QUERY_CHARS]
    c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 1])
    ui.keep_choice("match_layer", list(range(ctx.layers)), ctx.layers - 1)
    c1.selectbox("Layer", list(range(ctx.layers)), key="match_layer")
    ui.keep_choice("match_kind", list(atlas.kinds), "h")  # h lives in [-1, 1], where one threshold fits all units
    c2.selectbox("State", list(atlas.kinds), key="match_kind")
    layer, kind = int(ss["match_layer"]), ss["match_kind"]
    states = ctx.trace().get(layer, kind)[:len(text)]  # (T, H)
    lo, hi = float(np.floor(max(-10.0, states.min()))), float(np.ceil(min(10.0, states.max())))
    if "match_threshold" not in ss:  # a first threshold that selects about ten units of the default span
        a, b = default_span(ctx, text)
        ss["match_threshold"] = matching.suggest_threshold(states, a, b)
    ui.keep_in_range("match_threshold", lo, max(hi, lo + 0.05), 0.3)
    c3.slider("Threshold", lo, max(hi, lo + 0.05), step=0.01, key="match_threshold")
    ui.keep_in_range("match_before", 0, 20, 0)
    ui.keep_in_range("match_after", 0, 20, 0)
    c4.number_input("Off before", 0, 20, key="match_before")
    c5.number_input("Off after", 0, 20, key="match_after")
    span = ss.get("match_span")
    if not (isinstance(span, (tuple, list)) and len(span) == 2 and 0 <= span[0] < span[1] <= len(text)):
        ss["match_span"] = default_span(ctx, text)
    st.slider("Span (characters of the text under study)", 0, len(text), key="match_span")
    a, b = (int(v) for v in ss["match_span"])
    show_query(text, a, b)
    try:
        found = matching.select_and_match(states, a, b, float(ss["match_threshold"]), atlas, layer, kind,
                                          before=int(ss["match_before"]), after=int(ss["match_after"]))
    except ConfigError as e:
        st.warning(str(e), icon=":material/warning:")
        return
    st.markdown(f"**{len(found.units)} units selected** (layer {layer} {kind}): "
                + ", ".join(f"{kind}{u}" for u in found.units[:40]) + (" …" if len(found.units) > 40 else ""))
    if not len(found):
        st.info("No span of the atlas corpus has these units on together.", icon=":material/info:")
        return
    st.dataframe(found.table.head(20), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in ("fraction", "mean_on")})
    show_matches(atlas, found, layer, kind)
    st.plotly_chart(plots.match_heatmap(found.heatmap, list(found.units), found.table, atlas.text),
                    key="match_heat", config={"displaylogo": False})


def show_query(text: str, a: int, b: int) -> None:
    lo, hi = max(0, a - 60), min(len(text), b + 60)
    mark = np.zeros(hi - lo)
    mark[a - lo:b - lo] = 1.0
    st.html(render.colored_text(text[lo:hi], mark, vmin=0, vmax=1, diverging=False, label="in the span", first=lo))


def show_matches(atlas, found, layer: int, kind: str) -> None:
    st.markdown("**The best matches**, each character shaded by the fraction of the selected units on there:")
    for i, r in enumerate(found.table.head(SHOWN).itertuples()):
        lo, hi = max(0, int(r.start) - 30), min(len(atlas), int(r.end) + 30, int(r.start) + MATCH_CHARS + 30)
        on = (atlas.unit_states(layer, kind, found.units, lo, hi) >= found.threshold).mean(axis=0)  # (chars,)
        cut = f" (the first {MATCH_CHARS} shown)" if r.length > MATCH_CHARS else ""
        st.html(f"<div style='font-size:0.8em;color:#666'>#{i + 1} at {int(r.start):,}: {int(r.overlap)} of "
                f"{len(found.units)} units on throughout, {int(r.length):,} characters{cut}</div>"
                + render.colored_text(atlas.text[lo:hi], on, vmin=0, vmax=1, diverging=False, label="units on",
                                      first=lo))


ui.run_page(main)
