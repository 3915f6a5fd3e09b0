"""Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks", reproduced:
the Table 1 grid (grid), gate saturation by layer, the error onion and training dynamics."""

# the functions named like their modules (onion, dynamics, reported) are not re-exported here: they would
# hide the modules (`from rnnviz.paper import reported` gets the module)
from .grid import GridSpec, default_spec, load_results, run_grid, shipped_results
from .onion import OnionResult, compare_onions
from .saturation import layer_saturation, saturation_summary
from .shipped import shipped_analyses
