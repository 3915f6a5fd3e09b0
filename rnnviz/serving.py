"""Serving a classroom: N Streamlit processes of the app behind HAProxy, which pins each browser to one
process by a cookie, health-checks them, and passes the websocket through (docs/reliability.md,
"Several processes behind a proxy")."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

CHECKOUT = Path(__file__).resolve().parents[1]
COOKIE = "RNNVIZ"
HEALTH = "/_stcore/health"
HOW_TO_GET_HAPROXY = ("install it with `sudo apt-get install haproxy` (Debian, Ubuntu) or `brew install haproxy` "
                      "(macOS); `python3 dev.py serve` installs it itself when run as root on Debian or Ubuntu")


def cores() -> int:
    """The cores this process may run on (a container's share, where the OS says so)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def server_name(i: int) -> str:
    """The proxy's name for process i (0-based), also the value of its affinity cookie: s1, s2, ..."""
    return f"s{i + 1}"


def haproxy_config(ports: list[int], port: int, *, address: str = "0.0.0.0", stats_socket: str | None = None,
                   check_interval_ms: int = 1000) -> str:
    """An HAProxy configuration: `address:port` in front of one Streamlit process per entry of `ports`
    (on 127.0.0.1), each browser pinned to its process by the RNNVIZ cookie."""
    if not ports:
        raise ConfigError("the proxy needs at least one process to send students to")
    if len(set(ports)) != len(ports) or port in ports:
        raise ConfigError(f"ports must differ: proxy {port}, processes {ports}")
    lines = ["global",
             "    maxconn 4096",
             # no `user`, `chroot` or `daemon`: it runs as the teacher's user, in the foreground, stopped with us
             *([f"    stats socket {stats_socket} mode 600 level user"] if stats_socket else []),
             "",
             "defaults",
             "    mode http",  # HTTP mode sees the cookie; the websocket upgrade passes through it
             "    option http-server-close",
             "    option redispatch",  # a process that is down: its students start over on another
             "    retries 2",
             "    timeout connect 5s",
             "    timeout client 60s",
             "    timeout server 60s",
             "    timeout http-request 60s",  # a 50 MB upload on a slow classroom link
             "    timeout tunnel 1h",  # an open websocket: a student's session, idle between moves
             "    timeout client-fin 5s",
             "",
             "frontend rnnviz",
             f"    bind {address}:{port}",
             "    default_backend streamlit",
             "",
             "backend streamlit",
             # leastconn counts open websockets, so a new student goes to the process with the fewest
             "    balance leastconn",
             # by cookie, not by address: a campus often sends a whole class from one public IP
             f"    cookie {COOKIE} insert indirect nocache httponly attr SameSite=Lax",
             f"    option httpchk GET {HEALTH}",
             "    http-check expect status 200",
             f"    default-server inter {check_interval_ms}ms fall 2 rise 2",
             *[f"    server {server_name(i)} 127.0.0.1:{p} check cookie {server_name(i)}" for i, p in enumerate(ports)],
             ""]
    return "\n".join(lines)


def haproxy_path() -> str | None:
    """The haproxy executable on PATH (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:/opt/homebrew/bin")


def check_config(config: str, haproxy: str) -> None:
    """Raise ConfigError with HAProxy's own words where it rejects `config`."""
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        f.write(config)
    try:
        done = subprocess.run([haproxy, "-c", "-f", f.name], capture_output=True, text=True, timeout=30,
                              check=False)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise ConfigError(f"haproxy rejects the configuration: {(done.stderr or done.stdout).strip()}")


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2) -> bool:
    """Whether a Streamlit server at `url` answers its health check."""
    try:
        with urllib.request.urlopen(url + HEALTH, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def proxy_stats(stats_socket: str) -> dict[str, dict]:
    """Each process as the proxy sees it, {"s1": {"status": "UP", "sessions": 3}, ...}, read from its stats
    socket; sessions are open connections, a student's websocket among them."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(stats_socket)
        s.sendall(b"show stat\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    rows = [line.split(",") for line in b"".join(chunks).decode().splitlines() if line and not line.startswith("#")]
    # CSV columns: 0 proxy, 1 server, 4 current sessions, 17 status ("UP", "DOWN", "UP 1/2" while rising)
    return {r[1]: {"status": r[17].split(" ")[0], "sessions": int(r[4] or 0)}
            for r in rows if len(r) > 17 and r[0] == "streamlit" and r[1] != "BACKEND"}


def proxy_status(stats_socket: str) -> dict[str, str]:
    """Each process's state as the proxy sees it: {"s1": "UP", "s2": "DOWN", ...}."""
    return {name: row["status"] for name, row in proxy_stats(stats_socket).items()}


def _die_with_parent() -> None:
    """In the child before exec: its own process group, and SIGTERM when the supervisor dies, even by kill -9."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One process the supervisor started and keeps alive."""
    name: str
    argv: list[str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.0

    def start(self, env: dict, cwd: Path) -> None:
        # preexec_fn is safe here: the supervisor starts children from its main thread only
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent if os.name == "posix" else None)  # noqa: PLW1509
        self.started = time.monotonic()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def stop_all(children: list[Child], grace: float) -> None:
    """SIGTERM to each child's process group at once, then SIGKILL to any still running after `grace` seconds."""
    running = [c for c in children if c.running()]
    for child in running:
        _signal_group(child.proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child.proc, signal.SIGKILL)
            child.proc.wait(5)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig) if os.name == "posix" else proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class ServeConfig:
    """What `python -m rnnviz serve` runs."""
    processes: int = field(default_factory=lambda: cores())
    port: int = 8501
    address: str = "0.0.0.0"
    app: Path = CHECKOUT / "app.py"
    run_dir: Path | None = None  # logs, the proxy's configuration and stats socket; a temporary folder if None
    start_timeout: float = 120.0
    stop_grace: float = 10.0
    warm: bool = True  # open the first pages once in each process before students come (ui/warmup.py)


