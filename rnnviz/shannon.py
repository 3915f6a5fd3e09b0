"""Shannon's guessing game (1951): entropy bounds from the number of guesses per character.

A reader guesses the next character of a text, tries again until right, and the number of tries is
written down. With q_i the share of characters found on try i (i = 1, 2, ...), Shannon bounds the
reader's entropy in bits per character:

    lower = sum_i i (q_i - q_(i+1)) log2 i        upper = -sum_i q_i log2 q_i

A model plays the same game by guessing in the order of its own probabilities: the rank of the true
character is its number of tries. Its cross-entropy on the same characters sits beside the bounds.
"""
from __future__ import annotations

import html
import math
import threading
import time
import unicodedata
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .render import NAN_COLOR, char_label, value_color

BOARD_ENTRIES = 50  # the class board keeps the latest this many scores
NICKNAME_CHARS = 20


def _tries(tries) -> np.ndarray:
    """Tries as an int array (n,), each a whole number >= 1, or a ConfigError."""
    t = np.asarray(tries)
    if t.ndim != 1:
        raise ConfigError("give the tries as a flat list of whole numbers")
    if not t.size:
        return np.zeros(0, dtype=np.int64)
    bad = ConfigError("each character's number of tries must be a whole number of at least 1")
    if not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        raise bad
    f = t.astype(np.float64)
    if not np.all(np.isfinite(f)) or np.any(f != np.round(f)) or f.min() < 1:
        raise bad
    return f.astype(np.int64)


def frequencies(tries) -> np.ndarray:
    """q (max tries,): q[i - 1] is the share of characters found on try i."""
    t = _tries(tries)
    if not t.size:
        return np.zeros(0)
    return np.bincount(t, minlength=t.max() + 1)[1:] / t.size


def upper_bound(tries) -> float:
    """Shannon's upper bound -sum q_i log2 q_i, bits per character (NaN for no characters)."""
    q = frequencies(tries)
    if not q.size:
        return float("nan")
    q = q[q > 0]
    return float(-(q * np.log2(q)).sum()) + 0.0  # + 0.0: one certain outcome gives 0, not -0 (shown as -0.00)


def lower_bound(tries) -> float:
    """Shannon's lower bound sum_i i (q_i - q_(i+1)) log2 i, bits per character (NaN for none)."""
    q = frequencies(tries)
    if not q.size:
        return float("nan")
    i = np.arange(1, q.size + 1)
    nxt = np.append(q[1:], 0.0)  # q_(i+1); 0 past the largest number of tries
    return float((i * (q - nxt) * np.log2(i)).sum())


@dataclass
class Bounds:
    """Shannon's bounds from one set of tries."""

    n: int  # characters
    lower: float  # bits per character
    upper: float
    mean_tries: float


def bounds(tries) -> Bounds:
    t = _tries(tries)
    return Bounds(int(t.size), lower_bound(t), upper_bound(t), float(t.mean()) if t.size else float("nan"))


def model_ranks(probs: np.ndarray, targets, exclude=None) -> np.ndarray:
    """The model's number of tries for each target: 1 + the number of characters it finds likelier
    (ties go to the lower id, as a guesser reading its list in order would). probs (n, V), targets (n,)
    ids; `exclude` ids (the unknown symbol, which no reader can guess) are never guessed."""
    p = np.array(probs, dtype=np.float64, copy=True)  # (n, V)
    targets = np.asarray(targets, dtype=np.int64).ravel()
    if p.ndim != 2 or p.shape[0] != targets.size:
        raise ConfigError(f"{targets.size} targets but probabilities of shape {p.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= p.shape[1]):
        raise ConfigError("a target id is outside the vocabulary")
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64).ravel()
        if np.isin(targets, ex).any():
            raise ConfigError("a target is an excluded id (the unknown symbol): drop that character")
        p[:, ex] = -np.inf
    pt = p[np.arange(targets.size), targets][:, None]  # (n, 1)
    ids = np.arange(p.shape[1])[None, :]
    before = (p > pt) | ((p == pt) & (ids < targets[:, None]))  # (n, V)
    return 1 + before.sum(axis=1)


def cross_entropy_bits(probs: np.ndarray, targets) -> float:
    """Mean -log2 p(target) over the rows of probs (n, V), bits per character (NaN for none)."""
    targets = np.asarray(targets, dtype=np.int64).ravel()
    if not targets.size:
        return float("nan")
    p = np.asarray(probs, dtype=np.float64)[np.arange(targets.size), targets]
    return float(-np.log2(np.maximum(p, 1e-300)).mean())


@dataclass
class Tally:
    """A reader's and a model's game on the same characters."""

    reader: Bounds
    model: Bounds
    model_bits: float  # the model's cross-entropy on these characters, bits per character
    ranks: np.ndarray  # (n,) the model's tries


