import numpy as np
import pandas as pd
import pytest

from rnnviz import checkpoint
from rnnviz.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "m"
    rc = main(["train", "--corpus", "quotes", "--layers", "1", "--hidden", "16", "--steps", "30", "--seq-len", "32",
               "--batch", "8", "--eval-every", "15", "--seed", "1", "--out", str(out), "--full-val"])
    assert rc == 0
    return out


def test_train_writes_a_documented_checkpoint(trained):
    model, config = checkpoint.load(trained)
    assert config["training"]["steps"] == 30 and config["corpus"]["name"].startswith("quotes")
    assert len(config["corpus"]["sha256"]) == 64 and config["val_split"].startswith("full")
    assert config["val_loss"] > 0 and config["training"]["device"].startswith("CPU")
    for key in ("format_version", "model", "torch_version", "num_params"):
        assert key in config


def test_sample_is_repeatable(trained, capsys):
    assert main(["sample", str(trained), "--length", "50", "--seed", "4"]) == 0
    a = capsys.readouterr().out
    assert main(["sample", str(trained), "--length", "50", "--seed", "4"]) == 0
    assert capsys.readouterr().out == a and len(a) >= 50
    assert main(["sample", str(trained), "--length", "20", "--clamp", "0:1,2:0.5"]) == 0


def test_trace_exports_npz_csv_parquet(trained, tmp_path, capsys):
    text = 'x = "a" + (b)\n'
    rc = main(["trace", str(trained), "--text", text, "--out", str(tmp_path / "t.npz"), "--csv", str(tmp_path / "t.csv"),
               "--parquet", str(tmp_path / "t.parquet"), "--layer", "0", "--kind", "f"])
    assert rc == 0
    with np.load(tmp_path / "t.npz") as z:
        assert {"ids", "vocab", "probs", "top_ids", "loss", "L0_h", "L0_c", "L0_i", "L0_f", "L0_g", "L0_o"} <= set(z)
        f = z["L0_f"]
    csv = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    np.testing.assert_allclose(csv["f0"].to_numpy(), f[:, 0], rtol=1e-6)
    assert pd.read_parquet(tmp_path / "t.parquet").shape == csv.shape
    assert main(["trace", "--describe"]) == 0 and "L{l}_{kind}" in capsys.readouterr().out


def test_grads_prints_and_exports(tmp_path, capsys):
    rc = main(["grads", "--fresh", "lstm", "--hidden", "8", "--forget-bias", "1", "--out", str(tmp_path / "g.csv")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "|dL/dh| L0" in out and "|dL/dc| L0" in out
    df = pd.read_csv(tmp_path / "g.csv")
    assert list(df.columns[:3]) == ["t", "distance", "char"] and (df["dh_L0"] > 0).all()


def test_errors_are_messages_not_tracebacks(trained, tmp_path, capsys):
    assert main(["sample", str(trained), "--temperature", "-1"]) == 1
    assert "temperature" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing")]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    assert main(["trace", str(trained), "--file", str(tmp_path / "bad.txt")]) == 1
    assert "not UTF-8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--cell", "transformer"])


def test_resume_without_a_recipe_keeps_the_saved_settings(tmp_path):
    """--resume continues the saved run (its batch, window, seed), not TrainConfig's defaults; --steps
    is the total, counted from the first step."""
    common = ["--corpus", "quotes", "--layers", "1", "--hidden", "8", "--embed", "4"]
    opts = ["--seq-len", "16", "--batch", "4", "--lr", "0.01", "--seed", "3", "--bptt", "random", "--eval-every", "1000"]
    assert main(["train", *common, *opts, "--steps", "6", "--out", str(tmp_path / "six"), "--keep-optimizer"]) == 0
    assert main(["train", "--corpus", "quotes", "--resume", str(tmp_path / "six"), "--steps", "10",
                 "--out", str(tmp_path / "resumed")]) == 0
    _, cfg = checkpoint.load(tmp_path / "resumed")
    saved = cfg["training"]["config"]
    assert (saved["seq_len"], saved["batch_size"], saved["seed"], saved["bptt"]) == (16, 4, 3, "random")
    assert cfg["training"]["steps"] == 10


