"""The n-gram baseline against a brute-force Kneser–Ney written with Python dicts, its cache, and the CLI verb."""
import json
import math
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from rnnviz import checkpoint, corpora, heldout, ngram
from rnnviz.errors import ConfigError, TextError
from rnnviz.recipes import TINY
from rnnviz.vocab import UNK, Vocab

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("the cat sat on the mat. the cat ate the rat; a bat sat on a hat.\n"
        "that cat? a fat cat! (the mat) [a rat] the end.\n") * 3 + "odd tail: zebra quiz"


class BruteKN:
    """Interpolated Kneser–Ney from the equations, one dict per order, no numpy."""

    def __init__(self, text: str, order: int, chars: list[str]):
        self.N, self.chars, self.V = order, chars, len(chars)
        known = set(chars)
        text = "".join(c if c in known else UNK for c in text)
        self.a = []  # a[n][gram]: count at the top order, continuation count below
        for n in range(1, order + 1):
            if n == order:
                a = Counter(text[i:i + n] for i in range(len(text) - n + 1))
            else:
                left = defaultdict(set)
                for i in range(1, len(text) - n + 1):
                    left[text[i:i + n]].add(text[i - 1])
                a = Counter({g: len(s) for g, s in left.items()})
            self.a.append(a)
        self.D = []
        for a in self.a:
            n1 = sum(1 for v in a.values() if v == 1)
            n2 = sum(1 for v in a.values() if v == 2)
            self.D.append(n1 / (n1 + 2 * n2) if n1 and n2 else 0.5)

    def prob(self, history: str, w: str) -> float:
        """P(w | history), history the last up to N-1 characters before w."""
        history = history[len(history) - (self.N - 1):] if self.N > 1 else ""
        p = 1.0 / self.V
        for n in range(1, len(history) + 2):
            h = history[len(history) - (n - 1):] if n > 1 else ""
            a = self.a[n - 1]
            total = sum(v for g, v in a.items() if g[:-1] == h)
            if total == 0:
                continue
            types = sum(1 for g, v in a.items() if g[:-1] == h and v > 0)
            d = self.D[n - 1]
            p = (max(a.get(h + w, 0) - d, 0) + d * types * p) / total
        return p


@pytest.mark.parametrize("order", [1, 3, 5])
def test_probabilities_match_brute_force(order):
    model = ngram.fit(TEXT, order)
    ref = BruteKN(TEXT, order, model.vocab.chars)
    rng = random.Random(order)
    query = TEXT[:60] + "xyzzy the qat (bat) sat"  # seen and unseen histories, unseen characters
    positions = sorted(rng.sample(range(len(query)), 25)) + [0, 1, len(query) - 1]
    dist = model.distribution(query, positions)  # (P, V)
    clean = "".join(c if c in model.vocab.index else UNK for c in query)
    for row, t in enumerate(positions):
        hist = clean[max(0, t - order + 2):t + 1]
        want = [ref.prob(hist, w) for w in model.vocab.chars]
        np.testing.assert_allclose(dist[row], want, rtol=1e-12, atol=1e-15)


def test_sums_to_one_for_random_contexts():
    text = Path(__file__).read_text()[:20_000]
    model = ngram.fit(text, 8)
    rng = np.random.default_rng(0)
    chars = model.vocab.chars[1:] + ["\u00e9", "\u4e2d"]  # two characters it never saw
    for _ in range(5):
        query = "".join(rng.choice(chars, size=300))
        d = model.distribution(query)
        assert d.shape == (300, len(model.vocab))
        assert np.all(d > 0)
        np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-12)
    d = model.distribution(text[:2000], np.arange(0, 2000, 7))  # seen contexts
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-12)


def test_surprisal_and_argmax_agree_with_distribution():
    model = ngram.fit(TEXT, 4)
    q = TEXT[5:90]
    d = model.distribution(q)  # (T, V)
    ids = model.encode(q)
    np.testing.assert_allclose(model.surprisal(q), -np.log(d[np.arange(len(q) - 1), ids[1:]]), rtol=1e-12)
    np.testing.assert_array_equal(model.argmax(q), d[:-1].argmax(1))
    assert model.loss(q) == pytest.approx(float(np.mean(model.surprisal(q))))


def test_a_higher_order_predicts_its_training_text_better():
    text = Path(__file__).read_text()
    losses = [ngram.fit(text, n).loss(text) for n in (1, 2, 4, 8)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0]


def test_bad_input():
    with pytest.raises(TextError, match="too few for an order-8"):
        ngram.fit("abcdef", 8)
    with pytest.raises(TextError, match="empty"):
        ngram.fit("", 3)
    for bad in (0, 13, 2.5, True):
        with pytest.raises(ConfigError, match="order"):
            ngram.fit(TEXT, bad)
    assert ngram.max_order(66) == 10 and ngram.max_order(102) == 9 and ngram.max_order(2) == 12
    for V in (66, 102, 234, 235):
        assert V ** ngram.max_order(V) < 2 ** 63 <= V ** (ngram.max_order(V) + 1)
    with pytest.raises(ConfigError, match="int64"):
        ngram.fit("".join(chr(0x4e00 + i) for i in range(300)) * 2, 8)
    with pytest.raises(TextError, match="two characters"):
        ngram.fit(TEXT, 3).surprisal("a")


