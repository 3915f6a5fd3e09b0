"""The vanishing-gradient lesson, pinned: the Gradients page's default series, computed here from the
library, must keep telling it (RNN below the open-gate LSTM, the f ~ 0.5 LSTM below both, the memory
models' recall ordered the same way), and its reference lines must be what they claim to be."""
import json
import re

import numpy as np
import pytest
import torch

import reference
from rnnviz import checkpoint, corpora, experiments, heldout, lesson, plots, saturation
from rnnviz.errors import ConfigError
from rnnviz.gradients import fresh_model, gradient_norms, path_gain, set_update_bias
from rnnviz.trace import trace
from streamlit_server import ROOT

PRETRAINED = ROOT / "pretrained"
D = lesson.DISTANCE


pytestmark = pytest.mark.usefixtures("one_thread")


def default_text(name: str, n: int = 101) -> str:
    """The first n characters of the text the sidebar opens on for a shipped model (grad_len 100 + 1)."""
    config = json.loads((PRETRAINED / name / "config.json").read_text())
    held = heldout.held_out(config)
    return corpora.excerpt(held, 2000)[:n]


def default_curves(name: str):
    model, _ = checkpoint.load(PRETRAINED / name)
    return {c.key: c for c in lesson.fresh_curves(list(model.vocab.chars), default_text(name),
                                                  hidden=min(model.config.hidden_size, 256))}


@pytest.mark.parametrize("name", ["shakespeare-lstm", "python-lstm", "quotes-lstm"])
def test_the_first_screen_tells_the_lesson(name):
    c = default_curves(name)
    rnn, open_, half, gru = (c[k].at(D) for k in ("rnn", "lstm-open", "lstm-half", "gru"))
    assert rnn < open_ / 100, f"the open-gate LSTM must keep far more than the RNN at {D}: {open_:.2e} vs {rnn:.2e}"
    assert half < rnn / 10 and half < open_ / 1e6, "the f ~ 0.5 LSTM must lose its gradient too"
    assert c["lstm-open"].at(D, "c") > c["lstm-open"].at(D), "the cell path carries more than h"
    assert gru > rnn * 100, "the GRU with its update gate open keeps its gradient"
    assert c["lstm-open"].gate_mean > 0.9 and abs(c["lstm-half"].gate_mean - 0.5) < 0.05
    assert rnn < 1e-3  # vanished, not merely smaller


def test_the_words_under_the_chart_quote_the_curves():
    curves = list(default_curves("shakespeare-lstm").values())
    words = lesson.summary(curves, D)
    for c in curves:
        assert c.label in words
        assert lesson._share(c.at(D)) in words
    assert "LSTM, f̄ = 0.95" in words and "LSTM, f̄ = 0.50" in words and "ρ = 0.90" in words


def test_try_this_moves_do_what_the_page_says():
    text, vocab = default_text("shakespeare-lstm"), list(checkpoint.load(PRETRAINED / "shakespeare-lstm")[0].vocab.chars)
    by = lambda curves: {c.key: c for c in curves}
    base = by(lesson.fresh_curves(vocab, text))
    # 1. rho = 1.5: the RNN's gradient grows back past 1 (explodes) instead of vanishing
    hot = by(lesson.fresh_curves(vocab, text, radius=1.5))
    assert hot["rnn"].relative().max() > 1 and hot["rnn"].at(D) > 100 * base["rnn"].at(D)
    # 2. forget bias 0: the dark blue LSTM is the light blue one
    shut = by(lesson.fresh_curves(vocab, text, forget_bias=0.0))
    np.testing.assert_allclose(shut["lstm-open"].relative(), shut["lstm-half"].relative())
    # 3. update bias -3: z-bar ~ 0.05 and the GRU keeps less than the RNN
    over = by(lesson.fresh_curves(vocab, text, update_bias=-3.0))
    assert over["gru"].gate_mean < 0.1 and over["gru"].at(D) < base["rnn"].at(D)


