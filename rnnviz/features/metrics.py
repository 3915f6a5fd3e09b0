"""How well a dictionary stands in for the states: reconstruction (fvu, l0, dead) and the model's loss
with the reconstruction spliced in, at the output or inside the recurrence.

Splices (the state is `d.state` of layer `d.layer`):
  out  the reconstruction replaces the layer's output where the next reader (the layer above, or the
       head for the top layer) reads it; the layer's own recurrence runs on the true states. For c,
       the reader gets o_t * tanh(c_hat_t).
  rec  the reconstruction replaces the state inside the recurrence at every step: the next step and
       the layer above read it. For c, h_t = o_t * tanh(c_hat_t) is computed from it.
  zero the same places with the state set to zero (for the top layer both splices then leave the
       head reading zeros, so one loss_zero serves both).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, TextError
from ..model import CharRNN
from ..trace import _internals, _layer_params, _run_layer
from .sae import STATE_CHUNK, Dictionary, layer_states, one_thread
from .store import check_fits

MODES = ("clean", "out", "rec")
Replace = Callable[[torch.Tensor], torch.Tensor]


def _step_loop(cell: str, x: torch.Tensor, state, params, kind: str, replace: Replace):
    """One layer, step by step, with `kind` (h or c) replaced at every step -> h (t, H), final state."""
    w_ih, w_hh, b_ih, b_hh = params
    T, H = x.shape[0], w_hh.shape[1]
    gi = torch.addmm(b_ih, x, w_ih.t())  # (t, G*H)
    out = torch.empty(T, H, dtype=x.dtype)
    h = state[0][0] if cell == "lstm" else state[0]  # (1, H)
    c = state[1][0] if cell == "lstm" else None
    for t in range(T):
        gh = torch.addmm(b_hh, h, w_hh.t())  # (1, G*H)
        a = gi[t:t + 1]
        if cell == "lstm":
            i, f, g, o = (a + gh).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            if kind == "c":
                c = replace(c)
            h = torch.sigmoid(o) * torch.tanh(c)
        elif cell == "gru":
            (ir, iz, i_n), (hr, hz, h_n) = a.chunk(3, 1), gh.chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        else:
            h = torch.tanh(a + gh)
        if kind == "h":
            h = replace(h)
        out[t] = h[0]
    return out, ((h[None], c[None]) if cell == "lstm" else h[None])


@torch.no_grad()
def run_spliced(model: CharRNN, text: str, layer: int, kind: str = "h", mode: str = "clean",
                replace: Replace | None = None, observe: Callable | None = None,
                chunk: int = STATE_CHUNK) -> np.ndarray:
    """Surprisal (T,) in nats of each next character (NaN at the last) with layer `layer`'s `kind`
    replaced by replace(states) as `mode` says (see the module's doc). observe(true, replaced), both
    (t, H), is called per chunk in 'out' mode."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(text, str) or not text:
        raise TextError("the text is empty: give at least one character")
    with one_thread():  # the recurrence and the step loop: small products in sequence
        return _run_spliced(model, text, layer, kind, mode, replace, observe, chunk)


def _run_spliced(model, text, layer, kind, mode, replace, observe, chunk) -> np.ndarray:
    cell, L = model.cell, model.config.num_layers
    was_training = model.training
    model.eval()
    try:
        ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)
        T = len(ids)
        loss = np.full(T, np.nan)
        init = model.init_state(1)
        states = [(init[0][l:l + 1], init[1][l:l + 1]) if cell == "lstm" else init[l:l + 1] for l in range(L)]
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            x = model.embed(ids[s:e])
            for l in range(L):
                params = _layer_params(model, l)
                if l == layer and mode == "rec":
                    h, states[l] = _step_loop(cell, x, states[l], params, kind, replace)
                else:
                    h, new = _run_layer(cell, x, states[l], params)
                    if l == layer and mode == "out":
                        if kind == "h":
                            rec = replace(h)
                            if observe is not None:
                                observe(h, rec)
                            h = rec
                        else:
                            parts = _internals(cell, x, h, states[l], params)
                            rec = replace(parts["c"])
                            if observe is not None:
                                observe(parts["c"], rec)
                            h = parts["o"] * torch.tanh(rec)
                    states[l] = new
                x = h
            logp = F.log_softmax(model.head(x).float(), -1)  # (t, V)
            nxt = ids[s + 1:e + 1]
            loss[s:s + len(nxt)] = -logp[:len(nxt)].gather(1, nxt[:, None])[:, 0].double().cpu().numpy()
    finally:
        model.train(was_training)
    return loss


def _mean(loss: np.ndarray) -> float:
    known = loss[~np.isnan(loss)]
    return float(known.mean()) if known.size else float("nan")


