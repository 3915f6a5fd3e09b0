"""Features: a sparse dictionary over one layer's states, how well it stands in for them, every feature, and
the best unit against the best feature for every hypothesis; a click opens the feature's dashboard."""
import streamlit as st

import ui
from ui import features as fui
from rnnviz import plots
from rnnviz.features import words

ICONS = {"warning": ":material/warning:", "info": ":material/info:", "success": ":material/check_circle:"}
COLUMNS = ["feature", "score", "direction", "label", "frequency", "max", "flagged"]


def open_feature(i: int) -> None:
    st.session_state["feat_feature"] = int(i)
    st.session_state["_goto"] = "pages/feature_page.py"  # app.py switches there on the next run


def on_point() -> None:
    points = (st.session_state.get("feat_map") or {}).get("selection", {}).get("points", [])
    if points and points[0].get("customdata"):
        open_feature(int(points[0]["customdata"][0]))


def on_row() -> None:
    rows = (st.session_state.get("feat_table") or {}).get("selection", {}).get("rows", [])
    shown = st.session_state.get("_feat_rows")
    if rows and shown is not None and rows[0] < len(shown):
        open_feature(shown[rows[0]])


def main():
    ctx = ui.require_model()
    st.title("Features")
    st.markdown("A **feature** is a direction in one layer's state, found by a sparse autoencoder (TopK, after "
                "Gao et al. 2024): each character's state is rebuilt from the k features most active on it. "
                "One concept may be spread over many units, and one unit may mix many concepts: do the features "
                "track the hypotheses better than the units do? Click a point or a row to open a feature.")
    study = fui.panel(ctx)
    if study is None:
        return
    m = study.metrics
    st.subheader("How well the dictionary stands in for the state")
    st.markdown(words.metrics_sentence(m, fui.measured_words(study, fui.current(ctx)[1])))
    for row in (("fvu", "l0", "dead_fraction", "ce_recovered_out", "ce_recovered_rec"),
                ("loss", "loss_spliced_out", "loss_spliced_rec", "loss_zero")):
        for col, name in zip(st.columns(5), row):
            label, definition = words.METRICS[name]
            col.metric(label, words.metric_value(name, m[name]), help=definition)
    with st.expander("What each number means"):
        st.markdown("\n".join(f"- **{label}**: {definition}" for label, definition in words.METRICS.values()))

    st.subheader("Every feature")
    table = study.table.rename(columns={"column": "feature"})
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.feature_map(table), key="feat_map", on_select=on_point, selection_mode="points",
                      config={"displaylogo": False})
    shown = table.sort_values(["flagged", "score"], ascending=[True, False], kind="stable")[COLUMNS].reset_index(drop=True)
    st.session_state["_feat_rows"] = [int(i) for i in shown.feature]
    right.dataframe(shown, key="feat_table", on_select=on_row, selection_mode="single-row", hide_index=True,
                    height=440, column_config={"frequency": st.column_config.NumberColumn(format="%.4f"),
                                               **{c: st.column_config.NumberColumn(format="%.3f")
                                                  for c in ("max", "score")}})
    st.caption(f"Over {fui.measured_words(study, fui.current(ctx)[1])}: how often each feature fires, "
               "its largest activation, and the hypothesis it follows best, best first (a label resting on too "
               "little evidence is flagged, and ranks after every other).")

    st.subheader("Units against features")
    level, verdict = words.comparison_verdict(study.comparison)
    getattr(st, level)(verdict, icon=ICONS[level])
    st.dataframe(words.comparison_table(study.comparison), hide_index=True, height=36 * (len(study.comparison) + 1) + 3,
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("unit score", "unit chance", "feature score", "feature chance")})
    st.plotly_chart(plots.units_vs_features(study.comparison), key="feat_vs_units", config={"displaylogo": False})
    st.caption("For each hypothesis that varies on the text, the best unit of every layer's h and c beside the best "
               "feature, scored as on Neuron search (AUROC either way for yes/no, |r| for counts); chance is the best "
               "score any unit (or feature) reaches against the labels shifted round the text, and the evidence is "
               "how many characters and separate spans the hypothesis holds on.")


ui.run_page(main)
