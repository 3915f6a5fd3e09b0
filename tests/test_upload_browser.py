"""Checkpoint uploads in a real browser (streamlit run app.py + headless chromium): an uploaded file is read
once, however the pages are crossed, and a checkpoint zipped with its history opens on Training history.

Screenshots land in artifacts/screenshots/upload-*.png (git-ignored) for a person to look at.
"""
import re

import pytest

from rnnviz import checkpoint
from rnnviz.corpora import load_corpus
from rnnviz.model import build
from rnnviz.vocab import Vocab
from streamlit_server import app_server, no_errors, require_browser
from test_browser import SHOTS, _full_screenshot, _model_shown, _nav, _settle, browser_page
from test_upload import with_history, zipped

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def vocab():
    return Vocab.from_text(load_corpus("shakespeare", max_chars=50_000).text)


@pytest.fixture(scope="module")
def server(tmp_path_factory, vocab):
    """A tiny default LSTM and a 2-layer GRU of 24 units named as the shipped ones."""
    require_browser()
    pre = tmp_path_factory.mktemp("pretrained-upload")
    meta = {"corpus": {"name": "shakespeare"}, "val_loss": 3.5}
    checkpoint.save(build(vocab, cell="lstm", hidden_size=16, num_layers=1, seed=0), pre / "shakespeare-lstm", meta=meta)
    checkpoint.save(build(vocab, cell="gru", hidden_size=24, num_layers=2, seed=1), pre / "shakespeare-gru", meta=meta)
    yield from app_server(tmp_path_factory, pre)


def _sidebar(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def _upload(page, path) -> None:
    """Open the sidebar's "Upload a checkpoint" and give its uploader the file."""
    expander = page.locator('[data-testid="stSidebar"] [data-testid="stExpander"]', has_text="Upload a checkpoint")
    if not expander.locator('[data-testid="stFileUploader"]').first.is_visible():
        expander.get_by_text("Upload a checkpoint").click()
    expander.locator('input[type="file"]').set_input_files(str(path))


def _unit_shown(page) -> tuple[str, str]:
    return (page.get_by_role("combobox", name="Layer").input_value(),
            page.get_by_label(re.compile(r"^Unit \(0 to")).input_value())


def _models_offered(page) -> list[str]:
    page.get_by_role("combobox", name="Model under study").click()
    names = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return names


def test_an_upload_is_read_once_across_pages(server, vocab, tmp_path):
    """Issue 24, researcher 1: upload, switch to a shipped model, Neuron search -> Show in Activations -> Gates,
    and on across the pages: the model and the unit stay, and the upload is in the list once."""
    url, log = server
    mine = checkpoint.save(build(vocab, cell="rnn", hidden_size=8, num_layers=1, seed=2), tmp_path / "mine")
    (tmp_path / "mine.zip").write_bytes(checkpoint.to_zip(mine))
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        _upload(page, tmp_path / "mine.zip")
        page.get_by_text("mine.zip: loaded as").wait_for(timeout=90_000)
        _settle(page, 0)
        assert _model_shown(page) == "mine (uploaded)"
        # the uploader is empty again: nothing is left in it to be read a second time
        assert "mine.zip" not in page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"]').inner_text()
        _full_screenshot(page, "upload-loaded")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "upload-loaded-1280x800.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})

        page.get_by_role("combobox", name="Model under study").click()
        page.get_by_role("option", name="shakespeare-gru (shipped)").click()
        _settle(page, 0)
        _nav(page, "Neuron search", 1)
        page.get_by_role("button", name=re.compile("Show in Activations")).first.click()
        page.locator("h1", has_text="Activations").first.wait_for(timeout=90_000)
        _settle(page, 2)
        no_errors(page, "Activations from Neuron search")
        assert _model_shown(page) == "shakespeare-gru (shipped)"
        unit = _unit_shown(page)
        for title, charts in (("Gates", 3), ("Activations", 2), ("Gradients", 2), ("Gates", 3)):
            _nav(page, title)
            assert _model_shown(page) == "shakespeare-gru (shipped)", f"{title}: the upload took over"
            if title != "Gradients":
                assert _unit_shown(page) == unit, f"{title}: the unit jumped"
            _settle(page, charts)
            no_errors(page, title)
        _full_screenshot(page, "upload-gates-after")
        assert [n for n in _models_offered(page) if "(uploaded)" in n] == ["mine (uploaded)"]


def test_a_zip_with_its_history_opens_training_history(server, vocab, tmp_path):
    """Issue 24, researcher 2: a run's folder zipped with its history/ loads, and Training history shows it."""
    url, log = server
    (tmp_path / "run.zip").write_bytes(zipped(with_history(tmp_path, vocab)))
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        _upload(page, tmp_path / "run.zip")
        page.get_by_text("with a training history of 3 snapshots").wait_for(timeout=90_000)
        _settle(page, 0)
        assert _model_shown(page) == "run (uploaded)"
        more = page.locator('[data-testid="stSidebarNav"]').get_by_text(re.compile(r"^View \d+ more$"))
        if more.count():  # the navigation shows ten pages until asked for the rest
            more.first.click()
        _nav(page, "Training history", 4)  # a click, not a new address: a new address is a new session
        no_errors(page, "Training history of an upload")
        assert page.get_by_role("combobox", name="History of").input_value() == "run (the model under study)"
        assert "Step 20 of 20 (3 of 3 snapshots)" in page.locator('[data-testid="stMain"]').inner_text()
        _full_screenshot(page, "upload-history")
