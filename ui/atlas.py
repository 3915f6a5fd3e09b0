"""The atlas in the app: one per (model, corpus, settings) for the whole server, built in a background job.

Every session that asks for the same atlas gets the same object (and the same running build): twenty
students on one model hold one atlas. What is built is also on disk (rnnviz.atlas's cache), so a
restarted server finds it again.
"""
from __future__ import annotations

import threading

import streamlit as st

import ui
from rnnviz import atlas as atlas_lib
from rnnviz.corpora import CORPORA
from rnnviz.errors import RnnvizError, TextError
from rnnviz.jobs import Job
from ui.models import _md  # a file name shown literally
from ui.widgets import job_progress

HELD_OUT = "held-out split"
UNDER_STUDY = "the text under study"
UPLOAD = "a corpus file (upload)"
CHOICES = [HELD_OUT, *CORPORA, UPLOAD, UNDER_STUDY]
UPLOAD_LABEL = f"Corpus file (UTF-8 text, at most {atlas_lib.MAX_CHARS:,} characters)"
# of float32 arrays per LSTMVis download, before compression: the server builds each one in memory
LSTMVIS_MAX_BYTES = 128 * 2**20


@st.cache_resource
def _server() -> dict:
    """Server-wide: key -> Atlas, key -> the Job building it."""
    return {"atlases": {}, "jobs": {}, "lock": threading.Lock()}


@st.cache_data(max_entries=16, show_spinner=False)
def _weights_hash(model_key: str, _model) -> str:
    return atlas_lib.model_key(_model)


@st.cache_data(max_entries=16, show_spinner="Reading the corpus ...")
def _corpus(model_key: str, choice: str, text_under_study: str, _config) -> atlas_lib.CorpusText:
    corpus = None if choice == HELD_OUT else text_under_study if choice == UNDER_STUDY else choice
    return atlas_lib.resolve_corpus(_config, corpus)


def _read_upload() -> None:
    """Read the uploaded corpus file once, when the uploader's file changes; what it holds stays in the
    session (the uploader itself is cleared when the page changes), a bad file leaves only its error."""
    ss = st.session_state
    ss.pop("atlas_upload", None)
    ss.pop("atlas_upload_error", None)
    up = ss.get("atlas_upload_file")
    if up is None:
        return
    try:
        ss["atlas_upload"] = atlas_lib.upload_corpus(up.getvalue(), up.name)
    except RnnvizError as e:
        ss["atlas_upload_error"] = str(e)


def corpus_widget(where=st) -> str:
    ui.keep_choice("atlas_corpus", CHOICES, HELD_OUT)
    choice = where.selectbox("Atlas corpus", CHOICES, key="atlas_corpus",
                             help="The corpus the atlas indexes: by default the model's held-out split, or a "
                                  "built-in corpus, a corpus file you upload, or the text under study; up to "
                                  f"{atlas_lib.MAX_CHARS:,} characters.")
    if choice == UPLOAD:
        ss = st.session_state
        where.file_uploader(UPLOAD_LABEL, key="atlas_upload_file", on_change=_read_upload, max_upload_size=8,
                            help="Plain text in UTF-8. A longer file is refused, not cut: upload its first "
                                 f"{atlas_lib.MAX_CHARS:,} characters, or index all of it with `python -m rnnviz "
                                 "atlas MODEL --corpus FILE --chars N`.")
        if ss.get("atlas_upload_error"):
            where.error(f"Upload refused: {ss['atlas_upload_error']}", icon=":material/error:")
        elif ss.get("atlas_upload") is not None:
            up = ss["atlas_upload"]
            where.caption(f"Uploaded corpus: **{_md(up.name)}**, {len(up.text):,} characters (kept for this "
                          "session; upload another file to replace it).")
    return choice


def _uploaded() -> atlas_lib.CorpusText:
    src = st.session_state.get("atlas_upload")
    if src is None:
        raise TextError("no corpus file is uploaded yet: upload one under Atlas corpus (on the Unit atlas page)")
    return src


def _key(ctx, src) -> str:
    return atlas_lib.cache_key(_weights_hash(ctx.key, _model=ctx.model), atlas_lib.text_sha256(src.text),
                               atlas_lib.settings(atlas_lib.DEFAULT_CHUNK, atlas_lib.DEFAULT_TOP_K))


