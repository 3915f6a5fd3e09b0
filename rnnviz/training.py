"""A model-agnostic trainer with callbacks, a stop event and NaN protection (minGPT-style)."""
from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from . import checkpoint
from .errors import ConfigError, TextError
from .model import CharRNN, describe_device, pick_device
from .sampling import sample
from .vocab import Vocab


@dataclass
class TrainConfig:
    """Optimisation settings. Truncated BPTT is `stateful` (char-rnn: B streams carry h) or `random` windows."""

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
        if self.bptt not in ("stateful", "random"):
            raise ConfigError(f"bptt must be 'stateful' or 'random', not {self.bptt!r}")
        return self


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

    def next(self):
        B, T = self.B, self.cfg.seq_len
        if self.cfg.bptt == "random":
            starts = torch.randint(0, len(self.ids) - T - 1, (B,), generator=self.gen)
            idx = starts[:, None] + torch.arange(T + 1)
            chunk = self.ids[idx]
            return chunk[:, :-1], chunk[:, 1:], True
        reset = self.pos is None or self.pos + T + 1 > self.span
        if reset:  # a new pass: each stream starts at a fresh random offset within its first window
            self.pos = int(torch.randint(0, max(1, min(T, self.span - T - 1)), (1,), generator=self.gen))
        base = torch.arange(B) * self.span + self.pos
        idx = base[:, None] + torch.arange(T + 1)
        chunk = self.ids[idx]
        self.pos += T
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
    """Trains `model` in place on `train_text`; callbacks: on_step, on_eval, on_sample, on_end."""

    def __init__(self, model: CharRNN, train_text: str, val_text: str | None, config: TrainConfig,
                 stop_event: threading.Event | None = None, corpus: dict | None = None):
        self.config = config.validate()
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

    def lr_at(self, progress: float) -> float:
        """Linear warm-up, then cosine decay from lr to min_lr over the budget."""
        c = self.config
        if self.step < c.warmup_steps:
            return c.lr * (self.step + 1) / c.warmup_steps
        return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))

    def _progress_fraction(self, elapsed: float) -> float:
        c, parts = self.config, []
        if c.max_steps:
            parts.append(self.step / c.max_steps)
        if c.max_seconds:
            parts.append(elapsed / c.max_seconds)
        return max(parts)

    def run(self) -> TrainResult:
        c = self.config
        torch.manual_seed(c.seed)
        gen = torch.Generator().manual_seed(c.seed + self.step)
        batches = _Batches(self.train_ids, c, gen)
        model, opt = self.model, self.optimizer
        params = [p for p in model.parameters()]
        good = [p.detach().clone() for p in params]  # the last weights that gave a finite loss
        good_step = self.step
        state, status, reason = None, "finished", "reached the step budget"
        start = time.perf_counter()
        tokens = 0
        model.train()
        self._set_progress(state="running", device=describe_device(self.device), started=time.time())
        while True:
            elapsed = time.perf_counter() - start
            if c.max_steps is not None and self.step >= c.max_steps:
                break
            if c.max_seconds is not None and elapsed >= c.max_seconds:
                reason = "reached the time budget"
                break
            if self.stop_event.is_set():
                status, reason = "stopped", f"stopped by request at step {self.step}"
                break
            x, y, reset = batches.next()
            x, y = x.to(self.device), y.to(self.device)
            if reset:
                state = None
            lr = self.lr_at(self._progress_fraction(elapsed))
            for g in opt.param_groups:
                g["lr"] = lr
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                with torch.no_grad():
                    for p, g_ in zip(params, good):
                        p.copy_(g_)
                status = "failed"
                reason = (f"the loss became {loss_value} at step {self.step + 1} (learning rate {lr:.3g} too high?); "
                          f"kept the weights of step {good_step}, the last with a finite loss")
                break
            with torch.no_grad():
                torch._foreach_copy_(good, [p.detach() for p in params])
            good_step = self.step
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else float("inf"))
            if not torch.isfinite(gnorm):
                status = "failed"
                reason = f"the gradient became {gnorm.item()} at step {self.step + 1}; kept the weights of step {self.step}"
                break
            opt.step()
            self.step += 1
            tokens += x.numel()
            elapsed = time.perf_counter() - start
            point = {"step": self.step, "train_loss": loss_value, "time": self.elapsed_before + elapsed, "lr": lr}
            frac = self._progress_fraction(elapsed)
            with self.lock:
                self.curve.append(point)
                self._progress.update(step=self.step, train_loss=loss_value, fraction=min(1.0, frac),
                                      chars_per_sec=tokens / max(elapsed, 1e-9),
                                      eta=elapsed * (1 - frac) / frac if frac > 0 else None)
            self._fire("on_step", loss=loss_value)
            if self.val_text and self.step % c.eval_every == 0:
                self._eval(point)
            if c.sample_every and self.step % c.sample_every == 0:
                self._sample()
        wall = time.perf_counter() - start
        if self.val_text and self.curve and "val_loss" not in self.curve[-1] and status != "failed":
            self._eval(self.curve[-1])
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
        val = evaluate(self.model, self.val_text[: self.config.eval_chars])
        with self.lock:
            point["val_loss"] = val
            point["val_bpc"] = val / math.log(2)
            self._progress["val_loss"] = val
        self._fire("on_eval", val_loss=val)

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
                               optimizer_state=self.optimizer_state())

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
        """Continue a saved run: optimizer moments, step count and curve come from the checkpoint."""
        config = checkpoint.read_config(path)
        tensors = checkpoint.load_optimizer_state(path) or {}
        by_name = dict(self.model.named_parameters())
        for key, v in tensors.items():
            name, k = key.rsplit(".", 1)
            if name in by_name:
                p = by_name[name]
                st = self.optimizer.state[p]
                st[k] = v.reshape(()).to(torch.float32) if k == "step" else v.to(self.device, p.dtype)
        training = config.get("training", {})
        self.step = int(training.get("steps", 0))
        self.curve = list(training.get("curve", []))
        self.elapsed_before = float(training.get("wall_time_s", 0.0))
        if self.config.max_steps is not None:
            self.config.max_steps += self.step  # max_steps counts the steps of this run
        return self
