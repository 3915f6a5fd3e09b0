"""Characters <-> integer ids, with an explicit unknown symbol."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .errors import TextError

UNK = "\ufffd"  # U+FFFD REPLACEMENT CHARACTER: what an unseen character becomes


class Vocab:
    """An ordered list of characters; index 0 is always UNK."""

    def __init__(self, chars: list[str]):
        chars = list(chars)
        if not chars or chars[0] != UNK:
            chars = [UNK] + [c for c in chars if c != UNK]
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise TextError("a vocabulary holds single characters only")
        if len(set(chars)) != len(chars):
            raise TextError("the vocabulary lists a character twice")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """Every distinct character of `text`, sorted, after UNK."""
        if not text:
            raise TextError("cannot build a vocabulary from an empty text")
        return cls([UNK] + sorted(set(text) - {UNK}))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text`, shape (T,); unseen characters map to UNK (id 0)."""
        get = self.index.get
        return np.fromiter((get(c, 0) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def unknown(self, text: str) -> dict[str, int]:
        """Characters of `text` outside the vocabulary, with their counts."""
        return dict(Counter(c for c in text if c not in self.index))


def decode_utf8(data: bytes, what: str = "the text") -> str:
    """Bytes -> str, or a TextError that says where the bad byte is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextError(
            f"{what} is not UTF-8 text (bad byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8 and try again"
        ) from None
