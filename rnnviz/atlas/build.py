"""Building an atlas, or finding it in the cache: build_atlas, load, lookup, load_or_build, job_fn."""
from __future__ import annotations

import atexit
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .. import shared_state
from ..errors import TextError
from ..model import CharRNN
from .core import Atlas
from .corpus import (DEFAULT_CHUNK, DEFAULT_TOP_K, FORMAT_VERSION, MAX_CHARS, _check_settings, _settings, cache_key,
                     entry_key, model_key, resolve_corpus, text_sha256)
from .stats import GATE, _Series, _series_name, kinds_of
from .store import (_LOCK, META, CacheError, _commit, discard_entry, _FileSink, _MemorySink, _validate, _workdir,
                    default_cache_dir)
from .stream import Cancelled, _stream


@torch.no_grad()
def build_atlas(model: CharRNN, text: str, *, name: str = "text", notices: list[str] | None = None,
                cache_dir=None, chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K,
                stop_event: threading.Event | None = None, report=None, cache: bool = True) -> Atlas:
    """Index `model` over `text` (see the module doc); cached in `cache_dir` (default: RNNVIZ_ATLAS_DIR
    or <repo>/atlas_cache) unless cache=False. `report(done=, total=, message=)` gets progress in
    characters; once `stop_event` is set the build stops, leaves nothing behind and raises Cancelled."""
    _check_settings(chunk, top_k)
    if not isinstance(text, str) or not text:
        raise TextError("the atlas corpus is empty: give at least one character")
    report = report or (lambda **kw: None)
    notices = list(notices or [])
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cell, L, H = model.cell, model.config.num_layers, model.config.hidden_size
    T = len(text)
    kinds = kinds_of(cell)
    unknown = model.vocab.unknown(text)
    if unknown:
        shown = "".join(sorted(unknown))[:40]
        notices.append(f"{sum(unknown.values()):,} characters the model never saw (read as the unknown symbol "
                       f"\ufffd): {shown!r}")
    mkey, ckey = model_key(model), text_sha256(text)
    settings = _settings(chunk, top_k)
    key = cache_key(mkey, ckey, settings)
    n_blocks = -(-T // chunk)
    need = L * len(kinds) * H * T + 16 * 2**20
    if cache:
        work, why, cached = _workdir(cache_dir, key, need)
    else:
        work, why, cached = None, None, False
    if why:
        notices.append(why)
    sinks = {}
    try:
        try:
            for l in range(L):
                for kind in kinds:
                    s = _series_name(l, kind)
                    sinks[s] = _FileSink(work / f"{s}.i8", H, T) if work is not None else _MemorySink(H, T)
        except OSError as e:  # no room after all: memory
            for sink in sinks.values():
                if isinstance(sink, _FileSink):
                    sink.close()
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            work, cached = None, False
            notices.append(f"the atlas could not be written to disk ({e.strerror or e}): built in memory, not cached")
            sinks = {_series_name(l, k): _MemorySink(H, T) for l in range(L) for k in kinds}
        series = {_series_name(l, k): _Series(H, T, top_k, n_blocks, k == "h", sinks[_series_name(l, k)])
                  for l in range(L) for k in kinds}
        gate = GATE[cell]
        gate_sum = [np.zeros(H) for _ in range(L)]
        _stream(model, text, chunk, stop_event, report, series, gate, gate_sum)
        for sink in sinks.values():
            sink.close()
        small: dict[str, np.ndarray] = {}
        for s, ser in series.items():
            for k, v in ser.finish().items():
                small[f"{s}.{k}"] = v
        if gate:
            for l in range(L):
                small[f"L{l}.{gate}_mean"] = gate_sum[l] / T
        meta = {"format_version": FORMAT_VERSION, "key": key, "model_key": mkey, "corpus_sha256": ckey,
                "name": name, "cell": cell, "num_layers": L, "hidden_size": H, "kinds": list(kinds),
                "chars": T, "block": chunk, "top_k": top_k, "settings": settings,
                "unknown": unknown, "notices": notices, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch_version": torch.__version__}
        states = {s: sink.array() for s, sink in sinks.items()}
        path = None
        if cached:
            path = _commit(work, cache_dir, key, meta, small, text)
            if path is None:
                notices.append("the atlas could not be saved to the cache folder: it lives in a temporary folder")
                atexit.register(shutil.rmtree, work, True)
        notice = " ".join(notices) or None
        report(done=T, total=T, message=f"atlas of {T:,} characters ready")
        if path is not None:  # what is returned is what the cache holds (another process's build, maybe)
            try:
                at = load(path)
                at.notice = notice
                return at
            except CacheError:
                pass
        return Atlas(meta, small, states, text, path, notice)
    except BaseException:
        for sink in sinks.values():
            if isinstance(sink, _FileSink) and sink.fd is not None:
                os.close(sink.fd)
                sink.fd = None
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise

def load(entry) -> Atlas:
    """An atlas from a cache entry folder; CacheError if anything is wrong with it."""
    entry = Path(entry)
    meta, small, states, text = _validate(entry)
    return Atlas(meta, small, states, text, entry, " ".join(meta.get("notices") or []) or None)


def lookup(model: CharRNN, text: str, *, cache_dir=None, chunk: int = DEFAULT_CHUNK,
           top_k: int = DEFAULT_TOP_K, model_hash: str | None = None) -> Atlas | None:
    """The cached atlas of (model, text, settings), or None when there is none (or a bad one).
    model_hash: the model's model_key when the caller has it (hashing the weights is skipped)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = entry_key(model_hash or model, text, chunk, top_k)
    entry = cache_dir / key
    if not (entry / META).exists():
        return None
    try:
        meta, small, states, t = _validate(entry, key)
    except CacheError:
        return None
    return Atlas(meta, small, states, t, entry, " ".join(meta.get("notices") or []) or None)


def load_or_build(model: CharRNN, config: dict | None = None, corpus=None, *, cache_dir=None,
                  max_chars: int | None = MAX_CHARS, chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K,
                  stop_event: threading.Event | None = None, report=None) -> Atlas:
    """The atlas of `model` over `corpus` (default: its held-out split; see resolve_corpus), from the
    cache when a valid entry is there, else built (a bad entry is discarded and rebuilt)."""
    _check_settings(chunk, top_k)
    src = resolve_corpus(config, corpus, max_chars)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(model_key(model), text_sha256(src.text), _settings(chunk, top_k))
    entry = cache_dir / key
    with shared_state.machine_lock(f"atlas:{entry}"):  # built once: another process waits, then reads it
        rebuilt = None
        if entry.exists():
            try:
                meta, small, states, text = _validate(entry, key)
                notices = list(dict.fromkeys(src.notices + list(meta.get("notices") or [])))
                return Atlas(meta, small, states, text, entry, " ".join(notices) or None)
            except CacheError as e:
                rebuilt = f"the cached atlas was unusable ({e}) and was rebuilt"
                with _LOCK:
                    discard_entry(entry)
        atlas = build_atlas(model, src.text, name=src.name, notices=src.notices, cache_dir=cache_dir, chunk=chunk,
                            top_k=top_k, stop_event=stop_event, report=report)
        if rebuilt:
            atlas.notice = " ".join(x for x in (atlas.notice, rebuilt) if x)
        return atlas


def job_fn(model: CharRNN, config: dict | None = None, corpus=None, **kw):
    """fn(stop_event, report) for jobs.Job: the atlas, or None when cancelled (the Job says 'stopped')."""
    def run(stop_event, report):
        try:
            return load_or_build(model, config, corpus, stop_event=stop_event, report=report, **kw)
        except Cancelled:
            return None
    return run
