import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def shakespeare_text():
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is not on this machine")
    return SHAKESPEARE.read_text(encoding="utf-8")
