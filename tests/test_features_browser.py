"""Features in a real browser: train a small dictionary on Features, click a feature on the map, read its
dashboard, steer with it in Sample; no traceback and no error box anywhere.

Screenshots: artifacts/screenshots/features*.png (git-ignored), for a person to look at.
"""
import os
import re

import pytest

from rnnviz import checkpoint
from rnnviz.corpora import corpus_meta, quotes_task
from rnnviz.model import build
from rnnviz.vocab import Vocab
from streamlit_server import app_server, no_errors, require_browser
from test_browser import _full_screenshot, _main_text, _nav, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    pre = tmp_path_factory.mktemp("pretrained")
    corpus = quotes_task(20_000, seed=0)
    model = build(Vocab.from_text(corpus.text), cell="lstm", hidden_size=16, num_layers=2, embed_size=8, seed=0)
    # its held-out split (2,000 characters) is what the dictionary trains on: seconds
    checkpoint.save(model, pre / "tiny-lstm", meta={"corpus": corpus_meta(corpus, 0.1)})
    os.environ["RNNVIZ_FEATURES_DIR"] = str(tmp_path_factory.mktemp("features"))  # the server inherits it
    try:
        yield from app_server(tmp_path_factory, pre)
    finally:
        os.environ.pop("RNNVIZ_FEATURES_DIR", None)


def test_train_click_a_feature_read_its_dashboard_and_steer(server):
    url, log = server
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        _nav(page, "Features")
        assert "No dictionary yet" in _main_text(page)
        steps = page.get_by_role("spinbutton", name="Training steps")
        steps.fill("150")
        steps.press("Enter")
        _settle(page, 0)
        page.get_by_role("button", name=re.compile("Train dictionary")).click()
        page.wait_for_selector(".js-plotly-plot .scatterlayer .points path", timeout=240_000)
        _settle(page, 2)
        no_errors(page, "Features")
        body = _main_text(page)
        assert "nats/char" in body and "Units against features" in body
        assert re.search(r"No feature beats the best unit|A feature beats the best unit|too little evidence", body)
        _full_screenshot(page, "features")
        page.locator(".js-plotly-plot .scatterlayer .points path").first.click(force=True)
        page.locator("h1", has_text="Feature dashboard").first.wait_for(timeout=90_000)
        _settle(page, 3)
        no_errors(page, "Feature dashboard")
        body = _main_text(page)
        assert re.search(r"Feature \d+ of layer 1 h", body) and "nats/char" in body
        assert page.locator(".rnnviz-text").count() >= 1  # its top contexts
        _full_screenshot(page, "feature-dashboard")
        page.get_by_role("button", name=re.compile("Steer with it in Sample")).click()
        page.locator("h1", has_text="Sample").first.wait_for(timeout=90_000)
        page.get_by_text(re.compile(r"KL\(unsteered \|\| steered\)")).first.wait_for(timeout=120_000)
        _settle(page, 1)
        no_errors(page, "Sample, steered")
        body = _main_text(page)
        assert re.search(r"With -?[\d.]+ × feature \d+ added", body)
        _full_screenshot(page, "features-steer")
