"""Gate saturation by layer (the paper's Figure 3): how often each unit's gate is nearly shut or fully open.

Per unit, the fraction of characters at which a sigmoid gate is < 0.1 (left-saturated) or > 0.9
(right-saturated); for a tanh candidate, < -0.9 and > 0.9 (rnnviz.saturation.thresholds).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..saturation import saturation_table
from ..trace import trace

MOSTLY = 0.5  # a unit "mostly right-saturated" spends more than half the characters above 0.9
RARELY = 0.1  # a unit "rarely saturated" spends less than a tenth of them at either end

SUMMARY_COLUMNS = ["layer", "gate", "units", "mean_left", "mean_right", "share_mostly_left",
                   "share_mostly_right", "share_rarely"]


def layer_saturation(model, text: str) -> pd.DataFrame:
    """Per layer, gate and unit: fraction of `text`'s characters left- and right-saturated
    (columns layer, gate, unit, left, right); empty for a vanilla RNN, which has no gates."""
    return saturation_table(trace(model, text, top_k=1))


def saturation_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per layer and gate: units, mean left and right fractions, and the shares of units mostly
    left-saturated, mostly right-saturated (> MOSTLY of the time) and rarely saturated (< RARELY)."""
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = []
    for (layer, gate), g in df.groupby(["layer", "gate"], sort=False):
        left, right = g["left"].to_numpy(), g["right"].to_numpy()  # (H,)
        rows.append({"layer": int(layer), "gate": gate, "units": len(g),
                     "mean_left": float(left.mean()), "mean_right": float(right.mean()),
                     "share_mostly_left": float(np.mean(left > MOSTLY)),
                     "share_mostly_right": float(np.mean(right > MOSTLY)),
                     "share_rarely": float(np.mean(left + right < RARELY))})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
