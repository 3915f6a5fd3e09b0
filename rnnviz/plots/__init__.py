"""Pure plotly figure builders, a module per subject: arrays in, go.Figure out (no streamlit here).

    states       the states over the text: heatmap, one unit's line, unit scores, surprisal
    gates        one unit's gates, gate saturation (Karpathy, Johnson & Fei-Fei 2015), histograms
    gradients    gradient flow through time and the memory task
    training     loss curves of one or several runs
    sampling     the next-character distribution at several temperatures
    history      a training run's snapshots: loss, emergence, saturation and recall over steps
    attribution  saliency by distance and counterfactual edits
    compare      a model against an n-gram or another model, by character class
    atlas        the unit atlas: the units map, a unit's histogram, matches
    features     a dictionary's features: their map and density, a feature's logit effect and loadings,
                 units against features
    paper        the 2015 paper's results: the Table 1 grid, saturation by layer, the onion, n-gram dynamics
    circuits     a circuit through units and time; an intervention's distribution before and after
    anatomy      inside the cell: one unit's step as Olah's diagram, the text strip, the pre-activation's
                 parts, the unit along the window with its gates' ribbons
    base         what they share: colours, symbols, the character axis, the empty-figure message

Every public builder is also importable from here, so a page writes `from rnnviz import plots` and
`plots.gradient_decay(...)`.
"""
from ..render import char_label
from .atlas import match_heatmap, unit_histogram, unit_map
from .anatomy import cell_diagram, preact_bars, text_strip, unit_window
from .attribution import MEASURES, aggregate_distance, counterfactual_chart, influence_distance
from .circuits import circuit_graph, intervention_bars
from .compare import accuracy_vs_distance, class_breakdown, difference_by_position
from .features import feature_density, feature_loadings, feature_logit_effect, feature_map, units_vs_features
from .gates import gate_histograms, gate_lines, saturation_scatter
from .gradients import (
                        cell_color,
                        gradient_decay,
                        gradient_lesson,
                        memory_accuracy,
                        recall_during_training,
                        unit_gradient_map,
)
from .history import emergence_timeline, loss_with_step, recall_over_steps, saturation_over_steps
from .paper import dynamics_curves, grid_bars, onion_bars, saturation_by_layer
from .sampling import temperature_distributions
from .states import activation_heatmap, surprisal_bars, unit_line, unit_scales, unit_scores
from .training import loss_curves

__all__ = ["char_label", "cell_diagram", "preact_bars", "text_strip", "unit_window", "MEASURES", "match_heatmap", "unit_histogram", "unit_map", "aggregate_distance", "counterfactual_chart",
           "influence_distance", "accuracy_vs_distance", "class_breakdown", "difference_by_position",
           "gate_histograms", "gate_lines", "saturation_scatter", "cell_color",
           "gradient_decay", "gradient_lesson", "memory_accuracy", "recall_during_training", "unit_gradient_map",
           "emergence_timeline", "loss_with_step", "recall_over_steps", "saturation_over_steps",
           "temperature_distributions", "activation_heatmap", "surprisal_bars", "unit_line", "unit_scales",
           "unit_scores", "loss_curves", "circuit_graph", "intervention_bars",
           "feature_density", "feature_loadings", "feature_logit_effect", "feature_map", "units_vs_features",
           "dynamics_curves", "grid_bars", "onion_bars", "saturation_by_layer"]
