#!/usr/bin/env python3
"""rnnviz benchmarks: ratios measured in one run on this machine, printed as a table.

    .venv/bin/python bench/run.py            # the full suite (a few minutes on 2 CPU cores)
    .venv/bin/python bench/run.py --quick    # tiny sizes: a smoke run of the code, not a measurement

Each row times ours against a baseline in the same process, interleaved, and reports the median
of several repeats, so a noisy shared machine moves both sides alike.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnviz.gradients import gradient_norms  # noqa: E402
from rnnviz.model import build, describe_device, pick_device  # noqa: E402
from rnnviz.sampling import sample  # noqa: E402
from rnnviz.trace import trace  # noqa: E402
from rnnviz.training import TrainConfig, Trainer, evaluate  # noqa: E402
from rnnviz.vocab import Vocab  # noqa: E402

SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def text_source(n: int) -> str:
    """tinyshakespeare where present, else our own generator (the ratios hardly depend on the text)."""
    if SHAKESPEARE.exists():
        return SHAKESPEARE.read_text(encoding="utf-8")[:n]
    from rnnviz.corpora import quotes_task
    return quotes_task(n, seed=0).text


def paired(ours, base, repeats: int) -> tuple[float, float]:
    """Median seconds of ours and of base, alternating calls after one warm-up each."""
    ours(), base()
    a, b = [], []
    for _ in range(repeats):
        t = time.perf_counter(); ours(); a.append(time.perf_counter() - t)
        t = time.perf_counter(); base(); b.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def naive_trace(model, ids):
    """The obvious way: one Python step per character per layer, gates from the equations."""
    H = model.config.hidden_size
    with torch.no_grad():
        x = model.embed(ids)
        for l in range(model.config.num_layers):
            w = model.layer_weights(l)
            h = torch.zeros(H); c = torch.zeros(H); out = []
            for x_t in x:
                a = w["weight_ih"] @ x_t + w["bias_ih"] + w["weight_hh"] @ h + w["bias_hh"]
                if model.cell == "lstm":
                    i, f, g, o = a.chunk(4)
                    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                    c = f * c + i * g
                    h = o * c.tanh()
                    out.append(torch.stack([h, c, i, f, g, o]))
                elif model.cell == "gru":
                    gi = w["weight_ih"] @ x_t + w["bias_ih"]; gh = w["weight_hh"] @ h + w["bias_hh"]
                    r, z = (gi[:2 * H] + gh[:2 * H]).sigmoid().chunk(2)
                    n = (gi[2 * H:] + r * gh[2 * H:]).tanh()
                    h = (1 - z) * n + z * h
                    out.append(torch.stack([h, r, z, n]))
                else:
                    h = a.tanh()
                    out.append(torch.stack([h, a]))
            x = torch.stack(out)[:, 0]
        return model.head(x)


def bench_trace(rows, vocab, n, H, repeats):
    text = text_source(n)
    ids = torch.from_numpy(vocab.encode(text))
    for cell in ("lstm", "gru", "rnn"):
        m = build(vocab, cell=cell, hidden_size=H, num_layers=2, seed=0).eval()
        with torch.no_grad():
            ours, base = paired(lambda: trace(m, text), lambda: m(ids[None]), repeats)
        rows.append((f"full trace, {n:,} chars, 2x{H} {cell.upper()} / bare fused forward", ours / base, "<= 1.5",
                     f"{ours * 1e3:.0f} ms vs {base * 1e3:.0f} ms"))
        if cell == "lstm":
            short = text[: max(100, n // 10)]
            t0 = time.perf_counter(); naive_trace(m, ids[: len(short)]); naive = (time.perf_counter() - t0) * len(text) / len(short)
            rows.append((f"naive per-step Python loop / our trace ({cell.upper()})", naive / ours, ">= 3",
                         f"{naive * 1e3:.0f} ms (extrapolated from {len(short):,} chars) vs {ours * 1e3:.0f} ms"))


def bench_gradients(rows, vocab, T, H, repeats):
    text = text_source(T + 1)
    for cell, double in (("lstm", True), ("lstm", False), ("rnn", True), ("gru", True)):
        m = build(vocab, cell=cell, hidden_size=H, num_layers=2, seed=0)
        ids = torch.from_numpy(vocab.encode(text))
        work = m.double() if double else m

        def plain():
            logits, _ = work(ids[None, :-1])
            F.cross_entropy(logits[0, -1:], ids[-1:]).backward()

        ours, base = paired(lambda: gradient_norms(m, text, double=double), plain, repeats)
        rows.append((f"gradient_norms, T={T}, 2x{H} {cell.upper()} {'float64' if double else 'float32'} / one forward+backward",
                     ours / base, "<= 2", f"{ours * 1e3:.1f} ms vs {base * 1e3:.1f} ms"))


def bench_training(rows, vocab, H, steps, device):
    text = text_source(300_000)
    cfg = TrainConfig(seq_len=128, batch_size=32, lr=2e-3, max_steps=steps, eval_every=10**9, device=device,
                      warmup_steps=0)

    def ours():
        m = build(vocab, cell="lstm", hidden_size=H, num_layers=2, seed=0)
        tr = Trainer(m, text, None, cfg)
        tr.add_callback("on_step", lambda t, loss: t.snapshot())  # a UI polling progress
        r = tr.run()
        return r.steps * cfg.batch_size * cfg.seq_len / r.wall_time

    def bare():
        dev = pick_device(device)
        m = build(vocab, cell="lstm", hidden_size=H, num_layers=2, seed=0).to(dev)
        opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
        data = torch.from_numpy(vocab.encode(text))
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            s = torch.randint(0, len(data) - 130, (32,), generator=g)
            idx = s[:, None] + torch.arange(129)
            chunk = data[idx].to(dev)
            logits, _ = m(chunk[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        return steps * 32 * 128 / (time.perf_counter() - t0)

    ours(), bare()
    a, b = [], []
    for _ in range(3):
        a.append(ours()); b.append(bare())
    o, bb = statistics.median(a), statistics.median(b)
    rows.append((f"trainer throughput, 2x{H} LSTM, 32x128, {describe_device(pick_device(device))} / bare loop",
                 o / bb, ">= 0.95", f"{o:,.0f} vs {bb:,.0f} chars/s"))


def bench_sampling(rows, vocab, H, n, repeats):
    m = build(vocab, cell="lstm", hidden_size=H, num_layers=2, seed=0).eval()
    x = torch.tensor([[1]])

    def one_step():
        with torch.no_grad():
            state = None
            for _ in range(n):
                _, state = m.rnn(m.embed(x), state)

    ours, base = paired(lambda: sample(m, "\n", n, temperature=0.8, seed=0), one_step, repeats)
    rows.append((f"sampling {n:,} chars, per char / one fused single-step call (2x{H} LSTM)", ours / base, "<= 1.5",
                 f"{ours / n * 1e6:.0f} us vs {base / n * 1e6:.0f} us per char"))
    # Sample's own case: 300 characters from a 2x512 LSTM. On the CPU a fused call per character pays
    # oneDNN's per-call setup, which generation (trace._step) no longer does.
    big = build(vocab, cell="lstm", hidden_size=512, num_layers=2, seed=0).eval()

    def fused_steps():
        with torch.no_grad():
            state = None
            for _ in range(300):
                _, state = big(x, state)

    ours, base = paired(lambda: sample(big, "\n", 300, temperature=0.8, seed=0), fused_steps, repeats)
    rows.append(("sampling 300 chars, 2x512 LSTM / 300 calls of the model's fused forward", ours / base, "<= 1.0",
                 f"{ours * 1e3:.0f} ms vs {base * 1e3:.0f} ms"))


def bench_quality(rows, seconds, device):
    from rnnviz.recipes import RECIPES
    if not SHAKESPEARE.exists():
        rows.append(("quick recipe val loss after 100 s", float("nan"), "<= 1.52", "tinyshakespeare not found"))
        return
    text = SHAKESPEARE.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    r = RECIPES["quick"]
    m = build(Vocab.from_text(text), seed=r.train.seed, **r.model)
    cfg = TrainConfig(**{**r.train.__dict__, "max_seconds": seconds, "max_steps": None, "eval_every": 10**9,
                         "device": device})
    res = Trainer(m, text[:cut], None, cfg).run()
    val = evaluate(m, text[cut:])
    rows.append((f"quick recipe: val loss (whole val split, nats/char) after {seconds:.0f} s of training", val,
                 "<= 1.52", f"{res.steps} steps, {res.chars_per_sec:,.0f} chars/s"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the code runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", nargs="*", default=[], help="sections to skip: trace grads train sample quality pages")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    q = args.quick
    full = SHAKESPEARE.read_text(encoding="utf-8") if SHAKESPEARE.exists() else text_source(200_000)
    vocab = Vocab.from_text(full)
    rows: list[tuple] = []
    t0 = time.perf_counter()
    sections = {
        "trace": lambda: bench_trace(rows, vocab, 1_000 if q else 10_000, 32 if q else 256, 2 if q else 7),
        "grads": lambda: bench_gradients(rows, vocab, 32 if q else 256, 32 if q else 256, 2 if q else 7),
        "train": lambda: bench_training(rows, vocab, 32 if q else 256, 3 if q else 30, args.device),
        "sample": lambda: bench_sampling(rows, vocab, 32 if q else 256, 50 if q else 1000, 2 if q else 5),
        "quality": lambda: bench_quality(rows, 3 if q else 100, args.device),
    }
    for name, fn in sections.items():
        if name not in args.skip:
            fn()
    if "pages" not in args.skip:
        sys.path.insert(0, str(ROOT / "bench"))
        from pages import bench_pages
        bench_pages(rows, quick=q)
    print(f"\nrnnviz benchmarks: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, {describe_device(pick_device(args.device))}; {time.perf_counter() - t0:.0f} s\n")
    print_rows(rows, args.json)
    return 0


def print_rows(rows, json_path=None) -> None:
    """The figures as a markdown table (for docs/benchmarks.md), and as JSON when asked."""
    print("| figure | measured | target | detail |\n|---|---|---|---|")
    for name, value, target, detail in rows:
        shown = "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.2f}"
        print(f"| {name} | {shown} | {target} | {detail} |")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
