"""Dictionaries on disk in SAELens's layout (cfg.json + sae_weights.safetensors), and the cache of trained ones.

A cache entry is a folder named by the key of (model weights, corpus text, layer and state, settings),
written into a temporary folder and renamed into place; an entry that fails validation is moved
aside and retrained, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..atlas.corpus import model_key, text_sha256
from ..atlas.store import default_cache_dir as atlas_cache_dir
from ..atlas.store import discard_entry as _discard
from .. import shared_state
from ..checkpoint import _fsync_dir
from ..errors import RnnvizError
from ..model import CharRNN
from .sae import Dictionary, SAEConfig, train

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
FORMAT_VERSION = 2  # enters every cache key: bump it and old entries are never read (2: AuxK before the ReLU)
CACHE_ENV = "RNNVIZ_FEATURES_DIR"
_LOCK = threading.RLock()
_MAX_CFG_BYTES = 1 << 20


class DictionaryError(RnnvizError):
    """A saved dictionary is missing, truncated, of the wrong shape or dtype, or not finite."""


def default_cache_dir() -> Path:
    """$RNNVIZ_FEATURES_DIR, else features/ inside the atlas cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return atlas_cache_dir() / "features"


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save(d: Dictionary, folder) -> Path:
    """Write cfg.json and sae_weights.safetensors (W_enc, b_enc, W_dec, b_dec, float32) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {n: np.ascontiguousarray(getattr(d, n), dtype=np.float32) for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    _write(folder / WEIGHTS, st_save(arrays, metadata={"format": "pt"}))
    cfg = {**d.cfg, "architecture": "topk", "k": int(d.k), "d_in": int(d.d_in), "d_sae": int(d.d_sae)}
    _write(folder / CFG, json.dumps(cfg, indent=1, allow_nan=False).encode())
    return folder


def _need(cond: bool, why: str, folder: Path) -> None:
    if not cond:
        raise DictionaryError(f"{folder} is not a usable dictionary: {why}")


def load(folder) -> Dictionary:
    """Read a dictionary saved by save (or SAELens's topk layout) and check it: shapes, float32, finite,
    unit-norm decoder rows, k within d_sae. Anything else is a DictionaryError that says what is wrong."""
    folder = Path(folder)
    try:
        raw_cfg = (folder / CFG).read_bytes()
        raw_w = (folder / WEIGHTS).read_bytes()
    except OSError as e:
        raise DictionaryError(f"{folder} is not a usable dictionary: {e.strerror or e}") from None
    _need(len(raw_cfg) <= _MAX_CFG_BYTES, f"{CFG} is too large", folder)
    try:
        cfg = json.loads(raw_cfg.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (UnicodeDecodeError, ValueError) as e:
        raise DictionaryError(f"{folder} is not a usable dictionary: {CFG} is not valid JSON ({e})") from None
    _need(isinstance(cfg, dict), f"{CFG} is not a JSON object", folder)
    try:
        w = st_load(raw_w)
    except (SafetensorError, ValueError, Exception) as e:  # the parser raises several types on bad bytes
        raise DictionaryError(f"{folder} is not a usable dictionary: {WEIGHTS} is unreadable ({e})") from None
    _need(set(w) >= {"W_enc", "b_enc", "W_dec", "b_dec"}, f"{WEIGHTS} lacks "
          f"{', '.join(sorted({'W_enc', 'b_enc', 'W_dec', 'b_dec'} - set(w)))}", folder)
    _need(cfg.get("architecture") == "topk", f"architecture is {cfg.get('architecture')!r}, not 'topk'", folder)
    d_in, d_sae, k = cfg.get("d_in"), cfg.get("d_sae"), cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    for name, v in (("d_in", d_in), ("d_sae", d_sae), ("k", k)):
        _need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name} is {v!r}, not a positive whole number",
              folder)
    _need(k <= d_sae, f"k ({k}) exceeds d_sae ({d_sae})", folder)
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in shapes.items():
        a = w[name]
        _need(a.shape == shape, f"{name} has shape {a.shape}, not {shape} (d_in {d_in}, d_sae {d_sae})", folder)
        _need(a.dtype == np.float32, f"{name} is {a.dtype}, not float32", folder)
        _need(bool(np.isfinite(a).all()), f"{name} holds NaN or infinite values", folder)
    norms = np.linalg.norm(w["W_dec"].astype(np.float64), axis=1)
    _need(bool(np.allclose(norms, 1.0, atol=1e-3)), "the decoder's rows are not of unit norm", folder)
    for name in ("layer", "state"):
        _need(name in cfg, f"{CFG} does not record the {name}", folder)
    _need(cfg["state"] in ("h", "c"), f"state is {cfg['state']!r}, not 'h' or 'c'", folder)
    _need(isinstance(cfg["layer"], int) and not isinstance(cfg["layer"], bool) and cfg["layer"] >= 0,
          f"layer is {cfg['layer']!r}", folder)
    _need(isinstance(cfg.get("apply_b_dec_to_input", True), bool), "apply_b_dec_to_input is not true or false", folder)
    return Dictionary(W_enc=w["W_enc"], b_enc=w["b_enc"], W_dec=w["W_dec"], b_dec=w["b_dec"], k=int(k), cfg=cfg,
                      path=folder)


def check_fits(d: Dictionary, model: CharRNN) -> None:
    """A clear error when a dictionary was made for another layer size, layer count or cell."""
    H, L = model.config.hidden_size, model.config.num_layers
    if d.d_in != H:
        raise DictionaryError(f"this dictionary reads {d.d_in} units, but the model's layers have {H}")
    if d.layer >= L:
        raise DictionaryError(f"this dictionary reads layer {d.layer}, but the model has {L} layer(s)")
    if d.state == "c" and model.cell != "lstm":
        raise DictionaryError(f"this dictionary reads an LSTM's c; the model is a {model.cell.upper()}")


# --- the cache ----------------------------------------------------------------------------------------

def entry_key(model: CharRNN | str, text: str, cfg: SAEConfig) -> str:
    """The cache key of (model or its model_key, corpus text, resolved settings)."""
    mkey = model if isinstance(model, str) else model_key(model)
    blob = json.dumps({"format": FORMAT_VERSION, "model": mkey, "corpus": text_sha256(text),
                       "settings": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _matches(d: Dictionary, key: str, cfg: SAEConfig) -> None:
    """An entry must be the one its name promises: its recorded key and settings."""
    _need(d.cfg.get("cache_key") == key, "its recorded cache key is not its folder's name", d.path)
    _need(d.cfg.get("training", {}).get("size") == cfg.size and d.k == cfg.k and d.layer == cfg.layer
          and d.state == cfg.state, "its settings are not those its key names", d.path)


def lookup(model: CharRNN, text: str, cfg: SAEConfig, cache_dir=None) -> tuple[Dictionary | None, str | None]:
    """(the cached dictionary or None, why a damaged entry was dropped or None); never trains."""
    cfg = cfg.resolved(model)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = entry_key(model, text, cfg)
    entry = cache_dir / key
    if not entry.exists():
        return None, None
    try:
        d = load(entry)
        _matches(d, key, cfg)
        check_fits(d, model)
        return d, None
    except DictionaryError as e:
        with _LOCK:
            _discard(entry)
        return None, str(e)


def load_or_train(model: CharRNN, text: str, corpus_name: str, cfg: SAEConfig | None = None, cache_dir=None,
                  progress: Callable | None = None, cancel: Callable | None = None,
                  model_name: str | None = None) -> Dictionary:
    """The dictionary of (model, text, cfg) from the cache, else trained and cached atomically. A damaged
    entry is dropped and retrained; the result's cfg['retrained_because'] then says why."""
    cfg = (cfg or SAEConfig()).resolved(model)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = entry_key(model, text, cfg)
    with shared_state.machine_lock(f"features:{cache_dir / key}"):  # trained once: another process waits
        found, why = lookup(model, text, cfg, cache_dir)
        if found is not None:
            return found
        d = train(model, text, cfg, progress=progress, cancel=cancel, model_name=model_name,
                  corpus={"name": corpus_name, "chars": len(text), "sha256": text_sha256(text)})
        d.cfg["cache_key"] = key
        d.cfg["model_sha256"] = model_key(model)
        work = cache_dir / f".{key}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        final = cache_dir / key
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            save(d, work)
            with _LOCK:
                if final.exists():
                    _discard(final)  # a bad entry, or another build's: ours is as good
                os.rename(work, final)
            _fsync_dir(cache_dir)
            d.path = final
        except OSError:  # a full or read-only disk: the dictionary still works, uncached
            shutil.rmtree(work, ignore_errors=True)
        if why:  # said to this caller only, never saved into the new entry
            d.cfg = {**d.cfg, "retrained_because": why}
        return d
