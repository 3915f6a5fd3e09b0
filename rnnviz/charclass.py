"""The error analysis of Karpathy, Johnson & Fei-Fei (2015): character classes and closing-delimiter accuracy.

Every character of a text gets one class. When several apply, the first in this order wins:

  1. closing bracket d1–5 / d6–20 / d21–60 / d61+: a `)`, `]` or `}` that closes the matching opener
     d characters before it (brackets inside strings do not count);
  2. closing quote d1–5 / ... : the quote that closes a string opened d characters before it;
  3. after newline: the character right after a `\\n`;
  4. in string: a character strictly inside a string;
  5. word start: a letter, digit or `_` after a character that is none of these (an apostrophe
     after a letter or digit does not end a word: "I'll" is one word);
  6. other.

Strings: a `"` or `'` opens a string that the next unescaped quote of the same kind closes on the same
line; three quotes of a kind open a string that the next unescaped three of that kind close,
across lines in Python source (docstrings: its closer is the first of the three, at its distance from the
first opening quote; the other quotes of the six are "other"); a backslash inside a string escapes
the next character; a `'` right after a letter or digit
is an apostrophe ("I'll"), never an opener, and one right before a letter or digit never a closer
("'Tis true, 'tis" holds no string); a quote still open at the end of its line opened no
string ("'tis" in a play), so neither it nor what follows counts as a string. Brackets match with a
stack across lines; a closer that does not match the innermost opener is "other" and leaves the
stack as it was.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ConfigError, TextError

BUCKETS = ((1, 5), (6, 20), (21, 60), (61, None))  # distance ranges, both ends included
_PAIRS = {")": "(", "]": "[", "}": "{"}
_PY_DEF = re.compile(r"^[ \t]*(?:def|class)[ \t]+\w+.*:[ \t]*$", re.M)


def bucket_label(lo: int, hi: int | None) -> str:
    return f"d{lo}+" if hi is None else f"d{lo}–{hi}"


BUCKET_LABELS = [bucket_label(lo, hi) for lo, hi in BUCKETS]
CLASSES = ([f"closing bracket {b}" for b in BUCKET_LABELS] + [f"closing quote {b}" for b in BUCKET_LABELS]
           + ["after newline", "in string", "word start", "other"])
NONE, BRACKET, QUOTE = 0, 1, 2  # closer kinds


@dataclass
class CharClasses:
    """Per character of a text: its class (index into CLASSES), and for closers their kind and distance."""

    text: str
    labels: np.ndarray  # (T,) int, index into CLASSES
    closer: np.ndarray  # (T,) int: NONE, BRACKET or QUOTE
    distance: np.ndarray  # (T,) int: position minus its opener's, 0 for non-closers

    def names(self) -> np.ndarray:
        return np.array(CLASSES, dtype=object)[self.labels]


def bucket_of(distance: np.ndarray) -> np.ndarray:
    """Bucket index (into BUCKETS) of each distance ≥ 1; -1 for 0."""
    d = np.asarray(distance)
    out = np.full(d.shape, -1)
    for i, (lo, hi) in enumerate(BUCKETS):
        out[(d >= lo) & ((d <= hi) if hi is not None else True)] = i
    return out


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _triple_end(text: str, i: int, triple: str) -> int:
    """Where the next unescaped `triple` starts at or after i (-1 if none)."""
    while True:
        j = text.find(triple, i)
        if j < 0:
            return -1
        k = j  # an odd run of backslashes before it escapes its first quote
        while k > i and text[k - 1] == "\\":
            k -= 1
        if (j - k) % 2 == 0:
            return j
        i = j + 1


def looks_like_python(text: str) -> bool:
    """At least three lines `def name(...):` or `class Name...:`: Python source, whose triple quotes are strings."""
    return len(_PY_DEF.findall(text, 0, 1_000_000)) >= 3


def _strings(text: str, triple: bool) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(in_string mask (T,), [(open, close)] of each string), by the rules in the module docstring."""
    T = len(text)
    inside = np.zeros(T, bool)
    spans: list[tuple[int, int]] = []
    i, line_open = 0, None  # line_open: (quote char, position) of the string open on this line
    escaped = False
    while i < T:
        c = text[i]
        if line_open is None:
            if triple and c in "'\"" and text.startswith(c * 3, i):  # a triple-quoted string, as Python's docstrings
                j = _triple_end(text, i + 3, c * 3)
                if j < 0:
                    i += 3  # never closed: no string
                    continue
                spans.append((i, j))
                inside[i + 3:j] = True
                i = j + 3
                continue
            if c == '"' or (c == "'" and not (i and text[i - 1].isalnum())):
                line_open, escaped = (c, i), False
        elif c == "\n":
            line_open = None  # never closed on its line: no string
        elif escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == line_open[0] and not (c == "'" and i + 1 < T and text[i + 1].isalnum()):
            start = line_open[1]
            spans.append((start, i))
            inside[start + 1:i] = True
            line_open = None
        i += 1
    return inside, spans


