import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnviz import checkpoint
from rnnviz.errors import CheckpointError
from rnnviz.model import build
from rnnviz.trace import trace


def _model(cell="lstm", seed=0):
    return build(sorted(set("hello world\n")), cell=cell, hidden_size=12, num_layers=2, embed_size=5, seed=seed)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_round_trip_gives_identical_traces(tmp_path, cell):
    m = _model(cell)
    checkpoint.save(m, tmp_path / "m", meta={"corpus": {"name": "x", "sha256": "0" * 64}, "val_loss": 1.5})
    m2, config = checkpoint.load(tmp_path / "m")
    assert config["model"]["cell"] == cell and config["val_loss"] == 1.5
    assert config["model"]["vocab"] == m.vocab.chars and config["num_params"] == m.num_params()
    a, b = trace(m, "hello"), trace(m2, "hello")
    np.testing.assert_array_equal(a.layers[1]["h"], b.layers[1]["h"])


def test_float16_storage_is_small_and_close(tmp_path):
    m = _model()
    checkpoint.save(m, tmp_path / "a")
    checkpoint.save(m, tmp_path / "b", dtype="float16")
    assert (tmp_path / "b/model.safetensors").stat().st_size < 0.6 * (tmp_path / "a/model.safetensors").stat().st_size
    m2, _ = checkpoint.load(tmp_path / "b")
    np.testing.assert_allclose(trace(m2, "hello").probs, trace(m, "hello").probs, atol=1e-2)


def test_interrupted_save_leaves_previous_model(tmp_path, monkeypatch):
    old = _model(seed=1)
    checkpoint.save(old, tmp_path / "m")
    real_rename = os.rename
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # after moving the old copy aside, before the new one is in place
            raise KeyboardInterrupt("power cut")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(_model(seed=2), tmp_path / "m")
    monkeypatch.setattr(os, "rename", real_rename)
    assert checkpoint.list_checkpoints(tmp_path) == [tmp_path / "m"]
    m, _ = checkpoint.load(tmp_path / "m")
    assert torch.equal(m.head.weight, old.head.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        checkpoint.load(tmp_path / "nothing")
    checkpoint.save(_model(), tmp_path / "m")
    (tmp_path / "m/config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load(tmp_path / "m")
    checkpoint.save(_model(), tmp_path / "m")
    data = (tmp_path / "m/model.safetensors").read_bytes()
    (tmp_path / "m/model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        checkpoint.load(tmp_path / "m")
    (tmp_path / "m/model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        checkpoint.load(tmp_path / "m")


def test_shapes_that_do_not_match_config(tmp_path):
    checkpoint.save(_model(), tmp_path / "m")
    cfg = json.loads((tmp_path / "m/config.json").read_text())
    cfg["model"]["hidden_size"] = 13
    (tmp_path / "m/config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        checkpoint.load(tmp_path / "m")
    cfg["model"]["hidden_size"] = -4
    (tmp_path / "m/config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="hidden_size"):
        checkpoint.load(tmp_path / "m")
    cfg["model"]["hidden_size"] = 12
    cfg["format_version"] = 99
    (tmp_path / "m/config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format_version"):
        checkpoint.load(tmp_path / "m")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_renamed_to_safetensors_never_runs(tmp_path):
    checkpoint.save(_model(), tmp_path / "m")
    marker = tmp_path / "pwned"
    (tmp_path / "m/model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="pickle"):
        checkpoint.load(tmp_path / "m")
    torch.save({"x": _Payload(marker)}, tmp_path / "m/model.safetensors")
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "m")
    # and with the pickle opcode bytes hidden behind a fake header length
    (tmp_path / "m/model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "m")
    assert not marker.exists()


def test_zip_round_trip_and_hostile_paths(tmp_path):
    checkpoint.save(_model("gru"), tmp_path / "m")
    m, config = checkpoint.from_zip(checkpoint.to_zip(tmp_path / "m"))
    assert m.cell == "gru"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../config.json", (tmp_path / "m/config.json").read_bytes())
        z.writestr("../model.safetensors", (tmp_path / "m/model.safetensors").read_bytes())
        z.writestr("../x", b"boom")
    cwd_before = set(os.listdir(tmp_path.parent))
    m, _ = checkpoint.from_zip(evil.read_bytes())  # read in memory: nothing is written anywhere
    assert set(os.listdir(tmp_path.parent)) == cwd_before
    with pytest.raises(CheckpointError, match="not a zip"):
        checkpoint.from_zip(b"hello")
    with pytest.raises(CheckpointError, match="must hold"):
        with zipfile.ZipFile(tmp_path / "half.zip", "w") as z:
            z.writestr("config.json", "{}")
        checkpoint.from_zip((tmp_path / "half.zip").read_bytes())
