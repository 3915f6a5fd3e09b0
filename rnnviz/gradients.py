"""Gradient flow through time: ||dL/dh_t|| and ||dL/dc_t|| for every t and layer, in one backward pass."""
from __future__ import annotations

import copy
import hashlib
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, TextError
from .model import GATES, CharRNN, build
from .trace import _fused, _internals, _layer_params, _run_layer
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
    units: np.ndarray | None = None  # (L, T, H) |dL/dc_t| per unit (an LSTM), |dL/dh_t| otherwise; on request

    @property
    def distance(self) -> np.ndarray:
        """T-1-t: how many steps before the last position each t lies."""
        return np.arange(self.dh.shape[1])[::-1].copy()

    def bound(self, layer: int) -> np.ndarray:
        """Pascanu et al. (2013): ||dL/dh_(T-1)|| * sigma_max^(T-1-t), after |tanh'| <= 1.

        A bound on ||dL/dh_t|| only for the TOP layer of a tanh RNN under a last-position loss. Below
        the top, gradient also arrives from the layer above at every step, and for gated cells the
        gates scale each step: there it bounds nothing. Even where it holds it is loose, since a
        non-normal W_hh has sigma_max well above its spectral radius; `path_gain` is the tight one.
        """
        return self.dh[layer, -1] * self.sigma_max[layer] ** self.distance.astype(np.float64)


def largest_singular_value(w: torch.Tensor, dtype: torch.dtype = torch.float64) -> float:
    """sigma_max(W) as sqrt of the top eigenvalue of the small Gram matrix W^T W, in `dtype`.

    For a (G*H, H) matrix this is several times cheaper than an SVD and exact to rounding;
    float32 halves the cost again and is as precise as float32 weights.
    """
    w = w.detach().to(dtype)
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


def fused_layer(model: CharRNN, layer: int, x: torch.Tensor, state=None):
    """x (B, T, in) through one layer of the fused kernel with frozen weights, from `state` (None: zeros)
    -> (out (B, T, H), final state: (h, c) for an LSTM, h otherwise)."""
    if state is None:
        zero = torch.zeros(1, x.shape[0], model.config.hidden_size, dtype=x.dtype, device=x.device)
        state = (zero, zero) if model.cell == "lstm" else zero
    return _fused(model.cell, x, state, _frozen_params(model, layer))


def _frozen_head(model: CharRNN, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, model.head.weight.detach(), model.head.bias.detach())


def _lstm_backward(parts: dict, g: torch.Tensor, w_hh: torch.Tensor):
    """dL/dh_t, dL/dc_t and dL/dz_t (gate pre-activations) of one LSTM layer, t = T-1 down to 0.

    g (T, H) is the direct part of dL/dh_t (from the head or the layer above); the rest comes
    through step t+1: dh_t = g_t + W_hh^T dz_{t+1}, dc_t = dh_t o_t (1 - tanh^2 c_t) + dc_{t+1} f_{t+1}.
    """
    i, f, gg, o, c = (parts[k] for k in ("i", "f", "g", "o", "c"))
    T, H = c.shape
    tc = torch.tanh(c)
    k = o * (1 - tc * tc)  # (T, H) dh_t -> dc_t
    c_prev = torch.cat([torch.zeros_like(c[:1]), c[:-1]])  # c_{t-1}, zero state before t = 0
    f_next = torch.cat([f[1:], torch.zeros_like(f[:1])])  # f_{t+1}, nothing after T-1
    # dz_t = a_t * [dc_t, dc_t, dc_t, dh_t]: the derivative of each gate times its other factor
    a = torch.stack([gg * i * (1 - i), c_prev * f * (1 - f), i * (1 - gg * gg), tc * o * (1 - o)], 1)  # (T, 4, H)
    dz = torch.zeros(T + 1, 4, H, dtype=c.dtype, device=c.device)  # row T stays 0: no step after T-1
    dh = torch.empty_like(c)
    dc = torch.zeros(T + 1, H, dtype=c.dtype, device=c.device)
    # Row views made once: indexing inside the loop would cost more than its arithmetic.
    g_, dh_, dc_, k_, fn_ = g.unbind(0), dh.unbind(0), dc.unbind(0), k.unbind(0), f_next.unbind(0)
    a3_, ao_, dz3_, dzo_ = a[:, :3].unbind(0), a[:, 3].unbind(0), dz[:, :3].unbind(0), dz[:, 3].unbind(0)
    dz_ = dz.view(T + 1, 4 * H).unbind(0)
    w_t = w_hh.t().contiguous()  # (H, 4H); row-major, the product is ~25% faster than on the transposed view
    for t in range(T - 1, -1, -1):
        torch.addmv(g_[t], w_t, dz_[t + 1], out=dh_[t])
        torch.mul(dh_[t], k_[t], out=dc_[t]).addcmul_(dc_[t + 1], fn_[t])
        torch.mul(a3_[t], dc_[t], out=dz3_[t])
        torch.mul(ao_[t], dh_[t], out=dzo_[t])
    return dh, dc[:T], dz[:T].view(T, 4 * H)


