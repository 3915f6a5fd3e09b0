"""Gradient flow through time: ||dL/dh_t|| and ||dL/dc_t|| for every t and layer, in one backward pass."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, TextError
from .model import GATES, CharRNN, build
from .scan import linear_scan
from .trace import _internals, _layer_params, _run_layer
from .vocab import Vocab


@dataclass
class GradientFlow:
    """Norms of the loss gradient with respect to each state, per layer and timestep."""

    cell: str
    text: str  # the inputs: character t of text is read at step t
    loss_at: str  # "last" or "mean"
    loss: float
    dh: np.ndarray  # (L, T) ||dL/dh_t||
    dc: np.ndarray | None  # (L, T) ||dL/dc_t||, LSTM only
    sigma_max: np.ndarray  # (L,) largest singular value of each layer's recurrent matrix W_hh

    @property
    def distance(self) -> np.ndarray:
        """T-1-t: how many steps before the last position each t lies."""
        return np.arange(self.dh.shape[1])[::-1].copy()

    def bound(self, layer: int) -> np.ndarray:
        """Pascanu et al. (2013): ||dL/dh_t|| <= ||dL/dh_{T-1}|| * sigma_max^(T-1-t), as |tanh'| <= 1.

        A strict upper bound for the tanh RNN under a last-position loss; for gated cells the
        gates scale each step further, so the curve is a reference line, not a bound.
        """
        return self.dh[layer, -1] * self.sigma_max[layer] ** self.distance.astype(np.float64)


def largest_singular_value(w: torch.Tensor) -> float:
    """sigma_max(W) as sqrt of the top eigenvalue of the small Gram matrix W^T W, in float64.

    For a (G*H, H) matrix this is several times cheaper than an SVD and exact to rounding.
    """
    w = w.detach().double()
    return float(torch.linalg.eigvalsh(w.t() @ w)[-1].clamp_min(0).sqrt())


def recurrent_spectra(model: CharRNN) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Largest singular value of each layer's W_hh, and of each gate's block of it."""
    names = GATES[model.cell] or ("h",)
    whole, blocks = [], []
    for l in range(model.config.num_layers):
        w = model.layer_weights(l)["weight_hh"]
        whole.append(largest_singular_value(w))
        blocks.append({g: largest_singular_value(b) for g, b in zip(names, w.chunk(len(names)))})
    return np.array(whole), blocks


def _loss(logits: torch.Tensor, targets: torch.Tensor, loss_at: str) -> torch.Tensor:
    if loss_at == "last":
        return F.cross_entropy(logits[-1:], targets[-1:])
    return F.cross_entropy(logits, targets)


def _frozen_params(model: CharRNN, layer: int) -> tuple[torch.Tensor, ...]:
    # Detached weights: the backward pass then computes gradients for states only, not weights,
    # and the model (perhaps a shared, cached one) gathers no .grad.
    return tuple(p.detach() for p in _layer_params(model, layer))


def _frozen_head(model: CharRNN, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, model.head.weight.detach(), model.head.bias.detach())


def _probed(model: CharRNN, ids: torch.Tensor, targets: torch.Tensor, loss_at: str):
    """LSTM / tanh RNN through the fused kernel, with a zero probe input per layer.

    The kernel hides the path h_{t-1} -> step t from autograd. Feeding [x_t, p_t] with
    W_ih' = [W_ih | W_hh] and p = 0 changes nothing in the forward pass, yet makes
    dL/dp_t = W_hh^T dL/dz_t: exactly the recurrent part of dL/dh_{t-1}.
    """
    cell, T, H = model.cell, len(ids), model.config.hidden_size
    x = model.embed(ids).detach()  # (T, E)
    outs, probes, inputs = [], [], []
    for l in range(model.config.num_layers):
        w_ih, w_hh, b_ih, b_hh = _frozen_params(model, l)
        p = torch.zeros(T, H, dtype=x.dtype, device=x.device, requires_grad=True)
        zero = torch.zeros(1, 1, H, dtype=x.dtype, device=x.device)
        state = (zero, zero) if cell == "lstm" else zero
        h, _ = _run_layer(cell, torch.cat([x, p], 1), state, (torch.cat([w_ih, w_hh], 1), w_hh, b_ih, b_hh))
        h.retain_grad()
        inputs.append(x.detach())
        outs.append(h)
        probes.append(p)
        x = h
    loss = _loss(_frozen_head(model, x), targets, loss_at)
    loss.backward()
    dh = []
    for h, p in zip(outs, probes):
        d = h.grad.clone()  # (T, H) the direct part: from the layer above and the head
        d[:-1] += p.grad[1:]  # the recurrent part, through step t+1
        dh.append(d)
    return loss.item(), dh, inputs, [h.detach() for h in outs]


