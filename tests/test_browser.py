"""One real-browser pass over every page: streamlit run app.py + headless Debian chromium (Playwright).

Screenshots land in artifacts/screenshots/<page>.png (git-ignored) for a person to look at.
"""
import re
from contextlib import contextmanager

import pytest

from rnnviz import checkpoint
from rnnviz.corpora import load_corpus
from rnnviz.model import build
from rnnviz.vocab import Vocab
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, ROOT, app_server, no_errors, require_browser, streamlit_server

pytestmark = pytest.mark.browser

SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = CHROMIUM_ARGS
# url path -> (screenshot name, how many plotly charts at least)
PAGES = [("", "home", 0), ("train", "train", 0), ("activations", "activations", 2), ("gates", "gates", 3),
         ("gradients", "gradients", 2), ("sample", "sample", 1), ("neurons", "neurons", 1)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    pre = tmp_path_factory.mktemp("pretrained")
    text = load_corpus("shakespeare", max_chars=50_000).text
    model = build(Vocab.from_text(text), cell="lstm", hidden_size=16, num_layers=1, seed=0)
    checkpoint.save(model, pre / "tiny-lstm", meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.5})
    yield from app_server(tmp_path_factory, pre)


def _settle(page, charts: int, timeout: float = 90_000) -> None:
    """Wait for the app to render the page and finish running."""
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=timeout)
    page.wait_for_selector("h1", timeout=timeout)
    if charts:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                               timeout=timeout)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    page.wait_for_timeout(800)  # plotly's last layout pass


