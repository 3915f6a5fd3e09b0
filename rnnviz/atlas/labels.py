"""Every unit against every hypothesis, on the stored states, cached beside the atlas in labels.npz."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import probes
from ..errors import ConfigError
from .stats import _series_name
from .store import LABELS, _npz_bytes, _write

if TYPE_CHECKING:  # annotations only: core imports this module
    from .core import Atlas


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
