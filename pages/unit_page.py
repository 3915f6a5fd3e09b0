"""Unit dashboard: one unit over the whole atlas corpus: its top and bottom contexts, its distribution,
its labels, its memory, and what it does to the prediction."""
import html

import streamlit as st

import ui
from ui import atlas as atlas_ui
from ui import circuit as circuit_ui
from ui import dashboard as dashboard_ui
from ui import cell as cell_ui
from rnnviz import dashboard, plots, render
from rnnviz.probes import direction_words

TOP = 8


def show_contexts(items, layer, kind, unit):
    note = dashboard.fewer_peaks_note(len(items), TOP)
    if note:
        st.caption(note)
    for c in items:
        st.html(f"<div style='font-size:0.8em;color:#666'>#{c['pos']:,}: {c['value']:+.3f}</div>"
                + render.colored_text(c["text"], c["values"], label=f"L{layer} {kind}{unit}", mark=c["peak"],
                                      first=c["start"]))


def go(page: str, **state) -> None:
    st.session_state.update(state)
    st.session_state["_goto"] = page


def main():
    ctx = ui.require_model()
    st.title("Unit dashboard")
    atlas = atlas_ui.panel(ctx)
    if atlas is None:
        return
    ui.unit_controls(ctx, list(atlas.kinds))
    ss = st.session_state
    layer, kind, unit = int(ss["layer"]), ss.get("kind", "h") if ctx.cell == "lstm" else "h", int(ss["unit"])
    row = dashboard.unit_map(atlas).query("layer == @layer and kind == @kind and unit == @unit").iloc[0]
    labels = atlas.labels().query("layer == @layer and kind == @kind and unit == @unit")
    labels = labels.sort_values(["flagged", "score"], ascending=[True, False], kind="stable").head(4)
    words = [f"**{direction_words(r.direction, r.hypothesis, bool(r.binary))}**: score {r.score:.3f}"
             + (f" (AUROC {r.auroc:.3f})" if r.binary else f" (r = {r.corr:+.3f})")
             + (f", ⚠ not a detector: {r.reason}" if r.flagged else f", {int(r.positives):,} characters in "
                f"{int(r.spans):,} spans") for r in labels.itertuples()]
    memory = dashboard.unit_tau(atlas, layer, unit)
    gate = "f" if ctx.cell == "lstm" else "z"
    st.markdown(f"### Layer {layer}, {kind}{unit}\n"
                + "\n".join(f"- {w}" for w in words)
                + (f"\n- memory: mean {gate} of this unit {row[f'{gate}_mean']:.3f}, so τ = −1/ln {gate}̄ = "
                   f"{memory:.1f} characters" if memory is not None else "")
                + f"\n- over {len(atlas):,} characters: mean {row['mean']:+.3f}, std {row['std']:.3f}, "
                  f"from {row['min']:+.3f} to {row['max']:+.3f}; |a| < 0.1 on {row['sparsity']:.0%} of them")
    c1, c2, c3, _ = st.columns([1, 1, 1, 2])
    c1.button("Show in Activations", key="unit_to_act", icon=":material/format_color_text:", on_click=go,
              args=("pages/activations_page.py",))
    c2.button("Clamp it in Sample", key="unit_to_clamp", icon=":material/edit_note:", on_click=go,
              args=("pages/sample_page.py",), kwargs=dict(clamp_layer=layer, clamp_kind=kind, clamp_unit=unit,
                                                          clamp_on=True))
    cell_ui.link(layer, unit, key="unit_to_cell", kind=kind, where=c3,
                 help="This unit's arithmetic, step by step, on the text under study (Inside the cell).")
    st.button("How it was computed: a prediction at its strongest place", key="unit_to_circuit",
              icon=":material/account_tree:", on_click=circuit_ui.open_place,
              args=(ctx.key, atlas, layer, kind, unit, "the atlas corpus"))
    best = labels[~labels.flagged.astype(bool)].head(1)
    low_first = len(best) and best.direction.iloc[0] == "low"  # the side its best label speaks of first
    for col, which in zip(st.columns(2), ("bottom", "top") if low_first else ("top", "bottom")):
        with col:
            st.markdown(f"**{'Highest' if which == 'top' else 'Lowest'}** places (the peak character outlined, "
                        f"±{dashboard.CONTEXT} characters; no two peaks within {dashboard.SEPARATION} characters)")
            show_contexts(dashboard.contexts(atlas, layer, kind, unit, which, TOP), layer, kind, unit)
    left, right = st.columns(2)
    counts, edges = atlas.histogram(layer, kind, unit)
    left.plotly_chart(plots.unit_histogram(counts, edges, f"L{layer} {kind}{unit} over the corpus"),
                      key="unit_hist", config={"displaylogo": False})
    with right:
        st.markdown("**Examples from each decile** (lowest first)")
        for band in dashboard.decile_examples(atlas, layer, kind, unit, n=1):
            for c in band["contexts"]:
                st.html(f"<div style='font-size:0.8em;color:#666'>decile {band['decile']} "
                        f"[{band['low']:+.2f}, {band['high']:+.2f}]</div>"
                        + render.colored_text(c["text"], c["values"], label=f"{kind}{unit}", mark=c["peak"],
                                              first=c["start"]))
    st.download_button("Download what this dashboard plots (CSV)", key="unit_csv", icon=":material/download:",
                       data=dashboard.unit_csv(atlas, layer, kind, unit, TOP),
                       file_name=f"unit-L{layer}-{kind}{unit}.csv", mime="text/csv",
                       help="One row per context (its exact peak value, its text and the stored value of every "
                            "character), per histogram bin and per decile example; the column `section` says which.")
    effect_section(ctx, atlas, layer, kind, unit)


