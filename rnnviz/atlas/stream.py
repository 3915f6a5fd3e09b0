"""The model run over the corpus in chunks, state carried, recomputing only what the atlas keeps (c, f, z)."""
from __future__ import annotations

import torch

from ..errors import RnnvizError
from ..scan import linear_scan
from ..trace import _layer_params, _run_layer, _shifted_addmm_
from .stats import _series_name


class Cancelled(RnnvizError):
    """The build was stopped by its stop event; nothing was cached."""

def _gate_rows(k: int, x: torch.Tensor, h: torch.Tensor, h0: torch.Tensor, b, w_ih, w_hh,
               table: torch.Tensor | None, ids: torch.Tensor | None) -> torch.Tensor:
    """Pre-activation of gate block k for every step, as trace._internals computes it."""
    T, H = h.shape
    z = torch.empty(T, H, dtype=h.dtype, device=h.device)
    if table is not None:
        torch.index_select(table[k], 0, ids, out=z)
    else:
        torch.addmm(b[k], x, w_ih[k].t(), out=z)
    return _shifted_addmm_(z, h0, h, w_hh[k])


def _layer_extras(cell: str, x: torch.Tensor, h: torch.Tensor, state, params, ids=None) -> dict:
    """What the atlas needs beyond h: c and f for an LSTM (no o), z for a GRU; trace's arithmetic."""
    if cell == "rnn":
        return {}
    w_ih, w_hh, b_ih, b_hh = params
    T, H = h.shape
    G = 4 if cell == "lstm" else 3
    h0 = (state[0] if cell == "lstm" else state)[0]
    b = (b_ih + (torch.cat([b_hh[:2 * H], torch.zeros_like(b_hh[:H])]) if cell == "gru" else b_hh)).view(G, H)
    w_ih, w_hh = w_ih.view(G, H, -1), w_hh.view(G, H, H)
    table = torch.baddbmm(b[:, None], x.expand(G, *x.shape), w_ih.transpose(1, 2)) if ids is not None else None
    if cell == "gru":
        return {"z": _gate_rows(1, x, h, h0, b, w_ih, w_hh, table, ids).sigmoid_()}
    i = _gate_rows(0, x, h, h0, b, w_ih, w_hh, table, ids).sigmoid_()
    f = _gate_rows(1, x, h, h0, b, w_ih, w_hh, table, ids).sigmoid_()
    g = _gate_rows(2, x, h, h0, b, w_ih, w_hh, table, ids).tanh_()
    c = i.mul_(g)
    linear_scan(f, c, state[1][0, 0], out=c)
    return {"c": c, "f": f}

def _stream(model, text, chunk, stop_event, report, series, gate, gate_sum) -> None:
    cell, L = model.cell, model.config.num_layers
    T = len(text)
    was_training = model.training
    model.eval()
    try:
        ids_t = torch.from_numpy(model.vocab.encode(text)).to(model.device)
        state = model.init_state(1)
        states = [(state[0][l:l + 1], state[1][l:l + 1]) if cell == "lstm" else state[l:l + 1] for l in range(L)]
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            x = model.embed(ids_t[s:e])
            for l in range(L):
                if stop_event is not None and stop_event.is_set():
                    raise Cancelled("the atlas build was cancelled; nothing was cached")
                params = _layer_params(model, l)
                h, new_state = _run_layer(cell, x, states[l], params)
                first = l == 0
                extra = _layer_extras(cell, model.embed.weight if first else x, h, states[l], params,
                                      ids=ids_t[s:e] if first else None)
                series[_series_name(l, "h")].add(h, s, chunk)
                if cell == "lstm":
                    series[_series_name(l, "c")].add(extra["c"], s, chunk)
                if gate:
                    gate_sum[l] += extra[gate].sum(0, dtype=torch.float64).cpu().numpy()
                states[l] = new_state
                x = h
            report(done=e, total=T, message=f"atlas: {e:,} of {T:,} characters")
    finally:
        model.train(was_training)
