"""The analyses computed once for the shipped models and kept as a small JSON, so the page opens on
real numbers: the onion of shakespeare-small against shakespeare-lstm, the training dynamics of
shakespeare-small and python-lstm, and the saturation summary of each shipped LSTM and GRU.

Made by `python -m rnnviz paper analyses --out pretrained/paper/analyses.json` (a few minutes on one CPU thread).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "pretrained" / "paper" / "analyses.json"
FORMAT = 1
COMMAND = "python -m rnnviz paper analyses --out pretrained/paper/analyses.json"
ONION_PAIR = ("shakespeare-small", "shakespeare-lstm")
DYNAMICS_MODELS = ("shakespeare-small", "python-lstm")
SATURATION_MODELS = ("shakespeare-small", "shakespeare-lstm", "shakespeare-gru", "python-lstm")
ONION_CHARS, DYNAMICS_CHARS, SATURATION_CHARS = 20_000, 5_000, 10_000


def _say(report, text: str) -> None:
    if report:
        report(text)


def compute_shipped(pretrained: Path = ROOT / "pretrained", report=None) -> dict:
    """Every shipped analysis, recomputed from the models in `pretrained` (see the module's doc)."""
    from .. import checkpoint
    from ..ngram import training_text
    from .dynamics import dynamics, history_snapshots
    from .onion import compare_onions, onion
    from .saturation import layer_saturation, saturation_summary
    from .texts import held_out_sample

    out = {"format": FORMAT, "command": COMMAND, "onion": {}, "dynamics": {}, "saturation": {}}
    onions = {}
    for name in ONION_PAIR:
        _say(report, f"onion: {name}")
        model, config = checkpoint.load(pretrained / name)
        text, _ = held_out_sample(config, ONION_CHARS)
        result = onion(model, text, train_text=training_text(config)[0])
        onions[name] = result
        out["onion"][name] = {**result.to_dict(), "orders": list(result.orders), "memory": result.memory,
                              "rare_max": result.rare_max, "params": model.num_params()}
    out["onion_comparison"] = {"small": ONION_PAIR[0], "large": ONION_PAIR[1],
                               "rows": compare_onions(onions[ONION_PAIR[0]], onions[ONION_PAIR[1]])}
    for name in DYNAMICS_MODELS:
        _say(report, f"dynamics: {name}")
        config = checkpoint.read_config(pretrained / name)
        text, _ = held_out_sample(config, DYNAMICS_CHARS)
        d = dynamics(history_snapshots(pretrained / name), text, train_text=training_text(config)[0])
        out["dynamics"][name] = {"steps": d["steps"], "orders": d["orders"], "kl": d["kl"].tolist(),
                                 "chars": len(text) - 1}
    for name in SATURATION_MODELS:
        _say(report, f"saturation: {name}")
        model, config = checkpoint.load(pretrained / name)
        text, _ = held_out_sample(config, SATURATION_CHARS)
        table = layer_saturation(model, text)
        out["saturation"][name] = {"cell": model.cell, "chars": len(text),
                                   "summary": saturation_summary(table).to_dict(orient="records"),
                                   "table": [{"layer": int(layer), "gate": gate,
                                              "left": np.round(g["left"].to_numpy(), 4).tolist(),
                                              "right": np.round(g["right"].to_numpy(), 4).tolist()}
                                             for (layer, gate), g in table.groupby(["layer", "gate"], sort=False)]}
    return out


def write_shipped(data: dict, path: Path = SHIPPED) -> None:
    """Write atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _check(data) -> dict:
    """The shipped file's data, or ConfigError naming what is wrong with it."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError("not an analyses file of this format")
    for key in ("onion", "dynamics", "saturation", "onion_comparison"):
        if not isinstance(data.get(key), dict):
            raise ConfigError(f"the analyses file lacks its {key!r} part")
    for name, d in data["dynamics"].items():
        kl = np.asarray(d.get("kl"), dtype=float)
        if kl.shape != (len(d.get("steps", [])), len(d.get("orders", []))) or not np.all(np.isfinite(kl)):
            raise ConfigError(f"the dynamics of {name} are malformed")
    for name, o in data["onion"].items():
        cats = o.get("categories")
        if not isinstance(cats, list) or sum(c.get("count", 0) for c in cats) != o.get("errors"):
            raise ConfigError(f"the onion of {name} does not add up")
    return data


def saturation_frame(entry: dict):
    """One shipped model's per-unit saturation table (layer, gate, unit, left, right) as a DataFrame."""
    import pandas as pd

    parts = [pd.DataFrame({"layer": g["layer"], "gate": g["gate"], "unit": np.arange(len(g["left"])),
                           "left": g["left"], "right": g["right"]}) for g in entry["table"]]
    return pd.concat(parts, ignore_index=True) if parts else \
        pd.DataFrame(columns=["layer", "gate", "unit", "left", "right"])


def shipped_analyses(path: Path = SHIPPED) -> dict | None:
    """The shipped analyses (see compute_shipped), or None when the file is missing or damaged."""
    try:
        return _check(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, ConfigError, TypeError, AttributeError):
        return None
