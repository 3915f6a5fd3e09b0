"""The guided tour: every stop's claim recomputed from the shipped models in pretrained/, and AppTest
driving the tour from Home through every stop to its end.

The claims are measured by rnnviz.tour.check_stop on whatever pretrained/ holds now, so a retrained
model whose unit moved fails here until the stop's unit (rnnviz/tour.py, one line per unit) follows it.
"""
import dataclasses
import re
import time

import pytest
import torch

from rnnviz import tour
from rnnviz.hypotheses import HYPOTHESES
from streamlit_server import ROOT
from test_app import clean_caches, folders, one_thread  # noqa: F401 (fixtures)
from test_app import app, ok, text_of
import ui

PRETRAINED = ROOT / "pretrained"
MODELS = {s.model for s in tour.STOPS} | {"memory-rnn", "memory-gru", "memory-lstm"}
needs_models = pytest.mark.skipif(not all((PRETRAINED / m).is_dir() for m in MODELS),
                                  reason="the shipped models are not in pretrained/")


@needs_models
@pytest.mark.parametrize("stop", tour.STOPS, ids=[s.key for s in tour.STOPS])
def test_each_stop_claim_holds_on_the_shipped_models(stop):
    torch.set_num_threads(1)
    check = tour.check_stop(stop, PRETRAINED)
    assert check.holds, f"{stop.key}: {check.sentence}; the paragraph says: {stop.paragraph()}"


@needs_models
def test_a_wrong_unit_or_a_bolder_claim_fails_the_check():
    """The check can fail: the quote stop pointed at another unit, or claiming more than is measured."""
    quotes = tour.STOPS[tour.stop_index("quotes")]
    other = dataclasses.replace(quotes, claim={**quotes.claim, "unit": (quotes.claim["unit"] + 1) % 256})
    assert not tour.check_stop(other, PRETRAINED).holds
    measured = tour.check_stop(quotes, PRETRAINED).measured["score"]
    bolder = dataclasses.replace(quotes, claim={**quotes.claim, "min_score": measured + 0.001})
    assert not tour.check_stop(bolder, PRETRAINED).holds
    mem = tour.STOPS[tour.stop_index("memory")]
    assert not tour.check_stop(dataclasses.replace(mem, claim={**mem.claim, "rnn_max": 0.1}), PRETRAINED).holds


@needs_models
def test_the_cell_stop_fails_on_another_unit_another_string_or_a_bolder_claim():
    """The Inside-the-cell stop opens right after the quote detector, on its unit, at its string's opening quote;
    its check fails for the next unit, for another position, and for a claim just beyond what is measured."""
    stop = tour.STOPS[tour.stop_index("cell")]
    assert tour.stop_index("cell") == tour.stop_index("quotes") + 1
    assert (stop.settings["layer"], stop.settings["unit"]) == (tour.QUOTE_UNIT[0], tour.QUOTE_UNIT[2])
    assert stop.settings["cell_pos"] == stop.claim["open"] == tour.QUOTE_STRING[0]
    assert stop.page == "pages/cell_page.py"
    claim = stop.claim
    assert not tour.check_stop(dataclasses.replace(stop, claim={**claim, "unit": claim["unit"] + 1}), PRETRAINED).holds
    shifted = dataclasses.replace(stop, claim={**claim, "open": claim["open"] - 1})  # the space before the quote
    assert not tour.check_stop(shifted, PRETRAINED).holds
    assert not tour.check_stop(dataclasses.replace(stop, settings={**stop.settings, "cell_pos": 0}), PRETRAINED).holds
    measured = tour.check_stop(stop, PRETRAINED).measured
    for key, bolder in (("f_hold_min", measured["f_inside_min"] + 0.001), ("f_quote_max", measured["f_open"] - 0.001),
                        ("strings", measured["strings"] + 1)):
        assert not tour.check_stop(dataclasses.replace(stop, claim={**claim, key: bolder}), PRETRAINED).holds, key


def test_string_spans_are_the_counted_one_line_strings():
    text = "x = 'ab' + \"c\"\ny = 2\n"
    assert tour.string_spans(text) == [(4, 7), (11, 13)]
    assert [text[a] + text[b] for a, b in tour.string_spans(text)] == ["''", '""']


