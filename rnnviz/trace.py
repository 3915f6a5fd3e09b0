"""Exact per-character internals of a model over a text: states, gates, predictions."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError, TextError
from .model import GATES, CharRNN
from .scan import linear_scan

ARRAY_DOC = """Array names in an exported trace (NPZ):
  ids            (T,)    int64   vocabulary id of each character (0 = unknown symbol)
  vocab          (V,)    str     the vocabulary, in id order
  probs          (T, V)  float32 next-character distribution after reading character t
  top_ids        (T, k)  int64   the k most likely next characters, most likely first
  top_probs      (T, k)  float32 their probabilities
  loss           (T,)    float32 surprisal -ln p(text[t+1]) in nats; NaN at the last position
  L{l}_{kind}    (T, H)  float32 layer l (from 0) for kind in:
                   h            hidden state (every cell)
                   c            cell state (LSTM)
                   i, f, g, o   input, forget gates, candidate, output gate (LSTM)
                   r, z, n      reset, update gates, candidate (GRU)
                   pre          pre-activation W_ih x_t + b_ih + W_hh h_(t-1) + b_hh (RNN)
"""


@dataclass
class Trace:
    """Everything a model computed over a text; plain numpy, one row per character."""

    text: str
    ids: np.ndarray  # (T,)
    cell: str
    vocab: list[str]
    layers: list[dict[str, np.ndarray]]  # per layer: kind -> (T, H)
    probs: np.ndarray  # (T, V)
    top_ids: np.ndarray  # (T, k)
    top_probs: np.ndarray  # (T, k)
    loss: np.ndarray  # (T,)
    unknown: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kinds(self) -> list[str]:
        """The kinds of array each layer holds: 'h', 'c', then the gates."""
        return list(self.layers[0])

    def get(self, layer: int, kind: str) -> np.ndarray:
        """One (T, H) array, with a clear error for a layer or kind the model lacks."""
        if not 0 <= layer < len(self.layers):
            raise ConfigError(f"layer must be from 0 to {len(self.layers) - 1}, not {layer}")
        if kind not in self.layers[layer]:
            raise ConfigError(f"a {self.cell.upper()} trace has no {kind!r}; it has {', '.join(self.kinds)}")
        return self.layers[layer][kind]

    def mean_loss(self) -> float:
        """Mean surprisal over the positions whose next character is known, in nats/char."""
        known = self.loss[~np.isnan(self.loss)]
        return float(known.mean()) if known.size else float("nan")

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping, as documented in ARRAY_DOC."""
        out = {"ids": self.ids, "vocab": np.array(self.vocab), "probs": self.probs,
               "top_ids": self.top_ids, "top_probs": self.top_probs, "loss": self.loss}
        for l, layer in enumerate(self.layers):
            out.update({f"L{l}_{k}": v for k, v in layer.items()})
        return out

    def to_npz(self, path) -> None:
        np.savez_compressed(path, **self.arrays())

    def to_frame(self, layer: int, kind: str = "h") -> pd.DataFrame:
        """Long table for CSV/Parquet: one row per character, one column per unit."""
        values = self.get(layer, kind)
        df = pd.DataFrame(values, columns=[f"{kind}{u}" for u in range(values.shape[1])])
        df.insert(0, "char", list(self.text))
        df.insert(0, "position", np.arange(len(self.text)))
        df["surprisal"] = self.loss
        return df


def _layer_params(model: CharRNN, layer: int):
    w = model.layer_weights(layer)
    return w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"]


