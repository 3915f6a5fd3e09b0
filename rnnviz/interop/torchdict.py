"""PyTorch state dicts (.pt/.pth via torch.load(weights_only=True), .safetensors) and d2l's models in them.

Parts are found by PyTorch's suffixes (weight_ih_l0, ...) and by shape, under any module names;
anything that could be placed two ways, or not at all, is refused with what was found.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from .minchar import check_zip_sizes
from .parts import GATE_COUNT, ImportRefused, Parts

CELL_OF_GATES = {g: c for c, g in GATE_COUNT.items()}
_RNN_KEY = re.compile(r"^(?P<prefix>.*?)(?P<kind>weight|bias)_(?P<part>ih|hh|hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$")
# d2l's scratch cells: RNNScratch (W_xh, W_hh, b_h), LSTMScratch (i, f, o, c), GRUScratch (z, r, h)
_SCRATCH_KEY = re.compile(r"^(?P<prefix>.*?)(?P<name>W_x[hifocrz]|W_h[hifocrz]|b_[hifocrz])$")
VOCAB_KEYS = ("chars", "vocab", "idx_to_token", "itos", "all_characters", "characters", "char_to_ix",
              "char_to_idx", "token_to_idx", "stoi")
MAX_LISTED = 8


def _listing(names) -> str:
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _described(tensors: dict[str, np.ndarray], names) -> str:
    return _listing(f"{k} {tuple(tensors[k].shape)}" for k in names)


def as_array(value) -> np.ndarray | None:
    """A tensor or array as numpy (floats as float32 or float64); None for anything else."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # bfloat16 and float16 have no exact numpy twin for bfloat16: widen
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    return None


# ---------------------------------------------------------------- reading the file

