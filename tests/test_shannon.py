"""Shannon's bounds against a hand computation, the model's ranks against brute force, the class board."""
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from rnnviz import shannon
from rnnviz.errors import ConfigError

# Ten characters; tries 1 1 2 1 3 1 1 5 2 1. By hand: q1 = 6/10, q2 = 2/10, q3 = 1/10, q4 = 0, q5 = 1/10.
TRIES = [1, 1, 2, 1, 3, 1, 1, 5, 2, 1]
# upper = -(0.6 log2 0.6 + 0.2 log2 0.2 + 2 x 0.1 log2 0.1)
#       = 0.6 x 0.7369656 + 0.2 x 2.3219281 + 0.2 x 3.3219281 = 0.4421794 + 0.4643856 + 0.6643856
HAND_UPPER = 1.5709506
# lower = 1(0.6-0.2)log2 1 + 2(0.2-0.1)log2 2 + 3(0.1-0)log2 3 + 4(0-0.1)log2 4 + 5(0.1-0)log2 5
#       = 0 + 0.2 + 0.3 x 1.5849625 - 0.4 x 2 + 0.5 x 2.3219281 = 0.2 + 0.4754888 - 0.8 + 1.1609640
HAND_LOWER = 1.0364528


def test_bounds_match_the_hand_computation():
    assert shannon.frequencies(TRIES) == pytest.approx([0.6, 0.2, 0.1, 0.0, 0.1])
    assert shannon.upper_bound(TRIES) == pytest.approx(HAND_UPPER, abs=1e-6)
    assert shannon.lower_bound(TRIES) == pytest.approx(HAND_LOWER, abs=1e-6)
    b = shannon.bounds(np.array(TRIES * 3))  # the same shares, three times over: the same bounds
    assert (b.n, b.mean_tries) == (30, pytest.approx(1.8))
    assert (b.lower, b.upper) == (pytest.approx(HAND_LOWER, abs=1e-6), pytest.approx(HAND_UPPER, abs=1e-6))


def test_always_right_first_time_is_zero_bits_and_a_uniform_guesser_is_log2_n():
    assert shannon.bounds([1] * 7).upper == 0.0 and shannon.bounds([1] * 7).lower == 0.0
    # tries spread evenly over 1..4: q_i = 1/4; upper = log2 4 = 2; lower = 4 x 1/4 x log2 4 = 2 (only i = 4 counts)
    b = shannon.bounds([1, 2, 3, 4] * 5)
    assert b.upper == pytest.approx(2.0) and b.lower == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [[0, 1], [1, -2], [1.5], [float("nan")], ["a"], [[1, 2]]])
def test_bad_tries_are_a_clear_error(bad):
    with pytest.raises(ConfigError):
        shannon.bounds(bad)


def test_no_characters_gives_nan_not_an_error():
    b = shannon.bounds([])
    assert b.n == 0 and math.isnan(b.upper) and math.isnan(b.lower)
    assert shannon.describe(b) == "no characters yet"


def brute_rank(p_row, target, exclude=()):
    """Guess characters from the likeliest down (ties: lower id first), skipping excluded ids; count the tries."""
    order = sorted((i for i in range(len(p_row)) if i not in exclude), key=lambda i: (-p_row[i], i))
    return order.index(target) + 1


def test_model_ranks_and_cross_entropy_against_brute_force():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(12), size=40)  # (40, 12)
    probs[3, [2, 5]] = probs[3, 2]  # a tie
    targets = rng.integers(1, 12, size=40)
    targets[3] = 5
    ranks = shannon.model_ranks(probs, targets, exclude=[0])
    assert ranks.tolist() == [brute_rank(p, t, exclude=(0,)) for p, t in zip(probs, targets)]
    assert shannon.cross_entropy_bits(probs, targets) == pytest.approx(
        sum(-math.log2(p[t]) for p, t in zip(probs, targets)) / 40, rel=1e-12)
    t = shannon.tally(np.ones(40, dtype=int), probs, targets, exclude=[0])
    assert t.model.upper == pytest.approx(shannon.upper_bound(ranks)) and t.reader.upper == 0.0
    with pytest.raises(ConfigError):
        shannon.tally([1, 2], probs, targets)  # two tries for forty characters
    with pytest.raises(ConfigError):
        shannon.model_ranks(probs[:1], [0], exclude=[0])  # the unknown symbol is never a target


