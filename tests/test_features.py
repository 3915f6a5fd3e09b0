"""rnnviz.features against independent computations: the saved files read with safetensors + json and
encoded in numpy, the splices against a step-by-step rerun of tests/reference.py's cells."""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import reference as R
from rnnviz import checkpoint, cli
from rnnviz import features as F
from rnnviz.features import words
from rnnviz.corpora import quotes_task
from rnnviz.errors import ConfigError
from rnnviz.hypotheses import HYPOTHESES
from rnnviz.model import build

SMALL = dict(size=32, k=4, steps=120)


@pytest.fixture(scope="module")
def text():
    return quotes_task(3000, seed=1).text


def tiny(text, cell="lstm", hidden=8, layers=2, seed=0):
    return build(sorted(set(text)), cell, hidden, layers, 6, seed=seed)


@pytest.fixture(scope="module")
def lstm_dicts(text, tmp_path_factory):
    """A tiny 2-layer LSTM and a small dictionary per (layer, state), cached in one folder."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = tiny(text)
    cache = tmp_path_factory.mktemp("features")
    yield model, cache, {(l, s): F.load_or_train(model, text[:2000], "quotes", F.SAEConfig(layer=l, state=s, **SMALL),
                                                 cache)
                         for l in (0, 1) for s in ("h", "c")}
    torch.set_num_threads(before)


def from_files(folder):
    """cfg.json and the weights read with json and safetensors only (float64)."""
    cfg = json.loads((folder / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "sae_weights.safetensors")).items()}
    return cfg, w


def np_encode(x, cfg, w):
    """SAELens's TopK: the k largest pre-activations, then ReLU of their values; zeros elsewhere."""
    x = np.atleast_2d(x)
    pre = (x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x) @ w["W_enc"] + w["b_enc"]
    out = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1, kind="stable")[:, :cfg["k"]]
    rows = np.arange(len(pre))[:, None]
    out[rows, top] = np.maximum(pre[rows, top], 0.0)
    return out


def np_reconstruct(x, cfg, w):
    return np_encode(x, cfg, w) @ w["W_dec"] + w["b_dec"]


def ref_states(model, text, layer, kind):
    layers, logits = R.forward(model.state_dict(), model.cell, model.config.num_layers, model.vocab.encode(text))
    return layers[layer][kind], logits


