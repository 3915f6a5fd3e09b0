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


def _run_layer(cell: str, x: torch.Tensor, state, params):
    """One layer through the fused kernel: x (T, in) -> h (T, H), final state."""
    if cell == "lstm":
        out, h, c = torch.lstm(x[None], state, list(params), True, 1, 0.0, False, False, True)
        return out[0], (h, c)
    fn = torch.gru if cell == "gru" else torch.rnn_tanh
    out, h = fn(x[None], state, list(params), True, 1, 0.0, False, False, True)
    return out[0], h


def _internals(cell: str, x, h, state, params) -> dict[str, torch.Tensor]:
    """Gates recomputed in batch from (x_t, h_{t-1}); for an LSTM, c by a scan."""
    w_ih, w_hh, b_ih, b_hh = params
    h0 = state[0] if cell == "lstm" else state  # (1, 1, H)
    h_prev = torch.cat([h0[0], h[:-1]])  # (T, H)
    gi = torch.addmm(b_ih, x, w_ih.t())  # (T, G*H)
    gh = torch.addmm(b_hh, h_prev, w_hh.t())  # (T, G*H)
    if cell == "rnn":
        return {"h": h, "pre": gi + gh}
    if cell == "gru":
        r, z = torch.sigmoid(gi[:, :2 * h.shape[1]] + gh[:, :2 * h.shape[1]]).chunk(2, 1)
        n = torch.tanh(gi.chunk(3, 1)[2] + r * gh.chunk(3, 1)[2])
        return {"h": h, "r": r, "z": z, "n": n}
    zi, zf, zg, zo = gi.add_(gh).chunk(4, 1)  # PyTorch's gate order: i, f, g, o
    i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
    c = linear_scan(f, i * g, state[1][0, 0])
    return {"h": h, "c": c, "i": i, "f": f, "g": g, "o": o}


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
    ids_t = torch.from_numpy(ids).to(dev)
    try:
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            x = model.embed(ids_t[s:e])  # (t, E)
            for l in range(L):
                params = _layer_params(model, l)
                h, new_state = _run_layer(cell, x, states[l], params)  # (t, H)
                parts = _internals(cell, x, h, states[l], params)
                states[l] = new_state
                for kind in keep:
                    layers[l][kind][s:e] = parts[kind].float().cpu().numpy()
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
