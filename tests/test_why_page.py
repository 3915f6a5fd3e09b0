"""The Why this character? page (AppTest, tiny untrained models): it draws, the slider and the box move t, the
numbers it states are the library's, the edit section works, bad edits show a message, the aggregate runs.
"""
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from rnnviz import saliency as sal_lib
from rnnviz.counterfactual import Edit, counterfactual
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, html, ok, text_of


def _ctx(at):
    return at.session_state["_ctx"]


def _why():
    at = app("why")
    ok(at)
    return at


@pytest.mark.usefixtures("shipped")
def test_page_draws_and_states_the_library_numbers():
    at = _why()
    ctx = _ctx(at)
    text = ctx.text[:5000]
    t = at.slider(key="why_target").value
    # the page opened on the rule's target
    assert t == sal_lib.default_target(ctx.model, text, min_distance=20, window=60, p_range=(0.05, 0.7)).target
    sal = sal_lib.saliency(ctx.model, text, t)["true"]
    md = text_of(at.markdown)
    assert f"**t = {t}**" in md and "log p('" in md and f"= {sal.logp:.2f}" in md
    v = np.abs(sal.grad_norm)[::-1][:60]
    assert f"**{v[20:].sum() / v.sum():.0%}**" in md
    # the coloured text holds the target outlined
    bodies = [h.proto.body for h in at.get("html")]
    assert any("outline: 2px solid" in b and f"#{t} " in b for b in bodies)
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # the distance plot and the edit chart


@pytest.mark.usefixtures("shipped")
def test_slider_and_box_move_t():
    at = _why()
    t0 = at.slider(key="why_target").value
    at.slider(key="why_target").set_value(30).run()
    ok(at)
    assert "**t = 30**" in text_of(at.markdown)
    assert at.number_input(key="why_target_box").value == 30
    at.number_input(key="why_target_box").set_value(45).run()
    ok(at)
    assert at.slider(key="why_target").value == 45 and "**t = 45**" in text_of(at.markdown)
    at.button(key="why_reset").click().run()
    ok(at)
    assert at.slider(key="why_target").value == t0 and f"**t = {t0}**" in text_of(at.markdown)
    at.slider(key="why_target").set_value(45).run()
    at.radio(key="why_which").set_value("top").run()
    at.radio(key="why_measure").set_value("grad_x_input").run()
    ok(at)
    ctx = _ctx(at)
    sal = sal_lib.saliency(ctx.model, ctx.text[:5000], 45)["top"]
    assert "log p('" in text_of(at.markdown) and f"= {sal.logp:.2f}" in text_of(at.markdown)


@pytest.mark.usefixtures("shipped")
def test_edit_section_reports_the_exact_change():
    at = _why()
    at.slider(key="why_target").set_value(60).run()
    at.selectbox(key="why_op").set_value("replace").run()
    at.number_input(key="why_pos").set_value(40).run()
    at.text_input(key="why_char").input("e").run()
    ok(at)
    ctx = _ctx(at)
    text = ctx.text[:5000]
    cf = counterfactual(ctx.model, text, Edit("replace", 40, "e"))
    j = int(np.flatnonzero(cf.positions == 61)[0])
    md = text_of(at.markdown)
    m = re.search(r"At t = 60, p\('.+?'\) goes from ([0-9.]+) to ([0-9.]+)", md)
    # at least 3 decimals, more when 3 would not tell the two apart
    assert m and m.group(1) != m.group(2) and min(len(m.group(1)), len(m.group(2))) >= 5
    assert float(m.group(1)) == pytest.approx(cf.p[j], abs=6e-4) and float(m.group(2)) == pytest.approx(
        cf.p_edited[j], abs=6e-4)
    pred = sal_lib.predicted_change(ctx.model, text, 40, "e", length=150)[61]
    assert f"the gradient predicted a change in log p of {pred:+.3f}" in md
    at.selectbox(key="why_op").set_value("insert").run()
    ok(at)
    assert "insert 'e' before #40" in text_of(at.markdown)


@pytest.mark.usefixtures("shipped")
@pytest.mark.parametrize("op,char,message", [("replace", "€", "never saw"), ("insert", "\u00e9", "never saw")])
def test_bad_edits_show_a_message(op, char, message):
    at = _why()
    at.selectbox(key="why_op").set_value(op).run()
    at.text_input(key="why_char").input(char).run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    # the saliency part above still shows
    assert "**t = " in text_of(at.markdown)