def _recovered(zero: float, spliced: float, clean: float) -> float:
    """(loss_zero - loss_spliced) / (loss_zero - loss): 1 = the splice costs nothing, 0 = as bad as zero."""
    gap = zero - clean
    return float((zero - spliced) / gap) if gap > 0 else float("nan")


def metrics(model: CharRNN, d: Dictionary, text: str) -> dict:
    """fvu, l0, dead_fraction, loss, loss_spliced_out, loss_spliced_rec, loss_zero (and loss_zero_rec),
    ce_recovered_out, ce_recovered_rec over `text`; see docs/features.md for each definition."""
    check_fits(d, model)
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("measuring a dictionary needs a text of at least two characters")
    layer, kind = d.layer, d.state
    top = layer == model.config.num_layers - 1
    H, S = d.d_in, d.d_sae
    acc = {"n": 0, "sum": torch.zeros(H, dtype=torch.float64), "sq": 0.0, "err": 0.0, "l0": 0.0,
           "fired": torch.zeros(S, dtype=torch.bool)}

    def observe(true: torch.Tensor, rec: torch.Tensor) -> None:
        x = true.double()
        acc["n"] += x.shape[0]
        acc["sum"] += x.sum(0)
        acc["sq"] += float(x.pow(2).sum())
        acc["err"] += float((x - rec.double()).pow(2).sum())

    def recon_observed(x: torch.Tensor) -> torch.Tensor:
        f = d.encode_t(x.float())
        active = f > 0
        acc["l0"] += float(active.sum())
        acc["fired"] |= active.any(0)
        return d.decode_t(f)

    clean = _mean(run_spliced(model, text, layer, kind, "clean"))
    out = _mean(run_spliced(model, text, layer, kind, "out", recon_observed, observe))
    rec_loss = run_spliced(model, text, layer, kind, "rec", d.reconstruct_t)
    # Fed back, a dictionary that enlarges what it is given can blow the state up to inf and NaN; a mean
    # over the characters before that would hide it (shakespeare-lstm's c did so within 128 characters).
    broken = ~np.isfinite(rec_loss[:-1])
    diverged_at = int(np.argmax(broken)) if broken.any() else None
    rec = float("inf") if diverged_at is not None else _mean(rec_loss)
    zero = _mean(run_spliced(model, text, layer, kind, "out", torch.zeros_like))
    zero_rec = zero if top else _mean(run_spliced(model, text, layer, kind, "rec", torch.zeros_like))
    n = acc["n"]
    total = acc["sq"] - float(acc["sum"].pow(2).sum()) / n  # sum ||x - mean||^2
    return {
        "fvu": acc["err"] / total if total > 0 else float("nan"),
        "l0": acc["l0"] / n,
        "dead_fraction": 1.0 - float(acc["fired"].float().mean()),
        "loss": clean, "loss_spliced_out": out, "loss_spliced_rec": rec,
        "loss_zero": zero, "loss_zero_rec": zero_rec,
        "ce_recovered_out": _recovered(zero, out, clean),
        "ce_recovered_rec": _recovered(zero_rec, rec, clean),
        "rec_increase": (rec - clean) / clean if clean > 0 else float("nan"),
        "rec_diverged_at": diverged_at,  # the first character whose loss is not finite, spliced in the recurrence
        "chars": len(text),
    }


def removal_effect(model: CharRNN, d: Dictionary, text: str, i: int) -> float:
    """Mean loss change (nats/char) when feature i is removed from the reconstruction spliced at the
    output: loss(reconstruction without f_i) - loss(full reconstruction)."""
    check_fits(d, model)
    i = _feature_index(d, i)

    def without(x: torch.Tensor) -> torch.Tensor:
        f = d.encode_t(x.float())
        f[:, i] = 0.0
        return d.decode_t(f)

    full = _mean(run_spliced(model, text, d.layer, d.state, "out", d.reconstruct_t))
    return _mean(run_spliced(model, text, d.layer, d.state, "out", without)) - full


def _feature_index(d: Dictionary, i) -> int:
    if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= int(i) < d.d_sae:
        raise ConfigError(f"feature must be a whole number from 0 to {d.d_sae - 1}, not {i!r}")
    return int(i)


@torch.no_grad()
def feature_acts(model: CharRNN, d: Dictionary, text: str, features=None) -> np.ndarray:
    """(T, d_sae) float32 activations of every feature over the text (or (T, len(features)) of those)."""
    check_fits(d, model)
    cols = None if features is None else [_feature_index(d, i) for i in np.atleast_1d(features).tolist()]
    out = np.zeros((len(text), d.d_sae if cols is None else len(cols)), np.float32)
    for s, e, x in layer_states(model, text, d.layer, d.state):
        f = d.encode_t(x)
        out[s:e] = (f if cols is None else f[:, cols]).numpy()
    return out
