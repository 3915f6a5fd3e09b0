"""The 2015 paper page (AppTest): it opens on the shipped numbers with its four sections, each sentence quoting
the numbers its chart draws; "run it yourself" queues a grid that can be cancelled; a model without a
history, and one without gates, get a plain message.

Fixtures (tiny models in temporary folders, empty caches, one torch thread) and helpers come from test_app.
"""
import dataclasses
import re
import time

import numpy as np
import pytest

from rnnviz.paper import grid
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, choose, ok, spec, text_of, title

pytestmark = pytest.mark.slow


def _charts(at) -> dict[str, dict]:
    figs = [spec(at, i) for i in range(len(at.get("plotly_chart")))]
    return {title(f).split(":")[0].split(" (")[0]: f for f in figs}


def _ours(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Ours:**")]


def test_opens_on_the_shipped_numbers_and_says_them(monkeypatch):
    """The real shipped models and results: four sections, each chart beside a sentence quoting its numbers."""
    monkeypatch.delenv("RNNVIZ_PRETRAINED", raising=False)
    at = app("paper")
    ok(at)
    assert [h.value for h in at.header] == ["Table 1: cells, depths and budgets", "Gate saturation by layer",
                                            "Peeling the onion: which errors does scale remove?",
                                            "Training dynamics: from low-order n-grams to high"]
    charts = _charts(at)
    assert set(charts) == {"Table 1 on our corpus", "Gate saturation by layer", "Errors", "Distance to n-grams over training"}
    grid_s, sat_s, onion_s, dyn_s = _ours(at)
    # Table 1: each "LSTM a → b" is the 1-layer and the deeper bar of the largest budget's panel
    bars = [t for t in charts["Table 1 on our corpus"]["data"] if t["type"] == "bar"]
    last_axis = max(t.get("xaxis", "x") for t in bars)
    drawn = {(t["name"], x): y for t in bars if t.get("xaxis", "x") == last_axis for x, y in zip(t["x"], t["y"])}
    for cell, a, b, depth in re.findall(r"(LSTM|GRU|RNN) (\d\.\d{3}) → (\d\.\d{3}) \((\d) layers\)", grid_s):
        assert f"{drawn[('1 layer', cell)]:.3f}" == a and f"{drawn[(f'{depth} layers', cell)]:.3f}" == b
    assert len(re.findall(r"→", grid_s)) >= 3, grid_s
    # saturation: the share quoted for each layer is the mean of x + y over that panel's dots
    dots = [t for t in charts["Gate saturation by layer"]["data"] if t.get("mode") == "markers"]
    for axis, layer in (("x", 0), ("x2", 1)):
        panel = [t for t in dots if t.get("xaxis", "x") == axis]
        share = np.mean(np.concatenate([np.add(t["x"], t["y"]) for t in panel]))
        assert f"{share:.1%}" in sat_s, (layer, share, sat_s)
    # the onion: every category whose count fell is quoted with the two bars' counts, the errors are their sums
    stacks = {t["name"]: t["customdata"] for t in charts["Errors"]["data"]}
    fell = [n for n, (a, b) in stacks.items() if b < a]
    assert "n-gram" in fell and all(f"{n} {stacks[n][0]:,} → {stacks[n][1]:,}" in onion_s for n in fell)
    small, large = (sum(c[i] for c in stacks.values()) for i in (0, 1))
    assert f"makes {small:,} errors" in onion_s and f"shakespeare-lstm {large:,} in" in onion_s
    # dynamics: shakespeare-lstm has no history, so shakespeare-small's are shown, and said so
    assert "shakespeare-lstm has no training history" in text_of(at.info)
    lines = charts["Distance to n-grams over training"]["data"]
    first = min(t["y"][0] for t in lines)
    assert f"(symmetric KL {first:.3f} nats)" in dyn_s and "shakespeare-small" in dyn_s
    assert [t["name"] for t in lines] == [f"{n}-gram" for n in range(1, 6)]
    # and beside each, the paper's finding with its citation
    assert sum("Karpathy, Johnson & Fei-Fei (2015)" in c.value for c in at.caption) >= 4


def test_run_it_yourself_queues_a_grid_then_cancel(shipped, monkeypatch, tmp_path):  # noqa: F811
    tiny = dataclasses.replace(grid.default_spec(), cells=("lstm", "rnn"), layers=(1,), budgets=(2_000,), steps=3)
    monkeypatch.setattr(grid, "default_spec", lambda: tiny)
    at = app("paper")
    ok(at)
    at.button(key="paper_grid_run").click().run()
    ok(at)
    job = at.session_state["paper_grid_job"]
    assert job.active and "paper_grid_run" not in [b.key for b in at.button]  # one grid at a time
    job.join(120)
    at.run()
    ok(at)
    assert "This run: `queued from the app`" in text_of(at.caption)  # the user's run is shown once it ends
    if grid.SHIPPED_RESULTS.exists():
        assert at.radio(key="paper_grid_source").value == "your run"
        at.radio(key="paper_grid_source").set_value("shipped run").run()
        assert [t["x"] for t in spec(at, 0)["data"] if t["type"] == "bar"][0] == ["LSTM", "GRU", "RNN"]
        at.radio(key="paper_grid_source").set_value("your run").run()
    bars = [t for t in spec(at, 0)["data"] if t["type"] == "bar"]
    assert [t["x"] for t in bars] == [["LSTM", "RNN"]]
    assert all(np.isfinite(bars[0]["y"]))
    # a second run, cancelled while it trains: it stops, and the page stays whole
    slow = dataclasses.replace(tiny, steps=5_000)
    monkeypatch.setattr(grid, "default_spec", lambda: slow)
    at.button(key="paper_grid_run").click().run()
    job = at.session_state["paper_grid_job"]
    assert job.active
    at.button(key="paper_grid_cancel").click().run()
    job.join(60)
    assert not job.active and job.stop_event.is_set()
    at.run()
    ok(at)


def test_model_without_history_or_gates(shipped):  # noqa: F811
    pre, _ = shipped
    at = app("paper")
    ok(at)
    assert "a-lstm has no training history" in text_of(at.info)  # dynamics: shakespeare-small's, said why
    for _ in range(60):  # the tiny model's saturation runs in a background job
        if any(m.value.startswith("**Ours:**") and "first layer" in m.value for m in at.markdown):
            break
        time.sleep(0.5)
        at.run()
    ok(at)
    assert any("Gate saturation by layer" in title(spec(at, i)) for i in range(len(at.get("plotly_chart"))))
    choose(at, pre / "c-rnn")
    ok(at)
    assert "has no gates" in text_of(at.info)
