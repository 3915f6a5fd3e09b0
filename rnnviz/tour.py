"""The guided tour of the famous effects: its stops as plain data, and a check of each stop's claim.

A stop names a shipped model, the page, the settings that page reads (session-state keys) and a
paragraph to read aloud. Its claim is measured by check_stop on the shipped models, on the very text
the stop shows (the model's held-out excerpt, as the sidebar cuts it), so a retrained model can never
leave the tour pointing at the wrong unit: the test of each stop would fail.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import anatomy, corpora, experiments, heldout, hypotheses, lesson, probes, sampling
from .checkpoint import load
from .errors import ConfigError
from .saturation import saturation_table

EXCERPT = 2_000  # the text every stop shows: the first EXCERPT characters of the model's held-out excerpt

# Each named unit lives here, once: a retrained model changes only these lines (the test then checks them).
QUOTE_UNIT = (1, "c", 59)  # python-lstm: deep negative in code, near zero inside one-line strings
QUOTE_STRING = (16, 21, "`'Mock'`")  # python-lstm's stop text: the first one-line string (open, close, as shown)
LINE_UNIT = (1, "c", 28)  # shakespeare-lstm: rises with the position in the line


@dataclass(frozen=True)
class Stop:
    key: str
    title: str
    model: str  # a shipped model's folder name in pretrained/
    page: str  # the page file the stop opens
    settings: dict  # session-state keys the page reads, and their values
    text: str  # the paragraph; {name} fields come from `claim`
    claim: dict = field(default_factory=dict)  # the numbers check_stop verifies

    def paragraph(self) -> str:
        return self.text.format(**self.claim)


def _unit_settings(unit: tuple[int, str, int], hypothesis: str) -> dict:
    layer, kind, u = unit
    return {"layer": layer, "kind": kind, "unit": u, "hypothesis": hypothesis, "hypothesis_chosen": True,
            "sort_by": "selectivity", "window_start": 0, "act_over_atlas": False,
            "heat_scale": "unit"}  # the unit's own colour scale: on the shared one a quiet unit's row is white


_TEXT = {"text_source": "Excerpt of the corpus", "excerpt_len": EXCERPT}

STOPS: tuple[Stop, ...] = (
    Stop("quotes", "A unit that knows it is inside a string", "python-lstm", "pages/activations_page.py",
         {**_TEXT, **_unit_settings(QUOTE_UNIT, "inside a string (tokenize)")},
         "This model read Python code, one character at a time, and nobody told it what a string is. Yet one of "
         "its cells, **layer {layer} {kind}{unit}**, is **blue across ordinary code and jumps to about zero (white, "
         "at most pale red) inside strings**, until the string closes. Look at the coloured code: the strings stand out. On this text it is the best of all the "
         "model's units at telling string from code: it scores **at least {min_score:.2f}** (1 would be perfect, "
         "0.5 a coin toss), counting one-line strings and code as Neuron search does. The table on the right sorts "
         "this layer's cells by how well they follow strings, and c{unit} comes first there too.",
         {"layer": QUOTE_UNIT[0], "kind": QUOTE_UNIT[1], "unit": QUOTE_UNIT[2], "hypothesis":
          "inside a string (tokenize)", "direction": "high", "min_score": 0.9, "colours": "blue code, white strings"}),
    Stop("cell", "The string cell, step by step", "python-lstm", "pages/cell_page.py",
         {**_TEXT, "layer": QUOTE_UNIT[0], "unit": QUOTE_UNIT[2], "cell_pos": QUOTE_STRING[0]},
         "How does **L{layer} c{unit}** know? The strip outlines the opening quote of {word}: there its **forget "
         "gate shuts** (f below {f_quote_max}; the quote's own part of f's pre-activation is below {f_input_max}) "
         "and c drops the code's value (below {c_code_max}) to about zero. Press **Next**: inside the string "
         "**f stays above {f_hold_min}** and holds c, the input gate almost shut (i below {i_inside_max}). At the "
         "closing quote f shuts again; next, i opens (above {i_after_min}) to write g below {g_after_max}: code again. "
         "The same at all {strings} one-line strings here: f is below {all_quote_max} at every quote.",
         {"layer": QUOTE_UNIT[0], "unit": QUOTE_UNIT[2], "open": QUOTE_STRING[0], "close": QUOTE_STRING[1],
          "word": QUOTE_STRING[2], "f_quote_max": 0.05, "f_input_max": -5, "c_code_max": -2, "f_hold_min": 0.95,
          "i_inside_max": 0.1, "i_after_min": 0.3, "g_after_max": -0.9, "strings": 20, "all_quote_max": 0.1}),
    Stop("line", "A unit that counts along the line", "shakespeare-lstm", "pages/activations_page.py",
         {**_TEXT, **_unit_settings(LINE_UNIT, "position in line")},
         "Verse has lines of about the same length, so knowing how far along the line you are helps to guess "
         "when the line will end. Cell **layer {layer} {kind}{unit}** of the Shakespeare LSTM grows from blue to "
         "red as the line goes on and snaps back after each newline. Its correlation with the position in the "
         "line is **at least {min_score:.2f}** on this text, the best of all the model's units; the table on the "
         "right sorts this layer's cells by that correlation, and c{unit} comes first.",
         {"layer": LINE_UNIT[0], "kind": LINE_UNIT[1], "unit": LINE_UNIT[2], "hypothesis": "position in line",
          "direction": "high", "min_score": 0.8, "colours": "blue to red along the line"}),
    Stop("temperature", "Temperature: bold or careful", "shakespeare-lstm", "pages/sample_page.py",
         {**_TEXT, "temperature": 1.6, "seed": 1, "prime": "", "length": 300, "top_k": 0, "clamp_on": False},
         "The model gives every possible next character a probability, and the sample draws one. Temperature "
         "reshapes those odds before the draw. The slider is at **{high}**: words fall apart, because "
         "**at least {high_share:.0%}** of the characters are ones the model itself gave less than a "
         "{rare:.0%} chance. Now drag it to **{low}**: fewer than **{low_share:.0%}** are such long shots, and "
         "the text turns careful and repetitive. Green shading shows how sure the model was of each choice.",
         {"high": 1.6, "low": 0.3, "seed": 1, "length": 300, "rare": 0.05, "high_share": 0.2, "low_share": 0.05}),
    Stop("gates", "Gates that act like switches", "shakespeare-lstm", "pages/gates_page.py",
         {**_TEXT, "layer": LINE_UNIT[0], "unit": LINE_UNIT[2], "gate_window": 0},
         "An LSTM's forget gate decides, at each character, how much of its memory to keep: 1 keeps all, 0 "
         "wipes it. The ribbons show the gates of the line-position cell, L{layer} c{unit}: its forget gate "
         "is near 1 along the line (above {keep_min} on average) and drops below {reset_max} at every newline. "
         "That is how the line counter resets. Scroll to **Saturation**: each dot is one unit. Most forget gates "
         "sit in between, but in layer {layer} **at least {open_units}** of the {hidden} are almost fully open "
         "(above 0.9) on more than half of the characters, and **at least {shut_units}** almost shut (below "
         "0.1): those act like switches, as Karpathy, Johnson and Fei-Fei found in 2015.",
         {"layer": LINE_UNIT[0], "unit": LINE_UNIT[2], "hidden": 512, "open_units": 60, "shut_units": 40,
          "keep_min": 0.9, "reset_max": 0.2}),
    Stop("vanishing", "The vanishing gradient: RNN against LSTM", "shakespeare-lstm", "pages/gradients_page.py",
         {**_TEXT, "grad_len": 100, "radius": lesson.RADIUS, "forget_bias": lesson.OPEN_BIAS,
          "update_bias": lesson.UPDATE_BIAS},
         "To learn from something it read 50 characters ago, a network needs the error signal (the gradient) "
         "to travel 50 steps back. The chart shows how much of it is left in freshly initialised networks (before "
         "any training, so only the design of the cell counts). A plain RNN (red) keeps **less "
         "than {rnn_max:g}** of it: almost nothing. An LSTM whose forget gate is open (dark blue) keeps "
         "**more than {lstm_min:.0%}**, because its memory is updated by adding, not by multiplying. Try the "
         "forget-gate slider at 0 and watch the LSTM lose it too.",
         {"distance": lesson.DISTANCE, "rnn_max": 1e-3, "lstm_min": 0.05}),
    Stop("memory", "The memory experiment", "shakespeare-lstm", "pages/gradients_page.py",
         {**_TEXT, "grad_len": 100, "radius": lesson.RADIUS, "forget_bias": lesson.OPEN_BIAS,
          "update_bias": lesson.UPDATE_BIAS},
         "Three small networks (the shipped memory-rnn, memory-gru and memory-lstm) learned one task: read a capital "
         "letter, wait, then repeat that letter. The page opens on **Trained on the memory task**. After a gap of {gap} characters the RNN recalls the letter **at "
         "most {rnn_max:.0%}** of the time, while the GRU and the LSTM recall it **at least {gated_min:.0%}** "
         "of the time (guessing would give {chance:.0%}). The right-hand chart shows why: of the recall's "
         "gradient, less than {rnn_grad_max:f} of it reaches back to the letter in the RNN, more than "
         "{gated_grad_min:.0%} in the GRU and the LSTM.",
         {"gap": lesson.MEMORY_GAP, "rnn_max": 0.5, "gated_min": 0.95, "chance": experiments.CHANCE,
          "rnn_grad_max": 1e-6, "gated_grad_min": 0.05}),
)


def stop_index(key: str) -> int:
    for i, s in enumerate(STOPS):
        if s.key == key:
            return i
    raise ConfigError(f"no tour stop {key!r}; the stops are {', '.join(s.key for s in STOPS)}")


# --- checks ---------------------------------------------------------------------------------------

@dataclass
class Check:
    """What check_stop measured, and whether the stop's claim holds."""

    key: str
    holds: bool
    measured: dict
    sentence: str


