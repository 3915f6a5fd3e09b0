"""Issue 30's analyses (rnnviz/paper): the onion, gate saturation by layer, training dynamics, their CLI."""
import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

import reference as ref
from rnnviz import checkpoint, cli
from rnnviz.model import build
from rnnviz.ngram import fit
from rnnviz.paper import dynamics as dyn  # the module
from rnnviz.paper.onion import NAMES, compare_onions, onion, peel
from rnnviz.paper.saturation import layer_saturation, saturation_summary
from rnnviz.vocab import Vocab

TRAIN = ("the cat sat on the mat. the dog sat on the log, and the cat ran.\n"
         "a dog and a cat; the mat and the log!\n") * 4
TEXT = "the cat ran to the dog. the cat sat, and the log fell!\nthe mat sat on a dog."


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "cache"))  # the n-gram cache lives there


def _tiny(cell="lstm", seed=0, scale=1.0, layers=2):
    model = build(Vocab.from_text(TRAIN + TEXT), cell, hidden_size=8, num_layers=layers, embed_size=5, seed=seed)
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            p.mul_(scale)  # larger weights push gates to their ends: saturation to count
    return model.eval()


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _ref_log_probs(model, text):
    """(T, V) float64 log-probabilities from the step-by-step numpy cell."""
    _, logits = ref.forward(model.state_dict(), model.cell, model.config.num_layers, model.vocab.encode(text))
    return _log_softmax(logits)


# --- the onion ------------------------------------------------------------------------------------------

def _brute_category(text, j, ngram_hit, memory, words, rare_max):
    """The first category explaining an error at text[j], written out plainly from docs/paper.md."""
    is_word = lambda c: c.isalnum() or c == "_"
    if ngram_hit:
        return "n-gram"
    if j >= memory:
        first = text.find(text[j - memory:j + 1])
        if first != -1 and first < j - memory:  # an occurrence that ends before text[j]
            return "dynamic memory"
    if is_word(text[j]):
        a = b = j
        while a > 0 and is_word(text[a - 1]):
            a -= 1
        while b + 1 < len(text) and is_word(text[b + 1]):
            b += 1
        if words.get(text[a:b + 1], 0) <= rare_max:
            return "rare words"
        if not is_word(text[j - 1]):
            return "word model"
        return "boost"
    return "boost" if text[j].isspace() else "punctuation"


def test_onion_counts_on_a_built_text():
    text = "the cat. the cat, zyx!\nthe dog"
    words = Counter({"the": 10, "cat": 10, "dog": 10})
    at = {  # the error positions and what each must be, built by hand
        text.index("h"): "n-gram",                       # the oracle gives it p >= 0.5
        text.index("a", 9): "dynamic memory",           # "e ca" occurred in the first "the cat"
        text.index("z"): "rare words", text.index("y"): "rare words",  # zyx: never in training
        text.index("d"): "word model",                   # first letter of a common word
        text.index("!"): "punctuation", text.index(","): "punctuation",
        text.index("\n"): "boost", text.index("o", 20): "boost",
    }
    p = np.full(len(text) - 1, 0.9)
    ngram = np.full((2, len(text) - 1), 0.1)
    for j in at:
        p[j - 1] = 0.3
    ngram[1, text.index("h") - 1] = 0.6
    result = peel(text, p, ngram, words, memory=3, rare_max=1)
    got = {c["name"]: c["count"] for c in result.categories}
    assert got == {n: list(at.values()).count(n) for n in NAMES}
    assert result.errors == len(at) == sum(got.values())
    assert {j: NAMES[result.category[j - 1]] for j in at} == at
    assert result.by_char[text.index("z")] == NAMES.index("rare words")
    assert abs(sum(c["share"] for c in result.categories) - 1) < 1e-12


