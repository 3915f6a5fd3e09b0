#!/usr/bin/env python3
"""Saliency benchmarks: ratios and figures measured in one run on this machine, printed as a table.

    .venv/bin/python -m bench.saliency            # shakespeare-lstm (2x512) over 2,000 characters
    .venv/bin/python -m bench.saliency --quick    # a tiny model: a smoke run of the code, not a measurement
    .venv/bin/python -m bench.saliency --device cuda   # the same on a GPU, where there is one

Rows: saliency for one target at the text's end (both characters c: the true next and the top
predicted, one forward and one backward each) against one forward + backward of the same text (the
cross-entropy of every position, backpropagated to the weights), interleaved, medians; the
aggregate over 200 targets (windows of 100 characters, 32 per backward), in seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import print_rows, text_source  # noqa: E402
from rnnviz import checkpoint  # noqa: E402
from rnnviz.model import build, describe_device  # noqa: E402
from rnnviz.saliency import aggregate, saliency  # noqa: E402


def _model_and_text(quick: bool, chars: int, device: str):
    text = text_source(max(chars, 5000))[:chars]
    if quick:
        model = build(sorted(set(text)), cell="lstm", hidden_size=32, num_layers=2, seed=0)
        return model.to(device).eval(), text, "tiny 2x32 LSTM"
    model, _ = checkpoint.load(ROOT / "pretrained" / "shakespeare-lstm", device=device)
    return model.eval(), text, f"shakespeare-lstm ({model.config.num_layers}x{model.config.hidden_size})"


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, text, what = _model_and_text(args.quick, args.chars, args.device)
    ids = torch.from_numpy(model.vocab.encode(text)).to(args.device)
    t = len(text) - 2  # the last target whose next character is known

    def ours():
        saliency(model, text, t)
        _sync(args.device)

    def base():  # one forward + backward of the same text, as in training
        logits, _ = model(ids[None, :-1])
        F.cross_entropy(logits[0], ids[1:]).backward()
        model.zero_grad(set_to_none=True)
        _sync(args.device)

    ours(), base()  # warm-up
    a, b, ca, cb = [], [], [], []  # wall and CPU (process_time: all this process's threads) seconds
    for _ in range(args.repeats):
        s, c = time.perf_counter(), time.process_time()
        ours()
        a.append(time.perf_counter() - s)
        ca.append(time.process_time() - c)
        s, c = time.perf_counter(), time.process_time()
        base()
        b.append(time.perf_counter() - s)
        cb.append(time.process_time() - c)
    ratios = sorted(x / y for x, y in zip(a, b))
    cpu = sorted(x / y for x, y in zip(ca, cb))
    ma, mb = statistics.median(a), statistics.median(b)
    dev = describe_device(args.device)
    rows = [(f"saliency for one target (true next and top predicted) over {len(text):,} chars, {what}, {dev} / "
             "one forward + backward of that text", ma / mb, "<= 2",
             f"medians {ma * 1000:.0f} ms vs {mb * 1000:.0f} ms; wall ratio per pair "
             f"{', '.join(f'{r:.2f}' for r in ratios)}; CPU-time ratio per pair {', '.join(f'{r:.2f}' for r in cpu)}")]
    times, cpus = [], []
    for _ in range(max(1, args.repeats // 2)):
        s, c = time.perf_counter(), time.process_time()
        agg = aggregate(model, text, window=100, count=args.targets, batch=32)
        _sync(args.device)
        times.append(time.perf_counter() - s)
        cpus.append(time.process_time() - c)
    rows.append((f"aggregate over {len(agg.targets)} targets (windows of 100, 32 per backward), {what}, {dev}, s",
                 statistics.median(times), "<= 20",
                 f"wall {', '.join(f'{x:.2f}' for x in times)} s; CPU time {', '.join(f'{x:.2f}' for x in cpus)} s"))
    print_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
