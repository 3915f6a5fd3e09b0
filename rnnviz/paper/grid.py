"""Table 1 of Karpathy, Johnson & Fei-Fei (2015): cells x depths x parameter budgets, each budget matched
in parameters across cells, every run with the same recipe and steps (rnnviz.training's Trainer).

Resumable: each finished run is one small JSON in <out>/runs/, written atomically; a run whose file is
there, readable and of the same recipe is not trained again. results.json and results.csv gather them.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import tempfile
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from ..corpora import CORPORA, Corpus, load_corpus, split, user_text
from ..errors import ConfigError
from ..model import CELLS, GATES, MAX_HIDDEN, MAX_LAYERS, build, describe_device, pick_device
from ..recipes import MAX_TRAIN_CHARS, TINY
from ..training import TrainConfig, Trainer
from ..vocab import Vocab

COLUMNS = ("cell", "layers", "width", "params", "budget", "steps", "train_loss", "val_loss", "wall_s", "device")
RESULTS_JSON, RESULTS_CSV, RUNS_DIR = "results.json", "results.csv", "runs"
SHIPPED_RESULTS = Path(__file__).resolve().parents[2] / "pretrained" / "paper" / "grid-default.json"
TINYSHAKESPEARE = "tinyshakespeare"
C_SUFFIXES = (".c", ".h")
LINUX_SOURCE_GLOB = "/usr/src/linux-source-*.tar.*"  # Debian's linux-source package: unpack it, pass the folder
TRAIN_LOSS_TAIL = 0.1  # train_loss: the mean training loss over the last 10% of steps


@dataclass
class GridSpec:
    """The grid's recipe: what to train (cells x layers x budgets) and the one way every run trains."""

    cells: tuple[str, ...] = ("lstm", "gru", "rnn")
    layers: tuple[int, ...] = (1, 2)
    budgets: tuple[int, ...] = (30_000, 120_000)
    steps: int = 1500
    corpus: str = TINYSHAKESPEARE
    seed: int = 0
    batch: int = 32
    seq_len: int = 64
    lr: float = 3e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    embed: int = 32
    eval_chars: int = 25_000
    val_fraction: float = 0.1

    def validate(self) -> "GridSpec":
        self.cells, self.layers, self.budgets = tuple(self.cells), tuple(self.layers), tuple(self.budgets)
        bad = [c for c in self.cells if c not in CELLS]
        if not self.cells or bad:
            raise ConfigError(f"cells must be some of {', '.join(CELLS)}, not {', '.join(map(str, bad)) or 'none'}")
        if not self.layers or any(not isinstance(n, int) or not 1 <= n <= MAX_LAYERS for n in self.layers):
            raise ConfigError(f"layers must be whole numbers from 1 to {MAX_LAYERS}, not {list(self.layers)}")
        if not self.budgets or any(not isinstance(b, int) or b < 1 for b in self.budgets):
            raise ConfigError(f"budgets must be positive numbers of parameters, not {list(self.budgets)}")
        for name in ("steps", "batch", "seq_len", "embed", "eval_chars"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, not {v!r}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}).validate()

    def recipe(self) -> dict:
        """What makes two runs of one (cell, layers, budget) comparable: all but the grid's axes."""
        return {k: v for k, v in self.to_dict().items() if k not in ("cells", "layers", "budgets")}

    def train_config(self, device: str) -> TrainConfig:
        # eval_every = steps: the val loss is measured once, after the last step, on eval_chars of held-out text
        return TrainConfig(seq_len=self.seq_len, batch_size=self.batch, lr=self.lr, min_lr=self.min_lr,
                           warmup_steps=self.warmup_steps, weight_decay=0.0, max_steps=self.steps,
                           eval_every=self.steps, eval_chars=self.eval_chars, seed=self.seed, device=device)


def default_spec() -> GridSpec:
    """The laptop grid: 3 cells x 1-2 layers x ~30k and ~120k parameters on tinyshakespeare."""
    return GridSpec()


def spec_from_options(cells=None, layers=None, budgets=None, steps=None, corpus=None, seed=None) -> GridSpec:
    """The default spec with the options a user gave (None keeps the default)."""
    given = dict(cells=cells, layers=layers, budgets=budgets, steps=steps, corpus=corpus, seed=seed)
    return replace(default_spec(), **{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in given.items() if v is not None}).validate()