def test_passage_html_escapes_and_shades():
    out = shannon.passage_html("<b>x</b>\n", "a<", [3, 1], [1, 2])
    assert "<b>x</b>" not in out and "&lt;b&gt;" in out and "&lt;" in out
    assert "you 3 tries, the model 1" in out and "you 1 try, the model 2" in out
    assert shannon.advantage([3, 1], [1, 2]) == pytest.approx([math.log2(3), -1.0])
    assert "rgb(214, 96, 77)" in out  # the model's best lead is full red
    with pytest.raises(ConfigError):
        shannon.passage_html("", "ab", [1], [1])


def test_board_is_bounded_cleaned_and_sorted():
    board = shannon.Board(size=3)
    for i, name in enumerate(["ann", "bob", "cy", "dee"]):
        board.post(name, [1 + i, 1], "m")
    assert [r["nickname"] for r in board.rows()] == ["bob", "cy", "dee"]  # the oldest went; best (lowest upper) first
    board.post("  <script>\u202e\x00evil   name that is far too long ", [1], "m")
    names = [r["nickname"] for r in board.rows()]
    assert "<script>evil name th" in names and all(len(n) <= shannon.NICKNAME_CHARS for n in names)
    assert len(board.rows()) == 3
    with pytest.raises(ConfigError):
        board.post("\u200b ", [1], "m")
    with pytest.raises(ConfigError):
        board.post("x", [], "m")
    threads = [threading.Thread(target=board.post, args=(f"t{i}", [1, 2], "m")) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(board.rows()) == 3


def test_passage_start_is_a_line_start_with_context():
    assert shannon.passage_start("x" * 300 + "\nyy") == 301
    assert shannon.passage_start("x" * 100 + "\nyy") == 101  # short: the first line start
    assert shannon.passage_start("ab\n") == 1 and shannon.passage_start("") == 1  # no character after a newline


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "pretrained" / "shakespeare-lstm").is_dir(), reason="no shipped shakespeare-lstm")
def test_readme_figures_for_shakespeare_lstm_on_300_characters():
    """The bounds and cross-entropy docs/teaching.md states, recomputed from the model's own forward pass and brute-force ranks."""
    import torch
    from rnnviz import checkpoint, tour
    torch.set_num_threads(1)
    model, config = checkpoint.load(ROOT / "pretrained" / "shakespeare-lstm")
    text = tour.stop_text(config)[:301]
    ids = model.vocab.encode(text)
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids)[None])
    probs = torch.softmax(logits[0].double(), -1).numpy()  # row t predicts character t + 1
    ranks = [brute_rank(probs[t - 1], ids[t], exclude=(0,)) for t in range(1, 301)]
    n, counts = len(ranks), {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    q = {i: counts.get(i, 0) / n for i in range(1, max(ranks) + 2)}
    upper = -sum(v * math.log2(v) for v in q.values() if v > 0)
    lower = sum(i * (q[i] - q[i + 1]) * math.log2(i) for i in range(1, max(ranks) + 1))
    bits = -sum(math.log2(probs[t - 1, ids[t]]) for t in range(1, 301)) / 300
    doc = (ROOT / "docs" / "teaching.md").read_text(encoding="utf-8")
    said = f"{lower:.2f} to {upper:.2f} bits/char and its cross-entropy {bits:.2f} bits/char"
    assert said in " ".join(doc.split()), said
    assert f"right first time on {q[1]:.0%}" in doc


# --- one reader's game (the rules the Guessing game page plays by) ---------------------------------------

def play_script(text: str, vocab: set, start: int, script: list[str]) -> dict:
    """Feed typed characters to a fresh game, as the page does after each rerun."""
    g = shannon.new_game("t")
    shannon.open_passage(g, text, start, vocab)
    for typed in script:
        shannon.guess(g, typed)
        shannon.open_passage(g, text, start, vocab)
    return g


def test_a_scripted_game_counts_tries_skips_unplayable_and_ends():
    text = "ab\ncd\u2603e"
    vocab = set("abcde\n")
    # at 'c' (3): x, x again (no count), c -> 2 tries; 'd' first time; ☃ is skipped; 'e': q, r, e -> 3 tries
    g = play_script(text, vocab, 3, ["x", "x", "c", "d", "q", "r", "e"])
    assert [(e["pos"], e["char"], e["tries"], e["wrong"]) for e in g["log"]] == [
        (3, "c", 2, ["x"]), (4, "d", 1, []), (6, "e", 3, ["q", "r"])]
    assert g["skipped"] == 1 and g["target"] is None and g["pos"] == len(text)
    shannon.guess(g, "z")  # nothing left to guess: ignored
    assert len(g["log"]) == 3 and g["wrong"] == []


def test_repeats_and_long_input_are_refused_with_a_message():
    g = play_script("abcd", set("abcd"), 1, ["x"])
    shannon.guess(g, "x")
    assert "already tried 'x'" in g["msg"] and g["wrong"] == ["x"]
    shannon.guess(g, "xy")
    assert g["msg"] == "Type one character at a time." and g["wrong"] == ["x"]
    shannon.guess(g, "b")
    assert g["msg"] is None and g["log"][-1]["tries"] == 2


def test_a_new_passage_keeps_the_tally_and_clearing_restarts_it():
    text = "one\ntwo\nthree\n"
    vocab = set(text)
    g = play_script(text, vocab, 4, ["t", "w"])  # 't' then 'w' found at once
    assert g["round"] == 1 and len(shannon.this_round(g)) == 2
    shannon.open_passage(g, text, 8, vocab)  # another passage: a new round, the log kept
    assert g["round"] == 2 and g["pos"] == 8 and len(g["log"]) == 2 and shannon.this_round(g) == []
    shannon.guess(g, "t")
    assert [e["round"] for e in g["log"]] == [1, 1, 2]
    shannon.clear_tally(g)
    assert g["log"] == [] and g["pos"] == 8
    assert shannon.line_starts(text, after=0) == [4, 8, 14][:2]  # the last newline has nothing after it
    assert shannon.line_starts("x" * 60 + "\nabc\n", after=50) == [61]


def test_game_html_shows_the_found_characters_after_their_context():
    text = "<b>\nxyz"
    g = play_script(text, set(text), 4, ["q", "x", "y"])
    html = shannon.game_html(g, text, [1, 3])
    assert "&lt;b&gt;" in html and "<b>" not in html  # the context, escaped
    assert "x&#x27;: you 2 tries, the model 1" in html and "y&#x27;: you 1 try, the model 3" in html
    assert html.count("background: #111") == 1  # the cursor: 'z' is still to find
    skipped = "ab\n\u2603cd"
    g = play_script(skipped, set("abcd\n"), 3, ["c"])  # ☃ skipped: the text up to the cursor is context
    assert "\u2603" in shannon.game_html(g, skipped, [1]) and "title=" not in shannon.game_html(g, skipped, [1])


def test_reveal_against_brute_force():
    rng = np.random.default_rng(3)
    chars = list("?abcdefghij")
    p = rng.dirichlet(np.ones(len(chars)))
    p[0] = p.max() + 0.1  # the unknown symbol, likeliest of all, is never a guess
    p /= p.sum()
    target = 4
    sentence, rows = shannon.reveal({"char": "d", "tries": 3}, p, target, chars)
    rank = brute_rank(p, target, exclude=(0,))
    assert f"You found `d` in **3** tries. The model would have found it in **{rank}**" in sentence
    assert f"p = {p[target]:.2f}" in sentence
    best = max(range(1, len(chars)), key=lambda i: (p[i], -i))
    assert f"its own first choice `{chars[best]}`" in sentence
    assert [r["character"] for r in rows] == [chars[i] for i in sorted(range(1, 11), key=lambda i: (-p[i], i))]
    assert [r["the true one"] for r in rows].count("✓") == 1 and len(rows) == 10
    assert shannon.code("`") == "`` ` ``" and shannon.code(" ") == "`␣`"


def test_one_certain_outcome_reads_zero_not_minus_zero():
    """Every character guessed at the first try: both bounds are 0 bits, printed as 0.00, not -0.00."""
    b = shannon.bounds(np.array([1, 1, 1]))
    assert f"{b.lower:.2f} to {b.upper:.2f}" == "0.00 to 0.00"
