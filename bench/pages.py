"""Page timings through Streamlit's AppTest: cold first load, and warm reruns of every page."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLD = """
import time; t = time.perf_counter()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=300); at.run()
assert not at.exception, at.exception
print(time.perf_counter() - t)
"""


def bench_pages(rows: list, quick: bool = False, reruns: int = 7) -> None:
    from streamlit.testing.v1 import AppTest

    import ui

    out = subprocess.run([sys.executable, "-c", COLD], cwd=ROOT, capture_output=True, text=True, check=True)
    cold = float(out.stdout.strip().splitlines()[-1])
    rows.append(("cold first load: a new Python process, imports, model load, Home page", cold, "reported",
                 f"{cold:.1f} s"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    for path, title, _icon, _url in ui.PAGES:
        at.switch_page(path)
        t = time.perf_counter()
        at.run()
        first = time.perf_counter() - t
        assert not at.exception, (title, at.exception)
        times = []
        for _ in range(2 if quick else reruns):
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        rows.append((f"warm rerun of {title} (AppTest, default model, 2,000-char text), median seconds", med,
                     "<= 0.3", f"first visit {first:.2f} s; reruns {', '.join(f'{x:.2f}' for x in times)}"))
