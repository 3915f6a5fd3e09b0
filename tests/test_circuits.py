"""Circuits (issue 27) against the step-by-step numpy cell of tests/reference.py, in float64.

Every exact figure (ablation, edges, intervention, the memory path's ablations) is compared with
reference.edited_forward, which sets stored values after a layer's step with the issue's definition;
gradient × value with a central finite difference of that reference; the cell path and the window
method with their definitions rebuilt from reference values.
"""
import json

import numpy as np
import pytest
import torch

import reference as ref
from rnnviz import checkpoint, circuits as C
from rnnviz.cli import main as cli_main
from rnnviz.model import build

TEXT = "def f(x):\n    return 'ab' + x  # (x)\nprint('hello, world')\n"
CHARS = sorted(set(TEXT) - {"z"})  # 'z' stays unseen


def tiny(cell, layers, hidden=5, seed=0):
    m = build(CHARS, cell=cell, hidden_size=hidden, num_layers=layers, embed_size=4, seed=seed).double().eval()
    with torch.no_grad():  # larger recurrent weights: effects that travel, and saturate, as in a trained model
        for l in range(layers):
            m.layer_weights(l)["weight_hh"].mul_(3.0)
    return m


def logp_ref(model, text, t, char, edits=()):
    """log p(char) at t, and the stored values, from the reference with `edits` set."""
    ids = model.vocab.encode(text[:t + 1])
    layers, logits = ref.edited_forward(model.state_dict(), model.cell, model.config.num_layers, ids, edits)
    return ref.log_softmax(logits[t])[model.vocab.index[char]], layers


CASES = [("lstm", 1), ("lstm", 2), ("gru", 1), ("gru", 2), ("rnn", 1), ("rnn", 2)]


@pytest.mark.parametrize("cell,layers", CASES)
def test_ablation_is_the_reference_rerun_with_the_value_zeroed(cell, layers):
    m = tiny(cell, layers)
    t = 30
    ch = TEXT[t + 1]
    states = ("h", "c") if cell == "lstm" else ("h",)
    nodes = [(l, st, u, p) for p in (0, 7, 22, 29, 30) for l in range(layers) for st in states for u in range(5)]
    got = C.ablate(m, TEXT, t, ch, nodes)
    base, _ = logp_ref(m, TEXT, t, ch)
    want = np.array([logp_ref(m, TEXT, t, ch, [(l, st, u, p, 0.0)])[0] - base for (l, st, u, p) in nodes])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    assert np.abs(want).max() > 1e-3  # the nodes matter: the comparison is not of zeros
    if cell == "lstm":  # zeroing c at t changes nothing (nothing reads it before the target); h at t does
        at_t = [i for i, n in enumerate(nodes) if n[3] == t]
        assert all(got[i] == 0 for i in at_t if nodes[i][1] == "c")
        assert any(abs(got[i]) > 1e-3 for i in at_t if nodes[i][1] == "h")


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 2), ("rnn", 1)])
def test_gradient_x_value_is_the_finite_difference_of_the_reference(cell, layers):
    m = tiny(cell, layers)
    t = 25
    ch = TEXT[t + 1]
    circ = C.circuit(m, TEXT, t, back=12, max_nodes=12, method=C.GRAD_X_VALUE)
    eps = 1e-6
    for n in circ.nodes:
        up, _ = logp_ref(m, TEXT, t, ch, [(n.layer, n.state, n.unit, n.pos, n.value + eps)])
        down, _ = logp_ref(m, TEXT, t, ch, [(n.layer, n.state, n.unit, n.pos, n.value - eps)])
        assert n.attribution == pytest.approx(-n.value * (up - down) / (2 * eps), rel=1e-6, abs=1e-9)
    assert {n.state for n in circ.nodes} == ({"h", "c"} if cell == "lstm" else {"h"})


