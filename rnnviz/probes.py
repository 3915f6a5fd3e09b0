"""Ranking hidden units by how well they track a hypothesis (see hypotheses), at chance and beyond."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ConfigError
from .hypotheses import HYPOTHESES, hypothesis_mask, is_binary, python_string_labels

_CHUNK_ELEMS = 2_000_000  # (T x units) block size: bounds the memory of the rank computations

# --- scoring units ------------------------------------------------------------------------------

def _ranks(block: np.ndarray) -> np.ndarray:
    """1-based ranks of each column of block (T, C) within that column, tied values sharing their
    average rank, as (C, T) float64 in the original time order."""
    t, c = block.shape
    if block.dtype == np.float32:
        # pack the score (as an order-preserving integer) and the time index into one int64 and
        # sort that: cheaper than argsort plus a gather
        bits = np.ascontiguousarray(block.T + np.float32(0)).view(np.int32)  # + 0 maps -0.0 to 0.0
        keys = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)  # order-preserving
        packed = np.sort((keys << 32) | np.arange(t, dtype=np.int64), axis=1)
        order, sorted_keys = packed & 0xFFFFFFFF, packed >> 32
    else:
        x = np.ascontiguousarray(block.T, dtype=np.float64)
        order = np.argsort(x, axis=1, kind="stable")
        sorted_keys = np.take_along_axis(x, order, axis=1)
    ranks = np.empty((c, t))
    np.put_along_axis(ranks, order, _average_ranks(sorted_keys), axis=1)
    return ranks


def _average_ranks(sorted_keys: np.ndarray) -> np.ndarray:
    """1-based ranks of sorted rows (U, T), tied values sharing their average rank."""
    u, t = sorted_keys.shape
    idx = np.arange(t)
    first = np.ones((u, t), dtype=bool)
    first[:, 1:] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
    last = np.ones((u, t), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, idx, t)[:, ::-1], axis=1)[:, ::-1]
    return (start + end) / 2.0 + 1.0


def _as_2d(scores) -> np.ndarray:
    scores = np.asarray(scores)
    return scores[:, None] if scores.ndim == 1 else scores


def _score_rows(x: np.ndarray, targets: np.ndarray, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r (R, U) and AUROC (R, U; NaN for counts or an empty class) of every unit x (T, U)
    against every row of targets (R, T).

    One sort per unit serves every row: AUROC is Mann-Whitney U from the unit's average ranks (ties
    count one half), U = sum of the ranks where the row holds - n_pos (n_pos + 1) / 2, and the sums
    for all rows are one matrix product. Scores must be finite.
    """
    t, u = x.shape
    rows = targets.shape[0]
    y = targets - targets.mean(axis=1, keepdims=True)  # (R, T)
    y_norm = np.sqrt((y * y).sum(axis=1))  # (R,)
    corr = np.zeros((rows, u))
    au = np.full((rows, u), np.nan)
    if t == 0:
        return corr, au
    if binary:
        pos = targets > 0.5
        n_pos = pos.sum(axis=1).astype(np.float64)  # (R,)
        n_neg = t - n_pos
        both = (n_pos > 0) & (n_neg > 0)
        pos = pos.astype(np.float64)
    chunk = max(1, _CHUNK_ELEMS // max(t, 1))
    for a in range(0, u, chunk):
        block = x[:, a:a + chunk]
        xc = block.astype(np.float64)  # (T, C)
        constant = np.ptp(xc, axis=0) == 0  # exact test: centring a constant can leave rounding noise
        xc -= xc.mean(axis=0)
        den = np.sqrt((xc * xc).sum(axis=0))[None, :] * y_norm[:, None]  # (R, C)
        ok = ~constant[None, :] & (den > 0)
        cov = np.einsum("rt,tc->rc", y, xc, optimize=False)  # no BLAS: its threads stall on a busy box
        corr[:, a:a + chunk] = np.where(ok, cov / np.where(ok, den, 1.0), 0.0)
        if binary and both.any():
            rank_sum = np.einsum("rt,ct->rc", pos, _ranks(block), optimize=False)  # (R, C)
            with np.errstate(invalid="ignore", divide="ignore"):
                au[:, a:a + chunk] = (rank_sum - (n_pos * (n_pos + 1) / 2.0)[:, None]) / (n_pos * n_neg)[:, None]
    if binary:
        au[~both] = np.nan
    return corr, au


def auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each column of scores (T, U) for boolean labels (T,), shape (U,); NaN if a class is empty.

    Mann-Whitney U from average ranks, so ties count one half. Scores must be finite.
    """
    scores = _as_2d(scores)
    labels = np.asarray(labels).astype(bool).ravel()
    if len(labels) != scores.shape[0]:
        raise ConfigError(f"{len(labels)} labels for {scores.shape[0]} time steps")
    return _score_rows(scores, labels[None, :].astype(np.float64), binary=True)[1][0]


def correlation(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of scores (T, U) with target (T,), shape (U,); 0 if constant."""
    scores = _as_2d(scores)
    y = np.asarray(target, dtype=np.float64).ravel()
    if len(y) != scores.shape[0]:
        raise ConfigError(f"{len(y)} targets for {scores.shape[0]} time steps")
    return _score_rows(scores, y[None, :], binary=False)[0][0]


def _score_of(corr: np.ndarray, au: np.ndarray, binary: bool) -> np.ndarray:
    """max(AUROC, 1 - AUROC) for yes/no hypotheses, |r| for counts."""
    return np.maximum(au, 1.0 - au) if binary else np.abs(corr)


def _selectivity(x: np.ndarray, labels: np.ndarray, binary: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """corr, auroc and score of units x (T, H); see rank_units for the convention."""
    corr, au = _score_rows(x, np.asarray(labels, dtype=np.float64)[None, :], binary)
    return corr[0], au[0], _score_of(corr[0], au[0], binary)


def _direction(corr: np.ndarray, au: np.ndarray, binary: bool) -> np.ndarray:
    """'high', 'low' or '' per unit: the side of 0.5 its AUROC lies on, or the sign of r for counts."""
    lean = au - 0.5 if binary else corr
    return np.where(lean > 0, "high", np.where(lean < 0, "low", ""))


def direction_words(direction: str, hypothesis: str, binary: bool) -> str:
    """A unit's direction in words: "low inside quotes", "high on uppercase", "rises with bracket depth"."""
    if direction not in ("high", "low"):
        return "no direction"
    if not binary:
        return f"{'rises' if direction == 'high' else 'falls'} with {hypothesis}"
    joined = hypothesis.startswith(("inside ", "right after ", "after ", "at ", "in "))
    return f"{direction} {hypothesis}" if joined else f"{direction} on {hypothesis}"


def _prepare(labels, mask, t: int) -> tuple[np.ndarray, np.ndarray | None]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    if len(y) != t:
        raise ConfigError(f"the hypothesis gives {len(y)} labels but the trace has {t} time steps")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).ravel()
        if len(mask) != t:
            raise ConfigError(f"the mask has {len(mask)} entries but the trace has {t} time steps")
        y = y[mask]
    return y, mask


# --- chance level: the same scores against circularly shifted labels ---------------------------

CHANCE_SHIFTS = 20  # shifted labellings behind a chance level


def shift_offsets(t: int, shifts: int = CHANCE_SHIFTS, seed: int = 0, min_shift: int | None = None) -> np.ndarray:
    """The circular shifts behind a chance level, sorted: `shifts` distinct offsets k drawn without
    replacement (numpy default_rng(seed)) from min_shift <= k <= t - min_shift, so that every
    shift moves the labels at least min_shift characters either way round the circle; all such
    offsets when there are no more than `shifts`. min_shift defaults to max(1, t // 10). Empty when
    t < 2 min_shift or shifts < 1."""
    if min_shift is None:
        min_shift = max(1, t // 10)
    min_shift = max(1, int(min_shift))
    candidates = np.arange(min_shift, t - min_shift + 1, dtype=np.int64)
    if shifts < 1 or len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(candidates) <= shifts:
        return candidates
    return np.sort(np.random.default_rng(seed).choice(candidates, size=int(shifts), replace=False))


def _evaluate(x: np.ndarray, y: np.ndarray, binary: bool, offsets: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """corr, auroc, score (U,) of units x (T, U) against y (T,), and their scores (K, U) against y
    rolled by each offset (np.roll(y, k): the label of character i moved to i + k, round the end)."""
    targets = np.stack([y] + [np.roll(y, int(k)) for k in offsets])  # (1 + K, T)
    corr, au = _score_rows(x, targets, binary)
    score = _score_of(corr, au, binary)
    return corr[0], au[0], score[0], score[1:]


@dataclass
class Chance:
    """Scores of units against circularly shifted labels (see chance_level)."""

    per_unit: np.ndarray  # (U,) each unit's largest score over the shifted labellings
    best: np.ndarray  # (K,) for each shifted labelling, the largest score over all units
    offsets: np.ndarray  # (K,) the shifts used

    @property
    def level(self) -> float:
        """What the best unit scores by chance: the largest score of any unit against any of the
        shifted labellings (NaN without shifts)."""
        return float(self.best.max()) if len(self.best) else float("nan")


def chance_level(values: np.ndarray, labels, mask=None, shifts: int = CHANCE_SHIFTS, seed: int = 0,
                 min_shift: int | None = None) -> Chance:
    """How well the units of values (T, U) score against labels that keep their own structure but
    no longer line up with the text: the labels (of the counted characters, when a mask is given)
    circularly shifted by each offset of shift_offsets(T counted, shifts, seed, min_shift), and
    every unit scored against each shifted labelling exactly as score_units scores it.

    A circular shift keeps the labels' autocorrelation (runs of 1s stay runs of the same lengths,
    spaced the same way), so the chance level is what the units' own slow drifts reach on a
    hypothesis just as clumpy, not what they reach on shuffled labels (which would be far lower).
    Chance.per_unit[u] = max over shifts of unit u's score; Chance.best[k] = max over units of the
    scores against shift k; Chance.level = max of best = max of per_unit: a top score above it beats
    the best unit on every one of the K shifted labellings (about p < 1/(K + 1) when the text has
    no period that a shift could realign).

    Cost: the sort per unit that score_units needs anyway serves every shift (rank sums and
    covariances for all K + 1 labellings are one product, computed without BLAS threads). Measured
    on shakespeare-lstm (h and c of 2 x 512 units, 2,048 columns) over 20,000 characters of its
    default excerpt, 2 shared CPU cores: ranking alone 1.2 s (speaker-name line), with 20 shifts
    1.6 s; for a count (position in line) 0.2 s and 0.4 s; over the 2,000-character default excerpt
    0.11 s and 0.16 s. So every unit gets its chance level, with all 20 shifts.
    """
    values = _as_2d(values)
    y, mask = _prepare(labels, mask, values.shape[0])
    x = values[mask] if mask is not None else values
    offsets = shift_offsets(len(y), shifts, seed, min_shift)
    shifted = _evaluate(x, y, is_binary(y), offsets)[3]  # (K, U)
    per_unit = shifted.max(axis=0) if len(offsets) else np.full(x.shape[1], np.nan)
    return Chance(per_unit=per_unit, best=shifted.max(axis=1) if x.shape[1] else np.full(len(offsets), np.nan),
                  offsets=offsets)


def score_units(values: np.ndarray, labels, mask=None, shifts: int = 0, seed: int = 0,
                min_shift: int | None = None) -> pd.DataFrame:
    """Every column of values (T, U) scored against labels (T,), in column order.

    Columns: unit (the column index), direction, corr, auroc, score, as rank_units describes them;
    with shifts > 0 also chance: the unit's chance level, its largest score against the labels
    circularly shifted by each of shift_offsets(T, shifts, seed, min_shift) (chance_level's
    per_unit, from the same sort). `mask` (T,) bool keeps only the time steps to count.
    """
    values = _as_2d(values)
    y, mask = _prepare(labels, mask, values.shape[0])
    x = values[mask] if mask is not None else values
    binary = is_binary(y)
    offsets = shift_offsets(len(y), shifts, seed, min_shift) if shifts > 0 else np.zeros(0, dtype=np.int64)
    corr, au, score, shifted = _evaluate(x, y, binary, offsets)
    df = pd.DataFrame({"unit": np.arange(x.shape[1]), "direction": _direction(corr, au, binary),
                       "corr": corr, "auroc": au, "score": score})
    if shifts > 0:
        df["chance"] = shifted.max(axis=0) if len(offsets) else np.nan
    return df


def rank_units(trace, labels, mask=None, kinds=("h", "c"), shifts: int = 0, seed: int = 0) -> pd.DataFrame:
    """Every unit of every layer and kind, best match to `labels` first.

    `trace.layers` is a list of dicts mapping 'h', 'c', gate names to arrays (T, H); kinds a layer
    lacks are skipped. `mask` (T,) bool keeps only the time steps to count.
    Columns: layer, kind, unit, direction, corr, auroc, score (NaN scores last). The convention:
    auroc is as computed, the probability that the unit is higher on a character where the
    (yes/no) hypothesis holds than on one where it does not, so a unit low inside quotes has an
    AUROC near 0; direction says which way the unit goes ("high" where the hypothesis holds, or
    rising with a count; "low" the other way; direction_words puts it in words); score is how
    strongly, whichever the way: max(AUROC, 1 - AUROC) for yes/no hypotheses, |corr| for counts.
    With shifts > 0, a column chance: each unit's chance level (score_units; the same offsets for
    every layer and kind), and df.chance.max() is the ranking's chance level, what the best unit
    scores by chance (chance_level's Chance.level). Whether the labels give a score enough to rest
    on is evidence(labels, mask)'s to say.
    """
    frames = []
    for li, layer in enumerate(trace.layers):
        for kind in kinds:
            if kind not in layer:
                continue
            df = score_units(np.asarray(layer[kind]), labels, mask, shifts=shifts, seed=seed)
            df.insert(0, "kind", kind)
            df.insert(0, "layer", li)
            frames.append(df)
    if not frames:
        raise ConfigError(f"the trace holds none of the kinds {', '.join(kinds)}")
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


# --- evidence: how much a score against these labels can rest on -------------------------------

MIN_SPANS = 5  # separate runs where the hypothesis holds (and where it does not) for a detector
MIN_CHARS = 50  # characters where it holds (and where it does not) for a detector


def _runs(flags: np.ndarray) -> int:
    """Number of maximal runs of True in flags (T,)."""
    flags = np.asarray(flags, dtype=bool)
    return int(flags[0]) + int(np.count_nonzero(flags[1:] & ~flags[:-1])) if len(flags) else 0


def evidence(labels, mask=None) -> dict:
    """What a score against `labels` (T,) rests on, and whether it is too little to call the best
    unit a detector.

    The hypothesis "holds" on a character where its label is 1 (yes/no hypotheses) or above its
    smallest value on the counted characters (counts: inside brackets, past the line start).
    Returns counted (characters counted: all, or those `mask` keeps), binary, positives (counted
    characters where it holds), spans (separate runs of them in text order; a character the mask
    leaves out ends a run), negatives and negative_spans (the same where it does not hold),
    flagged and reason. flagged is True when positives or negatives < MIN_CHARS (50) or spans or
    negative_spans < MIN_SPANS (5): then a high score can rest on one passage or a few dozen
    characters (an elision read as a quote, one bracketed aside), so the top unit is no detector;
    reason says why in words ("" when not flagged).
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    keep = np.ones(len(y), dtype=bool) if mask is None else np.asarray(mask, dtype=bool).ravel()
    if len(keep) != len(y):
        raise ConfigError(f"the mask has {len(keep)} entries but there are {len(y)} labels")
    counted = int(keep.sum())
    binary = is_binary(y[keep])
    floor = y[keep].min() if counted else 0.0
    holds = (y > 0.5) if binary else (y > floor)
    pos, neg = holds & keep, ~holds & keep
    out = {"counted": counted, "binary": binary,
           "positives": int(pos.sum()), "spans": _runs(pos),
           "negatives": int(neg.sum()), "negative_spans": _runs(neg)}
    where = "holds" if binary else "is above its smallest value"
    problems = []
    for chars, spans, side in ((out["positives"], out["spans"], f"it {where}"),
                               (out["negatives"], out["negative_spans"], "it does not hold" if binary else
                                "it is at its smallest value")):
        if chars < MIN_CHARS or spans < MIN_SPANS:
            problems.append(f"{side} on {chars:,} character{'s' if chars != 1 else ''} in "
                            f"{spans:,} separate span{'s' if spans != 1 else ''}")
    out["flagged"] = bool(problems)
    out["reason"] = (
        "; ".join(problems).capitalize() + f" (a detector needs at least {MIN_CHARS} characters in at least "
        f"{MIN_SPANS} separate spans each way), so a high score can rest on one passage rather than on "
        "the hypothesis: the best unit is not shown to be a detector." if problems else "")
    return out


# --- the hypothesis that suits a model's corpus -------------------------------------------------

_PREFERRED = {
    "python": ("inside a string (tokenize)", "inside quotes", "indentation", "bracket depth"),
    "quotes": ("inside quotes", "bracket depth"),
    "shakespeare": ("speaker-name line", "uppercase", "position in line"),
    "memory": ("uppercase", "right after a newline"),
    "text": ("uppercase", "position in line", "right after a newline", "inside quotes", "vowel"),
}


def corpus_family(config_or_name) -> str:
    """"python", "quotes", "shakespeare", "memory" or "text": the kind of corpus a checkpoint's
    config (its corpus record) or a corpus name names. python: "python" or a .py file; quotes and
    memory: a name that starts so (quotes-seed0, memory-mix-...); shakespeare: any name holding
    "shakespeare" (tinyshakespeare.txt, the built-in shakespeare); anything else is text."""
    name = config_or_name
    if isinstance(name, dict):
        name = name.get("corpus")
        if isinstance(name, dict):
            name = name.get("name")
    name = name.strip().lower() if isinstance(name, str) else ""
    if name == "python" or name.endswith(".py"):
        return "python"
    for family in ("quotes", "memory"):
        if name.startswith(family):
            return family
    return "shakespeare" if "shakespeare" in name else "text"


def default_hypothesis(config_or_name=None, text: str | None = None) -> str:
    """The hypothesis Neuron search and Activations open with for a model: its corpus family's
    first choice (python-lstm: "inside a string (tokenize)"; quotes-lstm: "inside quotes"; the
    Shakespeare models: "speaker-name line"; the memory models: "uppercase"; other text:
    "uppercase"; see corpus_family).

    With the text under study: the first of the family's choices whose evidence on that text is
    not flagged, else the first of them that varies on it (flagged: the page says so), else the
    same for the general choices (uppercase, position in line, right after a newline, inside
    quotes, vowel), else the family's first choice.
    """
    family = corpus_family(config_or_name)
    if not text:
        return _PREFERRED[family][0]
    for choices in (_PREFERRED[family], _PREFERRED["text"]):
        varying = None
        for name in choices:
            y, mask = HYPOTHESES[name](text), hypothesis_mask(name, text)
            counted = y if mask is None else y[mask]
            if counted.size == 0 or counted.min() == counted.max():
                continue
            if not evidence(y, mask)["flagged"]:
                return name
            varying = varying or name
        if varying:
            return varying
    return _PREFERRED[family][0]


def _varies(name: str, text: str) -> bool:
    """Whether hypothesis `name` takes more than one value on the characters of `text` it counts."""
    y, mask = HYPOTHESES[name](text), hypothesis_mask(name, text)
    counted = y if mask is None else y[mask]
    return counted.size > 0 and counted.min() != counted.max()


def best_unit(trace, config_or_name=None, kinds=("h", "c"), hypothesis: str | None = None) -> dict | None:
    """The unit a model opens on: the best of rank_units for the model's default hypothesis on the
    trace's text (default_hypothesis(config, text)), or for `hypothesis` (a name in HYPOTHESES, one a
    user chose) when that varies on the text, as {"layer", "kind", "unit", "hypothesis", "score",
    "flagged", "default"}; None when the hypothesis ranked does not vary on the text (no unit can be
    ranked). flagged: evidence's word that the score rests on too little text to call the unit a
    detector; default: whether the hypothesis ranked is the default one."""
    text = trace.text
    name = default = default_hypothesis(config_or_name, text)
    if hypothesis in HYPOTHESES and _varies(hypothesis, text):
        name = hypothesis
    labels, mask = HYPOTHESES[name](text), hypothesis_mask(name, text)
    ranked = rank_units(trace, labels, mask, kinds=kinds)
    top = ranked.iloc[0]
    if not np.isfinite(top.score):
        return None
    return {"layer": int(top.layer), "kind": str(top.kind), "unit": int(top.unit), "hypothesis": name,
            "score": float(top.score), "flagged": evidence(labels, mask)["flagged"],
            "default": name == default}


def unit_stats(trace, layer: int, kind: str, labels=None, mask=None) -> pd.DataFrame:
    """Per unit of one layer and kind: variance and mean |activation| over every character, and
    selectivity (rank_units' score over the characters `mask` counts, as Neuron search scores it;
    NaN without labels)."""
    if not 0 <= layer < len(trace.layers):
        raise ConfigError(f"layer must be from 0 to {len(trace.layers) - 1}, not {layer}")
    if kind not in trace.layers[layer]:
        raise ConfigError(f"layer {layer} has no {kind!r}; it has {', '.join(trace.layers[layer])}")
    x = np.asarray(trace.layers[layer][kind])  # (T, H)
    y, mask = _prepare(labels if labels is not None else np.zeros(x.shape[0]), mask, x.shape[0])
    selectivity = np.full(x.shape[1], np.nan)
    if labels is not None:
        counted = x if mask is None else x[mask]
        selectivity = _selectivity(counted, y, is_binary(y))[2]
    return pd.DataFrame({
        "unit": np.arange(x.shape[1]),
        "variance": x.var(axis=0, dtype=np.float64),
        "mean_abs": np.abs(x).mean(axis=0, dtype=np.float64),
        "selectivity": selectivity,
    })


def python_string_probe(model, sources: list[str], max_chars_per_file: int = 20_000):
    """Trace each Python source (state reset per file) and label it with python_string_labels.

    Returns (layers, labels, mask): `layers` holds h and c of every file end to end, in the
    shape rank_units reads (an object with .layers), so units can be ranked over many files.
    """
    from types import SimpleNamespace

    from .trace import trace as run_trace

    parts, labels, masks = [], [], []
    for src in sources:
        src = src[:max_chars_per_file]
        if len(src) < 2:
            continue
        y, m = python_string_labels(src)
        tr = run_trace(model, src, gates=False)
        parts.append(tr.layers)
        labels.append(y)
        masks.append(m)
    if not parts:
        raise ConfigError("no Python source to probe")
    layers = [{k: np.concatenate([p[l][k] for p in parts]) for k in parts[0][l]} for l in range(len(parts[0]))]
    return SimpleNamespace(layers=layers), np.concatenate(labels), np.concatenate(masks)


# --- what a ranking says, in words (Neuron search, `python -m rnnviz probe --chance`) -----------

def plural(n: int, word: str) -> str:
    """A count and its noun: "1 character", "2,000 characters"."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def evidence_text(ev: dict, chance: float, n_shifts: int, min_shift: int) -> str:
    """What the scores rest on (evidence's dict), and what the best unit scores by chance, in words
    (Markdown)."""
    holds = "holds" if ev["binary"] else "is above its smallest value"
    text = (f"**Evidence:** the hypothesis {holds} on {plural(ev['positives'], 'character')} of "
            f"{ev['counted']:,}, in {plural(ev['spans'], 'separate span')}; it "
            f"{'does not hold' if ev['binary'] else 'is at its smallest'} on {ev['negatives']:,}, in "
            f"{plural(ev['negative_spans'], 'span')}. ")
    if np.isnan(chance):
        return text + "**Chance level:** none (the text is too short to shift its labels)."
    return text + (f"**Chance level: {chance:.3f}**, the best score any unit reaches against the same labels "
                   f"circularly shifted round the text by {plural(n_shifts, 'random offset')} (each at least "
                   f"{min_shift:,} characters either way; a shift keeps the labels' clumps but unhooks them from "
                   "the text): a detector should score well above it.")


def _verdict(best, best_name: str, words: str, ev: dict, chance: float, name: str) -> tuple[str, str]:
    """(level, Markdown) of what the best unit is: "warning" (too little evidence, or no unit beats
    chance), "info" (no chance level to compare with) or "success" (above chance)."""
    if ev["flagged"]:
        return "warning", (f"**Not a detector: too little evidence.** {ev['reason']} The ranking below is shown for "
                           f"exploring only: its best unit ({best_name}, score {best.score:.3f}) is not shown to "
                           f"track {name}. A longer text in the sidebar may hold enough.")
    if np.isnan(chance):
        return "info", (f"**{best_name}: {words}**, score {best.score:.3f}; the text is too short for a chance "
                        "level.")
    if not best.score > chance:
        return "warning", (f"**No unit beats chance.** The best, {best_name}, scores {best.score:.3f}; against the "
                           f"shifted labels some unit reaches {chance:.3f}.")
    return "success", (f"**{best_name}: {words}**, score {best.score:.3f}, above the chance level {chance:.3f} "
                       f"(its own: {best.chance:.3f}).")


def search_summary(ranked: pd.DataFrame, labels, mask, name: str, shifts: int = CHANCE_SHIFTS,
                   seed: int = 0) -> dict:
    """What Neuron search says of a ranking: `ranked` is rank_units(trace, labels, mask, shifts=shifts,
    seed=seed) for hypothesis `name`. Returns binary (yes/no labels on the counted characters),
    evidence (evidence(labels, mask)), chance (the ranking's chance level, NaN without shifts),
    shifts (how many shifted labellings), min_shift (the smallest distance, either way round the
    circle, any of them moved the labels), words (direction_words per row), best (the top row's
    "layer L kU" name), evidence_text (evidence_text's words) and verdict ((level, Markdown): see
    _verdict)."""
    y = np.asarray(labels)
    n = int(len(y) if mask is None else np.asarray(mask, dtype=bool).sum())
    binary = is_binary(y if mask is None else y[np.asarray(mask, dtype=bool)])
    ev = evidence(labels, mask)
    offsets = shift_offsets(n, shifts, seed) if shifts > 0 else np.zeros(0, dtype=np.int64)
    chance = float(ranked["chance"].max()) if len(offsets) and "chance" in ranked else float("nan")
    apart = int(np.minimum(offsets, n - offsets).min()) if len(offsets) else 0  # either way round
    words = [direction_words(d, name, binary) for d in ranked.direction]
    top = ranked.iloc[0]
    best = f"layer {int(top.layer)} {top.kind}{int(top.unit)}"
    return {"binary": binary, "evidence": ev, "chance": chance, "shifts": len(offsets), "min_shift": apart,
            "words": words, "best": best, "evidence_text": evidence_text(ev, chance, len(offsets), apart),
            "verdict": _verdict(top, best, words[0], ev, chance, name)}