def _rnn_backward(h: torch.Tensor, g: torch.Tensor, w_hh: torch.Tensor):
    """dL/dh_t and dL/dz_t of one tanh RNN layer: dh_t = g_t + W_hh^T dz_{t+1}, dz_t = dh_t (1 - h_t^2)."""
    T, H = h.shape
    k = 1 - h * h
    dz = torch.zeros(T + 1, H, dtype=h.dtype, device=h.device)  # row T stays 0
    dh = torch.empty_like(h)
    g_, dh_, dz_, k_ = g.unbind(0), dh.unbind(0), dz.unbind(0), k.unbind(0)
    w_t = w_hh.t().contiguous()  # (H, H) row-major, as for the LSTM
    for t in range(T - 1, -1, -1):
        torch.mul(torch.addmv(g_[t], w_t, dz_[t + 1], out=dh_[t]), k_[t], out=dz_[t])
    return dh, None, dz[:T]


def _forward(model: CharRNN, ids: torch.Tensor, gates: bool) -> list[dict[str, torch.Tensor]]:
    """Per layer, h from the fused kernel (and c and every gate, with `gates`), from a zero state,
    in the model's own dtype: a float64 copy gives float64 states, unlike a Trace."""
    x, layers, H = model.embed(ids), [], model.config.hidden_size
    for l in range(model.config.num_layers):
        params = _layer_params(model, l)
        zero = torch.zeros(1, 1, H, dtype=x.dtype, device=x.device)
        state = (zero, zero) if model.cell == "lstm" else zero
        h, _ = _run_layer(model.cell, x, state, params)
        layers.append(_internals(model.cell, x, h, state, params) if gates else {"h": h})
        x = h
    return layers


@torch.no_grad()
def _by_hand(model: CharRNN, ids: torch.Tensor, targets: torch.Tensor, loss_at: str):
    """LSTM / tanh RNN: the fused kernel forward, the gates recomputed in batch as in a trace, then
    backpropagation through time written out for the states only.

    Autograd through the kernel would hide dL/dh_t inside it (a probe input to expose it widens
    every matrix product) and compute weight gradients nobody asked for; by hand, each step is one
    matrix-vector product with W_hh and a few vector operations, and dL/dc_t comes on the way.
    """
    cell, T, L = model.cell, len(ids), model.config.num_layers
    layers = _forward(model, ids, gates=cell == "lstm")
    x = layers[-1]["h"]
    logits = F.linear(x, model.head.weight, model.head.bias)  # (T, V)
    loss = _loss(logits, targets, loss_at)
    # Cross-entropy's gradient: softmax minus the one-hot target, over the positions in the loss.
    dlogits = torch.softmax(logits, -1)
    dlogits[torch.arange(T, device=x.device), targets] -= 1
    if loss_at == "last":
        dlogits[:-1] = 0
    else:
        dlogits /= T
    g = dlogits @ model.head.weight  # (T, H) the direct part of dL/dh_t of the top layer
    dh, dc = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        w_ih, w_hh, _, _ = _layer_params(model, l)
        if cell == "lstm":
            dh[l], dc[l], dz = _lstm_backward(layers[l], g, w_hh)
        else:
            dh[l], dc[l], dz = _rnn_backward(layers[l]["h"], g, w_hh)
        g = dz @ w_ih  # (T, in) the direct part for the layer below
    return loss.item(), dh, dc if cell == "lstm" else None


