"""Counterfactual edits: exact no-op, edits against an independent rerun of the reference model, errors."""
import numpy as np
import pytest

from rnnviz.counterfactual import Edit, EditError, counterfactual, open_at
from rnnviz.model import build
from tests import reference as ref

TEXT = 'he said "go to (the) door" and left.\n'


def _model(cell):
    return build(sorted(set(TEXT)), cell=cell, hidden_size=10, num_layers=2, embed_size=6, seed=2)


def _rerun(model, text):
    """Reference: per-character log p(text[k] | text[:k]) (NaN at 0) and h per layer, from the numpy cells."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    ids = model.vocab.encode(text)
    layers, logits = ref.forward(sd, model.cell, model.config.num_layers, ids)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))  # (T, V)
    lp = np.full(len(text), np.nan)
    lp[1:] = logp[np.arange(len(text) - 1), ids[1:]]
    return lp, [lay["h"] for lay in layers]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_noop_changes_nothing_exactly(cell):
    model = _model(cell)
    for edit in (TEXT, Edit("replace", 5, TEXT[5])):
        cf = counterfactual(model, TEXT, edit)
        assert cf.edited == TEXT and len(cf.positions) == len(TEXT)
        assert (cf.d_surprisal[1:] == 0).all() and (cf.d_p[1:] == 0).all() and (cf.dh == 0).all()
        assert np.isnan(cf.d_surprisal[0])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("edit", [Edit("replace", 8, "e"), Edit("delete", 8), Edit("insert", 15, "("),
                                  Edit("insert", 0, "a"), Edit("delete", 0)])
def test_edit_matches_an_independent_rerun(cell, edit):
    model = _model(cell)
    cf = counterfactual(model, TEXT, edit)
    edited = edit.apply(TEXT)
    assert cf.edited == edited and cf.shift == len(edited) - len(TEXT)
    # the aligned characters really are the same character in both texts
    assert all(TEXT[k] == edited[k + cf.shift] for k in cf.positions)
    assert cf.positions[-1] == len(TEXT) - 1 and cf.distance[0] == 1
    lp_a, h_a = _rerun(model, TEXT)
    lp_b, h_b = _rerun(model, edited)
    kb = cf.positions + cf.shift
    np.testing.assert_allclose(cf.surprisal, -lp_a[cf.positions], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cf.surprisal_edited, -lp_b[kb], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cf.p_edited - cf.p, np.exp(lp_b[kb]) - np.exp(lp_a[cf.positions]), atol=1e-6)
    for l in range(2):
        want = np.linalg.norm(h_b[l][kb] - h_a[l][cf.positions], axis=1)
        np.testing.assert_allclose(cf.dh[l], want, rtol=1e-4, atol=1e-6)
    assert (cf.dh[:, 0] > 0).all()  # the first character after a real edit has a new state


def test_replace_aligns_right_after_the_edit():
    cf = counterfactual(_model("lstm"), TEXT, Edit("replace", 8, "e"))
    assert cf.prefix == 8 and cf.positions[0] == 9  # '"' -> 'e' at 8: the character after it is aligned


def test_a_text_with_unknown_characters_can_still_be_edited():
    model = _model("lstm")
    text = TEXT.replace("door", "döor")  # 'ö' is not in the vocabulary: read as the unknown symbol
    cf = counterfactual(model, text, Edit("replace", 2, "a"))
    assert cf.edited[2] == "a" and len(cf.positions) == len(text) - 3
    with pytest.raises(EditError, match="brings in"):
        counterfactual(model, text, Edit("replace", 2, "é"))


def test_general_edited_text():
    cf = counterfactual(_model("rnn"), TEXT, TEXT.replace("door", "dr"))
    assert cf.edited.endswith('dr" and left.\n') and cf.shift == -2


@pytest.mark.parametrize("text, edit, match", [
    (TEXT, Edit("replace", 3, "Q"), "never saw"),
    (TEXT, Edit("insert", 3, "€"), "never saw"),
    (TEXT, "a\u00e9", "never saw"),
    ("a", Edit("delete", 0), "empty"),
    (TEXT, "", "empty"),
    ("", Edit("insert", 0, "a"), "empty"),
    (TEXT, Edit("delete", len(TEXT)), "position"),
    (TEXT, Edit("replace", -1, "a"), "position"),
    (TEXT, Edit("replace", 2, "ab"), "exactly one"),
    (TEXT, Edit("swap", 2, "a"), "must be one of"),
])
def test_bad_edits_are_clear_errors(text, edit, match):
    with pytest.raises(EditError, match=match):
        counterfactual(_model("gru"), text, edit)


def test_open_at_finds_the_innermost_open_quote_or_bracket():
    text = 'say "one (two three four) and five six seven'
    assert open_at(text, len(text) - 1) == 4  # the bracket closed; the quote is still open
    assert open_at(text, 20) == 9  # inside the bracket, 11 after it
    assert open_at(text, 12) is None  # the bracket is open, but only 3 characters back
    assert open_at(text, 12, min_gap=3) == 9
    assert open_at("it's a 'long quote here now", 26) == 7  # the apostrophe in it's is not an opener
    assert open_at('a "b" c "d" e f g h i j k', 24) is None  # both quotes closed
    assert open_at("(a [b) c d e f g h i j k l", 25) == 3  # a stray closer of another kind closes nothing


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_default_edit_moves_p_at_the_target_the_most(cell):
    """Brute force: every candidate edit rerun through the independent reference; the rule's edit has the
    largest |change in log p| of the character the target predicts, and reports that change."""
    from rnnviz.counterfactual import candidate_edits, default_edit
    model = _model(cell)
    text = TEXT * 2
    t = len(text) - 8
    influence = np.zeros(t + 1)
    influence[[20, t - 3]] = [1.0, 5.0]  # the largest lies too close to t: the one 10 or more back is #20
    cands = candidate_edits(text, t, min_gap=10, influence=influence)
    assert len(cands) >= 3 and all(e.position <= t - 10 for e in cands) and Edit("delete", 20) in cands
    lp, _ = _rerun(model, text)
    changes = {}
    for e in cands:
        edited = e.apply(text)
        lp_e, _ = _rerun(model, edited)
        changes[e] = lp_e[t + 1 + len(edited) - len(text)] - lp[t + 1]
    edit, change = default_edit(model, text, t, min_gap=10, influence=influence)
    assert abs(changes[edit]) == max(abs(c) for c in changes.values()) > 0
    assert change == pytest.approx(changes[edit], abs=1e-5)


def test_p_pair_and_prediction_length():
    from rnnviz.counterfactual import p_pair, prediction_length
    assert p_pair(0.5, 0.7) == ("0.500", "0.700")
    assert p_pair(0.12341, 0.12349) == ("0.1234", "0.1235")
    assert p_pair(0.25, 0.25) == ("0.250000", "0.250000")  # equal: as many decimals as it tries
    assert prediction_length(100, 10, 150, 1000) == 150  # t's prediction lies inside the chart's span
    assert prediction_length(500, 10, 150, 1000) == 491  # stretched to reach t + 1
    assert prediction_length(1009, 10, 150, 1000) == 1000  # t + 1 just within reach
    assert prediction_length(1010, 10, 150, 1000) == 150  # beyond reach: the chart's span only


@pytest.mark.parametrize("edit", [Edit("replace", 5, "o"), Edit("delete", 5), Edit("insert", 5, "e")])
def test_summary_states_the_rerun_numbers(edit):
    """p at t + 1 before and after, and the largest change, each read off an independent rerun of both texts."""
    from rnnviz.counterfactual import p_pair, summary
    model, t = _model("lstm"), 20
    cf = counterfactual(model, TEXT, edit)
    lp, _ = _rerun(model, TEXT)
    lp_e, _ = _rerun(model, edit.apply(TEXT))
    shift = len(edit.apply(TEXT)) - len(TEXT)
    before, after = p_pair(np.exp(lp[t + 1]), np.exp(lp_e[t + 1 + shift]))
    pred = np.full(len(TEXT), np.nan)
    pred[t + 1] = 0.125
    words = summary("the edit", cf, pred, t, 5)
    assert words.startswith(f"**the edit.** At t = {t}, p('{TEXT[t + 1]}') goes from {before} to {after} "
                            f"(surprisal {-lp[t + 1]:.2f} → {-lp_e[t + 1 + shift]:.2f} nats); the gradient "
                            f"predicted a change in log p of +0.125, the actual is "
                            f"{lp_e[t + 1 + shift] - lp[t + 1]:+.3f}.")
    first = 5 if edit.op == "insert" else 6  # an insert keeps the character it goes before
    k = max(range(first, len(TEXT)), key=lambda k: abs(lp_e[k + shift] - lp[k]))
    assert words.endswith(f"The largest change is at #{k} ('{TEXT[k]}', {k - 5} after the edit): surprisal "
                          f"{lp[k] - lp_e[k + shift]:+.2f} nats.")
    assert "beyond the 1,000" in summary("w", cf, np.full(len(TEXT), np.nan), t, 5)
    assert "gradient" not in summary("w", cf, None, t, 5)


def test_cli_edit_against_a_rerun(tmp_path, capsys):
    """`python -m rnnviz edit`: every surprisal it prints from an independent rerun of both texts."""
    import json

    from rnnviz import checkpoint
    from rnnviz.cli import main
    from rnnviz.saliency import predicted_change
    model = _model("gru")
    checkpoint.save(model, tmp_path / "m", {})
    model, _ = checkpoint.load(tmp_path / "m")
    assert main(["edit", str(tmp_path / "m"), "--text", TEXT, "--op", "replace", "--pos", "9", "--char", "o",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lp, _ = _rerun(model, TEXT)
    lp_e, _ = _rerun(model, Edit("replace", 9, "o").apply(TEXT))
    assert out["edit"] == "replace 'g' at #9 by 'o'" and out["positions"] == list(range(10, len(TEXT)))
    np.testing.assert_allclose(out["surprisal"], -lp[10:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["surprisal_edited"], -lp_e[10:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["predicted"], predicted_change(model, TEXT, 9, "o")[10:], rtol=1e-6)
    assert main(["edit", str(tmp_path / "m"), "--text", TEXT, "--op", "delete", "--pos", "9", "--target", "20"]) == 0
    words = capsys.readouterr().out
    lp_d, _ = _rerun(model, TEXT[:9] + TEXT[10:])
    assert words.startswith(f"delete 'g' at #9. At t = 20, p('{TEXT[21]}') goes from ")
    assert f"(surprisal {-lp[21]:.2f} → {-lp_d[20]:.2f} nats); the gradient predicted" in words
    k = max(range(10, len(TEXT)), key=lambda k: abs(lp_d[k - 1] - lp[k]))  # the first row: the largest change
    assert words.splitlines()[3].split()[:2] == [str(k), str(k - 9)]
    assert main(["edit", str(tmp_path / "m"), "--text", TEXT, "--op", "replace", "--pos", "99", "--char", "o"]) == 1
    assert "position for replace must be from 0" in capsys.readouterr().err
    assert main(["edit", str(tmp_path / "m"), "--text", TEXT, "--op", "insert", "--pos", "3", "--char", "o",
                 "--target", "0"]) == 1
    assert "target must be a position from 1" in capsys.readouterr().err
