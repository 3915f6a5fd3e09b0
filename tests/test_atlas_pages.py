"""The atlas pages through AppTest: build (and cancel) in the background, the map, a unit's dashboard,
select-and-match; never an atlas of another model."""
import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rnnviz import checkpoint
from rnnviz.corpora import corpus_meta, quotes_task
from rnnviz.model import build
from rnnviz.vocab import Vocab

TIMEOUT = 120
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch):
    st.cache_data.clear()
    st.cache_resource.clear()
    pre = tmp_path / "pretrained"
    corpus = quotes_task(20_000, seed=0)
    text = corpus.text
    for name, cell, seed in (("shakespeare-lstm", "lstm", 0), ("other-gru", "gru", 1)):
        model = build(Vocab.from_text(text), cell=cell, hidden_size=12, num_layers=2, embed_size=6, seed=seed)
        # the generator's held-out split (2,000 characters) is the default atlas corpus: a quick build
        checkpoint.save(model, pre / name, meta={"corpus": corpus_meta(corpus, 0.1)})
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "atlas"))
    yield pre
    st.cache_data.clear()
    st.cache_resource.clear()


def app(page: str) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"pages/{page}_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def built(at: AppTest, corpus: str | None = None) -> AppTest:
    """Choose a corpus (default: the held-out split), press Build, and rerun until the atlas is ready."""
    if corpus:
        at.selectbox(key="atlas_corpus").set_value(corpus).run()
    if [b for b in at.button if b.key == "atlas_build"]:
        at.button(key="atlas_build").click().run()
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not at.get("plotly_chart") and not at.warning:
        time.sleep(0.5)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_atlas_map_lists_every_unit(folders):
    at = app("atlas")
    assert "No atlas yet" in "\n".join(i.value for i in at.info)
    built(at)
    import json
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert fig["data"] and all(t["type"] == "scatter" for t in fig["data"])
    at.slider(key="atlas_min_score").set_value(0.0).run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    points = sum(len(t["customdata"]) for t in fig["data"])  # x, y may come as typed arrays
    table = at.dataframe[0].value
    assert points == len(table) and len(table) <= 2 * 2 * 12  # 2 layers x (h, c) x 12 units
    assert {"label", "score", "tau"} <= set(table.columns)
    best = at.dataframe[1].value
    assert {"hypothesis", "positives", "spans", "flagged"} <= set(best.columns)


def test_dashboard_and_its_links(folders):
    at = built(app("unit"))
    html = "\n".join(h.proto.body for h in at.get("html"))
    assert html.count("outline") >= 8, "every top and bottom context marks its peak"
    md = "\n".join(m.value for m in at.markdown)
    assert "### Layer 1, h0" in md and "τ = −1/ln" in md
    assert "raises the logits of" in html  # a top-layer h unit: its column of the output layer
    at.button(key="unit_ablate").click().run()
    deadline = time.time() + TIMEOUT  # the ablation runs in the background
    while time.time() < deadline and not any("nats/char" in m.value for m in at.markdown):
        time.sleep(0.5)
        at.run()
    md = "\n".join(m.value for m in at.markdown)
    assert "nats/char" in md and "on the 1% of characters" in md
    at.button(key="unit_to_clamp").click().run()
    assert at.title[0].value == "Sample" and at.session_state["clamp_on"] is True


def test_match_finds_spans_or_says_why(folders):
    at = built(app("match"))
    ok = [m.value for m in at.markdown if "units selected" in m.value]
    warned = [w.value for w in at.warning]
    assert ok or warned
    at.slider(key="match_span").set_value((5, 6)).run()
    assert any("at least two characters" in w.value for w in at.warning)
    at.slider(key="match_span").set_value((5, 20)).run()
    at.slider(key="match_threshold").set_value(-1.0).run()
    assert any("every unit" in w.value for w in at.warning)


def test_cancel_saves_nothing_and_another_model_gets_its_own_atlas(folders, tmp_path):
    at = app("atlas")
    at.selectbox(key="atlas_corpus").set_value("python").run()  # a large corpus: time to cancel
    at.button(key="atlas_build").click().run()
    from ui import atlas as atlas_ui
    jobs = list(atlas_ui._server()["jobs"].values())
    assert jobs and jobs[0].running
    jobs[0].stop()
    jobs[0].join(60)
    at.run()
    assert not list((tmp_path / "atlas").glob("*/meta.json")), "a cancelled build leaves no cache entry"
    built(at, "held-out split")
    assert at.get("plotly_chart") and len(list((tmp_path / "atlas").glob("*/meta.json"))) == 1  # what a build leaves
    at.selectbox(key="model_choice").set_value(f"shipped:{folders / 'other-gru'}").run()
    assert not at.get("plotly_chart") and "No atlas yet" in "\n".join(i.value for i in at.info)


