"""Training history: scrub through a run's snapshots, watch samples turn into words and a unit emerge."""
import hashlib
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import ui
from rnnviz import checkpoint, experiments, history, losses, plots, render
from rnnviz.hypotheses import HYPOTHESES
from rnnviz.probes import default_hypothesis

TEXT_CHARS = 1_500  # characters of the text the unit, the gates and the emergence are computed over
GRAD_CHARS = 100  # the gradient-decay window: the loss at its last character
CONFIG = {"displaylogo": False}


def _mtime(path: Path) -> int:
    try:
        return (path / checkpoint.CONFIG).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(max_entries=8, show_spinner="Reading the history ...")
def _history(path: str, mtime_ns: int) -> history.History:
    """Every snapshot checked once per server (keyed by the checkpoint's config.json modification time)."""
    return history.read(path)


@st.cache_resource(max_entries=48, show_spinner="Loading the snapshot ...")
def _snapshot(path: str, mtime_ns: int):
    """One snapshot's model, shared read-only by every session."""
    return checkpoint.load(path)[0]


def _model(hist: history.History, step: int):
    snap = hist.snapshot(step)
    return _snapshot(str(snap.path), _mtime(snap.path))


def _key(hist: history.History, step: int | str) -> str:
    return f"{hist.path}@{_mtime(hist.path)}#{step}"


@st.cache_data(max_entries=256, show_spinner=False)
def _sample(key: str, prime: str, length: int, temperature: float, seed: int, _model) -> str:
    return history.sample_text(_model, prime, length, temperature, seed)


@st.cache_data(max_entries=128, show_spinner=False)
def _saturation(key: str, text: str, _model) -> pd.DataFrame:
    return history.saturation(_model, text)


@st.cache_data(max_entries=128, show_spinner=False)
def _gradient(key: str, text: str, _model):
    return history.gradient_decay(_model, text, GRAD_CHARS)


@st.cache_data(max_entries=256, show_spinner=False)
def _unit(key: str, text: str, layer: int, kind: str, unit: int, _model) -> np.ndarray:
    return history.unit_values(_model, text, layer, kind, unit)


@st.cache_data(max_entries=16, show_spinner="Ranking the units of every snapshot ...")
def _emergence(key: str, text: str, hypothesis: str, threshold: float, _hist) -> history.Emergence:
    models = {s: _model(_hist, s) for s in _hist.steps}
    return history.emergence_of(_hist, text, hypothesis, threshold, models=models)


@st.cache_data(max_entries=8, show_spinner="Measuring recall at every snapshot ...")
def _recall(key: str, gaps: tuple, _hist) -> pd.DataFrame:
    return experiments.recall_over_training({s: _model(_hist, s) for s in _hist.steps}, list(gaps))


@st.cache_data(max_entries=16, show_spinner="Sampling every snapshot ...")
def _evolution(key: str, prime: str, length: int, temperature: float, seed: int, text: str, _hist) -> pd.DataFrame:
    models = {s: _model(_hist, s) for s in _hist.steps}
    return history.evolution(_hist, models, prime, length, temperature, seed, loss_text=text)


def _checkpoints_with_history() -> dict[str, Path]:
    """Shipped and saved checkpoints that hold a history, by label."""
    out = {}
    for source, folder in (("shipped", ui.pretrained_dir()), ("saved", ui.models_dir())):
        try:
            paths = checkpoint.list_checkpoints(folder)
        except OSError:
            paths = []
        for p in paths:
            if history.has_history(p):
                out[f"{p.name} ({source})"] = p
    return out


def _memory_gaps(config: dict) -> tuple[int, ...]:
    """The gaps a memory-task checkpoint was trained and scored on."""
    return tuple(int(g) for g in config["memory"].get("gaps") or experiments.GAPS)


