"""Escaped HTML for text coloured by a per-character value (Karpathy's 2015 figures), for st.html."""
from __future__ import annotations

import html
import unicodedata

import numpy as np

from .errors import ConfigError
from .hypotheses import is_binary

NAN_COLOR = (204, 204, 204)  # neutral grey: no value (the last character's surprisal, say)
WHITE = (255, 255, 255)
NEG_COLOR = (67, 147, 195)  # blue of RdBu, light enough that black text stays readable
POS_COLOR = (214, 96, 77)  # red of RdBu
SEQ_COLOR = (49, 163, 84)  # green: probabilities, from white (0) to green (1)
BAND_COLOR = "#6a3d9a"  # purple: a hypothesis's label band, apart from the red, blue and green fills
BAND_SKIP = "#aaa"  # dotted grey band: a character the hypothesis does not count

# the container: its own colours (so a dark app theme can't hide the text) and pre-wrap (spaces, tabs)
_BOX = ("font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 14px; "
        "line-height: 1.6; white-space: pre-wrap; word-break: break-all; background: #fff; color: #000; "
        "padding: 6px; border: 1px solid #ddd; border-radius: 4px;")
_NOTE = "font-family: sans-serif; font-size: 12px; color: #666; margin-top: 4px;"
_SPECIAL = {"\n": "↵", " ": "␣", "\t": "⇥"}
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi marks, surrogates, separators


def char_label(ch: str) -> str:
    """A visible label for one character: '\\n' -> '↵', ' ' -> '␣', '\\t' -> '⇥', controls -> '\\x00'."""
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    cat = unicodedata.category(ch)
    if cat in _INVISIBLE:
        # invisible or layout-changing characters (NUL, RTL override U+202E) would hide or reorder text
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    if cat in ("Mn", "Me"):
        return "\u25cc" + ch  # a combining mark on a dotted circle, so it has a cell of its own
    return ch


def _display(ch: str) -> str:
    """What a coloured cell shows: spaces and tabs as themselves (pre-wrap keeps them), the rest labelled."""
    return ch if ch in (" ", "\t") else char_label(ch)


