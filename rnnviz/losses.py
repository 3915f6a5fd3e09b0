"""What a recorded loss was measured on: which text and how many characters, read from a checkpoint's config.

Three losses are recorded for a run, each over a different text:
  val_loss (the checkpoint's)  the whole held-out split (`train --full-val`), or the run's last evaluation;
  the curve's val_loss         every eval_every steps, the first eval_chars characters of the held-out split;
  the curve's train_loss       one step's batch: batch_size sequences of seq_len characters of the training split.
Configs may come from uploads: every field is checked for its type, and what is not recorded is said to be so.
"""
from __future__ import annotations

import re

_FULL = re.compile(r"full \(([\d,]+) chars(?:, (\w+))?\)")
_FIRST = re.compile(r"first ([\d,]+) chars")


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def recorded_corpus(config: dict) -> str | None:
    """The training corpus's name as the config records it, or None."""
    c = config.get("corpus") if isinstance(config, dict) else None
    name = c.get("name") if isinstance(c, dict) else c
    return name if isinstance(name, str) and name else None


def corpus_name(config: dict) -> str:
    """The training corpus's name as the config records it ("its corpus" when it does not)."""
    return recorded_corpus(config) or "its corpus"


def held_out_chars(config: dict) -> int | None:
    """The length of the held-out split the config records (its documents joined by newlines), or None."""
    c = config.get("corpus") if isinstance(config, dict) else None
    split = c.get("split") if isinstance(c, dict) else None
    if not isinstance(split, dict):
        return None
    if split.get("rule") == "offset":
        chars, start = _int(split.get("chars")), _int(split.get("val_start"))
        return chars - start if chars is not None and start is not None and start <= chars else None
    docs = split.get("held_out")
    if split.get("rule") == "documents" and isinstance(docs, list) and docs:
        sizes = [_int(d.get("chars")) if isinstance(d, dict) else None for d in docs]
        return sum(sizes) + len(sizes) - 1 if None not in sizes else None
    return None


def _train_config(config: dict) -> dict:
    tr = config.get("training") if isinstance(config, dict) else None
    cfg = tr.get("config") if isinstance(tr, dict) else None
    return cfg if isinstance(cfg, dict) else {}


def eval_chars(config: dict) -> int | None:
    """How many characters the run's periodic evaluations read: the first eval_chars of the held-out split
    (fewer when the split is shorter), or None when not recorded."""
    n = _int(_train_config(config).get("eval_chars"))
    if n is None:
        return None
    held = held_out_chars(config)
    return min(n, held) if held is not None else n


def eval_basis(config: dict) -> str:
    """The text of the run's periodic validation losses (the curve's val_loss), in words."""
    n = eval_chars(config)
    if n is None:
        return "a part of the held-out split the checkpoint does not record"
    return f"the first {n:,} characters of {corpus_name(config)}'s held-out split"


def train_basis(config: dict) -> str:
    """The text of one step's train loss, in words."""
    cfg = _train_config(config)
    b, s = _int(cfg.get("batch_size")), _int(cfg.get("seq_len"))
    if b is None or s is None:
        return "one training batch"
    return f"one batch of {b} × {s} = {b * s:,} characters of the training split"


def val_loss_basis(config: dict) -> str:
    """The text of the checkpoint's own val_loss, in words: the whole held-out split when `train --full-val`
    measured it (with its size and the stored weights' dtype), else the run's last evaluation."""
    split = config.get("val_split") if isinstance(config, dict) else None
    name = corpus_name(config)
    if isinstance(split, str):
        m = _FULL.fullmatch(split.strip())
        if m:
            dtype = f", {m.group(2)} weights" if m.group(2) else ""
            return f"the whole held-out split of {name} ({int(m.group(1).replace(',', '')):,} characters{dtype})"
        m = _FIRST.fullmatch(split.strip())
        if m:
            return f"the first {int(m.group(1).replace(',', '')):,} characters of {name}'s held-out split"
    if eval_chars(config) is not None:
        return eval_basis(config)
    return "a text the checkpoint does not record"


def progress_words(snap: dict) -> str:
    """A running job's latest validation loss with the text it was measured on (a TrainingJob snapshot), or ""."""
    val, n = snap.get("val_loss"), _int(snap.get("val_chars"))
    if not isinstance(val, float):
        return ""
    return f"val loss {val:.3f}" + (f" on the first {n:,} held-out characters" if n else "")
