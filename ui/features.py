"""Features in the app: one dictionary per (model, corpus, settings) for the whole server, trained (or read from
the disk cache) in a background job through the server's queue, with what the pages read of it: the metrics,
every feature's table and labels, units against features, and each feature's activations over the text.

Every session that asks for the same dictionary gets the same Study (and the same running job).
"""
from __future__ import annotations

import json
import threading

import numpy as np
import streamlit as st

import ui
from rnnviz import atlas as atlas_lib
from rnnviz import dashboard
from rnnviz import features as feat
from rnnviz.features import study as feat_study
from rnnviz.errors import RnnvizError
from rnnviz.jobs import Job
from ui import atlas as atlas_ui
from ui import jobs as jobs_ui
from ui.widgets import job_progress

ANALYSIS_CHARS = feat.MAX_COMPARE_CHARS  # the pages measure and show features on the corpus's first characters
MEASURE = ("the text it trained on", "the text under study")  # what the pages measure a dictionary on
KEEP = 4  # studies kept per server (each holds its text's sparse activations and every feature's labels)


@st.cache_resource
def _server() -> dict:
    """Server-wide: key -> Study, key -> the Job making it."""
    return {"studies": {}, "jobs": {}, "lock": threading.Lock()}


def _corpus(ctx) -> atlas_lib.CorpusText:
    """The corpus a dictionary trains on: the atlas's default, the model's held-out split (up to 200,000
    characters), read once for both."""
    if ctx.config.get("imported") and not ctx.config.get("corpus"):
        # an imported model records no training corpus, so it has no held-out split: the text under study
        # (what the user pasted or uploaded in the sidebar) is the only text there is to train on
        src = atlas_ui._corpus(ctx.key, atlas_ui.UNDER_STUDY, ctx.text, _config=ctx.config)
        return atlas_lib.CorpusText(src.text, "the text under study (an imported model records no corpus)",
                                    src.notices)
    return atlas_ui._corpus(ctx.key, atlas_ui.HELD_OUT, "", _config=ctx.config)


def settings(ctx) -> feat.SAEConfig:
    """The layer, state, size, k and steps widgets; defaults from SAEConfig (the top layer's h, 8 × hidden, k 32)."""
    base = feat.SAEConfig()
    ui.keep_choice("feat_layer", list(range(ctx.layers)), ctx.layers - 1)
    states = ["h", "c"] if ctx.cell == "lstm" else ["h"]
    ui.keep_choice("feat_state", states, "h")
    ui.keep_in_range("feat_size", 1, 65536, 8 * ctx.hidden)
    ui.keep_in_range("feat_k", 1, 256, base.k)
    ui.keep_in_range("feat_steps", 1, 100_000, base.steps)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.selectbox("Layer", list(range(ctx.layers)), key="feat_layer", format_func=lambda l: f"layer {l}")
    c2.selectbox("State", states, key="feat_state", help="h, or for an LSTM its cell state c.")
    c3.number_input("Features (size)", 1, 65536, step=256, key="feat_size",
                    help=f"The dictionary's number of features; by default 8 × the hidden size ({8 * ctx.hidden:,}).")
    c4.number_input("k (active per character)", 1, 256, step=4, key="feat_k",
                    help="TopK: exactly the k largest features are kept at each character, the rest set to 0.")
    c5.number_input("Training steps", 1, 100_000, step=500, key="feat_steps",
                    help=f"Batches of {base.batch} states; fewer train faster but reconstruct worse "
                         "(about 400 updates miss every goal).")
    ss = st.session_state
    ui.keep_choice("feat_measure", list(MEASURE), MEASURE[0])
    st.radio("Measure on", MEASURE, key="feat_measure", horizontal=True,
             help=f"The metrics, every feature's labels and dashboards, and units against features: over the first "
                  f"{ANALYSIS_CHARS:,} characters of the text the dictionary trained on, or over the text under study "
                  "(the sidebar's: paste or upload text it never saw).")
    return feat.SAEConfig(layer=int(ss["feat_layer"]), state=ss["feat_state"], size=int(ss["feat_size"]),
                          k=int(ss["feat_k"]), steps=int(ss["feat_steps"]))


