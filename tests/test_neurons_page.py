"""Neuron search with Streamlit's AppTest: the default hypothesis suits the model and the text, the
evidence and the chance level are on the page, and a hypothesis that rests on too little is flagged
instead of presented as found.

Tiny untrained models as in test_app (its fixtures): the page must say what the scores rest on for
any weights.
"""
import numpy as np

from rnnviz import checkpoint
from rnnviz.model import build
from rnnviz.hypotheses import speaker_line
from rnnviz.probes import chance_level, evidence, shift_offsets
from test_app import clean_caches, folders, one_thread, shipped, vocab  # noqa: F401 (fixtures)
from test_app import app, choose, ok, text_of

PLAY = "".join(f"{who}:\nSpeak the speech, I pray you, as I pronounced it to you, trippingly.\n\n"
               for who in ("HAMLET", "FIRST PLAYER", "HORATIO", "POLONIUS", "OPHELIA", "ROSENCRANTZ"))
# one quoted passage, 24 characters: a "quote detector" found here would rest on one span
ONE_QUOTE = "The clock struck nine when we began, " * 8 + "and then he said 'we meet again at dawn.' " + \
    "The rest was silence and the long road home. " * 8


def paste(at, text: str):
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").input(text).run()
    return at


def markdown(at) -> str:
    return text_of(at.markdown)


def test_default_hypothesis_evidence_and_chance_level(shipped):
    at = app("neurons")
    ok(at)
    # the tiny models record the shakespeare corpus: a play's speaker lines, not quotes
    assert at.selectbox(key="hypothesis").value == "speaker-name line"
    md = markdown(at)
    ev = evidence(speaker_line(at.session_state["_ctx"].text))
    assert not ev["flagged"] and ev["spans"] >= 5
    assert (f"the hypothesis holds on {ev['positives']:,} characters of {ev['counted']:,}, in "
            f"{ev['spans']:,} separate spans") in md
    assert "Not a detector" not in text_of(at.warning)
    # the chance level on the page: every unit of every layer, against the same 20 shifted labellings
    ctx = at.session_state["_ctx"]
    tr = ctx.trace()
    units = np.concatenate([layer[k] for layer in tr.layers for k in ("h", "c") if k in layer], axis=1)
    level = chance_level(units, speaker_line(tr.text), shifts=20, seed=0).level
    assert f"Chance level: {level:.3f}" in md
    t = len(tr.text)
    apart = min(min(int(k), t - int(k)) for k in shift_offsets(t, 20))
    assert apart >= t // 10 and f"by 20 random offsets (each at least {apart:,} characters either way" in md
    verdict = text_of(at.success) + text_of(at.warning)
    assert f"{level:.3f}" in verdict  # the best unit's score is set against it, whichever way it falls


def test_one_span_is_flagged_not_presented_as_a_detector(shipped):
    at = paste(app("neurons"), ONE_QUOTE)
    at.selectbox(key="hypothesis").set_value("inside quotes").run()
    ok(at)
    warning = text_of(at.warning)
    assert "Not a detector: too little evidence" in warning
    assert "It holds on 24 characters in 1 separate span" in warning
    assert not at.success  # no unit is announced as found
    assert "not detectors" in at.subheader[0].value
    md = markdown(at)
    assert "#1 best score: layer" in md and "not a detector" in md
    assert "holds on 24 characters" in md and "in 1 separate span;" in md


def test_the_default_follows_model_and_text_until_the_user_chooses(shipped):
    at = paste(app("neurons"), "He said \"<b>\" & <i> and left " * 3)
    ok(at)
    # no speaker line in this text: the first of the model's choices that varies on it, flagged
    assert at.selectbox(key="hypothesis").value == "uppercase"
    assert "Not a detector" in text_of(at.warning)
    at.text_area(key="pasted_text").input(PLAY).run()
    ok(at)
    assert at.selectbox(key="hypothesis").value == "speaker-name line"
    # a choice, once made, stays: across texts, models and pages
    at.selectbox(key="hypothesis").set_value("vowel").run()
    at.text_area(key="pasted_text").input("He said \"<b>\" & <i> and left " * 3).run()
    ok(at)
    assert at.selectbox(key="hypothesis").value == "vowel"
    choose(at, shipped[0] / "b-gru")
    ok(at)
    assert at.selectbox(key="hypothesis").value == "vowel"
    at.switch_page("pages/activations_page.py").run()
    ok(at)
    assert at.selectbox(key="hypothesis").value == "vowel"


def save(folder, name, vocab, corpus: str):
    model = build(vocab, cell="lstm", hidden_size=16, num_layers=1, embed_size=8, seed=0)
    checkpoint.save(model, folder / name, meta={"corpus": {"name": corpus}, "val_loss": 3.9})


def test_each_model_opens_on_its_own_hypothesis(folders, vocab):
    pre, _ = folders
    save(pre, "a-quotes", vocab, "quotes-seed0")
    save(pre, "b-memory", vocab, "memory-mix-2-4-8-16-32-64-seed0")
    at = app("neurons")
    ok(at)
    assert at.selectbox(key="hypothesis").value == "inside quotes"  # quotes-lstm's
    assert "Evidence:" in markdown(at)
    choose(at, pre / "b-memory")
    ok(at)
    assert at.selectbox(key="hypothesis").value == "uppercase"  # the memory models'


def test_tokenize_strings_count_one_line_strings_against_code(shipped):
    from rnnviz.hypotheses import hypothesis_mask, python_strings
    source = ('def f(x):\n    """Say what f does, at length, in a docstring."""\n'
              + "".join(f"    d['key{i}'] = \"value {i}\" + x  # note {i}\n" for i in range(8)) + "    return d\n")
    at = paste(app("neurons"), source)
    at.selectbox(key="hypothesis").set_value("inside a string (tokenize)").run()
    ok(at)
    mask = hypothesis_mask("inside a string (tokenize)", source)
    ev = evidence(python_strings(source), mask)
    assert ev["counted"] < len(source) and ev["spans"] == 16 and not ev["flagged"]
    assert f"Counted: {ev['counted']:,} of {len(source):,} characters" in text_of(at.caption)
    assert f"holds on {ev['positives']:,} characters of {ev['counted']:,}, in 16 separate spans" in markdown(at)
