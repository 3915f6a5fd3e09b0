"""How it was computed: the cached circuit, story, memory path and interventions; the default target; the
widgets' session state; the links in (Why this character?, the unit dashboard) and out (Inside the cell, the
dashboard).

Import it as a module (`from ui import circuit as circuit_ui`): the page lays out widgets, this module caches
the library (rnnviz.circuits).
"""
from __future__ import annotations

import hashlib

import streamlit as st

from rnnviz import circuits as circ_lib
from rnnviz import dashboard
from rnnviz.render import char_label
from rnnviz.errors import RnnvizError
from ui import why as why_ui
from ui.state import DEFAULT_MODEL, default, keep_choice, keep_in_range
from ui.tour import shipped_id

MAX_CHARS = 5_000  # as on Why this character?, so its targets open here unchanged
STORY_MODEL = "python-lstm"  # the page's story: its closing quote
BACK, NODES = 100, 50  # the graph's default reach back and size (the settings)
STORY_GAPS = (14, 20)  # the story's closing quote comes about 15 characters after the opening one (issue 27)
GOOD_R2 = 0.8  # the goal for r²: under it the page says the graph's choice of nodes is not to be trusted
FAR = 10  # the memory path is told for a node this many steps or more before the target
PAGE = "pages/circuit_page.py"
LEAD = 400  # characters of the corpus before a dashboard's place: the state, started at zero, settles well before it


def quoted(ch: str) -> str:
    """A character for markdown, in quotes that differ from it: "'" and 'a' (markdown's own signs escaped)."""
    q = '"' if ch == "'" else "'"
    label = char_label(ch)
    return q + ("\\" + label if label in "\\`*_{}[]()#+-.!|<>$~" else label) + q


def figure(x: float, spec: str) -> str:
    """A number as the page shows it; NaN (r² of fewer than three nodes, or of nodes all alike) as a dash."""
    return "—" if x != x else format(x, spec)


def honesty_note(circ) -> str | None:
    """A warning when r² misses the issue's goal (or cannot be had), else None."""
    if circ.r2 != circ.r2:
        return ("r² cannot be computed here (fewer than three nodes, or their attributions or ablations all alike): "
                "nothing says the attributions chose these nodes well. The sizes and colours are the measured ablations.")
    if circ.r2 < GOOD_R2:
        return (f"r² is under {GOOD_R2} here: the attributions do not rank these nodes as the reruns do, so the graph "
                "may miss nodes that matter. The sizes and colours are the measured ablations.")
    return None


def method_words(circ) -> str:
    """What the circuit's attribution method is, in the library's words."""
    return circ_lib.METHODS.get(circ.method, circ.method)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@st.cache_data(max_entries=16, show_spinner="Finding the prediction to open on ...")
def default_target(model_key: str, text: str, code: bool, _model) -> tuple[int, str]:
    """(t, how it was chosen): for a model of code, the prediction of a closing quote about 15 characters after its
    opening one (else 10 to 30 after); else, or with none, the Why page's target (a prediction the model is unsure
    of that draws on characters far back)."""
    for gaps in (STORY_GAPS, (10, 30)) if code else ():
        try:
            opening, t = circ_lib.closing_quote_target(text, *gaps)
        except RnnvizError:
            continue
        if t + 1 < len(text):
            return int(t), (f"the closing quote at #{t + 1}, {t + 1 - opening} characters after its opening "
                            f"quote at #{opening}")
    dt = why_ui.default_target(model_key, text, _model=_model)
    why = "no closing quote 10 to 30 characters after its opening one here" if code else "a far-looking prediction"
    return int(dt.target), f"{why}: {dt.describe()}"


def reads_code(config: dict) -> bool:
    """Whether the model learned code, whose quotes close strings (in prose an apostrophe is no opening quote)."""
    name = str((config.get("corpus") or {}).get("name") or "")
    return name == "python" or name.startswith("quotes")


@st.cache_data(max_entries=32, show_spinner="Tracing the circuit: every node scored, the kept ones zeroed and rerun ...")
def circuit(model_key: str, text: str, t: int, char: str, back: int, nodes: int, _model):
    """The Circuit of the prediction after #t (of `char`, or the true next character when empty)."""
    return circ_lib.circuit(_model, text, t, char=char or None, back=back, max_nodes=nodes)


@st.cache_data(max_entries=32, show_spinner="Telling the story ...")
def story(model_key: str, text: str, t: int, char: str, back: int, nodes: int, _model) -> str:
    return circ_lib.story(_model, circuit(model_key, text, t, char, back, nodes, _model=_model), text)


