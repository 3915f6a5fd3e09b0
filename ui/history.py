"""The Training history page's cached readers (a snapshot loads once per server) and its panels."""
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from rnnviz import checkpoint, experiments, history, losses, plots, render
from ui.state import checkpoint_paths, default, guard, keep_choice, keep_in_range
from ui.text import corpus_excerpt
from ui.widgets import scroll_html

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


def read(path: Path) -> history.History:
    """The history of checkpoint `path`, read once per version of it."""
    return _history(str(path), _mtime(path))


@st.cache_resource(max_entries=48, show_spinner="Loading the snapshot ...")
def _snapshot(path: str, mtime_ns: int):
    """One snapshot's model, shared read-only by every session."""
    return checkpoint.load(path)[0]


def model(hist: history.History, step: int):
    """The model of one snapshot."""
    snap = hist.snapshot(step)
    return _snapshot(str(snap.path), _mtime(snap.path))


def key(hist: history.History, step: int | str) -> str:
    """A cache key for one snapshot (or 'all') of this version of the history."""
    return f"{hist.path}@{_mtime(hist.path)}#{step}"


@st.cache_data(max_entries=256, show_spinner=False)
def sample(key: str, prime: str, length: int, temperature: float, seed: int, _model) -> str:
    return history.sample_text(_model, prime, length, temperature, seed)


@st.cache_data(max_entries=128, show_spinner=False)
def saturation(key: str, text: str, _model) -> pd.DataFrame:
    return history.saturation(_model, text)


@st.cache_data(max_entries=128, show_spinner=False)
def gradient(key: str, text: str, _model):
    return history.gradient_decay(_model, text, GRAD_CHARS)


@st.cache_data(max_entries=256, show_spinner=False)
def unit(key: str, text: str, layer: int, kind: str, unit: int, _model) -> np.ndarray:
    return history.unit_values(_model, text, layer, kind, unit)


@st.cache_data(max_entries=16, show_spinner="Ranking the units of every snapshot ...")
def emergence(key: str, text: str, hypothesis: str, threshold: float, _hist) -> history.Emergence:
    models = {s: model(_hist, s) for s in _hist.steps}
    return history.emergence_of(_hist, text, hypothesis, threshold, models=models)


@st.cache_data(max_entries=8, show_spinner="Measuring recall at every snapshot ...")
def recall(key: str, gaps: tuple, _hist) -> pd.DataFrame:
    return experiments.recall_over_training({s: model(_hist, s) for s in _hist.steps}, list(gaps))


@st.cache_data(max_entries=16, show_spinner="Sampling every snapshot ...")
def evolution(key: str, prime: str, length: int, temperature: float, seed: int, text: str, _hist) -> pd.DataFrame:
    models = {s: model(_hist, s) for s in _hist.steps}
    return history.evolution(_hist, models, prime, length, temperature, seed, loss_text=text)


def checkpoints_with_history() -> dict[str, Path]:
    """Shipped and saved checkpoints that hold a history, by label."""
    out = {}
    for source, p in checkpoint_paths():
        if history.has_history(p):
            out[f"{p.name} ({source})"] = p
    return out


def text_for(ctx, path: Path, config: dict) -> tuple[str, str]:
    """The text to compute over: the text under study for the sidebar's model, else an excerpt of the
    held-out part of this checkpoint's own corpus."""
    if ctx.entry.path is not None and Path(ctx.entry.path) == path and ctx.text:
        return ctx.text[:TEXT_CHARS], "the text under study"
    fresh = experiments.memory_text(config, TEXT_CHARS)  # a memory-task model: fresh draws of its own task
    if fresh is not None:
        return fresh, "fresh memory-task text"
    if isinstance(config.get("corpus"), dict):
        text, _ = corpus_excerpt(json.dumps(config["corpus"], sort_keys=True), config.get("recipe"), TEXT_CHARS)
        if text:
            return text[:TEXT_CHARS], "an excerpt of its held-out text"
    return ctx.text[:TEXT_CHARS], "the text under study"


def no_history(ctx) -> None:
    """Why the model under study has no history, and where to get one."""
    imported = ctx.config.get("imported") if isinstance(ctx.config.get("imported"), dict) else None
    why = (f"it was imported from a {imported.get('source_format')} file, which records no snapshots" if imported
           else "it was uploaded without a history/ folder (zip the whole checkpoint folder to bring its snapshots)"
           if ctx.entry.source == "upload" else "it was saved without snapshots")
    st.info(f"**{ctx.name}** has no training history: {why}. Train a model with "
            "a history (the Train page records one), or pick a shipped model that has one below.",
            icon=":material/history:")
    st.page_link("pages/train_page.py", label="Train a model with a history", icon=":material/model_training:")


