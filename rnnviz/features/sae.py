"""A TopK sparse autoencoder over one layer's h (or an LSTM's c): the dictionary and its training.

The recipe follows Gao et al. 2024 (OpenAI's TopK autoencoders): decoder rows kept at unit norm (the
decoder's gradient along each row removed before every step), the encoder started as the decoder's
transpose, b_dec started at the states' mean, and an auxiliary loss (AuxK) that lets latents unused
for a while reconstruct what the live ones miss, so few stay dead.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..atlas.stream import _layer_extras
from ..errors import ConfigError, RnnvizError, TextError
from ..model import CharRNN
from ..trace import _layer_params, _run_layer

STATES = ("h", "c")
DEFAULT_STEPS = 6000  # about 400 updates missed every goal; the prototype took ~120 s of updates
AUX_COEF = 1 / 32  # the AuxK weight of Gao et al.
DEAD_AFTER = 20_000  # characters without firing before a latent counts as dead for the aux loss
STATE_CHUNK = 8192


class Cancelled(RnnvizError):
    """Training was stopped by its cancel callback; nothing was cached."""


@dataclass
class SAEConfig:
    """How to train a dictionary; every field enters the cache key."""

    layer: int = -1  # -1 = top layer
    state: str = "h"  # "h" or, for an LSTM, "c"
    size: int | None = None  # d_sae; None = 8 x hidden size
    k: int = 32
    steps: int = DEFAULT_STEPS
    batch: int = 256
    lr: float = 2e-3
    seed: int = 0

    def resolved(self, model: CharRNN) -> "SAEConfig":
        """A copy with the layer made non-negative and the size filled in, checked against the model."""
        L, H = model.config.num_layers, model.config.hidden_size
        layer = self.layer + L if isinstance(self.layer, int) and self.layer < 0 else self.layer
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < L:
            raise ConfigError(f"layer must be from 0 to {L - 1} (or -1 for the top layer), not {self.layer!r}")
        if self.state not in STATES:
            raise ConfigError(f"state must be 'h' or 'c', not {self.state!r}")
        if self.state == "c" and model.cell != "lstm":
            raise ConfigError(f"a {model.cell.upper()} has no cell state c: use state 'h'")
        size = 8 * H if self.size is None else self.size
        for name, v, lo in (("size", size, 1), ("k", self.k, 1), ("steps", self.steps, 1), ("batch", self.batch, 1),
                            ("seed", self.seed, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{name} must be a whole number of at least {lo}, not {v!r}")
        if size > 65536:
            raise ConfigError(f"size must be at most 65,536 features, not {size:,}")
        if self.k > size:
            raise ConfigError(f"k ({self.k}) cannot exceed the dictionary's size ({size})")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not 0 < self.lr < 1:
            raise ConfigError(f"lr must be a number between 0 and 1, not {self.lr!r}")
        return SAEConfig(layer=layer, state=self.state, size=size, k=self.k, steps=self.steps, batch=self.batch,
                         lr=float(self.lr), seed=self.seed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dictionary:
    """A trained dictionary in SAELens's terms; works on raw states (any scaling is folded in)."""

    W_enc: np.ndarray  # (d_in, d_sae)
    b_enc: np.ndarray  # (d_sae,)
    W_dec: np.ndarray  # (d_sae, d_in), unit-norm rows
    b_dec: np.ndarray  # (d_in,)
    k: int
    cfg: dict
    path: Path | None = None
    _tensors: dict | None = field(default=None, repr=False, compare=False)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def layer(self) -> int:
        return int(self.cfg["layer"])

    @property
    def state(self) -> str:
        return str(self.cfg["state"])

    @property
    def apply_b_dec_to_input(self) -> bool:
        return bool(self.cfg.get("apply_b_dec_to_input", True))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights as float32 CPU tensors, made once (the arrays are never changed in place)."""
        if self._tensors is None:
            self._tensors = {n: torch.from_numpy(np.ascontiguousarray(getattr(self, n), dtype=np.float32))
                             for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
        return self._tensors

    def encode_t(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d_in) float32 -> (N, d_sae) dense activations; see encode."""
        w = self.tensors()
        pre = torch.addmm(w["b_enc"], x - w["b_dec"] if self.apply_b_dec_to_input else x, w["W_enc"]).relu_()
        vals, idx = pre.topk(self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals)

    def decode_t(self, f: torch.Tensor) -> torch.Tensor:
        w = self.tensors()
        return torch.addmm(w["b_dec"], f, w["W_dec"])

    def reconstruct_t(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)) reading only the k active rows of W_dec: the splice's inner loop."""
        w = self.tensors()
        pre = torch.addmm(w["b_enc"], x - w["b_dec"] if self.apply_b_dec_to_input else x, w["W_enc"]).relu_()
        vals, idx = pre.topk(self.k, dim=-1, sorted=False)
        return _decode_sparse(idx, vals, w["W_dec"]) + w["b_dec"]

    def encode(self, x) -> np.ndarray:
        """(N, d_in) -> (N, d_sae): TopK(ReLU((x - b_dec if apply_b_dec_to_input else x) W_enc + b_enc))."""
        with torch.no_grad():
            return self.encode_t(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()

    def decode(self, f) -> np.ndarray:
        """(N, d_sae) -> (N, d_in): f W_dec + b_dec."""
        with torch.no_grad():
            return self.decode_t(torch.as_tensor(np.asarray(f, dtype=np.float32))).numpy()


# --- the states: one layer's h or c, streamed in chunks with the state carried ----------------------

@contextmanager
def one_thread():
    """Run the recurrence on one thread: it is thousands of small products in sequence, and with two
    threads each waits on a sync that a busy CPU makes cost a time slice (measured here: 3 to 9 times
    slower than one thread over 20,000 characters of python-lstm)."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def layer_states(model: CharRNN, text: str, layer: int, state: str = "h",
                 chunk: int = STATE_CHUNK) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, end, states (t, H) float32) for each chunk of the text: one layer's h or c only, the
    layers above never run, and no chunk is kept after it is yielded."""
    if not isinstance(text, str) or not text:
        raise TextError("the text is empty: give at least one character")
    cell, H = model.cell, model.config.hidden_size
    was_training = model.training
    model.eval()
    try:
        ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)
        init = model.init_state(1)
        states = [(init[0][l:l + 1], init[1][l:l + 1]) if cell == "lstm" else init[l:l + 1]
                  for l in range(layer + 1)]
        for s in range(0, len(ids), chunk):
            e = min(len(ids), s + chunk)
            with one_thread():
                x = model.embed(ids[s:e])
                for l in range(layer + 1):
                    params = _layer_params(model, l)
                    h, new = _run_layer(cell, x, states[l], params)
                    if l == layer and state == "c":
                        h = _layer_extras(cell, x, h, states[l], params)["c"]
                    states[l] = new
                    x = h
            yield s, e, x.float().reshape(-1, H)
    finally:
        model.train(was_training)


