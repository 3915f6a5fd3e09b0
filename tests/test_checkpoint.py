import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnviz import checkpoint, history
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
    with pytest.raises(CheckpointError, match=r"path that leads out of its folder \('\.\./\.\./config\.json'\)"):
        checkpoint.from_zip(evil.read_bytes(), dest=tmp_path / "out")  # refused before anything is written
    assert set(os.listdir(tmp_path.parent)) == cwd_before and not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="not a zip"):
        checkpoint.from_zip(b"hello")
    with pytest.raises(CheckpointError, match="must hold"):
        with zipfile.ZipFile(tmp_path / "half.zip", "w") as z:
            z.writestr("config.json", "{}")
        checkpoint.from_zip((tmp_path / "half.zip").read_bytes())


# --- zipped checkpoints with their history -------------------------------------------------------

@pytest.fixture(scope="module")
def with_history(tmp_path_factory):
    """A folder from `python -m rnnviz train --history 5` (tiny, on quotes)."""
    from rnnviz.cli import main

    out = tmp_path_factory.mktemp("hist") / "run"
    assert main(["train", "--corpus", "quotes", "--layers", "1", "--hidden", "8", "--embed", "4", "--steps", "20",
                 "--seq-len", "16", "--batch", "4", "--seed", "1", "--history", "5", "--out", str(out)]) == 0
    assert len(checkpoint.history_folders(out)) >= 3
    return out


def zip_folder(folder: Path, top: str | None = None, extra: dict[str, bytes] | None = None,
               skip: tuple[str, ...] = ()) -> bytes:
    """The folder zipped as `zip -r` does, folder entries included, under `top/` (its own name by default;
    "" for its files at the top level); `extra` members added, members ending in `skip` left out."""
    top = folder.name if top is None else top
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            name = "/".join(filter(None, [top, p.relative_to(folder).as_posix()]))
            if p.is_dir():
                z.writestr(name + "/", b"")
            elif not name.endswith(skip):
                z.write(p, name)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # the CLI run in its fixture
def test_zip_with_history_loads_and_writes_its_snapshots(with_history, tmp_path):
    source = history.read(with_history)
    original, _ = checkpoint.load(with_history)
    for i, data in enumerate((zip_folder(with_history), zip_folder(with_history, top=""),
                              checkpoint.to_zip(with_history, history=True),
                              zip_folder(with_history, extra={"__MACOSX/run/._config.json": b"x",
                                                              "run/.DS_Store": b"x", "run/notes.txt": b"x"}))):
        dest = tmp_path / f"up{i}"
        model, config = checkpoint.from_zip(data, dest=dest)
        assert config == checkpoint.read_config(with_history)
        for k, v in original.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        # the checkpoint and each snapshot written byte for byte; no stray file and no optimizer state
        want = {k: v for k, v in _files(with_history).items() if k.endswith((checkpoint.CONFIG, checkpoint.WEIGHTS))}
        assert _files(dest) == want
        read = history.read(dest)
        assert read.steps == source.steps and not read.problems()
        assert [s.config for s in read.snapshots] == [s.config for s in source.snapshots]
    # without dest nothing is written, and a zip without a history still loads
    model, _ = checkpoint.from_zip(checkpoint.to_zip(with_history))
    assert model.num_params() == original.num_params() and sorted(os.listdir(tmp_path)) == [f"up{i}" for i in range(4)]


def _snapshot_member(folder: Path, what: str) -> str:
    _, snap = checkpoint.history_folders(folder)[0]
    return f"{folder.name}/history/{snap.name}/{what}"


