"""Two next-character predictors (an RNN, or the n-gram baseline) on the same text: surprisal, classes, accuracy."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import charclass
from .errors import TextError
from .vocab import UNK


@dataclass
class Scores:
    """What one predictor says about a text: per next character t+1, its surprisal and top guess."""

    name: str
    chars: list[str]  # the predictor's vocabulary (index 0 the unknown symbol)
    surprisal: np.ndarray  # (T-1,) nats, -log p(text[t+1] | text[:t+1])
    predicted: np.ndarray  # (T-1,) str: the most probable next character


@torch.no_grad()
def model_scores(model, text: str, name: str = "model", chunk: int = 4096) -> Scores:
    """Scores of a CharRNN, read as one stream with the state carried (as training.evaluate)."""
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("comparing needs a text of at least two characters")
    was = model.training
    model.eval()
    ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)
    sur, top, state = [], [], None
    try:
        for s in range(0, len(ids) - 1, chunk):
            y = ids[s + 1:s + chunk + 1]
            x = ids[s:s + chunk][None, : len(y)]
            logits, state = model(x, state)
            logp = F.log_softmax(logits[0].double(), -1)  # (t, V)
            sur.append(-logp.gather(1, y[:, None])[:, 0].cpu().numpy())
            top.append(logp.argmax(1).cpu().numpy())
    finally:
        model.train(was)
    chars = np.array(model.vocab.chars, dtype="<U1")
    return Scores(name, list(model.vocab.chars), np.concatenate(sur), chars[np.concatenate(top)])


def ngram_scores(ngram, text: str, name: str | None = None) -> Scores:
    """Scores of a fitted rnnviz.ngram.NgramModel."""
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("comparing needs a text of at least two characters")
    chars = np.array(ngram.vocab.chars, dtype="<U1")
    return Scores(name or f"{ngram.order}-gram", list(ngram.vocab.chars), ngram.surprisal(text),
                  chars[ngram.argmax(text)])


@dataclass
class Comparison:
    """A against B on one text. Arrays are (T-1,), one per next character; NaN where left out."""

    text: str
    a: Scores
    b: Scores
    classes: charclass.CharClasses
    kept: np.ndarray  # (T-1,) bool: next characters both predictors know
    left_out: dict[str, int] = field(default_factory=dict)  # characters of text[1:] one of them lacks, counts

    @property
    def diff(self) -> np.ndarray:
        """A's surprisal minus B's: negative where A predicts better."""
        d = self.a.surprisal - self.b.surprisal
        return np.where(self.kept, d, np.nan)

    def mean(self) -> tuple[float, float]:
        """Mean surprisal (nats/char) of A and of B over the kept characters."""
        return float(self.a.surprisal[self.kept].mean()), float(self.b.surprisal[self.kept].mean())

    def to_frame(self) -> pd.DataFrame:
        """One row per next character, as the coloured text and the position chart draw them: its position in
        the text, the character, its class, whether it is compared (in both vocabularies), each predictor's
        surprisal (nats) and top guess, and A − B (NaN where not compared)."""
        return pd.DataFrame({"position": np.arange(1, len(self.text)), "char": list(self.text[1:]),
                             "class": self.classes.names()[1:], "compared": self.kept,
                             "surprisal_a": self.a.surprisal, "surprisal_b": self.b.surprisal,
                             "a_minus_b": self.diff, "top_a": self.a.predicted, "top_b": self.b.predicted})

    def breakdown(self) -> pd.DataFrame:
        """Per class (CLASSES order, empty ones dropped): count, mean surprisal of A and B, their
        difference A − B, and the share of characters where A's surprisal is lower."""
        lab = self.classes.labels[1:]
        sa, sb = self.a.surprisal, self.b.surprisal
        rows = []
        for k, name in enumerate(charclass.CLASSES):
            m = (lab == k) & self.kept
            n = int(m.sum())
            if not n:
                continue
            rows.append({"class": name, "count": n, "mean_a": float(sa[m].mean()), "mean_b": float(sb[m].mean()),
                         "diff": float((sa[m] - sb[m]).mean()), "a_wins": float(np.mean(sa[m] < sb[m]))})
        return pd.DataFrame(rows, columns=["class", "count", "mean_a", "mean_b", "diff", "a_wins"])

    def accuracy(self) -> pd.DataFrame:
        """Closing-bracket and closing-quote accuracy per distance bucket, for A and B (kept characters only)."""
        out = []
        for sc in (self.a, self.b):
            pred = np.where(self.kept, sc.predicted, "")
            t = charclass.closing_accuracy(self.classes, pred)
            t.insert(0, "model", sc.name)
            out.append(t)
        return pd.concat(out, ignore_index=True)


def compare(text: str, a: Scores, b: Scores) -> Comparison:
    """Compare two predictors' Scores on `text`, on the next characters both know (others left out, listed)."""
    T = len(text)
    for sc in (a, b):
        if sc.surprisal.shape != (T - 1,) or sc.predicted.shape != (T - 1,):
            raise TextError(f"{sc.name}'s scores are not for this text ({T - 1} next characters expected)")
    known = (set(a.chars) & set(b.chars)) - {UNK}
    nxt = text[1:]
    kept = np.fromiter((c in known for c in nxt), bool, count=T - 1)
    left_out = dict(Counter(c for c in nxt if c not in known))
    if not kept.any():
        raise TextError("the two models share none of this text's characters, so there is nothing to compare")
    return Comparison(text, a, b, charclass.classify(text), kept, left_out)


