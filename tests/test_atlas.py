import hashlib
import json
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from rnnviz import atlas as A
from rnnviz import checkpoint, hypotheses, probes
from rnnviz.corpora import corpus_meta, quotes_task
from rnnviz.errors import ConfigError, TextError
from rnnviz.model import build
from rnnviz.trace import trace

TEXT = ("A gate opens, a gate closes: that is the whole trick.\n\"Whether it remembers\" (in the cell) "
        "[or forgets]\n" * 6)[:500]
CHUNK, K = 64, 32


def _model(cell, hidden=16, layers=2, seed=0):
    model = build(sorted(set(TEXT)), cell=cell, hidden_size=hidden, num_layers=layers, embed_size=12, seed=seed)
    with torch.no_grad():  # spread the weights so that gates saturate somewhere, as in a trained model
        for p in model.rnn.parameters():
            p.mul_(3.0)
    return model


def _build(model, tmp_path, text=TEXT, **kw):
    return A.build_atlas(model, text, cache_dir=tmp_path, chunk=CHUNK, top_k=K, **kw)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir()) if Path(folder).exists() else []


@pytest.fixture(scope="module", params=["lstm", "gru"])
def built(request, tmp_path_factory):
    model = _model(request.param)
    at = _build(model, tmp_path_factory.mktemp(f"atlas-{request.param}"))
    return model, at, trace(model, TEXT), trace(model, TEXT, chunk=CHUNK)


