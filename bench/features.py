#!/usr/bin/env python3
"""Feature dictionaries: the issue's goals and performance, measured in one run on this machine.

    .venv/bin/python -m bench.features            # python-lstm h, shakespeare-lstm h and c (about 10 minutes)
    .venv/bin/python -m bench.features --quick    # a tiny model: a smoke run of the code, not a measurement
    .venv/bin/python -m bench.features --reuse    # measure dictionaries already in the cache; train only missing ones

For each case a dictionary is trained (load_or_train into a fresh folder, in a child process on 2
threads, so its peak memory is its own: VmHWM after training minus VmRSS before it) on the model's
held-out text, and measured on held-out text it did not train on: python-lstm trains on the first
200,000 held-out characters and is measured on the next 40,000; shakespeare-lstm (111,540 held-out
characters) trains on all but the last 20,000 and is measured on those. The trained entry is then
copied into the default cache folder, so the app and a rerun with --reuse find it. Then a feature's
dashboard data is read from the cache (entry lookup, the corpus codes, the feature's column, peaks,
deciles, histogram, loadings, logit effect), in a fresh child process, median of 5.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOALS = {"fvu": 0.10, "ce_recovered_out": 0.97, "rec_increase": 0.05, "dead_fraction": 0.05}
CASES = [("python-lstm", "h", 200_000, 40_000), ("shakespeare-lstm", "h", None, 20_000),
         ("shakespeare-lstm", "c", None, 20_000)]


def _status(key: str) -> float:
    """VmRSS or VmHWM of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def split_texts(model_name: str, train_chars: int | None, eval_chars: int) -> tuple[object, str, str]:
    """(model, training text, evaluation text): both from the model's held-out split, disjoint."""
    from rnnviz import checkpoint, heldout

    model, cfg = checkpoint.load(ROOT / "pretrained" / model_name)
    held, _ = heldout.held_out_text(cfg)
    if train_chars is None:
        train_chars = len(held) - eval_chars
    return model, held[:train_chars], held[train_chars:train_chars + eval_chars]


def child_train(args) -> None:
    """In a child process: train (or, with --reuse, find) one dictionary; print JSON of its figures."""
    import torch

    from rnnviz import features as F
    torch.set_num_threads(args.threads)
    if args.quick:
        model, train_text, eval_text = _quick_model()
        cfg = F.SAEConfig(state=args.state, size=64, k=8, steps=200)
    else:
        model, train_text, eval_text = split_texts(args.model, args.train_chars, args.eval_chars)
        cfg = F.SAEConfig(state=args.state, k=args.k, steps=args.steps)
    cache = Path(args.cache)
    found, _ = F.lookup(model, train_text, cfg, cache)
    trained = found is None
    try:  # reset the high-water mark, so VmHWM is this training's peak
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    rss0 = _status("VmRSS")
    t = time.perf_counter()
    d = F.load_or_train(model, train_text, "held-out", cfg, cache, model_name=args.model)
    seconds = time.perf_counter() - t
    peak = _status("VmHWM") - rss0
    if args.time_only:
        print(json.dumps({"trained": trained, "seconds": seconds, "peak_mb": peak, "train_chars": len(train_text),
                          "d_in": d.d_in, "d_sae": d.d_sae, "k": d.k, "steps": cfg.steps,
                          "train_seconds": d.cfg.get("training", {}).get("seconds")}))
        return
    t = time.perf_counter()
    m = F.metrics(model, d, eval_text)
    metric_seconds = time.perf_counter() - t
    m_train = F.metrics(model, d, train_text[:eval_chars_of(args)])
    t = time.perf_counter()
    rows = F.units_vs_features(model, d, eval_text)
    uvf_seconds = time.perf_counter() - t
    print(json.dumps({"trained": trained, "seconds": seconds, "peak_mb": peak, "path": str(d.path),
                      "train_chars": len(train_text), "eval_chars": len(eval_text), "d_in": d.d_in,
                      "d_sae": d.d_sae, "k": d.k, "steps": cfg.steps, "metrics": m, "metrics_train": m_train,
                      "metric_seconds": metric_seconds, "uvf_seconds": uvf_seconds, "units_vs_features": rows,
                      "log": d.cfg.get("training", {})}, default=float))


