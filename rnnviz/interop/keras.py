"""Keras models as Parts: Keras 3 `.keras` zips and Keras 2 `.h5` files, read with zipfile, JSON and h5py.

Keras itself is never imported and nothing in the file runs: the model's JSON says which layers there
are, and h5py reads their weights, which are then mapped exactly onto PyTorch's layout.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np

from ..checkpoint import MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES, _ZipReader
from ..errors import CheckpointError
from ..model import MAX_HIDDEN, MAX_LAYERS
from .parts import GATE_COUNT, MAX_EMBED, ImportRefused, Parts

ZIP_MAGIC, HDF5_MAGIC = b"PK", b"\x89HDF\r\n\x1a\n"
KERAS3_CONFIG, KERAS3_WEIGHTS = "config.json", "model.weights.h5"
MAX_ZIP_MEMBERS = 16  # a .keras holds three files (config, metadata, weights), plus assets at most
MAX_FILE_BYTES = MAX_WEIGHTS_BYTES + MAX_CONFIG_BYTES
MAX_VOCAB = 1 << 16  # more characters than any char model reads; bounds the Dense kernel we accept
RECURRENT = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}
INERT = {"Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout"}
# What becomes of the head's activation: rnnviz's head gives logits, and its softmax the probabilities
OUTPUT_ACTIVATIONS = {"softmax": "its softmax left out: the head gives logits, whose softmax is Keras's output",
                      "log_softmax": "its log_softmax left out: logits up to a constant, with the same softmax",
                      "linear": "it has no activation: its outputs are read as logits", None: None}
# Refusals that deserve their reason, beyond "rnnviz does not read it"
WHY_NOT = {
    "Lambda": "a Lambda layer holds Python code, and rnnviz never runs code from a model file",
    "Bidirectional": "a bidirectional layer reads the text backwards too; rnnviz's cells read left to right",
    "Conv1D": "rnnviz shows recurrent cells only; a convolution has no place in its model",
    "Attention": "rnnviz shows recurrent cells only; attention has no place in its model",
    "MultiHeadAttention": "rnnviz shows recurrent cells only; attention has no place in its model",
    "Masking": "a Masking layer skips time steps, which rnnviz's cells never do",
    "Sequential": "a model inside a model: save the inner layers as one flat model",
    "Functional": "a model inside a model: save the inner layers as one flat model",
}
# Keras 3 saves a layer's weights under layers/<class name in snake case, _1, _2 ... for repeats>;
# a recurrent layer's live under its cell, and a TimeDistributed layer's under its inner layer.
SUBGROUP = {"LSTM": "cell", "GRU": "cell", "SimpleRNN": "cell", "TimeDistributed": "layer"}


def read_keras(path) -> Parts:
    """Parts of a Keras 3 `.keras` or Keras 2 `.h5` model (by content, not by name); ImportRefused else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as e:
        raise ImportRefused(f"cannot read {path.name}: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES:
        raise ImportRefused(f"{path.name} is {size / 2**20:,.0f} MB; rnnviz reads Keras files of at most "
                            f"{MAX_FILE_BYTES // 2**20} MB")
    if magic.startswith(ZIP_MAGIC):
        return _read_keras3(path)
    if magic == HDF5_MAGIC:
        return _read_h5(path)
    raise ImportRefused(f"{path.name} is neither a Keras 3 .keras file (a zip) nor an HDF5 .h5 file")


def _snake(name: str) -> str:
    """Keras's to_snake_case, which names a layer's group in a .keras weights file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_keras3(path: Path) -> Parts:
    """A Keras 3 zip: config.json (the model) and model.weights.h5 (its variables by layer)."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ImportRefused(f"{path.name} is not a readable zip (truncated?), so not a .keras model") from None
    with z:
        infos = z.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ImportRefused(f"{path.name} holds {len(infos):,} files; a .keras model holds a few")
        members = {i.filename: i for i in infos}
        if KERAS3_CONFIG not in members:
            raise ImportRefused(f"{path.name} is a zip without {KERAS3_CONFIG}, so not a Keras 3 model")
        if KERAS3_WEIGHTS not in members:
            sharded = " (its weights are sharded; save it unsharded)" if "model.weights.json" in members else ""
            raise ImportRefused(f"{path.name} holds no {KERAS3_WEIGHTS}{sharded}")
        reader = _ZipReader(z)  # checkpoint's bounded reader: a zip bomb stops at the size limit
        try:
            config_bytes = reader.read(members[KERAS3_CONFIG], KERAS3_CONFIG)
            weights_bytes = reader.read(members[KERAS3_WEIGHTS], KERAS3_WEIGHTS)
        except CheckpointError as e:  # the reader's words, as an import's refusal
            raise ImportRefused(f"{path.name}: {e}") from None
    plan = _understand(_parse_json(config_bytes, f"{KERAS3_CONFIG} in {path.name}"))
    with _open_h5(io.BytesIO(weights_bytes), f"{KERAS3_WEIGHTS} in {path.name}") as h5:
        arrays = [_keras3_weights(h5, layer, shapes) for layer, shapes in plan.expected()]
    return plan.parts(arrays, "keras3")


def _read_h5(path: Path) -> Parts:
    """A legacy .h5 (Keras 2, or Keras 3's model.save('x.h5')): attribute model_config, group model_weights."""
    with _open_h5(path, path.name) as h5:
        if "model_config" not in h5.attrs:
            if "layer_names" in h5.attrs or ("layers" in h5 and "vars" in h5):
                raise ImportRefused(f"{path.name} holds weights only (model.save_weights), without the model's "
                                    "JSON; save the whole model with model.save('model.keras')")
            raise ImportRefused(f"{path.name} is an HDF5 file but not a Keras model (it has no model_config)")
        plan = _understand(_parse_json(_attr_bytes(h5.attrs["model_config"]), f"the model_config of {path.name}"))
        weights = _hard_child(h5, "model_weights")
        if not isinstance(weights, h5py.Group):
            raise ImportRefused(f"{path.name} has a model_config but no model_weights group")
        arrays = [_h5_weights(weights, layer, shapes) for layer, shapes in plan.expected()]
    return plan.parts(arrays, "keras2-h5")


def _attr_bytes(value) -> bytes:
    """An HDF5 string attribute (str, bytes or a numpy scalar of either, by h5py and file version) as bytes."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value)
    raise ImportRefused("the file's model_config is not a string")


def _parse_json(data: bytes, what: str) -> dict:
    if len(data) > MAX_CONFIG_BYTES:
        raise ImportRefused(f"{what} is larger than {MAX_CONFIG_BYTES // 2**20} MB")
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ImportRefused(f"{what} is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ImportRefused(f"{what} does not describe a Keras model")
    return config


class _open_h5:
    """h5py.File as a context manager whose failures (truncated, not HDF5) are one ImportRefused."""

    def __init__(self, source, what: str):
        self.source, self.what, self.f = source, what, None

    def __enter__(self) -> h5py.File:
        try:
            self.f = h5py.File(self.source, "r")
        except (OSError, ValueError):
            raise ImportRefused(f"{self.what} is not a readable HDF5 file (truncated or corrupt?)") from None
        return self.f

    def __exit__(self, kind, value, tb):
        self.f.close()
        # h5py raises these for a damaged object deep inside a file that opened
        if kind is not None and not issubclass(kind, ImportRefused) and issubclass(kind, (OSError, KeyError, ValueError)):
            raise ImportRefused(f"{self.what} cannot be read (truncated or corrupt?): {value}") from None
        return False


# ---------------------------------------------------------------- the model's JSON

def _understand(config: dict) -> _Plan:
    """The plan of a model's JSON, or an ImportRefused that says why it is not one rnnviz reads."""
    try:
        return _plan(_chain(config))
    except RecursionError:
        raise ImportRefused("the model's JSON is nested too deeply to be a Keras model") from None


def _layer_name(layer: dict) -> str:
    """The layer's own name, as its config gives it."""
    cfg = layer.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return name if isinstance(name, str) else str(layer.get("name", "?"))


def _inbound(layer: dict) -> list[str]:
    """Names of the layers whose outputs a functional layer reads as its inputs (Keras 3 and Keras 2
    spellings); Keras 3's keyword arguments (an LSTM's `mask`) are not inputs."""
    names: list[str] = []

    def walk(obj):
        if isinstance(obj, dict):
            cfg = obj.get("config")
            history = cfg.get("keras_history") if obj.get("class_name") == "__keras_tensor__" and isinstance(cfg, dict) else None
            if isinstance(history, list) and history:
                names.append(str(history[0]))
                return
            for k, v in obj.items():
                if k != "kwargs":
                    walk(v)
        elif isinstance(obj, list):
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):  # Keras 2: [name, node, tensor, kwargs]
                names.append(obj[0])
                return
            for v in obj:
                walk(v)

    walk(layer.get("inbound_nodes", []))
    return names


