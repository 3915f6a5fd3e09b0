"""The vocabulary of an imported model: --vocab's three forms, or the file's own list of characters."""
from __future__ import annotations

import json
from pathlib import Path

from ..vocab import decode_utf8
from .parts import ImportRefused, Parts

FROM = "The vocabulary comes from "  # how a reader says where the file's own vocabulary lies
MAX_VOCAB_FILE_BYTES = 64 * 2**20  # a training text given as --vocab may be a whole corpus


def from_json(value, what: str) -> list[str]:
    """Characters in id order from a JSON list, or an object char -> id or id -> char."""
    if isinstance(value, list):
        if not all(isinstance(t, str) for t in value):
            raise ImportRefused(f"{what} is a JSON list, but not every entry is a string")
        return list(value)
    if not isinstance(value, dict) or not value:
        raise ImportRefused(f"{what} must be a JSON list of characters or an object (char -> id, or id -> char)")
    keys, values = list(value), list(value.values())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        by_id = {v: k for k, v in value.items()}  # char -> id
        if len(by_id) != len(values):
            raise ImportRefused(f"{what} gives two characters the same id")
    elif all(isinstance(v, str) for v in values) and all(k.strip().lstrip("-").isdigit() for k in keys):
        by_id = {int(k): v for k, v in value.items()}  # id -> char, JSON's keys being strings
    else:
        raise ImportRefused(f"{what} is a JSON object, but neither char -> id (whole numbers) nor id -> char")
    if sorted(by_id) != list(range(len(by_id))):
        raise ImportRefused(f"{what}'s ids must be 0 to {len(by_id) - 1}, each once; "
                            f"found {min(by_id)} to {max(by_id)}")
    return [by_id[i] for i in range(len(by_id))]


def read_vocab_file(path) -> tuple[list[str], str]:
    """(characters in id order, where they came from) of a --vocab file."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"--vocab: no file at {path}")
    if path.stat().st_size > MAX_VOCAB_FILE_BYTES:
        raise ImportRefused(f"--vocab: {path.name} is larger than {MAX_VOCAB_FILE_BYTES // 2**20} MB")
    text = decode_utf8(path.read_bytes(), f"--vocab {path.name}")
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ImportRefused(f"--vocab {path.name} is not valid JSON ({e})") from None
        kind = "a JSON list" if isinstance(value, list) else "a JSON object"
        return from_json(value, f"--vocab {path.name}"), f"--vocab {path.name} ({kind})"
    if not text:
        raise ImportRefused(f"--vocab {path.name} is empty")
    # as the tutorials build it: chars = sorted(set(text))
    return sorted(set(text)), f"the sorted characters of --vocab {path.name}"


def resolve(vocab, parts: Parts) -> tuple[list[str], str]:
    """(characters in id order, where they came from): `vocab` (a file or a list) before the file's own."""
    if vocab is None:
        if parts.vocab is None:
            raise ImportRefused(f"the file holds no vocabulary (its model predicts {parts.vocab_size} characters); "
                                "pass --vocab: a JSON list of the characters in id order, a JSON object "
                                "(char -> id), or the training text")
        said = [n[len(FROM):].rstrip(".") for n in parts.notices if n.startswith(FROM)]
        return list(parts.vocab), said[0] if said else "the model file itself"
    if isinstance(vocab, (list, tuple)):
        return from_json(list(vocab), "the vocabulary"), "the list given"
    return read_vocab_file(vocab)
