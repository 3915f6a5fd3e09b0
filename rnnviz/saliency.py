"""Input saliency: how much each earlier character's embedding moves the log-probability of one prediction.

Positions follow the Trace: position t is the state after reading character t, which predicts
character t+1. A valid target is 1 <= t <= len(text) - 1: at t = 0 only the character itself can
matter, and there is no position len(text). At the last position the next character is unknown,
so the "true next" character there is the model's top prediction.

The gradient is taken with respect to the embedded inputs e_s as a leaf tensor, through the
model's own fused kernel: an ordinary input gradient, exact (unlike the recurrent state gradients
of gradients.py, which the kernel hides).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .compare import model_scores
from .errors import ConfigError, TextError
from .gradients import _frozen_head, _frozen_params, fused_layer
from .model import CharRNN

TRUE, TOP = "true", "top"
_FORWARD_AD = threading.Lock()  # the character c whose log-probability is differentiated


class TargetError(ConfigError):
    """The target position is outside the text, or at position 0."""


@dataclass
class Saliency:
    """Influence of every input position s <= target on log p(c) at the target."""

    text: str  # the text up to and including the target
    target: int
    which: str  # "true" (the true next character, or the argmax at the text's end) or "top"
    char: str  # the character c
    logp: float  # log p(c) at the target
    grad_norm: np.ndarray  # (t+1,) ||d log p(c) / d e_s||
    grad_x_input: np.ndarray  # (t+1,) sum_k (g_s * e_s)_k

    @property
    def distance(self) -> np.ndarray:
        """t - s for each s = 0..t."""
        return np.arange(self.target, -1, -1)

    def value(self, measure: str) -> np.ndarray:
        """'grad_norm' or 'grad_x_input', by name."""
        if measure not in ("grad_norm", "grad_x_input"):
            raise ConfigError(f"measure must be grad_norm or grad_x_input, not {measure!r}")
        return getattr(self, measure)

    def share_far(self, measure: str = "grad_norm", min_distance: int = 20, window: int = 60) -> float:
        """The share of the summed |value| over the last `window` positions lying min_distance or more back."""
        return share_far(self.value(measure)[::-1], min_distance, window)

    def strongest_far(self, measure: str = "grad_norm", min_distance: int = 20) -> int | None:
        """The position min_distance or more before the target with the largest |value|, or None (none is)."""
        far = self.target - min_distance + 1  # positions before this one lie min_distance or more back
        return int(np.argmax(np.abs(self.value(measure)[:far]))) if far > 0 else None


def check_target(text: str, target) -> int:
    """The target as an int, or a clear TargetError for position 0, beyond the text, or not a number."""
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("saliency needs a text of at least two characters")
    try:
        t = int(target)
        if t != target:
            raise ValueError
    except (TypeError, ValueError):
        raise TargetError(f"the target must be a whole number, not {target!r}") from None
    if not 1 <= t <= len(text) - 1:
        raise TargetError(f"the target must be a position from 1 to {len(text) - 1} (the text has {len(text)} "
                          f"characters; position 0 has nothing before it), not {t}")
    return t


def _layers_forward(model: CharRNN, x: torch.Tensor, states=None):
    """x (B, T, E) through every layer of the fused kernel with frozen weights -> h (B, T, H) of the top layer."""
    for l in range(model.config.num_layers):
        x, _ = fused_layer(model, l, x, None if states is None else states[l])
    return x


def _embed_leaf(model: CharRNN, ids: torch.Tensor) -> torch.Tensor:
    return model.embed.weight.detach()[ids].clone().requires_grad_(True)  # (..., E) the leaf e_s


def saliency(model: CharRNN, text: str, target: int) -> dict[str, Saliency]:
    """{'true': ..., 'top': ...}: saliency of log p(c) at `target` for c the true next and the top predicted
    character; one forward over text[:target+1] and one backward per distinct c, in the model's dtype."""
    t = check_target(text, target)
    vocab = model.vocab
    ids = torch.from_numpy(vocab.encode(text[: t + 2])).to(model.device)
    x = _embed_leaf(model, ids[: t + 1])[None]  # (1, t+1, E)
    with torch.enable_grad():
        h = _layers_forward(model, x)  # (1, t+1, H)
        logp = torch.log_softmax(_frozen_head(model, h[0, -1]), -1)  # (V,)
        top = int(logp.argmax())
        nxt = int(ids[t + 1]) if t + 1 < len(ids) else top
        out, grads = {}, {}
        for which, c in ((TRUE, nxt), (TOP, top)):
            if c not in grads:
                grads[c] = torch.autograd.grad(logp[c], x, retain_graph=which == TRUE and top != nxt)[0][0]
            g = grads[c]  # (t+1, E)
            out[which] = Saliency(text=text[: t + 1], target=t, which=which, char=vocab.chars[c],
                                  logp=float(logp[c].detach()), grad_norm=g.norm(dim=-1).double().cpu().numpy(),
                                  grad_x_input=(g * x[0].detach()).sum(-1).double().cpu().numpy())
    return out


