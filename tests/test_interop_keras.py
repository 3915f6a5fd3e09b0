"""Keras models read by rnnviz.interop.keras, checked against Keras 3 itself (torch backend) predicting."""
import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest
import torch

from rnnviz import checkpoint
from rnnviz.interop.keras import read_keras
from rnnviz.interop.parts import ImportRefused, build_model

V = 9
CHARS = list("abcdefghi")  # the Keras model's ids 0..8 in order; rnnviz puts its unknown symbol before them


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on its torch backend: a test dependency only (importing it takes seconds, so only here)."""
    os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError:
        if os.environ.get("CI"):  # CI installs requirements-dev.txt: a missing keras there is a failure
            raise
        pytest.skip("keras is not installed (pip install -r requirements-dev.txt)")
    assert int(keras.__version__.split(".")[0]) >= 3, f"Keras 3 is needed, not {keras.__version__}"
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was already imported with the {keras.backend.backend()} backend")
    return keras


def randomize(model, seed):
    """Weights drawn at a scale where every gate matters (Keras starts biases at 0, which would hide them)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def tutorial(keras, cell, units, seed, dense_activation="softmax", **rnn_kwargs):
    """Embedding -> stacked `cell` layers -> Dropout -> Dense, as the Keras text tutorials build it."""
    L = keras.layers
    rnn = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.SimpleRNN}[cell]
    layers = [keras.Input((None,), dtype="int32"), L.Embedding(V, 5)]
    layers += [rnn(u, return_sequences=True, **rnn_kwargs) for u in units]
    layers += [L.Dropout(0.3), L.Dense(V, activation=dense_activation)]
    model = keras.Sequential(layers)
    return randomize(model, seed)


def ours(path, ids):
    """rnnviz's next-character probabilities over the source's own ids, (T, V), and the Parts."""
    parts = read_keras(path)
    model, _ = build_model(parts, CHARS)
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(ids[None] + 1))  # source id i is rnnviz's id i + 1
    probs = torch.softmax(logits[0], -1).double().numpy()  # float32, as the app computes
    assert np.all(probs[:, 0] == 0)  # the added unknown symbol takes nothing from the model's characters
    return probs[:, 1:], parts


def largest_difference(model, path, ids, logits=False):
    """Save `model` at `path`, read it back with rnnviz, and return max |p_ours - p_keras| and the Parts;
    `logits`: the model's Dense has no activation, so Keras's probabilities are the softmax of its output."""
    model.save(path)
    theirs = np.asarray(model.predict(ids[None], verbose=0), np.float64)[0]  # (T, V)
    if logits:
        theirs = torch.softmax(torch.as_tensor(theirs), -1).numpy()
    probs, parts = ours(path, ids)
    return float(np.abs(probs - theirs).max()), parts


IDS = np.random.default_rng(0).integers(0, V, 40)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_next_character_probabilities_equal_keras_predict(keras, tmp_path, suffix):
    """Embedding -> 1 to 3 LSTM / GRU / SimpleRNN -> Dense, saved as .keras and as legacy .h5: rnnviz's
    probabilities are Keras's own model.predict on the same ids, within 1e-5."""
    cases = {"lstm-2": tutorial(keras, "lstm", [6, 6], seed=1),
             "gru-3": tutorial(keras, "gru", [5, 5, 5], seed=2),
             "rnn-1-nobias-linear": tutorial(keras, "rnn", [7], seed=3, dense_activation=None, use_bias=False),
             "lstm-1-timedistributed": randomize(keras.Sequential([
                 keras.Input((None,), dtype="int32"), keras.layers.Embedding(V, 5), keras.layers.Dropout(0.2),
                 keras.layers.LSTM(4, return_sequences=True), keras.layers.TimeDistributed(keras.layers.Dense(V)),
                 keras.layers.Activation("softmax")]), seed=9)}
    for name, model in cases.items():
        diff, parts = largest_difference(model, tmp_path / f"{name}{suffix}", IDS, logits="linear" in name)
        assert diff < 1e-5, f"{name}{suffix}: rnnviz differs from Keras by {diff:.2e}"
        assert parts.source == ("keras3" if suffix == ".keras" else "keras2-h5")
        assert parts.vocab is None and any("not in Keras files" in n for n in parts.notices)
        assert any("Dropout" in c for c in parts.conversions)


