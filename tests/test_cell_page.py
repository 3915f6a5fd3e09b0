"""Inside the cell: the diagram's builders, its words, and the page through AppTest.

The numbers written on the page's diagram are read back from the figure (each value's annotation is
named by its key) and compared with rnnviz.anatomy.cell_step, which retraces the text itself up to the
position (tests/test_anatomy.py checks cell_step against the step-by-step numpy cell). Tiny untrained
models as in test_app, and the shipped python-lstm for the view the page opens on.
"""
import base64
import html
import plotly.io
import re

import numpy as np
import pytest

from rnnviz import anatomy, checkpoint, lesson, plots
from rnnviz.anatomy import VALUE_NAMES
from rnnviz.model import build
from rnnviz.plots.anatomy import REQUIRED, WIRE_SCALE, wire_color
from rnnviz.trace import trace
from conftest import ROOT
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, choose, ok, save_tiny

TEXT = 'KING: "Speak," said he, "and then be still."\nQUEEN: Not I.\n'
NUMBER = re.compile(r"= ([+-]?\d+\.\d+)")


# --- the builders, on numbers of our own ------------------------------------------------------------

def written(fig) -> dict[str, float]:
    """The values written on a diagram: annotation name -> the number after '='."""
    return {a.name: float(NUMBER.search(a.text).group(1)) for a in fig.layout.annotations if a.name}


def rgb(color: str) -> tuple[int, ...]:
    return tuple(round(float(c)) for c in re.findall(r"[\d.]+", color))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_diagram_writes_every_value_on_its_wire_coloured_by_it(cell):
    rng = np.random.default_rng(0)
    values = {k: float(v) for k, v in zip(REQUIRED[cell], rng.uniform(-3, 3, len(REQUIRED[cell])))}
    fig = plots.cell_diagram(cell, values, "q")
    shown = written(plotly.io.from_json(fig.to_json()))  # as the browser gets it
    assert set(shown) == set(VALUE_NAMES[cell])  # every quantity of the library's step, once
    for k, v in values.items():
        assert shown[k] == pytest.approx(round(v, 3), abs=1e-9), k
    # each wire is coloured by the value it carries; its hover names that value to more digits
    wires = [tr for tr in fig.data if tr.mode == "lines" and tr.name != "bus"]
    assert {tr.name for tr in wires} >= set(values)
    for tr in wires:
        v = 1 - values["z"] if tr.name == "one_minus_z" else values[tr.name]
        assert tr.line.color == wire_color(v), tr.name
        assert f"= {v:+.5f}" in tr.hovertemplate, tr.name
    # the scale: clipped at its ends, red for positive, blue for negative, grey (not white) at zero
    assert rgb(wire_color(-5)) == rgb(WIRE_SCALE[0][1]) and rgb(wire_color(5)) == rgb(WIRE_SCALE[-1][1])
    red, blue, grey = rgb(wire_color(0.4)), rgb(wire_color(-0.4)), rgb(wire_color(0.0))
    assert red[0] > red[2] and blue[2] > blue[0] and grey == (200, 200, 200)
    with pytest.raises(Exception, match="needs"):
        plots.cell_diagram(cell, {}, "q")


def test_strip_bars_and_window_show_the_step():
    strip = plots.text_strip("abcdef", 10, 13)
    assert list(strip.data[0].x) == [10, 11, 12, 13, 14, 15]  # a click gives the position in the whole text
    box = strip.layout.shapes[0]
    assert (box.x0, box.x1) == (12.5, 13.5)  # the outline is the character at pos, one character wide
    preact = {"i": {"input": 0.5, "recurrent": -1.25, "bias": 0.125}, "f": {"input": 2.0, "recurrent": 0.0, "bias": 1.0}}
    bars = plots.preact_bars(preact, {"i": 0.3, "f": 0.95})
    assert [list(b.x) for b in bars.data] == [[0.5, -1.25, 0.125], [2.0, 0.0, 1.0]]
    titles = [a.text for a in bars.layout.annotations]
    assert "sum -0.625" in titles[0] and "σ = +0.300" in titles[0] and "sum +3.000" in titles[1]


# --- the words ------------------------------------------------------------------------------------------

