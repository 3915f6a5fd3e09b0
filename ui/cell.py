"""Inside the cell: the position studied and where it opens, the step read from the cached trace, the
controls' callbacks, the play fragment's state, and the links other pages use to open a unit here."""
from __future__ import annotations

import html
import time

import streamlit as st

from rnnviz import anatomy, lesson, plots
from rnnviz.probes import default_hypothesis
from ui.state import keep_in_range
from ui.text import slice_trace

PAGE = "pages/cell_page.py"
RADIUS = 30  # characters each side of the position on the strip and under the diagram
PLAY_SECONDS = 0.6  # one character per this many seconds while playing
TOP = 5  # recurrent contributors listed per gate


# --- the position: where the page opens, and where it goes ----------------------------------------

def opening_hypothesis(ctx) -> str:
    """The hypothesis the unit shown was chosen for (the best unit's, else the one shared), or the model's default."""
    ss = st.session_state
    best = ss.get("_unit_best")
    if best and best.get("model") == ctx.key:
        return best["hypothesis"]
    return ss.get("hypothesis") or default_hypothesis(ctx.config, ctx.text)


def open_position(ctx, tr) -> None:
    """Before the position widgets: a first visit, or a model or text switched to with the position merely
    carried over, opens where the unit's hypothesis first turns on (lesson.cell_opening: for python-lstm's
    quote cell, an opening quote); a position set together with them (the tour, a link) is kept."""
    ss = st.session_state
    now = (ctx.key, hash(tr.text))
    seen = ss.get("_cell_seen")  # (model key, text hash, position) when this page last drew
    carried = seen is not None and tuple(seen[:2]) != now and ss.get("cell_pos") == seen[2]
    if ss.get("cell_pos") is None or carried:
        ss["cell_pos"] = lesson.cell_opening(tr.text, opening_hypothesis(ctx))
    keep_in_range("cell_pos", 0, max(0, len(tr.text) - 1), 0)
    ss["_cell_seen"] = (*now, ss["cell_pos"])


def remember_position() -> None:
    """After drawing: the position shown (what open_position compares with on the next run)."""
    ss = st.session_state
    if ss.get("_cell_seen"):
        ss["_cell_seen"] = (*ss["_cell_seen"][:2], ss["cell_pos"])


def move(delta: int, n: int) -> None:
    """Callback of ◀ and ▶: one character back or on (within the text); stops playing."""
    ss = st.session_state
    ss["cell_pos"] = min(max(int(ss.get("cell_pos", 0)) + delta, 0), n - 1)
    ss["cell_playing"] = False


def on_strip_select() -> None:
    """Callback of a click on the text strip: step to the character clicked (each point's x is its position)."""
    ss = st.session_state
    sel = ss.get("cell_strip") or {}
    points = (sel.get("selection") or {}).get("points") or []
    if points:
        ss["cell_pos"] = int(points[0]["x"])
        ss["cell_playing"] = False


def set_playing(on: bool) -> None:
    st.session_state["cell_playing"] = on
    st.session_state["_cell_tick"] = time.time()


def playing() -> bool:
    """Whether the play runs: it stops by itself once no play move came for a while (the page was left
    while playing, so no fragment ran), so coming back does not start it again."""
    ss = st.session_state
    if ss.get("cell_playing") and time.time() - ss.get("_cell_tick", 0.0) > 4 * PLAY_SECONDS + 3:
        ss["cell_playing"] = False
    return bool(ss.get("cell_playing"))


def advance(n: int) -> None:
    """A play move: one character on; at the end of the text, the play stops."""
    ss = st.session_state
    pos = int(ss.get("cell_pos", 0))
    if pos >= n - 1:
        ss["cell_playing"] = False
    else:
        ss["cell_pos"] = pos + 1
        ss["_cell_tick"] = time.time()


def open_unit(unit: int, pos: int, layer: int | None = None) -> None:
    """Callback of a contributor: that unit (of the same layer), here, at `pos`."""
    ss = st.session_state
    ss["unit"], ss["cell_pos"], ss["cell_playing"] = int(unit), int(pos), False
    if layer is not None:
        ss["layer"] = int(layer)


def send_here(layer: int, unit: int, pos=None, kind: str | None = None) -> None:
    """Callback of the "Inside the cell" links on other pages: this unit (and position: a number, or a
    function that finds it, called only on the click) on this page."""
    ss = st.session_state
    pos = pos() if callable(pos) else pos
    ss["layer"], ss["unit"], ss["cell_playing"] = int(layer), int(unit), False
    if kind is not None:
        ss["kind"] = kind
    if pos is not None:
        ss["cell_pos"] = int(pos)
    ss["_goto"] = PAGE  # app.py switches pages on the next run (a callback cannot)


def link(layer: int, unit: int, pos=None, key: str = "to_cell", kind: str | None = None,
         where=st, help: str | None = None) -> None:
    """The "Inside the cell" button other pages show for a unit."""
    where.button("Inside the cell", key=key, icon=":material/memory:", on_click=send_here,
                 args=(layer, unit, pos, kind),
                 help=help or "This unit's arithmetic, step by step, on Inside the cell.")


# --- what one move draws --------------------------------------------------------------------------

def window(n: int, pos: int) -> tuple[int, int]:
    """The strip's [start, end): RADIUS characters each side of pos, shifted to stay inside the text."""
    start = max(0, min(pos - RADIUS, n - (2 * RADIUS + 1)))
    return start, min(n, start + 2 * RADIUS + 1)


def figures(model, tr, layer: int, unit: int, pos: int) -> dict:
    """Everything one move draws, from the cached trace: the step, and the strip, diagram, bars and window."""
    step = anatomy.step(model, tr, pos, layer, unit, top=TOP)
    start, end = window(len(tr.text), pos)
    title = (f"Layer {layer}, unit {unit} at #{pos} {html.escape(repr(plots.char_label(step.char)), quote=False)}"
             f" ({step.cell.upper()})")
    return {"step": step, "start": start, "end": end,
            "strip": plots.text_strip(tr.text[start:end], start, pos),
            "diagram": plots.cell_diagram(step.cell, step.values, step.char, title=title),
            "bars": plots.preact_bars(step.preact, step.values),
            "window": plots.unit_window(slice_trace(tr, start, end), layer, unit, start, pos)}


def sentence(step) -> None:
    """The step in words (lesson.describe_step), escaped, large enough for a projector."""
    st.html(f"<div style='font-size:1.05rem;line-height:1.5'>{html.escape(lesson.describe_step(step))}</div>")


def contributors(step) -> None:
    """Each gate's biggest terms from h_(t-1), each a button that opens that unit here one step back."""
    if step.pos == 0:
        st.caption("At the first character h(t−1) is the zero state: nothing comes from it.")
        return
    scaled = " (for the candidate n, times r, as PyTorch's GRU computes it)" if step.cell == "gru" else ""
    st.markdown(f"**Biggest pushes from h(t−1)**: per gate, the terms W·h(t−1) of single units{scaled}, the "
                "largest first. Click one to open that unit here at the step before.")
    names = list(step.contributors)
    for name, tab in zip(names, st.tabs([f"into {n}" for n in names])):
        with tab:
            for k, (j, value) in enumerate(step.contributors[name]):
                st.button(f"unit {j}: {value:+.3f}", key=f"cell_from_{name}_{k}", on_click=open_unit,
                          args=(j, step.pos - 1), width="stretch")
