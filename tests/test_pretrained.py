"""The shipped models: loadable, consistent, small, and as good as docs/models.md says."""
import hashlib
import json
import re
import math
from pathlib import Path

import pytest

from rnnviz import checkpoint
from rnnviz.corpora import _python_sources, load_corpus
from rnnviz.heldout import held_out
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
    assert config["name"] == path.name
    train = config["training"]
    assert train["steps"] > 0 and train["curve"] and train["device"] and train["wall_time_s"] > 0
    assert len(config["corpus"]["sha256"]) == 64
    if path.name.startswith("memory-"):  # python -m rnnviz memory: recall on fresh draws, no val split
        assert config["memory"]["gaps"] and set(config["memory"]["recall"]) == {str(g) for g in config["memory"]["gaps"]}
        return
    assert config["recipe"] in RECIPES and config["val_split"].startswith("full")
    assert math.isfinite(config["val_loss"])


def test_pretrained_stays_light():
    sizes = [f.stat().st_size for f in PRETRAINED.rglob("*") if f.is_file()]
    # the design card's limits, read as decimal megabytes (the stricter reading of "MB")
    assert max(sizes) <= 8 * 10**6 and sum(sizes) <= 48 * 10**6


SHAKESPEARE = [n for n in ("shakespeare-lstm", "shakespeare-gru", "shakespeare-rnn") if (PRETRAINED / n).exists()]


@pytest.mark.parametrize("name", SHAKESPEARE)
def test_shakespeare_val_loss(shakespeare_text, name):
    """The val losses of docs/models.md, recomputed from ../shared on the weights as shipped; the LSTM meets 1.45."""
    model, config = checkpoint.load(PRETRAINED / name)
    val = shakespeare_text[int(len(shakespeare_text) * 0.9):]  # nanoGPT's split: the last 10%
    loss = evaluate(model, val)  # the whole split as one stream
    assert loss == pytest.approx(config["val_loss"], abs=2e-3)
    if name == "shakespeare-lstm":
        assert loss <= 1.45


def shipped_split(name):
    config = json.loads((PRETRAINED / name / "config.json").read_text())
    return config, config["corpus"].get("split")


@pytest.mark.skipif(not (PRETRAINED / "python-lstm").exists(), reason="python-lstm not shipped")
def test_python_config_records_its_files_by_name_and_hash():
    """Every file of the corpus it trained on is recorded as trained on or held out, with its hash."""
    config, rec = shipped_split("python-lstm")
    assert rec and rec["rule"] == "documents", "config.json records no held-out files"
    corpus = load_corpus("python")
    if corpus.sha256 != config["corpus"]["sha256"]:
        pytest.skip("this Python's standard library differs from the one python-lstm trained on")
    docs = [(n, corpus.text[s:e]) for n, s, e in corpus.documents]
    held = [(d["name"], d["sha256"]) for d in rec["held_out"]]
    train = [(d["name"], d["sha256"]) for d in rec["train"]]
    assert train + held == [(n, hashlib.sha256(t.encode()).hexdigest()) for n, t in docs]
    recorded = int(re.search(r"\(([\d,]+) chars", config["val_split"]).group(1).replace(",", ""))  # its val loss's
    assert sum(len(t) for n, t in docs if n in dict(held)) + len(held) - 1 == recorded == 1_070_329


@pytest.mark.parametrize("name", SHAKESPEARE + ["quotes-lstm"])
def test_one_document_configs_record_their_offset(shakespeare_text, name):
    if not (PRETRAINED / name).exists():
        pytest.skip(f"{name} not shipped")
    config, rec = shipped_split(name)
    assert rec and rec["rule"] == "offset"
    text = shakespeare_text if name != "quotes-lstm" else load_corpus("quotes", max_chars=200_000, seed=0).text
    assert rec["sha256"] == hashlib.sha256(text.encode()).hexdigest() == config["corpus"]["sha256"]
    assert rec["val_start"] == int(len(text) * 0.9) and rec["chars"] == len(text)


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED / "python-lstm").exists(), reason="python-lstm not shipped")
def test_python_quote_unit_on_held_out_files():
    """Neuron search picks a unit on training files; on files it never saw it separates strings from code.

    "Never saw" by the names config.json records, whatever this machine's standard library holds:
    picked on files recorded as trained on (with their recorded hash), scored only on files
    recorded as held out and not as trained on.
    """
    model, config = checkpoint.load(PRETRAINED / "python-lstm")
    rec = config["corpus"]["split"]
    train = {d["name"]: d["sha256"] for d in rec["train"]}
    held_names = {d["name"] for d in rec["held_out"]}
    local = dict(_python_sources())
    picked_on = [t for n, t in local.items() if train.get(n) == hashlib.sha256(t.encode()).hexdigest()][-6:]
    assert len(picked_on) == 6
    held = held_out(config)
    assert held.documents
    for name, _ in held.documents:
        assert name in held_names and name not in train
    picked, labels, mask = python_string_probe(model, picked_on)
    best = rank_units(picked, labels, mask).iloc[0]
    unseen, labels, mask = python_string_probe(model, [t for _, t in held.documents])
    x = unseen.layers[int(best.layer)][best.kind][:, int(best.unit)][mask]
    y = labels[mask] > 0.5
    score = auroc(x[:, None], y)[0]
    assert max(score, 1 - score) >= 0.97
    # the direction the ranking reports is the one the held-out files show
    assert best.direction == ("high" if x[y].mean() > x[~y].mean() else "low")
