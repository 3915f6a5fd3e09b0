"""Character n-gram baseline: interpolated Kneser–Ney of orders 1..N over numpy-encoded counts.

Smoothing: interpolated Kneser–Ney with one absolute discount per order (Chen & Goodman 1998, the
"interpolated" variant, not the modified one with three discounts). For a history h of n − 1
characters, h' its last n − 2, and w the next character:

    P_n(w | h) = max(a_n(hw) − D_n, 0) / A_n(h) + D_n · T_n(h) / A_n(h) · P_{n−1}(w | h')

where, at the highest order N, a_N(hw) = c(hw) is the plain count; at every lower order a_n(hw) =
N1+(·hw) is the continuation count (how many distinct characters precede hw in the training text);
A_n(h) = Σ_w a_n(hw); T_n(h) = |{w : a_n(hw) > 0}|. When A_n(h) = 0 (a history never seen)
P_n(· | h) = P_{n−1}(· | h'). The recursion ends at P_0(w) = 1/V, uniform over the vocabulary
(whose id 0 is the unknown symbol), so every character, seen or not, gets a probability > 0 and the
probabilities over the vocabulary sum to 1 for any history. D_n = n1 / (n1 + 2·n2), with n1 and n2
the numbers of order-n items whose a_n is 1 and 2 (0.5 when either is zero). At the first
characters of a text, whose history is shorter than N − 1, the prediction starts at the order the
history allows.

n-grams are int64 codes in base V (the first character most significant), so the suffix of an
(n+1)-gram is `code % V**n` and the history of an n-gram `code // V`; counts come from np.unique and
lookups from np.searchsorted. V**N must stay below 2**63 (order 8 allows V up to 234).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import shared_state
from .errors import ConfigError, RnnvizError, TextError
from .vocab import Vocab

MAX_ORDER = 12
FORMAT = 1
_LEVEL_FIELDS = ("keys", "counts", "ctx_keys", "ctx_total", "ctx_types")


class NgramCacheError(RnnvizError):
    """A cached n-gram file is truncated, corrupt or of another format: refitted, never trusted."""


@dataclass
class Level:
    """One order's table: sorted n-gram codes with their (continuation) counts, and per history the
    total and the number of distinct next characters."""

    keys: np.ndarray  # (K,) int64, sorted
    counts: np.ndarray  # (K,) float64: c(hw) at the top order, N1+(·hw) below
    ctx_keys: np.ndarray  # (C,) int64, sorted histories
    ctx_total: np.ndarray  # (C,) float64: A_n(h)
    ctx_types: np.ndarray  # (C,) float64: T_n(h)
    discount: float


class NgramModel:
    """A fitted interpolated Kneser–Ney character model; `levels[n - 1]` is order n."""

    def __init__(self, vocab: Vocab, order: int, levels: list[Level], text_sha256: str = ""):
        self.vocab, self.order, self.levels, self.text_sha256 = vocab, order, levels, text_sha256

    @property
    def V(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        return self.vocab.encode(text)

    # --- probabilities ---------------------------------------------------------------------------

    def _history_codes(self, ids: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
        """codes[k][j]: the k characters ending at positions[j] (k = 0..N-1), -1 where too few."""
        V, out = self.V, [np.zeros(len(positions), np.int64)]
        code = np.zeros(len(positions), np.int64)
        for k in range(1, self.order):
            idx = positions - (k - 1)
            ok = idx >= 0
            ch = np.where(ok, ids[np.clip(idx, 0, None)], 0)
            code = code + ch * V ** (k - 1)  # the new character is the oldest: most significant
            out.append(np.where(ok & (out[-1] >= 0), code, -1))
        return out

    def _probs(self, hist: list[np.ndarray], nxt: np.ndarray) -> np.ndarray:
        """P(nxt | history) for each row: hist as from _history_codes, nxt (M,) ids; rows broadcast."""
        V = self.V
        p = np.full(nxt.shape, 1.0 / V)
        for n, lev in enumerate(self.levels, start=1):
            h = hist[n - 1]
            if nxt.ndim == 2:
                h = h[:, None]
            valid = h >= 0
            hc = np.where(valid, h, 0)
            ci = np.searchsorted(lev.ctx_keys, hc)
            ci_c = np.minimum(ci, len(lev.ctx_keys) - 1)
            seen = valid & (lev.ctx_keys[ci_c] == hc) if len(lev.ctx_keys) else np.zeros_like(valid)
            total = np.where(seen, lev.ctx_total[ci_c], 1.0)
            types = np.where(seen, lev.ctx_types[ci_c], 0.0)
            code = hc * V + nxt
            ki = np.minimum(np.searchsorted(lev.keys, code), len(lev.keys) - 1)
            a = np.where(seen & (lev.keys[ki] == code), lev.counts[ki], 0.0)
            d = lev.discount
            mixed = (np.maximum(a - d, 0.0) + d * types * p) / total
            p = np.where(seen, mixed, p)
        return p

    def surprisal(self, text: str) -> np.ndarray:
        """-log P(text[t+1] | text[:t+1]) in nats for t = 0..T-2, shape (T-1,); as a model's trace.loss[:-1]."""
        ids = self.encode(text)
        if len(ids) < 2:
            raise TextError("scoring needs at least two characters")
        out = np.empty(len(ids) - 1)
        for s in range(0, len(ids) - 1, 200_000):  # bounded memory on long texts
            pos = np.arange(s, min(s + 200_000, len(ids) - 1))
            out[pos] = -np.log(self._probs(self._history_codes(ids, pos), ids[pos + 1]))
        return out

    def loss(self, text: str) -> float:
        """Mean surprisal in nats/char of text[1:] given what precedes it (as training.evaluate)."""
        return float(self.surprisal(text).mean())

    def distribution(self, text: str, positions=None) -> np.ndarray:
        """(P, V) next-character probabilities after text[:t+1] for each t in `positions` (default: all)."""
        ids = self.encode(text)
        pos = np.arange(len(ids)) if positions is None else np.asarray(positions, np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= len(ids)):
            raise ConfigError("positions must lie inside the text")
        out = np.empty((len(pos), self.V))
        allw = np.arange(self.V)[None, :]
        step = max(1, 2_000_000 // self.V)
        for s in range(0, len(pos), step):
            p = pos[s:s + step]
            out[s:s + step] = self._probs(self._history_codes(ids, p), np.broadcast_to(allw, (len(p), self.V)))
        return out

    def argmax(self, text: str) -> np.ndarray:
        """(T-1,) the most probable next character's id after each prefix text[:t+1] (ties to the lowest id)."""
        ids = self.encode(text)
        out = np.empty(max(len(ids) - 1, 0), np.int64)
        step = 20_000
        for s in range(0, len(out), step):
            out[s:s + step] = self.distribution(text, np.arange(s, min(s + step, len(out)))).argmax(1)
        return out

    # --- plain arrays for the cache --------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"format": np.array(FORMAT), "order": np.array(self.order),
               "vocab": np.array([ord(c) for c in self.vocab.chars], np.int64),
               "discounts": np.array([lv.discount for lv in self.levels]),
               "sha256": np.array(self.text_sha256)}
        for n, lv in enumerate(self.levels, start=1):
            for f in _LEVEL_FIELDS:
                a = getattr(lv, f)
                # counts are whole numbers: int32 on disk (a corpus below 2**31 characters) halves the file
                out[f"{f}_{n}"] = a.astype(np.int32) if a.dtype == np.float64 and a.size and a.max() < 2**31 else a
        return out

    @classmethod
    def from_arrays(cls, a) -> "NgramModel":
        """Rebuild from `arrays()`, checking every shape, dtype and order: NgramCacheError otherwise."""
        try:
            if int(a["format"]) != FORMAT:
                raise NgramCacheError("another cache format")
            order = int(a["order"])
            vocab = Vocab([chr(int(c)) for c in a["vocab"]])
            disc = np.asarray(a["discounts"], np.float64)
            if not 1 <= order <= MAX_ORDER or disc.shape != (order,) or len(vocab) ** order >= 2 ** 63:
                raise NgramCacheError("bad order or discounts")
            levels = []
            for n in range(1, order + 1):
                f = {k: np.asarray(a[f"{k}_{n}"]) for k in _LEVEL_FIELDS}
                if f["keys"].dtype != np.int64 or f["ctx_keys"].dtype != np.int64 or f["keys"].ndim != 1:
                    raise NgramCacheError("bad dtypes")
                if f["keys"].shape != f["counts"].shape or \
                        not f["ctx_keys"].shape == f["ctx_total"].shape == f["ctx_types"].shape:
                    raise NgramCacheError("bad shapes")
                for k in ("keys", "ctx_keys"):
                    if f[k].size and (np.any(np.diff(f[k]) <= 0) or f[k][0] < 0 or f[k][-1] >= len(vocab) ** (n if k == "keys" else n - 1)):
                        raise NgramCacheError("keys not sorted or out of range")
                if not (np.all(np.isfinite(f["counts"])) and np.all(f["counts"] >= 0) and np.all(f["ctx_total"] > 0)):
                    raise NgramCacheError("bad counts")
                if not 0.0 <= disc[n - 1] < 1.0:
                    raise NgramCacheError("bad discount")
                levels.append(Level(f["keys"], f["counts"].astype(np.float64), f["ctx_keys"],
                                    f["ctx_total"].astype(np.float64), f["ctx_types"].astype(np.float64),
                                    float(disc[n - 1])))
            return cls(vocab, order, levels, str(a["sha256"]))
        except NgramCacheError:
            raise
        except (KeyError, ValueError, TypeError, OverflowError, IndexError, RnnvizError) as e:
            raise NgramCacheError(f"unreadable n-gram cache: {e}") from None


