"""How it was computed (AppTest): python-lstm's closing-quote story with the numbers rnnviz.circuits measures,
another target, the intervene box, a GRU and an RNN, bad input, the links from Why this character? and from the
unit dashboard; and the figure builders against a hand-made circuit."""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rnnviz import checkpoint, circuits
from rnnviz.corpora import corpus_meta, quotes_task
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.plots.circuits import circuit_graph, circuit_rows, intervention_bars
from rnnviz.vocab import Vocab
from test_app import clean_caches, folders, one_thread, save_tiny, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, text_of

ROOT = Path(__file__).resolve().parents[1]
MAX_CHARS = 5000


def _ctx(at):
    return at.session_state["_ctx"]


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _node_hovers(fig: dict) -> dict[int, str]:
    """Node index -> its hover text, from the traces that carry a node's customdata."""
    out = {}
    for tr in fig["data"]:
        for cd, hover in zip(tr.get("customdata") or [], tr.get("hovertext") or []):
            out[int(cd[0])] = hover
    return out


def _check_page_against(at, model, text, t, char=None):
    """The figures up front, the graph's nodes and the story are the library's own for this target."""
    ok(at)
    circ = circuits.circuit(model, text, t, char=char)
    m = _metrics(at)
    assert m[f"log p({_q(circ.target['char'])}) after #{t}"] == f"{circ.target['logp']:.3f}"
    assert m["coverage"] == f"{circ.coverage:.0%}" and m["nodes"] == str(len(circ.nodes))
    assert m["r²"] == f"{circ.r2:.2f}" and m["slope"] == f"{circ.slope:.2f}"
    assert circuits.story(model, circ, text) in text_of(at.markdown)
    warned = any("r² is under 0.8" in w.value or "r² cannot be computed" in w.value for w in at.warning)
    assert warned == (not circ.r2 >= 0.8), (circ.r2, [w.value for w in at.warning])  # the page says when it misses
    hovers = _node_hovers(_figures(at)[0])
    assert sorted(hovers) == list(range(len(circ.nodes)))
    for i, n in enumerate(circ.nodes):
        assert f"attribution (estimate) {n.attribution:+.3f}" in hovers[i]
        assert f"ablation (measured: zeroed, rerun) {n.ablation:+.3f}" in hovers[i]
        assert f"L{n.layer} {n.state}{n.unit}</b>" in hovers[i] and f"at #{n.pos}" in hovers[i]
    return circ


def _q(ch):
    from ui.circuit import quoted
    return quoted(ch)


@pytest.fixture
def story_models(folders, vocab):
    """A tiny model under the app's default name and the shipped python-lstm (linked, not copied)."""
    pre, _ = folders
    if not (ROOT / "pretrained" / "python-lstm").is_dir():
        pytest.skip("the shipped python-lstm is not here")
    save_tiny(pre, "shakespeare-lstm", vocab, "lstm", layers=1)
    (pre / "python-lstm").symlink_to(ROOT / "pretrained" / "python-lstm")
    return folders


@pytest.mark.slow
@pytest.mark.usefixtures("story_models")
def test_opens_on_the_closing_quote_story_with_the_library_numbers():
    at = app("circuit")
    ok(at)
    ctx = _ctx(at)
    assert ctx.name == "python-lstm" and "instead of shakespeare-lstm" in text_of(at.info)
    text = ctx.text[:MAX_CHARS]
    opening, t = circuits.closing_quote_target(text, 14, 20)
    assert at.number_input(key="circuit_t").value == t and text[t + 1] == text[opening] and text[t + 1] in "'\""
    assert f"{t + 1 - opening} characters after its opening quote at #{opening}" in text_of(at.caption)
    circ = _check_page_against(at, ctx.model, text, t)
    # the memory path: the story's unit at its earliest cell-state node 10 or more steps back
    far = [n for n in circ.nodes if n.state == "c" and t - n.pos >= 10]
    top = max(circ.nodes, key=lambda n: abs(n.ablation))
    same = [n for n in far if (n.layer, n.unit) == (top.layer, top.unit) and top.state == "c"]
    node = min(same, key=lambda n: n.pos) if same else max(far, key=lambda n: abs(n.ablation))
    path = circuits.memory_path(ctx.model, text, t, circ.target["char"], node.layer, node.unit, node.pos)
    assert path["words"] in text_of(at.markdown)
    # the intervene box opens on the node whose zeroing moves log p most: its rerun is that node's ablation
    assert (at.number_input(key="circuit_layer").value, at.selectbox(key="circuit_state").value,
            at.number_input(key="circuit_unit").value, at.number_input(key="circuit_from").value,
            at.number_input(key="circuit_to").value) == (top.layer, top.state, top.unit, top.pos, top.pos)
    m = _metrics(at)
    after = next(v for k, v in m.items() if k.startswith(f"after L{top.layer} {top.state}{top.unit} = 0 at #{top.pos}"))
    assert float(after) == pytest.approx(circ.target["logp"] + top.ablation, abs=2e-3)