@pytest.mark.usefixtures("shipped")
def test_a_two_character_text():
    at = app()
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input("ab").run()
    at.switch_page("pages/why_page.py").run()
    ok(at)
    assert "**t = 1**" in text_of(at.markdown)
    at.selectbox(key="why_op").set_value("delete").run()
    at.number_input(key="why_pos").set_value(0).run()
    ok(at)
    assert "delete 'a' at #0" in text_of(at.markdown) + text_of(at.info)
    assert "too short for the aggregate" in text_of(at.info)


@pytest.mark.usefixtures("shipped")
def test_aggregate_runs_in_the_background():
    at = _why()
    at.button(key="why_agg").click().run()
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        at.run()
        if "at distance 40" in text_of(at.markdown):
            break
    ok(at)
    md = text_of(at.markdown)
    # the tiny shipped models are not the Shakespeare trio: the model under study alone
    rows = re.findall(r"- \*\*(.+?)\*\* \((\w+)\): at distance 40, ([0-9.e+-]+) of its influence", md)
    assert [r[0] for r in rows] == ["a-lstm"], md
    ctx = _ctx(at)
    agg = sal_lib.aggregate(ctx.model, ctx.text[:5000], window=100, count=200)
    assert rows[0][2] == f"{agg.relative()[40]:.3g}"


def _page_text(at) -> str:
    """Every word the page shows: markdown, captions, notices and the coloured text's HTML (less its hover
    titles: render.colored_text writes a NaN value, an unread character after t, as "=nan" there)."""
    return "\n".join(text_of(x) for x in (at.markdown, at.caption, at.info, at.warning, at.error)) + re.sub(
        r'title="[^"]*"', "", html(at))


@pytest.mark.usefixtures("shipped")
def test_far_targets_never_print_nan():
    """A target far after the edit: the gradient's prediction is taken that far (up to 1,000 characters) and
    stated, or its clause is left out with the reason; never "nan"."""
    at = _why()
    ctx = _ctx(at)
    text = ctx.text[:5000]
    t = len(text) - 2
    at.slider(key="why_target").set_value(t).run()
    at.selectbox(key="why_op").set_value("replace").run()
    at.text_input(key="why_char").input("e").run()
    at.number_input(key="why_pos").set_value(t - 400).run()  # 401 after the edit: beyond the chart's 150
    ok(at)
    pred = sal_lib.predicted_change(ctx.model, text, t - 400, "e", length=401)[t + 1]
    assert np.isfinite(pred)
    assert f"the gradient predicted a change in log p of {pred:+.3f}" in text_of(at.markdown)
    assert "nan" not in _page_text(at).lower()
    at.number_input(key="why_pos").set_value(10).run()  # far beyond the gradient's reach
    ok(at)
    md = text_of(at.markdown)
    assert f"At t = {t}, p(" in md and "the gradient predicted" not in md
    assert f"t lies {t + 1 - 10} characters after the edit, beyond the 1,000" in md
    assert "nan" not in _page_text(at).lower()


@pytest.fixture
def python_lstm(folders):
    src = Path(__file__).resolve().parents[1] / "pretrained" / "python-lstm"
    if not src.is_dir():
        pytest.skip("the shipped python-lstm is not here")
    shutil.copytree(src, folders[0] / "python-lstm")
    return folders


@pytest.mark.slow
@pytest.mark.usefixtures("python_lstm")
def test_python_lstm_opens_on_an_unsure_target_and_an_edit_that_moves_it():
    at = _why()
    ctx = _ctx(at)
    assert ctx.name == "python-lstm"
    text = ctx.text[:5000]
    t = at.slider(key="why_target").value
    sal = sal_lib.saliency(ctx.model, text, t)["true"]
    assert sal.char == text[t + 1] and 0.05 <= np.exp(sal.logp) <= 0.7  # unsure, far from p = 1.00
    md = text_of(at.markdown)
    assert "(The page opened here: among" in md and "unsure of the next character" in md
    # the default edit, rerun here: it moves p at t, and the page says by how much
    op, pos = at.selectbox(key="why_op").value, int(at.number_input(key="why_pos").value)
    char = "" if op == "delete" else at.text_input(key="why_char").value
    assert pos <= t - 20  # 20 or more characters back
    cf = counterfactual(ctx.model, text, Edit(op, pos, char))
    j = int(np.flatnonzero(cf.positions == t + 1)[0])
    assert abs(cf.d_surprisal[j]) > 0.05
    m = re.search(r"At t = (\d+), p\('.+?'\) goes from ([0-9.]+) to ([0-9.]+)", md)
    assert m and int(m.group(1)) == t and m.group(2) != m.group(3)
    assert float(m.group(2)) == pytest.approx(cf.p[j], abs=1e-3) and float(m.group(3)) == pytest.approx(
        cf.p_edited[j], abs=1e-3)
    assert "nan" not in _page_text(at).lower()