# --- the reference lines -------------------------------------------------------------------------

TEXT = "the cat sat (on the 'mat') and then it sat again, and again\n"
VOCAB = sorted(set(TEXT))


def test_rnn_path_gain_is_the_norm_of_the_true_jacobian_and_bounds_the_gradient():
    model = fresh_model(VOCAB, "rnn", hidden_size=6, seed=3, embed_size=4, spectral_radius=1.2)
    gain, _ = path_gain(model, TEXT)
    sd = model.state_dict()
    ids = [model.vocab.index[ch] for ch in TEXT[:-1]]
    x = sd["embed.weight"].double().numpy()[ids]
    W_ih, W_hh, b_ih, b_hh = reference.weights(sd, 0)
    h = reference.rnn_layer(x, W_ih, W_hh, b_ih, b_hh)["h"]
    T = len(ids)
    for t in (0, 5, T - 10, T - 2):
        # dh_(T-1)/dh_t by central differences: perturb h_t, run the remaining steps by hand
        def run_from(h_t):
            for s in range(t + 1, T):
                h_t = np.tanh(W_ih @ x[s] + b_ih + W_hh @ h_t + b_hh)
            return h_t
        eps, J = 1e-4, np.zeros((6, 6))  # J ~ 1e-6 far back: a smaller eps drowns in rounding
        for k in range(6):
            e = np.zeros(6)
            e[k] = eps
            J[:, k] = (run_from(h[t] + e) - run_from(h[t] - e)) / (2 * eps)
        assert gain[t] == pytest.approx(np.linalg.norm(J, 2), rel=1e-5)
    assert gain[-1] == 1.0
    flow = gradient_norms(model, TEXT)
    assert np.all(flow.dh[0] / flow.dh[0, -1] <= gain * (1 + 1e-9))  # a bound, for one layer, loss at the end


@pytest.mark.parametrize("radius", [0.5, 1.5])
def test_rnn_path_gain_keeps_its_digits_over_hundreds_of_steps(radius):
    """The products run in float32, rescaled each step: 400 steps at rho = 0.5 reach ~1e-130, far below
    float32's range, and must still match float64 products of the step Jacobians written out here."""
    text = (TEXT * 8)[:401]
    model = fresh_model(VOCAB, "rnn", hidden_size=32, seed=5, embed_size=4, spectral_radius=radius)
    gain, _ = path_gain(model, text)
    sd = model.state_dict()
    x = sd["embed.weight"].double().numpy()[[model.vocab.index[ch] for ch in text[:-1]]]
    W_ih, W_hh, b_ih, b_hh = reference.weights(sd, 0)
    h = reference.rnn_layer(x, W_ih, W_hh, b_ih, b_hh)["h"]
    T, prod = len(x), np.eye(32)
    for t in range(T - 2, -1, -1):
        prod = prod @ ((1 - h[t + 1] ** 2)[:, None] * W_hh)
        if t % 37 == 0 or t == 0:
            assert gain[t] == pytest.approx(np.linalg.norm(prod, 2), rel=1e-5), t
    if radius < 1:
        assert gain[0] < 1e-60  # underflowed float32 long before; the digits survived

@pytest.mark.parametrize("cell,gate", [("lstm", "f"), ("gru", "z")])
def test_gated_path_gain_is_the_largest_product_of_the_gate(cell, gate):
    model = fresh_model(VOCAB, cell, hidden_size=5, seed=1, embed_size=4)
    gain, name = path_gain(model, TEXT)
    sd = model.state_dict()
    ids = [model.vocab.index[ch] for ch in TEXT[:-1]]
    g = reference.LAYER[cell](sd["embed.weight"].double().numpy()[ids], *reference.weights(sd, 0))[gate]
    T = len(ids)
    for t in range(T):
        prods = [np.prod([g[s, u] for s in range(t + 1, T)]) for u in range(5)]
        assert gain[t] == pytest.approx(max(prods), rel=1e-5)
    assert gate in name


