import re

import numpy as np
import pytest

from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.render import (NAN_COLOR, char_label, colored_text, probability_text, top_predictions_html,
                           value_color)
from rnnviz.trace import trace

SPAN = re.compile(r'<span title="([^"]*)" style="background-color: rgb\((\d+), (\d+), (\d+)\)">(.*?)</span>', re.S)


def _spans(out):
    return [(title, tuple(int(x) for x in rgb), body) for title, *rgb, body in SPAN.findall(out)]


def test_user_text_is_escaped():
    text = "<script>alert(1)</script> \"q\" 'a' & b"
    out = colored_text(text, np.linspace(-1, 1, len(text)))
    assert "<script>" not in out and "alert(1)</script>" not in out
    assert "&lt;" in out and "&gt;" in out and "&amp;" in out and "&quot;" in out
    spans = _spans(out)
    assert len(spans) == len(text)  # one span per character, none broken open by a quote
    assert out.startswith("<div") and out.endswith("</div>")


def test_script_text_escaped_in_whole():
    out = colored_text("<script>", np.zeros(8))
    joined = "".join(body for _, _, body in _spans(out))
    assert joined == "&lt;script&gt;"


def test_tooltips_hold_position_char_and_value():
    out = colored_text("ab", np.array([0.532, -0.25]), label="h7")
    titles = [t for t, _, _ in _spans(out)]
    assert titles[0] == "#0 &#x27;a&#x27; h7=0.532"
    assert "h7=-0.25" in titles[1] and titles[1].startswith("#1")


def test_nan_is_grey_and_says_it_has_no_value():
    out = colored_text("abc", np.array([0.5, np.nan, -0.5]))
    (t0, c0, _), (t1, c1, _), (_, c2, _) = _spans(out)
    assert c1 == NAN_COLOR and c0 != NAN_COLOR and c2 != NAN_COLOR
    assert t1.endswith("value: no value") and "nan" not in t1 and t0.endswith("value=0.5")


def test_newline_tab_space():
    out = colored_text("a\n\tb c", np.zeros(6))
    bodies = [b for _, _, b in _spans(out)]
    assert bodies[1] == "↵<br>"
    assert bodies[2] == "\t" and bodies[4] == " "
    assert "white-space: pre-wrap" in out and "monospace" in out


def test_odd_characters_do_not_crash_and_nul_is_escaped():
    text = "a\x00b😀\u05e9\u05dc\u202ee\u0301\x1b"
    out = colored_text(text, np.linspace(-1, 1, len(text)))
    assert "\x00" not in out and "\x1b" not in out and "\u202e" not in out  # never raw
    bodies = [b for _, _, b in _spans(out)]
    assert len(bodies) == len(text)
    assert bodies[1] == "\\x00" and bodies[-1] == "\\x1b"
    assert "\\u202e" in bodies and "😀" in bodies and "\u25cc\u0301" in bodies
    out.encode("utf-8")  # valid to send to a browser


def test_lone_surrogate_is_escaped():
    out = colored_text("a\ud800", np.zeros(2))
    out.encode("utf-8")
    assert "\\ud800" in out


def test_long_text_cut_with_notice():
    out = colored_text("x" * 120, np.zeros(120), max_chars=50)
    assert len(_spans(out)) == 50
    assert "first 50 of 120 characters" in out
    assert "cut" not in colored_text("x" * 10, np.zeros(10), max_chars=50)


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ConfigError):
        colored_text("abc", np.zeros(2))


def test_diverging_colours_monotone_and_white_at_zero():
    vals = np.linspace(-1, 1, 41)
    out = colored_text("x" * len(vals), vals, vmin=-1, vmax=1)
    rgb = np.array([c for _, c, _ in _spans(out)])
    redness = rgb[:, 0] - rgb[:, 2]  # blue (negative) -> white -> red (positive)
    assert np.all(np.diff(redness) >= 0) and redness[0] < 0 < redness[-1]
    assert tuple(rgb[20]) == (255, 255, 255)
    # beyond the range: clipped to the end colours
    assert value_color(5.0, -1, 1) == value_color(1.0, -1, 1)


def test_sequential_colours_monotone():
    p = np.linspace(0, 1, 21)
    out = probability_text("y" * len(p), p)
    spans = _spans(out)
    lightness = np.array([sum(c) for _, c, _ in spans])
    assert np.all(np.diff(lightness) <= 0) and lightness[0] > lightness[-1]
    assert spans[0][1] == (255, 255, 255)
    assert spans[3][0].endswith("p=0.15")


def test_char_label():
    assert [char_label(c) for c in "\n \t\x00a"] == ["↵", "␣", "⇥", "\\x00", "a"]
    assert char_label("\u202e") == "\\u202e"


TEXT = "hello <b>world</b> & 'friends'\n"


@pytest.fixture(scope="module")
def small_trace():
    model = build(sorted(set(TEXT)), cell="lstm", hidden_size=8, num_layers=1, embed_size=4, seed=0)
    return trace(model, TEXT)


