"""The 2015 paper page in a real browser at a projector's 1280×800, over the shipped models and results: the four
charts drawn, then "run it yourself" queues the default grid and Cancel stops it.

A screenshot lands in artifacts/screenshots/paper-1280.png (git-ignored) for a person to look at.
"""
import pytest

from streamlit_server import ROOT, app_server, no_errors, require_browser
from test_browser import SHOTS, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HEADERS = ("Table 1: cells, depths and budgets", "Gate saturation by layer",
           "Peeling the onion: which errors does scale remove?", "Training dynamics: from low-order n-grams to high")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    if not (ROOT / "pretrained" / "shakespeare-lstm").is_dir():
        pytest.skip("the shipped shakespeare-lstm is not here")
    yield from app_server(tmp_path_factory, ROOT / "pretrained")  # read only: the page writes nothing there


def test_paper_page_draws_and_cancels_a_grid(server):
    url, log = server
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(url, wait_until="domcontentloaded")  # a fresh server asked for /paper first says "not found"
        _settle(page, 0)
        page.goto(f"{url}/paper", wait_until="domcontentloaded")
        _settle(page, 4, timeout=180_000)
        no_errors(page, "paper")
        body = page.locator("body").inner_text()
        assert all(h in body for h in HEADERS), body[:2000]
        # every chart drew its marks (bars, dots, lines), not an empty frame
        for i in range(4):
            plot = page.locator(".js-plotly-plot").nth(i)
            assert plot.locator("g.trace").count() > 0, f"chart {i} drew nothing"
        page.screenshot(path=str(SHOTS / "paper-1280.png"))
        page.get_by_role("button", name="Run it yourself").click()
        cancel = page.get_by_role("button", name="Cancel")
        cancel.wait_for(timeout=60_000)
        no_errors(page, "grid queued")
        cancel.click()
        page.get_by_role("button", name="Run it yourself").wait_for(timeout=120_000)
        _settle(page, 4, timeout=120_000)
        no_errors(page, "grid cancelled")
