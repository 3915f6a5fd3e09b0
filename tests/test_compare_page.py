"""The Compare page (AppTest): the n-gram baseline and a second model, the numbers shown against independent paths."""
import numpy as np
import pytest

from rnnviz import checkpoint, corpora, heldout, ngram
from rnnviz.model import build
from rnnviz.training import evaluate
from rnnviz.vocab import Vocab
from test_app import clean_caches, folders, one_thread  # noqa: F401 (fixtures)
from test_app import app, html, ok, spec, text_of, title
from tests import reference as ref

QUOTES = {"name": "quotes-seed0", "chars": 20_000}  # regenerated on the fly: a small, fast corpus


def save(folder, name, vocab, cell="lstm", corpus=QUOTES, seed=0):
    model = build(vocab, cell=cell, hidden_size=16, num_layers=1, embed_size=8, seed=seed)
    meta = {"corpus": dict(corpus, split=corpora.split_record(corpora.quotes_task(20_000, 0), 0.1))} if corpus \
        else {}
    return checkpoint.save(model, folder / name, meta=meta)


@pytest.fixture
def models(folders, tmp_path, monkeypatch):  # noqa: F811 (the fixture)
    pre, _ = folders
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "cache"))  # the n-gram cache lives under it
    qv = Vocab.from_text(corpora.quotes_task(20_000, 0).text)
    save(pre, "a-lstm", qv)
    save(pre, "b-gru", qv, "gru", seed=1)
    save(pre, "c-rnn", Vocab.from_text("abcdefghijklmnopqrstuvwxyz \n()'\""), "rnn")  # fewer characters
    save(pre, "d-orphan", qv, corpus={"name": "memory-mix-2-4-seed0"})  # a corpus that cannot be rebuilt
    return pre


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def texts(at) -> str:
    return text_of(at.markdown) + "\n" + text_of(at.caption) + "\n" + text_of(at.info) + "\n" + text_of(at.warning)


def test_default_view_against_the_ngram(models):
    at = app("compare")
    ok(at)
    m = metrics(at)
    model, config = checkpoint.load(models / "a-lstm")
    held, _ = heldout.held_out_text(config)
    text = held[:30_000]
    assert len(held) < 30_000 and text == held  # the quotes corpus's held-out part is 2,000 characters
    # A's mean surprisal, by the training code's own evaluation; B's, an 8-gram fitted on the training split
    assert m["A: a-lstm"] == f"{evaluate(model, text):.3f} nats/char"
    train, _ = corpora.split(corpora.quotes_task(20_000, 0), 0.1)
    assert m["B: 8-gram"] == f"{ngram.fit(train, 8, model.vocab).loss(text):.3f} nats/char"
    assert m["characters compared"] == f"{len(text) - 1:,}"
    words = texts(at)
    assert "**In short.** Over" in words and "Closing delimiters." in words
    page = html(at)
    assert page.count("<span") >= min(len(text), 2_000) and "A−B nats" in page
    titles = [title(spec(at, i)) for i in range(3)]
    assert titles[0].startswith("Where each model is surprised") and "accuracy against distance" in titles[1]
    bars = spec(at, 0)["data"]
    assert [b["name"] for b in bars] == ["a-lstm", "8-gram"]
    df = at.dataframe[0].value
    assert df["count"].sum() == len(text) - 1


def test_order_and_persistence(models):
    at = app("compare")
    at.slider(key="cmp_order").set_value(3).run()
    ok(at)
    assert "B: 3-gram" in metrics(at)
    at.switch_page("pages/home_page.py").run()
    at.switch_page("pages/compare_page.py").run()
    ok(at)
    assert at.slider(key="cmp_order").value == 3 and "B: 3-gram" in metrics(at)


def test_another_model_and_a_vocabulary_mismatch(models):
    at = app("compare")
    at.radio(key="cmp_against").set_value("another model").run()
    ok(at)
    assert at.selectbox(key="cmp_other").value == f"shipped:{models / 'b-gru'}"
    assert "B: b-gru" in metrics(at)
    at.selectbox(key="cmp_other").set_value(f"shipped:{models / 'c-rnn'}").run()
    ok(at)
    info = text_of(at.info)
    assert "left out" in info and "not in both vocabularies" in info and "only a-lstm knows" in info
    model, config = checkpoint.load(models / "a-lstm")
    held, _ = heldout.held_out_text(config)
    shared = set("abcdefghijklmnopqrstuvwxyz \n()'\"")
    assert metrics(at)["characters compared"] == f"{sum(c in shared for c in held[1:]):,}"


def test_text_under_study_and_a_corpus_that_is_not_here(models):
    at = app("compare")
    at.radio(key="cmp_text").set_value("the text under study").run()
    ok(at)
    ctx = at.session_state["_ctx"]
    assert metrics(at)["characters compared"] == f"{len(ctx.text) - 1:,}"
    at.selectbox(key="model_choice").set_value(f"shipped:{models / 'd-orphan'}").run()
    assert not at.exception and not at.error
    assert "not on this machine" in text_of(at.warning) and "another model" in text_of(at.warning)
    np.testing.assert_equal(len(at.metric), 0)