def _chain(config: dict) -> list[dict]:
    """The model's layers in order, from a Sequential or a functional model that is a single chain."""
    kind, body = config.get("class_name"), config.get("config")
    if kind == "Sequential":
        layers = body if isinstance(body, list) else body.get("layers") if isinstance(body, dict) else None
        if not isinstance(layers, list):
            raise ImportRefused("the Sequential model's JSON lists no layers")
        return [l for l in layers if isinstance(l, dict)]
    if kind in ("Functional", "Model") and isinstance(body, dict) and isinstance(body.get("layers"), list):
        layers = [l for l in body["layers"] if isinstance(l, dict)]
        masking = any(l.get("class_name") == "Embedding" and isinstance(l.get("config"), dict)
                      and l["config"].get("mask_zero") for l in layers)
        if masking:  # Embedding(mask_zero=True) adds the op `ids != 0`, whose output only feeds the masks
            layers = [l for l in layers if l.get("class_name") != "NotEqual"]
        for prev, layer in pairwise(layers):
            if _inbound(layer) != [_layer_name(prev)]:
                raise ImportRefused(f"the functional model is not one chain of layers: {_layer_name(layer)!r} reads "
                                    f"{_inbound(layer) or 'nothing'}, not just {_layer_name(prev)!r}")
        return layers
    raise ImportRefused(f"the file holds a {kind!r} model: its forward pass is Python code, which rnnviz never "
                        "runs; rnnviz reads a Sequential or functional chain of Keras's own layers")