def _unrolled(model: CharRNN, ids: torch.Tensor, targets: torch.Tensor, loss_at: str):
    """Any cell, one explicit step at a time, keeping the gradient of every h_t (slow, exact)."""
    cell, H = model.cell, model.config.hidden_size
    x = model.embed(ids).detach().requires_grad_(True)  # the leaf every h_t hangs from
    hs_all = []
    for l in range(model.config.num_layers):
        w_ih, w_hh, b_ih, b_hh = _frozen_params(model, l)
        gi_all = torch.addmm(b_ih, x, w_ih.t())  # (T, G*H) the input part, for all t at once
        h = torch.zeros(H, dtype=x.dtype, device=x.device)
        c = torch.zeros_like(h)
        hs = []
        for gi in gi_all:
            gh = torch.addmv(b_hh, w_hh, h)
            if cell == "gru":
                r, z = torch.sigmoid(gi[:2 * H] + gh[:2 * H]).chunk(2)
                n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
                h = (1 - z) * n + z * h
            elif cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(gi + gh)
            h.retain_grad()
            hs.append(h)
        hs_all.append(hs)
        x = torch.stack(hs)
    loss = _loss(_frozen_head(model, x), targets, loss_at)
    loss.backward()
    return loss.item(), [torch.stack([h.grad for h in hs]) for hs in hs_all]


@torch.no_grad()
def _layer_io(model: CharRNN, ids: torch.Tensor):
    """Each layer's input (T, in) and output h (T, H), from zero state."""
    x, xs, hs = model.embed(ids), [], []
    for l in range(model.config.num_layers):
        zero = torch.zeros(1, 1, model.config.hidden_size, dtype=x.dtype, device=x.device)
        h, _ = _run_layer(model.cell, x, (zero, zero) if model.cell == "lstm" else zero, _layer_params(model, l))
        xs.append(x)
        hs.append(h)
        x = h
    return xs, hs


def _cell_grads(model: CharRNN, dh: torch.Tensor, x: torch.Tensor, h: torch.Tensor, layer: int) -> torch.Tensor:
    """dL/dc_t = dL/dh_t * o_t * (1 - tanh^2 c_t) + dL/dc_{t+1} * f_{t+1}, solved backwards by a scan."""
    zero = torch.zeros(1, 1, h.shape[1], dtype=h.dtype, device=h.device)
    parts = _internals("lstm", x, h, (zero, zero), _layer_params(model, layer))
    b = dh * parts["o"] * (1 - torch.tanh(parts["c"]) ** 2)
    a = torch.cat([parts["f"][1:], torch.zeros_like(parts["f"][:1])])  # f_{t+1}, nothing after T-1
    return linear_scan(a.flip(0), b.flip(0)).flip(0)


