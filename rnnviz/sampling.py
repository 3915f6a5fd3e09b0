"""Sampling text one character at a time, with temperature, top-k and unit clamping."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError, TextError
from .model import CharRNN
from .render import char_label
from .trace import _layer_params, _run_layer

MAX_LENGTH = 100_000


@dataclass
class Clamp:
    """Hold units of one layer's h (or an LSTM's c) at `value` at every step, the prime's characters included.

    The rule is the same for every prime length: from the first character the model reads, the
    unit is held at `value` (it replaces what the cell computed, and is what the next step and the
    layer above read). So even the first generated character is drawn from a clamped distribution.
    """

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

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """The state (H,) with the clamped units held."""
        v = v.clone()
        v[torch.tensor(self.units, device=v.device)] = self.value
        return v


@dataclass
class Steer:
    """Add alpha × direction to one layer's h (or an LSTM's c) at every step, the prime's characters included.

    The same rule as a Clamp: from the first character the model reads, the sum replaces what the cell
    computed, and is what the next step and the layer above read. A dictionary feature's decoder row
    W_dec[i] is such a direction (rnnviz.features): alpha = its activation adds the feature at that strength.
    """

    layer: int
    direction: np.ndarray  # (H,)
    alpha: float = 1.0
    kind: str = "h"

    def validate(self, model: CharRNN) -> "Steer":
        L, H = model.config.num_layers, model.config.hidden_size
        if not 0 <= self.layer < L:
            raise ConfigError(f"steering layer must be from 0 to {L - 1}, not {self.layer}")
        d = np.asarray(self.direction, dtype=np.float64).ravel()
        if d.shape != (H,) or not np.isfinite(d).all():
            raise ConfigError(f"the steering direction must be {H} finite numbers (one per unit of the layer), "
                              f"not an array of shape {np.shape(self.direction)}")
        self.direction = d
        if self.kind not in ("h", "c") or (self.kind == "c" and model.cell != "lstm"):
            raise ConfigError("steering kind must be 'h', or 'c' for an LSTM")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or not math.isfinite(self.alpha):
            raise ConfigError(f"the steering strength alpha must be a finite number, not {self.alpha!r}")
        return self

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """The state (H,) plus alpha × direction."""
        return v + torch.as_tensor(self.alpha * self.direction, dtype=v.dtype, device=v.device)


@dataclass
class Sample:
    """A generated text, the probability of each character it chose, and the dice roll that chose it.

    Each character is drawn by one uniform number u in [0, 1): the characters are lined up from the
    likeliest to the least likely under the distribution used (temperature and top-k applied; equal
    probabilities: the lowest id first), each taking an interval of [0, 1) as long as its probability,
    and the character whose interval holds u is the one drawn. So rank 1 (the likeliest) wins whenever
    u falls in its interval, and a later one wins as often as its probability says.
    """

    prime: str
    text: str  # the generated characters only
    probs: np.ndarray  # (n,) probability under the distribution it was drawn from
    model_probs: np.ndarray  # (n,) probability under the model itself (temperature 1)
    unknown: dict[str, int] = field(default_factory=dict)
    dists: np.ndarray | None = None  # (n, V) float32: the distribution each character was drawn from
    u: np.ndarray | None = None  # (n,) the uniform draw of each step
    lo: np.ndarray | None = None  # (n,) start of the chosen character's interval in [0, 1)
    hi: np.ndarray | None = None  # (n,) its end: lo <= u < hi
    rank: np.ndarray | None = None  # (n,) 1 = the likeliest character under the distribution used
    logp: np.ndarray | None = None  # (n, V) float32: the model's own log-probabilities (temperature 1) at each step


def dice_order(q: torch.Tensor) -> torch.Tensor:
    """Character ids (..., V) from the likeliest to the least likely; equal probabilities: lowest id first."""
    return torch.sort(q, dim=-1, descending=True, stable=True).indices


def draw(q: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dice roll: q (V,) probabilities, u (1,) uniform in [0, 1) -> (id, lo, hi, rank), each (1,).

    The characters take consecutive intervals of [0, 1) in `dice_order`, each as long as its
    probability (computed in u's dtype, divided by their total so the last interval ends at exactly 1);
    the one whose interval [lo, hi) holds u is drawn. A character of probability 0 has an empty
    interval and is never drawn.
    """
    order = dice_order(q)  # (V,)
    cum = torch.cumsum(q[order].to(u.dtype), 0)
    cum = cum / cum[-1]  # the last interval ends at exactly 1, so any u < 1 falls in one
    r = torch.searchsorted(cum, u, right=True).clamp_max(len(q) - 1)  # (1,) 0-based rank: cum[r-1] <= u < cum[r]
    lo = torch.where(r > 0, cum[(r - 1).clamp_min(0)], torch.zeros_like(u))
    return order[r], lo, cum[r], r + 1


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
    """Next-character probabilities (..., V) at a temperature; 0 puts all mass on the argmax.

    top_k keeps exactly k characters, ties broken by the lowest id. The logits are shifted so
    that the largest is 0 before dividing by the temperature, so any positive temperature, however
    small, gives finite probabilities: a tiny one tends to the greedy choice (exact ties for the
    maximum share its mass equally, as they do at every temperature).
    """
    t = check_temperature(temperature)
    logits = logits.float()
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ConfigError(f"top_k must be a whole number >= 1, or None, not {top_k!r}")
        if top_k < logits.shape[-1]:
            order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # equal values: lowest id first
            keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order[..., :top_k], True)
            logits = logits.masked_fill(~keep, -math.inf)
    if t == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    z = logits - logits.amax(-1, keepdim=True)  # <= 0, and 0 at the maxima
    # t may be below float32's smallest number: the maxima stay at 0 (no 0/0), the rest go to -inf
    z = torch.where(z == 0, z, z / t)
    return torch.softmax(z, -1)


