"""The atlas's int8 states against the error bound docs/atlas.md states, through the real quantiser
(stats._Series, as a build runs it) and the real dequantiser (Atlas.states)."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnviz.atlas.core import Atlas
from rnnviz.atlas.stats import _Series
from rnnviz.atlas.store import _MemorySink

U = 2.0 ** -24  # float32's unit roundoff
DOCS = Path(__file__).resolve().parents[1] / "docs" / "atlas.md"


def stored(a: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(dequantised states (T, H), per-row scale (T, H)) of a (T, H) float32 array, streamed in blocks."""
    T, H = a.shape
    n_blocks = -(-T // block)
    sink = _MemorySink(H, T)
    series = _Series(H, T, 32, n_blocks, False, sink)
    for start in range(0, T, block):
        series.add(torch.from_numpy(np.ascontiguousarray(a[start:start + block])), start, block)
    meta = {"num_layers": 1, "kinds": ["h"], "cell": "rnn", "hidden_size": H, "chars": T, "block": block}
    at = Atlas(meta, {"L0_h.scale": series.scale}, {"L0_h": sink.data}, "", None)
    return at.states(0, "h"), series.scale[np.arange(T) // block]


def excess(a: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(|stored - a| - s/2) / |a| per value (float64), and whether each value keeps the documented bound,
    |stored - a| <= (s/2)(1 + u) + (2u + u^2)|a| and <= s/2 + 1.2e-7 |a|."""
    got, s = stored(a, block)
    a64, s64 = a.astype(np.float64), s.astype(np.float64)
    err = np.abs(got.astype(np.float64) - a64)
    ok = err <= s64 / 2 * (1 + U) + (2 * U + U * U) * np.abs(a64)
    ok &= err <= s64 / 2 + 1.2e-7 * np.abs(a64)  # the short form, with s/2 · u folded into the |a| term
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(a64 != 0, (err - s64 / 2) / np.abs(a64), 0.0)
    return rel, ok


def test_random_states_keep_the_documented_bound():
    rng = np.random.default_rng(0)
    T, H, block = 3 * 2048, 32, 2048
    scales = 10.0 ** rng.uniform(-4, 3, H)  # units of very different ranges
    arrays = [rng.normal(size=(T, H)) * scales, rng.uniform(-1, 1, (T, H)) * scales,
              np.tanh(rng.standard_cauchy((T, H))), rng.standard_t(2, (T, H)) * scales]
    for a in arrays:
        a = a.astype(np.float32)
        a[rng.random(a.shape) < 0.01] = 0.0
        rel, ok = excess(a, block)
        assert ok.all(), float(rel.max())


def half_steps(rng, T: int, H: int, ulps: int = 4) -> np.ndarray:
    """Values a few ulps either side of a half-step (k + 1/2)·s of their block's scale: where rounding
    a / s in float32 can cross the half-step, and the product q·s rounds on top."""
    M = rng.uniform(0.01, 100.0, H).astype(np.float32)  # each unit's max |a|, kept in row 0
    s = (M / np.float32(127)).astype(np.float64)
    k = rng.integers(-127, 127, (T, H))
    a = ((k + 0.5) * s).astype(np.float32)
    steps = rng.integers(-ulps, ulps + 1, (T, H))
    for i in range(ulps):
        a = np.where(steps > i, np.nextafter(a, np.float32(np.inf)), a)
        a = np.where(steps < -i, np.nextafter(a, np.float32(-np.inf)), a)
    a[0] = M
    return a.astype(np.float32)


def test_adversarial_states_keep_the_bound_and_need_both_roundings():
    rng = np.random.default_rng(1)
    T, H = 4096, 64
    worst = 0.0
    over_old = 0
    for _ in range(2):
        rel, ok = excess(half_steps(rng, T, H), T)
        assert ok.all(), float(rel.max())
        worst = max(worst, float(rel.max()))
        over_old += int((rel > 6e-8).sum())
    # the allowance for the product's rounding alone (6e-8 |a|) does not hold; 2u |a| does
    assert over_old > 100 and 6e-8 < worst <= 2 * U * (1 + U)


def test_the_docs_state_the_allowance_that_holds():
    doc = DOCS.read_text(encoding="utf-8")
    section = doc[doc.index("## The compact states"):doc.index("## Labels")]
    assert "|stored − true| ≤ s / 2 + 1.2e-7 · |a|" in section
    assert "(s/2)(1 + u) + (2u + u²)·|a|" in section
    assert float(re.search(r"2u = ([0-9.e-]+)\)", section).group(1)) == pytest.approx(2 * U, rel=0.01)
    assert "under\n6e-8" not in section and "test_atlas_quant.py" in section