def _unrolled(model: CharRNN, ids: torch.Tensor, targets: torch.Tensor, loss_at: str):
    """Any cell, one explicit step at a time, keeping the gradient of every h_t and c_t (slow, exact)."""
    cell, H = model.cell, model.config.hidden_size
    x = model.embed(ids).detach().requires_grad_(True)  # the leaf every h_t hangs from
    hs_all, cs_all = [], []
    for l in range(model.config.num_layers):
        w_ih, w_hh, b_ih, b_hh = _frozen_params(model, l)
        gi_all = torch.addmm(b_ih, x, w_ih.t())  # (T, G*H) the input part, for all t at once
        h = torch.zeros(H, dtype=x.dtype, device=x.device)
        c = torch.zeros_like(h)
        hs, cs = [], []
        for gi in gi_all:
            gh = torch.addmv(b_hh, w_hh, h)
            if cell == "gru":
                r, z = torch.sigmoid(gi[:2 * H] + gh[:2 * H]).chunk(2)
                n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
                h = (1 - z) * n + z * h
            elif cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                c.retain_grad()
                cs.append(c)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(gi + gh)
            h.retain_grad()
            hs.append(h)
        hs_all.append(hs)
        cs_all.append(cs)
        x = torch.stack(hs)
    loss = _loss(_frozen_head(model, x), targets, loss_at)
    loss.backward()
    dc = [torch.stack([c.grad for c in cs]) for cs in cs_all] if cell == "lstm" else None
    return loss.item(), [torch.stack([h.grad for h in hs]) for hs in hs_all], dc


