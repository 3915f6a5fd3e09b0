"""State that the server processes of one machine share, in one SQLite file (WAL mode) in the models folder:
the training queue's slots, the class board of the guessing game, and locks (an atlas, dictionary or n-gram
is built once; a save's quota check and the save happen under one lock).

Every row a process holds carries its pid, its host and a heartbeat. A row whose pid is gone (same host) or
whose heartbeat is older than `stale_seconds` belongs to nobody and is reclaimed: a killed process leaves
nothing that blocks the others. A damaged file is replaced, never trusted. Where the file cannot be opened at
all (a read-only folder), default() answers None and callers keep their in-process behaviour.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: there the rare repair of a damaged file goes without the file lock
    fcntl = None

DB_NAME = ".rnnviz-shared.sqlite3"
STALE_SECONDS = 30.0  # a holder that has not beaten for this long is taken for dead
BUSY_MS = 10_000  # how long a writer waits for another's short transaction
log = logging.getLogger("rnnviz.shared_state")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slots (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT UNIQUE NOT NULL,
    owner TEXT, pid INTEGER NOT NULL, host TEXT NOT NULL, state TEXT NOT NULL, expected REAL NOT NULL,
    queued REAL NOT NULL, started REAL, heartbeat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS board (nickname TEXT PRIMARY KEY, row TEXT NOT NULL, posted REAL NOT NULL);
CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, token TEXT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, heartbeat REAL NOT NULL);
"""


class SharedStateError(RuntimeError):
    """The shared file could not be opened or made (a read-only or missing folder)."""


def models_folder() -> Path:
    """The folder of saved models: RNNVIZ_MODELS, else models/ in the checkout (as ui.state.models_dir)."""
    return Path(os.environ.get("RNNVIZ_MODELS") or Path(__file__).resolve().parent.parent / "models")


def db_path() -> Path:
    """The shared file: RNNVIZ_SHARED_DB, else .rnnviz-shared.sqlite3 in the models folder."""
    return Path(os.environ.get("RNNVIZ_SHARED_DB") or models_folder() / DB_NAME)


