"""The Sample page's clamp: the rule it states, the exact value it uses, the unit's observed range,
and how far the clamp moved the distributions; stale or odd values give a message, never a traceback.

Fixtures (tiny untrained models in temporary folders, empty caches, one torch thread) and helpers come
from test_app; the float64 step-by-step references from test_sampling.
"""
import math
import re

import numpy as np
import pytest

import reference
from rnnviz import render
from rnnviz.sampling import Clamp, sample
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, text_of
from test_sampling import clamped_reference, softmax

LENGTH = 40


def clamp_on(at, **widgets):
    """Shorten the samples, switch the clamp on, then set the clamp's widgets in order."""
    at.number_input(key="length").set_value(LENGTH).run()
    at.toggle(key="clamp_on").set_value(True).run()
    for key, value in widgets.items():
        (at.selectbox if key in ("clamp_layer", "clamp_kind") else at.number_input)(key=key).set_value(value).run()
    return at


def model_of(at):
    return at.session_state["_ctx"].model


def shown_text(at) -> str:
    return text_of(at.markdown) + "\n" + text_of(at.caption) + "\n" + text_of(at.info)


@pytest.mark.parametrize("typed,used,label", [(3.0, 3.0, "3"), (0.1234567, 0.1234567, "0.1234567"),
                                              (50.0, 10.0, "10"), (-1e6, -10.0, "-10")])
def test_caption_describes_exactly_the_value_used(shipped, typed, used, label):  # noqa: F811
    at = clamp_on(app("sample"), clamp_value=typed)
    ok(at)
    assert at.number_input(key="clamp_value").value == used
    assert "With layer 0 h0 held at " + label + "**" in text_of(at.markdown)
    text = shown_text(at)
    assert "from the prime's first character on" in text  # the rule, stated on the page
    assert ("outside" in text and "-10 to 10" in text) == (typed != used)
    # the clamped sample on the right is the one for the stated value (the page's defaults: empty prime,
    # temperature 0.8, seed 0, no top-k)
    s = sample(model_of(at), "", LENGTH, temperature=0.8, seed=0, clamp=Clamp(0, [0], used, "h"))
    assert at.get("html")[2].proto.body == render.probability_text(s.text, s.probs, rank=s.rank, u=s.u, lo=s.lo,
                                                                   hi=s.hi)


@pytest.mark.parametrize("layer,unit,kind", [(1, 3, "h"), (0, 11, "c")])
def test_observed_range_of_the_unit_over_the_text(shipped, layer, unit, kind):  # noqa: F811
    at = clamp_on(app("sample"), clamp_layer=layer, clamp_unit=unit, clamp_kind=kind)
    ok(at)
    model, study = model_of(at), at.session_state["_ctx"].text
    layers, _ = reference.forward(model.state_dict(), "lstm", 2, model.vocab.encode(study))
    values = layers[layer][kind][:, unit]
    text = text_of(at.caption)
    assert f"min {values.min():.2f}, max {values.max():.2f}" in text
    assert f"over the text under study ({len(study):,} characters)" in text
    assert ("h always lies in [-1, 1]" in text) == (kind == "h")
    assert ("tanh" in text) == (kind == "c")


def test_mean_kl_of_the_clamp(shipped):  # noqa: F811
    at = clamp_on(app("sample"), clamp_layer=1, clamp_unit=5, clamp_value=4.0)
    ok(at)
    m = re.search(r"mean KL\(unclamped \|\| clamped\) ([0-9.eE+-]+) nats per character, largest ([0-9.eE+-]+)",
                  text_of(at.caption))
    assert m, text_of(at.caption)
    model = model_of(at)
    s = sample(model, "", LENGTH, temperature=0.8, seed=0, clamp=Clamp(1, [5], 4.0, "h"))
    ids = model.vocab.encode("\n" + s.text)
    sd = model.state_dict()
    p = softmax(clamped_reference(sd, "lstm", 2, ids))[:LENGTH]
    q = softmax(clamped_reference(sd, "lstm", 2, ids, (1, [5], 4.0, "h")))[:LENGTH]
    kl = (p * (np.log(p) - np.log(q))).sum(1)
    assert math.isclose(float(m.group(1)), kl.mean(), rel_tol=5e-3)
    assert math.isclose(float(m.group(2)), kl.max(), rel_tol=5e-3)