@st.cache_data(max_entries=32, show_spinner="Splitting the memory into its cell-state and hidden-state paths ...")
def memory_path(model_key: str, text: str, t: int, char: str, layer: int, unit: int, pos: int, _model) -> dict:
    return circ_lib.memory_path(_model, text, t, char, layer, unit, pos)


@st.cache_data(max_entries=64, show_spinner="Rerunning the model with the value set ...")
def intervene(model_key: str, text: str, t: int, char: str, layer: int, state: str, unit: int, first: int,
              last: int, value: float, _model) -> dict:
    """circuits.intervene of one unit set to `value` at positions first..last (both included)."""
    return circ_lib.intervene(_model, text, t, char, [(layer, state, unit, range(first, last + 1), value)])


def far_node(circ):
    """The cell-state node an LSTM's memory path is told for, FAR or more steps back: the earliest node of the
    unit whose zeroing moves log p(c) most, when that unit reaches so far on the belt; else the far c node with
    the largest |ablation|; None when there is none."""
    t = circ.target["pos"]
    far = [n for n in circ.nodes if t - n.pos >= FAR and n.state == "c"]
    if not far:
        return None
    top = max(circ.nodes, key=lambda n: abs(n.ablation))
    same = [n for n in far if (n.layer, n.state, n.unit) == (top.layer, top.state, top.unit)]
    return min(same, key=lambda n: n.pos) if same else max(far, key=lambda n: abs(n.ablation))


# --- session state -------------------------------------------------------------------------------

def prepare(model_key: str, text: str, t_def: int):
    """The target widgets' state: a new model or text opens on its own default target; values out of range are
    clamped."""
    ss = st.session_state
    if ss.get("_circuit_for") != (model_key, text_key(text)):
        ss["_circuit_for"] = (model_key, text_key(text))
        ss["circuit_t"], ss["circuit_char"] = t_def, ""
        ss.pop("_circuit_node", None)
        for k in ("circuit_layer", "circuit_state", "circuit_unit", "circuit_from", "circuit_to", "circuit_value"):
            ss.pop(k, None)
    default("circuit_t", t_def)
    keep_in_range("circuit_t", 1, len(text) - 1, t_def)
    default("circuit_char", "")
    default("circuit_back", BACK)
    keep_in_range("circuit_back", 5, BACK, BACK)
    default("circuit_nodes", NODES)
    keep_in_range("circuit_nodes", 5, NODES, NODES)


def prepare_box(circ, cell: str, layers: int, hidden: int):
    """The intervene box's state: each new circuit opens it on the node whose zeroing moves log p(c) most."""
    ss = st.session_state
    t = circ.target["pos"]
    if ss.get("_circuit_box_for") != (ss.get("_circuit_for"), t, circ.target["char"]):
        ss["_circuit_box_for"] = (ss.get("_circuit_for"), t, circ.target["char"])
        if circ.nodes:
            i = max(range(len(circ.nodes)), key=lambda j: abs(circ.nodes[j].ablation))
            choose_node(circ.nodes[i], i)
    default("circuit_layer", layers - 1)
    keep_in_range("circuit_layer", 0, layers - 1, layers - 1)
    default("circuit_state", "h")
    keep_choice("circuit_state", ["h", "c"] if cell == "lstm" else ["h"], "h")
    default("circuit_unit", 0)
    keep_in_range("circuit_unit", 0, hidden - 1, 0)
    default("circuit_from", t)
    keep_in_range("circuit_from", 0, t, t)
    default("circuit_to", t)
    keep_in_range("circuit_to", int(ss["circuit_from"]), t, t)
    default("circuit_value", 0.0)
    keep_in_range("circuit_value", -1e3, 1e3, 0.0)


def set_target(t: int, char: str = ""):
    """Button callback: a target, before its widgets are drawn again."""
    st.session_state["circuit_t"], st.session_state["circuit_char"] = t, char


def choose_node(node, index: int):
    """The intervene box takes a node of the graph: its unit, its one position, the value 0 (its ablation)."""
    ss = st.session_state
    ss["_circuit_node"] = index
    ss["circuit_layer"], ss["circuit_state"], ss["circuit_unit"] = node.layer, node.state, node.unit
    ss["circuit_from"] = ss["circuit_to"] = node.pos
    ss["circuit_value"] = 0.0


def on_click(circ):
    """A click on a node of the graph (a scatter selection carries its customdata [index, ...])."""
    points = ((st.session_state.get("circuit_graph") or {}).get("selection") or {}).get("points") or []
    for p in points:
        data = p.get("customdata")
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], (int, float)):
            i = int(data[0])
            if 0 <= i < len(circ.nodes):
                choose_node(circ.nodes[i], i)
            return