def test_onion_is_a_partition_matching_brute_force(shakespeare_text):
    text, train = shakespeare_text[500_000:503_000], shakespeare_text[:200_000]
    words = Counter(re.findall(r"\w+", train))
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, len(text) - 1)
    p[::7] = 0.5  # exactly 0.5 is not an error
    ngram = rng.uniform(0, 0.6, (3, len(text) - 1))
    result = peel(text, p, ngram, words, memory=4, rare_max=2)
    err = np.flatnonzero(result.category[:-1] >= 0)
    assert np.array_equal(err, np.flatnonzero(p < 0.5))
    expected = Counter(_brute_category(text, t + 1, (ngram[:, t] >= 0.5).any(), 4, words, 2) for t in err)
    assert {c["name"]: c["count"] for c in result.categories} == {n: expected.get(n, 0) for n in NAMES}
    assert all(expected[n] > 0 for n in NAMES)  # every category is exercised
    for t in err[:400]:
        assert NAMES[result.category[t]] == _brute_category(text, t + 1, (ngram[:, t] >= 0.5).any(), 4, words, 2)


def test_onion_errors_are_exactly_the_characters_below_one_half():
    model = _tiny(seed=3)
    V = len(model.vocab)
    with torch.no_grad():  # p(space) near 0.5, so whether it is an error depends on the state
        sp = model.vocab.index[" "]
        model.head.weight[sp] *= 8
        model.head.bias[sp] = 0.0
        z = ref.forward(model.state_dict(), "lstm", 2, model.vocab.encode(TEXT))[1]  # (T, V)
        margin = z[:, sp] - np.log(np.exp(np.delete(z, sp, 1)).sum(1))  # logit of p(space) before the bias
        model.head.bias[sp] = -float(np.median(margin[[c == " " for c in TEXT[1:]] + [False]]))
    result = onion(model, TEXT, train_text=TRAIN, max_order=3)
    lp = _ref_log_probs(model, TEXT)
    p = np.exp(lp[np.arange(len(TEXT) - 1), model.vocab.encode(TEXT)[1:]])
    clear = np.abs(p - 0.5) > 1e-4
    assert np.array_equal((result.category[:-1] >= 0)[clear], (p < 0.5)[clear])
    assert (p >= 0.5).sum() > 0 and result.errors < result.chars  # some characters are not errors
    assert result.orders == (1, 2, 3) and result.chars == len(TEXT) - 1
    assert sum(c["count"] for c in result.categories) == result.errors
    rows = compare_onions(result, result)
    assert [r["name"] for r in rows] == list(NAMES) and all(r["change"] == 0 for r in rows)


# --- saturation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_saturation_fractions_match_the_numpy_cell(cell):
    model = _tiny(cell, seed=1, scale=4.0)
    table = layer_saturation(model, TEXT)
    layers, _ = ref.forward(model.state_dict(), cell, 2, model.vocab.encode(TEXT))
    gates = {"lstm": "ifgo", "gru": "rzn"}[cell]
    seen = 0
    for l, out in enumerate(layers):
        for g in gates:
            v = out[g]  # (T, H)
            lo, hi = (-0.9, 0.9) if g in "gn" else (0.1, 0.9)
            rows = table[(table.layer == l) & (table.gate == g)].sort_values("unit")
            border = ((np.abs(v - lo) < 1e-5) | (np.abs(v - hi) < 1e-5)).sum(0) / len(v)
            assert np.all(np.abs(rows["left"].to_numpy() - (v < lo).mean(0)) <= border + 1e-12)
            assert np.all(np.abs(rows["right"].to_numpy() - (v > hi).mean(0)) <= border + 1e-12)
            seen += ((v < lo) | (v > hi)).sum()
    assert seen > 0  # the scaled weights do saturate some gates
    summary = saturation_summary(table)
    first = summary[(summary.layer == 0) & (summary.gate == gates[0])].iloc[0]
    part = table[(table.layer == 0) & (table.gate == gates[0])]
    assert first["mean_right"] == pytest.approx(part["right"].mean())
    assert first["share_mostly_right"] == pytest.approx((part["right"] > 0.5).mean())


def test_saturation_of_a_vanilla_rnn_is_empty():
    assert layer_saturation(_tiny("rnn"), TEXT).empty and saturation_summary(layer_saturation(_tiny("rnn"), TEXT)).empty


# --- dynamics -------------------------------------------------------------------------------------------