@pytest.mark.slow  # trains the module's four dictionaries
def test_saved_folder_is_saelens_layout_with_unit_norm_decoder(lstm_dicts):
    model, _, dicts = lstm_dicts
    d = dicts[(1, "c")]
    cfg, w = from_files(d.path)
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["d_in"] == 8 and cfg["d_sae"] == 32
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["sae_lens_version"].startswith("6.") and cfg["metadata"]["hook_name"] == "rnn.layer1.c"
    assert cfg["layer"] == 1 and cfg["state"] == "c" and cfg["corpus"]["name"] == "quotes"
    assert cfg["model"]["cell"] == "lstm" and cfg["model"]["hidden_size"] == 8
    raw = load_file(str(d.path / "sae_weights.safetensors"))
    assert {k: (v.shape, v.dtype) for k, v in raw.items()} == {
        "W_enc": ((8, 32), np.float32), "b_enc": ((32,), np.float32), "W_dec": ((32, 8), np.float32),
        "b_dec": ((8,), np.float32)}
    np.testing.assert_allclose(np.linalg.norm(w["W_dec"], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("layer,kind", [(0, "h"), (1, "h"), (1, "c")])
def test_encoder_decoder_and_metrics_match_numpy_from_the_saved_files(lstm_dicts, text, layer, kind):
    model, _, dicts = lstm_dicts
    d = F.load(dicts[(layer, kind)].path)
    cfg, w = from_files(d.path)
    ev = text[2000:2600]
    x, logits = ref_states(model, ev, layer, kind)  # (T, H) float64, independent of rnnviz
    f = np_encode(x, cfg, w)
    np.testing.assert_allclose(d.encode(x), f, atol=1e-4)
    np.testing.assert_allclose(d.decode(f), f @ w["W_dec"] + w["b_dec"], atol=1e-5)
    xh = np_reconstruct(x, cfg, w)
    m = F.metrics(model, d, ev)
    assert m["fvu"] == pytest.approx(((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(), rel=1e-3)
    assert m["l0"] == pytest.approx((f > 0).sum(1).mean(), abs=1e-9)
    assert m["dead_fraction"] == pytest.approx(1 - (f > 0).any(0).mean(), abs=1e-9)
    ids = model.vocab.encode(ev)
    assert m["loss"] == pytest.approx(np.nanmean(R.next_char_loss(logits, ids)), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("cell,layer,kind", [("lstm", 1, "h"), ("lstm", 0, "c"), ("lstm", 1, "c"), ("gru", 0, "h"),
                                             ("rnn", 1, "h")])
def test_splices_equal_a_stepwise_rerun_with_the_state_replaced(text, tmp_path, cell, layer, kind, one_thread):
    model = tiny(text, cell)
    d = F.load_or_train(model, text[:1500], "quotes", F.SAEConfig(layer=layer, state=kind, **SMALL), tmp_path)
    cfg, w = from_files(d.path)
    ev = text[1500:1800]
    ids = model.vocab.encode(ev)
    sd, L = model.state_dict(), model.config.num_layers
    rec = lambda v: np_reconstruct(v, cfg, w)[0]
    zero = np.zeros_like
    for mode, fn, ours in (("out", rec, d.reconstruct_t), ("rec", rec, d.reconstruct_t),
                           ("out", zero, torch.zeros_like), ("rec", zero, torch.zeros_like)):
        with np.errstate(over="ignore", invalid="ignore"):  # see below: a state fed back can blow up
            want = R.next_char_loss(R.spliced_forward(sd, cell, L, ids, layer, kind, mode, fn), ids)
        got = F.run_spliced(model, ev, layer, kind, mode, ours, chunk=37)  # chunks carry the state
        # An untrained dictionary fed back through a GRU's recurrence can grow the state without bound
        # (1e5 by step 60 here, past float32 by step 200): compare while the state stays below 1e4.
        n = len(ids)
        if mode == "rec":
            x = sd["embed.weight"].double().numpy()[ids]
            for l in range(layer):
                x = R.LAYER[cell](x, *R.weights(sd, l))["h"]
            with np.errstate(over="ignore", invalid="ignore"):
                big = ~(np.abs(R.replaced_layer(cell, x, *R.weights(sd, layer), kind, fn)).max(1) <= 1e4)
            n = int(np.argmax(big)) if big.any() else n
        assert n >= 45, (mode, n)  # past a chunk boundary
        np.testing.assert_allclose(got[:n], want[:n], rtol=1e-5, atol=2e-4, err_msg=f"{mode} {fn}")
    clean = R.next_char_loss(R.forward(sd, cell, L, ids)[1], ids)
    np.testing.assert_allclose(F.run_spliced(model, ev, layer, kind, "clean"), clean, atol=1e-5)
    m = F.metrics(model, d, ev)
    out = np.nanmean(R.next_char_loss(R.spliced_forward(sd, cell, L, ids, layer, kind, "out", rec), ids))
    z = np.nanmean(R.next_char_loss(R.spliced_forward(sd, cell, L, ids, layer, kind, "out", zero), ids))
    assert m["loss_spliced_out"] == pytest.approx(out, abs=2e-4)
    assert m["loss_zero"] == pytest.approx(z, abs=2e-4)
    assert m["ce_recovered_out"] == pytest.approx((z - out) / (z - np.nanmean(clean)), abs=1e-2) \
        if z - np.nanmean(clean) > 1e-2 else True


def test_topk_training_lowers_fvu(text, tmp_path, one_thread):
    model = tiny(text, hidden=12)
    ev = text[2000:2600]
    short = F.train(model, text[:2000], F.SAEConfig(size=48, k=4, steps=2))
    longer = F.train(model, text[:2000], F.SAEConfig(size=48, k=4, steps=300))
    before, after = F.metrics(model, short, ev)["fvu"], F.metrics(model, longer, ev)["fvu"]
    assert after < 0.6 * before, (before, after)
    np.testing.assert_allclose(np.linalg.norm(longer.W_dec, axis=1), 1.0, atol=1e-5)


def test_auxk_reaches_a_dead_latent_whose_pre_activation_is_negative_everywhere():
    gen = torch.Generator().manual_seed(0)
    B, d, S = 16, 6, 10
    W_dec = torch.randn(S, d, generator=gen)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    raw = torch.randn(B, S, generator=gen)
    raw[:, 3] = -1.0 - raw[:, 3].abs()  # below zero on every state: a ReLU would pass it no gradient
    raw[:, 7] = 0.5 + raw[:, 7].abs()
    raw.requires_grad_(True)
    dead = torch.zeros(S, dtype=torch.bool)
    dead[[3, 7]] = True
    err = torch.randn(B, d, generator=gen)
    loss = F.sae.auxk_loss(raw, dead, err, W_dec, k_aux=3)  # k_aux above the dead count: both dead, no live one
    loss.backward()
    r, w, e = raw.detach().double().numpy(), W_dec.double().numpy(), err.double().numpy()
    rec = r[:, [3, 7]] @ w[[3, 7]]
    expect = ((rec - e) ** 2).sum(1).mean() / (e ** 2).sum(1).mean()
    assert loss.item() == pytest.approx(expect, rel=1e-5)
    g = raw.grad.numpy()
    assert np.abs(g[:, 3]).min() > 0 and np.abs(g[:, 7]).min() > 0
    assert not g[:, [i for i in range(S) if i not in (3, 7)]].any()


def _gain_dictionary(H, gain):
    """x̂ = gain * x exactly: features relu(x) and relu(-x), decoder rows +e_i and -e_i, all 2H kept."""
    eye = np.eye(H, dtype=np.float32)
    return F.Dictionary(W_enc=gain * np.hstack([eye, -eye]), b_enc=np.zeros(2 * H, np.float32),
                        W_dec=np.vstack([eye, -eye]), b_dec=np.zeros(H, np.float32), k=2 * H,
                        cfg={"layer": 1, "state": "c"})


def test_a_recurrent_splice_that_blows_the_state_up_is_reported_not_averaged_away(text, one_thread):
    model = tiny(text)
    ev = text[:400]
    exact = F.metrics(model, _gain_dictionary(8, 1.0), ev)
    assert exact["rec_diverged_at"] is None
    assert exact["loss_spliced_rec"] == pytest.approx(exact["loss"], abs=1e-5)
    m = F.metrics(model, _gain_dictionary(8, 20.0), ev)
    assert m["loss_spliced_rec"] == float("inf") and m["rec_increase"] == float("inf")
    at = m["rec_diverged_at"]
    assert at is not None and at < len(ev) - 1
    # The reference cell, in float64, with c multiplied by 20 at every step: by then c has left float32's range.
    sd, ids = model.state_dict(), model.vocab.encode(ev)
    x = R.LAYER["lstm"](sd["embed.weight"].double().numpy()[ids], *R.weights(sd, 0))["h"]
    cs = []
    with np.errstate(over="ignore", invalid="ignore"):
        R.replaced_layer("lstm", x, *R.weights(sd, 1), "c", lambda v: cs.append(20.0 * v) or cs[-1])
    big = np.finfo(np.float32).max
    assert np.abs(cs[at]).max() > big / 100 and np.abs(cs[at - 3]).max() < big
    assert "blows the state up" in words.metrics_sentence(m, "the text")
    assert f"from character **{at:,}** on" in words.metrics_sentence(m, "the text")


def _damage_truncate(folder):
    p = folder / "sae_weights.safetensors"
    p.write_bytes(p.read_bytes()[:100])


def _damage_cfg(folder):
    p = folder / "cfg.json"
    cfg = json.loads(p.read_text())
    cfg["d_sae"] = cfg["d_sae"] + 1
    p.write_text(json.dumps(cfg))


def _damage_nan(folder):
    p = folder / "sae_weights.safetensors"
    w = load_file(str(p))
    w["W_enc"][0, 0] = np.nan
    save_file(w, str(p))


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_cfg, _damage_nan])
def test_a_damaged_cache_entry_is_retrained_and_reported(text, tmp_path, damage, one_thread):
    model = tiny(text)
    cfg = F.SAEConfig(**SMALL)
    first = F.load_or_train(model, text[:1500], "quotes", cfg, tmp_path)
    again = F.load_or_train(model, text[:1500], "quotes", cfg, tmp_path)
    assert again.path == first.path and "retrained_because" not in again.cfg
    np.testing.assert_array_equal(again.W_dec, first.W_dec)
    damage(first.path)
    with pytest.raises(F.DictionaryError):
        F.load(first.path)
    fixed = F.load_or_train(model, text[:1500], "quotes", cfg, tmp_path)
    assert "not a usable dictionary" in fixed.cfg["retrained_because"]
    assert fixed.path == first.path and np.isfinite(fixed.W_enc).all()
    reread = F.load(fixed.path)  # the new entry is whole, and says nothing about the old damage
    assert "retrained_because" not in reread.cfg
    np.testing.assert_array_equal(reread.W_enc, fixed.W_enc)


def test_bad_folders_and_settings_get_clear_errors(text, tmp_path):
    model = tiny(text)
    with pytest.raises(F.DictionaryError, match="not a usable dictionary"):
        F.load(tmp_path)
    (tmp_path / "cfg.json").write_text("{nope")
    (tmp_path / "sae_weights.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(F.DictionaryError, match="not valid JSON"):
        F.load(tmp_path)
    for bad in (dict(state="c", layer=0), dict(layer=5), dict(k=0), dict(size=4, k=8)):
        with pytest.raises(ConfigError):
            F.SAEConfig(**bad).resolved(tiny(text, "gru") if bad.get("state") == "c" else model)
    stop = F.SAEConfig(**SMALL)
    with pytest.raises(F.Cancelled):
        F.load_or_train(model, text[:1500], "quotes", stop, tmp_path / "c", cancel=lambda: True)
    assert not any((tmp_path / "c").glob("[0-9a-f]*")) if (tmp_path / "c").exists() else True


def test_feature_panels_logit_effect_loadings_removal_and_codes(lstm_dicts, text):
    model, _, dicts = lstm_dicts
    d = dicts[(1, "h")]
    ev = text[2000:2400]
    cfg, w = from_files(d.path)
    i = 3
    W = model.head.weight.detach().double().numpy()
    np.testing.assert_allclose(F.logit_effect(model, d, i), w["W_dec"][i] @ W.T, atol=1e-6)
    with pytest.raises(ConfigError, match="top layer"):
        F.logit_effect(model, dicts[(0, "h")], i)
    pairs = F.loadings(d, i, top=3)
    assert [u for u, _ in pairs] == list(np.argsort(-np.abs(w["W_dec"][i]))[:3])
    ids, sd = model.vocab.encode(ev), model.state_dict()

    def without(v):
        f = np_encode(v, cfg, w)
        f[:, i] = 0
        return (f @ w["W_dec"] + w["b_dec"])[0]

    loss = lambda fn: np.nanmean(R.next_char_loss(R.spliced_forward(sd, "lstm", 2, ids, 1, "h", "out", fn), ids))
    want = loss(without) - loss(lambda v: np_reconstruct(v, cfg, w)[0])
    assert F.removal_effect(model, d, ev, i) == pytest.approx(want, abs=2e-5)
    dense = F.feature_acts(model, d, ev)
    np.testing.assert_allclose(dense, np_encode(ref_states(model, ev, 1, "h")[0], cfg, w), atol=1e-4)
    codes = F.corpus_codes(model, d, ev)
    np.testing.assert_array_equal(codes.dense(), dense)
    stored = sorted(d.path.glob("codes-*.npz"))
    assert stored
    stored[0].write_bytes(stored[0].read_bytes()[:50])  # damaged: recomputed, never trusted
    np.testing.assert_array_equal(F.corpus_codes(model, d, ev).column(i), dense[:, i])
    raw = bytearray(stored[0].read_bytes())  # rewritten whole by the call above
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the arrays
    stored[0].write_bytes(bytes(raw))
    np.testing.assert_array_equal(F.corpus_codes(model, d, ev).dense(), dense)


def test_units_vs_features_scores_like_neuron_search(lstm_dicts, text):
    from rnnviz.probes import score_units
    model, _, dicts = lstm_dicts
    d = dicts[(1, "h")]
    ev = text[2000:3000]
    rows = F.units_vs_features(model, d, ev, shifts=5)
    assert {r["hypothesis"] for r in rows} <= set(HYPOTHESES) and "inside quotes" in {r["hypothesis"] for r in rows}
    r = next(r for r in rows if r["hypothesis"] == "inside quotes")
    y = HYPOTHESES["inside quotes"](ev)
    acts = F.feature_acts(model, d, ev)
    best = np.nanmax(score_units(acts, y).score.to_numpy())
    assert r["feature"]["score"] == pytest.approx(best)
    h = ref_states(model, ev, r["unit"]["layer"], r["unit"]["state"])[0][:, r["unit"]["unit"]]
    assert r["unit"]["score"] == pytest.approx(float(score_units(h[:, None], y).score[0]), abs=1e-6)
    assert r["winner"] in ("unit", "feature", "tie") and np.isfinite(r["chance"])


def test_cli_features_json(text, tmp_path, capsys, one_thread):
    model = tiny(text)
    ck = checkpoint.save(model, tmp_path / "m")
    (tmp_path / "train.txt").write_text(text[:1500])
    (tmp_path / "eval.txt").write_text(text[1500:2100])
    args = ["features", str(ck), "--layer", "1", "--state", "c", "--corpus", str(tmp_path / "train.txt"),
            "--eval", str(tmp_path / "eval.txt"), "--size", "32", "--k", "4", "--steps", "60",
            "--out", str(tmp_path / "cache"), "--json", "--feature", "5", "--top", "3"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["metrics"]) >= {"fvu", "l0", "dead_fraction", "loss", "loss_spliced_out", "loss_spliced_rec",
                                   "loss_zero", "ce_recovered_out", "ce_recovered_rec"}
    d = F.load(out["path"])
    assert (d.layer, d.state, d.d_sae, d.k) == (1, "c", 32, 4)
    assert out["metrics"]["fvu"] == pytest.approx(F.metrics(model, d, text[1500:2100])["fvu"], rel=1e-6)
    some = next(iter(out["best"].values()))
    assert set(some["unit"]) >= {"layer", "state", "unit", "score"} and set(some["feature"]) >= {"feature", "score"}
    feat = out["feature"]
    col = F.feature_acts(model, d, text[1500:2100], [5])[:, 0]
    assert feat["index"] == 5 and len(feat["top"]) <= 3 and isinstance(feat["labels"], list)
    for t in feat["top"]:  # positions index the evaluated text
        assert t["value"] == pytest.approx(float(col[t["pos"]]), abs=1e-6) and t["value"] > 0
    if feat["top"]:
        assert feat["top"][0]["value"] == pytest.approx(float(col.max()), abs=1e-6)
    assert cli.main(["features", str(ck), "--state", "c", "--corpus", "nope-not-a-file"]) == 1
    assert "neither a built-in" in capsys.readouterr().err
