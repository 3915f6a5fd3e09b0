"""Activations: one unit coloured over the text, a units x characters heatmap, predictions, exports."""
import io

import numpy as np
import streamlit as st

import ui
from ui import atlas as atlas_ui
from ui import text as text_ui
from rnnviz import plots, render
from rnnviz.errors import RnnvizError
from rnnviz.hypotheses import hypothesis_mask, is_binary
from rnnviz.probes import unit_stats

WINDOW = 120
ATLAS_WINDOW = 2000
HEATMAP_UNITS = 48
SORTS = {"variance": "variance", "mean |activation|": "mean_abs", "selectivity": "selectivity"}
HEAT_SCALES = {"shared": "one scale for all units", "unit": "each unit its own scale"}


@st.cache_data(max_entries=16, show_spinner=False)
def scored(model_key: str, text: str, layer: int, kind: str, hypothesis: str | None, _trace, _labels, _mask):
    """unit_stats, cached: scoring every unit against a hypothesis is most of an opening's work."""
    return unit_stats(_trace, layer, kind, labels=_labels, mask=_mask)


def pick_row():
    rows = st.session_state.get("unit_table", {}).get("selection", {}).get("rows", [])
    order = st.session_state.get("_unit_order", [])
    if rows and rows[0] < len(order):
        st.session_state["unit"] = int(order[rows[0]])


def controls(ctx):
    kinds = ["h", "c"] if ctx.cell == "lstm" else ["h"]
    text_ui.open_on_best_unit(ctx, kinds)
    ui.unit_controls(ctx, kinds)
    text_ui.remember_unit(ctx)


def atlas_window(ctx, layer: int, kind: str, unit: int) -> None:
    """The unit over a window of the atlas corpus, from the atlas's stored states."""
    found, src, _ = atlas_ui.current(ctx)
    if found is None:
        st.info(f"No atlas of {ctx.name} over {src.name} yet: build it on the Unit atlas page.", icon=":material/info:")
        return
    ui.keep_in_range("atlas_window", 0, max(0, len(found) - 1), 0)
    st.slider(f"Where in the atlas corpus ({len(found):,} characters)", 0, max(1, len(found) - 1), step=ATLAS_WINDOW // 4,
              key="atlas_window")
    a = int(st.session_state["atlas_window"])
    b = min(len(found), a + ATLAS_WINDOW)
    text = found.text[a:b]
    ui.scroll_html(render.colored_text(text, found.unit_values(layer, kind, unit, a, b), label=f"L{layer} {kind}{unit}",
                                       first=a), 440, text)
    st.caption(f"Characters {a:,} to {b - 1:,} of {src.name}, from the atlas's int8 states (within "
               f"{found.error_bound(layer, kind)[unit]:.2g} of the model's own values).")


