"""Hypotheses about characters: each turns a text into one label per character, (T,) float32."""
from __future__ import annotations

import io
import re
import tokenize
from typing import Callable

import numpy as np

from .errors import ConfigError

Hypothesis = Callable[[str], np.ndarray]


def _codes(text: str) -> np.ndarray:
    """Code points of `text`, shape (T,)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _line_start_flags(codes: np.ndarray) -> np.ndarray:
    """True for each character that directly follows a newline, shape (T,)."""
    prev_nl = np.zeros(len(codes), dtype=bool)
    prev_nl[1:] = codes[:-1] == 10
    return prev_nl


# --- hypotheses: text -> float32 (T,) ---------------------------------------------------------

# A literal opens with ' or " (a ' right after a letter or digit is an apostrophe, battle's, unless
# it follows a string prefix such as f' or rb' that itself starts a word) and runs to its closing
# quote or, unclosed, to the end of the line; backslash escapes.
_OPENER = re.compile(r"(?:(?<!\w)[rRbBfFuU]{1,2}|(?<!\w))'|\"")
_BODY = {"'": re.compile(r"'(?:[^'\\\n]|\\.)*('?)"), '"': re.compile(r'"(?:[^"\\\n]|\\.)*("?)')}


def inside_quotes(text: str) -> np.ndarray:
    """1 inside '...' or "..." on one line, quotes included; an unclosed quote ends at the line end.

    An elision is not a quote: a ' before a letter that no ' closes on its line ('Tis, 'gainst,
    'twixt) opens nothing, and the search goes on from the next character. (An elision that a later
    ' on its line seems to close, as in "'Tis so: 'Frets" or "'Tis bargain'd", is still read as a
    quote.)
    """
    out = np.zeros(len(text), dtype=np.float32)
    pos = 0
    while (m := _OPENER.search(text, pos)) is not None:
        q = m.end() - 1  # the quote character itself
        body = _BODY[text[q]].match(text, q)
        if text[q] == "'" and not body.group(1) and text[q + 1:q + 2].isalpha():
            pos = q + 1  # an elision
            continue
        out[m.start():body.end()] = 1.0
        pos = body.end()
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


_WORD = re.compile(r"\w+(?:'\w+)*")  # letters, digits, _; an apostrophe inside a word (o'er) joins it


def position_in_word(text: str) -> np.ndarray:
    """1-based position of a character in its word (a run of letters, digits and _, an apostrophe
    between two of them included: "o'er" is one word); 0 outside words. "ab c" -> 1,2,0,1."""
    inside = np.zeros(len(text), dtype=bool)
    for m in _WORD.finditer(text):
        inside[m.start():m.end()] = True
    idx = np.arange(len(text))
    starts = inside & ~np.concatenate(([False], inside[:-1]))  # (T,) first character of each word
    first = np.maximum.accumulate(np.where(starts, idx, 0))
    return np.where(inside, idx - first + 1, 0).astype(np.float32)


def line_length(text: str) -> np.ndarray:
    """Length of the current line (its newline not counted), for every character of it and its newline."""
    lines = text.split("\n")
    lengths = [len(line) + 1 for line in lines]
    return np.repeat(np.asarray([len(line) for line in lines], dtype=np.float32), lengths)[: len(text)]


# a play's speaker line: "NAME:" alone on a line, at the text's start or after a blank line, with a
# line of speech after it (tinyshakespeare's and the shakespeare corpus's format)
_SPEAKER = re.compile(r"(?:\A|(?<=\n\n))[A-Z][A-Za-z '.,&-]{0,60}:\n(?=[^\n])")


def speaker_line(text: str) -> np.ndarray:
    """1 on a play's speaker-name line ("KING RICHARD III:" at the text's start or after a blank
    line, with speech on the next line), its newline included."""
    out = np.zeros(len(text), dtype=np.float32)
    for m in _SPEAKER.finditer(text):
        out[m.start():m.end()] = 1.0
    return out


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


def is_binary(labels) -> bool:
    """True when every label is 0 or 1 (then AUROC applies)."""
    arr = np.asarray(labels)
    return arr.size > 0 and bool(np.isin(arr, (0, 1)).all())


def label_band(labels, mask=None) -> np.ndarray | None:
    """A hypothesis's labels (T,) as render.colored_text's band: the labels, NaN where `mask` (T,) bool
    leaves a character out; None when the counted labels are not all 0 or 1 (a count has no yes/no band)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    keep = None if mask is None else np.asarray(mask, dtype=bool).ravel()
    if not is_binary(y if keep is None else y[keep]):
        return None
    return y if keep is None else np.where(keep, y, np.nan)


# --- Python string literals via tokenize ------------------------------------------------------

_STRING_OPEN = tuple(getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n))
_STRING_CLOSE = tuple(getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n))
_SKIP = (tokenize.NL, tokenize.COMMENT)  # tokens that neither start nor end a statement


def _statement_start(items) -> int:
    """Offset after the last complete statement: where an unreadable one begins."""
    ends = [end for typ, _, end, _ in items if typ == tokenize.NEWLINE]
    return ends[-1] if ends else 0


def _python_items(source: str) -> tuple[list[tuple[int, int, int, bool]], int | None]:
    """Tokens of `source` as (token type, start offset, end offset, spans lines), an f-string as one
    STRING item; and the offset from which tokenize could not read (the start of the statement
    where it failed), or None when it read everything."""
    n = len(source)
    line_starts = [0] + [m.end() for m in re.finditer("\n", source)]

    def offset(pos: tuple[int, int]) -> int:
        row, col = pos
        return n if row > len(line_starts) else min(line_starts[row - 1] + col, n)

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
    return items, bad_from


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
    items, bad_from = _python_items(source)

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


def python_strings(text: str) -> np.ndarray:
    """1 on every character of a Python string literal by tokenize (docstrings and multi-line strings
    included: python_string_labels without its mask); 0 from the statement where tokenize fails on.
    hypothesis_mask gives the characters to count with it: one-line strings in code against code."""
    return python_string_labels(text)[0]


def python_comments(text: str) -> np.ndarray:
    """1 on every character of a Python comment by tokenize ('#' to the line end); 0 from the
    statement where tokenize fails on."""
    out = np.zeros(len(text), dtype=np.float32)
    items, bad_from = _python_items(text)
    for typ, start, end, _ in items:
        if typ == tokenize.COMMENT:
            out[start:end] = 1.0
    if bad_from is not None:
        out[bad_from:] = 0.0
    return out


HYPOTHESES: dict[str, Hypothesis] = {
    "inside quotes": inside_quotes,
    "inside a string (tokenize)": python_strings,
    "inside a comment (tokenize)": python_comments,
    "bracket depth": bracket_depth,
    "position in line": position_in_line,
    "line length": line_length,
    "position in the word": position_in_word,
    "indentation": indentation,
    "right after a newline": after_newline,
    "speaker-name line": speaker_line,
    "uppercase": uppercase,
    "vowel": vowel,
}


# Characters a hypothesis leaves out of the count, where it has such a rule: text -> (T,) bool, True
# for a character to count. The python-lstm quote unit follows one-line strings in code; docstrings,
# multi-line strings and comments (python_string_labels' mask) would blur it.
MASKS: dict[str, Callable[[str], np.ndarray]] = {
    "inside a string (tokenize)": lambda text: python_string_labels(text)[1],
}


def hypothesis_mask(name: str, text: str) -> np.ndarray | None:
    """The characters to count for hypothesis `name` on `text` ((T,) bool), or None to count all."""
    rule = MASKS.get(name)
    return None if rule is None else rule(text)