def test_update_bias_sets_the_gru_z_rows_and_keeps_or_overwrites():
    model = fresh_model(VOCAB, "gru", hidden_size=8, seed=0, embed_size=4)
    set_update_bias(model, 3.0)
    w = model.layer_weights(0)
    assert torch.all(w["bias_ih"][8:16] == 3.0) and torch.all(w["bias_hh"][8:16] == 0.0)
    z = trace(model, TEXT).layers[0]["z"]
    assert z.mean() > 0.9
    set_update_bias(model, -3.0)
    assert trace(model, TEXT).layers[0]["z"].mean() < 0.1
    with pytest.raises(ConfigError):
        set_update_bias(fresh_model(VOCAB, "lstm", hidden_size=4), 1.0)
    with pytest.raises(ConfigError):
        set_update_bias(model, float("nan"))


def test_per_unit_gradients_have_the_norms_of_the_flow():
    for cell in ("lstm", "gru", "rnn"):
        model = fresh_model(VOCAB, cell, hidden_size=6, num_layers=2, seed=0, embed_size=4)
        flow = gradient_norms(model, TEXT, per_unit=True)
        norms = flow.dc if flow.dc is not None else flow.dh
        np.testing.assert_allclose(np.sqrt((flow.units ** 2).sum(-1)), norms, rtol=1e-10)


# --- the trained memory models -------------------------------------------------------------------

@pytest.fixture(scope="module")
def memory():
    models = {cell: checkpoint.load(PRETRAINED / f"memory-{cell}")[0] for cell in ("rnn", "gru", "lstm")}
    table = {cell: {r["gap"]: r["accuracy"] for r in experiments.recall_table(m)} for cell, m in models.items()}
    return models, table, {c.key: c for c in lesson.memory_curves(models)}


def test_memory_models_recall_in_the_lesson_order(memory):
    _, table, _ = memory
    longest = max(experiments.GAPS)
    rnn, gru, lstm = (table[c][longest] for c in ("rnn", "gru", "lstm"))
    assert lstm > 0.9 and gru > 0.9, "the gated cells recall at the longest gap"
    assert rnn < lstm - 0.3 and rnn < gru - 0.3, "the RNN falls behind at the longest gap"
    assert table["rnn"][2] > 0.9, "... though it recalls over a short gap: the task is learnable"


def test_memory_gradients_agree_with_the_recall(memory):
    _, table, curves = memory
    key = lesson.MEMORY_GAP - 1
    assert curves["rnn"].at(key) < 1e-6, "the RNN's gradient has vanished by the time it reaches the key"
    assert curves["lstm"].at(key) > 1e-3 and curves["gru"].at(key) > 1e-3
    # where the recall fails, the gradient is gone; where it works, the gradient arrives
    assert table["rnn"][lesson.MEMORY_GAP] < 0.6 and table["lstm"][lesson.MEMORY_GAP] > 0.9


def test_long_memory_units_carry_most_of_the_gradient(memory):
    models, _, curves = memory
    top = lesson.memory_units(curves["lstm"], models["lstm"], top=8)
    at_key = curves["lstm"].flow.units[-1, 0]
    assert [u["unit"] for u in top] == list(np.argsort(-at_key)[:8])  # brute force order
    assert sum(u["share"] for u in top) > 0.5  # a few units carry most of it
    # the forget gates of those units, from a step-by-step reference over the example
    sd = models["lstm"].state_dict()
    text = curves["lstm"].flow.text
    ids = [models["lstm"].vocab.index[ch] for ch in text]
    f = reference.lstm_layer(sd["embed.weight"].double().numpy()[ids], *reference.weights(sd, 0))["f"]
    for u in top:
        assert u["gate_product"] == pytest.approx(np.prod(f[1:, u["unit"]]), rel=1e-4, abs=1e-12)
    open_ = [u for u in top if u["gate_product"] > 0.5]
    assert len(open_) >= 3 and sum(u["share"] for u in open_) > 0.5, "the gradient rides on open forget gates"


