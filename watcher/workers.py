"""Parsing off the event loop, in worker processes with a memory and a time limit. Runs processes.

    parse(body) -> an idle worker (started when first needed, at most ``workers``)
      -> parse_feed there -> ParsedFeed, or ParseError: the feed's own, or too slow, too big, died

A feed that makes feedparser take minutes or gigabytes fails alone: its worker is killed, the next
parse gets a new one, and parses on the other workers carry on. This is also how parsing uses
every core. Each worker parses one feed at a time.

A worker is a fresh ``python -P -c`` (no fork: the parent has threads, sockets and database
connections) that imports ``watcher.parse`` and nothing of the parent. It does not come from
multiprocessing's spawn or forkserver because they re-run the parent's ``__main__`` in every
child, and for the ``watcher`` command that imports the whole CLI: 0.8 s and 70 MB more per worker.

Limits. A worker caps its own address space (RLIMIT_AS) at what it maps when idle plus
``memory_bytes``, so an oversized parse raises MemoryError there and only there. The parent waits
``timeout`` seconds for the answer, then SIGKILLs the worker: that stops it even inside C code
that never returns to Python. Should the parent die mid-parse, the worker's own ``alarm()`` ends
the parse a second after the timeout all the same, so no orphan keeps a core busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

from watcher.errors import ParseError
from watcher.models import ParsedFeed

log = logging.getLogger(__name__)

MiB = 2**20
STARTUP_TIMEOUT = 60.0  # seconds for a new worker to be ready; it takes 0.1 s on an idle machine
_EXIT_GRACE = 1.0  # seconds for a worker whose connection closed to finish exiting
_READY = "ready"
_ABANDONED = "parsing was abandoned: the parse pool closed"
# What a worker runs: find this same watcher (even an uninstalled checkout), then serve.
_BOOT = "import sys; sys.path.append(sys.argv[1]); from watcher.workers import _serve; _serve()"
_IMPORT_ROOT = str(Path(__file__).resolve().parents[1])


class ParsePool:
    """Parses feeds in up to ``workers`` processes, with the rest of the parses waiting their turn.

    ``workers`` defaults to the number of CPUs this process may use. ``workers=0`` parses in a
    thread of this process instead, without any limit: for tests and for debugging one run.
    ``memory_bytes`` is what one parse may use beyond an idle worker's ~30 MiB; ``timeout`` is in
    seconds. Use it from one event loop; ``close()`` it, or use it in ``with`` or ``async with``.
    """

    def __init__(
        self, workers: int | None = None, *, memory_bytes: int = 512 * MiB, timeout: float = 30.0
    ) -> None:
        self.workers = _usable_cpus() if workers is None else workers
        self.memory_bytes = memory_bytes
        self.timeout = timeout
        if self.workers < 0 or memory_bytes <= 0 or not timeout > 0:
            raise ValueError(
                f"need workers >= 0, memory_bytes > 0 and timeout > 0, not {self.workers}, "
                f"{memory_bytes} and {timeout}"
            )
        self._slots = asyncio.Semaphore(max(self.workers, 1))
        self._threads = ThreadPoolExecutor(max(self.workers, 1), thread_name_prefix="parse")
        self._workers: set[_Worker] = set()  # every live worker, busy or idle
        self._idle: list[_Worker] = []
        self._closed = False

    async def parse(
        self, body: bytes, *, url: str, headers: Mapping[str, str], now: datetime, max_entries: int
    ) -> ParsedFeed:
        """``parse_feed`` in a worker: its result, or its ParseError as it raised it. A parse that
        overruns the time or memory limit, or whose worker dies, raises ParseError saying so."""
        if self._closed:
            raise RuntimeError("the parse pool is closed")
        job = _Job(body, url, dict(headers), now, max_entries)
        if self.workers == 0:
            return await asyncio.to_thread(job.run)
        async with self._slots:
            worker = self._checkout(url)
            exchange = self._threads.submit(self._exchange, worker, job)
            try:
                return await asyncio.wrap_future(exchange)
            except asyncio.CancelledError:
                worker.kill()  # whatever its thread waits for ends now; then it is reaped
                exchange.add_done_callback(lambda _: worker.close())
                raise
            finally:
                self._checkin(worker)

    def close(self) -> None:
        """Stop every worker; parses still running fail with ParseError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for worker in list(self._workers):
            worker.kill()
        self._threads.shutdown(wait=True)  # each parse in flight sees its worker die, and reaps it
        for worker in list(self._workers):
            worker.close()
        self._workers.clear()
        self._idle.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _checkout(self, url: str) -> _Worker:
        if self._closed:  # while this parse waited for its turn
            raise ParseError(url, _ABANDONED)
        while self._idle:
            worker = self._idle.pop()
            if worker.running():
                return worker
            worker.close()  # died while idle, e.g. by the kernel's out-of-memory killer
            self._workers.discard(worker)
        try:
            worker = _Worker.start(self.memory_bytes, self.timeout)
        except OSError as exc:  # out of processes or file descriptors: this feed waits its turn
            raise ParseError(url, f"could not start a parse worker: {exc}") from exc
        self._workers.add(worker)
        return worker

    def _checkin(self, worker: _Worker) -> None:
        if worker.retired or self._closed:
            self._workers.discard(worker)  # already reaped, or its thread or close() reaps it
        else:
            self._idle.append(worker)

    def _exchange(self, worker: _Worker, job: _Job) -> ParsedFeed:
        """Runs in a pool thread: give ``job`` to ``worker`` and wait for the reply. A worker that
        overran, ran out of memory or died is closed before this returns."""
        try:
            if not worker.handshake(STARTUP_TIMEOUT):
                worker.close()
                raise ParseError(
                    job.url, f"a parse worker took over {STARTUP_TIMEOUT:g} s to start"
                )
            worker.conn.send(job)
            if not worker.conn.poll(self.timeout):
                worker.close()
                raise ParseError(job.url, self._overran())
            reply: _Reply = worker.conn.recv()
        except (EOFError, OSError) as exc:
            raise ParseError(job.url, self._death(worker)) from exc
        if reply.out_of_memory:
            worker.close()  # its heap may stay fragmented; a new worker starts clean
        return self._result(reply, job.url)

    def _result(self, reply: _Reply, url: str) -> ParsedFeed:
        if reply.feed is not None:
            return reply.feed
        cause = _WorkerTraceback(reply.detail) if reply.detail else None
        if reply.bug is not None:
            raise reply.bug from cause
        if reply.out_of_memory:
            needed = f"more than {self.memory_bytes / MiB:g} MiB of memory"
            raise ParseError(url, f"parsing needed {needed}; the feed was abandoned")
        raise ParseError(url, reply.rejection or "not a feed") from cause

    def _overran(self) -> str:
        return f"parsing took longer than {self.timeout:g} s; the feed was abandoned"

    def _death(self, worker: _Worker) -> str:
        code = worker.reap()
        if self._closed:
            return _ABANDONED
        if code == -signal.SIGALRM:  # the worker's own backstop against overruns
            return self._overran()
        return f"the parse worker died ({_exit_description(code)}); the feed was abandoned"


