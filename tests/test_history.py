"""Training history: snapshots taken by the trainer, written atomically, read back (also broken ones)."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnviz import checkpoint, experiments, history
from rnnviz.corpora import load_corpus, quotes_task, split
from rnnviz.errors import CheckpointError, ConfigError
from rnnviz.model import build
from rnnviz.probes import auroc, rank_units
from rnnviz.recipes import RECIPES
from rnnviz.trace import trace
from rnnviz.training import TrainConfig, Trainer, evaluate, history_points, history_steps
from rnnviz.vocab import Vocab

TEXT = "the cat sat on the mat. 'a dog', said the cat; (the end) " * 120
VAL_CHARS = 600


def tiny_run(out: Path, steps=40, history_n=5, **kw) -> Trainer:
    torch.manual_seed(0)
    model = build(Vocab.from_text(TEXT), cell="lstm", hidden_size=24, num_layers=2, embed_size=8, seed=0)
    cfg = TrainConfig(seq_len=24, batch_size=4, lr=1e-2, warmup_steps=3, max_steps=steps, eval_every=10,
                      eval_chars=VAL_CHARS, history=history_n, threads=1, **kw)
    t = Trainer(model, TEXT[:5000], TEXT[5000:6500], cfg)
    t.run()
    t.save(out)
    return t


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("hist") / "ck"
    return tiny_run(out), out


def test_schedule_is_log_spaced_and_ends_on_the_last_step():
    pts = history_points(13, 6000, first=10)
    assert len(pts) == 13 and pts[0] == 10 and pts[-1] == 6000
    ratios = np.diff(np.log(pts))
    assert np.allclose(ratios, ratios[0])  # evenly spaced on a log scale
    steps = history_steps(TrainConfig(max_steps=1000, history=13))
    assert steps[-1] == 1000 and len(steps) == 13 and steps == sorted(set(steps))
    assert history_steps(TrainConfig(max_steps=1000, history=[5, 3, 5])) == [3, 5]
    assert history_steps(TrainConfig(max_steps=1000)) == []
    for bad in (-1, 65, [0], ["3"], True):
        with pytest.raises(ConfigError):
            TrainConfig(history=bad).validate()


def test_snapshots_load_and_their_losses_match_the_recorded_curve(trained):
    t, out = trained
    h = history.read(out)
    assert not h.bad and h.steps == history_steps(t.config) and h.steps[-1] == 40
    curve = h.curve().set_index("step")
    assert len(curve) == 40
    val = TEXT[5000:6500][:VAL_CHARS]
    checked = []
    for step in h.steps:
        model, cfg = checkpoint.load(out / "history" / f"step-{step}")  # a plain checkpoint folder
        assert cfg["step"] == step and cfg["dtype"] == "float16" and cfg["history_of"] == "ck"
        assert cfg["train_loss"] == curve.loc[step, "train_loss"]
        if step % 10 == 0:  # an evaluated step: its val loss, recomputed from the float16 weights as stored
            assert cfg["val_loss"] == curve.loc[step, "val_loss"]
            assert evaluate(model, val) == pytest.approx(curve.loc[step, "val_loss"], abs=5e-3)
            checked.append(step)
        else:
            assert "val_loss" not in cfg
    assert checked == [10, 20, 40]
    # the last snapshot is the final model, rounded to float16
    final, _ = checkpoint.load(out)
    last, _ = history.load(h, 40)
    for (k, a), b in zip(final.state_dict().items(), last.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3, msg=k)
    # the losses differ from step to step: these are different weights
    assert len({round(evaluate(history.load(h, s)[0], val), 4) for s in h.steps}) == len(h.steps)


def test_a_numpy_reader_gets_the_same_weights(trained):
    _, out = trained
    h = history.read(out)
    step = h.steps[1]
    cfg, arrays = history.read_numpy(out / "history" / f"step-{step}")
    model, _ = history.load(h, step)
    assert cfg["step"] == step
    for k, v in model.state_dict().items():
        assert arrays[k].dtype == np.float16
        np.testing.assert_array_equal(arrays[k].astype(np.float32), v.numpy())


def test_checkpoint_listing_does_not_show_snapshots(trained):
    _, out = trained
    assert checkpoint.list_checkpoints(out.parent) == [out]


def test_bad_snapshots_are_named_and_the_others_load(trained, tmp_path):
    import shutil

    _, out = trained
    ck = tmp_path / "ck"
    shutil.copytree(out, ck)
    steps = history.read(ck).steps
    missing, truncated, mismatched = steps[0], steps[1], steps[2]
    (ck / "history" / f"step-{missing}" / "model.safetensors").unlink()
    w = ck / "history" / f"step-{truncated}" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    c = ck / "history" / f"step-{mismatched}" / "config.json"
    cfg = json.loads(c.read_text())
    cfg["model"]["hidden_size"] = 32
    c.write_text(json.dumps(cfg))
    h = history.read(ck)
    assert [s.step for s in h.bad] == [missing, truncated, mismatched]
    assert h.steps == steps[3:]
    problems = "\n".join(h.problems())
    assert f"step {missing}" in problems and "no model.safetensors" in problems
    assert f"step {truncated}" in problems and "truncated" in problems
    assert f"step {mismatched}" in problems
    for s in h.good:
        history.load(h, s.step)
    with pytest.raises(CheckpointError, match=f"step {truncated}"):
        history.load(h, truncated)
    with pytest.raises(ConfigError, match="no snapshot of step 9999"):
        history.load(h, 9999)
    # a snapshot whose config names another model of the same shapes: named too
    c2 = ck / "history" / f"step-{steps[3]}" / "config.json"
    cfg = json.loads(c2.read_text())
    cfg["model"]["dropout"] = 0.5
    c2.write_text(json.dumps(cfg))
    bad = history.read(ck).bad[-1]
    assert bad.step == steps[3] and "dropout" in bad.error
    # a resume from the damaged checkpoint keeps only the snapshots that read
    assert [s["step"] for s in checkpoint.read_history(ck)] == steps[4:]


def test_no_history(tmp_path):
    model = build(Vocab.from_text(TEXT), cell="gru", hidden_size=8, seed=0)
    checkpoint.save(model, tmp_path / "plain")
    assert not history.has_history(tmp_path / "plain")
    assert history.read(tmp_path / "plain").snapshots == []


def test_resume_appends_to_the_history(tmp_path):
    first = tiny_run(tmp_path / "a", steps=30, history_n=4)
    before = history.read(tmp_path / "a")
    model, _ = checkpoint.load(tmp_path / "a")
    cfg = TrainConfig(seq_len=24, batch_size=4, lr=1e-2, warmup_steps=3, max_steps=60, eval_every=1000,
                      eval_chars=VAL_CHARS, history=4, threads=1)
    t = Trainer(model, TEXT[:5000], TEXT[5000:6500], cfg).resume(tmp_path / "a")
    assert [s["step"] for s in t.history] == before.steps
    t.run()
    t.save(tmp_path / "b")
    after = history.read(tmp_path / "b")
    new = [s for s in history_steps(t.config) if s > 30]
    assert after.steps == before.steps + new and after.steps[-1] == 60 and not after.bad
    for step in before.steps:  # the earlier snapshots, byte for byte
        a = (tmp_path / "a" / "history" / f"step-{step}" / "model.safetensors").read_bytes()
        b = (tmp_path / "b" / "history" / f"step-{step}" / "model.safetensors").read_bytes()
        assert a == b
    assert len(after.curve()) == 60 and list(after.curve().step) == list(range(1, 61))
    assert first.step == 30


def test_a_time_budget_records_snapshots_and_the_last_step(tmp_path):
    t = tiny_run(tmp_path / "t", steps=None, history_n=4, max_seconds=1.5)
    h = history.read(tmp_path / "t")
    assert len(h.steps) >= 2 and h.steps[-1] == t.step


def test_the_save_is_atomic_and_a_resave_without_history_drops_it(trained, tmp_path):
    _, out = trained
    model, cfg = checkpoint.load(out)
    checkpoint.save(model, tmp_path / "x", meta={})
    assert not history.has_history(tmp_path / "x")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_evolution_table_and_per_snapshot_views(trained):
    _, out = trained
    h = history.read(out)
    table = history.evolution(h, length=60, seed=3)
    assert list(table.step) == h.steps and table["sample"].str.len().eq(60).all()
    again = history.evolution(h, length=60, seed=3)
    assert list(again["sample"]) == list(table["sample"])  # a fixed seed: the same sample
    assert table.train_loss.iloc[-1] < table.train_loss.iloc[0]
    assert table.val_loss.notna().sum() == 3  # the evaluated steps 10, 20, 40
    with_loss = history.evolution(h, length=20, seed=3, loss_text=TEXT[:300])
    for step, loss in zip(with_loss.step, with_loss.text_loss):
        assert loss == pytest.approx(evaluate(history.load(h, step)[0], TEXT[:300]))
    model, _ = history.load(h, h.steps[-1])
    sat = history.saturation(model, TEXT[:400])
    assert set(sat.gate) == {"i", "f", "g", "o"} and len(sat) == 8
    # the mean fraction, recounted from the gate values
    f = trace(model, TEXT[:400]).get(1, "f")
    row = sat[(sat.layer == 1) & (sat.gate == "f")].iloc[0]
    assert row.right == pytest.approx(float((f > 0.9).mean()))
    assert row.left == pytest.approx(float((f < 0.1).mean()))
    flow = history.gradient_decay(model, TEXT, length=50)
    assert flow.dh.shape == (2, 49)
    values = history.unit_values(model, TEXT[:100], 0, "c", 3)
    np.testing.assert_allclose(values, trace(model, TEXT[:100]).get(0, "c")[:, 3])


def test_emergence_from_rankings():
    """The timeline's bookkeeping on hand-made rankings."""
    import pandas as pd

    def ranking(best, score, final_score):
        rows = [dict(layer=best[0], kind=best[1], unit=best[2], score=score, direction="low")]
        if best != (0, "c", 7):
            rows.append(dict(layer=0, kind="c", unit=7, score=final_score, direction="low"))
        return pd.DataFrame(rows)

    e = history.emergence({10: ranking((1, "h", 2), 0.7, 0.6), 100: ranking((0, "c", 7), 0.85, 0.85),
                           1000: ranking((0, "c", 7), 0.97, 0.97), 50: ranking((1, "h", 2), 0.8, 0.75)},
                          threshold=0.9)
    assert list(e.table.step) == [10, 50, 100, 1000]
    assert e.final == (0, "c", 7) and not e.same_throughout and e.settled_step == 100 and e.first_step == 1000
    assert list(e.table.final_unit_score) == [0.6, 0.75, 0.85, 0.97]
    assert "L0 c7" in e.summary() and "step 100" in e.summary()


