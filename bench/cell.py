#!/usr/bin/env python3
"""Inside the cell: the server time of one move (a step, a click or a play move), measured in one run.

    .venv/bin/python -m bench.cell            # shakespeare-lstm (2x512) on its 2,000-character excerpt
    .venv/bin/python -m bench.cell --quick    # a tiny model: a smoke run of the code, not a measurement

A move reads the cached Trace (the page traces a text once) and draws: anatomy.step, the four figures
(ui.cell.figures: strip, diagram, bars, the window) and their JSON for the browser (what st.plotly_chart
sends). Also timed: the trace the page caches per text (once per text, not per move), and the page's rerun
after a click on Next through Streamlit's AppTest, which reruns the whole page, so an upper bound on a
fragment's rerun. One thread, as the app computes a page; medians of --repeats.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import plotly.io
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import print_rows  # noqa: E402
from rnnviz import anatomy, checkpoint  # noqa: E402
from rnnviz.corpora import excerpt  # noqa: E402
from rnnviz.heldout import held_out  # noqa: E402
from rnnviz.model import build  # noqa: E402
from rnnviz.trace import trace  # noqa: E402
from rnnviz.vocab import Vocab  # noqa: E402

TARGET = 0.3  # seconds of server time per move (issue 26, item 5)


def median_time(fn, repeats: int) -> float:
    fn()  # warm: first calls pay for imports and plotly's validators
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def model_and_text(quick: bool):
    if quick:
        text = "To be, or not to be, that is the question:\n" * 40
        return build(Vocab.from_text(text), cell="lstm", hidden_size=16, num_layers=2, seed=0), text[:2000], "tiny 2x16"
    model, config = checkpoint.load(ROOT / "pretrained" / "shakespeare-lstm")
    held = held_out(config)
    text = excerpt(held, 2000) if held is not None else open(ROOT / "README.md", encoding="utf-8").read()[:2000]
    return model, text, "shakespeare-lstm 2x512"


def apptest_move(repeats: int) -> float | None:
    """Median seconds of the page's rerun after a click on Next, default model (AppTest reruns the whole page)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/cell_page.py").run()
    if at.exception:
        return None
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        at.button(key="cell_next").click().run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-apptest", action="store_true", help="skip the AppTest rerun")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from ui import cell as cell_ui  # streamlit is imported, but figures() draws nothing

    model, text, name = model_and_text(args.quick)
    repeats = 2 if args.quick else args.repeats
    layer, unit = model.config.num_layers - 1, 0
    t = time.perf_counter()
    tr = trace(model, text)
    traced = time.perf_counter() - t
    positions = iter(range(10 ** 9))

    def one_step():
        anatomy.step(model, tr, next(positions) % len(text), layer, unit)

    def one_move():
        figs = cell_ui.figures(model, tr, layer, unit, next(positions) % len(text))
        for k in ("strip", "diagram", "bars", "window"):
            plotly.io.to_json(figs[k], validate=False)

    step_s, move_s = median_time(one_step, repeats * 10), median_time(one_move, repeats)
    rows = [(f"trace of the {len(text):,}-character text ({name}), once per text", traced, "reported",
             f"{traced:.2f} s"),
            (f"anatomy.step, one unit ({name}), median seconds", step_s, "reported", f"{step_s * 1e3:.2f} ms"),
            (f"one move of Inside the cell: step + 4 figures + their JSON ({name}), median seconds", move_s,
             f"<= {TARGET}", f"{move_s * 1e3:.0f} ms")]
    if not args.no_apptest and not args.quick:
        rerun = apptest_move(5)
        if rerun is not None:
            rows.append(("the page's whole rerun after Next under AppTest (default model; an upper bound on the "
                         "fragment's), median seconds", rerun, "reported", f"{rerun:.2f} s"))
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
