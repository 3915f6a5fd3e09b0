"""Checkpoints: a directory of config.json + model.safetensors; atomic writes, validated loads."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CheckpointError, ConfigError
from .model import CharRNN, ModelConfig

FORMAT_VERSION = 1
CONFIG, WEIGHTS, OPTIMIZER = "config.json", "model.safetensors", "optimizer.safetensors"
MAX_CONFIG_BYTES = 16 * 2**20
MAX_WEIGHTS_BYTES = 512 * 2**20
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# One app process serves many sessions: a save in one must not meet another's recover() halfway.
_SAVE_LOCK = threading.RLock()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save(model: CharRNN, path, meta: dict | None = None, dtype: str = "float32",
         optimizer_state: dict[str, torch.Tensor] | None = None, history: list[dict] | None = None) -> Path:
    """Write `path/` atomically: a crash mid-save leaves the old checkpoint (or none), never half a one.

    `history`: snapshots {"step", "tensors", "meta"} (Trainer.history), written inside the same atomic
    save as `path/history/step-<N>/`, each a checkpoint folder of its own (float16 weights)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, "model": model.config.to_dict(), "dtype": dtype,
              "num_params": model.num_params(), "torch_version": torch.__version__,
              "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
    tensors = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()}
    with _SAVE_LOCK:
        # the pid in both names lets recover() in another process leave a live save alone
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
        try:
            _write_file(tmp / WEIGHTS, st_save(tensors, metadata={"format": "rnnviz"}))
            if optimizer_state:
                _write_file(tmp / OPTIMIZER, st_save({k: v.detach().cpu().contiguous()
                                                      for k, v in optimizer_state.items()}))
            _write_history(tmp, model, history or [], path.name)
            _write_file(tmp / CONFIG, json.dumps(config, indent=1, allow_nan=False).encode())
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            if path.exists():
                os.rename(path, old)  # from here until the next rename, `old` is the live copy: see recover()
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
            _fsync_dir(path.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


HISTORY = "history"
MAX_SNAPSHOTS = 64  # training.MAX_HISTORY: a history holds at most this many float16 copies of its model
SNAPSHOT_DTYPE = torch.float16


def snapshot_dir(path, step: int) -> Path:
    """Where the snapshot of `step` lies inside checkpoint `path`."""
    return Path(path) / HISTORY / f"step-{int(step)}"


def _write_history(folder: Path, model: CharRNN, history: list[dict], name: str) -> None:
    """Each snapshot as a checkpoint folder `history/step-<N>/` (config.json + float16 model.safetensors)."""
    if len(history) > MAX_SNAPSHOTS:
        raise ConfigError(f"a history holds at most {MAX_SNAPSHOTS} snapshots, not {len(history)}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for snap in history:
        step, tensors = int(snap["step"]), snap["tensors"]
        if {k: tuple(v.shape) for k, v in tensors.items()} != expected:
            raise ConfigError(f"the snapshot of step {step} does not match the model's shapes")
        d = snapshot_dir(folder, step)
        d.mkdir(parents=True)
        _write_file(d / WEIGHTS, st_save({k: v.detach().to("cpu", SNAPSHOT_DTYPE).contiguous()
                                          for k, v in tensors.items()}, metadata={"format": "rnnviz"}))
        config = {"format_version": FORMAT_VERSION, "model": model.config.to_dict(), "dtype": "float16",
                  "num_params": model.num_params(), "torch_version": torch.__version__,
                  "name": f"{name} step {step}", "history_of": name, **snap.get("meta", {}), "step": step}
        _write_file(d / CONFIG, json.dumps(config, indent=1, allow_nan=False).encode())


def history_folders(path) -> list[tuple[int, Path]]:
    """(step, folder) of every `history/step-<N>/` inside checkpoint `path`, by step."""
    root = Path(path) / HISTORY
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = re.fullmatch(r"step-(\d+)", p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def read_history(path) -> list[dict]:
    """The readable snapshots of checkpoint `path` as Trainer.history holds them (a resume appends to
    these); a snapshot that is unreadable or of another shape is left out."""
    out = []
    try:
        model_cfg = read_config(path)["model"]
    except CheckpointError:
        return []
    for step, folder in history_folders(path)[:MAX_SNAPSHOTS]:
        try:
            config = read_config(folder)
            if config["model"] != model_cfg:
                continue
            snap, _ = from_bytes(json.dumps(config).encode(), (folder / WEIGHTS).read_bytes())  # every check of load
        except (CheckpointError, OSError):
            continue
        tensors = {k: v.to(SNAPSHOT_DTYPE) for k, v in snap.state_dict().items()}
        meta = {k: config[k] for k in ("train_loss", "val_loss", "time", "lr") if k in config}
        out.append({"step": step, "tensors": tensors, "meta": {"step": step, **meta}})
    return out


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _saving_elsewhere(leftover: Path) -> bool:
    """Whether a `.name.tmp-PID-*` / `.name.old-PID` entry belongs to a save still running in another process."""
    m = re.match(r"^.*\.(?:tmp|old)-(\d+)", leftover.name)
    if m is None:
        return False  # an old-style name: no owner to ask
    pid = int(m.group(1))
    if pid == os.getpid():
        return False  # our own saves hold _SAVE_LOCK, which recover() holds too: this one died
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def recover(folder) -> None:
    """Finish or undo saves that a crash interrupted: restore `.name.old-*` copies, drop `.name.tmp-*`."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    with _SAVE_LOCK:
        for p in folder.glob(".*.old-*"):
            if _saving_elsewhere(p):
                continue
            live = folder / p.name[1:].rsplit(".old-", 1)[0]
            if live.exists():
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.rename(p, live)
        for p in folder.glob(".*.tmp-*"):
            if not _saving_elsewhere(p):
                shutil.rmtree(p, ignore_errors=True)


def read_config(path) -> dict:
    """config.json of a checkpoint, checked for size, JSON syntax and format version."""
    f = Path(path) / CONFIG
    if not f.is_file():
        raise CheckpointError(f"{path} has no {CONFIG}: a checkpoint is a folder with {CONFIG} and {WEIGHTS}")
    if f.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{CONFIG} is larger than {MAX_CONFIG_BYTES // 2**20} MB; refusing to read it")
    return parse_config(f.read_bytes())


def parse_config(data: bytes) -> dict:
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{CONFIG} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{CONFIG} must be an object with a 'model' section")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{CONFIG} has format_version {config.get('format_version')!r}; "
                              f"this rnnviz reads version {FORMAT_VERSION}")
    return config


def from_bytes(config_bytes: bytes, weights_bytes: bytes, device: str | torch.device = "cpu") -> tuple[CharRNN, dict]:
    """Build a model from the two files' contents; every field and shape is checked first."""
    config = parse_config(config_bytes)
    try:
        mc = ModelConfig(**config["model"]).validate()
    except TypeError as e:
        raise CheckpointError(f"the 'model' section of {CONFIG} has unexpected fields ({e})") from None
    except ConfigError as e:
        raise CheckpointError(f"{CONFIG} describes an invalid model: {e}") from None
    if len(weights_bytes) > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{WEIGHTS} is larger than {MAX_WEIGHTS_BYTES // 2**20} MB")
    if weights_bytes[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or weights_bytes[:2] == b"PK":
        raise CheckpointError(f"{WEIGHTS} is a pickle or a torch.save zip, not safetensors; "
                              "rnnviz never unpickles files, so it cannot be loaded")
    try:
        tensors = st_load(weights_bytes)  # safetensors parses a JSON header and raw arrays: nothing executes
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{WEIGHTS} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    model = CharRNN(mc)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{WEIGHTS} does not match {CONFIG}: missing {missing or 'nothing'}, "
                              f"unexpected {extra or 'nothing'}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{WEIGHTS} does not match {CONFIG}: {k} has shape {tuple(tensors[k].shape)}, "
                                  f"the config implies {tuple(v.shape)}")
        if tensors[k].dtype not in DTYPES.values():
            raise CheckpointError(f"{k} has dtype {tensors[k].dtype}; expected a float type")
        if not torch.isfinite(tensors[k]).all():
            raise CheckpointError(f"{k} holds NaN or infinite values")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.eval()
    return model.to(device), config


def load(path, device: str | torch.device = "cpu") -> tuple[CharRNN, dict]:
    """(model, config) from a checkpoint folder, with a CheckpointError for anything wrong."""
    path = Path(path)
    recover(path.parent)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}")
    config = read_config(path)
    w = path / WEIGHTS
    if not w.is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS}")
    if w.stat().st_size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{WEIGHTS} is larger than {MAX_WEIGHTS_BYTES // 2**20} MB")
    return from_bytes(json.dumps(config).encode(), w.read_bytes(), device)


def load_optimizer_state(path) -> dict[str, torch.Tensor] | None:
    f = Path(path) / OPTIMIZER
    if not f.is_file():
        return None
    try:
        return st_load(f.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{OPTIMIZER} is corrupt: {e}") from None


def list_checkpoints(folder) -> list[Path]:
    """Checkpoint folders directly inside `folder`, sorted by name, after crash recovery."""
    folder = Path(folder)
    recover(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / CONFIG).is_file())


def to_zip(path, history: bool = False) -> bytes:
    """The checkpoint folder as zip bytes (for a download button); with `history`, its snapshots too."""
    path, buf = Path(path), io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in (CONFIG, WEIGHTS):
            z.write(path / name, f"{path.name}/{name}")
        for step, folder in history_folders(path) if history else []:
            for name in (CONFIG, WEIGHTS):
                z.write(folder / name, f"{path.name}/{HISTORY}/{folder.name}/{name}")
    return buf.getvalue()


# A zip is read member by member in memory; these bound what a hostile one can make us read or write.
MAX_ZIP_MEMBERS = 4 * MAX_SNAPSHOTS + 64  # a checkpoint, its snapshots, and room for stray files (.DS_Store ...)
MAX_ZIP_BYTES = 2 * MAX_WEIGHTS_BYTES  # all the files read from one zip together, uncompressed
_STEP = re.compile(r"step-(\d+)")


def _zip_layout(z: zipfile.ZipFile) -> tuple[dict[str, zipfile.ZipInfo], dict[int, dict[str, zipfile.ZipInfo]]]:
    """(the checkpoint's own files, {step: its snapshot's files}) by base name; a CheckpointError for a
    path that leaves the zip, too many members, or files of more than one checkpoint."""
    infos = z.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"the zip holds {len(infos):,} files; a checkpoint zip holds at most {MAX_ZIP_MEMBERS:,}")
    root: dict[str, zipfile.ZipInfo] = {}
    snaps: dict[int, dict[str, zipfile.ZipInfo]] = {}
    folders: set[tuple[str, ...]] = set()
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
            raise CheckpointError(f"the zip holds a path that leads out of its folder ({info.filename!r}); "
                                  "refusing it")
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1] not in (CONFIG, WEIGHTS):
            continue  # folders, macOS metadata and other files play no part
        m = _STEP.fullmatch(parts[-2]) if len(parts) >= 3 and parts[-3] == HISTORY else None
        if m is None:
            folder, files = parts[:-1], root
        else:
            folder, files = parts[:-3], snaps.setdefault(int(m.group(1)), {})
            if len(snaps) > MAX_SNAPSHOTS:
                raise CheckpointError(f"the zip holds more than {MAX_SNAPSHOTS} history snapshots")
        if parts[-1] in files:
            where = f"{HISTORY}/{parts[-2]}/" if m else ""
            raise CheckpointError(f"the zip holds more than one {where}{parts[-1]}")
        files[parts[-1]] = info
        folders.add(folder)
    if len(folders) > 1:
        raise CheckpointError("the zip holds files of more than one checkpoint folder ("
                              + ", ".join(sorted("/".join(f) or "the top level" for f in folders)) + ")")
    return root, snaps


class _ZipReader:
    """Reads members of an open zip, each within its own limit and all within MAX_ZIP_BYTES."""

    def __init__(self, z: zipfile.ZipFile):
        self.z, self.total = z, 0

    def read(self, info: zipfile.ZipInfo, what: str) -> bytes:
        limit = MAX_CONFIG_BYTES if what.endswith(CONFIG) else MAX_WEIGHTS_BYTES
        if info.file_size > limit:
            raise CheckpointError(f"{what} in the zip is too large (over {limit // 2**20} MB)")
        if self.total + info.file_size > MAX_ZIP_BYTES:
            raise CheckpointError(f"the zip's files come to more than {MAX_ZIP_BYTES // 2**20} MB uncompressed")
        try:
            with self.z.open(info) as f:
                data = f.read(limit + 1)  # the header's size may lie: never read past the limit
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise CheckpointError(f"{what} cannot be read from the zip ({e})") from None
        if len(data) > limit:
            raise CheckpointError(f"{what} in the zip is too large (over {limit // 2**20} MB)")
        self.total += len(data)
        if self.total > MAX_ZIP_BYTES:
            raise CheckpointError(f"the zip's files come to more than {MAX_ZIP_BYTES // 2**20} MB uncompressed")
        return data


def _check_snapshot(config_bytes: bytes, weights_bytes: bytes, step: int, model_config: dict) -> None:
    """A CheckpointError unless the snapshot loads as a checkpoint of the same model, at its folder's step."""
    _, config = from_bytes(config_bytes, weights_bytes)  # every check a checkpoint gets
    if config["model"] != model_config:
        raise CheckpointError("its model does not match the checkpoint's")
    if config.get("step", step) != step:
        raise CheckpointError(f"its config.json says step {config.get('step')!r}, its folder step {step}")


def from_zip(data: bytes, device="cpu", dest=None) -> tuple[CharRNN, dict]:
    """Load a zipped checkpoint folder, with its `history/step-<N>/` snapshots when it has them (each
    checked like a checkpoint, within the same size limits). Nothing is extracted: members are read in
    memory, and with `dest` the checked files are written there, a checkpoint folder whose file names
    are ours, never the zip's (so '../x' could do no harm; such a zip is refused all the same)."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise CheckpointError("the upload is not a zip file") from None
    with z:
        root, snaps = _zip_layout(z)
        if set(root) != {CONFIG, WEIGHTS}:
            raise CheckpointError(f"the zip must hold {CONFIG} and {WEIGHTS}; found {sorted(root) or 'neither'}")
        reader = _ZipReader(z)
        files = {name: reader.read(root[name], name) for name in (CONFIG, WEIGHTS)}
        model, config = from_bytes(files[CONFIG], files[WEIGHTS], device)
        tmp = None
        if dest is not None:
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
        try:
            if tmp is not None:
                for name, content in files.items():
                    _write_file(tmp / name, content)
            del files
            for step in sorted(snaps):
                where = f"{HISTORY}/step-{step}/"
                missing = sorted({CONFIG, WEIGHTS} - set(snaps[step]))
                if missing:
                    raise CheckpointError(f"the snapshot {where} lacks {' and '.join(missing)}")
                snap = {name: reader.read(snaps[step][name], where + name) for name in (CONFIG, WEIGHTS)}
                try:
                    _check_snapshot(snap[CONFIG], snap[WEIGHTS], step, config["model"])
                except CheckpointError as e:
                    raise CheckpointError(f"the snapshot {where} cannot be used: {e}") from None
                if tmp is not None:
                    snapshot_dir(tmp, step).mkdir(parents=True)
                    for name, content in snap.items():
                        _write_file(snapshot_dir(tmp, step) / name, content)
            if tmp is not None:
                os.rename(tmp, dest)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return model, config