def sample_panel(hist, step: int, temperature: float, seed: int) -> None:
    """The snapshot's sample at the fixed prime, temperature and seed."""
    st.subheader(f"Sample at step {step:,}")
    st.caption(f"200 characters after a newline, temperature {temperature:g}, seed {seed}: the same draws at "
               "every snapshot, so what changes is the network.")
    text = sample(key(hist, step), "\n", 200, temperature, seed, _model=model(hist, step))
    st.html(f'<pre style="white-space: pre-wrap; margin: 0">{html.escape(text)}</pre>')


def recall_panel(hist: history.History, step: int) -> None:
    """A memory-task model: recall at every gap, at every snapshot (fresh draws, as the Gradients page)."""
    gaps = experiments.memory_gaps(hist.config)
    df = guard(recall, key(hist, "all"), gaps, _hist=hist)
    if df is None:
        return
    st.subheader(f"Recall across the gap at step {step:,}")
    st.markdown(experiments.recall_summary(df, step, gaps))
    st.plotly_chart(plots.recall_over_steps(df, step, experiments.CHANCE), key="hist_recall", config=CONFIG)


def unit_panel(hist, step: int, text: str, em) -> None:
    """One unit over the text at this step (the emergence's final unit first)."""
    ss = st.session_state
    m = model(hist, step)
    st.subheader(f"A unit over the text at step {step:,}")
    layers, hidden = m.config.num_layers, m.config.hidden_size
    kinds = ["h", "c"] if m.cell == "lstm" else ["h"]
    if em is not None:
        default("hist_layer", em.final[0])
        default("hist_kind", em.final[1])
        default("hist_unit", em.final[2])
    keep_choice("hist_layer", list(range(layers)), layers - 1)
    keep_choice("hist_kind", kinds, kinds[-1])
    keep_in_range("hist_unit", 0, hidden - 1, 0)
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Layer", list(range(layers)), key="hist_layer", format_func=lambda v: f"layer {v}")
    c2.selectbox("State", kinds, key="hist_kind")
    c3.number_input(f"Unit (0 to {hidden - 1})", 0, hidden - 1, step=1, key="hist_unit")
    layer, kind, u = int(ss["hist_layer"]), ss["hist_kind"], int(ss["hist_unit"])
    values = unit(key(hist, step), text, layer, kind, u, _model=m)
    st.caption(f"L{layer} {kind}{u} at step {step:,}: blue low, red high (hover a character for its value). "
               "Move the slider to watch it change.")
    scroll_html(render.colored_text(text, values, label=f"L{layer} {kind}{u}"), 320, text)


def gates_and_gradients(hist, step: int, text: str) -> None:
    """Gate saturation and gradient decay at this step (and the last), then saturation over every step."""
    m, steps = model(hist, step), hist.steps
    g1, g2 = st.columns(2)
    with g1:
        st.subheader("Gate saturation")
        sat = saturation(key(hist, step), text, _model=m)
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
        flows = {f"step {step:,}": gradient(key(hist, step), text, _model=m)}
        if step != steps[-1]:
            flows[f"step {steps[-1]:,} (last)"] = gradient(key(hist, steps[-1]), text, _model=model(hist, steps[-1]))
        st.caption(f"‖∂L/∂h_t‖ of the loss at the last of {GRAD_CHARS} characters, against the distance back.")
        st.plotly_chart(plots.gradient_decay(flows, layer=0), key="hist_grad", config=CONFIG)
    if m.cell in ("lstm", "gru"):
        all_sat = pd.concat([saturation(key(hist, s), text, _model=model(hist, s)).assign(step=s) for s in steps],
                            ignore_index=True)
        st.plotly_chart(plots.saturation_over_steps(all_sat, step), key="hist_sat_steps", config=CONFIG)


def evolution_panel(hist, text: str, where: str, temperature: float, seed: int) -> None:
    """One row per snapshot: its losses and its sample at the same prime, temperature and seed."""
    st.subheader("Evolution of samples")
    st.caption(f"One row per snapshot: the same prime (a newline), temperature {temperature:g} and seed {seed}.")
    table = evolution(key(hist, "all"), "\n", 200, temperature, seed, text, _hist=hist)
    st.caption(f"Losses in nats/char: the run's train loss at that step (on {losses.train_basis(hist.config)}), its "
               f"validation loss where it evaluated that step (on {losses.eval_basis(hist.config)}), and the "
               f"snapshot's loss on the {len(text):,} characters of {where} (computed here).")
    st.dataframe(table.rename(columns={"train_loss": "train loss", "val_loss": "val loss",
                                       "text_loss": "loss on the text"}), hide_index=True,
                 column_config={"sample": st.column_config.TextColumn("sample", width="large")})