@pytest.mark.slow
@pytest.mark.usefixtures("shipped")
def test_another_target_and_an_intervention_over_a_span():
    at = app("circuit")
    ok(at)
    ctx = _ctx(at)
    assert ctx.name == "a-lstm" and "instead of" not in text_of(at.info)  # no python-lstm here: the model stays
    text = ctx.text[:MAX_CHARS]
    at.number_input(key="circuit_t").set_value(60).run()
    at.text_input(key="circuit_char").input("e").run()
    _check_page_against(at, ctx.model, text, 60, "e")
    at.number_input(key="circuit_layer").set_value(1).run()
    at.selectbox(key="circuit_state").set_value("h").run()
    at.number_input(key="circuit_unit").set_value(3).run()
    at.number_input(key="circuit_from").set_value(45).run()
    at.number_input(key="circuit_to").set_value(55).run()
    at.number_input(key="circuit_value").set_value(2.5).run()
    ok(at)
    out = circuits.intervene(ctx.model, text, 60, "e", [(1, "h", 3, range(45, 56), 2.5)])
    m = _metrics(at)
    assert m["log p('e') before"] == f"{out['logp_before']:.3f}"
    assert m["after L1 h3 = 2.5 at #45 to #55"] == f"{out['logp_after']:.3f}"
    assert out["logp_after"] != pytest.approx(out["logp_before"], abs=1e-3)  # the rerun moved it
    bars = _figures(at)[1]
    vocab = ctx.model.vocab.chars
    before, after = bars["data"][0], bars["data"][1]
    for name, pb, pa in zip(before["x"], before["y"], after["y"]):
        i = vocab.index(name) if name in vocab else None
        if i is not None:
            assert pb == pytest.approx(out["probs_before"][i], abs=1e-6)
            assert pa == pytest.approx(out["probs_after"][i], abs=1e-6)
    # back to the default target
    at.button(key="circuit_reset").click().run()
    ok(at)
    assert at.number_input(key="circuit_t").value != 60
    # a node's links: Inside the cell at its position, and its unit's dashboard
    layer, state, unit, pos = (at.number_input(key="circuit_layer").value, at.selectbox(key="circuit_state").value,
                               at.number_input(key="circuit_unit").value, at.number_input(key="circuit_from").value)
    at.button(key="circuit_to_cell").click().run()
    ok(at)
    assert "Inside the cell" in [t.value for t in at.title]
    ss = at.session_state
    assert (ss["layer"], ss["unit"], ss["cell_pos"]) == (layer, unit, pos)


@pytest.mark.slow
@pytest.mark.usefixtures("shipped")
def test_a_gru_and_an_rnn():
    at = app("circuit")
    for name in ("b-gru", "c-rnn"):
        entry = next(k for k in at.selectbox(key="model_choice").options if name in k)
        at.selectbox(key="model_choice").set_value(entry).run()
        ctx = _ctx(at)
        assert ctx.name == name
        t = at.number_input(key="circuit_t").value
        circ = _check_page_against(at, ctx.model, ctx.text[:MAX_CHARS], t)
        assert all(n.state == "h" for n in circ.nodes)
        assert at.selectbox(key="circuit_state").options == ["h"]
        assert "The memory path" not in text_of(at.markdown)  # no cell state, no belt to tell of


@pytest.mark.usefixtures("shipped")
def test_bad_input_shows_a_message():
    at = app("circuit")
    at.text_input(key="circuit_char").input("€").run()
    assert not at.exception
    assert any("never saw" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="circuit_char").input("").run()
    ok(at)
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input("ab").run()
    assert not at.exception and "at least three characters" in text_of(at.warning)


