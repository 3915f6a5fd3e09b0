import time

import numpy as np
import pytest

from rnnviz.errors import ConfigError
from rnnviz import matching
from rnnviz.matching import match, select_and_match, select_units


def _planted(T=5000, H=20, seed=0):
    """Units 2, 5, 7 on (0.9) over planted spans; elsewhere every unit stays below 0.3."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 0.3, size=(T, H)).astype(np.float32)
    full = [(100, 110), (2000, 2010), (4000, 4007), (3000, 3030)]
    for a, b in full:
        x[a:b, [2, 5, 7]] = 0.9
    partial = [(500, 510), (1500, 1510)]  # only two of the three
    for a, b in partial:
        x[a:b, [2, 5]] = 0.9
    return x, full, partial


def test_select_units_on_through_the_span():
    x, _, _ = _planted()
    np.testing.assert_array_equal(select_units(x, 100, 110, 0.5), [2, 5, 7])
    # padding: units on just before the span are dropped
    x2 = x.copy()
    x2[95:100, 5] = 0.9
    np.testing.assert_array_equal(select_units(x2, 100, 110, 0.5, before=5), [2, 7])
    np.testing.assert_array_equal(select_units(x2, 100, 110, 0.5, after=5), [2, 5, 7])


def test_match_finds_planted_spans_first():
    x, full, partial = _planted()
    units = select_units(x, 100, 110, 0.5)
    m = match(x[:, units].T, 0.5, 10, units=units)
    got = list(zip(m.table.start, m.table.end))
    # all three units on: the two of length 10 first (by position), then 7 and 30 by length closeness
    assert got[:4] == [(100, 110), (2000, 2010), (4000, 4007), (3000, 3030)]
    assert list(m.table.overlap[:4]) == [3, 3, 3, 3]
    assert set(got[4:6]) == set(partial) and list(m.table.overlap[4:6]) == [2, 2]
    assert m.heatmap.shape == (3, len(m.table))
    np.testing.assert_allclose(m.heatmap[:, 0], 0.9, rtol=1e-6)
    # the query itself left out
    m2 = match(x[:, units].T, 0.5, 10, exclude=(100, 110))
    assert (100, 110) not in list(zip(m2.table.start, m2.table.end))
    # min_overlap = 3 drops the partial spans
    m3 = match(x[:, units].T, 0.5, 10, min_overlap=3)
    assert len(m3) == 4


def test_overlap_counts_units_on_throughout():
    x = np.zeros((3, 12), np.float32)
    x[:, 2:8] = 1.0
    x[2, 5] = 0.0  # unit 2 dips once inside the run
    m = match(x, 0.5, 6, min_overlap=2)
    assert (m.table.start[0], m.table.end[0], m.table.overlap[0]) == (2, 8, 2)


@pytest.mark.parametrize("args,msg", [((100, 101, 0.5), "at least two"), ((100, 100, 0.5), "must lie"),
                                      ((100, 110, 2.0), "no unit"), ((100, 110, -5.0), "all 20 units"),
                                      ((4990, 5010, 0.5), "must lie")])
def test_select_errors(args, msg):
    x, _, _ = _planted()
    with pytest.raises(ConfigError, match=msg):
        select_units(x, *args)


def test_select_and_match_on_an_atlas_like_object():
    x, full, _ = _planted()

    class Fake:
        def unit_states(self, layer, kind, units):
            return x[:, units].T

    m = select_and_match(x, 100, 110, 0.5, Fake(), 0, "h", exclude_query=True)
    assert (m.table.start[0], m.table.end[0]) == (2000, 2010)


def test_match_over_200k_characters_is_fast():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(16, 200_000)).astype(np.float32)
    t = time.perf_counter()
    m = match(x, 0.5, 10, min_length=1)  # random states: runs are short
    elapsed = time.perf_counter() - t
    assert len(m) == 20
    print(f"match over 200,000 characters, 16 units: {elapsed:.3f} s")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_heatmap_and_order_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(5, 400)).astype(np.float32)
    x[:, -3:] = 0.9  # a run that reaches the end of the text
    m = match(x, 0.0, 4, min_overlap=2, top=10_000, min_length=1)
    on = x >= 0.0
    count = on.sum(0)
    runs, t = [], 0
    while t < 400:  # the maximal runs with at least 2 units on, by hand
        if count[t] >= 2:
            s = t
            while t < 400 and count[t] >= 2:
                t += 1
            runs.append((s, t))
        else:
            t += 1
    assert sorted(zip(m.table.start, m.table.end)) == runs
    short = match(x, 0.0, 4, min_overlap=2, top=10_000)  # by default no run shorter than half the query's
    assert sorted(zip(short.table.start, short.table.end)) == [r for r in runs if r[1] - r[0] >= 2]
    for i, row in m.table.iterrows():
        a, b = int(row.start), int(row.end)
        assert row.overlap == on[:, a:b].all(axis=1).sum()
        np.testing.assert_allclose(m.heatmap[:, i], x[:, a:b].astype(np.float64).mean(axis=1), atol=1e-9)
        assert row.mean_on == pytest.approx(count[a:b].mean() / 5)
    keys = list(zip(-m.table.overlap, (m.table.length - 4).abs(), m.table.start))
    assert keys == sorted(keys)
    assert m.table.end.max() == 400  # the run at the end of the text is found (and its overlap checked above)


def test_suggested_threshold_selects_about_that_many_units():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 40))
    t = matching.suggest_threshold(x, 10, 20, units=7)
    on = (x[10:20] >= t).all(axis=0)
    lows = np.sort(x[10:20].min(axis=0))[::-1]
    assert on.sum() >= 7 and t <= lows[6] < t + 0.01  # brute force: the 7th highest span minimum