def on_pick(circ):
    i = st.session_state.get("circuit_pick")
    if isinstance(i, int) and 0 <= i < len(circ.nodes):
        choose_node(circ.nodes[i], i)


def open_story_model(ctx) -> bool:
    """On the page's first visit of a session, the app's default model gives way to the model of the story
    (python-lstm) when it is shipped here; True when it did (the page then runs again on it)."""
    ss = st.session_state
    if ss.get("_circuit_seen"):
        return False
    ss["_circuit_seen"] = True
    mid = shipped_id(STORY_MODEL)
    if ctx.name != DEFAULT_MODEL or ctx.entry.source != "shipped" or mid is None:
        return False
    del ss["model_choice"]  # a widget's key cannot be set once it is drawn this run, but it can be dropped
    ss["model_choice"] = mid
    ss["_circuit_switched"] = ctx.name
    return True


# --- links ---------------------------------------------------------------------------------------

def open_here(model_key: str, text: str, t: int, char: str = ""):
    """Callback for a link from another page: this page at target t (of `char`, else the true next character)."""
    ss = st.session_state
    ss["_circuit_seen"] = True  # arriving by a link: keep the model the user is studying
    if (ss.get("_circuit_passage") or {}).get("text") != text:
        ss.pop("_circuit_passage", None)  # a link with the sidebar's text leaves a dashboard's passage
    ss["_circuit_for"] = (model_key, text_key(text[:MAX_CHARS]))
    ss["circuit_t"], ss["circuit_char"] = t, char
    ss.pop("_circuit_node", None)
    ss["_goto"] = PAGE


def open_dashboard(layer: int, kind: str, unit: int):
    ss = st.session_state
    ss["layer"], ss["kind"], ss["unit"] = layer, kind, unit
    ss["_goto"] = "pages/unit_page.py"


def strongest_place(atlas, layer: int, kind: str, unit: int) -> int | None:
    """The corpus position of a unit's strongest separated peak, high or low (the dashboard's first contexts)."""
    peaks = [c for which in ("top", "bottom") for c in dashboard.contexts(atlas, layer, kind, unit, which, 1)]
    return int(max(peaks, key=lambda c: abs(c["value"]))["pos"]) if peaks else None


def open_place(model_key: str, atlas, layer: int, kind: str, unit: int, where: str):
    """Callback for the dashboard's link: this page on the passage of the atlas corpus that ends just after the
    unit's strongest place, at the prediction after reading it, with the intervene box on that unit there."""
    ss = st.session_state
    pos = strongest_place(atlas, layer, kind, unit)
    if pos is None:
        ss["_toast"] = "This unit has no peak in the atlas corpus to open."
        return
    start = max(0, pos - LEAD)
    text = atlas.text[start:pos + 2]
    t = pos - start
    ss["_circuit_passage"] = {"model": model_key, "text": text, "where": f"{where}, characters #{start:,} to "
                              f"#{start + len(text) - 1:,} (#{pos:,} is t = {t} here)"}
    open_here(model_key, text, t)
    if t + 1 < len(text):
        ss["_circuit_box_for"] = (ss["_circuit_for"], t, text[t + 1])
        ss["circuit_layer"], ss["circuit_state"], ss["circuit_unit"] = layer, kind, unit
        ss["circuit_from"] = ss["circuit_to"] = t
        ss["circuit_value"] = 0.0


def passage(model_key: str) -> dict | None:
    """The passage a dashboard link opened, while the same model is studied: {"text", "where"}."""
    p = st.session_state.get("_circuit_passage")
    return p if isinstance(p, dict) and p.get("model") == model_key else None


def text_panel(ctx) -> tuple[str, bool]:
    """(the text this page studies, whether it is the sidebar's): a dashboard's passage while it is open (with a way
    back), else the sidebar's text up to MAX_CHARS; the notice of either drawn."""
    place = passage(ctx.key)
    if place:
        c1, c2 = st.columns([4, 1])
        c1.info(f"Studying {place['where']} (opened from the unit dashboard).", icon=":material/info:")
        c2.button("The sidebar's text", key="circuit_sidebar_text", on_click=drop_passage, icon=":material/undo:")
        return place["text"], False
    if len(ctx.text) > MAX_CHARS:
        st.info(f"This page studies the first {MAX_CHARS:,} of the {len(ctx.text):,} characters.",
                icon=":material/info:")
    return ctx.text[:MAX_CHARS], True


def drop_passage():
    st.session_state.pop("_circuit_passage", None)
