"""Sample: generate text at a temperature, coloured by confidence; temperatures compared; clamp a unit."""
import math

import numpy as np
import pandas as pd
import streamlit as st

import ui
from rnnviz import plots, render
from rnnviz.sampling import Clamp, clamp_divergence, sample, start_text

LIMIT = 10.0  # clamp values run from -LIMIT to LIMIT


def to_clamp(clamp) -> Clamp | None:
    """(layer, unit, value, kind) -> Clamp."""
    return Clamp(layer=clamp[0], units=[clamp[1]], value=clamp[2], kind=clamp[3]) if clamp else None


def number(v) -> str:
    """The shortest text that reads back as exactly this float ('10', '0.1234567')."""
    return repr(float(v)).removesuffix(".0")


@st.cache_data(max_entries=32, show_spinner="Generating ...")
def generate(model_key: str, prime: str, length: int, temperature: float, top_k, seed: int, clamp, _model):
    """A cached Sample; `clamp` is None or (layer, unit, value, kind)."""
    return sample(_model, prime, length, temperature=temperature, top_k=top_k, seed=seed, clamp=to_clamp(clamp))


@st.cache_data(max_entries=32, show_spinner=False)
def divergence(model_key: str, prime: str, text: str, clamp, _model):
    """Per-character KL(unclamped || clamped) along `text`, both models reading prime + text."""
    return clamp_divergence(_model, prime, text, to_clamp(clamp))


def controls(ctx):
    V = len(ctx.model.vocab)
    for k, v in dict(temperature=0.8, prime="", length=300, seed=0, top_k=0).items():
        ui.default(k, v)
    ui.keep_in_range("top_k", 0, V, 0)
    ui.keep_in_range("temperature", 0.0, 2.0, 0.8)  # a stale NaN or inf would break the slider or sample()
    st.slider("Temperature", 0.0, 2.0, step=0.05, key="temperature",
              help="Divides the logits before the softmax: low = safe and repetitive, high = surprising; 0 = "
                   "always the likeliest character.")
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    # a text area, not a text input: a prime of code needs its newlines and indentation
    c1.text_area("Prime (the text the model reads first; empty = a newline)", key="prime", height=90)
    c2.number_input("Length", 1, 5000, step=50, key="length")
    c3.number_input("Seed", 0, 2**31 - 1, step=1, key="seed")
    c4.number_input("Top-k (0 = off)", 0, V, step=1, key="top_k")


def clamp_controls(ctx):
    ss = st.session_state
    ui.default("clamp_on", False)
    ui.default("clamp_value", 1.0)
    kinds = ["h", "c"] if ctx.cell == "lstm" else ["h"]
    ui.keep_choice("clamp_layer", list(range(ctx.layers)), 0)
    ui.keep_in_range("clamp_unit", 0, ctx.hidden - 1, 0)
    ui.keep_choice("clamp_kind", kinds, "h")
    typed = ss["clamp_value"]
    ui.keep_in_range("clamp_value", -LIMIT, LIMIT, 1.0)
    st.subheader("Intervene: clamp a unit")
    st.toggle("Clamp a unit while generating", key="clamp_on")
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox("Layer", list(range(ctx.layers)), key="clamp_layer", format_func=lambda l: f"layer {l}")
    c2.number_input(f"Unit (0 to {ctx.hidden - 1})", 0, ctx.hidden - 1, step=1, key="clamp_unit")
    # no bounds on the box itself: the browser would refuse 50 and leave the page on the previous value;
    # here 50 is held at 10, the box shows 10, and a note says so
    c3.number_input(f"Value ({-LIMIT:g} to {LIMIT:g})", step=0.25, key="clamp_value")
    c4.selectbox("State", kinds, key="clamp_kind")
    layer, unit, kind, used = int(ss["clamp_layer"]), int(ss["clamp_unit"]), ss["clamp_kind"], float(ss["clamp_value"])
    values = ctx.trace().get(layer, kind)[:, unit]
    bound = ("h always lies in [-1, 1], so a value beyond that holds the unit where the model never puts it."
             if kind == "h" else "c has no fixed range, but the unit passes on h = o·tanh(c), and tanh barely "
             "moves beyond ±3 (tanh 3 = 0.995): holding c at 5 changes little where it is already above 3.")
    st.caption(f"Layer {layer} {kind}{unit} over the text under study ({len(values):,} characters): "
               f"min {values.min():.2f}, max {values.max():.2f}. {bound}")
    if not ss["clamp_on"]:
        return None
    number_typed = isinstance(typed, (int, float)) and not isinstance(typed, bool)
    if number_typed and math.isfinite(typed) and typed != used:
        st.info(f"{number(typed)} is outside the allowed {-LIMIT:g} to {LIMIT:g}: the unit is held at "
                f"{number(used)}, the nearest allowed value.", icon=":material/info:")
    elif not (number_typed and typed == used):
        st.info(f"The stored clamp value {typed!r} cannot be used (clamp values are numbers from {-LIMIT:g} to "
                f"{LIMIT:g}): the unit is held at {number(used)}.", icon=":material/info:")
    return layer, unit, used, kind


def show(s, title):
    st.markdown(f"**{title}**")
    st.html(render.probability_text(s.text, s.probs, rank=s.rank, u=s.u, lo=s.lo, hi=s.hi))