def test_the_cell_path_is_exact_along_the_belt_and_first_order_in_h():
    """A c node's estimate rebuilt from reference values: c_k's change -v f_(s+1)...f_k with the gates held,
    h_k's change o_k (tanh(c_k + Δc_k) - tanh c_k), each weighted by a finite difference of log p by h_k."""
    m = tiny("lstm", 2)
    t, ch = 25, TEXT[26]
    circ = C.circuit(m, TEXT, t, back=10, max_nodes=40, method=C.CELL_PATH)
    ids = m.vocab.encode(TEXT[:t + 1])
    gates = ref.forward(m.state_dict(), "lstm", 2, ids)[0]
    eps = 1e-6
    checked = 0
    for n in circ.nodes:
        if n.state != "c":
            continue
        g, want = gates[n.layer], 0.0
        dc = -g["c"][n.pos, n.unit]
        for k in range(n.pos + 1, t + 1):
            dc *= g["f"][k, n.unit]
            dh = g["o"][k, n.unit] * (np.tanh(g["c"][k, n.unit] + dc) - np.tanh(g["c"][k, n.unit]))
            h = g["h"][k, n.unit]
            up, _ = logp_ref(m, TEXT, t, ch, [(n.layer, "h", n.unit, k, h + eps)])
            down, _ = logp_ref(m, TEXT, t, ch, [(n.layer, "h", n.unit, k, h - eps)])
            want += (up - down) / (2 * eps) * dh
        assert n.attribution == pytest.approx(want, rel=1e-5, abs=1e-9)
        checked += 1
    assert checked >= 5
    gxv = {n.key: n.attribution for n in C.circuit(m, TEXT, t, back=10, max_nodes=40, method=C.GRAD_X_VALUE).nodes}
    for n in circ.nodes:  # h nodes: gradient × value, unchanged
        if n.state == "h" and n.key in gxv:
            assert n.attribution == pytest.approx(gxv[n.key], rel=1e-9, abs=1e-12)


