"""Start `streamlit run app.py` on a free localhost port, for the real-browser and load tests."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(log_path: Path, env: dict, start_timeout: float = 90, cwd: Path = ROOT):
    """Yield (url, process) of `streamlit run app.py` in `cwd` (this checkout by default); the server's
    output goes to log_path. Stopped on exit."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"streamlit did not start in {cwd}:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (not Linux?)")


def require_browser() -> None:
    """Skip the calling test where there is no chromium or no playwright."""
    import pytest

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium); the browser test needs it")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def app_server(tmp_path_factory, pretrained: Path):
    """For a module fixture (`yield from`): the app over the models in `pretrained`, with empty models and
    atlas folders of its own; yields (url, open server log)."""
    require_browser()
    env = {"RNNVIZ_PRETRAINED": str(pretrained), "RNNVIZ_MODELS": str(tmp_path_factory.mktemp("models")),
           "RNNVIZ_ATLAS_DIR": str(tmp_path_factory.mktemp("atlas")),
           "OMP_NUM_THREADS": "1"}  # small models: more threads only spin on a shared 2-core box
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    with streamlit_server(log_path, env) as (url, _):
        with open(log_path) as log:
            yield url, log


def no_errors(page, where: str) -> None:
    """No traceback and no error box on the page."""
    assert page.locator('[data-testid="stException"]').count() == 0, f"{where}: exception shown"
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert not errors, f"{where}: error shown: {errors}"
