#!/usr/bin/env python3
"""Atlas benchmarks: ratios and figures measured in one run on this machine, printed as a table.

    .venv/bin/python -m bench.atlas            # shakespeare-lstm over its held-out text (a few minutes)
    .venv/bin/python -m bench.atlas --quick    # a tiny model: a smoke run of the code, not a measurement

Rows: the build against a bare fused forward over the same text (interleaved, medians); the peak
memory growth of a build, in a child process (VmHWM after the build minus VmRSS just before it, the
high-water mark reset through /proc/self/clear_refs); the cache's size on disk; a warm load from
the cache; the first labels() (every unit against every hypothesis); a select-and-match query over
an atlas of 200,000 characters.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import print_rows  # noqa: E402
from rnnviz import atlas as A  # noqa: E402
from rnnviz import checkpoint, corpora, heldout  # noqa: E402
from rnnviz.matching import select_and_match  # noqa: E402
from rnnviz.model import build, describe_device  # noqa: E402

SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def _status(key: str) -> int:
    """VmRSS / VmHWM of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def _model_and_text(quick: bool):
    if quick:
        text = corpora.quotes_task(6000, seed=1).text
        return build(sorted(set(text)), cell="lstm", hidden_size=32, num_layers=2, seed=0).eval(), text, "quick"
    model, config = checkpoint.load(ROOT / "pretrained" / "shakespeare-lstm")
    text, notice = heldout.held_out_text(config)
    if not text:
        raise SystemExit(f"the held-out text of shakespeare-lstm is not here ({notice})")
    return model, text, "shakespeare-lstm held-out"