@dataclass
class Aggregate:
    """Influence against distance, averaged over many targets (windows of W characters)."""

    targets: np.ndarray  # (N,)
    window: int
    which: str
    grad_norm: np.ndarray  # (N, W) per target, column d = distance t - s
    grad_x_input: np.ndarray  # (N, W)

    @property
    def distance(self) -> np.ndarray:
        return np.arange(self.window)

    def mean(self, measure: str = "grad_norm") -> np.ndarray:
        """(W,) mean over targets of |value| at each distance."""
        return np.abs(getattr(self, measure)).mean(0)

    def relative(self, measure: str = "grad_norm") -> np.ndarray:
        """(W,) the mean at each distance over the mean at distance 0."""
        m = self.mean(measure)
        return m / m[0] if m[0] > 0 else m


def spread_targets(n_chars: int, count: int, window: int) -> np.ndarray:
    """`count` targets evenly spread over window-1 .. n_chars-2 (each has a full window and a known next)."""
    lo, hi = max(1, window - 1), n_chars - 2
    if hi < lo:
        raise TextError(f"the text has {n_chars} characters: the aggregate over windows of {window} needs at "
                        f"least {window + 1}")
    return np.unique(np.linspace(lo, hi, max(1, int(count))).round().astype(np.int64))


@torch.no_grad()
def _window_states(model: CharRNN, ids: torch.Tensor, starts: np.ndarray) -> list:
    """The state of every layer just before each start position (sorted), from one no-grad pass
    over the text with the state carried; per layer (h0, c0) or h0, each (1, N, H)."""
    cell, L, H = model.cell, model.config.num_layers, model.config.hidden_size
    N = len(starts)
    hs = torch.zeros(L, N, H, dtype=model.head.weight.dtype, device=ids.device)
    cs = torch.zeros_like(hs)
    state = [None] * L
    pos = 0
    for j, s in enumerate(starts.tolist()):
        if s > pos:  # read text[pos:s], carrying the state
            x = model.embed.weight.detach()[ids[pos:s]][None]  # (1, n, E)
            for l in range(L):
                x, state[l] = fused_layer(model, l, x, state[l])
            pos = s
        for l in range(L):
            if state[l] is not None:
                if cell == "lstm":
                    hs[l, j], cs[l, j] = state[l][0][0, 0], state[l][1][0, 0]
                else:
                    hs[l, j] = state[l][0, 0]
    return [(hs[l:l + 1].contiguous(), cs[l:l + 1].contiguous()) if cell == "lstm" else hs[l:l + 1].contiguous()
            for l in range(L)]


