"""Home: what rnnviz shows, how to read it, the model under study and links to every page."""
import streamlit as st

import ui
from ui import tour as tour_ui

LINKS = [
    ("pages/train_page.py", "Train a model on a built-in corpus or your own text, with live loss curves."),
    ("pages/activations_page.py", "One unit's value coloured over the text (Karpathy's figures), "
                             "a units × characters heatmap, predictions and surprisal."),
    ("pages/gates_page.py", "What each gate (input, forget, output; reset, update) does for one unit, and how "
                       "often gates saturate."),
    ("pages/cell_page.py", "Inside the cell: Olah's diagram of one unit's step, with the model's own numbers on every "
                           "wire, character by character."),
    ("pages/gradients_page.py", "Why vanilla RNNs forget: gradient norms through time for RNN, GRU and LSTM, "
                           "and a memory experiment."),
    ("pages/sample_page.py", "Generate text with a temperature, see how sure the model was, and clamp a unit."),
    ("pages/neurons_page.py", "Find units that track a hypothesis (inside quotes, bracket depth, a regex ...)."),
    ("pages/atlas_page.py", "Every unit over a whole corpus, labelled, on one map: how long it remembers, what it "
                            "follows."),
    ("pages/unit_page.py", "One unit's dashboard: its top contexts over the whole corpus, its distribution, what "
                           "it does to the prediction."),
    ("pages/match_page.py", "Select a span and find where the same units fire across the corpus (LSTMVis's "
                            "select-and-match)."),
    ("pages/features_page.py", "Features, not only units: a sparse dictionary over a layer's states, how well it "
                               "stands in for them, and whether any feature tracks a hypothesis better than a unit."),
    ("pages/feature_page.py", "One feature's dashboard: where it fires most, its labels, what its direction does to "
                              "the prediction, and the units it is made of."),
    ("pages/why_page.py", "Why did the model predict this character? Saliency over the characters before it, and "
                          "what changes when you edit them."),
    ("pages/circuit_page.py", "How was that prediction computed? The units and steps that carry it, each checked by "
                              "zeroing it and rerunning the model."),
    ("pages/compare_page.py", "The model against an n-gram or another model, character class by character class."),
    ("pages/history_page.py", "Scrub through snapshots of a training run and watch the units and samples form."),
    ("pages/guess_page.py", "Shannon's guessing game: guess the next character yourself, then see how the model did."),
    ("pages/paper_page.py", "The 2015 paper (Karpathy, Johnson & Fei-Fei) reproduced: depth and cells, gate "
                            "saturation, which errors scale removes, n-gram dynamics over training, beside its findings."),
]


def main():
    st.title("rnnviz: inside a character-level RNN")
    st.markdown(
        "A character-level language model reads text one character at a time and predicts the next one. "
        "Inside, each layer keeps a vector of **hidden units** (and an LSTM also a **cell state**) that it "
        "updates at every character. rnnviz runs a model over a text and records every unit, every gate "
        "and every prediction, so you can see what the network keeps track of.")
    st.markdown(
        "**How to read the coloured text:** each character is shaded by a value the model computed right "
        "after reading it: **red** for positive, **blue** for negative, white near zero. Hover a "
        "character to see its exact value. For generated text, green means the model was sure of the "
        "character it chose.")
    ctx = ui.context()
    if ctx is None and not ui.model_entries():
        ui.empty_state()
    elif ctx is not None:
        st.markdown(f"**Model under study: {ctx.name}** ({ctx.cell.upper()}, {ctx.layers} × {ctx.hidden}). Its card "
                    "is in the sidebar; change the model and the text there, and every page follows.")
    st.subheader("See the famous effects")
    st.markdown(f"A guided tour in {len(tour_ui.STOPS)} stops, each one click: the page, the model, the text and the unit are set "
                "for you, and a short paragraph (plain enough to read aloud) says what to look at. A banner with "
                "**Next stop** follows you on every page until you end the tour. Every number in the tour is "
                "recomputed from the shipped models by the tests. Then play **Guessing game**: guess the next "
                "character before the model's answer is revealed.")
    tour_ui.start_buttons()
    st.subheader("Pages")
    for path, what in LINKS:
        title, icon = next((t, i) for p, t, i, _ in ui.PAGES if p == path)
        st.page_link(path, label=title, icon=icon)
        st.caption(what)


ui.run_page(main)
