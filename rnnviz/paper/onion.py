"""The paper's error analysis, "peeling the onion" (its Section 4.4): which errors a model makes, by cause.

An error is a character whose true value the model gave probability p < 0.5. Oracles then remove
errors in the paper's order, each from what the earlier ones left (docs/paper.md defines each):

1. n-gram: a Kneser–Ney n-gram of some order n ≤ max_order, fitted on the model's training split,
   gives the true character p ≥ 0.5;
2. dynamic memory: the `memory` characters before it and the character itself occurred, as one
   string, earlier in the analysed text;
3. rare word: it belongs to a word seen at most `rare_max` times in the training text;
4. word model: it is the first character of a word;
5. punctuation: it is neither a word character nor white space;
6. boost: the rest.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, TextError

NAMES = ("n-gram", "dynamic memory", "rare words", "word model", "punctuation", "boost")
ERROR_P = 0.5  # the paper's threshold: p(true next character) below it is an error
MEMORY = 5  # characters of context that must repeat, with the character, for dynamic memory
RARE_MAX = 5  # a word seen at most this many times in training is rare
_WORD = re.compile(r"\w+")


@dataclass
class OnionResult:
    """Errors of one model on one text, each in the first category that explains it."""

    chars: int  # characters predicted: len(text) - 1
    errors: int
    categories: list[dict]  # per category, in NAMES order: name, count, share (of the errors)
    # (T,) int: the category of the prediction made after text[t] (aligned as trace.loss), -1 where no error
    category: np.ndarray
    names: tuple = NAMES
    p_true: np.ndarray = field(default=None, repr=False)  # (T,) p of text[t + 1] after text[:t + 1]; NaN at the last
    orders: tuple = ()  # n-gram orders the oracle used
    memory: int = MEMORY
    rare_max: int = RARE_MAX

    def to_dict(self) -> dict:
        """{"chars", "errors", "categories": [{"name", "count", "share"}]}: what the CLI prints."""
        return {"chars": self.chars, "errors": self.errors,
                "categories": [{"name": c["name"], "count": c["count"], "share": c["share"]} for c in self.categories]}

    @property
    def by_char(self) -> np.ndarray:
        """(T,) the category aligned with the character that was mispredicted (-1 at the first)."""
        return np.concatenate([[-1], self.category[:-1]]).astype(np.int64)


def _is_word(ch: str) -> bool:
    return bool(_WORD.fullmatch(ch))


def word_counts(text: str) -> Counter:
    """How often each word (a maximal run of \\w characters, case kept) occurs in `text`."""
    return Counter(_WORD.findall(text))


def _word_of(text: str) -> list[str | None]:
    """(T,) the whole word each character belongs to, None for a character outside words."""
    out: list[str | None] = [None] * len(text)
    for m in _WORD.finditer(text):
        out[m.start():m.end()] = [m.group()] * (m.end() - m.start())
    return out


def _repeats(text: str, memory: int) -> np.ndarray:
    """(T,) bool: text[j - memory : j + 1] occurred ending before j (False where j < memory)."""
    seen, out = set(), np.zeros(len(text), bool)
    for j in range(memory, len(text)):
        s = text[j - memory:j + 1]
        out[j] = s in seen
        seen.add(s)
    return out


def peel(text: str, p_true: np.ndarray, ngram_p: np.ndarray, train_words: Counter, *,
         memory: int = MEMORY, rare_max: int = RARE_MAX, orders: tuple = ()) -> OnionResult:
    """The onion from probabilities already computed: p_true (T-1,) the model's p of text[j] for
    j = 1..T-1, ngram_p (O, T-1) each n-gram's p of the same characters, train_words the training
    text's word counts."""
    T = len(text)
    p_true = np.asarray(p_true, np.float64)
    ngram_p = np.asarray(ngram_p, np.float64).reshape(-1, T - 1) if T > 1 else np.zeros((0, 0))
    if T < 2 or p_true.shape != (T - 1,):
        raise TextError(f"the onion needs p of every character after the first: {T - 1} values, got {p_true.shape}")
    if memory < 1 or rare_max < 0:
        raise ConfigError("memory must be at least 1 and rare_max at least 0")
    words, repeats = _word_of(text), _repeats(text, memory)
    cat = np.full(T, -1, np.int64)
    err = p_true < ERROR_P  # (T-1,)
    oracle = (ngram_p >= ERROR_P).any(0) if len(ngram_p) else np.zeros(T - 1, bool)
    for t in np.flatnonzero(err):
        j = t + 1  # the mispredicted character
        ch, w = text[j], words[j]
        if oracle[t]:
            k = 0
        elif repeats[j]:
            k = 1
        elif w is not None and train_words.get(w, 0) <= rare_max:
            k = 2
        elif w is not None and not _is_word(text[j - 1]):
            k = 3
        elif w is None and not ch.isspace():
            k = 4
        else:
            k = 5
        cat[t] = k
    n_err = int(err.sum())
    counts = np.bincount(cat[cat >= 0], minlength=len(NAMES))
    cats = [{"name": n, "count": int(c), "share": float(c / n_err) if n_err else 0.0} for n, c in zip(NAMES, counts)]
    p_full = np.concatenate([p_true, [np.nan]])
    return OnionResult(chars=T - 1, errors=n_err, categories=cats, category=cat, p_true=p_full,
                       orders=tuple(orders), memory=memory, rare_max=rare_max)


def model_p_true(model, text: str) -> np.ndarray:
    """(T-1,) the model's probability of each character of `text` after the first."""
    from ..trace import trace

    return np.exp(-trace(model, text, top_k=1, gates=False).loss[:-1].astype(np.float64))


def ngram_p_true(train_text: str, text: str, orders, vocab) -> np.ndarray:
    """(O, T-1) each order's Kneser–Ney probability of each character of `text` after the first."""
    from ..ngram import fit_cached

    return np.stack([np.exp(-fit_cached(train_text, n, vocab).surprisal(text)) for n in orders])


def oracle_orders(vocab_size: int, max_order: int = 9) -> tuple[int, ...]:
    """Orders 1..max_order, capped where the n-gram's int64 codes stop fitting this vocabulary."""
    from ..ngram import max_order as fits

    if not isinstance(max_order, int) or max_order < 1:
        raise ConfigError(f"max_order must be a whole number of at least 1, not {max_order!r}")
    return tuple(range(1, min(max_order, fits(vocab_size)) + 1))


def onion(model, text: str, *, train_text: str, max_order: int = 9, memory: int = MEMORY,
          rare_max: int = RARE_MAX) -> OnionResult:
    """Peel `model`'s errors on `text`, the n-gram oracle and rare words read from `train_text`."""
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("the onion needs a text of at least two characters")
    if not train_text:
        raise TextError("the onion needs the model's training text for its n-gram oracle and rare words")
    orders = oracle_orders(len(model.vocab), max_order)
    return peel(text, model_p_true(model, text), ngram_p_true(train_text, text, orders, model.vocab),
                word_counts(train_text), memory=memory, rare_max=rare_max, orders=orders)


def compare_onions(small: OnionResult, large: OnionResult) -> list[dict]:
    """Per category: both models' counts and shares, and the change in count (large − small)."""
    if small.chars != large.chars:
        raise ConfigError("compare onions over the same text: the two analyses read texts of different lengths")
    return [{"name": a["name"], "small": a["count"], "large": b["count"], "change": b["count"] - a["count"],
             "small_share": a["share"], "large_share": b["share"]}
            for a, b in zip(small.categories, large.categories)]
