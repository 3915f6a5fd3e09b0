"""Training history: the snapshots a run kept (`<checkpoint>/history/step-<N>/`), read and compared.

Each snapshot is a checkpoint folder of its own (config.json + float16 model.safetensors), so
`checkpoint.load` reads it, and `read_numpy` reads it with numpy and safetensors alone. A history
whose snapshots are missing, truncated or of another model still reads: those are named in
`History.bad` with the reason, and the others load.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import checkpoint
from .errors import CheckpointError, ConfigError, TextError
from .losses import eval_basis, train_basis
from .model import CharRNN
from .hypotheses import HYPOTHESES, hypothesis_mask, is_binary
from .probes import rank_units


@dataclass
class Snapshot:
    """One `history/step-<N>/` folder: its step, its config (when readable), and why it cannot load."""

    step: int
    path: Path
    config: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        return f"step {self.step}"


@dataclass
class History:
    """The snapshots of one checkpoint, by step (bad ones included, each with its error)."""

    path: Path
    config: dict  # the checkpoint's own config.json: the model, the loss curve
    snapshots: list[Snapshot]

    @property
    def good(self) -> list[Snapshot]:
        return [s for s in self.snapshots if s.ok]

    @property
    def bad(self) -> list[Snapshot]:
        return [s for s in self.snapshots if not s.ok]

    @property
    def steps(self) -> list[int]:
        """The steps of the snapshots that load."""
        return [s.step for s in self.good]

    def __len__(self) -> int:
        return len(self.good)

    def snapshot(self, step: int) -> Snapshot:
        """The loadable snapshot of `step`, or a ConfigError naming the steps there are."""
        for s in self.snapshots:
            if s.step == step:
                if not s.ok:
                    raise CheckpointError(f"the snapshot of step {step} cannot be loaded: {s.error}")
                return s
        raise ConfigError(f"this history has no snapshot of step {step}; it has steps {self.steps}")

    def curve(self) -> pd.DataFrame:
        """The run's recorded loss curve: step, train_loss, val_loss (NaN where not evaluated), lr, time."""
        return loss_curve(self.config)

    def problems(self) -> list[str]:
        """One line per snapshot that does not load, naming it and saying why."""
        return [f"{s.name} ({s.path.name}): {s.error}" for s in self.bad]


def loss_curve(config: dict) -> pd.DataFrame:
    """The loss curve a checkpoint's config.json records (training.curve) as a table."""
    points = ((config.get("training") or {}).get("curve")) or []
    cols = ["step", "train_loss", "val_loss", "lr", "time"]
    df = pd.DataFrame([{k: p.get(k, np.nan) for k in cols} for p in points if isinstance(p, dict)], columns=cols)
    return df.astype({"step": int}) if len(df) else df


def has_history(path) -> bool:
    """Whether checkpoint `path` holds a history/ folder with at least one step-<N> snapshot."""
    return bool(checkpoint.history_folders(path))


def _check(folder: Path, step: int, model_config: dict) -> tuple[dict, str | None]:
    """(config, error) for one snapshot folder: loads it fully, so a truncated file is caught here."""
    try:
        model, config = checkpoint.load(folder)
    except CheckpointError as e:
        return {}, str(e)
    if config["model"] != model_config:
        diff = sorted(k for k in set(config["model"]) | set(model_config)
                      if config["model"].get(k) != model_config.get(k))
        return config, f"its model does not match the checkpoint's (differs in {', '.join(diff)})"
    if config.get("step", step) != step:
        return config, f"its config.json says step {config.get('step')}, its folder step {step}"
    del model
    return config, None


def read(path) -> History:
    """The history of checkpoint `path` (an empty one when it has none); every snapshot is checked."""
    path = Path(path)
    config = checkpoint.read_config(path)
    snaps = []
    for step, folder in checkpoint.history_folders(path):
        cfg, error = _check(folder, step, config["model"])
        snaps.append(Snapshot(step=step, path=folder, config=cfg, error=error))
    return History(path=path, config=config, snapshots=snaps)


def load(history: History, step: int, device="cpu") -> tuple[CharRNN, dict]:
    """(model, config) of the snapshot of `step` (float16 weights as stored, computed in float32)."""
    return checkpoint.load(history.snapshot(step).path, device)


