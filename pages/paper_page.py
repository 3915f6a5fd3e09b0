"""The 2015 paper: Karpathy, Johnson & Fei-Fei's four quantitative results on our models, each beside what the paper
reported, in words computed from the numbers shown."""
import pandas as pd
import streamlit as st

import ui
from rnnviz import plots
from rnnviz.paper import words
from rnnviz.paper.reported import reported
from ui import paper as pui

REPORTED = reported()


def beside_the_paper(fig, key: str, finding: str, sentence: str, differs: str, also: str = "") -> None:
    """Our chart, with the paper's finding beside it, our result in words below and why they may differ."""
    left, right = st.columns([3, 1])
    left.plotly_chart(fig, key=key)
    found = REPORTED["findings"][finding]
    right.markdown(f"**The paper:** {found['text']}{' ' + also if also else ''}")
    right.caption(found["citation"])
    st.markdown(f"**Ours:** {sentence}")
    st.caption(f"What differs: {differs}")


def anchors() -> str:
    """The paper's published anchors, as its data records them."""
    return "Published anchors (test loss, nats/char): " + "; ".join(
        f"{a['model']} {a['loss']} against a {a['baseline']}'s {a['baseline_loss']} on {a['corpus']}"
        for a in REPORTED["table1_anchors"]) + "."


def grid_section() -> None:
    ss = st.session_state
    st.header("Table 1: cells, depths and budgets")
    shipped, own = pui.shipped_grid(), pui.own_grid()
    sources = (["your run"] if own else []) + (["shipped run"] if shipped else [])
    data = {"your run": own, "shipped run": shipped}
    job = pui.grid_job()
    if own and ss.get("paper_grid_seen") is not job:  # a run of yours just ended: show it
        ss["paper_grid_seen"], ss["paper_grid_source"] = job, "your run"
    if sources:
        ui.keep_choice("paper_grid_source", sources)
        src = st.radio("Results of", sources, key="paper_grid_source", horizontal=True) if len(sources) > 1 else sources[0]
        spec, rows = data[src]["spec"], data[src]["rows"]
        beside_the_paper(plots.grid_bars(rows), "paper_grid", "table1", words.grid_sentence(rows),
                         f"ours is {words.grid_setup(spec, rows, data[src].get('corpus', {}).get('train_chars'))} The paper trained on War and Peace and the Linux "
                         "kernel at its own budgets and reports test loss: the values differ, the ordering is what "
                         "compares.", also=anchors())
        st.caption(f"This run: `{data[src].get('command') or 'no command recorded'}`, on "
                   f"{data[src].get('machine') or 'an unrecorded machine'}. {data[src].get('note') or ''}")
    else:
        st.warning("No grid results are shipped here, and you have not run one yet.", icon=":material/warning:")
    if job is None or not job.active:
        st.button("Run it yourself: train the default grid", key="paper_grid_run", on_click=pui.start_grid,
                  icon=":material/play_arrow:", help="Queues the default grid (every cell, depth and budget above, "
                  "the same recipe and steps) in this server's training queue.")
    if ss.get("paper_grid_error"):
        st.error(ss["paper_grid_error"], icon=":material/error:")
    pui.grid_progress()


def saturation_section(ctx) -> None:
    st.header("Gate saturation by layer")
    if ctx.cell not in words.MEMORY_GATE:
        st.info(words.saturation_sentence(pd.DataFrame(), ctx.cell) + " Pick an LSTM or a GRU in the sidebar.",
                icon=":material/info:")
        return
    table, where = pui.saturation_of(ctx)
    if table is None:
        return
    beside_the_paper(plots.saturation_by_layer(table, ctx.cell), "paper_saturation", "saturation",
                     words.saturation_sentence(table, ctx.cell),
                     f"{ctx.name} ({ctx.cell.upper()}, {ctx.layers} × {ctx.hidden}) over {where}; change the model in "
                     "the sidebar. The paper's figure is of its own models, trained on its corpora.")


def onion_section() -> None:
    st.header("Peeling the onion: which errors does scale remove?")
    data = pui.shipped_analyses()
    if not data or not data.get("onion_comparison"):
        st.warning("The shipped error analysis is missing or damaged here.", icon=":material/warning:")
        return
    small, large = data["onion_comparison"]["small"], data["onion_comparison"]["large"]
    a, b = data["onion"][small], data["onion"][large]
    beside_the_paper(plots.onion_bars([a, b], [f"{small} ({a['params']:,} params)", f"{large} ({b['params']:,})"]),
                     "paper_onion", "onion", words.onion_sentence(a, b, small, large),
                     f"Over {a['chars']:,} held-out characters; n-gram oracle orders {a['orders'][0]} to "
                     f"{a['orders'][-1]} fitted on the training split, dynamic memory = the last {a['memory']} "
                     f"characters and this one occurred earlier, rare = seen at most {a['rare_max']} times in "
                     "training (docs/paper.md defines each category). The paper peeled its own LSTM's errors on "
                     "its corpora.")


def dynamics_section(ctx) -> None:
    st.header("Training dynamics: from low-order n-grams to high")
    result, whose, notice = pui.dynamics_of(ctx)
    if notice:
        st.info(notice, icon=":material/info:")
    if result is None:
        return
    beside_the_paper(plots.dynamics_curves(result["steps"], result["orders"], result["kl"]), "paper_dynamics",
                     "dynamics", words.dynamics_sentence(result["steps"], result["orders"], result["kl"], whose),
                     f"{whose}'s {len(result['steps'])} training snapshots, to step {result['steps'][-1]:,}, on "
                     "held-out text; Kneser–Ney n-grams fitted on its training split. The paper followed its own "
                     "LSTM's training on its corpora.")


def main():
    ctx = ui.require_model()
    st.title("The 2015 paper")
    st.caption("Karpathy, Johnson & Fei-Fei, *Visualizing and Understanding Recurrent Networks* (2015): its four "
               "quantitative results, measured on our models, each beside what the paper reported. The sentences "
               "are computed from the numbers in the charts; where ours do not show the paper's finding, they say so.")
    grid_section()
    saturation_section(ctx)
    onion_section()
    dynamics_section(ctx)


ui.run_page(main)