def _text_for(ctx, path: Path, config: dict) -> tuple[str, str]:
    """The text to compute over: the text under study for the sidebar's model, else an excerpt of the
    held-out part of this checkpoint's own corpus."""
    if ctx.entry.path is not None and Path(ctx.entry.path) == path and ctx.text:
        return ctx.text[:TEXT_CHARS], "the text under study"
    if isinstance(config.get("memory"), dict):  # a memory-task model: fresh draws of its own task
        gaps = _memory_gaps(config)
        per_gap = -(-TEXT_CHARS // sum(g + 2 for g in gaps))
        return experiments.mixed_memory_text(gaps, per_gap, seed=1)[:TEXT_CHARS], "fresh memory-task text"
    if isinstance(config.get("corpus"), dict):
        text, _ = ui.corpus_excerpt(json.dumps(config["corpus"], sort_keys=True), config.get("recipe"), TEXT_CHARS)
        if text:
            return text[:TEXT_CHARS], "an excerpt of its held-out text"
    return ctx.text[:TEXT_CHARS], "the text under study"


def _no_history(ctx) -> None:
    why = ("it was uploaded without a history/ folder (zip the whole checkpoint folder to bring its snapshots)"
           if ctx.entry.source == "upload" else "it was saved without snapshots")
    st.info(f"**{ctx.name}** has no training history: {why}. Train a model with "
            "a history (the Train page records one), or pick a shipped model that has one below.",
            icon=":material/history:")
    st.page_link("pages/train_page.py", label="Train a model with a history", icon=":material/model_training:")


def recall_section(hist: history.History, step: int) -> None:
    """A memory-task model: recall at every gap, at every snapshot (fresh draws, as the Gradients page)."""
    gaps = _memory_gaps(hist.config)
    df = ui.guard(_recall, _key(hist, "all"), gaps, _hist=hist)
    if df is None:
        return
    st.subheader(f"Recall across the gap at step {step:,}")
    now = df[df.step == step].set_index("gap").accuracy
    st.markdown(f"The model reads a key letter, a gap of filler, `=`, and must repeat the key. At step {step:,} it "
                "recalls " + ", ".join(f"**{now[g]:.0%}** at gap {g}" for g in gaps) +
                f" (chance {experiments.CHANCE:.0%}; {experiments.EVAL_SEGMENTS} fresh recalls per gap, the same at "
                "every snapshot).")
    st.plotly_chart(plots.recall_over_steps(df, step, experiments.CHANCE), key="hist_recall", config=CONFIG)


def main():
    ctx = ui.require_model()
    st.title("Training history")
    st.caption("A run's snapshots, from the first steps to the last: drag the slider to see what the network "
               "had learned by then. Every number is computed from that snapshot's own weights (float16 as saved).")
    ss = st.session_state
    choices = _checkpoints_with_history()
    own = Path(ctx.entry.path) if ctx.entry.path is not None else None
    if own is not None and history.has_history(own):
        choices = {f"{ctx.name} (the model under study)": own, **{k: v for k, v in choices.items() if v != own}}
    else:
        _no_history(ctx)
    if not choices:
        st.warning("No checkpoint here holds a history yet.")
        return
    ui.keep_choice("hist_model", list(choices))
    label = st.selectbox("History of", list(choices), key="hist_model")
    path = choices[label]
    hist = _history(str(path), _mtime(path))
    if ss.get("hist_for") != str(path):  # another history: from its last step, its own hypothesis and unit
        ss["hist_for"] = str(path)
        ss["hist_hypothesis"] = default_hypothesis(hist.config)
        for k in ("hist_step", "hist_layer", "hist_kind", "hist_unit"):
            ss.pop(k, None)
    for line in hist.problems():
        st.warning(f"A snapshot could not be loaded and is left out: {line}", icon=":material/warning:")
    if not hist.steps:
        st.error("None of this history's snapshots can be loaded.")
        return
    steps = hist.steps
    text, where = _text_for(ctx, path, hist.config)

    ui.keep_choice("hist_step", steps, steps[-1])
    left, right = st.columns([2, 3])
    with left:
        st.select_slider("Snapshot (training step)", options=steps, key="hist_step",
                         format_func=lambda s: f"{s:,}")
        step = int(ss["hist_step"])
        snap = hist.snapshot(step)
        lines = [f"**Step {step:,}** of {steps[-1]:,} ({steps.index(step) + 1} of {len(steps)} snapshots)"]
        if "val_loss" in snap.config:
            lines.append(f"validation loss {snap.config['val_loss']:.3f} nats/char on {losses.eval_basis(hist.config)}")
        if "train_loss" in snap.config:
            lines.append(f"train loss {snap.config['train_loss']:.3f} on {losses.train_basis(hist.config)}")
        st.markdown(" · ".join(lines))
        ui.default("hist_temp", 0.8)
        ui.keep_in_range("hist_temp", 0.0, 2.0, 0.8)
        ui.default("hist_seed", 1)
        ui.keep_in_range("hist_seed", 0, 2**31 - 1, 1)
        c1, c2 = st.columns(2)
        c1.slider("Temperature", 0.0, 2.0, step=0.05, key="hist_temp")
        c2.number_input("Seed", 0, 2**31 - 1, step=1, key="hist_seed")
    with right:
        st.plotly_chart(plots.loss_with_step(hist.curve(), steps, step), key="hist_loss", config=CONFIG)
        st.caption(f"In nats/char. Train: each step's loss on {losses.train_basis(hist.config)}. Validation: "
                   f"on {losses.eval_basis(hist.config)}. The model card's validation loss may be over "
                   "another text: it says which.")

    model = _model(hist, step)
    temperature, seed = float(ss["hist_temp"]), int(ss["hist_seed"])
    st.subheader(f"Sample at step {step:,}")
    st.caption(f"200 characters after a newline, temperature {temperature:g}, seed {seed}: the same draws at "
               "every snapshot, so what changes is the network.")
    sample = _sample(_key(hist, step), "\n", 200, temperature, seed, _model=model)
    st.html(f'<pre style="white-space: pre-wrap; margin: 0">{html.escape(sample)}</pre>')

    if isinstance(hist.config.get("memory"), dict):
        recall_section(hist, step)

    st.subheader("Emergence")
    names = list(HYPOTHESES)
    ui.keep_choice("hist_hypothesis", names, default_hypothesis(hist.config))
    ui.default("hist_threshold", 0.9)
    ui.keep_in_range("hist_threshold", 0.5, 1.0, 0.9)
    c1, c2 = st.columns([3, 2])
    c1.selectbox("Hypothesis", names, key="hist_hypothesis")
    c2.slider("Threshold (score)", 0.5, 1.0, step=0.01, key="hist_threshold")
    hypothesis, threshold = ss["hist_hypothesis"], float(ss["hist_threshold"])
    text_key = hashlib.sha256(text.encode()).hexdigest()[:16]
    em = ui.guard(_emergence, _key(hist, "all") + text_key, text, hypothesis, threshold, _hist=hist)
    if em is not None:
        st.markdown(f"Over {len(text):,} characters of {where}: {em.summary()}")
        st.plotly_chart(plots.emergence_timeline(em.table, threshold, hypothesis, step), key="hist_emergence",
                        config=CONFIG)

    st.subheader(f"A unit over the text at step {step:,}")
    layers, hidden = model.config.num_layers, model.config.hidden_size
    kinds = ["h", "c"] if model.cell == "lstm" else ["h"]
    if em is not None:
        ui.default("hist_layer", em.final[0])
        ui.default("hist_kind", em.final[1])
        ui.default("hist_unit", em.final[2])
    ui.keep_choice("hist_layer", list(range(layers)), layers - 1)
    ui.keep_choice("hist_kind", kinds, kinds[-1])
    ui.keep_in_range("hist_unit", 0, hidden - 1, 0)
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Layer", list(range(layers)), key="hist_layer", format_func=lambda v: f"layer {v}")
    c2.selectbox("State", kinds, key="hist_kind")
    c3.number_input(f"Unit (0 to {hidden - 1})", 0, hidden - 1, step=1, key="hist_unit")
    layer, kind, unit = int(ss["hist_layer"]), ss["hist_kind"], int(ss["hist_unit"])
    values = _unit(_key(hist, step), text, layer, kind, unit, _model=model)
    st.caption(f"L{layer} {kind}{unit} at step {step:,}: blue low, red high (hover a character for its value). "
               "Move the slider to watch it change.")
    ui.scroll_html(render.colored_text(text, values, label=f"L{layer} {kind}{unit}"), 320, text)

    g1, g2 = st.columns(2)
    with g1:
        st.subheader("Gate saturation")
        sat = _saturation(_key(hist, step), text, _model=model)
        if len(sat):
            st.caption("Mean share of the characters on which a unit's gate is nearly closed (left) or nearly "
                       "open (right), at this step.")
            shown = sat.assign(left=(sat.left * 100).round(1), right=(sat.right * 100).round(1))
            st.dataframe(shown.rename(columns={"left": "left-saturated %", "right": "right-saturated %"}),
                         hide_index=True)
        else:
            st.caption("A vanilla RNN has no gates.")
    with g2:
        st.subheader("Gradient decay")
        flows = {f"step {step:,}": _gradient(_key(hist, step), text, _model=model)}
        if step != steps[-1]:
            flows[f"step {steps[-1]:,} (last)"] = _gradient(_key(hist, steps[-1]), text, _model=_model(hist, steps[-1]))
        st.caption(f"‖∂L/∂h_t‖ of the loss at the last of {GRAD_CHARS} characters, against the distance back.")
        st.plotly_chart(plots.gradient_decay(flows, layer=0), key="hist_grad", config=CONFIG)

    if kinds != ["h"] or model.cell == "gru":
        all_sat = pd.concat([_saturation(_key(hist, s), text, _model=_model(hist, s)).assign(step=s) for s in steps],
                            ignore_index=True)
        st.plotly_chart(plots.saturation_over_steps(all_sat, step), key="hist_sat_steps", config=CONFIG)

    st.subheader("Evolution of samples")
    st.caption(f"One row per snapshot: the same prime (a newline), temperature {temperature:g} and seed {seed}.")
    table = _evolution(_key(hist, "all"), "\n", 200, temperature, seed, text, _hist=hist)
    st.caption(f"Losses in nats/char: the run's train loss at that step (on {losses.train_basis(hist.config)}), its "
               f"validation loss where it evaluated that step (on {losses.eval_basis(hist.config)}), and the "
               f"snapshot's loss on the {len(text):,} characters of {where} (computed here).")
    st.dataframe(table.rename(columns={"train_loss": "train loss", "val_loss": "val loss",
                                       "text_loss": "loss on the text"}), hide_index=True,
                 column_config={"sample": st.column_config.TextColumn("sample", width="large")})


ui.run_page(main)