def stop_text(config: dict, n: int = EXCERPT) -> str:
    """The text a stop shows for a model: n characters of its held-out excerpt (the sidebar's default)."""
    held = heldout.held_out(config)
    if held is None:
        raise ConfigError("this model's held-out corpus is not on this machine: the stop cannot be checked")
    return corpora.excerpt(held, n)


def _check_unit(stop: Stop, model, config) -> Check:
    from .trace import trace
    c = stop.claim
    text = stop_text(config)
    tr = trace(model, text, gates=False)
    labels = hypotheses.HYPOTHESES[c["hypothesis"]](text)
    mask = hypotheses.hypothesis_mask(c["hypothesis"], text)
    ranked = probes.rank_units(tr, labels, mask)
    row = ranked[(ranked.layer == c["layer"]) & (ranked.kind == c["kind"]) & (ranked.unit == c["unit"])]
    score, place = float(row.score.iloc[0]), int(row.index[0]) + 1
    ev = probes.evidence(labels, mask)
    direction = str(row.direction.iloc[0])
    # the Activations table: this layer and kind by selectivity, over the characters the hypothesis counts
    stats = probes.unit_stats(tr, c["layer"], c["kind"], labels=labels, mask=mask)
    table_first = int(stats.sort_values("selectivity", ascending=False).unit.iloc[0])
    colours = _colours_hold(c["colours"], tr.get(c["layer"], c["kind"])[:, c["unit"]], labels, mask)
    holds = (score >= c["min_score"] and place == 1 and direction == c["direction"] and not ev["flagged"]
             and table_first == c["unit"] and colours)
    best = ranked.iloc[0]
    return Check(stop.key, holds, {"score": score, "place": place, "direction": direction, "table_first": table_first, "colours": colours, "best": f"L{best.layer} {best.kind}{best.unit}",
                                   "flagged": ev["flagged"]},
                 f"L{c['layer']} {c['kind']}{c['unit']} scores {score:.3f} on {c['hypothesis']} (place {place} of "
                 f"{len(ranked)}; claimed at least {c['min_score']})")


