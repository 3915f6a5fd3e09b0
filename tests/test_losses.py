"""What each recorded loss was measured on (rnnviz.losses), and the model card that says it: the text and the
count named are the ones the loss was computed over, checked by computing it again."""
import json
import shutil
from pathlib import Path

import pytest

from rnnviz import checkpoint, losses
from rnnviz.corpora import load_corpus, split, split_record
from rnnviz.heldout import held_out
from rnnviz.training import evaluate
from test_app import clean_caches, folders, one_thread  # noqa: F401 (fixtures)
from test_app import app, ok, text_of

ROOT = Path(__file__).resolve().parents[1]


def test_held_out_chars_is_the_held_out_text_length():
    corpus = load_corpus("shakespeare", max_chars=50_000)
    _, val = split(corpus, 0.1)  # what training evaluates on
    assert losses.held_out_chars({"corpus": {"split": split_record(corpus, 0.1)}}) == len(val) > 1000
    docs = {"rule": "documents", "held_out": [{"name": "a", "chars": 10}, {"name": "b", "chars": 5}]}
    assert losses.held_out_chars({"corpus": {"split": docs}}) == 16  # joined by one newline


def test_bases_in_words():
    cfg = {"corpus": {"name": "python", "split": {"rule": "offset", "chars": 1000, "val_start": 900}},
           "training": {"config": {"eval_chars": 20_000, "batch_size": 32, "seq_len": 128}}}
    assert losses.eval_basis(cfg) == "the first 100 characters of python's held-out split"  # the split is shorter
    assert losses.train_basis(cfg) == "one batch of 32 × 128 = 4,096 characters of the training split"
    assert losses.val_loss_basis(cfg) == losses.eval_basis(cfg)  # no val_split: the run's last evaluation
    full = {**cfg, "val_split": "full (1,070,329 chars, float16)"}
    assert losses.val_loss_basis(full) == "the whole held-out split of python (1,070,329 characters, float16 weights)"
    first = {**cfg, "val_split": "first 50,000 chars"}
    assert losses.val_loss_basis(first) == "the first 50,000 characters of python's held-out split"


@pytest.mark.parametrize("bad", [{}, {"corpus": ["x"], "training": "y", "val_split": 3},
                                 {"corpus": {"split": {"rule": "offset", "chars": "9", "val_start": True}},
                                  "training": {"config": {"eval_chars": -5}}}, []])
def test_hostile_configs_say_not_recorded(bad):
    assert losses.held_out_chars(bad) is None and losses.eval_chars(bad) is None
    assert "does not record" in losses.val_loss_basis(bad) and "does not record" in losses.eval_basis(bad)
    assert losses.train_basis(bad) == "one training batch"


@pytest.mark.slow
def test_model_card_names_the_text_and_the_real_count(folders):  # noqa: F811
    src = ROOT / "pretrained" / "shakespeare-small"
    if not src.is_dir():
        pytest.skip("the shipped shakespeare-small is not here")
    shutil.copytree(src, folders[0] / "shakespeare-small")
    at = app()
    ok(at)
    md = text_of(at.sidebar.markdown)
    config = json.loads((src / "config.json").read_text())
    val = config["val_loss"]
    want = (f"**Validation loss:** {val:.3f} nats/char ({val / 0.6931471805599453:.3f} bits/char) on the whole "
            f"held-out split of {config['corpus']['name']} (111,540 characters, float16 weights)")
    assert want in md, md
    # that is the text and the count: the stored weights on exactly those characters give the stated loss
    text = held_out(config).text
    assert len(text) == 111_540
    model, _ = checkpoint.load(src)
    assert evaluate(model, text) == pytest.approx(val, abs=1e-6)