@pytest.mark.slow
def test_one_hot_functional_model_of_keras_text_generation_example(keras, tmp_path):
    """Keras's own character-level example: one-hot input (no Embedding) -> LSTM (last step only) -> Dense
    softmax, built with the functional API. rnnviz reads it as an identity embedding and agrees at the
    window's end, where Keras predicts."""
    L = keras.layers
    inputs = keras.Input((None, V))
    outputs = L.Dense(V, activation="softmax")(L.LSTM(8)(inputs))
    model = randomize(keras.Model(inputs, outputs), seed=4)
    path = tmp_path / "onehot.keras"
    model.save(path)
    theirs = model.predict(np.eye(V, dtype=np.float32)[IDS][None], verbose=0)[0]  # (V,)
    probs, parts = ours(path, IDS)
    assert parts.embedding is None
    assert any("one-hot" in n for n in parts.notices) and any("return_sequences=False" in n for n in parts.notices)
    assert np.abs(probs[-1] - theirs).max() < 1e-5


@pytest.mark.slow
def test_gru_gate_order_and_bias_rows_matter(keras, tmp_path):
    """The GRU's z/r swap and its two bias rows each change the answer: read without the reorder, or with
    the rows swapped, rnnviz would miss Keras by far more than 1e-5 (so the test above can fail)."""
    model = tutorial(keras, "gru", [6], seed=5)
    path = tmp_path / "gru.keras"
    model.save(path)
    theirs = model.predict(IDS[None], verbose=0)[0]
    parts = read_keras(path)
    H = 6
    order = np.r_[H:2 * H, 0:H, 2 * H:3 * H]  # undo r, z, n -> z, r, n
    layer = parts.layers[0]
    for broken in ({k: v[order] for k, v in layer.items()},
                   {**layer, "bias_ih": layer["bias_hh"], "bias_hh": layer["bias_ih"]}):
        parts.layers[0] = broken
        model_b, _ = build_model(parts, CHARS)
        with torch.no_grad():
            probs = torch.softmax(model_b(torch.as_tensor(IDS[None] + 1))[0][0], -1).double().numpy()[:, 1:]
        assert np.abs(probs - theirs).max() > 1e-3


@pytest.mark.slow
def test_mask_zero_notice_says_where_rnnviz_and_keras_part(keras, tmp_path):
    """Embedding(mask_zero=True), as a Sequential and as a functional model (where Keras adds an op
    `ids != 0` beside the chain for the masks): the notice's claim, measured. Equal on text without id 0;
    after id 0 Keras carries the state over it and rnnviz does not, so they differ there."""
    L = keras.layers
    inputs = keras.Input((None,), dtype="int32")
    x = L.LSTM(5, return_sequences=True)(L.Embedding(V, 5, mask_zero=True)(inputs))
    models = {"sequential": keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V, 5, mask_zero=True),
                                              L.LSTM(5, return_sequences=True), L.Dense(V, activation="softmax")]),
              "functional": keras.Model(inputs, L.Dense(V, activation="softmax")(x))}
    no_zero = IDS[IDS != 0]
    with_zero = np.r_[no_zero[:5], 0, no_zero[5:10]]
    for name, model in models.items():
        randomize(model, 10)
        path = tmp_path / f"masked-{name}.keras"
        model.save(path)
        probs, parts = ours(path, no_zero)
        assert any("mask_zero=True" in n for n in parts.notices)
        assert np.abs(probs - model.predict(no_zero[None], verbose=0)[0]).max() < 1e-5, name
        probs, _ = ours(path, with_zero)
        gap = np.abs(probs - model.predict(with_zero[None], verbose=0)[0]).max(axis=1)
        assert gap[:5].max() < 1e-5 and gap[5:].min() > 1e-4, name


