"""Hostile and odd input, driven through the app (AppTest) and the library: each case gives a clear
message or a correct display, never a traceback.

The AppTest fixtures (tiny untrained models in temporary folders, empty caches, one torch thread) and
helpers come from test_app.
"""
import html as htmllib
import io
import json
import math
import pickle
import pickletools
import re
import unicodedata
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ui
from rnnviz import checkpoint
from rnnviz.cli import main as cli_main
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.render import char_label, colored_text, probability_text, top_predictions_html
from rnnviz.sampling import check_temperature, sample
from rnnviz.trace import trace
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, text_of
from test_app import html as page_html

# a quote, so that the default hypothesis ("inside quotes") varies and Neuron search draws its boxes
MARKUP = "He said \"<script>alert('x')</script>\" & <img src=x onerror=alert(1)> <b>bold</b>"
ODD = ("Emoji 😀 family 👨\u200d👩\u200d👧 \"שלום עולם\" \u202eevil\u202c e\u0301 Z\u0324\u0354 "
       "tab\tend\r\nnext line")
BOX = re.compile(r'<div class="rnnviz-text"[^>]*>(.*?)</div>', re.S)
CELL = re.compile(r'<span title="([^"]*)" style="[^"]*">(.*?)</span>', re.S)
TAG = re.compile(r"</?(div|span|br|table|tr|th|td)\b[^<>]*>")


def paste(at, text: str):
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input(text).run()
    return at


def boxes(body: str) -> list[list[str]]:
    """The characters each coloured-text box shows, unescaped (a line end's <br> dropped)."""
    return [[htmllib.unescape(b.removesuffix("<br>")) for _, b in CELL.findall(box)] for box in BOX.findall(body)]


def shown(text: str) -> list[str]:
    """What each character's cell should show: spaces and tabs as themselves, the rest by char_label."""
    return [ch if ch in " \t" else char_label(ch) for ch in text]


def studied(at) -> str:
    return at.session_state["_ctx"].text


def known(at) -> set[str]:
    """The vocabulary of the model under study."""
    return set(at.session_state["_ctx"].model.vocab.chars)


@pytest.fixture
def lstm(request) -> Path:
    """test_app's three tiny shipped models; the folder of the default one, a 2-layer LSTM."""
    return request.getfixturevalue("shipped")[0] / "a-lstm"


# --- text under study ----------------------------------------------------------------------------

# (page, boxes of the text under study): Gates draws one per LSTM gate; Neuron search the hypothesis + 3 units
PAGES = [("activations", 1), ("gates", 4), ("neurons", 4)]


@pytest.mark.parametrize("page,n_boxes", PAGES)
def test_markup_shows_literally(lstm, page, n_boxes):
    at = paste(app(page), MARKUP)
    ok(at)
    body = page_html(at)
    assert "<script" not in body and "<img" not in body and "<b>" not in body
    rest = TAG.sub("", body)
    assert "<" not in rest and ">" not in rest  # each '<' of the text arrives escaped, even alone in its cell
    cells = boxes(body)
    assert len(cells) == n_boxes
    assert all("".join(c) == MARKUP for c in cells)  # every character, in order, unescaped back


def test_markup_prime_on_sample(lstm):
    at = app("sample")
    at.number_input(key="length").set_value(20).run()
    prime = MARKUP + " ☃"
    at.text_area(key="prime").input(prime).run()
    ok(at)
    rest = TAG.sub("", page_html(at))
    assert "<" not in rest and ">" not in rest
    assert "never saw" in text_of(at.info) and "'☃'" in text_of(at.info)
    assert repr(prime[-30:]) in text_of(at.caption)  # 'After reading …<the prime's end>'


@pytest.mark.parametrize("page,n_boxes", PAGES)
def test_empty_and_one_character_text(lstm, page, n_boxes):
    at = paste(app(page), " \n\t ")
    ok(at)
    assert "The pasted text is empty: showing the corpus excerpt instead." in text_of(at.info)
    assert len(studied(at)) == ui.DEFAULT_EXCERPT
    at.text_area(key="pasted_text").input("a").run()
    ok(at)
    assert studied(at) == "a"
    cells = boxes(page_html(at))
    if page == "neurons":  # one character cannot vary: the page says so instead of ranking
        assert "same value on every character" in text_of(at.warning) and not cells
    else:
        assert cells == [["a"]] * n_boxes


