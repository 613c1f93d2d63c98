"""How fast the whole daemon is, end to end: ``python benchmarks/pipeline.py`` (about 5 min).

Serves N generated news feeds of 50 entries each (``benchmarks/feedserver.py``: RSS with ETag
and Last-Modified, 304 to conditional GETs, gzip) from a local HTTP server, writes a config with
those feeds, 10,000 rules (``benchmarks/rules.py``'s generator and entities) and one ``json://``
channel to a local webhook that answers at once, then starts real ``watcher run`` daemons on it,
on SQLite and on PostgreSQL (a fresh database on 127.0.0.1:5432 per run, dropped afterwards),
one instance or two sharing the database. It drives three passes over every feed:

    first      every entry is new (stored silently, as a feed's first poll is)
    unchanged  every feed answers 304
    mixed      20% of the feeds have 5 new entries (matched, alerted), the rest answer 304;
               the alerts go out while the cycle runs, and the time the outbox then takes
               to drain is shown after the table

A pass starts when the benchmark sets every feed's ``next_poll_at`` to now and ends when every
feed's ``last_polled_at`` is later; its wall time runs from the feed server's first request
(the daemon's claim loop looks at the database at least every 5 s: that wait is shown apart, as
"pickup") to the last poll recorded. For each pass: wall time, CPU time of the daemons and their
parse workers (utime + stime from /proc), peak resident memory (VmHWM summed over each daemon's
process tree, reset at the start of the pass) and feeds per second. Side by side, in the same
run: how long feedparser alone takes to parse the first pass's documents on a process pool over
every core (the floor while feedparser is the parser), and watcher's own ``parse_feed`` the same
way. The feed server runs in its own process; its CPU time is shown, not counted.

Politeness is turned off (``per_host_concurrency = 100``, ``per_host_spacing = "0s"``): every
feed is on 127.0.0.1, which the defaults would poll two at a time, a second apart.

    python benchmarks/pipeline.py                          # 1,000 feeds, SQLite and PostgreSQL
    python benchmarks/pipeline.py --feeds 10000 --backend sqlite        # about 13 min
    python benchmarks/pipeline.py --backend postgres --instances 1 2
    python benchmarks/pipeline.py --quick                  # 100 feeds: a smoke run

Linux only (/proc). Everything it starts is stopped, and its files and database removed, when
it ends, fails or is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import feedparser
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import InstrumentedAttribute

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks import rules as corpus
from benchmarks.feedserver import ENTRIES, NEW_PER_VERSION, Newsroom
from watcher import db
from watcher.rules import Entity
from watcher.store import Store

ROOT = Path(__file__).resolve().parents[1]
RULES = 10_000
CHANGED_SHARE = 0.2  # of the feeds, in the mixed cycle
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_EVERY = 0.2  # seconds between looks at the database during a pass
PASS_TIMEOUT = 3600.0
READY_TIMEOUT = 300.0
MiB = 2**20
TARGET_FLOOR_RATIO = 1.3
TARGET_MIXED_SECONDS = 60.0
TARGET_MIB = 250
TARGET_FEEDS = 10_000
DAEMON = [sys.executable, "-m", "watcher"]  # an experiment may wrap it, e.g. in a profiler


# --- processes: their trees, CPU time and memory, from /proc --------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None once the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _status(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (VmRSS, VmHWM), in bytes; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree(root: int) -> list[int]:
    """``root`` and every process descended from it (a daemon and its parse workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    """User + system time of the tree, and of the children it has already reaped."""
    total = 0
    for pid in tree(root):
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])
            if pid == root:
                total += int(fields[13]) + int(fields[14])
    return total / _TICKS


