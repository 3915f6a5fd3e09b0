"""Compare: the model under study against the n-gram baseline or another model, character by character."""
import re

import numpy as np
import streamlit as st

import ui
from rnnviz import compare, corpora, ngram, plots, render
from rnnviz.errors import RnnvizError

CHART = {"displaylogo": False}
NGRAM, OTHER = "the n-gram baseline", "another model"
HELD, STUDY = "the model's held-out text", "the text under study"
SHOWN = 2_000  # characters of coloured text at a time
MAX_CHARS = 200_000

INTRO = """
Karpathy, Johnson & Fei-Fei (2015) asked *where* an LSTM beats an n-gram model. Their answer: on characters whose
prediction needs something seen long ago, like the closing quote or bracket far from its opener, which no 8-gram can
see. Here the model under study (**A**) is set against an interpolated Kneser–Ney n-gram fitted on A's own training
split, or against another model (**B**), on the same text. Surprisal is −log p of the true next character, in nats.
"""


@st.cache_resource(max_entries=6, show_spinner="Fitting the n-gram on the model's training split (seconds, "
                                               "the first time) ...")
def fitted_ngram(model_key: str, order: int, _config, _vocab):
    """An order-n n-gram on the training split of this model's corpus, with the model's vocabulary (disk-cached)."""
    train, notice = ngram.training_text(_config)
    return ngram.fit_cached(train, order, _vocab), notice


@st.cache_data(max_entries=4, show_spinner="Reading the held-out text ...")
def held_text(model_key: str, _config):
    return corpora.held_out_text(_config)


@st.cache_data(max_entries=8, show_spinner="Scoring the text with the model ...")
def model_scores(model_key: str, name: str, text: str, _model):
    return compare.model_scores(_model, text, name)


@st.cache_data(max_entries=8, show_spinner="Scoring the text with the n-gram ...")
def ngram_scores(model_key: str, order: int, text: str, _ngram):
    return compare.ngram_scores(_ngram, text)


def other_choices(ctx) -> dict:
    """id -> entry of the models other than the one under study, those of the same family first."""
    entries = {k: e for k, e in ui.model_entries().items() if k != ctx.entry.id}
    family = ctx.name.split("-")[0]
    return dict(sorted(entries.items(), key=lambda kv: (not kv[1].label.startswith(family), kv[1].label)))


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
        choices = other_choices(ctx)
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


def comparison(ctx):
    """(Comparison, notices, the text in words) for the chosen B and text; None when B cannot be had."""
    ss = st.session_state
    notices = []
    what = f"the text under study ({len(ctx.text):,} characters)"
    if ss["cmp_text"] == HELD:
        text, notice = held_text(ctx.key, _config=ctx.config)
        if not text:
            notices.append("This model's held-out text is not on this machine: the text under study is used.")
            text = ctx.text
        else:
            n = int(ss["cmp_chars"])
            what = (f"the first {n:,} characters of {ctx.name}'s held-out text" if len(text) > n else
                    f"all {len(text):,} characters of {ctx.name}'s held-out text")
            text = text[:n]
            if notice:
                notices.append(notice)
    else:
        text = ctx.text
    a = model_scores(ctx.key, ctx.name, text, _model=ctx.model)
    if ss["cmp_against"] == NGRAM:
        order = int(ss["cmp_order"])
        try:
            ng, notice = fitted_ngram(ctx.key, order, _config=ctx.config, _vocab=ctx.model.vocab)
        except RnnvizError as e:
            hint = " Compare it against another model instead." if "not on this machine" in str(e) else ""
            st.warning(f"{e}.{hint}", icon=":material/warning:")
            return None, notices, what
        if notice:
            notices.append(notice)
        b = ngram_scores(ctx.key, order, text, _ngram=ng)
    else:
        choices = other_choices(ctx)
        if not choices:
            return None, notices, what
        entry = choices[ss["cmp_other"]]
        model_b, _, key_b = ui.load_entry(entry)
        b = model_scores(key_b, entry.path.name if entry.path else entry.label, text, _model=model_b)
    return compare.compare(text, a, b), notices, what


def study(entry_id: str) -> None:
    """Button callback: put another model under study, against the n-gram (runs before the sidebar's widgets)."""
    st.session_state["model_choice"] = entry_id
    st.session_state["cmp_against"] = NGRAM


def python_entry(ctx):
    """The shipped python-lstm's entry id, when it is here and not already under study."""
    for k, e in ui.model_entries().items():
        if e.source == "shipped" and e.path is not None and e.path.name == "python-lstm" and k != ctx.entry.id:
            return k
    return None


def downloads(res) -> None:
    """CSV of what the page draws: per character, by class, and accuracy against distance."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"compare-{res.a.name}-vs-{res.b.name}")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Per character (CSV)", data=lambda: res.to_frame().to_csv(index=False),
                       file_name=f"{stem}-characters.csv", mime="text/csv", icon=":material/download:",
                       key="cmp_csv_chars")
    c2.download_button("By class (CSV)", data=lambda: res.breakdown().to_csv(index=False),
                       file_name=f"{stem}-classes.csv", mime="text/csv", icon=":material/download:",
                       key="cmp_csv_classes")
    c3.download_button("Accuracy by distance (CSV)", data=lambda: res.accuracy().to_csv(index=False),
                       file_name=f"{stem}-accuracy.csv", mime="text/csv", icon=":material/download:",
                       key="cmp_csv_accuracy")


def main():
    ctx = ui.require_model()
    st.title("Compare")
    st.markdown(INTRO)
    controls(ctx)
    res, notices, what = comparison(ctx)
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
    downloads(res)
    st.markdown(f"**In short.** {compare.summary(res)}")
    words = compare.closing_words(res)
    if words:
        st.markdown(f"**Closing delimiters.** {words}")
    else:
        st.markdown("**Closing delimiters.** No distance group of this text holds 20 closing brackets or 20 "
                    "closing quotes, too few to compare accuracies. Code has plenty: python-lstm's held-out files "
                    "show where memory beats the n-gram.")
        py = python_entry(ctx)
        if py:
            st.button("Study python-lstm against the 8-gram", key="cmp_python", on_click=study, args=(py,),
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
    vals = np.concatenate([[np.nan], res.diff])[s:s + SHOWN]  # the value of character t+1 is diff[t]
    lim = float(np.nanpercentile(np.abs(res.diff), 99)) if np.isfinite(res.diff).any() else 1.0
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
