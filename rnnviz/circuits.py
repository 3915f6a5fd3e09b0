"""How one prediction is computed: a graph of (layer, state, unit, position) nodes, each checked by ablation.

Definitions (issue 27):
  target      the prediction after reading character t, of the character c (text[t+1] by default; the
              model's top prediction at the text's last character); log p(c) there.
  node        (layer, state, unit, position s), state "h" or "c" (c for LSTMs only), s <= t.
  ablation    run normally up to s; after layer l's step at s set that one stored value to 0 and go on:
              the layer above at s reads the changed h, layer l's next step reads the changed h or c, and
              for a c node h at s keeps the value already computed. The effect is the change of log p(c)
              at the target: exact, a rerun (batched: every variant starting at s joins one batch there).
  attribution an estimate of the ablation effect for every candidate node at once (see METHODS).

Positions index the text's characters, read from its first character with a zero initial state.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .errors import ConfigError, TextError
from .gradients import fused_layer
from .model import CharRNN

LOGIT_ROWS, LOGIT_MASS = 16, 0.99  # the likeliest characters whose logits move (until they hold 99% of p, at most
# 16); the others are held: zeroing one node rarely lifts an unlikely character
MAX_BACK, MAX_NODES = 400, 500  # the cell path costs back² and the edges nodes²: beyond these, minutes
WINDOW_STEPS, POOL = 10, 3  # WINDOW reruns the POOL * max_nodes likeliest nodes exactly for WINDOW_STEPS steps
GRAD_X_VALUE, CELL_PATH, CELL_PATH_SOFTMAX, WINDOW = "grad_x_value", "cell_path", "cell_path_softmax", "window"
METHODS = {
    GRAD_X_VALUE: "gradient × value: -v · ∂log p(c)/∂v, one backward pass, first order",
    CELL_PATH: "cell path: h nodes by gradient × value; a c node's zeroing carried exactly along the cell state "
               "(c_k changes by -v·f_{s+1}···f_k, h_k by o_k·(tanh(c_k + Δc_k) - tanh c_k)), each h change "
               "weighted by the gradient at h_k; first order in h, exact along the belt",
    CELL_PATH_SOFTMAX: "cell path in the logits, exact softmax: the same estimates made for the logits of the "
                       f"likeliest characters (99% of p, at most {LOGIT_ROWS}, and c), then log p(c) recomputed "
                       "from the moved logits",
    WINDOW: f"exact window: the {POOL} × max_nodes nodes cell_path_softmax ranks highest, each zeroed and rerun "
            f"exactly for {WINDOW_STEPS} steps, then the logits moved by the gradient at the window's end and log p(c) "
            "recomputed from them (exact for nodes within the window of t)",
}
DEFAULT_METHOD = CELL_PATH_SOFTMAX
EDGE_SHARE, EDGES_IN = 0.1, 3  # an edge is kept when src accounts for at least 10% of |dst's value|, and
# at most the 3 strongest into each node: a 50-node graph stays readable


class CircuitError(ConfigError):
    """A target, node or setting the circuit cannot use: outside the text, an unseen character, back < 1."""


@dataclass
class Node:
    """One stored value of the network at one position, with its estimated and measured effects."""

    layer: int
    state: str  # "h" or "c"
    unit: int
    pos: int
    value: float  # the node's value in the normal run
    attribution: float  # the method's estimate of the change of log p(c) when the node is zeroed
    ablation: float  # the measured change of log p(c) when the node is zeroed (a rerun)

    @property
    def key(self) -> tuple[int, str, int, int]:
        return self.layer, self.state, self.unit, self.pos

    @property
    def label(self) -> str:
        """'L1 c85 @47'."""
        return f"L{self.layer} {self.state}{self.unit} @{self.pos}"


@dataclass
class Edge:
    """src accounts for `weight` of dst's value: dst's value minus its value when src is zeroed (exact)."""

    src: int
    dst: int
    weight: float


@dataclass
class Circuit:
    """The nodes that carry one prediction, their edges and the graph's honesty figures."""

    target: dict  # {"pos": t, "char": c, "logp": log p(c)}
    nodes: list[Node]  # ordered by |attribution|, largest first
    edges: list[Edge]
    coverage: float  # share of the total |attribution| over all candidate nodes that the kept nodes hold
    r2: float  # squared correlation of attribution and ablation over the kept nodes (NaN: fewer than 3 or flat)
    slope: float  # least-squares slope of ablation on attribution, through the origin
    method: str
    back: int
    candidates: int = 0  # how many nodes were scored
    positions: list[int] = field(default_factory=list)  # the positions scored, oldest first

    def to_json(self) -> dict:
        """The CLI's object: target, nodes, edges, coverage, r2, slope, method (NaN as null)."""
        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)
        return {"target": dict(self.target), "nodes": [asdict(n) for n in self.nodes],
                "edges": [asdict(e) for e in self.edges], "coverage": num(self.coverage), "r2": num(self.r2),
                "slope": num(self.slope), "slope_through_origin": True, "method": self.method, "back": self.back}