def _mix(a: tuple, b: tuple, t: float) -> tuple[int, int, int]:
    """Linear blend of two rgb colours, t in [0, 1]."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def value_color(v: float, vmin: float, vmax: float, diverging: bool = True) -> tuple[int, int, int]:
    """rgb for a value: blue-white-red around 0 (diverging), or white to green from vmin to vmax."""
    if not np.isfinite(v):
        return NAN_COLOR
    if diverging:
        # separate scales for each side, so 0 is always white even when vmin != -vmax
        if v >= 0:
            return _mix(WHITE, POS_COLOR, min(1.0, v / vmax) if vmax > 0 else 1.0)
        return _mix(WHITE, NEG_COLOR, min(1.0, v / vmin) if vmin < 0 else 1.0)
    t = (v - vmin) / (vmax - vmin) if vmax > vmin else 1.0
    return _mix(WHITE, SEQ_COLOR, float(np.clip(t, 0.0, 1.0)))


def _rgb(c: tuple) -> str:
    return f"rgb({c[0]}, {c[1]}, {c[2]})"


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3g}"


def _limits(values: np.ndarray, vmin, vmax, diverging: bool) -> tuple[float, float]:
    """Default colour range: +-max(1, max|v|) around 0 (tanh units fill it), else [min(0, lo), max(1, hi)]."""
    finite = values[np.isfinite(values)]
    if diverging:
        lim = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
        lo, hi = -lim, lim
    else:
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        hi = max(1.0, float(finite.max())) if finite.size else 1.0
    return (lo if vmin is None else float(vmin)), (hi if vmax is None else float(vmax))


def _cut_note(shown: int, total: int) -> str:
    return (f'<div style="{_NOTE}">cut: showing the first {shown:,} of {total:,} characters</div>'
            if shown < total else "")


def robust_limit(values: np.ndarray, q: float = 95.0) -> float:
    """A unit's own colour range: the q-th percentile of |value| over the finite values (beyond it the
    colour saturates, so a few extreme characters do not wash out the rest); max |value| if that is 0,
    1 if the values are all 0 or none is finite."""
    a = np.abs(np.asarray(values, dtype=np.float64).reshape(-1))
    a = a[np.isfinite(a)]
    if not a.size:
        return 1.0
    lim = float(np.percentile(a, q))
    return lim if lim > 0 else (float(a.max()) or 1.0)


def _band(band: np.ndarray | None, n: int) -> np.ndarray | None:
    """A per-character label band (T,) as float64: 1 holds, 0 does not, NaN not counted."""
    if band is None:
        return None
    b = np.asarray(band, dtype=np.float64).reshape(-1)
    if len(b) != n:
        raise ConfigError(f"{n} characters but {len(b)} labels: give one label per character")
    if np.any(np.isfinite(b) & (b != 0) & (b != 1)):
        raise ConfigError("the label band takes yes/no labels (1, 0, or NaN where not counted)")
    return b


def band_legend(band_label: str) -> str:
    """The words under a label band: what a band under a character means."""
    name = html.escape(str(band_label), quote=True)
    return (f'<div style="{_NOTE}"><span style="border-bottom: 4px solid {BAND_COLOR}">&nbsp;&nbsp;&nbsp;</span> '
            f"band under a character: {name} holds there (label 1); no band: it does not (label 0); "
            f'<span style="border-bottom: 4px dotted {BAND_SKIP}">&nbsp;&nbsp;&nbsp;</span> dotted: not counted</div>')


def own_range_words(lim: float, hypothesis: str = "", labels=None, mask=None, band: bool = False) -> str:
    """The words under a unit coloured on its own range, +-lim (robust_limit), over a text whose
    hypothesis `labels` (T,; None: no hypothesis) count the characters `mask` keeps; band: whether
    those labels are drawn as a band under the text (yes/no labels only)."""
    words = (f"Colour on this unit's own range: full red at +{lim:.3g}, full blue at −{lim:.3g} (95% of its "
             f"|values| on this text lie within; beyond, the colour saturates), white at 0.")
    if labels is None:
        return words
    y = np.asarray(labels).ravel()
    counted = y if mask is None else y[np.asarray(mask, dtype=bool).ravel()]
    if band and counted.size and counted.min() == counted.max():
        return words + (f" *{hypothesis}* {'holds on every' if counted.max() else 'holds on none of the'} "
                        f"{counted.size:,} characters it counts in this text"
                        + (" (the dotted band: those it does not count)" if mask is not None else "")
                        + ", so no unit can be scored against it here.")
    if band:
        return words + (f" The purple band marks where *{hypothesis}* holds (label 1): a unit that follows it is "
                        "coloured one way above the band and the other way elsewhere.")
    if not is_binary(counted):
        return words + f" *{hypothesis}* is a count, not yes/no: no band of labels for it."
    return words


def colored_text(text: str, values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                 diverging: bool = True, label: str = "value", max_chars: int = 5000, mark: int | None = None,
                 first: int = 0, notes: list[str] | None = None, band: np.ndarray | None = None,
                 band_label: str = "the hypothesis") -> str:
    """One <div> with a <span> per character, its background the value and its tooltip '#t 'c' label=v'.

    `mark` outlines one character (a context's peak); `first` is the position of text[0] in a longer
    text, so tooltips give positions in that text; `notes` (one string per character) end the tooltips.
    `band` (T,): a hypothesis's yes/no labels (NaN where not counted), drawn as a thin band under each
    character where the label is 1 (dotted grey where not counted), with a legend naming `band_label`,
    so the unit's colour and the labels can be read one above the other."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)  # (T,)
    if len(values) != len(text):
        raise ConfigError(f"{len(text)} characters but {len(values)} values: give one value per character")
    band = _band(band, len(text))
    lo, hi = _limits(values, vmin, vmax, diverging)
    n = min(len(text), max(0, int(max_chars)))
    name = html.escape(str(label), quote=True)
    parts = []
    for t in range(n):
        ch, v = text[t], values[t]
        # a NaN is a character with no value (the Why page's characters after the target): say so, not "nan"
        tip = html.escape(f"#{first + t} '{char_label(ch)}' ", quote=True) + \
            (f"{name}={_fmt(v)}" if np.isfinite(v) else f"{name}: no value")
        if notes is not None:
            tip += html.escape(notes[t], quote=True)
        shown = html.escape(_display(ch), quote=True)
        if ch == "\n":
            shown += "<br>"  # the ↵ marks the line end; the break keeps the layout of the text
        peak = "; outline: 2px solid #111; font-weight: bold" if t == mark else ""
        under = ""
        if band is not None:
            b = band[t]
            under = (f"; border-bottom: 4px dotted {BAND_SKIP}" if not np.isfinite(b) else
                     f"; border-bottom: 4px solid {BAND_COLOR}" if b == 1 else "; border-bottom: 4px solid transparent")
            tip += html.escape(" label=" + ("not counted" if not np.isfinite(b) else str(int(b))), quote=True)
        parts.append(f'<span title="{tip}" style="background-color: {_rgb(value_color(v, lo, hi, diverging))}{peak}'
                     f'{under}">{shown}</span>')
    legend = band_legend(band_label) if band is not None else ""
    return f'<div class="rnnviz-text" style="{_BOX}">{"".join(parts)}{_cut_note(n, len(text))}{legend}</div>'


def probability_text(text: str, probs: np.ndarray, max_chars: int = 5000, rank=None, u=None, lo=None,
                     hi=None) -> str:
    """Sampled text, each character coloured by the probability the model gave it (tooltip 'p=0.12').

    Given a Sample's dice roll (rank, u, lo, hi per character), the tooltip adds it:
    'p=0.12, rank 3, drawn by u=0.7341 in [0.7020, 0.8220)'."""
    notes = None
    if rank is not None:
        n = min(len(text), max(0, int(max_chars)))
        notes = [f", rank {int(rank[t])}, drawn by u={u[t]:.4f} in [{lo[t]:.4f}, {hi[t]:.4f})" for t in range(n)]
        notes += [""] * (len(text) - n)
    return colored_text(text, probs, vmin=0.0, vmax=1.0, diverging=False, label="p", max_chars=max_chars,
                        notes=notes)


def top_predictions_html(trace, start: int, end: int, k: int = 5, max_cols: int = 400) -> str:
    """The 2015 blog figure: under each character, its top-k next-character guesses and the surprisal.

    A horizontally scrolling table; the guess that matches the true next character is outlined.
    """
    T = len(trace.text)
    start, end = max(0, int(start)), min(T, int(end))
    if end <= start:
        raise ConfigError(f"empty range: start {start} must be before end {end} (the text has {T} characters)")
    cut = end - start > max_cols
    end = min(end, start + max_cols)
    if k <= trace.top_ids.shape[1]:
        ids, ps = trace.top_ids[start:end, :k], trace.top_probs[start:end, :k]  # (n, k)
    else:
        ids = np.argsort(-trace.probs[start:end], axis=1, kind="stable")[:, :k]  # (n, k)
        ps = np.take_along_axis(trace.probs[start:end], ids, axis=1)
    td = "padding: 1px 4px; text-align: center; border: 1px solid transparent;"
    head, rows, loss_row = [], [[] for _ in range(ids.shape[1])], []
    for j, t in enumerate(range(start, end)):
        ch = trace.text[t]
        nxt = trace.text[t + 1] if t + 1 < T else None
        head.append(f'<th title="{html.escape(f"#{t}", quote=True)}" style="{td} font-weight: bold; '
                    f'border-bottom: 1px solid #999;">{html.escape(char_label(ch), quote=True)}</th>')
        for r in range(ids.shape[1]):
            guess, p = trace.vocab[int(ids[j, r])], float(ps[j, r])
            hit = "border: 1px solid #000;" if guess == nxt else ""
            tip = html.escape(f"'{char_label(guess)}' p={p:.3g}", quote=True)
            rows[r].append(f'<td title="{tip}" style="{td} {hit} background-color: '
                           f'{_rgb(value_color(p, 0.0, 1.0, diverging=False))}">'
                           f"{html.escape(char_label(guess), quote=True)}</td>")
        s = float(trace.loss[t])
        loss_row.append(f'<td title="surprisal of the next character in nats" style="{td} font-size: 10px; '
                        f'color: #555;">{_fmt(s)}</td>')
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in [head, *rows, loss_row])
    table = (f'<table style="border-collapse: collapse; font-family: ui-monospace, Menlo, Consolas, monospace; '
             f'font-size: 12px; white-space: pre;">{body}</table>')
    note = f'<div style="{_NOTE}">cut: showing {max_cols:,} characters from #{start}</div>' if cut else ""
    return (f'<div class="rnnviz-top" style="overflow-x: auto; background: #fff; color: #000; padding: 4px;">'
            f"{table}{note}</div>")