def test_ten_megabytes_cut_with_notice(lstm):
    big = ("To be, or not to be: that is the question.\n" * 250_000)[:10 * 2**20]
    at = paste(app("activations"), big)
    ok(at)
    note = (f"The text was cut to its first {ui.MAX_ANALYSIS_CHARS:,} of {len(big):,} characters "
            "for analysis.")
    assert note in text_of(at.info)
    assert studied(at) == big[:ui.MAX_ANALYSIS_CHARS]
    assert f"cut: showing the first 5,000 of {ui.MAX_ANALYSIS_CHARS:,} characters" in page_html(at)
    assert at.slider(key="window_start").max == ui.MAX_ANALYSIS_CHARS - 1  # the traced length
    # the same bytes as a file: one notice, with the file's true length
    at.radio(key="text_source").set_value("Upload a text file").run()
    at.file_uploader(key="text_upload").set_value(("big.txt", big.encode(), "text/plain")).run()
    ok(at)
    assert note in text_of(at.info) and text_of(at.info).count("cut to") == 1
    assert studied(at) == big[:ui.MAX_ANALYSIS_CHARS]


@pytest.mark.parametrize("page,n_cells", [("activations", 5000), ("gates", 120), ("neurons", 1500)])
def test_single_line_of_100k_characters(lstm, page, n_cells):
    line = ('He said "to be" or not, ' * 5000)[:100_000]
    at = paste(app(page), line)
    ok(at)
    assert "cut to its first 20,000 of 100,000 characters" in text_of(at.info)
    assert studied(at) == line[:20_000]
    cells = boxes(page_html(at))
    assert cells and all(c == shown(line[:n_cells]) for c in cells)


@pytest.mark.parametrize("page,n_boxes", PAGES)
def test_emoji_rtl_and_combining_marks(lstm, page, n_boxes):
    at = paste(app(page), ODD)
    ok(at)
    text = ODD.replace("\r\n", "\n")
    assert studied(at) == text
    body = page_html(at)
    # bidi overrides never reach the page raw (they would reorder what follows); they show as a code
    assert "\u202e" not in body and "\u202c" not in body and "\u200d" not in body
    cells = boxes(body)
    assert len(cells) == n_boxes and all(c == shown(text) for c in cells)
    assert {"😀", "\\u202e", "\u25cc\u0301", "ש"} <= set(cells[0])
    unknown = sorted(set(text) - known(at))
    notes = text_of(at.info)
    assert f"{len(unknown)} character(s) the model never saw" in notes
    assert all(repr(c) in notes for c in unknown)


@pytest.mark.parametrize("bad", ["abc\x00def", "".join(map(chr, range(1, 9))) * 20 + "ok"])
def test_nul_and_control_paste_refused(lstm, bad):
    at = paste(app("activations"), bad)
    assert not at.exception
    msg = text_of(at.error)
    assert "The pasted text looks like binary data" in msg and "NUL bytes" in msg
    assert "corpus excerpt is shown instead" in msg and len(studied(at)) == ui.DEFAULT_EXCERPT


def test_unknown_characters_are_named(lstm):
    cjk = "".join(chr(0x4E00 + i) for i in range(40))
    at = paste(app("activations"), "Hello ☃ and ☃ " + cjk)
    ok(at)
    unknown = sorted(set(studied(at)) - known(at))
    assert "☃" in unknown and len(unknown) == 41  # the snowman and the 40 ideographs
    notes = text_of(at.info)
    assert "41 character(s) the model never saw are read as the unknown symbol: " in notes
    assert ", ".join(repr(c) for c in unknown[:30]) + " and 11 more." in notes


