"""The memory experiment: how far back can each cell recall a character?"""
from __future__ import annotations

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

COLUMNS = ["cell", "gap", "accuracy", "chance", "items", "steps", "seconds"]
CHANCE = 1 / len(corpora._KEYS)  # the recall is one of the key letters, drawn uniformly
LR = 1e-2  # high for a language model, but the task is small: at 3e-3 an LSTM needs far more steps to copy
GAPS = (2, 4, 8, 16, 32, 64)
STEPS = 1500  # every cell gets the same number of updates: at 1,500 the LSTM and GRU recall every gap
HIDDEN = 64
EVAL_SEGMENTS = 300  # test items per gap: each accuracy rests on this many recalls


def mixed_memory_text(gaps, segments_per_gap: int, seed: int) -> str:
    """Memory-task segments of every gap, shuffled together: corpora.memory_mix."""
    return corpora.memory_mix(gaps, segments_per_gap, seed)


def recall_accuracy(model: CharRNN, gap: int, segments: int = EVAL_SEGMENTS, seed: int = 1) -> float:
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


def memory_config(gaps=GAPS, max_steps: int | None = STEPS, seconds: float | None = None, seed: int = 0,
                  device: str = "auto", history: int = 0) -> TrainConfig:
    """The training settings of the memory task: a window spans two of the longest segments, so
    truncated BPTT sees whole key-to-recall spans. `history` snapshots are kept (TrainConfig.history)."""
    return TrainConfig(seq_len=max(64, 2 * (max(gaps) + 2)), batch_size=32, lr=LR,
                       warmup_steps=min(20, max_steps or 20), max_steps=max_steps,
                       max_seconds=None if max_steps else seconds, eval_every=10**9, seed=seed, device=device,
                       history=history)


def memory_vocab(train_text: str) -> Vocab:
    return Vocab.from_text(train_text + corpora._KEYS)  # every key letter, even ones the draw missed


def memory_experiment(cells=("rnn", "gru", "lstm"), gaps=GAPS, steps_per_cell: int | None = STEPS,
                      hidden_size: int = HIDDEN, seed: int = 0, stop_event: threading.Event | None = None,
                      report=None, seconds_per_cell: float | None = None, train_segments: int = 2000,
                      eval_segments: int = EVAL_SEGMENTS, device: str = "auto",
                      max_steps: int | None = None, trainers: dict | None = None, history: int = 0,
                      learning: dict | None = None) -> pd.DataFrame:
    """Train a fresh 1-layer model per cell on all gaps mixed; recall accuracy per gap on held-out text.

    Every cell gets the same number of updates, `steps_per_cell` (a wall-clock budget would favour
    the cell whose steps are cheapest); `seconds_per_cell` instead, when given with steps_per_cell=None.
    `max_steps` is an alias of steps_per_cell. `report(cell=, done=, total=, message=)` gets progress
    (a Job's report); once `stop_event` is set, the cell in training is dropped and the rows measured
    so far come back. Columns: cell, gap, accuracy, chance, items (recalls scored), steps, seconds.
    A dict given as `trainers` receives cell -> (Trainer, TrainResult), to save the models.
    With `history` snapshots per cell, a dict given as `learning` receives cell -> its recall at
    each snapshot (see recall_over_training): how recall at each gap grew during training.
    """
    steps_per_cell = max_steps if max_steps is not None else steps_per_cell
    if steps_per_cell is None and seconds_per_cell is None:
        raise ConfigError("give steps_per_cell or seconds_per_cell")
    cells, gaps = list(cells), sorted(int(g) for g in gaps)
    _check(cells, gaps)
    stop_event = stop_event or threading.Event()
    report = report or (lambda **kw: None)
    corpus = memory_corpus(gaps, train_segments, seed)
    train_text, vocab = corpus.text, memory_vocab(corpus.text)
    meta = {"name": corpus.name, "sha256": corpus.sha256, "chars": len(train_text),
            "note": "the memory task's gaps mixed; recall is scored on fresh draws (experiments.recall_table)"}
    rows, total = [], len(cells)
    for i, cell in enumerate(cells):
        if stop_event.is_set():
            break
        report(cell=cell, done=i, total=total, message=f"training {cell.upper()} ({i + 1} of {total})")
        model = build(vocab, cell=cell, hidden_size=hidden_size, num_layers=1, embed_size=32, seed=seed)
        config = memory_config(gaps, steps_per_cell, seconds_per_cell, seed, device, history)
        trainer = Trainer(model, train_text, None, config, stop_event=stop_event, corpus=meta)
        trainer.add_callback("on_step", _progress(report, cell, i, total))
        start = time.perf_counter()
        result = trainer.run()
        seconds = time.perf_counter() - start
        if result.status == "stopped":
            break  # a half-trained cell would understate what it can do: leave it out
        if trainers is not None:
            trainers[cell] = (trainer, result)
        report(cell=cell, done=i, total=total, message=f"measuring {cell.upper()} recall")
        for row in recall_table(trainer.model, gaps, eval_segments, seed):
            rows.append({"cell": cell, **row, "steps": result.steps, "seconds": round(seconds, 2)})
        if learning is not None and trainer.history:
            report(cell=cell, done=i, total=total, message=f"measuring {cell.upper()} recall at each snapshot")
            learning[cell] = recall_over_training(snapshot_models(trainer), gaps, eval_segments, seed)
        report(cell=cell, done=i + 1, total=total, message=f"{cell.upper()} done after {result.steps} steps")
    return pd.DataFrame(rows, columns=COLUMNS)