def test_quotes_recipe_emergence_ends_on_the_ground_truth_unit(tmp_path):
    """A short run of the quotes-lstm recipe with a history: the timeline's last best unit for 'inside
    quotes' is the unit that follows the generator's own in-quote labels best, and it emerged."""
    r = RECIPES["quotes-lstm"]
    corpus = load_corpus(r.corpus)
    train, val = split(corpus, r.val_fraction)
    model = build(Vocab.from_text(corpus.text), seed=0, **r.model)
    cfg = TrainConfig(**{**r.train.__dict__, "max_steps": 400, "history": 6, "threads": 1, "eval_every": 1000})
    t = Trainer(model, train, val, cfg)
    t.run()
    t.save(tmp_path / "q")
    h = history.read(tmp_path / "q")
    fresh = quotes_task(20_000, seed=1)  # text it never saw, with the generator's ground truth
    e = history.emergence_of(h, fresh.text, "inside quotes", threshold=0.9)
    truth = rank_units(trace(history.load(h, h.steps[-1])[0], fresh.text, gates=False), fresh.labels["in_quote"])
    best = truth.iloc[0]
    assert e.final == (int(best.layer), best.kind, int(best.unit))
    assert e.table.score.iloc[-1] >= 0.9 and e.table.final_unit_score.iloc[0] < e.table.score.iloc[-1]
    assert e.first_step is not None and e.first_step > h.steps[0]
    layer, kind, unit = e.final
    x = trace(history.load(h, h.steps[-1])[0], fresh.text, gates=False).get(layer, kind)[:, unit]
    a = auroc(x[:, None], fresh.labels["in_quote"] > 0.5)[0]
    assert max(a, 1 - a) == pytest.approx(e.table.score.iloc[-1], abs=0.02)
    assert math.isfinite(a)


