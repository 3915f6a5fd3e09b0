"""Units against features: for each hypothesis, the best unit beside the best feature, scored and
given a chance level exactly as Neuron search does; and what one feature's decoder direction does."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..hypotheses import HYPOTHESES, hypothesis_mask
from ..model import CharRNN
from ..probes import CHANCE_SHIFTS, evidence, evidence_text, rank_units, score_units, shift_offsets
from ..trace import trace
from .metrics import _feature_index, feature_acts
from .sae import Dictionary
from .store import check_fits

MAX_COMPARE_CHARS = 20_000  # every unit and feature against every hypothesis with 20 shifts: seconds, not minutes


def _varies(labels: np.ndarray, mask) -> bool:
    counted = labels if mask is None else labels[mask]
    return counted.size > 1 and counted.min() != counted.max()


def units_vs_features(model: CharRNN, d: Dictionary, text: str, shifts: int = CHANCE_SHIFTS, seed: int = 0,
                      max_chars: int = MAX_COMPARE_CHARS) -> list[dict]:
    """For every hypothesis that varies on the text (its first `max_chars` characters): the best unit
    of every layer's h and c, {layer, state, unit, score, direction, chance}, and the best feature,
    {feature, score, direction, chance}, and the best unit of the layer and state the dictionary reads
    (unit_same_layer), each scored as probes.score_units scores (max(AUROC, 1 - AUROC)
    or |corr|) with chance = the best score any unit (or feature) reaches against the labels shifted
    by the same offsets; evidence (probes.evidence) and evidence_text as Neuron search shows them;
    winner: 'feature', 'unit' or 'tie' (scores within 0.001)."""
    check_fits(d, model)
    text = text[:max_chars]
    tr = trace(model, text, gates=False)
    acts = feature_acts(model, d, text)  # (T, d_sae)
    rows = []
    for name, fn in HYPOTHESES.items():
        labels = np.asarray(fn(text), dtype=np.float64)
        mask = hypothesis_mask(name, text)
        if not _varies(labels, mask):
            continue
        units = rank_units(tr, labels, mask, kinds=("h", "c"), shifts=shifts, seed=seed)
        feats = score_units(acts, labels, mask, shifts=shifts, seed=seed)
        feats = feats.sort_values("score", ascending=False, na_position="last", kind="stable")
        u, f = units.iloc[0], feats.iloc[0]
        same = units[(units.layer == d.layer) & (units.kind == d.state)].iloc[0]  # the units the dictionary reads
        ev = evidence(labels, mask)
        n = int(len(labels) if mask is None else np.asarray(mask).sum())
        offsets = shift_offsets(n, shifts, seed) if shifts > 0 else np.zeros(0, dtype=np.int64)
        apart = int(np.minimum(offsets, n - offsets).min()) if len(offsets) else 0
        unit_chance = float(units["chance"].max()) if "chance" in units else float("nan")
        feat_chance = float(feats["chance"].max()) if "chance" in feats else float("nan")
        us, fs = float(u.score), float(f.score)
        winner = "tie" if abs(us - fs) <= 1e-3 else ("feature" if fs > us else "unit")
        rows.append({
            "hypothesis": name,
            "unit": {"layer": int(u.layer), "state": str(u.kind), "unit": int(u.unit), "score": us,
                     "direction": str(u.direction), "chance": unit_chance},
            "unit_same_layer": {"layer": int(same.layer), "state": str(same.kind), "unit": int(same.unit),
                                "score": float(same.score), "direction": str(same.direction)},
            "feature": {"feature": int(f.unit), "score": fs, "direction": str(f.direction), "chance": feat_chance},
            "winner": winner, "evidence": ev, "chance": unit_chance,
            "evidence_text": evidence_text(ev, unit_chance, len(offsets), apart), "chars": len(text),
        })
    return rows


def logit_effect(model: CharRNN, d: Dictionary, i: int) -> np.ndarray:
    """(V,) W_dec[i] @ head.weight.T: how adding the feature's decoder direction to the top layer's h
    moves each character's logit. Only for a dictionary over the top layer's h (the head reads it)."""
    check_fits(d, model)
    i = _feature_index(d, i)
    if d.state != "h" or d.layer != model.config.num_layers - 1:
        raise ConfigError("the logit effect is defined for a dictionary over the top layer's h, which the "
                          f"output head reads; this one reads layer {d.layer}'s {d.state}")
    W = model.head.weight.detach().to("cpu", torch.float64).numpy()  # (V, H)
    return d.W_dec[i].astype(np.float64) @ W.T


def loadings(d: Dictionary, i: int, top: int = 10) -> list[tuple[int, float]]:
    """The units feature i's decoder direction loads on most: (unit, weight), largest |weight| first."""
    i = _feature_index(d, i)
    row = d.W_dec[i]
    order = np.argsort(-np.abs(row), kind="stable")[:max(0, int(top))]
    return [(int(u), float(row[u])) for u in order]
