import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import reference
from rnnviz import checkpoint
from rnnviz.cli import main as cli_main
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz import sampling
from rnnviz.sampling import Clamp, distribution, sample

VOCAB = list("abcdefgh \n")


def _model(cell="lstm", seed=0):
    m = build(VOCAB, cell=cell, hidden_size=16, num_layers=2, embed_size=8, seed=seed)
    with torch.no_grad():
        m.head.weight.mul_(4)
    return m


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_seeded_sampling_is_repeatable_and_seeds_differ(cell):
    m = _model(cell)
    a = sample(m, "abc", 80, temperature=1.0, seed=7)
    b = sample(m, "abc", 80, temperature=1.0, seed=7)
    c = sample(m, "abc", 80, temperature=1.0, seed=8)
    assert a.text == b.text and len(a.text) == 80
    assert a.text != c.text
    assert np.all((a.probs > 0) & (a.probs <= 1))


def test_greedy_matches_independent_reference():
    """Temperature 0 follows the argmax of a step-by-step numpy LSTM fed its own output."""
    m = _model("lstm")
    out = sample(m, "ab", 30, temperature=0)
    sd = m.state_dict()
    ids = [m.vocab.index[ch] for ch in "ab"]
    for _ in range(30):  # re-running the whole prefix each time: slow but independent
        _, logits = reference.forward(sd, "lstm", 2, np.array(ids))
        ids.append(int(logits[-1].argmax()))
    assert out.text == m.vocab.decode(ids[2:])
    assert np.all(out.probs == 1.0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_probs_are_those_of_the_model(cell):
    """Generation steps one character at a time outside the fused kernel (trace._step): its
    probabilities are still those of the step-by-step numpy cell, for each kind of cell."""
    m = _model(cell)
    out = sample(m, "a", 5, temperature=1.0, seed=1)
    sd = m.state_dict()
    ids = [m.vocab.index["a"]] + [m.vocab.index[ch] for ch in out.text]
    _, logits = reference.forward(sd, cell, 2, np.array(ids))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = p[np.arange(5), ids[1:]]
    np.testing.assert_allclose(out.model_probs, expected, rtol=1e-5)
    np.testing.assert_allclose(np.exp(out.logp), p[:5], rtol=1e-5, atol=1e-7)  # each step's whole distribution
    # sampling never draws the unknown symbol (id 0): the rest of the distribution is renormalised
    np.testing.assert_allclose(out.probs, expected / (1 - p[:5, 0]), rtol=1e-5)
    assert "\ufffd" not in sample(m, "a", 500, temperature=2.0, seed=0).text


def test_temperature_and_top_k_shape_the_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    cold, hot = distribution(logits, 0.5), distribution(logits, 2.0)
    assert cold[0] > torch.softmax(logits, 0)[0] > hot[0]
    top2 = distribution(logits, 1.0, top_k=2)
    assert top2[2:].sum() == 0 and math.isclose(top2.sum().item(), 1, rel_tol=1e-6)
    assert distribution(logits, 0).tolist() == [1, 0, 0, 0]
    m = _model()
    out = sample(m, "a", 50, temperature=5.0, top_k=1, seed=0)
    assert out.text == sample(m, "a", 50, temperature=0).text


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "hot"])
def test_bad_temperature(bad):
    with pytest.raises(ConfigError, match="temperature"):
        sample(_model(), "a", 5, temperature=bad)


def softmax(z):
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def clamped_reference(sd, cell, num_layers, ids, clamp=None):
    """Logits (T, V) after each of ids: float64 numpy, one character at a time, from the textbook
    equations; `clamp` = (layer, units, value, kind) holds those units at every step, the first included."""
    emb = sd["embed.weight"].double().numpy()
    W, b = sd["head.weight"].double().numpy(), sd["head.bias"].double().numpy()
    H = sd["rnn.weight_hh_l0"].shape[1]
    h = [np.zeros(H) for _ in range(num_layers)]
    c = [np.zeros(H) for _ in range(num_layers)]
    out = []
    for i in ids:
        x = emb[i]
        for l in range(num_layers):
            W_ih, W_hh, b_ih, b_hh = reference.weights(sd, l)
            held = clamp is not None and clamp[0] == l
            if cell == "lstm":
                a = W_ih @ x + b_ih + W_hh @ h[l] + b_hh
                ig, fg = reference.sigmoid(a[:H]), reference.sigmoid(a[H:2 * H])
                gg, og = np.tanh(a[2 * H:3 * H]), reference.sigmoid(a[3 * H:])
                c[l] = fg * c[l] + ig * gg
                if held and clamp[3] == "c":
                    c[l][clamp[1]] = clamp[2]
                h[l] = og * np.tanh(c[l])
            else:
                h[l] = reference.LAYER[cell](x[None], W_ih, W_hh, b_ih, b_hh, h[l])["h"][0].copy()
            if held and clamp[3] == "h":
                h[l][clamp[1]] = clamp[2]
            x = h[l]
        out.append(x @ W.T + b)
    return np.array(out)


