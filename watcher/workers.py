"""Parsing off the event loop, in worker processes with a memory and a time limit. Runs processes.

    parse(body) -> a lane: a thread here, and its worker (started when first needed, at most
      ``workers``) -> parse_feed there -> ParsedFeed, or ParseError: the feed's own, or too
      slow, too big, died

A feed that makes feedparser take minutes or gigabytes fails alone: its worker is killed, the next
parse gets a new one, and parses on the other workers carry on. This is also how parsing uses
every core. Each worker parses one feed at a time, with the next one already in its pipe when
feeds are waiting (see ParsePool).

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
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from queue import SimpleQueue
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
_QUEUED = 1  # jobs a lane keeps in its worker's pipe behind the one being parsed


class ParsePool:
    """Parses feeds in up to ``workers`` processes, with the rest of the parses waiting their turn.

    ``workers`` defaults to the number of CPUs this process may use. ``workers=0`` parses in a
    thread of this process instead, without any limit: for tests and for debugging one run.
    ``memory_bytes`` is what one parse may use beyond an idle worker's ~30 MiB; ``timeout`` is in
    seconds. Use it from one event loop; ``close()`` it, or use it in ``with`` or ``async with``.

    Each worker has a thread here (its lane) that hands it jobs and reads its replies. While
    parses wait, a lane keeps one job queued in the worker's pipe behind the one it parses, so
    that the worker starts the next feed the moment it answers, without waiting for this busy
    process (its event loop, its GIL) to hand it over: that wait left the cores idle a tenth of
    the time. A queued job's time limit starts when the worker starts it, and a job queued
    behind a parse that fails is handed to the next worker, not failed with it.
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
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a job is pending, or the pool closed
        self._pending: deque[_Task] = deque()  # jobs no lane has taken yet, oldest first
        self._lanes: list[threading.Thread] = []
        self._waiting = 0  # lanes with nothing to do, waiting for a job
        self._workers: set[_Worker] = set()  # every live worker
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
        task = _Task(job)
        with self._lock:
            self._pending.append(task)
            if self._waiting:
                self._arrived.notify()
            elif len(self._lanes) < self.workers:
                lane = threading.Thread(
                    target=self._lane, name=f"parse-{len(self._lanes)}", daemon=True
                )
                self._lanes.append(lane)
                lane.start()
        try:
            return await asyncio.wrap_future(task.future)
        except asyncio.CancelledError:
            self._cancel(task)
            raise

    def close(self) -> None:
        """Stop every worker; parses still running or waiting fail with ParseError. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._arrived.notify_all()
            waiting = list(self._pending)
            self._pending.clear()
            for worker in self._workers:
                worker.kill()  # whatever its lane waits for ends now; the lane reaps it
        for task in waiting:
            task.fail(ParseError(task.job.url, _ABANDONED))
        for lane in self._lanes:
            lane.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _cancel(self, task: _Task) -> None:
        """A parse's caller gave up: its worker is stopped if it is parsing that very job (a
        job still queued in a pipe is parsed, its result dropped: stopping the worker would
        stop another feed's parse)."""
        with self._lock:
            task.cancelled = True
            if task.worker is not None and task.started and not task.future.done():
                task.worker.kill()

    # --- in a lane's thread ---------------------------------------------------------------------

    def _take(self, *, wait: bool) -> _Task | None:
        """The oldest pending job, marked running; None when there is none (after waiting for
        one, if ``wait``) or the pool closed. Called with the lock held. Without ``wait``, jobs
        are left for the lanes that are waiting: an idle worker gets a job before a busy one
        queues it."""
        while True:
            if wait:
                self._waiting += 1
                while not self._pending and not self._closed:
                    self._arrived.wait()
                self._waiting -= 1
            if self._closed or len(self._pending) <= (0 if wait else self._waiting):
                return None
            task = self._pending.popleft()
            if task.future.set_running_or_notify_cancel():  # else cancelled while it waited
                return task

    def _lane(self) -> None:
        """A lane's life: keep a worker busy with pending jobs until the pool closes."""
        lane: deque[_Task] = deque()  # the jobs this lane took, in the order the worker answers
        try:
            while self._refill(lane):
                worker = self._start(lane)
                if worker is not None:
                    self._use(worker, lane)
        finally:
            for task in lane:
                task.fail(ParseError(task.job.url, _ABANDONED))

    def _refill(self, lane: deque[_Task]) -> bool:
        """Take pending jobs into ``lane``: one to parse (waiting for it if need be), and
        ``_QUEUED`` more if they are there. False once the pool has closed."""
        with self._lock:
            if not lane:
                task = self._take(wait=True)
                if task is None:
                    return False
                lane.append(task)
            while len(lane) <= _QUEUED and (task := self._take(wait=False)):
                lane.append(task)
            return not self._closed

    def _start(self, lane: deque[_Task]) -> _Worker | None:
        """A ready worker for ``lane``, or None after failing its first job with the reason."""
        task = lane[0]
        try:
            worker = _Worker.start(self.memory_bytes, self.timeout)
        except OSError as exc:  # out of processes or file descriptors: this feed fails alone
            lane.popleft()
            task.fail(ParseError(task.job.url, f"could not start a parse worker: {exc}"))
            return None
        with self._lock:
            self._workers.add(worker)
            if self._closed:
                worker.kill()
        try:
            ready = worker.handshake(STARTUP_TIMEOUT)
        except (EOFError, OSError):  # killed by close()
            ready = False
        if not ready:
            self._retire(worker)
            if not self._closed:
                lane.popleft()
                message = f"a parse worker took over {STARTUP_TIMEOUT:g} s to start"
                task.fail(ParseError(task.job.url, message))
            return None
        return worker

    def _use(self, worker: _Worker, lane: deque[_Task]) -> None:
        """Give ``worker`` the lane's jobs, and each answer to its caller, until the worker
        has gone (it overran, ran out of memory or died) or the pool has closed."""
        sent = 0  # how many of ``lane`` are in the worker's pipe, the first one being parsed
        deadline = 0.0  # when the worker must have answered the first one
        try:
            while True:
                if not sent and not worker.running():  # died idle (the OOM killer): no job lost
                    return
                for task in islice(lane, sent, None):
                    with self._lock:
                        task.worker = worker
                        if not sent:
                            task.started = True
                            deadline = time.monotonic() + self.timeout
                    worker.submit(task.job)
                    sent += 1
                if not worker.conn.poll(max(deadline - time.monotonic(), 0.0)):
                    self._retire(worker)  # before its caller hears of it
                    task = lane.popleft()
                    task.fail(ParseError(task.job.url, self._overran()))
                    return
                reply: _Reply = worker.conn.recv()
                with self._lock:
                    task = lane.popleft()
                    task.worker = None  # answered: cancelling it now stops nothing
                    sent -= 1
                    if sent:  # the worker has started the next one
                        lane[0].started = True
                deadline = time.monotonic() + self.timeout
                if reply.out_of_memory:  # its heap may stay fragmented; a new worker starts clean
                    self._retire(worker)  # before its caller hears of it
                try:
                    task.future.set_result(self._result(reply, task.job.url))
                except Exception as error:  # the parse's own error, for its caller
                    task.fail(error)
                if reply.out_of_memory or not self._refill(lane):
                    return
        except (EOFError, OSError):
            self._died(worker, lane)
        finally:
            self._retire(worker)

    def _died(self, worker: _Worker, lane: deque[_Task]) -> None:
        """``worker``'s connection ended with ``lane`` in it: the job it was parsing fails,
        unless this process stopped the worker for another reason; the jobs behind it go on."""
        stopped = worker.retired  # by this process: the pool closed, or a caller gave up
        code = worker.reap()
        task = lane[0]
        if self._closed:
            return  # the lane ends, and fails every job it holds as abandoned
        if stopped and not task.cancelled and code == -signal.SIGKILL:
            return  # stopped for a job whose caller gave up, just as it answered: parse again
        lane.popleft()
        if code == -signal.SIGALRM:  # the worker's own backstop against overruns
            message = self._overran()
        else:
            message = f"the parse worker died ({_exit_description(code)}); the feed was abandoned"
        task.fail(ParseError(task.job.url, message))

    def _retire(self, worker: _Worker) -> None:
        worker.close()
        with self._lock:
            self._workers.discard(worker)

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