# --- python-lstm's quote unit on another code base ------------------------------------------------

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
UNSEEN_PACKAGE = "numpy"  # installed wherever rnnviz is (a dependency), and not in python-lstm's corpus
UNSEEN_MAX_CHARS = 400_000
QUOTE_TARGET = 0.98  # issue 12's target; the shipped python-lstm (L1 c59) scores 0.990 on these files


def unseen_sources(package: str = UNSEEN_PACKAGE, max_chars: int = UNSEEN_MAX_CHARS) -> list[str]:
    """Whole .py files of an installed package (its tests left out), in path order, up to max_chars in all."""
    import importlib

    root = Path(importlib.import_module(package).__file__).parent
    out, total = [], 0
    for p in sorted(p for p in root.rglob("*.py") if "tests" not in p.parts):
        text = p.read_text(encoding="utf-8", errors="replace")
        if total + len(text) <= max_chars:
            out.append(text)
            total += len(text)
    return out


def quote_unit_on_unseen_code(path=PRETRAINED / "python-lstm", picked_on_files: int = 6):
    """(best unit picked on training files, its score on another package's whole files, files, chars counted)."""
    import hashlib

    from rnnviz.corpora import _python_sources
    from rnnviz.probes import python_string_probe

    model, config = checkpoint.load(path)
    train = {d["name"]: d["sha256"] for d in config["corpus"]["split"]["train"]}
    local = dict(_python_sources())
    picked_on = [t for n, t in local.items() if train.get(n) == hashlib.sha256(t.encode()).hexdigest()]
    picked_on = picked_on[-picked_on_files:]
    assert len(picked_on) == picked_on_files
    picked, labels, mask = python_string_probe(model, picked_on)
    best = rank_units(picked, labels, mask).iloc[0]
    files = unseen_sources()
    unseen, labels, mask = python_string_probe(model, files, max_chars_per_file=10**9)  # whole files
    x = unseen.layers[int(best.layer)][best.kind][:, int(best.unit)][mask]
    y = labels[mask] > 0.5  # one-line strings vs code; docstrings, multi-line strings, comments left out
    a = auroc(x[:, None], y)[0]
    return best, max(a, 1 - a), len(files), int(mask.sum())


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED / "python-lstm").exists(), reason="python-lstm not shipped")
def test_python_quote_unit_generalises_to_another_package():
    best, score, files, chars = quote_unit_on_unseen_code()
    print(f"python-lstm L{best.layer} {best.kind}{best.unit} ({best.direction} inside strings): "
          f"AUROC score {score:.4f} on {files} whole {UNSEEN_PACKAGE} files ({chars:,} characters counted)")
    assert files >= 10 and chars >= 50_000
    assert score >= QUOTE_TARGET


