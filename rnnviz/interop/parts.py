"""Parts: any recurrent char model in PyTorch's layout, and how it becomes an rnnviz checkpoint.

Every reader (PyTorch state dicts, d2l, min-char-rnn, Keras) returns Parts; `to_checkpoint` is the one
place that adds rnnviz's unknown symbol, makes one-hot input an identity embedding and writes the folder.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint
from ..errors import CheckpointError, ConfigError
from ..model import CELLS, MAX_HIDDEN, MAX_LAYERS, CharRNN, ModelConfig
from ..vocab import UNK

GATE_COUNT = {"lstm": 4, "gru": 3, "rnn": 1}
LAYER_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# Spellings of "the unknown token" in the vocabularies of the sources: each becomes rnnviz's id 0.
UNKNOWN_TOKENS = (UNK, "<unk>", "<UNK>", "[UNK]")
# The unknown symbol's logit sits this far below the lowest logit the model's own characters can reach:
# exp(-110) is 1.7e-48, below float32's smallest number (1.4e-45), so its probability is exactly 0.
UNDERFLOW_MARGIN = 110.0
MAX_EMBED = 4096  # ModelConfig's limit on embed_size: one-hot input allows at most this many characters


class ImportRefused(CheckpointError):
    """A file that cannot become an rnnviz model; the message says what was found."""


@dataclass
class Parts:
    """A recurrent char model in PyTorch's layout, before it becomes an rnnviz checkpoint."""

    cell: str  # "lstm" | "gru" | "rnn"
    # per layer: weight_ih (G*H, in), weight_hh (G*H, H), bias_ih (G*H,), bias_hh (G*H,) in PyTorch's
    # gate order (LSTM i,f,g,o; GRU r,z,n)
    layers: list[dict[str, np.ndarray]]
    embedding: np.ndarray | None  # (V, E); None = one-hot input (the embedding becomes the identity)
    head_weight: np.ndarray  # (V, H)
    head_bias: np.ndarray  # (V,)
    vocab: list[str] | None  # characters in id order, if the file holds them
    source: str  # "pytorch-state-dict", "d2l-scratch", "min-char-rnn", "keras3", "keras2-h5", ...
    conversions: list[str] = field(default_factory=list)  # every conversion made, in words
    notices: list[str] = field(default_factory=list)  # what the model card shows

    @property
    def vocab_size(self) -> int:
        return int(self.head_weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.head_weight.shape[1])


def _shape(a) -> tuple[int, ...]:
    return tuple(int(n) for n in np.shape(a))


def check_parts(parts: Parts) -> None:
    """An ImportRefused naming the first tensor whose shape or values do not fit the others."""
    if parts.cell not in CELLS:
        raise ImportRefused(f"the cell must be one of {', '.join(CELLS)}, not {parts.cell!r}")
    if not parts.layers:
        raise ImportRefused("the file holds no recurrent layer")
    if len(parts.layers) > MAX_LAYERS:
        raise ImportRefused(f"the model has {len(parts.layers)} recurrent layers; rnnviz shows at most {MAX_LAYERS}")
    hw, hb = parts.head_weight, parts.head_bias
    if np.ndim(hw) != 2 or _shape(hb) != (_shape(hw)[0],):
        raise ImportRefused(f"the head's weight {_shape(hw)} and bias {_shape(hb)} do not fit together "
                            "(expected (V, H) and (V,))")
    V, H = _shape(hw)
    if not 1 <= H <= MAX_HIDDEN:
        raise ImportRefused(f"the hidden size is {H}; rnnviz shows hidden sizes from 1 to {MAX_HIDDEN}")
    G = GATE_COUNT[parts.cell]
    if parts.embedding is None:
        inp = V
    else:
        if np.ndim(parts.embedding) != 2 or _shape(parts.embedding)[0] != V:
            raise ImportRefused(f"the embedding has shape {_shape(parts.embedding)} but the head predicts {V} "
                                f"characters: expected ({V}, E)")
        inp = _shape(parts.embedding)[1]
    if inp > MAX_EMBED:
        what = "one-hot input of" if parts.embedding is None else "an embedding of width"
        raise ImportRefused(f"the model has {what} {inp}; rnnviz's embedding holds at most {MAX_EMBED}")
    for l, layer in enumerate(parts.layers):
        want = {"weight_ih": (G * H, inp if l == 0 else H), "weight_hh": (G * H, H),
                "bias_ih": (G * H,), "bias_hh": (G * H,)}
        if set(layer) != set(want):
            raise ImportRefused(f"layer {l} holds {sorted(layer)}; expected {list(LAYER_KEYS)}")
        for k, shape in want.items():
            if _shape(layer[k]) != shape:
                raise ImportRefused(f"layer {l}'s {k} has shape {_shape(layer[k])}; a {parts.cell.upper()} with "
                                    f"hidden size {H} over inputs of {want['weight_ih'][1]} needs {shape}")
    arrays = [("the embedding", parts.embedding), ("the head's weight", hw), ("the head's bias", hb)]
    arrays += [(f"layer {l}'s {k}", v) for l, layer in enumerate(parts.layers) for k, v in layer.items()]
    for name, a in arrays:
        if a is None:
            continue
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            raise ImportRefused(f"{name} has dtype {a.dtype}; expected floating-point weights")
        if not np.isfinite(a).all():
            raise ImportRefused(f"{name} holds NaN or infinite values")


