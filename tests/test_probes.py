"""Tests for rnnviz.probes: hypotheses, AUROC, correlation and unit ranking."""
from types import SimpleNamespace

import numpy as np
import pytest

from rnnviz.errors import ConfigError
from rnnviz.hypotheses import (
    HYPOTHESES,
    after_newline,
    bracket_depth,
    indentation,
    inside_quotes,
    is_binary,
    line_length,
    position_in_line,
    position_in_word,
    python_comments,
    python_string_labels,
    python_strings,
    regex_hypothesis,
    speaker_line,
    uppercase,
    vowel,
)
from rnnviz.probes import (
    MIN_CHARS,
    MIN_SPANS,
    auroc,
    chance_level,
    corpus_family,
    correlation,
    default_hypothesis,
    direction_words,
    evidence,
    rank_units,
    score_units,
    shift_offsets,
    unit_stats,
)


def brute_force_auroc(x, y):
    """P(score of a positive > score of a negative), ties counting one half; O(n^2)."""
    pos, neg = x[y], x[~y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_auroc_matches_pairwise_count_with_ties(dtype):
    rng = np.random.default_rng(0)
    for trial in range(5):
        t = int(rng.integers(5, 60))
        x = np.concatenate([rng.integers(-3, 4, size=(t, 3)), rng.normal(size=(t, 2))], axis=1)
        x = x.astype(dtype)
        y = rng.random(t) < 0.4
        y[0], y[1] = True, False  # both classes present
        got = auroc(x, y)
        want = [brute_force_auroc(x[:, u], y) for u in range(x.shape[1])]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_auroc_edge_cases():
    x = np.array([[0.0], [-0.0], [1.0], [1.0]], dtype=np.float32)
    # -0.0 and 0.0 are equal scores: a tie, not an ordering
    assert auroc(x, np.array([True, False, True, False]))[0] == pytest.approx(0.5)
    assert np.isnan(auroc(x, np.ones(4, bool))).all()
    assert np.isnan(auroc(x, np.zeros(4, bool))).all()
    assert auroc(np.arange(4.0), np.array([0, 0, 1, 1], bool))[0] == 1.0


def test_correlation_matches_corrcoef():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.normal(size=200) + x[:, 0]
    x[:, 3] = 0.7  # a constant unit
    got = correlation(x, y)
    for u in range(3):
        assert got[u] == pytest.approx(np.corrcoef(x[:, u], y)[0, 1], abs=1e-6)
    assert got[3] == 0.0


# --- hypotheses ---------------------------------------------------------------------------------

def test_inside_quotes():
    text = "a 'b\"c' \"d'\" e '(\ng"
    want = [0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]  # an unclosed quote ends at the line end
    np.testing.assert_array_equal(inside_quotes(text), want)
    # an apostrophe inside a word opens nothing; a string prefix does
    np.testing.assert_array_equal(inside_quotes("it's x"), [0] * 6)
    np.testing.assert_array_equal(inside_quotes("=f'a'+b"), [0, 1, 1, 1, 1, 0, 0])
    assert inside_quotes(text).dtype == np.float32


def test_inside_quotes_skips_elisions():
    """An unclosed ' before a letter is an elision ('Tis, 'gainst), not the start of a quote; a real
    quote on the same footing ('Frets ...?') still counts, and so does a quote after an elision."""
    text = ("'Gainst my captivity.\nAs whence the sun 'gins his reflection\n'Tis with cares.\n"
            "'Frets, call you these?' quoth she")
    got = inside_quotes(text)
    want = np.zeros(len(text))
    want[span(text, "'Frets, call you these?'")] = 1
    np.testing.assert_array_equal(got, want)
    # the old rule ran 'Gainst and 'gins to their line ends: two long spans of no quote at all
    assert got[: text.index("quoth")].sum() == len("'Frets, call you these?'")


def test_bracket_depth():
    text = "a(b[c])d)e{"
    np.testing.assert_array_equal(bracket_depth(text), [0, 1, 1, 2, 2, 2, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(bracket_depth(")("), [0, 1])


def test_line_hypotheses():
    text = "ab\n  cD\n\n e"
    np.testing.assert_array_equal(position_in_line(text), [0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 1])
    np.testing.assert_array_equal(indentation(text), [0, 0, 0, 2, 2, 2, 2, 2, 0, 1, 1])
    np.testing.assert_array_equal(after_newline(text), [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(uppercase(text), [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(vowel("bAtEu!"), [0, 1, 0, 1, 1, 0])


def test_hypotheses_dict_and_binary():
    assert set(HYPOTHESES) == {"inside quotes", "inside a string (tokenize)", "inside a comment (tokenize)",
                               "bracket depth", "position in line", "line length", "position in the word",
                               "indentation", "right after a newline", "speaker-name line", "uppercase", "vowel"}
    text = "x = ('y')\n  z"
    for name, fn in HYPOTHESES.items():
        out = fn(text)
        assert out.shape == (len(text),) and out.dtype == np.float32, name
    assert is_binary(inside_quotes(text)) and is_binary(np.array([True, False]))
    assert not is_binary(bracket_depth("((")) and not is_binary(np.array([]))


def test_regex_hypothesis():
    fn = regex_hypothesis(r"\d+")
    np.testing.assert_array_equal(fn("a12b3"), [0, 1, 1, 0, 1])
    with pytest.raises(ConfigError, match="unterminated|missing"):
        regex_hypothesis("(ab")


# --- python string labels ---------------------------------------------------------------------

SOURCE = '''"""Module doc."""
x = 'ab'  # note
y = f"v{x}" + rb"q"
s = """multi
line"""
'''


def span(text, piece, start=0):
    i = text.index(piece, start)
    return slice(i, i + len(piece))


def test_python_string_labels():
    labels, mask = python_string_labels(SOURCE)
    assert labels.shape == mask.shape == (len(SOURCE),)
    want_labels = np.zeros(len(SOURCE))
    want_mask = np.ones(len(SOURCE), bool)
    for piece in ('"""Module doc."""', "'ab'", 'f"v{x}"', 'rb"q"', '"""multi\nline"""'):
        want_labels[span(SOURCE, piece)] = 1
    for piece in ('"""Module doc."""', "# note", '"""multi\nline"""'):
        want_mask[span(SOURCE, piece)] = False
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(mask, want_mask)


def test_python_string_labels_bad_source_masks_the_rest():
    source = "a = 'ok'\nb = (1,\n"  # the bracket never closes
    labels, mask = python_string_labels(source)
    assert labels[span(source, "'ok'")].all() and mask[: source.index("b")].all()
    assert not mask[-1]
    assert labels.sum() == 4


# --- ranking units ------------------------------------------------------------------------------

def fake_trace(t=3000, h=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(t) < 0.3).astype(np.float32)
    layers = [{k: rng.normal(size=(t, h)).astype(np.float32) for k in ("h", "c", "i")} for _ in range(2)]
    layers[1]["c"][:, 5] = labels + 0.3 * rng.normal(size=t)
    layers.append({"h": rng.normal(size=(t, h)).astype(np.float32)})  # a GRU-like layer: no "c"
    return SimpleNamespace(layers=layers), labels


def test_rank_units_finds_planted_unit():
    trace, labels = fake_trace()
    df = rank_units(trace, labels)
    assert list(df.columns) == ["layer", "kind", "unit", "direction", "corr", "auroc", "score"]
    assert len(df) == 16 * 5  # h and c of two layers, h of the third; gates not asked for
    top = df.iloc[0]
    assert (top.layer, top.kind, top.unit, top.direction) == (1, "c", 5, "high")
    assert top.auroc > 0.9 and top.score == pytest.approx(top.auroc)
    np.testing.assert_allclose(df.score, np.maximum(df.auroc, 1 - df.auroc))
    assert df.score.is_monotonic_decreasing


def test_rank_units_continuous_labels_and_mask():
    trace, labels = fake_trace()
    target = labels * 3 + np.arange(len(labels)) % 2  # not binary
    df = rank_units(trace, target, kinds=("c",))
    assert df.auroc.isna().all() and (df.score == df["corr"].abs()).all()
    mask = np.zeros(len(labels), bool)
    mask[::2] = True
    top = rank_units(trace, labels, mask=mask).iloc[0]
    assert (top.layer, top.kind, top.unit) == (1, "c", 5)
    with pytest.raises(ConfigError):
        rank_units(trace, labels[:-1])


def test_unit_stats():
    trace, labels = fake_trace()
    x = trace.layers[0]["h"]
    df = unit_stats(trace, 0, "h")
    assert list(df.columns) == ["unit", "variance", "mean_abs", "selectivity"]
    np.testing.assert_allclose(df.variance, x.var(axis=0, dtype=np.float64))
    np.testing.assert_allclose(df.mean_abs, np.abs(x).mean(axis=0, dtype=np.float64), rtol=1e-6)
    assert df.selectivity.isna().all()
    sel = unit_stats(trace, 1, "c", labels=labels).selectivity
    assert sel.idxmax() == 5 and sel.max() > 0.8
    with pytest.raises(ConfigError):
        unit_stats(trace, 2, "c")


def test_unit_stats_scores_on_the_masked_characters_like_neuron_search():
    """Activations' table and Neuron search give a unit the same score: selectivity is counted over the
    hypothesis's characters only; variance and mean |activation| still over every character."""
    trace, labels = fake_trace()
    mask = np.zeros(len(labels), bool)
    mask[::3] = True
    df = unit_stats(trace, 1, "c", labels=labels, mask=mask)
    ranked = rank_units(trace, labels, mask=mask)
    mine = ranked[(ranked.layer == 1) & (ranked.kind == "c")].set_index("unit").score
    np.testing.assert_allclose(df.selectivity.to_numpy(), mine.sort_index().to_numpy(), rtol=1e-12)
    # and by hand for one unit: AUROC of the counted characters, the fraction of (in, out) pairs ordered
    x, y = trace.layers[1]["c"][mask, 2], labels[mask] > 0.5
    pairs = (x[y][:, None] > x[~y][None, :]).mean() + 0.5 * (x[y][:, None] == x[~y][None, :]).mean()
    assert df.selectivity[2] == pytest.approx(max(pairs, 1 - pairs), rel=1e-9)
    np.testing.assert_allclose(df.variance, trace.layers[1]["c"].var(axis=0, dtype=np.float64))


def test_direction_matches_the_sign_of_the_mean_difference():
    """A unit low inside the hypothesis is reported 'low', with AUROC as computed (below 0.5) and
    score max(AUROC, 1 - AUROC); the reference is the plain difference of the two class means."""
    rng = np.random.default_rng(7)
    t, h = 2000, 12
    labels = (rng.random(t) < 0.25).astype(np.float32)
    x = rng.normal(size=(t, h)).astype(np.float32)
    effects = np.linspace(-3, 3, h)  # from strongly low inside to strongly high inside
    x += labels[:, None] * effects[None, :]
    df = rank_units(SimpleNamespace(layers=[{"h": x}]), labels, kinds=("h",))
    pos = labels > 0.5
    for row in df.itertuples():
        diff = x[pos, row.unit].mean() - x[~pos, row.unit].mean()
        if abs(diff) > 0.5:
            assert row.direction == ("high" if diff > 0 else "low"), row
        xp, xn = x[pos, row.unit][:, None], x[~pos, row.unit][None, :]  # every pair, by broadcasting
        want = ((xp > xn).sum() + 0.5 * (xp == xn).sum()) / (xp.size * xn.size)
        assert row.auroc == pytest.approx(want, abs=1e-9)
        assert row.score == pytest.approx(max(want, 1 - want), abs=1e-9)
    low = df[df.unit == 0].iloc[0]
    assert low.direction == "low" and low.auroc < 0.1 and low.score > 0.9
    # counts: the sign of the covariance, recomputed by hand
    depth = labels * 2 + rng.integers(0, 3, size=t)
    counts = rank_units(SimpleNamespace(layers=[{"h": x}]), depth, kinds=("h",))
    for row in counts.itertuples():
        cov = ((x[:, row.unit] - x[:, row.unit].mean()) * (depth - depth.mean())).mean()
        if abs(row.corr) > 0.1:
            assert row.direction == ("high" if cov > 0 else "low")
        assert row.score == pytest.approx(abs(row.corr))


def test_direction_in_words():
    assert direction_words("low", "inside quotes", binary=True) == "low inside quotes"
    assert direction_words("high", "right after a newline", binary=True) == "high right after a newline"
    assert direction_words("high", "uppercase", binary=True) == "high on uppercase"
    assert direction_words("low", "bracket depth", binary=False) == "falls with bracket depth"
    assert direction_words("high", "indentation", binary=False) == "rises with indentation"
    assert direction_words("", "vowel", binary=True) == "no direction"


# --- new hypotheses -----------------------------------------------------------------------------

def test_word_line_and_speaker_hypotheses():
    np.testing.assert_array_equal(position_in_word("ab c o'er, x_1"), [1, 2, 0, 1, 0, 1, 2, 3, 4, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(line_length("ab\n\nxyz\nq"), [2, 2, 2, 0, 3, 3, 3, 3, 1])
    play = "KING RICHARD III:\nNow is the winter\nSir, I say:\n\nFirst Citizen:\nSpeak.\n"
    want = np.zeros(len(play))
    want[span(play, "KING RICHARD III:\n")] = 1
    want[span(play, "First Citizen:\n")] = 1  # after a blank line; "Sir, I say:" is verse, not a speaker
    np.testing.assert_array_equal(speaker_line(play), want)


def test_python_strings_and_comments_by_tokenize():
    labels, _ = python_string_labels(SOURCE)
    np.testing.assert_array_equal(python_strings(SOURCE), labels)  # docstrings included, no mask
    want = np.zeros(len(SOURCE))
    want[span(SOURCE, "# note")] = 1
    np.testing.assert_array_equal(python_comments(SOURCE), want)
    bad = "a = 1  # one\nb = (1,  # two\n"  # the bracket never closes: the statement and all after it are 0
    got = python_comments(bad)
    assert got[span(bad, "# one")].all() and got.sum() == len("# one")
    assert not python_strings("GREMIO:\nCall'd Katharina, fair.\n").any()  # a play is no Python


# --- scoring plain (T, U) arrays, evidence and the chance level ---------------------------------

def test_score_units_against_pairs_and_corrcoef_and_rank_units():
    rng = np.random.default_rng(3)
    t = 80
    x = np.concatenate([rng.integers(-2, 3, size=(t, 2)), rng.normal(size=(t, 3))], axis=1).astype(np.float32)
    y = rng.random(t) < 0.3
    df = score_units(x, y.astype(np.float32))
    assert list(df.columns) == ["unit", "direction", "corr", "auroc", "score"]
    assert list(df.unit) == list(range(5))  # column order, not ranked
    for u in range(5):
        want = brute_force_auroc(x[:, u].astype(np.float64), y)
        assert df.auroc[u] == pytest.approx(want, abs=1e-12)
        assert df.score[u] == pytest.approx(max(want, 1 - want), abs=1e-12)
        assert df["corr"][u] == pytest.approx(np.corrcoef(x[:, u], y)[0, 1], abs=1e-9)
    # rank_units is score_units per layer and kind, ranked
    ranked = rank_units(SimpleNamespace(layers=[{"h": x}]), y.astype(np.float32), kinds=("h",))
    for row in ranked.itertuples():
        assert row.auroc == pytest.approx(df.auroc[row.unit], abs=0)


def runs_by_hand(flags):
    """Separate runs of True, counted one character at a time."""
    runs, inside = 0, False
    for f in flags:
        if f and not inside:
            runs += 1
        inside = bool(f)
    return runs


def test_evidence_counts_against_a_hand_count():
    rng = np.random.default_rng(4)
    for trial in range(30):
        t = int(rng.integers(1, 300))
        y = (rng.random(t) < rng.uniform(0.02, 0.9)).astype(np.float32)
        mask = None if trial % 2 else rng.random(t) < 0.8
        keep = np.ones(t, bool) if mask is None else mask
        ev = evidence(y, mask)
        pos, neg = (y > 0.5) & keep, (y < 0.5) & keep
        assert ev["counted"] == keep.sum()
        assert (ev["positives"], ev["negatives"]) == (pos.sum(), neg.sum())
        assert (ev["spans"], ev["negative_spans"]) == (runs_by_hand(pos), runs_by_hand(neg))
        thin = min(pos.sum(), neg.sum()) < MIN_CHARS or min(runs_by_hand(pos), runs_by_hand(neg)) < MIN_SPANS
        assert ev["flagged"] == thin and bool(ev["reason"]) == thin


def test_evidence_flags_one_span_and_few_characters():
    """The thresholds, at their edges: 50 characters and 5 spans each way pass, one less fails."""
    def labels(runs, length, gap=20):
        y = np.zeros(runs * (length + gap) + gap, np.float32)
        for r in range(runs):
            y[gap + r * (length + gap):gap + r * (length + gap) + length] = 1
        return y

    assert MIN_CHARS == 50 and MIN_SPANS == 5
    assert not evidence(labels(5, 10))["flagged"]  # 5 spans, 50 characters
    one = evidence(labels(1, 61))  # the elision of the issue: 61 characters, one span
    assert one["flagged"] and (one["positives"], one["spans"]) == (61, 1)
    assert "61 characters in 1 separate span" in one["reason"] and "not shown to be a detector" in one["reason"]
    four = evidence(labels(4, 20))
    assert four["flagged"] and "4 separate spans" in four["reason"]
    few = evidence(labels(7, 7))  # 49 characters in 7 spans
    assert few["flagged"] and "49 characters" in few["reason"]
    # counts: "holds" means above the smallest value
    depth = bracket_depth("x ((a)) " * 3 + "y")
    ev = evidence(depth)
    assert not ev["binary"] and (ev["positives"], ev["spans"]) == (15, 3) and ev["flagged"]
    assert "above its smallest value" in ev["reason"]
    # a hypothesis that holds almost everywhere is as thin as one that almost never holds
    assert evidence(1 - labels(1, 61))["flagged"]


def test_shift_offsets():
    k = shift_offsets(1000, 20, seed=0)
    assert len(k) == 20 == len(set(k.tolist())) and list(k) == sorted(k)
    assert k.min() >= 100 and k.max() <= 900  # min_shift = t // 10 either way round the circle
    np.testing.assert_array_equal(k, shift_offsets(1000, 20, seed=0))
    assert not np.array_equal(k, shift_offsets(1000, 20, seed=1))
    np.testing.assert_array_equal(shift_offsets(10, 20, min_shift=3), [3, 4, 5, 6, 7])  # all there are
    assert len(shift_offsets(5, 20, min_shift=3)) == 0 and len(shift_offsets(100, 0)) == 0


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_chance_level_against_brute_force_shifts(binary, masked):
    """Every unit scored against np.roll(labels, k) for each offset, by pairs (AUROC) or corrcoef."""
    rng = np.random.default_rng(5)
    t, u = 90, 4
    x = rng.normal(size=(t, u)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1])  # ties
    y = (rng.random(t) < 0.3).astype(np.float32) if binary else rng.integers(0, 4, size=t).astype(np.float32)
    mask = rng.random(t) < 0.8 if masked else None
    xs, ys = (x[mask], y[mask]) if masked else (x, y)
    offsets = shift_offsets(len(ys), 7, seed=2)
    want = np.zeros((len(offsets), u))
    for i, k in enumerate(offsets):
        rolled = np.roll(ys, k)
        for j in range(u):
            if binary:
                a = brute_force_auroc(xs[:, j].astype(np.float64), rolled > 0.5)
                want[i, j] = max(a, 1 - a)
            else:
                want[i, j] = abs(np.corrcoef(xs[:, j], rolled)[0, 1])
    ch = chance_level(x, y, mask, shifts=7, seed=2)
    np.testing.assert_array_equal(ch.offsets, offsets)
    np.testing.assert_allclose(ch.per_unit, want.max(axis=0), atol=1e-9)
    np.testing.assert_allclose(ch.best, want.max(axis=1), atol=1e-9)
    assert ch.level == pytest.approx(want.max(), abs=1e-9)
    # the same from score_units and rank_units (one sort for the scores and the chance level)
    df = score_units(x, y, mask, shifts=7, seed=2)
    np.testing.assert_allclose(df.chance, ch.per_unit, atol=1e-12)
    ranked = rank_units(SimpleNamespace(layers=[{"h": x}]), y, mask, kinds=("h",), shifts=7, seed=2)
    assert ranked.chance.max() == pytest.approx(ch.level, abs=1e-12)
    assert "chance" not in rank_units(SimpleNamespace(layers=[{"h": x}]), y, kinds=("h",)).columns


def test_chance_level_is_high_for_a_drifting_unit_on_clumpy_labels():
    """Shifting keeps the labels' clumps: a slowly drifting unit that happens to line up with one long
    clump scores high against the true labels and nearly as high against shifted ones; a unit that
    follows every clump beats its chance level by far."""
    rng = np.random.default_rng(6)
    t = 4000
    y = np.zeros(t, np.float32)
    for s in (150, 900, 1500, 2600, 3300):
        y[s:s + 300] = 1  # 5 long clumps, at no regular spacing (a period would let a shift realign them)
    drift = np.cumsum(rng.normal(size=t)).astype(np.float32)  # a random walk
    detector = (y + 0.3 * rng.normal(size=t)).astype(np.float32)
    df = score_units(np.stack([drift, detector], axis=1), y, shifts=20)
    assert df.score[1] > 0.95 and df.chance[1] < 0.8  # the detector, far above its chance level
    assert df.chance[0] > 0.6  # a random walk scores well against shifted clumps too
    shuffled = np.array([score_units(drift[:, None], rng.permutation(y)).score[0] for _ in range(20)])
    assert shuffled.max() < df.chance[0]  # shuffling, which destroys the clumps, would understate chance


# --- the default hypothesis of a model ----------------------------------------------------------

def test_default_hypothesis_per_corpus():
    assert corpus_family({"corpus": {"name": "tinyshakespeare.txt"}}) == "shakespeare"
    assert default_hypothesis({"corpus": {"name": "tinyshakespeare.txt"}}) == "speaker-name line"
    assert default_hypothesis({"corpus": {"name": "shakespeare"}}) == "speaker-name line"
    assert default_hypothesis({"corpus": {"name": "python"}}) == "inside a string (tokenize)"
    assert default_hypothesis("quotes-seed0") == "inside quotes"
    assert default_hypothesis({"corpus": {"name": "memory-mix-2-4-8-16-32-64-seed0"}}) == "uppercase"
    assert default_hypothesis({"corpus": "notes.txt"}) == "uppercase"
    assert default_hypothesis(None) == "uppercase" and default_hypothesis({}) == "uppercase"
    assert set(default_hypothesis(n) for n in ("python", "quotes-seed0", "shakespeare", "memory-gap8-seed0",
                                                "x")) <= set(HYPOTHESES)


def test_default_hypothesis_suits_the_text():
    play = "".join(f"{name}:\nSpeak the speech, I pray you, as I pronounced it to you.\n\n"
                   for name in ("HAMLET", "FIRST PLAYER", "HORATIO", "POLONIUS", "OPHELIA", "ROSENCRANTZ"))
    assert not evidence(speaker_line(play))["flagged"]
    assert default_hypothesis({"corpus": {"name": "shakespeare"}}, play) == "speaker-name line"
    # no speaker line in a pasted snippet: the first of the model's choices that varies on it
    assert default_hypothesis({"corpus": {"name": "shakespeare"}}, "He said \"<b>\" & <i>") == "uppercase"
    assert default_hypothesis("python", "x = 1\n") == "position in line"  # no string, no capital: general
    assert default_hypothesis("python", "") == "inside a string (tokenize)"


def test_tokenize_strings_count_one_line_strings_against_code():
    """"inside a string (tokenize)" counts what python_string_labels' mask keeps, in the evidence and
    in the default's choice; other hypotheses count every character."""
    from rnnviz.hypotheses import hypothesis_mask
    labels, mask = python_string_labels(SOURCE)
    np.testing.assert_array_equal(hypothesis_mask("inside a string (tokenize)", SOURCE), mask)
    assert hypothesis_mask("inside quotes", SOURCE) is None
    ev = evidence(python_strings(SOURCE), hypothesis_mask("inside a string (tokenize)", SOURCE))
    assert ev["counted"] == mask.sum() and ev["positives"] == ((labels > 0.5) & mask).sum()
    assert ev["spans"] == 3  # 'ab', f"v{x}" and rb"q"; the two multi-line strings are not counted
    # docstrings alone are no evidence for the string hypothesis: the default moves on
    doc_only = 'def f():\n    """' + "A docstring line.\n    " * 20 + '"""\n    return 1\n' * 3
    assert default_hypothesis("python", doc_only) != "inside a string (tokenize)"


# --- what a ranking says (Neuron search's words, probe --chance) -----------------------------------

def clumps(t: int, starts, width: int) -> np.ndarray:
    y = np.zeros(t, np.float32)
    for s in starts:
        y[s:s + width] = 1
    return y


def test_search_summary_of_a_detector_against_brute_force():
    """A unit that follows 8 clumps: its name, an evidence count by hand, a chance level and shift distance
    recomputed from the rolled labels by pairs, and the verdict above chance."""
    from rnnviz.probes import search_summary
    rng = np.random.default_rng(3)
    t = 400
    y = clumps(t, (10, 60, 115, 170, 230, 275, 330, 370), 20)
    x = rng.normal(size=(t, 3)).astype(np.float32)
    x[:, 2] = -y + 0.3 * rng.normal(size=t)  # low where it holds
    df = rank_units(SimpleNamespace(layers=[{"h": x}]), y, kinds=("h",), shifts=5)
    s = search_summary(df, y, None, "clumps", shifts=5)
    assert s["best"] == "layer 0 h2" and s["binary"] and s["words"][0] == direction_words("low", "clumps", True)
    ev = s["evidence"]
    assert (ev["positives"], ev["spans"], ev["negatives"]) == (160, 8, 240) and not ev["flagged"]
    offsets = shift_offsets(t, 5)
    want = max(max(a, 1 - a) for k in offsets for a in (brute_force_auroc(x[:, j].astype(np.float64),
                                                                            np.roll(y, k) > 0.5) for j in range(3)))
    assert s["chance"] == pytest.approx(want, abs=1e-9) and s["shifts"] == 5
    assert s["min_shift"] == min(min(k, t - k) for k in offsets.tolist())
    assert f"Chance level: {want:.3f}" in s["evidence_text"] and f"at least {s['min_shift']:,} characters" in \
        s["evidence_text"]
    assert "holds on 160 characters of 400, in 8 separate spans" in s["evidence_text"]
    level, words = s["verdict"]
    assert level == "success" and f"above the chance level {want:.3f}" in words and "layer 0 h2" in words


def test_search_summary_says_flagged_no_chance_and_below_chance():
    """One clump: too little evidence, whatever the score; no shifts: no chance level; a random walk on a few
    long clumps: the verdict follows the comparison of the best score with the chance level."""
    from rnnviz.probes import search_summary
    rng = np.random.default_rng(4)
    t = 300
    one = clumps(t, (100,), 30)
    x = (one + 0.1 * rng.normal(size=t)).astype(np.float32)[:, None]
    layers = SimpleNamespace(layers=[{"h": x}])
    s = search_summary(rank_units(layers, one, kinds=("h",), shifts=5), one, None, "one clump", shifts=5)
    assert s["evidence"]["spans"] == 1 and s["verdict"][0] == "warning"
    assert s["verdict"][1].startswith("**Not a detector: too little evidence.**")
    many = clumps(t, range(5, 290, 30), 12)
    walk = np.cumsum(rng.normal(size=(t, 4)), axis=0).astype(np.float32)
    plain = search_summary(rank_units(SimpleNamespace(layers=[{"h": walk}]), many, kinds=("h",)), many, None,
                           "many", shifts=0)
    assert np.isnan(plain["chance"]) and plain["verdict"][0] == "info"
    assert "Chance level:** none" in plain["evidence_text"]
    df = rank_units(SimpleNamespace(layers=[{"h": walk}]), many, kinds=("h",), shifts=20)
    s = search_summary(df, many, None, "many")
    beats = df.score.iloc[0] > df.chance.max()
    assert s["verdict"][0] == ("success" if beats else "warning")
    assert ("No unit beats chance" in s["verdict"][1]) == (not beats)


def test_best_unit_follows_a_chosen_hypothesis_only_where_it_varies():
    """A hypothesis the user chose is ranked when it varies on the text (the unit that follows it, by
    hand); one that does not vary there gives way to the corpus's default."""
    from rnnviz.probes import best_unit
    rng = np.random.default_rng(0)
    text = "".join(f'He said "{w} and {w}" then {w} left. ' for w in ("yes", "no", "maybe", "so") * 20)
    layers = [{k: rng.normal(size=(len(text), 6)).astype(np.float32) for k in ("h", "c")}]
    layers[0]["h"][:, 3] = vowel(text) + 0.5 * rng.normal(size=len(text))
    layers[0]["c"][:, 1] = -inside_quotes(text) + 0.5 * rng.normal(size=len(text))
    tr = SimpleNamespace(text=text, layers=layers)
    config = {"corpus": {"name": "quotes-seed0"}}
    got = best_unit(tr, config, hypothesis="vowel")
    by_hand = {(k, u): max(a, 1 - a) for k in ("h", "c") for u, a in
               enumerate(auroc(layers[0][k], vowel(text)))}
    assert (got["kind"], got["unit"]) == max(by_hand, key=by_hand.get) == ("h", 3)
    assert got["hypothesis"] == "vowel" and not got["default"]
    assert speaker_line(text).max() == 0  # no speaker line in this text: the default instead
    fallback = best_unit(tr, config, hypothesis="speaker-name line")
    assert fallback["hypothesis"] == "inside quotes" and fallback["default"]
    assert (fallback["kind"], fallback["unit"]) == ("c", 1)


def test_label_band_is_the_counted_yes_no_labels():
    from rnnviz.hypotheses import label_band
    y = np.array([0, 1, 1, 0, 1], np.float32)
    np.testing.assert_array_equal(label_band(y), y)
    band = label_band(y, np.array([True, False, True, True, False]))
    np.testing.assert_array_equal(np.isnan(band), [False, True, False, False, True])
    assert band[0] == 0 and band[2] == 1
    assert label_band(np.array([0, 2, 1])) is None  # a count: no yes/no band
    assert label_band(np.array([0, 2, 1]), np.array([True, False, True])) is not None  # counted: 0 and 1
