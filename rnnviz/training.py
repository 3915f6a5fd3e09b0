"""A model-agnostic trainer with callbacks, a stop event and NaN protection (minGPT-style)."""
from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from . import checkpoint
from .errors import ConfigError, TextError
from .model import CharRNN, describe_device, pick_device
from .sampling import sample
from .vocab import Vocab

MAX_HISTORY = 64  # snapshots per run, so a history's size is bounded: at most 64 float16 copies of the model
DEFAULT_HISTORY = 13  # the app's and the recipes' choice: 12 log-spaced snapshots, then the last step


@dataclass
class TrainConfig:
    """Optimisation settings. Truncated BPTT is `stateful` (char-rnn: B streams carry h) or `random` windows.

    The learning rate of the update after `s` earlier ones (s = 0, 1, ...), with W = warmup_steps:
      - warm-up, s < W: lr * (s + 1) / W, linear up to lr;
      - then a cosine from lr down to min_lr over the rest of the schedule. For a step schedule of N
        steps, progress = (s - W) / (N - 1 - W) clipped to [0, 1], so the first step after the warm-up
        has lr and the last step (s = N - 1) has min_lr exactly. A budget of N <= W steps is all
        warm-up. For a time schedule of S seconds, progress = (t - t_W) / (S - t_W) with t the training
        time when the step starts and t_W the time the warm-up's last step ended (its point on the
        curve), so the warm-up is taken out there too; with both, the larger progress counts.
      - past the end of the schedule (only a resume with a larger budget gets there): the rate of its
        last step (min_lr, unless the schedule was all warm-up).
    N is `schedule_steps` and S `schedule_seconds` (None: no such part); both None, as in a fresh
    run, means the budget's: max_steps and max_seconds. They differ from the budget only for resumed
    runs: `Trainer.resume` sets them, with lr, min_lr and warmup_steps, from the saved run, so a
    resumed run has the rates the uninterrupted run would have had.

    Budgets count from the first step of the original run, across resumes: max_steps is the total
    step count to stop at, max_seconds the total training time.
    """

    seq_len: int = 128
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_steps: int | None = 1000
    max_seconds: float | None = None
    eval_every: int = 100
    eval_chars: int = 20_000
    sample_every: int = 0
    sample_length: int = 200
    bptt: str = "stateful"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    schedule_steps: int | None = None
    schedule_seconds: float | None = None
    # Snapshots of the weights to keep (float16, in memory; Trainer.save writes them to history/):
    # a count n (about n roughly log-spaced steps, the last step always among them) or explicit steps.
    history: int | list[int] = 0

    def validate(self) -> "TrainConfig":
        for name in ("seq_len", "batch_size", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, not {v!r}")
        for name in ("lr", "min_lr", "grad_clip", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, not {v!r}")
        if self.max_steps is None and self.max_seconds is None:
            raise ConfigError("give a step budget (max_steps) or a time budget (max_seconds)")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ConfigError(f"max_steps must be a whole number >= 1, not {self.max_steps!r}")
        if self.max_seconds is not None and not (self.max_seconds > 0):
            raise ConfigError(f"max_seconds must be > 0, not {self.max_seconds!r}")
        for name in ("schedule_steps", "schedule_seconds"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(f"{name} must be > 0 or None, not {v!r}")
        if self.bptt not in ("stateful", "random"):
            raise ConfigError(f"bptt must be 'stateful' or 'random', not {self.bptt!r}")
        h = self.history
        if isinstance(h, bool) or not (isinstance(h, int) or (isinstance(h, (list, tuple)) and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in h))):
            raise ConfigError(f"history must be a number of snapshots or a list of steps >= 1, not {h!r}")
        if isinstance(h, int) and not 0 <= h <= MAX_HISTORY or not isinstance(h, int) and len(set(h)) > MAX_HISTORY - 1:
            raise ConfigError(f"history keeps at most {MAX_HISTORY} snapshots, not {h!r}")
        if not isinstance(h, int):
            self.history = sorted(set(h))
        return self



def devices() -> list[str]:
    """The device choices a run can be given here: auto, cpu, and cuda or mps where torch finds them."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def history_points(n: int, end: float, first: float | None = None) -> list[float]:
    """About n - 1 points spaced evenly on a log scale from `first` (default end / 300, at least 1)
    up to `end`, plus `end`: when snapshots are taken (steps or seconds). Early training changes fastest."""
    if n < 1 or end <= 0:
        return []
    if n == 1:
        return [end]
    first = first if first is not None else max(1.0, end / 300)
    first = min(first, end)
    return sorted({*(first * (end / first) ** (i / (n - 1)) for i in range(n - 1)), end})


def history_steps(config: TrainConfig) -> list[int]:
    """The steps a step-budget run snapshots (explicit steps as given; a count: log-spaced up to
    max_steps, rounded to whole steps, the last step included). A time-only budget: see Trainer.run."""
    h = config.history
    if not isinstance(h, int):
        return sorted(set(h))
    if not h or config.max_steps is None:
        return []
    return sorted({max(1, round(x)) for x in history_points(h, config.max_steps, first=min(10, config.max_steps))})


@torch.no_grad()
def evaluate(model: CharRNN, text: str, chunk: int = 4096) -> float:
    """Mean loss in nats/char of predicting text[1:], read as one stream with the state carried."""
    if len(text) < 2:
        raise TextError("evaluation needs at least two characters")
    was_training = model.training
    model.eval()
    ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)
    total, state = 0.0, None
    try:
        for s in range(0, len(ids) - 1, chunk):
            x, y = ids[s:s + chunk][None], ids[s + 1:s + chunk + 1]
            x = x[:, : len(y)]
            logits, state = model(x, state)
            total += F.cross_entropy(logits[0].float(), y, reduction="sum").item()
    finally:
        model.train(was_training)
    return total / (len(ids) - 1)


class _Batches:
    """Yields (x, y, reset) batches of shape (B, T); `reset` says the carried state must start over."""

    def __init__(self, ids: torch.Tensor, cfg: TrainConfig, gen: torch.Generator):
        B, T = cfg.batch_size, cfg.seq_len
        if len(ids) < T + 2:
            raise TextError(f"the training text has {len(ids)} characters; it needs more than seq_len + 1 = {T + 1}")
        self.ids, self.cfg, self.gen = ids, cfg, gen
        self.B = B if cfg.bptt == "random" else max(1, min(B, (len(ids) - 1) // (T + 1)))
        self.span = (len(ids) - 1) // self.B  # characters per stream
        self.pos = None

    def _starts(self) -> tuple[torch.Tensor, bool]:
        """The B window starts of the next batch, and whether the carried state must start over."""
        B, T = self.B, self.cfg.seq_len
        if self.cfg.bptt == "random":
            return torch.randint(0, len(self.ids) - T - 1, (B,), generator=self.gen), True
        reset = self.pos is None or self.pos + T + 1 > self.span
        if reset:  # a new pass: each stream starts at a fresh random offset within its first window
            self.pos = int(torch.randint(0, max(1, min(T, self.span - T - 1)), (1,), generator=self.gen))
        starts = torch.arange(B) * self.span + self.pos
        self.pos += T
        return starts, reset

    def skip(self, n: int) -> None:
        """Pass over n batches (same random draws, no gathering): a resumed run reads the batches
        an uninterrupted one would read next."""
        for _ in range(n):
            self._starts()

    def next(self):
        starts, reset = self._starts()
        chunk = self.ids[starts[:, None] + torch.arange(self.cfg.seq_len + 1)]
        return chunk[:, :-1], chunk[:, 1:], reset


@dataclass
class TrainResult:
    status: str  # finished | stopped | failed
    reason: str
    steps: int
    wall_time: float
    val_loss: float | None
    curve: list[dict]
    samples: list[dict] = field(default_factory=list)
    chars_per_sec: float = 0.0


class Trainer:
    """Trains `model` in place on `train_text`; callbacks: on_step, on_eval, on_sample, on_end.

    Works on its own copy of `config` (resume changes it). A non-finite loss or gradient stops the run
    in a consistent state: the weights, AdamW's moments, the step count and the curve are all those of
    the last update whose weights gave a finite loss, so a save and a resume from there are sound.
    """

    def __init__(self, model: CharRNN, train_text: str, val_text: str | None, config: TrainConfig,
                 stop_event: threading.Event | None = None, corpus: dict | None = None):
        self.config = c = replace(config).validate()
        if c.schedule_steps is None and c.schedule_seconds is None:  # a fresh schedule, over the budget
            c.schedule_steps, c.schedule_seconds = c.max_steps, c.max_seconds
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        self.vocab: Vocab = model.vocab
        if not train_text:
            raise TextError("the training text is empty")
        self.train_ids = torch.from_numpy(self.vocab.encode(train_text))
        self.val_text = val_text if val_text and len(val_text) >= 2 else None
        self.stop_event = stop_event or threading.Event()
        self.corpus = corpus or {}
        self.callbacks = defaultdict(list)
        self.step, self.curve, self.samples = 0, [], []
        self.history: list[dict] = []  # snapshots, oldest first: {"step", "tensors" (float16, CPU), "meta"}
        self.elapsed_before = 0.0  # wall time of earlier runs, when resumed
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.ndim < 2 or name.startswith("embed") else decay).append(p)
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        self.lock = threading.Lock()
        self._progress: dict = {"state": "ready", "step": 0}

    def add_callback(self, event: str, fn) -> None:
        self.callbacks[event].append(fn)

    def _fire(self, event: str, **info) -> None:
        for fn in self.callbacks[event]:
            fn(self, **info)

    def snapshot(self) -> dict:
        """A copy of the progress, safe to read from another thread."""
        with self.lock:
            return {**self._progress, "curve": list(self.curve), "samples": list(self.samples)}

    def _set_progress(self, **kw) -> None:
        with self.lock:
            self._progress.update(kw)

    def lr_at(self, step: int, seconds: float = 0.0) -> float:
        """The rate of the update after `step` earlier ones, started at `seconds` of training time
        (see TrainConfig for the schedule)."""
        c = self.config
        n = c.schedule_steps
        if n:  # past the end of a step schedule: its last step's rate
            step = min(step, n - 1)
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        parts = []
        if n:
            left = n - 1 - c.warmup_steps
            parts.append((step - c.warmup_steps) / left if left > 0 else 1.0)
        total = c.schedule_seconds
        if total:
            # the cosine's clock starts when the warm-up ended: the time of its last point on the curve
            t_w = self.curve[c.warmup_steps - 1]["time"] if 0 < c.warmup_steps <= len(self.curve) else 0.0
            parts.append((seconds - t_w) / (total - t_w) if total > t_w else 1.0)
        progress = min(1.0, max(0.0, max(parts, default=0.0)))
        return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * progress))

    def _budget_fraction(self, seconds: float) -> float:
        """How much of the budget (counted from the original run's start) is spent."""
        c, parts = self.config, []
        if c.max_steps:
            parts.append(self.step / c.max_steps)
        if c.max_seconds:
            parts.append(seconds / c.max_seconds)
        return max(parts)

    def _keep(self, good: dict) -> None:
        """Copy the weights and AdamW's state into `good` (its buffers reused): what a NaN goes back to."""
        for p in self._params:
            kept = good.setdefault(p, {})
            for k, v in [("weights", p), *self.optimizer.state.get(p, {}).items()]:
                if k in kept:
                    kept[k].copy_(v)
                else:
                    kept[k] = v.detach().clone()
        good["step"] = self.step

    def _go_back(self, good: dict) -> None:
        """Undo every update after the one `good` was kept at: weights, AdamW's moments, count, curve."""
        for p in self._params:
            kept = good[p]
            p.copy_(kept["weights"])
            if len(kept) == 1:  # kept before AdamW's first update here: it had no state then
                self.optimizer.state.pop(p, None)
            for k, v in self.optimizer.state.get(p, {}).items():
                v.copy_(kept[k])
        self.step = good["step"]
        with self.lock:
            self.curve = [p for p in self.curve if p["step"] <= self.step]
            self.samples = [s for s in self.samples if s["step"] <= self.step]
            self._progress["step"] = self.step

    def run(self) -> TrainResult:
        c = self.config
        # Dropout's masks come from the global generator: a resumed run draws other masks than the
        # uninterrupted run would (bit-equal resumes need dropout 0).
        torch.manual_seed(c.seed)
        # One batch stream per seed, whatever the start: a resumed run skips what was read before it.
        batches = _Batches(self.train_ids, c, torch.Generator().manual_seed(c.seed))
        batches.skip(self.step)
        model, opt = self.model, self.optimizer
        params = self._params = list(model.parameters())
        good: dict = {}  # the weights and AdamW state after the last update whose weights gave a finite loss
        with torch.no_grad():
            self._keep(good)
        # The carried state starts from zeros, also after a resume (it is not saved): a stateful
        # resume reads the same batches as an uninterrupted run, with a different state at the start.
        state, status, reason = None, "finished", "reached the step budget"
        start = time.perf_counter()
        frac0 = self._budget_fraction(self.elapsed_before)  # spent by earlier runs: not this run's pace
        tokens = 0
        steps_due = [s for s in history_steps(c) if s > self.step]
        # a time-only budget: snapshots when the training time first passes each of these points
        times_due = [] if c.max_steps is not None or not isinstance(c.history, int) else [
            t for t in history_points(c.history, c.max_seconds)[:-1] if t > self.elapsed_before]
        model.train()
        self._set_progress(state="running", device=describe_device(self.device), started=time.time())
        while True:
            elapsed = time.perf_counter() - start
            seconds = self.elapsed_before + elapsed  # training time since the original run began
            if c.max_steps is not None and self.step >= c.max_steps:
                break
            if c.max_seconds is not None and seconds >= c.max_seconds:
                reason = "reached the time budget"
                break
            if self.stop_event.is_set():
                status, reason = "stopped", f"stopped by request at step {self.step}"
                break
            x, y, reset = batches.next()
            x, y = x.to(self.device), y.to(self.device)
            if reset:
                state = None
            lr = self.lr_at(self.step, seconds)
            for g in opt.param_groups:
                g["lr"] = lr
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                # These weights came from the last update (if this run made one): undo it, all of it.
                at, undone, bad_lr = self.step + 1, "", lr
                if self.step > good["step"]:
                    undone, bad_lr = f"undid step {self.step} and ", self.curve[-1]["lr"]
                with torch.no_grad():
                    self._go_back(good)
                status = "failed"
                reason = (f"the loss became {loss_value} at step {at} (learning rate {bad_lr:.3g} too high?); "
                          f"{undone}kept the weights of step {self.step}, the last whose weights gave a finite loss")
                break
            with torch.no_grad():  # the state before this update: finite loss, so the place to go back to
                self._keep(good)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else float("inf"))
            if not torch.isfinite(gnorm):  # no update made: weights, moments and count still agree
                status = "failed"
                reason = f"the gradient became {gnorm.item()} at step {self.step + 1}; kept the weights of step {self.step}"
                break
            opt.step()
            self.step += 1
            tokens += x.numel()
            elapsed = time.perf_counter() - start
            seconds = self.elapsed_before + elapsed
            point = {"step": self.step, "train_loss": loss_value, "time": seconds, "lr": lr}
            frac = self._budget_fraction(seconds)
            with self.lock:
                self.curve.append(point)
                self._progress.update(step=self.step, train_loss=loss_value, fraction=min(1.0, frac),
                                      chars_per_sec=tokens / max(elapsed, 1e-9),
                                      eta=elapsed * (1 - frac) / (frac - frac0) if frac > frac0 else None)
            self._fire("on_step", loss=loss_value)
            if self.val_text and self.step % c.eval_every == 0:
                self._eval(point)
            if c.sample_every and self.step % c.sample_every == 0:
                self._sample()
            if (steps_due and self.step >= steps_due[0]) or (times_due and seconds >= times_due[0]):
                steps_due = [s for s in steps_due if s > self.step]
                times_due = [t for t in times_due if t > seconds]
                self._take_snapshot(point)
        wall = time.perf_counter() - start
        if self.val_text and self.curve and "val_loss" not in self.curve[-1] and status != "failed":
            self._eval(self.curve[-1])
        # the last step's snapshot, always, after the final evaluation so that its record holds the
        # run's final val loss (a snapshot taken in the loop at this very step gets it now)
        last = self.curve[-1] if self.curve else {"step": self.step}
        if c.history and self.step > 0:
            if not self.history or self.history[-1]["step"] < self.step:
                self._take_snapshot(last)
            elif "val_loss" in last:
                self.history[-1]["meta"]["val_loss"] = last["val_loss"]
        val = next((p["val_loss"] for p in reversed(self.curve) if "val_loss" in p), None)
        result = TrainResult(status=status, reason=reason, steps=self.step, wall_time=self.elapsed_before + wall,
                             val_loss=val, curve=list(self.curve), samples=list(self.samples),
                             chars_per_sec=tokens / max(wall, 1e-9))
        self.elapsed_before += wall
        self._set_progress(state=status, message=reason, val_loss=val)
        self._fire("on_end", result=result)
        model.eval()
        return result

    def _eval(self, point: dict) -> None:
        text = self.val_text[: self.config.eval_chars]
        val = evaluate(self.model, text)
        with self.lock:
            point["val_loss"] = val
            point["val_bpc"] = val / math.log(2)
            self._progress["val_loss"] = val
            self._progress["val_chars"] = len(text)  # what the loss was measured on, for the words beside it
        self._fire("on_eval", val_loss=val)

    @torch.no_grad()
    def _take_snapshot(self, point: dict) -> None:
        """Keep a float16 copy of the weights at this step, with the step's losses (its val loss only if
        the run evaluated this step: an extra evaluation per snapshot would cost more than the 3% a
        history may take of a short run), for Trainer.save to write."""
        tensors = {k: v.detach().to("cpu", torch.float16, copy=True) for k, v in self.model.state_dict().items()}
        meta = {"step": self.step, **{k: point[k] for k in ("train_loss", "val_loss", "time", "lr") if k in point}}
        self.history = [h for h in self.history if h["step"] < self.step] + [
            {"step": self.step, "tensors": tensors, "meta": meta}]
        self._fire("on_snapshot", step=self.step)

    def _sample(self) -> None:
        s = sample(self.model, "\n", self.config.sample_length, temperature=0.8, seed=self.step)
        with self.lock:
            self.samples.append({"step": self.step, "text": s.text})
        self._fire("on_sample", text=s.text)

    def training_meta(self, result: TrainResult | None = None) -> dict:
        """What config.json records about this training run."""
        val = result.val_loss if result else next((p["val_loss"] for p in reversed(self.curve) if "val_loss" in p), None)
        return {"corpus": self.corpus,
                "training": {"config": asdict(self.config), "steps": self.step, "wall_time_s": round(self.elapsed_before, 2),
                             "device": describe_device(self.device), "curve": self.curve,
                             "status": result.status if result else None, "reason": result.reason if result else None},
                "val_loss": val, "val_bpc": val / math.log(2) if val is not None else None}

    def save(self, path, result: TrainResult | None = None, dtype: str = "float32"):
        """Checkpoint the model, the optimizer moments (for resuming) and the run's record."""
        return checkpoint.save(self.model, path, meta=self.training_meta(result), dtype=dtype,
                               optimizer_state=self.optimizer_state(), history=self.history)

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        """AdamW's moments and step counts as flat named tensors, for optimizer.safetensors."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        out = {}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for k, v in self.optimizer.state.get(p, {}).items():
                    out[f"{names[id(p)]}.{k}"] = torch.as_tensor(v).detach().float().reshape(-1) if k == "step" else v
        return out

    def resume(self, path) -> "Trainer":
        """Continue a saved run where it stopped: optimizer moments, step count, curve, training time and
        the learning-rate schedule come from the checkpoint.

        A checkpoint saved at step k of an N-step schedule continues with steps k+1..N of that same
        schedule: lr, min_lr, warmup_steps and the schedule's length (steps and/or seconds) are the saved
        run's, whatever this trainer's config said. The budgets are totals since the original run began:
        max_steps = N finishes the run as planned, a smaller one stops early (the saved run stays
        resumable), a larger one trains on past the schedule's end at its last rate, min_lr (the
        schedule is never stretched, so the rate never jumps back up). Likewise max_seconds counts the earlier runs' time.
        To train with a new schedule instead, set the schedule fields on `self.config` after this call.
        The batch stream continues too (same seed, batch_size, seq_len, bptt and text give the same
        batches); with random windows and no dropout the result equals the uninterrupted run's.
        """
        config = checkpoint.read_config(path)
        training = config.get("training", {})
        steps = int(training.get("steps", 0))
        c = self.config
        if c.max_steps is not None and c.max_steps < steps:
            raise ConfigError(f"the checkpoint has already trained {steps} steps and max_steps counts from its "
                              f"first step: give more than {steps}, not {c.max_steps}")
        saved = training.get("config")
        if saved:  # the saved run's schedule (a checkpoint that records none keeps this config's)
            for name in ("lr", "min_lr", "warmup_steps"):
                setattr(c, name, saved.get(name, getattr(c, name)))
            for part in ("steps", "seconds"):  # checkpoints from before schedule_*: their budget was the schedule
                setattr(c, f"schedule_{part}", saved.get(f"schedule_{part}", saved.get(f"max_{part}")))
            c.validate()
        tensors = checkpoint.load_optimizer_state(path) or {}
        by_name = dict(self.model.named_parameters())
        for key, v in tensors.items():
            name, k = key.rsplit(".", 1)
            if name in by_name:
                p = by_name[name]
                st = self.optimizer.state[p]
                st[k] = v.reshape(()).to(torch.float32) if k == "step" else v.to(self.device, p.dtype)
        self.step = steps
        self.curve = list(training.get("curve", []))
        # the saved run's snapshots (those up to its last step; unreadable ones are skipped): the next
        # save writes them again with the new ones after them, so the history reads as one run
        self.history = [h for h in checkpoint.read_history(path) if h["step"] <= steps]
        self.elapsed_before = float(training.get("wall_time_s", 0.0))
        return self