def test_pasted_file_name_is_text_not_the_file(lstm, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n" * 100)
    at = paste(app("activations"), str(secret))
    ok(at)
    assert studied(at) == str(secret) and "TOP SECRET" not in page_html(at)
    # the Train page's paste box reads it the same way (it once opened the file on the server)
    got = []
    monkeypatch.setattr(ui, "start_training", lambda name, train, val, *a, **k: got.append(train + val))
    at.switch_page("pages/train_page.py").run()
    at.radio(key="tr_corpus_src").set_value("Paste text").run()
    at.text_area(key="tr_paste").input(str(secret)).run()
    at.button(key="tr_start").click().run()
    ok(at)
    assert got == [str(secret)]


# --- sampling temperature ------------------------------------------------------------------------

@pytest.mark.parametrize("bad,used", [(math.nan, 0.8), (math.inf, 2.0), (-math.inf, 0.0)])
def test_stale_temperature_on_sample_page(lstm, bad, used):
    at = app()
    # a value left in session state (set before the Sample page's slider ever ran) reaches the slider
    # as if code had set it: NaN used to reach sample(), inf broke the slider and left no way out
    at.session_state["temperature"] = bad
    at.run()
    at.switch_page("pages/sample_page.py").run()
    ok(at)
    assert at.slider(key="temperature").value == used
    assert f"Generated at temperature {used:.2f}" in text_of(at.markdown)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_nan_and_inf_temperature_library_and_cli(tmp_path, capsys, bad):
    model = build(sorted(set("hello world\n")), cell="gru", hidden_size=8, num_layers=1, embed_size=4, seed=0)
    with pytest.raises(ConfigError, match="finite number"):
        check_temperature(float(bad))
    with pytest.raises(ConfigError, match="finite number"):
        sample(model, "he", 5, temperature=float(bad))
    path = checkpoint.save(model, tmp_path / "m")
    assert cli_main(["sample", str(path), f"--temperature={bad}", "--length", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: temperature must be a finite number") and "Traceback" not in err


# --- checkpoint uploads --------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a file: proof that something was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def upload(at, files):
    at.file_uploader[0].set_value(files).run()  # the sidebar's uploader: its key changes after each model loads
    assert not at.exception, [e.value for e in at.exception]
    return text_of(at.error)


def as_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def pair(config: bytes, weights: bytes) -> list:
    return [("config.json", config, "application/json"),
            ("model.safetensors", weights, "application/octet-stream")]


def test_pickle_as_safetensors_never_runs(lstm, tmp_path):
    marker = tmp_path / "pwned"
    config = (lstm / "config.json").read_bytes()
    torch_zip = io.BytesIO()
    torch.save({"x": _Payload(marker)}, torch_zip)
    payloads = {"pickle protocol 4": (pickle.dumps(_Payload(marker), protocol=4), "is a pickle"),
                "pickle protocol 0": (pickle.dumps(_Payload(marker), protocol=0), "not a readable safetensors"),
                "torch.save": (torch_zip.getvalue(), "is a pickle or a torch.save zip")}
    at = app()
    for what, (data, reason) in payloads.items():
        for files in (pair(config, data),
                      [("m.zip", as_zip({"m/config.json": config, "m/model.safetensors": data}), "application/zip")]):
            msg = upload(at, files)
            assert "Upload rejected" in msg and reason in msg, (what, msg)
            assert at.selectbox(key="model_choice").value.startswith("shipped:")
    assert not marker.exists()
    for data in (payloads["pickle protocol 4"][0], payloads["pickle protocol 0"][0]):
        assert _calls_on_load(data, "touch")  # the payloads are live: unpickling them would make the file


def _calls_on_load(data: bytes, name: str) -> bool:
    """Whether a pickle calls a global whose name holds `name` when loaded (read, never executed)."""
    ops = list(pickletools.genops(data))
    return any(op.name == "REDUCE" for op, _, _ in ops) and any(
        isinstance(arg, str) and name in arg for _, arg, _ in ops)


def test_truncated_safetensors(lstm):
    config, weights = (lstm / "config.json").read_bytes(), (lstm / "model.safetensors").read_bytes()
    at = app()
    for cut in (0, 7, 20, len(weights) // 2, len(weights) - 1):
        msg = upload(at, pair(config, weights[:cut]))
        assert "Upload rejected: model.safetensors is not a readable safetensors file (truncated or corrupt?)" \
            in msg, (cut, msg)
    assert upload(at, pair(config, weights)) == ""  # the whole file loads
    assert at.selectbox(key="model_choice").value.startswith("mem:")


def test_config_that_does_not_match_the_weights(lstm):
    weights = (lstm / "model.safetensors").read_bytes()
    good = json.loads((lstm / "config.json").read_bytes())
    at = app()
    for field, value, says in (("hidden_size", 32, "has shape"), ("num_layers", 1, "unexpected"),
                               ("embed_size", 9, "has shape")):
        config = json.loads(json.dumps(good))
        config["model"][field] = value
        msg = upload(at, pair(json.dumps(config).encode(), weights))
        assert "Upload rejected: model.safetensors does not match config.json" in msg and says in msg, (field, msg)
    assert at.selectbox(key="model_choice").value.startswith("shipped:")


def test_zip_with_parent_paths_writes_nothing(lstm, tmp_path):
    evil = as_zip({"../../config.json": (lstm / "config.json").read_bytes(),
                   "../model.safetensors": (lstm / "model.safetensors").read_bytes(),
                   "../x": b"boom", "..\\y": b"boom", str(tmp_path / "abs-x"): b"boom"})
    # where an extracting reader would write, from the working folder, the app's folder or the test's
    targets = [base / rel for base in (Path.cwd(), ui.ROOT, tmp_path)
               for rel in ("x", "../x", "../y", "..\\y", "../model.safetensors", "../../config.json")]
    targets.append(tmp_path / "abs-x")
    before = {t: t.exists() for t in targets}
    at = app()
    # refused with a message naming the path; read in memory, so no file lands anywhere
    msg = upload(at, [("evil.zip", evil, "application/zip")])
    assert "Upload rejected: the zip holds a path that leads out of its folder ('../../config.json')" in msg, msg
    assert at.selectbox(key="model_choice").value.startswith("shipped:")
    assert {t: t.exists() for t in targets} == before and not any(before.values())
    assert not uploads_on_disk(at)


def uploads_on_disk(at) -> list[Path]:
    """What the session's uploads left in its temporary folder."""
    tmp = at.session_state["_tmpdir"] if "_tmpdir" in at.session_state else None
    return sorted(Path(tmp).iterdir()) if tmp else []


def test_history_zip_with_a_hostile_snapshot_is_refused(lstm, tmp_path):
    """A checkpoint zip whose history/ holds a pickle, a truncated file or a path out: refused as a whole,
    with the snapshot named; nothing runs, no model is added, nothing stays on disk."""
    marker = tmp_path / "pwned"
    model, _ = checkpoint.load(lstm)
    run = checkpoint.save(model, tmp_path / "run", history=[{"step": s, "tensors": model.state_dict()} for s in (1, 2)])
    members = {f"run/{p.relative_to(run).as_posix()}": p.read_bytes() for p in run.rglob("*") if p.is_file()}
    weights = members["run/history/step-2/model.safetensors"]
    cases = [({"run/history/step-2/model.safetensors": pickle.dumps(_Payload(marker), protocol=4)},
              "the snapshot history/step-2/ cannot be used: model.safetensors is a pickle"),
             ({"run/history/step-2/model.safetensors": weights[:100]},
              "the snapshot history/step-2/ cannot be used: model.safetensors is not a readable safetensors"),
             ({"run/history/../../step-3/config.json": b"{}"}, "the zip holds a path that leads out of its folder")]
    at = app()
    for change, says in cases:
        msg = upload(at, [("run.zip", as_zip({**members, **change}), "application/zip")])
        assert f"Upload rejected: {says}" in msg, msg
        assert at.selectbox(key="model_choice").value.startswith("shipped:") and not at.session_state["mem_models"]
        assert not uploads_on_disk(at)
    assert not marker.exists()
    assert upload(at, [("run.zip", as_zip(members), "application/zip")]) == ""  # the whole zip loads
    assert [p.name for p in uploads_on_disk(at)] == ["upload-1-run"]

def test_empty_and_binary_files_as_corpus(lstm):
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(range(32)) * 8  # valid UTF-8, but NUL bytes and controls
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    at = app("activations")
    at.radio(key="text_source").set_value("Upload a text file").run()
    at.file_uploader(key="text_upload").set_value(("empty.txt", b"", "text/plain")).run()
    assert not at.exception and "empty.txt is empty (or only whitespace)" in text_of(at.error)
    at.file_uploader(key="text_upload").set_value(("prog.bin", elf, "application/octet-stream")).run()
    assert not at.exception and "prog.bin looks like binary data, not text" in text_of(at.error)
    at.file_uploader(key="text_upload").set_value(("pic.png", png, "image/png")).run()
    assert not at.exception and "pic.png is not UTF-8 text (bad byte 0x89 at offset 0)" in text_of(at.error)
    assert len(studied(at)) == ui.DEFAULT_EXCERPT  # the excerpt stands in
    # as a training corpus: refused before any run starts
    at.switch_page("pages/train_page.py").run()
    at.radio(key="tr_corpus_src").set_value("Upload a .txt file").run()
    at.file_uploader(key="tr_upload").set_value(("corpus.txt", elf, "text/plain")).run()
    at.button(key="tr_start").click().run()
    assert not at.exception and "corpus.txt looks like binary data" in text_of(at.error)
    assert at.session_state["train_jobs"] == []


# --- fuzzing: text -> trace -> render ------------------------------------------------------------

FUZZ_MODEL = build(sorted(set("abc <>&\"'\n\t")), cell="lstm", hidden_size=8, num_layers=1, embed_size=4, seed=0)
NASTY = ["<", ">", "&", '"', "'", "\x00", "\r", "\n", "\t", "\u202e", "\u200f", "\u0301", "\u20dd", "😀",
         "\ud800", "\udfff", "\ufeff", "\u2028", "\ufffd", "&lt;", "<script>"]
INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi marks, surrogates, unassigned, separators
CHARS = st.one_of(st.characters(codec=None, exclude_categories=()),  # every category, surrogates too
                  st.characters(categories=[*INVISIBLE, "Mn", "Me"]),  # the odd ones, more often
                  st.sampled_from([c for c in NASTY if len(c) == 1]))
TEXTS = st.one_of(st.text(CHARS, min_size=1, max_size=80),
                  st.lists(st.sampled_from(NASTY), min_size=1, max_size=20).map("".join))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_fuzz_text_trace_render(text):
    tr = trace(FUZZ_MODEL, text)
    assert len(tr) == len(text) and tr.text == text
    coloured = [colored_text(tr.text, tr.get(0, "h")[:, 0], label="L0 h0"),
                probability_text(tr.text, tr.top_probs[:, 0])]
    table = top_predictions_html(tr, 0, len(text), k=3)
    for out in [*coloured, table]:
        out.encode("utf-8")  # sendable to a browser, even for lone surrogates
        rest = TAG.sub("", out)
        assert "<" not in rest and ">" not in rest  # no markup but our own tags
        # no raw control, bidi mark or surrogate (a tab is shown as itself: the box keeps white space)
        assert not any(unicodedata.category(c) in INVISIBLE for c in rest.replace("\t", ""))
    for out in coloured:  # one cell per character, in order, its tooltip naming position and character
        spans = CELL.findall(out)
        assert [htmllib.unescape(b.removesuffix("<br>")) for _, b in spans] == shown(text)
        assert all(htmllib.unescape(t).startswith(f"#{i} '{char_label(c)}' ")
                   for i, ((t, _), c) in enumerate(zip(spans, text)))
    heads = re.findall(r"<th [^>]*>(.*?)</th>", table)
    assert [htmllib.unescape(x) for x in heads] == [char_label(c) for c in text]


# --- imported models (issue 29): each bad file one clear line; nothing written, the session's models kept

def _npz(**arrays) -> bytes:
    import numpy as np
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _minchar(V=5, H=4, **change) -> bytes:
    import numpy as np
    w = {"Wxh": np.zeros((H, V)), "Whh": np.zeros((H, H)), "Why": np.zeros((V, H)), "bh": np.zeros((H, 1)),
         "by": np.zeros((V, 1)), "chars": np.array(list("abcdefgh"[:V]))}
    return _npz(**{**w, **change})


def _hostile_imports(marker: Path) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, what the one line says) for each bad model file."""
    import numpy as np
    pickled, module = io.BytesIO(), io.BytesIO()
    torch.save({"x": _Payload(marker)}, pickled)
    torch.save(torch.nn.Linear(2, 2), module)  # the whole module, not its state dict
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Wxh.npy", bytes(3 * 2**20))  # 3 MB of zeros in a few kB; the limit is lowered to 1 MB below
    return [("evil.pt", pickled.getvalue(), "evil.pt holds pickled Python objects, not only weights"),
            ("model.pt", module.getvalue(), "model.pt holds pickled Python objects, not only weights (it names "
                                            "torch.nn.modules.linear.Linear)"),
            ("shapes.npz", _minchar(Whh=np.zeros((4, 5))), "the shapes do not fit together: Wxh (4, 5) is (H, V), "
                                                            "so Whh must be (4, 4)"),
            ("vocab.npz", _minchar(chars=np.array(list("abc"))),
             "the vocabulary has 3 characters but the model's weights predict 5"),
            ("bomb.npz", bomb.getvalue(), "bomb.npz would unpack to 3 MB (a zip bomb?)"),
            ("forged.npz", _zip({"Wxh.npy": header.getvalue()}), "forged.npz: the array Wxh.npy claims (1000000000,) of float64"),
            ("notes.npz", b"just text", "notes.npz is not a readable .npz file"),
            ("data.h5", _hdf5({"x": np.zeros(3)}), "data.h5 is an HDF5 file but not a Keras model"),
            ("code.keras", _keras([{"class_name": "Lambda", "config": {"name": "lambda", "function": "4wEA"}}]),
             "layer 'lambda' is a Lambda, which rnnviz does not read"),
            ("bi.keras", _keras([{"class_name": "Bidirectional", "config": {"name": "bi", "layer": {
                "class_name": "LSTM", "config": {"units": 4}}}}]), "layer 'bi' is a Bidirectional"),
            ("conv.keras", _keras([{"class_name": "Conv1D", "config": {"name": "conv", "filters": 4,
                                                                       "kernel_size": 3}}]),
             "layer 'conv' is a Conv1D, which rnnviz does not read")]


def _hdf5(datasets: dict) -> bytes:
    import h5py
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return buf.getvalue()


def _keras(layers: list[dict]) -> bytes:
    """A Keras 3 .keras zip: an Embedding, then `layers` (as Keras writes their JSON), no weights needed."""
    embedding = {"class_name": "Embedding", "config": {"name": "embedding", "input_dim": 5, "output_dim": 3}}
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [embedding, *layers]}}
    return as_zip({"config.json": json.dumps(config).encode(), "metadata.json": b'{"keras_version": "3.5.0"}',
                   "model.weights.h5": _hdf5({})})


def _zip(members: dict[str, bytes]) -> bytes:
    return as_zip(members)


def test_hostile_model_files_to_import(shipped, tmp_path, monkeypatch, capsys):
    from rnnviz.interop import minchar
    monkeypatch.setattr(minchar, "MAX_NPZ_BYTES", 2**20)
    marker = tmp_path / "pwned"
    at = app()
    assert upload(at, [("good.npz", _minchar(), "application/zip")]) == ""
    good = uploads_on_disk(at)
    assert [p.name for p in good] == ["upload-1-good"]
    kept = {p: p.read_bytes() for p in good[0].rglob("*") if p.is_file()}
    for name, data, says in _hostile_imports(marker):
        msg = upload(at, [(name, data, "application/octet-stream")])
        assert f"Upload rejected: {says}" in msg, (name, msg)
        assert at.selectbox(key="model_choice").value == "mem:1" and list(at.session_state["mem_models"]) == ["mem:1"]
        assert uploads_on_disk(at) == good and {p: p.read_bytes() for p in kept} == kept, name
        (tmp_path / name).write_bytes(data)  # the CLI: the same one line, and no folder
        assert cli_main(["import", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {says}") and err.count("\n") == 1 and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()
    assert not marker.exists()
    # a 2 GB file: the uploader states its limit (the browser refuses larger files before sending them),
    # and the library refuses by size without reading a byte (a sparse file)
    uploader = at.file_uploader[0].proto
    assert uploader.max_upload_size_mb == 50 and "At most 50 MB per file" in uploader.help
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(2 * 2**30)
    assert cli_main(["import", str(huge), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == "error: huge.pt is 2,048 MB; rnnviz imports models of at most 512 MB\n"
    assert not (tmp_path / "out").exists()
