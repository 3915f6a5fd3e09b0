"""One exact cell step (rnnviz.anatomy) against the step-by-step numpy cell of tests/reference.py.

Every value, every pre-activation part and every contributor is recomputed here, in float64, from the
model's state dict by PyTorch's documented names and gate order; nothing is read back from rnnviz.
"""
import json

import numpy as np
import pytest
import torch

import reference as R
from rnnviz import anatomy, checkpoint
from rnnviz.cli import main
from rnnviz.errors import ConfigError, TextError
from rnnviz.model import build
from rnnviz.trace import trace
from rnnviz.vocab import Vocab

TEXT = 'x = "a b" + y\n'
READ = TEXT + "\u00e9"  # a character the model never saw: layer 0 reads the unknown id, as trace does
GATE_NAMES = {"lstm": "ifgo", "gru": "rzn", "rnn": ("pre",)}


def tiny(cell, layers, seed=3):
    return build(Vocab.from_text(TEXT), cell=cell, hidden_size=6, num_layers=layers, embed_size=4, seed=seed)


def expected(model, ids, pos, layer, unit):
    """values, preact parts and every recurrent term of one unit's step, from the reference cell."""
    sd, cell = model.state_dict(), model.cell
    outs, _ = R.forward(sd, cell, model.config.num_layers, ids)
    W_ih, W_hh, b_ih, b_hh = R.weights(sd, layer)
    H = W_hh.shape[1]
    x = sd["embed.weight"].double().numpy()[ids[pos]] if layer == 0 else outs[layer - 1]["h"][pos]
    out = outs[layer]
    h_prev = out["h"][pos - 1] if pos else np.zeros(H)
    names = GATE_NAMES[cell]
    rows = {g: k * H + unit for k, g in enumerate(names)}
    parts = {g: {"input": W_ih[r] @ x, "recurrent": W_hh[r] @ h_prev, "bias": b_ih[r] + b_hh[r]}
             for g, r in rows.items()}
    terms = {g: W_hh[r] * h_prev for g, r in rows.items()}
    u = unit
    if cell == "lstm":
        c_prev = out["c"][pos - 1, u] if pos else 0.0
        i, f, g, o, c = (out[k][pos, u] for k in "ifgoc")
        values = dict(h_prev=h_prev[u], c_prev=c_prev, i=i, f=f, g=g, o=o, f_c_prev=f * c_prev, i_g=i * g, c=c,
                      tanh_c=np.tanh(c), h=out["h"][pos, u])
        pre = {k: W_ih[r] @ x + b_ih[r] + W_hh[r] @ h_prev + b_hh[r] for k, r in rows.items()}
    elif cell == "gru":
        r, z, n = (out[k][pos, u] for k in "rzn")
        hn = W_hh[rows["n"]] @ h_prev + b_hh[rows["n"]]  # PyTorch: r scales W_hn h + b_hn
        parts["n"] = {"input": W_ih[rows["n"]] @ x, "recurrent": r * (W_hh[rows["n"]] @ h_prev),
                      "bias": b_ih[rows["n"]] + r * b_hh[rows["n"]]}
        terms["n"] = r * terms["n"]
        values = dict(h_prev=h_prev[u], r=r, z=z, n=n, r_hn=r * hn, one_minus_z_n=(1 - z) * n, z_h_prev=z * h_prev[u],
                      h=out["h"][pos, u])
        pre = {k: W_ih[rows[k]] @ x + b_ih[rows[k]] + W_hh[rows[k]] @ h_prev + b_hh[rows[k]] for k in "rz"}
        pre["n"] = W_ih[rows["n"]] @ x + b_ih[rows["n"]] + r * hn
        assert np.isclose(np.tanh(pre["n"]), n)
    else:
        values = dict(h_prev=h_prev[u], pre=out["pre"][pos, u], h=out["h"][pos, u])
        pre = {"pre": out["pre"][pos, u]}
    return values, parts, pre, terms