def tally(tries, probs: np.ndarray, targets, exclude=None) -> Tally:
    """The reader's bounds from `tries`, and the model's bounds and cross-entropy on the same characters:
    probs (n, V) is the model's distribution before each character, targets (n,) their ids."""
    t = _tries(tries)
    targets = np.asarray(targets, dtype=np.int64).ravel()
    if t.size != targets.size:
        raise ConfigError(f"{t.size} tries but {targets.size} characters")
    ranks = model_ranks(probs, targets, exclude)
    return Tally(bounds(t), bounds(ranks), cross_entropy_bits(probs, targets), ranks)


def passage_start(text: str, after: int = 200) -> int:
    """Where a game opens: the first line start past `after` characters (context to read), else the
    first line start, else 1 (the first character has nothing before it to predict from)."""
    for frm in (after, 0):
        at = text.find("\n", frm, max(0, len(text) - 1))  # a newline with a character after it
        if at >= 0:
            return at + 1
    return 1


# --- the passage, coloured by who guessed better ----------------------------------------------

def advantage(tries, ranks) -> np.ndarray:
    """log2(reader's tries / model's tries) per character: > 0 where the model needed fewer."""
    return np.log2(_tries(tries).astype(np.float64)) - np.log2(_tries(ranks).astype(np.float64))


_BOX = ("font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 15px; line-height: 1.7; "
        "white-space: pre-wrap; word-break: break-all; background: #fff; color: #000; padding: 8px; "
        "border: 1px solid #ddd; border-radius: 4px;")


def passage_html(before: str, found: str, tries, ranks, cursor: bool = True) -> str:
    """Escaped HTML: the context `before` in grey, then the characters found so far, each shaded by
    advantage() (red: the model needed fewer tries; blue: the reader did; white: the same), then a cursor."""
    t, r = _tries(tries), _tries(ranks)
    if not (len(found) == t.size == r.size):
        raise ConfigError(f"{len(found)} characters found but {t.size} tries and {r.size} model ranks")
    adv = advantage(t, r) if t.size else np.zeros(0)
    lim = max(1.0, float(np.abs(adv).max())) if adv.size else 1.0
    parts = [f'<span style="color: #777">{_escape_text(before)}</span>']
    for ch, a, ti, ri in zip(found, adv, t, r):
        color = value_color(a, -lim, lim) if np.isfinite(a) else NAN_COLOR
        tip = html.escape(f"'{char_label(ch)}': you {ti} {'try' if ti == 1 else 'tries'}, the model {ri}", quote=True)
        shown = html.escape("↵" if ch == "\n" else ch, quote=True) + ("<br>" if ch == "\n" else "")
        parts.append(f'<span title="{tip}" style="background-color: rgb{tuple(color)}">{shown}</span>')
    if cursor:
        parts.append('<span style="background: #111; color: #fff">?</span>')
    return f'<div class="rnnviz-guess" style="{_BOX}">{"".join(parts)}</div>'


def _escape_text(text: str) -> str:
    """Context text: escaped, invisible characters labelled, newlines kept as line breaks."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("<br>")
        elif ch in (" ", "\t"):
            out.append(ch)
        else:
            out.append(html.escape(char_label(ch), quote=True))
    return "".join(out)


# --- a class board ------------------------------------------------------------------------------

def clean_nickname(name: str) -> str:
    """A nickname as shown: printable characters only, spaces collapsed, at most NICKNAME_CHARS."""
    if not isinstance(name, str):
        raise ConfigError("a nickname must be text")
    kept = "".join(c for c in name if unicodedata.category(c)[0] not in ("C", "Z") or c == " ")
    kept = " ".join(kept.split())[:NICKNAME_CHARS].strip()
    if not kept:
        raise ConfigError(f"give a nickname: 1 to {NICKNAME_CHARS} visible characters")
    return kept


class Board:
    """Anonymous scores of a class, bounded: the latest `size` nicknames, one row each. In memory, or with
    `shared` (a shared_state.SharedState) in the machine's shared file, one board for all server processes."""

    def __init__(self, size: int = BOARD_ENTRIES, shared=None):
        self.size = int(size)
        self.shared = shared
        self._rows: dict[str, dict] = {}
        self._lock = threading.Lock()  # one board is shared by every session of the server

    def post(self, nickname: str, tries, model: str) -> dict:
        """Record (or replace) a nickname's score from its tries; the oldest row goes past `size`."""
        name = clean_nickname(nickname)
        b = bounds(tries)
        if b.n == 0:
            raise ConfigError("play at least one character before posting a score")
        row = {"nickname": name, "model": str(model)[:60], "characters": b.n, "mean tries": round(b.mean_tries, 2),
               "lower (bits/char)": round(b.lower, 3), "upper (bits/char)": round(b.upper, 3),
               "posted": time.time()}
        if self.shared is not None:
            self.shared.board_post(row, self.size)
            return row
        with self._lock:
            self._rows.pop(name, None)
            self._rows[name] = row
            while len(self._rows) > self.size:
                self._rows.pop(next(iter(self._rows)))
        return row

    def rows(self) -> list[dict]:
        """The rows, lowest upper bound first (the best guessers), without the posting time."""
        if self.shared is not None:
            rows = self.shared.board_rows()
        else:
            with self._lock:
                rows = [dict(r) for r in self._rows.values()]
        for r in rows:
            r.pop("posted", None)
        return sorted(rows, key=lambda r: (r["upper (bits/char)"], -r["characters"]))

    def clear(self) -> None:
        if self.shared is not None:
            self.shared.board_clear()
        with self._lock:
            self._rows.clear()


