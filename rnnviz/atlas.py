"""The atlas: one model over one corpus, indexed unit by unit, streamed in chunks and cached on disk.

A build runs the model over the corpus in chunks with the state carried (so every value is the one
a single trace of the whole text gives), folds each chunk into running per-unit statistics (exact
top-K and bottom-K, mean, std, min, max, sparsity, fixed-bin histograms of h, forget / update gate
means) and writes compact per-character states: int8 with a symmetric scale per unit and block of
`chunk` characters, |stored - true| <= scale / 2. No step holds the corpus's float32 states.

See docs/atlas.md for the cache layout and every exactness claim.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import probes
from .errors import ConfigError, RnnvizError, TextError
from .model import CharRNN
from .scan import linear_scan
from .trace import _layer_params, _run_layer, _shifted_addmm_

FORMAT_VERSION = 1
MAX_CHARS = 200_000
DEFAULT_CHUNK = 8192
DEFAULT_TOP_K = 64
MIN_TOP_K = 32
H_BINS = 40  # histogram of h over [-1, 1]: bins of width 0.05
C_BINS = 40  # histogram of c over [-max|c|, max|c|], from the stored states
SPARSE_BELOW = 0.1  # sparsity: the fraction of characters with |a| < 0.1
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "RNNVIZ_ATLAS_DIR"
META, SMALL, TEXT, LABELS = "meta.json", "small.npz", "text.txt", "labels.npz"
GATE = {"lstm": "f", "gru": "z", "rnn": None}
_LOCK = threading.RLock()  # one build per key at a time inside a process


class Cancelled(RnnvizError):
    """The build was stopped by its stop event; nothing was cached."""


class CacheError(RnnvizError):
    """A cache entry is truncated, corrupt, or of another format: it is rebuilt, never trusted."""


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or ROOT / "atlas_cache")


def kinds_of(cell: str) -> tuple[str, ...]:
    return ("h", "c") if cell == "lstm" else ("h",)


# --- keys -------------------------------------------------------------------------------------

def model_key(model: CharRNN) -> str:
    """sha256 of the model: its config (vocabulary included) and every tensor of its state dict, by
    name in sorted order, as float32 bytes with shape."""
    h = hashlib.sha256()
    h.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(model_hash: str, corpus_hash: str, settings: dict) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, "model": model_hash, "corpus": corpus_hash,
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# --- the corpus -------------------------------------------------------------------------------

@dataclass
class CorpusText:
    """The text an atlas indexes, its name, and what the user should be told about it."""

    text: str
    name: str
    notices: list[str] = field(default_factory=list)


def resolve_corpus(config: dict | None, corpus=None, max_chars: int | None = MAX_CHARS) -> CorpusText:
    """The atlas corpus: None -> the model's held-out split (corpora.held_out_text); a name in
    corpora.CORPORA -> that built-in corpus; a Path -> that UTF-8 file; bytes -> an upload; any other
    str -> the user's text itself. Cut at `max_chars` with a notice."""
    from . import corpora

    notices: list[str] = []
    if corpus is None:
        text, notice = corpora.held_out_text(config or {})
        if text is None:
            raise ConfigError("the corpus this model trained on is not on this machine: give a corpus "
                              "(a built-in name, a file or your own text)")
        if notice:
            notices.append(notice)
        if not text:
            raise TextError("none of this model's held-out text is on this machine: give a corpus")
        name = "held-out"
    elif isinstance(corpus, str) and corpus in corpora.CORPORA:
        c = corpora.load_corpus(corpus)
        text, name = c.text, corpus
        if c.notice:
            notices.append(c.notice)
    elif isinstance(corpus, (os.PathLike, bytes, bytearray, str)):
        kind = "file" if isinstance(corpus, os.PathLike) else "text"
        c = corpora.user_text(corpus, name=Path(corpus).name if kind == "file" else "your text", max_chars=None)
        text, name = c.text, c.name
    else:
        raise ConfigError(f"corpus must be None, a built-in name, a file path or text, not {type(corpus).__name__}")
    if not text:
        raise TextError("the atlas corpus is empty: give at least one character")
    if max_chars is not None and len(text) > max_chars:
        notices.append(f"the atlas covers the first {max_chars:,} of {len(text):,} characters")
        text = text[:max_chars]
    return CorpusText(text, name, notices)


# --- the stream -------------------------------------------------------------------------------

def _gate_rows(k: int, x: torch.Tensor, h: torch.Tensor, h0: torch.Tensor, b, w_ih, w_hh,
               table: torch.Tensor | None, ids: torch.Tensor | None) -> torch.Tensor:
    """Pre-activation of gate block k for every step, as trace._internals computes it."""
    T, H = h.shape
    z = torch.empty(T, H, dtype=h.dtype, device=h.device)
    if table is not None:
        torch.index_select(table[k], 0, ids, out=z)
    else:
        torch.addmm(b[k], x, w_ih[k].t(), out=z)
    return _shifted_addmm_(z, h0, h, w_hh[k])


def _layer_extras(cell: str, x: torch.Tensor, h: torch.Tensor, state, params, ids=None) -> dict:
    """What the atlas needs beyond h: c and f for an LSTM (no o), z for a GRU; trace's arithmetic."""
    if cell == "rnn":
        return {}
    w_ih, w_hh, b_ih, b_hh = params
    T, H = h.shape
    G = 4 if cell == "lstm" else 3
    h0 = (state[0] if cell == "lstm" else state)[0]
    b = (b_ih + (torch.cat([b_hh[:2 * H], torch.zeros_like(b_hh[:H])]) if cell == "gru" else b_hh)).view(G, H)
    w_ih, w_hh = w_ih.view(G, H, -1), w_hh.view(G, H, H)
    table = torch.baddbmm(b[:, None], x.expand(G, *x.shape), w_ih.transpose(1, 2)) if ids is not None else None
    if cell == "gru":
        return {"z": _gate_rows(1, x, h, h0, b, w_ih, w_hh, table, ids).sigmoid_()}
    i = _gate_rows(0, x, h, h0, b, w_ih, w_hh, table, ids).sigmoid_()
    f = _gate_rows(1, x, h, h0, b, w_ih, w_hh, table, ids).sigmoid_()
    g = _gate_rows(2, x, h, h0, b, w_ih, w_hh, table, ids).tanh_()
    c = i.mul_(g)
    linear_scan(f, c, state[1][0, 0], out=c)
    return {"c": c, "f": f}


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


