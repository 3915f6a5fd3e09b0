"""Unit atlas: every unit of the model over a whole corpus, labelled, on one map; a click opens its dashboard."""
import streamlit as st

import ui
from ui import atlas as atlas_ui
from ui.models import _safe_name
from rnnviz import atlas as atlas_lib
from rnnviz import dashboard, plots

COLUMNS = ["layer", "kind", "unit", "label", "direction", "score", "flagged", "tau", "sparsity", "mean", "std"]


@st.cache_data(max_entries=8, show_spinner="Reading the atlas ...")
def unit_table(atlas_key: str, _atlas):
    return dashboard.unit_map(_atlas)


def open_unit(layer: int, kind: str, unit: int) -> None:
    ss = st.session_state
    ss["layer"], ss["kind"], ss["unit"] = int(layer), str(kind), int(unit)
    ss["_goto"] = "pages/unit_page.py"  # app.py switches there on the next run


def on_point() -> None:
    points = (st.session_state.get("atlas_map") or {}).get("selection", {}).get("points", [])
    if points and points[0].get("customdata"):
        layer, kind, unit = points[0]["customdata"][:3]
        open_unit(layer, kind, unit)


def on_row() -> None:
    rows = (st.session_state.get("atlas_table") or {}).get("selection", {}).get("rows", [])
    shown = st.session_state.get("_atlas_rows")
    if rows and shown is not None and rows[0] < len(shown):
        open_unit(*shown[rows[0]])


def main():
    ctx = ui.require_model()
    st.title("Unit atlas")
    st.markdown("Every unit of the model over a whole corpus (by default its held-out split): where it fires, "
                "how long it remembers, and the hypothesis it follows best. Click a point or a row to open the "
                "unit's dashboard.")
    atlas = atlas_ui.panel(ctx)
    if atlas is None:
        return
    df = unit_table(atlas.path.name if atlas.path else str(id(atlas)), _atlas=atlas)
    c1, c2, c3, c4 = st.columns(4)
    layers = c1.multiselect("Layers", sorted(df.layer.unique()), key="atlas_layers")
    kinds = c2.multiselect("States", sorted(df.kind.unique()), key="atlas_kinds")
    labels = c3.multiselect("Best label", sorted(df.label.dropna().unique()), key="atlas_labels")
    ui.default("atlas_min_score", 0.5)
    least = c4.slider("Least score", 0.0, 1.0, step=0.05, key="atlas_min_score")
    shown = df[(df.score.fillna(0) >= least) & (~df.flagged.fillna(False).astype(bool))
               & (df.layer.isin(layers) if layers else True) & (df.kind.isin(kinds) if kinds else True)
               & (df.label.isin(labels) if labels else True)]
    st.caption(f"{len(shown):,} of {len(df):,} units (units whose best label rests on too little evidence are "
               "left out).")
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.unit_map(shown), key="atlas_map", on_select=on_point, selection_mode="points",
                      config={"displaylogo": False})
    table = shown.sort_values("score", ascending=False)[[c for c in COLUMNS if c in shown]].reset_index(drop=True)
    st.session_state["_atlas_rows"] = list(zip(table.layer, table.kind, table.unit))
    right.dataframe(table, key="atlas_table", on_select=on_row, selection_mode="single-row", hide_index=True,
                    height=480, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                               for c in ("score", "tau", "sparsity", "mean", "std")})
    lstmvis_export(ctx, atlas)
    st.subheader("The best unit for each hypothesis")
    best = atlas.best_units()
    st.dataframe(best[["hypothesis", "layer", "kind", "unit", "direction", "score", "positives", "spans", "flagged",
                       "reason"]], hide_index=True,
                 column_config={"score": st.column_config.NumberColumn(format="%.3f")})


def lstmvis_export(ctx, atlas) -> None:
    """The atlas as LSTMVis's files in one zip: all of it, or a window of it when that is too large."""
    with st.expander("Export for LSTMVis", icon=":material/download:"):
        T = len(atlas)
        n = min(T, atlas_ui.LSTMVIS_MAX_BYTES // atlas_lib.lstmvis_size(atlas, 0, 1))
        start = 0
        if n < T:
            ui.keep_in_range("atlas_lstmvis_start", 0, T - n, 0)
            start = int(st.number_input(f"First character (the download holds {n:,} of {T:,})", 0, T - n,
                                        step=max(1, n // 4), key="atlas_lstmvis_start"))
            st.caption(f"All {T:,} characters would be {atlas_lib.lstmvis_size(atlas) / 2**20:,.0f} MB of arrays, "
                       f"more than a download here holds ({atlas_ui.LSTMVIS_MAX_BYTES / 2**20:,.0f} MB). "
                       "For all of them: "
                       "`python -m rnnviz atlas MODEL --export-lstmvis DIR`.")
        end = start + n
        L = atlas.num_layers
        layer = "1" if L == 1 else "{l}"
        states = (f"`states{layer}` (the cell state c) and `output{layer}` (h)" if "c" in atlas.kinds
                  else f"`output{layer}` (h)")
        st.markdown(f"Characters {start:,} to {end:,} of the atlas corpus, in the files LSTMVis reads: "
                    f"`states.h5` holds {'' if L == 1 else f'per layer l = 1..{L} '}{states}, each ({end - start:,} "
                    f"characters × {atlas.hidden_size} units) float32, the atlas's stored int8 states "
                    "dequantised (within its error bound); `train.h5` each character's vocabulary id; "
                    "`words.dict` the vocabulary; `lstm.yml` the configuration. Unzip the folder into LSTMVis's "
                    "data directory.")
        vocab = ctx.model.vocab.chars
        st.download_button(f"LSTMVis files ({atlas_lib.lstmvis_size(atlas, start, end) / 2**20:,.1f} MB before "
                           "compression)", data=lambda: atlas_lib.lstmvis_zip(atlas, vocab, start, end),
                           file_name=f"lstmvis-{_safe_name(f'{ctx.name}-{atlas.name}')}-{start}-{end}.zip",
                           mime="application/zip", key="atlas_lstmvis", icon=":material/download:",
                           on_click="ignore")


ui.run_page(main)