def own_cpu(pids: Sequence[int]) -> dict[int, float]:
    """Each process's own user + system seconds (children not included)."""
    found = {}
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            found[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
    return found


def serving(database_name: str) -> list[int]:
    """The PostgreSQL backends connected to ``database_name`` (named so in their titles)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and database_name.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def resident(root: int) -> int:
    return sum(_status(pid, "VmRSS") for pid in tree(root))


def peak_resident(root: int) -> int:
    return sum(_status(pid, "VmHWM") for pid in tree(root))


def reset_peaks(root: int) -> None:
    """Start each process's VmHWM afresh (``5`` to clear_refs: Linux 4.0 and later)."""
    for pid in tree(root):
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy (every core, every process)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / _TICKS  # less idle and iowait


def _die_with_parent() -> None:
    """In the child, before exec: a benchmark killed outright takes its processes along."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them in order
            preexec_fn=_die_with_parent,  # the benchmark runs no threads
        )


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


# --- the feed server ------------------------------------------------------------------------------


class FeedServer:
    """``benchmarks/feedserver.py`` in a process of its own, and its control calls."""

    def __init__(self, folder: Path, log: Path, latency_ms: float) -> None:
        script = ROOT / "benchmarks" / "feedserver.py"
        command = [sys.executable, str(script), str(folder), "--latency", str(latency_ms)]
        self.process = start(command, log)
        deadline = time.monotonic() + 120
        while "listening" not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the feed server did not start:\n{log.read_text()}")
            time.sleep(0.05)
        port = int(log.read_text().split("listening", 1)[1].split()[0])
        self.base_url = f"http://127.0.0.1:{port}"

    def call(self, command: str, body: bytes | None = None) -> bytes:
        url = f"{self.base_url}/_control/{command}"
        with urllib.request.urlopen(url, data=body, timeout=600) as answer:  # noqa: S310
            return bytes(answer.read())

    def stats(self) -> dict[str, object]:
        found: dict[str, object] = json.loads(self.call("stats"))
        return found


# --- the database ---------------------------------------------------------------------------------


@contextlib.contextmanager
def database(backend: str, folder: Path, admin_url: str) -> Iterator[str]:
    """A fresh, empty database URL for watcher; dropped (or deleted) afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'watcher.db'}"
        return
    admin = create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"watcher_bench_{os.getpid()}_{int(time.time())}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Feeds:
    """The benchmark's view of watcher's tables, through watcher's own models and types."""

    def __init__(self, url: str) -> None:
        self.store = Store.open(url)  # creates the schema
        self.engine: Engine = self.store.engine

    def add(self, ids: Sequence[str], urls: Sequence[str]) -> None:
        """Every feed's row, not due for years: a pass starts when the benchmark says so."""
        self.store.sync_feeds(zip(ids, urls, strict=True), now=db.utcnow() + timedelta(days=3650))

    def make_due(self, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(db.FeedRow)
                .where(db.FeedRow.next_poll_at.is_not(None))
                .values(next_poll_at=now)
            )

    def polled_since(self, since: datetime) -> tuple[int, datetime | None]:
        """How many feeds were polled after ``since``, and when the last of them was."""
        query = select(func.count(), func.max(db.FeedRow.last_polled_at)).where(
            db.FeedRow.last_polled_at > since
        )
        with self.engine.connect() as conn:
            count, last = conn.execute(query).one()
        return int(count), last

    def grouped(self, column: InstrumentedAttribute[Any]) -> dict[str, int]:
        query = select(column, func.count()).group_by(column)
        with self.engine.connect() as conn:
            return {str(key): int(n) for key, n in conn.execute(query)}

    def count(self, table: type[db.Base]) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def close(self) -> None:
        self.store.close()


# --- the parse floor ------------------------------------------------------------------------------


def _feedparser_alone(path: str) -> float:
    body = Path(path).read_bytes()
    started = time.process_time()
    feedparser.parse(io.BytesIO(body))
    return time.process_time() - started


def _parse_feed_alone(path: str) -> float:
    # Imported here, in the pool's processes only: watcher.parse swaps one of feedparser's
    # functions for a memo of it, which must not speed up the feedparser-alone floor.
    from watcher.parse import parse_feed

    body = Path(path).read_bytes()
    started = time.process_time()
    headers = {"content-type": "application/rss+xml; charset=utf-8"}
    parse_feed(body, url="http://127.0.0.1/feed.xml", headers=headers, now=db.utcnow())
    return time.process_time() - started


def _ready(_: int) -> int:
    return os.getpid()


@dataclass(frozen=True)
class Floor:
    wall: float
    cpu: float
    others: float  # CPU seconds the rest of the machine took meanwhile