def greedy_reference(m, prime, n, clamp=None):
    """The argmax text, re-running the whole prefix through clamped_reference at each step."""
    sd, ids = m.state_dict(), [m.vocab.index[ch] for ch in prime]
    for _ in range(n):
        logits = clamped_reference(sd, m.cell, m.config.num_layers, ids, clamp)[-1]
        logits[0] = -np.inf  # never the unknown symbol
        ids.append(int(np.argmax(logits)))
    return m.vocab.decode(ids[len(prime):])


CLAMPS = [("lstm", (0, [0, 1, 2, 3], 5.0, "c")), ("lstm", (1, [2, 7], -1.0, "h")),
          ("gru", (0, [1, 4, 9], 1.0, "h")), ("rnn", (1, [0, 5], -1.0, "h"))]


@pytest.mark.parametrize("prime", ["\n", "ab", "abcde"])
@pytest.mark.parametrize("cell,cl", CLAMPS)
def test_clamp_holds_the_unit_from_the_prime_on_for_every_prime_length(cell, cl, prime):
    """The rule: the unit is held at every step, the prime's characters included, whatever the prime's
    length; so the very first generated character's distribution already feels the clamp."""
    m = _model(cell)
    clamp = Clamp(layer=cl[0], units=cl[1], value=cl[2], kind=cl[3])
    out = sample(m, prime, 20, temperature=1.0, seed=0, clamp=clamp)
    ids = [m.vocab.index[ch] for ch in prime + out.text]
    sd, n = m.state_dict(), len(prime)
    held = softmax(clamped_reference(sd, cell, 2, ids, cl))
    np.testing.assert_allclose(out.model_probs, held[np.arange(n - 1, n + 19), ids[n:]], rtol=1e-4)
    free = softmax(clamped_reference(sd, cell, 2, ids[:n]))
    assert not np.allclose(held[n - 1], free[-1], atol=1e-4)  # the first generated character differs
    # the empty prime means a newline, and is clamped the same way
    if prime == "\n":
        assert sample(m, "", 20, temperature=1.0, seed=0, clamp=clamp).text == out.text


def test_clamp_changes_generation_and_matches_reference():
    m = _model("lstm")
    free = sample(m, "ab", 40, temperature=0)
    cl = (1, [0, 1, 2, 3, 4, 5], 1.0, "h")
    clamped = sample(m, "ab", 40, temperature=0, clamp=Clamp(layer=1, units=[0, 1, 2, 3, 4, 5], value=1.0))
    assert not np.allclose(clamped.model_probs, free.model_probs)
    assert clamped.text == greedy_reference(m, "ab", 40, cl)
    c_clamped = sample(m, "ab", 40, temperature=0, clamp=Clamp(layer=0, units=[1], value=0.0, kind="c"))
    assert c_clamped.text == greedy_reference(m, "ab", 40, (0, [1], 0.0, "c"))
    with pytest.raises(ConfigError):
        sample(m, "ab", 5, clamp=Clamp(layer=9, units=[0]))
    with pytest.raises(ConfigError):
        sample(_model("gru"), "ab", 5, clamp=Clamp(layer=0, units=[0], kind="c"))


