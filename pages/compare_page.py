"""Compare: the model under study against the n-gram baseline or another model, character by character."""
import streamlit as st

import ui
from rnnviz import compare, ngram, plots, render
from ui import compare as cui
from ui.compare import HELD, NGRAM, OTHER, STUDY

CHART = {"displaylogo": False}
SHOWN = 2_000  # characters of coloured text at a time
MAX_CHARS = 200_000

INTRO = """
Karpathy, Johnson & Fei-Fei (2015) asked *where* an LSTM beats an n-gram model. Their answer: on characters whose
prediction needs something seen long ago, like the closing quote or bracket far from its opener, which no 8-gram can
see. Here the model under study (**A**) is set against an interpolated Kneser–Ney n-gram fitted on A's own training
split, or against another model (**B**), on the same text. Surprisal is −log p of the true next character, in nats.
"""


def controls(ctx):
    ss = st.session_state
    ui.default("cmp_against", NGRAM)
    ui.default("cmp_order", 8)
    ui.default("cmp_text", HELD)
    ui.default("cmp_chars", 30_000)
    ui.keep_choice("cmp_against", [NGRAM, OTHER], NGRAM)
    top = min(10, ngram.max_order(len(ctx.model.vocab)))  # int64 codes: V**order < 2**63
    ui.keep_in_range("cmp_order", 1, top, min(8, top))
    ui.keep_choice("cmp_text", [HELD, STUDY], HELD)
    ui.keep_in_range("cmp_chars", 1_000, MAX_CHARS, 30_000)
    c1, c2, c3 = st.columns([1, 1, 1])
    c1.radio("Compare A against", [NGRAM, OTHER], key="cmp_against")
    if ss["cmp_against"] == NGRAM:
        c2.slider("n-gram order", 1, top, key="cmp_order",
                  help="An order-n model predicts from the last n − 1 characters (8: the 2015 paper's baseline).")
    else:
        choices = cui.other_choices(ctx)
        if not choices:
            c2.info("No other model is here: train or upload one, or compare against the n-gram.")
        else:
            ui.keep_choice("cmp_other", list(choices))
            c2.selectbox("Model B", list(choices), key="cmp_other", format_func=lambda k: choices[k].label)
    c3.radio("Text", [HELD, STUDY], key="cmp_text",
             help="The held-out text has enough closing quotes and brackets to count; the text under study is "
                  "the one the sidebar chose.")
    if ss["cmp_text"] == HELD:
        c3.number_input("Characters of it (from its start)", 1_000, MAX_CHARS, step=10_000, key="cmp_chars")


def main():
    ctx = ui.require_model()
    st.title("Compare")
    st.markdown(INTRO)
    controls(ctx)
    res, notices, what = cui.comparison(ctx)
    for n in notices:
        st.info(n, icon=":material/info:")
    if res is None:
        return
    A, B = res.a.name, res.b.name
    left = compare.left_out_message(res)
    if left:
        st.info(left, icon=":material/info:")
    ma, mb = res.mean()
    c1, c2, c3 = st.columns(3)
    c1.metric(f"A: {A}", f"{ma:.3f} nats/char")
    c2.metric(f"B: {B}", f"{mb:.3f} nats/char")
    c3.metric("characters compared", f"{int(res.kept.sum()):,}")
    st.caption(f"Mean surprisal −log p of each next character, in nats, over the {int(res.kept.sum()):,} characters "
               f"compared: every character but the first of {what}"
               + (", less those left out above." if res.left_out else ".") + " Every number below is over them.")
    cui.downloads(res)
    st.markdown(f"**In short.** {compare.summary(res)}")
    words = compare.closing_words(res)
    if words:
        st.markdown(f"**Closing delimiters.** {words}")
    else:
        st.markdown("**Closing delimiters.** No distance group of this text holds 20 closing brackets or 20 "
                    "closing quotes, too few to compare accuracies. Code has plenty: python-lstm's held-out files "
                    "show where memory beats the n-gram.")
        py = cui.python_entry(ctx)
        if py:
            st.button("Study python-lstm against the 8-gram", key="cmp_python", on_click=cui.study, args=(py,),
                      icon=":material/code:")

    st.subheader("Where each model wins, character by character")
    st.caption(f"Each character is shaded by {A}'s surprisal minus {B}'s on it: **blue = A predicted it better, "
               f"red = B did**, white = a draw, grey = not compared. Hover for the value (nats).")
    n = len(res.text)
    ui.keep_in_range("cmp_start", 0, max(0, n - 1), 0)
    if n > SHOWN:
        st.number_input(f"Show {SHOWN:,} characters from position (0 to {n - 1:,})", 0, n - 1, step=SHOWN,
                        key="cmp_start")
    s = int(st.session_state["cmp_start"]) if n > SHOWN else 0
    vals, lim = compare.shading(res, s, SHOWN)
    ui.scroll_html(render.colored_text(res.text[s:s + SHOWN], vals, vmin=-lim, vmax=lim, label="A−B nats",
                                       first=s), height=360, text=res.text[s:s + SHOWN])

    st.subheader("By character class")
    st.caption("The 2015 paper's breakdown. A closing bracket or quote is grouped by its distance to its opener "
               "(d6–20: 6 to 20 characters back). Classes overlap; a character takes the first that applies: "
               "closing bracket, closing quote, after a newline, inside a string, word start, other.")
    bd = res.breakdown()
    st.plotly_chart(plots.class_breakdown(bd, A, B), config=CHART)
    st.dataframe(bd.rename(columns={"mean_a": f"A {A}", "mean_b": f"B {B}", "diff": "A − B",
                                    "a_wins": "share A lower"}),
                 hide_index=True, column_config={"share A lower": st.column_config.NumberColumn(format="percent")})

    st.subheader("Closing brackets and quotes: accuracy against distance")
    st.caption("Accuracy = the model's top guess is the true next character. A model that remembers the opener "
               "keeps its accuracy as the distance grows; an n-gram sees only its last n − 1 characters.")
    acc = res.accuracy()
    st.plotly_chart(plots.accuracy_vs_distance(acc), config=CHART)
    with st.expander("The numbers"):
        st.dataframe(acc, hide_index=True)

    st.subheader("Along the text")
    st.plotly_chart(plots.difference_by_position(res.text, res.diff, A, B), config=CHART)


ui.run_page(main)