def _colours_hold(colours: str, v: np.ndarray, labels: np.ndarray, mask) -> bool:
    """The colours a paragraph names (red positive, blue negative, white near 0), on the unit's values v (T,)."""
    if colours == "red code, white strings":  # median clearly positive in code, within a quarter of it in strings
        keep = np.ones(len(v), dtype=bool) if mask is None else mask
        code, inside = np.median(v[keep & (labels < 0.5)]), np.median(v[keep & (labels > 0.5)])
        return bool(code > 0 and abs(inside) < code / 4)
    if colours == "blue code, white strings":  # median clearly negative in code, within a quarter of it in strings
        keep = np.ones(len(v), dtype=bool) if mask is None else mask
        code, inside = np.median(v[keep & (labels < 0.5)]), np.median(v[keep & (labels > 0.5)])
        return bool(code < 0 and abs(inside) < -code / 4)
    if colours == "blue to red along the line":  # negative in a line's first 10 characters, positive past 30
        return bool(np.median(v[labels < 10]) < 0 < np.median(v[labels >= 30]))
    raise ConfigError(f"no check for the colours {colours!r}")


def _check_temperature(stop: Stop, model, config) -> Check:
    c = stop.claim
    share = {}
    for t in (c["high"], c["low"]):
        s = sampling.sample(model, "", c["length"], t, seed=c["seed"])
        share[t] = float(np.mean(s.model_probs < c["rare"]))
    holds = share[c["high"]] >= c["high_share"] and share[c["low"]] < c["low_share"]
    return Check(stop.key, holds, {"high": share[c["high"]], "low": share[c["low"]]},
                 f"long shots (p < {c['rare']}): {share[c['high']]:.1%} at {c['high']}, "
                 f"{share[c['low']]:.1%} at {c['low']}")