@pytest.mark.parametrize("cell,cl", CLAMPS)
def test_clamp_divergence_matches_two_step_by_step_runs(cell, cl):
    """KL(unclamped || clamped) per step along a text: two float64 runs and a numpy KL."""
    m = _model(cell)
    clamp = Clamp(layer=cl[0], units=cl[1], value=cl[2], kind=cl[3])
    text = sample(m, "ab", 30, temperature=1.0, seed=3, clamp=clamp).text
    kl = sampling.clamp_divergence(m, "ab", text, clamp)
    ids = [m.vocab.index[ch] for ch in "ab" + text]
    sd = m.state_dict()
    p = softmax(clamped_reference(sd, cell, 2, ids))[1:31]  # after "a b", ..., after text[:29]
    q = softmax(clamped_reference(sd, cell, 2, ids, cl))[1:31]
    expected = (p * (np.log(p) - np.log(q))).sum(1)
    assert kl.shape == (30,)
    np.testing.assert_allclose(kl, expected, rtol=1e-3, atol=1e-6)
    assert expected.mean() > 1e-4
    # the empty prime reads as a newline; no text, no steps
    np.testing.assert_allclose(sampling.clamp_divergence(m, "", text[:5], clamp),
                               sampling.clamp_divergence(m, "\n", text[:5], clamp), rtol=1e-6)
    assert sampling.clamp_divergence(m, "ab", "", clamp).shape == (0,)


# --- temperature and top-k ------------------------------------------------------------------------

@pytest.mark.parametrize("t", [1e-40, 1e-300, 5e-324])
def test_tiny_temperature_is_the_greedy_limit(t):
    logits = torch.tensor([0.5, 2.0, -1.0, 1.999, -math.inf])
    q = distribution(logits, t)
    assert torch.isfinite(q).all() and q.tolist() == [0, 1, 0, 0, 0]
    # exact ties share the mass, as the softmax does at any temperature
    assert distribution(torch.tensor([1.0, 3.0, 3.0, 0.0]), t).tolist() == [0, 0.5, 0.5, 0]
    m = _model()
    out = sample(m, "a", 30, temperature=t, seed=0)
    assert out.text == greedy_reference(m, "a", 30)
    assert np.all(out.probs == 1.0)


@pytest.mark.parametrize("t", [0.01, 0.3, 1.0, 7.0])
def test_temperature_matches_a_float64_softmax(t):
    logits = torch.randn(3, 12, generator=torch.Generator().manual_seed(0)) * 4
    expected = softmax(logits.double().numpy() / t)
    np.testing.assert_allclose(distribution(logits, t).numpy(), expected, rtol=1e-4, atol=1e-7)


def test_top_k_keeps_exactly_k_with_ties_broken_by_lowest_id():
    values = [1.0, 3.0, 0.5, 3.0, 3.0, 2.0, 3.0]
    logits = torch.tensor([values, values[::-1]])
    for k in range(1, 8):
        q = distribution(logits, 1.0, top_k=k).numpy()
        for row, vals in zip(q, (values, values[::-1])):
            kept = sorted(range(7), key=lambda i: (-vals[i], i))[:k]
            expected = np.zeros(7)
            expected[kept] = softmax(np.array(vals)[kept])
            np.testing.assert_allclose(row, expected, rtol=1e-6, atol=0)
    greedy = distribution(logits, 0, top_k=1).numpy()
    for row, vals in zip(greedy, (values, values[::-1])):
        assert row.tolist() == [float(i == vals.index(max(vals))) for i in range(7)]


