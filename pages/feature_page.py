"""Feature dashboard: one feature of the dictionary over its text: where it fires most, its distribution and
labels, what its decoder direction does to the prediction, the units it loads on, and the loss without it."""
import streamlit as st

import ui
from ui import features as fui
from rnnviz import dashboard, plots, render
from rnnviz.features import logit_effect, loadings
from rnnviz.features import words as fwords
from rnnviz.probes import direction_words

TOP = 8


def go(page: str, **state) -> None:
    st.session_state.update(state)
    st.session_state["_goto"] = page


def context_html(c: dict, label: str, head: str) -> str:
    return (f"<div style='font-size:0.8em;color:#666'>{head}</div>"
            + render.colored_text(c["text"], c["values"], label=label, mark=c["peak"], first=c["start"]))


def main():
    ctx = ui.require_model()
    st.title("Feature dashboard")
    study, key = fui.ready(ctx)
    if study is None:
        st.info("No dictionary is ready for this model with the settings chosen on Features: train one there.",
                icon=":material/info:")
        st.page_link("pages/features_page.py", label="Features", icon=":material/scatter_plot:")
        return
    d = study.dictionary
    ui.keep_in_range("feat_feature", 0, d.d_sae - 1, fui.default_feature(study))
    st.columns([1, 3])[0].number_input(f"Feature (0 to {d.d_sae - 1:,})", 0, d.d_sae - 1, step=1, key="feat_feature")
    i = int(st.session_state["feat_feature"])
    view = fui.feature_view(key, i, _study=study)
    row = study.table.iloc[i]
    labels = study.labels.query("column == @i").sort_values(["flagged", "score"], ascending=[True, False],
                                                           kind="stable").head(4)
    bullets = [f"**{direction_words(r.direction, r.hypothesis, bool(r.binary))}**: score {r.score:.3f}"
               + (f" (AUROC {r.auroc:.3f})" if r.binary else f" (r = {r.corr:+.3f})")
               + (f", ⚠ not a detector: {r.reason}" if r.flagged else
                  f", {int(r.positives):,} characters in {int(r.spans):,} spans") for r in labels.itertuples()]
    st.markdown(f"### Feature {i} of layer {d.layer} {d.state}\n" + "\n".join(f"- {b}" for b in bullets)
                + f"\n- fires on {view['fires']:,} ({row['frequency']:.2%}) of "
                  f"{fui.measured_words(study, fui.current(ctx)[1])}; largest activation {row['max']:.3f}")
    st.button("Steer with it in Sample", key="feat_to_steer", icon=":material/edit_note:", on_click=go,
              args=("pages/sample_page.py",), kwargs=dict(steer_on=True, steer_feature=i, clamp_on=False,
                                                          steer_alpha=float(f"{row['max']:.3g}")))
    st.caption(fwords.steer_caption(i, d.layer, d.state, float(row["max"])) + ".")
    st.markdown(f"**Highest** places (the peak character outlined, ±{dashboard.CONTEXT} characters; no two peaks "
                f"within {dashboard.SEPARATION} characters)")
    note = dashboard.fewer_peaks_note(len(view["top"]), TOP)
    if note:
        st.caption(note)
    for c in view["top"]:
        st.html(context_html(c, f"feature {i}", f"#{c['pos']:,}: {c['value']:+.3f}"))
    left, right = st.columns(2)
    with left:
        counts, edges = view["hist"]
        st.plotly_chart(plots.unit_histogram(counts, edges, f"Feature {i} where it fires ({view['fires']:,} "
                                                            "characters; 0 elsewhere)"),
                        key="feat_hist", config={"displaylogo": False})
        st.plotly_chart(plots.feature_density(study.table["frequency"].to_numpy(), i), key="feat_density",
                        config={"displaylogo": False})
    with right:
        st.markdown("**Examples from each decile** of its values where it fires (lowest first)")
        for band in view["deciles"]:
            for c in band["contexts"]:
                st.html(context_html(c, f"feature {i}", f"decile {band['decile']} [{band['low']:.3g}, "
                                                        f"{band['high']:.3g}]"))
    effect_section(ctx, study, key, i)


def effect_section(ctx, study, key: str, i: int) -> None:
    d = study.dictionary
    st.subheader("What it does to the prediction")
    if d.state == "h" and d.layer == ctx.layers - 1:
        st.plotly_chart(plots.feature_logit_effect(logit_effect(ctx.model, d, i), list(ctx.model.vocab.chars)),
                        key="feat_logits", config={"displaylogo": False})
    else:
        st.caption(f"No logit effect: the output layer reads the top layer's h, and this dictionary reads layer "
                   f"{d.layer}'s {d.state}.")
    pairs = loadings(d, i, 10)
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.feature_loadings(pairs, d.layer, d.state), key="feat_loadings",
                      config={"displaylogo": False})
    with right:
        st.markdown("**Open a unit's dashboard**")
        for n, (u, w) in enumerate(pairs[:5]):
            st.button(f"L{d.layer} {d.state}{u} ({w:+.3f})", key=f"feat_unit_{n}", icon=":material/dashboard:",
                      on_click=go, args=("pages/unit_page.py",), kwargs=dict(layer=d.layer, kind=d.state, unit=u))
    delta = fui.removal(key, i, _model=ctx.model, _study=study)  # two spliced runs: last, so the rest shows first
    st.markdown(f"Removed from the reconstruction spliced in where the output layer reads the state, the loss "
                f"changes by **{delta:+.5f} nats/char** over the {len(study.text):,} characters (positive: the "
                "feature helped predict them).")


ui.run_page(main)
