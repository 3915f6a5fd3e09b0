"""Character classes on a synthetic text whose classes are known by construction, and closing accuracy."""
import numpy as np
import pytest

from rnnviz import charclass
from rnnviz.charclass import CLASSES
from rnnviz.errors import ConfigError, TextError


class Builder:
    """Appends characters with the class each must get; closers carry the distance to their opener."""

    def __init__(self):
        self.chars, self.cls, self.dist = [], [], []

    def put(self, c, cls, dist=0):
        self.chars.append(c)
        self.cls.append(cls)
        self.dist.append(dist)
        return len(self.chars) - 1

    def plain(self, s):
        """Characters that are neither word starts nor after a newline (the caller knows)."""
        for c in s:
            self.put(c, "other")

    def word(self, w):
        self.put(w[0], "word start")
        self.plain(w[1:])

    def nl(self):
        self.put("\n", "other")

    def bucket(self, d):
        return "d1–5" if d <= 5 else "d6–20" if d <= 20 else "d21–60" if d <= 60 else "d61+"

    def close(self, c, opened_at, kind="bracket"):
        d = len(self.chars) - opened_at
        return self.put(c, f"closing {kind} {self.bucket(d)}", d)

    def string(self, q, body):
        start = self.put(q, "other")
        for c in body:
            self.put(c, "in string")
        self.close(q, start, "quote")

    def triple(self, q, lines):
        """A triple-quoted string over several lines; its closer is the first quote of the closing three."""
        start = self.put(q, "other")
        self.plain(q * 2)
        for k, line in enumerate(lines):
            for j, c in enumerate(line):
                self.put(c, "after newline" if j == 0 and k else "in string")
            self.put("\n", "in string")
        self.close(q, start, "quote")
        self.plain(q * 2)

    @property
    def text(self):
        return "".join(self.chars)


def test_classes_known_by_construction():
    b = Builder()
    b.word("x")
    b.plain(" = ")
    b.word("f")
    o = b.put("(", "other")
    b.word("ab")
    b.close(")", o)  # d3
    b.nl()
    b.put("y", "after newline")  # a word start, but after a newline wins
    b.plain(" ")
    o = b.put("[", "other")
    b.word("alpha")
    b.plain(", ")
    b.word("beta")
    b.close("]", o)  # d13
    b.plain(" ")
    b.string('"', "it's (not) a [bracket]")  # the other quote and brackets inside a string are string
    b.plain(" ")
    b.string("'", 'say "hi" \\\' again')  # an escaped quote does not close
    b.plain(" ")
    o = b.put("{", "other")
    b.plain(" ")
    for _ in range(8):
        b.word("word")
        b.plain(" ")
    b.close("}", o)  # d41
    b.nl()
    o = b.put("(", "after newline")
    b.nl()
    for _ in range(14):
        b.put(" ", "after newline")
        b.word("item")
        b.plain(",")
        b.nl()
    b.close(")", o)  # d > 60, and after a newline: the closer wins
    b.nl()
    b.put("I", "after newline")
    b.plain("'ll ")  # an apostrophe after a letter opens nothing
    b.plain("'")  # a quote never closed on its line is no string
    b.word("tis")
    b.plain(" ")
    b.word("so")
    b.plain(", ")
    b.word("tis")
    b.plain(" '")  # opens a string ...
    b.word("tis")  # ... but a quote before a letter does not close it, and the line ends
    b.nl()
    b.put("'", "after newline")
    b.word("Tis")
    b.plain(" ")
    b.word("true")
    b.plain(" ")
    o = b.put("(", "other")
    b.plain("]")  # a closer that does not match the innermost opener: other, and the ( stays open
    b.plain(" ")
    b.word("_u9")
    b.close(")", o)
    b.nl()
    b.put("d", "after newline")
    b.plain("ef")
    b.plain(" ")
    b.word("g")
    o = b.put("(", "other")
    b.close(")", o)  # d1
    b.plain(":")
    b.nl()
    b.put(" ", "after newline")
    b.plain("   ")
    b.triple('"', ['Say "hi" (and [more]).', "  Second line's ) end, with an \\\" escaped quote."])
    b.nl()
    b.put('"', "after newline")
    b.plain("")
    s = len(b.chars) - 1
    b.close('"', s, "quote")  # an empty string: its closer at distance 1
    text = b.text
    assert not charclass.looks_like_python(text)  # one def: so say it is Python
    got = charclass.classify(text, triple_quotes=True)
    want = np.array([CLASSES.index(c) for c in b.cls])
    bad = np.flatnonzero(got.labels != want)
    assert not bad.size, [(int(i), text[i], CLASSES[got.labels[i]], b.cls[i]) for i in bad[:5]]
    np.testing.assert_array_equal(got.distance, b.dist)
    kinds = {"bracket": charclass.BRACKET, "quote": charclass.QUOTE}
    closer = [next((v for k, v in kinds.items() if f"closing {k}" in c), 0) for c in b.cls]
    np.testing.assert_array_equal(got.closer, closer)
    # every bucket of brackets and the nearest quotes are present, so the test covers them
    assert {c for c in b.cls if c.startswith("closing bracket")} == {f"closing bracket {x}" for x in charclass.BUCKET_LABELS}
    assert "closing quote d1–5" in b.cls and "closing quote d21–60" in b.cls and "closing quote d61+" in b.cls
    assert list(got.names()) == b.cls