def test_cli_train_history_survives_the_full_val_resave(tmp_path, capsys):
    from rnnviz.cli import main

    out = tmp_path / "q"
    assert main(["train", "--corpus", "quotes", "--steps", "20", "--history", "3", "--threads", "1",
                 "--seq-len", "32", "--batch", "4", "--full-val", "--out", str(out)]) == 0
    h = history.read(out)
    assert h.steps == history_steps(TrainConfig(max_steps=20, history=3)) == [10, 14, 20] and not h.bad
    assert checkpoint.read_config(out)["val_split"].startswith("full")


# --- what the Training history page computes over and says (rnnviz.history, rnnviz.experiments) ----

def test_memory_text_is_a_fresh_draw_never_the_training_text():
    config = json.loads((PRETRAINED / "memory-lstm" / "config.json").read_text())
    gaps = tuple(config["memory"]["gaps"])
    assert experiments.memory_gaps(config) == gaps
    text = experiments.memory_text(config, 1_500)
    assert len(text) == 1_500 and experiments.memory_text(config, 1_500) == text
    from rnnviz.corpora import memory_mix
    items = re.findall(r"([A-Z])([a-z]*)=(.)\n", text)  # the task: a key, filler, '=', the key again
    assert len(items) > 20 and all(k == r for k, _, r in items)
    assert {len(f) + 2 for _, f, _ in items} == set(gaps)  # every gap mixed in
    trained_on = memory_mix(gaps, 2000, seed=0)  # the shipped models' training text (experiments.memory_corpus)
    assert len(trained_on) == config["corpus"]["chars"]
    assert text[:200] not in trained_on  # a draw the model never saw
    other = dict(config, corpus=dict(config["corpus"], name=config["corpus"]["name"].replace("seed0", "seed5")))
    assert experiments.memory_text(other, 1_500) != text  # another training seed: another fresh seed
    unnamed = {"memory": {"gaps": [2, 4]}, "corpus": {"name": "my-own"}}
    assert {len(f) + 2 for _, f, _ in re.findall(r"([A-Z])([a-z]*)=(.)\n", experiments.memory_text(unnamed, 300))} == {2, 4}
    assert experiments.memory_text({"corpus": {"name": "shakespeare"}}, 300) is None