def current(ctx, choice: str | None = None):
    """(atlas or None, the corpus, its key) for the model under study; never builds. An atlas counts as
    ready once its units are labelled (the labels are what the map and the dashboards read)."""
    choice = choice or st.session_state.get("atlas_corpus", HELD_OUT)
    if choice == UPLOAD:  # keyed below by its content, never by its file name
        src = _uploaded()
    else:
        src = _corpus(ctx.key, choice, ctx.text if choice == UNDER_STUDY else "", _config=ctx.config)
    key = _key(ctx, src)
    server = _server()
    found = server["atlases"].get(key)
    job = server["jobs"].get(key)
    if found is None and job is not None and not job.running and job.result is not None:
        found = server["atlases"][key] = job.result  # a build that ended since the last run
    if found is not None:
        found.check(ctx.model)  # never an atlas of another model
    return found, src, key


def panel(ctx):
    """The atlas of the model under study over the chosen corpus, or a build button and its progress.
    Returns the Atlas when it is ready, else None (the caller shows nothing more)."""
    choice = corpus_widget()
    if choice == UPLOAD and st.session_state.get("atlas_upload") is None:
        st.info(f"Upload a corpus file above: UTF-8 text of at most {atlas_lib.MAX_CHARS:,} characters. The atlas "
                "is keyed by the file's content, so two files never share one.", icon=":material/info:")
        return None
    try:
        found, src, key = current(ctx, choice)
    except RnnvizError as e:
        st.info(f"No atlas over {choice}: {e}. Choose a built-in corpus, upload a corpus file, or the text under "
                "study in the box above.", icon=":material/info:")
        return None
    for n in src.notices:
        st.info(n, icon=":material/info:")
    if found is not None:
        st.caption(f"Atlas of **{ctx.name}** over {src.name} ({len(found):,} characters, "
                   f"{'cached on disk' if found.cached else 'in memory only'}).")
        return found
    server = _server()
    job = server["jobs"].get(key)
    running = job is not None and job.running
    on_disk = not running and atlas_lib.lookup(ctx.model, src.text) is not None
    if on_disk:  # built earlier (or by the CLI): only the labels are left to read or compute
        start(ctx, src, key)
        running = True
    if not running:
        if job is not None and job.error:
            st.error(f"The last build failed: {job.error}", icon=":material/error:")
        st.info(f"No atlas yet for **{ctx.name}** over {src.name} ({len(src.text):,} characters). Building it runs "
                "the model over the whole corpus once and labels every unit; the result is saved and shared "
                "with every session.", icon=":material/info:")
        if st.button("Build the atlas", key="atlas_build", type="primary", icon=":material/play_arrow:"):
            start(ctx, src, key)
            running = True
    if running:
        st.fragment(run_every=1.0)(lambda: ui.guard(_progress, key))()
    return None


def _prepare(model, config, corpus):
    """fn(stop_event, report) for a Job: the atlas (from the cache or built), its units labelled."""
    build = atlas_lib.job_fn(model, config, corpus)

    def run(stop_event, report):
        found = build(stop_event, report)
        if found is not None and not stop_event.is_set():
            report(message="labelling every unit against every hypothesis ...")
            found.labels()
        return None if stop_event.is_set() else found
    return run


def start(ctx, src, key: str) -> Job:
    """Start (or join) the server's build of this atlas."""
    server = _server()
    with server["lock"]:
        job = server["jobs"].get(key)
        if job is None or not job.running:
            # the resolved corpus itself: its name (a file may be called "python") never picks the text
            job = Job(_prepare(ctx.model, ctx.config, src), name="atlas", threads=ui.TRAIN_THREADS).start()
            server["jobs"][key] = job
    return job


def _progress(key: str) -> None:
    server = _server()
    job = server["jobs"].get(key)
    if job is None:
        return
    if job_progress(job, "atlas_cancel", "building the atlas"):
        return
    if job.result is not None:
        server["atlases"][key] = job.result
    elif job.stop_event.is_set():
        server["jobs"].pop(key, None)
        st.session_state["_toast"] = "The atlas build was cancelled; nothing was saved."
    st.rerun(scope="app")
