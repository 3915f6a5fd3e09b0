"""Import models trained elsewhere (PyTorch, d2l, min-char-rnn, Keras) as rnnviz checkpoints.

`import_model(path, out_dir)` detects the format, reads it into Parts (PyTorch's layout) without running
any code from the file, and writes a normal checkpoint folder whose config.json says what was converted.
"""
from __future__ import annotations

from pathlib import Path

from .parts import ImportRefused, Parts, import_notices, to_checkpoint

__all__ = ["IMPORT_SUFFIXES", "ImportRefused", "Parts", "import_model", "import_notices", "read_parts",
           "to_checkpoint"]

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
IMPORT_SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz") + KERAS_SUFFIXES
MAX_IMPORT_BYTES = 512 * 2**20  # checkpoint.MAX_WEIGHTS_BYTES: no imported model may be larger than ours


def read_parts(path, cell: str | None = None) -> Parts:
    """The Parts of the model file at `path`, by its suffix; an ImportRefused for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"no file at {path}")
    size = path.stat().st_size
    if size > MAX_IMPORT_BYTES:
        raise ImportRefused(f"{path.name} is {size / 2**20:,.0f} MB; rnnviz imports models of at most "
                            f"{MAX_IMPORT_BYTES // 2**20} MB")
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        from . import keras
        parts = keras.read_keras(path)
    elif suffix == ".npz":
        parts = read_npz(path)
    elif suffix in TORCH_SUFFIXES or suffix == ".safetensors":
        from . import torchdict
        parts = torchdict.read_torch_file(path, cell=cell)
    else:
        raise ImportRefused(f"{path.name}: rnnviz imports {', '.join(IMPORT_SUFFIXES)} files, "
                            f"not {suffix or 'files without a suffix'}")
    if cell is not None and parts.cell != cell:
        raise ImportRefused(f"--cell {cell} was given, but {path.name} holds a {parts.cell.upper()}")
    return parts


def read_npz(path: Path) -> Parts:
    """Parts of an .npz: min-char-rnn's names, else d2l's or PyTorch's names as in a state dict."""
    from . import minchar, torchdict

    arrays = minchar.load_npz(path)
    if minchar.is_minchar(arrays):
        return minchar.minchar_parts(arrays)
    vocab = minchar.vocab_array(arrays.pop("chars"), "chars") if "chars" in arrays else None
    parts = torchdict.parts_from_tensors(arrays, path.name)  # d2l's scratch weights saved with np.savez, say
    if vocab is not None:
        parts.vocab = vocab
        parts.notices.append("The vocabulary comes from the file's 'chars' array.")
    return parts


def import_model(path, out_dir, vocab=None, cell: str | None = None) -> Path:
    """Convert the model file at `path` into the rnnviz checkpoint folder `out_dir`.

    `vocab`: a --vocab file (JSON list, JSON object, or a text whose sorted characters are the
    vocabulary) or a list of characters in id order; without it the file's own vocabulary is used."""
    from .vocabulary import resolve

    parts = read_parts(path, cell=cell)
    chars, where = resolve(vocab, parts)
    return to_checkpoint(parts, chars, out_dir, path, vocab_source=where)
