"""Inside the cell in a real browser: a click on a character of the strip steps there, Next steps on,
Play walks through the text until Stop, a contributor opens its unit one step back, and no traceback or
error box appears on the way."""
import re
import time

import pytest

from streamlit_server import no_errors
from test_browser import SHOTS, _settle, browser_page, server  # noqa: F401, F811 (server: the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _pos(page) -> int:
    """The position the page shows: the slider's value."""
    return int(page.locator('[data-testid="stSlider"] input[type="range"]').first.input_value())


def _wait_pos(page, want, timeout: float = 30) -> int:
    """Wait until the position satisfies want(pos); return it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pos = _pos(page)
        if want(pos):
            return pos
        page.wait_for_timeout(200)
    return _pos(page)


def test_click_a_character_step_play_and_stop(server):
    url, log = server
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("h1", timeout=90_000)
        page.locator('[data-testid="stSidebarNavLink"]', has_text="Inside the cell").first.click()
        page.locator("h1", has_text="Inside the cell").first.wait_for(timeout=90_000)
        _settle(page, 4)
        no_errors(page, "Inside the cell")
        start = int(re.search(r"Characters (\d+) to", page.locator("main").inner_text()).group(1))
        # a click on the 12th character of the strip steps there
        strip = page.locator(".js-plotly-plot").first
        point = strip.locator(".scatterlayer .points path").nth(11)
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        clicked = _wait_pos(page, lambda p: p == start + 11)
        assert clicked == start + 11, (clicked, start)
        _settle(page, 4)
        page.get_by_role("button", name="Next").click()
        assert _wait_pos(page, lambda p: p == clicked + 1) == clicked + 1
        _settle(page, 4)
        # Play walks on by itself; Stop holds the position
        page.get_by_role("button", name="Play").click()
        moved = _wait_pos(page, lambda p: p >= clicked + 4)
        assert moved >= clicked + 4, moved
        page.get_by_role("button", name="Stop").click()
        page.get_by_role("button", name="Play").wait_for(timeout=30_000)
        _settle(page, 4)
        held = _pos(page)
        page.wait_for_timeout(2000)
        assert _pos(page) == held
        no_errors(page, "after playing")
        # a contributor opens its unit here, one step back
        button = page.get_by_role("button", name=re.compile(r"^unit \d+: [+-]")).first
        unit = int(re.match(r"unit (\d+)", button.inner_text()).group(1))
        button.click()
        assert _wait_pos(page, lambda p: p == held - 1) == held - 1
        _settle(page, 4)
        assert page.get_by_role("spinbutton", name=re.compile("^Unit")).input_value() == str(unit)
        assert f"unit {unit} at #{held - 1} " in page.locator(".js-plotly-plot").nth(1).inner_text()
        no_errors(page, "after a contributor")
        page.screenshot(path=str(SHOTS / "cell-after-play.png"))
