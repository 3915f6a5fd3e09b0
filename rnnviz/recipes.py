"""Named, seeded training recipes: one command reproduces each shipped model."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from .corpora import CORPORA, Corpus, load_corpus, user_text
from .errors import ConfigError
from .training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE_ENV = "RNNVIZ_TINYSHAKESPEARE"  # where the tinyshakespeare file is, on a machine without ../shared
DEFAULT_TINY_SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
MAX_TRAIN_CHARS = 50_000_000


@dataclass(frozen=True)
class OutsideCorpus:
    """A corpus file that rnnviz does not ship: where to look for it, and the one the shipped models used."""

    name: str  # the name recorded in a checkpoint's corpus metadata
    env: str  # the environment variable that gives its path
    default: Path  # where it lies beside this checkout
    sha256: str  # the file the shipped models trained on (their config.json's corpus.sha256)
    chars: int
    source: str  # where the public file comes from

    def path(self) -> Path:
        return Path(os.environ.get(self.env) or self.default).expanduser()


TINY = OutsideCorpus(
    name="tinyshakespeare.txt", env=SHAKESPEARE_ENV, default=DEFAULT_TINY_SHAKESPEARE,
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", chars=1_115_394,
    source="the tinyshakespeare input.txt of Karpathy's char-rnn (data/tinyshakespeare/input.txt)")
TINY_SHAKESPEARE = TINY.path()


def corpus_from_spec(spec: str) -> Corpus:
    """A built-in corpus name (see CORPORA), or the path of a UTF-8 text file."""
    if spec in CORPORA:
        return load_corpus(spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"corpus {spec!r} is neither a built-in ({', '.join(CORPORA)}) nor a file")
    return user_text(path, name=path.name, max_chars=MAX_TRAIN_CHARS)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recipe_corpus(recipe: "Recipe", recipe_name: str, spec: str | None = None,
                  allow_other: bool = False) -> Corpus:
    """The corpus a recipe trains on. For a recipe whose corpus is an outside file (the Shakespeare
    recipes' tinyshakespeare): `spec` (--corpus), else $RNNVIZ_TINYSHAKESPEARE, else the file beside
    this checkout; a missing file is a ConfigError saying what to pass, and a file whose sha256 is
    not the shipped models' is refused unless `allow_other` (then a note on stderr says so)."""
    outside = recipe.outside
    if outside is None:
        return corpus_from_spec(spec or recipe.corpus)
    if spec is None:
        path = outside.path()
        if not path.is_file():
            where = f"${outside.env} ({path})" if os.environ.get(outside.env) else str(path)
            raise ConfigError(f"the {recipe_name} recipe trains on {outside.name}, not found at {where}: pass "
                              f"--corpus PATH or set {outside.env}=PATH ({outside.source}, "
                              f"{outside.chars:,} characters)")
        spec = str(path)
    if spec in CORPORA:
        digest, corpus = None, load_corpus(spec)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"--corpus {spec!r} is neither a built-in ({', '.join(CORPORA)}) nor a file")
        digest = _sha256(path)
        name = outside.name if digest == outside.sha256 else path.name
        corpus = user_text(path, name=name, max_chars=MAX_TRAIN_CHARS)
    if digest != outside.sha256:
        what = f"{spec} (sha256 {digest[:12]}...)" if digest else f"the built-in corpus {spec!r}"
        if not allow_other:
            raise ConfigError(f"{what} is not the {outside.name} the shipped {recipe_name} trained on (sha256 "
                              f"{outside.sha256[:12]}...), so its losses will not compare: pass "
                              f"--allow-other-corpus to train on it anyway")
        print(f"note: {what} is not the {outside.name} the shipped {recipe_name} trained on (sha256 "
              f"{outside.sha256[:12]}...); training on it as asked (--allow-other-corpus)", file=sys.stderr)
    return corpus


@dataclass
class Recipe:
    """What to train on, the network's shape, and how to optimise it."""

    corpus: str
    model: dict
    train: TrainConfig
    val_fraction: float = 0.1
    outside: OutsideCorpus | None = None  # set when `corpus` is a file rnnviz does not ship
    dtype: str = "float16"  # storage of the shipped weights; losses are measured on what ships
    notes: str = ""

    def with_overrides(self, **train_kw) -> "Recipe":
        return replace(self, train=replace(self.train, **{k: v for k, v in train_kw.items() if v is not None}))


def _shakespeare(cell: str, hidden_size: int, lr: float = 2e-3, min_lr: float = 1e-4) -> Recipe:
    return Recipe(
        corpus=str(TINY_SHAKESPEARE), outside=TINY,
        model=dict(cell=cell, hidden_size=hidden_size, num_layers=2, embed_size=64, dropout=0.25),
        train=TrainConfig(seq_len=128, batch_size=32, lr=lr, min_lr=min_lr, warmup_steps=100, weight_decay=0.05,
                          max_steps=2000, eval_every=250, eval_chars=50_000, seed=1337))


RECIPES: dict[str, Recipe] = {
    # ~2 minutes on 2 CPU cores: enough to see structure appear; the app's one-click run uses it.
    "quick": Recipe(
        corpus=str(TINY_SHAKESPEARE) if TINY_SHAKESPEARE.exists() else "shakespeare",
        model=dict(cell="lstm", hidden_size=256, num_layers=2, embed_size=64, dropout=0.0),
        train=TrainConfig(seq_len=64, batch_size=32, lr=5e-3, max_steps=None, max_seconds=100.0,
                          eval_every=200, eval_chars=20_000, seed=1337),
        dtype="float32", notes="the quick recipe: 100 s of training"),
    # The flagship 2x512 LSTM, and a GRU and a tanh RNN of about the same parameter count (3.3M)
    # and the same budget, for an honest comparison; tinyshakespeare with nanoGPT's 90/10 split.
    "shakespeare-lstm": _shakespeare("lstm", hidden_size=512),
    "shakespeare-gru": _shakespeare("gru", hidden_size=600),
    "shakespeare-rnn": _shakespeare("rnn", hidden_size=1024, lr=1e-3, min_lr=5e-5),
    # Python standard-library sources, whole files held out: home of the quote-detector unit.
    "python-lstm": Recipe(
        corpus="python",
        model=dict(cell="lstm", hidden_size=256, num_layers=2, embed_size=64, dropout=0.1),
        train=TrainConfig(seq_len=128, batch_size=32, lr=3e-3, min_lr=1e-4, warmup_steps=50, weight_decay=0.05,
                          max_steps=4000, eval_every=500, eval_chars=50_000, seed=1337, history=10),
        notes="the whole standard library (9.9M chars on Python 3.11); 10 snapshots in history/"),
    # A small Shakespeare LSTM with a training history: its snapshots go from noise to words (History page).
    "shakespeare-small": Recipe(
        corpus=str(TINY_SHAKESPEARE), outside=TINY,
        model=dict(cell="lstm", hidden_size=128, num_layers=2, embed_size=32, dropout=0.1),
        train=TrainConfig(seq_len=128, batch_size=32, lr=3e-3, min_lr=1e-4, warmup_steps=50, weight_decay=0.05,
                          max_steps=3000, eval_every=250, eval_chars=50_000, seed=1337, history=10),
        notes="2x128 LSTM with 10 snapshots in history/"),
    "quotes-lstm": Recipe(
        corpus="quotes",
        model=dict(cell="lstm", hidden_size=64, num_layers=1, embed_size=16),
        train=TrainConfig(seq_len=128, batch_size=32, lr=1e-2, max_steps=1500, eval_every=250, seed=1),
        notes="synthetic quotes and brackets with ground-truth labels"),
}