def collect_states(model: CharRNN, text: str, layer: int, state: str, cancel=None, progress=None) -> np.ndarray:
    """(T, H) float16: one layer's states over the text; half the memory of float32, enough for training."""
    out = np.empty((len(text), model.config.hidden_size), np.float16)
    for s, e, x in layer_states(model, text, layer, state):
        if cancel is not None and cancel():
            raise Cancelled("training the dictionary was cancelled; nothing was cached")
        out[s:e] = x.cpu().numpy()
        if progress is not None:
            progress(e / len(text), f"states: {e:,} of {len(text):,} characters")
    return out


# --- training -----------------------------------------------------------------------------------------

def _decode_sparse(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """sum_j vals[:, j] W_dec[idx[:, j]]: (B, k) -> (B, d); k rows per sample, not a dense product."""
    return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")


def _project_out_parallel(W_dec: torch.Tensor) -> None:
    """Remove the part of each decoder row's gradient along the row, so unit norm holds to first order."""
    g = W_dec.grad
    g.sub_((g * W_dec.data).sum(1, keepdim=True) * W_dec.data)


def auxk_loss(raw: torch.Tensor, dead: torch.Tensor, err: torch.Tensor, W_dec: torch.Tensor,
              k_aux: int) -> torch.Tensor:
    """AuxK: the dead latents' top k_aux pre-activations (B, S) reconstruct the live ones' residual err
    (B, d); the squared error, divided by the residual's own, so it does not fade as the fit improves."""
    # Chosen among the raw pre-activations, not the ReLU'd ones: a latent whose pre-activation is below
    # zero on every state gets no gradient through a ReLU, so it stayed dead for good (shakespeare-lstm's
    # h: 17.7% of 4,096 latents dead after 1,500 steps chosen after the ReLU, 0.8% chosen before it).
    av, ai = raw.masked_fill(~dead, float("-inf")).topk(min(k_aux, int(dead.sum())), dim=-1, sorted=False)
    e = err.detach()
    return (_decode_sparse(ai, av, W_dec) - e).pow(2).sum(1).mean() / e.pow(2).sum(1).mean().clamp_min(1e-12)


def _train_arrays(X: np.ndarray, cfg: SAEConfig, progress, cancel) -> tuple[dict[str, np.ndarray], dict]:
    """Fit the TopK autoencoder to X (N, d) float16; returns raw-state weights and a training record."""
    N, d = X.shape
    S, k = cfg.size, cfg.k
    gen = torch.Generator().manual_seed(cfg.seed)
    Xt = torch.from_numpy(X)  # (N, d) float16, batches converted as drawn
    mean = Xt.float().mean(0)
    # One scale for all inputs, so the centred states have unit mean squared norm; folded in at the end.
    var = sum(float(((Xt[s:s + 65536].float() - mean) ** 2).sum()) for s in range(0, N, 65536)) / N
    scale = max(var, 1e-12) ** 0.5
    W_dec = torch.randn(S, d, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_dec.requires_grad_(True)
    W_enc = W_dec.detach().t().clone().requires_grad_(True)
    b_enc = torch.zeros(S, requires_grad=True)
    b_dec = (mean / scale).clone().requires_grad_(True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=cfg.lr)
    decay_from = int(0.8 * cfg.steps)  # linear decay to zero over the last fifth
    last_fired = torch.zeros(S, dtype=torch.long)  # characters seen when each latent last fired
    seen, k_aux = 0, max(1, min(d // 2, S))
    t0, fvu_sum, fvu_n, record = time.perf_counter(), 0.0, 0, []
    for step in range(cfg.steps):
        if cancel is not None and step % 20 == 0 and cancel():
            raise Cancelled("training the dictionary was cancelled; nothing was cached")
        if step >= decay_from:
            for grp in opt.param_groups:
                grp["lr"] = cfg.lr * (cfg.steps - step) / max(1, cfg.steps - decay_from)
        rows = torch.randint(0, N, (cfg.batch,), generator=gen)
        xb = Xt[rows].float().div_(scale)  # (B, d)
        # Dense: on a CPU one (B, d) x (d, S) product and its backward beat gathering the k chosen rows.
        raw = torch.addmm(b_enc, xb - b_dec, W_enc)  # (B, S)
        pre = raw.relu()
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        rec = _decode_sparse(idx, vals, W_dec) + b_dec
        err = xb - rec
        mse = err.pow(2).sum(1).mean()
        loss = mse
        seen += cfg.batch
        with torch.no_grad():
            fired = torch.zeros(S, dtype=torch.bool)
            fired[idx[vals > 0]] = True
            last_fired[fired] = seen
            dead = (seen - last_fired) > DEAD_AFTER
        n_dead = int(dead.sum())
        if n_dead:
            loss = loss + AUX_COEF * auxk_loss(raw, dead, err, W_dec, k_aux)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        _project_out_parallel(W_dec)
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
            var_b = (xb - xb.mean(0)).pow(2).sum(1).mean()
            fvu_sum += float(mse / var_b.clamp_min(1e-12))
            fvu_n += 1
        if (step + 1) % 100 == 0 or step + 1 == cfg.steps:
            record.append({"step": step + 1, "fvu": fvu_sum / fvu_n, "dead": n_dead,
                           "time": round(time.perf_counter() - t0, 3)})
            fvu_sum, fvu_n = 0.0, 0
            if progress is not None:
                progress((step + 1) / cfg.steps, f"dictionary: step {step + 1:,} of {cfg.steps:,}, "
                                                 f"batch FVU {record[-1]['fvu']:.3f}")
    with torch.no_grad():
        # Raw states x = scale * x': f = scale * f' keeps W_enc and W_dec; the biases take the scale.
        weights = {"W_enc": W_enc.detach().numpy().copy(), "b_enc": (b_enc.detach() * scale).numpy(),
                   "W_dec": W_dec.detach().numpy().copy(), "b_dec": (b_dec.detach() * scale).numpy()}
    return {n: v.astype(np.float32) for n, v in weights.items()}, {
        "scale": scale, "train_seconds": round(time.perf_counter() - t0, 3), "log": record}


SAELENS_LAYOUT = "6.0.0"  # the SAELens config layout written (top-level fields + metadata), see docs/features.md


def sae_cfg(model: CharRNN, cfg: SAEConfig, d_sae: int, corpus: dict | None = None,
            model_name: str | None = None) -> dict:
    """cfg.json in SAELens 6's layout (architecture topk, k, d_in, d_sae, apply_b_dec_to_input, ... and a
    metadata object), plus our own record: model, layer, state, corpus, training."""
    H = model.config.hidden_size
    name = model_name or f"rnnviz-{model.cell}-{model.config.num_layers}x{H}"
    return {
        "architecture": "topk", "d_in": H, "d_sae": d_sae, "k": cfg.k, "rescale_acts_by_decoder_norm": False,
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "dtype": "float32", "device": "cpu",
        "metadata": {"sae_lens_version": SAELENS_LAYOUT, "sae_lens_training_version": None, "model_name": name,
                     "hook_name": f"rnn.layer{cfg.layer}.{cfg.state}", "hook_head_index": None,
                     "prepend_bos": False, "context_size": None, "dataset_path": (corpus or {}).get("name")},
        # ours
        "model": {"name": name, "cell": model.cell, "num_layers": model.config.num_layers, "hidden_size": H,
                  "vocab_size": len(model.vocab)},
        "layer": cfg.layer, "state": cfg.state, "corpus": corpus or {}, "training": cfg.to_dict(),
    }


def train(model: CharRNN, text: str, cfg: SAEConfig | None = None, progress: Callable | None = None,
          cancel: Callable | None = None, corpus: dict | None = None, model_name: str | None = None) -> Dictionary:
    """Train a TopK dictionary on one layer's states over `text`. progress(fraction, message);
    cancel() -> True stops it (Cancelled). Holds that one layer's states as float16, never all layers."""
    cfg = (cfg or SAEConfig()).resolved(model)
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("training a dictionary needs a text of at least two characters")
    part = (lambda a, b: (lambda f, m: progress(a + (b - a) * f, m))) if progress else (lambda a, b: None)
    X = collect_states(model, text, cfg.layer, cfg.state, cancel, part(0.0, 0.1))
    weights, record = _train_arrays(X, cfg, part(0.1, 1.0), cancel)
    meta = sae_cfg(model, cfg, cfg.size, {"chars": len(text), **(corpus or {})}, model_name)
    meta["training"].update({"scale": record["scale"], "seconds": record["train_seconds"],
                             "final_batch_fvu": record["log"][-1]["fvu"] if record["log"] else None,
                             "log": record["log"]})
    return Dictionary(**weights, k=cfg.k, cfg=meta, path=None)
