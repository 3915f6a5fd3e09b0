"""rnnviz: see inside character-level LSTMs, GRUs and vanilla RNNs."""