def gradient_norms(model: CharRNN, text: str, loss_at: str = "last", double: bool = True,
                   method: str = "auto") -> GradientFlow:
    """||dL/dh_t|| (and ||dL/dc_t|| for an LSTM) for every step t and layer, from one backward pass.

    The model reads text[:-1] and predicts text[1:]; L is the loss at the last position
    (`loss_at="last"`) or the mean over all positions ("mean"). `double` works on a float64
    copy, so norms far from the loss (1e-15 and below) keep their digits. `method="unroll"`
    forces the explicit step loop; "auto" uses the fused kernel with a probe input for LSTM
    and RNN, and the step loop for GRU, whose h_{t-1} also enters through the reset gate.
    """
    if loss_at not in ("last", "mean"):
        raise ConfigError(f"loss_at must be 'last' or 'mean', not {loss_at!r}")
    if method not in ("auto", "unroll"):
        raise ConfigError(f"method must be 'auto' or 'unroll', not {method!r}")
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("gradient flow needs a text of at least two characters (one to read, one to predict)")
    # float64 needs a copy; float32 reads the model's weights detached and leaves it untouched
    work = copy.deepcopy(model).double() if double else model
    was_training = work.training
    work.eval()
    ids = torch.from_numpy(work.vocab.encode(text)).to(work.device)
    inputs, targets = ids[:-1], ids[1:]
    dc = None
    try:
        with torch.enable_grad():
            if method == "unroll" or work.cell == "gru":
                loss, dh = _unrolled(work, inputs, targets, loss_at)
                xs = hs = None
            else:
                loss, dh, xs, hs = _probed(work, inputs, targets, loss_at)
    finally:
        work.train(was_training)
    if work.cell == "lstm":
        with torch.no_grad():
            if xs is None:
                xs, hs = _layer_io(work, inputs)
            dc = torch.stack([_cell_grads(work, d, x, h, l) for l, (d, x, h) in enumerate(zip(dh, xs, hs))])
            dc = dc.norm(dim=-1).cpu().numpy()
    sigma = np.array([largest_singular_value(work.layer_weights(l)["weight_hh"])
                      for l in range(work.config.num_layers)])
    dh_norm = torch.stack([d.norm(dim=-1) for d in dh]).detach().cpu().numpy()
    return GradientFlow(cell=work.cell, text=text[:-1], loss_at=loss_at, loss=loss, dh=dh_norm, dc=dc,
                        sigma_max=sigma)


def set_spectral_radius(model: CharRNN, radius: float) -> CharRNN:
    """Scale each layer's W_hh so its largest |eigenvalue| is `radius` (vanish < 1 < explode)."""
    if not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"the spectral radius must be a positive number, not {radius!r}")
    with torch.no_grad():
        for l in range(model.config.num_layers):
            w = model.layer_weights(l)["weight_hh"]
            G = w.shape[0] // w.shape[1]
            for block in w.chunk(G):  # each gate's square H x H block
                rho = torch.linalg.eigvals(block.double()).abs().max().item()
                if rho > 0:
                    block.mul_(radius / rho)
    return model


def set_forget_bias(model: CharRNN, value: float) -> CharRNN:
    """Set an LSTM's forget-gate bias (b_ih + b_hh) to `value`; 1 or more helps memory at init."""
    if model.cell != "lstm":
        raise ConfigError("only an LSTM has a forget gate")
    if not np.isfinite(value):
        raise ConfigError(f"the forget-gate bias must be a finite number, not {value!r}")
    H = model.config.hidden_size
    with torch.no_grad():
        for l in range(model.config.num_layers):
            w = model.layer_weights(l)
            w["bias_ih"][H:2 * H] = value
            w["bias_hh"][H:2 * H] = 0.0
    return model


def fresh_model(vocab: Vocab | list[str], cell: str, hidden_size: int = 128, num_layers: int = 1,
                seed: int = 0, spectral_radius: float | None = None, forget_bias: float | None = None,
                **kwargs) -> CharRNN:
    """A seeded, freshly initialised model with the teacher's init knobs applied."""
    model = build(vocab, cell=cell, hidden_size=hidden_size, num_layers=num_layers, seed=seed, **kwargs)
    if spectral_radius is not None:
        set_spectral_radius(model, spectral_radius)
    if forget_bias is not None:
        set_forget_bias(model, forget_bias)
    return model
