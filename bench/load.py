"""A classroom without browsers: simulated students speak Streamlit's own websocket protocol to one server.

Each student is one websocket to /_stcore/stream, as a browser tab opens: it sends BackMsg protobufs
(rerun_script with the page and the widget values, as the browser does) and reads the ForwardMsg
stream until the run's script_finished. So the server does all of its work per student (script run,
charts built and serialised, messages sent) while no renderer competes with it for the cores.

The classroom script of one student: open the app (Home), go to Activations and move the window
slider, to Sample and move the temperature, to Gradients and move the sequence length and the
spectral radius, then back to Activations. Students arrive spread over --ramp seconds and pause
--think seconds (jittered) between moves, as people do. One rerun's latency is the time from the
BackMsg to its script_finished, measured at the client.

    python -m bench.load --students 10 30 60          # a fresh server per size; a table at the end
    python -m bench.load --students 30 --browser      # plus one real Chromium session during the run
    python -m bench.load --students 30 --trainers 4   # plus 4 sessions that press Start on Train first
    python -m bench.load --students 30 --same         # every student moves to the same values
    python -m bench.load --students 4 --one-by-one --think 0.3   # the server's CPU per rerun, cold and warm
    python -m bench.load --students 30 --url http://127.0.0.1:8501   # a server already running (the proxy)

A trainer opens Train, presses Start (the default run: an LSTM on Shakespeare for 60 s) and keeps its
session open: with the queue's default of one job at a time on 2 cores, one trains and the others wait,
so the students' latencies are those of a server whose training queue is full.

With --one-by-one the students walk in turn, each alone on the server, so the server's CPU time
around each rerun is that rerun's: the first student meets cold caches (models loaded, default views
computed), the later ones what every later student of a class costs.

Server CPU comes from /proc/<pid>/stat (user + system seconds over the run, and that divided by the
wall time: 2.0 means both cores busy); peak RSS is the server's VmHWM.

With --url the driver starts no server: it drives the one at URL (one `streamlit run`, or HAProxy in
front of several) and reads CPU and peak RSS of every Streamlit process behind it on this machine
(--pids, or found: the process listening on URL's port, or for HAProxy the processes on the ports its
`-f` configuration names), summed and per process. Every student first GETs / as a browser does and
sends the cookies it was given (the proxy's affinity cookie) on its websocket handshake, so each
student stays on one process. Several --students sizes then share that server and its warm caches.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the server launcher the browser tests use

from streamlit_server import CHROMIUM, CHROMIUM_ARGS, peak_rss_mib, streamlit_server  # noqa: E402

# (page url path, widget key, values to set in turn); "" is Home. Values differ per student (see plan()).
ANALYSIS = ("activations", "sample", "gradients")


def plan(i: int) -> list[tuple[str, str | None, float | None]]:
    """One student's moves: (page, widget key or None for a page switch, value)."""
    r = random.Random(i)
    steps = [("", None, None), ("activations", None, None)]
    steps += [("activations", "window_start", float(r.randrange(0, 1900))) for _ in range(3)]
    steps += [("sample", None, None)]
    steps += [("sample", "temperature", round(r.choice(range(1, 40)) * 0.05, 2)) for _ in range(3)]
    steps += [("gradients", None, None), ("gradients", "grad_len", float(r.randrange(20, 200))),
              ("gradients", "radius", round(r.choice(range(10, 31)) * 0.05, 2))]
    steps += [("activations", None, None)]
    return steps


TRAINER = [("", None, None), ("train", None, None), ("train", "tr_start", "click")]


@dataclass
class Rerun:
    student: int
    page: str
    what: str  # "open" (a page switch or the first visit) or the widget moved
    seconds: float
    ok: bool
    problem: str = ""
    server_cpu: float = float("nan")  # the server's CPU seconds over this rerun (meaningful alone only)


