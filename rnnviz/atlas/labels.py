"""Every unit against every hypothesis, on the stored states, cached beside the atlas in labels.npz."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from .. import probes
from ..hypotheses import HYPOTHESES, hypothesis_mask, is_binary
from ..errors import ConfigError
from .stats import _series_name
from .store import LABELS, _npz_bytes, _write


class AtlasView(Protocol):
    """What scoring reads of an atlas (core.Atlas has it); a protocol, so that core, which calls this
    module, is not imported back."""

    text: str
    path: Path | None
    num_layers: int
    hidden_size: int
    kinds: tuple[str, ...]

    def unit_states(self, layer: int, kind: str, units, start: int = 0, end: int | None = None) -> np.ndarray: ...


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis of x (B, T), ties sharing their average rank; float64."""
    x = np.asarray(x)
    B, T = x.shape
    order = np.argsort(x, axis=1)  # ties get their average rank below, so the sort need not be stable
    xs = np.take_along_axis(x, order, axis=1)
    ranks = np.empty((B, T))
    np.put_along_axis(ranks, order, probes._average_ranks(xs), axis=1)
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


# Bump when what the scores mean changes, so every labels.npz written before is rescored (2: masks).
LABELS_VERSION = 2


def _hypothesis_targets(text: str, hypotheses: dict) -> tuple[list[str], np.ndarray, np.ndarray, list]:
    """names, labels Y (T, N), binary (N,) and each hypothesis's mask: hypothesis_mask, (T,) bool
    of the characters to count, or None for all (as Neuron search counts them)."""
    names, cols, masks = [], [], []
    for name, fn in hypotheses.items():
        y = np.asarray(fn(text), dtype=np.float64).ravel()
        if len(y) != len(text):
            raise ConfigError(f"hypothesis {name!r} gives {len(y)} labels for {len(text)} characters")
        mask = hypothesis_mask(name, text)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool).ravel()
            if len(mask) != len(text):
                raise ConfigError(f"hypothesis {name!r} masks {len(mask)} of {len(text)} characters")
        names.append(name)
        cols.append(y)
        masks.append(mask)
    Y = np.stack(cols, axis=1) if cols else np.zeros((len(text), 0))
    # yes/no is judged on the counted labels, as probes.score_units does; with nothing counted, on all of
    # them (then the AUROC is NaN, as for an empty class)
    binary = np.array([is_binary(Y[:, j] if m is None or not m.any() else Y[m, j])
                       for j, m in enumerate(masks)], dtype=bool)
    return names, Y, binary, masks


def _score_atlas(atlas: AtlasView, names: list[str], Y: np.ndarray, binary: np.ndarray, masks: list,
                 block: int = 64) -> dict:
    """auroc and corr (H, N) per series. The unmasked hypotheses share one sort per unit; a masked one
    is scored on its counted characters only (its own sort), so it equals probes.score_units(mask=)."""
    L, H, N = atlas.num_layers, atlas.hidden_size, len(names)
    plain = [j for j in range(N) if masks[j] is None]
    masked = [j for j in range(N) if masks[j] is not None]
    out = {}
    for l in range(L):
        for kind in atlas.kinds:
            au = np.full((H, N), np.nan)
            r = np.full((H, N), np.nan)  # NaN stays only where a mask counts nothing
            for a in range(0, H, block):
                units = np.arange(a, min(H, a + block))
                x = atlas.unit_states(l, kind, units)
                if plain:
                    au[a:a + len(units), plain], r[a:a + len(units), plain] = score_units(
                        x, Y[:, plain], binary[plain])
                for j in masked:
                    m = masks[j]
                    if m.any():
                        au[a:a + len(units), [j]], r[a:a + len(units), [j]] = score_units(
                            x[:, m], Y[m][:, [j]], binary[[j]])
            out[f"{_series_name(l, kind)}.auroc"] = au
            out[f"{_series_name(l, kind)}.corr"] = r
    return out


def _labels_frame(atlas: AtlasView, names: list[str], binary: np.ndarray, scores: dict,
                  Y: np.ndarray | None = None, masks: list | None = None) -> pd.DataFrame:
    frames = []
    H = atlas.hidden_size
    masks = masks if masks is not None else [None] * len(names)
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
    if Y is not None:  # what each hypothesis's score rests on, over the characters it counts (labels only: cheap)
        ev = pd.DataFrame([{"hypothesis": name, **{k: v for k, v in probes.evidence(Y[:, j], masks[j]).items()
                                                   if k in ("positives", "spans", "flagged", "reason")}}
                           for j, name in enumerate(names)])
        df = df.merge(ev, on="hypothesis", how="left")
    return df.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _digest(names: list[str], Y: np.ndarray, masks: list) -> str:
    """What the cached scores depend on: the version, the hypotheses' names, labels and masks."""
    h = hashlib.sha256(json.dumps({"labels_version": LABELS_VERSION, "names": names}).encode())
    h.update(Y.astype(np.float64).tobytes())
    for m in masks:
        h.update(b"-" if m is None else b"m" + np.packbits(m).tobytes())
    return h.hexdigest()


def _read_scores(f: Path, digest: str, shape: tuple[int, int], names: set[str]) -> dict | None:
    """The scores in labels.npz if it is whole and was computed for `digest`, else None: a truncated,
    garbage or foreign file is never trusted (it is rescored and rewritten)."""
    try:
        with np.load(f, allow_pickle=False) as z:
            if "digest" not in z.files or str(z["digest"]) != digest:
                return None
            scores = {k: z[k] for k in z.files if k != "digest"}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # np.load raises BadZipFile (not an OSError) for a damaged zip
    ok = set(scores) == names and all(v.shape == shape and v.dtype == np.float64 for v in scores.values())
    return scores if ok else None


def _load_or_score_labels(atlas: AtlasView, hypotheses: dict | None) -> pd.DataFrame:
    hyps = dict(HYPOTHESES) if hypotheses is None else dict(hypotheses)
    names, Y, binary, masks = _hypothesis_targets(atlas.text, hyps)
    digest = _digest(names, Y, masks)
    f = atlas.path / LABELS if atlas.path is not None else None
    if f is not None and f.exists():
        expected = {f"{_series_name(l, k)}.{x}" for l in range(atlas.num_layers) for k in atlas.kinds
                    for x in ("auroc", "corr")}
        scores = _read_scores(f, digest, (atlas.hidden_size, len(names)), expected)
        if scores is not None:
            return _labels_frame(atlas, names, binary, scores, Y, masks)
    scores = _score_atlas(atlas, names, Y, binary, masks)
    if f is not None:  # best effort: a read-only cache just recomputes next time
        try:
            tmp = f.parent / f".{LABELS}.tmp-{os.getpid()}-{threading.get_ident()}"
            _write(tmp, _npz_bytes({**scores, "digest": np.array(digest)}))
            os.replace(tmp, f)
        except OSError:
            pass
    return _labels_frame(atlas, names, binary, scores, Y, masks)