def test_step_summary_and_recall_summary(trained):
    _, out = trained
    h = history.read(out)
    step = h.steps[-1]
    cfg = json.loads((out / "history" / f"step-{step}" / "config.json").read_text())  # read here, not by history
    said = history.step_summary(h, step)
    assert said.startswith(f"**Step {step:,}** of {step:,} ({len(h.steps)} of {len(h.steps)} snapshots)")
    assert f"validation loss {cfg['val_loss']:.3f} nats/char on " in said
    assert f"train loss {cfg['train_loss']:.3f} on " in said
    first = h.steps[0]
    assert history.step_summary(h, first).startswith(f"**Step {first:,}** of {step:,} (1 of ")
    df = pd.DataFrame({"step": [10, 10, 20, 20], "gap": [2, 8, 2, 8], "accuracy": [0.5, 0.125, 1.0, 0.75]})
    said = experiments.recall_summary(df, 20, (2, 8))
    assert "At step 20 it recalls **100%** at gap 2, **75%** at gap 8 (chance" in said
    assert "**50%** at gap 2, **12%** at gap 8" in experiments.recall_summary(df, 10, (2, 8))


def test_cli_history_prints_each_snapshot_and_its_sample(trained, tmp_path, capsys):
    """`python -m rnnviz history`: every snapshot's recorded losses, and a sample equal to a rerun of that
    snapshot's own weights at the same seed; a checkpoint without snapshots is a clear error."""
    from rnnviz.cli import main as cli_main
    from rnnviz.sampling import sample

    _, out = trained
    assert cli_main(["history", str(out), "--length", "40", "--seed", "5", "--out", str(tmp_path / "e.csv")]) == 0
    said = capsys.readouterr().out
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "history").glob("step-*"))
    assert said.startswith(f"{len(steps)} snapshots of {out}")
    for step in steps:
        cfg = json.loads((out / "history" / f"step-{step}" / "config.json").read_text())
        model, _ = checkpoint.load(out / "history" / f"step-{step}")
        text = sample(model, "\n", 40, temperature=0.8, seed=5).text
        block = said.split(f"\nstep {step:,}", 1)[1].split("\nstep ", 1)[0]
        assert f"train loss {cfg['train_loss']:.3f}" in block
        assert ("val loss" in block) == ("val_loss" in cfg)
        assert "  " + text.replace("\n", "\n  ") in block
    assert list(pd.read_csv(tmp_path / "e.csv").step) == steps
    model = build(Vocab.from_text(TEXT), cell="gru", hidden_size=8, seed=0)
    checkpoint.save(model, tmp_path / "plain")
    assert cli_main(["history", str(tmp_path / "plain")]) == 1
    assert "holds no loadable snapshot" in capsys.readouterr().err
