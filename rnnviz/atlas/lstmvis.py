"""The atlas written in LSTMVis's documented layout (states.h5, train.h5, words.dict, lstm.yml)."""
from __future__ import annotations

import json
import tempfile
import zipfile
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


FILES = ("states.h5", "train.h5", "words.dict", "lstm.yml")


def lstmvis_size(atlas: Atlas, start: int = 0, end: int | None = None) -> int:
    """Bytes of the export's arrays for characters [start, end): float32 states and int64 word ids."""
    start, end = atlas._window(start, end)
    return (end - start) * (4 * atlas.num_layers * len(atlas.kinds) * atlas.hidden_size + 8)


def export_lstmvis(atlas: Atlas, folder, vocab: list[str], rows: int = 8192, start: int = 0,
                   end: int | None = None) -> list[Path]:
    """Write the atlas (characters [start, end), default all) in LSTMVis's documented layout: states.h5
    (per layer l = 1..L a dataset `states{l}`, the cell state c of an LSTM, and `output{l}`, the hidden
    state h; each (T, H) float32, the stored states dequantised), train.h5 (`word_ids`, (T,) int64: each
    character's vocabulary id), words.dict ("token id" per line) and lstm.yml. Returns the paths written."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("the LSTMVis export needs h5py: pip install h5py") from None

    start, end = atlas._window(start, end)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    T, H = end - start, atlas.hidden_size
    from ..vocab import Vocab

    v = Vocab(vocab)
    types = []
    with h5py.File(folder / "states.h5", "w") as f:
        for l in range(atlas.num_layers):
            for kind in atlas.kinds:
                name = f"{'states' if kind == 'c' else 'output'}{l + 1}"
                ds = f.create_dataset(name, shape=(T, H), dtype="float32")
                for s in range(0, T, rows):
                    ds[s:min(T, s + rows)] = atlas.states(l, kind, start + s, start + min(T, s + rows))
                entry = {"type": "state" if kind == "c" else "output", "layer": l + 1, "path": name}
                if kind == "h":
                    entry["transform"] = "none"  # h is already in [-1, 1]; LSTMVis applies tanh otherwise
                types.append(entry)
    with h5py.File(folder / "train.h5", "w") as f:
        f.create_dataset("word_ids", data=v.encode(atlas.text[start:end]))
    with open(folder / "words.dict", "w", encoding="utf-8", newline="\n") as f:
        for i, ch in enumerate(v.chars):
            f.write(f"{_dict_token(ch)} {i}\n")
    config = {"name": f"rnnviz {atlas.cell.upper()} on {atlas.name}",
              "description": f"exported by rnnviz: {atlas.num_layers}x{H} {atlas.cell.upper()}, {T:,} characters"
                             + (f" ({start:,} to {end:,} of {len(atlas):,})" if T < len(atlas) else ""),
              "files": {"states": "states.h5", "train": "train.h5", "words": "words.dict"},
              "word_sequence": {"file": "train", "path": "word_ids", "dict_file": "words"},
              "states": {"file": "states", "types": types}}
    # JSON is YAML: no YAML writer needed
    (folder / "lstm.yml").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [folder / n for n in FILES]


def lstmvis_zip(atlas: Atlas, vocab: list[str], start: int = 0, end: int | None = None,
               folder: str = "lstmvis") -> bytes:
    """export_lstmvis's four files as one zip (under `folder`/), for a download."""
    with tempfile.TemporaryDirectory(prefix="rnnviz-lstmvis-") as tmp:
        paths = export_lstmvis(atlas, tmp, vocab, start=start, end=end)
        out = Path(tmp) / "export.zip"
        # a block of float32 states holds at most 255 distinct values: the fastest deflate saves about 40%
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for p in paths:
                z.write(p, f"{folder}/{p.name}")
        return out.read_bytes()
