"""Select-and-match, as LSTMVis does it: pick the units that are on through a span, then find the
spans of a corpus where the same units are on.

Selection: the units whose state stays >= threshold at every character of [start, end), and, with
padding, stays < threshold at every character of the `before` characters before the span and the
`after` characters after it (the "off" padding of LSTMVis).

Matching: per character of the corpus, how many of the selected units are on (>= threshold);
candidate spans are the maximal runs where at least `min_overlap` of them are on. Each candidate's
overlap is the number of selected units on at every character of it. Candidates are ranked as
LSTMVis ranks them: by overlap (more first), then by how close their length is to the query's, then
by position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ConfigError


def select_units(states: np.ndarray, start: int, end: int, threshold: float, before: int = 0,
                 after: int = 0) -> np.ndarray:
    """Indices of the units (columns of states (T, H)) on through [start, end) and off in the padding.

    ConfigError for a span of fewer than two characters, a span outside the text, or a threshold
    that selects no unit or every unit (with the count)."""
    x = np.asarray(states)
    if x.ndim != 2:
        raise ConfigError(f"states must be a (characters, units) array, not shape {x.shape}")
    T, H = x.shape
    for name, v in (("start", start), ("end", end), ("before", before), ("after", after)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ConfigError(f"{name} must be a whole number, not {v!r}")
    if not (0 <= start < end <= T):
        raise ConfigError(f"the span {start}..{end} must lie within the text's {T:,} characters")
    if end - start < 2:
        raise ConfigError(f"select a span of at least two characters (this one has {end - start})")
    if before < 0 or after < 0:
        raise ConfigError("the off padding cannot be negative")
    if not np.isfinite(threshold):
        raise ConfigError(f"the threshold must be a finite number, not {threshold!r}")
    on = (x[start:end] >= threshold).all(axis=0)
    if before:
        on &= (x[max(0, start - before):start] < threshold).all(axis=0)
    if after:
        on &= (x[end:end + after] < threshold).all(axis=0)
    sel = np.flatnonzero(on)
    pad = f" and below it in the padding ({before} before, {after} after)" if before or after else ""
    if sel.size == 0:
        raise ConfigError(f"no unit stays at or above {threshold:g} through characters {start}..{end}{pad}: "
                          "lower the threshold or shorten the span")
    if sel.size == H:
        raise ConfigError(f"all {H} units stay at or above {threshold:g} through characters {start}..{end}{pad}: "
                          "a selection of every unit matches everywhere; raise the threshold")
    return sel


def suggest_threshold(states: np.ndarray, start: int, end: int, units: int = 10, step: float = 0.01) -> float:
    """A threshold that selects about `units` units for the span [start, end): the `units`-th highest of
    the units' lowest values over the span, rounded down to `step` (so those units stay on through it)."""
    x = np.asarray(states)[start:end]
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError("give a (characters, units) array and a span of at least one character")
    lows = np.sort(x.min(axis=0))[::-1]  # (H,) each unit's lowest value in the span, highest first
    k = min(max(1, units), len(lows)) - 1
    return float(np.floor(lows[k] / step) * step)


@dataclass
class Matches:
    """The ranked matches of one query; `table` is best first."""

    units: np.ndarray  # (S,) the selected units
    threshold: float
    length: int  # the query span's length
    table: pd.DataFrame  # start, end, length, overlap, fraction, mean_on
    heatmap: np.ndarray  # (S, M): each selected unit's mean state over each match

    def __len__(self) -> int:
        return len(self.table)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the maximal runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def match(unit_states: np.ndarray, threshold: float, length: int, *, min_overlap: int | None = None,
          top: int = 20, exclude: tuple[int, int] | None = None, units=None, min_length: int | None = None) -> Matches:
    """Rank the corpus spans where the selected units are on.

    unit_states (S, T): the selected units' states over the corpus (Atlas.unit_states gives them from
    the compact states). min_overlap: the least number of units on for a character to join a candidate
    (default: half of them, rounded up). exclude: a span [a, b) to leave out (the query itself, when
    it comes from the corpus). min_length: the shortest candidate kept (default: half the query's length,
    at least 2), since a single character on which every unit happens to be on says little.
    Returns the `top` best matches."""
    x = np.asarray(unit_states)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError("give the states of at least one selected unit, shape (units, characters)")
    S, T = x.shape
    if length < 1:
        raise ConfigError(f"the query length must be at least 1, not {length}")
    m = -(-S // 2) if min_overlap is None else int(min_overlap)
    if not 1 <= m <= S:
        raise ConfigError(f"min_overlap must be from 1 to {S} (the selected units), not {min_overlap}")
    on = x >= threshold  # (S, T)
    count = on.sum(axis=0, dtype=np.int32)  # (T,)
    starts, ends = _runs(count >= m)
    shortest = max(2, length // 2) if min_length is None else max(1, int(min_length))
    keep = (ends - starts) >= shortest
    starts, ends = starts[keep], ends[keep]
    if exclude is not None:
        a, b = exclude
        keep = (ends <= a) | (starts >= b)
        starts, ends = starts[keep], ends[keep]
    lengths = ends - starts
    overlap = np.zeros(len(starts), dtype=np.int64)
    if len(starts):
        # units on at every character of each candidate: the minimum of `on` over each run, by reduceat
        # over the run bounds interleaved (runs are separated by at least one character, so the bounds
        # increase; a bound at T is dropped, reduceat runs to the end by itself)
        bounds = np.stack([starts, ends], axis=1).ravel()
        bounds = bounds[bounds < T]
        mins = np.minimum.reduceat(on.view(np.uint8), bounds, axis=1)[:, ::2]  # (S, R)
        overlap = mins.sum(axis=0, dtype=np.int64)
    closeness = np.abs(lengths - length)
    order = np.lexsort((starts, closeness, -overlap))[:max(0, int(top))]
    starts, ends, lengths, overlap = starts[order], ends[order], lengths[order], overlap[order]
    heat = np.stack([x[:, a:b].mean(axis=1, dtype=np.float64) for a, b in zip(starts, ends)], axis=1) \
        if len(starts) else np.zeros((S, 0))
    on_count = np.array([count[a:b].mean() for a, b in zip(starts, ends)]) if len(starts) else np.zeros(0)
    mean_on = on_count / S  # mean fraction of the units on
    table = pd.DataFrame({"start": starts, "end": ends, "length": lengths, "overlap": overlap,
                          "fraction": overlap / S, "mean_on": mean_on})
    sel = np.arange(S) if units is None else np.asarray(units)
    return Matches(units=sel, threshold=float(threshold), length=int(length), table=table, heatmap=heat)


def select_and_match(query_states: np.ndarray, start: int, end: int, threshold: float, atlas, layer: int,
                     kind: str, *, before: int = 0, after: int = 0, min_overlap: int | None = None,
                     top: int = 20, exclude_query: bool = False) -> Matches:
    """Select units on `query_states` (T, H) over [start, end) (a trace of the text under study, or
    atlas.states(layer, kind) itself), then match them over the atlas corpus.
    exclude_query leaves out the query span itself (when the query comes from the atlas's text)."""
    units = select_units(query_states, start, end, threshold, before, after)
    x = atlas.unit_states(layer, kind, units)
    return match(x, threshold, end - start, min_overlap=min_overlap, top=top,
                 exclude=(start, end) if exclude_query else None, units=units)
