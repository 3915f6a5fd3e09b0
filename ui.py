"""Shared UI helpers for the Streamlit app: folders, the model registry, the text under study,
cached loaders, training jobs and the error guard.

app.py and every page import this module; pages never import each other. Everything here that is
not about Streamlit widgets lives in rnnviz/ (which never imports streamlit).

Session-state keys shared across pages (so they persist when the user switches pages):
  model_choice                 which model is under study (an id from model_entries())
  text_source, pasted_text, excerpt_len   the text under study
  layer, unit, kind            the unit shown on Activations and Gates (Neuron search sets them)
  hypothesis, custom_regex     the hypothesis shared by Activations and Neuron search
  clamp_on, clamp_layer, clamp_unit, clamp_value, clamp_kind   the clamp on Sample
  mem_models                   models trained or uploaded in this browser session
  train_jobs                   training runs of this session (each holds a TrainingJob)
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import streamlit as st
import torch

from rnnviz import checkpoint
from rnnviz.corpora import corpus_meta, excerpt, held_out, split, user_text
from rnnviz.errors import RnnvizError, TextError
from rnnviz.jobs import TrainingJob
from rnnviz.model import build, describe_device, pick_device
from rnnviz.probes import HYPOTHESES, default_hypothesis, regex_hypothesis
from rnnviz.recipes import RECIPES, corpus_from_spec
from rnnviz.trace import trace as run_trace
from rnnviz.training import TrainConfig
from rnnviz.vocab import Vocab

ROOT = Path(__file__).resolve().parent
MAX_ANALYSIS_CHARS = 20_000  # longer texts under study are cut, with a notice
DEFAULT_EXCERPT = 2_000
DEFAULT_MODEL = "shakespeare-lstm"  # the shipped model a first visit opens, when it is there
CUSTOM = "custom regex"
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
    ("pages/gradients_page.py", "Gradients", ":material/trending_down:", "gradients"),
    ("pages/sample_page.py", "Sample", ":material/edit_note:", "sample"),
    ("pages/neurons_page.py", "Neuron search", ":material/search:", "neurons"),
    ("pages/atlas_page.py", "Unit atlas", ":material/hub:", "atlas"),
    ("pages/unit_page.py", "Unit dashboard", ":material/dashboard:", "unit"),
    ("pages/match_page.py", "Select and match", ":material/join_inner:", "match"),
]

# Page widget keys that must survive page switches (Streamlit drops a widget's state when the
# page holding it is not shown; re-assigning the key on every run in app.py keeps it).
PERSIST = ("model_choice", "text_source", "pasted_text", "layer", "unit", "kind", "sort_by", "window_start",
           "hypothesis", "custom_regex",
           "clamp_on", "clamp_layer", "clamp_unit", "clamp_value", "clamp_kind", "temperature", "prime",
           "length", "seed", "top_k", "grad_len", "radius", "forget_bias", "gate_window",
           "tr_corpus_src", "tr_corpus", "tr_paste", "tr_cell", "tr_layers", "tr_hidden", "tr_seq",
           "tr_batch", "tr_lr", "tr_budget", "tr_seconds", "tr_steps", "tr_device", "tr_sample_every",
           "mem_steps", "update_bias", "excerpt_len", "atlas_corpus", "atlas_layers", "atlas_kinds", "atlas_labels",
           "atlas_min_score", "match_layer", "match_kind", "match_threshold", "match_before", "match_after",
           "match_span", "rank_over", "act_over_atlas", "atlas_window")

# Our own words (no outside text is shipped): prose, dialogue, quotes and brackets for any model.
BUILTIN_EXCERPT = """TEACHER:
Watch the forget gate. When it stays near one, the cell keeps what it has seen;
when it drops, the memory is cleared, and the next words start afresh.

STUDENT:
So a unit that counts "open quotes" must hold its value (for many steps) until the quote closes?

def count(words, sep=" "):
    \"\"\"Count each word (a small example of code).\"\"\"
    return {w: words.count(w) for w in words.split(sep) if w}
