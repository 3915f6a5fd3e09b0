"""The atlas: one model over one corpus, indexed unit by unit, streamed in chunks and cached on disk.

A build runs the model over the corpus in chunks with the state carried (so every value is the one
a single trace of the whole text gives), folds each chunk into running per-unit statistics (exact
top-K and bottom-K, mean, std, min, max, sparsity, fixed-bin histograms of h, forget / update gate
means) and writes compact per-character states: int8 with a symmetric scale per unit and block of
`chunk` characters, |stored - true| <= scale / 2. No step holds the corpus's float32 states.

One file per concern:
  corpus.py   which text (resolve_corpus, upload_corpus), the model and text hashes, settings and cache keys
  stats.py    running per-unit statistics of one (layer, kind): top/bottom-K, moments, histograms, tau
  stream.py   the model run in chunks with the state carried; c, f, z recomputed as trace does
  store.py    the on-disk entry: sinks, atomic commit, recovery, validation
  core.py     the Atlas class: reading a built index
  labels.py   every unit against every hypothesis, and the labels cache
  build.py    build_atlas, load, lookup, load_or_build, job_fn
  lstmvis.py  the LSTMVis export: a folder, or a zip for a download

See docs/atlas.md for the cache layout and every exactness claim.
"""
from .build import build_atlas, job_fn, load, load_or_build, lookup
from .core import Atlas
from .corpus import (DEFAULT_CHUNK, DEFAULT_TOP_K, FORMAT_VERSION, MAX_CHARS, MIN_TOP_K, CorpusText,
                     cache_key, entry_key, model_key, resolve_corpus, settings, text_sha256, upload_corpus)
from .labels import average_ranks, score_units
from .lstmvis import export_lstmvis, lstmvis_size, lstmvis_zip
from .stats import _H_EDGES, C_BINS, GATE, H_BINS, PEAKS, QUANTILES, SEPARATION, SPARSE_BELOW, kinds_of, tau
from .store import CACHE_ENV, LABELS, META, ROOT, SMALL, TEXT, CacheError, default_cache_dir
from .stream import Cancelled

__all__ = [
    "Atlas", "CacheError", "Cancelled", "CorpusText",
    "build_atlas", "load", "load_or_build", "lookup", "job_fn", "export_lstmvis", "lstmvis_zip", "lstmvis_size",
    "resolve_corpus", "upload_corpus", "model_key", "text_sha256", "cache_key", "entry_key", "settings",
    "score_units", "average_ranks", "tau", "kinds_of", "default_cache_dir",
    "FORMAT_VERSION", "MAX_CHARS", "DEFAULT_CHUNK", "DEFAULT_TOP_K", "MIN_TOP_K",
    "H_BINS", "C_BINS", "SPARSE_BELOW", "QUANTILES", "GATE", "_H_EDGES", "PEAKS", "SEPARATION",
    "ROOT", "CACHE_ENV", "META", "SMALL", "TEXT", "LABELS",
]
