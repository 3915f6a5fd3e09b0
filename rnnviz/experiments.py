"""The memory experiment: how far back can each cell recall a character?"""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pandas as pd

from . import corpora
from .errors import ConfigError
from .model import CELLS, CharRNN, build
from .trace import trace
from .training import TrainConfig, Trainer
from .vocab import Vocab

COLUMNS = ["cell", "gap", "accuracy", "chance", "steps", "seconds"]
CHANCE = 1 / len(corpora._KEYS)  # the recall is one of the key letters, drawn uniformly
LR = 1e-2  # high for a language model, but the task is small: at 3e-3 an LSTM needs far more steps to copy


def mixed_memory_text(gaps, segments_per_gap: int, seed: int) -> str:
    """Memory-task segments of every gap, shuffled together, `segments_per_gap` of each."""
    segments = []
    for gap in gaps:
        seg_len = gap + 2
        # a seed per gap, so two gaps never share their key sequence
        text = corpora.memory_task(segments_per_gap * seg_len, gap, seed=seed * 1009 + gap).text
        segments += [text[s:s + seg_len] for s in range(0, len(text), seg_len)]
    random.Random(seed).shuffle(segments)  # mixed, so every batch holds every gap
    return "".join(segments)


def recall_accuracy(model: CharRNN, gap: int, segments: int = 300, seed: int = 1) -> float:
    """The scoring rule of corpora.memory_task on fresh text: argmax after the cue == the key."""
    task = corpora.memory_task(segments * (gap + 2), gap, seed=seed)
    tr = trace(model, task.text, top_k=1, gates=False)
    at = np.flatnonzero(task.labels["target"] == 1)  # (n,) cue positions; each has a next character
    return float(np.mean(tr.top_ids[at, 0] == tr.ids[at + 1]))


def _check(cells, gaps) -> None:
    for cell in cells:
        if cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
    if not gaps:
        raise ConfigError("give at least one gap")
    for gap in gaps:
        if not isinstance(gap, int) or gap < 2:
            raise ConfigError(f"a memory gap must be a whole number of at least 2, not {gap!r}")


def memory_experiment(cells=("rnn", "gru", "lstm"), gaps=(2, 4, 8, 16, 32), seconds_per_cell: float = 30.0,
                      hidden_size: int = 64, seed: int = 0, stop_event: threading.Event | None = None,
                      report=None, max_steps: int | None = None, train_segments: int = 2000,
                      eval_segments: int = 300, device: str = "auto") -> pd.DataFrame:
    """Train a fresh 1-layer model per cell on all gaps mixed; recall accuracy per gap on held-out text.

    Each cell gets the same budget: `seconds_per_cell` of training, or `max_steps` steps when given.
    `report(cell=, done=, total=, message=)` gets progress (a Job's report); once `stop_event` is
    set, the cell in training is dropped and the rows measured so far come back.
    Columns: cell, gap, accuracy, chance, steps, seconds (of training).
    """
    cells, gaps = list(cells), sorted(int(g) for g in gaps)
    _check(cells, gaps)
    stop_event = stop_event or threading.Event()
    report = report or (lambda **kw: None)
    train_text = mixed_memory_text(gaps, train_segments, seed)
    vocab = Vocab.from_text(train_text + corpora._KEYS)  # every key letter, even ones the draw missed
    # a window spans two of the longest segments, so truncated BPTT sees whole key-to-recall spans
    seq_len = max(64, 2 * (max(gaps) + 2))
    rows, total = [], len(cells)
    for i, cell in enumerate(cells):
        if stop_event.is_set():
            break
        report(cell=cell, done=i, total=total, message=f"training {cell.upper()} ({i + 1} of {total})")
        model = build(vocab, cell=cell, hidden_size=hidden_size, num_layers=1, embed_size=32, seed=seed)
        config = TrainConfig(seq_len=seq_len, batch_size=32, lr=LR, warmup_steps=min(20, max_steps or 20),
                             max_steps=max_steps, max_seconds=None if max_steps else seconds_per_cell,
                             eval_every=10**9, seed=seed, device=device)
        trainer = Trainer(model, train_text, None, config, stop_event=stop_event)
        trainer.add_callback("on_step", _progress(report, cell, i, total))
        start = time.perf_counter()
        result = trainer.run()
        seconds = time.perf_counter() - start
        if result.status == "stopped":
            break  # a half-trained cell would understate what it can do: leave it out
        report(cell=cell, done=i, total=total, message=f"measuring {cell.upper()} recall")
        for gap in gaps:
            acc = recall_accuracy(trainer.model, gap, eval_segments, seed=seed + 7919 + gap)  # unseen draws
            rows.append({"cell": cell, "gap": gap, "accuracy": acc, "chance": CHANCE,
                         "steps": result.steps, "seconds": round(seconds, 2)})
        report(cell=cell, done=i + 1, total=total, message=f"{cell.upper()} done after {result.steps} steps")
    return pd.DataFrame(rows, columns=COLUMNS)


def _progress(report, cell: str, i: int, total: int, every: int = 25):
    """An on_step callback that reports every `every` steps."""
    def on_step(trainer, loss: float) -> None:
        if trainer.step % every == 0:
            report(cell=cell, done=i, total=total, step=trainer.step,
                   message=f"training {cell.upper()} ({i + 1} of {total}): step {trainer.step}, loss {loss:.3f}")
    return on_step
