"""The Atlas: read-only access to one built index (statistics, compact states, contexts, labels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..model import CharRNN
from .corpus import model_key
from .labels import _load_or_score_labels
from .stats import _H_EDGES, C_BINS, GATE, QUANTILES, _series_name, decile_bands, tau


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

    def peaks(self, layer: int, kind: str, unit: int, which: str = "top", k: int | None = None
              ) -> list[tuple[int, float]]:
        """Up to k separated peaks (position, value), best first: greedy, each more than SEPARATION characters
        from every earlier one; exact (the same picks as over every character). Fewer than k (at most
        PEAKS) only when the corpus holds no more."""
        if which not in ("top", "bottom"):
            raise ConfigError(f"which must be 'top' or 'bottom', not {which!r}")
        s, u = self._unit(layer, kind, unit)
        pos, val = self._get(s, f"{which}_peak_pos")[:k, u], self._get(s, f"{which}_peak_val")[:k, u]
        return [(int(p), float(v)) for p, v in zip(pos, val) if p >= 0]

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
        return decile_bands(self.unit_values(layer, kind, unit), n)

    # labels
    def labels(self, hypotheses: dict | None = None) -> pd.DataFrame:
        """Every unit against every hypothesis (hypotheses.HYPOTHESES by default), on the stored states:
        columns layer, kind, unit, hypothesis, binary, auroc, direction, score, corr, and probes.evidence's
        positives, spans, flagged, reason for the hypothesis over the atlas text; best score first.
        The scores follow probes.rank_units' conventions; a hypothesis with a hypotheses.hypothesis_mask is
        scored (and its evidence counted) on the characters the mask keeps, as Neuron search does. One
        sort per unit serves every unmasked hypothesis, and the result is cached beside the atlas (keyed
        by the hypotheses' names, labels and masks)."""
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
