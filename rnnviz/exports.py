"""Tables of what the Gates and Gradients pages plot, for their CSV downloads (and for notebooks).

Each table holds the very numbers the chart draws, one row per point, so a chart can be redrawn
from its CSV elsewhere.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ConfigError
from .model import GATES
from . import plots
from .saturation import saturation_table


def unit_gates(trace, layer: int, unit: int) -> pd.DataFrame:
    """One unit over the whole text: position, char, each gate of its cell, then c (an LSTM) and h.

    A vanilla RNN has no gates: its pre-activation (what enters the tanh) stands in, as on the page.
    """
    if not 0 <= layer < len(trace.layers):
        raise ConfigError(f"the model has layers 0 to {len(trace.layers) - 1}; there is no layer {layer}")
    kinds = list(GATES[trace.cell]) or ["pre"]
    kinds += [k for k in ("c", "h") if k in trace.layers[layer] and k not in kinds]
    first = trace.get(layer, kinds[0])  # (T, H)
    if not 0 <= unit < first.shape[1]:
        raise ConfigError(f"layer {layer} has units 0 to {first.shape[1] - 1}; there is no unit {unit}")
    df = pd.DataFrame({"position": np.arange(len(trace.text)), "char": list(trace.text)})
    for k in kinds:
        df[k] = trace.get(layer, k)[:, unit].astype(np.float64)
    return df


def saturation(trace) -> pd.DataFrame:
    """The saturation chart's dots: layer, gate, unit, and the shares of characters below (left)
    and above (right) the gate's thresholds (saturation.saturation_table)."""
    return saturation_table(trace)


def gradient_curves(curves: list) -> pd.DataFrame:
    """The Gradients page's lines (lesson.Curve objects), long: model, cell, distance, then what is
    drawn: h (‖∂L/∂h‖ ÷ ‖∂L/∂h‖ at distance 0), c (the same for the cell state, an LSTM; else
    empty) and the path gain (the dotted line, scaled as drawn)."""
    frames = []
    for c in curves:
        h = c.relative("h")  # (T,)
        cell = c.relative("c") if c.flow.dc is not None else None
        over = cell if cell is not None else h
        frames.append(pd.DataFrame({
            "model": c.label, "cell": c.cell, "distance": c.flow.distance, "h": h,
            "c": cell if cell is not None else np.nan, "path_gain": c.gain * over[-1], "path": c.gain_name}))
    if not frames:
        return pd.DataFrame(columns=["model", "cell", "distance", "h", "c", "path_gain", "path"])
    return pd.concat(frames, ignore_index=True).sort_values(["model", "distance"], kind="stable",
                                                            ignore_index=True)


def gradient_flows(flows: dict, layer: int) -> pd.DataFrame:
    """The trained models' chart (plots.gradient_decay) of one layer, long: model, cell,
    distance, dh (‖∂L/∂h_t‖) and dc (‖∂L/∂c_t‖, an LSTM's; else empty). Each model's lowest layers."""
    frames = []
    for name, flow in flows.items():
        if not 0 <= layer < flow.dh.shape[0]:
            raise ConfigError(f"{name} has layers 0 to {flow.dh.shape[0] - 1}; there is no layer {layer}")
        frames.append(pd.DataFrame({"model": name, "cell": flow.cell, "distance": flow.distance,
                                    "dh": flow.dh[layer],
                                    "dc": flow.dc[layer] if flow.dc is not None else np.nan}))
    if not frames:
        return pd.DataFrame(columns=["model", "cell", "distance", "dh", "dc"])
    return pd.concat(frames, ignore_index=True).sort_values(["model", "distance"], kind="stable",
                                                            ignore_index=True)


def unit_gradients(flow, rows: list[int]) -> pd.DataFrame:
    """The units map (plots.unit_gradient_map): for each chosen unit of the top layer and
    each step, |∂L/∂c_t| (|∂L/∂h_t| without a cell), with the character read there."""
    if flow.units is None:
        raise ConfigError("these gradients were measured without per-unit values (per_unit=True)")
    units = flow.units[-1]  # (T, H)
    bad = [u for u in rows if not 0 <= u < units.shape[1]]
    if bad:
        raise ConfigError(f"the top layer has units 0 to {units.shape[1] - 1}, not {bad}")
    return pd.DataFrame({"unit": np.repeat(rows, units.shape[0]).astype(int),
                         "distance": np.tile(flow.distance, len(rows)),
                         "char": list(flow.text) * len(rows),
                         "grad": units[:, rows].T.ravel().astype(np.float64)})


def gate_histograms(trace, layer: int, bins: int = 50) -> pd.DataFrame:
    """The Gates page's histograms (plots.gate_histograms) as a table: gate, bin_start, bin_end, count,
    from the bars the chart draws, so the two never disagree."""
    fig = plots.gate_histograms(trace, layer, bins)
    frames = [pd.DataFrame({"gate": bar.name, "bin_start": np.asarray(bar.customdata)[:, 0],
                            "bin_end": np.asarray(bar.customdata)[:, 1], "count": np.asarray(bar.y)})
              for bar in fig.data]
    return pd.concat(frames, ignore_index=True)