def aggregate(model: CharRNN, text: str, targets=None, window: int = 100, count: int = 200, batch: int = 32,
              which: str = TRUE, progress=None) -> Aggregate:
    """Saliency of many targets in windows of `window` characters ending at each, `batch` windows per backward.

    Each window starts from the state the model reached over the text before it (no gradient: the
    embeddings there are constants), so inside the window the gradient equals the full one exactly.
    """
    if which not in (TRUE, TOP):
        raise ConfigError(f"which must be 'true' or 'top', not {which!r}")
    window, batch = int(window), int(batch)
    if window < 1 or batch < 1:
        raise ConfigError("window and batch must be at least 1")
    if targets is None:
        targets = spread_targets(len(text), count, window)
    targets = np.asarray(sorted({check_target(text, t) for t in np.asarray(targets).tolist()}), dtype=np.int64)
    if len(targets) and targets[0] < window - 1:
        raise TargetError(f"with windows of {window} characters the first target is {window - 1}, not {targets[0]}")
    ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)
    T = len(ids)
    starts = targets - window + 1
    states = _window_states(model, ids, starts)
    gn = np.empty((len(targets), window))
    gx = np.empty((len(targets), window))
    offs = torch.arange(window, device=ids.device)
    for b0 in range(0, len(targets), batch):
        sl = slice(b0, b0 + batch)
        win = torch.from_numpy(starts[sl]).to(ids.device)[:, None] + offs  # (B, W) positions
        x = _embed_leaf(model, ids[win])  # (B, W, E)
        st = [tuple(s[:, sl] for s in st) if model.cell == "lstm" else st[:, sl] for st in states]
        with torch.enable_grad():
            h = _layers_forward(model, x, st)  # (B, W, H)
            logp = torch.log_softmax(_frozen_head(model, h[:, -1]), -1)  # (B, V)
            tg = torch.from_numpy(targets[sl]).to(ids.device)
            if which == TOP:
                c = logp.argmax(-1)
            else:
                c = torch.where(tg + 1 < T, ids[(tg + 1).clamp(max=T - 1)], logp.argmax(-1))
            # the windows are independent, so the gradient of the sum is each window's own gradient
            g = torch.autograd.grad(logp.gather(1, c[:, None]).sum(), x)[0]  # (B, W, E)
        # column d = distance: reverse the window so that d = 0 is the target itself
        gn[sl] = g.norm(dim=-1).flip(1).double().cpu().numpy()
        gx[sl] = (g * x.detach()).sum(-1).flip(1).double().cpu().numpy()
        if progress is not None:
            progress(min(len(targets), b0 + batch), len(targets))
    return Aggregate(targets=targets, window=window, which=which, grad_norm=gn, grad_x_input=gx)


def share_far(values: np.ndarray, min_distance: int = 20, window: int = 60) -> float:
    """The share of the summed |value| over the last `window` positions (index 0 = distance 0) that lies
    `min_distance` or more back; 0 when all of it is 0."""
    v = np.abs(np.asarray(values, dtype=np.float64))[:window]  # (W,) by distance
    total = v.sum()
    return float(v[min_distance:].sum() / total) if total > 0 else 0.0


def next_char_probs(model: CharRNN, text: str) -> np.ndarray:
    """(len(text),) p(text[t+1] | text[:t+1]) at every target t, one forward with the state carried; NaN at the
    last position (its next character is unknown)."""
    out = np.full(len(text), np.nan)
    out[:-1] = np.exp(-model_scores(model, text).surprisal)
    return out


@dataclass
class DefaultTarget:
    """The target a saliency view opens on, and why."""

    target: int
    share: float  # the share of its influence min_distance or more back (of the last `window` positions)
    p: float  # p of the true next character there
    uncertain: bool  # whether it was chosen among the unsure predictions (p_range), else among all
    candidates: int  # how many targets the rule compared
    min_distance: int
    window: int
    p_range: tuple[float, float]

    def describe(self) -> str:
        """One sentence: how this target was chosen."""
        lo, hi = self.p_range
        among = (f"among {self.candidates} targets where the model was unsure of the next character "
                 f"({lo:g} ≤ p ≤ {hi:g})" if self.uncertain else
                 f"among {self.candidates} targets spread over the text (none has {lo:g} ≤ p ≤ {hi:g})")
        return (f"{among}, this one has the largest share of its influence over the last {self.window} characters "
                f"lying {self.min_distance} or more back")


def default_target(model: CharRNN, text: str, min_distance: int = 20, window: int = 60, count: int = 60,
                   p_range: tuple[float, float] = (0.05, 0.9), measure: str = "grad_norm") -> DefaultTarget:
    """A target worth explaining: the model is unsure of the true next character (p within p_range) and its
    prediction depends on characters far back. Among up to `count` such targets (spread over the text, each
    with a full window), the one with the largest share of its gradient norm `min_distance` or more back;
    with no unsure target, among `count` spread targets of any p. One forward for p, one batched backward.
    """
    n = len(text)
    window = min(window, n - 2)
    if window < 1:  # two characters: the only target there is
        t = n - 1
        return DefaultTarget(t, 0.0, float("nan"), False, 1, min_distance, max(window, 1), p_range)
    p = next_char_probs(model, text)
    lo, hi = p_range
    ok = np.flatnonzero((p >= lo) & (p <= hi))
    ok = ok[(ok >= window - 1) & (ok <= n - 2)]
    uncertain = len(ok) > 0
    if uncertain:
        pick = np.unique(np.linspace(0, len(ok) - 1, min(int(count), len(ok))).round().astype(np.int64))
        targets = ok[pick]
    else:
        targets = spread_targets(n, count, window)
    agg = aggregate(model, text, targets=targets, window=window)
    v = np.abs(getattr(agg, measure))  # (N, W) by distance
    share = v[:, min_distance:].sum(1) / np.maximum(v.sum(1), 1e-300)
    k = int(share.argmax())
    t = int(agg.targets[k])
    return DefaultTarget(t, float(share[k]), float(p[t]), uncertain, len(agg.targets), min_distance, window,
                         (float(lo), float(hi)))


