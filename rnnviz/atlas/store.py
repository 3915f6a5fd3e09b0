"""The on-disk cache entry: state sinks, atomic commit, recovery of dead builds, and never-trusting validation."""
from __future__ import annotations

import atexit
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..checkpoint import _fsync_dir  # the same durable rename as checkpoint saves
from ..errors import RnnvizError
from .corpus import FORMAT_VERSION
from .stats import GATE, H_BINS, PEAKS, _series_name, kinds_of

ROOT = Path(__file__).resolve().parents[2]  # the repository: atlas_cache/ lives beside rnnviz/
CACHE_ENV = "RNNVIZ_ATLAS_DIR"
META, SMALL, TEXT, LABELS = "meta.json", "small.npz", "text.txt", "labels.npz"
_LOCK = threading.RLock()  # one build per key at a time inside a process


class CacheError(RnnvizError):
    """A cache entry is truncated, corrupt, or of another format: it is rebuilt, never trusted."""


def default_cache_dir() -> Path:
    """$RNNVIZ_ATLAS_DIR; else atlas_cache/ in the repository rnnviz runs from; else, for an installed
    package (whose folder is site-packages, no place for a cache), the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if (ROOT / "app.py").is_file() and (ROOT / "rnnviz").is_dir():
        return ROOT / "atlas_cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnviz" / "atlas"


class _FileSink:
    """(H, T) int8 in a file, unit-major; written by pwrite, so a full disk raises, never SIGBUS."""

    def __init__(self, path: Path, H: int, T: int):
        self.path, self.H, self.T = path, H, T
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.fd, 0, H * T)  # claim the space now: ENOSPC here, not halfway
            else:
                os.ftruncate(self.fd, H * T)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, qt: np.ndarray, start: int) -> None:
        for u in range(self.H):
            os.pwrite(self.fd, qt[u].data, u * self.T + start)

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None

    def array(self) -> np.ndarray:
        return np.memmap(self.path, dtype=np.int8, mode="r", shape=(self.H, self.T))


class _MemorySink:
    def __init__(self, H: int, T: int):
        self.data = np.zeros((H, T), np.int8)

    def write(self, qt: np.ndarray, start: int) -> None:
        self.data[:, start:start + qt.shape[1]] = qt

    def close(self) -> None:
        pass

    def array(self) -> np.ndarray:
        return self.data

def _workdir(cache_dir: Path, key: str, need: int) -> tuple[Path | None, str | None, bool]:
    """A folder to build in: (path, notice, cached). Inside the cache folder when it can be written and
    has room; else the system's temporary folder (not cached); else (None, notice, False): memory."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _recover(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-{os.getpid()}-", dir=cache_dir))
        free = shutil.disk_usage(cache_dir).free
        if free < need:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(28, f"{free / 2**20:,.0f} MB free, the atlas needs about {need / 2**20:,.0f} MB")
        return tmp, None, True
    except OSError as e:
        why = f"the atlas cache folder {cache_dir} cannot be used ({e.strerror or e})"
    try:
        tmp = Path(tempfile.mkdtemp(prefix="rnnviz-atlas-"))
        if shutil.disk_usage(tmp).free < need:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(28, "no room")
        atexit.register(shutil.rmtree, tmp, True)
        return tmp, f"{why}: built in a temporary folder, not cached", False
    except OSError:
        return None, f"{why}: built in memory, not cached", False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # a build of this process is running in another thread (a failed one cleans up itself)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _recover(cache_dir: Path) -> None:
    """Drop leftovers of builds that died: `.KEY.tmp-PID-*` and `.KEY.old-PID-*` of dead processes."""
    for p in cache_dir.glob(".*.*-*"):
        m = re.match(r"^\.[0-9a-f]+\.(?:tmp|old)-(\d+)", p.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()

def _commit(work: Path, cache_dir: Path, key: str, meta: dict, small: dict, text: str) -> Path | None:
    """Write the small files into the build folder and rename it into place; None if that failed."""
    final = cache_dir / key
    try:
        blob = _npz_bytes(small)
        meta = {**meta, "small_sha256": hashlib.sha256(blob).hexdigest(),
                "state_files": {s: f"{s}.i8" for s in _state_names(meta)}}
        _write(work / SMALL, blob)
        _write(work / TEXT, text.encode("utf-8"))
        _write(work / META, json.dumps(meta, indent=1, allow_nan=False).encode())  # last: marks complete
        with _LOCK:
            if final.exists():  # another build of the same key (elsewhere) won, or a bad one is there
                try:
                    _validate(final, key)
                    shutil.rmtree(work, ignore_errors=True)
                    return final
                except CacheError:
                    discard_entry(final)
            try:
                os.rename(work, final)
            except OSError:  # another process renamed its build of the same key in first: use that one
                _validate(final, key)
                shutil.rmtree(work, ignore_errors=True)
                return final
        _fsync_dir(cache_dir)
        return final
    except CacheError:
        return None
    except OSError:
        return None


def discard_entry(entry: Path) -> None:
    """Move a bad entry out of the way (atomic rename), then delete it."""
    old = entry.parent / f".{entry.name}.old-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(entry, old)
    except OSError:
        return
    shutil.rmtree(old, ignore_errors=True)


def _state_names(meta: dict) -> list[str]:
    return [_series_name(l, k) for l in range(meta["num_layers"]) for k in meta["kinds"]]

def _need(cond: bool, why: str) -> None:
    if not cond:
        raise CacheError(why)


def _check_meta_types(meta: dict) -> None:
    """Every field an Atlas reads has its type: JSON that parses can still hold a list where a name belongs,
    and that must be a CacheError (so the entry is rebuilt), never a TypeError further on."""
    ints = ("num_layers", "hidden_size", "chars", "block", "top_k")
    _need(all(type(meta.get(k)) is int and meta[k] > 0 for k in ints), "sizes missing or not positive whole numbers")
    _need(isinstance(meta.get("cell"), str) and meta["cell"] in GATE, "unknown cell")
    _need(meta.get("kinds") == list(kinds_of(meta["cell"])), "kinds do not match the cell")
    for k in ("model_key", "corpus_sha256", "small_sha256", "name"):
        _need(isinstance(meta.get(k), str), f"{k} missing")
    notices = meta.get("notices", [])
    _need(isinstance(notices, list) and all(isinstance(n, str) for n in notices), "notices are not a list of text")
    unknown = meta.get("unknown", {})
    _need(isinstance(unknown, dict) and all(type(n) is int and n > 0 for n in unknown.values()),
          "unknown is not a count per character")


def _validate(entry: Path, key: str | None = None) -> tuple[dict, dict, dict, str]:
    """Read and check a cache entry; CacheError for anything wrong. Never unpickles."""
    try:
        raw = (entry / META).read_bytes()
    except OSError as e:
        raise CacheError(f"no readable {META} ({e.strerror or e})") from None
    _need(len(raw) < 4 * 2**20, f"{META} is too large")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"{META} is not valid JSON ({e})") from None
    _need(isinstance(meta, dict), f"{META} is not an object")
    _need(type(meta.get("format_version")) is int and meta["format_version"] == FORMAT_VERSION,
          f"format version {meta.get('format_version')!r}, this rnnviz writes {FORMAT_VERSION}")
    if key is not None:
        _need(meta.get("key") == key, "the entry's key does not match its folder")
    _check_meta_types(meta)
    L, H, T, B, K = (meta[k] for k in ("num_layers", "hidden_size", "chars", "block", "top_k"))
    try:
        blob = (entry / SMALL).read_bytes()
        text_bytes = (entry / TEXT).read_bytes()
    except OSError as e:
        raise CacheError(f"a file is missing ({e.strerror or e})") from None
    _need(hashlib.sha256(blob).hexdigest() == meta["small_sha256"], f"{SMALL} fails its checksum")
    _need(hashlib.sha256(text_bytes).hexdigest() == meta["corpus_sha256"], f"{TEXT} fails its checksum")
    text = text_bytes.decode("utf-8")
    _need(len(text) == T, "the text's length does not match")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            small = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise CacheError(f"{SMALL} is unreadable ({e})") from None
    nb = -(-T // B)
    k = min(K, T)
    shapes = {"mean": ((H,), "f8"), "std": ((H,), "f8"), "min": ((H,), "f4"), "max": ((H,), "f4"),
              "sparsity": ((H,), "f8"), "scale": ((nb, H), "f4"), "top_pos": ((k, H), "i8"),
              "top_val": ((k, H), "f4"), "bottom_pos": ((k, H), "i8"), "bottom_val": ((k, H), "f4"),
              "top_peak_pos": ((PEAKS, H), "i8"), "top_peak_val": ((PEAKS, H), "f4"),
              "bottom_peak_pos": ((PEAKS, H), "i8"), "bottom_peak_val": ((PEAKS, H), "f4")}
    expected = {}
    for s in _state_names(meta):
        for name, spec in shapes.items():
            expected[f"{s}.{name}"] = spec
        if s.endswith("_h"):
            expected[f"{s}.hist"] = ((H_BINS, H), "i8")
    gate = GATE[meta["cell"]]
    if gate:
        for l in range(L):
            expected[f"L{l}.{gate}_mean"] = ((H,), "f8")
    _need(set(small) == set(expected), f"{SMALL} holds other arrays than expected")
    for name, (shape, dtype) in expected.items():
        a = small[name]
        _need(a.shape == shape and a.dtype == np.dtype(dtype), f"{name} has shape {a.shape} {a.dtype}")
    for s in _state_names(meta):
        for p in ("top_pos", "bottom_pos"):
            a = small[f"{s}.{p}"]
            _need(a.size == 0 or (a.min() >= 0 and a.max() < T), f"{s}.{p} out of range")
        for p in ("top_peak_pos", "bottom_peak_pos"):
            a = small[f"{s}.{p}"]
            _need(a.min() >= -1 and a.max() < T, f"{s}.{p} out of range")  # -1: no peak left
        _need(bool(np.isfinite(small[f"{s}.scale"]).all()), f"{s}.scale is not finite")
    states = {}
    for s in _state_names(meta):
        f = entry / f"{s}.i8"
        try:
            size = f.stat().st_size
        except OSError:
            raise CacheError(f"{f.name} is missing") from None
        _need(size == H * T, f"{f.name} has {size:,} bytes, expected {H * T:,}")
        states[s] = np.memmap(f, dtype=np.int8, mode="r", shape=(H, T))
    return meta, small, states, text
