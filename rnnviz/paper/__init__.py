"""Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks", reproduced:
the Table 1 grid (grid), gate saturation by layer, the error onion and training dynamics."""
