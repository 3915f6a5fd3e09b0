"""Serving a classroom (rnnviz.serving): HAProxy's configuration, checked by reading it and by haproxy
itself; then, with real haproxy and two real Streamlit processes started by `python -m rnnviz serve`, a real
browser works through the proxy, and killing one process loses no other student's session or saved model."""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from rnnviz import checkpoint, serving
from rnnviz.corpora import load_corpus
from rnnviz.errors import ConfigError
from rnnviz.model import build
from rnnviz.vocab import Vocab
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, no_errors, require_browser

HAPROXY = serving.haproxy_path()
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (python3 dev.py test installs "
                                                           "Debian's when root; or apt-get install haproxy)")


def _sections(config: str) -> dict[str, list[str]]:
    """HAProxy's configuration as {section header: its directives}."""
    sections, current = {}, None
    for line in config.splitlines():
        if line and not line[0].isspace():
            current = line.strip()
            sections[current] = []
        elif line.strip():
            sections[current].append(" ".join(line.split()))
    return sections


def test_config_pins_each_browser_by_cookie_and_checks_health():
    config = _sections(serving.haproxy_config([9101, 9102, 9103], 8600, stats_socket="/run/x.sock"))
    backend = config["backend streamlit"]
    assert "mode http" in config["defaults"]  # the cookie is read in HTTP mode; websockets upgrade through it
    assert any(d.startswith("timeout tunnel ") for d in config["defaults"])
    assert "bind 0.0.0.0:8600" in config["frontend rnnviz"]
    cookie = next(d for d in backend if d.startswith("cookie "))
    assert cookie.split()[1:5] == ["RNNVIZ", "insert", "indirect", "nocache"]
    assert "option httpchk GET /_stcore/health" in backend
    servers = [d.split() for d in backend if d.startswith("server ")]
    assert [(s[1], s[2], s[-1]) for s in servers] == [("s1", "127.0.0.1:9101", "s1"), ("s2", "127.0.0.1:9102", "s2"),
                                                      ("s3", "127.0.0.1:9103", "s3")]
    assert all("check" in s and s[-2] == "cookie" for s in servers)


@pytest.mark.parametrize("ports, port", [([], 8600), ([9101, 9101], 8600), ([9101, 8600], 8600)])
def test_config_refuses_ports_that_cannot_work(ports, port):
    with pytest.raises(ConfigError):
        serving.haproxy_config(ports, port)


@needs_haproxy
def test_haproxy_accepts_the_config_and_rejects_a_broken_one():
    config = serving.haproxy_config([9101, 9102], 8600, stats_socket="/tmp/rnnviz-test.sock")
    serving.check_config(config, HAPROXY)
    with pytest.raises(ConfigError, match="haproxy rejects"):
        serving.check_config(config.replace("balance leastconn", "balance no-such-algorithm"), HAPROXY)


def test_without_haproxy_it_serves_one_process_and_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    """Nothing is launched: the processes' start and health check are replaced, the decision is real."""
    monkeypatch.setattr(serving, "haproxy_path", lambda: None)
    started = []
    fake = type("Proc", (), {"pid": 1, "poll": lambda self: None})()
    monkeypatch.setattr(serving.Child, "start", lambda child, env, cwd: (started.append(child),
                                                                         setattr(child, "proc", fake)))
    supervisor = serving.Supervisor(serving.ServeConfig(processes=4, port=8765, run_dir=tmp_path))
    monkeypatch.setattr(supervisor, "_wait_healthy", lambda child: None)
    supervisor.start()
    said = capsys.readouterr().out
    assert "ONE process on port 8765, not 4" in said and "apt-get install haproxy" in said and "brew install" in said
    assert len(started) == 1 and started[0].argv[started[0].argv.index("--server.port") + 1] == "8765"
    assert supervisor.proxy is None


# --- two real processes behind real haproxy --------------------------------------------------------------

