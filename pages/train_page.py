"""Train: a fresh model on a built-in corpus or your text, in a worker thread, with live loss curves."""
import streamlit as st

import ui
from rnnviz import checkpoint, losses, plots, quotas
from rnnviz import runs as fair
from rnnviz.corpora import CORPORA
from rnnviz.model import CELLS
from rnnviz.training import devices
from ui import jobs as ui_jobs
from ui import train as tui
from ui.train import HIDDEN, SOURCES


def settings():
    ss = st.session_state
    st.radio("Corpus", SOURCES, key="tr_corpus_src", horizontal=True)
    if ss["tr_corpus_src"] == SOURCES[0]:
        ui.keep_choice("tr_corpus", list(CORPORA), "shakespeare")
        st.selectbox("Built-in corpus", list(CORPORA), key="tr_corpus")
    elif ss["tr_corpus_src"] == SOURCES[1]:
        st.file_uploader("Training text (UTF-8)", type=["txt", "md", "py", "csv"], key="tr_upload")
    else:
        st.text_area("Training text", key="tr_paste", height=120)
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Cell", list(CELLS), key="tr_cell", format_func=str.upper)
    c2.number_input("Layers", 1, 3, key="tr_layers")
    c3.select_slider("Hidden size", HIDDEN, key="tr_hidden")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Sequence length", 8, 512, step=8, key="tr_seq")
    c2.number_input("Batch size", 1, 256, step=4, key="tr_batch")
    c3.number_input("Learning rate", 1e-5, 1e-1, step=1e-3, format="%.4f", key="tr_lr")
    c1, c2, c3 = st.columns(3)
    c1.radio("Budget", ["seconds", "steps"], key="tr_budget", horizontal=True)
    if ss["tr_budget"] == "seconds":
        c2.number_input("Seconds", 5, 3600, step=15, key="tr_seconds")
    else:
        c2.number_input("Steps", 1, 100_000, step=100, key="tr_steps")
    c3.selectbox("Device", devices(), key="tr_device")
    st.number_input("Show a sample every N steps (0 = never)", 0, 10_000, step=50, key="tr_sample_every")


def live():
    """Progress, the loss curves of every run of this session, and the latest samples."""
    recs = ui.job_records()
    if not recs:
        st.info("No training runs yet in this session. Choose settings and press **Start**.",
                icon=":material/info:")
        return
    for rec in recs:
        if rec["running"]:
            if ui_jobs.queue_status(rec["job"], key=f"leave_{rec['name']}"):
                continue
            snap = rec["job"].snapshot()
            st.markdown(f"**{rec['name']}**: {snap.get('state', 'starting')} on {snap.get('device', '...')}")
            st.progress(min(1.0, float(snap.get("fraction") or 0.0)), text=ui.progress_line(snap))
    runs = {rec["name"]: rec["job"].snapshot().get("curve", []) for rec in recs}
    per = {rec["name"]: fair.chars_per_step(rec["job"].trainer.config) for rec in recs}
    if any(runs.values()):  # a run still waiting in the queue has no curve yet
        # against characters seen: a time budget gives the cheaper cell more steps, so runs race unfairly by time
        st.plotly_chart(plots.loss_curves(runs, per), key="loss_chart")
        if len(runs) > 1:
            st.markdown(fair.summary(fair.at_equal_chars({n: (c, per[n]) for n, c in runs.items()})))
    latest = recs[-1]["job"].snapshot().get("samples") or []
    if latest:
        st.markdown(f"Sample at step {latest[-1]['step']:,} of {recs[-1]['name']} (temperature 0.8):")
        st.code(latest[-1]["text"], language=None, wrap_lines=True)


def finished():
    recs = [r for r in ui.job_records() if not r["running"]]
    if not recs:
        return
    st.subheader("Finished runs")
    for rec in recs:
        snap = rec["job"].snapshot()
        mid = rec.get("registered")
        with st.container(border=True):
            val = losses.progress_words(snap)
            st.markdown(f"**{rec['name']}**: {snap.get('state')}: {snap.get('message') or ''}"
                        + (f" · {val}" if val else ""))
            if mid and snap.get("state") == "failed":  # NaN: the model below holds the last good weights
                st.warning(f"The run stopped early: {snap.get('message')}", icon=":material/warning:")
            if not mid:
                if rec["job"].error:
                    st.error(f"The run failed: {rec['job'].error}", icon=":material/error:")
                continue
            c1, c2, c3, c4 = st.columns([1, 1, 1, 1.4])
            c1.button("Study this model", key=f"use_{mid}", on_click=tui.select_model, args=(mid,),
                      icon=":material/visibility:")
            c2.download_button("Download (.zip)", data=lambda p=rec["path"]: checkpoint.to_zip(p),
                               file_name=f"{rec['path'].name}.zip", mime="application/zip", key=f"dl_{mid}",
                               icon=":material/download:")
            ui.default(f"savename_{mid}", rec["path"].name)
            c4.text_input("Name in the models folder", key=f"savename_{mid}", max_chars=quotas.MAX_NAME,
                          label_visibility="collapsed")
            c3.button("Save to the models folder", key=f"save_{mid}", icon=":material/save:", on_click=tui.save_model,
                      args=(rec, mid), help=f"Copies the checkpoint to {ui.models_dir()} under the name on the "
                                           "right; it then stays in the picker.")
            if rec.get("saved_to"):
                st.success(f"Saved to {rec['saved_to']}; it is listed in the model picker.", icon=":material/check:")
            if rec.get("save_note"):
                st.info(rec["save_note"], icon=":material/info:")
            if rec.get("save_error"):
                st.error(f"Not saved: {rec['save_error']}", icon=":material/error:")
                for name in rec.get("save_candidates", [])[:8]:  # oldest first
                    st.button(f"Delete the saved model {name}", key=f"del_{mid}_{name}", on_click=tui.delete_saved,
                              args=(rec, name), icon=":material/delete:")


def main():
    st.title("Train")
    st.caption("Training runs in a background thread: you can switch pages, and the run keeps going. "
               "When it ends, its model appears in the sidebar's model picker.")
    tui.defaults()
    settings()
    running = any(r["running"] for r in ui.job_records())
    c1, c2, _ = st.columns([1, 1, 6])
    other = ui_jobs.session_job()  # the memory experiment on Gradients counts too: one job per session
    busy = other is not None and not any(r["job"] is other for r in ui.job_records())
    if busy:
        st.info(f"This session's {other.name} job is under way (on Gradients); one job at a time per session.",
                icon=":material/info:")
    if c1.button("Start", type="primary", key="tr_start", icon=":material/play_arrow:", disabled=running or busy):
        ui.guard(tui.start_or_offer)
        running = any(r["running"] for r in ui.job_records())
    if c2.button("Stop", key="tr_stop", icon=":material/stop:", disabled=not running,
                 help="Stops a running job, or takes a waiting one out of the queue."):
        for rec in ui.job_records():
            if rec["running"]:
                rec["job"].stop()
    tui.quota_offer()
    every = ui_jobs.poll_every([r["job"] for r in ui.job_records() if r["running"]])
    st.fragment(run_every=every)(lambda: ui.guard(poll, running, every))()
    finished()


def poll(was_running: bool, every: float | None = None):
    live()
    recs = ui.job_records()
    if was_running and not any(r["running"] for r in recs):
        st.rerun(scope="app")
    if every != ui_jobs.poll_every([r["job"] for r in recs if r["running"]]):
        st.rerun(scope="app")  # a waiting run started: poll it every second from now on


ui.run_page(main)