@dataclass(eq=False, slots=True)
class _Task:
    """A job on its way through the pool. ``worker`` and ``started`` change under the pool's
    lock: the worker it was sent to, and whether that worker is parsing it (not only holding
    it in its pipe)."""

    job: _Job
    future: Future[ParsedFeed] = field(default_factory=Future)
    worker: _Worker | None = None
    started: bool = False
    cancelled: bool = False  # its caller stopped waiting

    def fail(self, error: BaseException) -> None:
        if not self.future.cancelled():  # else no one is waiting for it
            self.future.set_exception(error)


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
    """One worker process and this end of its connection. It parses one job at a time; jobs
    given to ``submit`` wait in its pipe. A thread of its own sends them: a job bigger than
    the pipe holds is only read once the worker has written its answer to the previous one,
    and the answer must be read meanwhile by whoever waits for it."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection[_Job, Any]) -> None:
        self.process = process
        self.conn = conn
        self.ready = False  # it said so: imports done, limit set
        self.retired = False  # killed, or being killed: it gets no more jobs
        self._outbox: SimpleQueue[_Job | None] = SimpleQueue()
        self._sender: threading.Thread | None = None

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

    def submit(self, job: _Job) -> None:
        """Send ``job`` after those submitted before it, without waiting for it to be sent."""
        if self._sender is None:
            self._sender = threading.Thread(
                target=self._send_jobs, name=f"parse-send-{self.process.pid}", daemon=True
            )
            self._sender.start()
        self._outbox.put(job)

    def _send_jobs(self) -> None:
        while (job := self._outbox.get()) is not None:
            try:
                self.conn.send(job)
            except OSError:  # the worker is gone: whoever waits for its answer sees it too
                return

    def kill(self) -> None:
        self.retired = True
        self.process.kill()

    def close(self) -> None:
        self.kill()
        self.process.wait()
        if self._sender is not None:  # its send, if any, failed when the worker died
            self._outbox.put(None)
            self._sender.join()
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
