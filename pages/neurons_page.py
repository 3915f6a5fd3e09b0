"""Neuron search: rank every unit of every layer by how well it tracks a hypothesis."""
import streamlit as st

import ui
from rnnviz import plots, render
from rnnviz.errors import RnnvizError
from rnnviz.probes import direction_words, is_binary, rank_units

SHOW_CHARS = 1500
TOP = 3


@st.cache_data(max_entries=16, show_spinner="Ranking units ...")
def ranked(model_key: str, text: str, hypothesis: str, _labels, _trace):
    return rank_units(_trace, _labels)


def send_to_activations(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["layer"], ss["kind"], ss["unit"] = layer, kind, unit
    st.switch_page("pages/activations_page.py")


def send_to_clamp(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["clamp_layer"], ss["clamp_kind"], ss["clamp_unit"], ss["clamp_on"] = layer, kind, unit, True
    st.switch_page("pages/sample_page.py")


def main():
    ctx = ui.require_model()
    st.title("Neuron search")
    st.markdown("Pick a hypothesis about the text; every unit (h, and c for an LSTM) of every layer is scored by "
                "how well it follows it, whichever way. For yes/no hypotheses, **AUROC** is the chance that the "
                "unit is higher on a character where the hypothesis holds than on one where it does not: near 1 "
                "for a unit *high* there, near 0 for a unit *low* there; **score** = max(AUROC, 1 − AUROC). "
                "For counts, score = |correlation r|, and a unit *rises* or *falls* with the count.")
    tr = ctx.trace()
    ui.hypothesis_widgets()
    try:
        labels, name = ui.hypothesis_labels(tr.text)
    except RnnvizError as e:
        st.error(str(e), icon=":material/error:")
        return
    if labels is None:
        st.info("Type a regular expression to search for.", icon=":material/info:")
        return
    if labels.min() == labels.max():
        st.warning(f"The hypothesis {name} has the same value on every character of this text, so nothing can "
                   "track it. Choose another one, or another text in the sidebar.", icon=":material/warning:")
        return
    df = ranked(ctx.key, tr.text, name, _labels=labels, _trace=tr)
    binary = is_binary(labels)
    words = [direction_words(d, name, binary) for d in df.direction]
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
    st.subheader("The hypothesis and the best units")
    st.markdown(f"**Hypothesis: {name}**")
    ui.scroll_html(render.colored_text(tr.text[:n], labels[:n], diverging=False, label=name), 200, tr.text[:n])
    for i, row in df.head(TOP).iterrows():
        layer, kind, unit = int(row.layer), str(row.kind), int(row.unit)
        how = f"AUROC {row.auroc:.3f}, score {row.score:.3f}" if binary else f"r {row['corr']:+.3f}"
        st.markdown(f"**#{i + 1}: layer {layer} {kind}{unit}**: {words[i]} ({how})")
        ui.scroll_html(render.colored_text(tr.text[:n], tr.get(layer, kind)[:n, unit], label=f"L{layer} {kind}{unit}"),
                       200, tr.text[:n])
        c1, c2, _ = st.columns([1, 1, 2])
        if c1.button("Show in Activations", key=f"act_{i}", icon=":material/format_color_text:"):
            send_to_activations(layer, kind, unit)
        if c2.button("Clamp it in Sample", key=f"clamp_{i}", icon=":material/edit_note:"):
            send_to_clamp(layer, kind, unit)


ui.run_page(main)
