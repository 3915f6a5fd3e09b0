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
round trips do not count. Beside the felt time, per move: the seconds the page's renderer main
thread was busy (Chrome's TaskDuration, over CDP), the server process's CPU seconds (/proc), and
the bytes received over the websocket; on a loaded machine these say where the time goes better
than the wall clock does. Each move goes to a value not seen before (nothing served from a
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
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

MISSED: dict[str, int] = {}  # moves not drawn within the time limit, per page

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
  // plotly.py sends numpy arrays base64-encoded ({dtype, bdata}); their text changes with the values
  const head = (a) => !a ? null : a.bdata ? a.bdata.slice(0, 120)
                           : Array.from(a).slice(0, 3).map(v => Array.isArray(v) ? v.slice(0, 3) : v);
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
    """`streamlit run app.py` in `checkout` on a free port; yields (url, pid)."""
    with streamlit_server(log_path, env, start_timeout, cwd=checkout) as (url, proc):
        yield url, proc.pid
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_busy(cdp) -> float:
    """Seconds the page's renderer main thread has spent on tasks so far (Chrome's TaskDuration)."""
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["TaskDuration"]


def received(page) -> list[int]:
    """A running list of the sizes of the websocket frames the page receives (what the server sends)."""
    sizes: list[int] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: sizes.append(len(payload))))
    return sizes


def moves(page, url: str, name: str, n: int, seed: int, sizes: list[int], cdp, pid: int) -> list[tuple]:
    """Open the page afresh, move its slider n + 1 times (the first is a warm-up).

    Per move: (felt seconds, bytes received, browser main-thread busy seconds, server CPU seconds)."""
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
        mark, busy, cpu = len(sizes), browser_busy(cdp), cpu_seconds(pid)
        page.keyboard.press("ArrowRight")
        try:
            ms = page.wait_for_function(DONE, arg=[key, before, text], polling="raf", timeout=60_000).json_value()
        except PlaywrightTimeout:  # reported, not hidden: the move counts as missed
            print(f"  {name}: move {i} from {value} not drawn within 60 s (slider now {slider.input_value()})",
                  flush=True)
            MISSED[name] = MISSED.get(name, 0) + 1
            state = page.evaluate(f"({SIGNATURE})", key)
            print(f"  chart unchanged: {state == before}; status widget shown: "
                  f"{page.locator('[data-testid=stStatusWidget]').count()}", flush=True)
            (ROOT / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "artifacts" / f"latency-missed-{name}-{i}.png"))
            settle(page)
            continue
        if i:
            out.append((ms / 1000, sum(sizes[mark:]), browser_busy(cdp) - busy, cpu_seconds(pid) - cpu))
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
    global PlaywrightTimeout
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    names = args.pages.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="rnnviz-latency-"))
    env = {"RNNVIZ_MODELS": str(tmp / "models"), "RNNVIZ_PRETRAINED": str(ROOT / "pretrained"),
           "RNNVIZ_ATLAS_DIR": str(tmp / "atlas")}
    got: dict[tuple[str, str], list[tuple]] = {}
    load0 = os.getloadavg()
    with ExitStack() as stack:
        trees = {"after": ROOT}
        if args.before:
            trees = {"before": stack.enter_context(worktree(args.before)), "after": ROOT}
        servers = {label: stack.enter_context(server(tree, tmp / f"{label}.log", env)) for label, tree in trees.items()}
        urls = {label: url for label, (url, _) in servers.items()}
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        pages = {label: browser.new_page(viewport={"width": 1400, "height": 2400}) for label in urls}
        sizes = {label: received(page) for label, page in pages.items()}
        cdps = {label: page.context.new_cdp_session(page) for label, page in pages.items()}
        for cdp in cdps.values():
            cdp.send("Performance.enable")
        for label, page in pages.items():  # a fresh server's first deep link shows "Page not found": open / first
            page.goto(urls[label], wait_until="domcontentloaded")
            settle(page, charts=False)
        for r in range(args.rounds):
            for name in names:
                for label in (urls if r % 2 == 0 else reversed(urls)):  # alternate who goes first
                    rows = moves(pages[label], urls[label], name, args.moves, 100 + r, sizes[label], cdps[label],
                                 servers[label][1])
                    got.setdefault((name, label), []).extend(rows)
                    print(f"round {r + 1} {name:<12} {label:<6} median {statistics.median(x[0] for x in rows):.3f} s  "
                          + " ".join(f"{x[0]:.2f}" for x in rows), flush=True)
    load1 = os.getloadavg()
    print(f"\nload average (1, 5, 15 min) before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
          f"after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {os.cpu_count()} cores")
    print("| slider | checkout | moves | felt, median s | p90 s | min–max s | browser busy, median s | "
          "server CPU, median s | kB received, median |")
    print("|---|---|---|---|---|---|---|---|---|")
    med = {}
    for (name, label), rows in got.items():
        q = sorted(x[0] for x in rows)
        med[(name, label)] = [statistics.median(x[j] for x in rows) for j in range(4)]
        m = med[(name, label)]
        print(f"| {name} | {label} | {len(rows)} | {m[0]:.3f} | {q[int(0.9 * (len(q) - 1))]:.3f} | "
              f"{q[0]:.2f}–{q[-1]:.2f} | {m[2]:.3f} | {m[3]:.3f} | {m[1] / 1000:.0f} |")
    if MISSED:
        print(f"moves not drawn within 60 s (left out above): {MISSED}")
    if args.before:
        for name in names:
            b, a = med[(name, "before")], med[(name, "after")]
            print(f"{name}: after / before: felt {a[0] / b[0]:.2f}, browser busy {a[2] / b[2]:.2f}, "
                  f"server CPU {a[3] / max(b[3], 1e-9):.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
