"""What the Features pages read of a dictionary over a text: its metrics, every feature against every
hypothesis, units against features and every character's codes; measured once and stored beside the
dictionary (atomically; a damaged or foreign entry is measured again, never trusted)."""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..atlas.corpus import text_sha256
from ..dashboard import column_labels, column_table
from ..model import CharRNN
from .codes import Codes, corpus_codes
from .compare import units_vs_features
from .metrics import metrics
from .sae import Cancelled, Dictionary

STUDY_VERSION = 1
LABEL_COLUMNS = ["column", "hypothesis", "binary", "auroc", "direction", "score", "corr", "positives", "spans",
                 "flagged", "reason"]


@dataclass
class Study:
    """A dictionary measured on a text: what the Features pages and the Feature dashboard show."""

    dictionary: Dictionary
    text: str
    metrics: dict  # features.metrics
    labels: pd.DataFrame  # dashboard.column_labels: every feature against every hypothesis
    table: pd.DataFrame  # dashboard.column_table: frequency, max, best label per feature
    comparison: list[dict]  # features.units_vs_features
    codes: Codes  # every character's k (feature, activation) pairs

    @property
    def corpus(self) -> str:
        """The name of the corpus the dictionary trained on (the text is its first characters, or another text)."""
        return str((self.dictionary.cfg.get("corpus") or {}).get("name") or "its corpus")

    def acts(self, i: int) -> np.ndarray:
        """(T,) feature i's activation at every character of the text."""
        return self.codes.column(i)


def _names(text: str) -> tuple[str, str]:
    tag = text_sha256(text)[:16]
    return f"study-{tag}.json", f"study-{tag}-labels.parquet"


def _write(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(d: Dictionary, text: str) -> tuple[dict, pd.DataFrame] | None:
    """The stored measurements of (d, text) if whole and what their names promise, else None."""
    meta_name, labels_name = _names(text)
    try:
        meta = json.loads((Path(d.path) / meta_name).read_text(encoding="utf-8"))
        labels = pd.read_parquet(Path(d.path) / labels_name)
    except (OSError, ValueError, TypeError):
        return None
    ok = (isinstance(meta, dict) and meta.get("version") == STUDY_VERSION and meta.get("text_sha256") == text_sha256(text)
          and meta.get("d_sae") == d.d_sae and isinstance(meta.get("metrics"), dict)
          and isinstance(meta.get("comparison"), list) and list(labels.columns) == LABEL_COLUMNS
          and len(labels) and len(labels) % d.d_sae == 0 and labels["column"].between(0, d.d_sae - 1).all())
    return (meta, labels) if ok else None


def study(model: CharRNN, d: Dictionary, text: str, progress: Callable | None = None,
          cancel: Callable | None = None) -> Study:
    """Measure d on the text (metrics, labels, units against features, codes), or read what was stored beside
    it for this text. progress(fraction, message) as the steps go; cancel() -> True raises Cancelled."""
    say = progress or (lambda f, m: None)
    stored = _read(d, text) if d.path is not None else None

    def check():
        if cancel is not None and cancel():
            raise Cancelled("measuring the dictionary was cancelled")

    say(0.0, "every character's codes ...")
    codes = corpus_codes(model, d, text)
    if stored is not None:
        meta, labels = stored
        table = column_table(labels, codes.frequency(), codes.max())
        return Study(d, text, meta["metrics"], labels, table, meta["comparison"], codes)
    check()
    say(0.1, "measuring the splices (the recurrent one steps through every character) ...")
    m = metrics(model, d, text)
    check()
    say(0.4, "units against features, per hypothesis ...")
    comparison = units_vs_features(model, d, text)
    check()
    say(0.8, "every feature against every hypothesis ...")
    labels = column_labels(codes.dense(), text)[LABEL_COLUMNS]  # (T, d_sae) dense only while labelling
    table = column_table(labels, codes.frequency(), codes.max())
    if d.path is not None:  # best effort: a read-only cache just measures again next time
        meta_name, labels_name = _names(text)
        meta = {"version": STUDY_VERSION, "text_sha256": text_sha256(text), "d_sae": d.d_sae, "metrics": m,
                "comparison": comparison}
        try:
            buf = io.BytesIO()
            labels.to_parquet(buf, index=False)
            _write(Path(d.path) / labels_name, buf.getvalue())
            _write(Path(d.path) / meta_name, json.dumps(meta, default=float).encode())
        except OSError:
            pass
    return Study(d, text, m, labels, table, comparison, codes)