def _stepwise(model: CharRNN, x: torch.Tensor, states=None) -> torch.Tensor:
    """x (n, E) -> top-layer h (n, H), one explicit step at a time from PyTorch's cell equations.

    For forward-mode derivatives: the fused kernels have none (oneDNN's LSTM) or a slow one (5-30x
    this loop); the loop is the same function, and the tests hold it to finite differences.
    """
    cell, H = model.cell, model.config.hidden_size
    for l in range(model.config.num_layers):
        w_ih, w_hh, b_ih, b_hh = _frozen_params(model, l)
        gi_all = torch.addmm(b_ih, x, w_ih.t())  # (n, G*H) the input part, for every step at once
        w_t = w_hh.t().contiguous()
        if states is None:
            h = torch.zeros(H, dtype=x.dtype, device=x.device)
            c = torch.zeros_like(h)
        else:
            h, c = (states[l][0][0, 0], states[l][1][0, 0]) if cell == "lstm" else (states[l][0, 0], None)
        hs = []
        for gi in gi_all.unbind(0):
            gh = h @ w_t + b_hh  # (G*H,) the recurrent part
            if cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            elif cell == "gru":
                r, z = torch.sigmoid(gi[:2 * H] + gh[:2 * H]).chunk(2)
                n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(gi + gh)
            hs.append(h)
        x = torch.stack(hs)
    return x


def predicted_change(model: CharRNN, text: str, position: int, new_char: str | None,
                     length: int | None = None) -> np.ndarray:
    """First-order (gradient) prediction of the change in log p(text[k] | text[:k]) for every k > position
    when the input at `position` changes from e(text[position]) to e(new_char) (None: to zero, as if
    the character were blanked out). One forward-mode pass from `position` (the state before it carried
    from a plain forward), over `length` characters after it (None: to the end): (len(text),), NaN elsewhere.
    """
    vocab = model.vocab
    if not 0 <= position < len(text):
        raise TargetError(f"position must be from 0 to {len(text) - 1}, not {position}")
    end = len(text) if length is None else min(len(text), position + 1 + max(0, int(length)))
    ids = torch.from_numpy(vocab.encode(text[:end])).to(model.device)
    w = model.embed.weight.detach()
    x = w[ids[position:]][None]  # (1, n, E) from the edited position on
    tangent = torch.zeros_like(x)
    old = w[ids[position]]
    tangent[0, 0] = (w[int(vocab.encode(new_char)[0])] - old) if new_char is not None else -old
    states = _window_states(model, ids, np.array([position])) if position else None
    # forward-mode levels are global to the process and cannot nest: one thread at a time (app sessions)
    with _FORWARD_AD, torch.no_grad(), fwAD.dual_level():
        h = _stepwise(model, fwAD.make_dual(x[0], tangent[0]), states)
        logp = torch.log_softmax(_frozen_head(model, h), -1)  # (n, V)
        dlogp = fwAD.unpack_dual(logp).tangent  # (n, V)
    out = np.full(len(text), np.nan)
    k = torch.arange(position + 1, end, device=ids.device)
    out[position + 1:end] = dlogp[k - 1 - position, ids[k]].double().cpu().numpy()
    return out


def top_influence_table(sal: Saliency, measure: str = "grad_norm", top: int = 10) -> list[dict]:
    """The `top` positions with the largest |value|: position, distance, character, value."""
    v = sal.value(measure)
    order = np.argsort(-np.abs(v), kind="stable")[:top]
    return [{"position": int(s), "distance": int(sal.target - s), "char": sal.text[s], "value": float(v[s])}
            for s in order]