def test_cell_opening_is_an_opening_quote():
    code = 'x = 1\ny = f"ab" + \'c\'\n'
    assert lesson.cell_opening(code, "inside a string (tokenize)") == code.index('"')  # the quote, not the f
    assert lesson.cell_opening(TEXT, "inside quotes") == TEXT.index('"')
    assert lesson.cell_opening("no quotes here", "inside quotes") == 0
    assert lesson.cell_opening("abcABCabc", "custom regex", np.array([0, 0, 0, 1, 1, 1, 0, 0, 0])) == 3
    assert lesson.cell_opening("abc", "custom regex") == 0  # no labels for a name it does not know


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_describe_step_states_the_steps_own_numbers(vocab, cell):
    model = build(vocab, cell=cell, hidden_size=8, num_layers=1, embed_size=4, seed=1)
    s = anatomy.cell_step(model, TEXT, 7, 0, 3)
    words = lesson.describe_step(s)
    assert "#7" in words and repr(TEXT[7]) in words
    for k in {"lstm": ("c_prev", "f_c_prev", "i_g", "c", "tanh_c", "h"), "gru": ("h_prev", "z_h_prev", "n", "h"),
              "rnn": ("pre", "h")}[cell]:
        assert f"{s.values[k]:+.3f}" in words, k
    if cell == "lstm":
        assert f"f = {s.values['f']:.3f} keeps {s.values['f']:.0%}" in words or "99%" in words or "1%" in words


# --- the page -------------------------------------------------------------------------------------------

def arr(v) -> np.ndarray:
    """An array of a figure as sent: plotly 6 sends numpy arrays as base64 ("bdata") with their dtype."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return out.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else out
    return np.asarray(v)


def chart(at, key: str):
    """The figure of the plotly chart with this key, as the page sent it."""
    found = [c for c in at.get("plotly_chart") if key in c.proto.id]
    assert len(found) == 1, key
    return plotly.io.from_json(found[0].proto.spec)


def paste(at, text: str):
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input(text).run()
    return at


def shows_the_step(at, model) -> anatomy.CellStep:
    """The diagram and the bars show anatomy.cell_step's numbers for the layer, unit and position on screen."""
    ok(at)
    ss = at.session_state
    step = anatomy.cell_step(model, TEXT, int(ss["cell_pos"]), int(ss["layer"]), int(ss["unit"]))
    shown = written(chart(at, "cell_diagram"))
    assert set(shown) == set(VALUE_NAMES[model.cell])
    for k, v in step.values.items():
        assert shown[k] == pytest.approx(v, abs=5.1e-4), k
    bars = chart(at, "cell_bars").data
    assert len(bars) == len(step.preact)
    for b, (gate, parts) in zip(bars, step.preact.items()):
        assert list(arr(b.x)) == pytest.approx([parts["input"], parts["recurrent"], parts["bias"]], abs=1e-6), gate
    page_html = "\n".join(h.proto.body for h in at.get("html"))
    assert html.escape(lesson.describe_step(step)) in page_html  # the step in words, under the diagram
    return step


@pytest.mark.slow
def test_lstm_steps_plays_and_follows_a_contributor(shipped):
    pre, _ = shipped
    model = checkpoint.load(pre / "a-lstm")[0]
    at = paste(app("cell"), TEXT)
    at.session_state["cell_pos"] = 9
    at.run()
    assert at.session_state["cell_pos"] == 9  # a position set with the text is kept
    shows_the_step(at, model)
    at.button(key="cell_next").click().run()
    assert at.session_state["cell_pos"] == 10
    shows_the_step(at, model)
    at.button(key="cell_back").click().run()
    at.button(key="cell_back").click().run()
    assert at.session_state["cell_pos"] == 8
    at.slider(key="cell_pos").set_value(20).run()
    step = shows_the_step(at, model)
    # play: a character per run while it plays; Stop holds the position
    at.button(key="cell_play").click().run()
    assert at.session_state["cell_playing"] and at.session_state["cell_pos"] == 21
    at.run()
    assert at.session_state["cell_pos"] == 22
    at.session_state["_cell_tick"] = 0.0  # no play move for long: the page was left while playing
    at.run()
    assert not at.session_state["cell_playing"] and at.session_state["cell_pos"] == 22  # back: it does not play on
    at.button(key="cell_play").click().run()
    assert at.session_state["cell_pos"] == 23
    at.button(key="cell_stop").click().run()
    at.run()
    assert not at.session_state["cell_playing"] and at.session_state["cell_pos"] == 23
    shows_the_step(at, model)
    # a contributor opens that unit here, one step back, and the diagram is its step
    step = shows_the_step(at, model)
    j, value = step.contributors["f"][0]
    assert any(b.label == f"unit {j}: {value:+.3f}" for b in at.button if b.key == "cell_from_f_0")
    at.button(key="cell_from_f_0").click().run()
    assert (at.session_state["unit"], at.session_state["cell_pos"], at.session_state["layer"]) == (j, 22, step.layer)
    shows_the_step(at, model)
    assert f"unit {j} at #22" in chart(at, "cell_diagram").layout.title.text
    # the window under it: the unit's own c and h around the position, and the strip outlines it
    win = chart(at, "cell_window").data
    tr = trace(model, TEXT)
    x = arr(win[0].x)
    assert x[0] <= 22 <= x[-1] and list(x) == list(range(x[0], x[-1] + 1))
    for line, kind in zip(win[:2], ("c", "h")):
        assert line.name == f"{kind}{j}" and list(arr(line.y)) == pytest.approx(tr.get(step.layer, kind)[x, j], abs=1e-6)
    assert chart(at, "cell_strip").layout.shapes[0].x0 == 21.5