def test_probe_counts_the_characters_its_hypothesis_counts(tmp_path, capsys):
    """`probe --hypothesis "inside a string (tokenize)"` scores one-line strings against code only, as
    Neuron search and Activations do: its printed AUROC is a brute-force one over those characters."""
    import re

    from rnnviz.model import build
    from rnnviz.hypotheses import python_string_labels
    from rnnviz.trace import trace
    from rnnviz.vocab import Vocab

    text = 'x = "ab c"\ny = f(x, \'d\')\n"""doc\nstring"""\n# "not" a string\nz = x + "e"\n' * 4
    model = build(Vocab.from_text(text), cell="lstm", hidden_size=8, num_layers=1, embed_size=4, seed=0)
    path = checkpoint.save(model, tmp_path / "m", meta={"corpus": {"name": "t.py"}})
    (tmp_path / "t.py").write_text(text)
    assert main(["probe", str(path), "--file", str(tmp_path / "t.py"), "--hypothesis",
                 "inside a string (tokenize)", "--top", "1"]) == 0
    out = capsys.readouterr().out
    labels, mask = python_string_labels(text)
    assert mask is not None and 0 < mask.sum() < len(text)  # the docstring and the comment are left out
    assert f"over the {int(mask.sum()):,} of {len(text):,} characters it counts" in out
    m = re.search(r"^\s+1\s+L(\d+) ([hc])(\d+)\s.*?(\d\.\d{3})\s+(\d\.\d{3})\s+[+-]\d\.\d{3}$", out, re.M)
    layer, kind, unit, printed = int(m.group(1)), m.group(2), int(m.group(3)), float(m.group(4))
    v = trace(model, text).get(layer, kind)[:, unit][mask]
    y = labels[mask] > 0.5
    pos, neg = v[y][:, None], v[~y][None, :]
    brute = float(np.mean((pos > neg) + 0.5 * (pos == neg)))  # every (string, code) pair
    assert printed == pytest.approx(brute, abs=6e-4)


@pytest.mark.slow
def test_memory_measure_reads_the_saved_memory_models(tmp_path, capsys):
    """`memory --measure` trains nothing: it says what the Gradients page says of the saved memory models."""
    from rnnviz import experiments, lesson
    from streamlit_server import ROOT

    rc = main(["memory", "--measure", str(ROOT / "pretrained"), "--cells", "lstm", "rnn", "--gaps", "2", "64"])
    out = capsys.readouterr().out
    assert rc == 0
    models = {c: checkpoint.load(ROOT / "pretrained" / f"memory-{c}")[0] for c in ("lstm", "rnn")}
    for cell, model in models.items():  # the printed recall is the model's own, at each gap asked for
        for gap in (2, 64):
            acc = experiments.recall_accuracy(model, gap, seed=7919 + gap)
            assert f"{gap}" in out and f"{acc:.3f}" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("c") and "%" in line]
    assert len(rows) == 12 and sum(float(r[1].rstrip("%")) for r in rows) <= 100.1
    shares = [float(r[1].rstrip("%")) for r in rows]
    assert shares == sorted(shares, reverse=True), "the units come most first"
    assert "RNN: recalls" in out and f"at gap {lesson.MEMORY_GAP}" in out and "**" not in out
    assert main(["memory", "--measure", str(tmp_path)]) == 1
    assert "no memory-<cell> model" in capsys.readouterr().err


def test_probe_chance_prints_the_evidence_and_a_chance_level_by_brute_force(tmp_path, capsys):
    """`probe --chance`: the chance level it prints is the best score any unit reaches against the labels
    rolled by each shift, counted here by pairs; the evidence counts spans by hand; the verdict follows."""
    import re

    from rnnviz.hypotheses import inside_quotes
    from rnnviz.model import build
    from rnnviz.probes import CHANCE_SHIFTS, shift_offsets
    from rnnviz.trace import trace
    from rnnviz.vocab import Vocab

    text = "".join(f'He said "{w}" then left; ' for w in ("yes", "no", "so", "maybe") * 12)
    model = build(Vocab.from_text(text), cell="lstm", hidden_size=4, num_layers=1, embed_size=4, seed=0)
    path = checkpoint.save(model, tmp_path / "m", meta={"corpus": {"name": "quotes"}})
    assert main(["probe", str(path), "--text", text, "--hypothesis", "inside quotes", "--chance"]) == 0
    out = capsys.readouterr().out
    y = inside_quotes(text) > 0.5
    tr = trace(model, text)
    units = np.concatenate([tr.get(0, "h"), tr.get(0, "c")], axis=1).astype(np.float64)  # (T, 8)

    def score(x, labels):
        pos, neg = x[labels][:, None], x[~labels][None, :]
        a = float(np.mean((pos > neg) + 0.5 * (pos == neg)))
        return max(a, 1 - a)

    offsets = shift_offsets(len(text), CHANCE_SHIFTS)
    chance = max(score(units[:, j], np.roll(y, k)) for k in offsets for j in range(units.shape[1]))
    assert f"Chance level: {chance:.3f}," in out
    assert f"holds on {int(y.sum()):,} characters of {len(text):,}, in 48 separate spans" in out
    best = max(score(units[:, j], y) for j in range(units.shape[1]))
    assert ("No unit beats chance." in out) == (not best > chance + 1e-9)
    assert "**" not in out and re.search(r"scores? \d\.\d{3}", out)