def story(sal: Saliency, measure: str = "grad_norm", min_distance: int = 20, window: int = 60,
          opened: DefaultTarget | None = None) -> str:
    """The sentence under the Why page's coloured text; every number in it is read off `sal`'s arrays.
    `opened`: the target the page opened on, named when `sal` is at it."""
    from .render import char_label
    t, text = sal.target, sal.text
    v = np.abs(sal.value(measure))  # (t+1,)
    lines = [f"**t = {t}**, after reading `{char_label(text[t])}`: log p('{char_label(sal.char)}') = "
             f"{sal.logp:.2f} (p = {np.exp(sal.logp):.2f})."]
    share = sal.share_far(measure, min_distance, window)
    lines.append(f"Of the summed influence over the last {min(window, t + 1)} characters, **{share:.0%}** "
                 f"comes from characters {min_distance} or more back.")
    s = sal.strongest_far(measure, min_distance)
    if s is not None:
        ratio = f", with {v[s] / v[t]:.2g}× the influence of the character at t itself" if v[t] > 0 else ""
        lines.append(f"The strongest of those is `{char_label(text[s])}` at #{s}, **{t - s} characters "
                     f"back**{ratio}.")
    if opened is not None and t == opened.target:
        lines.append(f"(The page opened here: {opened.describe()}.)")
    return " ".join(lines)


def colour_window(values: np.ndarray, n_chars: int, before: int = 160, after: int = 40) -> tuple:
    """(lo, hi, shown, top) for colouring characters lo..hi-1 around the target t = len(values) - 1:
    shown (hi-lo,) holds the values up to t and NaN after it (not yet read); top is the largest |value|
    before t (t itself, usually the largest, would wash out the rest), 1 when there is none."""
    t = len(values) - 1
    lo, hi = max(0, t - before), min(n_chars, t + after + 1)
    shown = np.full(hi - lo, np.nan)
    shown[: t + 1 - lo] = values[lo:]
    rest = np.abs(values[:t]) if t else np.abs(values)
    top = float(rest.max()) if rest.size and rest.max() > 0 else 1.0
    return lo, hi, shown, top


def aggregate_models(models: dict, text: str, window: int = 100, count: int = 200, report=None,
                     stop=None) -> dict | None:
    """label -> (cell, Aggregate) for each label -> (cell, model) of `models`, in order; report(message=,
    done=, total=) before each; None as soon as stop (a threading.Event) is set."""
    out = {}
    for i, (label, (cell, model)) in enumerate(models.items()):
        if stop is not None and stop.is_set():
            return None
        if report is not None:
            report(message=f"{label} ({i + 1} of {len(models)})", done=i, total=len(models))
        out[label] = (cell, aggregate(model, text, window=window, count=count))
    return out


def aggregate_distances(window: int) -> tuple[int, int, int]:
    """(near, mid, far): the distances the aggregate's summary reads, 10, 40 and window - 10 where the window
    holds them."""
    return (10 if window > 10 else 0, 40 if window > 40 else window - 1, window - 10 if window > 50 else window - 1)


def aggregate_summary(aggs: dict, measure: str = "grad_norm") -> str:
    """Markdown, a line per model of label -> (cell, Aggregate): its relative influence at three distances, then
    which model keeps the most (and least) at the far ones."""
    window = next(iter(aggs.values()))[1].window
    near, d, far = aggregate_distances(window)
    rel = {label: agg.relative(measure) for label, (_, agg) in aggs.items()}  # label -> (W,)
    rows = [f"- **{label}** ({cell.upper()}): at distance {d}, {rel[label][d]:.3g} of its influence at "
            f"distance 0; at distance 10, {rel[label][near]:.3g}; at distance {far}, "
            f"{rel[label][far]:.3g}" for label, (cell, _) in aggs.items()]
    if len(aggs) > 1:
        best = {dd: max(rel, key=lambda k: rel[k][dd]) for dd in (d, far)}
        worst = min(rel, key=lambda k: rel[k][far])
        rows.append(f"\nAt distance {d} the most influence is left in **{best[d]}**; at distance {far}, in "
                    f"**{best[far]}**, and the least in **{worst}**.")
    return "\n".join(rows)