def _future_logits(model, text, t, e, states):
    """Logits at t from the stored (h, c) of every layer at e, via the reference cells' initial states."""
    sd, cell, L = model.state_dict(), model.cell, model.config.num_layers
    x = sd["embed.weight"].double().numpy()[model.vocab.encode(text[e + 1:t + 1])]
    for l in range(L):
        h0, c0 = states[l]
        x = (ref.lstm_layer(x, *ref.weights(sd, l), h0=h0, c0=c0) if cell == "lstm"
             else ref.LAYER[cell](x, *ref.weights(sd, l), h0=h0))["h"]
    return x[-1] @ sd["head.weight"].double().numpy().T + sd["head.bias"].double().numpy()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_window_method_is_exact_in_the_window_then_linear_in_the_logits(cell, monkeypatch):
    monkeypatch.setattr(C, "WINDOW_STEPS", 3)
    monkeypatch.setattr(C, "LOGIT_MASS", 2.0)  # every character's logit moves: the softmax is then exact
    monkeypatch.setattr(C, "LOGIT_ROWS", len(CHARS) + 1)
    m = tiny(cell, 2)
    t = 28
    ch = TEXT[t + 1]
    c_id = m.vocab.index[ch]
    circ = C.circuit(m, TEXT, t, back=14, max_nodes=80, method=C.WINDOW)
    base, normal = logp_ref(m, TEXT, t, ch)
    far = 0
    for n in circ.nodes:
        if t - n.pos <= 3:  # the window reaches the target: the rerun itself
            assert n.attribution == pytest.approx(n.ablation, abs=1e-10)
            continue
        e = n.pos + 3
        _, zeroed = logp_ref(m, TEXT, t, ch, [(n.layer, n.state, n.unit, n.pos, 0.0)])
        s0 = [(normal[l]["h"][e], normal[l]["c"][e]) for l in range(2)]
        d = [(zeroed[l]["h"][e] - normal[l]["h"][e], zeroed[l]["c"][e] - normal[l]["c"][e]) for l in range(2)]
        eps = 1e-6
        z = _future_logits(m, TEXT, t, e, s0)
        dz = (_future_logits(m, TEXT, t, e, [(h + eps * dh, c + eps * dc) for (h, c), (dh, dc) in zip(s0, d)])
              - _future_logits(m, TEXT, t, e, [(h - eps * dh, c - eps * dc) for (h, c), (dh, dc) in zip(s0, d)])
              ) / (2 * eps)
        want = ref.log_softmax(z + dz)[c_id] - ref.log_softmax(z)[c_id]
        assert n.attribution == pytest.approx(want, rel=1e-5, abs=1e-9)
        far += 1
    assert far >= 5


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_the_graph_its_figures_and_edges_follow_their_definitions(cell):
    m = tiny(cell, 2)
    t = 30
    ch = TEXT[t + 1]
    circ = C.circuit(m, TEXT, t, back=15, max_nodes=20)
    base, normal = logp_ref(m, TEXT, t, ch)
    assert circ.target == {"pos": t, "char": ch, "logp": pytest.approx(base, abs=1e-10)}
    assert len(circ.nodes) == 20 and len({n.key for n in circ.nodes}) == 20
    att = np.array([abs(n.attribution) for n in circ.nodes])
    assert np.all(np.diff(att) <= 0)  # ordered by |attribution|
    assert all(t - 15 < n.pos <= t for n in circ.nodes)
    zeroed = {}
    for n in circ.nodes:
        assert n.value == pytest.approx(normal[n.layer][n.state][n.pos, n.unit], abs=1e-12)
        lp, zeroed[n.key] = logp_ref(m, TEXT, t, ch, [(n.layer, n.state, n.unit, n.pos, 0.0)])
        assert n.ablation == pytest.approx(lp - base, abs=1e-10)
    a = np.array([n.attribution for n in circ.nodes])
    b = np.array([n.ablation for n in circ.nodes])
    assert circ.r2 == pytest.approx(np.corrcoef(a, b)[0, 1] ** 2)
    assert circ.slope == pytest.approx(a @ b / (a @ a))
    assert 0 < circ.coverage < 1
    # edges: dst's value minus its value with src zeroed, kept at >= 10% of |dst|, the 3 strongest into each
    strong = {}
    for j, dst in enumerate(circ.nodes):
        for i, src in enumerate(circ.nodes):
            w = (normal[dst.layer][dst.state][dst.pos, dst.unit]
                 - zeroed[src.key][dst.layer][dst.state][dst.pos, dst.unit])
            later = src.pos < dst.pos or (src.pos == dst.pos and src.layer < dst.layer)
            if later and w != 0 and abs(w) >= 0.1 * abs(dst.value):
                strong.setdefault(j, []).append((i, w))
            elif not later and i != j:
                assert w == 0  # nothing flows backwards in time, nor down a layer, nor between h and c at one step
    want = {(i, j): w for j, ws in strong.items() for i, w in sorted(ws, key=lambda p: -abs(p[1]))[:3]}
    got = {(e.src, e.dst): e.weight for e in circ.edges}
    assert got.keys() == want.keys() and want
    for k, w in want.items():
        assert got[k] == pytest.approx(w, abs=1e-10)


def test_intervene_sets_a_unit_over_a_span_as_the_reference_does():
    m = tiny("lstm", 2)
    t, ch = 30, TEXT[31]
    edits = [(1, "c", 2, range(20, 25), 1.5), (0, "h", 4, [28], -0.5)]
    got = C.intervene(m, TEXT, t, ch, edits)
    flat = [(l, st, u, p, v) for (l, st, u, ps, v) in edits for p in ps]
    base, _ = logp_ref(m, TEXT, t, ch)
    after, _ = logp_ref(m, TEXT, t, ch, flat)
    assert got["logp_before"] == pytest.approx(base, abs=1e-10)
    assert got["logp_after"] == pytest.approx(after, abs=1e-10)
    assert abs(after - base) > 1e-3
    ids = m.vocab.encode(TEXT[:t + 1])
    _, logits = ref.edited_forward(m.state_dict(), "lstm", 2, ids, flat)
    np.testing.assert_allclose(got["probs_after"], np.exp(ref.log_softmax(logits[t])), atol=1e-12)
    assert got["probs_before"].sum() == pytest.approx(1.0)


