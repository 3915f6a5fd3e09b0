"""Comparing two predictors: scores against independent paths, the breakdown against loops, vocab mismatch, CLI."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnviz import charclass, compare, ngram
from rnnviz.errors import TextError
from rnnviz.model import build
from rnnviz.trace import trace
from rnnviz.training import evaluate
from rnnviz.vocab import UNK

ROOT = Path(__file__).resolve().parents[1]
TEXT = 'def f(a, b):\n    return g("x", [a, b]) + h(\'it\')\n\nprint(f(1, 2))\n' * 3


def tiny(chars, seed=0, cell="lstm"):
    return build([UNK] + sorted(chars), cell=cell, hidden_size=16, num_layers=2, embed_size=8, seed=seed)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_model_scores_match_trace_and_evaluate(cell):
    torch.manual_seed(0)
    model = tiny(set(TEXT), cell=cell)
    sc = compare.model_scores(model, TEXT, chunk=17)  # chunks carry the state
    tr = trace(model, TEXT)
    np.testing.assert_allclose(sc.surprisal, tr.loss[:-1], rtol=1e-4, atol=1e-5)
    assert sc.surprisal.mean() == pytest.approx(evaluate(model, TEXT), rel=1e-5)
    np.testing.assert_array_equal(sc.predicted, np.array(tr.vocab)[tr.top_ids[:-1, 0]])


def test_ngram_scores():
    ng = ngram.fit(TEXT, 4)
    sc = compare.ngram_scores(ng, TEXT)
    d = ng.distribution(TEXT)
    ids = ng.encode(TEXT)
    np.testing.assert_allclose(sc.surprisal, -np.log(d[np.arange(len(TEXT) - 1), ids[1:]]), rtol=1e-12)
    assert "".join(sc.predicted) == "".join(ng.vocab.chars[i] for i in d[:-1].argmax(1))
    assert sc.name == "4-gram"


def test_breakdown_against_a_direct_computation():
    rng = np.random.default_rng(1)
    T = len(TEXT)
    chars = sorted(set(TEXT))
    a = compare.Scores("A", [UNK] + chars, rng.exponential(size=T - 1), rng.choice(chars, T - 1).astype("<U1"))
    b = compare.Scores("B", [UNK] + chars, rng.exponential(size=T - 1), np.array(list(TEXT[1:]), dtype="<U1"))
    res = compare.compare(TEXT, a, b)
    classes = charclass.classify(TEXT).names()
    bd = res.breakdown().set_index("class")
    total = 0
    for name in set(classes[1:]):
        rows = [t for t in range(T - 1) if classes[t + 1] == name]
        sa = [a.surprisal[t] for t in rows]
        sb = [b.surprisal[t] for t in rows]
        assert bd.loc[name, "count"] == len(rows)
        assert bd.loc[name, "mean_a"] == pytest.approx(sum(sa) / len(sa), rel=1e-12)
        assert bd.loc[name, "mean_b"] == pytest.approx(sum(sb) / len(sb), rel=1e-12)
        assert bd.loc[name, "diff"] == pytest.approx(sum(sa) / len(sa) - sum(sb) / len(sb), rel=1e-9, abs=1e-12)
        assert bd.loc[name, "a_wins"] == pytest.approx(sum(x < y for x, y in zip(sa, sb)) / len(sa))
        total += len(rows)
    assert total == T - 1 and len(bd) == len(set(classes[1:]))
    acc = res.accuracy().set_index(["model", "kind", "bucket"])
    # B predicts every next character exactly: accuracy 1 wherever there are closers
    for (model, kind, bucket), r in acc.iterrows():
        if model == "B" and r["count"]:
            assert r["accuracy"] == 1.0
    n_brackets = sum(c.startswith("closing bracket") for c in classes)
    assert acc.xs("B", level="model").xs("bracket", level="kind")["count"].sum() == n_brackets
    assert np.all(np.isfinite(res.diff)) and np.allclose(res.diff, a.surprisal - b.surprisal)
    assert res.left_out == {} and compare.left_out_message(res) is None


def test_different_vocabularies_compare_on_shared_characters():
    text = "abcab xyz abc!"
    a = tiny(set("abc x!"), seed=1)  # lacks y, z
    b = tiny(set("abc xyz"), seed=2)  # lacks !
    res = compare.compare(text, compare.model_scores(a, text, "A"), compare.model_scores(b, text, "B"))
    assert res.left_out == {"y": 1, "z": 1, "!": 1}
    nxt = text[1:]
    np.testing.assert_array_equal(res.kept, [c not in "yz!" for c in nxt])
    assert np.isnan(res.diff[~res.kept]).all() and np.isfinite(res.diff[res.kept]).all()
    assert res.breakdown()["count"].sum() == sum(c not in "yz!" for c in nxt)
    msg = compare.left_out_message(res)
    assert "3 characters" in msg and "only A knows '!'" in msg and "only B knows 'y', 'z'" in msg
    ma, _ = res.mean()
    assert ma == pytest.approx(float(np.mean([s for s, k in zip(res.a.surprisal, res.kept) if k])))
    with pytest.raises(TextError, match="share none"):
        compare.compare("qqq", compare.model_scores(a, "qqq"), compare.model_scores(b, "qqq"))


def test_bad_input():
    m = tiny(set("ab"))
    with pytest.raises(TextError, match="two characters"):
        compare.model_scores(m, "a")
    with pytest.raises(TextError, match="not for this text"):
        compare.compare("abab", compare.model_scores(m, "aba"), compare.model_scores(m, "abab"))


def test_summary_words_match_the_numbers():
    rng = np.random.default_rng(3)
    T = len(TEXT)
    chars = [UNK] + sorted(set(TEXT))
    sa = rng.exponential(size=T - 1)
    sb = sa.copy()
    classes = charclass.classify(TEXT).names()[1:]
    sb[classes == "word start"] += 2.0  # A wins on word starts by exactly 2 nats
    sb[classes == "other"] -= 0.5  # and loses on other by 0.5
    pred = np.array(list(TEXT[1:]), dtype="<U1")
    res = compare.compare(TEXT, compare.Scores("A", chars, sa, pred), compare.Scores("B", chars, sb, pred))
    words = compare.summary(res, top=1)
    assert "A gains most over B on “word start” (2.00 nats/char lower" in words
    assert "B does best against it on “other” (0.50 nats/char lower for B" in words


def test_cli_compare(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    from rnnviz import checkpoint

    checkpoint.save(tiny(set(TEXT), seed=1), a, {})
    checkpoint.save(tiny(set(TEXT) - {"["}, seed=2), b, {})
    f = tmp_path / "t.py"
    f.write_text(TEXT)
    run = dict(capture_output=True, text=True, cwd=ROOT, timeout=120)
    out = subprocess.run([sys.executable, "-m", "rnnviz", "compare", str(a), str(b), "--file", str(f), "--json"], **run)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    model_a, _ = checkpoint.load(a)
    model_b, _ = checkpoint.load(b)
    res = compare.compare(TEXT, compare.model_scores(model_a, TEXT, "a"), compare.model_scores(model_b, TEXT, "b"))
    assert got["left_out"] == {"[": TEXT.count("[")}
    assert got["mean_a"] == pytest.approx(res.mean()[0], rel=1e-6)
    assert [r["count"] for r in got["classes"]] == list(res.breakdown()["count"])
    out = subprocess.run([sys.executable, "-m", "rnnviz", "compare", str(a), str(b), "--file", str(f)], **run)
    assert out.returncode == 0 and "closing bracket" in out.stdout and "left out" in out.stdout
    out = subprocess.run([sys.executable, "-m", "rnnviz", "compare", str(a), "ngram:x", "--file", str(f)], **run)
    assert out.returncode == 1 and "ngram:N" in out.stderr and "Traceback" not in out.stderr
    # a model whose config names no corpus: no training split for the n-gram, a clear message
    out = subprocess.run([sys.executable, "-m", "rnnviz", "compare", str(a), "ngram:3", "--file", str(f)], **run)
    assert out.returncode == 1 and "names no training corpus" in out.stderr
    assert math.isfinite(got["mean_b"])


def test_first_chars_says_how_much_of_the_text():
    assert compare.first_chars("abcdef", 4, "x's text") == ("abcd", "the first 4 characters of x's text")
    assert compare.first_chars("abcdef", 6, "x's text") == ("abcdef", "all 6 characters of x's text")
    assert compare.first_chars("a" * 1500, 9_999, "y") == ("a" * 1500, "all 1,500 characters of y")


def test_shading_against_a_loop():
    """Character k's shade is A's surprisal on it minus B's; the limit a 99th percentile interpolated by hand."""
    torch.manual_seed(0)
    text = TEXT.replace("x", "€")  # '€' is in neither vocabulary: left out, so NaN
    a, b = tiny(set(TEXT), seed=1), tiny(set(TEXT), seed=2)
    res = compare.compare(text, compare.model_scores(a, text, "a"), compare.model_scores(b, text, "b"))
    sa, sb = compare.model_scores(a, text).surprisal, compare.model_scores(b, text).surprisal
    d = sorted(abs(sa[k] - sb[k]) for k in range(len(text) - 1) if text[k + 1] != "€")
    pos = 0.99 * (len(d) - 1)
    want = d[int(pos)] + (pos - int(pos)) * (d[min(int(pos) + 1, len(d) - 1)] - d[int(pos)])
    for start, length in [(0, 2_000), (17, 40), (len(text) - 5, 100)]:
        vals, lim = compare.shading(res, start, length)
        assert len(vals) == min(length, len(text) - start) and lim == pytest.approx(want, rel=1e-12)
        for i, v in enumerate(vals):
            k = start + i
            if k == 0 or text[k] == "€":
                assert np.isnan(v)
            else:
                assert v == pytest.approx(sa[k - 1] - sb[k - 1], abs=1e-6)


def test_file_stem_keeps_names_in_their_folder():
    res = compare.compare("ab", compare.Scores("../a b", list("ab"), np.zeros(1), np.array(["a"])),
                          compare.Scores("8-gram/€", list("ab"), np.zeros(1), np.array(["b"])))
    stem = compare.file_stem(res)
    assert stem == "compare-.._a_b-vs-8-gram_" and "/" not in stem