def max_order(V: int) -> int:
    """The highest order whose codes fit int64 for a vocabulary of V characters (at most MAX_ORDER)."""
    n = 1
    while n < MAX_ORDER and V ** (n + 1) < 2 ** 63:
        n += 1
    return n


# --- fitting -------------------------------------------------------------------------------------

def _discount(counts: np.ndarray) -> float:
    n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _level(keys: np.ndarray, counts: np.ndarray, V: int) -> Level:
    hist = keys // V
    ctx_keys, first, types = np.unique(hist, return_index=True, return_counts=True)  # keys sorted -> hist sorted
    total = np.add.reduceat(counts, first) if len(first) else np.zeros(0)
    return Level(keys, counts.astype(np.float64), ctx_keys, total.astype(np.float64),
                 types.astype(np.float64), _discount(counts))


def fit(text: str, order: int = 8, vocab: Vocab | None = None) -> NgramModel:
    """Fit an interpolated Kneser–Ney model of `order` on `text` (vocab: the text's characters by default)."""
    if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= MAX_ORDER:
        raise ConfigError(f"the n-gram order must be a whole number from 1 to {MAX_ORDER}, not {order!r}")
    if not isinstance(text, str) or not text:
        raise TextError("the n-gram model needs a training text; this one is empty")
    vocab = vocab or Vocab.from_text(text)
    V = len(vocab)
    if V ** order >= 2 ** 63:
        raise ConfigError(f"an order-{order} model over {V} characters does not fit int64 codes; "
                          f"use order {max_order(V)} or less")
    ids = vocab.encode(text)  # (L,)
    L = len(ids)
    if L < order + 1:
        raise TextError(f"the corpus has {L:,} characters, too few for an order-{order} model "
                        f"(it needs at least {order + 1}); lower the order or give more text")
    # ending codes: e[t] = code of ids[t-n+1..t]; grams of order n are e[n-1:]
    uniq: list[np.ndarray] = []
    top_counts = None
    code = np.zeros(L, np.int64)
    for n in range(1, order + 1):
        code[n - 1:] = code[n - 2:L - 1] * V + ids[n - 1:] if n > 1 else ids
        if n == order:
            u, c = np.unique(code[n - 1:], return_counts=True)
            top_counts = c
        else:
            u = np.unique(code[n - 1:])
        uniq.append(u)
    del code
    levels = []
    for n in range(1, order + 1):
        if n == order:
            keys, counts = uniq[n - 1], top_counts
        else:  # continuation counts: distinct (n+1)-grams per n-character suffix
            keys, counts = np.unique(uniq[n] % V ** n, return_counts=True)
        levels.append(_level(keys, counts, V))
    return NgramModel(vocab, order, levels, hashlib.sha256(text.encode("utf-8")).hexdigest())


