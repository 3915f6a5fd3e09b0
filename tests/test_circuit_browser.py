"""How it was computed in a real browser, on the shipped python-lstm: the closing-quote story opens, a node's hover
gives its attribution beside its ablation, a click picks it for the intervene box, an intervention reruns.
Screenshots: artifacts/screenshots/circuit-*.png (tall), circuit-1280x800.png (a projector), circuit-hover.png.
"""
import re
import shutil

import pytest

from streamlit_server import ROOT, app_server, no_errors, require_browser
from test_browser import SHOTS, _full_screenshot, _main_text, _model_shown, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NAMES = ("shakespeare-lstm", "python-lstm")

# The page coordinates of node i of the circuit graph (the first chart): its trace is the one whose customdata
# holds i; plotly's axes turn its data coordinates into pixels.
NODE_XY = """(i) => { const gd = document.querySelectorAll('.js-plotly-plot')[0];
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
    for (const tr of gd._fullData) {
        const k = (tr.customdata || []).findIndex(c => c[0] === i);
        if (k >= 0) return [r.left + xa._offset + xa.l2p(tr.x[k]), r.top + ya._offset + ya.l2p(tr.y[k])];
    }
    return null; }"""
NODES = """() => { const gd = document.querySelectorAll('.js-plotly-plot')[0];
    return gd._fullData.flatMap(tr => (tr.customdata || []).map((c, k) =>
        ({i: c[0], name: 'L' + c[1] + ' ' + c[2] + c[3] + ' at #' + c[4], size: tr.marker.size[k]}))); }"""


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    require_browser()
    pre = tmp_path_factory.mktemp("pretrained-circuit")
    for name in NAMES:
        if not (ROOT / "pretrained" / name).is_dir():
            pytest.skip(f"the shipped model {name} is not here")
        shutil.copytree(ROOT / "pretrained" / name, pre / name)
    yield from app_server(tmp_path_factory, pre)


def test_the_closing_quote_story_hover_click_and_intervene(shipped_server):
    url, log = shipped_server
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(url, wait_until="domcontentloaded")  # the root first (see test_browser)
        _settle(page, 0)
        page.goto(f"{url}/circuit", wait_until="domcontentloaded")
        page.locator("h1", has_text="How it was computed").first.wait_for(timeout=120_000)
        _settle(page, 2, timeout=180_000)
        no_errors(page, "circuit")
        assert _model_shown(page).startswith("python-lstm")  # the page opened on its story's model
        body = _main_text(page)
        assert "rests most on" in body and "coverage" in body and "r²" in body and "The memory path" in body
        assert re.search(r"the closing quote at #\d+, \d+ characters after its opening quote", body)
        page.screenshot(path=str(SHOTS / "circuit-1280x800.png"))
        _full_screenshot(page, "circuit-python-lstm")
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        # hover: the smallest node, so no larger one covers it
        nodes = page.evaluate(NODES)
        small = min(nodes, key=lambda n: n["size"])
        x, y = page.evaluate(NODE_XY, small["i"])
        page.mouse.move(x, y)
        hover = page.locator(".hoverlayer .hovertext").first
        hover.wait_for(timeout=10_000)
        tip = hover.text_content()
        assert "attribution (estimate)" in tip and "ablation (measured" in tip, tip
        page.screenshot(path=str(SHOTS / "circuit-hover.png"))
        # click: that node goes into the intervene box (its unit at its one position, the value 0)
        page.mouse.click(x, y)
        name = small["name"]
        page.wait_for_function(f"document.body.innerText.includes('{name}:')", timeout=120_000)
        _settle(page, 2, timeout=120_000)
        no_errors(page, "circuit after a click")
        layer, state, unit, pos = re.fullmatch(r"L(\d+) ([hc])(\d+) at #(\d+)", name).groups()
        assert page.get_by_label("Unit", exact=True).input_value() == unit
        assert page.get_by_label("From position", exact=True).input_value() == pos
        assert f"after L{layer} {state}{unit} = 0 at #{pos}" in _main_text(page)
        # intervene: set it to 3 instead; the rerun's log p is shown
        value = page.get_by_label("Value", exact=True)
        value.fill("3")
        value.press("Enter")
        page.wait_for_function(f"document.body.innerText.includes('after L{layer} {state}{unit} = 3 at #{pos}')",
                               timeout=120_000)
        _settle(page, 2, timeout=120_000)
        no_errors(page, "circuit after an intervention")
        _full_screenshot(page, "circuit-intervened")