@contextmanager
def browser_page(log=None):
    """A page of a headless Chromium; afterwards, when given the server's log, it must hold no traceback."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()
    if log is not None:
        log.seek(0)
        server_log = log.read()
        assert "Traceback" not in server_log, server_log[-3000:]


def _full_screenshot(page, name: str) -> None:
    """Streamlit scrolls inside its main container, so grow the viewport to the content first."""
    height = page.evaluate("""() => Math.max(...['[data-testid="stMainBlockContainer"]',
        '[data-testid="stMain"]', '[data-testid="stSidebarContent"]']
        .map(s => document.querySelector(s)).filter(Boolean).map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": 1400, "height": min(max(int(height) + 120, 1000), 12000)})
    page.wait_for_timeout(1200)  # plotly redraws for the new size
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_every_page_renders(server):

    url, log = server
    with browser_page(log) as page:
        for path, name, charts in PAGES:
            page.goto(f"{url}/{path}", wait_until="domcontentloaded")
            _settle(page, charts)
            _full_screenshot(page, name)
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: exception shown"
            assert page.get_by_text("Page not found").count() == 0, f"{name}: the deep link /{path} was not found"
            errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
            assert not errors, f"{name}: error shown: {errors}"
            rendered = page.locator(".js-plotly-plot .main-svg").count()
            assert rendered >= charts, f"{name}: {rendered} charts drawn, expected {charts}"

        # training runs in a worker thread; the page polls it every second, Stop ends it
        page.goto(f"{url}/train", wait_until="domcontentloaded")
        _settle(page, 0)
        page.get_by_role("button", name=re.compile(r"Start$")).click()
        page.wait_for_function("document.body.innerText.includes('chars/s')", timeout=90_000)
        page.wait_for_function("document.body.innerText.includes('val loss')", timeout=90_000)
        page.wait_for_selector(".js-plotly-plot .scatterlayer .trace", timeout=30_000)
        _full_screenshot(page, "train-running")
        page.get_by_role("button", name=re.compile(r"Stop$")).click()
        page.wait_for_function("document.body.innerText.includes('Finished runs')", timeout=60_000)
        _settle(page, 1)
        _full_screenshot(page, "train-done")
        assert page.locator('[data-testid="stException"]').count() == 0
        assert not page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
        assert page.get_by_role("button", name=re.compile("Study this model")).count() == 1
        # "Study this model" selects the run's model and opens Activations on it
        page.get_by_role("button", name=re.compile("Study this model")).click()
        page.locator("h1", has_text="Activations").first.wait_for(timeout=90_000)
        _settle(page, 2)
        assert "trained in this session" in _model_shown(page)

        # a hostile text stays text: typed <script> shows literally in the coloured text
        page.goto(f"{url}/activations", wait_until="domcontentloaded")
        _settle(page, 2)
        page.get_by_text("Paste text").click()
        area = page.get_by_label("Your text")
        area.fill("<script>window.pwned=1</script> x")
        area.press("Control+Enter")
        page.wait_for_timeout(500)
        _settle(page, 2)
        assert page.locator(".rnnviz-text").first.inner_text().startswith("<script>")
        assert page.evaluate("window.pwned === undefined")
        _full_screenshot(page, "activations-script")


def test_upload_over_the_size_limit_is_refused(server, tmp_path):
    """A text file just over server.maxUploadSize (.streamlit/config.toml) is refused with a message, never sent."""
    import tomllib


    url, log = server
    limit_mb = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate((limit_mb + 1) * 2**20)  # sparse: no time spent writing
    sent = []
    with browser_page() as page:
        page.on("request", lambda r: sent.append(r.url) if "upload_file" in r.url else None)
        # the app's root first: Streamlit's legacy pages/ handling shows a stray "Page not found" dialog
        # to the very first session of a fresh server that arrives by a deep link (docs/reliability.md)
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        page.goto(f"{url}/activations", wait_until="domcontentloaded")
        _settle(page, 2)
        page.get_by_text("Upload a text file").click()
        uploader = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"]',
                                has_text="Text file (UTF-8)")
        uploader.wait_for(timeout=60_000)
        uploader.locator('input[type="file"]').set_input_files(str(big))
        page.get_by_text(re.compile(rf"{limit_mb}(\.0)?\s*MB or smaller")).first.wait_for(timeout=60_000)
        _settle(page, 2)
        assert page.locator('[data-testid="stException"]').count() == 0
        _full_screenshot(page, "upload-too-big")
    assert not sent, f"the oversized file was sent to the server: {sent}"


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """A tiny default model plus copies of the real python-lstm and memory models: a non-default model
    with its own corpus, to walk every cross-page link with."""
    import shutil

    require_browser()
    pre = tmp_path_factory.mktemp("pretrained-real")
    text = load_corpus("shakespeare", max_chars=50_000).text
    model = build(Vocab.from_text(text), cell="lstm", hidden_size=16, num_layers=1, seed=0)
    checkpoint.save(model, pre / "shakespeare-lstm", meta={"corpus": {"name": "shakespeare"}, "val_loss": 3.5})
    for name in ("python-lstm", "memory-rnn", "memory-gru", "memory-lstm"):
        shutil.copytree(ROOT / "pretrained" / name, pre / name)
    env = {"RNNVIZ_PRETRAINED": str(pre), "RNNVIZ_MODELS": str(tmp_path_factory.mktemp("models")),
           "RNNVIZ_ATLAS_DIR": str(tmp_path_factory.mktemp("atlas")), "OMP_NUM_THREADS": "1"}
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    with streamlit_server(log_path, env) as (url, _):
        with open(log_path) as log:
            yield url, log, pre


def _nav(page, title: str, charts: int = 0) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    page.locator("h1", has_text=title).first.wait_for(timeout=90_000)
    _settle(page, charts)