def _check_gates(stop: Stop, model, config) -> Check:
    from .trace import trace
    c = stop.claim
    tr = trace(model, stop_text(config))
    table = saturation_table(tr)
    f = table[(table.gate == "f") & (table.layer == c["layer"])]
    n_open, n_shut = int((f.right > 0.5).sum()), int((f.left > 0.5).sum())
    text = stop_text(config)
    gate = tr.get(c["layer"], "f")[:, c["unit"]]  # (T,) the unit's forget gate
    newline = np.array([ch == "\n" for ch in text])
    keep, reset = float(gate[~newline].mean()), float(gate[newline].max())
    between = len(f) - n_open - n_shut  # "most forget gates sit in between": neither way on most characters
    holds = (len(f) == c["hidden"] and n_open >= c["open_units"] and n_shut >= c["shut_units"]
             and between > len(f) / 2 and keep > c["keep_min"] and reset < c["reset_max"])
    return Check(stop.key, holds, {"open": n_open, "shut": n_shut, "between": between, "units": len(f), "keep": keep, "reset": reset},
                 f"layer {c['layer']}: {n_open} forget gates open, {n_shut} shut on most characters, of {len(f)}; "
                 f"c{c['unit']}'s f: mean {keep:.3f} off newlines, at most {reset:.3f} on them")


def _check_vanishing(stop: Stop, model, config) -> Check:
    c = stop.claim
    s = stop.settings
    text = stop_text(config)[: s["grad_len"] + 1]  # what the Gradients page measures
    curves = {cv.key: cv for cv in lesson.fresh_curves(list(model.vocab.chars), text,
                                                         min(model.config.hidden_size, 256), s["radius"],
                                                         s["forget_bias"], lesson.HALF_BIAS, s["update_bias"])}
    d = min(c["distance"], len(text) - 2)
    rnn, lstm = curves["rnn"].at(d), curves["lstm-open"].at(d)
    holds = rnn < c["rnn_max"] and lstm > c["lstm_min"]
    return Check(stop.key, holds, {"rnn": rnn, "lstm": lstm, "distance": d},
                 f"{d} steps back: RNN keeps {rnn:.1e}, LSTM {lstm:.3f}")


def _check_memory(stop: Stop, model, config, pretrained: Path) -> Check:
    c = stop.claim
    models = {cell: load(pretrained / f"memory-{cell}")[0] for cell in ("rnn", "gru", "lstm")}
    # what the page's table and its right-hand chart show
    acc = {cell: experiments.recall_table(m, gaps=(c["gap"],))[0]["accuracy"] for cell, m in models.items()}
    grad = {cv.key: cv.at(c["gap"] - 1) for cv in lesson.memory_curves(models, gap=c["gap"])}
    holds = (acc["rnn"] <= c["rnn_max"] and min(acc["gru"], acc["lstm"]) >= c["gated_min"]
             and grad["rnn"] < c["rnn_grad_max"] and min(grad["gru"], grad["lstm"]) > c["gated_grad_min"])
    return Check(stop.key, holds, {"recall": acc, "gradient at the key": grad},
                 f"recall at gap {c['gap']}: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items())
                 + "; gradient share at the key: " + ", ".join(f"{k} {v:.1e}" for k, v in grad.items()))


