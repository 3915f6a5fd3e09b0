"""Gradient norms against a slow per-timestep autograd reference and finite differences."""
import numpy as np
import pytest
import torch

import reference
from rnnviz.errors import ConfigError, TextError
from rnnviz.gradients import fresh_model, gradient_norms, set_forget_bias, set_spectral_radius

TEXT = "the cat sat (on the 'mat') and then it sat again\n"
VOCAB = sorted(set(TEXT))


def _model(cell, layers=2, hidden=8, seed=0):
    return fresh_model(VOCAB, cell, hidden_size=hidden, num_layers=layers, seed=seed, embed_size=6)


def _step_reference_grads(model, text, loss_at):
    """Explicit cell loop from the equations, one autograd.grad call per timestep."""
    sd = {k: v.detach().double().requires_grad_() for k, v in model.state_dict().items()}
    ids = [model.vocab.index[ch] for ch in text]
    inputs, targets = ids[:-1], torch.tensor(ids[1:])
    H, cell = model.config.hidden_size, model.cell
    x_seq = [sd["embed.weight"][i] for i in inputs]
    hs, cs = [], []
    for l in range(model.config.num_layers):
        W_ih, W_hh, b_ih, b_hh = (sd[f"rnn.{k}_l{l}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        h, c = torch.zeros(H, dtype=torch.float64), torch.zeros(H, dtype=torch.float64)
        hl, cl = [], []
        for x in x_seq:
            if cell == "lstm":
                a = W_ih @ x + b_ih + W_hh @ h + b_hh
                c = torch.sigmoid(a[H:2 * H]) * c + torch.sigmoid(a[:H]) * torch.tanh(a[2 * H:3 * H])
                c.retain_grad()
                h = torch.sigmoid(a[3 * H:]) * torch.tanh(c)
            elif cell == "gru":
                gi, gh = W_ih @ x + b_ih, W_hh @ h + b_hh
                r, z = torch.sigmoid(gi[:H] + gh[:H]), torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
                h = (1 - z) * torch.tanh(gi[2 * H:] + r * gh[2 * H:]) + z * h
            else:
                h = torch.tanh(W_ih @ x + b_ih + W_hh @ h + b_hh)
            hl.append(h)
            cl.append(c)
        hs.append(hl)
        cs.append(cl)
        x_seq = hl
    logits = torch.stack(x_seq) @ sd["head.weight"].T + sd["head.bias"]
    if loss_at == "last":
        loss = torch.nn.functional.cross_entropy(logits[-1:], targets[-1:])
    else:
        loss = torch.nn.functional.cross_entropy(logits, targets)
    T = len(inputs)
    dh = np.array([[torch.autograd.grad(loss, hs[l][t], retain_graph=True)[0].norm().item() for t in range(T)]
                   for l in range(len(hs))])
    dc = None
    if cell == "lstm":
        dc = np.array([[torch.autograd.grad(loss, cs[l][t], retain_graph=True)[0].norm().item() for t in range(T)]
                       for l in range(len(cs))])
    return dh, dc


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("loss_at", ["last", "mean"])
def test_norms_match_per_timestep_autograd(cell, loss_at):
    model = _model(cell)
    with torch.no_grad():  # larger weights: the norms then span many orders of magnitude
        for p in model.rnn.parameters():
            p.mul_(2.0)
    flow = gradient_norms(model, TEXT, loss_at=loss_at)
    ref_dh, ref_dc = _step_reference_grads(model, TEXT, loss_at)
    assert flow.dh.shape == (2, len(TEXT) - 1)
    np.testing.assert_allclose(flow.dh, ref_dh, rtol=1e-6, atol=1e-300)
    if cell == "lstm":
        np.testing.assert_allclose(flow.dc, ref_dc, rtol=1e-6, atol=1e-300)
    else:
        assert flow.dc is None
    if loss_at == "last":
        assert flow.dh[0, 0] < flow.dh[0, -1]  # something decays over ~50 steps at init
    # the explicit unroll agrees with the fused fast path
    unrolled = gradient_norms(model, TEXT, loss_at=loss_at, method="unroll")
    np.testing.assert_allclose(unrolled.dh, flow.dh, rtol=1e-8, atol=1e-300)


def _fd_norms(model, text, t, layer, kind, eps=1e-4):
    """||dL/d(state_t)|| by central differences through the numpy reference cells."""
    sd = model.state_dict()
    ids = np.array([model.vocab.index[ch] for ch in text])
    H = model.config.hidden_size

    def loss_with(delta):
        x = sd["embed.weight"].double().numpy()[ids[:-1]]
        for l in range(model.config.num_layers):
            W_ih, W_hh, b_ih, b_hh = reference.weights(sd, l)
            h, c, hs = np.zeros(H), np.zeros(H), []
            for s, x_t in enumerate(x):
                a = W_ih @ x_t + b_ih + W_hh @ h + b_hh
                if model.cell == "lstm":
                    c = reference.sigmoid(a[H:2 * H]) * c + reference.sigmoid(a[:H]) * np.tanh(a[2 * H:3 * H])
                    if (l, s, kind) == (layer, t, "c"):
                        c = c + delta
                    h = reference.sigmoid(a[3 * H:]) * np.tanh(c)
                else:
                    h = np.tanh(a)
                if (l, s, kind) == (layer, t, "h"):
                    h = h + delta
                hs.append(h)
            x = np.array(hs)
        logits = x[-1] @ sd["head.weight"].double().numpy().T + sd["head.bias"].double().numpy()
        logits = logits - logits.max()
        return -(logits[ids[-1]] - np.log(np.exp(logits).sum()))

    grad = np.array([(loss_with(eps * e) - loss_with(-eps * e)) / (2 * eps) for e in np.eye(H)])
    return np.linalg.norm(grad)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_norms_match_finite_differences(cell):
    text = TEXT[:20]
    model = _model(cell, hidden=6)
    flow = gradient_norms(model, text)
    for layer, t in [(0, 2), (1, 10), (0, 18), (1, 18)]:
        fd = _fd_norms(model, text, t, layer, "h")
        assert flow.dh[layer, t] == pytest.approx(fd, rel=1e-4)
        if cell == "lstm":
            assert flow.dc[layer, t] == pytest.approx(_fd_norms(model, text, t, layer, "c"), rel=1e-4)


def test_spectral_radius_controls_vanishing_and_the_bound_holds():
    text = (TEXT * 3)[:120]
    small = gradient_norms(fresh_model(VOCAB, "rnn", hidden_size=32, seed=1, spectral_radius=0.5), text)
    large = gradient_norms(fresh_model(VOCAB, "rnn", hidden_size=32, seed=1, spectral_radius=3.0), text)
    decay = lambda f: np.log10(f.dh[0, -1] / f.dh[0, 0])
    assert decay(small) > 10 > decay(large)
    # Pascanu bound: for the tanh RNN the measured curve never exceeds sigma^(T-1-t)
    assert np.all(small.dh[0] <= small.bound(0) * (1 + 1e-9))
    w = fresh_model(VOCAB, "rnn", hidden_size=32, seed=1, spectral_radius=0.5).rnn.weight_hh_l0.detach().double()
    assert torch.linalg.eigvals(w).abs().max().item() == pytest.approx(0.5)
    assert small.sigma_max[0] == pytest.approx(torch.linalg.matrix_norm(w, 2).item())


def test_forget_bias_knob_and_seeds():
    m = fresh_model(VOCAB, "lstm", hidden_size=16, seed=3, forget_bias=5.0)
    b = (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0).detach()
    assert torch.all(b[16:32] == 5.0)
    low = gradient_norms(fresh_model(VOCAB, "lstm", hidden_size=16, seed=3, forget_bias=-3.0), TEXT)
    high = gradient_norms(m, TEXT)
    assert high.dc[0, 0] / high.dc[0, -1] > 1e3 * low.dc[0, 0] / low.dc[0, -1]
    again = gradient_norms(fresh_model(VOCAB, "lstm", hidden_size=16, seed=3, forget_bias=5.0), TEXT)
    np.testing.assert_array_equal(again.dh, high.dh)
    with pytest.raises(ConfigError):
        set_forget_bias(_model("gru"), 1.0)
    with pytest.raises(ConfigError):
        set_spectral_radius(_model("rnn"), float("nan"))


def test_bad_input():
    with pytest.raises(TextError, match="two characters"):
        gradient_norms(_model("lstm"), "a")
    with pytest.raises(ConfigError):
        gradient_norms(_model("lstm"), TEXT, loss_at="first")


def test_spectra_match_svd():
    from rnnviz.gradients import recurrent_spectra
    m = _model("lstm", hidden=12)
    whole, blocks = recurrent_spectra(m)
    for l in range(2):
        w = getattr(m.rnn, f"weight_hh_l{l}").detach().double()
        assert whole[l] == pytest.approx(torch.linalg.svdvals(w)[0].item(), rel=1e-12)
        assert blocks[l]["f"] == pytest.approx(torch.linalg.svdvals(w[12:24])[0].item(), rel=1e-12)


def test_the_model_is_left_untouched():
    m = _model("lstm")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    mode = m.training
    for double in (True, False):
        gradient_norms(m, TEXT, double=double)
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert m.training == mode and all(p.dtype == torch.float32 for p in m.parameters())


def test_spectral_radius_is_remembered_by_content_and_is_the_eigenproblems(monkeypatch):
    """A fresh RNN's ρ knob no longer solves W_hh's eigenproblem on every move: the radius is remembered by
    the matrix's exact contents. A hit gives bit-identical weights; a matrix one entry away is solved anew."""
    from rnnviz import gradients

    monkeypatch.setattr(gradients, "_RADII", {})
    solved = []
    eigvals = torch.linalg.eigvals
    monkeypatch.setattr(torch.linalg, "eigvals", lambda a: solved.append(a.shape) or eigvals(a))
    a = set_spectral_radius(_model("rnn", layers=1, hidden=12, seed=4), 0.7)  # solves once
    b = set_spectral_radius(_model("rnn", layers=1, hidden=12, seed=4), 0.7)  # remembered
    assert len(solved) == 1
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    w = torch.randn(12, 12, generator=torch.Generator().manual_seed(1))
    rho = np.abs(np.linalg.eigvals(w.double().numpy())).max()  # numpy's LAPACK, not torch's
    assert gradients.spectral_radius(w) == pytest.approx(rho, rel=1e-12)
    w2 = w.clone()
    w2[3, 5] += 1e-6
    rho2 = np.abs(np.linalg.eigvals(w2.double().numpy())).max()
    assert gradients.spectral_radius(w2) == pytest.approx(rho2, rel=1e-12) and len(solved) == 3
    assert gradients.spectral_radius(w.clone()) == gradients.spectral_radius(w) and len(solved) == 3
    c = set_spectral_radius(_model("rnn", layers=2, hidden=12, seed=4), 1.3)
    for l in range(2):
        w_hh = c.layer_weights(l)["weight_hh"].detach().double().numpy()
        assert np.abs(np.linalg.eigvals(w_hh)).max() == pytest.approx(1.3, rel=1e-6)


def test_top_singular_value_is_proven_or_solved(monkeypatch):
    """The path gain's norm per step: power iteration with a Cholesky proof of its bracket, else the
    eigenproblem. Both answers match numpy's 2-norm in float64; a clear top value needs no eigenproblem,
    two nearly equal ones do (the proof fails), and a u orthogonal to everything still gets the norm."""
    from rnnviz import gradients

    solved = []
    eigvalsh = torch.linalg.eigvalsh
    monkeypatch.setattr(torch.linalg, "eigvalsh", lambda a: solved.append(1) or eigvalsh(a))
    gen = torch.Generator().manual_seed(3)
    q1, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=torch.float64))
    start = torch.full((40,), 40 ** -0.5, dtype=torch.float64)
    for top, second, fallback in ((3.0, 1.0, False), (3.0, 3.0 * (1 - 1e-3), True)):
        s = torch.linspace(0.1, second, 40, dtype=torch.float64)
        s[-1] = top
        p = (q1 @ torch.diag(s) @ q2.T).float()  # singular values s, up to float32 rounding
        solved.clear()
        sigma, u = gradients._top_singular_value(p, start)
        assert sigma == pytest.approx(np.linalg.norm(p.double().numpy(), 2), rel=1e-6)
        assert bool(solved) == fallback
        if not fallback:  # the vector it hands on is the top left singular vector
            assert abs(float(u @ q1[:, -1])) == pytest.approx(1, abs=1e-5)
    p = torch.zeros(40, 40)
    p[0, 0] = 2.0
    sigma, _ = gradients._top_singular_value(p, torch.eye(40, dtype=torch.float64)[1])
    assert sigma == pytest.approx(2.0)