def parse_floor(parse: Callable[[str], float], paths: Sequence[Path]) -> Floor:
    """Parse every document on a pool of one process per core: wall time and summed CPU time."""
    cores = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_ready, range(cores)))  # started before the clock starts
        started, busy = time.perf_counter(), machine_busy()
        cpu = sum(pool.map(parse, map(str, paths), chunksize=8))
        return Floor(time.perf_counter() - started, cpu, machine_busy() - busy - cpu)


# --- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    feeds: int
    backend: str
    instances: int
    latency_ms: float
    concurrency: int
    postgres: str

    def command(self) -> str:
        words = ["python", "benchmarks/pipeline.py", "--feeds", str(self.feeds)]
        words += ["--backend", self.backend, "--instances", str(self.instances)]
        if self.latency_ms:
            words += ["--latency", f"{self.latency_ms:g}"]
        if self.concurrency != 10:
            words += ["--concurrency", str(self.concurrency)]
        return shlex.join(words)


@dataclass(frozen=True)
class PassResult:
    name: str
    wall: float
    cpu: float
    peak: int  # bytes: VmHWM summed over every process of every daemon
    peak_together: int  # bytes: the largest sum of VmRSS seen at one moment
    pickup: float  # seconds from making the feeds due to the first request
    server_cpu: float
    database_cpu: float | None  # the PostgreSQL backends serving the daemons; None: SQLite
    others: float  # CPU seconds the rest of the machine took meanwhile (other users, this script)
    requests: dict[str, int]
    feeds: int

    @property
    def rate(self) -> float:
        return self.feeds / self.wall


def config_text(setup: Setup, url: str, base_url: str, pool: dict[str, Entity]) -> str:
    settings = f"""[watcher]
database = {json.dumps(url)}
default_interval = "1d"
alert_backlog = false
concurrency = {setup.concurrency}
per_host_concurrency = 100
per_host_spacing = "0s"

[channels.hook]
urls = ["json://{base_url.removeprefix("http://")}/hook"]
"""
    parts = [settings]
    for feed in range(setup.feeds):
        parts.append(f'[[feeds]]\nid = "f{feed}"\nurl = "{base_url}/feeds/{feed}.xml"\n')
    for entity_id, entity in pool.items():
        names, exact = json.dumps(list(entity.names)), json.dumps(list(entity.exact))
        parts.append(f"[entities.{entity_id}]\nnames = {names}\nexact = {exact}\n")
    for name, match in corpus.rules(RULES, pool, random.Random(corpus.SEED + 1)).items():
        parts.append(
            f'[[rules]]\nname = "{name}"\nmatch = {json.dumps(match)}\nchannels = ["hook"]\n'
        )
    return "\n".join(parts)


