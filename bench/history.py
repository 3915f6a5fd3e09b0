#!/usr/bin/env python3
"""Training history benchmarks: what recording snapshots costs a training run, and how fast the
History page reruns when the slider moves to a snapshot it has shown before.

    .venv/bin/python bench/history.py              # a few minutes on 2 CPU cores
    .venv/bin/python bench/history.py --quick      # tiny sizes: a smoke run of the code

Throughput: the same run (shape, seed, batches) with history=13 and with none, interleaved, the median
of the repeats; the time spent inside the snapshots is also summed directly (the precise figure).
Scrubber: AppTest on the History page over a shipped history; every snapshot shown once, then the
median rerun time for moves between them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import print_rows, text_source  # noqa: E402
from rnnviz.model import build  # noqa: E402
from rnnviz.training import DEFAULT_HISTORY, TrainConfig, Trainer  # noqa: E402
from rnnviz.vocab import Vocab  # noqa: E402


def one_run(text: str, steps: int, history: int, hidden: int) -> tuple[float, float, int]:
    """(chars/s of the run, seconds spent taking snapshots, snapshots taken)."""
    model = build(Vocab.from_text(text), cell="lstm", hidden_size=hidden, num_layers=2, embed_size=64, seed=0)
    cfg = TrainConfig(seq_len=128, batch_size=32, max_steps=steps, eval_every=10**9, history=history, threads=1)
    trainer = Trainer(model, text, None, cfg)
    spent = [0.0]
    take = trainer._take_snapshot

    def timed(point):
        t = time.perf_counter()
        take(point)
        spent[0] += time.perf_counter() - t

    trainer._take_snapshot = timed
    result = trainer.run()
    return result.chars_per_sec, spent[0], len(trainer.history)


def bench_throughput(rows: list, steps: int, repeats: int, hidden: int) -> None:
    torch.set_num_threads(1)
    text = text_source(400_000)
    one_run(text, 5, 0, hidden)  # warm-up
    with_h, without, spent, runs = [], [], [], []
    for _ in range(repeats):
        cps, s, n = one_run(text, steps, DEFAULT_HISTORY, hidden)
        with_h.append(cps)
        spent.append(s)
        runs.append(steps * 32 * 128 / cps)
        without.append(one_run(text, steps, 0, hidden)[0])
    ratio = statistics.median(w / o for w, o in zip(with_h, without))
    share = statistics.median(s / r for s, r in zip(spent, runs))
    rows.append((f"training throughput with a history of {n} snapshots / without", ratio, ">= 0.97",
                 f"2x{hidden} LSTM, {steps} steps of 32x128, 1 thread; median of {repeats} interleaved pairs: "
                 f"{statistics.median(with_h):,.0f} vs {statistics.median(without):,.0f} chars/s"))
    rows.append(("share of the run spent taking snapshots, %", 100 * share, "<= 3",
                 f"{statistics.median(spent) * 1000:.0f} ms for {n} snapshots (float16 copies) in a "
                 f"{statistics.median(runs):.1f} s run"))


def bench_scrubber(rows: list, model: str, reruns: int) -> None:
    from streamlit.testing.v1 import AppTest

    from rnnviz import history

    path = ROOT / "pretrained" / model
    steps = history.read(path).steps
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    at.selectbox(key="model_choice").set_value(f"shipped:{path}").run()
    at.switch_page("pages/history_page.py")
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    assert not at.exception, at.exception
    firsts = []
    for s in steps:  # the first visit of each snapshot
        t = time.perf_counter()
        at.select_slider(key="hist_step").set_value(s).run()
        firsts.append(time.perf_counter() - t)
    times = []
    for i in range(reruns):
        s = steps[(i * 3) % len(steps)]
        t = time.perf_counter()
        at.select_slider(key="hist_step").set_value(s).run()
        times.append(time.perf_counter() - t)
    assert not at.exception, at.exception
    rows.append((f"History page, {model}: rerun after a snapshot's first load, s", statistics.median(times), "<= 0.3",
                 f"median of {reruns} moves between its {len(steps)} snapshots (max {max(times):.2f} s); "
                 f"the page's first run {first:.1f} s, a snapshot's first visit median "
                 f"{statistics.median(firsts):.2f} s; AppTest, whole app rerun"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the code runs")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the 2-layer LSTM trained")
    ap.add_argument("--model", default="shakespeare-small", help="a shipped model with a history, for the page")
    ap.add_argument("--skip", nargs="*", default=[], help="sections to skip: train page")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("RNNVIZ_PAGE_THREADS", "1")
    rows: list = []
    if "train" not in args.skip:
        bench_throughput(rows, 20 if args.quick else args.steps, 1 if args.quick else args.repeats,
                         32 if args.quick else args.hidden)
    if "page" not in args.skip:
        bench_scrubber(rows, args.model, 3 if args.quick else 15)
    print_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
