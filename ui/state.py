"""Session state and the error guard: page list, persisted widget keys, thread settings, folders."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import streamlit as st
import torch

from rnnviz import checkpoint
from rnnviz.errors import RnnvizError

ROOT = Path(__file__).resolve().parent.parent  # the checkout: app.py, pages/, pretrained/
MAX_ANALYSIS_CHARS = 20_000  # longer texts under study are cut, with a notice
DEFAULT_EXCERPT = 2_000
DEFAULT_MODEL = "shakespeare-lstm"  # the shipped model a first visit opens, when it is there
log = logging.getLogger("rnnviz.app")


def _threads_from_env(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


# Torch threads. One server serves many sessions, each page run on its own thread; torch's default
# (every core per call) makes concurrent runs oversubscribe the cores, and OpenMP's spinning threads
# then slow everyone down many times over. So each page run computes on one thread, and each
# training on half the cores. torch's setting is per thread, hence set in every run and every worker.
PAGE_THREADS = _threads_from_env("RNNVIZ_PAGE_THREADS", 1)
TRAIN_THREADS = _threads_from_env("RNNVIZ_TRAIN_THREADS", max(1, (os.cpu_count() or 2) // 2))

# file, title, icon, url path (the first page is the default one, served at "/").
# File names differ from the URL paths on purpose: Streamlit still knows the old pages/-folder
# convention, and a fresh server (or AppTest) asked for /activations before st.navigation has run
# would otherwise execute pages/activations.py on its own, without app.py and its sidebar.
PAGES = [
    ("pages/home_page.py", "Home", ":material/home:", "welcome"),  # served at "/"; app.py aliases /home
    ("pages/train_page.py", "Train", ":material/model_training:", "train"),
    ("pages/activations_page.py", "Activations", ":material/format_color_text:", "activations"),
    ("pages/gates_page.py", "Gates", ":material/tune:", "gates"),
    ("pages/cell_page.py", "Inside the cell", ":material/memory:", "cell"),
    ("pages/gradients_page.py", "Gradients", ":material/trending_down:", "gradients"),
    ("pages/sample_page.py", "Sample", ":material/edit_note:", "sample"),
    ("pages/neurons_page.py", "Neuron search", ":material/search:", "neurons"),
    ("pages/atlas_page.py", "Unit atlas", ":material/hub:", "atlas"),
    ("pages/unit_page.py", "Unit dashboard", ":material/dashboard:", "unit"),
    ("pages/match_page.py", "Select and match", ":material/join_inner:", "match"),
    ("pages/features_page.py", "Features", ":material/scatter_plot:", "features"),
    ("pages/feature_page.py", "Feature dashboard", ":material/space_dashboard:", "feature"),
    ("pages/why_page.py", "Why this character?", ":material/ads_click:", "why"),
    ("pages/circuit_page.py", "How it was computed", ":material/account_tree:", "circuit"),
    ("pages/compare_page.py", "Compare", ":material/compare_arrows:", "compare"),
    ("pages/history_page.py", "Training history", ":material/history:", "history"),
    ("pages/guess_page.py", "Guessing game", ":material/psychology_alt:", "guess"),
    ("pages/paper_page.py", "The 2015 paper", ":material/article:", "paper"),
]

# The sidebar's sections, by what a person came to do: each page's url path, in the order listed.
SECTIONS = {
    "Learn": ("welcome", "gradients", "guess", "paper"),
    "Look inside": ("activations", "gates", "cell", "sample"),
    "Find units": ("neurons", "atlas", "unit", "match", "features", "feature"),
    "Explain": ("why", "circuit", "compare"),
    "Train": ("train", "history"),
}

# Page widget keys that must survive page switches (Streamlit drops a widget's state when the
# page holding it is not shown; re-assigning the key on every run in app.py keeps it).
PERSIST = ("model_choice", "text_source", "pasted_text", "layer", "unit", "kind", "sort_by", "window_start",
           "hypothesis", "custom_regex",
           "clamp_on", "clamp_layer", "clamp_unit", "clamp_value", "clamp_kind", "temperature", "prime",
           "length", "seed", "top_k", "grad_len", "trained_len", "radius", "forget_bias", "gate_window",
           "tr_corpus_src", "tr_corpus", "tr_paste", "tr_cell", "tr_layers", "tr_hidden", "tr_seq",
           "tr_batch", "tr_lr", "tr_budget", "tr_seconds", "tr_steps", "tr_device", "tr_sample_every",
           "mem_steps", "mem_gap", "update_bias", "excerpt_len", "atlas_corpus", "atlas_layers", "atlas_kinds", "atlas_labels",
           "atlas_min_score", "match_layer", "match_kind", "match_threshold", "match_before", "match_after",
           "match_span", "rank_over", "act_over_atlas", "atlas_window", "heat_scale", "act_band")
# One group per page family, so each can grow on its own.
PERSIST_WHY = ("why_target", "why_which", "why_measure", "why_op", "why_pos", "why_char")  # Why this character?
PERSIST_COMPARE = ("cmp_against", "cmp_order", "cmp_other", "cmp_text", "cmp_chars", "cmp_start")  # Compare
PERSIST_HISTORY = ("hist_model", "hist_step", "hist_temp", "hist_seed", "hist_hypothesis", "hist_threshold",
                   "hist_layer", "hist_kind", "hist_unit")  # Training history
PERSIST_TEACHING = ("guess_start", "guess_nick")  # the tour and the guessing game
PERSIST_CIRCUIT = ("circuit_t", "circuit_char", "circuit_back", "circuit_nodes", "circuit_layer", "circuit_state",
                   "circuit_unit", "circuit_from", "circuit_to", "circuit_value")  # How it was computed
PERSIST_CELL = ("cell_pos",)  # Inside the cell: the position studied (layer and unit are the shared keys)
PERSIST_FEATURES = ("feat_layer", "feat_state", "feat_size", "feat_k", "feat_steps", "feat_measure", "feat_feature",
                    "steer_on", "steer_feature", "steer_alpha")  # Features, Feature dashboard, steering on Sample
PERSIST = PERSIST + PERSIST_WHY + PERSIST_COMPARE + PERSIST_HISTORY + PERSIST_TEACHING + PERSIST_CELL + PERSIST_CIRCUIT + PERSIST_FEATURES


# --- folders -------------------------------------------------------------------------------------

def pretrained_dir() -> Path:
    """Shipped models; RNNVIZ_PRETRAINED overrides (tests point it at a temporary folder)."""
    return Path(os.environ.get("RNNVIZ_PRETRAINED") or ROOT / "pretrained")


def models_dir() -> Path:
    """Models the user saved; RNNVIZ_MODELS overrides."""
    return Path(os.environ.get("RNNVIZ_MODELS") or ROOT / "models")


def checkpoint_paths() -> list[tuple[str, Path]]:
    """(source, folder) of every checkpoint shipped or saved; an unreadable models folder holds none."""
    out = []
    for source, folder in (("shipped", pretrained_dir()), ("saved", models_dir())):
        try:
            out += [(source, p) for p in checkpoint.list_checkpoints(folder)]
        except OSError:
            pass
    return out


def session_dir() -> Path:
    """This browser session's temporary folder (finished runs, uploaded zips), made on first use."""
    ss = st.session_state
    if "_tmpdir" not in ss or not Path(ss["_tmpdir"]).is_dir():
        ss["_tmpdir"] = tempfile.mkdtemp(prefix="rnnviz-session-")
    return Path(ss["_tmpdir"])


