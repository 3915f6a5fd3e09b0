"""A model's held-out text as found on this machine, from the corpus record in its config.json.

It stands above corpora (which builds the corpora) and recipes (which names the data file each
recipe trains on): finding what a model held out needs both, so neither of them needs the other.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import corpora
from .corpora import (
    CORPORA,
    Corpus,
    HeldOut,
    fresh_memory,
    load_corpus,
    memory_task,
    quotes_task,
    split,
    split_documents,
)
from .errors import RnnvizError
from .recipes import RECIPES, corpus_from_spec

_GENERATED = re.compile(r"(quotes)-seed(\d+)|(memory)-gap(\d+)-seed(\d+)")
_MAX_REGENERATED = 50_000_000  # a hostile config must not ask for a gigantic synthetic corpus


def _recorded(meta: dict, key: str, kind: type):
    value = meta.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def local_corpus(meta: dict, recipe) -> tuple[Corpus | None, list[tuple[str, str]] | None]:
    """The corpus a record names, rebuilt on this machine, and for a built-in one of several
    documents all its documents uncut (a recorded document may lie past the local cut)."""
    name = meta["name"]
    if name in ("python", "shakespeare"):
        corpus = load_corpus(name)
        return corpus, list(corpora._python_sources() if name == "python" else corpora._shakespeare_plays())
    m = _GENERATED.fullmatch(name)
    chars = _recorded(meta, "chars", int)
    if m and chars and 0 < chars <= _MAX_REGENERATED:
        if m.group(1):
            return quotes_task(chars, int(m.group(2))), None
        return memory_task(chars, int(m.group(4)), int(m.group(5))), None
    # a text file: the data file a recipe names, when it is on this machine
    specs = [r.corpus for r in RECIPES.values()]
    if isinstance(recipe, str) and recipe in RECIPES:
        specs.insert(0, RECIPES[recipe].corpus)
    for spec in specs:
        if spec not in CORPORA and Path(spec).name == name and Path(spec).is_file():
            return corpus_from_spec(spec), None
    return None, None


def _default_fraction(recipe) -> float:
    return RECIPES[recipe].val_fraction if isinstance(recipe, str) and recipe in RECIPES else 0.1


def _documents_rule(rec: dict, meta: dict, corpus: Corpus, every: list[tuple[str, str]] | None,
                    label: str) -> HeldOut:
    held = [(d["name"], d["sha256"]) for d in rec["held_out"]]
    train = [(d["name"], d["sha256"]) for d in rec["train"]]
    if not all(isinstance(x, str) for pair in held + train for x in pair):
        raise TypeError("names and hashes must be strings")
    local = dict(every or [(n, corpus.text[s:e]) for n, s, e in corpus.documents])
    train_names, train_hashes = {n for n, _ in train}, {h for _, h in train}
    docs, changed, missing = [], 0, 0
    for name, sha in held:
        text = local.get(name)
        if text is None:
            missing += 1
            continue
        digest = corpora._sha256(text)
        if name in train_names or digest in train_hashes:
            continue  # a document it trained on is never called held out
        changed += digest != sha
        docs.append((name, text))
    notice = None
    if corpus.sha256 != meta.get("sha256") or changed or missing:
        what = (f"{len(docs)} of the {len(held)} documents it held out are here"
                + (f", {changed} of them changed" if changed else "")) if docs else \
            f"none of the {len(held)} documents it held out is here"
        build = " (its standard library comes from another Python build)" if meta["name"] == "python" else ""
        notice = (f"The local {label} corpus differs from the one this model trained on{build}: {what}. "
                  "The excerpt holds only those, never a document it trained on.")
    return HeldOut(docs, notice)


def held_out(config: dict) -> HeldOut | None:
    """The held-out part of a model's training corpus, from its config.json, as found on this machine.
    For a model of the mixed memory task, a fresh draw of the task (fresh_memory).

    Follows the split the config records (see split_record): held-out documents by name, never one
    recorded as trained on, or the recorded offset in a document with the recorded hash. The notice
    says when the local corpus differs from the one the model trained on, and what that means for
    the text. Configs without a record get the positional split of the local corpus, with a notice
    unless its hash is the recorded one. None when the corpus is not on this machine (a file that
    is not here, an upload) or the config names none.
    """
    meta = config.get("corpus") if isinstance(config, dict) else None
    if isinstance(meta, str):
        meta = {"name": meta}
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    recipe = config.get("recipe")
    label = meta["name"]
    fresh = fresh_memory(label)
    if fresh is not None:
        return fresh
    try:
        corpus, every = local_corpus(meta, recipe)
    except (RnnvizError, OSError):
        corpus, every = None, None
    stand_in = corpus is None and "shakespeare" in label.lower()
    if stand_in:  # tinyshakespeare.txt, say, when ../shared/data is not on this machine
        try:
            corpus, every = load_corpus("shakespeare"), None
        except RnnvizError:
            return None
    if corpus is None:
        return None
    style = "python" if label == "python" else "auto"
    if stand_in:
        _, val = split(corpus, 0.1)
        return HeldOut([("shakespeare", val)], f"{label}, this model's training corpus, is not on this machine: "
                       "the excerpt is the held-out plays of the built-in shakespeare corpus instead, which "
                       "may hold lines it trained on.", "play")
    rec = meta.get("split")
    if isinstance(rec, dict):
        try:
            if rec.get("rule") == "documents" and len(corpus.documents) > 1:
                held = _documents_rule(rec, meta, corpus, every, label)
                held.style = style
                return held
            if rec.get("rule") == "offset" and len(corpus.documents) == 1:
                name, s, e = corpus.documents[0]
                start = rec["val_start"]
                if not isinstance(start, int) or isinstance(start, bool) or not 0 < start < e - s:
                    raise ValueError("val_start out of range")
                doc = corpus.text[s:e]
                notice = None
                if corpora._sha256(doc) != rec.get("sha256"):
                    notice = (f"The local {label} differs from the text this model trained on, so no part of "
                              "it can be called held out: the excerpt comes from where the held-out part "
                              "began in its copy, and may hold text it trained on.")
                return HeldOut([(name, doc[start:])], notice, style)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # an unreadable record: as if there were none
    fraction = rec.get("val_fraction") if isinstance(rec, dict) else None
    if not isinstance(fraction, float) or not 0.0 < fraction < 1.0:
        fraction = _default_fraction(recipe)
    _, docs = split_documents(corpus, fraction)
    notice = None
    if corpus.sha256 != meta.get("sha256"):
        why = "differs from the one this model trained on" if isinstance(meta.get("sha256"), str) else \
            "cannot be checked against the one this model trained on (its config records no hash)"
        notice = (f"The local {label} corpus {why}, and the config names no held-out documents: "
                  "the excerpt is the local corpus's held-out part, which may hold text the model trained on.")
    return HeldOut(docs, notice, style)


def held_out_text(config: dict) -> tuple[str | None, str | None]:
    """(held-out text of a model's training corpus, notice): see held_out. (None, None) when the
    corpus is not on this machine; an empty text, with a notice, when none of it is held out here."""
    held = held_out(config)
    if held is None:
        return None, None
    return held.text, held.notice


# --- where an excerpt starts --------------------------------------------------------------------
