"""Why this character? in a real browser, on the shipped models: the default view, the aggregate of the
Shakespeare LSTM, GRU and RNN, and python-lstm. Screenshots: artifacts/screenshots/why-*.png.
"""
import re
import shutil

import pytest

from streamlit_server import ROOT, app_server, no_errors, require_browser
from test_browser import _full_screenshot, _main_text, _model_shown, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NAMES = ("shakespeare-lstm", "shakespeare-gru", "shakespeare-rnn", "python-lstm")


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    require_browser()
    pre = tmp_path_factory.mktemp("pretrained-why")
    for name in NAMES:
        if not (ROOT / "pretrained" / name).is_dir():
            pytest.skip(f"the shipped model {name} is not here")
        shutil.copytree(ROOT / "pretrained" / name, pre / name)
    yield from app_server(tmp_path_factory, pre)


def test_why_on_the_shipped_models(shipped_server):
    url, log = shipped_server
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1400, "height": 2400})
        page.goto(url, wait_until="domcontentloaded")  # the root first (see test_browser)
        _settle(page, 0)
        page.goto(f"{url}/why", wait_until="domcontentloaded")
        page.locator("h1", has_text="Why this character?").first.wait_for(timeout=120_000)
        _settle(page, 2, timeout=180_000)
        no_errors(page, "why")
        body = _main_text(page)
        assert _model_shown(page).startswith("shakespeare-lstm")
        assert re.search(r"t = \d+", body) and "characters back" in body and "The page opened here" in body
        assert page.locator(".rnnviz-text").count() >= 1
        _full_screenshot(page, "why-shakespeare-lstm")
        # a click on a point of the distance plot makes that character the target
        t = int(re.search(r"t = (\d+)", body).group(1))
        s = t - 36
        # plotly leaves out overlapping markers on the log axis, so click at the point's data coordinates
        xy = page.evaluate("""(s) => { const gd = document.querySelectorAll('.js-plotly-plot')[0];
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, tr = gd._fullData[0];
            const r = gd.getBoundingClientRect();
            return [r.left + xa._offset + xa.l2p(Math.log10(tr.x[s])),
                    r.top + ya._offset + ya.l2p(Math.log10(tr.y[s]))]; }""", s)
        page.mouse.click(xy[0], xy[1])
        page.wait_for_function(f"document.body.innerText.includes('t = {s},')", timeout=120_000)
        _settle(page, 2, timeout=120_000)
        no_errors(page, "why after a click")
        assert page.get_by_label("t", exact=True).input_value() == str(s)
        _full_screenshot(page, "why-clicked")
        page.get_by_role("button", name=re.compile("Far-looking target")).click()
        page.wait_for_function(f"document.body.innerText.includes('t = {t},')", timeout=120_000)
        _settle(page, 2, timeout=120_000)
        # the aggregate of the three shipped Shakespeare models, computed in the background
        page.get_by_role("button", name=re.compile("Compute the aggregate")).click()
        page.wait_for_function("document.body.innerText.includes('shakespeare-rnn (RNN): at distance 40')",
                               timeout=590_000)
        _settle(page, 3, timeout=120_000)
        no_errors(page, "why aggregate")
        _full_screenshot(page, "why-aggregate")
        # python-lstm: its own text, its own far-looking target
        page.get_by_role("combobox", name="Model under study").click()
        page.get_by_role("option", name=re.compile("^python-lstm")).click()
        # python-lstm is not one of the Shakespeare trio: its aggregate is of itself alone
        page.wait_for_function("document.body.innerText.includes('ending at each target, for python-lstm.')",
                               timeout=180_000)
        _settle(page, 2, timeout=180_000)
        no_errors(page, "why python-lstm")
        assert _model_shown(page).startswith("python-lstm")
        body = _main_text(page)
        # it opens on a prediction the model is unsure of, with an edit that moves it, and no "nan" anywhere
        p = float(re.search(r"t = \d+, after reading .*?\(p = ([0-9.]+)\)", body, re.S).group(1))
        assert 0.05 <= p <= 0.7, p
        move = re.search(r"goes from ([0-9.]+) to ([0-9.]+)", body)
        assert move and move.group(1) != move.group(2)
        assert not re.search(r"[+-]nan\b|\bnan\b(?= nats| characters|×)", body)  # (the code shown may say nan)
        _full_screenshot(page, "why-python-lstm")