# --- cache ---------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """ngram/ inside the atlas's cache folder (same rules: $RNNVIZ_ATLAS_DIR, atlas_cache/, user cache)."""
    from .atlas.store import default_cache_dir

    return default_cache_dir() / "ngram"


def cache_key(text: str, order: int, vocab: Vocab | None = None) -> str:
    h = hashlib.sha256(text.encode("utf-8"))
    h.update(f"|order={order}|format={FORMAT}|".encode())
    if vocab is not None:
        h.update("\x00".join(vocab.chars).encode("utf-8"))
    return h.hexdigest()[:32]


def fit_cached(text: str, order: int = 8, vocab: Vocab | None = None, folder: Path | None = None) -> NgramModel:
    """fit(), kept per (sha256 of the text, order, vocab) as a plain .npz; a bad file is refitted."""
    folder = Path(folder) if folder is not None else cache_dir()
    path = folder / f"{cache_key(text, order, vocab)}.npz"
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with shared_state.machine_lock(f"ngram:{path}"):  # fitted once: another process waits, then reads it
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    model = NgramModel.from_arrays(z)
                if model.text_sha256 == sha and model.order == order and (vocab is None or model.vocab == vocab):
                    return model
            except (NgramCacheError, OSError, ValueError, EOFError):
                pass  # refit below and overwrite
            except Exception:  # zip errors and the like from a damaged file: never trusted
                pass
        model = fit(text, order, vocab)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **model.arrays())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from another user's server
            os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
        except OSError:
            pass  # a read-only cache folder costs a refit next time, nothing else
        return model


