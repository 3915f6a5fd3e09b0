"""The model registry: shipped, saved, trained and uploaded models, their cached loaders and traces."""
from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from rnnviz import checkpoint, quotas
from rnnviz.errors import RnnvizError
from rnnviz.interop import IMPORT_SUFFIXES, import_model, import_notices
from rnnviz.losses import val_loss_basis
from rnnviz.trace import trace as run_trace
from ui.state import checkpoint_paths, log, session_dir


@dataclass
class ModelEntry:
    id: str  # the widget value: "shipped:<path>", "saved:<path>", "mem:<n>"
    label: str
    source: str  # shipped | saved | session | upload
    path: Path | None = None


def model_entries() -> dict[str, ModelEntry]:
    out: dict[str, ModelEntry] = {}
    for source, p in checkpoint_paths():
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
        "Validation loss": (f"{val:.3f} nats/char ({val / math.log(2):.3f} bits/char) on {val_loss_basis(cfg)}"
                            if isinstance(val, (int, float)) and math.isfinite(val) else "not recorded"),
    }
    steps = (cfg.get("training") or {}).get("steps") if isinstance(cfg.get("training"), dict) else None
    if steps:
        rows["Trained"] = f"{steps:,} steps"
    imported = cfg.get("imported") if isinstance(cfg.get("imported"), dict) else None
    if imported:
        rows["Corpus"] = "not recorded (an imported model)"
        rows["Imported from"] = f"{_md(str(imported.get('source_format')))}, the file {_md(str(imported.get('file')))}"
    where.markdown("\n".join(f"- **{k}:** {v}" for k, v in rows.items()))
    for note in import_notices(cfg):
        where.caption(_md(note))


def mem_usage() -> dict[str, int]:
    """Bytes of each model this session holds in memory (by id, "mem:<n>"), and of the model its running
    or waiting training job builds ("job:<name>", not yet forgettable)."""
    ss = st.session_state
    held = {mid: quotas.model_bytes(rec["model"]) for mid, rec in ss.get("mem_models", {}).items()}
    for rec in ss.get("train_jobs", []):
        if rec["job"].active and hasattr(rec["job"], "model"):
            held[f"job:{rec['name']}"] = quotas.model_bytes(rec["job"].model)
    return held


def check_mem_quota(new_bytes: int) -> None:
    """QuotaError (naming the limit and the models to forget) if this session may not hold one more model."""
    quotas.check_session(mem_usage(), new_bytes)


def mem_name(mid: str) -> str:
    rec = st.session_state.get("mem_models", {}).get(mid)
    return rec["name"] if rec else mid


def forget_mem_model(mid: str) -> None:
    """Drop a trained or uploaded model of this session from memory, and an upload's copy on disk (a
    trained model's temporary files stay until exit: its run still offers them)."""
    ss = st.session_state
    rec = ss.get("mem_models", {}).pop(mid, None)
    if rec is None:
        return
    if rec["source"] == "upload" and rec.get("path") is not None:
        shutil.rmtree(rec["path"], ignore_errors=True)
    if ss.get("model_choice") == mid:
        ss["model_choice"] = None
    for job_rec in ss.get("train_jobs", []):  # its run no longer offers a model to study or save
        if job_rec.get("registered") == mid:
            job_rec["registered"] = ""
            job_rec["forgotten"] = True


def add_mem_model(model, config: dict, name: str, source: str, path: Path | None = None,
                  select: bool = True, check: bool = True) -> str:
    """Register a model of this session (within the session quota unless check=False) and return its id."""
    ss = st.session_state
    if check:
        check_mem_quota(quotas.model_bytes(model))
    n = ss.get("_mem_counter", 0) + 1
    ss["_mem_counter"] = n
    mid = f"mem:{n}"
    ss["mem_models"][mid] = {"model": model, "config": config, "name": name, "source": source,
                             "path": path, "key": f"{mid}:{time.time_ns()}"}
    if select:
        ss["model_choice"] = mid
    return mid


UPLOAD_KEY = "ckpt_upload"


def upload_key() -> str:
    """The checkpoint uploader's widget key: a fresh one after each model it loaded, which empties the box."""
    n = st.session_state.get("_upload_round", 0)
    return UPLOAD_KEY if n == 0 else f"{UPLOAD_KEY}_{n}"


def _safe_name(name: str) -> str:
    """A file name of our own from a user's one: never a path, never hidden."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60] or "model"


def _md(text: str) -> str:
    """A user's text shown literally in Markdown (a file called **x** stays **x**)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


VOCAB_SUFFIXES = (".json", ".txt")  # a vocabulary uploaded beside an imported model (see rnnviz.interop.vocabulary)
UPLOAD_TYPES = sorted({"zip", "json", "safetensors", "txt"} | {s.lstrip(".") for s in IMPORT_SUFFIXES})


