"""The guided tour in session state: start it, go to a stop (model, text, page, unit), the banner every page shows."""
from __future__ import annotations

import streamlit as st

from rnnviz.tour import STOPS
from ui.models import model_entries

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


def banner() -> None:
    """While the tour runs: the stop's title and paragraph, with Next stop and End tour."""
    i = running()
    if i is None:
        return
    stop = STOPS[i]
    with st.container(border=True, key="tour_banner"):
        st.markdown(f"**Tour, stop {i + 1} of {len(STOPS)}: {stop.title}** (model: {stop.model})")
        missing = st.session_state.get("tour_missing")
        if missing:
            st.warning(f"This stop needs the shipped model {missing}, which is not in the models folder.",
                       icon=":material/warning:")
        st.markdown(stop.paragraph())
        c1, c2, c3, _ = st.columns([1, 1, 1, 3])
        if i + 1 < len(STOPS):
            c1.button("Next stop", key="tour_next", on_click=go, args=(i + 1,), type="primary",
                      icon=":material/arrow_forward:")
        else:
            c1.button("Finish the tour", key="tour_next", on_click=end, type="primary", icon=":material/check:")
        if i > 0:
            c2.button("Previous stop", key="tour_prev", on_click=go, args=(i - 1,), icon=":material/arrow_back:")
        c3.button("End the tour", key="tour_end", on_click=end, icon=":material/close:")


def start_buttons() -> None:
    """Home: start the tour, or jump to any stop, each in one click."""
    st.button("Start the tour", key="tour_start", on_click=go, args=(0,), type="primary", icon=":material/tour:")
    cols = st.columns(3)
    for i, stop in enumerate(STOPS):
        cols[i % 3].button(f"{i + 1}. {stop.title}", key=f"tour_go_{stop.key}", on_click=go, args=(i,),
                           width="stretch")
