"""What the Features pages say, computed from the numbers: the metrics sentence and the units-against-features verdict."""
from rnnviz.features import words


def row(name, unit, feature, chance=0.6, flagged=False, winner=None):
    winner = winner or ("tie" if abs(unit - feature) <= 1e-3 else "feature" if feature > unit else "unit")
    return {"hypothesis": name, "unit": {"layer": 1, "state": "h", "unit": 3, "score": unit, "chance": chance},
            "feature": {"feature": 7, "score": feature, "chance": chance},
            "evidence": {"flagged": flagged, "positives": 100, "spans": 10}, "winner": winner}


def test_no_feature_beats_the_best_unit_is_said_plainly():
    level, text = words.comparison_verdict([row("inside quotes", 0.95, 0.93), row("vowel", 0.9, 0.9)])
    assert level == "warning" and text.startswith("**No feature beats the best unit.** On all 2 hypotheses")


def test_a_win_counts_only_above_chance_and_with_evidence():
    rows = [row("inside quotes", 0.90, 0.95),  # a real win: +0.05
            row("bracket depth", 0.10, 0.12, chance=0.2),  # both below chance: decides nothing
            row("uppercase", 0.70, 0.99, flagged=True),  # too little evidence: decides nothing
            row("vowel", 0.91, 0.80)]
    level, text = words.comparison_verdict(rows)
    assert level == "success"
    assert "on 1 of 2 hypotheses" in text and "(1 more hypothesis, where neither" in text
    assert "inside quotes, feature 7 scores 0.950 against the best unit's 0.900 (+0.050" in text
    assert words.comparison_verdict([])[0] == "info"
    assert words.comparison_verdict([row("uppercase", 0.7, 0.99, flagged=True)])[0] == "info"


def test_metrics_sentence_and_table_restate_the_numbers():
    m = {"fvu": 0.0951, "l0": 31.96, "dead_fraction": 0.003, "loss": 1.2345, "loss_spliced_out": 1.2501,
         "loss_spliced_rec": 1.2611, "loss_zero": 3.1, "ce_recovered_out": 0.9916, "ce_recovered_rec": 0.9857,
         "chars": 20_000}
    text = words.metrics_sentence(m, "the first 20,000 characters of the held-out split")
    for part in ("Over the first 20,000 characters of the held-out split, the dictionary", "**0.095** of the states' variance",
                 "**32.0** features", "(0.3% of features never fire)", "**1.2501** nats/char", "**1.2345**",
                 "**3.1000**", "**99.2%** of the loss recovered", "**1.2611** (98.6% recovered)"):
        assert part in text, part
    t = words.comparison_table([row("vowel", 0.9, 0.95)])
    assert list(t.iloc[0][["hypothesis", "winner", "best unit", "best feature"]]) == ["vowel", "feature", "L1 h3",
                                                                                     "feature 7"]


def test_a_splice_that_blew_up_reads_so_on_the_page_not_inf():
    """The metric tiles: finite values in their units; a recurrent splice that diverged says so, never inf or -inf%."""
    assert words.metric_value("dead_fraction", 0.008) == "0.8%"
    assert words.metric_value("loss_spliced_out", 1.23456) == "1.2346"
    assert words.metric_value("fvu", 0.0561) == "0.056"
    assert words.metric_value("loss_spliced_rec", float("inf")) == "blows up"
    assert words.metric_value("ce_recovered_rec", float("-inf")) == "blows up"
    assert words.metric_value("ce_recovered_out", float("nan")) == "n/a"