@pytest.mark.slow
@pytest.mark.usefixtures("shipped")
def test_the_link_from_why_this_character():
    at = app("why")
    ok(at)
    at.slider(key="why_target").set_value(50).run()
    at.radio(key="why_which").set_value("top").run()
    at.button(key="why_to_circuit").click().run()
    ok(at)
    assert "How it was computed" in [t.value for t in at.title]
    ctx = _ctx(at)
    from rnnviz import saliency
    char = saliency.saliency(ctx.model, ctx.text[:MAX_CHARS], 50)["top"].char
    assert at.number_input(key="circuit_t").value == 50 and at.text_input(key="circuit_char").value == char
    _check_page_against(at, ctx.model, ctx.text[:MAX_CHARS], 50, char)


@pytest.fixture
def atlas_model(tmp_path, monkeypatch):
    pre = tmp_path / "pretrained"
    corpus = quotes_task(20_000, seed=0)
    model = build(Vocab.from_text(corpus.text), cell="lstm", hidden_size=12, num_layers=2, embed_size=6, seed=0)
    checkpoint.save(model, pre / "quotes-tiny", meta={"corpus": corpus_meta(corpus, 0.1)})
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(pre))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "atlas"))


@pytest.mark.slow
@pytest.mark.usefixtures("atlas_model")
def test_the_link_from_the_unit_dashboard():
    from test_atlas_pages import built
    at = built(app("unit"))
    ok(at)
    at.button(key="unit_to_circuit").click().run()
    ok(at)
    assert "How it was computed" in [t.value for t in at.title] and "opened from the unit dashboard" in text_of(at.info)
    ss = at.session_state
    layer, kind, unit = ss["layer"], ss["kind"], ss["unit"]
    from ui import atlas as atlas_ui  # the atlas the dashboard read, to find the place independently
    atlas = next(iter(atlas_ui._server()["atlases"].values()))
    text = ss["_circuit_passage"]["text"]
    t = at.number_input(key="circuit_t").value
    peaks = [(abs(v), p) for which in ("top", "bottom") for p, v in atlas.peaks(layer, kind, unit, which, 1)]
    pos = max(peaks)[1]
    start = max(0, pos - 400)
    assert text == atlas.text[start:pos + 2] and t == pos - start
    assert (at.number_input(key="circuit_layer").value, at.selectbox(key="circuit_state").value,
            at.number_input(key="circuit_unit").value, at.number_input(key="circuit_from").value) == (
        layer, kind, unit, t)
    _check_page_against(at, _ctx(at).model, text, t)
    at.button(key="circuit_sidebar_text").click().run()
    ok(at)
    assert "opened from the unit dashboard" not in text_of(at.info)


# --- the figures, against a hand-made circuit --------------------------------------------------------

@dataclass
class _Node:
    layer: int
    state: str
    unit: int
    pos: int
    value: float
    attribution: float
    ablation: float


@dataclass
class _Edge:
    src: int
    dst: int
    weight: float


@dataclass
class _Circuit:
    target: dict
    nodes: list
    edges: list


def _hand_made():
    text = "x = 'abcdef' + y"
    nodes = [_Node(1, "c", 7, p, 0.9, -0.3, -0.6 + 0.05 * (p - 4)) for p in range(4, 11)]
    nodes += [_Node(1, "h", 7, 10, 0.1, 0.01, 0.004), _Node(0, "h", 2, 7, -0.4, 0.2, 0.3),
              _Node(0, "c", 5, 6, 0.2, -0.1, -0.05)]
    # along the belt; a negative part of a negative value (it carries it); a negative part of a positive one
    edges = [_Edge(i, i + 1, 0.8) for i in range(6)] + [_Edge(9, 8, -0.3), _Edge(8, 4, -0.2)]
    return text, _Circuit({"pos": 10, "char": "'", "logp": -0.25}, nodes, edges)


def test_rows_put_each_layers_belt_above_its_hidden_states():
    text, circ = _hand_made()
    rows, bands = circuit_rows(circ.nodes)
    assert rows[(0, "h", 2)] < rows[(0, "c", 5)] < rows[(1, "h", 7)] < rows[(1, "c", 7)]
    assert [(b[0], b[1]) for b in bands] == [(0, "h"), (0, "c"), (1, "h"), (1, "c")]


