#!/usr/bin/env python3
"""n-gram baseline benchmarks: figures measured in one run on this machine, printed as a table.

    .venv/bin/python -m bench.ngram            # 1M characters of tinyshakespeare at order 8 (under a minute)
    .venv/bin/python -m bench.ngram --quick    # tiny sizes: a smoke run of the code, not a measurement

Rows: fitting order 8 on 1,000,000 characters (median of 3); the fit's peak memory, in a child process
(VmHWM after the fit, the high-water mark reset through /proc/self/clear_refs just before it, and the
growth over VmRSS before it; tracemalloc's peak of numpy's allocations as a check); scoring 100,000
held-out characters (surprisal, median of 5); the full next-character distribution and its argmax
at 100,000 positions (what the Compare page's accuracy needs).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import print_rows, text_source  # noqa: E402
from rnnviz import ngram  # noqa: E402


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def child_memory(n_fit: int, order: int) -> dict:
    """In this (child) process: RSS before the fit, peak RSS during it, tracemalloc's peak."""
    import tracemalloc

    text = text_source(n_fit)
    ngram.fit(text[:5_000], order)  # numpy's lazy imports and first allocations, outside the measurement
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS
    except OSError:
        reset = False
    before = _status("VmRSS")
    ngram.fit(text, order)
    peak = _status("VmHWM")
    tracemalloc.start()
    ngram.fit(text, order)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"before": before, "peak": peak, "traced": traced, "reset": reset}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    n_fit, n_score, order = (20_000, 2_000, 8) if args.quick else (1_000_000, 100_000, 8)
    if args.child_memory:
        print(json.dumps(child_memory(n_fit, order)))
        return 0
    text = text_source(n_fit + n_score)
    train, held = text[:n_fit], text[n_fit:n_fit + n_score]
    rows = []
    fit_s = timed(lambda: ngram.fit(train, order), 1 if args.quick else 3)
    model = ngram.fit(train, order)
    entries = sum(len(lv.keys) for lv in model.levels)
    rows.append((f"n-gram fit, {len(train):,} characters, order {order}, s", fit_s, "<= 30",
                 f"median of 3; {entries:,} n-gram entries over {order} orders, V = {model.V}"))
    cmd = [sys.executable, "-m", "bench.ngram", "--child-memory"] + (["--quick"] if args.quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if out.returncode == 0:
        mem = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(("n-gram fit peak memory, MB (child process, VmHWM)", mem["peak"] / 2**20, "<= 1024",
                     f"the whole process at its peak; the fit added {(mem['peak'] - mem['before']) / 2**20:.0f} MB "
                     f"over the {mem['before'] / 2**20:.0f} MB before it; tracemalloc's peak "
                     f"{mem['traced'] / 2**20:.0f} MB" + ("" if mem["reset"] else " (VmHWM not reset: upper bound)")))
    else:
        rows.append(("n-gram fit peak memory, MB", float("nan"), "<= 1024", f"child failed: {out.stderr[-300:]}"))
    score_s = timed(lambda: model.surprisal(held), 1 if args.quick else 5)
    rows.append((f"n-gram scoring, {len(held):,} characters, s", score_s, "<= 2",
                 f"surprisal of every next character, median of 5; loss {model.loss(held):.4f} nats/char"))
    argmax_s = timed(lambda: model.argmax(held), 1 if args.quick else 3)
    rows.append((f"n-gram argmax over the vocabulary, {len(held):,} positions, s", argmax_s, "-",
                 f"the full distribution ({model.V} characters) at every position, for the accuracy curves"))
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