def test_memory_path_and_story_state_the_measured_ablations():
    m = tiny("lstm", 2)
    t, ch = 35, TEXT[36]
    mp = C.memory_path(m, TEXT, t, ch, 1, 3, 22)
    base, _ = logp_ref(m, TEXT, t, ch)
    c_abl = logp_ref(m, TEXT, t, ch, [(1, "c", 3, 22, 0.0)])[0] - base
    h_abl = logp_ref(m, TEXT, t, ch, [(1, "h", 3, 22, 0.0)])[0] - base
    assert mp["c_ablation"] == pytest.approx(c_abl, abs=1e-10)
    assert mp["h_ablation"] == pytest.approx(h_abl, abs=1e-10)
    assert mp["carrier"] == ("c" if abs(c_abl) >= abs(h_abl) else "h")
    assert mp["distance"] == 13
    for x in (c_abl, h_abl):
        assert (f"{abs(x):.2f}" if abs(x) >= 0.01 else "under 0.01") in mp["words"]
    circ = C.circuit(m, TEXT, t, back=20, max_nodes=15)
    top = max(circ.nodes, key=lambda n: abs(n.ablation))
    words = C.story(m, circ, TEXT)
    assert f"{top.state}{top.unit} of layer {top.layer}" in words and f"{abs(top.ablation):.2f}" in words
    with pytest.raises(C.CircuitError, match="only an LSTM"):
        C.memory_path(tiny("gru", 1), TEXT, t, ch, 0, 0, 20)


def test_closing_quote_target_finds_a_one_line_string_of_the_asked_length():
    text = "x = 'ab'\n# 'a comment, not a string'\ny = \"\"\"doc\"\"\"\nz = f('a long string here')\n"
    q, t = C.closing_quote_target(text, min_gap=10, max_gap=30)
    assert text[q] == "'" and text[t + 1] == "'" and text[q + 1:t + 1] == "a long string here"
    with pytest.raises(C.TextError):
        C.closing_quote_target("x = 'ab'\n", min_gap=10)


def test_bad_input_gets_a_clear_message():
    m = tiny("lstm", 1)
    for kwargs, words in (({"t": 500}, "from 0 to"), ({"t": -1}, "from 0 to"), ({"t": 5, "char": "z"}, "never saw"),
                          ({"t": 5, "char": "ab"}, "exactly one"), ({"t": 5, "back": 0}, "back"), ({"t": 5, "back": 401}, "back"),
                          ({"t": 5, "max_nodes": 0}, "max_nodes"), ({"t": 5, "method": "magic"}, "method")):
        with pytest.raises(C.CircuitError, match=words):
            C.circuit(m, TEXT, **kwargs)
    with pytest.raises(C.CircuitError, match="position"):
        C.ablate(m, TEXT, 5, "f", [(0, "h", 0, 6)])
    with pytest.raises(C.CircuitError, match="unit"):
        C.intervene(m, TEXT, 5, "f", [(0, "h", 9, [3], 1.0)])
    with pytest.raises(C.CircuitError, match="finite"):
        C.intervene(m, TEXT, 5, "f", [(0, "c", 1, [3], float("nan"))])