def test_the_graph_draws_every_node_and_edge_as_given():
    text, circ = _hand_made()
    fig = circuit_graph(circ, text, max_in=None).to_plotly_json()
    nodes = [tr for tr in fig["data"] if tr.get("customdata") is not None and len(tr["customdata"])]
    seen = {int(cd[0]): (x, y, s) for tr in nodes
            for cd, x, y, s in zip(tr["customdata"], tr["x"], tr["y"], tr["marker"]["size"])}
    assert sorted(seen) == list(range(len(circ.nodes)))
    rows, _ = circuit_rows(circ.nodes)
    for i, n in enumerate(circ.nodes):
        assert seen[i][0] == n.pos and seen[i][1] == rows[(n.layer, n.state, n.unit)]
    # size grows with |ablation|; colour by its sign
    order = sorted(range(len(circ.nodes)), key=lambda i: abs(circ.nodes[i].ablation))
    sizes = [seen[i][2] for i in order]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    by_colour = {tr["marker"]["color"]: {int(cd[0]) for cd in tr["customdata"]} for tr in nodes}
    assert by_colour["#d6604d"] == {i for i, n in enumerate(circ.nodes) if n.ablation < 0}
    assert by_colour["#4393c3"] == {i for i, n in enumerate(circ.nodes) if n.ablation >= 0}
    # every edge is one segment between its two nodes' places
    segs = {True: set(), False: set()}  # by whether the edge carries part of the later value (same sign)
    for tr in fig["data"]:
        if tr.get("mode") == "lines":
            xs, ys = tr["x"], tr["y"]
            segs["carries" in tr["legendgroup"]] |= {((xs[k], ys[k]), (xs[k + 1], ys[k + 1]))
                                                     for k in range(0, len(xs), 3)}
    for carries in (True, False):
        want = {((seen[e.src][0], seen[e.src][1]), (seen[e.dst][0], seen[e.dst][1])) for e in circ.edges
                if (e.weight * circ.nodes[e.dst].value > 0) == carries}
        assert segs[carries] == want and want
    # the characters under the axis, and the target at the right
    ticks = dict(zip(fig["layout"]["xaxis"]["tickvals"], fig["layout"]["xaxis"]["ticktext"]))
    assert ticks[4] == "'" and ticks[5] == "a" and max(ticks) == 10
    star = next(tr for tr in fig["data"] if tr.get("name") == "the target")
    assert star["x"] == [11] and star["text"] == ['"\'"']  # after #10, the character in quotes that differ from it


def test_the_distribution_bars_keep_the_target_and_check_their_input():
    vocab = list("abcdefghij")
    before = np.linspace(1, 0.1, 10)
    before /= before.sum()
    after = before[::-1].copy()
    fig = intervention_bars(before, after, vocab, "e", top=3).to_plotly_json()
    names = list(fig["data"][0]["x"])
    assert names[:2] == ["a", "j"] and "e" in names  # the likeliest in either, and the target
    i = names.index("e")
    assert fig["data"][0]["y"][i] == pytest.approx(before[4]) and fig["data"][1]["y"][i] == pytest.approx(after[4])
    with pytest.raises(ConfigError):
        intervention_bars(before, after[:5], vocab, "e")


def test_the_graph_draws_each_nodes_strongest_incoming_edges():
    text, circ = _hand_made()
    circ.edges += [_Edge(0, 6, 0.05), _Edge(1, 6, -0.5), _Edge(2, 6, 0.01)]  # node 6 already has 0.8 from node 5
    fig = circuit_graph(circ, text, max_in=2).to_plotly_json()
    rows, _ = circuit_rows(circ.nodes)
    xy = [(n.pos, rows[(n.layer, n.state, n.unit)]) for n in circ.nodes]
    drawn = {((tr["x"][k], tr["y"][k]), (tr["x"][k + 1], tr["y"][k + 1]))
             for tr in fig["data"] if tr.get("mode") == "lines" for k in range(0, len(tr["x"]), 3)}
    want = set()
    for dst in range(len(circ.nodes)):  # brute force: the two largest |weight| into each node
        into = sorted((e for e in circ.edges if e.dst == dst), key=lambda e: -abs(e.weight))[:2]
        want |= {(xy[e.src], xy[e.dst]) for e in into}
    assert drawn == want and (xy[2], xy[6]) not in drawn and (xy[1], xy[6]) in drawn


def test_the_page_says_when_r2_misses_the_goal():
    from ui.circuit import honesty_note
    text, circ = _hand_made()
    for r2, says in ((0.95, None), (0.8, None), (0.79, "r² is under 0.8"), (float("nan"), "r² cannot be computed")):
        circ.r2 = r2
        note = honesty_note(circ)
        assert note is None if says is None else says in note
