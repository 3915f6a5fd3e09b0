"""The Compare page in a real browser with the shipped models: shakespeare-lstm against the 8-gram (the default
view), python-lstm against the 8-gram (the 2015 paper's brackets and quotes), shakespeare-lstm against the RNN.

Screenshots: artifacts/screenshots/compare-*.png (git-ignored), for a person to look at.
"""
import re

import pytest

from streamlit_server import ROOT, app_server, no_errors, require_browser
from test_browser import SHOTS, _full_screenshot, _main_text, _model_shown, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    if not (ROOT / "pretrained" / "shakespeare-lstm").is_dir():
        pytest.skip("the shipped models are not here")
    yield from app_server(tmp_path_factory, ROOT / "pretrained")


def test_compare_with_the_shipped_models(server):
    url, log = server
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1400, "height": 2400})
        page.goto(url, wait_until="domcontentloaded")  # a cold server's first deep link shows "Page not found"
        _settle(page, 0, timeout=240_000)
        page.goto(f"{url}/compare", wait_until="domcontentloaded")
        _settle(page, 3, timeout=240_000)
        no_errors(page, "default view")
        assert page.get_by_text("Page not found").count() == 0
        body = _main_text(page)
        assert "A: shakespeare-lstm" in body and "B: 8-gram" in body
        m = re.search(r"shakespeare-lstm averages (\d\.\d{3}) nats/char and 8-gram (\d\.\d{3})", body)
        assert m and float(m.group(1)) < float(m.group(2)), "the LSTM beats the 8-gram on its held-out text"
        assert "gains most over 8-gram on" in body
        assert page.locator(".rnnviz-text span").count() >= 2_000
        _full_screenshot(page, "compare-shakespeare-ngram")

        page.get_by_role("button", name=re.compile("Study python-lstm against the 8-gram")).click()
        # a first fit on 2.6M characters of Python, and scoring 30,000: seconds
        page.get_by_text("A: python-lstm").first.wait_for(timeout=240_000)
        _settle(page, 3, timeout=240_000)
        no_errors(page, "python-lstm against the 8-gram")
        body = _main_text(page)
        assert "A: python-lstm" in body and _model_shown(page).startswith("python-lstm")
        assert re.search(r"closing (bracket|quote)s \d+ to \d+ characters from their opener, python-lstm guesses "
                         r"\d+% right and 8-gram \d+%", body), body[:2000]
        _full_screenshot(page, "compare-python-ngram")

        page.get_by_role("combobox", name="Model under study").click()
        page.get_by_role("option", name=re.compile("^shakespeare-lstm")).click()
        page.get_by_text("A: shakespeare-lstm").first.wait_for(timeout=240_000)
        _settle(page, 3, timeout=240_000)
        page.get_by_text("another model", exact=True).first.click()
        page.get_by_text("B: shakespeare-gru").first.wait_for(timeout=240_000)
        _settle(page, 3, timeout=240_000)
        page.get_by_role("combobox", name="Model B").click()
        page.get_by_role("option", name=re.compile("^shakespeare-rnn")).click()
        page.get_by_text("B: shakespeare-rnn").first.wait_for(timeout=240_000)
        _settle(page, 3, timeout=240_000)
        no_errors(page, "shakespeare-lstm against shakespeare-rnn")
        assert "B: shakespeare-rnn" in _main_text(page)
        _full_screenshot(page, "compare-lstm-rnn")
    assert (SHOTS / "compare-lstm-rnn.png").is_file()