# --- parameter matching ---------------------------------------------------------------------------

def param_count(cell: str, layers: int, width: int, vocab: int, embed: int = 32) -> int:
    """CharRNN's parameter count: embedding, each layer's w_ih, w_hh and two biases, the linear head."""
    g = len(GATES[cell]) or 1  # gate blocks per layer: LSTM 4, GRU 3, tanh RNN 1
    rnn = sum(g * width * ((embed if layer == 0 else width) + width + 2) for layer in range(layers))
    return vocab * embed + rnn + width * vocab + vocab


def width_for_budget(cell: str, layers: int, budget: int, vocab: int, embed: int = 32) -> int:
    """The width whose parameter count is closest to `budget` (ties: the smaller), as the paper matched them."""
    lo, hi = 1, MAX_HIDDEN
    while lo < hi:  # the smallest width whose count reaches the budget (counts grow with width)
        mid = (lo + hi) // 2
        if param_count(cell, layers, mid, vocab, embed) < budget:
            lo = mid + 1
        else:
            hi = mid
    below = max(1, lo - 1)
    best = min((below, lo), key=lambda w: (abs(param_count(cell, layers, w, vocab, embed) - budget), w))
    top = param_count(cell, layers, MAX_HIDDEN, vocab, embed)
    if best == MAX_HIDDEN and budget - top > param_count(cell, layers, MAX_HIDDEN + 1, vocab, embed) - budget:
        raise ConfigError(f"a {layers}-layer {cell.upper()} of {budget:,} parameters would be wider than "
                          f"{MAX_HIDDEN} units (the widest has {top:,}): give a smaller budget or more layers")
    return best


# --- the corpus -----------------------------------------------------------------------------------

def c_folder_corpus(folder: Path) -> Corpus:
    """Every *.c and *.h file under `folder`, in path order, one document each (the split holds out whole files)."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix in C_SUFFIXES and p.is_file())
    if not paths:
        raise ConfigError(f"{folder} holds no .c or .h files")
    parts, docs, at = [], [], 0
    for p in paths:
        text = p.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
        if at + len(text) > MAX_TRAIN_CHARS:
            break
        parts.append(text)
        docs.append((str(p.relative_to(folder)), at, at + len(text)))
        at += len(text)
    if len(docs) < 2:
        raise ConfigError(f"{folder}: the grid needs at least two C files (whole files are held out)")
    return Corpus(f"{folder.name} (C)", "".join(parts), documents=docs,
                  notice=f"{len(docs):,} .c/.h files of {len(paths):,} under {folder}")


def linux_sources() -> list[Path]:
    """Debian's kernel source tarballs on this machine (the paper's Linux corpus, once unpacked)."""
    return sorted(Path("/").glob(LINUX_SOURCE_GLOB.lstrip("/")))


def grid_corpus(spec: str) -> Corpus:
    """tinyshakespeare (the file the Shakespeare recipes use), a built-in corpus, a text file, or a folder of C files."""
    if spec == TINYSHAKESPEARE:
        path = TINY.path()
        if not path.is_file():
            raise ConfigError(f"tinyshakespeare is not at {path}: set {TINY.env}=PATH ({TINY.source}) or pass "
                              f"--corpus with a built-in ({', '.join(CORPORA)}), a text file or a folder of C files")
        return user_text(path, name=TINY.name, max_chars=MAX_TRAIN_CHARS)
    if spec in CORPORA:
        return load_corpus(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return c_folder_corpus(path)
    if path.is_file():
        return user_text(path, name=path.name, max_chars=MAX_TRAIN_CHARS)
    raise ConfigError(f"corpus {spec!r} is not {TINYSHAKESPEARE}, a built-in ({', '.join(CORPORA)}), a file or a folder")


# --- running the grid -----------------------------------------------------------------------------

@dataclass
class GridRun:
    """One cell of the grid."""

    cell: str
    layers: int
    budget: int
    width: int
    params: int

    @property
    def name(self) -> str:
        return f"{self.cell}-{self.layers}L-{self.budget}"


def plan(spec: GridSpec, vocab: int) -> list[GridRun]:
    """The runs of the grid, budget by budget, with each cell's width matched to the budget."""
    runs = []
    for budget in spec.budgets:
        for layers in spec.layers:
            for cell in spec.cells:
                w = width_for_budget(cell, layers, budget, vocab, spec.embed)
                runs.append(GridRun(cell, layers, budget, w, param_count(cell, layers, w, vocab, spec.embed)))
    return runs


