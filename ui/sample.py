"""The Sample page's cached generation, its controls and its panels (the words come from rnnviz.sampling)."""
import streamlit as st

from rnnviz import render, sample_cache, sampling
from rnnviz.features import words as fwords
from rnnviz.sampling import CLAMP_LIMIT as LIMIT, Clamp, clamp_divergence, number
from ui import features as fui
from ui.state import default, keep_choice, keep_in_range

STEER_LIMIT = 100.0  # the steering strength alpha runs from -STEER_LIMIT to STEER_LIMIT

DICE = ("How each character is chosen: the model's characters are lined up from the likeliest to the least "
        "likely, each taking a slice of the line from 0 to 1 as wide as its probability; a random number u "
        "between 0 and 1 is drawn, and the character whose slice holds u is written. So a character of "
        "probability 0.1 is drawn about one time in ten even when it is not the top one: that is sampling, "
        "not a bug.")


def to_clamp(clamp) -> Clamp | None:
    """(layer, unit, value, kind) -> Clamp."""
    return Clamp(layer=clamp[0], units=[clamp[1]], value=clamp[2], kind=clamp[3]) if clamp else None


@st.cache_data(max_entries=64, show_spinner=False)
def weights_digest(model_key: str, _model) -> str:
    """The model's weights digest (the disk cache's key), hashed once per model in this process."""
    return sample_cache.model_digest(_model)


@st.cache_data(max_entries=32, show_spinner="Generating ...")
def generate(model_key: str, prime: str, length: int, temperature: float, top_k, seed: int, clamp, _model):
    """A cached Sample; `clamp` is None or (layer, unit, value, kind). A miss here reads the machine's disk
    cache (sample_cache), so a sample another server process made is not generated again."""
    return sample_cache.cached_sample(None, weights_digest(model_key, _model), prime, length, temperature, top_k,
                                      seed, to_clamp(clamp), _model)


@st.cache_data(max_entries=32, show_spinner=False)
def divergence(model_key: str, prime: str, text: str, clamp, _model):
    """Per-character KL(unclamped || clamped) along `text`, both models reading prime + text."""
    return clamp_divergence(_model, prime, text, to_clamp(clamp))


def controls(ctx) -> None:
    """Temperature, prime, length, seed and top-k."""
    V = len(ctx.model.vocab)
    for k, v in dict(temperature=0.8, prime="", length=300, seed=0, top_k=0).items():
        default(k, v)
    keep_in_range("top_k", 0, V, 0)
    keep_in_range("temperature", 0.0, 2.0, 0.8)  # a stale NaN or inf would break the slider or sample()
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
    """The clamp's widgets; (layer, unit, value, kind) when it is on, else None."""
    ss = st.session_state
    default("clamp_on", False)
    default("clamp_value", 1.0)
    kinds = ["h", "c"] if ctx.cell == "lstm" else ["h"]
    keep_choice("clamp_layer", list(range(ctx.layers)), 0)
    keep_in_range("clamp_unit", 0, ctx.hidden - 1, 0)
    keep_choice("clamp_kind", kinds, "h")
    typed = ss["clamp_value"]
    keep_in_range("clamp_value", -LIMIT, LIMIT, 1.0)
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
    st.caption(sampling.clamp_range_note(ctx.trace().get(layer, kind)[:, unit], layer, kind, unit))
    if not ss["clamp_on"]:
        return None
    note = sampling.clamp_value_note(typed, used)
    if note:
        st.info(note, icon=":material/info:")
    return layer, unit, used, kind


def show(s, title: str) -> None:
    """A sample's text, each character shaded by the probability it was drawn with."""
    st.markdown(f"**{title}**")
    st.html(render.probability_text(s.text, s.probs, rank=s.rank, u=s.u, lo=s.lo, hi=s.hi))


def pick_row() -> None:
    """Callback: a row picked in the dice table moves the position slider to it."""
    rows = st.session_state.get("dice_table", {}).get("selection", {}).get("rows", [])
    if rows:
        st.session_state["dist_pos"] = int(rows[0])


def dice(s, temperature: float, top_k) -> None:
    """The dice roll behind each character: the summary and the table."""
    st.subheader("The dice roll behind each character")
    st.caption(DICE)
    if not s.text:
        return
    st.markdown(sampling.dice_summary(s, temperature, top_k))
    fmt = {c: st.column_config.NumberColumn(format="%.4f") for c in ("p (as drawn)", "p at T=1", "u", "slice from",
                                                                     "slice to")}
    st.dataframe(sampling.dice_table(s), key="dice_table", on_select=pick_row, selection_mode="single-row",
                 hide_index=True, height=250, column_config=fmt)
    st.caption("Hover a character of the text for the same numbers; click a row to look at that choice below.")


