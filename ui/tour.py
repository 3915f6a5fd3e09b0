"""The guided tour in session state: start it, go to a stop (model, text, page, unit), the banner every page shows."""
from __future__ import annotations

import streamlit as st

from rnnviz.tour import STOPS
from ui.models import context, model_entries

STOP_KEY = "tour_stop"  # the index of the stop shown; absent when no tour runs


def shipped_id(name: str) -> str | None:
    """The model_choice id of the shipped model `name`, or None when it is not in the models folder."""
    return next((e.id for e in model_entries().values() if e.source == "shipped" and e.path.name == name), None)


def go(i: int) -> None:
    """Callback: show stop i: choose its model and text, set its page's keys, and switch to its page."""
    ss = st.session_state
    stop = STOPS[i]
    ss[STOP_KEY] = i
    mid = shipped_id(stop.model)
    if mid is None:
        ss["tour_missing"] = stop.model
        return
    ss.pop("tour_missing", None)
    ss["model_choice"] = mid
    for k, v in stop.settings.items():
        ss[k] = v
    ss["_goto"] = stop.page  # a callback cannot switch pages; app.py does on this run


def end() -> None:
    st.session_state.pop(STOP_KEY, None)
    st.session_state.pop("tour_missing", None)


def running() -> int | None:
    i = st.session_state.get(STOP_KEY)
    return i if isinstance(i, int) and 0 <= i < len(STOPS) else None


def running_key() -> str | None:
    """The key of the stop shown ("memory", ...), or None when no tour runs."""
    i = running()
    return None if i is None else STOPS[i].key


def banner() -> None:
    """While the tour runs: the stop's title and buttons on one line, then its paragraph.

    Compact, so that on a projector (1280 x 800) the chart the paragraph speaks of is in view below
    it; the buttons take the width of their labels (in columns they were cut to "Previous ...").
    """
    i = running()
    if i is None:
        return
    stop = STOPS[i]
    # Streamlit leaves 6rem above the page for its header (3.75rem): on a tour, keep only what the header needs
    st.html("<style>[data-testid='stMainBlockContainer'] {padding-top: 4rem;}</style>")
    with st.container(border=True, key="tour_banner", gap="small"):
        left, right = st.columns([1, 1], vertical_alignment="center")
        left.markdown(f"**Tour, stop {i + 1} of {len(STOPS)}: {stop.title}** · {model_words(stop.model)}")
        with right.container(horizontal=True, horizontal_alignment="right", key="tour_buttons"):
            if i > 0:
                st.button("Back", key="tour_prev", on_click=go, args=(i - 1,), icon=":material/arrow_back:",
                          help="The previous stop")
            if i + 1 < len(STOPS):
                st.button("Next stop", key="tour_next", on_click=go, args=(i + 1,), type="primary",
                          icon=":material/arrow_forward:")
            else:
                st.button("Finish the tour", key="tour_next", on_click=end, type="primary", icon=":material/check:")
            st.button("End tour", key="tour_end", on_click=end, icon=":material/close:", type="tertiary")
        missing = st.session_state.get("tour_missing")
        if missing:
            st.warning(f"This stop needs the shipped model {missing}, which is not in the models folder.",
                       icon=":material/warning:")
        st.markdown(stop.paragraph())


def model_words(stop_model: str) -> str:
    """'model: X', X the model the sidebar shows now; a button may have left the stop's model."""
    ctx = context()
    shown = ctx.name if ctx is not None else stop_model
    if shown == stop_model:
        return f"model: {shown}"
    return f"model shown: {shown} (this stop opened on {stop_model})"


def start_buttons() -> None:
    """Home: start the tour, or jump to any stop, each in one click."""
    st.button("Start the tour", key="tour_start", on_click=go, args=(0,), type="primary", icon=":material/tour:")
    cols = st.columns(3)
    for i, stop in enumerate(STOPS):
        cols[i % 3].button(f"{i + 1}. {stop.title}", key=f"tour_go_{stop.key}", on_click=go, args=(i,),
                           width="stretch")