def pid_alive(pid: int) -> bool:
    """A process with this pid exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OSError, ValueError):
        return False
    return True


class SharedState:
    """One shared file; a connection per thread and process, short BEGIN IMMEDIATE transactions."""

    def __init__(self, path=None, stale_seconds: float = STALE_SECONDS):
        self.path = Path(path) if path is not None else db_path()
        self.stale_seconds = float(stale_seconds)
        self.host = socket.gethostname()
        self._local = threading.local()
        self._guard = threading.Lock()
        self._checked_pid: int | None = None
        self._mine_jobs: set[str] = set()  # slot rows this process holds: kept alive by the heartbeat
        self._held: set[str] = set()  # tokens of the locks this process holds
        self._beat_thread: threading.Thread | None = None
        self._beat_pid: int | None = None
        self._prepare()

    # --- the file -----------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Open the file once per process (create it, or replace a damaged one); SharedStateError if impossible."""
        with self._guard:
            if self._checked_pid == os.getpid():
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(f"{self.path}.lock", "a") as lockf:  # one repairer at a time, across processes
                    if fcntl is not None:
                        fcntl.flock(lockf, fcntl.LOCK_EX)
                    try:
                        self._create()
                    except sqlite3.OperationalError:
                        raise  # locked, read-only, unopenable: not proof of damage, so never deleted
                    except sqlite3.DatabaseError as e:
                        log.warning("rnnviz: %s is not a usable SQLite file (%s): replaced with a new, empty one",
                                    self.path, e)
                        for suffix in ("", "-wal", "-shm"):
                            with contextlib.suppress(FileNotFoundError):
                                os.remove(f"{self.path}{suffix}")
                        self._create()
            except (OSError, sqlite3.Error) as e:
                raise SharedStateError(f"cannot open the shared state file {self.path}: {e}") from None
            self._checked_pid = os.getpid()

    def _create(self) -> None:
        con = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
        try:
            verdict = con.execute("PRAGMA quick_check").fetchall()
            if verdict != [("ok",)]:
                raise sqlite3.DatabaseError(f"integrity check: {verdict[:3]}")
            con.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            con.executescript(_SCHEMA)
        finally:
            con.close()

    def _con(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: a connection never crosses processes)."""
        held = getattr(self._local, "con", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        self._prepare()
        con = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        con.execute("PRAGMA synchronous=NORMAL")
        self._local.con = (os.getpid(), con)
        return con

    @contextlib.contextmanager
    def _write(self):
        """A short write transaction that takes the write lock at once (no upgrade deadlock between readers)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _dead(self, pid: int, host: str, heartbeat: float, now: float) -> bool:
        return heartbeat < now - self.stale_seconds or (host == self.host and not pid_alive(pid))

    def _reclaim(self, con, now: float) -> None:
        """Delete the slot and lock rows of dead holders (inside a write transaction)."""
        for table, key in (("slots", "job_id"), ("locks", "key")):
            rows = con.execute(f"SELECT {key}, pid, host, heartbeat FROM {table}").fetchall()
            gone = [(r[0],) for r in rows if self._dead(r[1], r[2], r[3], now)]
            if gone:
                con.executemany(f"DELETE FROM {table} WHERE {key} = ?", gone)

    # --- heartbeat ----------------------------------------------------------------------------------
    def _start_beat(self) -> None:
        with self._guard:
            if self._beat_thread is None or not self._beat_thread.is_alive() or self._beat_pid != os.getpid():
                self._beat_pid = os.getpid()
                self._beat_thread = threading.Thread(target=self._beat, name="rnnviz-shared-heartbeat", daemon=True)
                self._beat_thread.start()

    def _beat(self) -> None:
        """Every few seconds, while this process holds rows: say they are alive."""
        while True:
            time.sleep(max(0.05, self.stale_seconds / 6))
            with self._guard:
                jobs, tokens = list(self._mine_jobs), list(self._held)
            if not jobs and not tokens:
                continue
            try:
                with self._write() as con:
                    now = time.time()
                    con.executemany("UPDATE slots SET heartbeat = ? WHERE job_id = ?", [(now, j) for j in jobs])
                    con.executemany("UPDATE locks SET heartbeat = ? WHERE token = ?", [(now, t) for t in tokens])
            except sqlite3.Error as e:
                log.warning("rnnviz: shared state heartbeat failed: %s", e)

    # --- training slots -----------------------------------------------------------------------------
    def slot_request(self, job_id: str, owner: str, expected: float, slots: int) -> bool:
        """Join the machine's queue: True when the job may run now (a slot is free and nobody waits)."""
        now = time.time()
        with self._write() as con:
            self._reclaim(con, now)
            running, waiting = self._counts(con)
            run = running < slots and waiting == 0
            con.execute("INSERT INTO slots (job_id, owner, pid, host, state, expected, queued, started, heartbeat) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (job_id, owner, os.getpid(), self.host, "running" if run else "waiting", float(expected),
                         now, now if run else None, now))
        with self._guard:
            self._mine_jobs.add(job_id)
        self._start_beat()
        return run

    def slot_admit(self, job_ids, slots: int) -> list[str]:
        """Of `job_ids` (this process's waiting jobs), those whose turn it is: among the first waiting rows, as
        many as there are free slots; they are marked running. First in, first out across processes."""
        job_ids = set(job_ids)
        now = time.time()
        with self._write() as con:
            self._reclaim(con, now)
            running, _ = self._counts(con)
            free = max(0, slots - running)
            heads = [r[0] for r in con.execute("SELECT job_id FROM slots WHERE state = 'waiting' ORDER BY seq LIMIT ?",
                                               (free,))]
            mine = [j for j in heads if j in job_ids]
            con.executemany("UPDATE slots SET state = 'running', started = ?, heartbeat = ? WHERE job_id = ?",
                            [(now, now, j) for j in mine])
        return mine

    def slot_release(self, job_id: str) -> None:
        """The job ended or left the queue: its row goes."""
        with self._write() as con:
            con.execute("DELETE FROM slots WHERE job_id = ?", (job_id,))
        with self._guard:
            self._mine_jobs.discard(job_id)

    def _counts(self, con) -> tuple[int, int]:
        rows = dict(con.execute("SELECT state, COUNT(*) FROM slots GROUP BY state").fetchall())
        return int(rows.get("running", 0)), int(rows.get("waiting", 0))

    def slot_counts(self) -> tuple[int, int]:
        """(running, waiting) on the whole machine."""
        return self._counts(self._con())

    def slot_place(self, job_id: str) -> int | None:
        """1 for the first waiting job of the machine, 2 for the next ...; None when this one does not wait."""
        con = self._con()
        row = con.execute("SELECT seq, state FROM slots WHERE job_id = ?", (job_id,)).fetchone()
        if row is None or row[1] != "waiting":
            return None
        return int(con.execute("SELECT COUNT(*) FROM slots WHERE state = 'waiting' AND seq <= ?",
                               (row[0],)).fetchone()[0])

    def slot_rows(self) -> tuple[list[tuple[float, float]], list[tuple[str, float]]]:
        """Running jobs' (started, expected seconds) and waiting jobs' (job id, expected seconds), in order."""
        con = self._con()
        running = [(float(r[0]), float(r[1])) for r in
                   con.execute("SELECT started, expected FROM slots WHERE state = 'running'")]
        waiting = [(r[0], float(r[1])) for r in
                   con.execute("SELECT job_id, expected FROM slots WHERE state = 'waiting' ORDER BY seq")]
        return running, waiting

    # --- the class board ----------------------------------------------------------------------------
    def board_post(self, row: dict, size: int) -> None:
        """Record (or replace) the row of row['nickname']; only the latest `size` nicknames are kept."""
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO board (nickname, row, posted) VALUES (?, ?, ?)",
                        (row["nickname"], json.dumps(row), float(row.get("posted", time.time()))))
            con.execute("DELETE FROM board WHERE nickname NOT IN "
                        "(SELECT nickname FROM board ORDER BY posted DESC, rowid DESC LIMIT ?)", (int(size),))

    def board_rows(self) -> list[dict]:
        rows = []
        for (text,) in self._con().execute("SELECT row FROM board ORDER BY posted"):
            try:
                r = json.loads(text)
            except ValueError:
                continue  # a damaged row is left out, never shown
            if isinstance(r, dict):
                rows.append(r)
        return rows

    def board_clear(self) -> None:
        with self._write() as con:
            con.execute("DELETE FROM board")

    # --- locks --------------------------------------------------------------------------------------
    def try_lock(self, key: str) -> str | None:
        """Take `key` if nobody alive holds it: the token to release it with, else None."""
        token = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}"
        now = time.time()
        with self._write() as con:
            row = con.execute("SELECT pid, host, heartbeat FROM locks WHERE key = ?", (key,)).fetchone()
            if row is not None and not self._dead(row[0], row[1], row[2], now):
                return None
            con.execute("INSERT OR REPLACE INTO locks (key, token, pid, host, heartbeat) VALUES (?, ?, ?, ?, ?)",
                        (key, token, os.getpid(), self.host, now))
        with self._guard:
            self._held.add(token)
        self._start_beat()
        return token

    def unlock(self, key: str, token: str) -> None:
        with self._guard:
            self._held.discard(token)
        with self._write() as con:
            con.execute("DELETE FROM locks WHERE key = ? AND token = ?", (key, token))

    def lock_holder(self, key: str) -> int | None:
        """The pid that holds `key`, if anyone alive does."""
        row = self._con().execute("SELECT pid, host, heartbeat FROM locks WHERE key = ?", (key,)).fetchone()
        if row is None or self._dead(row[0], row[1], row[2], time.time()):
            return None
        return int(row[0])

    @contextlib.contextmanager
    def lock(self, key: str, poll: float = 0.2):
        """Hold `key` across the machine's processes and threads; waits while a live holder has it.
        Re-entrant in one thread (a build inside a build of the same key does not wait for itself)."""
        held = self._local.__dict__.setdefault("keys", set())
        if key in held:
            yield
            return
        token = self.try_lock(key)
        while token is None:
            time.sleep(poll)
            token = self.try_lock(key)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            self.unlock(key, token)

    # --- what a teacher or a script may look at -----------------------------------------------------
    def status(self) -> dict:
        """What the file holds now: the trainings running and waiting (in line order), the locks held, the
        board's size. Rows of dead holders are reclaimed first, so what is listed blocks someone."""
        now = time.time()
        with self._write() as con:
            self._reclaim(con, now)
        con = self._con()
        jobs = [{"state": r[0], "pid": r[1], "host": r[2], "expected_s": round(r[3], 1),
                 "waited_s": round((r[5] or now) - r[4], 1), "running_s": round(now - r[5], 1) if r[5] else None}
                for r in con.execute("SELECT state, pid, host, expected, queued, started FROM slots "
                                     "ORDER BY state = 'waiting', seq")]
        locks = [{"key": r[0], "pid": r[1], "host": r[2], "heartbeat_age_s": round(now - r[3], 1)}
                 for r in con.execute("SELECT key, pid, host, heartbeat FROM locks ORDER BY key")]
        board = int(con.execute("SELECT COUNT(*) FROM board").fetchone()[0])
        return {"file": str(self.path), "running": sum(j["state"] == "running" for j in jobs),
                "waiting": sum(j["state"] == "waiting" for j in jobs), "jobs": jobs, "locks": locks,
                "board_entries": board}