@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """`python -m rnnviz serve --processes 2` over two tiny shipped models; yields a dict with the url, the
    models folder, the logs folder and the supervisor's output so far (read on as it goes)."""
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (python3 dev.py test installs Debian's when root)")
    pre = tmp_path_factory.mktemp("pretrained-serve")
    vocab = Vocab.from_text(load_corpus("shakespeare", max_chars=50_000).text)
    meta = {"corpus": {"name": "shakespeare"}, "val_loss": 3.5}
    checkpoint.save(build(vocab, cell="lstm", hidden_size=16, num_layers=1, seed=0), pre / "shakespeare-lstm", meta=meta)
    checkpoint.save(build(vocab, cell="gru", hidden_size=12, num_layers=1, seed=1), pre / "shakespeare-gru", meta=meta)
    models, logs = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("serve-logs")
    env = {**os.environ, "RNNVIZ_PRETRAINED": str(pre), "RNNVIZ_MODELS": str(models),
           "RNNVIZ_ATLAS_DIR": str(tmp_path_factory.mktemp("atlas")), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    port = free_port()
    out_path = logs / "supervisor.out"
    out = open(out_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "rnnviz", "serve", "--processes", "2", "--port", str(port),
                             "--address", "127.0.0.1", "--logs", str(logs / "run")],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    room = {"url": f"http://127.0.0.1:{port}", "models": models, "run": logs / "run", "proc": proc,
            "out": out_path, "vocab": vocab}
    try:
        _wait_for(lambda: "behind HAProxy at" in out_path.read_text() or proc.poll() is not None, 120)
        assert proc.poll() is None, out_path.read_text()
        yield room
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        out.close()


def _wait_for(done, timeout: float, what: str = "") -> None:
    deadline = time.time() + timeout
    while not done():
        assert time.time() < deadline, f"timed out waiting for {what or done}"
        time.sleep(0.3)


def _pids(room) -> dict[str, int]:
    """The latest pid of each process, as the supervisor printed it (started, then each restart)."""
    pids = {}
    for name, pid in re.findall(r"(s\d+): 127\.0\.0\.1:\d+ \(pid (\d+)", room["out"].read_text()):
        pids[name] = int(pid)
    for name, pid in re.findall(r"(s\d+) stopped .*? restarted it as pid (\d+)", room["out"].read_text()):
        pids[name] = int(pid)
    return pids


@contextmanager
def _shot_on_failure():
    """Pages given to `shot` are photographed into /tmp/shots/serving/ when the block fails."""
    pages = []

    def shot(student):
        pages.append(student[0])
        return student

    try:
        yield shot
    except BaseException:
        Path("/tmp/shots/serving").mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(pages):
            page.screenshot(path=f"/tmp/shots/serving/failure-{i}.png", full_page=True)
        raise


@pytest.fixture(scope="module")
def browser(classroom):
    """One headless Chromium for the module; each student is a context of its own (its own cookies)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _student(browser, url: str):
    """A new browser context (its own cookies: a student) on the app's home page, settled; and its process."""
    from test_browser import _settle

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url, wait_until="domcontentloaded")
    _settle(page, 0)
    pinned = {c["name"]: c["value"] for c in page.context.cookies()}.get("RNNVIZ")
    assert pinned in ("s1", "s2"), page.context.cookies()
    return page, pinned


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
@pytest.mark.slow
def test_each_process_is_warmed_before_students_so_a_first_deep_link_finds_its_page(classroom):
    """serve opens the first pages once in each process (ui/warmup.py): a student's first request, a deep
    link straight to Gradients, is drawn with no "page not found" (which a fresh process sends:
    tests/test_load.py::test_a_fresh_servers_first_deep_link_draws_its_page)."""
    import asyncio

    from bench import load

    out = classroom["out"].read_text()
    assert "warmed 2 processes" in out, out
    ports = re.findall(r"s\d+: 127\.0\.0\.1:(\d+) \(pid", out)[:2]
    assert len(ports) == 2
    for port in ports:
        not_found, headings = asyncio.run(load.first_visit(f"http://127.0.0.1:{port}", "gradients"))
        assert not not_found and "Gradients through time" in headings, (port, headings)

@pytest.mark.browser
def test_upload_study_and_train_through_the_proxy(classroom, browser, tmp_path):
    """Issue 31: through the proxy, the upload reaches the process that owns the session (Streamlit refuses
    an upload for a session it does not hold), two pages study it, and a small training runs and saves."""
    from test_browser import _model_shown, _nav, _settle
    from test_upload_browser import _upload

    mine = checkpoint.save(build(classroom["vocab"], cell="lstm", hidden_size=8, num_layers=1, seed=2), tmp_path / "mine")
    (tmp_path / "mine.zip").write_bytes(checkpoint.to_zip(mine))
    with _shot_on_failure() as shot:
        page, pinned = shot(_student(browser, classroom["url"]))
        _upload(page, tmp_path / "mine.zip")
        page.get_by_text("mine.zip: loaded as").wait_for(timeout=90_000)
        _settle(page, 0)
        assert _model_shown(page) == "mine (uploaded)"
        for title, charts in (("Activations", 2), ("Gates", 3)):
            _nav(page, title, charts)
            assert _model_shown(page) == "mine (uploaded)", title
            no_errors(page, title)
        _nav(page, "Train")
        page.get_by_text("steps", exact=True).click()
        steps = page.get_by_role("spinbutton", name="Steps", exact=True)
        steps.fill("20")
        steps.press("Enter")
        page.get_by_role("button", name=re.compile(r"Start$")).click()
        page.wait_for_function("document.body.innerText.includes('Finished runs')", timeout=120_000)
        _settle(page, 1)
        page.get_by_role("button", name=re.compile("Save to the models folder")).first.click()
        page.get_by_text("Saved to").wait_for(timeout=30_000)
        no_errors(page, "Train")
        # the whole visit stayed on one process: the cookie never changed, and only that process ran it
        assert {c["name"]: c["value"] for c in page.context.cookies()}["RNNVIZ"] == pinned
        page.context.close()
    assert any(p.is_dir() for p in classroom["models"].iterdir()), "the trained model was not saved"


@pytest.mark.slow
@pytest.mark.browser
def test_killing_one_process_loses_no_other_session_and_no_saved_model(classroom, browser):
    """Two students on different processes; kill -9 the first one's: the second's page reruns with its
    state, the saved models are byte-identical, and once the supervisor has restarted the dead process
    and the proxy sees it healthy, a new student is sent to it."""
    from test_browser import _model_shown, _nav

    checkpoint.save(build(classroom["vocab"], cell="lstm", hidden_size=8, num_layers=1, seed=3),
                    classroom["models"] / "kept")
    before = _digests(classroom["models"])
    with _shot_on_failure() as shot:
        a, a_on = shot(_student(browser, classroom["url"]))
        b, b_on = shot(_student(browser, classroom["url"]))  # leastconn: a's websocket is open, so b goes elsewhere
        assert a_on != b_on, "both students were sent to the same process"
        b.get_by_role("combobox", name="Model under study").click()
        b.get_by_role("option", name="shakespeare-gru (shipped)").click()
        _nav(b, "Gates", 3)
        assert _model_shown(b) == "shakespeare-gru (shipped)"

        os.kill(_pids(classroom)[a_on], signal.SIGKILL)
        _nav(b, "Activations", 2)  # a rerun on b's process, in b's session
        assert _model_shown(b) == "shakespeare-gru (shipped)", "b's session lost its state"
        no_errors(b, "Activations after the other process died")
        assert {c["name"]: c["value"] for c in b.context.cookies()}["RNNVIZ"] == b_on

        _wait_for(lambda: f"{a_on} stopped" in classroom["out"].read_text(), 30, "the supervisor's restart")
        sock = str(classroom["run"] / "haproxy.sock")
        _wait_for(lambda: serving.proxy_status(sock).get(a_on) == "UP", 90, f"{a_on} back in rotation")
        # the first student's page came back by itself, as a new session (on whichever process is up)
        _nav(a, "Gates", 3)
        no_errors(a, "the first student's page after its process died")
        a.context.close()  # a's browser had moved to b's process; now the restarted one has the fewest sessions
        _wait_for(lambda: serving.proxy_stats(sock)[a_on]["sessions"] < serving.proxy_stats(sock)[b_on]["sessions"],
                  30, "a's connections to close")
        with urllib.request.urlopen(classroom["url"] + "/", timeout=30) as r:  # a new student's first request
            assert re.search(rf"\bRNNVIZ={a_on}\b", r.headers.get("Set-Cookie", "")), r.headers.get("Set-Cookie")
        with urllib.request.urlopen(urllib.request.Request(
                classroom["url"] + serving.HEALTH, headers={"Cookie": f"RNNVIZ={a_on}"}), timeout=30) as r:
            assert r.status == 200 and r.read() == b"ok"  # and the restarted process answers through the proxy
        b.context.close()
    assert _digests(classroom["models"]) == before


@pytest.mark.slow
def test_sigterm_stops_everything_it_started(classroom):
    """Last: the supervisor stops on SIGTERM with status 0, and no process it started is left."""
    pids = [*_pids(classroom).values(), *[int(p) for p in re.findall(
        r"^\s*(\d+)", subprocess.run(["pgrep", "-f", str(classroom["run"] / "haproxy.cfg")],
                                     capture_output=True, text=True, check=False).stdout, re.MULTILINE)]]
    assert len(pids) >= 3  # two processes and the proxy
    classroom["proc"].send_signal(signal.SIGTERM)
    assert classroom["proc"].wait(60) == 0
    assert "rnnviz serve: stopped" in classroom["out"].read_text()
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text()]
    assert not alive, f"left running: {alive}"
