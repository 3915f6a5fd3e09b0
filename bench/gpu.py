#!/usr/bin/env python3
"""The CUDA path end to end, on a machine with a GPU.

    .venv/bin/python -m bench.gpu                  # checks and chars/s: a few minutes
    .venv/bin/python -m bench.gpu --grid           # also the default grid and a paper-sized grid on the GPU

1. Training: the same model (seed, batches, recipe) trains `--steps` steps on the GPU and on the CPU;
   every step's loss and the final held-out loss must agree to 1e-3 (TF32 off, cuDNN deterministic, so
   the two differ only by float32 rounding).
2. Tracing: the CPU-trained weights copied to the GPU; rnnviz.trace on both over one text; every
   array (h, c, gates, probabilities) must agree to 1e-4.
3. Speed: training chars/s of a 2x256 LSTM on each device (the runs of check 1).
With --grid: `python -m rnnviz paper grid` on the GPU, the default grid and a paper-sized one (3 cells x
1-3 layers x 4 budgets; see PAPER_SIZED), results in --out.

Without CUDA it says so and exits 0: there is nothing to check.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnviz.model import build, describe_device  # noqa: E402
from rnnviz.paper import grid  # noqa: E402
from rnnviz.trace import trace  # noqa: E402
from rnnviz.training import TrainConfig, Trainer  # noqa: E402
from rnnviz.vocab import Vocab  # noqa: E402

LOSS_TOL, STATE_TOL = 1e-3, 1e-4
# Paper-sized, not the paper's: its four budgets could not be read from the sources found (docs/paper.md).
# Four budgets and 1-3 layers as in the paper, up to 1M: the most a 1-layer tanh RNN of CharRNN's widest
# (1024 units) reaches.
PAPER_SIZED = dict(layers=[1, 2, 3], budgets=[64_000, 128_000, 300_000, 1_000_000], steps=5_000)


def needs_gpu() -> str | None:
    """Why this benchmark cannot run here, or None when torch sees a CUDA GPU."""
    if torch.cuda.is_available():
        return None
    built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"bench.gpu needs a CUDA GPU: torch {torch.__version__} ({built}) finds none on this machine. "
            "Nothing was measured.")


def deterministic_cuda() -> None:
    """float32 everywhere on the GPU, so CPU and GPU differ only by rounding order."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def corpus_texts(chars: int, val_chars: int = 20_000) -> tuple[str, str]:
    """Training and held-out text: the grid's default corpus, its first `chars` and the next `val_chars`."""
    corpus = grid.grid_corpus(grid.default_spec().corpus)
    return corpus.text[:chars], corpus.text[chars:chars + val_chars]


def train_on(device: str, train_text: str, val_text: str, vocab: Vocab, steps: int):
    """(trainer, result) of one seeded 2x256 LSTM run on `device`."""
    model = build(vocab, "lstm", hidden_size=256, num_layers=2, embed_size=64, seed=0)
    cfg = TrainConfig(seq_len=128, batch_size=32, lr=2e-3, max_steps=steps, eval_every=steps,
                      eval_chars=20_000, seed=0, device=device)
    trainer = Trainer(model, train_text, val_text, cfg)
    return trainer, trainer.run()


def check_training(steps: int, gpu: str = "cuda", val_chars: int = 20_000) -> tuple[bool, dict, Trainer]:
    """Train on `gpu` and on the CPU; (every loss agrees, chars/s per device, the CPU's trainer)."""
    train_text, val_text = corpus_texts(500_000, val_chars)
    vocab = Vocab.from_text(train_text + val_text)
    rows = {}
    for label, dev in (("gpu", gpu), ("cpu", "cpu")):
        trainer, result = train_on(dev, train_text, val_text, vocab, steps)
        rows[label] = (trainer, result)
        print(f"  {dev}: {describe_device(trainer.device)}: {result.steps} steps, final val loss "
              f"{result.val_loss:.5f}, {result.chars_per_sec:,.0f} chars/s", flush=True)
    g, c = rows["gpu"][1], rows["cpu"][1]
    step_gap = max(abs(a["train_loss"] - b["train_loss"]) for a, b in zip(g.curve, c.curve))
    val_gap = abs(g.val_loss - c.val_loss)
    ok = len(g.curve) == len(c.curve) == steps and step_gap <= LOSS_TOL and val_gap <= LOSS_TOL
    print(f"  largest loss difference over {steps} steps {step_gap:.2e}, final val {val_gap:.2e} "
          f"(tolerance {LOSS_TOL:g}): {'ok' if ok else 'FAILED'}")
    speed = {"gpu": g.chars_per_sec, "cpu": c.chars_per_sec}
    return ok, speed, rows["cpu"][0]


def check_trace(cpu_trainer: Trainer, text: str, gpu: str = "cuda") -> bool:
    """The CPU-trained model and its copy on the GPU trace `text`; every array must agree."""
    cpu_model = cpu_trainer.model.cpu().eval()
    gpu_model = build(cpu_model.vocab, "lstm", hidden_size=256, num_layers=2, embed_size=64)
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(gpu).eval()
    a, b = trace(cpu_model, text), trace(gpu_model, text)
    gaps = {"probs": float(np.abs(a.probs - b.probs).max())}
    for layer, (la, lb) in enumerate(zip(a.layers, b.layers)):
        for kind in la:
            gaps[f"layer {layer} {kind}"] = float(np.abs(la[kind] - lb[kind]).max())
    worst = max(gaps, key=gaps.get)
    ok = gaps[worst] <= STATE_TOL
    print(f"  {len(text):,} characters, {len(gaps)} arrays; largest difference {gaps[worst]:.2e} ({worst}), "
          f"tolerance {STATE_TOL:g}: {'ok' if ok else 'FAILED'}")
    return ok


def run_grids(out: Path) -> None:
    """The default grid and the paper-sized one on the GPU, timed."""
    for name, spec in (("default", grid.default_spec()), ("paper-sized", grid.spec_from_options(**PAPER_SIZED))):
        folder = out / name
        t0 = time.perf_counter()
        rows = grid.run_grid(spec, folder, device="cuda", command=grid.grid_command(spec, folder, "cuda"))
        print(f"\n{name} grid on the GPU: {len(rows)} runs in {time.perf_counter() - t0:.0f} s; {folder}")
        print(grid.format_table(rows), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="training steps on each device (default 200)")
    p.add_argument("--grid", action="store_true", help="also run the default and a paper-sized grid on the GPU")
    p.add_argument("--out", default="grid_runs/gpu", help="where --grid writes its results (default grid_runs/gpu)")
    args = p.parse_args(argv)
    why = needs_gpu()
    if why:
        print(why)
        return 0
    deterministic_cuda()
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
    print(f"1. training {args.steps} steps on the GPU and on the CPU, one seed:", flush=True)
    ok_train, speed, cpu_trainer = check_training(args.steps)
    print("2. tracing one text on both:", flush=True)
    _, val_text = corpus_texts(500_000)
    ok_trace = check_trace(cpu_trainer, val_text[:2_000])
    print(f"3. training chars/s (2x256 LSTM, batch 32 x 128): GPU {speed['gpu']:,.0f}, CPU {speed['cpu']:,.0f} "
          f"({torch.get_num_threads()} threads), ratio {speed['gpu'] / speed['cpu']:.1f}x")
    if args.grid:
        run_grids(Path(args.out))
    return 0 if ok_train and ok_trace else 1


if __name__ == "__main__":
    sys.exit(main())