@pytest.mark.parametrize("key,bad,caption", [
    ("clamp_value", math.nan, "h0 held at 1**"), ("clamp_value", math.inf, "h0 held at 10**"),
    ("clamp_value", -math.inf, "h0 held at -10**"), ("clamp_value", "hot", "h0 held at 1**"),
    ("clamp_unit", 10**6, "h15 held at 1**"), ("clamp_unit", math.nan, "h0 held at 1**"),
    ("clamp_layer", 7, "layer 0 h0"), ("clamp_kind", "z", "layer 0 h0")])
def test_stale_clamp_values_give_a_message(shipped, key, bad, caption):  # noqa: F811
    at = app()
    # left in session state before the Sample page's widgets ever ran, as a page switch or an old
    # model (say 512 units, where unit 10**6 was never valid either) may leave it
    at.session_state[key] = bad
    at.session_state["clamp_on"] = True
    at.session_state["length"] = LENGTH
    at.run()
    at.switch_page("pages/sample_page.py").run()
    ok(at)
    assert len(at.get("html")) == 3
    assert caption in text_of(at.markdown)
    if key == "clamp_value":
        assert "cannot be used" in text_of(at.info) and "-10 to 10" in text_of(at.info)


def test_dice_roll_table_hover_and_sentence(shipped):  # noqa: F811
    """The page shows the draw that sample() recorded: rank, probabilities, u and its slice, per character."""
    at = app("sample")
    at.number_input(key="length").set_value(LENGTH).run()
    at.slider(key="temperature").set_value(1.5).run()
    ok(at)
    s = sample(model_of(at), "", LENGTH, temperature=1.5, seed=0)
    table = at.dataframe(key="dice_table").value
    assert list(table["character"]) == [render.char_label(c) for c in s.text]
    np.testing.assert_array_equal(table["rank"], s.rank)
    np.testing.assert_array_equal(table["u"], s.u)
    np.testing.assert_array_equal(table["p (as drawn)"], s.probs)
    assert np.all((table["slice from"] <= table["u"]) & (table["u"] < table["slice to"]))
    below = int((s.rank > 1).sum())
    assert below > 0  # at 1.5 an untrained model's choices are often not its top one
    assert f"**{LENGTH - below:,}** were the likeliest one (rank 1) and **{below:,}** were not" in text_of(at.markdown)
    assert "a random number u between 0 and 1 is drawn" in text_of(at.caption)
    first = at.get("html")[0].proto.body
    assert f"rank {s.rank[0]}, drawn by u={s.u[0]:.4f} in [{s.lo[0]:.4f}, {s.hi[0]:.4f})" in first
    at.slider(key="dist_pos").set_value(7).run()
    assert (f"rank {s.rank[7]}, p = {s.probs[7]:.4f} as drawn, u = {s.u[7]:.4f} fell in its slice "
            f"[{s.lo[7]:.4f}, {s.hi[7]:.4f})") in text_of(at.caption)
    # the T=1 bars are the model's distribution before that 8th character: the numpy cell, fed the prime
    # (a newline) and the first 7 generated characters, agrees
    import base64
    import json

    model = model_of(at)
    ids = np.array([model.vocab.index[c] for c in "\n" + s.text[:7]])
    _, logits = reference.forward(model.state_dict(), model.cell, model.config.num_layers, ids)
    want = softmax(logits[-1])
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = next(t for t in fig["data"] if t["name"] == "T=1")
    y = bars["y"]
    y = np.frombuffer(base64.b64decode(y["bdata"]), y["dtype"]) if isinstance(y, dict) else np.array(y)
    np.testing.assert_allclose(y, np.sort(want)[::-1][:len(y)], rtol=1e-5, atol=1e-7)


def test_a_newline_in_the_prime_reaches_the_sampler(shipped):  # noqa: F811
    """The prime is a text area: "def f(x):\\n    return " is read with its newline, not as one line."""
    prime = "def f(x):\n    return "
    at = app("sample")
    at.number_input(key="length").set_value(LENGTH).run()
    at.text_area(key="prime").set_value(prime).run()
    ok(at)
    assert at.session_state["prime"] == prime
    s = sample(model_of(at), prime, LENGTH, temperature=0.8, seed=0)
    want = render.probability_text(s.text, s.probs, rank=s.rank, u=s.u, lo=s.lo, hi=s.hi)
    assert at.get("html")[0].proto.body == want
    flat = sample(model_of(at), prime.replace("\n", " "), LENGTH, temperature=0.8, seed=0)
    assert not np.array_equal(flat.probs, s.probs)  # the newline changes what the model predicts
