"""The elementwise linear recurrence c_t = a_t * c_{t-1} + b_t, solved without a per-step loop."""
from __future__ import annotations

import math

import torch


def linear_scan(a: torch.Tensor, b: torch.Tensor, c0: torch.Tensor | None = None,
                chunk: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """c_t = a_t * c_{t-1} + b_t for a, b of shape (T, H); returns c (T, H), in `out` if given (may be b).

    The rows split into blocks of `chunk` steps (default about sqrt(T)), and step k of every block
    is one strided (blocks, H) operation, so Python loops about 3 sqrt(T) times, not T times:
    (1) each block's map c_end = A * c_start + B, all blocks at once; (2) the state entering each
    block, one block after another; (3) the recurrence inside every block from its true start,
    which is the step-by-step arithmetic itself. Only products and sums appear (no division, no
    logarithms), so saturated gates (a = 0 or 1) are exact and nothing under- or overflows that
    the step-by-step loop would not.
    """
    T = a.shape[0]
    K = max(1, chunk or math.isqrt(T))
    c = torch.empty_like(b) if out is None else out
    # Rows k::K are step k of every block; only the last block can be short, so the blocks
    # that have a step k are always the first n.
    A, B = a[::K].clone(), b[::K].clone()  # (N, H)
    for k in range(1, K):
        n = len(a[k::K])
        A[:n].mul_(a[k::K])
        torch.addcmul(b[k::K], a[k::K], B[:n], out=B[:n])
    starts = torch.empty_like(A)  # (N, H)
    starts[0] = 0.0 if c0 is None else c0
    for j in range(1, len(A)):
        torch.addcmul(B[j - 1], A[j - 1], starts[j - 1], out=starts[j])
    # In place over b is safe: each step reads b only at the rows it writes.
    torch.addcmul(b[::K], a[::K], starts, out=c[::K])
    for k in range(1, K):
        n = len(a[k::K])
        torch.addcmul(b[k::K], a[k::K], c[k - 1::K][:n], out=c[k::K])
    return c