def read_numpy(folder) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, arrays) of one snapshot with numpy and safetensors only, as a notebook would read it."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = json.loads((folder / checkpoint.CONFIG).read_text(encoding="utf-8"))
    return config, load_file(str(folder / checkpoint.WEIGHTS))


# --- what each snapshot computes ----------------------------------------------------------------

def sample_text(model: CharRNN, prime: str = "\n", length: int = 200, temperature: float = 0.8,
                seed: int = 1) -> str:
    """The snapshot's sample at a fixed seed and temperature (the same draws for every snapshot)."""
    from .sampling import sample

    return sample(model, prime, length, temperature=temperature, seed=seed).text


def evolution(history: History, models: dict[int, CharRNN] | None = None, prime: str = "\n",
              length: int = 200, temperature: float = 0.8, seed: int = 1, loss_text: str | None = None) -> pd.DataFrame:
    """The evolution of samples: one row per snapshot (step, train loss, val loss where the run
    evaluated that step, sample), as in Karpathy's post; with `loss_text`, also each snapshot's loss
    on it (nats/char, computed here). `models` may hold already loaded snapshots by step."""
    from .training import evaluate

    curve = history.curve().set_index("step") if len(history.curve()) else None
    rows = []
    for step in history.steps:
        model = (models or {}).get(step) or load(history, step)[0]
        cfg = history.snapshot(step).config
        rec = curve.loc[step] if curve is not None and step in curve.index else {}
        rows.append({"step": step,
                     "train_loss": cfg.get("train_loss", rec.get("train_loss", np.nan)),
                     "val_loss": cfg.get("val_loss", rec.get("val_loss", np.nan)),
                     **({"text_loss": evaluate(model, loss_text)} if loss_text else {}),
                     "sample": sample_text(model, prime, length, temperature, seed)})
    cols = ["step", "train_loss", "val_loss", *(["text_loss"] if loss_text else []), "sample"]
    return pd.DataFrame(rows, columns=cols)


def saturation(model: CharRNN, text: str) -> pd.DataFrame:
    """Per layer and gate: the mean fraction of steps a unit spends left- and right-saturated
    (< 0.1 / > 0.9 for a sigmoid gate, < -0.9 / > 0.9 for tanh), over `text`."""
    from .saturation import saturation_table
    from .trace import trace

    table = saturation_table(trace(model, text))
    if table.empty:
        return pd.DataFrame(columns=["layer", "gate", "left", "right"])
    return table.groupby(["layer", "gate"], sort=False)[["left", "right"]].mean().reset_index()


def gradient_decay(model: CharRNN, text: str, length: int = 100):
    """The GradientFlow of the loss at the last of `length` characters of `text` (gradients.gradient_norms)."""
    from .gradients import gradient_norms

    if len(text) < 2:
        raise TextError("the gradient needs at least two characters of text")
    return gradient_norms(model, text[:length], loss_at="last")


def unit_values(model: CharRNN, text: str, layer: int, kind: str, unit: int) -> np.ndarray:
    """One unit's values (T,) over `text`."""
    from .trace import trace

    values = trace(model, text, gates=kind not in ("h", "c")).get(layer, kind)
    if not 0 <= unit < values.shape[1]:
        raise ConfigError(f"unit must be from 0 to {values.shape[1] - 1}, not {unit}")
    return values[:, unit]