def child_memory(quick: bool, threads: int) -> dict:
    """Run in a fresh process: the peak memory growth of one build."""
    torch.set_num_threads(threads)
    model, text, _ = _model_and_text(quick)
    with torch.no_grad():  # warm up the kernels and allocator on a short text, as any first call would
        model(torch.from_numpy(model.vocab.encode(text[:2000]))[None])
    d = tempfile.mkdtemp(prefix="rnnviz-bench-")
    try:
        before = _status("VmRSS")
        reset = True
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            reset = False
        t = time.perf_counter()
        at = A.build_atlas(model, text, cache_dir=d)
        seconds = time.perf_counter() - t
        peak = _status("VmHWM")
        disk = sum(f.stat().st_size for f in Path(at.path).iterdir())
        return {"before": before, "peak": peak, "growth": peak - before, "reset": reset, "seconds": seconds,
                "disk": disk, "chars": len(text)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    if args.child_memory:
        print(json.dumps(child_memory(args.quick, args.threads)))
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    model, text, what = _model_and_text(args.quick)
    ids = torch.from_numpy(model.vocab.encode(text))
    work = Path(tempfile.mkdtemp(prefix="rnnviz-bench-"))
    try:
        # build vs bare forward, interleaved; wall and CPU time (process_time: all of this process's threads)
        builds, bares, build_cpu, bare_cpu = [], [], [], []
        atlas = None
        for r in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            with torch.no_grad():
                model(ids[None])
            bares.append(time.perf_counter() - t)
            bare_cpu.append(time.process_time() - c)
            d = work / f"build{r}"
            t, c = time.perf_counter(), time.process_time()
            atlas = A.build_atlas(model, text, cache_dir=d)
            builds.append(time.perf_counter() - t)
            build_cpu.append(time.process_time() - c)
            if r < args.repeats - 1:
                shutil.rmtree(d)
        b, f = statistics.median(builds), statistics.median(bares)
        ratios = sorted(x / y for x, y in zip(builds, bares))
        cpu = sorted(x / y for x, y in zip(build_cpu, bare_cpu))
        rows.append((f"atlas build, {what} ({len(text):,} chars, {model.config.num_layers}x"
                     f"{model.config.hidden_size} {model.cell.upper()}) / bare fused forward", b / f, "<= 1.5",
                     f"medians {b:.2f} s vs {f:.2f} s; wall ratio per pair {', '.join(f'{x:.2f}' for x in ratios)}; "
                     f"CPU-time ratio per pair {', '.join(f'{x:.2f}' for x in cpu)} (builds "
                     f"{', '.join(f'{x:.1f}' for x in builds)} s; forwards {', '.join(f'{x:.1f}' for x in bares)} s)"))
        # memory, in a child process
        out = subprocess.run([sys.executable, "-m", "bench.atlas", "--child-memory", "--threads", str(args.threads)]
                             + (["--quick"] if args.quick else []), cwd=ROOT, capture_output=True, text=True)
        if out.returncode == 0:
            mem = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(("peak memory growth during the build, MB (child process, VmHWM - VmRSS before)",
                         mem["growth"] / 2**20, "<= 1024",
                         f"RSS {mem['before'] / 2**20:,.0f} MB before, peak {mem['peak'] / 2**20:,.0f} MB"
                         f"{'' if mem['reset'] else ' (VmHWM could not be reset: growth is an upper bound)'}; "
                         f"build {mem['seconds']:.1f} s"))
        else:
            rows.append(("peak memory growth during the build, MB", float("nan"), "<= 1024", out.stderr[-300:]))
        disk = sum(p.stat().st_size for p in Path(atlas.path).iterdir())
        rows.append(("disk, that atlas's cache entry, MB", disk / 2**20, "<= 300",
                     f"{len(list(Path(atlas.path).iterdir()))} files in {atlas.path.name}"))
        # warm load
        loads = []
        for _ in range(5):
            t = time.perf_counter()
            A.load_or_build(model, None, text, cache_dir=atlas.path.parent, max_chars=None)
            loads.append(time.perf_counter() - t)
        rows.append(("warm load from the cache (load_or_build, hashes and checks included), s",
                     statistics.median(loads), "<= 0.3", ", ".join(f"{x:.3f}" for x in loads)))
        t = time.perf_counter()
        labels = atlas.labels()
        first = time.perf_counter() - t
        t = time.perf_counter()
        A.load(atlas.path).labels()
        cached = time.perf_counter() - t
        rows.append(("labels(): every unit against every hypothesis, first call, s", first, "reported",
                     f"{labels.hypothesis.nunique()} hypotheses x {len(labels) // max(labels.hypothesis.nunique(), 1):,}"
                     f" units; from its cache {cached:.2f} s"))
        # a match query over 200,000 characters
        if args.quick:
            big = corpora.quotes_task(200_000, seed=2).text
        elif SHAKESPEARE.exists():
            big = SHAKESPEARE.read_text(encoding="utf-8")[:200_000]
        else:
            big = (text * 2)[:200_000]
        t = time.perf_counter()
        big_atlas = A.build_atlas(model, big, cache_dir=work / "big")
        big_build = time.perf_counter() - t
        layer, kind = model.config.num_layers - 1, "c" if model.cell == "lstm" else "h"
        start = big.find("\n\n", 1000) + 2  # a speaker's name line
        end = big.find("\n", start)
        q = big_atlas.states(layer, kind, max(0, start - 50), end + 50)
        s0 = start - max(0, start - 50)
        threshold, result, times = None, None, []
        for th in (0.5, 0.3, 0.2, 0.1, 0.05):
            try:
                select_and_match(q, s0, s0 + (end - start), th, big_atlas, layer, kind)
            except Exception:
                continue
            threshold = th
            break
        if threshold is not None:
            for _ in range(5):
                t = time.perf_counter()
                result = select_and_match(q, s0, s0 + (end - start), threshold, big_atlas, layer, kind)
                times.append(time.perf_counter() - t)
            rows.append((f"match query over {len(big):,} characters (select on a {end - start}-char span, "
                         "match, rank), s", statistics.median(times), "<= 1",
                         f"{len(result.units)} units selected at {threshold}, {len(result)} matches; "
                         f"runs {', '.join(f'{x:.3f}' for x in times)}; that atlas built in {big_build:.1f} s"))
        else:
            rows.append(("match query over 200,000 characters, s", float("nan"), "<= 1", "no threshold selected units"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nrnnviz atlas benchmarks: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, {describe_device('cpu')}; "
          f"{time.perf_counter() - t0:.0f} s\n")
    print_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