def test_neuron_search_and_activations_over_the_atlas_corpus(folders):
    at = app("neurons")
    at.radio(key="rank_over").set_value("the atlas corpus").run()
    assert "No atlas of" in "\n".join(i.value for i in at.info)
    at.switch_page("pages/atlas_page.py").run()
    built(at)
    at.switch_page("pages/neurons_page.py").run()
    at.radio(key="rank_over").set_value("the atlas corpus").run()
    assert not at.exception
    md = "\n".join(m.value for m in at.markdown)
    assert "Over **2,000 characters**" in md and "#1: layer" in md
    table = at.dataframe[0].value
    assert len(table) == 2 * 2 * 12 and list(table.score) == sorted(table.score, reverse=True)
    at.button(key="dash_0").click().run()
    assert at.title[0].value == "Unit dashboard"
    first = table.iloc[0]
    assert (at.session_state["layer"], at.session_state["kind"], at.session_state["unit"]) == \
        (int(first.layer), first.kind, int(first.unit))
    at.switch_page("pages/activations_page.py").run()
    at.toggle(key="act_over_atlas").set_value(True).run()
    assert not at.exception and not at.error
    assert any("from the atlas's int8 states" in c.value for c in at.caption)


def test_sessions_share_one_atlas(folders):
    """Two sessions on the same model and corpus: one build, one Atlas object for the server."""
    from ui import atlas as atlas_ui
    first = built(app("atlas"))
    second = app("atlas")
    assert second.get("plotly_chart"), "the second session finds the first one's atlas, with no build"
    assert not [b for b in second.button if b.key == "atlas_build"]
    server = atlas_ui._server()
    assert len(server["atlases"]) == 1 and len(server["jobs"]) == 1
    assert first.get("plotly_chart")


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="atlas_upload_file").set_value((name, data, "text/plain")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_uploaded_corpus_file_gets_its_own_atlas_keyed_by_content(folders, tmp_path):
    """Researcher 3: a corpus file on the atlas page (UTF-8, at most MAX_CHARS, said on screen); bad files
    get a clear message; two files of one name get two atlases, each over its own text."""
    from rnnviz import atlas as A
    from ui import atlas as atlas_ui
    # a researcher's own model: the corpus it trained on is not on this machine
    text = quotes_task(3000, seed=4).text
    own = build(Vocab.from_text(text), cell="lstm", hidden_size=8, num_layers=1, embed_size=6, seed=2)
    checkpoint.save(own, folders / "own-lstm", meta={"corpus": {"name": "nowhere.txt"}})
    at = app("atlas")
    at.selectbox(key="model_choice").set_value(f"shipped:{folders / 'own-lstm'}").run()
    info = "\n".join(i.value for i in at.info)
    assert "not on this machine" in info and "upload a corpus file" in info
    at.selectbox(key="atlas_corpus").set_value(atlas_ui.UPLOAD).run()
    uploader = at.file_uploader(key="atlas_upload_file")
    assert f"at most {A.MAX_CHARS:,} characters" in uploader.label
    assert "Upload a corpus file above" in "\n".join(i.value for i in at.info)
    at.switch_page("pages/neurons_page.py").run()  # another page over the atlas corpus, before any upload
    at.radio(key="rank_over").set_value("the atlas corpus").run()
    assert not at.exception and any("no corpus file is uploaded yet" in e.value for e in at.error)
    at.switch_page("pages/atlas_page.py").run()
    for name, data, says in (("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "UTF-8"),
                             ("empty.txt", b"", "empty"),
                             ("big.txt", b"ab" * (A.MAX_CHARS // 2) + b"c", f"{A.MAX_CHARS + 1:,} characters"),
                             ("huge.txt", b"a" * (4 * A.MAX_CHARS + 1), "MB")):
        _upload(at, name, data)
        errors = "\n".join(e.value for e in at.error)
        assert "Upload refused" in errors and says in errors and name in errors, errors
        assert not [b for b in at.button if b.key == "atlas_build"]
    first, second = quotes_task(1500, seed=5).text, quotes_task(1700, seed=6).text
    assert first != second
    _upload(at, "mine.txt", first.encode())
    assert not at.error and "1,500 characters" in "\n".join(c.value for c in at.caption)
    built(at)
    server = atlas_ui._server()
    assert [a.text for a in server["atlases"].values()] == [first]
    _upload(at, "mine.txt", second.encode())  # the same name, other content: not the first one's atlas
    assert not at.get("plotly_chart") and "No atlas yet" in "\n".join(i.value for i in at.info)
    built(at)
    assert sorted(a.text for a in server["atlases"].values()) == sorted([first, second])
    assert len(list((tmp_path / "atlas").glob("*/meta.json"))) == 2
    assert any("over mine.txt (1,700 characters" in c.value for c in at.caption)
    third = quotes_task(800, seed=7).text
    _upload(at, "python", third.encode())  # a file named like a built-in corpus is still the file
    built(at)
    assert third in [a.text for a in server["atlases"].values()]
    _upload(at, "mine.txt", second.encode())
    at.switch_page("pages/unit_page.py").run()  # the upload stays with the session, not with the uploader
    assert not at.exception and at.title[0].value == "Unit dashboard"
    assert any("over mine.txt (1,700 characters" in c.value for c in at.caption), [i.value for i in at.info]
    assert not [i.value for i in at.info if "atlas" in i.value.lower()]


@pytest.fixture
def deferred(monkeypatch):
    """file id -> the callable a deferred download button registered: what a click in the browser runs."""
    from streamlit.runtime.media_file_manager import MediaFileManager
    seen = {}
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        seen[file_id] = data_callable
        return file_id
    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return seen


def _lstmvis_download(at: AppTest, deferred: dict) -> tuple[str, dict]:
    """The LSTMVis button's label and its zip's files: {name: bytes}."""
    import io
    import zipfile
    (button,) = [b for b in at.get("download_button") if b.proto.id.endswith("atlas_lstmvis")]
    data = deferred[button.proto.deferred_file_id]()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return button.proto.label, {n: z.read(n) for n in z.namelist()}


def _h5(data: bytes) -> dict:
    import io

    import h5py
    with h5py.File(io.BytesIO(data), "r") as f:
        return {k: f[k][()] for k in f}


def test_lstmvis_export_downloads_from_the_atlas_page(folders, deferred, monkeypatch):
    """Researcher 8: the LSTMVis files as one zip on the atlas page; its HDF5 holds the atlas's states."""
    import json

    import numpy as np
    from ui import atlas as atlas_ui
    at = built(app("atlas"))
    (atlas,) = atlas_ui._server()["atlases"].values()
    model, _ = checkpoint.load(folders / "shakespeare-lstm")
    label, files = _lstmvis_download(at, deferred)
    assert sorted(files) == ["lstmvis/lstm.yml", "lstmvis/states.h5", "lstmvis/train.h5", "lstmvis/words.dict"]
    states = _h5(files["lstmvis/states.h5"])
    T = len(atlas)
    assert set(states) == {"states1", "output1", "states2", "output2"}
    for l in range(2):  # an independent reading: the cached atlas loaded afresh from disk
        fresh = __import__("rnnviz.atlas", fromlist=["load"]).load(atlas.path)
        np.testing.assert_array_equal(states[f"states{l + 1}"], fresh.states(l, "c"))
        np.testing.assert_array_equal(states[f"output{l + 1}"], fresh.states(l, "h"))
        assert states[f"output{l + 1}"].shape == (T, 12) and states[f"output{l + 1}"].dtype == np.float32
    ids = _h5(files["lstmvis/train.h5"])["word_ids"]
    assert "".join(model.vocab.chars[i] for i in ids) == atlas.text
    config = json.loads(files["lstmvis/lstm.yml"])
    assert {t["path"] for t in config["states"]["types"]} == set(states)
    size = T * (2 * 2 * 12 * 4 + 8)
    assert f"({size / 2**20:,.1f} MB before compression)" in label
    md = "\n".join(m.value for m in at.markdown)
    assert f"Characters 0 to {T:,} of the atlas corpus" in md and "`states{l}` (the cell state c)" in md
    # an atlas larger than a download holds: a window of it, from the chosen first character
    per_char = 2 * 2 * 12 * 4 + 8
    n = 500
    monkeypatch.setattr(atlas_ui, "LSTMVIS_MAX_BYTES", n * per_char + per_char // 2)
    at.run()
    at.number_input(key="atlas_lstmvis_start").set_value(100).run()
    label, files = _lstmvis_download(at, deferred)
    states = _h5(files["lstmvis/states.h5"])
    np.testing.assert_array_equal(states["output2"], atlas.states(1, "h", 100, 100 + n))
    ids = _h5(files["lstmvis/train.h5"])["word_ids"]
    assert "".join(model.vocab.chars[i] for i in ids) == atlas.text[100:100 + n]
    assert f"Characters 100 to {100 + n:,}" in "\n".join(m.value for m in at.markdown)
    assert any("--export-lstmvis" in c.value for c in at.caption)