def recall_table(model: CharRNN, gaps=GAPS, segments: int = EVAL_SEGMENTS, seed: int = 0) -> list[dict]:
    """Recall accuracy of a trained model at each gap, on draws never used in training."""
    return [{"gap": gap, "accuracy": recall_accuracy(model, gap, segments, seed=seed + 7919 + gap),
             "chance": CHANCE, "items": segments} for gap in gaps]


def recall_tables(models: dict[str, CharRNN], gaps=GAPS, segments: int = EVAL_SEGMENTS, seed: int = 0) -> pd.DataFrame:
    """recall_table of each model (cell -> model), as one table with a cell column, in the models' order."""
    rows = [{"cell": cell, **row} for cell, m in models.items() for row in recall_table(m, gaps, segments, seed)]
    return pd.DataFrame(rows, columns=COLUMNS[:5])


def recall_over_training(models: dict[int, CharRNN], gaps=GAPS, segments: int = EVAL_SEGMENTS,
                         seed: int = 0) -> pd.DataFrame:
    """Recall at each gap for the model of each training step (step -> model, e.g. a history's
    snapshots): columns step, gap, accuracy, chance, items; the same fresh draws at every step."""
    rows = [{"step": step, **row} for step, model in sorted(models.items())
            for row in recall_table(model, gaps, segments, seed)]
    return pd.DataFrame(rows, columns=["step", "gap", "accuracy", "chance", "items"])


def snapshot_models(trainer: Trainer) -> dict[int, CharRNN]:
    """step -> a copy of the trainer's model holding that in-memory snapshot's (float16) weights."""
    out = {}
    for snap in trainer.history:
        model = CharRNN(trainer.model.config).eval()
        model.load_state_dict({k: v.float() for k, v in snap["tensors"].items()})
        out[snap["step"]] = model
    return out


def recall_example(gap: int, seed: int = 123) -> str:
    """One segment up to its recall: KEY, filler, "=", KEY. A model reading it predicts the KEY last."""
    return corpora.memory_task(gap + 2, gap, seed=seed).text[:gap + 1]


def memory_corpus(gaps=GAPS, segments_per_gap: int = 2000, seed: int = 0) -> corpora.Corpus:
    """The shipped memory models' training text: every gap mixed, as one corpus."""
    text = mixed_memory_text(gaps, segments_per_gap, seed)
    return corpora.Corpus(f"memory-mix-{'-'.join(map(str, gaps))}-seed{seed}", text)


def _progress(report, cell: str, i: int, total: int, every: int = 25):
    """An on_step callback that reports every `every` steps."""
    def on_step(trainer, loss: float) -> None:
        if trainer.step % every == 0:
            report(cell=cell, done=i, total=total, step=trainer.step,
                   message=f"training {cell.upper()} ({i + 1} of {total}): step {trainer.step}, loss {loss:.3f}")
    return on_step


# --- a memory-task checkpoint's fresh text and its recall, as the Training history page shows them ---

def memory_text(config: dict, n_chars: int) -> str | None:
    """For a memory-task checkpoint (config["memory"]): n_chars of fresh draws of its task, every gap mixed,
    never text it trained on (corpora.fresh_memory); None for any other checkpoint."""
    if not isinstance(config.get("memory"), dict):
        return None
    meta = config.get("corpus")
    name = meta.get("name") if isinstance(meta, dict) else meta
    fresh = corpora.fresh_memory(name, n_chars) if isinstance(name, str) else None
    if fresh is not None:
        return fresh.text[:n_chars]
    # a memory model whose corpus is not named as the mixed task's: its gaps, from a seed the
    # shipped ones never trained on (they train on seed 0)
    gaps = memory_gaps(config)
    per_gap = -(-n_chars // sum(g + 2 for g in gaps))
    return corpora.memory_mix(gaps, per_gap, seed=1)[:n_chars]


def memory_gaps(config: dict) -> tuple[int, ...]:
    """The gaps a memory-task checkpoint was trained and scored on."""
    return tuple(int(g) for g in (config.get("memory") or {}).get("gaps") or GAPS)


def recall_summary(recall: pd.DataFrame, step: int, gaps) -> str:
    """The recall at every gap at one step of a memory-task run (recall_over_training's table)."""
    now = recall[recall.step == step].set_index("gap").accuracy
    return (f"The model reads a key letter, a gap of filler, `=`, and must repeat the key. At step {step:,} it "
            "recalls " + ", ".join(f"**{now[g]:.0%}** at gap {g}" for g in gaps) +
            f" (chance {CHANCE:.0%}; {EVAL_SEGMENTS} fresh recalls per gap, the same at every snapshot).")
