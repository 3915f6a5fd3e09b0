"""Quotas: the models folder and a session's models are bounded, the messages name the limit and
offer what to delete, and a chosen name never escapes the folder nor takes a shipped model's name."""
import pytest

from rnnviz import checkpoint, quotas
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.quotas import Limits, QuotaError
from test_app import clean_caches, folders, one_thread, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, small_training, text_of

CHARS = sorted(set("abcdefgh "))


def tiny(seed=0, hidden=8):
    return build(CHARS, hidden_size=hidden, num_layers=1, embed_size=4, seed=seed)


def test_model_bytes_counts_every_parameter_by_hand():
    m = build(CHARS, cell="rnn", hidden_size=8, num_layers=1, embed_size=4, seed=0)
    v, h, e = len(m.vocab), 8, 4  # the vocabulary adds a character for the unknown ones
    # embedding V*E; RNN W_ih H*E, W_hh H*H, two biases; decoder H*V + V; float32: 4 bytes each
    params = v * e + (h * e + h * h + 2 * h) + (h * v + v)
    assert quotas.model_bytes(m) == 4 * params == 4 * sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("raw, safe", [
    ("my model", "my_model"), ("../../etc/passwd", "etc_passwd"), ("..", None), ("/abs/path", "abs_path"),
    ("a/../../b", "a_b"), (".hidden", "hidden"), ("Café ☕ run", "Cafe_run"), ("x" * 200, "x" * 64),
    ("C:\\\\windows", "C_windows"), ("   ", None), ("name\x00null", "name_null"), ("ok-1.2_x", "ok-1.2_x"),
])
def test_safe_name(raw, safe):
    if safe is None:
        with pytest.raises(ConfigError, match="no usable name"):
            quotas.safe_name(raw)
    else:
        assert quotas.safe_name(raw) == safe


def test_save_path_stays_inside_and_spares_shipped_and_saved(tmp_path):
    shipped, folder = tmp_path / "pretrained", tmp_path / "models"
    checkpoint.save(tiny(), shipped / "shakespeare-lstm")
    checkpoint.save(tiny(), folder / "mine")
    for evil in ("../escaped", "../../tmp/x", "/etc/x", "sub/dir"):
        p = quotas.save_path(folder, evil, shipped)
        assert p.parent == folder and p.resolve().is_relative_to(folder.resolve())
    with pytest.raises(ConfigError, match="name of a shipped model, which is never overwritten"):
        quotas.save_path(folder, "shakespeare-lstm", shipped)
    with pytest.raises(ConfigError, match="shipped model"):
        quotas.save_path(folder, "./shakespeare-lstm", shipped)  # sanitised to a shipped name
    with pytest.raises(QuotaError, match="already named 'mine'") as e:
        quotas.save_path(folder, "mine", shipped)
    assert e.value.candidates == ["mine"]


def test_folder_limits_name_the_limit_and_offer_the_oldest_first(tmp_path):
    folder = tmp_path / "models"
    for i, name in enumerate(["old", "mid", "new"]):
        checkpoint.save(tiny(i), folder / name)
        w = folder / name / checkpoint.WEIGHTS
        import os
        os.utime(w, (1_000_000 + i, 1_000_000 + i))
    sizes = {p.name: sum(f.stat().st_size for f in p.iterdir()) for p in folder.iterdir()}
    used = sum(sizes.values())
    quotas.check_save(folder, 100, Limits(saved_models=4, saved_bytes=used + 100))  # fits exactly
    with pytest.raises(QuotaError) as e:
        quotas.check_save(folder, 100, Limits(saved_models=3))
    assert "holds 3 models, its limit (RNNVIZ_MAX_SAVED_MODELS = 3)" in str(e.value)
    assert e.value.candidates == ["old", "mid", "new"]
    with pytest.raises(QuotaError) as e:
        quotas.check_save(folder, 101, Limits(saved_bytes=used + 100))
    assert "RNNVIZ_MAX_SAVED_MB" in str(e.value) and "delete a model to make room" in str(e.value)
    assert e.value.candidates == ["old", "mid", "new"]
    with pytest.raises(QuotaError, match="cannot be saved here; download it instead") as e:
        quotas.check_save(folder, 10**9, Limits(saved_bytes=10**8))
    assert e.value.candidates == []  # deleting would not help


