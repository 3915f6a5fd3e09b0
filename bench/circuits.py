#!/usr/bin/env python3
"""Circuit benchmarks: the time of one graph and the goals of issue 27, measured in one run on the shipped models.

    .venv/bin/python -m bench.circuits              # every method on four targets (minutes: the goal check
                                                    # ablates every node at the graph's positions)
    .venv/bin/python -m bench.circuits --quick      # a tiny model: a smoke run of the code, not a measurement

Targets: python-lstm (2x256) on a closing quote and on a closing parenthesis, shakespeare-small (2x128) on
the newline ending a verse line, all in their held-out text (the app's excerpt); and shakespeare-lstm
(2x512) on a newline for the time of one graph (back 100, 50 nodes with their exact ablations, one thread,
median of --repeats), and its r². Per target and method: r² and slope (through the origin) of ablation on
attribution over the kept nodes, r² over the kept nodes further than the exact window from t, coverage, and
how many of the 10 largest |ablation| among every node at the graph's positions the graph holds (not for the
2x512 model unless --full: 2,048 reruns per position).
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import print_rows  # noqa: E402
from rnnviz import checkpoint  # noqa: E402
from rnnviz import circuits as C  # noqa: E402
from rnnviz.corpora import excerpt  # noqa: E402
from rnnviz.heldout import held_out  # noqa: E402
from rnnviz.model import build  # noqa: E402


def closing_paren(text: str, min_gap: int = 10, max_gap: int = 30) -> int:
    """t before the first ')' that closes a '(' min_gap..max_gap characters back on the same line."""
    for m in re.finditer(r"\(", text):
        depth = 0
        for j in range(m.start(), min(len(text), m.start() + max_gap + 1)):
            ch = text[j]
            if ch == "\n":
                break
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                if j - m.start() >= min_gap:
                    return j - 1
                break
    raise ValueError("no such parenthesis")


def verse_newline(text: str, after: int = 200) -> int:
    """t before the first newline after `after` that ends a line of at least 20 characters."""
    for m in re.finditer(r"\n", text[after:]):
        j = after + m.start()
        line = text[text.rfind("\n", 0, j) + 1:j]
        if len(line) >= 20 and not line.endswith(":"):
            return j - 1
    raise ValueError("no such line")


def _load(name: str, chars: int = 3000):
    model, cfg = checkpoint.load(ROOT / "pretrained" / name)
    return model.eval(), excerpt(held_out(cfg), chars)


def targets(quick: bool, full: bool):
    """[(label, model, text, t, check_all)]."""
    if quick:
        text = "def f(x):\n    return 'hello, world' + str(x)\n" * 4
        model = build(sorted(set(text)), cell="lstm", hidden_size=16, num_layers=2, seed=0).eval()
        return [("tiny 2x16 LSTM, closing quote", model, text, C.closing_quote_target(text)[1], True)]
    py, py_text = _load("python-lstm")
    small, small_text = _load("shakespeare-small")
    big, big_text = _load("shakespeare-lstm")
    return [("python-lstm, closing quote", py, py_text, C.closing_quote_target(py_text)[1], True),
            ("python-lstm, closing parenthesis", py, py_text, closing_paren(py_text), True),
            ("shakespeare-small, end of a verse line", small, small_text, verse_newline(small_text), True),
            ("shakespeare-lstm, end of a verse line", big, big_text, verse_newline(big_text), full)]


def in_top(model, text, circ: C.Circuit, cache: dict, k: int = 10) -> tuple[int, float]:
    """(how many of the k largest |ablation| among every node at the graph's positions are in the graph,
    the k-th largest |ablation|); the per-position ablations cached across methods."""
    t, ch = circ.target["pos"], circ.target["char"]
    states = ("h", "c") if model.cell == "lstm" else ("h",)
    L, H = model.config.num_layers, model.config.hidden_size
    keys, eff = [], []
    for p in sorted({n.pos for n in circ.nodes}):
        if p not in cache:
            ks = [(l, st, u, p) for l in range(L) for st in states for u in range(H)]
            cache[p] = (ks, np.concatenate([C.ablate(model, text, t, ch, ks[i:i + 512])
                                            for i in range(0, len(ks), 512)]))
        keys += cache[p][0]
        eff.append(cache[p][1])
    eff = np.concatenate(eff)
    top = np.argsort(-np.abs(eff), kind="stable")[:k]
    graph = {n.key for n in circ.nodes}
    return sum(keys[i] in graph for i in top), float(np.abs(eff[top[-1]]))


def r2_beyond(circ: C.Circuit, steps: int) -> tuple[float, int]:
    """r² over the kept nodes more than `steps` before t (where the window method estimates), and how many."""
    far = [n for n in circ.nodes if circ.target["pos"] - n.pos > steps]
    a = np.array([n.attribution for n in far])
    b = np.array([n.ablation for n in far])
    return C._fit(a, b)[0], len(far)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="also check the 2x512 model's top 10 (slow)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", nargs="*", default=list(C.METHODS))
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, model, text, t, check in targets(args.quick, args.full):
        cache: dict = {}
        size = f"{model.config.num_layers}x{model.config.hidden_size}"
        for method in args.methods:
            times = []
            for _ in range(args.repeats if "2x512" in size or args.quick else 1):
                t0 = time.perf_counter()
                circ = C.circuit(model, text, t, back=100, max_nodes=50, method=method)
                times.append(time.perf_counter() - t0)
            far_r2, far_n = r2_beyond(circ, C.WINDOW_STEPS)
            detail = (f"{label} ({size}): t={t}, '{circ.target['char']}' log p {circ.target['logp']:.3f}; "
                      f"slope {circ.slope:.2f}, coverage {circ.coverage:.3f}, {len(circ.nodes)} nodes over "
                      f"{len({n.pos for n in circ.nodes})} positions; r² beyond {C.WINDOW_STEPS} steps "
                      f"{far_r2:.2f} ({far_n} nodes); {statistics.median(times):.2f} s")
            rows.append((f"circuit r² [{method}] {label}", circ.r2, ">= 0.8", detail))
            if check:
                hits, kth = in_top(model, text, circ, cache)
                rows.append((f"circuit top-10 |ablation| in graph [{method}] {label}", float(hits), ">= 6",
                             f"the 10th largest |ablation| is {kth:.4f}"))
            if "2x512" in size or args.quick:
                rows.append((f"circuit time (s) [{method}] {label}", statistics.median(times), "<= 2",
                             f"one graph, back 100, 50 nodes with exact ablations, 1 thread, median of "
                             f"{len(times)}"))
            print(rows[-1] if not check else rows[-2], file=sys.stderr, flush=True)
    print_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
