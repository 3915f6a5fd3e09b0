"""The shared sidebar (model picker, model card, device, text under study) and the no-model state."""
from __future__ import annotations

import streamlit as st

from rnnviz.errors import RnnvizError
from rnnviz.model import describe_device, pick_device
from ui.jobs import job_records, quick_seconds, start_quick_training, training_progress
from ui.models import (UPLOAD_TYPES, Context, _on_checkpoint_upload, context, load_entry, model_card,
                       model_entries, upload_key)
from ui.state import DEFAULT_MODEL, keep_choice, pretrained_dir
from ui.text import study_text


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
        key = upload_key()
        st.file_uploader("A .zip of a checkpoint folder (its history/ too), or config.json + model.safetensors, "
                         "or a model to import: a PyTorch .pt/.pth/.safetensors state dict, a min-char-rnn .npz "
                         "or a Keras .keras/.h5, with its vocabulary (.json or .txt) when the file holds none",
                         type=UPLOAD_TYPES, accept_multiple_files=True,
                         help=f"At most {st.get_option('server.maxUploadSize')} MB per file. An imported model "
                              "is converted into a checkpoint of this session; its model card says how.",
                         key=key, on_change=_on_checkpoint_upload, args=(key,))
        if ss.get("upload_error"):
            st.error(f"Upload rejected: {ss['upload_error']}", icon=":material/error:")
        elif ss.get("upload_note"):
            st.success(ss["upload_note"], icon=":material/check_circle:")
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
