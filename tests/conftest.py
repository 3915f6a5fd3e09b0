import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def shakespeare_text():
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is not on this machine")
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread, and far faster than on two on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
