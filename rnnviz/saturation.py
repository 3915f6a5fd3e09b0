"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015): how often each gate is nearly shut or fully open."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .model import GATES

TANH_GATES = ("g", "n")  # candidates: tanh, in [-1, 1]; the other gates are sigmoids in [0, 1]


def thresholds(gate: str) -> tuple[float, float]:
    """Saturation thresholds: 0.1 / 0.9 for a sigmoid gate, -0.9 / 0.9 for a tanh candidate."""
    return (-0.9, 0.9) if gate in TANH_GATES else (0.1, 0.9)


def saturation_table(trace) -> pd.DataFrame:
    """Per layer, gate and unit: fraction of steps left-saturated (< low) and right-saturated (> high)."""
    rows = []
    for layer in range(len(trace.layers)):
        for gate in GATES[trace.cell]:
            v = trace.get(layer, gate)  # (T, H)
            lo, hi = thresholds(gate)
            rows.append(pd.DataFrame({"layer": layer, "gate": gate, "unit": np.arange(v.shape[1]),
                                      "left": (v < lo).mean(0), "right": (v > hi).mean(0)}))
    if not rows:
        return pd.DataFrame(columns=["layer", "gate", "unit", "left", "right"])
    return pd.concat(rows, ignore_index=True)
