"""Features: a TopK sparse dictionary over one layer's h or c, saved in SAELens's layout, cached on disk,
measured by reconstruction and by splicing it back into the model, and compared with the units."""
from .codes import Codes, corpus_codes, encode_text
from .compare import MAX_COMPARE_CHARS, loadings, logit_effect, units_vs_features
from .metrics import feature_acts, metrics, removal_effect, run_spliced
from .sae import Cancelled, Dictionary, SAEConfig, layer_states, train
from .store import DictionaryError, default_cache_dir, entry_key, load, load_or_train, lookup, save

__all__ = ["Cancelled", "Codes", "Dictionary", "DictionaryError", "MAX_COMPARE_CHARS", "SAEConfig", "corpus_codes",
           "default_cache_dir", "encode_text", "entry_key", "feature_acts", "layer_states", "load", "load_or_train",
           "loadings", "logit_effect", "lookup", "metrics", "removal_effect", "run_spliced", "save", "train",
           "units_vs_features"]