class _WorkerTraceback(Exception):
    """The traceback of an error in a worker, as the cause of the error raised here."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


@dataclass(frozen=True, slots=True)
class _Job:
    body: bytes
    url: str
    headers: dict[str, str]
    now: datetime
    max_entries: int

    def run(self) -> ParsedFeed:
        from watcher.parse import parse_feed  # in the worker only: the parent never needs it

        return parse_feed(
            self.body,
            url=self.url,
            headers=self.headers,
            now=self.now,
            max_entries=self.max_entries,
        )


@dataclass(frozen=True, slots=True)
class _Reply:
    """A worker's answer to one job: the feed, or why there is none."""

    feed: ParsedFeed | None = None
    rejection: str | None = None  # the message of parse_feed's ParseError
    out_of_memory: bool = False
    bug: Exception | None = None  # anything else parse_feed raised
    detail: str = ""  # the worker's traceback of the rejection's cause, or of the bug


_OUT_OF_MEMORY = _Reply(out_of_memory=True)


class _Worker:
    """One worker process and this end of its connection. It serves one parse at a time."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection[_Job, Any]) -> None:
        self.process = process
        self.conn = conn
        self.ready = False  # it said so: imports done, limit set
        self.retired = False  # killed, or being killed: it gets no more jobs

    @classmethod
    def start(cls, memory_bytes: int, timeout: float) -> _Worker:
        ours, theirs = Pipe()
        fd = theirs.fileno()
        arguments = [_IMPORT_ROOT, str(fd), str(memory_bytes), repr(timeout)]
        with theirs:  # the worker's end must close here, or its death would never show as EOF
            try:
                process = subprocess.Popen(
                    [sys.executable, "-P", "-c", _BOOT, *arguments],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,  # stderr stays: a worker's traceback is worth seeing
                    pass_fds=[fd],
                )
            except BaseException:
                ours.close()
                raise
        log.debug("started parse worker %d", process.pid)
        return cls(process, ours)

    def running(self) -> bool:
        return self.process.poll() is None

    def handshake(self, timeout: float) -> bool:
        """Wait until the worker is ready for its first job; False if it took too long."""
        if not self.ready:
            if not self.conn.poll(timeout):
                return False
            self.ready = self.conn.recv() == _READY
        return self.ready

    def kill(self) -> None:
        self.retired = True
        self.process.kill()

    def close(self) -> None:
        self.kill()
        self.process.wait()
        self.conn.close()

    def reap(self) -> int:
        """Close a worker whose connection ended and return its exit status (-N: signal N)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_EXIT_GRACE)
        self.close()
        return self.process.returncode


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # a container or taskset may allow fewer than there are
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _exit_description(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


# --- in the worker process -----------------------------------------------------------------


def _serve() -> None:
    """A worker's life, from ``_BOOT``: answer jobs until the pool closes the connection."""
    fd, memory_bytes, timeout = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which closes the pool
    import watcher.parse  # noqa: F401  # before READY, so that no job's time pays for it

    _limit_address_space(memory_bytes)
    backstop = math.ceil(timeout) + 1  # the parent's kill normally comes first
    with Connection(fd) as conn:
        conn.send(_READY)
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return  # the pool closed, or the parent died
            except MemoryError:  # the body alone is too big, and the rest of it is unread
                _send(conn, _OUT_OF_MEMORY)
                return
            signal.alarm(backstop)  # the default action ends the process, even inside C code
            _send(conn, _answer(job))
            signal.alarm(0)


def _answer(job: _Job) -> _Reply:
    """The reply to ``job``. Nothing parse_feed raises escapes; a bug's error is sent back too."""
    try:
        return _Reply(feed=job.run())
    except MemoryError:
        return _OUT_OF_MEMORY
    except ParseError as error:
        if isinstance(error.__cause__, MemoryError):  # parse.py wraps what feedparser raised
            return _OUT_OF_MEMORY
        return _Reply(rejection=error.message, detail=_traceback(error.__cause__))
    except Exception as error:
        return _Reply(bug=_portable(error), detail=_traceback(error))


def _send(conn: Connection[_Reply | str, Any], reply: _Reply) -> None:
    try:
        conn.send(reply)
    except MemoryError:  # pickling a huge result; nothing was written yet
        conn.send(_OUT_OF_MEMORY)


def _limit_address_space(extra: int) -> None:
    """Let this process map ``extra`` bytes beyond what it maps now; then allocations fail."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space() -> int:
    try:  # Linux: the first field is the size of every mapping, in pages
        pages = int(Path("/proc/self/statm").read_bytes().split()[0])
    except OSError:
        return 0
    return pages * resource.getpagesize()


def _traceback(error: BaseException | None) -> str:
    return "".join(traceback.format_exception(error)) if error is not None else ""


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling as it is (the built-in ones do), else a stand-in."""
    if type(error).__module__ == "builtins":
        return error
    return RuntimeError(f"{type(error).__qualname__}: {error}")
