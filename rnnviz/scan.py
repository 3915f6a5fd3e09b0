"""The elementwise linear recurrence c_t = a_t * c_{t-1} + b_t, solved without a per-step loop."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _within_chunks(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hillis-Steele scan along dim 1 of (N, K, H): A = prod of a, B = the scan from state 0."""
    a, b = a.clone(), b.clone()
    K, s = a.shape[1], 1
    while s < K:
        # Products and sums of the old values only: compute the right-hand sides first.
        nb = a[:, s:] * b[:, :-s]
        na = a[:, s:] * a[:, :-s]
        b[:, s:] += nb
        a[:, s:] = na
        s *= 2
    return a, b


def linear_scan(a: torch.Tensor, b: torch.Tensor, c0: torch.Tensor | None = None,
                chunk: int = 16) -> torch.Tensor:
    """c_t = a_t * c_{t-1} + b_t for a, b of shape (T, H); returns c of shape (T, H).

    Two levels: a log-depth scan inside chunks of `chunk` steps, then the same scan,
    recursively, over the chunk boundaries, then one broadcast. Only products and sums
    of the inputs appear (no division, no logarithms), so saturated gates (a = 0 or 1)
    are exact and nothing under- or overflows that the step-by-step loop would not.
    """
    T, H = a.shape
    if c0 is None:
        c0 = torch.zeros(H, dtype=a.dtype, device=a.device)
    if T <= chunk:
        A, B = _within_chunks(a[None], b[None])
        return A[0] * c0 + B[0]
    N = -(-T // chunk)
    pad = N * chunk - T
    a3 = F.pad(a, (0, 0, 0, pad), value=1.0).view(N, chunk, H)  # (N, K, H)
    b3 = F.pad(b, (0, 0, 0, pad)).view(N, chunk, H)
    A, B = _within_chunks(a3, b3)
    # State at the end of each chunk, then the state entering each chunk.
    ends = linear_scan(A[:, -1], B[:, -1], c0, chunk)  # (N, H)
    starts = torch.cat([c0[None], ends[:-1]])  # (N, H)
    return (A * starts[:, None] + B).reshape(N * chunk, H)[:T]
