"""rnnviz: see inside character-level LSTMs, GRUs and vanilla RNNs.

A short API for notebooks (the submodules hold the rest):

    import rnnviz
    model = rnnviz.load("pretrained/quotes-lstm")
    tr = rnnviz.trace_text(model, "x = 'a'")        # rnnviz.trace.trace
    s = rnnviz.generate(model, "x = ", 100, seed=0)  # rnnviz.sampling.sample
    flow = rnnviz.gradient_flow(model, "x = 'a'")   # rnnviz.gradients.gradient_norms
    units = rnnviz.find_units(tr, "inside quotes")   # rnnviz.probes.rank_units

The names differ from the submodules' (rnnviz.trace, rnnviz.sampling, rnnviz.gradients,
rnnviz.checkpoint, rnnviz.atlas stay modules), and torch is imported on first use, not here.
"""
from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["load", "trace_text", "generate", "gradient_flow", "find_units", "Clamp", "__version__"]


def load(path, device: str = "cpu"):
    """The model in a checkpoint folder (config.json + model.safetensors), in eval mode.
    `rnnviz.checkpoint.load` gives (model, config)."""
    from .checkpoint import load as _load

    return _load(path, device=device)[0]


def trace_text(model, text: str, top_k: int = 5, gates: bool = True):
    """Every layer's h (and c) and gates per character, the next-character distribution and the
    surprisal: a `rnnviz.trace.Trace` (tr.layers[l]["h" | "c" | "i" | "f" | "g" | "o"]: (T, H))."""
    from .trace import trace as _trace

    return _trace(model, text, top_k=top_k, gates=gates)


def generate(model, prime: str = "\n", length: int = 200, temperature: float = 0.8, top_k: int | None = None,
             seed: int | None = None, clamp=None):
    """Sample `length` characters after `prime` (a `rnnviz.sampling.Sample`: .text, .probs)."""
    from .sampling import sample as _sample

    return _sample(model, prime, length, temperature=temperature, top_k=top_k, seed=seed, clamp=clamp)


def gradient_flow(model, text: str, loss_at: str = "last", per_unit: bool = False):
    """||dL/dh_t|| (and an LSTM's ||dL/dc_t||) per layer and step: a `rnnviz.gradients.GradientFlow`
    (.dh, .dc: (L, T))."""
    from .gradients import gradient_norms

    return gradient_norms(model, text, loss_at=loss_at, per_unit=per_unit)


def find_units(tr, hypothesis="inside quotes"):
    """Every unit of a trace ranked against a hypothesis: a name in `rnnviz.hypotheses.HYPOTHESES`, or
    one label per character. A DataFrame, best first (layer, kind, unit, direction, corr, auroc, score).
    A named hypothesis is scored on the characters its mask keeps, as Neuron search does."""
    from .hypotheses import HYPOTHESES, hypothesis_mask
    from .probes import rank_units

    mask = None
    if isinstance(hypothesis, str):
        if hypothesis not in HYPOTHESES:
            from .errors import ConfigError

            raise ConfigError(f"no hypothesis {hypothesis!r}; known: {', '.join(sorted(HYPOTHESES))}")
        hypothesis, mask = HYPOTHESES[hypothesis](tr.text), hypothesis_mask(hypothesis, tr.text)
    return rank_units(tr, hypothesis, mask=mask)


def __getattr__(name: str):
    if name == "Clamp":  # rnnviz.Clamp(layer=1, units=[42], value=0.0), for generate(clamp=...)
        from .sampling import Clamp

        return Clamp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