def test_states_equal_a_full_trace_within_the_int8_bound(built):
    model, at, tr, _ = built
    assert len(at) == len(TEXT) and len(TEXT) > 7 * CHUNK  # several chunks
    for l in range(2):
        for kind in at.kinds:
            x = tr.get(l, kind)
            scale = at.scales(l, kind)  # (blocks, H)
            assert scale.shape == (-(-len(TEXT) // CHUNK), 16)
            # the scale of each block is its max |a| / 127, from the full trace
            blocks = np.arange(len(TEXT)) // CHUNK
            for b in range(scale.shape[0]):
                np.testing.assert_allclose(scale[b], np.abs(x[blocks == b]).max(0) / 127, rtol=1e-5)
            err = np.abs(at.states(l, kind) - x)
            bound = scale[blocks] / 2 * (1 + 1e-5) + 1e-6  # scale / 2, plus the trace's own float rounding
            assert (err <= bound).all(), float((err - bound).max())
            # windows and single units read the same stored values
            np.testing.assert_array_equal(at.states(l, kind, 70, 200), at.states(l, kind)[70:200])
            np.testing.assert_array_equal(at.unit_values(l, kind, 3, 5, 300), at.states(l, kind)[5:300, 3])
            assert (at.error_bound(l, kind) <= np.abs(x).max(0) / 254 * (1 + 1e-5)).all()


def test_statistics_equal_the_trace(built):
    model, at, tr, _ = built
    df = at.units
    assert len(df) == 2 * len(at.kinds) * 16
    for l in range(2):
        for kind in at.kinds:
            x = tr.get(l, kind).astype(np.float64)
            rows = df[(df.layer == l) & (df.kind == kind)].sort_values("unit")
            np.testing.assert_allclose(rows["mean"], x.mean(0), atol=1e-6)
            np.testing.assert_allclose(rows["std"], x.std(0), atol=1e-6)
            np.testing.assert_allclose(rows["min"], x.min(0), atol=1e-6)
            np.testing.assert_allclose(rows["max"], x.max(0), atol=1e-6)
            near = np.abs(np.abs(x) - A.SPARSE_BELOW) < 1e-5  # a value on the line may go either way
            assert np.all(np.abs(rows["sparsity"].to_numpy() - (np.abs(x) < A.SPARSE_BELOW).mean(0))
                          <= near.mean(0) + 1e-12)


def test_gate_means_and_tau_equal_the_trace(built):
    model, at, tr, _ = built
    gate = "f" if model.cell == "lstm" else "z"
    for l in range(2):
        g = tr.get(l, gate).astype(np.float64).mean(0)
        np.testing.assert_allclose(at.gate_mean(l), g, atol=1e-6)
        rows = at.units[(at.units.layer == l) & (at.units.kind == "h")].sort_values("unit")
        np.testing.assert_allclose(rows[f"{gate}_mean"], g, atol=1e-6)
        np.testing.assert_allclose(rows["tau"], -1 / np.log(g), rtol=1e-4)
    assert A.tau([1.0, 0.0, np.exp(-1)]).tolist() == [np.inf, 0.0, pytest.approx(1.0)]


def test_top_and_bottom_k_are_exactly_the_traces(built):
    model, at, tr_default, tr = built
    for l in range(2):
        for kind in at.kinds:
            x = tr.get(l, kind)  # the same chunking: bit for bit the same arithmetic
            pos = np.arange(len(x))
            for u in range(16):
                hi = np.lexsort((pos, -x[:, u]))[:K]  # brute force: value, then earlier position
                lo = np.lexsort((pos, x[:, u]))[:K]
                top, bottom = at.top(l, kind, u), at.bottom(l, kind, u)
                assert [p for p, _ in top] == hi.tolist()
                assert [p for p, _ in bottom] == lo.tolist()
                np.testing.assert_array_equal(np.float32([v for _, v in top]), x[hi, u])
                np.testing.assert_array_equal(np.float32([v for _, v in bottom]), x[lo, u])
                # against a trace in one chunk: the same values to float rounding
                np.testing.assert_allclose([v for _, v in top], tr_default.get(l, kind)[hi, u], atol=1e-5)
    assert len(at.top(0, "h", 0, 5)) == 5


def test_ties_keep_the_earlier_position():
    model = _model("rnn", hidden=8, layers=1)
    with torch.no_grad():
        model.rnn.weight_ih_l0.mul_(40.0)  # saturate: many h exactly +-1.0 in float32
    at = A.build_atlas(model, TEXT, cache=False, chunk=CHUNK, top_k=K)
    x = trace(model, TEXT, chunk=CHUNK).get(0, "h")
    assert (x == 1.0).sum() > K  # ties across chunks do happen here
    pos = np.arange(len(x))
    for u in range(8):
        assert [p for p, _ in at.top(0, "h", u)] == np.lexsort((pos, -x[:, u]))[:K].tolist()
        assert [p for p, _ in at.bottom(0, "h", u)] == np.lexsort((pos, x[:, u]))[:K].tolist()


def test_histograms_quantiles_deciles(built):
    model, at, _, tr = built
    for l in range(2):
        x = tr.get(l, "h")
        for u in range(16):
            counts, edges = at.histogram(l, "h", u)
            ref, _ = np.histogram(x[:, u], bins=A._H_EDGES)  # the float32 edges, as np.histogram counts
            np.testing.assert_array_equal(counts, ref)
            assert edges[0] == -1 and edges[-1] == 1 and len(edges) == A.H_BINS + 1
            stored = at.unit_values(l, "h", u)
            q = at.quantiles(l, "h", u)
            exact = np.quantile(x[:, u].astype(np.float64), A.QUANTILES)
            assert np.all(np.abs(q - exact) <= at.error_bound(l, "h")[u] * (1 + 1e-5) + 1e-6)
            bands = at.deciles(l, "h", u, n=3)
            assert len(bands) == 10 and sum(b["count"] for b in bands) == len(TEXT)
            for b in bands:
                assert len(b["examples"]) <= 3
                for p, v in b["examples"]:
                    assert v == stored[p]
                    assert b["low"] <= v <= b["high"]
        if "c" in at.kinds:
            counts, edges = at.histogram(l, "c", 0)
            assert counts.sum() == len(TEXT)
            m = np.abs(tr.get(l, "c")[:, 0]).max()
            assert edges[-1] == pytest.approx(m) and edges[0] == pytest.approx(-m)


def test_context_and_check(built, tmp_path):
    model, at, _, _ = built
    start, ctx = at.context(100, width=10)
    assert start == 90 and ctx == TEXT[90:111] and ctx[100 - start] == TEXT[100]
    assert at.context(0, 5) == (0, TEXT[:6])
    at.check(model)
    with pytest.raises(ConfigError, match="another model"):
        at.check(_model(model.cell, seed=1))
    with pytest.raises(ConfigError, match="layer"):
        at.states(5, "h")
    with pytest.raises(ConfigError, match="no 'q'"):
        at.top(0, "q", 0)
    with pytest.raises(ConfigError, match="unit"):
        at.top(0, "h", 99)


def test_labels_match_probes_on_the_stored_states(built):
    model, at, _, _ = built
    df = at.labels()
    assert set(df.columns) >= {"layer", "kind", "unit", "hypothesis", "auroc", "direction", "score", "corr"}
    if hasattr(probes, "evidence"):  # what each score rests on, joined from probes
        assert {"positives", "spans", "flagged"} <= set(df.columns)
        ev = probes.evidence(hypotheses.HYPOTHESES["uppercase"](TEXT))
        row = df[df.hypothesis == "uppercase"].iloc[0]
        assert (row.positives, row.spans, row.flagged) == (ev["positives"], ev["spans"], ev["flagged"])
    assert len(df) == len(hypotheses.HYPOTHESES) * 2 * len(at.kinds) * 16
    stored = SimpleNamespace(layers=[{k: at.states(l, k) for k in at.kinds} for l in range(2)])
    for name, fn in hypotheses.HYPOTHESES.items():
        y = fn(TEXT)
        mask = hypotheses.hypothesis_mask(name, TEXT)  # the characters Neuron search counts (None: all)
        counted = y if mask is None else y[mask]
        if counted.min() == counted.max():
            continue
        ref = probes.rank_units(stored, y, mask, kinds=at.kinds)
        mine = df[df.hypothesis == name]
        merged = ref.merge(mine, on=["layer", "kind", "unit"], suffixes=("_ref", ""))
        assert len(merged) == 2 * len(at.kinds) * 16
        np.testing.assert_allclose(merged["auroc"], merged["auroc_ref"], atol=1e-9, equal_nan=True)
        np.testing.assert_allclose(merged["corr"], merged["corr_ref"], atol=1e-9)
        np.testing.assert_allclose(merged["score"], merged["score_ref"], atol=1e-9, equal_nan=True)
        assert (merged["direction"] == merged["direction_ref"]).all()
    best = at.best_labels()
    assert len(best) == 2 * len(at.kinds) * 16
    again = A.load(at.path).labels()  # from the cached labels file
    np.testing.assert_allclose(again.score.to_numpy(), df.score.to_numpy(), equal_nan=True)


PYTHON = ("""def greet(name):
    \"\"\"Say hello to someone, politely.\"\"\"
    return "hello, " + name + '!'  # a comment with "quotes"


def shout(words):
    sep = " "
    return sep.join(w.upper() for w in words) + "!!"


def table(rows):
    \"\"\"Format rows
    as a table.\"\"\"
    out = []
    for k, v in rows:
        out.append(f"{k}: {v}")
    return "\\n".join(out)

""" * 3)


def test_masked_hypothesis_labels_match_probes_with_the_mask(tmp_path):
    # "inside a string (tokenize)" counts one-line strings against code, as Neuron search does: the
    # docstrings and comments are left out of both the score and the evidence
    name = "inside a string (tokenize)"
    model = build(sorted(set(PYTHON)), cell="lstm", hidden_size=16, num_layers=2, embed_size=12, seed=0)
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(3.0)
    at = _build(model, tmp_path, PYTHON)
    y, mask = hypotheses.HYPOTHESES[name](PYTHON), hypotheses.hypothesis_mask(name, PYTHON)
    assert mask is not None and 0 < mask.sum() < len(PYTHON) and y[~mask].any()  # docstrings left out
    df = at.labels()
    mine = df[df.hypothesis == name]
    stored = SimpleNamespace(layers=[{k: at.states(l, k) for k in at.kinds} for l in range(2)])
    ref = probes.rank_units(stored, y, mask, kinds=at.kinds)
    merged = ref.merge(mine, on=["layer", "kind", "unit"], suffixes=("_ref", ""))
    assert len(merged) == 2 * 2 * 16
    np.testing.assert_allclose(merged["auroc"], merged["auroc_ref"], atol=1e-9)
    np.testing.assert_allclose(merged["corr"], merged["corr_ref"], atol=1e-9)
    np.testing.assert_allclose(merged["score"], merged["score_ref"], atol=1e-9)
    assert (merged["direction"] == merged["direction_ref"]).all()
    one = probes.score_units(at.states(1, "c"), y, mask)
    np.testing.assert_allclose(mine[(mine.layer == 1) & (mine.kind == "c")].sort_values("unit").score,
                               one.score, atol=1e-9)
    # without the mask the scores differ: the mask is what is being tested
    unmasked = probes.rank_units(stored, y, kinds=at.kinds)
    assert not np.allclose(unmasked.sort_values(["layer", "kind", "unit"]).score,
                           ref.sort_values(["layer", "kind", "unit"]).score)
    ev = probes.evidence(y, mask)
    row = mine.iloc[0]
    assert (row.positives, row.spans, row.flagged, row.reason) == (ev["positives"], ev["spans"], ev["flagged"],
                                                                    ev["reason"])
    assert ev["positives"] < int(y.sum())  # the evidence counts only the counted characters
    # an unmasked hypothesis is scored on every character, as before
    q = hypotheses.HYPOTHESES["inside quotes"](PYTHON)
    assert hypotheses.hypothesis_mask("inside quotes", PYTHON) is None
    refq = probes.rank_units(stored, q, kinds=at.kinds)
    mq = refq.merge(df[df.hypothesis == "inside quotes"], on=["layer", "kind", "unit"], suffixes=("_ref", ""))
    np.testing.assert_allclose(mq["score"], mq["score_ref"], atol=1e-9, equal_nan=True)
    # the cached labels (labels.npz, keyed with the masks) give the same
    again = A.load(at.path).labels()
    np.testing.assert_allclose(again.score.to_numpy(), df.score.to_numpy(), equal_nan=True)


def test_labels_cache_of_an_older_version_is_rescored(tmp_path):
    model = build(sorted(set(PYTHON)), cell="gru", hidden_size=8, num_layers=1, embed_size=8, seed=0)
    at = _build(model, tmp_path, PYTHON)
    df = at.labels()
    f = at.path / A.LABELS
    with np.load(f, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    # a labels.npz from before the masks: its digest (names and labels only) no longer matches
    names = list(hypotheses.HYPOTHESES)
    Y = np.stack([np.asarray(fn(PYTHON), dtype=np.float64).ravel() for fn in hypotheses.HYPOTHESES.values()], 1)
    old = hashlib.sha256(json.dumps(names).encode() + Y.tobytes()).hexdigest()
    arrays = {k: (np.full_like(v, 0.5) if k != "digest" else np.array(old)) for k, v in arrays.items()}
    np.savez(f, **arrays)
    again = A.load(at.path).labels()
    np.testing.assert_allclose(again.score.to_numpy(), df.score.to_numpy(), equal_nan=True)
    with np.load(f, allow_pickle=False) as z:
        assert str(z["digest"]) != old


def test_auroc_by_ranks_equals_brute_force():
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, size=(5, 60)).astype(np.float32)  # many ties
    y = (rng.random(60) < 0.3).astype(np.float64)
    au, r = A.score_units(x, np.stack([y, rng.random(60)], 1), np.array([True, False]))
    for b in range(5):
        pos, neg = x[b, y == 1], x[b, y == 0]
        brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
            len(pos) * len(neg))
        assert au[b, 0] == pytest.approx(brute, abs=1e-12)
        assert np.isnan(au[b, 1])
        assert r[b, 0] == pytest.approx(np.corrcoef(x[b], y)[0, 1], abs=1e-12)


def test_cached_load_and_warm_reload(tmp_path):
    model = _model("lstm")
    calls = []
    at = A.load_or_build(model, None, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K,
                         report=lambda **kw: calls.append(kw))
    assert at.cached and calls and calls[-1]["done"] == calls[-1]["total"] == len(TEXT)
    calls.clear()
    again = A.load_or_build(model, None, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K,
                            report=lambda **kw: calls.append(kw))
    assert not calls and again.path == at.path  # loaded, not rebuilt
    assert isinstance(again._states["L0_h"], np.memmap)
    np.testing.assert_array_equal(again.states(1, "c"), at.states(1, "c"))
    assert again.top(1, "c", 3) == at.top(1, "c", 3)
    assert A.lookup(model, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K).path == at.path
    assert [p.name for p in _entries(tmp_path)] == [at.path.name]  # no leftovers


def _corrupt_truncate_states(entry):
    f = entry / "L1_c.i8"
    f.write_bytes(f.read_bytes()[:-10])


def _corrupt_flip_small(entry):
    f = entry / A.SMALL
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def _corrupt_version(entry):
    meta = json.loads((entry / A.META).read_text())
    meta["format_version"] = A.FORMAT_VERSION + 1
    (entry / A.META).write_text(json.dumps(meta))


def _corrupt_truncate_meta(entry):
    f = entry / A.META
    f.write_bytes(f.read_bytes()[:50])


def _corrupt_text(entry):
    (entry / A.TEXT).write_text("something else", encoding="utf-8")


def _corrupt_missing(entry):
    (entry / "L0_h.i8").unlink()


def _meta_with(**fields):
    """A corruption that leaves meta.json valid JSON but sets fields to the wrong types."""
    def corrupt(entry):
        meta = json.loads((entry / A.META).read_text())
        meta.update(fields)
        (entry / A.META).write_text(json.dumps(meta))
    corrupt.__name__ = "_meta_" + "_".join(fields)
    return corrupt


@pytest.mark.parametrize("corrupt", [_corrupt_truncate_states, _corrupt_flip_small, _corrupt_version,
                                     _corrupt_truncate_meta, _corrupt_text, _corrupt_missing,
                                     _meta_with(cell=["lstm"]), _meta_with(notices=[1, 2.5]),
                                     _meta_with(unknown={"x": "many"}), _meta_with(format_version=True)],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_corrupt_cache_is_rebuilt(tmp_path, corrupt):
    model = _model("lstm")
    at = A.load_or_build(model, None, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    good = at.states(1, "c").copy()
    top = at.top(0, "h", 2)
    corrupt(at.path)
    with pytest.raises(A.CacheError):
        A.load(at.path)
    assert A.lookup(model, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K) is None
    again = A.load_or_build(model, None, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    assert "rebuilt" in again.notice
    np.testing.assert_array_equal(again.states(1, "c"), good)
    assert again.top(0, "h", 2) == top
    A.load(again.path)  # the new entry is sound
    assert [p.name for p in _entries(tmp_path)] == [again.path.name]


def _labels_truncated(f):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _labels_garbage(f):
    f.write_bytes(np.random.default_rng(0).bytes(3000))


def _labels_zip_magic(f):  # looks like a zip to np.load, is none: BadZipFile
    f.write_bytes(b"PK\x03\x04" + bytes(200))


def _labels_empty(f):
    f.write_bytes(b"")


def _labels_other_arrays(f):  # a sound npz with the right digest and wrong names
    with np.load(f, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(f, **{("x" + k if k != "digest" else k): v for k, v in arrays.items()})


@pytest.mark.parametrize("damage", [_labels_truncated, _labels_garbage, _labels_zip_magic, _labels_empty,
                                    _labels_other_arrays], ids=lambda f: f.__name__)
def test_a_damaged_labels_cache_is_rescored_and_rewritten(tmp_path, damage):
    model = _model("gru", hidden=8, layers=1)
    at = _build(model, tmp_path)
    want = at.labels()
    f = at.path / A.LABELS
    damage(f)
    for _ in range(2):  # the first call rescores and rewrites; the second reads what was rewritten
        got = A.load(at.path).labels()
        pd.testing.assert_frame_equal(got, want)
        with np.load(f, allow_pickle=False) as z:  # a sound file again
            assert "digest" in z.files and len(z.files) == 1 + 2 * len(at.kinds)


def test_cancel_leaves_no_cache_entry(tmp_path):
    model = _model("lstm")
    stop = threading.Event()

    def report(done, total, message):
        if done >= 2 * CHUNK:
            stop.set()

    with pytest.raises(A.Cancelled, match="cancelled"):
        A.load_or_build(model, None, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K, stop_event=stop, report=report)
    assert _entries(tmp_path) == []
    # as a Job's function: None, and the Job says 'stopped'
    from rnnviz.jobs import Job
    job = Job(A.job_fn(model, None, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K))
    job.stop_event.set()
    job.start().join(10)
    assert job.result is None and job.snapshot()["state"] == "stopped"
    assert _entries(tmp_path) == []


def test_unwritable_cache_folder_builds_elsewhere(tmp_path, monkeypatch):
    model = _model("gru")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    at = A.load_or_build(model, None, TEXT, cache_dir=blocker, chunk=CHUNK, top_k=K)
    assert not at.cached and "cannot be used" in at.notice and "temporary folder" in at.notice
    ref = trace(model, TEXT, chunk=CHUNK)
    assert at.top(1, "h", 0)[0][1] == ref.get(1, "h")[:, 0].max()
    # no temporary folder either (a full disk): in memory
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    at2 = A.load_or_build(model, None, TEXT, cache_dir=blocker, chunk=CHUNK, top_k=K)
    assert not at2.cached and "in memory" in at2.notice
    np.testing.assert_array_equal(at2.states(0, "h"), at.states(0, "h"))


def test_bad_corpus_input(tmp_path):
    model = _model("lstm")
    with pytest.raises(TextError, match="empty"):
        A.build_atlas(model, "", cache_dir=tmp_path)
    with pytest.raises(TextError, match="empty"):
        A.load_or_build(model, None, "   \n ", cache_dir=tmp_path)
    at = A.load_or_build(model, None, TEXT + "ЖЖ☃", cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    assert "3 characters the model never saw" in at.notice and at.unknown == {"Ж": 2, "☃": 1}
    cut = A.load_or_build(model, None, TEXT, cache_dir=tmp_path, max_chars=300, chunk=CHUNK, top_k=K)
    assert len(cut) == 300 and "first 300 of 500 characters" in cut.notice
    assert cut.text == TEXT[:300]
    with pytest.raises(ConfigError, match="top_k"):
        A.build_atlas(model, TEXT, cache_dir=tmp_path, top_k=4)
    with pytest.raises(ConfigError, match="not on this machine"):
        A.load_or_build(model, {"corpus": {"name": "nowhere.txt"}}, cache_dir=tmp_path)
    f = tmp_path / "corpus.txt"
    f.write_text(TEXT[:200], encoding="utf-8")
    from_file = A.load_or_build(model, None, f, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    assert from_file.text == TEXT[:200] and from_file.name == "corpus.txt"


def test_an_uploaded_corpus_is_whole_utf8_text_up_to_the_cap(tmp_path):
    src = A.upload_corpus("\ufeffline one\r\nline two ✓\n".encode(), "notes.txt")
    assert src.text == "line one\nline two ✓\n" and src.name == "notes.txt" and not src.notices
    assert A.upload_corpus(b"x" * 50, "a.txt", max_chars=50).text == "x" * 50
    # four bytes per character is UTF-8's most: 50 four-byte characters are 200 bytes and fit
    assert A.upload_corpus("😀".encode() * 50, "e.txt", max_chars=50).text == "😀" * 50
    for data, says in (("é".encode("latin-1") * 3, "UTF-8"), (b"", "empty"), (b" \n\t", "empty"),
                       (b"\x00\x01\x02" * 10, "binary"), (b"x" * 51, "holds 51 characters"),
                       (b"x" * 201, "MB")):
        with pytest.raises(TextError, match=says):
            A.upload_corpus(data, "f.txt", max_chars=50)
    # resolved once, it builds as itself (its name is never read as a built-in corpus)
    model = _model("lstm", hidden=8, layers=1)
    named = A.CorpusText(TEXT[:300], "python")
    at = A.load_or_build(model, None, named, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    assert at.text == TEXT[:300] and at.name == "python"
    assert at.path.name == A.entry_key(model, TEXT[:300], CHUNK, K)  # keyed by the content


def test_default_corpus_is_the_held_out_split(tmp_path):
    corpus = quotes_task(3000, seed=3)
    model = build(sorted(set(corpus.text)), cell="lstm", hidden_size=8, num_layers=1, embed_size=8, seed=0)
    config = {"corpus": corpus_meta(corpus, 0.1)}
    at = A.load_or_build(model, config, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    assert at.text == corpus.text[2700:] and at.name == "held-out"


def _save(model, tmp_path) -> Path:
    return checkpoint.save(model, tmp_path / "model")


def test_cli_json(tmp_path, capsys):
    from rnnviz.cli import main

    model = _model("lstm")
    ck = _save(model, tmp_path)
    text = "\ufeff" + TEXT.replace("\n", "\r\n")[:400]  # read as rnnviz reads files: BOM dropped, CRLF -> LF
    f = tmp_path / "some.txt"
    f.write_bytes(text.encode("utf-8"))
    rc = main(["atlas", str(ck), "--corpus", str(f), "--unit", "1:c:3", "--top", "5", "--json",
               "--out", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert rc == 0
    obj = json.loads(out)
    assert obj["unit"] == "1:c:3" and len(obj["top"]) == 5 and len(obj["bottom"]) == 5
    read = text.removeprefix("\ufeff").replace("\r\n", "\n")
    values = [r["value"] for r in obj["top"]]
    assert values == sorted(values, reverse=True)
    for r in obj["top"] + obj["bottom"]:
        assert read[r["pos"]] in r["context"]
        start = max(0, r["pos"] - 40)
        assert r["context"] == read[start:r["pos"] + 41]
    scores = [x["score"] for x in obj["labels"]]
    assert scores == sorted(scores, reverse=True) and {x["hypothesis"] for x in obj["labels"]} <= set(hypotheses.HYPOTHESES)
    ref = trace(model, read).get(1, "c")[:, 3]
    assert obj["top"][0]["value"] == pytest.approx(float(ref.max()), abs=1e-6)
    assert obj["top"][0]["pos"] == int(ref.argmax())


def test_cli_summary_errors_and_export(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    from rnnviz.cli import main

    model = _model("lstm")
    ck = _save(model, tmp_path)
    f = tmp_path / "some.txt"
    f.write_text(TEXT, encoding="utf-8")
    out_dir = tmp_path / "lstmvis"
    rc = main(["atlas", str(ck), "--corpus", str(f), "--out", str(tmp_path / "cache"),
               "--export-lstmvis", str(out_dir)])
    out = capsys.readouterr().out
    assert rc == 0 and "inside quotes" in out and "L" in out
    with h5py.File(out_dir / "states.h5", "r") as s:
        assert sorted(s) == ["output1", "output2", "states1", "states2"]
        assert s["states2"].shape == (len(TEXT), 16) and s["states2"].dtype == np.float32
        np.testing.assert_allclose(s["output1"][:], trace(model, TEXT).get(0, "h"), atol=1 / 254 + 1e-6)
    with h5py.File(out_dir / "train.h5", "r") as t:
        ids = t["word_ids"][:]
    assert ids.shape == (len(TEXT),)
    lines = (out_dir / "words.dict").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == len(model.vocab)
    assert " 2" in lines or any(line.startswith(" ") for line in lines)  # the space, LSTMVis's way
    assert "\\n 1" in lines  # the newline, escaped
    cfg = json.loads((out_dir / "lstm.yml").read_text())
    assert cfg["word_sequence"] == {"file": "train", "path": "word_ids", "dict_file": "words"}
    assert {t["path"] for t in cfg["states"]["types"]} == {"states1", "states2", "output1", "output2"}
    # errors: one line, status 1
    for argv, msg in ((["--unit", "1:x"], "LAYER:KIND:UNIT"), (["--unit", "7:h:0"], "layer"),
                      (["--corpus", str(tmp_path / "missing.txt")], "neither")):
        rc = main(["atlas", str(ck), "--corpus", str(f), "--out", str(tmp_path / "cache"), *argv]) \
            if argv[0] != "--corpus" else main(["atlas", str(ck), *argv, "--out", str(tmp_path / "cache")])
        err = capsys.readouterr().err
        assert rc == 1 and msg in err and err.count("error:") == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["atlas", str(ck), "--corpus", str(empty), "--out", str(tmp_path / "cache")]) == 1
    assert "empty" in capsys.readouterr().err


def test_lstmvis_zip_of_a_window_against_a_full_trace(tmp_path):
    h5py = pytest.importorskip("h5py")
    import io
    import zipfile

    model = _model("gru")
    at = _build(model, tmp_path)
    start, end = 70, 330  # across block boundaries
    assert A.lstmvis_size(at, start, end) == (end - start) * (2 * 1 * 16 * 4 + 8)
    with zipfile.ZipFile(io.BytesIO(A.lstmvis_zip(at, model.vocab.chars, start, end, folder="x"))) as z:
        assert sorted(z.namelist()) == ["x/lstm.yml", "x/states.h5", "x/train.h5", "x/words.dict"]
        with h5py.File(io.BytesIO(z.read("x/states.h5")), "r") as f:
            assert sorted(f) == ["output1", "output2"]  # a GRU has no cell state
            x = trace(model, TEXT)  # the window's states are the whole text's, within the int8 bound
            for l in range(2):
                got = f[f"output{l + 1}"][()]
                bound = at.scales(l, "h")[np.arange(start, end) // CHUNK] / 2 * (1 + 1e-5) + 1e-6
                assert got.shape == (end - start, 16) and (np.abs(got - x.get(l, "h")[start:end]) <= bound).all()
        with h5py.File(io.BytesIO(z.read("x/train.h5")), "r") as f:
            np.testing.assert_array_equal(f["word_ids"][()], model.vocab.encode(TEXT[start:end]))
        assert f"({start:,} to {end:,} of {len(TEXT):,})" in json.loads(z.read("x/lstm.yml"))["description"]
    with pytest.raises(ConfigError, match="window"):
        A.lstmvis_zip(at, model.vocab.chars, 400, 600)


def test_concurrent_builds_of_one_key_share_one_entry(tmp_path):
    model = _model("gru")
    # a build that died (kill -9) left its temporary folder: removed by the next build, its pid gone
    dead = tmp_path / ".0123abcd.tmp-999999999-xyz"
    dead.mkdir(parents=True)
    (dead / "L0_h.i8").write_bytes(b"\0" * 10)
    results = []

    def run():
        results.append(A.build_atlas(model, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and results[0].path == results[1].path
    np.testing.assert_array_equal(results[0].states(1, "h"), results[1].states(1, "h"))
    assert [p.name for p in _entries(tmp_path)] == [results[0].path.name]


def test_keys_and_lookup_by_hash(tmp_path):
    model = _model("lstm")
    at = A.build_atlas(model, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    key = A.entry_key(model, TEXT, CHUNK, K)
    assert at.path.name == key == A.entry_key(at.model_key, TEXT, CHUNK, K)
    assert key == A.cache_key(A.model_key(model), A.text_sha256(TEXT), A.settings(CHUNK, K))
    assert A.lookup(model, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K, model_hash=at.model_key).path == at.path
    other = _model("lstm", seed=1)
    assert A.model_key(other) != at.model_key
    assert A.lookup(other, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K) is None


def test_a_model_with_non_finite_states_gets_a_clear_error(tmp_path):
    model = _model("lstm")
    with torch.no_grad():
        model.rnn.weight_hh_l1[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN or infinite from character"):
        A.build_atlas(model, TEXT, cache_dir=tmp_path, chunk=CHUNK, top_k=K)
    assert _entries(tmp_path) == []


def test_default_cache_folder(monkeypatch, tmp_path):
    """$RNNVIZ_ATLAS_DIR first; the repository's atlas_cache/ when run from it; else the user's cache."""
    from rnnviz.atlas import store
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "x"))
    assert store.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("RNNVIZ_ATLAS_DIR")
    assert store.default_cache_dir() == store.ROOT / "atlas_cache"
    monkeypatch.setattr(store, "ROOT", tmp_path / "site-packages")  # an installed package
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert store.default_cache_dir() == tmp_path / "cache" / "rnnviz" / "atlas"