def _custom(obj) -> str | None:
    """The name of the first custom (user-registered) object inside a layer's JSON, if any."""
    if isinstance(obj, dict):
        module, reg = obj.get("module"), obj.get("registered_name")
        if "class_name" in obj and (obj.get("class_name") == "function" or isinstance(reg, str) and ">" in reg
                                    or ("module" in obj and not (isinstance(module, str)
                                                                 and module.split(".")[0] in ("keras", "tf_keras")))):
            label = obj.get("config") if obj.get("class_name") == "function" else reg or obj.get("class_name")
            return str(label)
        for v in obj.values():
            found = _custom(v)
            if found:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _custom(v)
            if found:
                return found
    return None


class _Plan:
    """What the chain of layers means: the embedding, the recurrent layers and the head, with the words."""

    def __init__(self):
        self.embedding: dict | None = None
        self.recurrent: list[dict] = []
        self.head: dict | None = None
        self.input_width = None  # the last number of the input's shape, where the JSON says it
        self.conversions: list[str] = []
        self.notices: list[str] = []

    @property
    def weighted(self) -> list[dict]:
        return ([self.embedding] if self.embedding else []) + self.recurrent + [self.head]

    def expected(self) -> list[tuple[dict, dict[str, tuple[int, ...]]]]:
        """(layer, role -> shape) for every weighted layer, in order."""
        V = self.head["config"]["units"]
        width = self.embedding["output_dim"] if self.embedding else V  # one-hot input is V wide
        out = []
        for layer in self.weighted:
            out.append((layer, _expected(layer, width, V)))
            if layer["class_name"] in RECURRENT:
                width = layer["config"]["units"]
        return out

    def parts(self, arrays: list[dict[str, np.ndarray]], source: str) -> Parts:
        """Parts from each weighted layer's arrays (in self.weighted's order), mapped to PyTorch's layout."""
        conversions = list(self.conversions)
        if any(a.dtype == np.float64 for w in arrays for a in w.values()):
            conversions.append("float64 weights rounded to float32")
        arrays = [{k: v.astype(np.float32) for k, v in w.items()} for w in arrays]
        embedding = arrays.pop(0)["embeddings"] if self.embedding else None
        head_w = arrays.pop()
        cell = RECURRENT[self.recurrent[0]["class_name"]]
        layers = [_to_torch(cell, layer, w, conversions) for layer, w in zip(self.recurrent, arrays)]
        head, V = self.head, self.head["config"]["units"]
        conversions.append(f"{head['class_name']} {_layer_name(head)!r}: kernel (H, V) transposed to the head's "
                           "weight (V, H)"
                           + ("" if "bias" in head_w else "; it has no bias (use_bias=False), so the head's bias is 0")
                           + f"; {OUTPUT_ACTIVATIONS[head['activation'] or 'linear']}")
        return Parts(cell=cell, layers=layers, embedding=embedding,
                     head_weight=np.ascontiguousarray(head_w["kernel"].T),
                     head_bias=head_w.get("bias", np.zeros(V, np.float32)), vocab=None, source=source,
                     conversions=conversions, notices=list(self.notices))


