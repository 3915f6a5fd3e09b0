"""Checkpoint uploads in the app (AppTest): a file is read once, and a zip with its history works.

The real-browser side (upload, switch model, cross pages twice) is in test_upload_browser.py.
"""
import io
import zipfile
from pathlib import Path

from rnnviz import checkpoint
from rnnviz.model import build
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, save_tiny, text_of


def held_by_browser(at) -> dict[str, list]:
    """What each uploader on screen holds, as the browser keeps it: (file id, name, bytes, type) per file."""
    out = {}
    for u in at.file_uploader:
        files = at.session_state[u.key] if u.key in at.session_state else []
        out[u.key] = [(f.file_id, f.name, f.getvalue(), f.type) for f in files or []]
    return out


def browser_resends(at, held: dict[str, list]) -> None:
    """The next run carries the files the browser still shows, whatever the server forgot in between."""
    for u in at.file_uploader:
        if held.get(u.key):
            u._files = held[u.key]  # AppTest has no public way to re-send the same upload ids


def test_upload_is_read_once_across_page_switches(shipped, vocab, tmp_path):
    pre, _ = shipped
    mine = save_tiny(tmp_path, "mine", vocab, "rnn", layers=1)
    at = app()
    at.file_uploader[0].set_value([("mine.zip", checkpoint.to_zip(mine), "application/zip")]).run()
    ok(at)
    assert at.selectbox(key="model_choice").value == "mem:1"
    assert r"mine\.zip: loaded as **mine (uploaded)**." in text_of(at.success)
    held = held_by_browser(at)
    assert held and not any(held.values())  # the uploader on screen is empty again: the file was read
    # the researcher's path: a shipped 2-layer model, Neuron search -> Show in Activations -> Gates
    shipped_id = f"shipped:{pre / 'a-lstm'}"
    at.selectbox(key="model_choice").set_value(shipped_id).run()
    at.switch_page("pages/neurons_page.py").run()
    ok(at)
    held = held_by_browser(at)
    at.button(key="act_0").click().run()  # st.switch_page: Streamlit forgets every widget's state here
    ok(at)
    unit = (at.session_state["layer"], at.session_state["kind"], at.session_state["unit"])
    for page in ("gates", "activations", "gates"):
        browser_resends(at, held)
        at.switch_page(f"pages/{page}_page.py").run()
        ok(at)
        assert at.selectbox(key="model_choice").value == shipped_id, page
        assert (at.session_state["layer"], at.session_state["kind"], at.session_state["unit"]) == unit, page
    assert list(at.session_state["mem_models"]) == ["mem:1"]  # loaded once, not again on each switch


def test_a_rejected_file_is_not_read_again(shipped):
    """A refused file stays in the box beside its message; a page switch does not read it a second time."""
    at = app()
    at.file_uploader[0].set_value([("junk.zip", b"not a zip", "application/zip")]).run()
    assert "Upload rejected: the upload is not a zip file" in text_of(at.error)
    held = held_by_browser(at)
    assert [f[1] for f in held["ckpt_upload"]] == ["junk.zip"]
    at.switch_page("pages/neurons_page.py").run()
    at.button(key="act_0").click().run()
    browser_resends(at, held)
    at.session_state["upload_error"] = "marker"  # a second reading would replace it
    at.switch_page("pages/gates_page.py").run()
    assert "Upload rejected: marker" in text_of(at.error)


def with_history(folder: Path, vocab, steps=(1, 5, 20)) -> Path:
    """A tiny GRU checkpoint with a snapshot at each step (the weights of other seeds), as Trainer.save writes it."""
    model = build(vocab, cell="gru", hidden_size=16, num_layers=1, embed_size=8, seed=0)
    history = [{"step": s, "tensors": build(vocab, cell="gru", hidden_size=16, num_layers=1, embed_size=8,
                                             seed=s).state_dict(), "meta": {"train_loss": 4.0 - s / 10}}
               for s in steps]
    return checkpoint.save(model, folder / "run", meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.5},
                           history=history)


def zipped(folder: Path) -> bytes:
    """The folder as `zip -r run.zip run` makes it (folder entries included)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            name = f"{folder.name}/{p.relative_to(folder).as_posix()}"
            z.writestr(name + "/", b"") if p.is_dir() else z.write(p, name)
    return buf.getvalue()


def test_a_zip_with_its_history_opens_training_history(shipped, vocab, tmp_path):
    run = with_history(tmp_path, vocab)
    at = app()
    at.file_uploader[0].set_value([("run.zip", zipped(run), "application/zip")]).run()
    ok(at)
    assert r"run\.zip: loaded as **run (uploaded)**, with a training history of 3 snapshots." in text_of(at.success)
    assert at.selectbox(key="model_choice").value == "mem:1"
    at.switch_page("pages/history_page.py").run()
    ok(at)
    assert at.selectbox(key="hist_model").value == "run (the model under study)"
    assert "**Step 20** of 20 (3 of 3 snapshots)" in text_of(at.markdown)
    at.select_slider(key="hist_step").set_value(1).run()
    ok(at)
    assert "**Step 1** of 20 (1 of 3 snapshots)" in text_of(at.markdown)


def test_an_upload_without_its_history_says_how_to_bring_it(shipped, vocab, tmp_path):
    mine = save_tiny(tmp_path, "mine", vocab, "gru", layers=1)
    at = app()
    at.file_uploader[0].set_value([("mine.zip", checkpoint.to_zip(mine), "application/zip")]).run()
    at.switch_page("pages/history_page.py").run()
    assert not at.exception
    assert "it was uploaded without a history/ folder (zip the whole checkpoint folder to bring its snapshots)" \
        in text_of(at.info)


def test_an_upload_over_the_session_limit_leaves_nothing_on_disk(shipped, vocab, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNVIZ_MAX_SESSION_MODELS", "1")
    mine = save_tiny(tmp_path, "mine", vocab, "gru", layers=1)
    at = app()
    at.file_uploader[0].set_value([("a.zip", checkpoint.to_zip(mine), "application/zip")]).run()
    ok(at)
    at.file_uploader[0].set_value([("b.zip", checkpoint.to_zip(mine), "application/zip")]).run()
    assert not at.exception
    assert "Upload rejected: this session holds 1 trained or uploaded models" in text_of(at.error)
    assert list(at.session_state["mem_models"]) == ["mem:1"]
    assert [p.name for p in Path(at.session_state["_tmpdir"]).iterdir()] == ["upload-1-a"]


def test_forgetting_an_upload_removes_its_copy(shipped, vocab, tmp_path, monkeypatch):
    """The Train page's quota offer forgets the upload: its folder (with its history) goes too."""
    monkeypatch.setenv("RNNVIZ_MAX_SESSION_MODELS", "1")
    at = app()
    at.file_uploader[0].set_value([("run.zip", zipped(with_history(tmp_path, vocab)), "application/zip")]).run()
    ok(at)
    folder = Path(at.session_state["mem_models"]["mem:1"]["path"])
    assert checkpoint.history_folders(folder)
    at.switch_page("pages/train_page.py").run()
    at.button(key="tr_start").click().run()
    at.button(key="forget_mem:1").click().run()
    assert not at.exception and not at.session_state["mem_models"]
    assert not folder.exists()