def _key(ctx, src, cfg: feat.SAEConfig, text: str) -> str:
    """The dictionary's cache key and the measured text's hash."""
    dkey = feat.entry_key(atlas_ui._weights_hash(ctx.key, _model=ctx.model), src.text, cfg.resolved(ctx.model))
    return f"{dkey}/{atlas_lib.text_sha256(text)[:16]}"


def measured_text(ctx, src) -> str:
    """What the pages measure on: the corpus's first ANALYSIS_CHARS, or the text under study."""
    choice = st.session_state.get("feat_measure", MEASURE[0])
    return ctx.text if choice == MEASURE[1] else src.text[:ANALYSIS_CHARS]


def current(ctx, cfg: feat.SAEConfig | None = None):
    """(Study or None, the corpus, its key) for the model under study and these settings; never trains."""
    cfg = cfg or saved_settings(ctx)
    src = _corpus(ctx)
    key = _key(ctx, src, cfg, measured_text(ctx, src))
    server = _server()
    found = server["studies"].get(key)
    job = server["jobs"].get(key)
    if found is None and job is not None and not job.active and job.result is not None:
        found = _keep(key, job.result)
    return found, src, key


def saved_settings(ctx) -> feat.SAEConfig:
    """The settings last chosen on Features (or the defaults), without drawing widgets."""
    ss, base = st.session_state, feat.SAEConfig()
    layer = ss.get("feat_layer", ctx.layers - 1)
    state = ss.get("feat_state", "h") if ctx.cell == "lstm" else "h"
    size = int(ss.get("feat_size", 8 * ctx.hidden))
    return feat.SAEConfig(layer=int(layer) if 0 <= int(layer) < ctx.layers else ctx.layers - 1, state=state,
                          size=size, k=int(ss.get("feat_k", base.k)), steps=int(ss.get("feat_steps", base.steps)))


def _keep(key: str, study: feat_study.Study) -> feat_study.Study:
    studies = _server()["studies"]
    studies[key] = study
    while len(studies) > KEEP:
        studies.pop(next(iter(studies)))
    return study


def _study_fn(model, src, cfg: feat.SAEConfig, name: str, text: str):
    """fn(stop_event, report) for a Job: the dictionary (cached or trained), then what the pages read of it
    (stored beside it once measured)."""
    def run(stop_event, report):
        def part(a, b):
            return lambda fraction, message: report(done=int(1000 * (a + (b - a) * fraction)), total=1000,
                                                    message=message)

        d = feat.load_or_train(model, src.text, src.name, cfg, progress=part(0.0, 0.7), cancel=stop_event.is_set,
                               model_name=name)
        try:
            study = feat_study.study(model, d, text, progress=part(0.7, 1.0),
                                     cancel=stop_event.is_set)
        except feat.Cancelled:
            return None
        return study
    return run


def start(ctx, src, cfg: feat.SAEConfig, key: str) -> Job:
    """Start (or join) the server's job for this dictionary, through the queue (one job per session)."""
    server = _server()
    with server["lock"]:
        job = server["jobs"].get(key)
        if job is None or not job.active:
            job = Job(_study_fn(ctx.model, src, cfg.resolved(ctx.model), ctx.name, measured_text(ctx, src)),
                      name="features",
                      threads=jobs_ui.job_threads())
            jobs_ui.submit(job)
            server["jobs"][key] = job
    return job


def _estimate(cfg: feat.SAEConfig, ctx) -> str:
    """How long training took here before, scaled to these settings; or that nothing was timed yet."""
    times = []
    try:
        for f in feat.default_cache_dir().glob("*/cfg.json"):
            c = json.loads(f.read_text())
            t = c.get("training", {})
            work = t["steps"] * t["batch"] * c["d_sae"] * c["d_in"]
            times.append(t["seconds"] / work)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        pass
    if not times:
        return ""
    r = cfg.resolved(ctx.model)
    return f" (about {np.median(times) * r.steps * r.batch * r.size * ctx.hidden:,.0f} s, timed by the dictionaries trained on this server)"