def _policy(layer: dict) -> str:
    """The name of a layer's dtype policy ('float32', 'mixed_float16', 'bfloat16' ...), by either Keras."""
    dtype = layer["config"].get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name") if isinstance(dtype.get("config"), dict) else None
    return dtype if isinstance(dtype, str) else "float32"


def _activation(cfg: dict, key: str):
    value = cfg.get(key, "linear")
    return value if isinstance(value, str) or value is None else "a custom function"


def _check_recurrent(layer: dict) -> None:
    """An ImportRefused for any option of an LSTM/GRU/SimpleRNN that PyTorch's cell does not compute."""
    cls, cfg, name = layer["class_name"], layer["config"], _layer_name(layer)
    what = f"{cls} layer {name!r}"
    act = _activation(cfg, "activation")
    if act != "tanh":
        raise ImportRefused(f"{what} uses activation {act!r}; rnnviz's cells compute tanh")
    if cls != "SimpleRNN" and _activation(cfg, "recurrent_activation") != "sigmoid":
        raise ImportRefused(f"{what} uses recurrent_activation {_activation(cfg, 'recurrent_activation')!r}; "
                            "rnnviz's gates compute sigmoid")
    for flag, why in (("stateful", "carries its state from batch to batch"), ("go_backwards", "reads the text backwards"),
                      ("time_major", "takes time-major input")):
        if cfg.get(flag):
            raise ImportRefused(f"{what} has {flag}=True: it {why}, which rnnviz's cells do not")
    if cls == "GRU" and not cfg.get("reset_after", False):
        raise ImportRefused(f"{what} has reset_after=False: its reset gate acts before the recurrent weights, which "
                            "PyTorch's GRU (and so rnnviz) cannot compute; retrain it with reset_after=True "
                            "(the default of Keras 3 and tf.keras 2)")
    units = cfg.get("units")
    if not isinstance(units, int) or isinstance(units, bool) or not 1 <= units <= MAX_HIDDEN:
        raise ImportRefused(f"{what} has {units!r} units; rnnviz shows from 1 to {MAX_HIDDEN}")


