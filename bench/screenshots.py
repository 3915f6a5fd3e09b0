"""The README's screenshots, made from the real app so they can be remade after a change.

    python3 dev.py screenshots            # or: .venv/bin/python -m bench.screenshots [--out docs/img]

Starts `streamlit run app.py` over the shipped models (pretrained/), drives Debian's chromium through
Playwright at 1280×800 (a projector's screen, the size a class sees), and saves each view scaled down
and reduced to a small palette, so the three together stay a few hundred KB:

- tour.png        the tour's first stop: python-lstm's quote detector on Activations, the banner above;
- gradients.png   the vanishing-gradient lesson: the Gradients page's first chart;
- neurons.png     Neuron search: every unit of the default model ranked against a hypothesis.
"""
from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the same server and browser settings as the browser tests

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

VIEWPORT = {"width": 1280, "height": 800}
WIDTH = 880      # pixels wide as saved: small, yet the text stays legible
COLOURS = 96     # palette size: screenshots are flat colours, so this loses little


def shrink(png: bytes, width: int = WIDTH, colours: int = COLOURS) -> bytes:
    """Scale a screenshot to `width` pixels and quantise it to a palette PNG."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img = img.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def settle(page, charts: int = 0, timeout: float = 180_000) -> None:
    """Wait until the page has drawn `charts` plotly charts and the script has finished running."""
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=timeout)
    page.wait_for_selector("h1", timeout=timeout)
    if charts:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                               timeout=timeout)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    page.wait_for_timeout(1500)  # plotly's last layout pass


def scroll_to(page, selector: str, above: int = 70) -> None:
    """Scroll Streamlit's main column (it scrolls itself, not the window) so `selector`'s first match
    starts `above` pixels below the top of the view."""
    page.evaluate("""([sel, above]) => {
        const el = document.querySelector(sel), main = document.querySelector('[data-testid="stMain"]');
        main.scrollBy(0, el.getBoundingClientRect().top - above);
    }""", [selector, above])
    page.wait_for_timeout(1000)


def shoot(page, out: Path, name: str) -> int:
    """Save the visible 1280×800 view as out/name, shrunk; return its size in bytes."""
    data = shrink(page.screenshot())
    (out / name).write_bytes(data)
    print(f"{out / name}: {len(data) / 1024:.0f} KB", flush=True)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNGs")
    args = ap.parse_args(argv)
    if CHROMIUM is None:
        print("no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {"RNNVIZ_PRETRAINED": str(ROOT / "pretrained"), "RNNVIZ_MODELS": str(tmp / "models"),
               "RNNVIZ_ATLAS_DIR": str(tmp / "atlas"), "OMP_NUM_THREADS": "1"}
        with streamlit_server(tmp / "server.log", env, start_timeout=180) as (url, _), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, wait_until="domcontentloaded")  # a fresh server's first deep link shows "Page not found"
            settle(page)
            page.goto(f"{url}/gradients", wait_until="domcontentloaded")
            settle(page, charts=1)
            scroll_to(page, ".js-plotly-plot", above=115)  # the lesson's chart and the sliders above it
            total += shoot(page, args.out, "gradients.png")
            page.goto(f"{url}/neurons", wait_until="domcontentloaded")
            settle(page, charts=1)
            scroll_to(page, '[data-testid="stAlertContentSuccess"]', above=40)  # the best unit, its table and chart
            total += shoot(page, args.out, "neurons.png")
            page.goto(url, wait_until="domcontentloaded")
            settle(page)
            page.get_by_role("button", name=re.compile("Start the tour")).click()
            page.get_by_text("stop 1 of").wait_for(timeout=180_000)
            settle(page, charts=1)
            total += shoot(page, args.out, "tour.png")
            browser.close()
    print(f"total {total / 1024:.0f} KB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
