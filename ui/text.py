"""The text under study: the sidebar's source picker, held-out excerpts, uploads, and hypotheses."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import streamlit as st

from rnnviz.corpora import excerpt, user_text
from rnnviz.errors import TextError
from rnnviz.heldout import held_out
from rnnviz.hypotheses import HYPOTHESES, regex_hypothesis
from rnnviz.probes import best_unit, default_hypothesis
from ui.models import Context, context
from ui.state import DEFAULT_EXCERPT, MAX_ANALYSIS_CHARS, default, keep_choice, keep_in_range
from ui.widgets import unit_controls

CUSTOM = "custom regex"

# Our own words (no outside text is shipped): prose, dialogue, quotes and brackets for any model.
BUILTIN_EXCERPT = """TEACHER:
Watch the forget gate. When it stays near one, the cell keeps what it has seen;
when it drops, the memory is cleared, and the next words start afresh.

STUDENT:
So a unit that counts "open quotes" must hold its value (for many steps) until the quote closes?

def count(words, sep=" "):
    \"\"\"Count each word (a small example of code).\"\"\"
    return {w: words.count(w) for w in words.split(sep) if w}
"""


# --- the text under study ------------------------------------------------------------------------

@st.cache_data(max_entries=8, show_spinner=False)
def corpus_excerpt(corpus_json: str, recipe, n: int) -> tuple[str | None, str | None]:
    """(n characters of the held-out part of a model's training corpus, notice), from a config's
    "corpus" record as JSON and its recipe: see rnnviz.heldout.held_out. (None, None) when that
    corpus is not on this machine."""
    held = held_out({"corpus": json.loads(corpus_json), "recipe": recipe})
    if held is None:
        return None, None
    return (excerpt(held, n) or None), held.notice


def decode_text_upload(data: bytes, name: str) -> tuple[str, str | None]:
    """Uploaded bytes -> (text, notice); TextError for non-UTF-8 or binary files."""
    corpus = user_text(data, name=name, max_chars=None)  # study_text cuts it, saying of how much
    return corpus.text, corpus.notice


def study_text(ctx: Context, where=st) -> None:
    """The sidebar controls for the text under study; fills ctx.text and ctx.notices."""
    ss = st.session_state
    default("text_source", "Excerpt of the corpus")
    default("excerpt_len", DEFAULT_EXCERPT)
    keep_in_range("excerpt_len", 200, MAX_ANALYSIS_CHARS, DEFAULT_EXCERPT)
    source = where.radio("Text under study", ["Excerpt of the corpus", "Paste text", "Upload a text file"],
                         key="text_source")
    text, notices = None, []
    if source == "Paste text":
        default("pasted_text", "")
        where.text_area("Your text", key="pasted_text", height=140, placeholder="Paste any text here")
        text = ss.get("pasted_text") or ""
        if not text.strip():
            notices.append("The pasted text is empty: showing the corpus excerpt instead.")
            text = None
        else:
            try:  # the checks an uploaded file gets (NUL bytes, binary data), with the same message
                text = user_text(text, name="The pasted text", max_chars=None).text
            except TextError as e:
                where.error(f"{e}. The corpus excerpt is shown instead.", icon=":material/error:")
                text = None
    elif source == "Upload a text file":
        up = where.file_uploader("Text file (UTF-8)", key="text_upload")
        if up is not None:
            try:
                text, notice = decode_text_upload(up.getvalue(), up.name)
                if notice:
                    notices.append(notice)
            except TextError as e:
                where.error(str(e), icon=":material/error:")
                text = None
        else:
            notices.append("No file uploaded yet: showing the corpus excerpt.")
    if text is None:
        where.number_input("Excerpt length (characters)", min_value=200, max_value=MAX_ANALYSIS_CHARS,
                           step=500, key="excerpt_len")
        text, notice = corpus_excerpt(json.dumps(ctx.config.get("corpus"), sort_keys=True),
                                      ctx.config.get("recipe"), int(ss["excerpt_len"]))
        if notice:
            notices.append(notice)
        if text is None:
            text = BUILTIN_EXCERPT
            notices.append("An imported model records no training corpus: showing a built-in excerpt. Paste or "
                           "upload text like the one it learned from." if ctx.config.get("imported") else
                           "No held-out text of this model's corpus is on this machine: showing a built-in excerpt.")
    text = text.replace("\r\n", "\n")
    if len(text) > MAX_ANALYSIS_CHARS:
        notices.append(f"The text was cut to its first {MAX_ANALYSIS_CHARS:,} of {len(text):,} characters "
                       "for analysis.")
        text = text[:MAX_ANALYSIS_CHARS]
    unknown = ctx.model.vocab.unknown(text)
    if unknown:
        shown = ", ".join(repr(c) for c in sorted(unknown)[:30])
        more = f" and {len(unknown) - 30} more" if len(unknown) > 30 else ""
        notices.append(f"{len(unknown)} character(s) the model never saw are read as the unknown "
                       f"symbol: {shown}{more}.")
    ctx.text, ctx.notices = text, notices


def hypothesis_labels(text: str) -> tuple[np.ndarray | None, str]:
    """Labels of the shared hypothesis for a text, and its name; a ConfigError for a bad regex."""
    ss = st.session_state
    name = ss.get("hypothesis") or default_hypothesis()
    if name == CUSTOM:
        pattern = ss.get("custom_regex") or ""
        if not pattern:
            return None, "custom regex (empty)"
        return regex_hypothesis(pattern)(text), f"regex {pattern!r}"
    return HYPOTHESES[name](text), name


def hypothesis_widgets(where=st) -> None:
    options = list(HYPOTHESES) + [CUSTOM]
    ss, ctx = st.session_state, context()
    if not ss.get("hypothesis_chosen"):  # until the user picks one: the one that suits the model and text
        ss["hypothesis"] = default_hypothesis(ctx.config if ctx else None, ctx.text if ctx else None)
    keep_choice("hypothesis", options, default_hypothesis())
    where.selectbox("Hypothesis", options, key="hypothesis", on_change=ss.update, kwargs={"hypothesis_chosen": True},
                    help="What a unit might track. Units are scored by how well they follow it.")
    if st.session_state["hypothesis"] == CUSTOM:
        default("custom_regex", r"[A-Z][a-z]+")
        where.text_input("Regular expression (1 inside each match)", key="custom_regex")


def slice_trace(tr, start: int, end: int):
    """The part of a Trace for characters [start, end): the same arrays, cut in time."""
    return dataclasses.replace(
        tr, text=tr.text[start:end], ids=tr.ids[start:end],
        layers=[{k: v[start:end] for k, v in layer.items()} for layer in tr.layers],
        probs=tr.probs[start:end], top_ids=tr.top_ids[start:end], top_probs=tr.top_probs[start:end],
        loss=tr.loss[start:end])


# --- the unit a model opens on -------------------------------------------------------------------

UNIT_KEYS = ("layer", "kind", "unit")


@st.cache_data(max_entries=16, show_spinner=False)
def best_unit_of(model_key: str, text: str, kinds: tuple, hypothesis: str | None, _trace, _config) -> dict | None:
    """rnnviz.probes.best_unit, cached per (model, text, hypothesis): ranking every unit is most of its cost."""
    return best_unit(_trace, _config, kinds=kinds, hypothesis=hypothesis)


def open_on_best_unit(ctx, kinds: list[str]) -> None:
    """Before the unit pickers: a unit merely carried over from another model (the sidebar switched
    model, the unit keys unchanged) is replaced by the unit last shown for this model, else by this
    model's best unit for the hypothesis the user chose, when that varies on the text, else for its
    default hypothesis (and the hypothesis goes back to that default). A unit set together with the
    model (the tour, a link from another page) is kept; so is anything chosen while this model was shown."""
    ss = st.session_state
    now = tuple(ss.get(k) for k in UNIT_KEYS)
    seen = ss.get("_unit_seen")  # (model key, unit keys) when Activations or Gates last drew
    if seen is not None and seen[0] == ctx.key:
        return
    if seen is None:  # a first visit: only the pickers' plain defaults (or nothing) count as unchosen
        carried = now[0] in (None, ctx.layers - 1) and now[1] in (None, "h") and now[2] in (None, 0)
    else:
        carried = now == tuple(seen[1])
    if not carried:
        return
    last = ss.get("_unit_last", {}).get(ctx.key)
    if last is not None:
        ss.update(zip(UNIT_KEYS, last))
        return
    chosen = ss.get("hypothesis") if ss.get("hypothesis_chosen") else None
    best = best_unit_of(ctx.key, ctx.text, tuple(kinds), chosen, _trace=ctx.trace(), _config=ctx.config)
    if best is not None:
        ss.update({k: best[k] for k in UNIT_KEYS})
        ss["_unit_best"] = {"model": ctx.key, **best}
        if best["default"]:
            # and the hypothesis it was chosen for: one picked for the last model (Python strings) would
            # score this model's units against labels that may not even vary on its text
            ss["hypothesis"], ss["hypothesis_chosen"] = best["hypothesis"], False


def remember_unit(ctx) -> None:
    """After the unit pickers: the unit shown for this model (what open_on_best_unit compares with)."""
    ss = st.session_state
    now = tuple(ss.get(k) for k in UNIT_KEYS)
    ss["_unit_seen"] = (ctx.key, now)
    ss.setdefault("_unit_last", {})[ctx.key] = now


def unit_pickers(ctx, kinds: list[str] | None = None, first_visit: bool = True) -> None:
    """The unit pickers of Activations and Gates (kinds: the state pickers shown, None for none), so a
    unit carried over from another model opens alike on both: see open_on_best_unit. first_visit=False
    (Gates) leaves a session's first unit to the pickers' defaults until Activations has drawn one.
    Says so in a caption when the unit shown is the one the page opened on."""
    if first_visit or st.session_state.get("_unit_seen") is not None:
        ranked = ["h", "c"] if ctx.cell == "lstm" else ["h"]  # the states a best unit is chosen among, on both pages
        open_on_best_unit(ctx, ranked)
        unit_controls(ctx, kinds)
        remember_unit(ctx)
    else:
        unit_controls(ctx, kinds)
    note = best_unit_note(ctx)
    if note:
        st.caption(note)


def best_unit_note(ctx) -> str | None:
    """Words for the unit the page opened on, while it is still the one shown; else None."""
    ss = st.session_state
    best = ss.get("_unit_best")
    if not best or best["model"] != ctx.key or tuple(ss.get(k) for k in UNIT_KEYS) != tuple(best[k] for k in UNIT_KEYS):
        return None
    why = "its corpus's default hypothesis" if best.get("default", True) else "the hypothesis chosen"
    return (f"Opened on L{best['layer']} {best['kind']}{best['unit']}: of all this model's units, the one that best "
            f"follows *{best['hypothesis']}* ({why}) on this text, score "
            f"{best['score']:.3f}" + (" (on too little text to call it a detector: see Neuron search)"
                                      if best["flagged"] else "") + ".")