def _write_atomic(path: Path, text: str) -> None:
    """A reader sees the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _done_row(path: Path, recipe: dict, run: GridRun) -> dict | None:
    """The finished run's row if its file is readable and of this recipe and shape; None: train it (again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        row = data["row"]
        same = (data["recipe"] == recipe and all(row[k] == getattr(run, k) for k in ("cell", "layers", "budget", "width"))
                and all(k in row for k in COLUMNS))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # damaged or foreign: never trusted, trained again
    return row if same else None


def train_one(run: GridRun, spec: GridSpec, train_text: str, val_text: str, vocab: list[str], device: str,
              stop_event: threading.Event | None = None, on_step=None) -> dict | None:
    """Train one run with the grid's recipe; its row, or None when stopped before the last step."""
    model = build(vocab, run.cell, run.width, run.layers, embed_size=spec.embed, seed=spec.seed)
    assert model.num_params() == run.params, "param_count disagrees with CharRNN"
    trainer = Trainer(model, train_text, val_text, spec.train_config(device), stop_event=stop_event)
    if on_step:
        trainer.add_callback("on_step", lambda t, loss: on_step(t.step, loss))
    result = trainer.run()
    if result.status != "finished":
        if result.status == "failed":
            raise ConfigError(f"{run.name}: {result.reason}")
        return None
    tail = result.curve[-max(1, math.ceil(len(result.curve) * TRAIN_LOSS_TAIL)):]
    return {"cell": run.cell, "layers": run.layers, "width": run.width, "params": run.params, "budget": run.budget,
            "steps": result.steps, "train_loss": round(sum(p["train_loss"] for p in tail) / len(tail), 4),
            "val_loss": round(result.val_loss, 4), "wall_s": round(result.wall_time, 1),
            "device": trainer.device.type}


def machine(device: str | torch.device = "cpu") -> str:
    """The machine a grid ran on, in words: processor, cores, torch's threads or the GPU, torch version."""
    return (f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} cores; "
            f"{describe_device(device)}; "
            f"torch {torch.__version__}")


def _step_reporter(report, done: int, total: int, name: str, steps: int):
    """on_step for one run: report about 50 times a run, not every step (a job's snapshot takes a lock)."""
    every = max(1, steps // 50)

    def on_step(step: int, loss: float) -> None:
        if step % every == 0:
            report(done=done, total=total, run=name, loss=loss, step=step, steps=steps)
    return on_step


def run_grid(spec: GridSpec, out_dir, device: str | None = None, stop_event: threading.Event | None = None,
             report=None, command: str = "") -> list[dict]:
    """Train every run of the grid not already in out_dir; write results.json and results.csv; the rows.

    report(done=, total=, run=, loss=) is called once with corpus= (its name, size, split and notice) and
    run=None, then as each run starts (loss None) and every few steps;
    stop_event ends the current run at its next step and skips the rest (a stopped run is not saved).
    """
    spec = replace(spec).validate()
    out = Path(out_dir)
    dev = pick_device(device or "cpu")
    corpus = grid_corpus(spec.corpus)
    train_text, val_text = split(corpus, spec.val_fraction)
    vocab = Vocab.from_text(corpus.text).chars  # UNK first, as every CharRNN's
    recipe = {**spec.recipe(), "corpus_sha256": corpus.sha256, "vocab": len(vocab)}
    runs = plan(spec, len(vocab))
    words = machine(dev)
    about = {"name": corpus.name, "sha256": corpus.sha256, "chars": len(corpus.text), "train_chars": len(train_text),
             "val_chars": len(val_text), "vocab": len(vocab), "notice": corpus.notice}
    rows: list[dict] = []
    if report:  # what is about to be trained on, before the first run (a folder of C files: how many)
        report(done=0, total=len(runs), run=None, loss=None, corpus=about)
    for i, run in enumerate(runs):
        if stop_event is not None and stop_event.is_set():
            break
        path = out / RUNS_DIR / f"{run.name}.json"
        row = _done_row(path, recipe, run)
        if row is None:
            if report:
                report(done=i, total=len(runs), run=run.name, loss=None)
            row = train_one(run, spec, train_text, val_text, vocab, str(dev), stop_event,
                            _step_reporter(report, i, len(runs), run.name, spec.steps) if report else None)
            if row is None:
                break
            _write_atomic(path, json.dumps({"recipe": recipe, "row": row}, indent=1) + "\n")
        rows.append(row)
        # after every run, so a page reading results.json mid-grid (or after a Cancel) has what finished
        write_results(out, spec, rows, words, command=command, corpus=about)
        if report:
            report(done=i + 1, total=len(runs), run=run.name, loss=row["val_loss"])
    write_results(out, spec, rows, words, command=command, corpus=about)
    return rows


def results_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_results(out: Path, spec: GridSpec, rows: list[dict], machine_words: str, command: str = "",
                  corpus: dict | None = None) -> None:
    """results.json ({spec, command, machine, corpus, rows}) and results.csv (the rows), both atomically."""
    data = {"spec": spec.to_dict(), "command": command, "machine": machine_words, "corpus": corpus or {},
            "rows": rows}
    _write_atomic(Path(out) / RESULTS_JSON, json.dumps(data, indent=1) + "\n")
    _write_atomic(Path(out) / RESULTS_CSV, results_csv(rows))


def _check_rows(rows, where: str) -> list[dict]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in COLUMNS) for r in rows):
        raise ConfigError(f"{where} is not a grid results file: its rows must each have {', '.join(COLUMNS)}")
    return rows