def classify(text: str, triple_quotes: bool | None = None) -> CharClasses:
    """The class of every character of `text` (see the module docstring for the rules). Triple quotes
    open strings when `triple_quotes`, by default when the text looks like Python (looks_like_python):
    elsewhere three quotes in a row are two strings side by side, as '""' then '"x"'."""
    if not isinstance(text, str) or not text:
        raise TextError("the text is empty: give at least one character")
    T = len(text)
    inside, spans = _strings(text, looks_like_python(text) if triple_quotes is None else triple_quotes)
    closer = np.zeros(T, int)
    distance = np.zeros(T, int)
    in_quote_char = np.zeros(T, bool)  # the quote characters themselves: brackets there are not brackets
    for s, e in spans:
        closer[e], distance[e] = QUOTE, e - s
        in_quote_char[s] = in_quote_char[e] = True
    stack: list[tuple[str, int]] = []
    for i, c in enumerate(text):
        if inside[i] or in_quote_char[i]:
            continue
        if c in "([{":
            stack.append((c, i))
        elif c in _PAIRS and stack and stack[-1][0] == _PAIRS[c]:
            _, j = stack.pop()
            closer[i], distance[i] = BRACKET, i - j
    labels = np.full(T, CLASSES.index("other"))
    arr = np.array(list(text), dtype="<U1")
    word = np.vectorize(_is_word, otypes=[bool])(arr)
    apos = np.concatenate([[False], (arr[1:] == "'") & np.vectorize(str.isalnum, otypes=[bool])(arr[:-1])])
    prev_word = np.concatenate([[False], (word | apos)[:-1]])
    labels[word & ~prev_word] = CLASSES.index("word start")
    labels[inside] = CLASSES.index("in string")
    after_nl = np.concatenate([[False], arr[:-1] == "\n"])
    labels[after_nl] = CLASSES.index("after newline")
    b = bucket_of(distance)
    for kind, name in ((QUOTE, "closing quote"), (BRACKET, "closing bracket")):  # brackets last: they win
        for k, lab in enumerate(BUCKET_LABELS):
            labels[(closer == kind) & (b == k)] = CLASSES.index(f"{name} {lab}")
    return CharClasses(text, labels, closer, distance)


def closing_accuracy(classes: CharClasses, predicted: np.ndarray) -> pd.DataFrame:
    """Accuracy of a next-character predictor on closing brackets and quotes, per distance bucket.

    predicted: (T-1,) characters (numpy str array), predicted[t] the predictor's most probable
    character after text[:t+1], scored against text[t+1]. NaN-free: a position the predictor did not
    score is given as "" and left out. Rows: kind, bucket, count, correct, accuracy (NaN when count is 0).
    """
    predicted = np.asarray(predicted)
    T = len(classes.text)
    if predicted.shape != (T - 1,):
        raise ConfigError(f"expected {T - 1} predictions (one per next character), got {predicted.shape}")
    truth = np.array(list(classes.text[1:]), dtype="<U1")
    scored = predicted != ""
    right = (predicted == truth) & scored
    b = bucket_of(classes.distance[1:])
    rows = []
    for kind, name in ((BRACKET, "bracket"), (QUOTE, "quote")):
        for k, lab in enumerate(BUCKET_LABELS):
            m = (classes.closer[1:] == kind) & (b == k) & scored
            n = int(m.sum())
            c = int(right[m].sum())
            rows.append({"kind": name, "bucket": lab, "count": n, "correct": c,
                         "accuracy": c / n if n else float("nan")})
    return pd.DataFrame(rows)
