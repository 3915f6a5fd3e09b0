"""Named, seeded training recipes: one command reproduces each shipped model."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .corpora import CORPORA, Corpus, load_corpus, user_text
from .errors import ConfigError
from .training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY_SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
MAX_TRAIN_CHARS = 50_000_000


def corpus_from_spec(spec: str) -> Corpus:
    """A built-in corpus name (see CORPORA), or the path of a UTF-8 text file."""
    if spec in CORPORA:
        return load_corpus(spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"corpus {spec!r} is neither a built-in ({', '.join(CORPORA)}) nor a file")
    return user_text(path, name=path.name, max_chars=MAX_TRAIN_CHARS)


@dataclass
class Recipe:
    """What to train on, the network's shape, and how to optimise it."""

    corpus: str
    model: dict
    train: TrainConfig
    val_fraction: float = 0.1
    dtype: str = "float16"  # storage of the shipped weights; losses are measured on what ships
    notes: str = ""

    def with_overrides(self, **train_kw) -> "Recipe":
        return replace(self, train=replace(self.train, **{k: v for k, v in train_kw.items() if v is not None}))


def _shakespeare(cell: str, hidden_size: int, lr: float = 2e-3, min_lr: float = 1e-4) -> Recipe:
    return Recipe(
        corpus=str(TINY_SHAKESPEARE),
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
                          max_steps=1500, eval_every=250, eval_chars=50_000, seed=1337)),
    "quotes-lstm": Recipe(
        corpus="quotes",
        model=dict(cell="lstm", hidden_size=64, num_layers=1, embed_size=16),
        train=TrainConfig(seq_len=128, batch_size=32, lr=1e-2, max_steps=1500, eval_every=250, seed=1),
        notes="synthetic quotes and brackets with ground-truth labels"),
}