# --- state ---------------------------------------------------------------------------------------

def init_state() -> None:
    torch.set_num_threads(PAGE_THREADS)
    ss = st.session_state
    ss.setdefault("mem_models", {})
    ss.setdefault("train_jobs", [])
    for k in PERSIST:
        if k in ss:
            ss[k] = ss[k]


def default(key: str, value) -> None:
    """Give a widget key its first value (widgets never get value= so the two never disagree)."""
    st.session_state.setdefault(key, value)


def keep_in_range(key: str, lo, hi, value) -> None:
    """Clamp a number widget's stored value into [lo, hi] (the model may have changed)."""
    ss = st.session_state
    v = ss.get(key, value)
    try:
        v = type(lo)(v)
        v = value if v != v else min(max(v, lo), hi)  # NaN (v != v) would pass min/max unchanged
    except (TypeError, ValueError, OverflowError):
        v = value
    ss[key] = v


def keep_choice(key: str, options: list, value=None) -> None:
    """Reset a choice widget whose stored value is no longer among its options."""
    ss = st.session_state
    if ss.get(key) not in options:
        ss[key] = value if value in options else options[0]


# --- error guard ---------------------------------------------------------------------------------

def guard(fn: Callable, *args, **kwargs):
    """Run fn; an RnnvizError shows its message, anything else a short line (traceback to the log)."""
    try:
        return fn(*args, **kwargs)
    except RnnvizError as e:
        st.error(str(e), icon=":material/error:")
    except Exception as e:  # noqa: BLE001 - a page must never show a traceback
        log.exception("rnnviz page error")
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        st.error(f"Something went wrong: {type(e).__name__}{': ' + msg if msg else ''}. "
                 "The details are in the server log.", icon=":material/error:")
    return None


def run_page(fn: Callable) -> None:
    guard(fn)