def eval_chars_of(args) -> int:
    return 2000 if args.quick else args.eval_chars


def _quick_model():
    import torch

    from rnnviz.model import build
    torch.manual_seed(0)
    text = (ROOT / "README.md").read_text(encoding="utf-8")[:6000]
    return build(sorted(set(text)), "lstm", 24, 2, 8, seed=0), text[:4000], text[4000:6000]


def child_dashboard(args) -> None:
    """In a fresh child process: a feature's dashboard data from the cache, timed (median of 5 runs)."""
    import numpy as np
    import torch

    from rnnviz import dashboard
    from rnnviz import features as F
    torch.set_num_threads(args.threads)
    if args.quick:
        model, train_text, _ = _quick_model()
        cfg = F.SAEConfig(state=args.state, size=64, k=8, steps=200)
    else:
        model, train_text, _ = split_texts(args.model, args.train_chars, args.eval_chars)
        cfg = F.SAEConfig(state=args.state, k=args.k, steps=args.steps)
    d, _ = F.lookup(model, train_text, cfg, Path(args.cache))
    F.corpus_codes(model, d, train_text)  # stored once, as the Features page does on first view
    freq = F.corpus_codes(model, d, train_text).frequency()
    feature = int(np.argsort(-freq)[len(freq) // 10])  # a feature neither the commonest nor rare
    times = []
    for _ in range(5):
        t = time.perf_counter()
        d, _ = F.lookup(model, train_text, cfg, Path(args.cache))
        codes = F.corpus_codes(model, d, train_text)
        col = codes.column(feature)
        dashboard.array_contexts(train_text, col, "top", 8, active_only=True)
        dashboard.array_deciles(train_text, col, 1, active_only=True)
        dashboard.array_histogram(col, active_only=True)
        F.loadings(d, feature)
        if d.state == "h" and d.layer == model.config.num_layers - 1:
            F.logit_effect(model, d, feature)
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": statistics.median(times), "feature": feature, "chars": len(train_text)}))


def run_child(kind: str, args, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "bench.features", "--child", kind, "--threads", str(args.threads),
           "--k", str(args.k), "--steps", str(args.steps)] + (["--quick"] if args.quick else []) + \
        (["--time-only"] if args.time_only else []) + extra
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS":
                                                                              str(args.threads)})
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reuse", action="store_true", help="use dictionaries already in the default cache")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--only", default=None, help="MODEL:STATE, one case")
    p.add_argument("--json", default=None, help="write every figure to this file")
    p.add_argument("--time-only", action="store_true", help="only train (fresh) and time it: no metrics")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--state", default="h", help=argparse.SUPPRESS)
    p.add_argument("--train-chars", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--eval-chars", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from rnnviz.features import sae as S
    from rnnviz.features.store import default_cache_dir
    if args.steps is None:
        args.steps = S.DEFAULT_STEPS
    if args.child == "train":
        child_train(args)
        return 0
    if args.child == "dashboard":
        child_dashboard(args)
        return 0
    cases = [("tiny", "h", None, 2000)] if args.quick else CASES
    if args.only:
        cases = [c for c in cases if f"{c[0]}:{c[1]}" == args.only]
    results, rows = [], []
    final_cache = default_cache_dir()
    for model_name, state, train_chars, eval_chars in cases:
        extra = ["--model", model_name, "--state", state, "--eval-chars", str(eval_chars)]
        if train_chars is not None:
            extra += ["--train-chars", str(train_chars)]
        with tempfile.TemporaryDirectory() as tmp:
            cache = final_cache if args.reuse and not args.quick else Path(tmp)
            r = run_child("train", args, extra + ["--cache", str(Path(tmp) if args.time_only else cache)])
            if args.time_only:
                rows += [(f"{model_name} layer top {state}: train {r['d_sae']:,} features (d_in {r['d_in']}, k {r['k']}, "
                          f"{r['steps']:,} steps) on {r['train_chars']:,} chars", f"{r['seconds']:.1f} s", "<= 120 s",
                          f"{args.threads} threads; the updates alone {r['train_seconds']:.1f} s"),
                         (f"{model_name} layer top {state}: peak memory growth while training", f"{r['peak_mb']:.0f} MB",
                          "<= 1024 MB", "VmHWM - VmRSS")]
                continue
            if not args.quick and not args.reuse:  # keep it for the app and for --reuse
                final_cache.mkdir(parents=True, exist_ok=True)
                dest = final_cache / Path(r["path"]).name
                if not dest.exists():
                    shutil.copytree(r["path"], dest)
                cache = final_cache
            dash = run_child("dashboard", args, extra + ["--cache", str(cache)])
        r["dashboard"] = dash
        r["case"] = f"{model_name} {state}"
        results.append(r)
        m = r["metrics"]
        name = f"{model_name} layer top {state}"
        wins = sum(x["winner"] == "feature" for x in r["units_vs_features"])
        rows += [
            (f"{name}: train {r['d_sae']:,} features (d_in {r['d_in']}, k {r['k']}, {r['steps']:,} steps) on "
             f"{r['train_chars']:,} chars", f"{r['seconds']:.1f} s" + ("" if r["trained"] else " (cached)"),
             "<= 120 s", f"{args.threads} threads"),
            (f"{name}: peak memory growth while training", f"{r['peak_mb']:.0f} MB", "<= 1024 MB", "VmHWM - VmRSS"),
            (f"{name}: fvu on {r['eval_chars']:,} unseen chars", f"{m['fvu']:.3f}", "<= 0.10",
             f"train text: {r['metrics_train']['fvu']:.3f}"),
            (f"{name}: ce_recovered (output splice)", f"{m['ce_recovered_out']:.3f}", ">= 0.97",
             f"loss {m['loss']:.4f}, spliced {m['loss_spliced_out']:.4f}, zero {m['loss_zero']:.4f}"),
            (f"{name}: loss_spliced_rec against loss", f"{100 * m['rec_increase']:+.1f}%"
             if m.get("rec_diverged_at") is None else f"diverged: not finite from char {m['rec_diverged_at']:,}",
             "<= +5%", f"{m['loss_spliced_rec']:.4f} against {m['loss']:.4f}; ce_recovered_rec "
                       f"{m['ce_recovered_rec']:.3f}"),
            (f"{name}: dead_fraction", f"{100 * m['dead_fraction']:.1f}%", "<= 5%",
             f"l0 {m['l0']:.1f}; dead on {r['metrics_train']['chars']:,} training chars: "
             f"{100 * r['metrics_train']['dead_fraction']:.1f}%"),
            (f"{name}: units against features", f"features beat units on {wins} of {len(r['units_vs_features'])}",
             "the table", f"{r['uvf_seconds']:.1f} s"),
            (f"{name}: metrics over the unseen text", f"{r['metric_seconds']:.1f} s", "", ""),
            (f"{name}: feature dashboard from the cache", f"{dash['seconds']:.3f} s", "< 0.3 s",
             f"feature {dash['feature']} over {dash['chars']:,} chars"),
        ]
    print("| figure | measured | target | detail |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for r in results:
        print(f"\nunits against features, {r['case']} (best unit | best unit of the layer and state read | best "
              "feature | chance of units | evidence flagged):")
        for x in r["units_vs_features"]:
            u, s, f = x["unit"], x["unit_same_layer"], x["feature"]
            print(f"  {x['hypothesis']:<28} L{u['layer']} {u['state']}{u['unit']:<4} {u['score']:.3f} | "
                  f"{s['state']}{s['unit']:<4} {s['score']:.3f} | f{f['feature']:<5} {f['score']:.3f} | "
                  f"{x['chance']:.3f} | {x['evidence']['flagged']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
