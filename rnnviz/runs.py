"""Training runs side by side, compared fairly: by the characters each has read, not by wall time.

A time budget gives the cell with the cheapest step the most steps (a 1x128 RNN takes several steps
for each of an LSTM's), so two runs of 30 s compare their speed as much as their cells. Read against
the characters seen (steps x batch x sequence length) instead, every run is measured after the same
amount of text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ConfigError


def chars_per_step(config) -> int:
    """Characters one training step reads: batch size x sequence length (a TrainConfig or a dict)."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)
    batch, seq = get("batch_size"), get("seq_len")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (batch, seq)):
        raise ConfigError(f"a run needs a positive batch size and sequence length, not {batch!r} and {seq!r}")
    return batch * seq


def run_name(n: int, cell: str, layers: int, hidden: int, corpus: str) -> str:
    """The n-th run of a session, named by its shape and text: 'run2-gru2x64-tinyshakespeare'.

    The corpus's name loses its extension and is cut to 20 characters, so names stay short in the picker.
    """
    return f"run{n}-{cell}{layers}x{hidden}-{corpus.split('.')[0][:20]}"


def common_chars(runs: dict[str, tuple[list[dict], int]]) -> int | None:
    """The most characters every run has read (name -> (curve, chars per step)); None without steps."""
    reach = [curve[-1]["step"] * per for curve, per in runs.values() if curve]
    return min(reach) if reach and len(reach) == len(runs) else None


def at_equal_chars(runs: dict[str, tuple[list[dict], int]]) -> pd.DataFrame:
    """Each run's loss at the most characters every run has read (common_chars).

    Columns: run, chars (the common point), step (this run's last step within it), val_loss (the
    last evaluation at or before it that every run shares, else this run's last one there; with
    val_chars, where it was taken; NaN without one) and
    train_loss (the mean training loss over the last tenth of the characters up to it: one batch is
    noisy). Empty when some run has no step yet.
    """
    cols = ["run", "chars", "step", "val_loss", "val_chars", "train_loss"]
    limit = common_chars(runs)
    if limit is None:
        return pd.DataFrame(columns=cols)
    # where every run was evaluated after the same characters (the periodic evaluations of runs with the same
    # batch and sequence length), all are read there; a run's last evaluation ends off that grid
    shared = set.intersection(*({p["step"] * per for p in curve if p.get("val_loss") is not None and
                                 p["step"] * per <= limit} for curve, per in runs.values()))
    rows = []
    for name, (curve, per) in runs.items():
        upto = [p for p in curve if p["step"] * per <= limit]
        val = [p for p in upto if p.get("val_loss") is not None and (not shared or p["step"] * per == max(shared))]
        late = [p["train_loss"] for p in upto if p["step"] * per > 0.9 * limit and p.get("train_loss") is not None]
        rows.append({"run": name, "chars": limit, "step": upto[-1]["step"] if upto else 0,
                     "val_loss": val[-1]["val_loss"] if val else np.nan,
                     "val_chars": val[-1]["step"] * per if val else np.nan,
                     "train_loss": float(np.mean(late)) if late else np.nan})
    return pd.DataFrame(rows, columns=cols)


def summary(table: pd.DataFrame) -> str:
    """Markdown under the overlaid curves: each run's loss after the same characters (at_equal_chars)."""
    if table.empty:
        return "The runs are compared once each has taken a step."
    lines = []
    for r in table.itertuples():
        parts = [f"step {r.step:,}"]
        if np.isfinite(r.val_loss):
            parts.append(f"validation loss **{r.val_loss:.3f}** (evaluated at {int(r.val_chars):,} characters)")
        if np.isfinite(r.train_loss):
            parts.append(f"training loss {r.train_loss:.3f} (mean over the last tenth)")
        lines.append(f"- **{r.run}**: " + ", ".join(parts))
    return (f"**After the same amount of text**, {int(table.chars.iloc[0]):,} characters, the most every run has "
            "read (the dotted line). Compare cells here rather than by their final losses: under a time budget "
            "the cell with the cheapest step takes the most steps.\n" + "\n".join(lines))
