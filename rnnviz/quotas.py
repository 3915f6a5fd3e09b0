"""Quotas: the models folder and each session's in-memory models are bounded in count and bytes, and a
name a user chooses is made safe (it stays inside the folder and never takes a shipped model's name)."""
from __future__ import annotations

import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint, shared_state
from .errors import ConfigError, RnnvizError

MB = 2**20
MAX_NAME = 64
# Held around check_save and the save, so two sessions cannot both take the last place: a thread lock for the
# sessions of one process, and a lock row in rnnviz.shared_state for the server processes of the machine.
SAVE_LOCK = shared_state.ProcessLock("quota:save")


class QuotaError(RnnvizError):
    """A save or a new model beyond a limit; `candidates` are what the user may delete to make room."""

    def __init__(self, message: str, candidates: list[str] | None = None):
        super().__init__(message)
        self.candidates = list(candidates or [])


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not v > 0:
        raise ConfigError(f"{name} must be more than 0, not {raw!r}")
    return v


@dataclass(frozen=True)
class Limits:
    """The four bounds; from_env() reads RNNVIZ_MAX_SAVED_MODELS, RNNVIZ_MAX_SAVED_MB,
    RNNVIZ_MAX_SESSION_MODELS and RNNVIZ_MAX_SESSION_MB."""

    saved_models: int = 50
    saved_bytes: int = 2048 * MB
    session_models: int = 8
    session_bytes: int = 400 * MB

    @classmethod
    def from_env(cls) -> "Limits":
        d = cls()
        return cls(saved_models=int(_env_number("RNNVIZ_MAX_SAVED_MODELS", d.saved_models)),
                   saved_bytes=int(_env_number("RNNVIZ_MAX_SAVED_MB", d.saved_bytes / MB) * MB),
                   session_models=int(_env_number("RNNVIZ_MAX_SESSION_MODELS", d.session_models)),
                   session_bytes=int(_env_number("RNNVIZ_MAX_SESSION_MB", d.session_bytes / MB) * MB))


def fmt_bytes(n: float) -> str:
    return f"{n / MB:,.1f} MB"


def model_bytes(model) -> int:
    """Bytes of a model's parameters and buffers in memory."""
    return int(sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())))


def folder_bytes(path) -> int:
    """Bytes of the files under a checkpoint folder."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def safe_name(name: str) -> str:
    """A folder name from a user's text: letters, digits, '-', '_' and '.', at most 64 characters,
    never starting with a dot (no hidden folders, no '..'); ConfigError if nothing usable is left."""
    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", text.strip())
    text = re.sub(r"\.{2,}", "_", text)  # no '..' anywhere, even where it is harmless
    text = re.sub(r"_+", "_", text).lstrip("._-")[:MAX_NAME].rstrip("._-")
    if not text:
        raise ConfigError(f"{str(name)[:80]!r} leaves no usable name: use letters, digits, '-', '_' or '.'")
    return text


def save_path(folder, name: str, shipped_folder=None) -> Path:
    """Where a model named `name` is saved in `folder`: sanitised, inside the folder, and not the name of
    a shipped model (the picker would show two models with one name) nor of a saved one (no overwrite)."""
    safe = safe_name(name)
    folder = Path(folder)
    dest = (folder / safe).resolve()
    if dest.parent != folder.resolve():  # safe_name already rules this out; a second lock on the door
        raise ConfigError(f"the name {name!r} would leave the models folder")
    if shipped_folder is not None and (Path(shipped_folder) / safe).exists():
        raise ConfigError(f"{safe!r} is the name of a shipped model, which is never overwritten: choose another name")
    if dest.exists():
        raise QuotaError(f"a saved model is already named {safe!r}: choose another name, or delete it first",
                         candidates=[safe])
    return folder / safe


def saved_usage(folder) -> list[tuple[Path, int, float]]:
    """(path, bytes, modified time) of every checkpoint in the folder, oldest first."""
    try:
        paths = checkpoint.list_checkpoints(folder)
    except OSError:
        return []
    rows = [(p, folder_bytes(p), (p / checkpoint.WEIGHTS).stat().st_mtime) for p in paths]
    return sorted(rows, key=lambda r: r[2])


def check_save(folder, new_bytes: int, limits: Limits | None = None) -> None:
    """QuotaError when one more checkpoint of `new_bytes` would pass the folder's count or byte limit;
    its candidates are the saved models, oldest first, that the user may delete."""
    limits = limits or Limits.from_env()
    rows = saved_usage(folder)
    count, used = len(rows), sum(r[1] for r in rows)
    names = [r[0].name for r in rows]
    if new_bytes > limits.saved_bytes:
        raise QuotaError(f"this model needs {fmt_bytes(new_bytes)}, more than the models folder may hold in all "
                         f"({fmt_bytes(limits.saved_bytes)}, RNNVIZ_MAX_SAVED_MB): it cannot be saved here; "
                         "download it instead")
    if count + 1 > limits.saved_models:
        raise QuotaError(f"the models folder holds {count} models, its limit (RNNVIZ_MAX_SAVED_MODELS = "
                         f"{limits.saved_models}): delete one to save this one", candidates=names)
    if used + new_bytes > limits.saved_bytes:
        raise QuotaError(f"the models folder holds {fmt_bytes(used)}; this model's {fmt_bytes(new_bytes)} would "
                         f"pass its limit of {fmt_bytes(limits.saved_bytes)} (RNNVIZ_MAX_SAVED_MB): delete "
                         "a model to make room", candidates=names)


def check_session(held: dict[str, int], new_bytes: int, limits: Limits | None = None) -> None:
    """QuotaError when a session holding `held` (name -> bytes) may not keep one more model of `new_bytes`."""
    limits = limits or Limits.from_env()
    names = list(held)
    if new_bytes > limits.session_bytes:
        raise QuotaError(f"this model needs {fmt_bytes(new_bytes)} of memory, more than a session may hold "
                         f"({fmt_bytes(limits.session_bytes)}, RNNVIZ_MAX_SESSION_MB): choose a smaller model")
    if len(held) + 1 > limits.session_models:
        raise QuotaError(f"this session holds {len(held)} trained or uploaded models, its limit "
                         f"(RNNVIZ_MAX_SESSION_MODELS = {limits.session_models}): forget one first",
                         candidates=names)
    used = sum(held.values())
    if used + new_bytes > limits.session_bytes:
        raise QuotaError(f"this session's models take {fmt_bytes(used)}; {fmt_bytes(new_bytes)} more would pass "
                         f"its limit of {fmt_bytes(limits.session_bytes)} (RNNVIZ_MAX_SESSION_MB): forget a "
                         "model first", candidates=names)


def delete_saved(folder, name: str) -> None:
    """Delete the saved checkpoint `name` from the models folder (only a checkpoint folder directly in it)."""
    folder = Path(folder).resolve()
    target = (folder / name).resolve()
    if target.parent != folder or not (target / checkpoint.CONFIG).is_file():
        raise ConfigError(f"{name!r} is not a saved model in {folder}")
    shutil.rmtree(target)
