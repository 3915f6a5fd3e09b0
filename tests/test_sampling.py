import math

import numpy as np
import pytest
import torch

import reference
from rnnviz.errors import ConfigError
from rnnviz.model import build
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


def test_probs_are_those_of_the_model():
    m = _model("gru")
    out = sample(m, "a", 5, temperature=1.0, seed=1)
    sd = m.state_dict()
    ids = [m.vocab.index["a"]] + [m.vocab.index[ch] for ch in out.text]
    _, logits = reference.forward(sd, "gru", 2, np.array(ids))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = p[np.arange(5), ids[1:]]
    np.testing.assert_allclose(out.model_probs, expected, rtol=1e-5)
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


def test_clamp_changes_generation_and_matches_reference():
    m = _model("lstm")
    free = sample(m, "ab", 40, temperature=0)
    clamped = sample(m, "ab", 40, temperature=0, clamp=Clamp(layer=1, units=[0, 1, 2, 3, 4, 5], value=1.0))
    assert not np.allclose(clamped.model_probs, free.model_probs)
    # reference: numpy LSTM cell loop with the clamp applied to h of layer 1 after each generated step
    sd = m.state_dict()
    H = 16
    state = [(np.zeros(H), np.zeros(H)) for _ in range(2)]
    emb = sd["embed.weight"].double().numpy()
    W, b = sd["head.weight"].double().numpy(), sd["head.bias"].double().numpy()

    def step(i, clamp):
        x = emb[i]
        for l in range(2):
            W_ih, W_hh, b_ih, b_hh = reference.weights(sd, l)
            h, c = state[l]
            out = reference.lstm_layer(x[None], W_ih, W_hh, b_ih, b_hh, h, c)
            h, c = out["h"][0], out["c"][0]
            if clamp and l == 1:
                h = h.copy()
                h[:6] = 1.0
            state[l] = (h, c)
            x = h
        return x @ W.T + b

    logits = [step(m.vocab.index[ch], False) for ch in "ab"][-1]
    chars = []
    for _ in range(40):
        i = int(np.argmax(logits))
        chars.append(m.vocab.chars[i])
        logits = step(i, True)
    assert clamped.text == "".join(chars)
    c_clamped = sample(m, "ab", 40, temperature=0, clamp=Clamp(layer=0, units=[1], value=0.0, kind="c"))
    assert len(c_clamped.text) == 40
    with pytest.raises(ConfigError):
        sample(m, "ab", 5, clamp=Clamp(layer=9, units=[0]))
    with pytest.raises(ConfigError):
        sample(_model("gru"), "ab", 5, clamp=Clamp(layer=0, units=[0], kind="c"))


def test_unknown_prime_characters_are_reported():
    out = sample(_model(), "aZ", 3, temperature=0)
    assert out.unknown == {"Z": 1} and len(out.text) == 3