@pytest.mark.slow  # the CLI run in its fixture
def test_hostile_history_zips_are_refused_and_write_nothing(with_history, tmp_path, monkeypatch):
    first = checkpoint.history_folders(with_history)[0][1]
    cfg_name, w_name = _snapshot_member(with_history, "config.json"), _snapshot_member(with_history, "model.safetensors")
    weights = (first / "model.safetensors").read_bytes()
    other = tmp_path / "other"
    checkpoint.save(build(sorted(set("ab")), cell="lstm", hidden_size=8, num_layers=1, embed_size=4), other)
    step_cfg = json.loads((first / "config.json").read_bytes())
    wrong_step = json.dumps({**step_cfg, "step": step_cfg["step"] + 1}).encode()
    nan = {k: torch.full_like(v.float(), float("nan")) for k, v in checkpoint.st_load(weights).items()}
    cases = {
        "truncated snapshot": (dict(extra_over={w_name: weights[: len(weights) // 2]}),
                               f"the snapshot history/{first.name}/ cannot be used: model.safetensors is not a "
                               "readable safetensors file"),
        "pickled snapshot": (dict(extra_over={w_name: pickle.dumps({"x": 1}, protocol=4)}), "is a pickle"),
        "NaN snapshot": (dict(extra_over={w_name: checkpoint.st_save(nan)}), "holds NaN"),
        "another model": (dict(extra_over={cfg_name: (other / "config.json").read_bytes(),
                                           w_name: (other / "model.safetensors").read_bytes()}),
                          "its model does not match the checkpoint's"),
        "wrong step": (dict(extra_over={cfg_name: wrong_step}), f"says step {step_cfg['step'] + 1}"),
        "missing weights": (dict(skip=(w_name,)), f"the snapshot history/{first.name}/ lacks model.safetensors"),
        "traversal": (dict(extra={"run/../../x": b"boom"}), "path that leads out of its folder ('run/../../x')"),
        "absolute": (dict(extra={"/tmp/x": b"boom"}), "path that leads out of its folder ('/tmp/x')"),
        "backslash traversal": (dict(extra={"run\\..\\x": b"boom"}), "path that leads out of its folder"),
        "two checkpoints": (dict(extra={"other/history/step-99/config.json": b"{}",
                                        "other/history/step-99/model.safetensors": b""}),
                            "files of more than one checkpoint folder (other, run)"),
        "duplicate snapshot": (dict(extra={f"run/history/step-0{step_cfg['step']}/config.json": b"{}"}),
                               "more than one history/step-0"),
        "too many files": (dict(extra={f"run/pad/{i}": b"" for i in range(checkpoint.MAX_ZIP_MEMBERS)}),
                           f"a checkpoint zip holds at most {checkpoint.MAX_ZIP_MEMBERS:,}"),
    }
    for what, (how, says) in cases.items():
        over = how.pop("extra_over", {})
        data = zip_folder(with_history, skip=tuple(over) + how.pop("skip", ()), extra={**how.get("extra", {}), **over})
        with pytest.raises(CheckpointError) as e:
            checkpoint.from_zip(data, dest=tmp_path / "out" / "m")
        assert says in str(e.value), (what, str(e.value))
        assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out"), what  # no half-written folder
    # limits, shrunk so that tiny files meet them: snapshots, one file's size, the zip's total
    root_weights = (with_history / "model.safetensors").read_bytes()
    big = {w_name: weights + b"\0" * len(root_weights)}  # a snapshot larger than the checkpoint itself
    for attr, value, data, says in (
            ("MAX_SNAPSHOTS", 2, zip_folder(with_history), "more than 2 history snapshots"),
            ("MAX_WEIGHTS_BYTES", len(root_weights), zip_folder(with_history, skip=tuple(big), extra=big),
             f"history/{first.name}/model.safetensors in the zip is too large"),
            ("MAX_ZIP_BYTES", len(root_weights) + 2 * len(weights), zip_folder(with_history),
             "uncompressed")):
        with monkeypatch.context() as m:
            m.setattr(checkpoint, attr, value)
            with pytest.raises(CheckpointError, match=says):
                checkpoint.from_zip(data, dest=tmp_path / "out" / "m")
        assert not os.listdir(tmp_path / "out") if (tmp_path / "out").exists() else True
    # a zip whose directory understates a file's size is refused, not read past what it claims
    data = bytearray(zip_folder(with_history))
    name = f"{with_history.name}/model.safetensors".encode()
    at = data.index(b"PK\x01\x02")  # the central directory's entries: the file's name 46 bytes in
    while data[at + 46: at + 46 + len(name)] != name:
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24: at + 28] = (100).to_bytes(4, "little")
    with pytest.raises(CheckpointError, match="cannot be read from the zip"):
        checkpoint.from_zip(bytes(data))