def test_pasted_text_is_escaped(models):
    at = app("compare")
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").set_value('<script>alert(1)</script> f("a", (b)) & done\n' * 3).run()
    at.radio(key="cmp_text").set_value("the text under study").run()
    ok(at)
    page = html(at)
    assert "<script>" not in page and "&lt;" in page and "&amp;" in page
    assert metrics(at)["characters compared"].replace(",", "").isdigit()


def test_a_text_without_closers_offers_python_lstm(models):
    qv = Vocab.from_text(corpora.quotes_task(20_000, 0).text)
    save(models, "python-lstm", qv, seed=3)
    at = app("compare")
    at.radio(key="text_source").set_value("Paste text").run()
    at.text_area(key="pasted_text").set_value("no brackets and no quotes here at all\n" * 5).run()
    at.radio(key="cmp_text").set_value("the text under study").run()
    at.radio(key="cmp_against").set_value("another model").run()
    ok(at)
    assert "No distance group of this text holds 20" in text_of(at.markdown)
    at.button(key="cmp_python").click().run()
    ok(at)
    assert at.session_state["model_choice"] == f"shipped:{models / 'python-lstm'}"
    assert at.session_state["_ctx"].name == "python-lstm" and "B: 8-gram" in metrics(at)


def test_the_loss_says_which_text_and_how_many_characters(models):
    """The caption under the means names the text and the count; the means are over exactly that text."""
    at = app("compare")
    ok(at)
    model, config = checkpoint.load(models / "a-lstm")
    held, _ = heldout.held_out_text(config)
    assert "over the 1,999 characters compared: every character but the first of all 2,000 characters of " \
           "a-lstm's held-out text." in text_of(at.caption)
    at.number_input(key="cmp_chars").set_value(1_000).run()
    ok(at)
    assert "over the 999 characters compared: every character but the first of the first 1,000 characters of " \
           "a-lstm's held-out text." in text_of(at.caption)
    assert metrics(at)["A: a-lstm"] == f"{evaluate(model, held[:1_000]):.3f} nats/char"
    assert metrics(at)["characters compared"] == "999"
    at.radio(key="cmp_text").set_value("the text under study").run()
    ok(at)
    n = len(at.session_state["_ctx"].text)
    assert f"every character but the first of the text under study ({n:,} characters)." in text_of(at.caption)


def test_csv_of_what_the_page_plots(models, monkeypatch):
    """Per character, by class and accuracy: each CSV holds the numbers of an independent rerun."""
    import io

    import pandas as pd
    from streamlit.runtime.media_file_manager import MediaFileManager

    found = {}
    real = MediaFileManager.add_deferred

    def spy(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        found[file_name] = data_callable
        return real(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    at = app("compare")
    at.radio(key="cmp_against").set_value("another model").run()
    ok(at)
    stem = "compare-a-lstm-vs-b-gru"
    assert {f"{stem}-characters.csv", f"{stem}-classes.csv", f"{stem}-accuracy.csv"} <= set(found)
    chars = pd.read_csv(io.StringIO(found[f"{stem}-characters.csv"]()), keep_default_na=False,
                        na_values={"a_minus_b": [""]})
    model_a, config = checkpoint.load(models / "a-lstm")
    model_b, _ = checkpoint.load(models / "b-gru")
    held, _ = heldout.held_out_text(config)
    assert len(chars) == len(held) - 1 and "".join(chars["char"]) == held[1:]
    assert (chars["position"] == np.arange(1, len(held))).all()
    # each surprisal against the independent numpy model, character by character, and the training code's mean
    for model, col in ((model_a, "surprisal_a"), (model_b, "surprisal_b")):
        assert chars[col].mean() == pytest.approx(evaluate(model, held), abs=1e-6)
        ids = model.vocab.encode(held)
        _, logits = ref.forward({k: v.detach() for k, v in model.state_dict().items()}, model.cell, 1, ids)
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))  # (T, V)
        np.testing.assert_allclose(chars[col], -logp[np.arange(len(held) - 1), ids[1:]], atol=2e-5)
    np.testing.assert_allclose(chars["a_minus_b"], chars["surprisal_a"] - chars["surprisal_b"], atol=1e-12)
    classes = pd.read_csv(io.StringIO(found[f"{stem}-classes.csv"]()))
    assert classes["count"].sum() == len(held) - 1
    for r in classes.itertuples():
        rows = chars[chars["class"] == r[1]]
        assert len(rows) == r.count and rows["surprisal_a"].mean() == pytest.approx(r.mean_a, abs=1e-9)
    acc = pd.read_csv(io.StringIO(found[f"{stem}-accuracy.csv"]()))
    assert set(acc["model"]) == {"a-lstm", "b-gru"} and {"kind", "bucket", "count", "accuracy"} <= set(acc.columns)