def gradient_norms(model: CharRNN, text: str, loss_at: str = "last", double: bool = True,
                   method: str = "auto", per_unit: bool = False) -> GradientFlow:
    """||dL/dh_t|| (and ||dL/dc_t|| for an LSTM) for every step t and layer, from one backward pass.

    The model reads text[:-1] and predicts text[1:]; L is the loss at the last position
    (`loss_at="last"`) or the mean over all positions ("mean"). `double` works on a float64
    copy, so norms far from the loss (1e-15 and below) keep their digits. `method="unroll"`
    forces the explicit step loop under autograd; "auto" uses the fused kernel forward and a
    hand-written backward for LSTM and RNN, and the step loop for GRU, whose h_{t-1} also enters
    through the reset gate. `per_unit` also keeps every unit's |dL/dc_t| (|dL/dh_t| without a cell
    state) as `units`, to find the units that carry memory.
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
    try:
        if method == "unroll" or work.cell == "gru":
            with torch.enable_grad():
                loss, dh, dc = _unrolled(work, inputs, targets, loss_at)
        else:
            loss, dh, dc = _by_hand(work, inputs, targets, loss_at)
    finally:
        work.train(was_training)
    norms = lambda ds: torch.stack([d.norm(dim=-1) for d in ds]).detach().cpu().numpy()  # (L, T)
    dtype = torch.float64 if double else torch.float32
    sigma = np.array([largest_singular_value(work.layer_weights(l)["weight_hh"], dtype)
                      for l in range(work.config.num_layers)])
    units = None
    if per_unit:
        units = torch.stack([d.detach().abs() for d in (dc if dc is not None else dh)]).cpu().numpy()
    return GradientFlow(cell=work.cell, text=text[:-1], loss_at=loss_at, loss=loss, dh=norms(dh),
                        dc=norms(dc) if dc is not None else None, sigma_max=sigma, units=units)


def _top_singular_value(p: torch.Tensor, u: torch.Tensor, tol: float = 2e-6) -> tuple[float, torch.Tensor]:
    """sigma_max of a square float32 matrix p, proven to within a relative tol/4, and its left singular
    vector (the next step's start).

    Power iteration on the Gram matrix p p^T from u, the previous step's vector, which one more Jacobian in
    the product barely turns. Its Rayleigh quotient theta never exceeds sigma_max^2, and a Cholesky
    factorisation of (1 + tol) theta I - p p^T that succeeds proves sigma_max^2 < (1 + tol) theta; the middle
    of that bracket is returned. Where the factorisation fails (the top two singular values close: about
    one step in ten), the eigenproblem answers. A factorisation costs a quarter of an eigenproblem: the
    RNN's path gain takes 1.3 (100 steps) to 1.6 (400 steps) times less than with an eigenproblem a step.
    """
    g = (p @ p.t()).double()  # (H, H) formed in float32 as the eigenproblem's was, then read exactly in float64
    theta = 0.0
    for _ in range(40):
        v = torch.mv(g, u)
        norm = float(v.norm())
        if not norm > 0:  # u is orthogonal to everything p reaches: the eigenproblem decides
            theta = 0.0
            break
        last, theta = theta, float(torch.dot(u, v))
        u = v / norm
        if theta - last <= tol / 4 * theta:
            break
    if theta > 0:
        shifted = g.neg()
        shifted.diagonal().add_((1 + tol) * theta)
        if torch.linalg.cholesky_ex(shifted).info == 0:
            return math.sqrt((1 + tol / 2) * theta), u
    return math.sqrt(float(torch.linalg.eigvalsh(g)[-1].clamp_min(0))), u


@torch.no_grad()
def path_gain(model: CharRNN, text: str, layer: int = -1) -> tuple[np.ndarray, str]:
    """How much of a gradient the memory path of one layer can carry back from the last step to step t.

    (T,) array indexed by t like GradientFlow.dh, 1 at t = T-1, for the inputs text[:-1]; and a name:
    - tanh RNN: ||dh_(T-1)/dh_t||_2, the norm of the product of the true step Jacobians
      diag(1 - h_s^2) W_hh met along this text. For the top layer under a last-position loss,
      ||dL/dh_t|| <= ||dL/dh_(T-1)|| * gain: a tight bound, unlike sigma_max^d.
    - LSTM: max over units of prod f_s (s = t+1 .. T-1), the norm of dc_(T-1)/dc_t along the cell
      path c_s = f_s c_(s-1) + ... alone; gradient also flows through h_(t-1) -> gates, so this is
      what the forget gates alone would keep, not a bound.
    - GRU: max over units of prod z_s, likewise for the update gate's path h_s = z_s h_(s-1) + ...
    Cost for an RNN: T products of (H, H) matrices.
    """
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("the path gain needs a text of at least two characters")
    L = model.config.num_layers
    layer = layer % L
    model = copy.deepcopy(model).double().eval()  # the states in float64, as gradient_norms sees them
    ids = torch.from_numpy(model.vocab.encode(text[:-1])).to(model.device)
    parts = {k: v.cpu() for k, v in _forward(model, ids, gates=model.cell != "rnn")[layer].items()}
    T = len(ids)
    if model.cell == "rnn":
        # The products in float32, each divided by its largest entry and the scale kept as a float64
        # log, so hundreds of steps neither underflow nor lose digits to it: within 2e-6 of float64
        # products over 400 steps at 256 units (1.3e-6 measured at rho 0.5 and 1.5).
        slope = (1 - parts["h"] ** 2).float()  # (T, H) tanh', from float64 states: near-saturated units keep theirs
        w = model.layer_weights(layer)["weight_hh"].detach().cpu().float()  # (H, H)
        gain, prod, log_scale = np.ones(T), torch.eye(w.shape[0]), 0.0
        u = torch.full((w.shape[0],), w.shape[0] ** -0.5, dtype=torch.float64)  # the top left singular vector
        for t in range(T - 2, -1, -1):  # dh_(T-1)/dh_t = J_(T-1) ... J_(t+1), J_s = diag(1 - h_s^2) W_hh
            prod = prod @ (slope[t + 1][:, None] * w)
            top = float(prod.abs().max())
            if top == 0.0:  # every later product is 0 too
                gain[: t + 1] = 0.0
                break
            prod /= top
            log_scale += math.log(top)
            sigma, u = _top_singular_value(prod, u)
            gain[t] = sigma * math.exp(log_scale)
        return gain, "||∂h_T/∂h_t||, the step Jacobians along the text"
    gate = "f" if model.cell == "lstm" else "z"
    logs = np.log(np.clip(parts[gate].numpy(), 1e-300, 1.0))  # (T, H)
    # suffix sums: the log of prod_{s=t+1}^{T-1} gate_s for each t, per unit
    suffix = np.concatenate([np.cumsum(logs[::-1], 0)[::-1][1:], np.zeros((1, logs.shape[1]))])
    return np.exp(suffix.max(1)), f"∏{gate}, the {'cell' if gate == 'f' else 'update-gate'} path alone"


_RADII: dict[bytes, float] = {}  # sha256 of a float64 matrix's bytes -> its spectral radius
_RADII_LOCK = threading.Lock()
_RADII_KEPT = 256


def spectral_radius(block: torch.Tensor) -> float:
    """The largest |eigenvalue| of a square matrix, remembered by its exact contents.

    A fresh model of one seed draws the same W_hh whatever ρ the class asks for, and its nonsymmetric
    eigenproblem costs about 20 ms at 256 units, on every move of ρ or of the sequence length; hashing
    the matrix costs a hundredth of that. Same bytes, same eigenproblem: the value is the one computed.
    """
    a = block.detach().double().cpu().contiguous()  # (H, H), what the eigenproblem reads
    key = hashlib.sha256(repr(tuple(a.shape)).encode() + a.numpy().tobytes()).digest()
    with _RADII_LOCK:
        if key in _RADII:
            return _RADII[key]
    rho = torch.linalg.eigvals(a).abs().max().item()
    with _RADII_LOCK:
        if len(_RADII) >= _RADII_KEPT:
            del _RADII[next(iter(_RADII))]  # the oldest: a server keeps a few seeds' matrices, not every one
        _RADII[key] = rho
    return rho


def set_spectral_radius(model: CharRNN, radius: float) -> CharRNN:
    """Scale each layer's W_hh so its largest |eigenvalue| is `radius` (vanish < 1 < explode)."""
    if not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"the spectral radius must be a positive number, not {radius!r}")
    with torch.no_grad():
        for l in range(model.config.num_layers):
            w = model.layer_weights(l)["weight_hh"]
            G = w.shape[0] // w.shape[1]
            for block in w.chunk(G):  # each gate's square H x H block
                rho = spectral_radius(block)
                if rho > 0:
                    block.mul_(radius / rho)
    return model


