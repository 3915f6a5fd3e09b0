"""Activations: one unit coloured over the text, a units x characters heatmap, predictions, exports."""
import streamlit as st

import ui
from ui import activations as aui
from ui import cell as cell_ui
from ui import text as text_ui
from rnnviz import lesson
from rnnviz.errors import RnnvizError
from rnnviz.hypotheses import hypothesis_mask

HEATMAP_UNITS = 48
SORTS = {"variance": "variance", "mean |activation|": "mean_abs", "selectivity": "selectivity"}


def main():
    ctx = ui.require_model()
    st.title("Activations")
    tr = ctx.trace()
    text_ui.unit_pickers(ctx, ["h", "c"] if ctx.cell == "lstm" else ["h"])
    ss = st.session_state
    layer, kind, unit = int(ss["layer"]), ss["kind"], int(ss["unit"])
    values = tr.get(layer, kind)  # (T, H)
    labels, hyp_name, mask = None, "", None
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
        stats = aui.scored(ctx.key, tr.text, layer, kind, hyp_name if labels is not None else None,
                           _trace=tr, _labels=labels, _mask=mask)
        stats = stats.sort_values(SORTS[ss["sort_by"]], ascending=False, na_position="last").reset_index(drop=True)
        ss["_unit_order"] = stats["unit"].tolist()
        st.dataframe(stats, key="unit_table", on_select=aui.pick_row, selection_mode="single-row", hide_index=True,
                     height=250, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                for c in ("variance", "mean_abs", "selectivity")})
        st.caption(f"Units of layer {layer} {kind}, by {ss['sort_by']}"
                   + (f" (selectivity: how well each follows {hyp_name})" if labels is not None else "")
                   + ". Click a row to show that unit.")
    with left:
        st.markdown(f"**Layer {layer}, {kind}{unit}** over the text: red positive, blue negative; hover a "
                    "character for its value.")
        # the toggle and the link share a row, so the coloured text starts where it did (the tour's
        # projector test checks it is in sight at 1280x800)
        toggle_col, link_col = st.columns([3, 2], vertical_alignment="center")
        cell_ui.link(layer, unit, lambda: lesson.cell_opening(tr.text, hyp_name, labels), key="act_to_cell",
                     kind=kind, where=link_col,
                     help="This unit's arithmetic, step by step, where the hypothesis first holds.")
        ui.default("act_over_atlas", False)
        if toggle_col.toggle("Over the atlas corpus", key="act_over_atlas",
                             help="Show the unit anywhere in the atlas corpus (built on the Unit atlas page)."):
            aui.atlas_window(ctx, layer, kind, unit)
        else:
            aui.unit_text(tr, values[:, unit], f"L{layer} {kind}{unit}", labels, mask, hyp_name)

    units = stats["unit"].tolist()[:HEATMAP_UNITS]
    if unit not in units:
        units = [unit] + units[:-1]
    # a move of the window slider reruns and redraws only this part, not the page and its sidebar
    st.fragment(lambda: ui.guard(aui.window, ctx.name, tr, values, units, layer, kind, ss["sort_by"]))()


ui.run_page(main)