def load_results(path) -> list[dict]:
    """The rows of a results.json (or of the results.json in a folder); ConfigError if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read grid results {path}: {e}") from None
    return _check_rows(data.get("rows") if isinstance(data, dict) else None, str(path))


def shipped_results() -> dict:
    """The shipped default CPU run: {"spec", "command", "machine", "rows", ...}."""
    try:
        data = json.loads(SHIPPED_RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the shipped grid results {SHIPPED_RESULTS}: {e}") from None
    _check_rows(data.get("rows"), str(SHIPPED_RESULTS))
    return data


def grid_command(spec: GridSpec, out_dir=None, device: str = "cpu", threads: int | None = None) -> str:
    """The command line that reruns this grid (every option spelled out, so it reads as the recipe)."""
    parts = ["python -m rnnviz paper grid", "--cells", *spec.cells, "--layers", *map(str, spec.layers),
             "--budgets", *map(str, spec.budgets), "--steps", str(spec.steps), "--corpus", spec.corpus,
             "--seed", str(spec.seed), "--device", device]
    parts += ["--threads", str(threads)] if threads else []
    parts += ["--out", str(out_dir)] if out_dir is not None else []
    return " ".join(parts)


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width table: val loss by budget and depth (rows) and cell (columns)."""
    head = f"{'budget':>8} {'layers':>6}  {'cell':<5} {'width':>5} {'params':>8} {'steps':>6} {'train':>7} {'val':>7} {'wall s':>7}"
    lines = [head]
    for r in sorted(rows, key=lambda r: (r["budget"], r["layers"], CELLS.index(r["cell"]))):
        lines.append(f"{r['budget']:>8,} {r['layers']:>6}  {r['cell']:<5} {r['width']:>5} {r['params']:>8,} "
                     f"{r['steps']:>6} {r['train_loss']:>7.3f} {r['val_loss']:>7.3f} {r['wall_s']:>7.1f}")
    return "\n".join(lines)


def grid_job(spec: GridSpec, out_dir, device: str | None = None, threads: int | None = None):
    """A rnnviz.jobs.Job that runs the grid in a worker thread (the app's training queue); its result: the rows."""
    from ..jobs import Job

    def work(stop_event, report):
        return run_grid(spec, out_dir, device=device, stop_event=stop_event, report=report,
                        command="queued from the app")

    return Job(work, name="paper grid", threads=threads, expected_seconds=_expected_seconds(spec))


def _expected_seconds(spec: GridSpec) -> float | None:
    """The shipped run's time when `spec` is its recipe (for the queue's estimated wait); else unknown."""
    try:
        shipped = shipped_results()
        return float(shipped["ran"]["train_and_eval_s"]) if shipped["spec"] == spec.to_dict() else None
    except (ConfigError, KeyError, TypeError, ValueError):
        return None
