"""What the Features pages say about a dictionary, in words computed from its numbers (a notebook prints the same)."""
from __future__ import annotations

import math

import pandas as pd

# Each metric's definition, as the Features page shows it beside the number (docs/features.md has the same).
METRICS = {
    "fvu": ("FVU", "fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − x̄‖² over the text; 0 = perfect "
                   "reconstruction, 1 = no better than the mean state"),
    "l0": ("L0", "mean number of features active per character (at most k)"),
    "dead_fraction": ("dead", "share of the features that never fire on the text"),
    "loss": ("loss", "the model's own loss on the text, nats per character"),
    "loss_spliced_out": ("spliced at the output", "the loss with x̂ in place of h where the output layer "
                                                  "reads it (top layer only); the recurrence is untouched"),
    "loss_spliced_rec": ("spliced in the recurrence", "the loss with x̂ in place of the state inside the "
                                                      "recurrence, read by the next step and the layer above"),
    "loss_zero": ("zeroed", "the loss with the state set to 0 the same way (the output splice's)"),
    "ce_recovered_out": ("CE recovered (output)", "(loss zeroed − loss spliced) / (loss zeroed − loss) for the "
                                                  "output splice; 1 = the reconstruction loses nothing"),
    "ce_recovered_rec": ("CE recovered (recurrence)", "the same for the splice inside the recurrence"),
}


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1%}"


PERCENT_METRICS = ("dead_fraction", "ce_recovered_out", "ce_recovered_rec")


def metric_value(name: str, x) -> str:
    """One metric as the page shows it; a splice that blew the state up reads 'blows up', not inf or -inf%."""
    if x is None or not math.isfinite(x):
        return "blows up" if name.endswith("_rec") else "n/a"
    return f"{x:.1%}" if name in PERCENT_METRICS else f"{x:.4f}" if "loss" in name else f"{x:.3f}"


def metrics_sentence(m: dict, what: str) -> str:
    """The splice metrics in one sentence (Markdown): what the reconstruction keeps of the model's loss."""
    return (f"Over {what}, the dictionary explains all but "
            f"**{m['fvu']:.3f}** of the states' variance with **{m['l0']:.1f}** features per character "
            f"({_pct(m['dead_fraction'])} of features never fire). Spliced in where the output layer reads the "
            f"state, it gives a loss of **{m['loss_spliced_out']:.4f}** nats/char against the model's own "
            f"**{m['loss']:.4f}** and **{m['loss_zero']:.4f}** with the state zeroed: "
            f"**{_pct(m['ce_recovered_out'])}** of the loss recovered. " + _recurrence_words(m))


def _recurrence_words(m: dict) -> str:
    """The splice inside the recurrence, or where it blew the state up."""
    at = m.get("rec_diverged_at")
    if at is not None:
        return (f"Fed back through the recurrence, the reconstruction blows the state up: the model's loss is "
                f"no longer finite from character **{at:,}** on.")
    return (f"Fed back through the recurrence: **{m['loss_spliced_rec']:.4f}** ({_pct(m['ce_recovered_rec'])} "
            "recovered).")


def comparison_verdict(rows: list[dict]) -> tuple[str, str]:
    """(level, Markdown): on how many hypotheses a feature beats the best unit and its own chance level, and
    the largest gain; 'warning' when no feature does on any hypothesis with enough evidence (a finding, said
    plainly). A hypothesis with too little evidence, or one no unit and no feature beats chance on, decides nothing."""
    if not rows:
        return "info", "No hypothesis varies on this text, so units and features cannot be compared on it."
    fair = [r for r in rows if not r["evidence"]["flagged"]]
    if not fair:
        return "info", ("Every hypothesis has too little evidence on this text to call any unit or feature a "
                        "detector; the table is for exploring only.")

    def above(side, r):
        chance = r[side].get("chance")
        return chance is None or not math.isfinite(chance) or r[side]["score"] > chance

    told = [r for r in fair if above("unit", r) or above("feature", r)]
    wins = [r for r in told if r["winner"] == "feature" and above("feature", r)]
    noise = len(fair) - len(told)
    aside = (f" ({noise} more hypothes{'i' if noise == 1 else 'e'}s, where neither the best unit nor the best "
             "feature beats its chance level, decide nothing)") if noise else ""
    if not wins:
        return "warning", (f"**No feature beats the best unit.** On {'the' if len(told) == 1 else 'all'} "
                           f"{len(told)} hypothes{'i' if len(told) == 1 else 'e'}s with enough evidence that a unit or "
                           f"feature tracks above chance, the best single unit scores at least as well as the best "
                           f"feature (within 0.001 counts as a tie){aside}: here the units may already be the features.")
    best = max(wins, key=lambda r: r["feature"]["score"] - r["unit"]["score"])
    gain = best["feature"]["score"] - best["unit"]["score"]
    return "success", (f"**A feature beats the best unit on {len(wins)} of {len(told)} hypotheses** with enough "
                       f"evidence that a unit or feature tracks above chance{aside}. The largest gain: "
                       f"{best['hypothesis']}, feature {best['feature']['feature']} scores "
                       f"{best['feature']['score']:.3f} against the best unit's {best['unit']['score']:.3f} "
                       f"(+{gain:.3f}; the feature's chance level {best['feature']['chance']:.3f}).")


def steer_caption(feature: int, layer: int, state: str, peak: float) -> str:
    """What steering with a feature adds, and the scale its alpha is on."""
    return (f"Steering adds α × feature {feature}'s decoder row (a unit-length direction in layer {layer}'s "
            f"{state}) to the state at every step, the prime's characters included. Where the feature fires "
            f"most on the corpus, it adds {peak:.3g} × the same row, so α = {peak:.3g} adds it at its strongest")


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """units_vs_features as one row per hypothesis: the best unit and feature, their scores and chance levels,
    the evidence (characters and spans where the hypothesis holds, and whether that is too little), the winner."""
    return pd.DataFrame([{
        "hypothesis": r["hypothesis"],
        "best unit": f"L{r['unit']['layer']} {r['unit']['state']}{r['unit']['unit']}",
        "unit score": r["unit"]["score"], "unit chance": r["unit"].get("chance"),
        "best feature": f"feature {r['feature']['feature']}",
        "feature score": r["feature"]["score"], "feature chance": r["feature"].get("chance"),
        "holds on": r["evidence"]["positives"], "spans": r["evidence"]["spans"],
        "too little evidence": bool(r["evidence"]["flagged"]), "winner": r["winner"]} for r in rows],
        columns=["hypothesis", "winner", "best unit", "unit score", "unit chance", "best feature", "feature score",
                 "feature chance", "holds on", "spans", "too little evidence"])