def brute_force_top(terms, top):
    """Every unit j with a non-zero term, sorted by |term| (largest first, then by j), cut at top."""
    ranked = sorted(((j, float(v)) for j, v in enumerate(terms) if v != 0), key=lambda p: (-abs(p[1]), p[0]))
    return ranked[:top]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_every_quantity_equals_the_reference_cell(cell, layers):
    torch.manual_seed(0)
    model = tiny(cell, layers)
    tr = trace(model, READ)
    assert tr.ids[-1] == 0  # the unknown character is read as the unknown id
    T = len(READ)
    for pos in (0, 1, 5, T - 1):
        for layer in range(layers):
            for unit in (0, 5):
                s = anatomy.step(model, tr, pos, layer, unit, top=3)
                values, parts, pre, terms = expected(model, tr.ids, pos, layer, unit)
                assert (s.cell, s.layer, s.unit, s.pos, s.char) == (cell, layer, unit, pos, READ[pos])
                assert list(s.values) == list(anatomy.VALUE_NAMES[cell])
                for k, v in values.items():
                    assert s.values[k] == pytest.approx(v, abs=1e-5), (pos, layer, unit, k)
                assert list(s.preact) == list(GATE_NAMES[cell])
                for g in s.preact:
                    for part in anatomy.PARTS:
                        assert s.preact[g][part] == pytest.approx(parts[g][part], abs=1e-5), (pos, g, part)
                    # the three parts add up to the pre-activation, computed here without splitting it
                    assert s.total(g) == pytest.approx(pre[g], abs=1e-5), (pos, layer, g)
                    want = brute_force_top(terms[g], 3)
                    assert [j for j, _ in s.contributors[g]] == [j for j, _ in want], (pos, g)
                    np.testing.assert_allclose([v for _, v in s.contributors[g]], [v for _, v in want], atol=1e-6)
                # the step's own arithmetic closes exactly, and agrees with what trace computed
                v = s.values
                if cell == "lstm":
                    assert v["c"] == pytest.approx(v["f_c_prev"] + v["i_g"], abs=1e-12)
                    assert v["h"] == pytest.approx(v["o"] * v["tanh_c"], abs=1e-12)
                    for k in "ifgoc":
                        assert v[k] == pytest.approx(float(tr.get(layer, k)[pos, unit]), abs=1e-5)
                elif cell == "gru":
                    assert v["h"] == pytest.approx(v["one_minus_z_n"] + v["z_h_prev"], abs=1e-12)
                    assert s.preact["n"]["recurrent"] + s.preact["n"]["bias"] == pytest.approx(
                        v["r_hn"] + float(model.state_dict()[f"rnn.bias_ih_l{layer}"][2 * 6 + unit]), abs=1e-6)
                assert v["h"] == pytest.approx(float(tr.get(layer, "h")[pos, unit]), abs=1e-5)
                if pos == 0:  # the zero initial state: nothing comes from h_{t-1}
                    assert v["h_prev"] == 0 and all(p["recurrent"] == 0 for p in s.preact.values())
                    assert all(lst == [] for lst in s.contributors.values())


def test_contributors_cover_every_unit_when_top_is_large_and_sum_to_the_recurrent_part():
    model = tiny("gru", 2)
    tr = trace(model, TEXT)
    s = anatomy.step(model, tr, 7, 1, 2, top=100)
    for g, lst in s.contributors.items():
        assert len(lst) <= 6 and len({j for j, _ in lst}) == len(lst)
        assert sum(v for _, v in lst) == pytest.approx(s.preact[g]["recurrent"], abs=1e-9), g
    assert all(lst == [] for lst in anatomy.step(model, tr, 7, 1, 2, top=0).contributors.values())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_cell_step_reads_the_text_from_its_first_character(cell):
    model = tiny(cell, 2)
    tr = trace(model, TEXT)
    for pos in (0, 4, len(TEXT) - 1):
        a, b = anatomy.cell_step(model, TEXT, pos, 1, 3), anatomy.step(model, tr, pos, 1, 3)
        for k in a.values:
            assert a.values[k] == pytest.approx(b.values[k], abs=1e-6)
        gate = GATE_NAMES[cell][0]
        assert [j for j, _ in a.contributors[gate]] == [j for j, _ in b.contributors[gate]]
        np.testing.assert_allclose([v for _, v in a.contributors[gate]], [v for _, v in b.contributors[gate]],
                                   atol=1e-6)
    one = anatomy.cell_step(model, "y", 0, 0, 1)  # a 1-character text
    values, _, _, _ = expected(model, model.vocab.encode("y"), 0, 0, 1)
    assert one.char == "y" and one.values["h"] == pytest.approx(values["h"], abs=1e-6)