_DEFAULTS: dict[Path, SharedState | None] = {}
_DEFAULTS_LOCK = threading.Lock()


def default() -> SharedState | None:
    """The shared state of the current models folder (RNNVIZ_SHARED_DB, RNNVIZ_MODELS); None, said once in the
    log, where the file cannot be opened: the server then keeps its state in its own memory, as one process."""
    path = db_path()
    with _DEFAULTS_LOCK:
        if path not in _DEFAULTS:
            try:
                _DEFAULTS[path] = SharedState(path)
            except SharedStateError as e:
                log.warning("rnnviz: %s; each server process keeps its own queue, board and locks", e)
                _DEFAULTS[path] = None
        return _DEFAULTS[path]


@contextlib.contextmanager
def machine_lock(key: str):
    """`key` held by one process of the machine at a time (nothing when there is no shared file)."""
    state = default()
    if state is None:
        yield
        return
    with state.lock(key):
        yield


class ProcessLock:
    """A threading.Lock that also holds a machine-wide lock row: `with` it around a check and the act."""

    def __init__(self, key: str):
        self.key = key
        self._thread_lock = threading.Lock()
        self._stack = threading.local()

    def __enter__(self):
        self._thread_lock.acquire()
        try:
            cm = machine_lock(self.key)
            cm.__enter__()
        except BaseException:
            self._thread_lock.release()
            raise
        self._stack.cm = cm
        return self

    def __exit__(self, *exc):
        try:
            return self._stack.cm.__exit__(*exc)
        finally:
            self._thread_lock.release()