def test_cli_tiny_temperature_exits_cleanly(capsys):
    """`python -m rnnviz sample ... --temperature 1e-40` once printed a traceback (NaN probabilities)."""
    ckpt = str(Path(__file__).resolve().parents[1] / "pretrained" / "quotes-lstm")
    run = subprocess.run([sys.executable, "-m", "rnnviz", "sample", ckpt, "--temperature", "1e-40",
                          "--length", "60", "--seed", "0"], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert cli_main(["sample", ckpt, "--temperature", "1e-300", "--length", "60", "--seed", "5"]) == 0
    tiny = capsys.readouterr().out
    assert run.stdout == tiny  # both the greedy limit, whatever the seed
    model, _ = checkpoint.load(ckpt)
    assert tiny == "\n" + greedy_reference(model, "\n", 60) + "\n"


def test_unknown_prime_characters_are_reported():
    out = sample(_model(), "aZ", 3, temperature=0)
    assert out.unknown == {"Z": 1} and len(out.text) == 3


# --- the dice roll: one uniform number per character, and the interval it fell in ------------------

def test_draw_picks_the_interval_that_holds_u():
    """Intervals by hand: q = [0.1, 0.5, 0, 0.4] lines up as 1 [0, .5), 3 [.5, .9), 0 [.9, 1); 2 is empty."""
    q = torch.tensor([0.1, 0.5, 0.0, 0.4])
    expected = [(0.0, 1, 0.0, 0.5, 1), (0.4999, 1, 0.0, 0.5, 1), (0.5, 3, 0.5, 0.9, 2), (0.8999, 3, 0.5, 0.9, 2),
                (0.9, 0, 0.9, 1.0, 3), (0.95, 0, 0.9, 1.0, 3), (1 - 2 ** -53, 0, 0.9, 1.0, 3)]
    for u, pick, lo, hi, rank in expected:
        got = sampling.draw(q, torch.tensor([u], dtype=torch.float64))
        assert int(got[0]) == pick and int(got[3]) == rank, u
        assert math.isclose(float(got[1]), lo, abs_tol=1e-7) and math.isclose(float(got[2]), hi, abs_tol=1e-7)
    # equal probabilities: the lowest id first, as top-k breaks its ties
    got = sampling.draw(torch.tensor([0.0, 0.25, 0.5, 0.25]), torch.tensor([0.6], dtype=torch.float64))
    assert (int(got[0]), int(got[3])) == (1, 2)


def _redraw(seed: int, dists: np.ndarray) -> list[tuple[int, float, float, float, int]]:
    """Re-draw every step from the recorded distributions: the same generator's uniforms, walked in Python."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for p in dists.astype(np.float64):
        u = torch.rand(1, generator=gen, dtype=torch.float64).item()
        acc, total = 0.0, p.sum()
        for rank, v in enumerate(sorted(range(len(p)), key=lambda i: (-p[i], i)), start=1):
            if u < acc + p[v] / total:
                out.append((v, u, acc, acc + p[v] / total, rank))
                break
            acc += p[v] / total
    return out


@pytest.mark.parametrize("cell,t,k", [("lstm", 1.0, None), ("gru", 1.5, None), ("rnn", 0.7, 3), ("lstm", 0, None)])
def test_recorded_draws_redraw_the_same_characters(cell, t, k):
    m = _model(cell)
    s = sample(m, "ab", 80, temperature=t, top_k=k, seed=11)
    assert s.dists.shape == (80, len(VOCAB) + 1) and s.u.shape == s.lo.shape == s.hi.shape == s.rank.shape == (80,)
    again = _redraw(11, s.dists)
    assert "".join(m.vocab.chars[v] for v, *_ in again) == s.text
    for i, (v, u, lo, hi, rank) in enumerate(again):
        assert s.u[i] == u and s.rank[i] == rank
        assert s.lo[i] <= s.u[i] < s.hi[i]
        np.testing.assert_allclose([s.lo[i], s.hi[i]], [lo, hi], rtol=0, atol=1e-12)
    # the recorded probability is the one the draw used: the chosen character's share of the distribution
    ids = [m.vocab.index[ch] for ch in s.text]
    np.testing.assert_array_equal(s.probs, s.dists[np.arange(80), ids])
    np.testing.assert_allclose(s.hi - s.lo, s.probs, rtol=1e-6)
    if t == 0:
        assert np.all(s.rank == 1) and np.all(s.lo == 0) and np.all(s.hi == 1)
    else:
        assert s.rank.max() > 1  # sampling, not a bug: a character below the top is drawn now and then


@pytest.mark.parametrize("cell,t,k", [("lstm", 0.8, None), ("gru", 1.3, 4)])
def test_dice_rank_and_probability_match_an_independent_softmax(cell, t, k):
    m = _model(cell)
    s = sample(m, "a", 40, temperature=t, top_k=k, seed=3)
    ids = [m.vocab.index["a"]] + [m.vocab.index[ch] for ch in s.text]
    _, logits = reference.forward(m.state_dict(), cell, 2, np.array(ids))  # (41, V) float64
    checked = 0
    for i in range(40):
        z = logits[i].copy()
        z[0] = -np.inf  # the unknown symbol is never drawn
        if k is not None:
            z[np.argsort(-z, kind="stable")[k:]] = -np.inf
        p = np.exp((z - z.max()) / t)
        p /= p.sum()
        np.testing.assert_allclose(s.dists[i], p, rtol=1e-4, atol=1e-7)
        c = ids[i + 1]
        assert math.isclose(s.probs[i], p[c], rel_tol=1e-4)
        if np.sum(np.abs(p - p[c]) < 1e-6) == 1:  # no near-tie that float32 could order either way
            assert s.rank[i] == 1 + np.sum(p > p[c])
            checked += 1
    assert checked >= 35


def test_empty_sample_has_empty_draws():
    s = sample(_model(), "a", 0)
    assert s.text == "" and s.u.size == s.rank.size == 0 and s.dists.shape == (0, len(VOCAB) + 1)


# --- what the Sample page says, from rnnviz.sampling (checked against the draws themselves) -----------

def test_dice_table_and_summary_restate_the_draws():
    """Each row's rank and slice, rebuilt by brute force from the distribution it was drawn from."""
    m = _model("lstm")
    s = sample(m, "ab", 60, temperature=1.3, seed=3)
    table = sampling.dice_table(s)
    assert list(table.columns) == ["#", "character", "rank", "p (as drawn)", "p at T=1", "u", "slice from", "slice to"]
    assert len(table) == 60
    for i, row in table.iterrows():
        q = s.dists[i].astype(np.float64)
        c = m.vocab.index[s.text[i]]
        order = sorted(range(len(q)), key=lambda j: (-q[j], j))  # likeliest first, ties: lowest id
        assert row["rank"] == order.index(c) + 1
        assert row["slice from"] == pytest.approx(sum(q[j] for j in order[:order.index(c)]), abs=1e-5)
        assert row["slice from"] <= row["u"] < row["slice to"]
        assert row["character"] == {" ": "␣", "\n": "↵"}.get(s.text[i], s.text[i])
    likeliest = sum(int(np.argmax(s.dists[i]) == m.vocab.index[ch]) for i, ch in enumerate(s.text))
    said = sampling.dice_summary(s, 1.3, None)
    assert f"**{likeliest:,}** were the likeliest one" in said and f"**{60 - likeliest:,}** were not" in said
    assert "(temperature 1.30)" in said and "top-3" in sampling.dice_summary(s, 1.3, 3)


def test_choice_caption_names_what_was_read_and_drawn():
    m = _model("gru")
    s = sample(m, "abcdefgh" * 5, 20, temperature=1.0, seed=1)
    start = sampling.start_text(m.vocab, s.prime)
    for pos in (0, 7, 19):
        read = (s.prime + s.text[:pos])[-30:]  # the last 30 characters read before character pos was drawn
        said = sampling.choice_caption(s, start, pos)
        assert said.startswith(f"After reading …{read!r}, the model drew {s.text[pos]!r}: rank {int(s.rank[pos])},")
        assert f"u = {s.u[pos]:.4f}" in said


def test_compared_temperatures_and_exact_numbers():
    assert sampling.compared_temperatures(1.0) == (0.5, 1.0, 1.5)
    assert sampling.compared_temperatures(0.8) == (0.5, 0.8, 1.0, 1.5)
    assert sampling.compared_temperatures(0.123) == (0.12, 0.5, 1.0, 1.5)
    for v in (10.0, 0.1234567, -2.5, 1e-7):
        assert float(sampling.number(v)) == v
    assert sampling.number(10.0) == "10" and sampling.number(-0.25) == "-0.25"


def test_clamp_notes():
    """The value note says why the held value is not the typed one; the range note states the unit's range."""
    assert sampling.clamp_value_note(3.5, 3.5) is None
    assert sampling.clamp_value_note(50, 10.0).startswith("50 is outside the allowed -10 to 10: the unit is held at 10,")
    assert "cannot be used" in sampling.clamp_value_note("abc", 1.0)
    assert "cannot be used" in sampling.clamp_value_note(float("inf"), 10.0)
    assert "cannot be used" in sampling.clamp_value_note(True, 1.0)  # a bool is no number here
    values = np.array([0.5, -0.75, 0.25])
    note = sampling.clamp_range_note(values, 1, "h", 7)
    assert note.startswith("Layer 1 h7 over the text under study (3 characters): min -0.75, max 0.50.")
    assert "[-1, 1]" in note and "tanh" in sampling.clamp_range_note(values, 0, "c", 2)
    kl = np.array([0.0, 0.02, 0.5])
    said = sampling.divergence_summary(kl)
    assert f"{kl.mean():.3g} nats per character, largest 0.5" in said and "each of its 3 characters" in said


# --- steering along a direction -------------------------------------------------------------------

def steered_reference(sd, cell, num_layers, ids, steer):
    """Logits (T, V) after each of ids: float64 numpy, one character at a time; `steer` = (layer, direction,
    alpha, kind) adds alpha × direction to that layer's h (or c) at every step, the first included."""
    emb = sd["embed.weight"].double().numpy()
    W, b = sd["head.weight"].double().numpy(), sd["head.bias"].double().numpy()
    H = sd["rnn.weight_hh_l0"].shape[1]
    h = [np.zeros(H) for _ in range(num_layers)]
    c = [np.zeros(H) for _ in range(num_layers)]
    layer, d, alpha, kind = steer
    out = []
    for i in ids:
        x = emb[i]
        for l in range(num_layers):
            W_ih, W_hh, b_ih, b_hh = reference.weights(sd, l)
            if cell == "lstm":
                a = W_ih @ x + b_ih + W_hh @ h[l] + b_hh
                ig, fg = reference.sigmoid(a[:H]), reference.sigmoid(a[H:2 * H])
                gg, og = np.tanh(a[2 * H:3 * H]), reference.sigmoid(a[3 * H:])
                c[l] = fg * c[l] + ig * gg + (alpha * d if (l == layer and kind == "c") else 0)
                h[l] = og * np.tanh(c[l])
            else:
                h[l] = reference.LAYER[cell](x[None], W_ih, W_hh, b_ih, b_hh, h[l])["h"][0].copy()
            if l == layer and kind == "h":
                h[l] = h[l] + alpha * d
            x = h[l]
        out.append(x @ W.T + b)
    return np.array(out)


STEERS = [("lstm", 1, "h", 2.0), ("lstm", 0, "c", -3.0), ("gru", 0, "h", 1.5), ("rnn", 1, "h", -1.0)]


@pytest.mark.parametrize("cell,layer,kind,alpha", STEERS)
def test_steering_adds_the_direction_at_every_step_and_its_kl_matches_numpy(cell, layer, kind, alpha):
    """The steered sample's probabilities are those of a numpy cell with alpha × direction added to the
    state at every step (the prime's included), and its KL is KL(plain || steered) from two numpy runs."""
    m = _model(cell)
    d = np.random.default_rng(1).normal(size=16)
    d /= np.linalg.norm(d)  # a unit-norm row, as a dictionary's decoder rows are
    steer = sampling.Steer(layer=layer, direction=d, alpha=alpha, kind=kind)
    s, kl = sampling.steered_sample(m, steer, "ab", 25, temperature=1.0, seed=4)
    ids = [m.vocab.index[ch] for ch in "ab" + s.text]
    sd = m.state_dict()
    q = softmax(steered_reference(sd, cell, 2, ids, (layer, d, alpha, kind)))[1:26]
    np.testing.assert_allclose(s.model_probs, q[np.arange(25), ids[2:]], rtol=1e-4)
    p = softmax(steered_reference(sd, cell, 2, ids, (layer, d, 0.0, kind)))[1:26]
    expected = (p * (np.log(p) - np.log(q))).sum(1)
    np.testing.assert_allclose(kl, expected, rtol=1e-3, atol=1e-6)
    assert expected.mean() > 1e-3


def test_steering_at_zero_is_the_plain_sample_and_bad_steers_are_refused():
    m = _model("lstm")
    d = np.ones(16) / 4
    plain = sample(m, "ab", 40, temperature=1.0, seed=2)
    s, kl = sampling.steered_sample(m, sampling.Steer(1, d, 0.0), "ab", 40, temperature=1.0, seed=2)
    assert s.text == plain.text and kl.max() < 1e-9  # the stepped and fused runs differ only by rounding
    np.testing.assert_allclose(s.model_probs, plain.model_probs, rtol=1e-6)
    moved, _ = sampling.steered_sample(m, sampling.Steer(1, d, 4.0), "ab", 40, temperature=1.0, seed=2)
    assert moved.text != plain.text
    for bad in (sampling.Steer(5, d, 1.0), sampling.Steer(0, d[:3], 1.0), sampling.Steer(0, d, float("nan")),
                sampling.Steer(0, d * np.inf, 1.0)):
        with pytest.raises(ConfigError):
            sample(m, "ab", 5, steer=bad)
    with pytest.raises(ConfigError):
        sample(_model("gru"), "ab", 5, steer=sampling.Steer(0, d, 1.0, kind="c"))
    with pytest.raises(ConfigError):
        sample(m, "ab", 5, clamp=Clamp(layer=0, units=[0]), steer=sampling.Steer(0, d, 1.0))


def test_steer_summary_states_the_kl():
    words = sampling.steer_summary(np.array([0.0, 0.5, 0.25]), "feature 7's decoder row", 2.5)
    assert words.startswith("Adding 2.5 × feature 7's decoder row at every step")
    assert "KL(unsteered || steered) 0.25 nats per character, largest 0.5" in words and "3 characters" in words
