"""Teaching mode in a real Chromium over the shipped models: the tour from Home through every stop, and the
guessing game played by keyboard. Screenshots: artifacts/screenshots/tour-<n>-<key>.png and guess-*.png.
"""
import re

import pytest

from rnnviz import checkpoint, shannon, tour
from streamlit_server import ROOT, app_server, no_errors, require_browser
import ui
from test_browser import SHOTS, _full_screenshot, _model_shown, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PRETRAINED = ROOT / "pretrained"
URLS = {path: url for path, _, _, url in ui.PAGES}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    if not all((PRETRAINED / s.model).is_dir() for s in tour.STOPS):
        pytest.skip("the shipped models are not in pretrained/")
    yield from app_server(tmp_path_factory, PRETRAINED)


def test_tour_through_every_stop(server):
    url, log = server
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        page.get_by_text("See the famous effects").wait_for()
        _full_screenshot(page, "tour-0-home")
        page.get_by_role("button", name=re.compile("Start the tour")).click()
        for i, stop in enumerate(tour.STOPS):
            page.get_by_text(f"stop {i + 1} of {len(tour.STOPS)}: {stop.title}").wait_for(timeout=120_000)
            _settle(page, 0, timeout=180_000)
            page.wait_for_timeout(1500)
            no_errors(page, stop.key)
            assert page.url.rstrip("/").endswith("/" + URLS[stop.page]), (stop.key, page.url)
            assert _model_shown(page).startswith(stop.model), (stop.key, _model_shown(page))
            _full_screenshot(page, f"tour-{i + 1}-{stop.key}")
            last = i + 1 == len(tour.STOPS)
            page.get_by_role("button", name=re.compile("Finish the tour" if last else "Next stop")).click()
        page.wait_for_timeout(3000)
        assert page.get_by_role("button", name=re.compile("Next stop")).count() == 0


def _idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=30_000)
    page.wait_for_timeout(300)


def test_guessing_game_by_keyboard(server):
    url, log = server
    model, config = checkpoint.load(PRETRAINED / "shakespeare-lstm")  # the default model and its default text
    text = tour.stop_text(config)
    start = shannon.passage_start(text)
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1400, "height": 2400})
        # Home first: on a server that has not run st.navigation yet, a deep link to any page opens with
        # Streamlit's "Page not found" dialog (see the report); the tour test may not have run before this one
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        page.goto(f"{url}/guess", wait_until="domcontentloaded")
        _settle(page, 0)
        assert page.get_by_text("Page not found").count() == 0
        box = page.get_by_label(re.compile("Your guess for the next character"))
        played = 0
        for k in range(12):
            target = text[start + k]
            if target == "\n":
                page.get_by_role("button", name=re.compile("New line")).click()
            else:
                if k == 0 or text[start + k - 1] == "\n":
                    box.click()  # after a button click; after Enter the field keeps the focus: the student types on
                if k % 3 == 1:  # a wrong try first, now and then
                    page.keyboard.type("q" if target != "q" else "z")
                    page.keyboard.press("Enter")
                    page.get_by_text("Not:").wait_for(timeout=30_000)
                    _idle(page)  # a key typed while the rerun is still drawing could be cleared by it
                page.keyboard.type(target)
                page.keyboard.press("Enter")
            played += 1
            page.get_by_text(re.compile(r"You found")).wait_for(timeout=30_000)
            page.wait_for_function(
                f"document.querySelectorAll('.rnnviz-guess span[title]').length >= {played}", timeout=30_000)
            _idle(page)
        no_errors(page, "guess")
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert "The model's answer" in body and "Shannon's bounds" in body
        assert re.search(r"\d\.\d\d to \d\.\d\d", body)
        _full_screenshot(page, "guess-played")
        page.get_by_text("Class board (optional)").click()
        page.get_by_label("Nickname").fill("tester")
        page.get_by_label("Nickname").press("Enter")
        page.get_by_role("button", name="Post my score").click()
        page.wait_for_timeout(2500)
        no_errors(page, "guess board")
        _full_screenshot(page, "guess-board")
    assert SHOTS.is_dir()


# On a projector (1280 x 800), each stop's banner stays compact: the element its paragraph speaks of
# starts in view, with at least VISIBLE pixels of it on screen, and no button label is cut to "…".
PROJECTOR = {"width": 1280, "height": 800}
VISIBLE = 100
MAIN = '[data-testid="stMain"] '
NAMED = {  # stop -> the element its paragraph names first
    "quotes": MAIN + '[data-testid="stHtml"]',  # "Look at the coloured code"
    "cell": MAIN + '[data-testid="stPlotlyChart"]',  # "The strip outlines the opening quote" (the page's first chart)
    "line": MAIN + '[data-testid="stHtml"]',  # the coloured text, blue to red along the line
    "temperature": MAIN + '[data-testid="stHtml"]',  # the sample, shaded by how sure the model was
    "gates": MAIN + '[data-testid="stHtml"]',  # "The ribbons show the gates"
    "vanishing": ".st-key-grad_fresh",  # "The chart shows how much of it is left"
    "memory": ".st-key-grad_memory",  # "The right-hand chart shows why"
}


def _top_and_cut_buttons(page, selector: str) -> dict:
    return page.evaluate("""sel => {
        const e = document.querySelector(sel);
        const cut = [...document.querySelectorAll('.st-key-tour_banner button')].filter(b => {
            const label = b.querySelector('[data-testid="stMarkdownContainer"]');
            return label && label.scrollWidth > label.clientWidth + 1; }).map(b => b.innerText);
        return {top: e ? e.getBoundingClientRect().top : null, cut,
                buttons: [...document.querySelectorAll('.st-key-tour_banner button')].length};
    }""", selector)


def test_every_stop_fits_a_projector(server):
    url, log = server
    assert set(NAMED) == {s.key for s in tour.STOPS}
    with browser_page(log) as page:
        page.set_viewport_size(PROJECTOR)
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        page.get_by_role("button", name=re.compile("Start the tour")).click()
        for i, stop in enumerate(tour.STOPS):
            page.get_by_text(f"stop {i + 1} of {len(tour.STOPS)}: {stop.title}").wait_for(timeout=120_000)
            page.wait_for_selector(NAMED[stop.key], timeout=180_000)
            _settle(page, 0, timeout=180_000)
            page.wait_for_timeout(1500)
            no_errors(page, stop.key)
            page.screenshot(path=str(SHOTS / f"projector-{i + 1}-{stop.key}.png"))  # the first screen only
            seen = _top_and_cut_buttons(page, NAMED[stop.key])
            assert seen["buttons"] >= 2 and not seen["cut"], (stop.key, seen)
            assert 0 <= seen["top"] <= PROJECTOR["height"] - VISIBLE, (stop.key, seen)
            last = i + 1 == len(tour.STOPS)
            page.get_by_role("button", name=re.compile("Finish the tour" if last else "Next stop")).click()
