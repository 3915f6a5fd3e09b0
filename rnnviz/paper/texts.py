"""The texts the paper's analyses read: a model's held-out excerpt and its training split."""
from __future__ import annotations

from ..corpora import excerpt
from ..errors import ConfigError
from ..heldout import held_out

DEFAULT_CHARS = 20_000  # long enough for hundreds of errors per category, short enough for seconds on a CPU


def held_out_sample(config: dict, chars: int = DEFAULT_CHARS) -> tuple[str, str | None]:
    """(the first `chars` characters of the model's held-out excerpt, notice); ConfigError when the
    corpus it trained on is not on this machine."""
    if not isinstance(chars, int) or chars < 2:
        raise ConfigError(f"the analysed text needs at least 2 characters, not {chars!r}")
    held = held_out(config)
    text = excerpt(held, chars) if held is not None else ""
    if len(text) < 2:
        raise ConfigError("this model's held-out text is not on this machine: give a text file")
    return text, held.notice