def test_memory_models_are_small_and_recorded():
    for cell in ("rnn", "gru", "lstm"):
        folder = PRETRAINED / f"memory-{cell}"
        assert sum(f.stat().st_size for f in folder.iterdir()) < 600_000
        config = checkpoint.read_config(folder)
        assert config["training"]["steps"] == experiments.STEPS
        assert config["memory"]["gaps"] == list(experiments.GAPS)


# --- colours ---------------------------------------------------------------------------------------

def test_a_cell_has_one_colour_on_every_chart(memory):
    _, table, curves = memory
    import pandas as pd
    rows = [{"cell": c, "gap": g, "accuracy": a, "chance": 1 / 26, "items": 300} for c, t in table.items()
            for g, a in t.items()]
    acc = plots.memory_accuracy(pd.DataFrame(rows))
    grad = plots.gradient_lesson(list(curves.values()))
    fresh = plots.gradient_lesson(list(default_curves("quotes-lstm").values()))
    colour = lambda fig, start: {t.line.color for t in fig.data if t.name and t.name.upper().startswith(start)}
    for cell in ("RNN", "GRU", "LSTM"):
        assert colour(acc, cell) & colour(grad, cell) & colour(fresh, cell) == {plots.cell_color(cell.lower())}


# --- the words beside the charts (issue 24, the teacher, 3) ------------------------------------------

@pytest.fixture(scope="module")
def moves():
    """The chart's default curves on Shakespeare, and the two curves the Try-this moves draw."""
    text = default_text("shakespeare-lstm")
    vocab = list(checkpoint.load(PRETRAINED / "shakespeare-lstm")[0].vocab.chars)
    curves = lesson.fresh_curves(vocab, text)
    hot = lesson.fresh_curve("rnn", vocab, text, knob=lesson.HOT_RADIUS)
    overwrite = lesson.fresh_curve("gru", vocab, text, knob=lesson.OVERWRITE_BIAS)
    return curves, hot, overwrite


def test_try_this_says_what_each_move_draws(moves):
    curves, hot, overwrite = moves
    by = {c.key: c for c in curves}
    words = lesson.try_this(curves, hot, overwrite, D)
    # 1. rho = 1.5: the curve is above 1 but grows slowly (2.2 at 50 steps), far from exploding
    assert 1 < hot.at(D) < 10 and hot.relative().max() < 100, "the picture the sentence describes"
    assert "explode" not in words
    assert f"it is at **{lesson._share(hot.at(D))}**" in words and "grows, but slowly" in words
    assert f"{lesson._share(hot.at(len(hot.flow.text) - 1))} at {len(hot.flow.text) - 1} steps" in words
    # 2. forget bias 0: the half-shut LSTM keeps far less than the RNN; the words say how much less
    rnn, half = by["rnn"].at(D), by["lstm-half"].at(D)
    assert half < rnn / 1e4
    assert "forgets like the RNN" not in words
    assert "forgets faster than the RNN" in words
    assert f"**{lesson._share(half)}** {D} steps back" in words and f"the RNN's {lesson._share(rnn)}" in words
    ratio = float(re.search(r"\*\*([\d,]+) times less\*\*", words).group(1).replace(",", ""))
    assert ratio == pytest.approx(rnn / half, rel=0.05)
    # 3. update bias -3: the GRU's curve is given, and it is below the RNN's
    assert overwrite.gate_mean < 0.1 and overwrite.at(D) < rnn
    assert f"z̄ drops to {overwrite.gate_mean:.2f}" in words and lesson._share(overwrite.at(D)) in words
    assert "update-gate bias to −3" in words


