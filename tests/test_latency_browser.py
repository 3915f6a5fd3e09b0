"""Felt latency, in a real browser: a slider redraws only what it drives (a fragment), and the rest still works.

What is checked is what the server sends, not a time: moving Activations' or Gates' window slider
sends far fewer messages (one per element drawn) than a rerun of the whole page (the sidebar, the
coloured text, the tables), and the moved chart still changes. Then what must still hold around the fragments: the window start
and the temperature survive a page switch, the model picker still redraws the pages, and Sample's
dice roll table and text answer the temperature. Times are measured by bench/latency.py.
"""
import re

import pytest

from rnnviz import checkpoint
from rnnviz.corpora import load_corpus
from rnnviz.model import build
from rnnviz.vocab import Vocab
from streamlit_server import app_server, no_errors, require_browser
from test_browser import _model_shown, _nav, _settle, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    pre = tmp_path_factory.mktemp("pretrained")
    text = load_corpus("shakespeare", max_chars=50_000).text
    for name, cell in (("tiny-lstm", "lstm"), ("tiny-gru", "gru")):
        model = build(Vocab.from_text(text), cell=cell, hidden_size=24, num_layers=2, seed=0)
        checkpoint.save(model, pre / name, meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.5})
    yield from app_server(tmp_path_factory, pre)


def _chart(page, key: str) -> str:
    """The Plotly title and first trace's first values of the chart with this st.plotly_chart key."""
    return page.evaluate("""(key) => { const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
        return JSON.stringify([gd.layout.title && gd.layout.title.text,
                               gd.data.map(t => [t.name, t.y && t.y.bdata ? t.y.bdata.slice(0, 120)
                                                                  : Array.from(t.y || []).slice(0, 5)])]); }""", key)


def _sent_by(page, sizes: list[int], act, until) -> int:
    """Messages the server sent over the websocket while `act` ran and `until` became true and the run ended.

    Streamlit sends one message per element a run draws (and a few per run), so this counts what was
    redrawn; bytes would not: the browser caches large messages and gets only a reference to them again."""
    mark = len(sizes)
    act()
    page.wait_for_function(until, timeout=90_000)
    _settle(page, 1)
    return len(sizes) - mark


def _move(page, slider_name) -> None:
    slider = page.get_by_role("slider", name=slider_name).first
    slider.focus()
    page.keyboard.press("ArrowRight")


def _set_unit(page, unit: int) -> None:
    box = page.get_by_label(re.compile(r"^Unit \(0 to"))
    box.fill(str(unit))
    box.press("Enter")


def test_a_window_move_sends_only_its_part_and_the_rest_still_works(server):
    url, log = server
    with browser_page(log) as page:
        page.set_viewport_size({"width": 1400, "height": 2400})
        sizes: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: sizes.append(len(payload))))
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        _nav(page, "Activations", 2)
        window = re.compile("^Window start")

        moved = _sent_by(page, sizes, lambda: _move(page, window),
                         "document.querySelector('.st-key-heatmap .gtitle').textContent.includes('characters 1 to')")
        whole = _sent_by(page, sizes, lambda: _set_unit(page, 3),
                         "document.body.innerText.includes('Layer 1, h3')")
        print(f"Activations: {moved} messages for a window move, {whole} for a whole-page rerun")
        assert 0 < moved < whole / 2, (moved, whole)  # before the fragment both were a whole page's worth
        assert page.locator(".rnnviz-text").count() >= 1 and "Layer 1, h3" in page.inner_text("body")
        no_errors(page, "Activations after the window moved")

        _nav(page, "Gates", 3)
        before = _chart(page, "gate_lines")
        moved = _sent_by(page, sizes, lambda: _move(page, window),
                         "document.body.innerText.includes('over characters 1 to')")
        assert _chart(page, "gate_lines") != before
        whole = _sent_by(page, sizes, lambda: _set_unit(page, 4),
                         "document.body.innerText.includes('unit 4, layer 1')")
        print(f"Gates: {moved} messages for a window move, {whole} for a whole-page rerun")
        assert 0 < moved < whole / 2, (moved, whole)
        no_errors(page, "Gates after the window moved")

        # the window starts survive page switches (Activations' key is persisted)
        _nav(page, "Activations", 2)
        assert page.get_by_role("slider", name=window).first.input_value() == "1"
        assert "characters 1 to" in page.locator(".st-key-heatmap .gtitle").text_content()

        # the model picker still redraws the page, fragment included
        page.get_by_role("combobox", name="Model under study").click()
        page.get_by_role("option", name=re.compile("^tiny-gru")).click()
        page.wait_for_timeout(500)
        _settle(page, 2)
        assert _model_shown(page).startswith("tiny-gru")
        assert "Layer 1 h: top" in page.locator(".st-key-heatmap .gtitle").text_content()
        no_errors(page, "Activations on another model")

        # Sample: the temperature reruns its body; the text, the dice roll and the chart follow it
        _nav(page, "Sample", 1)
        length = page.get_by_label("Length", exact=True)
        length.fill("60")
        length.press("Enter")
        page.wait_for_function("document.body.innerText.includes('Of the 60 characters')", timeout=90_000)
        _settle(page, 1)
        before = _chart(page, "temp_dist")
        assert page.locator(".st-key-dice_table canvas").count() >= 1  # the dice roll table is drawn
        text = page.locator(".rnnviz-text").first.inner_html()
        _move(page, re.compile("^Temperature"))
        page.get_by_text("Generated at temperature 0.85").first.wait_for(timeout=90_000)
        _settle(page, 1)
        assert _chart(page, "temp_dist") != before
        assert page.locator(".rnnviz-text").first.inner_html() != text
        hover = page.locator(".rnnviz-text span").first.get_attribute("title")
        assert re.search(r"p=[0-9.e-]+, rank \d+, drawn by u=0\.\d{4} in \[0\.\d{4}, [01]\.\d{4}\)", hover), hover
        no_errors(page, "Sample after the temperature moved")
        _nav(page, "Gates", 3)
        _nav(page, "Sample", 1)
        assert page.get_by_role("slider", name=re.compile("^Temperature")).first.input_value() == "0.85"