def test_bfloat16_weights_become_float32_exactly(tmp_path):
    """Keras writes bfloat16 variables as 2-byte opaque data with attribute dtype='bfloat16' (its torch
    backend cannot save them yet, so the file is written here as Keras's H5IOStore writes it); each value
    is read as ml_dtypes' own bfloat16 -> float32, and the notice names the policy."""
    ml_dtypes = pytest.importorskip("ml_dtypes")  # installed with keras
    rng = np.random.default_rng(11)
    H, E = 3, 4
    values = {"embedding": [rng.normal(size=(V, E))], "lstm": [rng.normal(size=(E, 4 * H)),
              rng.normal(size=(H, 4 * H)), rng.normal(size=4 * H)], "dense": [rng.normal(size=(H, V)), rng.normal(size=V)]}
    values = {k: [v.astype(ml_dtypes.bfloat16) for v in vs] for k, vs in values.items()}
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "bfloat16"}, "registered_name": None}
    layer = lambda cls, **cfg: {"module": "keras.layers", "class_name": cls,
                                "config": {"name": cls.lower(), "dtype": policy, **cfg}}
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [
        layer("Embedding", input_dim=V, output_dim=E), layer("LSTM", units=H, return_sequences=True,
                                                               activation="tanh", recurrent_activation="sigmoid"),
        layer("Dense", units=V, activation="softmax")]}}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, arrays in values.items():
            group = f.create_group(f"layers/{name}" + ("/cell" if name == "lstm" else "")).create_group("vars")
            group.attrs["name"] = "lstm_cell" if name == "lstm" else name
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a).attrs["dtype"] = "bfloat16"
    path = tmp_path / "bf16.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", buf.getvalue())
    with h5py.File(io.BytesIO(buf.getvalue())) as f:
        assert f["layers/embedding/vars/0"].dtype.kind == "V"  # opaque, as Keras's files hold them
    parts = read_keras(path)
    f32 = {k: [np.asarray(v, np.float32) for v in vs] for k, vs in values.items()}
    assert np.array_equal(parts.embedding, f32["embedding"][0])
    assert np.array_equal(parts.layers[0]["weight_ih"], f32["lstm"][0].T)
    assert np.array_equal(parts.layers[0]["bias_ih"], f32["lstm"][2])
    assert np.array_equal(parts.head_weight, f32["dense"][0].T)
    assert any("bfloat16" in n for n in parts.notices)


