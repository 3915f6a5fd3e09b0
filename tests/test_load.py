"""A full classroom at once: one server, 20 browser sessions walking every page, and trainings in parallel.

Runs `streamlit run app.py` with the shipped models (the real classroom case) and one headless
Chromium with a context per student (Playwright's async API, so the sessions really overlap).
Figures (render times, peak memory) are printed and written to artifacts/load.json for
docs/reliability.md; the assertions are about correctness only, never about time.
"""
import asyncio
import json
import os
import re
import statistics
import time

import pytest

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, ROOT, peak_rss_mib, streamlit_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SESSIONS = int(os.environ.get("RNNVIZ_LOAD_SESSIONS", 20))  # fewer only to debug the test itself
TIMEOUT = 240_000  # ms: 20 sessions share 2 cores
# nav link text, the page's h1, how many plotly charts it draws at least
WALK = [("Train", "Train", 0), ("Activations", "Activations", 2), ("Gates", "Gates", 3),
        ("Gradients", "Gradients through time", 2), ("Sample", "Sample", 1), ("Neuron search", "Neuron search", 1)]
OUT = ROOT / "artifacts" / "load.json"


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def _settle(page, title: str, charts: int) -> None:
    """Wait until this page's title is up, its charts are drawn and the script run has ended."""
    await page.locator("h1", has_text=title).first.wait_for(timeout=TIMEOUT)
    if charts:
        await page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                                     timeout=TIMEOUT)
    await page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=TIMEOUT)


async def _problems(page, where: str) -> list[str]:
    out = []
    if await page.locator('[data-testid="stException"]').count():
        out.append(f"{where}: exception shown")
    errors = await page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    out += [f"{where}: error {e!r}" for e in errors]
    if await page.get_by_text("Page not found").count():
        out.append(f"{where}: page not found")
    return out


