"""The atlas's separated peaks (greedy non-maximum suppression over exact candidates) and its float64 moments,
against brute force over every character."""
import numpy as np
import pytest
import torch

from rnnviz import atlas as A
from rnnviz.atlas import stats
from rnnviz.atlas.store import _MemorySink
from rnnviz.model import build
from rnnviz.trace import trace

pytestmark = pytest.mark.usefixtures("one_thread")
LINE = 'print("a #### b", x)  # note\nif y:\n    z = f(\'q\') + 2\n'
CHUNK = 256


def greedy(x: np.ndarray, highest: bool, n: int = stats.PEAKS, sep: int = stats.SEPARATION) -> list[int]:
    """Brute force: every position in order (value, then earlier position); keep one more than sep from all kept."""
    pos = np.arange(len(x))
    picks = []
    for p in np.lexsort((pos, -x if highest else x)):
        if all(abs(int(p) - q) > sep for q in picks):
            picks.append(int(p))
            if len(picks) == n:
                break
    return picks


def _model(cell="lstm"):
    model = build(sorted(set(LINE)), cell=cell, hidden_size=8, num_layers=2, embed_size=6, seed=3)
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(3.0)  # saturating gates: long plateaus, many near-equal neighbours (the case to suppress)
    return model


@pytest.mark.parametrize("cell,length", [("lstm", 3000), ("gru", 3000), ("lstm", 150)])
def test_peaks_are_the_greedy_choice_over_every_character(cell, length):
    model = _model(cell)
    text = (LINE * (length // len(LINE) + 1))[:length]
    at = A.build_atlas(model, text, cache=False, chunk=CHUNK, top_k=32)
    tr = trace(model, text, chunk=CHUNK)  # the same chunking: bit for bit the atlas's arithmetic
    for l in range(2):
        for kind in at.kinds:
            x = tr.get(l, kind)
            for u in range(8):
                for which, highest in (("top", True), ("bottom", False)):
                    peaks = at.peaks(l, kind, u, which)
                    ref = greedy(x[:, u], highest)
                    assert [p for p, _ in peaks] == ref
                    np.testing.assert_array_equal(np.float32([v for _, v in peaks]), x[ref, u])
                    got = sorted(p for p, _ in peaks)
                    assert len(set(got)) == len(got) and all(b - a > stats.SEPARATION for a, b in zip(got, got[1:]))
                    assert at.peaks(l, kind, u, which, 3) == peaks[:3]
                    # the exact top-K stays as it was: the plain best values, neighbours and all
                    best = (at.top if highest else at.bottom)(l, kind, u)
                    assert best[0] == peaks[0] and len(best) == min(32, length)
    if length < stats.PEAK_DEPTH:  # a short corpus holds fewer separated places: all of them, no more
        assert len(at.peaks(0, "h", 0)) == len(greedy(tr.get(0, "h")[:, 0], True)) < stats.PEAKS
    else:
        assert len(at.peaks(0, "h", 0)) == stats.PEAKS


def _worst_case(blocks: int) -> np.ndarray:
    """Each block of 2 * SEPARATION + 1 characters has its peak in the middle and every other value just
    below it, and above the next block's peak: the k-th greedy pick ranks (k - 1) * block + 1 overall."""
    w = 2 * stats.SEPARATION + 1
    x = np.empty(blocks * w, np.float32)
    for b in range(blocks):
        base = 1000.0 - 100.0 * b
        x[b * w:(b + 1) * w] = base - 1.0 - np.arange(w, dtype=np.float32) * 0.01
        x[b * w + stats.SEPARATION] = base
    return x


def test_peak_depth_is_the_candidate_count_that_always_suffices():
    x = _worst_case(stats.PEAKS + 4)
    ref = greedy(x, True)
    assert len(ref) == stats.PEAKS
    order = np.lexsort((np.arange(len(x)), -x))
    assert int(np.flatnonzero(order == ref[-1])[0]) + 1 == stats.PEAK_DEPTH  # the last pick's rank: the depth
    # through the streaming buffer, in chunks
    ser = stats._Series(1, len(x), 32, -(-len(x) // 100), False, _MemorySink(1, len(x)))
    for s in range(0, len(x), 100):
        ser.add(torch.from_numpy(x[s:s + 100, None]), s, 100)
    out = ser.finish()
    assert out["top_peak_pos"][:, 0].tolist() == ref
    # one candidate fewer and the last pick cannot be certified: the depth is tight
    cand = order[:stats.PEAK_DEPTH - 1, None]
    short, _ = stats.separated_peaks(cand, x[cand])
    assert short[:, 0].tolist() == ref[:-1] + [-1]


def test_mean_and_std_are_float64_sums():
    rng = np.random.default_rng(0)
    x = (1000.0 + rng.standard_normal((5000, 4)) * np.array([1e-3, 1.0, 10.0, 100.0])).astype(np.float32)
    ser = stats._Series(4, len(x), 32, 3, False, _MemorySink(4, len(x)))
    for s in range(0, len(x), 2048):
        ser.add(torch.from_numpy(x[s:s + 2048]), s, 2048)
    out = ser.finish()
    ref = x.astype(np.float64)
    np.testing.assert_allclose(out["mean"], ref.mean(0), rtol=1e-13)
    np.testing.assert_allclose(out["std"], ref.std(0), rtol=1e-9)  # std 1e-3 about 1000: cancellation of 1e6