def hypothesis_labels(name: str, text: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels, mask) of a named hypothesis over `text` (hypotheses.HYPOTHESES, with its mask rule)."""
    if name not in HYPOTHESES:
        raise ConfigError(f"unknown hypothesis {name!r}; choose one of {', '.join(HYPOTHESES)}")
    return np.asarray(HYPOTHESES[name](text), dtype=np.float64), hypothesis_mask(name, text)


def best_units(model: CharRNN, text: str, labels: np.ndarray, mask: np.ndarray | None = None,
               kinds=("h", "c")) -> pd.DataFrame:
    """Every unit ranked against `labels` over `text` (probes.rank_units), best first."""
    from .trace import trace

    return rank_units(trace(model, text, gates=False), labels, mask, kinds=kinds)


@dataclass
class Emergence:
    """The best unit for a hypothesis at each snapshot, and how the final best unit got there."""

    table: pd.DataFrame  # step, layer, kind, unit, score, direction, final_unit_score, same_as_final
    final: tuple[int, str, int]  # (layer, kind, unit) best at the last snapshot
    same_throughout: bool  # the best unit is the final one at every snapshot
    threshold: float
    first_step: int | None  # the first step from which the final unit scores >= threshold at every later snapshot
    settled_step: int | None  # the first step from which the final unit is the best at every later snapshot

    def summary(self) -> str:
        layer, kind, unit = self.final
        name = f"L{layer} {kind}{unit}"
        if self.same_throughout:
            where = f"{name} is the best unit at every snapshot"
        elif self.settled_step is not None:
            where = f"{name} is the best unit from step {self.settled_step} on (others led before)"
        else:
            where = f"{name} is the best unit at the last snapshot"
        when = (f"it scores >= {self.threshold:g} from step {self.first_step} on" if self.first_step is not None
                else f"it never scores {self.threshold:g}")
        return f"{where}; {when}."


def emergence(ranks: dict[int, pd.DataFrame], threshold: float = 0.9) -> Emergence:
    """From each snapshot's ranking (step -> rank_units' table), the emergence timeline: the best
    unit and its score per step, the final best unit's score per step, whether it is the same unit
    throughout, and from which step it passes `threshold` for good."""
    if not ranks:
        raise ConfigError("the history has no snapshot to rank")
    steps = sorted(ranks)
    last = ranks[steps[-1]].iloc[0]
    final = (int(last.layer), str(last.kind), int(last.unit))
    rows = []
    for step in steps:
        df = ranks[step]
        best = df.iloc[0]
        hit = df[(df.layer == final[0]) & (df.kind == final[1]) & (df.unit == final[2])]
        rows.append({"step": step, "layer": int(best.layer), "kind": str(best.kind), "unit": int(best.unit),
                     "score": float(best.score), "direction": str(best.direction),
                     "final_unit_score": float(hit.score.iloc[0]) if len(hit) else np.nan,
                     "same_as_final": (int(best.layer), str(best.kind), int(best.unit)) == final})
    table = pd.DataFrame(rows)

    def from_when(flags) -> int | None:
        """The first step from which `flags` holds at every later snapshot."""
        flags = list(flags)
        for i in range(len(flags)):
            if all(flags[i:]):
                return steps[i]
        return None

    return Emergence(table=table, final=final, same_throughout=bool(table.same_as_final.all()),
                     threshold=threshold, first_step=from_when(table.final_unit_score >= threshold),
                     settled_step=from_when(table.same_as_final))


def emergence_of(history: History, text: str, hypothesis: str, threshold: float = 0.9,
                 models: dict[int, CharRNN] | None = None, kinds=("h", "c")) -> Emergence:
    """The emergence timeline of `hypothesis` over `text` across every loadable snapshot."""
    labels, mask = hypothesis_labels(hypothesis, text)
    counted = labels if mask is None else labels[mask]
    if counted.size == 0 or counted.min() == counted.max():
        raise TextError(f"'{hypothesis}' is the same everywhere in this text: nothing to tell units apart by")
    if not is_binary(labels) and threshold > 1:
        raise ConfigError("the threshold is a score from 0 to 1")
    ranks = {}
    for step in history.steps:
        model = (models or {}).get(step) or load(history, step)[0]
        ranks[step] = best_units(model, text, labels, mask, kinds)
    return emergence(ranks, threshold)


# --- what the Training history page says about a snapshot ------------------------------------------

def step_summary(history: History, step: int) -> str:
    """'**Step 1,200** of 2,000 (6 of 10 snapshots) · validation loss ... · train loss ...'."""
    steps = history.steps
    cfg = history.snapshot(step).config
    lines = [f"**Step {step:,}** of {steps[-1]:,} ({steps.index(step) + 1} of {len(steps)} snapshots)"]
    if "val_loss" in cfg:
        lines.append(f"validation loss {cfg['val_loss']:.3f} nats/char on {eval_basis(history.config)}")
    if "train_loss" in cfg:
        lines.append(f"train loss {cfg['train_loss']:.3f} on {train_basis(history.config)}")
    return " · ".join(lines)