@pytest.mark.slow
def test_cli_import_writes_a_checkpoint_that_predicts_as_keras(keras, tmp_path, capsys):
    """python -m rnnviz import model.keras --vocab chars.json: the checkpoint it writes loads like any other
    and predicts what Keras predicts; a refused file writes nothing and says one line."""
    from rnnviz import cli

    model = tutorial(keras, "lstm", [5, 5], seed=8)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")  # as tutorials do: the file then
    batch = np.random.default_rng(13).integers(0, V, (4, 12))                # holds the optimizer's state too
    model.fit(batch[:, :-1], batch[:, 1:], epochs=1, verbose=0)
    source, vocab = tmp_path / "tutorial.keras", tmp_path / "chars.json"
    model.save(source)
    vocab.write_text(json.dumps(CHARS))
    assert cli.main(["import", str(source), "--out", str(tmp_path / "imported"), "--vocab", str(vocab), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source_format"] == "keras3" and any("i, f, c, o" in c for c in report["conversions"])
    ours_model, config = checkpoint.load(tmp_path / "imported")
    assert config["model"]["vocab"][1:] == CHARS
    with torch.no_grad():
        probs = torch.softmax(ours_model(torch.as_tensor(IDS[None] + 1))[0][0], -1).double().numpy()[:, 1:]
    assert np.abs(probs - model.predict(IDS[None], verbose=0)[0]).max() < 1e-5

    L = keras.layers
    keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V, 5), L.Lambda(lambda x: -x),
                      L.LSTM(5, return_sequences=True), L.Dense(V)]).save(tmp_path / "lambda.keras")
    out = tmp_path / "refused"
    assert cli.main(["import", str(tmp_path / "lambda.keras"), "--out", str(out), "--vocab", str(vocab)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Lambda" in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]


def keras2_spelling(path):
    """Rewrite a legacy .h5 written by Keras 3 in the spellings tf.keras 2 files use: weight names ending in
    ':0', byte-string attributes, a functional model called 'Model' whose inbound_nodes are
    [[[name, 0, 0, {}]]], dtypes as plain strings, no 'module' keys. (Made here: TensorFlow is not a
    test dependency. The weights, and so Keras 3's predictions, are unchanged.)"""
    def strip(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "DTypePolicy":
                return obj["config"]["name"]
            return {k: strip(v) for k, v in obj.items() if k not in ("module", "registered_name", "build_config")}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj

    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["model_config"])
        config["class_name"] = "Model"
        for layer in config["config"]["layers"]:
            inbound = _inbound_names(layer)
            layer["inbound_nodes"] = [[[name, 0, 0, {}] for name in inbound]] if inbound else []
        f.attrs["model_config"] = json.dumps(strip(config)).encode()
        weights = f["model_weights"]
        weights.attrs["layer_names"] = np.array([n.encode() for n in weights.attrs["layer_names"]])
        for name in weights.attrs["layer_names"]:
            group = weights[name.decode()]
            names = [str(n) for n in group.attrs["weight_names"]]
            for n in names:
                group.move(n, n + ":0")
            group.attrs["weight_names"] = np.array([(n + ":0").encode() for n in names])


def _inbound_names(layer):
    """Names of the layers a Keras 3 functional layer reads."""
    return [arg["config"]["keras_history"][0] for node in layer.get("inbound_nodes", [])
            for arg in node["args"] if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"]


@pytest.mark.slow
def test_keras2_spellings_of_a_functional_h5_read_the_same(keras, tmp_path):
    """A functional Embedding -> GRU -> Dense in a .h5 with tf.keras 2's spellings: same probabilities."""
    L = keras.layers
    inputs = keras.Input((None,), dtype="int32")
    x = L.GRU(6, return_sequences=True)(L.Embedding(V, 4)(inputs))
    model = randomize(keras.Model(inputs, L.Dense(V, activation="softmax")(x)), seed=7)
    path = tmp_path / "tf-keras-2.h5"
    model.save(path)
    keras2_spelling(path)
    with h5py.File(path) as f:
        assert all(n.endswith(b":0") for g in f["model_weights"].values() for n in g.attrs["weight_names"])
    probs, parts = ours(path, IDS)
    assert parts.source == "keras2-h5"
    assert np.abs(probs - model.predict(IDS[None], verbose=0)[0]).max() < 1e-5


# ---------------------------------------------------------------- hostile files

def refused(path, *words):
    """read_keras refuses `path` with one line holding `words`, and leaves its folder as it was."""
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(ImportRefused) as e:
        read_keras(path)
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    for w in words:
        assert w in message, message
    assert sorted(p.name for p in path.parent.iterdir()) == before
    return message


@pytest.mark.slow
def test_keras_models_rnnviz_cannot_compute_are_refused_by_name(keras, tmp_path):
    """A Lambda, a custom layer or activation, Bidirectional, Conv1D, reset_after=False, stateful or
    go_backwards: each .keras (and .h5) gets one line that names the layer and why."""
    L = keras.layers

    @keras.saving.register_keras_serializable(package="test_interop_keras")
    class Doubling(L.Layer):
        def call(self, x):
            return 2 * x

    @keras.saving.register_keras_serializable(package="test_interop_keras")
    def shifted_tanh(x):
        return keras.ops.tanh(x) + 0.1

    emb = lambda: [keras.Input((None,), dtype="int32"), L.Embedding(V, 5)]
    dense = lambda: L.Dense(V, activation="softmax")
    cases = {
        "lambda": (emb() + [L.Lambda(lambda x: x * 2), L.LSTM(4, return_sequences=True), dense()],
                   ["Lambda", "never runs code"]),
        "custom-layer": (emb() + [Doubling(), L.LSTM(4, return_sequences=True), dense()],
                         ["Doubling", "custom object"]),
        "custom-activation": (emb() + [L.LSTM(4, activation=shifted_tanh, return_sequences=True), dense()],
                              ["shifted_tanh", "custom object"]),
        "bidirectional": (emb() + [L.Bidirectional(L.LSTM(4, return_sequences=True)), dense()],
                          ["Bidirectional", "backwards"]),
        "conv1d": (emb() + [L.Conv1D(4, 3), L.LSTM(4, return_sequences=True), dense()], ["Conv1D"]),
        "reset-before": (emb() + [L.GRU(4, reset_after=False, return_sequences=True), dense()],
                         ["reset_after=False", "cannot compute"]),
        "relu": (emb() + [L.SimpleRNN(4, activation="relu", return_sequences=True), dense()], ["'relu'", "tanh"]),
        "backwards": (emb() + [L.LSTM(4, go_backwards=True, return_sequences=True), dense()], ["go_backwards"]),
        "relu-head": (emb() + [L.LSTM(4, return_sequences=True), L.Dense(V, activation="relu")], ["'relu'"]),
        "two-sizes": (emb() + [L.LSTM(4, return_sequences=True), L.LSTM(3, return_sequences=True), dense()],
                      ["4 and 3 units"]),
        "vocab-sizes": (emb() + [L.LSTM(4, return_sequences=True), L.Dense(V + 1, activation="softmax")],
                        [f"reads {V} ids", f"predicts {V + 1}"]),
        "not-one-hot": ([keras.Input((None, V + 2)), L.LSTM(4, return_sequences=True), dense()],
                        [f"reads {V + 2} numbers per step", f"predicts {V}"]),
        "softmax-twice": (emb() + [L.LSTM(4, return_sequences=True), dense(), L.Activation("softmax")],
                          ["Activation", "after the Dense layer"]),
    }
    for name, (layers, words) in cases.items():
        path = tmp_path / name / "model.keras"
        path.parent.mkdir()
        model = keras.Sequential(layers)
        model.save(path)
        refused(path, *words)
        if name in ("lambda", "reset-before"):
            model.save(path.with_suffix(".h5"))
            refused(path.with_suffix(".h5"), *words)


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """One small LSTM model saved both ways, for the damaged-file tests to spoil."""
    folder = tmp_path_factory.mktemp("saved")
    model = tutorial(keras, "lstm", [4], seed=6)
    model.save(folder / "ok.keras")
    model.save(folder / "ok.h5")
    return folder


def dense_kernel(f: h5py.File):
    """(group, name) of the Dense kernel in a legacy .h5 (Keras numbers layer names per process)."""
    layer = next(n for n in f["model_weights"].attrs["layer_names"] if n.startswith("dense"))
    group = f["model_weights"][layer]
    return group, next(n for n in group.attrs["weight_names"] if n.endswith("kernel"))


def copy_to(tmp_path, data: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_truncated_and_damaged_files_get_one_line(saved, tmp_path):
    """Cut short, a weights member cut short, a shape that does not match the JSON, weights pointing
    at another file on this machine: each refused, nothing read from outside."""
    keras_bytes, h5_bytes = (saved / "ok.keras").read_bytes(), (saved / "ok.h5").read_bytes()
    refused(copy_to(tmp_path, keras_bytes[: len(keras_bytes) // 2], "half.keras"), "half.keras")
    refused(copy_to(tmp_path, h5_bytes[: len(h5_bytes) // 2], "half.h5"), "not a readable HDF5")

    with zipfile.ZipFile(saved / "ok.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, data in members.items():
            z.writestr(n, data[: len(data) // 2] if n == "model.weights.h5" else data)
    refused(copy_to(tmp_path, buf.getvalue(), "inner.keras"), "model.weights.h5", "not a readable HDF5")

    wrong = copy_to(tmp_path, h5_bytes, "wrong.h5")
    with h5py.File(wrong, "a") as f:
        group, name = dense_kernel(f)
        del group[name]
        group.create_dataset(name, data=np.zeros((3, V), np.float32))
    refused(wrong, "kernel", "(3, 9)", "(4, 9)")

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4 * V, dtype=np.float32).tobytes())
    outside = copy_to(tmp_path, h5_bytes, "outside.h5")
    with h5py.File(outside, "a") as f:
        group, name = dense_kernel(f)
        del group[name]
        group.create_dataset(name, shape=(4, V), dtype=np.float32, external=[(str(secret), 0, 4 * V * 4)])
    refused(outside, "outside the file")

    elsewhere = tmp_path / "elsewhere.h5"  # the right weights, in another file that a link points at
    with h5py.File(saved / "ok.h5") as src, h5py.File(elsewhere, "w") as dst:
        src.copy(src["model_weights"], dst, "model_weights")
    linked = copy_to(tmp_path, h5_bytes, "linked.h5")
    with h5py.File(linked, "a") as f:
        group, name = dense_kernel(f)
        del group[name]
        group[name] = h5py.ExternalLink(str(elsewhere), group.name + "/" + name)
    refused(linked, "kernel", "link")


def test_files_that_are_not_keras_models_get_one_line(tmp_path):
    """An HDF5 file of other data, Keras 3 weights saved without their model, random bytes, a zip of
    other files: each named for what it is."""
    other = tmp_path / "data.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    refused(other, "not a Keras model")
    weights_only = tmp_path / "model.weights.h5"
    with h5py.File(weights_only, "w") as f:
        f.create_group("layers/lstm/cell/vars")["0"] = np.zeros((5, 16), np.float32)
        f.create_group("vars")
    refused(weights_only, "weights only")
    refused(copy_to(tmp_path, os.urandom(4096), "noise.keras"), "neither")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    refused(copy_to(tmp_path, buf.getvalue(), "other.keras"), "config.json")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(100):
            z.writestr(f"f{i}", "")
    refused(copy_to(tmp_path, buf.getvalue(), "many.keras"), "100 files")


def test_zip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """A .keras whose weights inflate past the size limit is refused by the size it declares, and a
    config.json that inflates past its own limit likewise (limits lowered so the bomb stays small)."""
    monkeypatch.setattr(checkpoint, "MAX_WEIGHTS_BYTES", 2**20)
    monkeypatch.setattr(checkpoint, "MAX_CONFIG_BYTES", 2**16)
    config = json.dumps({"class_name": "Sequential", "config": {"layers": []}}).encode()
    for name, big in (("model.weights.h5", "weights"), ("config.json", "config")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", b" " * 8 * 2**20 if big == "config" else config)
            z.writestr("model.weights.h5", b"\0" * 8 * 2**20)
        data = buf.getvalue()
        assert len(data) < 2**16  # 16 MB of zeros inflate from a few kB
        refused(copy_to(tmp_path, data, f"bomb-{big}.keras"), name, "too large")


@pytest.mark.slow
def test_mutated_json_gets_a_model_or_one_line_never_a_traceback(saved, tmp_path):
    """300 random edits of a real .keras file's config.json (a value swapped for junk of another type):
    each read either gives Parts that fit together or an ImportRefused, never another exception."""
    from rnnviz.interop.parts import check_parts

    with zipfile.ZipFile(saved / "ok.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    junk = [None, -1, 0, 3, 10**9, 1.5, True, "", "tanh", "Lambda", [], {}, [1, "a"], {"class_name": "LSTM"},
            {"module": "evil", "class_name": "X"}]

    def places(obj, path=()):
        """Every (path) to a value inside the JSON."""
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        for k, v in items:
            yield (*path, k)
            yield from places(v, (*path, k))

    spots = list(places(config))
    rng = np.random.default_rng(12)
    outcomes = {"read": 0, "refused": 0}
    for trial in range(300):
        mutated = json.loads(json.dumps(config))
        for _ in range(int(rng.integers(1, 3))):
            *where, last = spots[int(rng.integers(len(spots)))]
            node = mutated
            try:
                for k in where:
                    node = node[k]
                node[last] = junk[int(rng.integers(len(junk)))]
            except (KeyError, IndexError, TypeError):
                continue  # an earlier edit removed this place
        path = tmp_path / f"mutated-{trial}.keras"
        with zipfile.ZipFile(path, "w") as z:
            for n, data in members.items():
                z.writestr(n, json.dumps(mutated) if n == "config.json" else data)
        try:
            check_parts(read_keras(path))
            outcomes["read"] += 1
        except ImportRefused as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
        path.unlink()
    assert outcomes["read"] > 10 and outcomes["refused"] > 10, outcomes  # both kinds of edit were made
