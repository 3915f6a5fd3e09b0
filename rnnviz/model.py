"""CharRNN: embedding -> fused nn.LSTM / nn.GRU / nn.RNN -> linear head."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import ConfigError
from .vocab import Vocab

CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
MAX_HIDDEN, MAX_LAYERS = 1024, 3


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network (the weights live elsewhere)."""

    vocab: list[str]
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    embed_size: int = 64
    dropout: float = 0.0

    def validate(self) -> "ModelConfig":
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name, lo, hi in (("hidden_size", 1, MAX_HIDDEN), ("num_layers", 1, MAX_LAYERS),
                             ("embed_size", 1, 4096)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be a whole number from {lo} to {hi}, not {v!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if not isinstance(self.vocab, list) or len(self.vocab) < 2:
            raise ConfigError("the vocabulary must list at least two symbols")
        Vocab(self.vocab)  # raises on duplicates or multi-character entries
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA if available, else MPS, else CPU; `prefer` ('cpu', 'cuda', 'cuda:1', 'mps') overrides."""
    if prefer and prefer != "auto":
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("CUDA was asked for, but no CUDA GPU is available here")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("MPS was asked for, but it is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | str) -> str:
    """'CPU (2 threads)' or the GPU's name, for a device indicator."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


class CharRNN(nn.Module):
    """A character-level language model over one of three recurrent cells."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        self.vocab = Vocab(config.vocab)
        V, E, H, L = len(self.vocab), config.embed_size, config.hidden_size, config.num_layers
        self.embed = nn.Embedding(V, E)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.cell]
        self.rnn = rnn_cls(E, H, L, batch_first=True, dropout=config.dropout if L > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(H, V)

    @property
    def cell(self) -> str:
        return self.config.cell

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch: int = 1):
        """Zero state: (h, c) for an LSTM, h otherwise; each (L, B, H)."""
        L, H = self.config.num_layers, self.config.hidden_size
        h = torch.zeros(L, batch, H, device=self.device)
        return (h, h.clone()) if self.cell == "lstm" else h

    def forward(self, ids: torch.Tensor, state=None):
        """ids (B, T) -> logits (B, T, V), final state."""
        x = self.embed(ids)  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.head(self.drop(out)), state

    def layer_weights(self, layer: int) -> dict[str, torch.Tensor]:
        """w_ih (G*H, in), w_hh (G*H, H), b_ih, b_hh (G*H,) of one layer; G = 4, 3 or 1."""
        r = self.rnn
        return {k: getattr(r, f"{k}_l{layer}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def build(vocab: Vocab | list[str], cell: str = "lstm", hidden_size: int = 256, num_layers: int = 2,
          embed_size: int = 64, dropout: float = 0.0, seed: int | None = None) -> CharRNN:
    """A freshly initialised model; `seed` makes the initial weights reproducible."""
    chars = vocab.chars if isinstance(vocab, Vocab) else list(vocab)
    config = ModelConfig(vocab=Vocab(chars).chars, cell=cell, hidden_size=hidden_size,
                         num_layers=num_layers, embed_size=embed_size, dropout=dropout)
    if seed is None:
        return CharRNN(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CharRNN(config)