def describe(b: Bounds) -> str:
    """'between 1.05 and 1.82 bits per character (40 characters)'."""
    if b.n == 0 or not math.isfinite(b.upper):
        return "no characters yet"
    return f"between {b.lower:.2f} and {b.upper:.2f} bits per character ({b.n} characters)"


# --- one reader's game: a plain dict, so a session (or a notebook) can hold it -------------------------

CONTEXT = 300  # characters of the text shown before the passage
SHOWN = 600  # at most this many found characters are shown (the latest)


def new_game(ident: str) -> dict:
    """An empty game on the text named by `ident`: no passage yet, an empty tally."""
    return {"ident": ident, "start": None, "pos": None, "wrong": [], "log": [], "round": 0,
            "target": None, "msg": None, "skipped": 0}


def line_starts(text: str, after: int = 50) -> list[int]:
    """Every line start from character `after` on that has a character to play."""
    return [i + 1 for i, c in enumerate(text[:-1]) if c == "\n" and i + 1 >= after]


def open_passage(g: dict, text: str, start: int, vocab) -> None:
    """Play from `start` (a new start opens a new round, the tally kept), past the characters the model
    cannot predict (shown, not played); g["target"] is the next character to find, None at the end."""
    if g["start"] != start:
        g["start"], g["pos"], g["wrong"], g["round"], g["msg"] = start, start, [], g["round"] + 1, None
    while g["pos"] < len(text) and text[g["pos"]] not in vocab:
        g["pos"] += 1
        g["skipped"] += 1
    g["target"] = text[g["pos"]] if g["pos"] < len(text) else None


def guess(g: dict, typed: str) -> None:
    """One try at the target: right moves on and logs the tries; a repeated wrong one does not count."""
    if g.get("target") is None or not typed:
        return
    if len(typed) != 1:
        g["msg"] = "Type one character at a time."
        return
    g["msg"] = None
    if typed == g["target"]:
        g["log"].append({"pos": g["pos"], "char": typed, "tries": len(g["wrong"]) + 1, "wrong": list(g["wrong"]),
                         "round": g["round"]})
        g["pos"] += 1
        g["wrong"] = []
    elif typed in g["wrong"]:
        g["msg"] = f"You already tried {char_label(typed)!r}: it does not count twice."
    else:
        g["wrong"].append(typed)


def clear_tally(g: dict) -> None:
    """Forget every character played; the passage starts again."""
    g["log"], g["wrong"], g["pos"] = [], [], g["start"]


def this_round(g: dict) -> list[dict]:
    """The characters found in the passage now played."""
    return [e for e in g["log"] if e["round"] == g["round"] and e["pos"] >= g["start"]]


def game_html(g: dict, text: str, ranks) -> str:
    """The passage as played: its context, then the latest SHOWN characters found (ranks: the model's
    tries for this_round(g)); where unplayable characters were skipped, the text up to the cursor."""
    here, start, pos, cursor = this_round(g), g["start"], g["pos"], g["target"] is not None
    found, tries, ranks = "".join(e["char"] for e in here), [e["tries"] for e in here], list(ranks)
    if len(text[start:pos]) != len(found):
        return passage_html(text[max(0, pos - SHOWN - CONTEXT):pos], "", [], [], cursor=cursor)
    keep = min(len(found), SHOWN)  # the latest found characters, so the cursor stays in sight
    before = text[max(0, start - CONTEXT):start] if keep == len(found) else ""
    cut = len(found) - keep
    return passage_html(before, found[cut:], tries[cut:], ranks[cut:], cursor=cursor)


def code(ch: str) -> str:
    """A character as a markdown code span (a backtick inside needs double ones)."""
    label = char_label(ch)
    return f"`` {label} ``" if "`" in label else f"`{label}`"


def reveal(entry: dict, probs: np.ndarray, target: int, chars, exclude=(0,), top: int = 10) -> tuple[str, list[dict]]:
    """Where a character was found (a log entry): a sentence comparing the reader's tries with the model's,
    and the model's `top` likeliest characters. probs (V,) is its distribution before that character."""
    p = np.asarray(probs, dtype=np.float64).copy()  # (V,)
    p[list(exclude)] = 0.0  # the unknown symbol is no character to guess
    order = np.argsort(-p, kind="stable")[:top]
    rank = int(model_ranks(np.asarray(probs)[None], [target], exclude=list(exclude))[0])
    true_p = float(probs[target])
    tries = entry["tries"]
    sentence = (f"You found {code(entry['char'])} in **{tries}** {'try' if tries == 1 else 'tries'}. The model "
                f"would have found it in **{rank}**: it gave it **p = {true_p:.2f}**, and its own first choice "
                f"{code(chars[order[0]])} p = {p[order[0]]:.2f}.")
    rows = [{"character": char_label(chars[i]), "probability": float(p[i]),
             "the true one": "✓" if i == target else ""} for i in order]
    return sentence, rows