def _plan(layers: list[dict]) -> _Plan:
    """Check the chain is Embedding? -> 1..3 recurrent layers -> Dense (Dropout anywhere), and say so."""
    plan, used = _Plan(), {}
    for layer in layers:
        cls, cfg = layer.get("class_name"), layer.get("config")
        if not isinstance(cls, str) or not isinstance(cfg, dict):
            raise ImportRefused("a layer in the model's JSON has no class_name or config")
        name = _layer_name(layer)
        key = _snake(cls)
        used[key] = used.get(key, -1) + 1
        layer = {**layer, "h5_path": key if used[key] == 0 else f"{key}_{used[key]}"}
        custom = _custom(layer)
        if custom:
            raise ImportRefused(f"layer {name!r} ({cls}) uses the custom object {custom!r}: its code is not in the "
                                "file, and rnnviz never runs code from a model file")
        inner = cfg.get("layer") if cls == "TimeDistributed" else None
        if cls == "InputLayer" or cls in RECURRENT and not plan.recurrent:
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")  # Keras 3 / Keras 2
            plan.input_width = shape[-1] if isinstance(shape, list) and shape else plan.input_width
        if cls == "InputLayer":
            continue
        if cls in INERT:
            plan.conversions.append(f"{cls} {name!r} left out: it does nothing at inference")
            continue
        if plan.head is not None:
            act = _activation(cfg, "activation")
            if cls == "Activation" and act in OUTPUT_ACTIVATIONS and plan.head["activation"] in ("linear", None):
                # Dense then Activation('softmax') is Dense(activation='softmax'); a second softmax is not
                plan.head["activation"] = act
                plan.conversions.append(f"Activation {name!r} after the Dense layer read as the Dense layer's own")
                continue
            raise ImportRefused(f"{cls} {name!r} comes after the Dense layer; rnnviz's head is one linear layer "
                                "(with softmax or none) and nothing after it")
        if cls == "Embedding":
            if plan.embedding or plan.recurrent:
                raise ImportRefused(f"Embedding {name!r} is not the first layer; rnnviz reads one embedding, first")
            if cfg.get("quantization_config") or cfg.get("lora_rank") or cfg.get("sparse"):
                raise ImportRefused(f"Embedding {name!r} is quantized, LoRA or sparse; rnnviz reads plain float weights")
            plan.embedding = {**layer, "input_dim": cfg.get("input_dim"), "output_dim": cfg.get("output_dim")}
            if cfg.get("mask_zero"):
                plan.notices.append(f"The Keras Embedding {name!r} has mask_zero=True: Keras skips id 0 (padding) "
                                    "and carries the state over it, but rnnviz reads id 0 like any other id, so "
                                    "after the character with id 0 the probabilities differ from Keras's.")
            continue
        if cls in RECURRENT:
            if plan.recurrent and RECURRENT[cls] != RECURRENT[plan.recurrent[0]["class_name"]]:
                raise ImportRefused(f"the model mixes {plan.recurrent[0]['class_name']} and {cls} layers; "
                                    "rnnviz's layers are all one kind of cell")
            if plan.recurrent and not plan.recurrent[-1]["config"].get("return_sequences"):
                raise ImportRefused(f"{plan.recurrent[-1]['class_name']} {_layer_name(plan.recurrent[-1])!r} "
                                    "has return_sequences=False but another recurrent layer reads it")
            _check_recurrent(layer)
            if plan.recurrent and layer["config"]["units"] != plan.recurrent[0]["config"]["units"]:
                raise ImportRefused(f"the recurrent layers have {plan.recurrent[0]['config']['units']} and "
                                    f"{layer['config']['units']} units; rnnviz's layers all have one size")
            plan.recurrent.append(layer)
            continue
        if cls == "Dense" or (cls == "TimeDistributed" and isinstance(inner, dict)
                              and inner.get("class_name") == "Dense" and isinstance(inner.get("config"), dict)):
            dense = inner["config"] if inner else cfg
            if not plan.recurrent:
                raise ImportRefused(f"Dense {name!r} comes before any recurrent layer; rnnviz's model is "
                                    "embedding, then cells, then one linear head")
            act = _activation(dense, "activation")
            if act not in OUTPUT_ACTIVATIONS:
                raise ImportRefused(f"Dense {name!r} uses activation {act!r}; rnnviz reads a head with softmax "
                                    "or no activation, as logits")
            if dense.get("quantization_config") or dense.get("lora_rank"):
                raise ImportRefused(f"Dense {name!r} is quantized or LoRA; rnnviz reads plain float weights")
            units = dense.get("units")
            if not isinstance(units, int) or not 2 <= units <= MAX_VOCAB:
                raise ImportRefused(f"Dense {name!r} predicts {units!r} classes; rnnviz reads from 2 to {MAX_VOCAB:,}")
            plan.head = {**layer, "config": {**cfg, "units": units}, "activation": act,
                         "use_bias": dense.get("use_bias", True)}
            continue
        why = WHY_NOT.get(cls) or WHY_NOT.get(str(inner.get("class_name")) if isinstance(inner, dict) else "")
        raise ImportRefused(f"layer {name!r} is a {cls}, which rnnviz does not read"
                            + (f": {why}" if why else "; it reads Embedding, LSTM/GRU/SimpleRNN, Dense and Dropout"))
    _check_shape(plan)
    return plan