def test_try_this_turns_with_the_numbers(moves):
    """Where the RNN forgets faster (rho = 0.5), the sentence says so instead: it reads the curves."""
    curves, hot, overwrite = moves
    text = default_text("shakespeare-lstm")  # the flow holds the inputs, one character fewer
    vocab = list(checkpoint.load(PRETRAINED / "shakespeare-lstm")[0].vocab.chars)
    cold = [lesson.fresh_curve("rnn", vocab, text, knob=0.5)] + curves[1:]
    words = lesson.try_this(cold, hot, overwrite, D)
    if cold[0].at(D) < cold[2].at(D):
        assert "the RNN forgets faster than the half-shut LSTM" in words
    else:
        assert "forgets faster than the RNN" in words


def test_the_chart_axis_does_not_call_a_rising_line_a_share(moves):
    """The open-gate LSTM's dashed cell line rises above 1: the axis says what is divided by what."""
    curves, _, _ = moves
    open_ = next(c for c in curves if c.key == "lstm-open")
    assert open_.relative("c").max() > 1  # what the chart draws
    fig = plots.gradient_lesson(curves)
    title = fig.layout.yaxis.title.text
    assert "share" not in title and "÷ ‖∂L/∂h‖ at distance 0" in title
    dashed = next(t for t in fig.data if t.line.dash == "dash")
    assert max(dashed.y) > 1 and "share" not in dashed.hovertemplate


def test_the_saturation_caption_counts_the_dots_near_the_diagonal():
    """Counted here from the gate arrays themselves: few Shakespeare-LSTM gates are switches, and the
    words say how many; a model made of switches gets the other sentence."""
    from rnnviz import plots
    model, config = checkpoint.load(PRETRAINED / "shakespeare-lstm")
    tr = trace(model, corpora.excerpt(heldout.held_out(config), 2000))
    words = lesson.saturation_caption(saturation.saturation_table(tr))
    assert "Dots near the diagonal are gates that act like switches" not in words
    for gate in "ifgo":
        v = np.concatenate([layer[gate] for layer in tr.layers], axis=1)  # (T, units of every layer)
        lo, hi = (-0.9, 0.9) if gate == "g" else (0.1, 0.9)
        k = int(((((v < lo) | (v > hi)).mean(0)) > lesson.NEAR_DIAGONAL).sum())
        assert f"{gate}: {k} of {v.shape[1]}" in words
        assert k < 0.1 * v.shape[1]
    assert "So few dots sit near the diagonal" in words
    import pandas as pd
    switches = pd.DataFrame({"layer": 0, "gate": "f", "unit": range(4), "left": [0.5, 0.1, 0.0, 0.9],
                             "right": [0.45, 0.85, 0.95, 0.05]})
    assert "f: 4 of 4" in lesson.saturation_caption(switches)
    assert "Many dots sit near the diagonal" in lesson.saturation_caption(switches)


def test_a_growing_gradient_is_not_said_to_be_kept(moves):
    """At rho = 1.5 the red curve is above 1 at 50 steps: the summary says it grew, not that it 'keeps 2.20'."""
    curves, hot, _ = moves
    words = lesson.summary([hot] + curves[1:], D)
    assert f"its gradient has grown to **{lesson._share(hot.at(D))}** times its start" in words
    assert f"keeps **{lesson._share(hot.at(D))}**" not in words


def test_a_move_is_the_curve_without_its_path(moves):
    """The page reads Try this from lesson.move (no path gain, several times cheaper for an RNN): the
    same gradients and gate mean as the curve the move would draw."""
    curves, hot, overwrite = moves
    text = default_text("shakespeare-lstm")  # the flow holds the inputs, one character fewer
    vocab = list(checkpoint.load(PRETRAINED / "shakespeare-lstm")[0].vocab.chars)
    for full, knob in ((hot, lesson.HOT_RADIUS), (overwrite, lesson.OVERWRITE_BIAS)):
        light = lesson.move(full.key, vocab, text, knob=knob)
        np.testing.assert_array_equal(light.relative(), full.relative())
        assert light.gate_mean == full.gate_mean
    assert lesson.try_this(curves, lesson.move("rnn", vocab, text, knob=lesson.HOT_RADIUS),
                           lesson.move("gru", vocab, text, knob=lesson.OVERWRITE_BIAS), D) == \
        lesson.try_this(curves, hot, overwrite, D)