def test_the_cli_prints_the_circuit_as_json(tmp_path, capsys):
    m = build(CHARS, cell="lstm", hidden_size=6, num_layers=2, embed_size=4, seed=1).eval()
    checkpoint.save(m, tmp_path / "m")
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    args = ["circuit", str(tmp_path / "m"), "--text", str(tmp_path / "t.txt"), "--pos", "30", "--back", "12",
            "--nodes", "9", "--json"]
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"target", "nodes", "edges", "coverage", "r2", "slope", "method"}
    assert set(out["target"]) == {"pos", "char", "logp"} and out["target"]["char"] == TEXT[31]
    assert len(out["nodes"]) == 9
    assert set(out["nodes"][0]) == {"layer", "state", "unit", "pos", "value", "attribution", "ablation"}
    assert all(set(e) == {"src", "dst", "weight"} for e in out["edges"])
    m2, _ = checkpoint.load(tmp_path / "m")
    assert out == json.loads(json.dumps(C.circuit(m2, TEXT, 30, back=12, max_nodes=9).to_json()))  # deterministic
    assert cli_main(args[:-1]) == 0  # the table, and the story with its measured figures
    text_out = capsys.readouterr().out
    assert C.story(m2, C.circuit(m2, TEXT, 30, back=12, max_nodes=9), TEXT) in text_out
    assert "r² " in text_out and ("L1 " in text_out or "L0 " in text_out)
    assert cli_main(args[:4] + ["--pos", "999", "--json"]) == 1
    assert "error:" in capsys.readouterr().err
    assert cli_main(args[:4] + ["--pos", "3", "--char", "z"]) == 1
    assert "never saw" in capsys.readouterr().err


def test_cell_path_softmax_moves_every_logit_by_the_cell_path_then_takes_the_exact_softmax(monkeypatch):
    monkeypatch.setattr(C, "LOGIT_MASS", 2.0)  # every character's logit moves
    monkeypatch.setattr(C, "LOGIT_ROWS", len(CHARS) + 1)
    m = tiny("lstm", 2)
    t, ch = 25, TEXT[26]
    c_id = m.vocab.index[ch]
    circ = C.circuit(m, TEXT, t, back=8, max_nodes=30, method=C.CELL_PATH_SOFTMAX)
    ids = m.vocab.encode(TEXT[:t + 1])
    gates = ref.forward(m.state_dict(), "lstm", 2, ids)[0]
    eps = 1e-6

    def dz_dh(layer, unit, k):  # (V,) ∂logits/∂h_k of one unit, by a central difference of the reference
        h = gates[layer]["h"][k, unit]
        z = [ref.edited_forward(m.state_dict(), "lstm", 2, ids, [(layer, "h", unit, k, h + d)])[1][t]
             for d in (eps, -eps)]
        return (z[0] - z[1]) / (2 * eps)
    z0 = ref.forward(m.state_dict(), "lstm", 2, ids)[1][t]
    kinds = set()
    for n in circ.nodes:
        g = gates[n.layer]
        if n.state == "h":
            dz = -n.value * dz_dh(n.layer, n.unit, n.pos)
        else:
            dz, dc = 0.0, -g["c"][n.pos, n.unit]
            for k in range(n.pos + 1, t + 1):
                dc *= g["f"][k, n.unit]
                dz = dz + dz_dh(n.layer, n.unit, k) * g["o"][k, n.unit] * (
                    np.tanh(g["c"][k, n.unit] + dc) - np.tanh(g["c"][k, n.unit]))
        want = ref.log_softmax(z0 + dz)[c_id] - ref.log_softmax(z0)[c_id]
        assert n.attribution == pytest.approx(want, rel=1e-5, abs=1e-9)
        kinds.add(n.state)
    assert kinds == {"h", "c"}


@pytest.mark.slow
def test_the_benchmark_runs_at_a_tiny_size():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench" / "circuits.py"), "--quick", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for method in C.METHODS:
        assert f"circuit r², worst of 1 [{method}]" in out.stdout
        assert f"circuit top-10 |ablation| in the graph, worst of 1 [{method}]" in out.stdout