def test_session_limits():
    held = {"mem:1": 1000, "mem:2": 3000}
    quotas.check_session(held, 1000, Limits(session_models=3, session_bytes=5000))
    with pytest.raises(QuotaError, match=r"holds 2 trained or uploaded models, its limit \(RNNVIZ_MAX_SESSION_MODELS = 2\)"):
        quotas.check_session(held, 1, Limits(session_models=2))
    with pytest.raises(QuotaError, match="RNNVIZ_MAX_SESSION_MB") as e:
        quotas.check_session(held, 1001, Limits(session_bytes=5000))
    assert e.value.candidates == ["mem:1", "mem:2"]
    with pytest.raises(QuotaError, match="choose a smaller model"):
        quotas.check_session({}, 6000, Limits(session_bytes=5000))


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("RNNVIZ_MAX_SAVED_MODELS", "7")
    monkeypatch.setenv("RNNVIZ_MAX_SAVED_MB", "1.5")
    monkeypatch.setenv("RNNVIZ_MAX_SESSION_MODELS", "2")
    monkeypatch.setenv("RNNVIZ_MAX_SESSION_MB", "10")
    assert Limits.from_env() == Limits(7, int(1.5 * 2**20), 2, 10 * 2**20)
    monkeypatch.setenv("RNNVIZ_MAX_SESSION_MB", "lots")
    with pytest.raises(ConfigError, match="RNNVIZ_MAX_SESSION_MB must be a number"):
        Limits.from_env()


def test_delete_saved_only_deletes_a_checkpoint_in_the_folder(tmp_path):
    folder, outside = tmp_path / "models", tmp_path / "pretrained"
    checkpoint.save(tiny(), folder / "a")
    checkpoint.save(tiny(), outside / "keep")
    (folder / "notes").mkdir()
    for bad in ("../pretrained/keep", "notes", "missing", ".."):
        with pytest.raises(ConfigError, match="is not a saved model"):
            quotas.delete_saved(folder, bad)
    assert (outside / "keep" / checkpoint.CONFIG).exists()
    quotas.delete_saved(folder, "a")
    assert not (folder / "a").exists()


# --- in the app ------------------------------------------------------------------------------------

def _train_and_stop(at):
    small_training(at, steps=3)
    at.button(key="tr_start").click().run()
    ok(at)
    for rec in at.session_state["train_jobs"]:
        rec["job"].join(60)
    at.run()
    ok(at)
    return at.session_state["train_jobs"][-1]


def test_save_beyond_the_folder_limit_offers_to_delete(folders, monkeypatch):  # noqa: F811
    pre, models = folders
    checkpoint.save(tiny(), pre / "shipped-one")
    checkpoint.save(tiny(1), models / "older")
    monkeypatch.setenv("RNNVIZ_MAX_SAVED_MODELS", "1")
    at = app("train")
    rec = _train_and_stop(at)
    mid = rec["registered"]
    assert mid
    at.text_input(key=f"savename_{mid}").set_value("../shipped-one").run()
    at.button(key=f"save_{mid}").click().run()
    assert not at.exception
    assert "shipped model, which is never overwritten" in text_of(at.error)
    at.text_input(key=f"savename_{mid}").set_value("my run/1").run()
    at.button(key=f"save_{mid}").click().run()
    assert not at.exception
    shown = text_of(at.error)
    assert "Not saved: the models folder holds 1 models, its limit (RNNVIZ_MAX_SAVED_MODELS = 1)" in shown
    at.button(key=f"del_{mid}_older").click().run()
    assert not at.exception and "Deleted older: press Save again." in text_of(at.info)
    assert not at.error
    assert not (models / "older").exists() and (pre / "shipped-one").exists()
    at.button(key=f"save_{mid}").click().run()
    ok(at)
    assert (models / "my_run_1" / checkpoint.CONFIG).exists()
    assert "Saved to" in text_of(at.success)


def test_start_beyond_the_session_limit_offers_to_forget(folders, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RNNVIZ_MAX_SESSION_MODELS", "1")
    at = app("train")
    first = _train_and_stop(at)
    assert first["registered"] in at.session_state["mem_models"]
    at.button(key="tr_start").click().run()
    assert not at.exception
    assert "Not started: this session holds 1 trained or uploaded models, its limit" in text_of(at.error)
    assert len(at.session_state["train_jobs"]) == 1  # nothing was started
    at.button(key=f"forget_{first['registered']}").click().run()
    ok(at)
    assert at.session_state["mem_models"] == {}
    second = _train_and_stop(at)
    assert second is not first and second["registered"] in at.session_state["mem_models"]
