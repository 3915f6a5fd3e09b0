"""Hypotheses about characters, and ranking hidden units by how well they track one."""
from __future__ import annotations

import io
import re
import tokenize
from typing import Callable

import numpy as np
import pandas as pd

from .errors import ConfigError

Hypothesis = Callable[[str], np.ndarray]
_CHUNK_ELEMS = 2_000_000  # (T x units) block size: bounds the memory of the rank computations


def _codes(text: str) -> np.ndarray:
    """Code points of `text`, shape (T,)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _line_start_flags(codes: np.ndarray) -> np.ndarray:
    """True for each character that directly follows a newline, shape (T,)."""
    prev_nl = np.zeros(len(codes), dtype=bool)
    prev_nl[1:] = codes[:-1] == 10
    return prev_nl


# --- hypotheses: text -> float32 (T,) ---------------------------------------------------------

# a literal runs to its closing quote or, unclosed, to the end of the line; backslash escapes.
# A ' right after a letter or digit is an apostrophe (battle's), unless it follows a string
# prefix such as f' or rb' that itself starts a word.
_QUOTED = re.compile(r"(?:(?<!\w)[rRbBfFuU]{1,2}|(?<!\w))'(?:[^'\\\n]|\\.)*'?|\"(?:[^\"\\\n]|\\.)*\"?")


def inside_quotes(text: str) -> np.ndarray:
    """1 inside '...' or "..." on one line, quotes included; an unclosed quote ends at the line end."""
    out = np.zeros(len(text), dtype=np.float32)
    for m in _QUOTED.finditer(text):
        out[m.start():m.end()] = 1.0
    return out


def bracket_depth(text: str) -> np.ndarray:
    """Open ( [ { brackets at each character; a bracket counts itself: "a(b)c" -> 0,1,1,1,0.

    Any closer closes any opener; an unmatched closer is depth 0 and never makes depth negative.
    """
    codes = _codes(text)
    opens = np.isin(codes, _codes("([{"))
    closes = np.isin(codes, _codes(")]}"))
    steps = opens.astype(np.int64) - closes  # (T,)
    walk = np.cumsum(steps)
    # depth after each character, clamped at 0 (a walk reflected at zero)
    level = walk - np.minimum.accumulate(np.minimum(walk, 0))
    before = np.concatenate(([0], level[:-1]))
    return np.where(closes, before, level).astype(np.float32)


def position_in_line(text: str) -> np.ndarray:
    """Column of each character (0 at a line's first character; a newline has its line's length)."""
    idx = np.arange(len(text))
    start = np.maximum.accumulate(np.where(_line_start_flags(_codes(text)), idx, 0))
    return (idx - start).astype(np.float32)


def indentation(text: str) -> np.ndarray:
    """Leading spaces of the current line, for every character of it (its newline included)."""
    lines = text.split("\n")
    widths = [len(line) - len(line.lstrip(" ")) for line in lines]
    lengths = [len(line) + 1 for line in lines]  # + its newline; the last line has none
    return np.repeat(np.asarray(widths, dtype=np.float32), lengths)[: len(text)]


def after_newline(text: str) -> np.ndarray:
    """1 for the character right after a newline."""
    return _line_start_flags(_codes(text)).astype(np.float32)


def uppercase(text: str) -> np.ndarray:
    """1 for upper-case letters."""
    return np.fromiter((c.isupper() for c in text), dtype=np.float32, count=len(text))


def vowel(text: str) -> np.ndarray:
    """1 for a, e, i, o, u in either case."""
    return np.isin(_codes(text), _codes("aeiouAEIOU")).astype(np.float32)


def regex_hypothesis(pattern: str) -> Hypothesis:
    """A hypothesis that is 1 for characters inside any match of `pattern`."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"invalid regular expression {pattern!r}: {e}") from None

    def matches(text: str) -> np.ndarray:
        out = np.zeros(len(text), dtype=np.float32)
        for m in rx.finditer(text):
            out[m.start():m.end()] = 1.0
        return out

    matches.__name__ = f"regex {pattern!r}"
    return matches


HYPOTHESES: dict[str, Hypothesis] = {
    "inside quotes": inside_quotes,
    "bracket depth": bracket_depth,
    "position in line": position_in_line,
    "indentation": indentation,
    "right after a newline": after_newline,
    "uppercase": uppercase,
    "vowel": vowel,
}


def is_binary(labels) -> bool:
    """True when every label is 0 or 1 (then AUROC applies)."""
    arr = np.asarray(labels)
    return arr.size > 0 and bool(np.isin(arr, (0, 1)).all())


# --- Python string literals via tokenize ------------------------------------------------------

_STRING_OPEN = tuple(getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n))
_STRING_CLOSE = tuple(getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n))
_SKIP = (tokenize.NL, tokenize.COMMENT)  # tokens that neither start nor end a statement


def _statement_start(items) -> int:
    """Offset after the last complete statement: where an unreadable one begins."""
    ends = [end for typ, _, end, _ in items if typ == tokenize.NEWLINE]
    return ends[-1] if ends else 0


def python_string_labels(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels (T,) float32: 1.0 on string-literal characters (quotes and prefixes included), and
    mask (T,) bool: which characters to count.

    The mask leaves out comments, multi-line strings, strings that are a statement by themselves
    (docstrings), and the whole statement where tokenize fails and all after it. Whitespace
    between tokens stays in: it is code context too. Labels are 1.0 on masked-out literals as well,
    for display. Python 3.12+ splits f-strings into parts; the whole span counts as one string.
    """
    n = len(source)
    labels = np.zeros(n, dtype=np.float32)
    mask = np.ones(n, dtype=bool)
    line_starts = [0] + [m.end() for m in re.finditer("\n", source)]

    def offset(pos: tuple[int, int]) -> int:
        row, col = pos
        return n if row > len(line_starts) else min(line_starts[row - 1] + col, n)

    # items: (token type, start offset, end offset, spans lines); an f-string is one STRING item
    items: list[tuple[int, int, int, bool]] = []
    bad_from = None
    fstring_start, nesting = None, 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in _STRING_OPEN:
                if nesting == 0:
                    fstring_start = tok.start
                nesting += 1
            elif tok.type in _STRING_CLOSE:
                nesting -= 1
                if nesting == 0:
                    items.append((tokenize.STRING, offset(fstring_start), offset(tok.end),
                                  tok.end[0] != fstring_start[0]))
            elif nesting:
                continue  # the parts inside an f-string
            elif tok.type == tokenize.ERRORTOKEN and tok.string.strip():
                bad_from = _statement_start(items)
                break
            else:
                items.append((tok.type, offset(tok.start), offset(tok.end), tok.end[0] != tok.start[0]))
    except (tokenize.TokenError, SyntaxError):
        bad_from = _statement_start(items)

    significant = [i for i, it in enumerate(items) if it[0] not in _SKIP]
    statement_edges = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    k = 0
    while k < len(significant):
        typ, start, end, multiline = items[significant[k]]
        if typ != tokenize.STRING:
            k += 1
            continue
        # a run of adjacent literals ("a" "b") is one expression
        j = k
        while j + 1 < len(significant) and items[significant[j + 1]][0] == tokenize.STRING:
            j += 1
        prev = items[significant[k - 1]] if k > 0 else None
        nxt = items[significant[j + 1]] if j + 1 < len(significant) else None
        alone = (prev is None or prev[0] in statement_edges or source[prev[1]:prev[2]] == ";") and \
            (nxt is None or nxt[0] in statement_edges or source[nxt[1]:nxt[2]] == ";")
        for _, s, e, multi in (items[significant[i]] for i in range(k, j + 1)):
            labels[s:e] = 1.0
            if alone or multi:
                mask[s:e] = False
        k = j + 1
    for typ, start, end, _ in items:
        if typ == tokenize.COMMENT:
            mask[start:end] = False
    if bad_from is not None:
        labels[bad_from:] = 0.0
        mask[bad_from:] = False
    return labels, mask


# --- scoring units ------------------------------------------------------------------------------

def _sorted_labels_and_keys(block: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the labels in ascending score order and the sorted scores (for ties); (U, T) each."""
    if block.dtype == np.float32:
        # pack score and label into one int64 and sort that: cheaper than argsort plus a gather
        bits = np.ascontiguousarray(block.T + np.float32(0)).view(np.int32)  # + 0 maps -0.0 to 0.0
        keys = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)  # order-preserving
        packed = np.sort(keys * 2 + labels, axis=1)
        return packed & 1, packed >> 1
    x = np.ascontiguousarray(block.T, dtype=np.float64)
    order = np.argsort(x, axis=1)
    return labels[order], np.take_along_axis(x, order, axis=1)


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


def auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each column of scores (T, U) for boolean labels (T,), shape (U,); NaN if a class is empty.

    Mann-Whitney U from average ranks, so ties count one half. Scores must be finite.
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, None]
    labels = np.asarray(labels).astype(bool).ravel()
    t, u = scores.shape
    if len(labels) != t:
        raise ConfigError(f"{len(labels)} labels for {t} time steps")
    n_pos = int(labels.sum())
    n_neg = t - n_pos
    out = np.full(u, np.nan)
    if n_pos == 0 or n_neg == 0:
        return out
    chunk = max(1, _CHUNK_ELEMS // t)
    for a in range(0, u, chunk):
        lab_sorted, keys = _sorted_labels_and_keys(scores[:, a:a + chunk], labels)  # (C, T)
        rank_sum = (_average_ranks(keys) * lab_sorted).sum(axis=1)  # (C,)
        out[a:a + chunk] = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def correlation(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of scores (T, U) with target (T,), shape (U,); 0 if constant."""
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, None]
    y = np.asarray(target, dtype=np.float64).ravel()
    t, u = scores.shape
    if len(y) != t:
        raise ConfigError(f"{len(y)} targets for {t} time steps")
    y = y - y.mean()
    y_norm = np.sqrt(y @ y)
    out = np.zeros(u)
    chunk = max(1, _CHUNK_ELEMS // max(t, 1))
    for a in range(0, u, chunk):
        x = scores[:, a:a + chunk].astype(np.float64)  # (T, C)
        constant = np.ptp(x, axis=0) == 0  # exact test: centring a constant can leave rounding noise
        x -= x.mean(axis=0)
        den = np.sqrt((x * x).sum(axis=0)) * y_norm
        ok = ~constant & (den > 0)
        out[a:a + chunk][ok] = (y @ x)[ok] / den[ok]
    return out


def _selectivity(x: np.ndarray, labels: np.ndarray, binary: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """corr, auroc and score of units x (T, H); see rank_units for the convention."""
    corr = correlation(x, labels)
    au = auroc(x, labels.astype(bool)) if binary else np.full(x.shape[1], np.nan)
    score = np.maximum(au, 1.0 - au) if binary else np.abs(corr)
    return corr, au, score


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


def rank_units(trace, labels, mask=None, kinds=("h", "c")) -> pd.DataFrame:
    """Every unit of every layer and kind, best match to `labels` first.

    `trace.layers` is a list of dicts mapping 'h', 'c', gate names to arrays (T, H); kinds a layer
    lacks are skipped. `mask` (T,) bool keeps only the time steps to count.
    Columns: layer, kind, unit, direction, corr, auroc, score (NaN scores last). The convention:
    auroc is as computed, the probability that the unit is higher on a character where the
    (yes/no) hypothesis holds than on one where it does not, so a unit low inside quotes has an
    AUROC near 0; direction says which way the unit goes ("high" where the hypothesis holds, or
    rising with a count; "low" the other way; direction_words puts it in words); score is how
    strongly, whichever the way: max(AUROC, 1 - AUROC) for yes/no hypotheses, |corr| for counts.
    """
    frames = []
    y = binary = None
    for li, layer in enumerate(trace.layers):
        for kind in kinds:
            if kind not in layer:
                continue
            x = np.asarray(layer[kind])  # (T, H)
            if y is None:
                y, mask = _prepare(labels, mask, x.shape[0])
                binary = is_binary(y)
            if mask is not None:
                x = x[mask]
            corr, au, score = _selectivity(x, y, binary)
            frames.append(pd.DataFrame({
                "layer": li, "kind": kind, "unit": np.arange(x.shape[1]),
                "direction": _direction(corr, au, binary), "corr": corr, "auroc": au, "score": score,
            }))
    if not frames:
        raise ConfigError(f"the trace holds none of the kinds {', '.join(kinds)}")
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def unit_stats(trace, layer: int, kind: str, labels=None, mask=None) -> pd.DataFrame:
    """Per unit of one layer and kind: variance, mean |activation|, and selectivity (rank_units' score;
    NaN without labels)."""
    if not 0 <= layer < len(trace.layers):
        raise ConfigError(f"layer must be from 0 to {len(trace.layers) - 1}, not {layer}")
    if kind not in trace.layers[layer]:
        raise ConfigError(f"layer {layer} has no {kind!r}; it has {', '.join(trace.layers[layer])}")
    x = np.asarray(trace.layers[layer][kind])  # (T, H)
    y, mask = _prepare(labels if labels is not None else np.zeros(x.shape[0]), mask, x.shape[0])
    if mask is not None:
        x = x[mask]  # every statistic over the counted time steps only
    selectivity = np.full(x.shape[1], np.nan)
    if labels is not None:
        selectivity = _selectivity(x, y, is_binary(y))[2]
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
