#!/usr/bin/env python3
"""Set up a virtual environment if needed, then run the app or the tests.

    python3 dev.py app     # streamlit run app.py
    python3 dev.py test    # the whole test suite (pytest)
    python3 dev.py screenshots   # remake the README's screenshots in docs/img (bench/screenshots.py)
    python3 dev.py serve --processes N [--port P]   # a class: N app processes behind HAProxy (docs/reliability.md)
"""
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(requirements: str) -> None:
    """Create .venv and install `requirements` once; reinstall only when that file changes."""
    if sys.version_info < (3, 11):
        sys.exit(f"rnnviz needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    files = [ROOT / "requirements.txt", ROOT / requirements]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"Installing {requirements} into {VENV} (first run only) ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-r", str(ROOT / requirements)], check=True)
    stamp.write_text(digest)


def apt_install(package: str, why: str) -> None:
    """Install a Debian package where we are root on Debian/Ubuntu; elsewhere do nothing (the caller says what is missing)."""
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"Installing Debian's {package} for {why} ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False, env=env)


def ensure_chromium() -> None:
    """The browser tests drive Debian's chromium; install it where we are root on Debian/Ubuntu."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    apt_install("chromium", "the browser tests")
    if not shutil.which("chromium"):
        print("No chromium found: the real-browser tests will be skipped.", flush=True)


def ensure_haproxy() -> None:
    """`serve` and its tests put HAProxy in front of the app's processes; install Debian's where we are root."""
    if shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin"):
        return
    apt_install("haproxy", "serve and its tests")
    if not (shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")):
        print("No haproxy found: serve runs one process, and the proxy tests will be skipped "
              "(sudo apt-get install haproxy, or brew install haproxy).", flush=True)


def main(argv: list[str]) -> int:
    cmd, rest = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "app":
        ensure_venv("requirements.txt")
        return subprocess.call([str(PY), "-m", "streamlit", "run", str(ROOT / "app.py"), *rest], cwd=ROOT)
    if cmd == "test":
        ensure_venv("requirements-dev.txt")
        ensure_chromium()
        ensure_haproxy()
        return subprocess.call([str(PY), "-m", "pytest", *(rest or ["-q"])], cwd=ROOT)
    if cmd == "serve":
        ensure_venv("requirements.txt")
        ensure_haproxy()
        argv = [str(PY), "-m", "rnnviz", "serve", *rest]
        if os.name == "posix":  # become the supervisor: Ctrl-C and SIGTERM reach it, not a parent that kills it
            os.chdir(ROOT)
            os.execv(argv[0], argv)
        return subprocess.call(argv, cwd=ROOT)
    if cmd == "screenshots":
        ensure_venv("requirements-dev.txt")  # playwright; pillow, which shrinks the images, comes with streamlit
        ensure_chromium()
        return subprocess.call([str(PY), "-m", "bench.screenshots", *rest], cwd=ROOT)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