class _Series:
    """Running statistics of one (layer, kind) over the stream, and its compact states' sink."""

    def __init__(self, H: int, T: int, top_k: int, n_blocks: int, hist: bool, sink):
        self.H, self.T, self.K = H, T, top_k
        self.n = 0
        self.mean = np.zeros(H)
        self.m2 = np.zeros(H)
        self.min = np.full(H, np.inf, np.float32)
        self.max = np.full(H, -np.inf, np.float32)
        self.small = np.zeros(H, np.int64)
        self.top = np.empty((0, H), np.int64)
        self.bottom = np.empty((0, H), np.int64)
        self.hist = np.zeros((H_BINS, H), np.int64) if hist else None
        self.scale = np.zeros((n_blocks, H), np.float32)
        self.sink = sink  # (H, T) int8: a file written by pwrite, or an array

    def add(self, a: torch.Tensor, start: int, block: int) -> None:
        t, H = a.shape
        a = a.detach().to("cpu", torch.float32).contiguous()
        x = a.numpy()
        # mean and M2: per chunk in float32 (torch's cascade sums) about the chunk's own mean, merged in
        # float64 by Chan et al.'s rule
        m = a.sum(0).numpy().astype(np.float64) / t
        d = a - torch.from_numpy(m.astype(np.float32))
        d.mul_(d)
        m2 = d.sum(0).numpy().astype(np.float64)
        m2 -= t * (m - m.astype(np.float32)) ** 2  # M2 about the float64 mean, not its float32 rounding
        del d
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
        """Fold a chunk into the (K, H) buffer of packed keys (value, then earlier position); exact.

        Once the buffer is full, only values at least as good as a unit's K-th can enter, so those
        are gathered (one comparison); when too many are (a saturated unit, say), or at the start,
        torch.topk finds each unit's K + 1 best of the chunk, and a unit whose K-th and (K+1)-th tie
        is ranked over its whole column."""
        t, H = x.shape
        buf = getattr(self, name)
        sign = np.float32(1 if largest else -1)
        cand = None
        if buf.shape[0] == self.K:
            worst = sign * _key_values(buf.min(axis=0))  # each unit's K-th best value, (H,)
            thr = torch.from_numpy(np.ascontiguousarray(worst, dtype=np.float32))
            mask = a >= thr if largest else a <= thr
            counts = mask.view(torch.uint8).sum(0, dtype=torch.int32).numpy().astype(np.int64)
            width = int(counts.max()) if H else 0
            if width <= 4 * self.K:
                rows, units = (v.numpy() for v in torch.nonzero(mask, as_tuple=True))
                if len(rows):
                    order = np.argsort(units, kind="stable")
                    rows, units = rows[order], units[order]
                    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
                    rank = np.arange(len(units)) - first[units]
                    cand = np.full((max(width, 1), H), np.iinfo(np.int64).min, dtype=np.int64)
                    cand[rank, units] = (_order_keys(sign * x[rows, units]) << 32) | (0xFFFFFFFF - (rows + start))
                else:
                    return  # nothing in this chunk can enter
        if cand is None:
            k1 = min(self.K + 1, t)
            vals, idx = torch.topk(a, k1, dim=0, largest=largest, sorted=True)
            vals, idx = vals.numpy(), idx.numpy()
            k = min(self.K, t)
            cand = (_order_keys(sign * vals[:k]) << 32) | (0xFFFFFFFF - (idx[:k].astype(np.int64) + start))
            if k1 > k:
                for u in np.flatnonzero(vals[k - 1] == vals[k]):
                    col = _pack(sign * x[:, u:u + 1], start)
                    cand[:, u] = np.partition(col, col.shape[0] - k, axis=0)[col.shape[0] - k:, 0]
        keys = np.concatenate([buf, cand])
        k = min(self.K, keys.shape[0])
        setattr(self, name, np.partition(keys, keys.shape[0] - k, axis=0)[keys.shape[0] - k:])

    def finish(self) -> dict[str, np.ndarray]:
        top_pos, top_val = _unpack(np.sort(self.top, axis=0), False)
        bot_pos, bot_val = _unpack(np.sort(self.bottom, axis=0), True)
        std = np.sqrt(np.maximum(self.m2 / max(self.n, 1), 0.0))
        out = {"mean": self.mean, "std": std, "min": self.min, "max": self.max,
               "sparsity": self.small / max(self.n, 1), "scale": self.scale,
               "top_pos": top_pos, "top_val": top_val.astype(np.float32),
               "bottom_pos": bot_pos, "bottom_val": bot_val.astype(np.float32)}
        if self.hist is not None:
            out["hist"] = self.hist
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


class _FileSink:
    """(H, T) int8 in a file, unit-major; written by pwrite, so a full disk raises, never SIGBUS."""

    def __init__(self, path: Path, H: int, T: int):
        self.path, self.H, self.T = path, H, T
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.fd, 0, H * T)  # claim the space now: ENOSPC here, not halfway
            else:
                os.ftruncate(self.fd, H * T)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, qt: np.ndarray, start: int) -> None:
        for u in range(self.H):
            os.pwrite(self.fd, qt[u].data, u * self.T + start)

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None

    def array(self) -> np.ndarray:
        return np.memmap(self.path, dtype=np.int8, mode="r", shape=(self.H, self.T))


class _MemorySink:
    def __init__(self, H: int, T: int):
        self.data = np.zeros((H, T), np.int8)

    def write(self, qt: np.ndarray, start: int) -> None:
        self.data[:, start:start + qt.shape[1]] = qt

    def close(self) -> None:
        pass

    def array(self) -> np.ndarray:
        return self.data