def _set_gate_bias(model: CharRNN, cell: str, gate: str, value: float) -> CharRNN:
    """Set the bias (b_ih + b_hh) of the second gate block, an LSTM's f or a GRU's z, in every layer."""
    if model.cell != cell:
        raise ConfigError(f"only {'an LSTM has a forget' if cell == 'lstm' else 'a GRU has an update'} gate")
    if not np.isfinite(value):
        raise ConfigError(f"the {gate} bias must be a finite number, not {value!r}")
    H = model.config.hidden_size
    with torch.no_grad():
        for l in range(model.config.num_layers):
            w = model.layer_weights(l)
            w["bias_ih"][H:2 * H] = value  # PyTorch's gate orders: i, f, g, o and r, z, n
            w["bias_hh"][H:2 * H] = 0.0
    return model


def set_forget_bias(model: CharRNN, value: float) -> CharRNN:
    """Set an LSTM's forget-gate bias (b_ih + b_hh) to `value`; 1 or more helps memory at init."""
    return _set_gate_bias(model, "lstm", "forget-gate", value)


def set_update_bias(model: CharRNN, value: float) -> CharRNN:
    """Set a GRU's update-gate bias (b_ih + b_hh). PyTorch's GRU keeps its state where z is near 1
    (h_t = (1 - z) n + z h_(t-1)), so a positive bias makes it remember; Cho et al. (2014) write z
    the other way round, where the same bias would make it forget."""
    return _set_gate_bias(model, "gru", "update-gate", value)


def fresh_model(vocab: Vocab | list[str], cell: str, hidden_size: int = 128, num_layers: int = 1,
                seed: int = 0, spectral_radius: float | None = None, forget_bias: float | None = None,
                update_bias: float | None = None, **kwargs) -> CharRNN:
    """A seeded, freshly initialised model with the teacher's init knobs applied."""
    model = build(vocab, cell=cell, hidden_size=hidden_size, num_layers=num_layers, seed=seed, **kwargs)
    if spectral_radius is not None:
        set_spectral_radius(model, spectral_radius)
    if forget_bias is not None:
        set_forget_bias(model, forget_bias)
    if update_bias is not None:
        set_update_bias(model, update_bias)
    return model