def source_order(vocab: list[str]) -> tuple[list[str], list[int | None]]:
    """(rnnviz's characters, the source id of each; None for an added unknown symbol)."""
    unknown = [i for i, t in enumerate(vocab) if t in UNKNOWN_TOKENS]
    if len(unknown) > 1:
        raise ImportRefused("the vocabulary holds more than one unknown token: "
                            + ", ".join(repr(vocab[i]) for i in unknown))
    bad = [t for t in vocab if not isinstance(t, str) or (len(t) != 1 and t not in UNKNOWN_TOKENS)]
    if bad:
        raise ImportRefused("the vocabulary holds entries that are not single characters: "
                            + ", ".join(repr(t) for t in bad[:5]) + ("" if len(bad) <= 5 else f" and {len(bad) - 5} more")
                            + "; rnnviz models read one character at a time")
    seen: dict[str, int] = {}
    for i, t in enumerate(vocab):
        if t in seen:
            raise ImportRefused(f"the vocabulary lists {t!r} twice (ids {seen[t]} and {i})")
        seen[t] = i
    first: list[int | None] = unknown if unknown else [None]
    ids = first + [i for i in range(len(vocab)) if i not in unknown]
    return [UNK] + [vocab[i] for i in ids[1:]], ids


def head_bound(head_weight: np.ndarray, head_bias: np.ndarray) -> float:
    """A bound on |logit| of any character: every recurrent output (h) lies in [-1, 1]."""
    w = np.abs(np.asarray(head_weight, np.float64)).sum(axis=1) + np.abs(np.asarray(head_bias, np.float64))
    return float(w.max())


def unknown_bias(parts: Parts) -> float:
    """The head bias of an added unknown symbol: its logit stays UNDERFLOW_MARGIN below every other."""
    return -float(np.ceil(head_bound(parts.head_weight, parts.head_bias) + UNDERFLOW_MARGIN))


def state_dict(parts: Parts, vocab: list[str]) -> tuple[ModelConfig, dict[str, torch.Tensor], list[str]]:
    """(config, CharRNN weights, conversions made) for `parts` read with `vocab` (source ids in order)."""
    check_parts(parts)
    V, H = parts.head_weight.shape
    if len(vocab) != V:
        raise ImportRefused(f"the vocabulary has {len(vocab)} characters but the model's weights predict {V}")
    chars, ids = source_order(list(vocab))
    conversions: list[str] = []
    if parts.embedding is None:
        table = np.eye(V, dtype=np.float64)
        conversions.append(f"one-hot input became an identity embedding ({V} x {V})")
    else:
        table = np.asarray(parts.embedding, np.float64)
    E = table.shape[1]
    unk_b = unknown_bias(parts)
    embed = np.zeros((len(chars), E))
    head_w = np.zeros((len(chars), H))
    head_b = np.zeros(len(chars))
    for ours, src in enumerate(ids):
        if src is None:
            head_b[ours] = unk_b
            continue
        embed[ours], head_w[ours], head_b[ours] = table[src], parts.head_weight[src], parts.head_bias[src]
    if ids[0] is None:
        conversions.append(f"added rnnviz's unknown symbol as id 0 (source id i became id i + 1): a zero input "
                           f"row, a zero head row and head bias {unk_b:g}, so its probability is exactly 0 in "
                           "float32 and the model's own characters keep theirs")
    else:
        conversions.append(f"the source's unknown token {vocab[ids[0]]!r} (id {ids[0]}) became rnnviz's "
                           f"unknown symbol, id 0")
    config = ModelConfig(vocab=chars, cell=parts.cell, hidden_size=int(H), num_layers=len(parts.layers),
                         embed_size=int(E), dropout=0.0)
    try:
        config.validate()
    except ConfigError as e:
        raise ImportRefused(f"the model does not fit rnnviz: {e}") from None
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    tensors = {"embed.weight": f32(embed), "head.weight": f32(head_w), "head.bias": f32(head_b)}
    for l, layer in enumerate(parts.layers):
        for k in LAYER_KEYS:
            tensors[f"rnn.{k}_l{l}"] = f32(layer[k])
    return config, tensors, conversions


def build_model(parts: Parts, vocab: list[str]) -> tuple[CharRNN, list[str]]:
    """The CharRNN of `parts` in memory (eval mode), with the conversions made."""
    config, tensors, conversions = state_dict(parts, vocab)
    model = CharRNN(config)
    model.load_state_dict(tensors)
    return model.eval(), conversions


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_checkpoint(parts: Parts, vocab: list[str], out_dir, source_path, vocab_source: str | None = None) -> Path:
    """Write `parts` as an rnnviz checkpoint folder `out_dir` (atomically, so a refusal leaves nothing);
    config.json's `imported` records the source format, the file's sha256, the conversions and notices."""
    model, made = build_model(parts, vocab)
    out_dir, source_path = Path(out_dir), Path(source_path)
    notices = [n for n in parts.notices if not (vocab_source and n.startswith("The vocabulary"))]
    if vocab_source:
        notices.append(f"The vocabulary ({len(vocab)} characters) comes from {vocab_source}.")
    if parts.embedding is None and not any("one-hot" in n for n in notices):
        notices.append(f"The model reads one-hot input: its embedding is the identity over its "
                       f"{len(vocab)} characters.")
    meta = {"name": out_dir.name,
            "imported": {"source_format": parts.source, "file": source_path.name,
                         "sha256": file_sha256(source_path), "conversions": list(parts.conversions) + made,
                         "notices": notices, "vocab_source": vocab_source}}
    if out_dir.exists():
        raise ImportRefused(f"{out_dir} already exists; choose another --out folder")
    return checkpoint.save(model, out_dir, meta=meta)


def import_notices(config: dict) -> list[str]:
    """The notices an imported checkpoint's config.json holds (none for rnnviz's own)."""
    imported = config.get("imported")
    if not isinstance(imported, dict):
        return []
    notes = imported.get("notices")
    return [str(n) for n in notes if isinstance(n, str)] if isinstance(notes, list) else []