@dataclass
class Student:
    """One websocket session: the pages' script hashes, the widgets' ids, and the values it has set."""

    i: int
    url: str
    pages: dict[str, str] = field(default_factory=dict)  # url path -> page_script_hash
    widgets: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (widget id, fragment id)
    values: dict[str, object] = field(default_factory=dict)  # widget id -> WidgetState of this page
    shown: dict[str, list] = field(default_factory=dict)  # slider key -> the value the last run drew
    alerts: list[str] = field(default_factory=list)  # the info/warning texts of the last run
    page: str = ""
    progress: bool = False
    pids: list[int] = field(default_factory=list)  # the server's processes, to read CPU time around each rerun
    cookie: str = ""  # what the server set on the first GET (a proxy's affinity cookie), sent on the websocket

    async def run(self, think: float, results: list, stop_at: float, steps=None, hold=None) -> None:
        """Walk `steps` (the classroom plan by default); then keep the session open until `hold` is set."""
        import websockets

        self.cookie = await asyncio.to_thread(first_get_cookie, self.url)
        ws_url = self.url.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=120,
                                      ping_interval=None,
                                      additional_headers={"Cookie": self.cookie} if self.cookie else None) as ws:
            r = random.Random(self.i)
            for page, key, value in steps or plan(self.i):
                if time.time() > stop_at:
                    break
                c0 = _cpu_seconds(self.pids) if self.pids else float("nan")
                t, ok, problem = await self.rerun(ws, page, key, value)
                cpu = _cpu_seconds(self.pids) - c0 if self.pids else float("nan")
                results.append(Rerun(self.i, page or "home", key or "open", t, ok, problem, cpu))
                await asyncio.sleep(think * r.uniform(0.5, 1.5))
            if hold is not None:
                await hold.wait()

    async def rerun(self, ws, page: str, key: str | None, value) -> tuple[float, bool, str]:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        msg = BackMsg()
        cs = msg.rerun_script
        if page != self.page or not self.pages:  # a page switch: the browser sends the page, no widgets
            self.values = {}
            if self.pages:
                cs.page_script_hash = self.pages[page]
            else:
                cs.page_name = page
            self.page = page
        fragment = ""
        if key is not None:
            if key not in self.widgets:
                return 0.0, False, f"no widget {key!r} on {page}"
            wid, fragment = self.widgets[key]
            ws_ = WidgetState(id=wid)
            if value == "click":  # a button: a trigger, sent once
                ws_.trigger_value = True
            else:
                ws_.double_array_value.data.append(float(value))
                self.values[wid] = ws_
            cs.page_script_hash = self.pages.get(page, "")
            if fragment:  # a widget inside a fragment reruns only its fragment, as in the browser
                cs.fragment_id = fragment
        cs.widget_states.widgets.extend(list(self.values.values()) + ([ws_] if value == "click" else []))
        t0 = time.perf_counter()
        await ws.send(msg.SerializeToString())
        problem = await self.read_until_finished(ws)
        took = time.perf_counter() - t0
        if value == "click":
            if not problem and not any("Waiting in the queue" in a or "training" in a.lower() for a in self.alerts) \
                    and not self.progress:
                problem = f"{key} pressed: neither a progress bar nor a place in the queue shown"
        elif key is not None and not problem and self.shown.get(key) != [float(value)]:
            problem = f"{key} shows {self.shown.get(key)} after it was set to {value}"  # the move was not applied
        return took, not problem, problem

    async def read_until_finished(self, ws, timeout: float = 300) -> str:
        """Read ForwardMsgs to the end of the run; '' if it drew without an error, else what went wrong."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        problems = []
        self.alerts, self.progress = [], False
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            fm = ForwardMsg()
            fm.ParseFromString(raw)
            kind = fm.WhichOneof("type")
            if kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in fm.navigation.app_pages}
                self.pages[""] = next((p.page_script_hash for p in fm.navigation.app_pages if p.is_default), "")
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                el = fm.delta.new_element
                etype = el.WhichOneof("type")
                if etype == "exception":
                    problems.append(f"exception: {el.exception.message[:200]}")
                elif etype == "alert" and el.alert.format == el.alert.ERROR:
                    problems.append(f"error: {el.alert.body[:200]}")
                elif etype == "alert":
                    self.alerts.append(el.alert.body)
                elif etype == "progress":
                    self.progress = True
                else:
                    wid = getattr(getattr(el, etype), "id", "") if etype else ""
                    if isinstance(wid, str) and wid.startswith("$$ID-"):
                        key = wid.rsplit("-", 1)[-1]
                        self.widgets[key] = (wid, fm.delta.fragment_id)
                        if etype == "slider":
                            self.shown[key] = [round(v, 6) for v in el.slider.value]
            elif kind == "page_not_found":
                problems.append("page not found")
            elif kind == "script_finished":
                return "; ".join(problems)


async def first_visit(url: str, page: str) -> tuple[bool, list[str]]:
    """Open `page` as a browser's first request does (its URL path, no script hash): whether the server
    said "page not found", and the headings the run drew."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    not_found, headings = False, []
    async with websockets.connect(url.replace("http://", "ws://") + "/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None, open_timeout=120, ping_interval=None) as ws:
        msg = BackMsg()
        msg.rerun_script.page_name = page
        await ws.send(msg.SerializeToString())
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(ws.recv(), 300))
            kind = fm.WhichOneof("type")
            not_found |= kind == "page_not_found"
            if kind == "delta" and fm.delta.new_element.WhichOneof("type") == "heading":
                headings.append(fm.delta.new_element.heading.body)
            if kind == "script_finished":
                return not_found, headings