def start_text(vocab, prime: str) -> str:
    """What the model reads first: the prime, or a newline (the first real character if none) when empty."""
    return prime or ("\n" if "\n" in vocab.index else vocab.chars[1])


class _Stepper:
    """Feeds characters and keeps the state; with a clamp (or a steer), changes its layer's state at every
    step it feeds."""

    def __init__(self, model: CharRNN, clamp: Clamp | Steer | None):
        self.model, self.clamp = model, clamp
        self.state = model.init_state(1)

    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (t,) -> logits (t, V) after each one.

        Without a clamp the whole run goes through the fused kernel. With one, the layers other
        than the clamped one still do (they see the clamped layer's output as any other input);
        the clamped layer goes one step at a time, for the prime and the generated characters alike.
        """
        model = self.model
        if self.clamp is None and len(ids) > 1:
            out, self.state = model.rnn(model.embed(ids)[None], self.state)
            return model.head(out[0])
        # one character (generation) or a clamp: layer by layer (one character: _step, not the fused kernel)
        lstm = model.cell == "lstm"
        x = model.embed(ids)  # (t, E)
        hs, cs = [], []
        for l in range(model.config.num_layers):
            params = _layer_params(model, l)
            st = (self.state[0][l:l + 1], self.state[1][l:l + 1]) if lstm else self.state[l:l + 1]
            clamped = self.clamp is not None and l == self.clamp.layer
            x, st = (self._clamped_layer if clamped else self._layer)(x, st, params)
            hs.append(st[0] if lstm else st)
            cs.append(st[1] if lstm else None)
        self.state = (torch.cat(hs), torch.cat(cs)) if lstm else torch.cat(hs)
        return model.head(x)

    def _layer(self, x, st, params):
        return _run_layer(self.model.cell, x, st, params)

    def _clamped_layer(self, x: torch.Tensor, st, params):
        """x (t, in) -> (h (t, H), final state), the clamped units held at every step."""
        cl, cell = self.clamp, self.model.cell  # a Clamp or a Steer: cl.apply changes the state
        hs = []
        for t in range(len(x)):
            if cl.kind == "c":
                w_ih, w_hh, b_ih, b_hh = params
                zi, zf, zg, zo = (x[t] @ w_ih.t() + b_ih + st[0][0, 0] @ w_hh.t() + b_hh).chunk(4)
                c = cl.apply(torch.sigmoid(zf) * st[1][0, 0] + torch.sigmoid(zi) * torch.tanh(zg))
                h = torch.sigmoid(zo) * torch.tanh(c)
                st = (h[None, None], c[None, None])
            else:
                h, st = _run_layer(cell, x[t:t + 1], st, params)
                h = cl.apply(h[0])
                st = (h[None, None], st[1]) if cell == "lstm" else h[None, None]
            hs.append(h)
        return torch.stack(hs), st


@torch.no_grad()
def clamp_divergence(model: CharRNN, prime: str, text: str, clamp: Clamp | Steer) -> np.ndarray:
    """How far a clamp moves the model's next-character distributions along a text, in nats per step.

    Returns kl (n,) for n = len(text): kl[i] = KL(p_i || q_i) = sum_v p_i(v) (ln p_i(v) - ln q_i(v)),
    where p_i is the unclamped model's distribution of the next character after reading
    start + text[:i] (start = the prime, or a newline when it is empty, as in `sample`), and q_i the
    clamped model's after reading the same characters, the clamp held at every step, the prime's
    included. Both at temperature 1 over the whole vocabulary. Pass a clamped sample's own text
    (the prime and Sample.text) to measure the clamp along the text it produced; kl.mean() is then
    0 exactly when the clamp changed no distribution (tiny negatives from rounding are set to 0).
    A Steer in place of the clamp measures the steering the same way.
    """
    if not isinstance(prime, str) or not isinstance(text, str):
        raise TextError("the prime and the text must be text")
    clamp.validate(model)
    start = start_text(model.vocab, prime)
    if not text:
        return np.empty(0, np.float64)
    ids = torch.from_numpy(model.vocab.encode(start + text[:-1])).to(model.device)
    was_training = model.training
    model.eval()
    try:
        free = _Stepper(model, None).feed(ids)[len(start) - 1:]
        held = _Stepper(model, clamp).feed(ids)[len(start) - 1:]
    finally:
        model.train(was_training)
    logp = torch.log_softmax(free.double(), -1)
    logq = torch.log_softmax(held.double(), -1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return kl.clamp_min(0).cpu().numpy()


@torch.no_grad()
def sample(model: CharRNN, prime: str = "\n", length: int = 200, temperature: float = 0.8,
           top_k: int | None = None, seed: int | None = None, clamp: Clamp | None = None,
           steer: Steer | None = None) -> Sample:
    """Generate `length` characters after `prime`. Temperature 0 is greedy; a seed makes it repeatable.

    A clamp holds its units at every step, from the prime's first character on (see Clamp). Each
    character is drawn by one uniform number from the seeded generator (see Sample and `draw`); the
    Sample records the distribution, u, the interval and the rank of every step. A steer adds its
    direction at every step by the same rule (see Steer); one intervention at a time.
    """
    check_temperature(temperature)
    if not isinstance(length, int) or not 0 <= length <= MAX_LENGTH:
        raise ConfigError(f"length must be a whole number from 0 to {MAX_LENGTH:,}, not {length!r}")
    if not isinstance(prime, str):
        raise TextError("the prime must be text")
    if clamp is not None and steer is not None:
        raise ConfigError("clamp a unit or steer along a direction, not both at once")
    clamp = clamp if clamp is not None else steer
    if clamp is not None:
        clamp.validate(model)
    vocab = model.vocab
    start = start_text(vocab, prime)
    gen = torch.Generator(device=model.device)
    gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    udt = torch.float32 if model.device.type == "mps" else torch.float64  # MPS has no float64
    was_training = model.training
    model.eval()
    stepper = _Stepper(model, clamp)
    unk = torch.zeros(1, dtype=torch.long, device=model.device)
    picks, logps, qs, us, los, his, ranks = [], [], [], [], [], [], []  # per step, gathered once at the end
    try:
        logits = stepper.feed(torch.from_numpy(vocab.encode(start)).to(model.device))[-1]
        # No host sync and no Python work per character beyond a handful of tensor ops:
        # everything per step stays a tensor and is gathered once at the end.
        for _ in range(length):
            logp = torch.log_softmax(logits.float(), -1)  # (V,)
            # never generate the unknown symbol: it stands for "some character not in the vocabulary"
            q = distribution(logp.index_fill(0, unk, -math.inf), temperature, top_k)
            # one uniform number per step picks the character (at temperature 0, q is one-hot and
            # every u picks the argmax), so the draw can be shown and re-done from what is recorded
            u = torch.rand(1, generator=gen, device=model.device, dtype=udt)
            nxt, lo, hi, rank = draw(q, u)
            picks.append(nxt)
            logps.append(logp)
            qs.append(q)
            us.append(u)
            los.append(lo)
            his.append(hi)
            ranks.append(rank)
            logits = stepper.feed(nxt)[0]
    finally:
        model.train(was_training)
    if not length:
        return Sample(prime=prime, text="", probs=np.empty(0, np.float32), model_probs=np.empty(0, np.float32),
                      unknown=vocab.unknown(prime), dists=np.empty((0, len(vocab)), np.float32),
                      u=np.empty(0), lo=np.empty(0), hi=np.empty(0), rank=np.empty(0, np.int64),
                      logp=np.empty((0, len(vocab)), np.float32))
    ids = torch.cat(picks)  # (n,)
    dists = torch.stack(qs)  # (n, V)
    if not torch.isfinite(dists).all():  # checked once here, not per step (a host sync each time)
        raise ConfigError("the model's next-character probabilities are not finite numbers (NaN or infinite "
                          "weights?), so nothing can be drawn from them")
    probs = dists.gather(1, ids[:, None])[:, 0].cpu().numpy()
    logp = torch.stack(logps)  # (n, V)
    model_probs = logp.gather(1, ids[:, None])[:, 0].exp().cpu().numpy()
    cat = lambda xs: torch.cat(xs).cpu().numpy()  # noqa: E731
    return Sample(prime=prime, text=vocab.decode(ids.tolist()), probs=probs, model_probs=model_probs,
                  unknown=vocab.unknown(prime), dists=dists.cpu().numpy(), u=cat(us), lo=cat(los), hi=cat(his),
                  rank=cat(ranks), logp=logp.cpu().numpy())


def steered_sample(model: CharRNN, steer: Steer, prime: str = "\n", length: int = 200, temperature: float = 0.8,
                   top_k: int | None = None, seed: int | None = None) -> tuple[Sample, np.ndarray]:
    """A sample generated with the steer held at every step, and the KL it causes along its own text:
    kl[i] = KL(unsteered || steered) of the next-character distributions after reading the same
    characters (see clamp_divergence). With alpha = 0 the sample is the plain one and kl is 0."""
    s = sample(model, prime, length, temperature=temperature, top_k=top_k, seed=seed, steer=steer)
    return s, clamp_divergence(model, prime, s.text, steer)


# --- what the Sample page says about a sample (plain text, so a notebook can print the same) ---------

CLAMP_LIMIT = 10.0  # the Sample page's clamp values run from -CLAMP_LIMIT to CLAMP_LIMIT


def number(v) -> str:
    """The shortest text that reads back as exactly this float ('10', '0.1234567')."""
    return repr(float(v)).removesuffix(".0")


def dice_table(s: Sample) -> pd.DataFrame:
    """One row per generated character: its rank, probabilities, and the draw u with the slice it fell in."""
    return pd.DataFrame({"#": np.arange(len(s.text)), "character": [char_label(c) for c in s.text],
                         "rank": s.rank, "p (as drawn)": s.probs, "p at T=1": s.model_probs, "u": s.u,
                         "slice from": s.lo, "slice to": s.hi})


def dice_summary(s: Sample, temperature: float, top_k: int | None) -> str:
    """How many characters were the likeliest one, and which distribution the probabilities are of."""
    below = int(np.sum(s.rank > 1))
    used = f"temperature {temperature:.2f}" + (f" and top-{top_k}" if top_k else "")
    return (f"Of the {len(s.text):,} characters, **{len(s.text) - below:,}** were the likeliest one (rank 1) "
            f"and **{below:,}** were not: their u fell in a later slice. Probabilities are those of the "
            f"distribution the character was drawn from ({used}); p at T=1 is the model's own.")


def compared_temperatures(temperature: float) -> tuple[float, ...]:
    """0.5, 1 and 1.5, and the chosen temperature (to two decimals) where it is none of them."""
    return tuple(sorted({0.5, 1.0, 1.5, round(float(temperature), 2)}))


def choice_caption(s: Sample, start: str, pos: int) -> str:
    """What the model had read before character `pos` of the sample, and the roll that drew it."""
    row = len(start) - 1 + pos  # in start + text, the last character read before `pos` was drawn
    context = (start + s.text)[max(0, row - 30): row + 1]
    return (f"After reading …{context[-30:]!r}, the model drew {s.text[pos]!r}: rank {int(s.rank[pos])}, "
            f"p = {s.probs[pos]:.4f} as drawn, u = {s.u[pos]:.4f} fell in its slice "
            f"[{s.lo[pos]:.4f}, {s.hi[pos]:.4f}).")


def clamp_range_note(values: np.ndarray, layer: int, kind: str, unit: int) -> str:
    """A unit's range over a text, and how far a clamp of that kind of state can matter."""
    bound = ("h always lies in [-1, 1], so a value beyond that holds the unit where the model never puts it."
             if kind == "h" else "c has no fixed range, but the unit passes on h = o·tanh(c), and tanh barely "
             "moves beyond ±3 (tanh 3 = 0.995): holding c at 5 changes little where it is already above 3.")
    return (f"Layer {layer} {kind}{unit} over the text under study ({len(values):,} characters): "
            f"min {values.min():.2f}, max {values.max():.2f}. {bound}")


def clamp_value_note(typed, used: float, limit: float = CLAMP_LIMIT) -> str | None:
    """Why the value a clamp holds (`used`) is not the one typed, or None when it is.

    `used` is what the typed value became once kept within [-limit, limit]: a finite number beyond the
    limit is held at the nearest allowed value; anything else (text, a bool, NaN, infinity) cannot be used.
    """
    is_number = isinstance(typed, (int, float)) and not isinstance(typed, bool)
    if is_number and math.isfinite(typed) and typed != used:
        return (f"{number(typed)} is outside the allowed {-limit:g} to {limit:g}: the unit is held at "
                f"{number(used)}, the nearest allowed value.")
    if not (is_number and typed == used):
        return (f"The stored clamp value {typed!r} cannot be used (clamp values are numbers from {-limit:g} to "
                f"{limit:g}): the unit is held at {number(used)}.")
    return None


def divergence_summary(kl: np.ndarray) -> str:
    """The mean and largest KL(unclamped || clamped) along a clamped sample's text."""
    return (f"The clamp moved the next-character distributions by a mean KL(unclamped || clamped) "
            f"{kl.mean():.3g} nats per character, largest {kl.max():.3g}: both models read the "
            f"right-hand text, and at each of its {kl.size:,} characters their distributions for it "
            "are compared (0 = no change at all; the same text on both sides can still hide a change).")


def steer_summary(kl: np.ndarray, what: str, alpha: float) -> str:
    """The mean and largest KL(unsteered || steered) along a steered sample's text."""
    return (f"Adding {number(alpha)} × {what} at every step moved the next-character distributions by a mean "
            f"KL(unsteered || steered) {kl.mean():.3g} nats per character, largest {kl.max():.3g}: both models "
            f"read the steered text, and at each of its {kl.size:,} characters their distributions for it are "
            "compared (0 = no change at all).")