def effect_section(ctx, atlas, layer, kind, unit):
    st.subheader("What it does to the prediction")
    if kind == "h" and layer == ctx.layers - 1:
        st.html(dashboard.logit_effect_html(*dashboard.logit_effect(ctx.model, unit)))
    mean = dashboard.hold_value(atlas, layer, kind, unit, "mean")
    words = {"zero": "0", "mean": f"its corpus mean ({mean:+.3f})"}
    how = st.radio("Hold it at", list(dashboard.HOLDS), key="unit_hold", horizontal=True, format_func=words.get,
                   help="Zero ablation sets the unit to 0, which may itself be a meaningful value (for a quote "
                        "unit, 0 can mean 'inside a string'); mean ablation sets it to its average over the corpus.")
    key = dashboard_ui.ablation_key(atlas, layer, kind, unit, how)
    ab = dashboard_ui.result(key)
    if ab is None and dashboard_ui.running(key):
        dashboard_ui.progress(key)
        return
    if ab is None:
        if dashboard_ui.last_error(key):
            st.error(f"The last run failed: {dashboard_ui.last_error(key)}", icon=":material/error:")
        st.caption(f"Runs the model over all {len(atlas):,} characters twice, once with the unit held at every "
                   "step: from a few seconds to about a minute. The result is kept for this atlas.")
        if st.button(f"Measure: hold it at {words[how]} over all {len(atlas):,} characters", key="unit_ablate",
                     icon=":material/science:"):
            dashboard_ui.start(ctx.model, atlas, layer, kind, unit, how)
            dashboard_ui.progress(key)
        return
    pos, most = ab.most_changed(0.01)
    st.markdown(f"Held at {words[how]}, the loss changes by **{ab.mean_change():+.4f} nats/char** on average over "
                f"the corpus ({len(atlas):,} characters), and by **{most:+.3f}** on the 1% of characters it changes "
                f"most ({len(pos):,} characters; positive: the unit helped predict them).")
    for p in pos[:4]:
        c = dashboard.window(atlas, layer, kind, unit, int(p) + 1, width=30)
        target = html.escape(repr(render.char_label(atlas.text[int(p) + 1])), quote=False)
        st.html(f"<div style='font-size:0.8em;color:#666'>predicting #{int(p) + 1:,} {target}: "
                f"loss {ab.base[p]:.2f} → {ab.held[p]:.2f}</div>"
                + render.colored_text(c["text"], c["values"], label=f"{kind}{unit}", mark=c["peak"],
                                      first=c["start"]))


ui.run_page(main)
