"""Guessing game: Shannon's 1951 game against the model, on the text under study."""
import streamlit as st

import ui
from ui import guess as gui


def main():
    ctx = ui.require_model()
    st.title("Guessing game")
    st.markdown(
        "In 1951 Claude Shannon measured how predictable English is with a game: a reader guesses the next letter, "
        "tries again until right, and counts the tries. The counts bound the reader's **entropy**, the bits of "
        "surprise per character. Play it on the text under study, then see what the model guessed: its "
        "distribution is revealed only once you have found the character.")
    tr = ctx.trace()
    g = gui.game(ctx)
    gui.passage(ctx, tr, g)
    gui.reveal(ctx, tr, g)
    gui.tally(tr, g)


ui.run_page(main)