def string_spans(text: str) -> list[tuple[int, int]]:
    """(opening quote, closing quote) of every one-line string that Neuron search counts in `text`."""
    name = "inside a string (tokenize)"
    inside = hypotheses.HYPOTHESES[name](text) > 0.5
    mask = hypotheses.hypothesis_mask(name, text)
    counted = inside if mask is None else inside & mask
    spans, t = [], 0
    while t < len(text):
        if counted[t]:
            e = t
            while e + 1 < len(text) and counted[e + 1]:
                e += 1
            spans.append((t, e))
            t = e + 1
        else:
            t += 1
    return spans


def _check_cell(stop: Stop, model, config) -> Check:
    """The gates of the quote cell at its string's quotes and inside it, as anatomy.step (the page) computes them."""
    from .trace import trace
    c = stop.claim
    text = stop_text(config)
    tr = trace(model, text, gates=False)
    layer, unit, a, b = c["layer"], c["unit"], c["open"], c["close"]

    def at(pos):
        return anatomy.step(model, tr, pos, layer, unit, top=0)

    spans = string_spans(text)
    opened, closed, after = at(a), at(b), at(b + 1)
    inside = [at(p) for p in range(a + 1, b)]
    quote_f = [at(p).values["f"] for span in spans for p in span]
    m = {"string": text[a:b + 1], "is_a_string": (a, b) in spans, "f_open": opened.values["f"],
         "f_open_input": opened.preact["f"]["input"], "c_prev_open": opened.values["c_prev"],
         "c_open": opened.values["c"],
         "f_inside_min": min(s.values["f"] for s in inside), "i_inside_max": max(s.values["i"] for s in inside),
         "c_inside_max": max(abs(s.values["c"]) for s in inside), "f_close": closed.values["f"],
         "i_after": after.values["i"], "g_after": after.values["g"], "c_after": after.values["c"],
         "strings": len(spans), "quote_f_max": max(quote_f)}
    near_zero = 0.2  # "about zero": a tenth of the code's value or less
    holds = (m["is_a_string"] and f"`{m['string']}`" == c["word"] and stop.settings["cell_pos"] == a
             and m["f_open"] < c["f_quote_max"] and m["f_open_input"] < c["f_input_max"]
             and m["c_prev_open"] < c["c_code_max"] and abs(m["c_open"]) < near_zero
             and m["f_inside_min"] > c["f_hold_min"] and m["i_inside_max"] < c["i_inside_max"]
             and m["c_inside_max"] < near_zero and m["f_close"] < c["f_quote_max"]
             and m["i_after"] > c["i_after_min"] and m["g_after"] < c["g_after_max"] and m["c_after"] < 0
             and m["strings"] == c["strings"] and m["quote_f_max"] < c["all_quote_max"])
    return Check(stop.key, holds, m,
                 f"L{layer} c{unit} at {m['string']!r}: f {m['f_open']:.3f} at the opening quote (input part "
                 f"{m['f_open_input']:+.2f}, c {m['c_prev_open']:+.2f} -> {m['c_open']:+.3f}), f at least "
                 f"{m['f_inside_min']:.3f} and i at most {m['i_inside_max']:.3f} inside, f {m['f_close']:.3f} at "
                 f"the closing quote, then i {m['i_after']:.2f}, g {m['g_after']:+.2f}; f at most "
                 f"{m['quote_f_max']:.3f} at the quotes of all {m['strings']} strings")


_CHECKS: dict[str, Callable] = {"quotes": _check_unit, "line": _check_unit, "temperature": _check_temperature,
                                "gates": _check_gates, "vanishing": _check_vanishing, "cell": _check_cell}


def check_stop(stop: Stop, pretrained: str | Path) -> Check:
    """Measure a stop's claim on the shipped models in `pretrained` (the model folder of each stop)."""
    pretrained = Path(pretrained)
    if stop.key == "memory":  # the page draws the shipped memory models whatever the model under study
        return _check_memory(stop, None, None, pretrained)
    model, config = load(pretrained / stop.model)
    return _CHECKS[stop.key](stop, model, config)