def main():
    ctx = ui.require_model()
    st.title("Activations")
    tr = ctx.trace()
    controls(ctx)
    ss = st.session_state
    layer, kind, unit = int(ss["layer"]), ss["kind"], int(ss["unit"])
    values = tr.get(layer, kind)  # (T, H)
    labels, hyp_name, mask = None, "", None
    note = text_ui.best_unit_note(ctx)
    if note:
        st.caption(note)
    left, right = st.columns([2, 1])
    with right:  # first: the unit's text on the left shows the hypothesis's labels
        ui.default("sort_by", "selectivity")
        st.selectbox("Sort units by", list(SORTS), key="sort_by")
        ui.hypothesis_widgets()
        try:
            labels, hyp_name = ui.hypothesis_labels(tr.text)
        except RnnvizError as e:
            st.error(str(e), icon=":material/error:")
        # scored on the characters the hypothesis counts, as Neuron search scores it (the numbers agree)
        mask = hypothesis_mask(ss.get("hypothesis"), tr.text) if labels is not None else None
        stats = scored(ctx.key, tr.text, layer, kind, hyp_name if labels is not None else None,
                       _trace=tr, _labels=labels, _mask=mask)
        stats = stats.sort_values(SORTS[ss["sort_by"]], ascending=False, na_position="last").reset_index(drop=True)
        ss["_unit_order"] = stats["unit"].tolist()
        st.dataframe(stats, key="unit_table", on_select=pick_row, selection_mode="single-row", hide_index=True,
                     height=250, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                for c in ("variance", "mean_abs", "selectivity")})
        st.caption(f"Units of layer {layer} {kind}, by {ss['sort_by']}"
                   + (f" (selectivity: how well each follows {hyp_name})" if labels is not None else "")
                   + ". Click a row to show that unit.")
    with left:
        st.markdown(f"**Layer {layer}, {kind}{unit}** over the text: red positive, blue negative; hover a "
                    "character for its value.")
        ui.default("act_over_atlas", False)
        if st.toggle("Over the atlas corpus", key="act_over_atlas",
                     help="Show the unit anywhere in the atlas corpus (built on the Unit atlas page)."):
            atlas_window(ctx, layer, kind, unit)
        else:
            unit_text(tr, values[:, unit], f"L{layer} {kind}{unit}", labels, mask, hyp_name)

    units = stats["unit"].tolist()[:HEATMAP_UNITS]
    if unit not in units:
        units = [unit] + units[:-1]
    # a move of the window slider reruns and redraws only this part, not the page and its sidebar
    st.fragment(lambda: ui.guard(window, ctx.name, tr, values, units, layer, kind, ss["sort_by"]))()


def unit_text(tr, v, name: str, labels, mask, hyp_name: str) -> None:
    """The unit coloured over the text under study, on its own range, with the hypothesis's labels
    as a band under each character (yes/no hypotheses), so where the two disagree shows."""
    ui.default("act_band", True)
    counted = None if labels is None else (labels if mask is None else labels[mask])
    binary = counted is not None and is_binary(counted)
    band = None
    if st.toggle("Labels under the text", key="act_band", disabled=not binary,
                 help="A band under each character where the hypothesis holds (its label is 1)."):
        if binary:
            band = np.where(mask, labels, np.nan) if mask is not None else labels
    lim = render.robust_limit(v)
    ui.scroll_html(render.colored_text(tr.text, v, vmin=-lim, vmax=lim, label=name, band=band,
                                       band_label=hyp_name), 440, tr.text)
    words = (f"Colour on this unit's own range: full red at +{lim:.3g}, full blue at −{lim:.3g} (95% of its "
             f"|values| on this text lie within; beyond, the colour saturates), white at 0.")
    if band is not None and counted.size and counted.min() == counted.max():
        words += (f" *{hyp_name}* {'holds on every' if counted.max() else 'holds on none of the'} "
                  f"{counted.size:,} characters it counts in this text" + (" (the dotted band: those it does not "
                                                                            "count)" if mask is not None else "")
                  + ", so no unit can be scored against it here.")
    elif band is not None:
        words += (f" The purple band marks where *{hyp_name}* holds (label 1): a unit that follows it is "
                  "coloured one way above the band and the other way elsewhere.")
    elif labels is not None and not binary:
        words += f" *{hyp_name}* is a count, not yes/no: no band of labels for it."
    st.caption(words)


def window(name: str, tr, values, units: list[int], layer: int, kind: str, sort_by: str) -> None:
    """The window slider and what it drives: the heatmap, the predictions, the surprisal; the exports."""
    ss = st.session_state
    T = len(tr.text)
    ui.keep_in_range("window_start", 0, max(0, T - 1), 0)
    st.slider("Window start (character) for the heatmap and the predictions", 0, max(1, T - 1), key="window_start")
    start = int(ss["window_start"])
    end = min(T, start + WINDOW)
    ui.keep_choice("heat_scale", list(HEAT_SCALES), "shared")
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
    buf = io.BytesIO()
    tr.to_frame(layer, kind).to_parquet(buf, index=False)
    return buf.getvalue()


ui.run_page(main)
