"""Running per-unit statistics of one (layer, kind) over the stream: exact top/bottom-K, moments, histograms."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

H_BINS = 40  # histogram of h over [-1, 1]: bins of width 0.05
C_BINS = 40  # histogram of c over [-max|c|, max|c|], from the stored states
SPARSE_BELOW = 0.1  # sparsity: the fraction of characters with |a| < 0.1
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
GATE = {"lstm": "f", "gru": "z", "rnn": None}  # the gate whose mean gives a unit's time constant
SEPARATION = 20  # separated peaks: no two within 20 characters of each other
PEAKS = 16  # separated peaks kept per unit and side
# Greedy suppression's k-th pick ranks at most (k - 1) * (2 * SEPARATION + 1) + 1 overall (each earlier
# pick hides at most that window), so the exact best PEAK_DEPTH values always hold the first PEAKS picks
PEAK_DEPTH = (PEAKS - 1) * (2 * SEPARATION + 1) + 1


def kinds_of(cell: str) -> tuple[str, ...]:
    return ("h", "c") if cell == "lstm" else ("h",)

def _series_name(layer: int, kind: str) -> str:
    return f"L{layer}_{kind}"

def _order_keys(a: np.ndarray) -> np.ndarray:
    """float32 (t, H) -> int64 (t, H) in the same order (two's-complement trick; -0.0 as 0.0)."""
    bits = (a + np.float32(0)).view(np.int32)
    return np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)


def _pack(a: np.ndarray, start: int) -> np.ndarray:
    """Keys whose order is (value, then earlier position): value in the high 32 bits."""
    pos = np.arange(start, start + a.shape[0], dtype=np.int64)
    return (_order_keys(a) << 32) | (0xFFFFFFFF - pos)[:, None]


def _key_values(keys: np.ndarray) -> np.ndarray:
    """The float32 values packed in the high halves of keys (as ordered; negated for bottom buffers)."""
    k32 = (keys >> 32).astype(np.int32)
    return np.where(k32 < 0, k32 ^ np.int32(0x7FFFFFFF), k32).view(np.float32)


def _unpack(keys: np.ndarray, negated: bool) -> tuple[np.ndarray, np.ndarray]:
    """Keys (K, H), best last -> (positions, values), best first."""
    keys = keys[::-1]
    pos = 0xFFFFFFFF - (keys & 0xFFFFFFFF)
    k32 = (keys >> 32).astype(np.int32)
    vals = np.where(k32 < 0, k32 ^ np.int32(0x7FFFFFFF), k32).view(np.float32)
    return pos, (-vals if negated else vals)