def _check_shape(plan: _Plan) -> None:
    """The chain's sizes fit rnnviz: 1..3 recurrent layers, a head, one vocabulary for input and output."""
    if not plan.recurrent:
        raise ImportRefused("the model has no LSTM, GRU or SimpleRNN layer")
    if len(plan.recurrent) > MAX_LAYERS:
        raise ImportRefused(f"the model has {len(plan.recurrent)} recurrent layers; rnnviz shows at most {MAX_LAYERS}")
    if plan.head is None:
        raise ImportRefused("the model has no Dense layer after its recurrent layers: rnnviz needs the head that "
                            "predicts the next character")
    V = plan.head["config"]["units"]
    last = plan.recurrent[-1]
    if not last["config"].get("return_sequences"):
        plan.notices.append(f"The Keras model predicts only after the last character of a window "
                            f"({last['class_name']} {_layer_name(last)!r} has return_sequences=False); rnnviz "
                            "predicts after every character with the same weights, and at a window's end the "
                            "two agree.")
    if plan.embedding:
        n, e = plan.embedding["input_dim"], plan.embedding["output_dim"]
        if n != V:
            raise ImportRefused(f"the Embedding reads {n!r} ids but the Dense layer predicts {V} characters; "
                                "rnnviz needs one vocabulary for both")
        if not isinstance(e, int) or not 1 <= e <= MAX_EMBED:
            raise ImportRefused(f"the Embedding's width is {e!r}; rnnviz's embedding is 1 to {MAX_EMBED} wide")
    else:
        width = plan.input_width
        if isinstance(width, int) and width != V:
            raise ImportRefused(f"the model has no Embedding and reads {width} numbers per step, but its Dense layer "
                                f"predicts {V} characters; rnnviz reads such a model as one-hot input over its "
                                "characters, so the two must be equal")
        if V > MAX_EMBED:
            raise ImportRefused(f"the model reads one-hot input over {V} characters; rnnviz's embedding holds at "
                                f"most {MAX_EMBED}")
        plan.notices.append("The Keras model has no Embedding: rnnviz reads its input as one-hot vectors over its "
                            f"{V} characters, in the Dense layer's order.")
    policies = sorted({_policy(layer) for layer in plan.weighted} - {"float32"})
    if policies:
        plan.notices.append(f"Keras computed this model in {' and '.join(policies)}; rnnviz computes in float32, "
                            "so its probabilities differ from Keras's by that rounding.")
    plan.notices.append("The vocabulary is not in Keras files: give it at import (--vocab), the characters "
                        "in the Keras model's id order.")


# ---------------------------------------------------------------- weights