# --- the words under the memory models' charts (moved out of the Gradients page, issue 25) --------

def test_the_memory_summary_quotes_each_recall_and_the_gradient_at_the_key(memory):
    _, _, curves = memory
    import pandas as pd
    gap = lesson.MEMORY_GAP
    acc = {"rnn": 0.31, "gru": 0.97, "lstm": 1.0}  # a table of its own: the words must read this one
    table = pd.DataFrame([{"cell": c, "gap": g, "accuracy": a if g == gap else 0.0} for c, a in acc.items()
                          for g in (2, gap)])
    words = lesson.memory_summary(table, list(curves.values()))
    bullets = [line for line in words.splitlines() if line.startswith("- ")]
    assert len(bullets) == 3
    for c, line in zip(curves.values(), bullets):
        text = c.flow.text
        assert text[0].isupper() and len(text) == gap, "distance gap - 1 from the loss is the key"
        share = c.flow.dh[-1, 0] / c.flow.dh[-1, -1]  # (top layer) the key's gradient over the recall's
        assert f"recalls {round(acc[c.key] * 100)}% at gap {gap}" in line
        assert f"keeps {lesson._share(share)} of its gradient at the key" in line
    assert f"Chance is {round(100 * experiments.CHANCE)}%" in words


def test_the_units_caption_counts_the_open_units(memory):
    models, _, curves = memory
    top = lesson.memory_units(curves["lstm"], models["lstm"], top=12)
    sd, text = models["lstm"].state_dict(), curves["lstm"].flow.text
    ids = [models["lstm"].vocab.index[ch] for ch in text]
    f = reference.lstm_layer(sd["embed.weight"].double().numpy()[ids], *reference.weights(sd, 0))["f"][1:]
    open_ = [u["unit"] for u in top if np.prod(f[:, u["unit"]]) > 0.5]  # step-by-step reference
    share = sum(u["share"] for u in top if u["unit"] in open_)
    words = lesson.memory_units_caption(top)
    assert words.startswith("The 12 units") and f"{len(open_)} of them carry {share:.0%} of it" in words
    lo, hi = f[:, open_].mean(axis=0).min(), f[:, open_].mean(axis=0).max()
    assert f"mean f from {lo:.3f} to {hi:.3f}" in words


def test_the_units_caption_says_so_when_no_gate_stays_open():
    shut = [{"unit": u, "share": 0.5, "gate_mean": 0.4, "gate_product": 0.4 ** 60} for u in (3, 7)]
    assert lesson.memory_units_caption(shut) == "No unit keeps its forget gate open across the gap."
    one = shut + [{"unit": 9, "share": 0.25, "gate_mean": 0.99, "gate_product": 0.6}]
    assert "1 of them carry 25% of it" in lesson.memory_units_caption(one)
    assert "mean f from 0.990 to 0.990" in lesson.memory_units_caption(one)


def test_like_with_like_takes_one_model_per_other_cell_of_the_same_corpus():
    cands = [("a", "lstm", "py"), ("b", "gru", "en"), ("c", "gru", "py"), ("d", "gru", "py"), ("e", "rnn", "py"),
             ("f", "rnn", None)]
    assert lesson.like_with_like("lstm", "py", cands) == ["c", "e"]
    assert lesson.like_with_like("gru", "en", cands) == []
    assert lesson.like_with_like("gru", None, cands) == []  # an unrecorded corpus is like nothing
    assert "alone" in lesson.trained_caption("py", []) and "trained on py" in lesson.trained_caption("py", ["c"])
