"""Sampling text one character at a time, with temperature, top-k and unit clamping."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ConfigError, TextError
from .model import CharRNN
from .trace import _layer_params, _run_layer

MAX_LENGTH = 100_000


@dataclass
class Clamp:
    """Hold units of one layer's h (or an LSTM's c) at `value` at every generated step."""

    layer: int
    units: list[int]
    value: float = 0.0
    kind: str = "h"

    def validate(self, model: CharRNN) -> "Clamp":
        L, H = model.config.num_layers, model.config.hidden_size
        if not 0 <= self.layer < L:
            raise ConfigError(f"clamp layer must be from 0 to {L - 1}, not {self.layer}")
        self.units = [self.units] if isinstance(self.units, int) else list(self.units)
        if not self.units or any(not 0 <= u < H for u in self.units):
            raise ConfigError(f"clamp units must be from 0 to {H - 1}, not {self.units}")
        if self.kind not in ("h", "c") or (self.kind == "c" and model.cell != "lstm"):
            raise ConfigError("clamp kind must be 'h', or 'c' for an LSTM")
        if not math.isfinite(self.value):
            raise ConfigError(f"clamp value must be a finite number, not {self.value!r}")
        return self


@dataclass
class Sample:
    """A generated text and the probability of each character it chose."""

    prime: str
    text: str  # the generated characters only
    probs: np.ndarray  # (n,) probability under the distribution it was drawn from
    model_probs: np.ndarray  # (n,) probability under the model itself (temperature 1)
    unknown: dict[str, int] = field(default_factory=dict)


def check_temperature(temperature: float) -> float:
    """A finite temperature >= 0, or a ConfigError that says why not."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(f"temperature must be a number, not {temperature!r}") from None
    if not math.isfinite(t) or t < 0:
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = always the likeliest), not {temperature!r}")
    return t


def distribution(logits: torch.Tensor, temperature: float, top_k: int | None = None) -> torch.Tensor:
    """Next-character probabilities (..., V) at a temperature; 0 puts all mass on the argmax."""
    t = check_temperature(temperature)
    logits = logits.float()
    if top_k is not None:
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a whole number >= 1, or None, not {top_k!r}")
        if top_k < logits.shape[-1]:
            kth = logits.topk(top_k, -1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
    if t == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(logits / t, -1)


class _Stepper:
    """Feeds one character at a time and keeps the state, optionally clamping units."""

    def __init__(self, model: CharRNN, clamp: Clamp | None):
        self.model, self.clamp = model, clamp
        self.state = model.init_state(1)

    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (t,) -> logits (V,) after the last one; the prime goes through the fused kernel in one call."""
        if self.clamp is None or len(ids) > 1:
            out, self.state = self.model.rnn(self.model.embed(ids)[None], self.state)
            return self.model.head(out[0, -1])
        return self._clamped_step(ids)

    def _clamped_step(self, ids: torch.Tensor) -> torch.Tensor:
        model, cl, lstm = self.model, self.clamp, self.model.cell == "lstm"
        x = model.embed(ids)  # (1, E)
        hs, cs = [], []
        for l in range(model.config.num_layers):
            params = _layer_params(model, l)
            st = (self.state[0][l:l + 1], self.state[1][l:l + 1]) if lstm else self.state[l:l + 1]
            if l == cl.layer and cl.kind == "c":
                w_ih, w_hh, b_ih, b_hh = params
                zi, zf, zg, zo = (x[0] @ w_ih.t() + b_ih + st[0][0, 0] @ w_hh.t() + b_hh).chunk(4)
                c = torch.sigmoid(zf) * st[1][0, 0] + torch.sigmoid(zi) * torch.tanh(zg)
                c[cl.units] = cl.value
                h = (torch.sigmoid(zo) * torch.tanh(c))[None]  # (1, H)
                c = c[None, None]
            else:
                h, new = _run_layer(model.cell, x, st, params)
                c = new[1] if lstm else None
                if l == cl.layer:
                    h = h.clone()
                    h[:, cl.units] = cl.value
            hs.append(h[None])
            cs.append(c)
            x = h
        self.state = (torch.cat(hs), torch.cat(cs)) if lstm else torch.cat(hs)
        return model.head(x[0])


@torch.no_grad()
def sample(model: CharRNN, prime: str = "\n", length: int = 200, temperature: float = 0.8,
           top_k: int | None = None, seed: int | None = None, clamp: Clamp | None = None) -> Sample:
    """Generate `length` characters after `prime`. Temperature 0 is greedy; a seed makes it repeatable."""
    check_temperature(temperature)
    if not isinstance(length, int) or not 0 <= length <= MAX_LENGTH:
        raise ConfigError(f"length must be a whole number from 0 to {MAX_LENGTH:,}, not {length!r}")
    if not isinstance(prime, str):
        raise TextError("the prime must be text")
    if clamp is not None:
        clamp.validate(model)
    vocab = model.vocab
    start = prime or ("\n" if "\n" in vocab.index else vocab.chars[1])
    gen = torch.Generator(device=model.device)
    gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    was_training = model.training
    model.eval()
    stepper = _Stepper(model, clamp)
    unk = torch.zeros(1, dtype=torch.long, device=model.device)
    picks, logps, qs = [], [], []  # per step: the chosen id, the model's log-probs, the sampling probs
    try:
        logits = stepper.feed(torch.from_numpy(vocab.encode(start)).to(model.device))
        # No host sync and no Python work per character beyond a handful of tensor ops:
        # everything per step stays a tensor and is gathered once at the end.
        for _ in range(length):
            logp = torch.log_softmax(logits.float(), -1)  # (V,)
            # never generate the unknown symbol: it stands for "some character not in the vocabulary"
            q = distribution(logp.index_fill(0, unk, -math.inf), temperature, top_k)
            nxt = torch.multinomial(q, 1, generator=gen) if temperature > 0 else q.argmax().view(1)
            picks.append(nxt)
            logps.append(logp)
            qs.append(q)
            logits = stepper.feed(nxt)
    finally:
        model.train(was_training)
    if length:
        ids = torch.cat(picks)  # (n,)
        probs = torch.stack(qs).gather(1, ids[:, None])[:, 0].cpu().numpy()
        model_probs = torch.stack(logps).gather(1, ids[:, None])[:, 0].exp().cpu().numpy()
        chosen = ids.tolist()
    else:
        chosen, probs, model_probs = [], np.empty(0, np.float32), np.empty(0, np.float32)
    return Sample(prime=prime, text=vocab.decode(chosen), probs=probs, model_probs=model_probs,
                  unknown=vocab.unknown(prime))