def _expected(layer: dict, inp: int, V: int) -> dict[str, tuple[int, ...]]:
    """Role -> shape of a weighted layer's variables, in the order Keras creates them."""
    cls, cfg = layer["class_name"], layer["config"]
    if cls == "Embedding":
        return {"embeddings": (layer["input_dim"], layer["output_dim"])}
    if cls in RECURRENT:
        H, G = cfg["units"], GATE_COUNT[RECURRENT[cls]]
        shapes = {"kernel": (inp, G * H), "recurrent_kernel": (H, G * H)}
        if cfg.get("use_bias", True):
            shapes["bias"] = (2, G * H) if cls == "GRU" else (G * H,)
        return shapes
    shapes = {"kernel": (inp, V)}
    if layer["use_bias"]:
        shapes["bias"] = (V,)
    return shapes


def _read_dataset(obj, what: str, shape: tuple[int, ...], bfloat16: bool = False) -> np.ndarray:
    """A float array from an h5py object, after checking it is a plain dataset of the expected shape (so a
    hostile file can make us read no more than the model's own size, nor any other file on this machine)."""
    if not isinstance(obj, h5py.Dataset):
        raise ImportRefused(f"{what} is missing from the weights (or behind a link, which rnnviz does not follow)")
    if obj.is_virtual or obj.external:
        raise ImportRefused(f"{what} points at data outside the file; refusing it")
    if tuple(obj.shape) != tuple(shape):
        raise ImportRefused(f"{what} has shape {tuple(obj.shape)}; the model's JSON implies {tuple(shape)}")
    # Keras writes bfloat16 as 2-byte opaque data (with attribute dtype="bfloat16" in a .keras file)
    bf16 = obj.attrs.get("dtype") in ("bfloat16", b"bfloat16") or bfloat16
    if bf16 and obj.dtype.itemsize == 2 and obj.dtype.kind in "Vu":
        bits = np.frombuffer(np.ascontiguousarray(obj[()]).tobytes(), dtype=np.uint16).reshape(shape)
        return (bits.astype(np.uint32) << 16).view(np.float32)  # bfloat16 is float32's top half: exact
    if obj.dtype not in (np.float16, np.float32, np.float64):
        raise ImportRefused(f"{what} has dtype {obj.dtype}; expected floating-point weights")
    return np.asarray(obj[()])


def _hard_child(group, key: str):
    """group[key] if every step of the path `key` is stored in this file (no soft or external link, which
    could lead into another file on this machine), else None."""
    node = group
    for part in key.split("/"):
        if not isinstance(node, h5py.Group) or part in ("", "."):
            return None
        try:
            link = node.get(part, getlink=True)
        except (KeyError, ValueError, TypeError):
            return None
        if not isinstance(link, h5py.HardLink):
            return None
        node = node[part]
    return node


def _keras3_group(h5: h5py.File, layer: dict):
    """The `vars` group that holds a layer's variables in a Keras 3 weights file."""
    path, name = layer["h5_path"], _layer_name(layer)
    root = _hard_child(h5, "layers")
    if root is None:  # files of tf.keras 2.13 to 2.15 name it so, as Keras 3's own loader knows
        root = _hard_child(h5, "_layer_checkpoint_dependencies")
    node = root
    for key in (path, SUBGROUP.get(layer["class_name"])):
        if key:
            node = _hard_child(node, key)
    outer_vars = _hard_child(root, f"{path}/vars") if isinstance(root, h5py.Group) else None
    label = outer_vars.attrs.get("name") if isinstance(outer_vars, h5py.Group) else None
    if isinstance(label, bytes):
        label = label.decode("utf-8", "replace")
    if label is not None and str(label) != name:
        raise ImportRefused(f"the weights file does not match config.json: layers/{path} holds {label!r}, "
                            f"not {name!r}")
    group = _hard_child(node, "vars") if isinstance(node, h5py.Group) else None
    if group is None:
        raise ImportRefused(f"the weights of {layer['class_name']} {name!r} are missing (no layers/{path})")
    return group