# ---- checks --------------------------------------------------------------------------------------------

def _check_int(name: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise CircuitError(f"{name} must be a whole number from {lo} to {hi}, not {v!r}")
    return int(v)


def check_target(model: CharRNN, text: str, t, char=None) -> tuple[int, int]:
    """(t, id of c), or a CircuitError: t outside the text, an unseen or empty character, no next character."""
    if not isinstance(text, str) or not text:
        raise TextError("the circuit needs a text of at least one character")
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t <= len(text) - 1:
        raise CircuitError(f"the target position must be a whole number from 0 to {len(text) - 1} (the text has "
                           f"{len(text)} characters), not {t!r}")
    t = int(t)
    if char is None:
        if t + 1 >= len(text):
            return t, -1  # the top prediction, found after the run
        char = text[t + 1]
    if not isinstance(char, str) or len(char) != 1:
        raise CircuitError(f"the target character must be exactly one character, not {char!r}")
    cid = model.vocab.index.get(char, 0)
    if cid == 0:
        raise CircuitError(f"the model never saw {char!r} in training: it has no prediction for it; pick a "
                           "character from its vocabulary")
    return t, cid


def _check_node(model: CharRNN, t: int, layer, state, unit, pos) -> None:
    cfg = model.config
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < cfg.num_layers:
        raise CircuitError(f"the layer must be from 0 to {cfg.num_layers - 1}, not {layer!r}")
    states = ("h", "c") if model.cell == "lstm" else ("h",)
    if state not in states:
        raise CircuitError(f"the state must be {' or '.join(states)} for this {model.cell.upper()}, not {state!r}")
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not 0 <= unit < cfg.hidden_size:
        raise CircuitError(f"the unit must be from 0 to {cfg.hidden_size - 1}, not {unit!r}")
    if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or not 0 <= pos <= t:
        raise CircuitError(f"the node's position must be from 0 to the target {t}, not {pos!r}")


# ---- the unrolled cell ---------------------------------------------------------------------------------

def _weights(model: CharRNN) -> list[tuple[torch.Tensor, ...]]:
    """Per layer (w_ih^T, w_hh^T, b_ih, b_hh), detached: no gradient reaches the model's parameters."""
    out = []
    for l in range(model.config.num_layers):
        w = model.layer_weights(l)
        out.append((w["weight_ih"].detach().t(), w["weight_hh"].detach().t(), w["bias_ih"].detach(),
                    w["bias_hh"].detach()))
    return out


def _step(cell: str, W, gi: torch.Tensor, h: torch.Tensor, c):
    """One step of one layer for a batch: gi = x W_ih^T + b_ih (B, G*H), h, c (B, H) -> (h', c', parts)."""
    _, w_hh, _, b_hh = W
    gh = h @ w_hh + b_hh  # (B, G*H)
    if cell == "lstm":
        i, f, g, o = (gi + gh).chunk(4, -1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c2 = f * c + i * g
        return o * torch.tanh(c2), c2, (f, o)
    if cell == "gru":
        H = h.shape[-1]
        r = torch.sigmoid(gi[..., :H] + gh[..., :H])
        z = torch.sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
        n = torch.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
        return (1 - z) * n + z * h, None, ()
    return torch.tanh(gi + gh), None, ()


def _prefix_state(model: CharRNN, ids: torch.Tensor, s0: int) -> list:
    """Per layer (h, c) (1, H) just before position s0, from the fused kernel (zeros at s0 = 0)."""
    L, H = model.config.num_layers, model.config.hidden_size
    dt = model.head.weight.dtype
    zero = torch.zeros(1, H, dtype=dt, device=ids.device)
    if s0 == 0:
        return [(zero, zero) for _ in range(L)]
    x = model.embed.weight.detach()[ids[:s0]][None]  # (1, s0, E)
    out = []
    for l in range(L):
        x, st = fused_layer(model, l, x)
        out.append((st[0][0], st[1][0]) if model.cell == "lstm" else (st[0], zero))
    return out


@dataclass
class _Run:
    """The normal run from s0 to t with the stored values as leaves: values, gradients, gates."""

    s0: int
    logp: torch.Tensor  # (V,) at t
    h: np.ndarray  # (L, P, H) the stored h
    c: np.ndarray | None  # (L, P, H) the stored c (LSTM)
    gh: np.ndarray  # (L, P, H) ∂log p(c)/∂h (the stored value: c at that step held)
    gc: np.ndarray | None  # (L, P, H) ∂log p(c)/∂c (the stored value: h at that step held)
    f: np.ndarray | None  # (L, P, H) forget gates
    o: np.ndarray | None  # (L, P, H) output gates
    rows: np.ndarray  # (R,) the characters whose logits were differentiated: the likeliest, and c
    jh: np.ndarray  # (R, L, P, H) ∂logit/∂h of those characters
    jc: np.ndarray | None  # (R, L, P, H) ∂logit/∂c
    jr: np.ndarray  # (R, L, P, H) ∂logit/∂h along the recurrence only (not into the layer above at that step)
    state0: list  # per layer (h, c) (1, H) before s0

    def state_before(self, s: int) -> list:
        """Per layer (h, c) (1, H) just before position s >= s0, from the stored values (exact: float64 holds them)."""
        if s == self.s0:
            return self.state0
        ref = self.state0[0][0]
        k = s - self.s0 - 1
        out = []
        for l in range(self.h.shape[0]):
            h = torch.as_tensor(self.h[l, k][None], dtype=ref.dtype, device=ref.device)
            c = torch.zeros_like(h) if self.c is None else torch.as_tensor(self.c[l, k][None], dtype=ref.dtype,
                                                                            device=ref.device)
            out.append((h, c))
        return out


def _likeliest(logp: torch.Tensor, most: int) -> list[int]:
    """The likeliest characters until they hold LOGIT_MASS of the probability, at most `most` of them."""
    order = torch.argsort(-logp, stable=True)
    mass = torch.cumsum(logp[order].exp(), 0)
    n = min(most, int((mass < LOGIT_MASS).sum()) + 1)
    return order[:n].tolist()


def _normal_run(model: CharRNN, ids: torch.Tensor, s0: int, t: int, cid: int,
                logit_rows: int = 0) -> tuple[_Run, int]:
    """One unrolled run over s0..t with zero additive leaves on every stored h and c; one batched backward
    gives ∂log p(c) and ∂logit of the `logit_rows` likeliest characters (and c) by every stored value."""
    cell, L, H = model.cell, model.config.num_layers, model.config.hidden_size
    W = _weights(model)
    P = t - s0 + 1
    dt = model.head.weight.dtype
    state = _prefix_state(model, ids, s0)
    lstm = cell == "lstm"
    with torch.enable_grad():
        dh = torch.zeros(L, P, H, dtype=dt, device=ids.device, requires_grad=True)
        dc = torch.zeros(L, P, H, dtype=dt, device=ids.device, requires_grad=True)
        dr = torch.zeros(L, P, H, dtype=dt, device=ids.device, requires_grad=True)
        gi0 = model.embed.weight.detach()[ids[s0:t + 1]] @ W[0][0] + W[0][2]  # (P, G*H)
        hs, cs = [state[l][0] for l in range(L)], [state[l][1] for l in range(L)]
        H_, C_, F_, O_ = ([[None] * P for _ in range(L)] for _ in range(4))
        for k in range(P):
            x = None
            for l in range(L):
                gi = gi0[k:k + 1] if l == 0 else x @ W[l][0] + W[l][2]
                h2, c2, parts = _step(cell, W[l], gi, hs[l], cs[l])
                x = H_[l][k] = h2 + dh[l, k]
                hs[l] = x + dr[l, k]  # what the next step reads: dr's gradient is the recurrent path alone
                if lstm:
                    cs[l] = c2 + dc[l, k]
                    C_[l][k], F_[l][k], O_[l][k] = cs[l], parts[0], parts[1]
        logits = x[0] @ model.head.weight.detach().t() + model.head.bias.detach()
        logp = torch.log_softmax(logits, -1)  # (V,)
        if cid < 0:
            cid = int(logp.argmax())
        likely = _likeliest(logp, logit_rows) if logit_rows > 0 else []
        rows = likely + ([cid] if logit_rows > 0 and cid not in likely else [])
        ys = torch.stack([logp[cid]] + [logits[r] for r in rows])  # (1 + R,)
        eye = torch.eye(len(ys), dtype=dt, device=ids.device)
        gdh, gdc, gdr = torch.autograd.grad(ys, (dh, dc, dr), eye, is_grads_batched=True, allow_unused=True,
                                            materialize_grads=True)  # (1 + R, L, P, H)

    def arr(rows_):
        return torch.stack([torch.cat(r) for r in rows_]).detach().double().cpu().numpy()  # (L, P, H)
    gdh, gdc, gdr = (g.detach().double().cpu().numpy() for g in (gdh, gdc, gdr))
    return _Run(s0=s0, logp=logp.detach(), h=arr(H_), c=arr(C_) if lstm else None, gh=gdh[0],
                gc=gdc[0] if lstm else None, f=arr(F_) if lstm else None, o=arr(O_) if lstm else None,
                rows=np.array(rows, dtype=np.int64), jh=gdh[1:], jc=gdc[1:] if lstm else None,
                jr=gdr[1:], state0=state), cid


# ---- attribution ---------------------------------------------------------------------------------------

def _cell_path(run: _Run, g: np.ndarray) -> np.ndarray:
    """(R, L, P, H) each c node's zeroing carried exactly along the belt (gates held), the change of h_k
    at each later step weighted by g (R, L, P, H), the gradients of R outputs by the stored h."""
    L, P, H = run.c.shape
    out = np.zeros((g.shape[0], L, P, H))
    tc = np.tanh(run.c)
    for k0 in range(P - 1):  # the c nodes at t change nothing downstream: 0
        dc = -run.c[:, k0:k0 + 1] * np.cumprod(run.f[:, k0 + 1:], axis=1)  # (L, n, H) c_k's change
        dh = run.o[:, k0 + 1:] * (np.tanh(run.c[:, k0 + 1:] + dc) - tc[:, k0 + 1:])  # (L, n, H) h_k's change
        out[:, :, k0] = (g[:, :, k0 + 1:] * dh).sum(2)
    return out


def _exact_softmax(run: _Run, cid: int, dz: np.ndarray) -> np.ndarray:
    """(...) the change of log p(c) when the logits of run.rows move by dz (R, ...), the others held."""
    z = run.logp.double().cpu().numpy()  # log-probabilities: logits up to a constant, which cancels
    rest = np.delete(z, run.rows)
    rest_lse = np.logaddexp.reduce(rest) if len(rest) else -np.inf
    zs = z[run.rows].reshape((-1,) + (1,) * (dz.ndim - 1)) + dz  # (R, ...)
    lse = np.logaddexp(np.logaddexp.reduce(zs, axis=0), rest_lse)
    i = int(np.flatnonzero(run.rows == cid)[0])
    return zs[i] - lse - z[cid]


def attributions(run: _Run, method: str, cid: int | None = None) -> np.ndarray:
    """(L, S, P, H) the estimated effect of zeroing every node; S = 2 (h, c) for an LSTM, else 1."""
    if method not in METHODS:
        raise CircuitError(f"the method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == CELL_PATH_SOFTMAX:
        dz_h = -run.jh * run.h  # (R, L, P, H) first-order change of each differentiated logit
        dz = dz_h[:, :, None] if run.c is None else np.stack([dz_h, _cell_path(run, run.jh)], 2)
        return _exact_softmax(run, cid, dz)
    ah = -run.gh * run.h
    if run.c is None:
        return ah[:, None]
    ac = -run.gc * run.c if method == GRAD_X_VALUE else _cell_path(run, run.gh[None])[0]
    return np.stack([ah, ac], 1)


# ---- reruns --------------------------------------------------------------------------------------------

Edit = tuple  # (layer, state, unit, pos, value): set that stored value after layer's step at pos


def _rerun(model: CharRNN, ids: torch.Tensor, t: int, variants: list[list[Edit]],
           watch: list[tuple[int, str, int, int]] = (), start=None) -> tuple[torch.Tensor, np.ndarray]:
    """Row 0 the normal run, row j+1 variant j with its edits; every row joins the batch at its first edit.

    Returns log-probabilities (1 + N, V) at t and the watched nodes' values (1 + N, len(watch)).
    """
    cell, L = model.cell, model.config.num_layers
    W = _weights(model)
    starts = [min(e[3] for e in v) for v in variants]
    order = sorted(range(len(variants)), key=lambda j: starts[j])
    row = {j: i + 1 for i, j in enumerate(order)}  # batch row of variant j
    s0 = min(starts) if starts else t
    if watch:
        s0 = min(s0, min(w[3] for w in watch))
    joining: dict[int, int] = {}  # position -> how many rows join there
    for j in order:
        joining[starts[j]] = joining.get(starts[j], 0) + 1
    edits: dict[tuple[int, int], list] = {}  # (pos, layer) -> [(row, state, unit, value)]
    for j, v in enumerate(variants):
        for (l, st, u, s, val) in v:
            edits.setdefault((s, l), []).append((row[j], st, u, float(val)))
    watched: dict[tuple[int, int], list] = {}
    for w_i, (l, st, u, s) in enumerate(watch):
        watched.setdefault((s, l), []).append((w_i, st, u))
    seen = np.zeros((1 + len(variants), len(watch)))
    state = _prefix_state(model, ids, s0) if start is None else start(s0)
    hs, cs = [st[0] for st in state], [st[1] for st in state]
    gi0 = model.embed.weight.detach()[ids[s0:t + 1]] @ W[0][0] + W[0][2]  # (P, G*H)
    for s in range(s0, t + 1):
        n = joining.get(s, 0)
        if n:  # the variants starting here leave from the normal row's state
            hs = [torch.cat([h, h[:1].expand(n, -1)]) for h in hs]
            cs = [torch.cat([c, c[:1].expand(n, -1)]) for c in cs]
        x = None
        for l in range(L):
            gi = gi0[s - s0:s - s0 + 1] if l == 0 else x @ W[l][0] + W[l][2]
            h2, c2, _ = _step(cell, W[l], gi, hs[l], cs[l])
            if cell != "lstm":
                c2 = cs[l]
            for (r, st, u, val) in edits.get((s, l), ()):
                if st == "h":
                    h2[r, u] = val
                else:
                    c2[r, u] = val
            hs[l], cs[l] = h2, c2
            for (w_i, st, u) in watched.get((s, l), ()):
                v = (h2 if st == "h" else c2)[:, u].double().cpu().numpy()
                seen[:len(v), w_i], seen[len(v):, w_i] = v, v[0]  # rows not yet joined hold the normal value
            x = h2
    logits = x @ model.head.weight.detach().t() + model.head.bias.detach()
    return torch.log_softmax(logits, -1), seen


def _window_changes(model: CharRNN, ids: torch.Tensor, t: int, keys: list, window: int, start=None):
    """Each node of `keys` zeroed and rerun exactly for `window` steps (or to t): the change of every layer's
    h and c at the window's end e = min(pos + window, t), (N, L, H) each; e (N,); and where e = t, the
    exact log-probabilities (N, V) (NaN elsewhere). Rows join at their node and leave at their end."""
    cell, L, H = model.cell, model.config.num_layers, model.config.hidden_size
    W = _weights(model)
    N = len(keys)
    ends = np.array([min(k[3] + window, t) for k in keys], dtype=np.int64)
    d_h, d_c = np.zeros((N, L, H)), np.zeros((N, L, H))
    logp = np.full((N, len(model.vocab)), np.nan)
    order = sorted(range(N), key=lambda j: keys[j][3])
    s0 = keys[order[0]][3]
    state = _prefix_state(model, ids, s0) if start is None else start(s0)
    hs, cs = [st[0] for st in state], [st[1] for st in state]
    live: list[int] = []  # the variant in each row after row 0 (the normal run)
    gi0 = model.embed.weight.detach()[ids[s0:t + 1]] @ W[0][0] + W[0][2]  # (P, G*H)
    nxt = 0
    for s in range(s0, int(ends.max()) + 1):
        new = []
        while nxt < N and keys[order[nxt]][3] == s:
            new.append(order[nxt])
            nxt += 1
        if new:
            first = len(live) + 1
            live += new
            hs = [torch.cat([h, h[:1].expand(len(new), -1)]) for h in hs]
            cs = [torch.cat([c, c[:1].expand(len(new), -1)]) for c in cs]
        x = None
        for l in range(L):
            gi = gi0[s - s0:s - s0 + 1] if l == 0 else x @ W[l][0] + W[l][2]
            h2, c2, _ = _step(cell, W[l], gi, hs[l], cs[l])
            if cell != "lstm":
                c2 = cs[l]
            for r, j in enumerate(new, start=first):
                if keys[j][0] == l:
                    (h2 if keys[j][1] == "h" else c2)[r, keys[j][2]] = 0.0
            hs[l], cs[l] = h2, c2
            x = h2
        done = [r for r, j in enumerate(live, start=1) if ends[j] == s]
        if done:
            idx = torch.tensor(done)
            for l in range(L):
                d_h[[live[r - 1] for r in done], l] = (hs[l][idx] - hs[l][:1]).double().cpu().numpy()
                d_c[[live[r - 1] for r in done], l] = (cs[l][idx] - cs[l][:1]).double().cpu().numpy()
            if s == t:
                z = x[idx] @ model.head.weight.detach().t() + model.head.bias.detach()
                logp[[live[r - 1] for r in done]] = torch.log_softmax(z, -1).double().cpu().numpy()
            keep = [0] + [r for r in range(1, len(live) + 1) if ends[live[r - 1]] != s]
            kidx = torch.tensor(keep)
            hs, cs = [h[kidx] for h in hs], [c[kidx] for c in cs]
            live = [live[r - 1] for r in keep[1:]]
    return d_h, d_c, ends, logp


def _refine(model: CharRNN, ids: torch.Tensor, run: _Run, cid: int, keys: list, window: int) -> np.ndarray:
    """(N,) each node's effect: exact for `window` steps, then the logits moved by the gradient at the window's
    end (the recurrent path of h, and c) and log p(c) recomputed from them; exact when the window reaches t."""
    t = run.s0 + run.h.shape[1] - 1
    d_h, d_c, ends, logp = _window_changes(model, ids, t, keys, window, run.state_before)
    k = ends - run.s0
    dz = np.einsum("rnlh,nlh->rn", run.jr[:, :, k].transpose(0, 2, 1, 3), d_h)  # (R, N)
    if run.jc is not None:
        dz += np.einsum("rnlh,nlh->rn", run.jc[:, :, k].transpose(0, 2, 1, 3), d_c)
    out = _exact_softmax(run, cid, dz)
    at_t = ends == t
    out[at_t] = logp[at_t, cid] - float(run.logp[cid])
    return out


def _ids(model: CharRNN, text: str) -> torch.Tensor:
    return torch.from_numpy(model.vocab.encode(text)).to(model.device)


@torch.no_grad()
def ablate(model: CharRNN, text: str, t: int, char, nodes: list[tuple[int, str, int, int]]) -> np.ndarray:
    """(N,) the exact change of log p(char) at t when each node alone is zeroed; batched reruns."""
    t, cid = check_target(model, text, t, char)
    if cid < 0:
        raise CircuitError("give the target character: the text ends at the target")
    for nd in nodes:
        _check_node(model, t, *nd)
    if not nodes:
        return np.zeros(0)
    logp, _ = _rerun(model, _ids(model, text[:t + 1]), t, [[(l, s, u, p, 0.0)] for (l, s, u, p) in nodes])
    lp = logp[:, cid].double().cpu().numpy()
    return lp[1:][_variant_rows(nodes)] - lp[0]


def _variant_rows(nodes) -> np.ndarray:
    """The batch row (less the normal row) of each variant in _rerun's order: stable by position."""
    order = sorted(range(len(nodes)), key=lambda j: nodes[j][3])
    rows = np.empty(len(nodes), dtype=np.int64)
    rows[order] = np.arange(len(nodes))
    return rows


@torch.no_grad()
def intervene(model: CharRNN, text: str, t: int, char, edits: list) -> dict:
    """Set (layer, state, unit) to a value at the given positions (ablation's rerun semantics) and rerun:
    {"logp_before", "logp_after", "probs_before": (V,), "probs_after": (V,)}."""
    t, cid = check_target(model, text, t, char)
    flat = []
    for e in edits:
        if len(e) != 5:
            raise CircuitError("each edit is (layer, state, unit, positions, value)")
        l, st, u, positions, val = e
        positions = [positions] if isinstance(positions, (int, np.integer)) else list(positions)
        if not positions:
            raise CircuitError("an edit needs at least one position")
        try:
            val = float(val)
        except (TypeError, ValueError):
            raise CircuitError(f"the value must be a number, not {val!r}") from None
        if not np.isfinite(val):
            raise CircuitError(f"the value must be a finite number, not {val!r}")
        for p in positions:
            _check_node(model, t, l, st, u, p)
            flat.append((int(l), st, int(u), int(p), val))
    if not flat:
        raise CircuitError("give at least one edit")
    logp, _ = _rerun(model, _ids(model, text[:t + 1]), t, [flat])
    if cid < 0:
        cid = int(logp[0].argmax())
    lp = logp.double().cpu().numpy()
    return {"char": model.vocab.chars[cid], "logp_before": float(lp[0, cid]), "logp_after": float(lp[1, cid]),
            "probs_before": np.exp(lp[0]), "probs_after": np.exp(lp[1])}


# ---- the graph -----------------------------------------------------------------------------------------

def _fit(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(r², slope of b on a through the origin); NaN where undefined."""
    slope = float(a @ b / (a @ a)) if len(a) and a @ a > 0 else float("nan")
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan"), slope
    return float(np.corrcoef(a, b)[0, 1] ** 2), slope


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the k largest |scores|, largest first; ties by index (deterministic)."""
    flat = np.abs(scores.ravel())
    return np.lexsort((np.arange(flat.size), -flat))[:k]


@torch.no_grad()
def circuit(model: CharRNN, text: str, t: int, char=None, back: int = 100, max_nodes: int = 50,
            method: str = DEFAULT_METHOD) -> Circuit:
    """The nodes within `back` positions up to t (t-back+1 .. t) that carry log p(char) at t, by attribution;
    the kept nodes' exact ablations, their edges, coverage, r² and slope."""
    back = _check_int("back", back, 1, MAX_BACK)
    max_nodes = _check_int("max_nodes", max_nodes, 1, MAX_NODES)
    if method not in METHODS:
        raise CircuitError(f"the method must be one of {', '.join(METHODS)}, not {method!r}")
    t, cid = check_target(model, text, t, char)
    ids = _ids(model, text[:t + 1])
    s0 = max(0, t - back + 1)
    run, cid = _normal_run(model, ids, s0, t, cid, LOGIT_ROWS if method in (CELL_PATH_SOFTMAX, WINDOW) else 0)
    attr = attributions(run, CELL_PATH_SOFTMAX if method == WINDOW else method, cid)  # (L, S, P, H)
    if method == WINDOW:  # the likeliest nodes' estimates refined by a short exact rerun
        pool = _top(attr, POOL * max_nodes)
        attr.ravel()[pool] = _refine(model, ids, run, cid, _keys(attr.shape, pool, s0), WINDOW_STEPS)
    keep = _top(attr, max_nodes)
    keys = _keys(attr.shape, keep, s0)
    values = [float((run.h if st == "h" else run.c)[l, p - s0, u]) for (l, st, u, p) in keys]
    logp, seen = _rerun(model, ids, t, [[(l, st, u, p, 0.0)] for (l, st, u, p) in keys], watch=keys,
                        start=run.state_before)
    lp = logp[:, cid].double().cpu().numpy()
    rows = _variant_rows(keys) + 1
    ablation = lp[rows] - lp[0]
    nodes = [Node(layer=l, state=st, unit=u, pos=p, value=v, attribution=float(attr.ravel()[i]), ablation=float(a))
             for (l, st, u, p), v, i, a in zip(keys, values, keep, ablation)]
    edges = _edges(keys, seen[0], seen[rows])
    total = np.abs(attr).sum()
    r2, slope = _fit(np.array([n.attribution for n in nodes]), ablation)
    return Circuit(target={"pos": t, "char": model.vocab.chars[cid], "logp": float(run.logp[cid])},
                   nodes=nodes, edges=edges, coverage=float(np.abs(attr.ravel()[keep]).sum() / total) if total > 0
                   else float("nan"), r2=r2, slope=slope, method=method, back=back, candidates=int(attr.size),
                   positions=list(range(s0, t + 1)))


def _keys(shape: tuple, flat: np.ndarray, s0: int) -> list[tuple[int, str, int, int]]:
    """(layer, state, unit, pos) of flat indices into an (L, S, P, H) array of nodes."""
    out = []
    for i in flat:
        l, st, k, u = np.unravel_index(i, shape)
        out.append((int(l), ("h", "c")[st], int(u), s0 + int(k)))
    return out


def _before(a: tuple, b: tuple) -> bool:
    """Whether zeroing node a can change node b: an earlier position, or a lower layer at the same one."""
    return a[3] < b[3] or (a[3] == b[3] and a[0] < b[0])


def _edges(keys: list, normal: np.ndarray, ablated: np.ndarray) -> list[Edge]:
    """src -> dst where dst's value minus its value with src zeroed is at least EDGE_SHARE of |dst's value|,
    the EDGES_IN strongest into each dst."""
    out = []
    for j, dst in enumerate(keys):
        into = []
        for i, src in enumerate(keys):
            w = normal[j] - ablated[i, j]
            if _before(src, dst) and w != 0 and abs(w) >= EDGE_SHARE * abs(normal[j]):
                into.append(Edge(src=i, dst=j, weight=float(w)))
        out += sorted(into, key=lambda e: (-abs(e.weight), e.src))[:EDGES_IN]
    return out


# ---- the memory path and the story ----------------------------------------------------------------------

def memory_path(model: CharRNN, text: str, t: int, char, layer: int, unit: int, pos: int) -> dict:
    """How the target depends on (layer, unit) at pos: along the cell state (the c node) or through h.

    Estimates from one backward pass (gradient × value of each, and the cell-path estimate of c) beside
    the two exact ablations; "carrier" is the state whose zeroing moves log p(c) more, and "words" says so.
    """
    if model.cell != "lstm":
        raise CircuitError(f"only an LSTM has a cell state to carry memory apart from h; this is a "
                           f"{model.cell.upper()}")
    t, cid = check_target(model, text, t, char)
    _check_node(model, t, layer, "c", unit, pos)
    ids = _ids(model, text[:t + 1])
    with torch.no_grad():
        run, cid = _normal_run(model, ids, pos, t, cid)
    ch = model.vocab.chars[cid]
    h_abl, c_abl = ablate(model, text, t, ch, [(layer, "h", unit, pos), (layer, "c", unit, pos)])
    cp = _cell_path(run, run.gh[None])[0, layer, 0, unit]
    res = {"layer": int(layer), "unit": int(unit), "pos": int(pos), "distance": t - int(pos), "char": ch,
           "h_value": float(run.h[layer, 0, unit]), "c_value": float(run.c[layer, 0, unit]),
           "h_attribution": float(-run.gh[layer, 0, unit] * run.h[layer, 0, unit]),
           "c_attribution": float(-run.gc[layer, 0, unit] * run.c[layer, 0, unit]),
           "c_cell_path": float(cp), "h_ablation": float(h_abl), "c_ablation": float(c_abl)}
    res["carrier"] = "c" if abs(c_abl) >= abs(h_abl) else "h"
    res["words"] = memory_words(res, text)
    return res


def _change(x: float) -> str:
    """'lowers log p by 0.79', 'raises ... by 0.12', 'changes ... by under 0.01'."""
    if abs(x) < 0.01:
        return "changes it by under 0.01"
    return f"{'lowers' if x < 0 else 'raises'} it by {abs(x):.2f}"


def _quoted(ch: str) -> str:
    """A character in quotes that differ from it: "'" and 'a'."""
    from .render import char_label
    return f'"{char_label(ch)}"' if ch == "'" else f"'{char_label(ch)}'"


def memory_words(m: dict, text: str) -> str:
    """One sentence from memory_path's measured figures."""
    l, u, p = m["layer"], m["unit"], m["pos"]
    carrier, other = ("c", "h") if m["carrier"] == "c" else ("h", "c")
    road = "along the cell state" if carrier == "c" else "through the hidden state h"
    return (f"From {m['distance']} steps back ({_quoted(text[p])} at {p}), unit {u} of layer {l} reaches "
            f"log p({_quoted(m['char'])}) {road}: zeroing {carrier}{u} there {_change(m[carrier + '_ablation'])}; "
            f"zeroing {other}{u} there {_change(m[other + '_ablation'])}.")


def story(model: CharRNN, circ: Circuit, text: str) -> str:
    """The page's opening sentence, from the graph and its measured ablations: the node whose zeroing moves
    log p(c) most, the positions at which its unit's same state is in the graph, and for a c node the h node
    of the same unit and step, ablated too."""
    if not circ.nodes:
        return "The graph has no nodes."
    tgt = circ.target
    top = max(circ.nodes, key=lambda n: abs(n.ablation))
    same = sorted(n.pos for n in circ.nodes if (n.layer, n.state, n.unit) == (top.layer, top.state, top.unit))
    head = (f"The prediction of {_quoted(tgt['char'])} after position {tgt['pos']} rests most on "
            f"{top.state}{top.unit} of layer {top.layer}")
    if len(same) > 1:
        head += (f", {'carried along the cell state' if top.state == 'c' else 'held in h'} from "
                 f"{_quoted(text[same[0]])} at {same[0]} to {same[-1]} ({len(same)} of its positions are in the "
                 "graph)")
    tail = (f"zeroing it at {top.pos} {'lowers' if top.ablation < 0 else 'raises'} log p({_quoted(tgt['char'])}) "
            f"by {abs(top.ablation):.2f}")
    if top.state == "c":
        other = float(ablate(model, text, tgt["pos"], tgt["char"], [(top.layer, "h", top.unit, top.pos)])[0])
        tail += f"; zeroing h{top.unit} there {_change(other)}"
    return f"{head}: {tail}."


# ---- the default story ------------------------------------------------------------------------------------

def closing_quote_target(text: str, min_gap: int = 10, max_gap: int = 30) -> tuple[int, int]:
    """(opening quote's position, t) of the first one-line string literal whose closing quote comes
    min_gap..max_gap characters after its opening one; t is the position just before the closing quote."""
    if not isinstance(text, str):
        raise TextError("the text must be a string")
    pos = 0
    for line in text.split("\n"):
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch == "#":
                break
            if ch in "'\"":
                if line.startswith(ch * 3, i):  # a docstring's quotes: not a one-line literal
                    end = line.find(ch * 3, i + 3)
                    i = n if end < 0 else end + 3
                    continue
                j = i + 1
                while j < n and line[j] != ch:
                    j += 2 if line[j] == "\\" else 1
                if j >= n:
                    break
                if min_gap <= j - i <= max_gap:
                    return pos + i, pos + j - 1
                i = j + 1
                continue
            i += 1
        pos += len(line) + 1
    raise TextError(f"the text has no one-line string literal {min_gap} to {max_gap} characters long")
