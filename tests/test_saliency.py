"""Input saliency against central finite differences of an independent float64 numpy model."""
import copy
import json

import numpy as np
import pytest
import torch

from rnnviz import checkpoint
from rnnviz.cli import main
from rnnviz.model import build
from rnnviz.saliency import TargetError, aggregate, predicted_change, saliency, spread_targets
from tests import reference as ref

TEXT = 'ab "cd(ef)g" hi (jk) "lm"\n'


def _model(cell, seed=3, hidden=12, layers=2):
    return build(sorted(set(TEXT)), cell=cell, hidden_size=hidden, num_layers=layers, embed_size=5, seed=seed)


def _ref_logp(sd, cell, layers, x, t):
    """log-softmax at position t of the numpy reference, from embedded inputs x (T, E)."""
    for l in range(layers):
        x = ref.LAYER[cell](x, *ref.weights(sd, l))["h"]
    W, b = sd["head.weight"].double().numpy(), sd["head.bias"].double().numpy()
    z = x[t] @ W.T + b
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


def _fd_grads(model, text, t, c, eps=1e-5):
    """(t+1, E) central differences of log p(c) at t with respect to each input embedding vector."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    ids = model.vocab.encode(text[: t + 1])
    x0 = sd["embed.weight"].double().numpy()[ids]  # (t+1, E)
    g = np.zeros_like(x0)
    for s in range(t + 1):
        for k in range(x0.shape[1]):
            xp, xm = x0.copy(), x0.copy()
            xp[s, k] += eps
            xm[s, k] -= eps
            g[s, k] = (_ref_logp(sd, model.cell, model.config.num_layers, xp, t)[c]
                       - _ref_logp(sd, model.cell, model.config.num_layers, xm, t)[c]) / (2 * eps)
    return g, x0


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_saliency_matches_finite_differences(cell):
    model = copy.deepcopy(_model(cell)).double()
    t = 20
    out = saliency(model, TEXT, t)
    nxt = model.vocab.encode(TEXT[t + 1])[0]
    assert out["true"].char == TEXT[t + 1] and out["true"].target == t
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    lp = _ref_logp(sd, cell, 2, sd["embed.weight"].double().numpy()[model.vocab.encode(TEXT[:t + 1])], t)
    assert out["top"].char == model.vocab.chars[int(np.argmax(lp))]
    for which, c in (("true", nxt), ("top", int(np.argmax(lp)))):
        g, x0 = _fd_grads(model, TEXT, t, c)
        norm, gxi = np.linalg.norm(g, axis=1), (g * x0).sum(1)
        got = out[which]
        assert got.logp == pytest.approx(lp[c], rel=1e-10)
        assert got.grad_norm.shape == (t + 1,)
        big = norm > 1e-7  # far back the true values are tiny; there finite differences are only noise
        assert big.sum() >= 10
        np.testing.assert_allclose(got.grad_norm[big], norm[big], rtol=1e-3)
        np.testing.assert_allclose(got.grad_x_input[big], gxi[big], rtol=1e-3, atol=1e-3 * norm[big].max())
        assert got.distance[0] == t and got.distance[-1] == 0


def test_float32_agrees_with_float64():
    m32 = _model("lstm")
    m64 = copy.deepcopy(m32).double()
    a, b = saliency(m32, TEXT, 15)["true"], saliency(m64, TEXT, 15)["true"]
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=1e-4, atol=1e-7)


def test_last_position_uses_the_argmax():
    model = _model("gru")
    t = len(TEXT) - 1
    out = saliency(model, TEXT, t)
    assert out["true"].char == out["top"].char
    np.testing.assert_array_equal(out["true"].grad_norm, out["top"].grad_norm)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_batched_aggregate_equals_per_target(cell):
    model = copy.deepcopy(_model(cell)).double()
    targets = [9, 12, 17, 24]
    for which in ("true", "top"):
        agg = aggregate(model, TEXT, targets=targets, window=8, batch=3, which=which)
        assert agg.grad_norm.shape == (4, 8)
        for i, t in enumerate(targets):
            one = saliency(model, TEXT, t)[which]
            # column d of the aggregate is distance d: position t - d
            np.testing.assert_allclose(agg.grad_norm[i], one.grad_norm[::-1][:8], rtol=1e-10, atol=1e-300)
            np.testing.assert_allclose(agg.grad_x_input[i], one.grad_x_input[::-1][:8], rtol=1e-9, atol=1e-14)
        assert agg.relative()[0] == 1.0


def test_spread_targets_and_bad_aggregates():
    t = spread_targets(1000, 200, 100)
    assert len(t) == 200 and t[0] == 99 and t[-1] == 998
    with pytest.raises(TargetError):
        aggregate(_model("rnn"), TEXT, targets=[3], window=8)
    with pytest.raises(Exception, match="at least"):
        spread_targets(10, 5, 20)


@pytest.mark.parametrize("bad", [0, -1, len(TEXT), 10_000, 1.5, "x", None])
def test_bad_targets_are_clear_errors(bad):
    with pytest.raises(TargetError, match="target"):
        saliency(_model("lstm"), TEXT, bad)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_predicted_change_is_the_directional_derivative(cell):
    """Forward mode against central differences along e(new) - e(old) of the reference model."""
    model = copy.deepcopy(_model(cell)).double()
    pos, new = 4, "x" if "x" in model.vocab.chars else "z"
    pred = predicted_change(model, TEXT, pos, new)
    assert np.isnan(pred[: pos + 1]).all()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    E = sd["embed.weight"].double().numpy()
    ids = model.vocab.encode(TEXT)
    x0 = E[ids]
    d = np.zeros_like(x0)
    d[pos] = E[model.vocab.encode(new)[0]] - x0[pos]
    eps = 1e-6
    for k in (pos + 1, pos + 6, len(TEXT) - 1):
        f = lambda x: _ref_logp(sd, cell, 2, x, k - 1)[ids[k]]
        fd = (f(x0 + eps * d) - f(x0 - eps * d)) / (2 * eps)
        assert pred[k] == pytest.approx(fd, rel=1e-5, abs=1e-9)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("sal") / "m"
    checkpoint.save(_model("lstm"), path)
    return path


def test_cli_json(ckpt, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    model, _ = checkpoint.load(ckpt)
    for t in (5, len(TEXT) - 1):
        assert main(["saliency", str(ckpt), "--file", str(f), "--target", str(t), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["target"] == t and len(out["grad_norm"]) == t + 1 == len(out["grad_x_input"])
        want = saliency(model, TEXT, t)["true"]
        np.testing.assert_allclose(out["grad_norm"], want.grad_norm, rtol=1e-6)


def test_cli_table_and_bad_target(ckpt, tmp_path, capsys):
    assert main(["saliency", str(ckpt), "--text", TEXT, "--target", "10", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "distance" in out and len(out.strip().splitlines()) == 5
    for bad in ("0", str(len(TEXT))):
        assert main(["saliency", str(ckpt), "--text", TEXT, "--target", bad]) == 2
        assert "target must be a position from 1" in capsys.readouterr().err
    assert main(["saliency", str(tmp_path / "nope"), "--text", TEXT, "--target", "3"]) == 1


def test_no_weight_gradients_and_model_untouched():
    model = _model("lstm")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    saliency(model, TEXT, 10)
    aggregate(model, TEXT, targets=[10, 12], window=5)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_predicted_change_from_several_threads():
    """Forward-mode levels are process-wide and cannot nest: app sessions on threads must not collide."""
    import threading

    model = _model("lstm")
    want = predicted_change(model, TEXT, 3, "a")
    errors = []

    def work():
        try:
            for _ in range(10):
                got = predicted_change(model, TEXT, 3, "a")
                np.testing.assert_array_equal(got, want)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:2]


def test_share_far_by_hand():
    from rnnviz.saliency import share_far
    v = np.array([4.0, -1.0, 0.0, 2.0, 3.0, 100.0])  # by distance; 100 lies beyond a window of 5
    assert share_far(v, min_distance=3, window=5) == pytest.approx(5 / 10)
    assert share_far(np.zeros(4), 1, 4) == 0.0


def test_default_target_is_an_unsure_far_looking_one():
    """Brute force: every target of the text, its p from the independent reference and its share from a full
    (unwindowed) saliency; the rule's target has p in the band and the largest share among those in it."""
    from rnnviz.saliency import default_target, share_far
    text = TEXT * 3
    model = copy.deepcopy(_model("lstm", hidden=16)).double()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    ids = model.vocab.encode(text)
    layers, logits = ref.forward(sd, "lstm", 2, ids)
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(len(text) - 1), ids[1:]]  # p[t]: next of t
    window, far = 12, 5
    q = np.sort(p[window - 1:])
    k = len(q) // 2
    lo, hi = (q[k - 1] + q[k]) / 2, 1.0  # only the more confident half qualifies (no p on the edge)
    d = default_target(model, text, min_distance=far, window=window, count=1000, p_range=(lo, hi))
    band = [t for t in range(window - 1, len(text) - 1) if lo <= p[t] <= hi]
    assert d.uncertain and d.candidates == len(band) and d.target in band
    assert d.p == pytest.approx(p[d.target], rel=1e-9)
    shares = {t: share_far(saliency(model, text, t)["true"].grad_norm[::-1], far, window) for t in band}
    assert d.share == pytest.approx(max(shares.values()), rel=1e-8)
    assert shares[d.target] == pytest.approx(max(shares.values()), rel=1e-8)
    # no target in the band: the rule falls back to spread targets of any p, and says so
    none = default_target(model, text, min_distance=far, window=window, count=1000, p_range=(2.0, 3.0))
    assert not none.uncertain and "none has" in none.describe()


