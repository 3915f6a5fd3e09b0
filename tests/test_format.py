"""The numpy-only recipe in docs/format.md runs a saved checkpoint and agrees with rnnviz."""
import re
from pathlib import Path

import numpy as np

from rnnviz import checkpoint
from rnnviz.model import build
from rnnviz.trace import trace

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"


def test_numpy_recipe_from_the_docs_matches_trace(tmp_path, monkeypatch):
    model = build(sorted(set("a quick test\n")), cell="lstm", hidden_size=10, num_layers=2, embed_size=4, seed=0)
    checkpoint.save(model, tmp_path / "my-model")
    code = re.search(r"## Running a checkpoint with numpy alone\n\n```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)
    text = "a test of it\n"
    logits = scope["run"](text)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p, trace(model, text).probs, atol=1e-6)