@pytest.mark.slow
def test_gru_rnn_and_an_uploaded_model(shipped, vocab, tmp_path):
    pre, _ = shipped
    at = paste(app("cell"), TEXT)
    for name in ("b-gru", "c-rnn"):
        choose(at, pre / name)
        at.session_state["cell_pos"] = 30
        at.run()
        shows_the_step(at, checkpoint.load(pre / name)[0])
    mine = save_tiny(tmp_path, "mine", vocab, "lstm", layers=1)
    at.file_uploader[0].set_value([("mine.zip", checkpoint.to_zip(mine), "application/zip")]).run()
    assert at.selectbox(key="model_choice").value == "mem:1"
    at.session_state["cell_pos"] = 12
    at.run()
    shows_the_step(at, checkpoint.load(mine)[0])


@pytest.mark.slow
def test_bad_and_tiny_texts_give_messages_not_tracebacks(shipped):
    at = app("cell")
    ok(at)
    paste(at, "bad\x00text")
    assert not at.exception
    assert any("binary" in e.value.lower() or "nul" in e.value.lower() for e in at.error), [e.value for e in at.error]
    paste(at, "ℵ")  # one character, never seen by the model: position 0, the zero state
    ok(at)
    assert at.session_state["cell_pos"] == 0
    assert "zero state" in "\n".join(c.value for c in at.caption)
    at.session_state["cell_pos"] = 10_000  # a position left from a longer text
    at.run()
    ok(at)
    assert at.session_state["cell_pos"] == 0


PYTHON_LSTM = ROOT / "pretrained" / "python-lstm"


@pytest.mark.slow
@pytest.mark.skipif(not PYTHON_LSTM.exists(), reason="the shipped python-lstm is not here")
def test_python_lstm_opens_on_the_quote_cell_at_an_opening_quote(monkeypatch, tmp_path):
    """The default view tells the story: the quote cell (the tour's unit) at an opening quote of its excerpt."""
    from rnnviz.tour import QUOTE_UNIT

    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(ROOT / "pretrained"))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path))
    at = app()
    choose(at, ROOT / "pretrained" / "python-lstm")
    at.switch_page("pages/cell_page.py").run()
    ok(at)
    ss = at.session_state
    assert (ss["layer"], ss["unit"]) == (QUOTE_UNIT[0], QUOTE_UNIT[2])
    text = ss["_ctx"].text
    assert text[ss["cell_pos"]] in "'\""
    assert "inside a string" in "\n".join(c.value for c in at.caption)  # the page says why this unit


@pytest.mark.slow
def test_links_from_activations_gates_and_neuron_search_carry_unit_and_position(shipped):
    at = paste(app("activations"), TEXT)
    at.session_state["layer"], at.session_state["unit"] = 0, 5
    at.run()
    hypothesis = at.session_state["hypothesis"]
    at.button(key="act_to_cell").click().run()
    ok(at)
    ss = at.session_state
    assert (ss["layer"], ss["unit"], ss["cell_pos"]) == (0, 5, lesson.cell_opening(TEXT, hypothesis))
    assert "unit 5 at #" in chart(at, "cell_diagram").layout.title.text  # the cell page, drawing that unit
    at.switch_page("pages/gates_page.py").run()
    at.session_state["gate_window"], at.session_state["unit"] = 7, 3
    at.run()
    at.button(key="gates_to_cell").click().run()
    ok(at)
    assert (ss["layer"], ss["unit"], ss["cell_pos"]) == (0, 3, 7)
    assert "unit 3 at #7 " in chart(at, "cell_diagram").layout.title.text
    at.switch_page("pages/neurons_page.py").run()
    at.selectbox(key="hypothesis").set_value("inside quotes").run()
    best = next(re.search(r"layer (\d+) [hc](\d+)", m.value) for m in at.markdown if m.value.startswith("**#1"))
    at.button(key="cell_0").click().run()  # the best unit, where the quote opens
    ok(at)
    assert (ss["layer"], ss["unit"], ss["cell_pos"]) == (int(best.group(1)), int(best.group(2)), TEXT.index('"'))
    assert f"unit {ss['unit']} at #{TEXT.index(chr(34))} " in chart(at, "cell_diagram").layout.title.text
