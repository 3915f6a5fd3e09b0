"""A dictionary's sparse codes over a corpus: the k (feature, activation) pairs of every character,
kept beside the dictionary in its cache folder, so one feature's activations over the whole corpus
(for its dashboard) are a lookup, not a rerun of the model."""
from __future__ import annotations

import io
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atlas.corpus import text_sha256
from ..errors import ConfigError
from ..model import CharRNN
from .sae import Dictionary, layer_states
from .store import check_fits

CODES_VERSION = 1


@dataclass
class Codes:
    """The TopK codes of every character: feature ids and their activations, (T, k) each."""

    idx: np.ndarray  # (T, k) uint16 or int32 feature ids
    vals: np.ndarray  # (T, k) float32 activations (0 where fewer than k features fire)
    d_sae: int

    def __len__(self) -> int:
        return self.idx.shape[0]

    def column(self, i: int) -> np.ndarray:
        """(T,) float32: feature i's activation at every character (exactly encode()'s column i)."""
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= int(i) < self.d_sae:
            raise ConfigError(f"feature must be a whole number from 0 to {self.d_sae - 1}, not {i!r}")
        out = np.zeros(len(self), np.float32)
        r, c = np.nonzero(self.idx == i)
        out[r] = self.vals[r, c]
        return out

    def dense(self, features=None) -> np.ndarray:
        """(T, d_sae) float32 activations, or (T, len(features)) of those features."""
        cols = range(self.d_sae) if features is None else np.atleast_1d(features).tolist()
        return np.stack([self.column(int(i)) for i in cols], axis=1) if len(cols) else np.zeros((len(self), 0), np.float32)

    def frequency(self) -> np.ndarray:
        """(d_sae,) the share of characters where each feature is above 0."""
        active = self.vals > 0
        return np.bincount(self.idx[active].astype(np.int64), minlength=self.d_sae) / max(1, len(self))

    def max(self) -> np.ndarray:
        """(d_sae,) each feature's largest activation over the corpus (0 if it never fires)."""
        out = torch.zeros(self.d_sae)
        out.scatter_reduce_(0, torch.from_numpy(self.idx.astype(np.int64).ravel()), torch.from_numpy(self.vals.ravel()),
                            "amax")
        return out.numpy()


@torch.no_grad()
def encode_text(model: CharRNN, d: Dictionary, text: str) -> Codes:
    """Codes of every character of the text, streamed in chunks (never (T, d_sae) dense)."""
    check_fits(d, model)
    w = d.tensors()
    T = len(text)
    idx = np.empty((T, d.k), np.uint16 if d.d_sae <= 65536 else np.int32)
    vals = np.empty((T, d.k), np.float32)
    for s, e, x in layer_states(model, text, d.layer, d.state):
        pre = torch.addmm(w["b_enc"], x - w["b_dec"] if d.apply_b_dec_to_input else x, w["W_enc"]).relu_()
        v, j = pre.topk(d.k, dim=-1, sorted=False)
        idx[s:e], vals[s:e] = j.numpy().astype(idx.dtype), v.numpy()
    return Codes(idx, vals, d.d_sae)


def _codes_name(text: str) -> str:
    return f"codes-{text_sha256(text)[:16]}.npz"


def _read(path: Path, d: Dictionary, T: int) -> Codes | None:
    """A stored Codes if it is whole and is the one its name promises; None to recompute. A flipped or
    missing byte fails the zip's CRC-32 of each array (BadZipFile) as it is read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            idx, vals, meta = z["idx"], z["vals"], z["meta"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    ok = (meta.shape == (3,) and int(meta[0]) == CODES_VERSION and int(meta[1]) == T and int(meta[2]) == d.d_sae
          and idx.shape == (T, d.k) and vals.shape == (T, d.k) and vals.dtype == np.float32
          and idx.dtype in (np.uint16, np.int32) and (T == 0 or int(idx.max()) < d.d_sae)
          and bool(np.isfinite(vals).all()) and bool((vals >= 0).all()))
    return Codes(idx, vals, d.d_sae) if ok else None


def corpus_codes(model: CharRNN, d: Dictionary, text: str) -> Codes:
    """encode_text over the text, read from the dictionary's folder when stored there for this text,
    else computed and stored (atomically; a damaged file is recomputed, never trusted)."""
    if d.path is None:
        return encode_text(model, d, text)
    path = Path(d.path) / _codes_name(text)
    found = _read(path, d, len(text)) if path.exists() else None
    if found is not None:
        return found
    codes = encode_text(model, d, text)
    buf = io.BytesIO()
    np.savez(buf, idx=codes.idx, vals=codes.vals, meta=np.array([CODES_VERSION, len(text), d.d_sae], np.int64))
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk: the codes still serve this call
    return codes