def test_cache_round_trip_and_corrupt_files(tmp_path, monkeypatch):
    m1 = ngram.fit_cached(TEXT, 5, folder=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    real_fit = ngram.fit

    def no_fit(*a, **k):
        raise AssertionError("refitted although the cache was good")

    monkeypatch.setattr(ngram, "fit", no_fit)
    m2 = ngram.fit_cached(TEXT, 5, folder=tmp_path)
    q = TEXT[:100]
    np.testing.assert_array_equal(m1.distribution(q), m2.distribution(q))
    monkeypatch.setattr(ngram, "fit", real_fit)
    calls = []
    monkeypatch.setattr(ngram, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    # another order, another vocabulary: other entries, never this one
    ngram.fit_cached(TEXT, 4, folder=tmp_path)
    ngram.fit_cached(TEXT, 5, vocab=Vocab.from_text(TEXT + "Q"), folder=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npz"))) == 3
    # garbage bytes, a truncated file, and a well-formed file whose keys are out of order
    for damage in ("garbage", "truncate", "unsorted"):
        if damage == "garbage":
            files[0].write_bytes(b"not a zip file at all")
        elif damage == "truncate":
            files[0].write_bytes(files[0].read_bytes()[:200])
        else:
            arrays = dict(m1.arrays())
            arrays["keys_3"] = arrays["keys_3"][::-1].copy()
            with open(files[0], "wb") as f:
                np.savez(f, **arrays)
        before = len(calls)
        m3 = ngram.fit_cached(TEXT, 5, folder=tmp_path)
        assert len(calls) == before + 1, damage
        np.testing.assert_array_equal(m3.distribution(q), m1.distribution(q))
    with np.load(files[0], allow_pickle=False) as z:  # the refit overwrote the damaged file
        ngram.NgramModel.from_arrays(z)


def test_a_pickled_cache_is_refused(tmp_path):
    arrays = dict(ngram.fit(TEXT, 3).arrays())
    arrays["keys_1"] = np.array([object()], dtype=object)
    with open(tmp_path / "x.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ngram.NgramCacheError):
        with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
            ngram.NgramModel.from_arrays(z)


needs_tiny = pytest.mark.skipif(not TINY.path().is_file(), reason="tinyshakespeare not on this machine")


@needs_tiny
def test_training_text_is_the_models_training_split():
    _, config = checkpoint.load(ROOT / "pretrained" / "shakespeare-lstm")
    train, notice = ngram.training_text(config)
    held, _ = heldout.held_out_text(config)
    full = TINY.path().read_text()
    assert notice is None
    assert train == full[:config["corpus"]["split"]["val_start"]] and train + held == full


def test_training_text_of_a_model_whose_corpus_is_not_here():
    _, config = checkpoint.load(ROOT / "pretrained" / "memory-lstm")
    with pytest.raises(ConfigError, match="not on this machine"):
        ngram.training_text(config)


def test_cli_ngram(tmp_path):
    corpus, ev = tmp_path / "c.txt", tmp_path / "e.txt"
    corpus.write_text(TEXT * 4)
    ev.write_text("the cat sat on the hat.\n")
    env_py = [sys.executable, "-m", "rnnviz"]
    kw = dict(capture_output=True, text=True, cwd=ROOT, timeout=120,
              env={"RNNVIZ_ATLAS_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    out = subprocess.run(env_py + ["ngram", "--corpus", str(corpus), "--order", "3", "--eval", str(ev), "--json"], **kw)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    train, _ = corpora.split(corpora.user_text(corpus, name="c.txt"), 0.1)
    assert got == {"order": 3, "loss": pytest.approx(ngram.fit(train, 3).loss(ev.read_text()), rel=1e-12)}
    out = subprocess.run(env_py + ["ngram", "--corpus", str(corpus), "--order", "3", "--json"], **kw)
    _, held = corpora.split(corpora.user_text(corpus, name="c.txt"), 0.1)
    assert json.loads(out.stdout)["loss"] == pytest.approx(ngram.fit(train, 3).loss(held), rel=1e-12)
    ev.write_text("abc")
    out = subprocess.run(env_py + ["ngram", "--corpus", str(ev), "--order", "8", "--json"], **kw)
    assert out.returncode == 1 and "too few for an order-8" in out.stderr and "Traceback" not in out.stderr
    assert math.isfinite(got["loss"])


@pytest.mark.slow
def test_bench_quick_smoke_run(tmp_path):
    """bench/ngram.py runs and prints every row at tiny sizes (no timing asserted)."""
    out = subprocess.run([sys.executable, "-m", "bench.ngram", "--quick", "--json", str(tmp_path / "rows.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r[0].split(",")[0] for r in rows] == ["n-gram fit", "n-gram fit peak memory", "n-gram scoring",
                                                  "n-gram argmax over the vocabulary"]
    assert all(math.isfinite(r[1]) for r in rows)