def _cpu_table(results: list) -> dict:
    """page/control -> the median server CPU seconds of those reruns that have one."""
    return {f"{p}/{w}": statistics.median(c) for p, w in sorted({(r.page, r.what) for r in results})
            if (c := [r.server_cpu for r in results if r.page == p and r.what == w and r.server_cpu == r.server_cpu])}


def first_get_cookie(url: str) -> str:
    """GET / as a browser's first request does; the Cookie header a browser would send back (name=value of
    each Set-Cookie: through HAProxy, the affinity cookie that pins this session to one process)."""
    with urllib.request.urlopen(url.rstrip("/") + "/", timeout=120) as r:
        return "; ".join(c.split(";", 1)[0].strip() for c in r.headers.get_all("Set-Cookie") or [])


def _process_cpu(pid: int) -> float:
    """A process's user + system CPU seconds so far; nan once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cpu_seconds(pids) -> float:
    """The CPU seconds of a process, or summed over a list of them."""
    return sum(_process_cpu(p) for p in ([pids] if isinstance(pids, int) else pids))


def _peak_rss(pid: int) -> float:
    try:
        return peak_rss_mib(pid)
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def listening_pids(port: int) -> list[int]:
    """The processes (of those this user may inspect) with a TCP socket listening on `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:  # another user's process, or gone meanwhile
            continue
    return sorted(found)


def server_pids(url: str) -> list[int]:
    """The Streamlit processes serving `url` on this machine: the one listening on its port, or every
    process behind the HAProxy listening there (the `server ... host:port` lines of its -f file); failing
    both, every `streamlit run ... app.py` process."""
    found = []
    for pid in listening_pids(urlparse(url).port or 80):
        argv = _cmdline(pid)
        if argv and Path(argv[0]).name.startswith("haproxy") and "-f" in argv[:-1]:
            try:
                config = Path(argv[argv.index("-f") + 1]).read_text()
            except OSError:
                continue
            for port in re.findall(r"^\s*server\s+\S+\s+\S*:(\d+)\b", config, re.MULTILINE):
                found += listening_pids(int(port))
        elif any("streamlit" in a for a in argv):
            found.append(pid)
    if not found:
        found = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                 if (argv := _cmdline(int(p.name))) and any("streamlit" in a for a in argv)
                 and any(a.endswith("app.py") for a in argv)]
    return sorted(set(found))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))] if xs else float("nan")


def browser_walk(url: str, out: dict) -> None:
    """One real Chromium session during the load: every analysis page draws its charts; timed."""
    from playwright.sync_api import sync_playwright

    t0 = time.time()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(url, timeout=240_000)
            page.locator("h1").first.wait_for(timeout=240_000)
            drawn = {}
            for path, charts in (("activations", 2), ("sample", 1), ("gradients", 2)):
                t = time.time()
                page.goto(f"{url}/{path}", timeout=240_000)
                page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                                       timeout=240_000)
                page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=240_000)
                errors = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count()
                drawn[path] = {"seconds": round(time.time() - t, 2), "charts": page.locator(".js-plotly-plot").count(),
                               "errors": errors, "not_found": page.get_by_text("Page not found").count()}
                shot = ROOT / "artifacts" / f"load-browser-{path}.png"
                shot.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(shot))
            out["pages"] = drawn
            browser.close()
    except Exception as e:  # noqa: BLE001 - reported in the result, the run goes on
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.time() - t0, 1)


async def classroom(url: str, students: int, ramp: float, think: float, limit: float,
                    trainers: int = 0, pids: list[int] | None = None, same: bool = False,
                    one_by_one: bool = False, cookies: Counter | None = None) -> tuple[list, list, list]:
    results: list[Rerun] = []
    cookies = Counter() if cookies is None else cookies  # the cookie each student was given: its process
    failures: list[str] = []
    queue_seen: list[str] = []
    stop_at = time.time() + limit
    done = asyncio.Event()

    async def trainer(i):
        st = Student(1000 + i, url)
        try:
            await st.run(0.2, results, stop_at, steps=TRAINER, hold=done)
            queue_seen.extend(a for a in st.alerts if "Waiting in the queue" in a)
        except Exception as e:  # noqa: BLE001
            failures.append(f"trainer {i}: {type(e).__name__}: {e}")

    async def one(i):
        await asyncio.sleep(ramp * i / max(1, students))
        st = Student(i, url, pids=pids or [])
        try:
            await st.run(think, results, stop_at, steps=plan(0) if same else None)
        except Exception as e:  # noqa: BLE001 - a dropped student is a finding, not a crash of the driver
            failures.append(f"student {i}: {type(e).__name__}: {e}")
        cookies[st.cookie] += 1

    tasks = [asyncio.create_task(trainer(i)) for i in range(trainers)]
    if trainers:
        await asyncio.sleep(5)  # the trainings start (or queue) before the students arrive
    if one_by_one:  # each alone: the server's CPU around a rerun is that rerun's
        for i in range(students):
            st = Student(i, url, pids=pids or [])
            await st.run(think, results, stop_at, steps=plan(0) if same else None)
            cookies[st.cookie] += 1
    else:
        await asyncio.gather(*(one(i) for i in range(students)))
    done.set()
    await asyncio.gather(*tasks)
    return results, failures, queue_seen


def measure(students: int, ramp: float = 10.0, think: float = 5.0, browser: bool = False, limit: float = 900,
            env: dict | None = None, log_dir: Path | None = None, trainers: int = 0, same: bool = False,
            one_by_one: bool = False, url: str | None = None, pids: list[int] | None = None) -> dict:
    """Run the classroom against `url` (its Streamlit processes: `pids`, or found), or else against a fresh
    server started for it and stopped after; the figures as a dict."""
    run = {"ramp": ramp, "think": think, "browser": browser, "limit": limit, "trainers": trainers, "same": same,
           "one_by_one": one_by_one}
    if url is not None:
        res = _drive(url, students, pids if pids else server_pids(url), **run)
        res["tracebacks_in_log"] = None  # the server's log is not ours to read
        return res
    log_dir = log_dir or ROOT / "artifacts"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / f"load-server-{students}.log"
    with streamlit_server(log_path, env or {}) as (started, proc):
        res = _drive(started, students, [proc.pid], **run)
    res["tracebacks_in_log"] = log_path.read_text(errors="replace").count("Traceback")
    return res


def _drive(url: str, students: int, pids: list[int], ramp: float, think: float, browser: bool, limit: float,
           trainers: int, same: bool, one_by_one: bool) -> dict:
    """The classroom against a running server whose Streamlit processes are `pids` (read for CPU and RSS)."""
    cpu0 = {p: _process_cpu(p) for p in pids}
    t0, me0 = time.time(), time.process_time()
    walk: dict = {}
    th = None
    if browser:
        th = threading.Thread(target=browser_walk, args=(url, walk), daemon=True)
        th.start()
    cookies: Counter = Counter()
    alone = (students == 1 or one_by_one) and not trainers  # only then is the CPU around a rerun that rerun's
    results, failures, queue_seen = asyncio.run(classroom(url, students, ramp, think, limit, trainers,
                                                          pids=pids if alone else None, same=same,
                                                          one_by_one=one_by_one, cookies=cookies))
    if th is not None:
        th.join(300)
    wall = time.time() - t0
    cpu_each = {p: _process_cpu(p) - cpu0[p] for p in pids}
    rss_each = {p: _peak_rss(p) for p in pids}
    cpu = sum(cpu_each.values())
    driver_cpu = time.process_time() - me0
    results_all = results
    results = [r for r in results if r.student < 1000]  # the students' reruns; the trainers' apart
    lat = [r.seconds for r in results if r.ok]
    ana = [r.seconds for r in results if r.ok and r.page in ANALYSIS]
    moves = [r.seconds for r in results if r.ok and r.page in ANALYSIS and r.what != "open"]
    by_page = {p: [r.seconds for r in results if r.ok and r.page == p] for p in ("home",) + ANALYSIS}
    return {
        "students": students, "trainers": trainers, "same_values": same, "url": url, "reruns": len(results),
        "failed_reruns": sum(not r.ok for r in results_all),
        "problems": sorted({r.problem for r in results_all if not r.ok})[:10], "dropped": failures[:10],
        "queue_seen": queue_seen[:trainers],
        "p50": pct(lat, 0.5), "p95": pct(lat, 0.95),
        "analysis_p50": pct(ana, 0.5), "analysis_p95": pct(ana, 0.95), "analysis_max": max(ana, default=float("nan")),
        "moves_p50": pct(moves, 0.5), "moves_p95": pct(moves, 0.95),
        "per_page": {p: (pct(v, 0.5), pct(v, 0.95), len(v)) for p, v in by_page.items()},
        # a student alone (one, or --one-by-one): the server's CPU seconds per rerun, by page and control
        # (median), for the first student (cold caches) and for the others (warm)
        "cpu_per_rerun": _cpu_table([r for r in results if r.student == 0]),
        "cpu_per_rerun_warm": _cpu_table([r for r in results if r.student > 0]),
        "wall_s": wall, "server_cpu_s": cpu, "server_cores_busy": cpu / wall if wall else float("nan"),
        "peak_rss_mib": sum(rss_each.values()), "driver_cpu_s": driver_cpu,
        # per Streamlit process (pid): CPU seconds over the run and peak RSS (MiB); nan for one that died
        "processes": {p: {"cpu_s": cpu_each[p], "peak_rss_mib": rss_each[p]} for p in pids},
        # students per cookie given on their first GET: behind a proxy, how the class spread over processes
        "students_per_cookie": dict(cookies),
        "browser": walk, "load_after": os.getloadavg(),  # the machine's 1/5/15-minute load averages
    }


def _each_rss(row: dict) -> str:
    """' (a + b)': the peak RSS of each process, where there are several."""
    each = [f"{p['peak_rss_mib']:,.0f}" for p in row["processes"].values()]
    return f" ({' + '.join(each)})" if len(each) > 1 else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--students", type=int, nargs="+", default=[10, 30, 60])
    ap.add_argument("--ramp", type=float, default=10.0, help="students arrive over this many seconds")
    ap.add_argument("--think", type=float, default=5.0, help="mean pause between a student's moves (s)")
    ap.add_argument("--browser", action="store_true", help="one real Chromium session during each run")
    ap.add_argument("--trainers", type=int, default=0, help="sessions that press Start on Train first")
    ap.add_argument("--same", action="store_true",
                    help="every student moves to the same values (a class following the teacher): cache hits")
    ap.add_argument("--one-by-one", action="store_true",
                    help="students walk in turn, each alone: the server's CPU per rerun, cold (first) and warm")
    ap.add_argument("--limit", type=float, default=900, help="no student starts a new step after this many seconds")
    ap.add_argument("--url", help="drive this running server (one `streamlit run`, or the proxy of "
                    "`python -m rnnviz serve`) instead of starting a fresh one per size")
    ap.add_argument("--pids", type=int, nargs="+",
                    help="with --url: the Streamlit processes to read CPU and peak RSS from (default: found)")
    ap.add_argument("--json", "--json-out", type=Path, default=ROOT / "artifacts" / "load.json")
    args = ap.parse_args(argv)
    if args.pids and not args.url:
        ap.error("--pids goes with --url: without it the driver reads the server it starts")
    pids = None
    if args.url:
        pids = args.pids or server_pids(args.url)
        for p in pids:
            print(f"server process {p}: {' '.join(_cmdline(p))[:160]}", flush=True)
        if not pids:
            print("no Streamlit process found behind the URL on this machine: no server CPU or memory figures "
                  "(give --pids)", flush=True)
    rows = []
    for n in args.students:
        print(f"{n} students: load average before {os.getloadavg()[0]:.2f} ...", flush=True)
        before = os.getloadavg()
        res = measure(n, args.ramp, args.think, args.browser, trainers=args.trainers, limit=args.limit,
                      same=args.same, one_by_one=args.one_by_one, url=args.url, pids=pids)
        res["load_before"] = before
        rows.append(res)
        print(json.dumps(res, indent=1, default=str), flush=True)
        if res["cpu_per_rerun"]:
            print("server CPU s per rerun (median), first student / later ones:")
            for what, cpu in res["cpu_per_rerun"].items():
                print(f"  {what}: {cpu:.3f} / {res['cpu_per_rerun_warm'].get(what, float('nan')):.3f}")
    print("\n| students (+ trainers) | reruns (failed) | all p50 / p95 | analysis pages p50 / p95 / max | slider moves p50 / p95 "
          "| server CPU (cores busy) | peak RSS (per process) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['students']}{' + ' + str(r['trainers']) if r['trainers'] else ''} | {r['reruns']} ({r['failed_reruns']}) | {r['p50']:.2f} / {r['p95']:.2f} s "
              f"| {r['analysis_p50']:.2f} / {r['analysis_p95']:.2f} / {r['analysis_max']:.2f} s "
              f"| {r['moves_p50']:.2f} / {r['moves_p95']:.2f} s "
              f"| {r['server_cpu_s']:.0f} s over {r['wall_s']:.0f} s ({r['server_cores_busy']:.2f}) "
              f"| {r['peak_rss_mib']:,.0f} MiB{_each_rss(r)} |")
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0 if all(not r["failed_reruns"] and not r["dropped"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
