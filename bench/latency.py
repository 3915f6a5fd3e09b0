#!/usr/bin/env python3
"""Felt latency in a real browser: from a slider moved by keyboard to the page drawn again.

    .venv/bin/python bench/latency.py                      # this checkout, the three sliders
    .venv/bin/python bench/latency.py --before HEAD~3      # and that commit, interleaved in one run

One `streamlit run app.py` per checkout (the shipped models, the default shakespeare-lstm), one
headless Debian chromium (Playwright). A move is: focus the slider, press ArrowRight once. Its
latency runs from the keydown event to the first animation frame at which both
  - the chart that the slider drives holds other data than before the move (its Plotly data or
    title; for Sample also the line "Generated at temperature <new value>"), and
  - Streamlit's status widget ("Running...") is gone, so the rerun has finished and every delta
    it sent has been applied.
Both times are read from the browser's own clock (performance.now()), so the Python side's
round trips do not count. Each move goes to a value not seen before (nothing served from a
cache that an earlier move filled). With --before, the two checkouts alternate page by page and
round by round on the same machine, so load on a shared box moves both alike; the ratio of the
medians is the figure to trust.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402

# url path, slider name, the chart the slider drives (its st.plotly_chart key), extra text to wait for
PAGES = {
    "activations": ("activations", re.compile("^Window start"), "heatmap", None),
    "gates": ("gates", re.compile("^Window start"), "gate_lines", None),
    "sample": ("sample", re.compile("^Temperature"), "temp_dist", "Generated at temperature {value:.2f}"),
}

# A signature of the chart: changes whenever its data or title does (cheap enough to read every frame).
SIGNATURE = """(key) => {
  const box = document.querySelector('.st-key-' + key);
  const gd = box && box.querySelector('.js-plotly-plot');
  if (!gd || !gd.data) return null;
  const head = (a) => a ? Array.from(a).slice(0, 3).map(v => Array.isArray(v) ? v.slice(0, 3) : v) : null;
  return JSON.stringify([gd.layout && gd.layout.title && gd.layout.title.text,
                         gd.data.map(t => [t.name, head(t.x), head(t.y), head(t.z), t.x && t.x.length])]);
}"""

DONE = """([key, before, want]) => {
  const sig = (%s)(key);
  if (sig === null || sig === before) return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (want && !document.body.innerText.includes(want)) return false;
  return performance.now() - window.__t0;
}""" % SIGNATURE

ARM = """() => {
  window.__t0 = null;
  if (!window.__armed) {
    document.addEventListener('keydown', () => { if (window.__t0 === null) window.__t0 = performance.now(); }, true);
    window.__armed = true;
  }
}"""


@contextmanager
def server(checkout: Path, log_path: Path, env: dict, start_timeout: float = 120):
    """`streamlit run app.py` in `checkout` on a free port; yields the url."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=checkout, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"streamlit did not start in {checkout}:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        log_text = log_path.read_text()
        if "Traceback" in log_text:
            print(f"WARNING: traceback in the server log of {checkout}:\n{log_text[-2000:]}", file=sys.stderr)


@contextmanager
def worktree(rev: str):
    """A detached checkout of `rev` in a temporary folder, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="rnnviz-latency-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
        shutil.rmtree(path.parent, ignore_errors=True)


def settle(page, charts: bool = True, timeout: float = 180_000) -> None:
    page.wait_for_selector("h1", timeout=timeout)
    if charts:
        page.wait_for_selector(".js-plotly-plot", timeout=timeout)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    page.wait_for_timeout(500)


def moves(page, url: str, name: str, n: int, seed: int) -> list[float]:
    """Open the page afresh, move its slider n + 1 times (the first is a warm-up); seconds per move."""
    path, slider_name, key, want = PAGES[name]
    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    settle(page)
    if name == "sample":  # a seed of its own per round: samples that an earlier round cached are not reused
        box = page.get_by_label("Seed")
        box.fill(str(seed))
        box.press("Enter")
        page.wait_for_timeout(300)
        settle(page)
    slider = page.get_by_role("slider", name=slider_name).first
    out = []
    for i in range(n + 1):
        value = float(slider.input_value())
        step = 0.05 if name == "sample" else 1
        text = want.format(value=value + step) if want else ""
        before = page.evaluate(f"({SIGNATURE})", key)
        page.evaluate(ARM)
        slider.focus()
        page.keyboard.press("ArrowRight")
        ms = page.wait_for_function(DONE, arg=[key, before, text], polling="raf", timeout=120_000).json_value()
        if i:
            out.append(ms / 1000)
        page.wait_for_timeout(400)  # idle between moves
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="a git revision to measure beside this checkout, interleaved")
    ap.add_argument("--moves", type=int, default=12, help="timed moves per page per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pages", default="activations,gates,sample")
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("no chromium on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    names = args.pages.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="rnnviz-latency-"))
    env = {"RNNVIZ_MODELS": str(tmp / "models"), "RNNVIZ_PRETRAINED": str(ROOT / "pretrained"),
           "RNNVIZ_ATLAS_DIR": str(tmp / "atlas")}
    times: dict[tuple[str, str], list[float]] = {}
    load0 = os.getloadavg()
    with ExitStack() as stack:
        trees = {"after": ROOT}
        if args.before:
            trees = {"before": stack.enter_context(worktree(args.before)), "after": ROOT}
        urls = {label: stack.enter_context(server(tree, tmp / f"{label}.log", env)) for label, tree in trees.items()}
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        pages = {label: browser.new_page(viewport={"width": 1400, "height": 2400}) for label in urls}
        for label, page in pages.items():  # a fresh server's first deep link shows "Page not found": open / first
            page.goto(urls[label], wait_until="domcontentloaded")
            settle(page, charts=False)
        for r in range(args.rounds):
            for name in names:
                for label in (urls if r % 2 == 0 else reversed(urls)):  # alternate who goes first
                    got = moves(pages[label], urls[label], name, args.moves, seed=100 + r)
                    times.setdefault((name, label), []).extend(got)
                    print(f"round {r + 1} {name:<12} {label:<6} median {statistics.median(got):.3f} s  "
                          + " ".join(f"{t:.2f}" for t in got), flush=True)
    load1 = os.getloadavg()
    print(f"\nload average (1, 5, 15 min) before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
          f"after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {os.cpu_count()} cores")
    print("| slider | checkout | moves | median s | p90 s | min–max s |")
    print("|---|---|---|---|---|---|")
    for (name, label), ts in times.items():
        q = sorted(ts)
        print(f"| {name} | {label} | {len(ts)} | {statistics.median(ts):.3f} | {q[int(0.9 * (len(q) - 1))]:.3f} | "
              f"{q[0]:.2f}–{q[-1]:.2f} |")
    if args.before:
        for name in names:
            b, a = statistics.median(times[(name, "before")]), statistics.median(times[(name, "after")])
            print(f"{name}: after / before = {a / b:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