class Run:
    """One table: a database, the feed server, the daemons, three passes."""

    def __init__(
        self, setup: Setup, folder: Path, newsroom: Newsroom, stack: contextlib.ExitStack
    ) -> None:
        self.setup = setup
        self.folder = folder
        self.newsroom = newsroom
        self.stack = stack
        self.documents = folder / "feeds"
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.database_name = ""  # PostgreSQL's, whose backends' CPU time is counted apart

    def generate(self) -> float:
        started = time.perf_counter()
        self.documents.mkdir()
        for feed in range(self.setup.feeds):
            (self.documents / f"{feed}.xml").write_bytes(self.newsroom.document(feed))
        return time.perf_counter() - started

    def floors(self) -> tuple[Floor, Floor]:
        paths = sorted(self.documents.glob("*.xml"))
        return parse_floor(_feedparser_alone, paths), parse_floor(_parse_feed_alone, paths)

    def start_daemons(self, url: str, base_url: str) -> tuple[float, int]:
        """Start the daemons; the seconds until every one is running, and their resident
        memory then (feeds and rules loaded, nothing polled yet)."""
        config = self.folder / "watcher.toml"
        config.write_text(config_text(self.setup, url, base_url, self.newsroom.pool))
        started = time.perf_counter()
        for n in range(self.setup.instances):
            log = self.folder / f"daemon-{n}.log"
            command = [*DAEMON, "run", "-c", str(config)]
            daemon = start(command, log)
            self.stack.callback(stop, daemon)
            self.daemons.append(daemon)
            self.logs.append(log)
        for log in self.logs:
            while " running: " not in log.read_text():
                self.check_alive()
                if time.perf_counter() - started > READY_TIMEOUT:
                    raise RuntimeError(f"a daemon was not ready in {READY_TIMEOUT:g} s")
                time.sleep(0.05)
        ready = time.perf_counter() - started
        time.sleep(1.0)  # the first delivery sweep and APScheduler's start settle
        return ready, sum(resident(d.pid) for d in self.daemons)

    def check_alive(self) -> None:
        for daemon, log in zip(self.daemons, self.logs, strict=True):
            if daemon.poll() is not None:
                tail = "\n".join(log.read_text().splitlines()[-30:])
                raise RuntimeError(f"daemon {daemon.pid} exited ({daemon.returncode}):\n{tail}")

    def cpu(self) -> float:
        return sum(cpu_seconds(d.pid) for d in self.daemons)

    def database_cpu(self) -> dict[int, float]:
        return own_cpu(serving(self.database_name)) if self.database_name else {}

    def one_pass(self, name: str, feeds: Feeds, server: FeedServer) -> PassResult:
        pids = [d.pid for d in self.daemons]
        for pid in pids:
            reset_peaks(pid)
        server.call("mark")
        cpu, server_cpu, busy = self.cpu(), cpu_seconds(server.process.pid), machine_busy()
        database_cpu = self.database_cpu()
        triggered = db.utcnow()
        feeds.make_due(triggered)
        together, deadline = 0, time.monotonic() + PASS_TIMEOUT
        while True:
            time.sleep(POLL_EVERY)
            together = max(together, sum(resident(pid) for pid in pids))
            polled, last = feeds.polled_since(triggered)
            if polled >= self.setup.feeds:
                break
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {polled} of {self.setup.feeds} feeds polled")
        cpu, server_cpu = self.cpu() - cpu, cpu_seconds(server.process.pid) - server_cpu
        busy = machine_busy() - busy
        database = sum(t - database_cpu.get(pid, 0.0) for pid, t in self.database_cpu().items())
        stats = server.stats()
        assert last is not None
        assert isinstance(stats["first"], float)
        first = datetime.fromtimestamp(stats["first"], UTC)
        statuses = stats["statuses"]
        assert isinstance(statuses, dict)
        return PassResult(
            name=name,
            wall=(last - first).total_seconds(),
            cpu=cpu,
            peak=sum(peak_resident(pid) for pid in pids),
            peak_together=together,
            pickup=(first - triggered).total_seconds(),
            server_cpu=server_cpu,
            database_cpu=database if self.database_name else None,
            others=busy - cpu - server_cpu - database,
            requests={str(k): int(v) for k, v in statuses.items()},
            feeds=self.setup.feeds,
        )

    def publish(self, server: FeedServer) -> list[int]:
        """Give 20% of the feeds ``NEW_PER_VERSION`` new entries (version 1)."""
        changed = sorted(
            random.Random(corpus.SEED + 3).sample(
                range(self.setup.feeds), int(self.setup.feeds * CHANGED_SHARE)
            )
        )
        for feed in changed:
            (self.documents / f"{feed}.xml").write_bytes(self.newsroom.document(feed, 1))
        server.call("reload", "\n".join(map(str, changed)).encode())
        return changed

    def drain(self, feeds: Feeds, timeout: float) -> tuple[float, dict[str, int]]:
        """Wait until no alert is pending (or ``timeout``); the seconds it took, the statuses."""
        started = time.perf_counter()
        while True:
            statuses = feeds.grouped(db.DeliveryRow.status)
            waiting = statuses.get("pending", 0) + statuses.get("retrying", 0)
            if not waiting or time.perf_counter() - started > timeout:
                return time.perf_counter() - started, statuses
            self.check_alive()
            time.sleep(POLL_EVERY)


