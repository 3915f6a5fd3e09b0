"""Activations' cached unit table, its row picker, and its panels: the unit over the text or the atlas
corpus, and the window (heatmap, predictions, exports)."""
from __future__ import annotations

import io

import streamlit as st

from rnnviz import plots, render
from rnnviz.hypotheses import label_band
from rnnviz.probes import unit_stats
from ui import atlas as atlas_ui
from ui.state import default, keep_choice, keep_in_range
from ui.widgets import scroll_html

WINDOW = 120
ATLAS_WINDOW = 2000
HEAT_SCALES = {"shared": "one scale for all units", "unit": "each unit its own scale"}


@st.cache_data(max_entries=16, show_spinner=False)
def scored(model_key: str, text: str, layer: int, kind: str, hypothesis: str | None, _trace, _labels, _mask):
    """unit_stats, cached: scoring every unit against a hypothesis is most of an opening's work."""
    return unit_stats(_trace, layer, kind, labels=_labels, mask=_mask)


def pick_row():
    """The unit table's clicked row becomes the unit shown."""
    rows = st.session_state.get("unit_table", {}).get("selection", {}).get("rows", [])
    order = st.session_state.get("_unit_order", [])
    if rows and rows[0] < len(order):
        st.session_state["unit"] = int(order[rows[0]])


def atlas_window(ctx, layer: int, kind: str, unit: int) -> None:
    """The unit over a window of the atlas corpus, from the atlas's stored states."""
    found, src, _ = atlas_ui.current(ctx)
    if found is None:
        st.info(f"No atlas of {ctx.name} over {src.name} yet: build it on the Unit atlas page.", icon=":material/info:")
        return
    keep_in_range("atlas_window", 0, max(0, len(found) - 1), 0)
    st.slider(f"Where in the atlas corpus ({len(found):,} characters)", 0, max(1, len(found) - 1),
              step=ATLAS_WINDOW // 4, key="atlas_window")
    a = int(st.session_state["atlas_window"])
    b = min(len(found), a + ATLAS_WINDOW)
    text = found.text[a:b]
    scroll_html(render.colored_text(text, found.unit_values(layer, kind, unit, a, b), label=f"L{layer} {kind}{unit}",
                                    first=a), 440, text)
    st.caption(f"Characters {a:,} to {b - 1:,} of {src.name}, from the atlas's int8 states (within "
               f"{found.error_bound(layer, kind)[unit]:.2g} of the model's own values).")


def unit_text(tr, v, name: str, labels, mask, hyp_name: str) -> None:
    """The unit coloured over the text under study, on its own range, with the hypothesis's labels
    as a band under each character (yes/no hypotheses), so where the two disagree shows."""
    default("act_band", True)
    band = None if labels is None else label_band(labels, mask)  # None: no labels, or not yes/no
    if not st.toggle("Labels under the text", key="act_band", disabled=band is None,
                     help="A band under each character where the hypothesis holds (its label is 1)."):
        band = None
    lim = render.robust_limit(v)
    scroll_html(render.colored_text(tr.text, v, vmin=-lim, vmax=lim, label=name, band=band, band_label=hyp_name),
                440, tr.text)
    st.caption(render.own_range_words(lim, hyp_name, labels, mask, band=band is not None))


def window(name: str, tr, values, units: list[int], layer: int, kind: str, sort_by: str) -> None:
    """The window slider and what it drives: the heatmap, the predictions, the surprisal; the exports."""
    ss = st.session_state
    T = len(tr.text)
    keep_in_range("window_start", 0, max(0, T - 1), 0)
    st.slider("Window start (character) for the heatmap and the predictions", 0, max(1, T - 1), key="window_start")
    start = int(ss["window_start"])
    end = min(T, start + WINDOW)
    keep_choice("heat_scale", list(HEAT_SCALES), "shared")
    st.radio("Heatmap colours", list(HEAT_SCALES), key="heat_scale", format_func=HEAT_SCALES.get, horizontal=True,
             help="One scale: a row's colour compares units. Each unit its own: a quiet unit's pattern shows too.")
    per_unit = ss["heat_scale"] == "unit"
    heat = plots.activation_heatmap(values[start:end], tr.text[start:end], units=units,
                                    title=f"Layer {layer} {kind}: top {len(units)} units by "
                                          f"{sort_by}, characters {start} to {end - 1}"
                                          + (", each row on its unit's own scale" if per_unit else ""), first=start,
                                    scale=plots.unit_scales(values) if per_unit else None)
    heat.update_yaxes(autorange="reversed")  # the first unit of the list at the top
    heat.update_layout(height=max(320, 16 * len(units) + 160))
    st.plotly_chart(heat, key="heatmap", config={"displaylogo": False})

    st.subheader("What the model predicts next")
    st.caption("Under each character: the five likeliest next characters (outlined: the true one) and the "
               "surprisal −ln p(next) in nats.")
    st.html(render.top_predictions_html(tr, start, end, k=5))
    surprisal = plots.surprisal_bars(tr, start, end)
    surprisal.update_layout(height=300)
    st.plotly_chart(surprisal, key="surprisal", config={"displaylogo": False})
    exports(name, tr, layer, kind, heat, surprisal)


def exports(name: str, tr, layer: int, kind: str, heat, surprisal) -> None:
    """The window's downloads: the layer's activations (CSV, Parquet) and the two charts (HTML)."""
    st.subheader("Export")
    stem = f"{name}-L{layer}-{kind}"
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Activations (CSV)", data=lambda: tr.to_frame(layer, kind).to_csv(index=False),
                       file_name=f"{stem}.csv", mime="text/csv", key="dl_csv", icon=":material/download:")
    c2.download_button("Activations (Parquet)", data=lambda: parquet(tr, layer, kind), file_name=f"{stem}.parquet",
                       mime="application/octet-stream", key="dl_parquet", icon=":material/download:")
    c3.download_button("Heatmap (HTML)", data=lambda: heat.to_html(include_plotlyjs=True),
                       file_name=f"{stem}-heatmap.html", mime="text/html", key="dl_heat", icon=":material/download:")
    c4.download_button("Surprisal (HTML)", data=lambda: surprisal.to_html(include_plotlyjs=True),
                       file_name=f"{name}-surprisal.html", mime="text/html", key="dl_surprisal",
                       icon=":material/download:")
    st.caption("PNG: use the camera icon on each chart.")


def parquet(tr, layer, kind) -> bytes:
    """One layer and kind of the trace as Parquet bytes (the same table as the CLI's trace --parquet)."""
    buf = io.BytesIO()
    tr.to_frame(layer, kind).to_parquet(buf, index=False)
    return buf.getvalue()