def test_bad_inputs_name_the_valid_range():
    model = tiny("lstm", 2)
    tr = trace(model, TEXT)
    T = len(TEXT)
    for kwargs, words in ((dict(pos=T), f"pos must be a whole number from 0 to {T - 1}"),
                          (dict(pos=-1), "pos must be"), (dict(layer=2), "layer must be a whole number from 0 to 1"),
                          (dict(unit=6), "unit must be a whole number from 0 to 5"), (dict(pos=1.5), "pos must be"),
                          (dict(top=-1), "top must be")):
        args = dict(pos=0, layer=0, unit=0, top=5) | kwargs
        with pytest.raises(ConfigError, match=words):
            anatomy.step(model, tr, **args)
        if "top" not in kwargs:
            with pytest.raises(ConfigError, match=words):
                anatomy.cell_step(model, TEXT, **args)
    with pytest.raises(ConfigError, match="this trace is of a GRU"):
        anatomy.step(model, trace(tiny("gru", 2), TEXT), 0, 0, 0)
    with pytest.raises(TextError):
        anatomy.cell_step(model, "", 0, 0, 0)


def test_to_json_has_the_issue_fields():
    model = tiny("lstm", 1)
    s = anatomy.cell_step(model, TEXT, 6, 0, 2, top=2)
    j = json.loads(json.dumps(s.to_json()))
    # numpy integers (a slider's or an argmax's) give the same plain JSON
    assert anatomy.cell_step(model, TEXT, np.int64(6), np.int64(0), np.int64(2), top=2).to_json() == j
    assert set(j) == {"cell", "layer", "unit", "pos", "char", "values", "preact", "contributors"}
    assert {"h_prev", "c_prev", "i", "f", "g", "o", "f_c_prev", "i_g", "c", "tanh_c", "h"} <= set(j["values"])
    assert set(j["preact"]) == set("ifgo") and all(set(p) == set(anatomy.PARTS) for p in j["preact"].values())
    assert all(len(lst) == 2 and set(lst[0]) == {"unit", "value"} for lst in j["contributors"].values())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cell")
    out = {}
    for cell in ("lstm", "gru"):
        model = tiny(cell, 2, seed=5)
        checkpoint.save(model, folder / cell)
        out[cell] = (folder / cell, model)
    (folder / "t.txt").write_text(TEXT, encoding="utf-8")
    return folder, out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cli_prints_the_steps_json(saved, cell, capsys):
    folder, models = saved
    path, model = models[cell]
    pos = len(TEXT) - 1
    rc = main(["cell", str(path), "--text", str(folder / "t.txt"), "--pos", str(pos), "--layer", "1", "--unit", "4",
               "--json", "--top", "3"])
    assert rc == 0
    j = json.loads(capsys.readouterr().out)
    values, parts, pre, terms = expected(model, model.vocab.encode(TEXT), pos, 1, 4)
    assert (j["cell"], j["layer"], j["unit"], j["pos"], j["char"]) == (cell, 1, 4, pos, TEXT[pos])
    for k in ({"h_prev", "r", "z", "n", "h"} if cell == "gru" else values):
        assert j["values"][k] == pytest.approx(values[k], abs=1e-5)
    for g, p in j["preact"].items():
        assert sum(p.values()) == pytest.approx(pre[g], abs=1e-5)
        assert [c["unit"] for c in j["contributors"][g]] == [u for u, _ in brute_force_top(terms[g], 3)]


def test_cli_bad_input_is_one_line_and_a_nonzero_exit(saved, capsys):
    folder, models = saved
    path = str(models["lstm"][0])
    for extra, words in ((["--pos", "99"], "pos must be a whole number from 0 to 13"),
                         (["--pos", "0", "--unit", "6"], "unit must be a whole number from 0 to 5"),
                         (["--pos", "0", "--layer", "-1"], "layer must be a whole number from 0 to 1")):
        rc = main(["cell", path, "--text", str(folder / "t.txt"), "--layer", "0", "--unit", "0", "--json"] + extra)
        err = capsys.readouterr().err
        assert rc != 0 and words in err and len(err.strip().splitlines()) == 1, err
    rc = main(["cell", path, "--text", str(folder / "missing.txt"), "--pos", "0", "--layer", "0", "--unit", "0"])
    assert rc != 0 and len(capsys.readouterr().err.strip().splitlines()) == 1