# --- a model's training split ------------------------------------------------------------------

def training_text(config: dict) -> tuple[str, str | None]:
    """(the training part of a checkpoint's corpus as found here, notice), following the split its
    config.json records (see corpora.split_record). ConfigError when that corpus is not on this machine."""
    from . import corpora, heldout

    meta = config.get("corpus") if isinstance(config, dict) else None
    if isinstance(meta, str):
        meta = {"name": meta}
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ConfigError("this model's config names no training corpus, so no n-gram can be fitted on it")
    label = meta["name"]
    try:
        corpus, every = heldout.local_corpus(meta, config.get("recipe"))
    except (RnnvizError, OSError):
        corpus, every = None, None
    if corpus is None:
        raise ConfigError(f"{label}, the corpus this model trained on, is not on this machine: "
                          "fit the n-gram on another corpus")
    rec = meta.get("split") if isinstance(meta.get("split"), dict) else {}
    notice = None
    if corpus.sha256 != meta.get("sha256"):
        notice = f"The local {label} corpus differs from the one this model trained on."
    try:
        if rec.get("rule") == "documents" and len(corpus.documents) > 1:
            local = dict(every or [(n, corpus.text[s:e]) for n, s, e in corpus.documents])
            names = [d["name"] for d in rec["train"]]
            docs = [local[n] for n in names if n in local]
            if not docs:
                raise ConfigError(f"none of the documents this model trained on is in the local {label}")
            return "\n".join(docs), notice
        if rec.get("rule") == "offset" and len(corpus.documents) == 1:
            name, s, e = corpus.documents[0]
            start = rec["val_start"]
            if isinstance(start, int) and 0 < start < e - s:
                return corpus.text[s:s + start], notice
    except (KeyError, TypeError):
        pass  # an unreadable record: the positional split below
    fraction = rec.get("val_fraction")
    train, _ = corpora.split(corpus, fraction if isinstance(fraction, float) and 0 < fraction < 1 else 0.1)
    return train, notice
