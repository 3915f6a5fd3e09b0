"""The disk cache of samples: exact round trip, a second process reads without generating, damaged or
mismatched entries regenerated, other weights never hit."""
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnviz import sample_cache as sc
from rnnviz import sampling
from rnnviz.model import CharRNN, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
ARGS = {"prime": "ab", "length": 40, "temperature": 0.9, "top_k": None, "seed": 3}


def tiny(seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab=list("abcdef \n"), cell="lstm", hidden_size=16, num_layers=2, embed_size=8)).eval()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNVIZ_SHARED_DB", str(tmp_path / "shared.sqlite3"))  # the build lock's file
    return tmp_path / "samples"


class Counter:
    """Counts the calls to sampling.sample that the cache makes."""

    def __init__(self, monkeypatch):
        self.n = 0
        real = sc.sample

        def counted(*a, **k):
            self.n += 1
            return real(*a, **k)

        monkeypatch.setattr(sc, "sample", counted)


def get(folder, model, clamp=None, **kw):
    a = {**ARGS, **kw}
    return sc.cached_sample(folder, sc.model_digest(model), a["prime"], a["length"], a["temperature"], a["top_k"],
                            a["seed"], clamp, model)


def assert_same(a: sampling.Sample, b: sampling.Sample) -> None:
    assert a.text == b.text and a.prime == b.prime and a.unknown == b.unknown
    for k in ("probs", "model_probs", "dists", "u", "lo", "hi", "rank", "logp"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        np.testing.assert_array_equal(x, y, err_msg=k)


def test_read_back_equals_a_fresh_sample(env, monkeypatch):
    model, count = tiny(), Counter(monkeypatch)
    fresh = sampling.sample(model, **ARGS)
    first = get(env, model)
    assert count.n == 1 and len(list(env.glob("*.npz"))) == 1
    again = get(env, model)
    assert count.n == 1  # read from disk, not generated
    assert_same(fresh, first)
    assert_same(fresh, again)
    clamp = sampling.Clamp(layer=1, units=[2], value=0.5, kind="c")
    held = get(env, model, clamp=clamp)
    assert count.n == 2 and not np.array_equal(held.dists, fresh.dists)
    assert_same(sampling.sample(model, **ARGS, clamp=clamp), get(env, model, clamp=clamp))
    assert count.n == 2
    get(env, model, temperature=0.95)  # every argument is in the key
    assert count.n == 3


def test_another_process_reads_the_entry_without_generating(env):
    model = tiny()
    mine = get(env, model)
    entry, = env.glob("*.npz")
    before = entry.stat().st_mtime_ns
    child = textwrap.dedent(f"""
        import json, sys, torch
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
        torch.set_num_threads(1)
        from rnnviz import sample_cache as sc
        from test_sample_cache import tiny, get
        calls = []
        real = sc.sample
        sc.sample = lambda *a, **k: calls.append(1) or real(*a, **k)
        s = get({str(env)!r}, tiny())
        print(json.dumps({{"calls": len(calls), "text": s.text, "probs": s.probs.tolist()}}))
    """)
    out = subprocess.run([sys.executable, "-c", child], check=False, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["calls"] == 0
    assert got["text"] == mine.text and got["probs"] == mine.probs.tolist()
    assert entry.stat().st_mtime_ns == before


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage_json(p: Path) -> None:
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta_json"] = np.frombuffer(b"{not json", dtype=np.uint8)
    np.savez(p, **arrays)


def _other_key(p: Path, env: Path, model: CharRNN) -> None:
    """The file holds a real, sound entry, but for another temperature."""
    get(env, model, temperature=1.3)
    other = max(env.glob("*.npz"), key=lambda q: q.stat().st_mtime_ns)
    os.replace(other, p)


def _nan(p: Path) -> None:
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["probs"] = arrays["probs"].copy()
    arrays["probs"][3] = np.nan
    np.savez(p, **arrays)


def _wrong_shape(p: Path) -> None:
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["dists"] = arrays["dists"][:, :-1]
    np.savez(p, **arrays)


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "other_key", "nan", "wrong_shape", "not_zip"])
def test_a_damaged_entry_is_regenerated(env, monkeypatch, damage):
    model = tiny()
    fresh = sampling.sample(model, **ARGS)
    get(env, model)
    entry, = env.glob("*.npz")
    if damage == "truncate":
        _truncate(entry)
    elif damage == "garbage_json":
        _garbage_json(entry)
    elif damage == "other_key":
        _other_key(entry, env, model)
    elif damage == "nan":
        _nan(entry)
    elif damage == "wrong_shape":
        _wrong_shape(entry)
    else:
        entry.write_bytes(b"this is not a zip file")
    with pytest.raises(sc.SampleCacheError):
        sc.load_sample(entry, sc.sample_key(sc.model_digest(model), "ab", 40, 0.9, None, 3, None), len(model.vocab))
    count = Counter(monkeypatch)
    assert_same(fresh, get(env, model))  # no traceback: regenerated
    assert count.n == 1
    assert_same(fresh, get(env, model))  # and the rewritten entry is sound
    assert count.n == 1
    with zipfile.ZipFile(entry) as z:
        assert not any(n.endswith(".pkl") for n in z.namelist())


def test_other_weights_never_hit_another_models_entry(env, monkeypatch):
    a, b = tiny(0), tiny(1)
    count = Counter(monkeypatch)
    sa = get(env, a)
    sb = get(env, b)
    assert count.n == 2 and sc.model_digest(a) != sc.model_digest(b)
    assert_same(sb, sampling.sample(b, **ARGS))
    with torch.no_grad():  # the same model object, one weight nudged: a new digest, a new entry
        a.head.bias[0] += 1e-3
    sa2 = get(env, a)
    assert count.n == 3
    assert_same(sa2, sampling.sample(a, **ARGS))
    assert not np.array_equal(sa.probs, sa2.probs)


def test_the_folder_is_bounded(env):
    model = tiny()
    for i in range(5):
        sc.cached_sample(env, sc.model_digest(model), "ab", 10, 0.9, None, i, None, model, max_entries=3)
    assert len(list(env.glob("*.npz"))) == 3
    assert not list(env.glob(".*.tmp"))


@pytest.mark.slow
def test_two_processes_asking_at_once_generate_once(env, tmp_path):
    go = tmp_path / "go"
    child = textwrap.dedent(f"""
        import json, pathlib, sys, time, torch
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
        torch.set_num_threads(1)
        from rnnviz import sample_cache as sc
        from test_sample_cache import tiny, get
        calls = []
        real = sc.sample
        def slow(*a, **k):  # long enough that the other process asks while this one generates
            calls.append(1)
            time.sleep(1.0)
            return real(*a, **k)
        sc.sample = slow
        model = tiny()
        print("ready", flush=True)
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        s = get({str(env)!r}, model)
        print(json.dumps([len(calls), s.text]), flush=True)
    """)
    kids = [subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT) for _ in range(2)]
    try:
        for k in kids:
            assert k.stdout.readline().strip() == "ready"
        go.touch()
        outs = [k.communicate(timeout=60) for k in kids]
    finally:
        for k in kids:
            k.kill()
    assert all(k.returncode == 0 for k in kids), [e for _, e in outs]
    lines = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert sorted(int(n) for n, _ in lines) == [0, 1]  # one generated, the other waited and read it
    assert lines[0][1] == lines[1][1] == sampling.sample(tiny(), **ARGS).text