def test_top_predictions_table(small_trace):
    out = top_predictions_html(small_trace, 3, 12, k=3)
    heads = re.findall(r"<th [^>]*>(.*?)</th>", out)
    assert heads == ["l", "o", "␣", "&lt;", "b", "&gt;", "w", "o", "r"]
    assert out.count("<tr>") == 1 + 3 + 1  # characters, k guesses, surprisal
    assert out.count("<th") == 9
    assert "overflow-x: auto" in out
    s = f"{small_trace.loss[3]:.3g}"
    assert f">{s}</td>" in out


def test_top_predictions_more_than_stored_k_and_end(small_trace):
    T = len(TEXT)
    out = top_predictions_html(small_trace, T - 3, T + 10, k=7)
    assert out.count("<tr>") == 1 + 7 + 1
    assert ">nan</td>" in out  # no next character after the last one
    with pytest.raises(ConfigError):
        top_predictions_html(small_trace, 5, 5)


def test_mark_outlines_one_character_and_positions_count_from_first():
    out = colored_text("ab<c", np.array([0.1, -0.2, 0.3, 0.0]), mark=2, first=100)
    spans = out.split("<span")[1:]
    assert ["outline" in s for s in spans] == [False, False, True, False]
    assert spans[2].startswith(' title="#102 ') and spans[0].startswith(' title="#100 ')
    assert "&lt;" in spans[2] and "<c" not in out


BAND_SPAN = re.compile(r'<span title="([^"]*)" style="background-color: rgb\([^)]*\)([^"]*)">(.*?)</span>', re.S)


def test_label_band_under_each_character():
    """The hypothesis's labels under the unit's text: a solid band where the label is 1, none where 0,
    dotted where not counted; the tooltip says the label, the legend names the hypothesis (escaped)."""
    from rnnviz.render import BAND_COLOR, BAND_SKIP
    text = 'x = "a<b" + name'
    labels = np.array([1.0 if 4 <= t <= 8 else 0.0 for t in range(len(text))])
    labels[1] = np.nan  # a character the hypothesis does not count
    values = np.linspace(-3, 3, len(text))
    out = colored_text(text, values, band=labels, band_label="inside <quotes>")
    spans = BAND_SPAN.findall(out)
    assert len(spans) == len(text)
    for t, (title, style, _) in enumerate(spans):
        want = "not counted" if t == 1 else str(int(labels[t]))
        assert title.endswith(f"label={want}")
        assert (f"solid {BAND_COLOR}" in style) == (labels[t] == 1)
        assert (f"dotted {BAND_SKIP}" in style) == (t == 1)
    assert "inside &lt;quotes&gt; holds there" in out and "<quotes>" not in out
    # the band changes nothing else: the same colours and characters as without it
    plain = colored_text(text, values)
    assert [(s[0].rsplit(" label=", 1)[0], s[2]) for s in spans] == [(s[0], s[2]) for s in BAND_SPAN.findall(plain)]
    assert "band under a character" not in plain
    with pytest.raises(ConfigError, match="one label per character"):
        colored_text("ab", np.zeros(2), band=np.zeros(3))
    with pytest.raises(ConfigError, match="yes/no"):
        colored_text("ab", np.zeros(2), band=np.array([0.0, 3.0]))


def test_robust_limit_is_the_percentile_of_magnitudes():
    from rnnviz.render import robust_limit
    rng = np.random.default_rng(0)
    v = rng.normal(size=1001) * 3
    v[5] = 1e6  # one wild value does not set the range
    mags = sorted(abs(float(x)) for x in v)
    assert robust_limit(v, 95) == pytest.approx(mags[950])  # 1001 values: the 95th percentile is the 951st
    assert robust_limit(np.array([0.0, 0.0, 2.0]), 50) == 2.0 and robust_limit(np.zeros(3)) == 1.0
    assert robust_limit(np.array([np.nan, -4.0]), 100) == 4.0


def test_own_range_words_say_what_the_colours_and_the_band_show():
    """The range the words give holds 95% of the unit's |values| (counted here); the band's words follow
    the labels: a band that marks something, one on a hypothesis that never holds, a count with no band."""
    from rnnviz.render import own_range_words, robust_limit
    v = np.random.default_rng(0).standard_t(2, size=1000)  # heavy tails: the range must not be the maximum
    lim = robust_limit(v)
    assert np.mean(np.abs(v) <= lim) >= 0.95 and lim < np.abs(v).max()
    plain = own_range_words(lim)
    assert f"full red at +{lim:.3g}, full blue at −{lim:.3g}" in plain and "*" not in plain
    y = (np.arange(1000) % 7 == 0).astype(float)
    assert "purple band marks where *sevens* holds" in own_range_words(lim, "sevens", y, band=True)
    assert own_range_words(lim, "sevens", y, band=False) == plain  # yes/no labels, band switched off
    never = own_range_words(lim, "never", np.zeros(1000), np.arange(1000) < 600, band=True)
    assert "*never* holds on none of the 600 characters it counts" in never and "dotted band" in never
    assert "holds on every 1,000 characters" in own_range_words(lim, "always", np.ones(1000), band=True)
    assert "*depth* is a count, not yes/no" in own_range_words(lim, "depth", np.arange(1000) % 3)