def run(setup: Setup, newsroom: Newsroom, drain_timeout: float) -> None:
    label = f"{'SQLite' if setup.backend == 'sqlite' else 'PostgreSQL'}, {setup.instances} "
    label += "instance" if setup.instances == 1 else "instances"
    print(f"\n=== {label}: {setup.feeds:,} feeds x {ENTRIES} entries, {RULES:,} rules ===")
    print(f"reproduce: {setup.command()}", flush=True)
    with contextlib.ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="watcher-bench-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        bench = Run(setup, folder, newsroom, stack)
        generated = bench.generate()
        sizes = [p.stat().st_size for p in bench.documents.glob("*.xml")]
        server = FeedServer(bench.documents, folder / "server.log", setup.latency_ms)
        stack.callback(stop, server.process)
        url = stack.enter_context(database(setup.backend, folder, setup.postgres))
        feeds = Feeds(url)
        stack.callback(feeds.close)
        if setup.backend == "postgres":
            bench.database_name = str(make_url(url).database)
        ids = [f"f{n}" for n in range(setup.feeds)]
        feeds.add(ids, [f"{server.base_url}/feeds/{n}.xml" for n in range(setup.feeds)])
        print(
            f"feeds: {sum(sizes) / len(sizes) / 1024:.1f} KiB each on average (generated in "
            f"{generated:.1f} s), served from 127.0.0.1 with {setup.latency_ms:g} ms latency; "
            f"concurrency {setup.concurrency}, per_host_concurrency 100, per_host_spacing 0s "
            "(politeness off: every feed is on one host)",
            flush=True,
        )
        floor, own = bench.floors()
        ready, loaded = bench.start_daemons(url, server.base_url)
        print(
            f"daemons ready {ready:.1f} s after start; {loaded / MiB:.0f} MiB resident with "
            f"{setup.feeds:,} feeds and {RULES:,} rules loaded (before any parse worker starts)",
            flush=True,
        )
        results = [bench.one_pass("first (all new)", feeds, server)]
        articles = feeds.count(db.ArticleRow)
        results.append(bench.one_pass("unchanged (304)", feeds, server))
        changed = bench.publish(server)
        results.append(bench.one_pass("mixed (20% +5)", feeds, server))
        new = feeds.count(db.ArticleRow) - articles
        queued = feeds.count(db.DeliveryRow)
        matches = feeds.count(db.MatchRow)
        drained, statuses = bench.drain(feeds, drain_timeout)
        outcomes = feeds.grouped(db.FeedRow.last_outcome)
        report(setup, results, floor, own, loaded)
        print(
            f"\n  checks: first pass stored {articles:,} articles (expected "
            f"{setup.feeds * ENTRIES:,}); mixed cycle stored {new:,} new (expected "
            f"{len(changed) * NEW_PER_VERSION:,}); last outcomes {outcomes}"
        )
        print(
            f"  alerts: the mixed cycle matched {matches:,} times ({matches / max(new, 1):.1f} "
            f"per new article) and queued {queued:,} deliveries; the outbox "
            + (
                f"drained {drained:.1f} s after the last poll"
                if not statuses.get("pending")
                else f"still held {statuses.get('pending', 0):,} after {drained:.0f} s"
            )
            + f" ({statuses}): {statuses.get('sent', 0) / (results[2].wall + drained):.0f} alerts/s"
            " from the cycle's first request, json:// to a local webhook that answers at once"
        )