def import_files(files) -> tuple | None:
    """(model file, vocabulary file or None) when the upload is a model to import (rnnviz.interop), else None."""
    files = list(files or [])
    if {f.name for f in files} == {checkpoint.CONFIG, checkpoint.WEIGHTS}:
        return None  # rnnviz's own checkpoint, as its two files
    models = [f for f in files if Path(f.name).suffix.lower() in IMPORT_SUFFIXES]
    vocabs = [f for f in files if Path(f.name).suffix.lower() in VOCAB_SUFFIXES]
    if len(models) == 1 and len(vocabs) <= 1 and len(files) == 1 + len(vocabs):
        return models[0], (vocabs[0] if vocabs else None)
    return None


def _import_upload(model_file, vocab_file, dest: Path) -> tuple:
    """Convert an uploaded model file (with its vocabulary file) into the checkpoint folder `dest` and load
    it; the uploaded bytes lie in a temporary folder only while they are read."""
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=dest.parent))
    try:
        def keep(f):
            p = Path(f.name)
            path = tmp / (_safe_name(p.stem) + p.suffix.lower())
            path.write_bytes(f.getvalue())
            return path
        source = keep(model_file)
        vocab = keep(vocab_file) if vocab_file is not None else None
        out = import_model(source, dest, vocab=vocab)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model, config = checkpoint.load(out)
    return model, config, Path(model_file.name).stem


def load_upload(files, dest: Path | None = None) -> tuple:
    """(model, config, name) from uploaded files: one zip (written, with its history, to `dest` when
    given), config.json + model.safetensors, or a model file to import (converted into `dest`)."""
    files = list(files or [])
    if not files:
        raise checkpoint.CheckpointError("no file uploaded")
    names = {f.name: f for f in files}
    zips = [f for f in files if f.name.lower().endswith(".zip")]
    if len(files) == 1 and zips:
        model, config = checkpoint.from_zip(zips[0].getvalue(), dest=dest)
        return model, config, Path(zips[0].name).stem
    if checkpoint.CONFIG in names and checkpoint.WEIGHTS in names:
        model, config = checkpoint.from_bytes(names[checkpoint.CONFIG].getvalue(),
                                              names[checkpoint.WEIGHTS].getvalue())
        return model, config, "upload"
    to_import = import_files(files)
    if to_import is not None and dest is not None:
        return _import_upload(*to_import, dest)
    raise checkpoint.CheckpointError(
        f"upload one .zip of a checkpoint folder, the two files {checkpoint.CONFIG} and "
        f"{checkpoint.WEIGHTS} together, or one model file to import ({', '.join(IMPORT_SUFFIXES)}) with, "
        f"if it holds none, its vocabulary as a .json or .txt file (got {', '.join(sorted(names))})")


def _on_checkpoint_upload(key: str = UPLOAD_KEY) -> None:
    """Load the uploader's files once. Streamlit may call this again for files it has already seen:
    st.switch_page drops every widget's state, and the browser, which still holds the file, sends it
    with the next click, which then looks like a new upload. So a set of files is read once (by the
    ids Streamlit gives each upload), and after a model loads the uploader gets a fresh, empty key."""
    ss = st.session_state
    files = ss.get(key) or []
    seen = tuple(sorted(f.file_id for f in files))
    if seen == ss.get("_upload_seen"):
        return
    ss["_upload_seen"] = seen
    ss.pop("upload_error", None)
    ss.pop("upload_note", None)
    if not files:
        return
    n = ss.get("_mem_counter", 0) + 1  # the id add_mem_model will give it: a folder name no other model has
    dest = None
    to_import = import_files(files)
    if (len(files) == 1 and files[0].name.lower().endswith(".zip")) or to_import:  # on disk: its history, its import
        stem = Path((to_import[0] if to_import else files[0]).name).stem
        dest = session_dir() / f"upload-{n}-{_safe_name(stem)}"
        while dest.exists():
            dest = dest.with_name(f"{dest.name}-{time.time_ns()}")
    try:
        model, config, name = load_upload(files, dest)
    except RnnvizError as e:
        ss["upload_error"] = str(e)
        return
    except Exception as e:  # noqa: BLE001 - hostile files must never crash the app
        log.exception("checkpoint upload failed")
        ss["upload_error"] = f"could not read the upload ({type(e).__name__})"
        return
    path = dest if dest is not None and dest.is_dir() else None
    try:
        add_mem_model(model, config, name, "upload", path=path)
    except RnnvizError as e:  # over the session's quota
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        ss["upload_error"] = str(e)
        return
    steps = len(checkpoint.history_folders(path)) if path is not None else 0
    ss["upload_note"] = (f"{_md(', '.join(f.name for f in files))}: loaded as **{_md(name)} (uploaded)**"
                         + (f", with a training history of {steps} snapshot{'s' * (steps != 1)}." if steps else "."))
    ss["_upload_round"] = ss.get("_upload_round", 0) + 1


@st.cache_data(max_entries=4, show_spinner="Tracing the model over the text ...")
def get_trace(model_key: str, text: str, _model):
    """The Trace of a model over a text, cached by (model key, text)."""
    return run_trace(_model, text)


def context() -> Context | None:
    """The model and text the sidebar chose this run (None when no model is loaded)."""
    return st.session_state.get("_ctx")