def test_dynamics_kl_matches_a_direct_computation():
    models = [(10, _tiny(seed=1)), (20, _tiny(seed=2, scale=2.0))]
    result = dyn.dynamics(models, TEXT, orders=(1, 3), train_text=TRAIN)
    assert result["steps"] == [10, 20] and result["orders"] == [1, 3] and result["kl"].shape == (2, 2)
    pos = np.arange(len(TEXT) - 1)
    for s, (_, model) in enumerate(models):
        lp = _ref_log_probs(model, TEXT)[:-1]
        p = np.exp(lp)
        for o, n in enumerate((1, 3)):
            q = fit(TRAIN, n, model.vocab).distribution(TEXT, pos)  # (T-1, V)
            direct = (p * np.log(p / q)).sum(1) + (q * np.log(q / p)).sum(1)
            assert result["kl"][s, o] == pytest.approx(direct.mean(), rel=1e-5)


def test_dynamics_without_snapshots_says_so():
    with pytest.raises(Exception, match="no training history"):
        dyn.dynamics([], TEXT, train_text=TRAIN)


# --- the CLI --------------------------------------------------------------------------------------------

def test_cli_json_shapes(tmp_path, capsys):
    model = _tiny(seed=4)
    snaps = [{"step": s, "tensors": _tiny(seed=s).state_dict()} for s in (1, 5)]
    ckpt = checkpoint.save(model, tmp_path / "tiny", history=snaps)
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "train.txt").write_text(TRAIN)
    files = ["--text", str(tmp_path / "text.txt")]
    assert cli.main(["paper", "onion", str(ckpt), *files, "--train", str(tmp_path / "train.txt"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"chars", "errors", "categories"} and out["chars"] == len(TEXT) - 1
    assert [set(c) for c in out["categories"]] == [{"name", "count", "share"}] * len(NAMES)
    assert sum(c["count"] for c in out["categories"]) == out["errors"]
    assert cli.main(["paper", "saturation", str(ckpt), *files, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["layer"], r["gate"]) for r in rows} == {(l, g) for l in (0, 1) for g in "ifgo"}
    assert cli.main(["paper", "dynamics", str(ckpt), *files, "--train", str(tmp_path / "train.txt"),
                     "--orders", "1-2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == [1, 5] and out["orders"] == [1, 2] and np.array(out["kl"]).shape == (2, 2)
    bare = checkpoint.save(model, tmp_path / "bare")
    assert cli.main(["paper", "dynamics", str(bare), *files, "--train", str(tmp_path / "train.txt")]) == 1
    assert "no training history" in capsys.readouterr().err


# --- the shipped analyses ---------------------------------------------------------------------------------

def test_shipped_analyses_read_back_and_agree_with_themselves():
    from rnnviz.paper import shipped

    data = shipped.shipped_analyses()
    assert data is not None, "pretrained/paper/analyses.json is missing or damaged: python -m rnnviz paper analyses"
    comp = data["onion_comparison"]
    small, large = data["onion"][comp["small"]], data["onion"][comp["large"]]
    for row, a, b in zip(comp["rows"], small["categories"], large["categories"]):
        assert (row["small"], row["large"], row["change"]) == (a["count"], b["count"], b["count"] - a["count"])
    for entry in data["saturation"].values():  # the per-unit table gives back the summary shipped beside it
        again = saturation_summary(shipped.saturation_frame(entry))
        for got, want in zip(again.to_dict(orient="records"), entry["summary"]):
            assert (got["layer"], got["gate"], got["units"]) == (want["layer"], want["gate"], want["units"])
            assert got["mean_right"] == pytest.approx(want["mean_right"], abs=1e-4)
    assert set(data["dynamics"]) == set(shipped.DYNAMICS_MODELS)


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"format": 1}', b'{"format": 1, "onion": {"x": {"errors": 3, '
                                    b'"categories": [{"count": 1}]}}, "dynamics": {}, "saturation": {}, "onion_comparison": {}}'])
def test_a_damaged_shipped_file_is_not_trusted(tmp_path, damage):
    from rnnviz.paper import shipped

    path = tmp_path / "analyses.json"
    path.write_bytes(damage)
    assert shipped.shipped_analyses(path) is None
