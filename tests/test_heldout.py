"""The sidebar's corpus excerpt: held out from the model's own training corpus, by the names its
config.json records, whatever this machine's standard library is; and opening where the model's
signature behaviour shows (code with one-line strings, a speaker's first line).

Tiny untrained models carry the corpus records of the shipped ones, so the pages run fast; the
references (which files a model trained on, where strings are) are recomputed here by brute force
and by tokenize.
"""
import hashlib
import json
import re
import sysconfig
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from rnnviz import checkpoint, corpora
from rnnviz.model import build
from rnnviz.vocab import Vocab
from test_corpora import string_tokens  # the same tokenize reference

TIMEOUT = 60
PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    st.cache_data.clear()
    st.cache_resource.clear()
    corpora._python_sources.cache_clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
    corpora._python_sources.cache_clear()
    torch.set_num_threads(before)


def shipped_corpus(name):
    path = PRETRAINED / name / "config.json"
    if not path.exists():
        pytest.skip(f"{name} is not shipped")
    config = json.loads(path.read_text())
    return {"corpus": config["corpus"], "recipe": config["recipe"]}


def tiny_app(tmp_path, monkeypatch, meta) -> AppTest:
    pre, models = tmp_path / "pretrained", tmp_path / "models"
    pre.mkdir()
    models.mkdir()
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(models))
    vocab = Vocab.from_text("".join(chr(c) for c in range(32, 127)) + "\n\t")
    model = build(vocab, cell="lstm", hidden_size=8, num_layers=1, embed_size=4, seed=0)
    checkpoint.save(model, pre / "tiny", meta=meta)
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def under_study(at):
    ctx = at.session_state["_ctx"]
    return ctx.text, ctx.notices


def local_python_split(meta):
    """The files python-lstm trained on and held out, recomputed from this machine's standard library
    by the positional rule it was trained under (valid only when the corpus hash is the recorded one)."""
    corpus = corpora.load_corpus("python")
    if corpus.sha256 != meta["corpus"]["sha256"]:
        pytest.skip("this Python's standard library is not the one python-lstm trained on")
    docs = [(n, corpus.text[s:e]) for n, s, e in corpus.documents]
    total, k, held = sum(len(t) for _, t in docs), len(docs), 0
    while k > 1 and (k == len(docs) or held < 0.1 * total):
        k -= 1
        held += len(docs[k][1])
    return docs[:k], docs[k:]


def test_python_excerpt_opens_in_code_with_one_line_strings(tmp_path, monkeypatch):
    meta = shipped_corpus("python-lstm")
    _, held_docs = local_python_split(meta)
    held = "\n".join(t for _, t in held_docs)
    at = tiny_app(tmp_path, monkeypatch, meta)
    text, notices = under_study(at)
    assert not [n for n in notices if "differs" in n]
    start = held.find(text)
    assert start >= 0, "the excerpt is not from the held-out files"
    assert start == 0 or held[start - 1] == "\n"
    spans = string_tokens(held)
    assert not [s for s, e, _ in spans if s <= start < e], "the excerpt opens inside a string"
    assert len([s for s, e, one in spans if one and start <= s and e <= start + 2_000]) >= 5


def test_python_excerpt_under_another_standard_library(tmp_path, monkeypatch):
    """Another Python build: an early file is longer and a held-out one shorter, so the 3M-character
    cut falls a file earlier and the last 10% reach back into pdb.py, which the model trained on."""
    meta = shipped_corpus("python-lstm")
    train_docs, held_docs = local_python_split(meta)
    other = tmp_path / "other-stdlib"
    other.mkdir()
    for f in Path(sysconfig.get_paths()["stdlib"]).glob("*.py"):
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    (other / "abc.py").write_text((other / "abc.py").read_text() + "# a longer header\n" * 5000)
    (other / "pickletools.py").write_text((other / "pickletools.py").read_text()[:40_000])
    real = sysconfig.get_paths
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "stdlib": str(other)})
    corpora._python_sources.cache_clear()
    moved = corpora.split_documents(corpora.load_corpus("python"), 0.1)[1]
    assert {n for n, _ in moved} & {n for n, _ in train_docs}, "the simulated build must show the hazard"

    at = tiny_app(tmp_path, monkeypatch, meta)
    text, notices = under_study(at)
    assert any("differs" in n for n in notices), notices
    head = text[:300]
    for name, t in train_docs:
        assert head not in t, f"the held-out excerpt comes from {name}, a training file"
    assert any(head in t for _, t in held_docs)


def test_shakespeare_excerpt_is_held_out_and_opens_at_a_speaker(tmp_path, monkeypatch, shakespeare_text):
    meta = shipped_corpus("shakespeare-lstm")
    if hashlib.sha256(shakespeare_text.encode()).hexdigest() != meta["corpus"]["sha256"]:
        pytest.skip("not the tinyshakespeare the model trained on")
    at = tiny_app(tmp_path, monkeypatch, meta)
    text, notices = under_study(at)
    val = shakespeare_text[int(len(shakespeare_text) * 0.9):]  # nanoGPT's split: the last 10%
    start = val.find(text)
    assert start > 0 and val[start - 2:start] == "\n\n"
    first = text.split("\n", 1)[0]
    assert re.fullmatch(r"[A-Z][A-Za-z '.,&-]*:", first), first
    assert not [n for n in notices if "differs" in n or "may" in n]


