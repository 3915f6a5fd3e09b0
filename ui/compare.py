"""Compare: cached scores and n-gram, the other models to compare against, and the chosen comparison.

Import it as a module (`from ui import compare as cui`): the page lays out widgets, this module caches the library.
"""
from __future__ import annotations

import streamlit as st

from rnnviz import compare, heldout, ngram
from rnnviz.errors import RnnvizError
from ui.models import load_entry, model_entries

NGRAM, OTHER = "the n-gram baseline", "another model"
HELD, STUDY = "the model's held-out text", "the text under study"


@st.cache_resource(max_entries=6, show_spinner="Fitting the n-gram on the model's training split (seconds, "
                                               "the first time) ...")
def fitted_ngram(model_key: str, order: int, _config, _vocab):
    """An order-n n-gram on the training split of this model's corpus, with the model's vocabulary (disk-cached)."""
    train, notice = ngram.training_text(_config)
    return ngram.fit_cached(train, order, _vocab), notice


@st.cache_data(max_entries=4, show_spinner="Reading the held-out text ...")
def held_text(model_key: str, _config):
    return heldout.held_out_text(_config)


@st.cache_data(max_entries=8, show_spinner="Scoring the text with the model ...")
def model_scores(model_key: str, name: str, text: str, _model):
    return compare.model_scores(_model, text, name)


@st.cache_data(max_entries=8, show_spinner="Scoring the text with the n-gram ...")
def ngram_scores(model_key: str, order: int, text: str, _ngram):
    return compare.ngram_scores(_ngram, text)


def other_choices(ctx) -> dict:
    """id -> entry of the models other than the one under study, those of the same family first."""
    entries = {k: e for k, e in model_entries().items() if k != ctx.entry.id}
    family = ctx.name.split("-")[0]
    return dict(sorted(entries.items(), key=lambda kv: (not kv[1].label.startswith(family), kv[1].label)))


def python_entry(ctx):
    """The shipped python-lstm's entry id, when it is here and not already under study."""
    for k, e in model_entries().items():
        if e.source == "shipped" and e.path is not None and e.path.name == "python-lstm" and k != ctx.entry.id:
            return k
    return None


def study(entry_id: str) -> None:
    """Button callback: put another model under study, against the n-gram (runs before the sidebar's widgets)."""
    st.session_state["model_choice"] = entry_id
    st.session_state["cmp_against"] = NGRAM


def _text(ctx, notices: list) -> tuple[str, str]:
    """(the text to compare on, that text in words), noting in `notices` what stands in for what."""
    if st.session_state["cmp_text"] != HELD:
        return ctx.text, f"the text under study ({len(ctx.text):,} characters)"
    text, notice = held_text(ctx.key, _config=ctx.config)
    if not text:
        notices.append("This model's held-out text is not on this machine: the text under study is used.")
        return ctx.text, f"the text under study ({len(ctx.text):,} characters)"
    if notice:
        notices.append(notice)
    return compare.first_chars(text, int(st.session_state["cmp_chars"]), f"{ctx.name}'s held-out text")


def comparison(ctx):
    """(Comparison, notices, the text in words) for the chosen B and text; None when B cannot be had."""
    ss = st.session_state
    notices = []
    text, what = _text(ctx, notices)
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
        model_b, _, key_b = load_entry(entry)
        b = model_scores(key_b, entry.path.name if entry.path else entry.label, text, _model=model_b)
    return compare.compare(text, a, b), notices, what


def downloads(res) -> None:
    """CSV of what the page draws: per character, by class, and accuracy against distance."""
    stem = compare.file_stem(res)
    c1, c2, c3 = st.columns(3)
    for col, label, frame, part, key in (
            (c1, "Per character (CSV)", res.to_frame, "characters", "cmp_csv_chars"),
            (c2, "By class (CSV)", res.breakdown, "classes", "cmp_csv_classes"),
            (c3, "Accuracy by distance (CSV)", res.accuracy, "accuracy", "cmp_csv_accuracy")):
        col.download_button(label, data=lambda f=frame: f().to_csv(index=False), file_name=f"{stem}-{part}.csv",
                            mime="text/csv", icon=":material/download:", key=key)
