"""What Karpathy, Johnson & Fei-Fei (2015) reported, as data, each item with where it comes from.

Only numbers found in the paper (or quoted from it in issue 30) are numbers here; findings whose
figures we could not read are recorded as qualitative, never as invented values.
"""
from __future__ import annotations

PAPER = ('Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks", '
         "arXiv:1506.02078 (ICLR 2016 workshop)")

ANCHOR_CITATION = f"{PAPER}, test-set comparison with n-gram models (value as quoted in rnnviz issue 30)"
TABLE1_ANCHORS = [
    {"corpus": "War and Peace", "model": "best LSTM", "loss": 1.077, "baseline": "20-gram", "baseline_loss": 1.195,
     "unit": "test cross-entropy per character, as the paper reports it", "citation": ANCHOR_CITATION},
    {"corpus": "Linux kernel", "model": "best LSTM", "loss": 0.84, "baseline": "20-gram", "baseline_loss": 0.889,
     "unit": "test cross-entropy per character, as the paper reports it", "citation": ANCHOR_CITATION},
]

FINDINGS = {
    "table1": {"kind": "qualitative",
               "text": "Depth of at least two layers helps, and the LSTM and GRU beat the vanilla RNN.",
               "citation": f"{PAPER}, Table 1"},
    "saturation": {"kind": "qualitative",
                   "text": "A gate is left-saturated below 0.1 and right-saturated above 0.9. The first layer's "
                           "gates are rarely saturated, the upper layers' often are; the right-saturated forget "
                           "gates keep their cell's value almost unchanged, like integrators.",
                   "citation": f"{PAPER}, gate activation statistics (the saturation figure)"},
    "onion": {"kind": "qualitative",
              "text": "An error is a character given probability below 0.5. Oracles remove them in turn: n-gram "
                      "(orders 1 to 9), dynamic n-long memory, rare words, the word model, punctuation, and the "
                      "rest (boost). Scaling the model up removes mostly the n-gram errors; rare-word errors "
                      "call for more data, and the rest for better architectures.",
              "citation": f"{PAPER}, error analysis (the onion figure; its shares are not recorded here: "
                          "we could not read them)"},
    "dynamics": {"kind": "qualitative",
                 "text": "Measured by symmetric KL divergence, the LSTM's predictions early in training lie "
                         "closest to a low-order n-gram's, and later to higher orders'.",
                 "citation": f"{PAPER}, comparison with n-gram models over training"},
}


def reported() -> dict:
    """The paper's results as plain data: {"paper", "table1_anchors", "findings"}."""
    return {"paper": PAPER, "table1_anchors": [dict(a) for a in TABLE1_ANCHORS],
            "findings": {k: dict(v) for k, v in FINDINGS.items()}}
