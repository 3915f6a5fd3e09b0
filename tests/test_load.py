"""The classroom load, short: a few simulated students (bench/load.py: Streamlit's websocket protocol,
no browser each) walk the analysis pages of one server with the shipped models while one real
Chromium session draws them and two sessions fill the training queue. The assertions are about correctness, never about time; the figures
go to artifacts/load-ci.json. The 10/30/60-student measurement is `python -m bench.load`
(docs/reliability.md)."""
import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from bench import load
from streamlit_server import CHROMIUM, ROOT, free_port, streamlit_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]
STUDENTS = 4


def test_students_and_a_browser_share_one_server(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine")
    if not (ROOT / "pretrained" / "shakespeare-lstm").is_dir():
        pytest.skip("the shipped shakespeare-lstm is missing")
    # two more sessions press Start on Train first: with one slot, one trains and one waits its turn
    res = load.measure(STUDENTS, ramp=2.0, think=0.3, browser=True, limit=400, trainers=2,
                       env={"RNNVIZ_MAX_JOBS": "1"}, log_dir=tmp_path)
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "load-ci.json").write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(res, indent=1, default=str))
    # every student ran the whole script: every move applied (the slider drew the value it was sent),
    # no exception, no error alert, no "Page not found"
    assert not res["dropped"], res["dropped"]
    assert res["failed_reruns"] == 0, res["problems"]
    assert res["reruns"] == STUDENTS * len(load.plan(0))
    assert all(res["per_page"][p][2] > 0 for p in load.ANALYSIS)
    assert len(res["queue_seen"]) == 1 and "place 1 of 1 (1 of 1 slots busy" in res["queue_seen"][0]
    # the real browser drew each analysis page, with its charts, while the students worked
    walk = res["browser"]
    assert "error" not in walk, walk
    for path, charts in (("activations", 2), ("sample", 1), ("gradients", 2)):
        page = walk["pages"][path]
        assert page["charts"] >= charts and page["errors"] == 0 and page["not_found"] == 0, (path, page)
    log = (tmp_path / f"load-server-{STUDENTS}.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    loads = re.findall(r"loading checkpoint (\S+)", log)
    assert loads.count(str(ROOT / "pretrained" / "shakespeare-lstm")) == 1, loads  # shared by every session


def test_the_plan_visits_each_analysis_page_and_moves_its_sliders():
    steps = load.plan(3)
    assert [p for p, k, _ in steps if k is None] == ["", "activations", "sample", "gradients", "activations"]
    moved = {(p, k) for p, k, _ in steps if k}
    assert moved == {("activations", "window_start"), ("sample", "temperature"), ("gradients", "grad_len"),
                     ("gradients", "radius")}
    assert load.plan(3) == steps and load.plan(4) != steps  # reproducible, and students differ


def test_a_fresh_servers_first_deep_link_draws_its_page(tmp_path):
    """/activations as the very first request of a fresh server: the page is drawn. Streamlit also sends
    "page not found" (a dialog in the browser) on that first run: a `pages/` folder beside app.py makes
    Streamlit's first run use the folder's pages (activations_page, ...) until app.py's st.navigation
    runs. Renaming the folder removes it (docs/reliability.md); until then this is recorded, not hidden."""
    with streamlit_server(tmp_path / "server.log", {}) as (url, _proc):
        not_found, headings = asyncio.run(load.first_visit(url, "activations"))
        again, headings2 = asyncio.run(load.first_visit(url, "activations"))
    assert headings[:1] == ["Activations"] and headings2[:1] == ["Activations"]
    assert not again  # only the server's very first run is affected
    if (ROOT / "pages").is_dir():
        assert not_found, "the dialog is gone: update docs/reliability.md and this test"
    else:
        assert not not_found


HAPROXY_CFG = """defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend classroom
    bind 127.0.0.1:{port}
    # as a browser does: the websocket carries the affinity cookie the first GET was given, or is refused
    http-request deny if {{ path /_stcore/stream }} !{{ req.cook(RNNVIZ) -m found }}
    default_backend streamlit
backend streamlit
    cookie RNNVIZ insert indirect nocache
    server s1 127.0.0.1:{backend} cookie s1
"""


def test_url_drives_a_running_server_through_a_sticky_proxy(tmp_path):
    """--url: two students, one after the other, through HAProxy in front of a server the test started.
    The driver finds the Streamlit process behind the proxy (its -f file), reads its CPU, and each
    student's websocket carries the proxy's cookie (the proxy refuses one without)."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with streamlit_server(tmp_path / "server.log", {"OMP_NUM_THREADS": "1"}) as (url, proc):
        assert load.server_pids(url) == [proc.pid]  # straight to the server: the process on its port
        port = free_port()
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=port, backend=url.rsplit(":", 1)[1]))
        proxy = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        front = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(front + "/_stcore/health", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            assert load.first_get_cookie(front) == "RNNVIZ=s1"
            out = tmp_path / "load.json"
            code = load.main(["--url", front, "--students", "2", "--one-by-one", "--think", "0.1", "--json", str(out)])
        finally:
            proxy.terminate()
            proxy.wait(10)
    (res,) = json.loads(out.read_text())
    assert code == 0 and not res["dropped"] and res["failed_reruns"] == 0, (res["dropped"], res["problems"])
    assert res["reruns"] == 2 * len(load.plan(0)) and res["students_per_cookie"] == {"RNNVIZ=s1": 2}
    assert list(res["processes"]) == [str(proc.pid)] and res["processes"][str(proc.pid)]["peak_rss_mib"] > 100
    assert res["server_cpu_s"] > 0 and res["cpu_per_rerun_warm"]["gradients/radius"] > 0