"""



# --- folders -------------------------------------------------------------------------------------

def pretrained_dir() -> Path:
    """Shipped models; RNNVIZ_PRETRAINED overrides (tests point it at a temporary folder)."""
    return Path(os.environ.get("RNNVIZ_PRETRAINED") or ROOT / "pretrained")


def models_dir() -> Path:
    """Models the user saved; RNNVIZ_MODELS overrides."""
    return Path(os.environ.get("RNNVIZ_MODELS") or ROOT / "models")


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


# --- models --------------------------------------------------------------------------------------

@dataclass
class ModelEntry:
    id: str  # the widget value: "shipped:<path>", "saved:<path>", "mem:<n>"
    label: str
    source: str  # shipped | saved | session | upload
    path: Path | None = None


def model_entries() -> dict[str, ModelEntry]:
    out: dict[str, ModelEntry] = {}
    for source, folder in (("shipped", pretrained_dir()), ("saved", models_dir())):
        try:
            paths = checkpoint.list_checkpoints(folder)
        except OSError:
            paths = []
        for p in paths:
            out[f"{source}:{p}"] = ModelEntry(f"{source}:{p}", f"{p.name} ({source})", source, p)
    for mid, rec in st.session_state.get("mem_models", {}).items():
        what = "trained in this session" if rec["source"] == "session" else "uploaded"
        out[mid] = ModelEntry(mid, f"{rec['name']} ({what})", rec["source"], rec.get("path"))
    return out


@st.cache_resource(max_entries=8, show_spinner="Loading the model ...")
def _load_checkpoint(path: str, mtime_ns: int):
    """(model, config); keyed by path and modification time, so a re-saved checkpoint reloads."""
    log.info("loading checkpoint %s", path)  # once per server, however many sessions: the load test counts it
    return checkpoint.load(path)


@dataclass
class Context:
    """The model and text under study, as the sidebar chose them this run."""

    model: object
    config: dict
    key: str  # a string that names these exact weights: the cache key for traces
    name: str
    entry: ModelEntry
    text: str = ""
    notices: list[str] = field(default_factory=list)

    def trace(self):
        return get_trace(self.key, self.text, _model=self.model)

    @property
    def cell(self) -> str:
        return self.model.cell

    @property
    def layers(self) -> int:
        return self.model.config.num_layers

    @property
    def hidden(self) -> int:
        return self.model.config.hidden_size


def load_entry(entry: ModelEntry):
    """(model, config, cache key) of a model entry."""
    if entry.source in ("shipped", "saved"):
        weights = entry.path / checkpoint.WEIGHTS
        try:
            mtime = weights.stat().st_mtime_ns
        except OSError:
            mtime = 0
        model, config = _load_checkpoint(str(entry.path), mtime)
        return model, config, f"{entry.path}@{mtime}"
    rec = st.session_state["mem_models"][entry.id]
    return rec["model"], rec["config"], rec["key"]


def corpus_label(config: dict) -> str:
    c = config.get("corpus")
    if isinstance(c, dict):
        return str(c.get("name") or c.get("source") or "unknown")
    return str(c) if c else "unknown"


def model_card(ctx: Context, where=st) -> None:
    m, cfg = ctx.model, ctx.config
    val = cfg.get("val_loss")
    rows = {
        "Model": ctx.name,
        "Cell": m.cell.upper(),
        "Layers": m.config.num_layers,
        "Hidden size": m.config.hidden_size,
        "Vocabulary": f"{len(m.vocab)} characters",
        "Parameters": f"{m.num_params():,}",
        "Corpus": corpus_label(cfg),
        "Validation loss": (f"{val:.3f} nats/char ({val / math.log(2):.3f} bits/char)"
                            if isinstance(val, (int, float)) and math.isfinite(val) else "not recorded"),
    }
    steps = (cfg.get("training") or {}).get("steps") if isinstance(cfg.get("training"), dict) else None
    if steps:
        rows["Trained"] = f"{steps:,} steps"
    where.markdown("\n".join(f"- **{k}:** {v}" for k, v in rows.items()))


def add_mem_model(model, config: dict, name: str, source: str, path: Path | None = None,
                  select: bool = True) -> str:
    ss = st.session_state
    n = ss.get("_mem_counter", 0) + 1
    ss["_mem_counter"] = n
    mid = f"mem:{n}"
    ss["mem_models"][mid] = {"model": model, "config": config, "name": name, "source": source,
                             "path": path, "key": f"{mid}:{time.time_ns()}"}
    if select:
        ss["model_choice"] = mid
    return mid


def load_upload(files) -> tuple:
    """(model, config, name) from uploaded files: one zip, or config.json + model.safetensors."""
    files = list(files or [])
    if not files:
        raise checkpoint.CheckpointError("no file uploaded")
    names = {f.name: f for f in files}
    zips = [f for f in files if f.name.lower().endswith(".zip")]
    if len(files) == 1 and zips:
        model, config = checkpoint.from_zip(zips[0].getvalue())
        return model, config, Path(zips[0].name).stem
    if checkpoint.CONFIG in names and checkpoint.WEIGHTS in names:
        model, config = checkpoint.from_bytes(names[checkpoint.CONFIG].getvalue(),
                                              names[checkpoint.WEIGHTS].getvalue())
        return model, config, "upload"
    raise checkpoint.CheckpointError(
        f"upload one .zip of a checkpoint folder, or the two files {checkpoint.CONFIG} and "
        f"{checkpoint.WEIGHTS} together (got {', '.join(sorted(names))})")


def _on_checkpoint_upload() -> None:
    ss = st.session_state
    files = ss.get("ckpt_upload") or []
    ss.pop("upload_error", None)
    if not files:
        return
    try:
        model, config, name = load_upload(files)
    except RnnvizError as e:
        ss["upload_error"] = str(e)
        return
    except Exception as e:  # noqa: BLE001 - hostile files must never crash the app
        log.exception("checkpoint upload failed")
        ss["upload_error"] = f"could not read the upload ({type(e).__name__})"
        return
    add_mem_model(model, config, name, "upload")


# --- the text under study ------------------------------------------------------------------------

@st.cache_data(max_entries=8, show_spinner=False)
def corpus_excerpt(corpus_json: str, recipe, n: int) -> tuple[str | None, str | None]:
    """(n characters of the held-out part of a model's training corpus, notice), from a config's
    "corpus" record as JSON and its recipe: see rnnviz.corpora.held_out. (None, None) when that
    corpus is not on this machine."""
    held = held_out({"corpus": json.loads(corpus_json), "recipe": recipe})
    if held is None:
        return None, None
    return (excerpt(held, n) or None), held.notice


def decode_text_upload(data: bytes, name: str) -> tuple[str, str | None]:
    """Uploaded bytes -> (text, notice); TextError for non-UTF-8 or binary files."""
    corpus = user_text(data, name=name, max_chars=None)  # study_text cuts it, saying of how much
    return corpus.text, corpus.notice


def study_text(ctx: Context, where=st) -> None:
    """The sidebar controls for the text under study; fills ctx.text and ctx.notices."""
    ss = st.session_state
    default("text_source", "Excerpt of the corpus")
    default("excerpt_len", DEFAULT_EXCERPT)
    keep_in_range("excerpt_len", 200, MAX_ANALYSIS_CHARS, DEFAULT_EXCERPT)
    source = where.radio("Text under study", ["Excerpt of the corpus", "Paste text", "Upload a text file"],
                         key="text_source")
    text, notices = None, []
    if source == "Paste text":
        default("pasted_text", "")
        where.text_area("Your text", key="pasted_text", height=140, placeholder="Paste any text here")
        text = ss.get("pasted_text") or ""
        if not text.strip():
            notices.append("The pasted text is empty: showing the corpus excerpt instead.")
            text = None
        else:
            try:  # the checks an uploaded file gets (NUL bytes, binary data), with the same message
                text = user_text(text, name="The pasted text", max_chars=None).text
            except TextError as e:
                where.error(f"{e}. The corpus excerpt is shown instead.", icon=":material/error:")
                text = None
    elif source == "Upload a text file":
        up = where.file_uploader("Text file (UTF-8)", key="text_upload")
        if up is not None:
            try:
                text, notice = decode_text_upload(up.getvalue(), up.name)
                if notice:
                    notices.append(notice)
            except TextError as e:
                where.error(str(e), icon=":material/error:")
                text = None
        else:
            notices.append("No file uploaded yet: showing the corpus excerpt.")
    if text is None:
        where.number_input("Excerpt length (characters)", min_value=200, max_value=MAX_ANALYSIS_CHARS,
                           step=500, key="excerpt_len")
        text, notice = corpus_excerpt(json.dumps(ctx.config.get("corpus"), sort_keys=True),
                                      ctx.config.get("recipe"), int(ss["excerpt_len"]))
        if notice:
            notices.append(notice)
        if text is None:
            text = BUILTIN_EXCERPT
            notices.append("No held-out text of this model's corpus is on this machine: showing a built-in excerpt.")
    text = text.replace("\r\n", "\n")
    if len(text) > MAX_ANALYSIS_CHARS:
        notices.append(f"The text was cut to its first {MAX_ANALYSIS_CHARS:,} of {len(text):,} characters "
                       "for analysis.")
        text = text[:MAX_ANALYSIS_CHARS]
    unknown = ctx.model.vocab.unknown(text)
    if unknown:
        shown = ", ".join(repr(c) for c in sorted(unknown)[:30])
        more = f" and {len(unknown) - 30} more" if len(unknown) > 30 else ""
        notices.append(f"{len(unknown)} character(s) the model never saw are read as the unknown "
                       f"symbol: {shown}{more}.")
    ctx.text, ctx.notices = text, notices


@st.cache_data(max_entries=4, show_spinner="Tracing the model over the text ...")
def get_trace(model_key: str, text: str, _model):
    """The Trace of a model over a text, cached by (model key, text)."""
    return run_trace(_model, text)


def hypothesis_labels(text: str) -> tuple[np.ndarray | None, str]:
    """Labels of the shared hypothesis for a text, and its name; a ConfigError for a bad regex."""
    ss = st.session_state
    name = ss.get("hypothesis") or default_hypothesis()
    if name == CUSTOM:
        pattern = ss.get("custom_regex") or ""
        if not pattern:
            return None, "custom regex (empty)"
        return regex_hypothesis(pattern)(text), f"regex {pattern!r}"
    return HYPOTHESES[name](text), name


def hypothesis_widgets(where=st) -> None:
    options = list(HYPOTHESES) + [CUSTOM]
    ss, ctx = st.session_state, context()
    if not ss.get("hypothesis_chosen"):  # until the user picks one: the one that suits the model and text
        ss["hypothesis"] = default_hypothesis(ctx.config if ctx else None, ctx.text if ctx else None)
    keep_choice("hypothesis", options, default_hypothesis())
    where.selectbox("Hypothesis", options, key="hypothesis", on_change=ss.update, kwargs={"hypothesis_chosen": True},
                    help="What a unit might track. Units are scored by how well they follow it.")
    if st.session_state["hypothesis"] == CUSTOM:
        default("custom_regex", r"[A-Z][a-z]+")
        where.text_input("Regular expression (1 inside each match)", key="custom_regex")


# --- the sidebar ---------------------------------------------------------------------------------

def sidebar() -> Context | None:
    """Model picker, model card, device and text under study; returns the context pages draw from."""
    ss = st.session_state
    ss["_ctx"] = None
    entries = model_entries()
    st.markdown("### Model")
    ctx = None
    if entries:
        ids = list(entries)
        default = next((i for i in ids if entries[i].path and entries[i].path.name == DEFAULT_MODEL), ids[0])
        keep_choice("model_choice", ids, default)
        st.selectbox("Model under study", ids, key="model_choice", format_func=lambda i: entries[i].label,
                     label_visibility="collapsed")
        entry = entries[ss["model_choice"]]
        try:
            model, config, key = load_entry(entry)
            name = entry.path.name if entry.path is not None and entry.source in ("shipped", "saved") \
                else ss["mem_models"][entry.id]["name"]
            ctx = Context(model=model, config=config, key=key, name=name, entry=entry)
        except RnnvizError as e:
            st.error(f"Cannot load {entry.label}: {e}", icon=":material/error:")
    else:
        st.warning("No model yet: see the main page.", icon=":material/info:")
    with st.expander("Upload a checkpoint"):
        st.file_uploader("A .zip of a checkpoint folder, or config.json + model.safetensors",
                         type=["zip", "json", "safetensors"], accept_multiple_files=True,
                         key="ckpt_upload", on_change=_on_checkpoint_upload)
        if ss.get("upload_error"):
            st.error(f"Upload rejected: {ss['upload_error']}", icon=":material/error:")
    if ctx is not None:
        with st.expander("Model card", expanded=False):
            model_card(ctx)
    device = pick_device()
    st.caption(f"Device: {describe_device(device)}"
               + ("" if device.type == "cpu" else " (training; the analysis pages run on the CPU)"))
    if ctx is not None:
        st.markdown("### Text")
        study_text(ctx)
        st.caption(f"{len(ctx.text):,} characters under study")
        for n in ctx.notices:
            st.info(n, icon=":material/info:")
    ss["_ctx"] = ctx
    return ctx


def context() -> Context | None:
    return st.session_state.get("_ctx")


def require_model() -> Context:
    """The context, or the empty state (a one-click quick training run, or its progress); then stop."""
    ctx = context()
    if ctx is not None and ctx.text:
        return ctx
    if ctx is None and not model_entries():
        empty_state()
        st.stop()
    st.warning("No model is loaded: pick another one in the sidebar.", icon=":material/warning:")
    st.stop()


def empty_state() -> None:
    """No model anywhere: say so, and offer the quick recipe (or show the run already under way)."""
    if any(r["running"] for r in job_records()):
        st.info("A training run is under way; every page will use its model when it finishes.",
                icon=":material/hourglass_top:")
        training_progress()
        return
    st.warning(
        f"**No model to study yet.** The folder of shipped models (`{pretrained_dir()}`) holds no checkpoint, "
        "and none was trained or uploaded in this session.\n\n"
        "Click the button for a quick training run (an LSTM on Shakespeare, about "
        f"{quick_seconds()} seconds); its model then works on every page. Or open **Train** for your "
        "own settings, or upload a checkpoint in the sidebar.",
        icon=":material/info:")
    st.button("Quick-train a small model", type="primary", key="quick_train", on_click=start_quick_training,
              icon=":material/bolt:")
    if st.session_state.get("quick_error"):
        st.error(st.session_state.pop("quick_error"), icon=":material/error:")


# --- training jobs -------------------------------------------------------------------------------

def job_records() -> list[dict]:
    recs = st.session_state.get("train_jobs", [])
    for r in recs:
        r["running"] = r["job"].running
    return recs


def start_training(name: str, train_text: str, val_text: str, corpus_meta: dict, cell: str, layers: int,
                   hidden: int, cfg: TrainConfig, select_when_done: bool = False, embed_size: int = 64) -> dict:
    """Build a fresh model and train it in a worker thread; the record lives in session state."""
    if len(train_text) < cfg.seq_len + 2:
        raise TextError(f"the training text has {len(train_text):,} characters; it needs more than "
                        f"the sequence length + 1 ({cfg.seq_len + 1})")
    vocab = Vocab.from_text(train_text + (val_text or ""))
    model = build(vocab, cell=cell, hidden_size=hidden, num_layers=layers, embed_size=embed_size, seed=cfg.seed)
    cfg = dataclasses.replace(cfg, threads=cfg.threads or TRAIN_THREADS)
    job = TrainingJob(model, train_text, val_text, cfg, corpus=corpus_meta, name=name).start()
    rec = {"name": name, "job": job, "registered": None, "select": select_when_done, "running": True,
           "started": time.time()}
    st.session_state["train_jobs"].append(rec)
    return rec


def quick_seconds() -> int:
    return int(RECIPES["quick"].train.max_seconds or 60)


def start_quick_training() -> None:
    """The 'quick' recipe of rnnviz.recipes, in a worker thread; its model is selected when done."""
    ss = st.session_state
    try:
        recipe = RECIPES["quick"]
        corpus = corpus_from_spec(recipe.corpus)
        train, val = split(corpus, recipe.val_fraction)
        cfg = dataclasses.replace(recipe.train, eval_every=50, eval_chars=5_000, sample_every=100)
        shape = recipe.model
        n = len(ss.get("train_jobs", [])) + 1
        start_training(f"quick-{shape['cell']}-{n}", train, val, corpus_meta(corpus, recipe.val_fraction),
                       shape["cell"], shape["num_layers"], shape["hidden_size"], cfg, select_when_done=True,
                       embed_size=shape.get("embed_size", 64))
    except RnnvizError as e:  # a callback: keep the message for the page to show
        ss["quick_error"] = str(e)


def session_dir() -> Path:
    ss = st.session_state
    if "_tmpdir" not in ss or not Path(ss["_tmpdir"]).is_dir():
        ss["_tmpdir"] = tempfile.mkdtemp(prefix="rnnviz-session-")
    return Path(ss["_tmpdir"])


def sync_jobs() -> None:
    """Register the model of every finished run (once): saved to a temp folder, selectable everywhere."""
    ss = st.session_state
    for rec in job_records():
        if rec["running"] or rec["registered"] is not None:
            continue
        job = rec["job"]
        result = job.result
        if result is None or result.steps == 0:
            rec["registered"] = ""  # failed before training: nothing to register
            continue
        path = session_dir() / re.sub(r"[^A-Za-z0-9_.-]", "_", rec["name"])
        job.trainer.save(path, result)
        model, config = checkpoint.load(path)
        rec["path"] = path
        rec["registered"] = add_mem_model(model, config, rec["name"], "session", path=path,
                                          select=rec["select"] or context_missing())
        ss["_toast"] = f"Model {rec['name']} is ready: pick it in the sidebar on any page."


def context_missing() -> bool:
    return st.session_state.get("model_choice") is None


def _fmt_eta(eta) -> str:
    if eta is None or not isinstance(eta, (int, float)) or not math.isfinite(eta):
        return "-"
    eta = int(eta)
    return f"{eta // 60}m {eta % 60:02d}s" if eta >= 60 else f"{eta}s"


def progress_line(snap: dict) -> str:
    cps = snap.get("chars_per_sec") or 0
    parts = [f"step {snap.get('step', 0):,}", f"{cps:,.0f} chars/s", f"ETA {_fmt_eta(snap.get('eta'))}"]
    if snap.get("train_loss") is not None:
        parts.append(f"train loss {snap['train_loss']:.3f}")
    if snap.get("val_loss") is not None:
        parts.append(f"val loss {snap['val_loss']:.3f}")
    return " · ".join(parts)


def training_progress() -> None:
    """Progress of the running jobs; polls every second while one runs (a fragment), then reruns the app."""
    running = any(r["running"] for r in job_records())

    def body():
        recs = job_records()
        for rec in recs:
            if not rec["running"] and rec["registered"] is not None:
                continue
            snap = rec["job"].snapshot()
            st.markdown(f"**{rec['name']}** - {snap.get('state', 'starting')}")
            st.progress(min(1.0, float(snap.get("fraction") or 0.0)), text=progress_line(snap))
        if running and not any(r["running"] for r in recs):
            st.rerun(scope="app")  # a run just ended: register its model everywhere

    st.fragment(run_every=1.0 if running else None)(lambda: guard(body))()


def slice_trace(tr, start: int, end: int):
    """The part of a Trace for characters [start, end): the same arrays, cut in time."""
    return dataclasses.replace(
        tr, text=tr.text[start:end], ids=tr.ids[start:end],
        layers=[{k: v[start:end] for k, v in layer.items()} for layer in tr.layers],
        probs=tr.probs[start:end], top_ids=tr.top_ids[start:end], top_probs=tr.top_probs[start:end],
        loss=tr.loss[start:end])


def unit_controls(ctx, kinds: list[str] | None = None) -> None:
    """Layer (and state kind) and unit pickers shared by Activations and Gates."""
    ui_layers = list(range(ctx.layers))
    keep_choice("layer", ui_layers, ctx.layers - 1)
    keep_in_range("unit", 0, ctx.hidden - 1, 0)
    cols = st.columns(3 if kinds else 2)
    cols[0].selectbox("Layer", ui_layers, key="layer", format_func=lambda l: f"layer {l}")
    cols[1].number_input(f"Unit (0 to {ctx.hidden - 1})", 0, ctx.hidden - 1, step=1, key="unit")
    if kinds:
        keep_choice("kind", kinds, "h")
        cols[2].selectbox("State", kinds, key="kind",
                          format_func=lambda k: {"h": "h (hidden state)", "c": "c (cell state)"}.get(k, k))
    return None


def scroll_html(html: str, height: int = 300, text: str | None = None) -> None:
    """Escaped coloured-text HTML in a scrolling box of at most `height` px (long texts stay compact);
    given the text, a short one gets a box just tall enough."""
    if text is not None:
        lines = sum(1 + len(line) // 100 for line in text.split("\n"))
        height = max(80, min(height, 26 * lines + 40))
    with st.container(height=height, border=False):
        st.html(html)


def legend_below(fig, title: str | None = None):
    """Move a figure's legend under the plot (charts in narrow columns keep their width)."""
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    if title:
        fig.update_layout(title=title)
    return fig