def left_out_message(cmp: Comparison) -> str | None:
    """A sentence naming the characters left out of the comparison, or None."""
    if not cmp.left_out:
        return None
    only_a = [c for c in cmp.left_out if c in cmp.a.chars and c != UNK]
    only_b = [c for c in cmp.left_out if c in cmp.b.chars and c != UNK]
    n = sum(cmp.left_out.values())
    shown = ", ".join(repr(c) for c in sorted(cmp.left_out))
    parts = [f"{n:,} character{'s' if n != 1 else ''} of the text left out ({shown}): not in both vocabularies"]
    if only_a:
        parts.append(f"only {cmp.a.name} knows {', '.join(map(repr, sorted(only_a)))}")
    if only_b:
        parts.append(f"only {cmp.b.name} knows {', '.join(map(repr, sorted(only_b)))}")
    return "; ".join(parts) + "."


def summary(cmp: Comparison, top: int = 3, min_count: int = 20) -> str:
    """Plain words for the default view: overall means, and the classes (of at least `min_count`
    characters) where A's mean surprisal is lowest, and highest, against B's."""
    ma, mb = cmp.mean()
    bd = cmp.breakdown()
    bd = bd[bd["count"] >= min_count].sort_values("diff")
    lines = [f"Over {int(cmp.kept.sum()):,} characters, {cmp.a.name} averages {ma:.3f} nats/char and "
             f"{cmp.b.name} {mb:.3f}."]
    wins = bd[bd["diff"] < 0].head(top)
    if len(wins):
        lines.append(f"{cmp.a.name} gains most over {cmp.b.name} on " + "; ".join(
            f"“{r['class']}” ({-r['diff']:.2f} nats/char lower, {r['count']:,} chars)"
            for _, r in wins.iterrows()) + ".")
    losses = bd[bd["diff"] > 0].tail(1)
    if len(losses):
        r = losses.iloc[-1]
        lines.append(f"{cmp.b.name} does best against it on “{r['class']}” ({r['diff']:.2f} nats/char lower "
                     f"for {cmp.b.name}, {r['count']:,} chars).")
    return " ".join(lines)


def closing_words(cmp: Comparison, min_count: int = 20) -> str | None:
    """Plain words for the accuracy curves: the distance bucket (of at least `min_count` closers) where
    A's accuracy most exceeds B's, for brackets and for quotes; None when no bucket has enough closers."""
    acc = cmp.accuracy()
    a, b = (acc[acc["model"] == sc.name].set_index(["kind", "bucket"]) for sc in (cmp.a, cmp.b))
    if cmp.a.name == cmp.b.name:  # the same name twice: tell them apart by position
        a, b = (acc.iloc[i * len(acc) // 2:(i + 1) * len(acc) // 2].set_index(["kind", "bucket"]) for i in (0, 1))
    out = []
    for kind in ("bracket", "quote"):
        rows = [(k, a.loc[(kind, k)], b.loc[(kind, k)]) for k in charclass.BUCKET_LABELS
                if a.loc[(kind, k), "count"] >= min_count]
        if not rows:
            continue
        k, ra, rb = max(rows, key=lambda r: r[1]["accuracy"] - r[2]["accuracy"])
        dist = k.removeprefix("d").replace("–", " to ").replace("+", " or more")
        out.append(f"on the {int(ra['count']):,} closing {kind}s {dist} characters from their opener, "
                   f"{cmp.a.name} guesses {ra['accuracy']:.0%} right and {cmp.b.name} {rb['accuracy']:.0%}")
    if not out:
        return None
    s = "; ".join(out)
    return s[0].upper() + s[1:] + "."


def first_chars(text: str, n: int, what: str) -> tuple[str, str]:
    """(text[:n], the span in words): 'the first n characters of WHAT', or 'all N characters of WHAT' when the
    text is no longer than n."""
    words = f"the first {n:,} characters of {what}" if len(text) > n else f"all {len(text):,} characters of {what}"
    return text[:n], words


def shading(cmp: Comparison, start: int = 0, length: int = 2_000) -> tuple[np.ndarray, float]:
    """(values, limit) to shade characters start..start+length-1 by A's surprisal minus B's: values (≤ length,)
    hold the difference on each character (NaN where not compared, and on the first, which nothing predicts);
    limit is the 99th percentile of |difference| over the whole text, so one outlier does not wash out the rest."""
    vals = np.concatenate([[np.nan], cmp.diff])[start:start + length]  # the value of character t+1 is diff[t]
    lim = float(np.nanpercentile(np.abs(cmp.diff), 99)) if np.isfinite(cmp.diff).any() else 1.0
    return vals, lim


def file_stem(cmp: Comparison) -> str:
    """A file name stem naming both sides, 'compare-A-vs-B', with anything but letters, digits, '.', '_' and '-'
    replaced by '_'."""
    import re
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"compare-{cmp.a.name}-vs-{cmp.b.name}")
