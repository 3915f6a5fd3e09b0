"""Training dynamics (the paper's Figure 7): how far each training snapshot's predictions lie from
n-grams of each order, as symmetric KL divergence averaged over held-out characters.

The paper's finding: early in training the LSTM is closest to low orders, later to higher ones.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError, TextError

ORDERS = (1, 2, 3, 4, 5)


def symmetric_kl(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """(P,) KL(p‖q) + KL(q‖p) per row, in nats, from log-probabilities (P, V) of two distributions."""
    return ((np.exp(log_p) - np.exp(log_q)) * (log_p - log_q)).sum(-1)


@torch.no_grad()
def model_log_probs(model, text: str, chunk: int = 4096) -> np.ndarray:
    """(T, V) float64 log p(next character | text[:t + 1]), in chunks with the state carried."""
    ids = torch.from_numpy(model.vocab.encode(text)).to(model.device)[None]  # (1, T)
    was_training, state, out = model.training, None, []
    model.eval()
    try:
        for s in range(0, ids.shape[1], chunk):
            logits, state = model(ids[:, s:s + chunk], state)
            out.append(torch.log_softmax(logits[0].double(), -1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def ngram_log_probs(train_text: str, text: str, orders, vocab) -> dict[int, np.ndarray]:
    """Per order n: (T-1, V) log of the Kneser–Ney n-gram's next-character distribution after text[:t + 1]."""
    from ..ngram import fit_cached

    pos = np.arange(len(text) - 1)
    return {n: np.log(fit_cached(train_text, n, vocab).distribution(text, pos)) for n in orders}


def _orders(orders) -> tuple[int, ...]:
    from ..ngram import MAX_ORDER

    out = tuple(sorted(set(int(n) for n in orders)))
    if not out or out[0] < 1 or out[-1] > MAX_ORDER:
        raise ConfigError(f"n-gram orders must be whole numbers from 1 to {MAX_ORDER}, not {orders!r}")
    return out


def dynamics(snapshots, text: str, orders=ORDERS, train_text: str = "") -> dict:
    """{"steps": [S], "orders": [O], "kl": (S, O)}: the mean symmetric KL (nats per character) between
    each snapshot's next-character distribution and each order's n-gram, over text[1:]. `snapshots`
    is an iterable of (step, model); the n-grams are fitted on `train_text` over the models' vocabulary."""
    if not isinstance(text, str) or len(text) < 2:
        raise TextError("the dynamics need a text of at least two characters")
    if not train_text:
        raise TextError("the dynamics need the model's training text to fit the n-grams")
    orders = _orders(orders)
    steps, rows, grams = [], [], None
    for step, model in snapshots:
        if grams is None:
            grams = ngram_log_probs(train_text, text, orders, model.vocab)
        log_p = model_log_probs(model, text)[:-1]  # (T-1, V)
        rows.append([float(symmetric_kl(log_p, grams[n]).mean()) for n in orders])
        steps.append(int(step))
    if not steps:
        raise ConfigError("this model has no training history: the dynamics need its snapshots "
                          "(train with history kept, e.g. --history 10)")
    return {"steps": steps, "orders": list(orders), "kl": np.array(rows)}


def history_snapshots(path):
    """(step, model) for each loadable snapshot of checkpoint `path`'s history, in step order."""
    from .. import history

    hist = history.read(path)
    for step in hist.steps:
        yield step, history.load(hist, step)[0]

