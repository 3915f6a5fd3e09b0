"""Issue 24, the teacher: a memory unit is shown on its own task's text, with a banner naming the model
shown; the Train page's overlaid runs are compared at equal characters seen; Gates and Gradients offer
CSV downloads of what they plot (AppTest over tiny models and the shipped memory models)."""
import shutil

import pytest

from streamlit_server import ROOT
from test_app import clean_caches, folders, one_thread, vocab  # noqa: F401 (fixtures)
from test_app import app, ok, save_tiny, text_of


def banner_title(at) -> str:
    return next(m.value for m in at.markdown if str(m.value).startswith("**Tour, stop"))


@pytest.mark.slow
def test_a_memory_unit_opens_on_fresh_memory_task_text_and_the_banner_names_it(folders, vocab):  # noqa: F811
    pre, _ = folders
    save_tiny(pre, "shakespeare-lstm", vocab)  # the stop's model, tiny: the page under test is the point
    for cell in ("rnn", "gru", "lstm"):
        shutil.copytree(ROOT / "pretrained" / f"memory-{cell}", pre / f"memory-{cell}")
    at = app()
    at.button(key="tour_go_memory").click().run()
    ok(at)
    assert at.title[0].value == "Gradients through time"
    assert banner_title(at).endswith("· model: shakespeare-lstm")
    unit_button = next(b for b in at.button if str(b.key).startswith("mem_unit_"))
    unit_button.click().run()
    ok(at)
    assert at.title[0].value == "Activations"
    assert at.session_state["model_choice"] == f"shipped:{pre / 'memory-lstm'}"
    # the banner names the model on screen, and says which one the stop opened on
    title = banner_title(at)
    assert title.endswith("· model shown: memory-lstm (this stop opened on shakespeare-lstm)")
    # the text under study is a fresh draw of the memory task, in the model's own alphabet
    notices = text_of(at.sidebar.info)
    assert "No held-out text" not in notices and "never saw" not in notices
    assert "fresh draw of its memory task" in notices
    text = at.session_state["_ctx"].text
    lines = text.split("\n")[1:-1]
    assert len(lines) > 20 and all(ln[0] == ln[-1] and ln[-2] == "=" and ln[0].isupper() for ln in lines)
    at.button(key="tour_prev").click().run()  # back to the stop: its own model again
    ok(at)
    assert banner_title(at).endswith("· model: shakespeare-lstm")

