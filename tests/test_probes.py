"""Tests for rnnviz.probes: hypotheses, AUROC, correlation and unit ranking."""
from types import SimpleNamespace

import numpy as np
import pytest

from rnnviz.errors import ConfigError
from rnnviz.probes import (HYPOTHESES, after_newline, auroc, bracket_depth, correlation, indentation,
                           inside_quotes, is_binary, position_in_line, python_string_labels,
                           rank_units, regex_hypothesis, unit_stats, uppercase, vowel)
from rnnviz.probes import direction_words


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
    text = "a 'b\"c' \"d'\" e 'f\ng"
    want = [0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]
    np.testing.assert_array_equal(inside_quotes(text), want)
    # an apostrophe inside a word opens nothing; a string prefix does
    np.testing.assert_array_equal(inside_quotes("it's x"), [0] * 6)
    np.testing.assert_array_equal(inside_quotes("=f'a'+b"), [0, 1, 1, 1, 1, 0, 0])
    assert inside_quotes(text).dtype == np.float32


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
    assert set(HYPOTHESES) == {"inside quotes", "bracket depth", "position in line", "indentation",
                               "right after a newline", "uppercase", "vowel"}
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