def test_closing_accuracy_counts():
    text = 'f(a) g(bbbbbbbb) "xy" "zzzzzzzzzz"'
    # predictor: right on the first bracket and the long string's quote, wrong on the rest
    pred = np.array(["?"] * (len(text) - 1), dtype="<U1")
    pred[text.index(")") - 1] = ")"
    pred[len(text) - 2] = '"'
    table = charclass.closing_accuracy(charclass.classify(text), pred).set_index(["kind", "bucket"])
    assert table.loc[("bracket", "d1–5"), "count"] == 1 and table.loc[("bracket", "d1–5"), "accuracy"] == 1.0
    assert table.loc[("bracket", "d6–20"), "count"] == 1 and table.loc[("bracket", "d6–20"), "correct"] == 0
    assert table.loc[("quote", "d1–5"), "count"] == 1 and table.loc[("quote", "d1–5"), "accuracy"] == 0.0
    assert table.loc[("quote", "d6–20"), "accuracy"] == 1.0
    assert np.isnan(table.loc[("bracket", "d61+"), "accuracy"]) and table.loc[("bracket", "d61+"), "count"] == 0
    pred[len(text) - 2] = ""  # a position the predictor did not score is left out, not counted wrong
    table = charclass.closing_accuracy(charclass.classify(text), pred).set_index(["kind", "bucket"])
    assert table.loc[("quote", "d6–20"), "count"] == 0


def test_bad_input():
    with pytest.raises(TextError):
        charclass.classify("")
    with pytest.raises(ConfigError, match="predictions"):
        charclass.closing_accuracy(charclass.classify("abc"), np.array(["a"]))


def test_triple_quotes_only_in_python():
    side_by_side = 'x = """ab" + c\n' * 2  # generated code-like text: "" then "ab", twice
    got = charclass.classify(side_by_side)
    assert not charclass.looks_like_python(side_by_side)
    closers = [(i, int(d)) for i, d in enumerate(got.distance) if got.closer[i] == charclass.QUOTE]
    assert closers == [(5, 1), (9, 3), (20, 1), (24, 3)]
    code = "def a():\n    pass\nclass B:\n    def c(self):\n        \"\"\"Doc (one).\n\n        More.\"\"\"\n"
    assert charclass.looks_like_python(code)
    got = charclass.classify(code)
    o, e = code.index('"""'), code.index('"""', code.index('"""') + 3)
    assert got.closer[e] == charclass.QUOTE and got.distance[e] == e - o
    assert list(got.closer).count(charclass.QUOTE) == 1 and got.closer[code.index(")", o)] == charclass.NONE
    blank = code.index("\n\n") + 1  # the empty line inside the docstring: after a newline wins
    assert got.names()[blank] == "after newline" and got.names()[code.index("M")] == "in string"
