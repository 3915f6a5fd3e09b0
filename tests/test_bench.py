"""A smoke run of the benchmark code at tiny sizes: it must run and print every row (no timing asserted)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_smoke_run(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--skip", "quality", "pages",
                          "--json", str(tmp_path / "rows.json")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| figure | measured | target | detail |" in out.stdout
    for name in ("full trace", "naive per-step", "gradient_norms", "trainer throughput", "sampling"):
        assert name in out.stdout