# --- the atlas --------------------------------------------------------------------------------

def _series_name(layer: int, kind: str) -> str:
    return f"L{layer}_{kind}"


class Atlas:
    """An index of one model over one corpus; read-only once built. See build_atlas / load_or_build."""

    def __init__(self, meta: dict, small: dict[str, np.ndarray], states: dict[str, np.ndarray], text: str,
                 path: Path | None, notice: str | None = None):
        self.meta = meta
        self._small = small
        self._states = states  # series name -> (H, T) int8 (memmap or array)
        self.text = text
        self.path = path  # the cache entry, or None when not cached
        self.notice = notice
        self._labels: pd.DataFrame | None = None
        self._units: pd.DataFrame | None = None

    # identity
    @property
    def model_key(self) -> str:
        return self.meta["model_key"]

    @property
    def corpus_sha256(self) -> str:
        return self.meta["corpus_sha256"]

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def cell(self) -> str:
        return self.meta["cell"]

    @property
    def num_layers(self) -> int:
        return self.meta["num_layers"]

    @property
    def hidden_size(self) -> int:
        return self.meta["hidden_size"]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.meta["kinds"])

    @property
    def block(self) -> int:
        return self.meta["block"]

    @property
    def top_k(self) -> int:
        return self.meta["top_k"]

    @property
    def unknown(self) -> dict[str, int]:
        return dict(self.meta.get("unknown") or {})

    @property
    def cached(self) -> bool:
        return self.path is not None

    def __len__(self) -> int:
        return self.meta["chars"]

    def check(self, model: CharRNN) -> None:
        """Raise ConfigError unless `model` is the model this atlas was built from (weights hash)."""
        key = model_key(model)
        if key != self.model_key:
            raise ConfigError(f"this atlas was built from another model (weights {self.model_key[:12]}, "
                              f"this one {key[:12]}): build an atlas for this model")

    def _series(self, layer: int, kind: str) -> str:
        if not isinstance(layer, (int, np.integer)) or not 0 <= layer < self.num_layers:
            raise ConfigError(f"layer must be from 0 to {self.num_layers - 1}, not {layer!r}")
        if kind not in self.kinds:
            raise ConfigError(f"a {self.cell.upper()} atlas has no {kind!r}; it has {', '.join(self.kinds)}")
        return _series_name(int(layer), kind)

    def _unit(self, layer: int, kind: str, unit: int) -> tuple[str, int]:
        s = self._series(layer, kind)
        if not isinstance(unit, (int, np.integer)) or not 0 <= unit < self.hidden_size:
            raise ConfigError(f"unit must be from 0 to {self.hidden_size - 1}, not {unit!r}")
        return s, int(unit)

    def _get(self, series: str, key: str) -> np.ndarray:
        return self._small[f"{series}.{key}"]

    # per-unit statistics
    @property
    def units(self) -> pd.DataFrame:
        """One row per (layer, kind, unit): mean, std, min, max, sparsity (fraction |a| < 0.1), the
        gate's mean (f_mean for an LSTM, z_mean for a GRU) and tau = -1 / ln(mean) in characters."""
        if self._units is None:
            frames = []
            gate = GATE[self.cell]
            for layer in range(self.num_layers):
                for kind in self.kinds:
                    s = _series_name(layer, kind)
                    cols = {"layer": layer, "kind": kind, "unit": np.arange(self.hidden_size)}
                    for k in ("mean", "std", "min", "max", "sparsity"):
                        cols[k] = self._get(s, k).astype(np.float64)
                    if gate:
                        g = self._small[f"L{layer}.{gate}_mean"]
                        cols[f"{gate}_mean"] = g
                        cols["tau"] = tau(g)
                    frames.append(pd.DataFrame(cols))
            self._units = pd.concat(frames, ignore_index=True)
        return self._units

    def gate_mean(self, layer: int) -> np.ndarray:
        """Mean forget gate f (LSTM) or update gate z (GRU) of every unit of a layer, (H,)."""
        gate = GATE[self.cell]
        if gate is None:
            raise ConfigError("a tanh RNN has no gates")
        self._series(layer, "h")
        return self._small[f"L{layer}.{gate}_mean"]

    def top(self, layer: int, kind: str, unit: int, k: int | None = None) -> list[tuple[int, float]]:
        """The k highest (position, value) pairs of a unit, highest first (ties: earlier first); exact."""
        s, u = self._unit(layer, kind, unit)
        k = self.top_k if k is None else k
        return [(int(p), float(v)) for p, v in zip(self._get(s, "top_pos")[:k, u], self._get(s, "top_val")[:k, u])]

    def bottom(self, layer: int, kind: str, unit: int, k: int | None = None) -> list[tuple[int, float]]:
        """The k lowest (position, value) pairs, lowest first; exact."""
        s, u = self._unit(layer, kind, unit)
        k = self.top_k if k is None else k
        return [(int(p), float(v)) for p, v in
                zip(self._get(s, "bottom_pos")[:k, u], self._get(s, "bottom_val")[:k, u])]

    # compact states
    def scales(self, layer: int, kind: str) -> np.ndarray:
        """(blocks, H) float32: the int8 scale of each block of `block` characters and unit."""
        return self._get(self._series(layer, kind), "scale")

    def _block_scale(self, s: str, start: int, end: int) -> np.ndarray:
        """(end - start, H) per-row scales."""
        rows = np.arange(start, end) // self.block
        return self._get(s, "scale")[rows]

    def _window(self, start: int, end: int | None) -> tuple[int, int]:
        T = len(self)
        end = T if end is None else end
        if not (0 <= start <= end <= T):
            raise ConfigError(f"the window must lie within 0..{T:,}, not {start}..{end}")
        return int(start), int(end)

    def states(self, layer: int, kind: str, start: int = 0, end: int | None = None) -> np.ndarray:
        """(end - start, H) float32: the stored states, dequantised (|error| <= scale / 2)."""
        s = self._series(layer, kind)
        start, end = self._window(start, end)
        q = np.asarray(self._states[s][:, start:end])  # (H, n)
        return (q.T.astype(np.float32) * self._block_scale(s, start, end)).astype(np.float32)

    def unit_states(self, layer: int, kind: str, units, start: int = 0, end: int | None = None) -> np.ndarray:
        """(len(units), end - start) float32 for a few units: rows are contiguous on disk, so cheap."""
        s = self._series(layer, kind)
        start, end = self._window(start, end)
        units = np.asarray(units, dtype=np.int64).ravel()
        if units.size and (units.min() < 0 or units.max() >= self.hidden_size):
            raise ConfigError(f"units must be from 0 to {self.hidden_size - 1}")
        q = np.asarray(self._states[s][units, start:end], dtype=np.float32)  # (S, n)
        return q * self._block_scale(s, start, end)[:, units].T

    def unit_values(self, layer: int, kind: str, unit: int, start: int = 0, end: int | None = None) -> np.ndarray:
        """(end - start,) float32: one unit's stored states over a window."""
        s, u = self._unit(layer, kind, unit)
        return self.unit_states(layer, kind, [u], start, end)[0]

    def error_bound(self, layer: int, kind: str) -> np.ndarray:
        """(H,) the largest |stored - true| any character of each unit can have: max over blocks of scale / 2."""
        return self.scales(layer, kind).max(axis=0) / 2

    def context(self, pos: int, width: int = 40) -> tuple[int, str]:
        """(start, text[start:pos + width + 1]) around position pos, start = max(0, pos - width)."""
        if not 0 <= pos < len(self):
            raise ConfigError(f"position must be from 0 to {len(self) - 1:,}, not {pos}")
        start = max(0, pos - width)
        return start, self.text[start:pos + width + 1]

    # distributions
    def histogram(self, layer: int, kind: str, unit: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges). h: 40 bins over [-1, 1], counted exactly from the float32 states during the
        build (bins [e_k, e_k+1), the last closed, as np.histogram). c: 40 bins over [-max|c|, max|c|]
        (max|c| exact), counted from the stored states: a value within scale / 2 of an edge may be
        counted one bin off."""
        s, u = self._unit(layer, kind, unit)
        if kind == "h":
            return self._get(s, "hist")[:, u].copy(), _H_EDGES.astype(np.float64)
        m = float(max(abs(self._get(s, "min")[u]), abs(self._get(s, "max")[u]))) or 1.0
        return np.histogram(self.unit_values(layer, kind, unit), bins=C_BINS, range=(-m, m))

    def quantiles(self, layer: int, kind: str, unit: int, qs=QUANTILES) -> np.ndarray:
        """Quantiles of the stored states (linear interpolation); each within scale / 2 of the exact one."""
        return np.quantile(self.unit_values(layer, kind, unit), qs)

    def deciles(self, layer: int, kind: str, unit: int, n: int = 3) -> list[dict]:
        """Per decile band [q_d, q_d+1) of the stored states (the last band closed): its bounds and up to n
        example positions whose stored value falls in it, spread evenly through the corpus."""
        x = self.unit_values(layer, kind, unit)
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

    # labels
    def labels(self, hypotheses: dict | None = None) -> pd.DataFrame:
        """Every unit against every hypothesis (probes.HYPOTHESES by default), on the stored states:
        columns layer, kind, unit, hypothesis, binary, auroc, direction, score, corr, and probes.evidence's
        positives, spans, flagged, reason for the hypothesis over the atlas text; best score first.
        The scores follow probes.rank_units' conventions; one sort per unit serves every hypothesis, and
        the result is cached beside the atlas (keyed by the hypotheses' names and labels)."""
        if hypotheses is None and self._labels is not None:
            return self._labels
        df = _load_or_score_labels(self, hypotheses)
        if hypotheses is None:
            self._labels = df
        return df

    def best_labels(self, hypotheses: dict | None = None) -> pd.DataFrame:
        """Each unit's best hypothesis: layer, kind, unit, hypothesis, direction, auroc, score, corr."""
        df = self.labels(hypotheses).dropna(subset=["score"])
        best = df.sort_values("score", ascending=False, kind="stable").drop_duplicates(["layer", "kind", "unit"])
        return best.sort_values(["layer", "kind", "unit"]).reset_index(drop=True)

    def best_units(self, hypotheses: dict | None = None) -> pd.DataFrame:
        """Each hypothesis's best unit (over every layer and kind), best score first."""
        df = self.labels(hypotheses).dropna(subset=["score"])
        return df.sort_values("score", ascending=False, kind="stable").drop_duplicates("hypothesis") \
            .reset_index(drop=True)


def tau(gate_mean) -> np.ndarray:
    """Memory time constant -1 / ln(mean gate), in characters: inf at a mean of 1, 0 at 0."""
    g = np.asarray(gate_mean, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(g >= 1.0, np.inf, np.where(g <= 0.0, 0.0, -1.0 / np.log(np.clip(g, 1e-300, 1.0))))


# --- building ---------------------------------------------------------------------------------

def _settings(chunk: int, top_k: int) -> dict:
    return {"block": chunk, "top_k": top_k, "h_bins": H_BINS, "sparse_below": SPARSE_BELOW}


def settings(chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K) -> dict:
    """The build settings that enter the cache key (cache_key(model_key, text_sha256, settings()))."""
    return _settings(chunk, top_k)


def entry_key(model: CharRNN | str, text: str, chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K) -> str:
    """The cache key of (model or its model_key, text, settings): the entry's folder name."""
    mkey = model if isinstance(model, str) else model_key(model)
    return cache_key(mkey, text_sha256(text), _settings(chunk, top_k))


def _check_settings(chunk, top_k) -> None:
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ConfigError(f"chunk must be a whole number of at least 1, not {chunk!r}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < MIN_TOP_K:
        raise ConfigError(f"top_k must be a whole number of at least {MIN_TOP_K}, not {top_k!r}")


def _workdir(cache_dir: Path, key: str, need: int) -> tuple[Path | None, str | None, bool]:
    """A folder to build in: (path, notice, cached). Inside the cache folder when it can be written and
    has room; else the system's temporary folder (not cached); else (None, notice, False): memory."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _recover(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-{os.getpid()}-", dir=cache_dir))
        free = shutil.disk_usage(cache_dir).free
        if free < need:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(28, f"{free / 2**20:,.0f} MB free, the atlas needs about {need / 2**20:,.0f} MB")
        return tmp, None, True
    except OSError as e:
        why = f"the atlas cache folder {cache_dir} cannot be used ({e.strerror or e})"
    try:
        tmp = Path(tempfile.mkdtemp(prefix="rnnviz-atlas-"))
        if shutil.disk_usage(tmp).free < need:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(28, "no room")
        atexit.register(shutil.rmtree, tmp, True)
        return tmp, f"{why}: built in a temporary folder, not cached", False
    except OSError:
        return None, f"{why}: built in memory, not cached", False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # a build of this process is running in another thread (a failed one cleans up itself)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _recover(cache_dir: Path) -> None:
    """Drop leftovers of builds that died: `.KEY.tmp-PID-*` and `.KEY.old-PID-*` of dead processes."""
    for p in cache_dir.glob(".*.*-*"):
        m = re.match(r"^\.[0-9a-f]+\.(?:tmp|old)-(\d+)", p.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@torch.no_grad()
def build_atlas(model: CharRNN, text: str, *, name: str = "text", notices: list[str] | None = None,
                cache_dir=None, chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K,
                stop_event: threading.Event | None = None, report=None, cache: bool = True) -> Atlas:
    """Index `model` over `text` (see the module doc); cached in `cache_dir` (default: RNNVIZ_ATLAS_DIR
    or <repo>/atlas_cache) unless cache=False. `report(done=, total=, message=)` gets progress in
    characters; once `stop_event` is set the build stops, leaves nothing behind and raises Cancelled."""
    _check_settings(chunk, top_k)
    if not isinstance(text, str) or not text:
        raise TextError("the atlas corpus is empty: give at least one character")
    report = report or (lambda **kw: None)
    notices = list(notices or [])
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cell, L, H = model.cell, model.config.num_layers, model.config.hidden_size
    T = len(text)
    kinds = kinds_of(cell)
    unknown = model.vocab.unknown(text)
    if unknown:
        shown = "".join(sorted(unknown))[:40]
        notices.append(f"{sum(unknown.values()):,} characters the model never saw (read as the unknown symbol "
                       f"\ufffd): {shown!r}")
    mkey, ckey = model_key(model), text_sha256(text)
    settings = _settings(chunk, top_k)
    key = cache_key(mkey, ckey, settings)
    n_blocks = -(-T // chunk)
    need = L * len(kinds) * H * T + 16 * 2**20
    if cache:
        work, why, cached = _workdir(cache_dir, key, need)
    else:
        work, why, cached = None, None, False
    if why:
        notices.append(why)
    sinks = {}
    try:
        try:
            for l in range(L):
                for kind in kinds:
                    s = _series_name(l, kind)
                    sinks[s] = _FileSink(work / f"{s}.i8", H, T) if work is not None else _MemorySink(H, T)
        except OSError as e:  # no room after all: memory
            for sink in sinks.values():
                if isinstance(sink, _FileSink):
                    sink.close()
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            work, cached = None, False
            notices.append(f"the atlas could not be written to disk ({e.strerror or e}): built in memory, not cached")
            sinks = {_series_name(l, k): _MemorySink(H, T) for l in range(L) for k in kinds}
        series = {_series_name(l, k): _Series(H, T, top_k, n_blocks, k == "h", sinks[_series_name(l, k)])
                  for l in range(L) for k in kinds}
        gate = GATE[cell]
        gate_sum = [np.zeros(H) for _ in range(L)]
        _stream(model, text, chunk, stop_event, report, series, gate, gate_sum)
        for sink in sinks.values():
            sink.close()
        small: dict[str, np.ndarray] = {}
        for s, ser in series.items():
            for k, v in ser.finish().items():
                small[f"{s}.{k}"] = v
        if gate:
            for l in range(L):
                small[f"L{l}.{gate}_mean"] = gate_sum[l] / T
        meta = {"format_version": FORMAT_VERSION, "key": key, "model_key": mkey, "corpus_sha256": ckey,
                "name": name, "cell": cell, "num_layers": L, "hidden_size": H, "kinds": list(kinds),
                "chars": T, "block": chunk, "top_k": top_k, "settings": settings,
                "unknown": unknown, "notices": notices, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch_version": torch.__version__}
        states = {s: sink.array() for s, sink in sinks.items()}
        path = None
        if cached:
            path = _commit(work, cache_dir, key, meta, small, text)
            if path is None:
                notices.append("the atlas could not be saved to the cache folder: it lives in a temporary folder")
                atexit.register(shutil.rmtree, work, True)
        notice = " ".join(notices) or None
        report(done=T, total=T, message=f"atlas of {T:,} characters ready")
        if path is not None:  # what is returned is what the cache holds (another process's build, maybe)
            try:
                at = load(path)
                at.notice = notice
                return at
            except CacheError:
                pass
        return Atlas(meta, small, states, text, path, notice)
    except BaseException:
        for sink in sinks.values():
            if isinstance(sink, _FileSink) and sink.fd is not None:
                os.close(sink.fd)
                sink.fd = None
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise


def _stream(model, text, chunk, stop_event, report, series, gate, gate_sum) -> None:
    cell, L = model.cell, model.config.num_layers
    T = len(text)
    was_training = model.training
    model.eval()
    try:
        ids_t = torch.from_numpy(model.vocab.encode(text)).to(model.device)
        state = model.init_state(1)
        states = [(state[0][l:l + 1], state[1][l:l + 1]) if cell == "lstm" else state[l:l + 1] for l in range(L)]
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            x = model.embed(ids_t[s:e])
            for l in range(L):
                if stop_event is not None and stop_event.is_set():
                    raise Cancelled("the atlas build was cancelled; nothing was cached")
                params = _layer_params(model, l)
                h, new_state = _run_layer(cell, x, states[l], params)
                first = l == 0
                extra = _layer_extras(cell, model.embed.weight if first else x, h, states[l], params,
                                      ids=ids_t[s:e] if first else None)
                series[_series_name(l, "h")].add(h, s, chunk)
                if cell == "lstm":
                    series[_series_name(l, "c")].add(extra["c"], s, chunk)
                if gate:
                    gate_sum[l] += extra[gate].sum(0, dtype=torch.float64).cpu().numpy()
                states[l] = new_state
                x = h
            report(done=e, total=T, message=f"atlas: {e:,} of {T:,} characters")
    finally:
        model.train(was_training)


def _commit(work: Path, cache_dir: Path, key: str, meta: dict, small: dict, text: str) -> Path | None:
    """Write the small files into the build folder and rename it into place; None if that failed."""
    final = cache_dir / key
    try:
        blob = _npz_bytes(small)
        meta = {**meta, "small_sha256": hashlib.sha256(blob).hexdigest(),
                "state_files": {s: f"{s}.i8" for s in _state_names(meta)}}
        _write(work / SMALL, blob)
        _write(work / TEXT, text.encode("utf-8"))
        _write(work / META, json.dumps(meta, indent=1, allow_nan=False).encode())  # last: marks complete
        with _LOCK:
            if final.exists():  # another build of the same key (elsewhere) won, or a bad one is there
                try:
                    _validate(final, key)
                    shutil.rmtree(work, ignore_errors=True)
                    return final
                except CacheError:
                    _discard(final)
            try:
                os.rename(work, final)
            except OSError:  # another process renamed its build of the same key in first: use that one
                _validate(final, key)
                shutil.rmtree(work, ignore_errors=True)
                return final
        _fsync_dir(cache_dir)
        return final
    except CacheError:
        return None
    except OSError:
        return None


def _discard(entry: Path) -> None:
    """Move a bad entry out of the way (atomic rename), then delete it."""
    old = entry.parent / f".{entry.name}.old-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(entry, old)
    except OSError:
        return
    shutil.rmtree(old, ignore_errors=True)


def _state_names(meta: dict) -> list[str]:
    return [_series_name(l, k) for l in range(meta["num_layers"]) for k in meta["kinds"]]


# --- loading ----------------------------------------------------------------------------------

def _need(cond: bool, why: str) -> None:
    if not cond:
        raise CacheError(why)


def _validate(entry: Path, key: str | None = None) -> tuple[dict, dict, dict, str]:
    """Read and check a cache entry; CacheError for anything wrong. Never unpickles."""
    try:
        raw = (entry / META).read_bytes()
    except OSError as e:
        raise CacheError(f"no readable {META} ({e.strerror or e})") from None
    _need(len(raw) < 4 * 2**20, f"{META} is too large")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"{META} is not valid JSON ({e})") from None
    _need(isinstance(meta, dict), f"{META} is not an object")
    _need(meta.get("format_version") == FORMAT_VERSION,
          f"format version {meta.get('format_version')!r}, this rnnviz writes {FORMAT_VERSION}")
    if key is not None:
        _need(meta.get("key") == key, "the entry's key does not match its folder")
    ints = ("num_layers", "hidden_size", "chars", "block", "top_k")
    _need(all(isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] > 0 for k in ints),
          "sizes missing or not positive whole numbers")
    _need(meta.get("cell") in GATE, "unknown cell")
    _need(meta.get("kinds") == list(kinds_of(meta["cell"])), "kinds do not match the cell")
    for k in ("model_key", "corpus_sha256", "small_sha256", "name"):
        _need(isinstance(meta.get(k), str), f"{k} missing")
    L, H, T, B, K = (meta[k] for k in ints)
    try:
        blob = (entry / SMALL).read_bytes()
        text_bytes = (entry / TEXT).read_bytes()
    except OSError as e:
        raise CacheError(f"a file is missing ({e.strerror or e})") from None
    _need(hashlib.sha256(blob).hexdigest() == meta["small_sha256"], f"{SMALL} fails its checksum")
    _need(hashlib.sha256(text_bytes).hexdigest() == meta["corpus_sha256"], f"{TEXT} fails its checksum")
    text = text_bytes.decode("utf-8")
    _need(len(text) == T, "the text's length does not match")
    import io
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            small = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise CacheError(f"{SMALL} is unreadable ({e})") from None
    nb = -(-T // B)
    k = min(K, T)
    shapes = {"mean": ((H,), "f8"), "std": ((H,), "f8"), "min": ((H,), "f4"), "max": ((H,), "f4"),
              "sparsity": ((H,), "f8"), "scale": ((nb, H), "f4"), "top_pos": ((k, H), "i8"),
              "top_val": ((k, H), "f4"), "bottom_pos": ((k, H), "i8"), "bottom_val": ((k, H), "f4")}
    expected = {}
    for s in _state_names(meta):
        for name, spec in shapes.items():
            expected[f"{s}.{name}"] = spec
        if s.endswith("_h"):
            expected[f"{s}.hist"] = ((H_BINS, H), "i8")
    gate = GATE[meta["cell"]]
    if gate:
        for l in range(L):
            expected[f"L{l}.{gate}_mean"] = ((H,), "f8")
    _need(set(small) == set(expected), f"{SMALL} holds other arrays than expected")
    for name, (shape, dtype) in expected.items():
        a = small[name]
        _need(a.shape == shape and a.dtype == np.dtype(dtype), f"{name} has shape {a.shape} {a.dtype}")
    for s in _state_names(meta):
        for p in ("top_pos", "bottom_pos"):
            a = small[f"{s}.{p}"]
            _need(a.size == 0 or (a.min() >= 0 and a.max() < T), f"{s}.{p} out of range")
        _need(bool(np.isfinite(small[f"{s}.scale"]).all()), f"{s}.scale is not finite")
    states = {}
    for s in _state_names(meta):
        f = entry / f"{s}.i8"
        try:
            size = f.stat().st_size
        except OSError:
            raise CacheError(f"{f.name} is missing") from None
        _need(size == H * T, f"{f.name} has {size:,} bytes, expected {H * T:,}")
        states[s] = np.memmap(f, dtype=np.int8, mode="r", shape=(H, T))
    return meta, small, states, text


def load(entry) -> Atlas:
    """An atlas from a cache entry folder; CacheError if anything is wrong with it."""
    entry = Path(entry)
    meta, small, states, text = _validate(entry)
    return Atlas(meta, small, states, text, entry, " ".join(meta.get("notices") or []) or None)


def lookup(model: CharRNN, text: str, *, cache_dir=None, chunk: int = DEFAULT_CHUNK,
           top_k: int = DEFAULT_TOP_K, model_hash: str | None = None) -> Atlas | None:
    """The cached atlas of (model, text, settings), or None when there is none (or a bad one).
    model_hash: the model's model_key when the caller has it (hashing the weights is skipped)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = entry_key(model_hash or model, text, chunk, top_k)
    entry = cache_dir / key
    if not (entry / META).exists():
        return None
    try:
        meta, small, states, t = _validate(entry, key)
    except CacheError:
        return None
    return Atlas(meta, small, states, t, entry, " ".join(meta.get("notices") or []) or None)


def load_or_build(model: CharRNN, config: dict | None = None, corpus=None, *, cache_dir=None,
                  max_chars: int | None = MAX_CHARS, chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K,
                  stop_event: threading.Event | None = None, report=None) -> Atlas:
    """The atlas of `model` over `corpus` (default: its held-out split; see resolve_corpus), from the
    cache when a valid entry is there, else built (a bad entry is discarded and rebuilt)."""
    _check_settings(chunk, top_k)
    src = resolve_corpus(config, corpus, max_chars)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(model_key(model), text_sha256(src.text), _settings(chunk, top_k))
    entry = cache_dir / key
    rebuilt = None
    if entry.exists():
        try:
            meta, small, states, text = _validate(entry, key)
            notices = list(dict.fromkeys(src.notices + list(meta.get("notices") or [])))
            return Atlas(meta, small, states, text, entry, " ".join(notices) or None)
        except CacheError as e:
            rebuilt = f"the cached atlas was unusable ({e}) and was rebuilt"
            with _LOCK:
                _discard(entry)
    atlas = build_atlas(model, src.text, name=src.name, notices=src.notices, cache_dir=cache_dir, chunk=chunk,
                        top_k=top_k, stop_event=stop_event, report=report)
    if rebuilt:
        atlas.notice = " ".join(x for x in (atlas.notice, rebuilt) if x)
    return atlas


def job_fn(model: CharRNN, config: dict | None = None, corpus=None, **kw):
    """fn(stop_event, report) for jobs.Job: the atlas, or None when cancelled (the Job says 'stopped')."""
    def run(stop_event, report):
        try:
            return load_or_build(model, config, corpus, stop_event=stop_event, report=report, **kw)
        except Cancelled:
            return None
    return run


# --- labels -----------------------------------------------------------------------------------

def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis of x (B, T), ties sharing their average rank; float64."""
    x = np.asarray(x)
    B, T = x.shape
    order = np.argsort(x, axis=1)  # ties get their average rank below, so the sort need not be stable
    xs = np.take_along_axis(x, order, axis=1)
    idx = np.arange(T)
    first = np.ones((B, T), dtype=bool)
    first[:, 1:] = xs[:, 1:] != xs[:, :-1]
    last = np.ones((B, T), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, idx, T)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((B, T))
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    return ranks


def score_units(x: np.ndarray, targets: np.ndarray, binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and Pearson r of units x (B, T) against targets (T, N), with probes' conventions: AUROC =
    P(unit higher where the hypothesis holds), ties one half, NaN when a class is empty (or the target
    is a count); r = 0 for a constant unit or target. Returns (auroc (B, N), corr (B, N))."""
    x = np.asarray(x)
    y = np.asarray(targets, dtype=np.float64)
    B, T = x.shape
    N = y.shape[1]
    auroc = np.full((B, N), np.nan)
    bin_cols = np.flatnonzero(binary)
    if bin_cols.size:
        ranks = average_ranks(x)  # once per unit, for every yes/no hypothesis
        pos = y[:, bin_cols]
        n1 = pos.sum(0)
        n0 = T - n1
        rank_sum = ranks @ pos  # (B, Nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            au = (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0)
        au[:, (n1 == 0) | (n0 == 0)] = np.nan
        auroc[:, bin_cols] = au
    x = x.astype(np.float64)
    xc = x - x.mean(1, keepdims=True)
    yc = y - y.mean(0)
    constant_x = np.ptp(x, axis=1) == 0
    constant_y = np.ptp(y, axis=0) == 0
    den = np.sqrt((xc * xc).sum(1))[:, None] * np.sqrt((yc * yc).sum(0))[None, :]
    corr = np.zeros((B, N))
    ok = (den > 0) & ~constant_x[:, None] & ~constant_y[None, :]
    corr[ok] = (xc @ yc)[ok] / den[ok]
    return auroc, corr


def _hypothesis_targets(text: str, hypotheses: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, cols = [], []
    for name, fn in hypotheses.items():
        y = np.asarray(fn(text), dtype=np.float64).ravel()
        if len(y) != len(text):
            raise ConfigError(f"hypothesis {name!r} gives {len(y)} labels for {len(text)} characters")
        names.append(name)
        cols.append(y)
    Y = np.stack(cols, axis=1) if cols else np.zeros((len(text), 0))
    binary = np.array([probes.is_binary(Y[:, j]) for j in range(Y.shape[1])], dtype=bool)
    return names, Y, binary


def _score_atlas(atlas: Atlas, names: list[str], Y: np.ndarray, binary: np.ndarray, block: int = 64) -> dict:
    L, H = atlas.num_layers, atlas.hidden_size
    out = {}
    for l in range(L):
        for kind in atlas.kinds:
            au = np.empty((H, len(names)))
            r = np.empty((H, len(names)))
            for a in range(0, H, block):
                units = np.arange(a, min(H, a + block))
                au[units], r[units] = score_units(atlas.unit_states(l, kind, units), Y, binary)
            out[f"{_series_name(l, kind)}.auroc"] = au
            out[f"{_series_name(l, kind)}.corr"] = r
    return out


def _labels_frame(atlas: Atlas, names: list[str], binary: np.ndarray, scores: dict,
                  Y: np.ndarray | None = None) -> pd.DataFrame:
    frames = []
    H = atlas.hidden_size
    for l in range(atlas.num_layers):
        for kind in atlas.kinds:
            au, r = scores[f"{_series_name(l, kind)}.auroc"], scores[f"{_series_name(l, kind)}.corr"]
            for j, name in enumerate(names):
                b = bool(binary[j])
                score = np.maximum(au[:, j], 1 - au[:, j]) if b else np.abs(r[:, j])
                lean = au[:, j] - 0.5 if b else r[:, j]
                frames.append(pd.DataFrame({
                    "layer": l, "kind": kind, "unit": np.arange(H), "hypothesis": name, "binary": b,
                    "auroc": au[:, j], "direction": np.where(lean > 0, "high", np.where(lean < 0, "low", "")),
                    "score": score, "corr": r[:, j]}))
    df = pd.concat(frames, ignore_index=True)
    evidence = getattr(probes, "evidence", None)
    if evidence is not None and Y is not None:  # what each hypothesis's score rests on (labels only: cheap)
        ev = pd.DataFrame([{"hypothesis": name, **{k: v for k, v in evidence(Y[:, j]).items()
                                                   if k in ("positives", "spans", "flagged", "reason")}}
                           for j, name in enumerate(names)])
        df = df.merge(ev, on="hypothesis", how="left")
    return df.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _load_or_score_labels(atlas: Atlas, hypotheses: dict | None) -> pd.DataFrame:
    hyps = dict(probes.HYPOTHESES) if hypotheses is None else dict(hypotheses)
    names, Y, binary = _hypothesis_targets(atlas.text, hyps)
    digest = hashlib.sha256(json.dumps(names).encode() + Y.astype(np.float64).tobytes()).hexdigest()
    f = atlas.path / LABELS if atlas.path is not None else None
    if f is not None and f.exists():
        try:
            with np.load(f, allow_pickle=False) as z:
                if str(z["digest"]) == digest:
                    scores = {k: z[k] for k in z.files if k != "digest"}
                    shape = (atlas.hidden_size, len(names))
                    if all(v.shape == shape and v.dtype == np.float64 for v in scores.values()) and \
                            len(scores) == 2 * atlas.num_layers * len(atlas.kinds):
                        return _labels_frame(atlas, names, binary, scores, Y)
        except (ValueError, OSError, KeyError, EOFError):
            pass  # unreadable: recomputed below
    scores = _score_atlas(atlas, names, Y, binary)
    if f is not None:  # best effort: a read-only cache just recomputes next time
        try:
            tmp = f.parent / f".{LABELS}.tmp-{os.getpid()}-{threading.get_ident()}"
            _write(tmp, _npz_bytes({**scores, "digest": np.array(digest)}))
            os.replace(tmp, f)
        except OSError:
            pass
    return _labels_frame(atlas, names, binary, scores, Y)


# --- export for LSTMVis -----------------------------------------------------------------------

def _dict_token(ch: str) -> str:
    """A character as a words.dict token: LSTMVis splits lines on whitespace, so newlines, tabs and
    other invisible characters are written escaped ('\\n'); a space is a line starting with a space."""
    if ch == " ":
        return " "
    if ch.isspace() or not ch.isprintable():
        return ch.encode("unicode_escape").decode("ascii")
    return ch


def export_lstmvis(atlas: Atlas, folder, vocab: list[str], rows: int = 8192) -> list[Path]:
    """Write the atlas in LSTMVis's documented layout: states.h5 (per layer l = 1..L a dataset
    `states{l}`, the cell state c of an LSTM, and `output{l}`, the hidden state h; each (T, H) float32,
    the stored states dequantised), train.h5 (`word_ids`, (T,) int64: each character's vocabulary id),
    words.dict ("token id" per line) and lstm.yml. Returns the paths written."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("the LSTMVis export needs h5py: pip install h5py") from None

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    T, H = len(atlas), atlas.hidden_size
    from .vocab import Vocab

    v = Vocab(vocab)
    types = []
    with h5py.File(folder / "states.h5", "w") as f:
        for l in range(atlas.num_layers):
            for kind in atlas.kinds:
                name = f"{'states' if kind == 'c' else 'output'}{l + 1}"
                ds = f.create_dataset(name, shape=(T, H), dtype="float32")
                for s in range(0, T, rows):
                    ds[s:min(T, s + rows)] = atlas.states(l, kind, s, min(T, s + rows))
                entry = {"type": "state" if kind == "c" else "output", "layer": l + 1, "path": name}
                if kind == "h":
                    entry["transform"] = "none"  # h is already in [-1, 1]; LSTMVis applies tanh otherwise
                types.append(entry)
    with h5py.File(folder / "train.h5", "w") as f:
        f.create_dataset("word_ids", data=v.encode(atlas.text))
    with open(folder / "words.dict", "w", encoding="utf-8", newline="\n") as f:
        for i, ch in enumerate(v.chars):
            f.write(f"{_dict_token(ch)} {i}\n")
    config = {"name": f"rnnviz {atlas.cell.upper()} on {atlas.name}",
              "description": f"exported by rnnviz: {atlas.num_layers}x{H} {atlas.cell.upper()}, {T:,} characters",
              "files": {"states": "states.h5", "train": "train.h5", "words": "words.dict"},
              "word_sequence": {"file": "train", "path": "word_ids", "dict_file": "words"},
              "states": {"file": "states", "types": types}}
    # JSON is YAML: no YAML writer needed
    (folder / "lstm.yml").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [folder / n for n in ("states.h5", "train.h5", "words.dict", "lstm.yml")]
