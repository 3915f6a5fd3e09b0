"""Error types with messages a user can act on."""


class RnnvizError(Exception):
    """Base class: anything rnnviz raises on purpose."""


class TextError(RnnvizError, ValueError):
    """The text is empty, too short, not UTF-8, or otherwise unusable."""


class ConfigError(RnnvizError, ValueError):
    """A size, cell type, temperature or other setting is out of range."""


class CheckpointError(RnnvizError):
    """A checkpoint is missing, corrupt, hostile, or does not match its config."""


class TrainingError(RnnvizError):
    """Training stopped for a reason the user must know (NaN loss, say)."""
