"""Generated samples kept on disk, shared by every server process: one plain .npz (arrays plus a JSON
member, never a pickle) per (model weights, prime, length, temperature, top-k, seed, clamp)."""
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import shared_state
from .model import CharRNN
from .sampling import Clamp, Sample, sample

FORMAT = 1  # enters every key: bump it and old entries are never read
CACHE_ENV = "RNNVIZ_SAMPLES_DIR"
MAX_ENTRIES = 2000
MAX_BYTES = 200 * 1024 * 1024
_META = "meta_json"  # the npz member holding the key and the strings, as UTF-8 bytes
_VECTORS = ("probs", "model_probs", "u", "lo", "hi", "rank")  # (n,)
_MATRICES = ("dists", "logp")  # (n, V)


class SampleCacheError(ValueError):
    """An entry is truncated, of another key, of the wrong shapes, or not finite: regenerated, never trusted."""


def default_cache_dir() -> Path:
    """$RNNVIZ_SAMPLES_DIR, else samples/ inside the atlas cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from .atlas.store import default_cache_dir as atlas_dir

    return atlas_dir() / "samples"


def model_digest(model: CharRNN) -> str:
    """sha256 of the model's config, vocabulary and every weight's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    h.update("\x00".join(model.vocab.chars).encode("utf-8"))
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def _clamp_fields(clamp: Clamp | None):
    return None if clamp is None else [int(clamp.layer), [int(u) for u in clamp.units], float(clamp.value),
                                       str(clamp.kind)]


def sample_key(model_digest: str, prime: str, length: int, temperature: float, top_k, seed: int,
               clamp: Clamp | None) -> dict:
    """Everything a sample depends on, as JSON-able values."""
    return {"format": FORMAT, "model": model_digest, "prime": prime, "length": int(length),
            "temperature": float(temperature), "top_k": None if top_k is None else int(top_k), "seed": int(seed),
            "clamp": _clamp_fields(clamp)}


def entry_path(folder: Path, key: dict) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:40]
    return Path(folder) / f"{name}.npz"


def _write_atomic(path: Path, data: bytes) -> None:
    """A reader sees the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from another user's server
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_sample(path, s: Sample, key: dict) -> None:
    """Write `s` under `key` as one .npz (atomic)."""

    meta = {"key": key, "prime": s.prime, "text": s.text, "unknown": s.unknown}
    arrays = {k: np.asarray(getattr(s, k)) for k in _VECTORS + _MATRICES}
    arrays[_META] = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_atomic(Path(path), buf.getvalue())


def _need(cond: bool, why: str) -> None:
    if not cond:
        raise SampleCacheError(why)


def load_sample(path, key: dict, vocab_size: int) -> Sample:
    """The Sample stored at `path`, checked against `key` and the model's vocabulary size; SampleCacheError if
    anything is off."""
    try:
        with np.load(path, allow_pickle=False) as z:
            _need(set(z.files) == {_META, *_VECTORS, *_MATRICES}, "members")
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except SampleCacheError:
        raise
    except Exception as e:  # zip, JSON and decoding errors from a damaged file: never trusted
        raise SampleCacheError(f"unreadable: {e}") from e
    _need(isinstance(meta, dict) and meta.get("key") == key, "another key")
    text, prime, unknown = meta.get("text"), meta.get("prime"), meta.get("unknown")
    _need(isinstance(text, str) and prime == key["prime"] and isinstance(unknown, dict), "strings")
    _need(all(isinstance(c, str) and isinstance(v, int) for c, v in unknown.items()), "unknown")
    n = len(text)
    _need(n == key["length"], "length")
    for k in _VECTORS:
        _need(arrays[k].shape == (n,) and arrays[k].dtype.kind in "fi", k)
    for k in _MATRICES:
        _need(arrays[k].shape == (n, vocab_size) and arrays[k].dtype == np.float32, k)
    _need(arrays["rank"].dtype.kind == "i", "rank")
    for k in ("probs", "model_probs", "u", "lo", "hi", "dists"):
        _need(bool(np.isfinite(arrays[k]).all()), f"{k} not finite")
    _need(not np.isnan(arrays["logp"]).any(), "logp NaN")  # -inf is a character the model rules out
    return Sample(prime=prime, text=text, unknown=unknown, **arrays)


def _evict(folder: Path, keep: Path, max_entries: int, max_bytes: int) -> None:
    """Delete the oldest entries beyond `max_entries` files or `max_bytes` in all (never `keep`)."""
    files = []
    for p in folder.glob("*.npz"):
        try:
            st = p.stat()
        except OSError:
            continue
        files.append((st.st_mtime_ns, st.st_size, p))
    files.sort(reverse=True)  # newest first
    total = 0
    for i, (_, size, p) in enumerate(files):
        total += size
        if p != keep and (i >= max_entries or total > max_bytes):
            p.unlink(missing_ok=True)


def _read(path: Path, key: dict, vocab_size: int) -> Sample | None:
    """The entry if it is sound, else None (the caller discards a bad one under the build lock)."""
    if not path.is_file():
        return None
    try:
        return load_sample(path, key, vocab_size)
    except SampleCacheError:
        return None


def cached_sample(folder, model_digest: str, prime: str, length: int, temperature: float, top_k, seed: int,
                  clamp: Clamp | None, model: CharRNN, max_entries: int = MAX_ENTRIES,
                  max_bytes: int = MAX_BYTES) -> Sample:
    """sampling.sample(), read from `folder` when any process has made it already; else made once (the
    machine's lock: a second process asking at the same moment waits, then reads it) and written there.
    `model_digest` is model_digest(model). Without a seed the sample is random, so never cached."""
    if seed is None:
        return sample(model, prime, length, temperature=temperature, top_k=top_k, seed=seed, clamp=clamp)
    folder = Path(folder) if folder is not None else default_cache_dir()
    key = sample_key(model_digest, prime, length, temperature, top_k, seed, clamp)
    path = entry_path(folder, key)
    V = len(model.vocab)
    s = _read(path, key, V)  # a hit takes no lock: entries are replaced atomically
    if s is not None:
        return s
    with shared_state.machine_lock(f"sample:{path}"):
        s = _read(path, key, V)
        if s is not None:
            return s
        try:
            path.unlink(missing_ok=True)  # a damaged or mismatched entry: discarded, never trusted
        except OSError:
            pass
        s = sample(model, prime, length, temperature=temperature, top_k=top_k, seed=seed, clamp=clamp)
        try:
            save_sample(path, s, key)
            _evict(folder, path, max_entries, max_bytes)
        except OSError:
            pass  # a full or read-only disk: the sample is still right, just not shared
        return s