def _model_shown(page) -> str:
    return page.get_by_role("combobox", name="Model under study").input_value()


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_links_keep_the_model_and_small_truths_hold(real_server):
    """Issue 16, item 7, in a real browser: every cross-page link keeps a non-default model; one colour
    per cell; the AUROC's direction in words; a clamp value out of range is described as used; the
    python excerpt opens on code; /home; '1 thread'."""

    from rnnviz import corpora, heldout

    url, log, pre = real_server
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        assert "CPU (1 thread)" in page.locator('[data-testid="stSidebar"]').inner_text()
        page.goto(f"{url}/home", wait_until="domcontentloaded")
        _settle(page, 0)
        assert page.get_by_text("Page not found").count() == 0
        assert page.locator("h1").first.inner_text().startswith("rnnviz")
        assert page.get_by_text("Model card").count() == 1  # once: in the sidebar
        # pick python-lstm, then follow Neuron search's links
        page.get_by_role("combobox", name="Model under study").click()
        page.get_by_role("option", name=re.compile("^python-lstm")).click()
        _settle(page, 0)
        assert _model_shown(page).startswith("python-lstm")
        _nav(page, "Neuron search", 1)
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert re.search(r"(high|low) inside", body), "the AUROC's direction in words"
        page.get_by_role("button", name=re.compile("Show in Activations")).first.click()
        page.locator("h1", has_text="Activations").first.wait_for(timeout=90_000)
        _settle(page, 2)
        no_errors(page, "Activations from Neuron search")
        assert _model_shown(page).startswith("python-lstm"), "a page switch changed the model"
        # the excerpt opens on code, not inside a docstring
        config = checkpoint.read_config(pre / "python-lstm")
        first = corpora.excerpt(heldout.held_out(config), 2000).split("\n")[0]
        assert page.locator(".rnnviz-text").first.inner_text().startswith(first)
        _full_screenshot(page, "activations-python-lstm")
        _nav(page, "Neuron search", 1)
        page.get_by_role("button", name=re.compile("Clamp it in Sample")).first.click()
        page.locator("h1", has_text="Sample").first.wait_for(timeout=90_000)
        _settle(page, 1)
        assert _model_shown(page).startswith("python-lstm")
        value = page.get_by_label(re.compile(r"^Value \("))
        value.fill("50")
        value.press("Enter")
        page.wait_for_function("document.body.innerText.includes('is outside the allowed')", timeout=90_000)
        _settle(page, 1)
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert "held at 10" in text and "over the text under study" in text and "KL" in text
        no_errors(page, "Sample with a clamp at 50")
        _full_screenshot(page, "sample-clamp-python-lstm")
        # Gradients: a cell keeps its colour on every chart
        _nav(page, "Gradients", 4)
        colours = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(el =>
            (el.data || []).map(t => [t.name || '', (t.line || {}).color || '']))""")
        by_cell = {}
        for chart in colours:
            for name, colour in chart:
                cell = name.split(",")[0].split(" ")[0].upper()
                if cell in ("RNN", "GRU", "LSTM") and colour and "f̄ = 0.50" not in name:
                    by_cell.setdefault(cell, set()).add(colour)
        assert set(by_cell) == {"RNN", "GRU", "LSTM"} and all(len(c) == 1 for c in by_cell.values()), by_cell
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert "same number of training steps" in body and "recalls per gap" in body
        _full_screenshot(page, "gradients-python-lstm")
        no_errors(page, "Gradients")
        # a memory unit's button opens Activations on memory-lstm
        page.get_by_role("button", name=re.compile(r"^c\d+: ")).first.click()
        page.locator("h1", has_text="Activations").first.wait_for(timeout=90_000)
        _settle(page, 2)
        assert _model_shown(page).startswith("memory-lstm")
        no_errors(page, "Activations from Gradients")


def test_atlas_build_map_click_dashboard_and_match(server):
    """Build an atlas in the browser, click a unit on the map, read its dashboard, run a match."""

    url, log = server
    with browser_page(log) as page:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        _nav(page, "Unit atlas")
        page.get_by_role("button", name=re.compile("Build the atlas")).click()
        page.wait_for_selector(".js-plotly-plot .scatterlayer .points path", timeout=240_000)
        _settle(page, 1)
        no_errors(page, "Unit atlas")
        _full_screenshot(page, "atlas")
        page.locator(".js-plotly-plot .scatterlayer .points path").first.click(force=True)
        page.locator("h1", has_text="Unit dashboard").first.wait_for(timeout=90_000)
        _settle(page, 1)
        no_errors(page, "Unit dashboard")
        assert page.locator(".rnnviz-text").count() >= 16  # top and bottom contexts
        assert page.get_by_text(re.compile("^Layer \\d+, [hc]\\d+$")).count() == 1
        _full_screenshot(page, "unit-dashboard")
        _nav(page, "Select and match", 0)
        no_errors(page, "Select and match")
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert "units selected" in body or "no unit stays" in body.lower() or "all " in body
        _full_screenshot(page, "match")
