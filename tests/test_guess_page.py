"""The Guessing game page under AppTest: 20 characters played with a fixed sequence of tries, the
shown bounds checked against the hand computation (test_shannon) and the model's against a brute-force
reference from the model's own forward pass; the distribution appears only once a character is found.
"""
import math
from collections import Counter

import numpy as np
import pytest
import torch

from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, html, ok, text_of
from test_shannon import HAND_LOWER, HAND_UPPER, brute_rank

TRIES = [1, 1, 2, 1, 3, 1, 1, 5, 2, 1] * 2  # 20 characters: the same shares as test_shannon's ten
WRONG = "etaoinshrdlucmfwypvbgkjqxz"  # wrong guesses are drawn from these, skipping the true character


def reference_bounds(tries) -> tuple[float, float]:
    """Shannon's bounds written out with a Counter, apart from rnnviz.shannon."""
    n, counts = len(tries), Counter(tries)
    q = {i: counts.get(i, 0) / n for i in range(1, max(tries) + 2)}
    upper = -sum(v * math.log2(v) for v in q.values() if v > 0)
    lower = sum(i * (q[i] - q[i + 1]) * math.log2(i) for i in range(1, max(tries) + 1))
    return lower, upper


def metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def play(at, target: str, tries: int) -> None:
    for w in [c for c in WRONG if c != target][: tries - 1]:
        at.text_input(key="guess_input").input(w).run()
        ok(at)
    if target == " ":
        at.button(key="guess_space").click().run()
    elif target == "\n":
        at.button(key="guess_newline").click().run()
    else:
        at.text_input(key="guess_input").input(target).run()
    ok(at)


def test_twenty_guesses_give_the_hand_computed_bounds(shipped):  # noqa: F811
    at = app("guess")
    ok(at)
    ctx = at.session_state["_ctx"]
    text, index = ctx.text, ctx.model.vocab.index
    start = at.session_state["guess_start"]
    if not all(c in index for c in text[start:start + len(TRIES)]):  # every character playable (none skipped)
        start = next(p for p in range(1, len(text) - 40) if text[p - 1] == "\n"
                     and all(c in index for c in text[p:p + len(TRIES)]))
        at.number_input(key="guess_start").set_value(start).run()
    assert "The model's answer" not in text_of(at.subheader)  # nothing revealed before the first find
    for k, n in enumerate(TRIES):
        target = text[start + k]
        play(at, target, n)
        shown = text_of(at.markdown)
        label = {" ": "␣", "\n": "↵"}.get(target, target)
        assert f"You found `{label}` in **{n}**" in shown
    # the tries the page recorded are the ones played
    assert [e["tries"] for e in at.session_state["guess_game"]["log"]] == TRIES

    lower, upper = reference_bounds(TRIES)
    assert (lower, upper) == (pytest.approx(HAND_LOWER, abs=1e-6), pytest.approx(HAND_UPPER, abs=1e-6))
    assert metric(at, "You:") == f"{HAND_LOWER:.2f} to {HAND_UPPER:.2f}" == "1.04 to 1.57"

    # the model's side, from its own forward pass over the whole text under study (no trace)
    model = ctx.model
    with torch.no_grad():
        logits, _ = model(torch.tensor(model.vocab.encode(text))[None])
    probs = torch.softmax(logits[0].double(), -1).numpy()  # (T, V): row t predicts character t + 1
    pos = range(start, start + len(TRIES))
    ranks = [brute_rank(probs[p - 1], index[text[p]], exclude=(0,)) for p in pos]
    m_lower, m_upper = reference_bounds(ranks)
    bits = float(np.mean([-math.log2(probs[p - 1, index[text[p]]]) for p in pos]))
    assert metric(at, "The model, same game") == f"{m_lower:.2f} to {m_upper:.2f}"
    assert metric(at, "The model's cross-entropy") == f"{bits:.2f}"

    # the passage: each found character's tooltip names both counts, the eighth took five tries
    page = html(at)
    assert f"you 5 tries, the model {ranks[7]}" in page


def test_distribution_revealed_only_after_the_character_is_found(shipped):  # noqa: F811
    at = app("guess")
    ok(at)
    ctx = at.session_state["_ctx"]
    start = at.session_state["guess_start"]
    target = ctx.text[start]
    wrong = next(c for c in WRONG if c != target)
    at.text_input(key="guess_input").input(wrong).run()
    ok(at)
    assert "The model's answer" not in text_of(at.subheader) and len(at.dataframe) == 0
    assert "Not:" in text_of(at.markdown)
    at.text_input(key="guess_input").input(wrong).run()  # the same wrong guess again does not count twice
    assert any("already tried" in w.value for w in at.warning)
    play(at, target, 1)
    assert "The model's answer" in text_of(at.subheader)
    assert at.session_state["guess_game"]["log"][0]["tries"] == 2
    shown = at.dataframe[0].value  # the reveal comes first, then the tally's table
    assert len(shown) == 10 and shown["probability"].is_monotonic_decreasing
    assert (shown["the true one"] == "✓").sum() <= 1


def test_class_board_takes_a_nickname_escaped_and_bounded(shipped):  # noqa: F811
    at = app("guess")
    ok(at)
    ctx = at.session_state["_ctx"]
    start = at.session_state["guess_start"]
    for k in range(3):
        play(at, ctx.text[start + k], 1)
    at.text_input(key="guess_nick").input("<b>Ada</b>").run()
    at.button(key="guess_post").click().run()
    ok(at)
    board = at.dataframe[-1].value  # the board is the last table
    assert board["nickname"].tolist() == ["<b>Ada</b>"]  # a dataframe cell shows text, never HTML
    assert board["characters"].tolist() == [3] and board["upper (bits/char)"].tolist() == [0.0]
    at.text_input(key="guess_nick").input("").run()
    at.button(key="guess_post").click().run()
    assert any("nickname" in e.value for e in at.error) and not at.exception


def test_pasted_text_with_unknown_characters_and_its_end(shipped):  # noqa: F811
    """A character the model never saw is shown, not played; the end of the text says so; odd guesses are text."""
    at = app("guess")
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input("x\n\u2603yz").run()
    ok(at)
    assert at.session_state["guess_start"] == 2  # the first line start
    at.text_input(key="guess_input").input("`").run()  # a wrong guess that is markdown's code quote
    ok(at)
    assert "`` ` ``" in text_of(at.markdown)
    play(at, "y", 1)
    at.text_input(key="guess_input").input("<").run()  # a wrong guess that is HTML
    ok(at)
    play(at, "z", 1)
    assert any("end of the text" in s.value for s in at.success)
    g = at.session_state["guess_game"]
    assert g["skipped"] == 1 and [(e["char"], e["tries"]) for e in g["log"]] == [("y", 2), ("z", 2)]
    assert "\u2603" in html(at) and "<b" not in html(at).replace("<br>", "")