def report(
    setup: Setup, results: Sequence[PassResult], floor: Floor, own: Floor, loaded: int
) -> None:
    print(
        f"\n  {'pass':<17} {'wall s':>7} {'CPU s':>7} {'CPU/wall':>8} {'peak MiB':>9}"
        f" {'feeds/s':>8} {'pickup s':>8} {'server CPU s':>12} {'DB CPU s':>8}"
        f" {'others CPU s':>12}  requests"
    )
    for r in results:
        print(
            f"  {r.name:<17} {r.wall:>7.1f} {r.cpu:>7.1f} {r.cpu / r.wall:>8.2f}"
            f" {r.peak / MiB:>9.0f} {r.rate:>8.0f} {r.pickup:>8.1f} {r.server_cpu:>12.1f}"
            f" {'-' if r.database_cpu is None else f'{r.database_cpu:.1f}':>8} {r.others:>12.1f}"
            f"  {r.requests}"
        )
    print(
        "  (CPU: the daemons and their parse workers; peak: VmHWM summed over those processes;"
        " pickup:\n  from making the feeds due to the first request, not in wall; server, DB:"
        " the feed server\n  and PostgreSQL's backends, not counted; others: the rest of the"
        " machine, this script included)"
    )
    cores = len(os.sched_getaffinity(0))
    first, mixed = results[0], results[2]
    print(
        f"\n  feedparser alone, the first pass's {setup.feeds:,} documents on {cores} processes: "
        f"{floor.wall:.1f} s wall ({floor.cpu:.1f} s CPU; others {floor.others:.1f} s CPU)"
    )
    print(
        f"  watcher's parse_feed alone, the same way: {own.wall:.1f} s wall ({own.cpu:.1f} s "
        f"CPU, {own.cpu / floor.cpu:.2f}x feedparser's; others {own.others:.1f} s CPU)"
    )
    print(
        f"  first pass / feedparser floor: {first.wall / floor.wall:.2f}x wall, "
        f"{first.cpu / floor.cpu:.2f}x CPU"
    )
    peak = max(r.peak for r in results)
    together = max(r.peak_together for r in results)
    print(
        f"  memory: peak {peak / MiB:.0f} MiB (VmHWM summed per process), {together / MiB:.0f}"
        f" MiB at one moment (VmRSS sampled every {POLL_EVERY:g} s); {loaded / MiB:.0f} MiB idle"
    )
    print("\n  targets (this 2-core machine):")
    verdict(
        f"first pass <= {TARGET_FLOOR_RATIO}x the feedparser floor",
        f"{first.wall / floor.wall:.2f}x",
        first.wall <= TARGET_FLOOR_RATIO * floor.wall,
    )
    scaled = mixed.wall * TARGET_FEEDS / setup.feeds
    note = (
        "" if setup.feeds == TARGET_FEEDS else f" (x{TARGET_FEEDS / setup.feeds:g}: extrapolated)"
    )
    verdict(
        f"mixed cycle, {TARGET_FEEDS:,} feeds, <= {TARGET_MIXED_SECONDS:g} s{note}",
        f"{scaled:.1f} s",
        scaled <= TARGET_MIXED_SECONDS,
    )
    note = "" if setup.feeds == TARGET_FEEDS else f" (measured at {setup.feeds:,} feeds)"
    per = "" if setup.instances == 1 else " per instance"
    verdict(
        f"resident < {TARGET_MIB} MiB{per}, {RULES:,} rules{note}",
        f"{peak / setup.instances / MiB:.0f} MiB",
        peak / setup.instances < TARGET_MIB * MiB,
    )


def verdict(label: str, value: str, met: bool) -> None:
    print(f"    {label:<72} {value:>10}  {'met' if met else 'NOT MET'}")


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1_000, help="feeds (default 1,000)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--instances",
        type=int,
        nargs="+",
        choices=(1, 2),
        default=[1],
        help="daemons sharing the database: 1, 2 or '1 2' (2: PostgreSQL only)",
    )
    parser.add_argument("--quick", action="store_true", help="100 feeds: a smoke run")
    parser.add_argument("--latency", type=float, default=0.0, help="ms per feed request")
    parser.add_argument("--concurrency", type=int, default=10, help="[watcher] concurrency")
    parser.add_argument("--postgres", default=POSTGRES, help="a PostgreSQL admin URL")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds")
    options = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT: even if inherited
        signal.signal(signum, _interrupted)  # as ignored; each one tears everything down
    feeds = 100 if options.quick else options.feeds
    backends = ("sqlite", "postgres") if options.backend == "both" else (options.backend,)
    setups = [
        Setup(feeds, backend, n, options.latency, options.concurrency, options.postgres)
        for backend in backends
        for n in sorted(set(options.instances))
        if backend == "postgres" or n == 1
    ]
    if "sqlite" in backends and 2 in options.instances:
        print("SQLite serves one instance by design (a second daemon refuses to start): 1 only")
    newsroom = Newsroom()
    started = time.perf_counter()
    try:
        for setup in setups:
            run(setup, newsroom, options.drain_timeout)
    except KeyboardInterrupt as stopped:
        print(f"\ninterrupted ({stopped}): daemons stopped, files and database removed")
        sys.exit(130)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