# --- the Neuron search table says which way a unit goes --------------------------------------------

def test_neuron_table_direction_matches_the_mean_difference(tmp_path, monkeypatch):
    if not (PRETRAINED / "quotes-lstm").exists():
        pytest.skip("quotes-lstm is not shipped")
    import shutil

    import numpy as np

    from rnnviz.hypotheses import inside_quotes
    from rnnviz.trace import trace

    pre = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED / "quotes-lstm", pre / "quotes-lstm")
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path / "models"))
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/neurons_page.py")
    at.run()
    assert not at.exception and not at.error
    text, _ = under_study(at)
    table = at.dataframe[0].value
    assert list(table.columns) == ["layer", "kind", "unit", "direction", "auroc", "score", "corr"]
    model, _ = checkpoint.load(pre / "quotes-lstm")
    tr = trace(model, text, gates=False)
    y = inside_quotes(text) > 0.5
    for row in table.head(20).itertuples():
        x = tr.layers[row.layer][row.kind][:, row.unit].astype(np.float64)
        diff = x[y].mean() - x[~y].mean()
        assert row.direction == f"{'high' if diff > 0 else 'low'} inside quotes", row
        assert row.score == pytest.approx(max(row.auroc, 1 - row.auroc))
    top = table.iloc[0]
    assert top.direction == "low inside quotes" and top.auroc < 0.1  # the quote unit docs/models.md names for this model
    assert "low inside quotes" in "\n".join(m.value for m in at.markdown)


# --- the command line: train records the split, trace and probe say when the corpus differs ----------

@pytest.fixture
def small_stdlib(tmp_path, monkeypatch):
    real = sysconfig.get_paths
    folder = tmp_path / "stdlib"
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "stdlib": str(folder)})
    monkeypatch.setattr(corpora, "PYTHON_MAX_CHARS", 12_000)

    def fill(files):
        if folder.exists():
            for f in folder.iterdir():
                f.unlink()
        folder.mkdir(exist_ok=True)
        for name, body in files.items():
            (folder / name).write_text(body)
        corpora._python_sources.cache_clear()
    return fill


def module(i, n):
    return f'"""Module {i}."""\n' + "".join(f"name_{i}_{j} = ['a{j}', \"b\", 'c']  # {j}\n" for j in range(n))


TINY = ["--cell", "lstm", "--layers", "1", "--hidden", "8", "--embed", "4", "--steps", "2", "--seq-len", "16",
        "--batch", "2", "--eval-every", "1", "--threads", "1"]


def test_cli_train_records_the_split_and_probe_says_when_the_corpus_differs(tmp_path, small_stdlib, capsys):
    from rnnviz import cli

    files = {f"m{i:02d}.py": module(i, 20 + 2 * i) for i in range(14)}
    small_stdlib(files)
    out = tmp_path / "py"
    assert cli.main(["train", "--corpus", "python", *TINY, "--out", str(out)]) == 0
    corpus = corpora.load_corpus("python")
    docs = [(n, corpus.text[s:e]) for n, s, e in corpus.documents]
    total, k, held = sum(len(t) for _, t in docs), len(docs), 0
    while k > 1 and (k == len(docs) or held < 0.1 * total):
        k -= 1
        held += len(docs[k][1])
    rec = json.loads((out / "config.json").read_text())["corpus"]["split"]
    sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
    assert [(d["name"], d["sha256"]) for d in rec["held_out"]] == [(n, sha(t)) for n, t in docs[k:]]
    assert [(d["name"], d["sha256"]) for d in rec["train"]] == [(n, sha(t)) for n, t in docs[:k]]
    capsys.readouterr()

    # another build: m00.py grew, so the tail by position would take a training file
    files["m00.py"] += "# more\n" * 300
    small_stdlib(files)
    assert cli.main(["probe", str(out), "--top", "5"]) == 0
    got = capsys.readouterr()
    assert "note:" in got.err and "differs" in got.err
    rows = [line.split() for line in got.out.splitlines()[2:]]
    assert len(rows) == 5
    for row in rows:  # rank, L0, c3, <direction words...>, auroc, score, r
        direction, au, score = row[3], float(row[-3]), float(row[-2])
        assert direction == ("high" if au > 0.5 else "low") and score == pytest.approx(max(au, 1 - au), abs=1e-3)
    npz = tmp_path / "t.npz"
    assert cli.main(["trace", str(out), "--held-out", "--out", str(npz)]) == 0
    assert "differs" in capsys.readouterr().err
    import numpy as np
    with np.load(npz) as z:
        traced = "".join(z["vocab"][z["ids"]])
    for name, t in docs[:k]:
        assert t[:200] not in traced, name


def test_cli_train_on_a_file_records_an_offset(tmp_path, capsys):
    from rnnviz import cli

    text = "".join(f"LINE {i}: some words to learn\n" for i in range(400))
    f = tmp_path / "notes.txt"
    f.write_text(text)
    out = tmp_path / "m"
    assert cli.main(["train", "--corpus", str(f), *TINY, "--out", str(out)]) == 0
    rec = json.loads((out / "config.json").read_text())["corpus"]["split"]
    assert rec == {"rule": "offset", "val_fraction": 0.1, "document": "notes.txt",
                   "sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text),
                   "val_start": int(len(text) * 0.9)}