def test_stops_are_consistent_data():
    """Each stop: a known page, settings the page reads, its unit in one place, a paragraph with every field filled."""
    pages = {p for p, *_ in ui.PAGES}
    assert len(tour.STOPS) >= 6 and len({s.key for s in tour.STOPS}) == len(tour.STOPS)
    for s in tour.STOPS:
        assert s.page in pages, s.page
        assert set(s.settings) <= set(ui.PERSIST) | {"hypothesis_chosen"}, set(s.settings) - set(ui.PERSIST)
        text = s.paragraph()
        assert "{" not in text and "}" not in text and len(text) < 900
        if "unit" in s.claim and "hypothesis" in s.claim:
            assert (s.settings["layer"], s.settings["kind"], s.settings["unit"]) == \
                (s.claim["layer"], s.claim["kind"], s.claim["unit"])
            assert s.settings["hypothesis"] == s.claim["hypothesis"] and s.claim["hypothesis"] in HYPOTHESES
            assert f"{s.claim['kind']}{s.claim['unit']}" in text
    assert tour.STOPS[tour.stop_index("quotes")].settings["unit"] == tour.QUOTE_UNIT[2]
    with pytest.raises(tour.ConfigError):
        tour.stop_index("nowhere")


@needs_models
@pytest.mark.slow
def test_apptest_drives_the_tour_from_start_to_end(folders, monkeypatch):  # noqa: F811
    """Home's Start, then Next stop on every page: each stop's model, page and keys are set, its paragraph
    is on screen, and no page shows an error; Finish ends the tour and the banner goes."""
    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(PRETRAINED))
    at = app()
    ok(at)
    assert "See the famous effects" in text_of(at.subheader)
    stop_buttons = [b for b in at.button if str(b.key).startswith("tour_go_")]
    assert len(stop_buttons) == len(tour.STOPS)
    at.button(key="tour_start").click().run()
    timings = []
    for i, stop in enumerate(tour.STOPS):
        ok(at)
        ss = at.session_state
        assert ss["tour_stop"] == i
        assert ss["model_choice"] == f"shipped:{PRETRAINED / stop.model}"
        assert at.session_state["_ctx"].name == stop.model
        title = next(t for p, t, *_ in ui.PAGES if p == stop.page)
        assert at.title[0].value.startswith(title), (stop.key, at.title[0].value)
        for k, v in stop.settings.items():
            assert ss[k] == v, (stop.key, k, ss[k], v)
        shown = text_of(at.markdown)
        assert f"stop {i + 1} of {len(tour.STOPS)}: {stop.title}" in shown
        assert stop.paragraph() in shown
        assert len(at.session_state["_ctx"].text) == tour.EXCERPT
        if stop.key == "cell":  # the paragraph says "Press **Next**" and names the opening quote
            assert any(b.label == "Next" for b in at.button)
            assert at.session_state["_ctx"].text[stop.settings["cell_pos"]] == "'"
        if i == 1:  # back one stop and forward again
            at.button(key="tour_prev").click().run()
            ok(at)
            assert at.session_state["tour_stop"] == 0 and at.session_state["_ctx"].name == tour.STOPS[0].model
            at.button(key="tour_next").click().run()
            assert at.session_state["tour_stop"] == 1
        t0 = time.perf_counter()
        at.button(key="tour_next").click().run()
        timings.append(time.perf_counter() - t0)
    ok(at)
    assert "tour_stop" not in at.session_state and not any(b.key == "tour_next" for b in at.button)
    print("seconds per stop:", [round(t, 1) for t in timings])


def test_tour_with_a_model_missing_says_so(folders, monkeypatch):  # noqa: F811
    """A pretrained folder without the stop's model: the banner says which model is missing, nothing breaks."""
    at = app()
    ok(at)
    at.button(key="tour_go_quotes").click().run()
    assert not at.exception
    assert any(re.search("python-lstm, which is not in the models folder", w.value) for w in at.warning)
    at.button(key="tour_end").click().run()
    assert "tour_stop" not in at.session_state


def test_colour_claims_can_fail():
    """The colours a paragraph names are checked: red code and white strings, blue to red along the line."""
    import numpy as np
    labels = np.array([0, 0, 1, 1], dtype=float)
    assert tour._colours_hold("red code, white strings", np.array([2.0, 2.0, 0.1, -0.1]), labels, None)
    assert not tour._colours_hold("red code, white strings", np.array([2.0, 2.0, 1.5, 1.5]), labels, None)
    assert not tour._colours_hold("red code, white strings", np.array([-2.0, -2.0, 0.0, 0.0]), labels, None)
    assert tour._colours_hold("blue code, white strings", np.array([-2.0, -2.0, 0.3, -0.1]), labels, None)
    assert not tour._colours_hold("blue code, white strings", np.array([-2.0, -2.0, -1.5, -1.5]), labels, None)
    assert not tour._colours_hold("blue code, white strings", np.array([2.0, 2.0, 0.0, 0.0]), labels, None)
    column = np.arange(40, dtype=float)
    assert tour._colours_hold("blue to red along the line", column - 20, column, None)
    assert not tour._colours_hold("blue to red along the line", 20 - column, column, None)