def _step(cell: str, x: torch.Tensor, state, params):
    """One step of one layer in plain tensor ops: x (1, in) -> h (1, H), final state, as _run_layer.

    On the CPU the fused kernel (oneDNN) sets up its RNN primitive on every call: about 5 ms for a
    2x512 LSTM, some fifty times the step's own products, which generation pays once per character.
    """
    w_ih, w_hh, b_ih, b_hh = params
    h0 = state[0][0] if cell == "lstm" else state[0]  # (1, H)
    gi = torch.addmm(b_ih, x, w_ih.t())  # (1, G*H)
    gh = torch.addmm(b_hh, h0, w_hh.t())  # (1, G*H)
    if cell == "lstm":
        i, f, g, o = (gi + gh).chunk(4, 1)
        c = torch.sigmoid(f) * state[1][0] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h[None], c[None])
    if cell == "gru":
        (ir, iz, i_n), (hr, hz, h_n) = gi.chunk(3, 1), gh.chunk(3, 1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h0
        return h, h[None]
    h = torch.tanh(gi + gh)
    return h, h[None]


def _fused(cell: str, x: torch.Tensor, state, params):
    """x (B, T, in) through one layer of the fused kernel from `state` -> out (B, T, H), final state
    ((h, c) for an LSTM, h otherwise; each (1, B, H))."""
    if cell == "lstm":
        out, h, c = torch.lstm(x, state, list(params), True, 1, 0.0, False, False, True)
        return out, (h, c)
    fn = torch.gru if cell == "gru" else torch.rnn_tanh
    out, h = fn(x, state, list(params), True, 1, 0.0, False, False, True)
    return out, h


def _run_layer(cell: str, x: torch.Tensor, state, params):
    """One layer through the fused kernel: x (T, in) -> h (T, H), final state (one CPU step: _step)."""
    if len(x) == 1 and x.device.type == "cpu":
        return _step(cell, x, state, params)
    out, final = _fused(cell, x[None], state, params)
    return out[0], final


def _shifted_addmm_(z: torch.Tensor, h0: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """z[t] += W h_{t-1} for every step t, with h_{-1} = h0; in place, and no shifted copy of h."""
    z[1:].addmm_(h[:-1], w.t())
    z[:1].addmm_(h0, w.t())
    return z


def _internals(cell: str, x: torch.Tensor, h: torch.Tensor, state, params, out: dict | None = None,
               ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every gate, recomputed in batch from the layer input x (T, in) and h_{t-1}; for an LSTM, c by a scan.

    With `ids`, x is a table (V, in) and the input at step t is x[ids[t]]: for the first layer
    W_ih x_t is then a row of a small per-gate table, not a product. Each kind is computed in
    out[kind] where given (say a view of the result array): each gate's pre-activation goes
    there and is activated in place, so nothing is built in a temporary only to be copied.
    """
    w_ih, w_hh, b_ih, b_hh = params
    T, H = h.shape
    names = GATES[cell] or ("pre",)
    G = len(names)
    out = dict(out or {})
    for kind in names + ("c",) * (cell == "lstm"):
        if kind not in out:
            out[kind] = torch.empty(T, H, dtype=h.dtype, device=h.device)
    if "h" in out:
        out["h"].copy_(h)
    else:
        out["h"] = h
    h0 = (state[0] if cell == "lstm" else state)[0]  # (1, H)
    # The biases that simply add: all but the GRU's b_hn, which its reset gate multiplies.
    b = (b_ih + (torch.cat([b_hh[:2 * H], torch.zeros_like(b_hh[:H])]) if cell == "gru" else b_hh)).view(G, H)
    w_ih, w_hh = w_ih.view(G, H, -1), w_hh.view(G, H, H)  # one block per gate
    if ids is not None:
        table = torch.baddbmm(b[:, None], x.expand(G, *x.shape), w_ih.transpose(1, 2))  # (G, V, H)
    for k, name in enumerate(names):
        z = out[name]  # (T, H) this gate's pre-activation, in place
        if ids is not None:
            torch.index_select(table[k], 0, ids, out=z)
        else:
            torch.addmm(b[k], x, w_ih[k].t(), out=z)
        if name != "n":  # the GRU's candidate takes its h part through r, below
            _shifted_addmm_(z, h0, h, w_hh[k])
    if cell == "rnn":
        return out
    if cell == "gru":
        r = out["r"].sigmoid_()
        out["z"].sigmoid_()
        gh = _shifted_addmm_(b_hh[2 * H:].expand(T, H).clone(), h0, h, w_hh[2])  # (T, H) W_hn h_{t-1} + b_hn
        out["n"].addcmul_(r, gh).tanh_()
        return out
    # LSTM, in PyTorch's gate order i, f, g, o.
    i, f, g = out["i"].sigmoid_(), out["f"].sigmoid_(), out["g"].tanh_()
    out["o"].sigmoid_()
    c = torch.mul(i, g, out=out["c"])  # the scan's b_t, overwritten in place by c_t
    linear_scan(f, c, state[1][0, 0], out=c)
    return out


@torch.no_grad()
def trace(model: CharRNN, text: str, top_k: int = 5, chunk: int = 8192, strict: bool = False,
          gates: bool = True, state=None) -> Trace:
    """Run `model` over `text` and keep h, c and every gate of every layer, per character.

    The text goes through in chunks of `chunk` characters with the state carried,
    so long texts fit in memory; `gates=False` keeps only h (and c).
    """
    if not isinstance(text, str) or not text:
        raise TextError("the text is empty: give at least one character")
    if chunk < 1:
        raise ConfigError("chunk must be at least 1")
    vocab = model.vocab
    unknown = vocab.unknown(text)
    if strict and unknown:
        raise TextError(f"characters the model never saw: {''.join(sorted(unknown))!r}")
    was_training = model.training
    model.eval()
    cell, L, H, V = model.cell, model.config.num_layers, model.config.hidden_size, len(vocab)
    k = max(1, min(top_k, V))
    ids = vocab.encode(text)
    T = len(ids)
    keep = ["h"] + (["c"] if cell == "lstm" else []) + ((list(GATES[cell]) or ["pre"]) if gates else [])
    layers = [{kind: np.empty((T, H), np.float32) for kind in keep} for _ in range(L)]
    probs = np.empty((T, V), np.float32)
    logp_next = np.full(T, np.nan, np.float32)
    top_ids = np.empty((T, k), np.int64)
    top_probs = np.empty((T, k), np.float32)
    if state is None:
        state = model.init_state(1)
    # One (1, 1, H) state per layer, since each layer runs through the kernel on its own.
    states = [(state[0][l:l + 1], state[1][l:l + 1]) if cell == "lstm" else state[l:l + 1] for l in range(L)]
    dev = model.device
    direct = dev.type == "cpu" and model.head.weight.dtype == torch.float32
    ids_t = torch.from_numpy(ids).to(dev)
    try:
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            x = model.embed(ids_t[s:e])  # (t, E)
            for l in range(L):
                params = _layer_params(model, l)
                h, new_state = _run_layer(cell, x, states[l], params)  # (t, H)
                # A float32 model on the CPU computes every array straight into its numpy buffer.
                out = {kind: torch.from_numpy(layers[l][kind][s:e]) for kind in keep} if direct else {}
                if keep == ["h"]:  # no gates asked for: nothing to recompute
                    parts, out = {"h": h}, {}
                else:  # the first layer's input comes from the embedding table
                    first = l == 0
                    parts = _internals(cell, model.embed.weight if first else x, h, states[l], params, out,
                                       ids=ids_t[s:e] if first else None)
                for kind in keep:
                    if kind not in out:
                        layers[l][kind][s:e] = parts[kind].float().cpu().numpy()
                states[l] = new_state
                x = h
            logp = torch.log_softmax(model.head(x).float(), -1)  # (t, V)
            p = logp.exp()
            probs[s:e] = p.cpu().numpy()
            tp, ti = p.topk(k, -1)
            top_ids[s:e], top_probs[s:e] = ti.cpu().numpy(), tp.cpu().numpy()
            nxt = ids_t[s + 1:e + 1]  # the next character, where known
            logp_next[s:s + len(nxt)] = logp[: len(nxt)].gather(1, nxt[:, None])[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
    return Trace(text=text, ids=ids, cell=cell, vocab=list(vocab.chars), layers=layers, probs=probs,
                 top_ids=top_ids, top_probs=top_probs, loss=-logp_next, unknown=unknown)
