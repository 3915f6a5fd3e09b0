"""The Training history page in a real browser, over the shipped histories (python-lstm and
shakespeare-small, copied), with a tiny default model that has none.

Screenshots land in artifacts/screenshots/history-*.png (git-ignored) for a person to look at.
"""
import shutil

import pytest

from rnnviz import checkpoint, history
from rnnviz.corpora import load_corpus
from rnnviz.model import build
from rnnviz.vocab import Vocab
from streamlit_server import ROOT, app_server, no_errors, require_browser
from test_browser import _full_screenshot, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHIPPED = [n for n in ("python-lstm", "shakespeare-small") if history.has_history(ROOT / "pretrained" / n)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    if not SHIPPED:
        pytest.skip("no shipped model with a history")
    pre = tmp_path_factory.mktemp("pretrained-history")
    text = load_corpus("shakespeare", max_chars=50_000).text
    model = build(Vocab.from_text(text), cell="lstm", hidden_size=16, num_layers=1, seed=0)
    checkpoint.save(model, pre / "shakespeare-lstm", meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.5})
    for name in SHIPPED:
        shutil.copytree(ROOT / "pretrained" / name, pre / name)
    yield from app_server(tmp_path_factory, pre)


def _pick_history(page, label: str) -> None:
    box = page.get_by_role("combobox", name="History of")
    box.click()
    page.get_by_role("option", name=label).click()
    page.wait_for_timeout(500)
    _settle(page, 4, timeout=240_000)


def test_history_page_in_the_browser(server):
    url, log = server
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        page.goto(f"{url}/history", wait_until="domcontentloaded")
        _settle(page, 4, timeout=240_000)
        no_errors(page, "history")
        body = page.locator("body").inner_text()
        # the default model has no history: said, with a link to Train; a shipped history is offered
        assert "has no training history" in body
        assert page.get_by_role("link", name="Train a model with a history").count() == 1
        for name in SHIPPED:
            _pick_history(page, f"{name} (shipped)")
            no_errors(page, name)
            steps = history.read(ROOT / "pretrained" / name).steps
            assert f"Step {steps[-1]:,}" in page.locator("body").inner_text()
            assert page.locator(".rnnviz-text").count() >= 1
            _full_screenshot(page, f"history-{name}-last")
            # scrub to the first snapshot with the keyboard
            slider = page.get_by_role("slider").first
            slider.focus()
            slider.press("Home")
            page.wait_for_function(f"document.body.innerText.includes('Step {steps[0]:,} of')", timeout=120_000)
            _settle(page, 4, timeout=240_000)
            no_errors(page, f"{name} first step")
            _full_screenshot(page, f"history-{name}-first")