DICE = ("How each character is chosen: the model's characters are lined up from the likeliest to the least "
        "likely, each taking a slice of the line from 0 to 1 as wide as its probability; a random number u "
        "between 0 and 1 is drawn, and the character whose slice holds u is written. So a character of "
        "probability 0.1 is drawn about one time in ten even when it is not the top one: that is sampling, "
        "not a bug.")


def dice_table(s) -> pd.DataFrame:
    """One row per generated character: its rank, probabilities, and the draw u with the slice it fell in."""
    return pd.DataFrame({"#": np.arange(len(s.text)), "character": [render.char_label(c) for c in s.text],
                         "rank": s.rank, "p (as drawn)": s.probs, "p at T=1": s.model_probs, "u": s.u,
                         "slice from": s.lo, "slice to": s.hi})


def pick_row():
    rows = st.session_state.get("dice_table", {}).get("selection", {}).get("rows", [])
    if rows:
        st.session_state["dist_pos"] = int(rows[0])


def dice(s, temperature: float, top_k) -> None:
    st.subheader("The dice roll behind each character")
    st.caption(DICE)
    if not s.text:
        return
    below = int(np.sum(s.rank > 1))
    used = f"temperature {temperature:.2f}" + (f" and top-{top_k}" if top_k else "")
    st.markdown(f"Of the {len(s.text):,} characters, **{len(s.text) - below:,}** were the likeliest one (rank 1) "
                f"and **{below:,}** were not: their u fell in a later slice. Probabilities are those of the "
                f"distribution the character was drawn from ({used}); p at T=1 is the model's own.")
    fmt = {c: st.column_config.NumberColumn(format="%.4f") for c in ("p (as drawn)", "p at T=1", "u", "slice from",
                                                                     "slice to")}
    st.dataframe(dice_table(s), key="dice_table", on_select=pick_row, selection_mode="single-row", hide_index=True,
                 height=250, column_config=fmt)
    st.caption("Hover a character of the text for the same numbers; click a row to look at that choice below.")


def main():
    ctx = ui.require_model()
    st.title("Sample")
    # every control here reruns and redraws only this page's body, never the sidebar
    st.fragment(lambda: ui.guard(body, ctx))()


def body(ctx):
    ss = st.session_state
    controls(ctx)
    top_k = int(ss["top_k"]) or None
    args = (ctx.key, ss["prime"], int(ss["length"]), float(ss["temperature"]), top_k, int(ss["seed"]))
    s = generate(*args, None, _model=ctx.model)
    if s.unknown:
        st.info("The prime holds characters the model never saw (read as the unknown symbol): "
                + ", ".join(repr(c) for c in sorted(s.unknown)), icon=":material/info:")
    st.caption("Each generated character is shaded by the probability it had when it was drawn: dark green = "
               "the model was sure, white = a surprise. Hover for the value and the dice roll that drew it.")
    show(s, f"Generated at temperature {ss['temperature']:.2f}" + (f", top-{top_k}" if top_k else ""))
    dice(s, float(ss["temperature"]), top_k)

    st.subheader("One choice at several temperatures")
    start = start_text(ctx.model.vocab, ss["prime"])
    full = start + s.text
    ui.keep_in_range("dist_pos", 0, max(0, len(s.text) - 1), 0)
    if len(s.text) > 1:
        st.slider("Position in the generated text", 0, len(s.text) - 1, key="dist_pos")
    pos = int(ss.get("dist_pos", 0))
    row = len(start) - 1 + pos  # in prime + text, the last character read before `pos` was drawn
    logits = s.logp[pos]  # the model's own log-probabilities at that step: the distribution at T = 1
    temps = tuple(sorted({0.5, 1.0, 1.5, round(float(ss["temperature"]), 2)}))
    context = full[max(0, row - 30): row + 1]
    st.caption(f"After reading …{context[-30:]!r}, the model drew {s.text[pos]!r}: rank {int(s.rank[pos])}, "
               f"p = {s.probs[pos]:.4f} as drawn, u = {s.u[pos]:.4f} fell in its slice "
               f"[{s.lo[pos]:.4f}, {s.hi[pos]:.4f}).")
    st.plotly_chart(plots.temperature_distributions(logits, list(ctx.model.vocab.chars), temperatures=temps),
                    key="temp_dist",
                    config={"displaylogo": False})

    clamp = clamp_controls(ctx)
    if clamp is not None:
        clamped = generate(*args, clamp, _model=ctx.model)
        kl = divergence(ctx.key, ss["prime"], clamped.text, clamp, _model=ctx.model)
        left, right = st.columns(2)
        with left:
            show(s, "Without the intervention")
        with right:
            show(clamped, f"With layer {clamp[0]} {clamp[3]}{clamp[1]} held at {number(clamp[2])}")
        st.caption(f"Same seed and settings on both sides. The unit is held at {number(clamp[2])} at every step, "
                   "from the prime's first character on, so even the first generated character's distribution "
                   "can change: every difference comes from the clamped unit.")
        if kl.size:
            st.caption(f"The clamp moved the next-character distributions by a mean KL(unclamped || clamped) "
                       f"{kl.mean():.3g} nats per character, largest {kl.max():.3g}: both models read the "
                       f"right-hand text, and at each of its {kl.size:,} characters their distributions for it "
                       "are compared (0 = no change at all; the same text on both sides can still hide a change).")


ui.run_page(main)
