"""The atlas written in LSTMVis's documented layout (states.h5, train.h5, words.dict, lstm.yml)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .core import Atlas


def _dict_token(ch: str) -> str:
    """A character as a words.dict token: LSTMVis splits lines on whitespace, so newlines, tabs and
    other invisible characters are written escaped ('\\n'); a space is a line starting with a space."""
    if ch == " ":
        return " "
    if ch.isspace() or not ch.isprintable():
        return ch.encode("unicode_escape").decode("ascii")
    return ch


def export_lstmvis(atlas: Atlas, folder, vocab: list[str], rows: int = 8192) -> list[Path]:
    """Write the atlas in LSTMVis's documented layout: states.h5 (per layer l = 1..L a dataset
    `states{l}`, the cell state c of an LSTM, and `output{l}`, the hidden state h; each (T, H) float32,
    the stored states dequantised), train.h5 (`word_ids`, (T,) int64: each character's vocabulary id),
    words.dict ("token id" per line) and lstm.yml. Returns the paths written."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("the LSTMVis export needs h5py: pip install h5py") from None

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    T, H = len(atlas), atlas.hidden_size
    from ..vocab import Vocab

    v = Vocab(vocab)
    types = []
    with h5py.File(folder / "states.h5", "w") as f:
        for l in range(atlas.num_layers):
            for kind in atlas.kinds:
                name = f"{'states' if kind == 'c' else 'output'}{l + 1}"
                ds = f.create_dataset(name, shape=(T, H), dtype="float32")
                for s in range(0, T, rows):
                    ds[s:min(T, s + rows)] = atlas.states(l, kind, s, min(T, s + rows))
                entry = {"type": "state" if kind == "c" else "output", "layer": l + 1, "path": name}
                if kind == "h":
                    entry["transform"] = "none"  # h is already in [-1, 1]; LSTMVis applies tanh otherwise
                types.append(entry)
    with h5py.File(folder / "train.h5", "w") as f:
        f.create_dataset("word_ids", data=v.encode(atlas.text))
    with open(folder / "words.dict", "w", encoding="utf-8", newline="\n") as f:
        for i, ch in enumerate(v.chars):
            f.write(f"{_dict_token(ch)} {i}\n")
    config = {"name": f"rnnviz {atlas.cell.upper()} on {atlas.name}",
              "description": f"exported by rnnviz: {atlas.num_layers}x{H} {atlas.cell.upper()}, {T:,} characters",
              "files": {"states": "states.h5", "train": "train.h5", "words": "words.dict"},
              "word_sequence": {"file": "train", "path": "word_ids", "dict_file": "words"},
              "states": {"file": "states", "types": types}}
    # JSON is YAML: no YAML writer needed
    (folder / "lstm.yml").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [folder / n for n in ("states.h5", "train.h5", "words.dict", "lstm.yml")]