def _keras3_weights(h5: h5py.File, layer: dict, shapes: dict) -> dict[str, np.ndarray]:
    """A layer's variables from a Keras 3 weights file, where they are numbered in creation order."""
    group, name = _keras3_group(h5, layer), _layer_name(layer)
    if len(group) != len(shapes):
        raise ImportRefused(f"{layer['class_name']} {name!r} has {len(group)} weight arrays in the file; "
                            f"its JSON implies {len(shapes)} ({', '.join(shapes)})")
    return {role: _read_dataset(_hard_child(group, str(i)), f"{name}'s {role}", shape, "bfloat16" in _policy(layer))
            for i, (role, shape) in enumerate(shapes.items())}


def _attr_list(group: h5py.Group, name: str) -> list[str]:
    """A list of strings Keras stored in attribute `name`, or in `name0`, `name1` ... when it was too long
    for one HDF5 header."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(group.attrs[f"{name}{len(chunks)}"])
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
            for chunk in chunks for n in np.atleast_1d(chunk) if isinstance(n, (str, bytes))]


def _h5_weights(weights: h5py.Group, layer: dict, shapes: dict) -> dict[str, np.ndarray]:
    """A layer's variables from a legacy .h5: its group lists them by name in attribute weight_names."""
    name = _layer_name(layer)
    group = _hard_child(weights, name)
    if not isinstance(group, h5py.Group):
        raise ImportRefused(f"the weights of {layer['class_name']} {name!r} are missing from model_weights (or "
                            "behind a link, which rnnviz does not follow)")
    names = _attr_list(group, "weight_names")
    roles = {n.rsplit("/", 1)[-1].split(":")[0]: n for n in names}  # 'lstm/lstm_cell/kernel:0' -> kernel
    if sorted(roles) != sorted(shapes) or len(names) != len(shapes):
        raise ImportRefused(f"{layer['class_name']} {name!r} holds weights {sorted(roles) or 'none'}; its JSON "
                            f"implies {sorted(shapes)}")
    out = {}
    for role, shape in shapes.items():
        obj = _hard_child(group, roles[role])
        out[role] = _read_dataset(obj, f"{name}'s {role}", shape, "bfloat16" in _policy(layer))
    return out


def _to_torch(cell: str, layer: dict, w: dict[str, np.ndarray], conversions: list[str]) -> dict[str, np.ndarray]:
    """One recurrent layer's Keras variables as PyTorch's weight_ih, weight_hh, bias_ih, bias_hh."""
    cls, name = layer["class_name"], _layer_name(layer)
    H = w["recurrent_kernel"].shape[0]
    G = GATE_COUNT[cell]
    w_ih, w_hh = w["kernel"].T, w["recurrent_kernel"].T  # (G*H, in), (G*H, H)
    bias = w.get("bias")
    b_ih = np.zeros(G * H, w_ih.dtype) if bias is None else (bias[0] if bias.ndim == 2 else bias)
    b_hh = np.zeros(G * H, w_ih.dtype) if bias is None or bias.ndim == 1 else bias[1]
    words = f"{cls} {name!r}: kernel and recurrent_kernel transposed to weight_ih and weight_hh"
    if cell == "gru":
        order = np.concatenate([np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)])  # z,r,h -> r,z,n
        w_ih, w_hh, b_ih, b_hh = w_ih[order], w_hh[order], b_ih[order], b_hh[order]
        words += ("; gate blocks reordered from Keras's z, r, h to PyTorch's r, z, n"
                  + ("" if bias is None else "; bias row 0 (input) became bias_ih and row 1 (recurrent) bias_hh"))
    elif cell == "lstm":
        words += "; Keras's gate order i, f, c, o is PyTorch's i, f, g, o"
    if bias is None:
        words += "; it has no bias (use_bias=False), so both biases are 0"
    elif bias.ndim == 1:
        words += "; its one bias became bias_ih, and bias_hh is 0"
    conversions.append(words)
    return {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
