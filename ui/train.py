"""The Train page's settings, its start, and the callbacks of its finished runs (save, delete, forget, study)."""
import streamlit as st

import ui
from rnnviz import quotas, runs
from rnnviz.corpora import corpus_meta, load_corpus, split, user_text
from rnnviz.errors import RnnvizError, TextError
from rnnviz.training import TrainConfig, devices
from ui import models as ui_models

SOURCES = ["Built-in corpus", "Upload a .txt file", "Paste text"]
HIDDEN = [16, 32, 64, 128, 256, 512]


def defaults():
    """Every setting's first value, and a device that is still here."""
    for k, v in dict(tr_corpus_src=SOURCES[0], tr_corpus="shakespeare", tr_paste="", tr_cell="lstm",
                     tr_layers=1, tr_hidden=128, tr_seq=64, tr_batch=32, tr_lr=3e-3, tr_budget="seconds",
                     tr_seconds=60, tr_steps=500, tr_device="auto", tr_sample_every=100).items():
        ui.default(k, v)
    ui.keep_choice("tr_device", devices(), "auto")


def training_text():
    """(train, val, corpus meta, name) of the chosen corpus."""
    ss = st.session_state
    src = ss["tr_corpus_src"]
    if src == SOURCES[0]:
        corpus = load_corpus(ss["tr_corpus"])
    elif src == SOURCES[1]:
        up = ss.get("tr_upload")
        if up is None:
            raise TextError("upload a .txt file first")
        corpus = user_text(up.getvalue(), name=up.name)
    else:
        corpus = user_text(ss.get("tr_paste") or "", name="pasted text")
    if corpus.notice:
        st.info(f"{corpus.name}: {corpus.notice}", icon=":material/info:")
    train, val = split(corpus, 0.1)
    meta = corpus_meta(corpus, 0.1)
    return train, val, meta, corpus.name


def start():
    """Start a run with the settings shown, in a worker thread."""
    ss = st.session_state
    train, val, meta, name = training_text()
    seconds = ss["tr_budget"] == "seconds"
    cfg = TrainConfig(seq_len=int(ss["tr_seq"]), batch_size=int(ss["tr_batch"]), lr=float(ss["tr_lr"]),
                      max_steps=None if seconds else int(ss["tr_steps"]),
                      max_seconds=float(ss["tr_seconds"]) if seconds else None,
                      eval_every=50, eval_chars=5_000, sample_every=int(ss["tr_sample_every"]),
                      warmup_steps=10, device=ss["tr_device"])
    run_name = runs.run_name(len(ss["train_jobs"]) + 1, ss["tr_cell"], ss["tr_layers"], ss["tr_hidden"], name)
    ui.start_training(run_name, train, val, meta, ss["tr_cell"], int(ss["tr_layers"]), int(ss["tr_hidden"]), cfg)


def start_or_offer():
    """Start; over this session's model limit, keep the message and the models to offer to forget."""
    ss = st.session_state
    ss.pop("tr_quota", None)
    try:
        start()
    except quotas.QuotaError as e:  # shown by quota_offer, with a button to forget each model
        ss["tr_quota"] = (str(e), e.candidates)


def save_model(rec: dict, mid: str):
    """A callback, so the model picker (drawn before the page) already lists the saved copy."""
    rec.pop("save_error", None)
    rec.pop("save_note", None)
    rec["save_candidates"] = []
    folder = ui.models_dir()
    try:
        with quotas.SAVE_LOCK:  # two sessions saving at once must not both take the last place
            dest = quotas.save_path(folder, st.session_state.get(f"savename_{mid}") or rec["path"].name,
                                    shipped_folder=ui.pretrained_dir())
            quotas.check_save(folder, quotas.folder_bytes(rec["path"]))
            rec["job"].trainer.save(dest, rec["job"].result)
        rec["saved_to"] = dest
    except quotas.QuotaError as e:
        rec["save_error"], rec["save_candidates"] = str(e), e.candidates
    except (OSError, RnnvizError) as e:
        rec["save_error"] = str(e)


def delete_saved(rec: dict, name: str):
    """Delete a saved model the quota message offered, so this run can be saved."""
    try:
        quotas.delete_saved(ui.models_dir(), name)
        rec["save_candidates"] = [n for n in rec.get("save_candidates", []) if n != name]
        rec["save_error"] = None
        rec["save_note"] = f"Deleted {name}: press Save again."
        st.session_state["_toast"] = f"Deleted the saved model {name}."
    except (OSError, RnnvizError) as e:
        rec["save_error"] = str(e)


def quota_offer():
    """After Start met this session's model limit: the message, and a button to forget each model."""
    ss = st.session_state
    offer = ss.get("tr_quota")
    if not offer:
        return
    msg, mids = offer
    st.error(f"Not started: {msg}", icon=":material/error:")
    for mid in [m for m in mids if m in ss.get("mem_models", {})]:
        st.button(f"Forget {ui_models.mem_name(mid)}", key=f"forget_{mid}", on_click=forget, args=(mid,),
                  icon=":material/delete:")


def forget(mid: str):
    """A callback: forget one model of this session, so a run can start."""
    ss = st.session_state
    name = ui_models.mem_name(mid)
    ui_models.forget_mem_model(mid)
    ss["_toast"] = f"Forgot {name}; press Start again."
    ss.pop("tr_quota", None)


def select_model(mid: str):
    """Study a finished run's model: select it, say so, and open Activations on it."""
    ss = st.session_state
    ss["model_choice"] = mid
    ss["_toast"] = f"Now studying {ss['mem_models'][mid]['name']}: every page shows it."
    ss["_goto"] = "pages/activations_page.py"