def _torch_load(path: Path):
    """torch.load(weights_only=True): tensors, dicts, lists and numbers only; a pickle of code is refused."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"PK":
        check_zip_sizes(path, "PyTorch file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it names {found.group(1)})" if found else ""
        raise ImportRefused(f"{path.name} holds pickled Python objects, not only weights{what}; rnnviz reads "
                            "PyTorch files with torch.load(weights_only=True) and never runs their code: "
                            "save model.state_dict() instead of the model") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ImportRefused(f"{path.name} is not a readable PyTorch file ({first})") from None


def _state_dicts(obj, where: str = ""):
    """(where, dict) for every dict in `obj` holding tensors, outermost first."""
    if isinstance(obj, dict):
        if any(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values()):
            yield where, obj
        for k, v in obj.items():
            if isinstance(v, dict):
                yield from _state_dicts(v, f"{where}[{k!r}]")


def _vocab_candidates(obj) -> list[tuple[str, list[str]]]:
    """(key, characters in id order) of the vocabularies saved beside the weights (top two levels)."""
    from .vocabulary import from_json

    out = []
    levels = [obj] + [v for v in obj.values() if isinstance(v, dict)] if isinstance(obj, dict) else []
    for level in levels:
        for k, v in level.items():
            if k not in VOCAB_KEYS:
                continue
            if isinstance(v, str):
                v = list(v)
            try:
                out.append((k, from_json(list(v) if isinstance(v, tuple) else v, f"the entry {k!r}")))
            except ImportRefused:
                continue
    return out


def _is_weights(d: dict) -> bool:
    return any(isinstance(k, str) and (_RNN_KEY.match(k) or _SCRATCH_KEY.match(k)) for k in d)


def read_torch_file(path, cell: str | None = None) -> Parts:
    """Parts of a .pt/.pth state dict (possibly inside a dict with other entries) or a .safetensors file."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load
        try:
            obj = dict(st_load(path.read_bytes()))
        except (SafetensorError, ValueError, OSError, RuntimeError) as e:
            raise ImportRefused(f"{path.name} is not a readable safetensors file ({e})") from None
    else:
        obj = _torch_load(path)
    if isinstance(obj, (torch.Tensor, list, tuple)) or not isinstance(obj, dict):
        raise ImportRefused(f"{path.name} holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    found = [(w, d) for w, d in _state_dicts(obj) if _is_weights(d)]
    if not found:
        raise ImportRefused(f"{path.name} holds no recurrent layer: expected PyTorch's weight_ih_l0, weight_hh_l0, "
                            f"... (nn.LSTM/GRU/RNN) or d2l's W_xh, W_hh, b_h; found {_listing(map(str, obj)) or 'nothing'}")
    if len(found) > 1:
        raise ImportRefused(f"{path.name} holds more than one state dict with recurrent weights: "
                            + _listing(w or "the top level" for w, _ in found))
    where, sd = found[0]
    parts = parts_from_tensors(sd, path.name)
    if where:
        parts.conversions.insert(0, f"read the state dict at {where}; the file's other entries were left aside")
    vocabs = [(k, v) for k, v in _vocab_candidates(obj) if len(v) == parts.vocab_size]
    if vocabs and all(v == vocabs[0][1] for _, v in vocabs):
        parts.vocab = vocabs[0][1]
        parts.notices.append(f"The vocabulary comes from the file's {vocabs[0][0]!r} entry.")
    return parts


# ---------------------------------------------------------------- tensors -> Parts

def parts_from_tensors(tensors: dict, what: str) -> Parts:
    """Parts from a flat dict of named tensors: d2l's scratch names or PyTorch's nn.LSTM/GRU/RNN suffixes."""
    arrays: dict[str, np.ndarray] = {}
    aside = []  # numbers, lists and strings saved beside the weights (an epoch, the characters): no weights
    for k, v in tensors.items():
        a = as_array(v)
        if a is None:
            aside.append(str(k))
        else:
            arrays[str(k)] = a
    if any(_SCRATCH_KEY.match(k) for k in arrays) and not any(_RNN_KEY.match(k) for k in arrays):
        parts = scratch_parts(arrays, what)
    else:
        parts = module_parts(arrays, what)
    if aside:
        parts.conversions.append(f"entries that are not tensors were left aside: {_listing(aside)}")
    return parts


def _layer_index(prefix: str) -> int:
    m = re.search(r"(\d+)\.?$", prefix)
    return int(m.group(1)) if m else 0


def scratch_parts(arrays: dict[str, np.ndarray], what: str) -> Parts:
    """d2l's RNNLMScratch (and StackedRNNScratch, LSTMScratch): X @ W_x* + H @ W_h* + b_*, Y = H @ W_hq + b_q."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for k, a in arrays.items():
        m = _SCRATCH_KEY.match(k)
        if m:
            groups.setdefault(m.group("prefix"), {})[m.group("name")] = a
    heads = [k for k in arrays if k.endswith("W_hq")]
    if len(heads) != 1:
        raise ImportRefused(f"{what}: d2l's RNNLMScratch has one W_hq (H, V) and b_q (V,); found "
                            f"{_listing(heads) or 'no W_hq'}")
    head_prefix = heads[0][:-len("W_hq")]
    if head_prefix + "b_q" not in arrays:
        raise ImportRefused(f"{what}: {heads[0]} has no {head_prefix}b_q beside it")
    if any("W_xz" in g or "W_xr" in g for g in groups.values()):
        raise ImportRefused(f"{what} is d2l's GRUScratch, which multiplies the reset gate in before W_hh "
                            "((R ⊙ H) @ W_hh); PyTorch's GRU, and rnnviz, apply it after (R ⊙ (W_hn h + b_hn)), "
                            "so the two compute different things. d2l's GRU over nn.GRU imports exactly")
    layers, conversions = [], []
    order = sorted(groups, key=_layer_index)
    for prefix in order:
        g = groups[prefix]
        if "W_xi" in g:
            names = ["i", "f", "c", "o"]  # d2l's candidate cell C_tilde is PyTorch's g
            cell = "lstm"
        else:
            names, cell = ["h"], "rnn"
        need = [n for s in names for n in (f"W_x{s}", f"W_h{s}", f"b_{s}")]
        missing = [n for n in need if n not in g]
        if missing or set(g) - set(need):
            raise ImportRefused(f"{what}: the d2l layer {prefix or '(top level)'} holds {sorted(g)}; "
                                f"a {cell.upper()} needs {need}")
        layers.append({"weight_ih": np.concatenate([g[f"W_x{s}"] for s in names], axis=1).T,
                       "weight_hh": np.concatenate([g[f"W_h{s}"] for s in names], axis=1).T,
                       "bias_ih": np.concatenate([g[f"b_{s}"].reshape(-1) for s in names]),
                       "bias_hh": np.zeros(sum(g[f"b_{s}"].size for s in names), g[f"b_{names[0]}"].dtype)})
        where = prefix or "the top level"
        if cell == "lstm":
            conversions.append(f"{where}: W_xi|W_xf|W_xc|W_xo side by side, transposed -> rnn.weight_ih_l{len(layers) - 1} "
                               "(d2l's c is PyTorch's g), the same for W_h*, b_i|b_f|b_c|b_o -> bias_ih, bias_hh = 0")
        else:
            conversions.append(f"{where}: W_xh.T -> rnn.weight_ih_l{len(layers) - 1}, W_hh.T -> weight_hh, "
                               "b_h -> bias_ih, bias_hh = 0")
    cells = {("lstm" if "W_xi" in groups[p] else "rnn") for p in order}
    if len(cells) > 1:
        raise ImportRefused(f"{what}: its layers mix LSTM and RNN cells ({_listing(order)})")
    used = {k for k in arrays if _SCRATCH_KEY.match(k)} | {heads[0], head_prefix + "b_q"}
    leftover = [k for k in arrays if k not in used]
    if leftover:
        raise ImportRefused(f"{what}: besides d2l's scratch weights it holds {_described(arrays, leftover)}, "
                            "which rnnviz cannot place")
    conversions.append("W_hq.T -> head.weight, b_q -> head.bias")
    return Parts(cell=cells.pop(), layers=layers, embedding=None, head_weight=arrays[heads[0]].T,
                 head_bias=arrays[head_prefix + "b_q"].reshape(-1), vocab=None, source="d2l-scratch",
                 conversions=conversions,
                 notices=[f"A d2l scratch model (RNNLMScratch) reading one-hot input; its embedding is the identity "
                          f"over its {arrays[heads[0]].shape[1]} characters."])


def _rnn_layers(arrays: dict[str, np.ndarray], what: str) -> tuple[str, list[dict[str, np.ndarray]], list[str]]:
    """(module prefix, layers, conversions) of the one nn.LSTM/GRU/RNN among `arrays`."""
    found: dict[str, dict[int, dict[str, str]]] = {}
    for k in arrays:
        m = _RNN_KEY.match(k)
        if not m:
            continue
        if m.group("rev"):
            raise ImportRefused(f"{what} holds a bidirectional recurrent layer ({k}); rnnviz shows models that "
                                "read left to right only")
        if m.group("part") == "hr":
            raise ImportRefused(f"{what} holds an LSTM with proj_size ({k} {tuple(arrays[k].shape)}); rnnviz's "
                                "LSTM has no projection")
        found.setdefault(m.group("prefix"), {}).setdefault(int(m.group("layer")), {})[
            f"{m.group('kind')}_{m.group('part')}"] = k
    if len(found) > 1:
        raise ImportRefused(f"{what} holds more than one recurrent module ({_listing(repr(p) for p in found)}); "
                            "rnnviz reads models with one nn.LSTM, nn.GRU or nn.RNN")
    prefix, by_layer = next(iter(found.items()))
    if sorted(by_layer) != list(range(len(by_layer))):
        raise ImportRefused(f"{what}: the layers of {prefix!r} are numbered {sorted(by_layer)}; expected 0, 1, ...")
    layers, conversions = [], []
    for l in range(len(by_layer)):
        keys = by_layer[l]
        for need in ("weight_ih", "weight_hh"):
            if need not in keys:
                raise ImportRefused(f"{what}: layer {l} of {prefix!r} has no {need}_l{l}")
        w_ih, w_hh = arrays[keys["weight_ih"]], arrays[keys["weight_hh"]]
        layer = {"weight_ih": w_ih, "weight_hh": w_hh}
        for b in ("bias_ih", "bias_hh"):
            if b in keys:
                layer[b] = arrays[keys[b]]
            else:
                layer[b] = np.zeros(w_hh.shape[0], w_hh.dtype)
                conversions.append(f"layer {l} has no {b} (bias=False): rnn.{b}_l{l} = 0")
        layers.append(layer)
    conversions.insert(0, f"{prefix}weight_ih_l*, weight_hh_l*, bias_ih_l*, bias_hh_l* -> rnn.* "
                          "(same layout and gate order: only the names change)")
    return prefix, layers, conversions


def module_parts(arrays: dict[str, np.ndarray], what: str) -> Parts:
    """Parts of a module made of an optional embedding, one nn.LSTM/GRU/RNN and a linear head."""
    if not any(_RNN_KEY.match(k) for k in arrays):
        raise ImportRefused(f"{what} holds no recurrent layer: expected PyTorch's weight_ih_l0, weight_hh_l0, ... "
                            f"(nn.LSTM/GRU/RNN) or d2l's W_xh, W_hh, b_h; found {_described(arrays, arrays)}")
    prefix, layers, conversions = _rnn_layers(arrays, what)
    w_hh0, w_ih0 = layers[0]["weight_hh"], layers[0]["weight_ih"]
    if w_hh0.ndim != 2 or w_ih0.ndim != 2:
        raise ImportRefused(f"{what}: weight_hh_l0 {w_hh0.shape} and weight_ih_l0 {w_ih0.shape} must be matrices")
    H, inp = w_hh0.shape[1], w_ih0.shape[1]
    G = w_hh0.shape[0] // H if H else 0
    if w_hh0.shape[0] != G * H or G not in CELL_OF_GATES:
        raise ImportRefused(f"{what}: weight_hh_l0 has shape {w_hh0.shape}; an LSTM, GRU or RNN of hidden size {H} "
                            f"has {4 * H}, {3 * H} or {H} rows")
    cell = CELL_OF_GATES[G]
    rest = [k for k in arrays if not _RNN_KEY.match(k)]

    def bias_of(k):  # a Linear's weight has its bias beside it: 'decoder.weight' -> 'decoder.bias'
        b = k[: -len("weight")] + "bias"
        return b if k.endswith("weight") and b in arrays and arrays[b].shape == (arrays[k].shape[0],) else None

    matrices = [k for k in rest if arrays[k].ndim == 2 and k.endswith("weight")]
    heads = [k for k in matrices if arrays[k].shape[1] == H and bias_of(k)]
    if not heads:
        heads = [k for k in matrices if arrays[k].shape[1] == H and "embed" not in k and "encoder" not in k]
    if len(heads) != 1:
        found = _described(arrays, heads) if heads else "none"
        raise ImportRefused(f"{what}: expected one linear head of shape (V, {H}) after the recurrent layer; "
                            f"found {found}")
    head = heads[0]
    V = arrays[head].shape[0]
    head_b = bias_of(head)
    embeds = [k for k in matrices if k != head and not bias_of(k) and arrays[k].shape[1] == inp]
    if len(embeds) > 1:
        raise ImportRefused(f"{what}: more than one candidate embedding of width {inp}: {_described(arrays, embeds)}")
    notices = []
    if embeds:
        embed = embeds[0]
        if arrays[embed].shape[0] != V:
            raise ImportRefused(f"{what}: the embedding {embed} has {arrays[embed].shape[0]} rows but the head "
                                f"{head} predicts {V} characters")
        conversions.append(f"{embed} -> embed.weight")
    elif inp == V:
        embed = None
        notices.append(f"The model reads one-hot input (no embedding in the file): its embedding is the identity "
                       f"over its {V} characters.")
    else:
        raise ImportRefused(f"{what}: the first recurrent layer reads inputs of width {inp}, but there is no "
                            f"embedding ({V}, {inp}) and the head predicts {V} characters, so it is not one-hot either")
    conversions.append(f"{head} -> head.weight" + (f", {head_b} -> head.bias" if head_b else ", head.bias = 0 (the head has no bias)"))
    used = {k for k in arrays if _RNN_KEY.match(k)} | {head, head_b, embed} - {None}
    leftover = [k for k in arrays if k not in used]
    if leftover:
        raise ImportRefused(f"{what} holds tensors that are not an embedding, the recurrent layer or the head: "
                            f"{_described(arrays, leftover)}; a model with more layers computes something rnnviz "
                            "cannot show")
    if cell == "rnn":
        notices.append("Read as nn.RNN with tanh, PyTorch's default; a state dict cannot say whether "
                       "nonlinearity='relu' was used.")
    source = "d2l-rnnlm" if prefix.endswith("rnn.rnn.") and head.startswith("linear.") else "pytorch-state-dict"
    return Parts(cell=cell, layers=layers, embedding=arrays[embed] if embed else None, head_weight=arrays[head],
                 head_bias=arrays[head_b] if head_b else np.zeros(V, arrays[head].dtype), vocab=None, source=source,
                 conversions=conversions, notices=notices)
