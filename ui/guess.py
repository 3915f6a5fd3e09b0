"""The Guessing game's session state, callbacks and panels (the game's rules are rnnviz.shannon's)."""
import random

import numpy as np
import streamlit as st

from rnnviz import shannon, shared_state
from rnnviz.errors import RnnvizError
from rnnviz.render import char_label
from ui.models import context
from ui.state import default, keep_in_range

GAME = "guess_game"  # session state: this session's game and tally (not a widget)


@st.cache_resource
def class_board(db: str) -> shannon.Board:
    """One board for the class, bounded (shannon.BOARD_ENTRIES nicknames): in the shared file `db` that every
    server process of the machine reads, else (no usable file) in this process's memory."""
    return shannon.Board(shared=shared_state.default())


def game(ctx) -> dict:
    """This session's game on this model and text; a new model or text starts a new tally."""
    ss = st.session_state
    ident = f"{ctx.key}|{len(ctx.text)}|{hash(ctx.text)}"
    g = ss.get(GAME)
    if not isinstance(g, dict) or g.get("ident") != ident:
        g = ss[GAME] = shannon.new_game(ident)
        ss["guess_start"] = shannon.passage_start(ctx.text)  # a passage start of this text, not of the last one
    return g


def submit(typed: str | None = None) -> None:
    """Callback: one guess, from the text field (Enter) or a button (space, newline)."""
    ss = st.session_state
    if typed is None:
        typed = ss.get("guess_input") or ""
        ss["guess_input"] = ""  # empty again for the next guess
    g = ss.get(GAME)
    if isinstance(g, dict):
        shannon.guess(g, typed)


def new_passage(text: str) -> None:
    """Callback: a random line start of the text."""
    starts = shannon.line_starts(text)
    st.session_state["guess_start"] = random.choice(starts) if starts else 1


def reset_tally() -> None:
    """Callback: clear the tally."""
    g = st.session_state.get(GAME)
    if isinstance(g, dict):
        shannon.clear_tally(g)


def model_ranks(tr, positions: list[int]) -> np.ndarray:
    """The model's tries for the characters at `positions`: its rank of each, the unknown symbol left out."""
    pos = np.asarray(positions, dtype=np.int64)
    return shannon.model_ranks(tr.probs[pos - 1], tr.ids[pos], exclude=[0])


def passage(ctx, tr, g: dict) -> None:
    """The passage's controls, the passage as played, and the guess field."""
    text = ctx.text
    T = len(text)
    default("guess_start", shannon.passage_start(text))
    keep_in_range("guess_start", 1, max(1, T - 1), shannon.passage_start(text))
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.number_input(f"Passage starts at character (1 to {T - 1:,} of the text under study)", 1, max(1, T - 1),
                    step=1, key="guess_start")
    c2.button("Another passage", key="guess_new", on_click=new_passage, args=(text,), icon=":material/shuffle:")
    c3.button("Clear my tally", key="guess_reset", on_click=reset_tally, icon=":material/restart_alt:")
    shannon.open_passage(g, text, int(st.session_state["guess_start"]), ctx.model.vocab.index)
    here = shannon.this_round(g)
    ranks = model_ranks(tr, [e["pos"] for e in here]) if here else np.zeros(0, dtype=np.int64)
    st.html(shannon.game_html(g, text, ranks))
    st.caption("Grey: the text before the passage. Each character you found is shaded by who needed fewer tries: "
               "**red** where the model did, **blue** where you did, white when you tied (hover for the counts).")
    if g["target"] is None:
        st.success("You reached the end of the text under study. Choose another passage.", icon=":material/flag:")
        return
    st.text_input("Your guess for the next character: type it and press Enter (one character a try; use the "
                  "buttons for a space or a new line)", key="guess_input", max_chars=1, on_change=submit)
    b1, b2, _ = st.columns([1, 1, 4])
    b1.button("Space ␣", key="guess_space", on_click=submit, args=(" ",))
    b2.button("New line ↵", key="guess_newline", on_click=submit, args=("\n",))
    if g["wrong"]:
        st.markdown(f"Try {len(g['wrong']) + 1}. Not: " + ", ".join(shannon.code(c) for c in g["wrong"]))
    if g["msg"]:
        st.warning(g["msg"], icon=":material/info:")


def reveal(ctx, tr, g: dict) -> None:
    """The model's distribution where the last character was found (shown only once it is found)."""
    if not g["log"]:
        return
    last = g["log"][-1]
    pos = last["pos"]
    sentence, rows = shannon.reveal(last, tr.probs[pos - 1], int(tr.ids[pos]), ctx.model.vocab.chars)
    st.subheader("The model's answer")
    st.markdown(sentence)
    st.dataframe(rows, hide_index=True, key="guess_reveal", column_config={
        "probability": st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0)})


def tally(tr, g: dict) -> None:
    """The reader's bounds beside the model's, character by character, and the class board."""
    st.subheader("Your tally")
    if not g["log"]:
        st.info("Guess a few characters: your bounds appear here, beside the model's.", icon=":material/info:")
        return
    pos = np.asarray([e["pos"] for e in g["log"]], dtype=np.int64)
    t = shannon.tally([e["tries"] for e in g["log"]], tr.probs[pos - 1], tr.ids[pos], exclude=[0])
    c1, c2, c3 = st.columns(3)
    c1.metric("You: Shannon's bounds (bits/char)", f"{t.reader.lower:.2f} to {t.reader.upper:.2f}",
              help="From how many tries each character took you: lower Σ i (q_i − q_(i+1)) log2 i, upper "
                   "−Σ q_i log2 q_i, where q_i is the share of characters found on try i.")
    c2.metric("The model, same game (bits/char)", f"{t.model.lower:.2f} to {t.model.upper:.2f}",
              help="The same bounds, from the model's rank of each true character (its number of tries).")
    c3.metric("The model's cross-entropy (bits/char)", f"{t.model_bits:.2f}",
              help="−log2 p of each true character under the model, averaged over the same characters.")
    st.caption(f"Over the {t.reader.n} characters you played (mean tries: you {t.reader.mean_tries:.2f}, the model "
               f"{t.model.mean_tries:.2f}). Shannon used 100 passages; with a few dozen characters the bounds are "
               "rough, but they narrow as you play.")
    with st.expander("Character by character"):
        rows = [{"character": char_label(e["char"]), "your tries": e["tries"], "model's tries": int(r),
                 "model's p": float(tr.probs[e["pos"] - 1, tr.ids[e["pos"]]])} for e, r in zip(g["log"], t.ranks)]
        st.dataframe(rows[::-1], hide_index=True, key="guess_table")
    board([e["tries"] for e in g["log"]])


def board(tries: list[int]) -> None:
    """The optional class board: post the bounds under a nickname."""
    shared_board = class_board(str(shared_state.db_path()))
    with st.expander("Class board (optional): post your bounds under a nickname"):
        st.caption(f"Anonymous and kept only on this server: the latest {shannon.BOARD_ENTRIES} nicknames, "
                   f"each at most {shannon.NICKNAME_CHARS} characters. Do not use your real name.")
        default("guess_nick", "")
        st.text_input("Nickname", key="guess_nick", max_chars=shannon.NICKNAME_CHARS)
        if st.button("Post my score", key="guess_post"):
            ctx = context()
            try:
                shared_board.post(st.session_state.get("guess_nick") or "", tries, ctx.name if ctx else "")
            except RnnvizError as e:
                st.error(str(e), icon=":material/error:")
        rows = shared_board.rows()
        if rows:
            st.dataframe(rows, hide_index=True, key="guess_board")
