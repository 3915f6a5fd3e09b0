"""The shipped models: loadable, consistent, small, and as good as the README says."""
import math
from pathlib import Path

import pytest

from rnnviz import checkpoint
from rnnviz.corpora import load_corpus, split_documents
from rnnviz.probes import auroc, python_string_probe, rank_units
from rnnviz.recipes import RECIPES
from rnnviz.training import evaluate

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
MODELS = sorted(p for p in PRETRAINED.iterdir() if (p / "config.json").exists()) if PRETRAINED.is_dir() else []


def test_something_ships():
    assert MODELS, "pretrained/ holds no model"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_each_model_loads_and_matches_its_config(path):
    model, config = checkpoint.load(path)  # validates every tensor's name, shape, dtype and finiteness
    assert model.num_params() == config["num_params"]
    assert config["model"]["vocab"] == model.vocab.chars
    assert (path / "model.safetensors").stat().st_size < 8 * 2**20
    assert config["name"] == path.name and config["recipe"] in RECIPES
    train = config["training"]
    assert train["steps"] > 0 and train["curve"] and train["device"] and train["wall_time_s"] > 0
    assert len(config["corpus"]["sha256"]) == 64 and config["val_split"].startswith("full")
    assert math.isfinite(config["val_loss"])


def test_pretrained_stays_light():
    total = sum(f.stat().st_size for f in PRETRAINED.rglob("*") if f.is_file())
    assert total < 24 * 2**20


SHAKESPEARE = [n for n in ("shakespeare-lstm", "shakespeare-gru", "shakespeare-rnn") if (PRETRAINED / n).exists()]


@pytest.mark.parametrize("name", SHAKESPEARE)
def test_shakespeare_val_loss(shakespeare_text, name):
    """The README's val losses, recomputed from ../shared on the weights as shipped; the LSTM meets 1.45."""
    model, config = checkpoint.load(PRETRAINED / name)
    val = shakespeare_text[int(len(shakespeare_text) * 0.9):]  # nanoGPT's split: the last 10%
    loss = evaluate(model, val)  # the whole split as one stream
    assert loss == pytest.approx(config["val_loss"], abs=2e-3)
    if name == "shakespeare-lstm":
        assert loss <= 1.45


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED / "python-lstm").exists(), reason="python-lstm not shipped")
def test_python_quote_unit_on_held_out_files():
    """Neuron search picks a unit on training files; on files it never saw it separates strings from code."""
    model, config = checkpoint.load(PRETRAINED / "python-lstm")
    train_docs, val_docs = split_documents(load_corpus("python"), RECIPES["python-lstm"].val_fraction)
    picked, labels, mask = python_string_probe(model, [t for _, t in train_docs[-6:]])
    best = rank_units(picked, labels, mask).iloc[0]
    held, labels, mask = python_string_probe(model, [t for _, t in val_docs])
    x = held.layers[int(best.layer)][best.kind][:, int(best.unit)][mask]
    score = auroc(x[:, None], labels[mask] > 0.5)[0]
    assert max(score, 1 - score) >= 0.97