def clamped(ctx, s, args: tuple, clamp) -> None:
    """The same sample with the unit held, side by side, and how far the clamp moved the distributions."""
    other = generate(*args, clamp, _model=ctx.model)
    kl = divergence(ctx.key, args[1], other.text, clamp, _model=ctx.model)
    left, right = st.columns(2)
    with left:
        show(s, "Without the intervention")
    with right:
        show(other, f"With layer {clamp[0]} {clamp[3]}{clamp[1]} held at {number(clamp[2])}")
    st.caption(f"Same seed and settings on both sides. The unit is held at {number(clamp[2])} at every step, "
               "from the prime's first character on, so even the first generated character's distribution "
               "can change: every difference comes from the clamped unit.")
    if kl.size:
        st.caption(sampling.divergence_summary(kl))


@st.cache_data(max_entries=32, show_spinner="Generating with the feature added ...")
def steered_sample(model_key: str, prime: str, length: int, temperature: float, top_k, seed: int, steer_key: tuple,
                   _model, _steer):
    """A cached (Sample, KL along it) with the steer held at every step; steer_key names (dictionary, feature, alpha)."""
    return sampling.steered_sample(_model, _steer, prime, length, temperature=temperature, top_k=top_k, seed=seed)


def steer_controls(ctx):
    """The steering widgets; (dictionary key, feature, alpha, Steer) when it is on, else None."""
    ss = st.session_state
    st.subheader("Intervene: steer with a feature")
    study, key = fui.ready(ctx)
    if study is None:
        st.caption("Steering adds a feature's decoder direction to the state at every step. No dictionary is ready "
                   "for this model with the settings chosen on Features: train one there first.")
        st.page_link("pages/features_page.py", label="Features", icon=":material/scatter_plot:")
        return None
    d = study.dictionary
    keep_in_range("steer_feature", 0, d.d_sae - 1, fui.default_feature(study))
    i = int(ss["steer_feature"])
    default("steer_on", False)
    keep_in_range("steer_alpha", -STEER_LIMIT, STEER_LIMIT, float(f"{study.table.iloc[i]['max']:.3g}"))
    st.toggle("Steer with a feature while generating", key="steer_on")
    c1, c2 = st.columns(2)
    c1.number_input(f"Feature (0 to {d.d_sae - 1:,}) of layer {d.layer} {d.state}", 0, d.d_sae - 1, step=1,
                    key="steer_feature")
    c2.number_input(f"α ({-STEER_LIMIT:g} to {STEER_LIMIT:g})", step=0.5, key="steer_alpha")
    i, alpha = int(ss["steer_feature"]), float(ss["steer_alpha"])
    row = study.table.iloc[i]
    label = "" if row.isna()["label"] else f"; its best label: {row['direction']} {row['label']} ({row['score']:.3f})"
    st.caption(fwords.steer_caption(i, d.layer, d.state, float(row["max"])) + label + ".")
    if not ss["steer_on"]:
        return None
    steer = sampling.Steer(layer=d.layer, direction=d.W_dec[i], alpha=alpha, kind=d.state)
    return key, i, alpha, steer


def steer_notice(ctx) -> None:
    """At the top of the page while steering is on: where its sample is (far below the first screen)."""
    ss = st.session_state
    if ss.get("steer_on") and ss.get("steer_feature") is not None and fui.ready(ctx)[0] is not None:
        st.info(f"Steering with feature {int(ss['steer_feature'])} (α = {number(ss.get('steer_alpha', 0.0))}) is on: "
                "the steered sample is beside the plain one under **Intervene: steer with a feature**, below.",
                icon=":material/arrow_downward:")


def steered(ctx, s, args: tuple, steering) -> None:
    """The same sample with the feature added at every step, side by side, and how far it moved the distributions."""
    key, i, alpha, steer = steering
    other, kl = steered_sample(*args, (key, i, alpha), _model=ctx.model, _steer=steer)
    left, right = st.columns(2)
    with left:
        show(s, "Without the intervention")
    with right:
        show(other, f"With {number(alpha)} × feature {i} added")
    st.caption("Same seed and settings on both sides: every difference comes from the added direction.")
    if kl.size:
        st.caption(sampling.steer_summary(kl, f"feature {i}'s decoder row", alpha))