async def _student(browser, url: str, i: int, times: dict, problems: list) -> None:
    """One student: open the app, visit every page through the sidebar, move the temperature slider."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT)
    ctx.set_default_navigation_timeout(TIMEOUT)
    page = await ctx.new_page()
    try:
        t0 = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded")
        await _settle(page, "rnnviz", 0)
        times.setdefault("Home", []).append(time.perf_counter() - t0)
        problems += await _problems(page, f"session {i} Home")
        for link, title, charts in WALK:
            t0 = time.perf_counter()
            await page.locator('[data-testid="stSidebarNavLink"]', has_text=link).first.click()
            await _settle(page, title, charts)
            times.setdefault(link, []).append(time.perf_counter() - t0)
            problems += await _problems(page, f"session {i} {link}")
            if link == "Sample":
                steps = 1 + i % 6  # different temperatures, so not every session hits the same cache entry
                slider = page.get_by_role("slider", name="Temperature")
                t0 = time.perf_counter()
                await slider.focus()
                for _ in range(steps):
                    await slider.press("ArrowRight")
                want = f"Generated at temperature {0.8 + 0.05 * steps:.2f}"
                await page.get_by_text(want).first.wait_for(timeout=TIMEOUT)
                await _settle(page, title, charts)
                times.setdefault("Sample, temperature moved", []).append(time.perf_counter() - t0)
                problems += await _problems(page, f"session {i} Sample after the slider")
    except Exception as e:  # noqa: BLE001 - report every session, not just the first to fail
        problems.append(f"session {i}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    finally:
        await ctx.close()


async def _classroom(url: str) -> tuple[dict, list]:
    from playwright.async_api import async_playwright

    times, problems = {}, []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*(_student(browser, url, i, times, problems) for i in range(SESSIONS)))
        finally:
            await browser.close()
    return times, problems


def _record(key: str, value) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[key] = value
    OUT.write_text(json.dumps(data, indent=1))


@pytest.fixture(scope="module")
def classroom_server(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium); the load test needs it")
    pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
    if not (ROOT / "pretrained" / "shakespeare-lstm").is_dir():
        pytest.skip("the shipped shakespeare-lstm is missing")
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    env = {"RNNVIZ_MODELS": str(tmp_path_factory.mktemp("models"))}
    with streamlit_server(log_path, env) as (url, proc):
        yield url, proc, log_path


def test_twenty_sessions_walk_every_page(classroom_server):
    url, proc, log_path = classroom_server
    t0 = time.perf_counter()
    times, problems = asyncio.run(_classroom(url))
    wall = time.perf_counter() - t0
    assert not problems, "\n".join(problems)
    every = [t for ts in times.values() for t in ts]
    assert len(every) == SESSIONS * (len(WALK) + 2)  # every page of every session rendered, plus the slider
    log = log_path.read_text()
    loads = re.findall(r"loading checkpoint (\S+)", log)
    assert loads.count(str(ROOT / "pretrained" / "shakespeare-lstm")) == 1, loads  # shared, not per session
    assert "Traceback" not in log, log[-3000:]
    figures = {"sessions": SESSIONS, "wall_s": round(wall, 1), "renders": len(every),
               "p50_s": round(statistics.median(every), 2), "p95_s": round(_pct(every, 0.95), 2),
               "max_s": round(max(every), 2), "server_peak_rss_mib": round(peak_rss_mib(proc.pid)),
               "checkpoint_loads": loads,
               "per_page": {k: {"p50_s": round(statistics.median(v), 2), "p95_s": round(_pct(v, 0.95), 2)}
                            for k, v in times.items()}}
    _record("classroom", figures)
    print(json.dumps(figures, indent=1))


async def _train_and_watch(url: str) -> dict:
    """Sessions A and B each start a training; session C meanwhile re-renders Activations, timed."""
    from playwright.async_api import async_playwright

    async def open_page(browser, link, title, charts):
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(TIMEOUT)
        ctx.set_default_navigation_timeout(TIMEOUT)
        page = await ctx.new_page()
        await page.goto(url, wait_until="domcontentloaded")
        await _settle(page, "rnnviz", 0)
        await page.locator('[data-testid="stSidebarNavLink"]', has_text=link).first.click()
        await _settle(page, title, charts)
        return page

    async def render_times(page, n):
        out = []
        slider = page.get_by_role("slider", name=re.compile("^Window start"))
        for _ in range(n):  # each step of the window slider is a full rerun of the page
            start = int(await slider.input_value()) + 1
            t0 = time.perf_counter()
            await slider.focus()
            await slider.press("ArrowRight")
            await page.locator(".gtitle", has_text=f"characters {start} to").wait_for(timeout=TIMEOUT)
            await _settle(page, "Activations", 2)
            out.append(time.perf_counter() - t0)
        return out

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            a, b = [await open_page(browser, "Train", "Train", 0) for _ in range(2)]
            c = await open_page(browser, "Activations", "Activations", 2)
            idle = await render_times(c, 5)
            for page in (a, b):
                await page.get_by_role("button", name=re.compile(r"Start$")).click()
            for page in (a, b):
                await page.wait_for_function("document.body.innerText.includes('chars/s')", timeout=TIMEOUT)
            busy = await render_times(c, 5)
            for page in (a, b):
                await page.wait_for_function("document.body.innerText.includes('Finished runs')", timeout=TIMEOUT)
            problems = []
            for name, page in (("A", a), ("B", b), ("C", c)):
                problems += await _problems(page, f"session {name}")
            # each session lists its own finished run, and only that one
            runs = [await page.get_by_role("button", name=re.compile("Study this model")).count() for page in (a, b)]
            return {"idle": idle, "busy": busy, "problems": problems, "runs": runs}
        finally:
            await browser.close()


def test_two_trainings_and_a_page_elsewhere(classroom_server):
    url, proc, log_path = classroom_server
    r = asyncio.run(_train_and_watch(url))
    assert not r["problems"], r["problems"]
    assert r["runs"] == [1, 1]  # each session got its own finished model, and only its own
    assert "Traceback" not in log_path.read_text()
    figures = {"idle_rerender_s": [round(t, 2) for t in r["idle"]],
               "rerender_while_two_trainings_s": [round(t, 2) for t in r["busy"]],
               "idle_median_s": round(statistics.median(r["idle"]), 2),
               "busy_median_s": round(statistics.median(r["busy"]), 2)}
    _record("training_elsewhere", figures)
    print(json.dumps(figures, indent=1))