def panel(ctx) -> feat_study.Study | None:
    """The dictionary for the chosen settings, or a Train button and its progress. Returns the Study when ready."""
    cfg = settings(ctx)
    try:
        found, src, key = current(ctx, cfg)
    except RnnvizError as e:
        st.error(f"No dictionary with these settings: {e}", icon=":material/error:")
        return None
    if found is not None:
        d = found.dictionary
        st.caption(f"Dictionary of **{ctx.name}**, layer {d.layer} {d.state}: {d.d_sae:,} features, k = {d.k}, "
                   f"trained on {found.corpus} ({len(src.text):,} characters); "
                   f"{'cached on disk' if d.path else 'in memory only'}. Measured on {measured_words(found, src)}.")
        return found
    server = _server()
    job = server["jobs"].get(key)
    active = job is not None and job.active
    if not active:
        cached, _ = feat.lookup(ctx.model, src.text, cfg)
        if cached is not None:  # trained earlier (or by the CLI): only the measurements are left
            job, active = start(ctx, src, cfg, key), True
    if not active:
        if job is not None and job.error:
            st.error(f"The last run failed: {job.error}", icon=":material/error:")
        st.info(f"No dictionary yet for **{ctx.name}** with these settings over {src.name} ({len(src.text):,} "
                f"characters). Train one{_estimate(cfg, ctx)}: it runs in the background, is saved, and is "
                "shared with every session.", icon=":material/info:")
        if st.button("Train dictionary", key="feat_train", type="primary", icon=":material/play_arrow:"):
            try:
                start(ctx, src, cfg, key)
            except RnnvizError as e:
                st.error(str(e), icon=":material/error:")
                return None
            active = True
    if active:
        st.fragment(run_every=1.0)(lambda: ui.guard(_progress, key))()
    return None


def _progress(key: str) -> None:
    server = _server()
    job = server["jobs"].get(key)
    if job is None:
        return
    if job.queued and jobs_ui.queue_status(job, "feat_leave"):
        return
    if job_progress(job, "feat_cancel", "starting ..."):
        return
    if job.result is not None:
        _keep(key, job.result)
    elif job.stop_event.is_set():
        server["jobs"].pop(key, None)
        st.session_state["_toast"] = "Training the dictionary was cancelled; nothing was saved."
    st.rerun(scope="app")


@st.cache_data(max_entries=64, show_spinner=False)
def feature_view(key: str, i: int, _study: feat_study.Study) -> dict:
    """One feature's dashboard data from the study (no model run): its values' contexts, deciles, histogram."""
    x = _study.acts(i)
    return {"top": dashboard.array_contexts(_study.text, x, "top", 8, active_only=True),
            "deciles": dashboard.array_deciles(_study.text, x, n=1, active_only=True),
            "hist": dashboard.array_histogram(x, active_only=True), "fires": int((x > 0).sum())}


@st.cache_data(max_entries=64, show_spinner="Splicing the reconstruction without it ...")
def removal(key: str, i: int, _model, _study: feat_study.Study) -> float:
    """The loss change (nats/char) when feature i is removed from the reconstruction spliced at the output."""
    return feat.removal_effect(_model, _study.dictionary, _study.text, i)


def ready(ctx) -> tuple[feat_study.Study | None, str]:
    """(the Study for the settings last chosen on Features, its key), or (None, key) while it is not ready."""
    try:
        found, _, key = current(ctx)
    except RnnvizError:  # no corpus to train on: Features says why
        return None, ""
    return found, key


def default_feature(study: feat_study.Study) -> int:
    """The feature a dashboard opens on: the one whose best label scores highest on enough evidence."""
    t = study.table
    ok = t[(t["frequency"] > 0) & ~t["flagged"].fillna(True).astype(bool)]
    return int(ok.sort_values("score", ascending=False, kind="stable")["column"].iloc[0]) if len(ok) \
        else int(t["frequency"].idxmax())


def measured_words(study: feat_study.Study, src) -> str:
    """What the study was measured on, in words."""
    if src.text.startswith(study.text) and len(study.text) <= ANALYSIS_CHARS:
        return f"the first {len(study.text):,} characters of the text it trained on ({study.corpus})"
    return f"the text under study ({len(study.text):,} characters)"
