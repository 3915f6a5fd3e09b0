"""Which text an atlas covers, and the hashes and settings that name its cache entry."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, TextError
from ..model import CharRNN
from .stats import H_BINS, SPARSE_BELOW

FORMAT_VERSION = 1  # enters every cache key: bump it and old entries are never read
MAX_CHARS = 200_000
DEFAULT_CHUNK = 8192
DEFAULT_TOP_K = 64
MIN_TOP_K = 32


def model_key(model: CharRNN) -> str:
    """sha256 of the model: its config (vocabulary included) and every tensor of its state dict, by
    name in sorted order, as float32 bytes with shape."""
    h = hashlib.sha256()
    h.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(model_hash: str, corpus_hash: str, settings: dict) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, "model": model_hash, "corpus": corpus_hash,
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
@dataclass
class CorpusText:
    """The text an atlas indexes, its name, and what the user should be told about it."""

    text: str
    name: str
    notices: list[str] = field(default_factory=list)


def upload_corpus(data: bytes, name: str = "the uploaded file", max_chars: int = MAX_CHARS) -> CorpusText:
    """An uploaded corpus file -> CorpusText named after it: UTF-8 text of at most `max_chars` characters
    (a byte-order mark dropped, CRLF read as LF, as corpora.user_text reads it). Anything else is a
    TextError that says what is wrong: not UTF-8, empty, binary, or too large. A too-large file is
    refused, not cut, so an atlas that bears a file's name covers the whole file."""
    from .. import corpora

    if not isinstance(data, (bytes, bytearray)):
        raise TextError(f"an uploaded corpus is bytes, not {type(data).__name__}")
    if len(data) > 4 * max_chars:  # more bytes than max_chars characters can take in UTF-8: no need to decode
        raise TextError(f"{name} is {len(data) / 2**20:,.1f} MB; the atlas takes a file of at most "
                        f"{max_chars:,} characters: upload a shorter part of it")
    text = corpora.user_text(bytes(data), name=name, max_chars=None).text
    if len(text) > max_chars:
        raise TextError(f"{name} holds {len(text):,} characters; the atlas takes a file of at most "
                        f"{max_chars:,}: upload a shorter part of it")
    return CorpusText(text, name)


def resolve_corpus(config: dict | None, corpus=None, max_chars: int | None = MAX_CHARS) -> CorpusText:
    """The atlas corpus: None -> the model's held-out split (heldout.held_out_text); a name in
    corpora.CORPORA -> that built-in corpus; a Path -> that UTF-8 file; bytes -> an upload; a CorpusText
    -> itself (resolved before: upload_corpus); any other str -> the user's text itself. Cut at
    `max_chars` with a notice."""
    from .. import corpora, heldout

    notices: list[str] = []
    if isinstance(corpus, CorpusText):
        text, name = corpus.text, corpus.name
        notices.extend(corpus.notices)
    elif corpus is None:
        text, notice = heldout.held_out_text(config or {})
        if text is None:
            why = ("the corpus this model trained on is not on this machine" if (config or {}).get("corpus")
                   else "this model records no training corpus (an imported one, say)")
            raise ConfigError(f"{why}: give a corpus "
                              "(a built-in name, a file or your own text)")
        if notice:
            notices.append(notice)
        if not text:
            raise TextError("none of this model's held-out text is on this machine: give a corpus")
        name = "held-out"
    elif isinstance(corpus, str) and corpus in corpora.CORPORA:
        c = corpora.load_corpus(corpus)
        text, name = c.text, corpus
        if c.notice:
            notices.append(c.notice)
    elif isinstance(corpus, (os.PathLike, bytes, bytearray, str)):
        kind = "file" if isinstance(corpus, os.PathLike) else "text"
        c = corpora.user_text(corpus, name=Path(corpus).name if kind == "file" else "your text", max_chars=None)
        text, name = c.text, c.name
    else:
        raise ConfigError(f"corpus must be None, a built-in name, a file path or text, not {type(corpus).__name__}")
    if not text:
        raise TextError("the atlas corpus is empty: give at least one character")
    if max_chars is not None and len(text) > max_chars:
        notices.append(f"the atlas covers the first {max_chars:,} of {len(text):,} characters")
        text = text[:max_chars]
    return CorpusText(text, name, notices)

def _settings(chunk: int, top_k: int) -> dict:
    return {"block": chunk, "top_k": top_k, "h_bins": H_BINS, "sparse_below": SPARSE_BELOW}


def settings(chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K) -> dict:
    """The build settings that enter the cache key (cache_key(model_key, text_sha256, settings()))."""
    return _settings(chunk, top_k)


def entry_key(model: CharRNN | str, text: str, chunk: int = DEFAULT_CHUNK, top_k: int = DEFAULT_TOP_K) -> str:
    """The cache key of (model or its model_key, text, settings): the entry's folder name."""
    mkey = model if isinstance(model, str) else model_key(model)
    return cache_key(mkey, text_sha256(text), _settings(chunk, top_k))


def _check_settings(chunk, top_k) -> None:
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ConfigError(f"chunk must be a whole number of at least 1, not {chunk!r}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < MIN_TOP_K:
        raise ConfigError(f"top_k must be a whole number of at least {MIN_TOP_K}, not {top_k!r}")