class Supervisor:
    """Starts N Streamlit processes and HAProxy in front of them, restarts a process that dies, and stops
    everything it started on stop() (or SIGINT/SIGTERM within run())."""

    def __init__(self, config: ServeConfig, env: dict | None = None, out=None):
        if config.processes < 1:
            raise ConfigError(f"--processes must be at least 1, not {config.processes}")
        if not config.app.is_file():
            raise ConfigError(f"serve runs the app of a checkout, and there is no {config.app}")
        self.config = config
        self.out = out or sys.stdout
        self.haproxy = haproxy_path()
        self._own_run_dir = config.run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="rnnviz-serve-")) if config.run_dir is None else config.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stats_socket = str(self.run_dir / "haproxy.sock")
        # one cookie secret for all: Streamlit's upload check (XSRF) then holds when a student's browser is
        # sent on to another process because its own died
        self.env = {**os.environ, **(env or {}), "STREAMLIT_SERVER_COOKIE_SECRET": secrets.token_hex(32)}
        self.apps: list[Child] = []
        self.proxy: Child | None = None
        self._stopping = False

    @property
    def proxied(self) -> bool:
        return self.haproxy is not None

    @property
    def url(self) -> str:
        host = "localhost" if self.config.address in ("0.0.0.0", "::", "") else self.config.address
        return f"http://{host}:{self.config.port}"

    def say(self, line: str) -> None:
        print(f"rnnviz serve: {line}", file=self.out, flush=True)

    def _streamlit(self, name: str, port: int, address: str) -> Child:
        argv = [sys.executable, "-m", "streamlit", "run", str(self.config.app), "--server.port", str(port),
                "--server.address", address, "--server.headless", "true", "--server.fileWatcherType", "none",
                "--browser.gatherUsageStats", "false"]
        return Child(name, argv, self.run_dir / f"{name}.log", port=port)

    def start(self) -> None:
        """Start every process, wait until each answers, then start the proxy and wait until it does."""
        cfg = self.config
        if self.proxied:
            self.apps = [self._streamlit(server_name(i), free_port(), "127.0.0.1") for i in range(cfg.processes)]
        else:
            self.say(f"HAProxy is not installed, so this serves ONE process on port {cfg.port}, not "
                     f"{cfg.processes}. To serve several: {HOW_TO_GET_HAPROXY}.")
            self.apps = [self._streamlit(server_name(0), cfg.port, cfg.address)]
        cwd = cfg.app.parent  # .streamlit/config.toml is read from the working folder
        for child in self.apps:
            child.start(self.env, cwd)
        for child in self.apps:
            self._wait_healthy(child)
            self.say(f"{child.name}: 127.0.0.1:{child.port} (pid {child.proc.pid}, log {child.log_path})")
        if cfg.warm:
            self.warm(self.apps)
        if self.proxied:
            config = haproxy_config([c.port for c in self.apps], cfg.port, address=cfg.address,
                                    stats_socket=self.stats_socket)
            check_config(config, self.haproxy)
            path = self.run_dir / "haproxy.cfg"
            path.write_text(config)
            self.proxy = Child("haproxy", [self.haproxy, "-db", "-f", str(path)], self.run_dir / "haproxy.log")
            self.proxy.start(self.env, cwd)
            self._wait_proxy()
            count = f"{cfg.processes} processes" if cfg.processes > 1 else "1 process"
            self.say(f"{count} behind HAProxy at {self.url} (a cookie keeps each browser on "
                     f"one process; configuration {path})")
        else:
            self.say(f"one process at {self.url}")
        if cfg.address in ("0.0.0.0", "::", ""):
            self.say(f"students on the network open http://{socket.gethostname()}:{cfg.port} (or this machine's "
                     f"address)")

    def _warmer(self, child: Child) -> subprocess.Popen:
        """`python -m ui.warmup` against one process, its output appended to the process's log."""
        with open(child.log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "ui.warmup", f"http://127.0.0.1:{child.port}"],
                                    cwd=self.config.app.parent, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log)

    def warm(self, children: list[Child]) -> None:
        """Warm every process at once and wait: a fresh process pays for loading the models, the first
        traces and curves, and registering its pages, once, before any student instead of during the
        class's first minute. A failed warm-up costs only that; the process serves anyway."""
        started = time.monotonic()
        warmers = [(c, self._warmer(c)) for c in children]
        for child, w in warmers:
            try:
                code = w.wait(timeout=self.config.start_timeout)
            except subprocess.TimeoutExpired:
                w.kill()
                code = "timed out"
            if code != 0:
                self.say(f"{child.name}: the warm-up did not finish ({code}; see {child.log_path}); serving anyway")
        self.say(f"warmed {len(children)} process{'es' if len(children) > 1 else ''} in "
                 f"{time.monotonic() - started:.0f} s (Home, Activations, Sample, Gradients, Inside the cell)")

    def _wait_healthy(self, child: Child) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        while not healthy(f"http://127.0.0.1:{child.port}"):
            if child.proc.poll() is not None or time.monotonic() > deadline:
                error = ConfigError(f"{child.name} did not start (port {child.port}); its log ends:\n"
                                    f"{_tail(child.log_path)}")  # read before stop() removes a temporary folder
                self.stop()
                raise error
            time.sleep(0.3)

    def _wait_proxy(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.proxy.proc.poll() is not None or time.monotonic() > deadline:
                error = ConfigError(f"haproxy did not start on port {self.config.port} (is the port taken?); "
                                    f"its log ends:\n{_tail(self.proxy.log_path)}")
                self.stop()
                raise error
            try:
                if "UP" in proxy_status(self.stats_socket).values() and healthy(f"http://127.0.0.1:{self.config.port}"):
                    return
            except OSError:
                pass
            time.sleep(0.3)

    def status(self) -> dict[str, str]:
        """Each process's state as the proxy sees it (UP, DOWN, ...); empty without a proxy."""
        return proxy_status(self.stats_socket) if self.proxied else {}

    def watch_once(self) -> None:
        """Restart any process that died (the proxy's health check keeps students off it meanwhile), waiting
        longer each time one dies right after its start."""
        now = time.monotonic()
        for child in [*self.apps, *([self.proxy] if self.proxy else [])]:
            if self._stopping or child.proc is None or child.proc.poll() is None:
                continue
            if now < child.started + child.backoff:
                continue
            lived = now - child.started
            child.backoff = 0.0 if lived > 30 else min(max(1.0, 2 * child.backoff), 30.0)
            code = child.proc.returncode
            child.restarts += 1
            child.start(self.env, self.config.app.parent)
            self.say(f"{child.name} stopped (exit status {code}); restarted it as pid {child.proc.pid} "
                     f"(restart {child.restarts})")
            if self.config.warm and child is not self.proxy:
                threading.Thread(target=self._warm_when_healthy, args=(child,), daemon=True).start()

    def _warm_when_healthy(self, child: Child) -> None:
        """After a restart: warm the process once it answers (students reach it meanwhile, as the proxy decides)."""
        deadline = time.monotonic() + self.config.start_timeout
        while not self._stopping and time.monotonic() < deadline:
            if healthy(f"http://127.0.0.1:{child.port}"):
                self._warmer(child).wait()
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the proxy first (no new requests), then every process; nothing it started is left running."""
        self._stopping = True
        stop_all([self.proxy] if self.proxy else [], self.config.stop_grace)
        stop_all(self.apps, self.config.stop_grace)
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def run(self) -> int:
        """Start, keep the processes alive until SIGINT or SIGTERM, then stop everything."""
        def on_signal(_signum, _frame):
            for s in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the stopping short
                signal.signal(s, signal.SIG_IGN)
            raise KeyboardInterrupt

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            self.say("Ctrl-C stops every process it started")
            while True:
                self.watch_once()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        self.say("stopped")
        return 0


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
