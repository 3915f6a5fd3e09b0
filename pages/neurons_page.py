"""Neuron search: rank every unit of every layer by how well it tracks a hypothesis, with the
evidence the score rests on (how many characters and separate spans) and its chance level."""
import streamlit as st

import ui
from ui import neurons as nui
from rnnviz import plots, render
from rnnviz.errors import RnnvizError
from rnnviz.hypotheses import hypothesis_mask
from rnnviz.probes import plural, search_summary

SHOW_CHARS = 1500
ICONS = {"warning": ":material/warning:", "info": ":material/info:", "success": ":material/check_circle:"}


def main():
    ctx = ui.require_model()
    st.title("Neuron search")
    st.markdown("Pick a hypothesis about the text; every unit (h, and c for an LSTM) of every layer is scored by "
                "how well it follows it, whichever way. For yes/no hypotheses, **AUROC** is the chance that the "
                "unit is higher on a character where the hypothesis holds than on one where it does not: near 1 "
                "for a unit *high* there, near 0 for a unit *low* there; **score** = max(AUROC, 1 − AUROC). "
                "For counts, score = |correlation r|, and a unit *rises* or *falls* with the count. "
                "A score is only as good as what it rests on: the page says on how many characters and separate "
                "spans the hypothesis holds, and what the best unit scores by chance.")
    ui.default("rank_over", "the text under study")
    over = st.radio("Rank over", ["the text under study", "the atlas corpus"], key="rank_over", horizontal=True,
                    help="The atlas corpus is the whole held-out split (or the corpus chosen on Unit atlas).")
    tr = ctx.trace()
    ui.hypothesis_widgets()
    if over == "the atlas corpus":
        nui.atlas_ranking(ctx)
        return
    try:
        labels, name = ui.hypothesis_labels(tr.text)
    except RnnvizError as e:
        st.error(str(e), icon=":material/error:")
        return
    if labels is None:
        st.info("Type a regular expression to search for.", icon=":material/info:")
        return
    mask = hypothesis_mask(name, tr.text)  # None: every character counts
    counted = labels if mask is None else labels[mask]
    if counted.size == 0 or counted.min() == counted.max():
        st.warning(f"The hypothesis {name} has the same value on every character of this text"
                   f"{'' if mask is None else ' that it counts'}, so nothing can track it. Choose another one, "
                   "or another text in the sidebar.", icon=":material/warning:")
        return
    df = nui.ranked(ctx.key, tr.text, name, _labels=labels, _mask=mask, _trace=tr)
    summary = search_summary(df, labels, mask, name)
    ev, binary = summary["evidence"], summary["binary"]
    st.markdown(summary["evidence_text"])
    if mask is not None:
        st.caption(f"Counted: {ev['counted']:,} of {len(labels):,} characters. Docstrings, multi-line strings, "
                   "comments and what tokenize cannot read are left out, so the score sets one-line strings "
                   "against code.")
    level, verdict = summary["verdict"]
    getattr(st, level)(verdict, icon=ICONS[level])
    left, right = st.columns([1, 1])
    with left:
        st.caption(f"All {len(df):,} units, best first ({'AUROC' if binary else 'correlation'} with {name}).")
        st.dataframe(df.assign(direction=summary["words"])[nui.columns(binary)], hide_index=True, height=420,
                     column_config=nui.score_columns())
    with right:
        st.plotly_chart(plots.unit_scores(df, top=20), key="unit_scores", config={"displaylogo": False})

    n = min(len(tr.text), SHOW_CHARS)
    st.subheader("The hypothesis and the best-scoring units, not detectors" if ev["flagged"]
                 else "The hypothesis and the best units")
    st.markdown(f"**Hypothesis: {name}** ({plural(ev['positives'], 'character')} in "
                f"{plural(ev['spans'], 'span')})")
    ui.scroll_html(render.colored_text(tr.text[:n], labels[:n], diverging=False, label=name), 200, tr.text[:n])
    nui.best_units(tr, df, summary, n)


ui.run_page(main)
