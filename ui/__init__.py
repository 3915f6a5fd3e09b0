"""Shared UI for the Streamlit app, by concern. Pages `import ui` and use what is re-exported here.

  ui.state     page list and its sidebar sections, persisted widget keys, thread settings, folders, the error guard
  ui.models    the model registry, cached loaders and traces, uploads, the model card
  ui.text      the text under study and the shared hypothesis
  ui.jobs      training jobs of a session and their progress
  ui.sidebar   the shared sidebar and the no-model state
  ui.widgets   unit pickers, scrolling coloured text, legends
  ui.atlas     one atlas per (model, corpus) for the whole server (import it as a module)
  ui.dashboard the unit dashboard's ablation runs, shared by the server, with progress (import it as a module)

Everything not about Streamlit widgets lives in rnnviz/, which never imports streamlit.

Session-state keys shared across pages (so they persist when the user switches pages):
  model_choice                 which model is under study (an id from model_entries())
  text_source, pasted_text, excerpt_len   the text under study
  layer, unit, kind            the unit shown on Activations and Gates (Neuron search sets them)
  hypothesis, custom_regex     the hypothesis shared by Activations and Neuron search
  clamp_on, clamp_layer, clamp_unit, clamp_value, clamp_kind   the clamp on Sample
  mem_models                   models trained or uploaded in this browser session
  train_jobs                   training runs of this session (each holds a TrainingJob)
"""
from ui.jobs import (job_records, progress_line, quick_seconds, start_quick_training, start_training,  # noqa: F401
                     sync_jobs, training_progress)
from ui.models import (Context, ModelEntry, add_mem_model, context, corpus_label, get_trace,  # noqa: F401
                       load_entry, load_upload, model_card, model_entries)
from ui.sidebar import empty_state, require_model, sidebar  # noqa: F401
from ui.state import (DEFAULT_EXCERPT, DEFAULT_MODEL, MAX_ANALYSIS_CHARS, PAGE_THREADS, PAGES,  # noqa: F401
                      PERSIST, ROOT, SECTIONS, TRAIN_THREADS, default, guard, init_state, keep_choice,
                      keep_in_range, log, models_dir, pretrained_dir, run_page, session_dir)
from ui.text import (BUILTIN_EXCERPT, CUSTOM, corpus_excerpt, decode_text_upload, hypothesis_labels,  # noqa: F401
                     hypothesis_widgets, slice_trace, study_text)
from ui.widgets import legend_below, scroll_html, unit_controls  # noqa: F401
