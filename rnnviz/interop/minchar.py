"""Karpathy's min-char-rnn saved as an .npz: Wxh, Whh, Why, bh, by and `chars` (read without pickle)."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from .parts import ImportRefused, Parts

MINCHAR_NAMES = ("Wxh", "Whh", "Why", "bh", "by")
MAX_NPZ_MEMBERS = 256
MAX_NPZ_BYTES = 512 * 2**20  # what all the arrays of one .npz may come to, uncompressed


def check_zip_sizes(path: Path, what: str) -> None:
    """An ImportRefused for a zip (an .npz, a torch.save file) that would unpack to more than MAX_NPZ_BYTES.
    The sizes its directory declares are enough: zipfile never reads a member past its declared size."""
    limit = MAX_NPZ_BYTES
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ImportRefused(f"{path.name} is not a readable {what} (its zip structure is damaged)") from None
    if len(infos) > MAX_NPZ_MEMBERS:
        raise ImportRefused(f"{path.name} holds {len(infos):,} files; a {what} of one model holds a few")
    total = sum(i.file_size for i in infos)
    if total > limit:
        raise ImportRefused(f"{path.name} would unpack to {total / 2**20:,.0f} MB (a zip bomb?); rnnviz imports "
                            f"models of at most {limit // 2**20} MB")


def check_npy_headers(path: Path) -> None:
    """An ImportRefused for a member whose header claims more data than the member holds: numpy would
    allocate the claimed array before finding the data missing."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f, max_header_size=10_000)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size:
                    raise ImportRefused(f"{path.name}: the array {info.filename} claims {shape} of {dtype} "
                                        f"({claimed:,} bytes) in a member of {info.file_size:,} bytes")
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ImportRefused(f"{path.name} is not a readable .npz file ({e})") from None


def load_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz, with allow_pickle=False: an object array is refused, never unpickled."""
    path = Path(path)
    check_zip_sizes(path, ".npz file")
    check_npy_headers(path)
    out = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in npz.files:
                out[name] = npz[name]
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ImportRefused(f"{path.name} holds a Python object array (a pickle); rnnviz never unpickles "
                                "files: save `chars` as np.array(chars), an array of str") from None
        raise ImportRefused(f"{path.name} is not a readable .npz file ({e})") from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ImportRefused(f"{path.name} is not a readable .npz file ({e})") from None
    return out


def vocab_array(a: np.ndarray, name: str) -> list[str]:
    """`chars` of the .npz: an array of str (or one string), the characters in id order."""
    if a.dtype.kind != "U":
        raise ImportRefused(f"`{name}` in the .npz has dtype {a.dtype}; expected an array of str (np.array(chars))")
    return list(str(a)) if a.ndim == 0 else [str(c) for c in a.reshape(-1)]


def column(a: np.ndarray, n: int, name: str) -> np.ndarray:
    """min-char-rnn's biases are column vectors (n, 1); (n,) is accepted too."""
    if a.shape not in ((n, 1), (n,)):
        raise ImportRefused(f"{name} has shape {a.shape}; min-char-rnn's {name} is ({n}, 1)")
    return a.reshape(n)


def is_minchar(arrays: dict[str, np.ndarray]) -> bool:
    return "Wxh" in arrays or "Why" in arrays


def minchar_parts(arrays: dict[str, np.ndarray]) -> Parts:
    """Parts of min-char-rnn: h = tanh(Wxh x + Whh h + bh), y = Why h + by, x one-hot."""
    missing = [n for n in MINCHAR_NAMES if n not in arrays]
    if missing:
        raise ImportRefused(f"min-char-rnn's .npz needs {', '.join(MINCHAR_NAMES)}; missing {', '.join(missing)}")
    Wxh, Whh, Why = (np.asarray(arrays[n]) for n in ("Wxh", "Whh", "Why"))
    if Wxh.ndim != 2 or Whh.ndim != 2 or Why.ndim != 2:
        raise ImportRefused(f"Wxh {Wxh.shape}, Whh {Whh.shape} and Why {Why.shape} must be matrices")
    H, V = Wxh.shape
    if Whh.shape != (H, H) or Why.shape != (V, H):
        raise ImportRefused(f"the shapes do not fit together: Wxh {Wxh.shape} is (H, V), so Whh must be "
                            f"({H}, {H}) and Why ({V}, {H}); found Whh {Whh.shape}, Why {Why.shape}")
    layer = {"weight_ih": Wxh, "weight_hh": Whh, "bias_ih": column(np.asarray(arrays["bh"]), H, "bh"),
             "bias_hh": np.zeros(H, Wxh.dtype)}
    vocab = vocab_array(arrays["chars"], "chars") if "chars" in arrays else None
    notices = [f"A min-char-rnn: one tanh layer reading one-hot input; its embedding is the identity over its "
               f"{V} characters."]
    if vocab is not None:
        notices.append("The vocabulary comes from the file's 'chars' array.")
    return Parts(cell="rnn", layers=[layer], embedding=None, head_weight=Why,
                 head_bias=column(np.asarray(arrays["by"]), V, "by"), vocab=vocab, source="min-char-rnn",
                 conversions=["Wxh -> rnn.weight_ih_l0, Whh -> rnn.weight_hh_l0, Why -> head.weight (no transposes)",
                              "bh -> rnn.bias_ih_l0 (as a vector), rnn.bias_hh_l0 = 0; by -> head.bias"],
                 notices=notices)