def test_cli_without_a_target_uses_the_default_rule(ckpt, capsys):
    from rnnviz.saliency import default_target
    model, _ = checkpoint.load(ckpt)
    text = TEXT * 4
    assert main(["saliency", str(ckpt), "--text", text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = default_target(model, text)
    assert out["target"] == want.target
    np.testing.assert_allclose(out["grad_norm"], saliency(model, text, want.target)["true"].grad_norm, rtol=1e-6)
    assert main(["saliency", str(ckpt), "--text", "a"]) == 2


def test_strongest_far_and_share_far_of_one_saliency():
    sal = saliency(_model("lstm"), TEXT, 20)["true"]
    v = np.abs(sal.grad_norm)
    far = [s for s in range(21) if 20 - s >= 6]
    assert sal.strongest_far("grad_norm", 6) == max(far, key=lambda s: v[s])
    assert sal.strongest_far("grad_norm", 21) is None
    by_distance = v[::-1][:10]
    assert sal.share_far("grad_norm", 6, 10) == pytest.approx(by_distance[6:].sum() / by_distance.sum())


def _hand_saliency(values, text):
    """A Saliency whose arrays are chosen by hand (target = len(values) - 1)."""
    from rnnviz.saliency import Saliency
    v = np.asarray(values, dtype=float)
    return Saliency(text=text[: len(v)], target=len(v) - 1, which="true", char="x", logp=float(np.log(0.3)),
                    grad_norm=np.abs(v), grad_x_input=v)


def test_story_reads_its_numbers_off_the_arrays():
    """The Why page's sentence, its share and its strongest far character counted by a loop over positions."""
    from rnnviz.saliency import DefaultTarget, story
    rng = np.random.default_rng(0)
    text = "abcdefghij" * 8
    v = rng.normal(size=71)  # target 70
    v[70 - 33] = 9.0  # the strongest of those 20 or more back, 33 back
    sal = _hand_saliency(v, text)
    near = far = 0.0
    for s in range(71):
        if 70 - s < 60:
            near += abs(v[s])
            far += abs(v[s]) if 70 - s >= 20 else 0.0
    words = story(sal, "grad_x_input", min_distance=20, window=60)
    assert words.startswith("**t = 70**, after reading `a`: log p('x') = -1.20 (p = 0.30).")
    assert f"last 60 characters, **{far / near:.0%}** comes from characters 20 or more back" in words
    assert f"`{text[37]}` at #37, **33 characters back**, with {9.0 / abs(v[70]):.2g}× the influence" in words
    assert "opened here" not in words
    opened = DefaultTarget(70, 0.5, 0.3, True, 4, 20, 60, (0.05, 0.7))
    assert words + f" (The page opened here: {opened.describe()}.)" == story(sal, "grad_x_input", 20, 60, opened)
    assert "opened here" not in story(sal, "grad_x_input", 20, 60, DefaultTarget(69, 0.5, 0.3, True, 4, 20, 60,
                                                                                    (0.05, 0.7)))
    short = story(_hand_saliency(v[:10], text), "grad_norm", 20, 60)  # nothing lies 20 back: no strongest
    assert "last 10 characters, **0%**" in short and "strongest" not in short


def test_colour_window_against_a_loop():
    """Values up to t, NaN after; the scale's top is the largest |value| before t (1 when all are 0)."""
    from rnnviz.saliency import colour_window
    rng = np.random.default_rng(1)
    for t, n in [(0, 50), (5, 50), (300, 400), (390, 400), (399, 400)]:
        v = rng.normal(size=t + 1)
        lo, hi, shown, top = colour_window(v, n, before=160, after=40)
        assert (lo, hi) == (max(0, t - 160), min(n, t + 41))
        for i in range(lo, hi):
            assert (shown[i - lo] == v[i]) if i <= t else np.isnan(shown[i - lo])
        assert top == (max(abs(x) for x in v[:t]) if t else abs(v[0]))
    assert colour_window(np.array([0.0, 0.0, 5.0]), 3)[3] == 1.0


def test_aggregate_summary_names_the_curves_values():
    """Each model's relative influence, from a mean over targets by hand; the best and worst at the far end."""
    from rnnviz.saliency import Aggregate, aggregate_summary
    rng = np.random.default_rng(2)

    def agg(decay, window=100):
        g = np.abs(rng.normal(size=(7, window))) * decay ** np.arange(window)  # (N, W)
        return Aggregate(targets=np.arange(7), window=window, which="true", grad_norm=g, grad_x_input=-g)

    aggs = {"keeps": ("lstm", agg(0.99)), "forgets": ("rnn", agg(0.8)), "middle": ("gru", agg(0.95))}

    def rel(a, d):
        col = [sum(abs(a.grad_norm[i, d]) for i in range(7)) for d in (0, d)]
        return col[1] / col[0]

    words = aggregate_summary(aggs, "grad_x_input")
    for label, (cell, a) in aggs.items():
        assert (f"- **{label}** ({cell.upper()}): at distance 40, {rel(a, 40):.3g} of its influence at distance 0; "
                f"at distance 10, {rel(a, 10):.3g}; at distance 90, {rel(a, 90):.3g}") in words
    assert "At distance 40 the most influence is left in **keeps**; at distance 90, in **keeps**, and the least " \
           "in **forgets**." in words
    one = aggregate_summary({"only": ("gru", agg(0.9, window=30))})  # a short window: distances it holds
    assert "at distance 29, " in one and "at distance 10, " in one and "the least" not in one


def test_aggregate_models_runs_each_model_and_stops():
    from rnnviz.saliency import aggregate_models
    import threading
    text = TEXT * 3
    models = {"L": ("lstm", _model("lstm")), "R": ("rnn", _model("rnn"))}
    reports = []
    out = aggregate_models(models, text, window=8, count=5, report=lambda **kw: reports.append(kw))
    assert list(out) == ["L", "R"] and [c for c, _ in out.values()] == ["lstm", "rnn"]
    for label, (_, model) in models.items():
        np.testing.assert_array_equal(out[label][1].grad_norm, aggregate(model, text, window=8, count=5).grad_norm)
    assert reports == [{"message": "L (1 of 2)", "done": 0, "total": 2}, {"message": "R (2 of 2)", "done": 1,
                                                                          "total": 2}]
    stop = threading.Event()
    stop.set()
    assert aggregate_models(models, text, window=8, count=5, stop=stop) is None