def _moments(a: torch.Tensor, rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sum of squared deviations from it) per column of a float32 (t, H), both summed in float64.

    In blocks of rows: float64 copies that fit the cache make this about as fast as float32 sums (a whole
    chunk's float64 copy was 6x slower), where float32 sums drift by about 1e-7 relative."""
    t = a.shape[0]
    m = torch.zeros(a.shape[1], dtype=torch.float64)
    for s in range(0, t, rows):
        m += a[s:s + rows].double().sum(0)
    m /= t
    m2 = torch.zeros_like(m)
    for s in range(0, t, rows):
        m2 += a[s:s + rows].double().sub_(m).square_().sum(0)
    return m.numpy(), m2.numpy()


class _Series:
    """Running statistics of one (layer, kind) over the stream, and its compact states' sink."""

    def __init__(self, H: int, T: int, top_k: int, n_blocks: int, hist: bool, sink):
        self.H, self.T, self.K = H, T, top_k
        self.depth = max(top_k, PEAK_DEPTH)  # exact candidates kept: the top-K and the peaks' candidates
        self.n = 0
        self.mean = np.zeros(H)
        self.m2 = np.zeros(H)
        self.min = np.full(H, np.inf, np.float32)
        self.max = np.full(H, -np.inf, np.float32)
        self.small = np.zeros(H, np.int64)
        self.top = np.empty((H, 0), np.int64)  # (H, depth): a unit's keys contiguous, so partitions are fast
        self.bottom = np.empty((H, 0), np.int64)
        self.hist = np.zeros((H_BINS, H), np.int64) if hist else None
        self.scale = np.zeros((n_blocks, H), np.float32)
        self.sink = sink  # (H, T) int8: a file written by pwrite, or an array

    def add(self, a: torch.Tensor, start: int, block: int) -> None:
        t, H = a.shape
        a = a.detach().to("cpu", torch.float32).contiguous()
        x = a.numpy()
        m, m2 = _moments(a)
        n = self.n + t
        delta = m - self.mean
        self.mean += delta * (t / n)
        self.m2 += m2 + delta * delta * (self.n * t / n)
        self.n = n
        lo, hi = a.amin(0).numpy(), a.amax(0).numpy()  # (aminmax is several times slower on the CPU)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0]) + start
            raise ConfigError(f"the model's states are NaN or infinite from character {bad:,} on: "
                              "no atlas can be built for it")
        np.minimum(self.min, lo, out=self.min)
        np.maximum(self.max, hi, out=self.max)
        self.small += (a.abs() < SPARSE_BELOW).view(torch.uint8).sum(0, dtype=torch.int32).numpy()
        if self.hist is not None:
            idx = _h_bins(a)
            idx += torch.arange(H) * H_BINS
            self.hist += torch.bincount(idx.view(-1), minlength=H * H_BINS).view(H, H_BINS).numpy().T
        for name, largest in (("top", True), ("bottom", False)):
            self._merge(name, largest, a, x, start)
        # compact states: int8, symmetric scale per unit and block
        absmax = np.maximum(np.abs(lo), np.abs(hi))
        scale = (absmax / np.float32(127)).astype(np.float32)
        self.scale[start // block] = scale
        safe = torch.from_numpy(np.where(scale > 0, scale, np.float32(1)))
        q = torch.round(a / safe).clamp_(-127, 127).to(torch.int8)
        self.sink.write(q.t().contiguous().numpy(), start)

    def _merge(self, name: str, largest: bool, a: torch.Tensor, x: np.ndarray, start: int) -> None:
        """Fold a chunk into the (H, depth) buffer of packed keys (value, then earlier position); exact.

        Once the buffer is full, only values at least as good as a unit's depth-th can enter, so those
        are gathered (one comparison); when too many are (a saturated unit, say), or at the start,
        torch.topk finds each unit's depth + 1 best of the chunk, and a unit whose last two tie
        is ranked over its whole column."""
        t, H = x.shape
        buf = getattr(self, name)
        sign = np.float32(1 if largest else -1)
        cand = None
        if buf.shape[1] == self.depth:
            worst = sign * _key_values(buf.min(axis=1))  # each unit's depth-th best value, (H,)
            thr = torch.from_numpy(np.ascontiguousarray(worst, dtype=np.float32))
            mask = a >= thr if largest else a <= thr
            counts = mask.view(torch.uint8).sum(0, dtype=torch.int32).numpy().astype(np.int64)
            width = int(counts.max()) if H else 0
            if width <= 4 * self.depth:
                units, rows = (v.numpy() for v in torch.nonzero(mask.t().contiguous(), as_tuple=True))  # by unit
                if len(rows):
                    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
                    rank = np.arange(len(units)) - first[units]
                    cand = np.full((H, max(width, 1)), np.iinfo(np.int64).min, dtype=np.int64)
                    cand[units, rank] = (_order_keys(sign * x[rows, units]) << 32) | (0xFFFFFFFF - (rows + start))
                else:
                    return  # nothing in this chunk can enter
        if cand is None:
            k1 = min(self.depth + 1, t)
            vals, idx = torch.topk(a, k1, dim=0, largest=largest, sorted=True)
            vals, idx = vals.numpy(), idx.numpy()
            k = min(self.depth, t)
            cand = (_order_keys(sign * vals[:k]) << 32) | (0xFFFFFFFF - (idx[:k].astype(np.int64) + start))
            if k1 > k:
                for u in np.flatnonzero(vals[k - 1] == vals[k]):
                    col = _pack(sign * x[:, u:u + 1], start)
                    cand[:, u] = np.partition(col, col.shape[0] - k, axis=0)[col.shape[0] - k:, 0]
            cand = cand.T
        keys = np.concatenate([buf, cand], axis=1)
        k = min(self.depth, keys.shape[1])
        setattr(self, name, np.partition(keys, keys.shape[1] - k, axis=1)[:, keys.shape[1] - k:])

    def finish(self) -> dict[str, np.ndarray]:
        top_pos, top_val = _unpack(np.sort(self.top, axis=1).T, False)
        bot_pos, bot_val = _unpack(np.sort(self.bottom, axis=1).T, True)
        k = min(self.K, top_pos.shape[0])
        std = np.sqrt(np.maximum(self.m2 / max(self.n, 1), 0.0))
        out = {"mean": self.mean, "std": std, "min": self.min, "max": self.max,
               "sparsity": self.small / max(self.n, 1), "scale": self.scale,
               "top_pos": top_pos[:k], "top_val": top_val[:k].astype(np.float32),
               "bottom_pos": bot_pos[:k], "bottom_val": bot_val[:k].astype(np.float32)}
        for name, pos, val in (("top", top_pos, top_val), ("bottom", bot_pos, bot_val)):
            out[f"{name}_peak_pos"], out[f"{name}_peak_val"] = separated_peaks(pos, val)
        if self.hist is not None:
            out["hist"] = self.hist
        return out


def separated_peaks(pos: np.ndarray, val: np.ndarray, n: int = PEAKS,
                    sep: int = SEPARATION) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum suppression down each column of ranked candidates (D, H), best first: the best
    candidate, then the best more than `sep` characters from every pick, n times. -> (n, H) positions
    and values, -1 and NaN where no candidate is left. Exact against the whole series when the
    candidates are its best PEAK_DEPTH (or all of it)."""
    D, H = pos.shape
    out_pos = np.full((n, H), -1, np.int64)
    out_val = np.full((n, H), np.nan, np.float32)
    alive = np.ones((D, H), bool)
    cols = np.arange(H)
    for i in range(n):
        first = alive.argmax(axis=0) if D else np.zeros(H, np.int64)  # (H,) the best candidate left
        ok = alive[first, cols] if D else np.zeros(H, bool)
        if not ok.any():
            break
        p = pos[first, cols]
        out_pos[i] = np.where(ok, p, -1)
        out_val[i] = np.where(ok, val[first, cols], np.nan)
        alive &= ~ok | (np.abs(pos - p) > sep)
    return out_pos, out_val


def decile_bands(x: np.ndarray, n: int = 3) -> list[dict]:
    """Per decile band [q_d, q_d+1) of the values x (T,) (the last band closed): its bounds, its count and up
    to n example positions whose value falls in it, spread evenly through the series."""
    x = np.asarray(x)
    edges = np.quantile(x, np.linspace(0, 1, 11))
    band = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 9)
    order = np.argsort(band, kind="stable")
    counts = np.bincount(band, minlength=10)
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for d in range(10):
        members = order[starts[d]:starts[d + 1]]
        pick = members[np.unique(np.linspace(0, len(members) - 1, n).round().astype(int))] if len(members) else []
        out.append({"decile": d + 1, "low": float(edges[d]), "high": float(edges[d + 1]), "count": int(counts[d]),
                    "examples": [(int(p), float(x[p])) for p in pick]})
    return out


def _h_edge(k):
    """Edge k of the h histogram, float32: k * (2 / H_BINS) - 1 computed in float32 (elementwise for tensors)."""
    return k * np.float32(2.0 / H_BINS) - np.float32(1.0)


_H_EDGES = _h_edge(np.arange(H_BINS + 1, dtype=np.float32)).astype(np.float32)


def _h_bins(a: torch.Tensor) -> torch.Tensor:
    """Bin k of each value, E_k <= a < E_k+1 for the float32 edges E (a == 1 in the last bin), exact:
    a float32 guess, then one comparison with each neighbouring edge, computed by the same float32
    arithmetic as _H_EDGES (so no table lookup is needed)."""
    half = H_BINS / 2
    k = ((a + 1.0) * half).floor_().clamp_(0, H_BINS - 1)
    k -= (a < _h_edge(k)).float()
    k += ((a >= _h_edge(k + 1.0)) & (k < H_BINS - 1)).float()
    return k.clamp_(0, H_BINS - 1).long()

def tau(gate_mean) -> np.ndarray:
    """Memory time constant -1 / ln(mean gate), in characters: inf at a mean of 1, 0 at 0."""
    g = np.asarray(gate_mean, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(g >= 1.0, np.inf, np.where(g <= 0.0, 0.0, -1.0 / np.log(np.clip(g, 1e-300, 1.0))))
