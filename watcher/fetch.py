"""Download a feed: conditional GET over httpx, or a local ``file:`` URL. Network and file I/O.

"Not modified" is a value (``FetchResult.not_modified``), not an exception; everything that
keeps us from getting a body is a :class:`FetchError` with a one-line reason. Sizes are counted
after decompression while streaming, so neither a lying Content-Length nor a gzip bomb can make
us hold more than ``max_bytes``.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import select
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from . import __version__
from .errors import FetchError

USER_AGENT = f"watcher/{__version__} (feed monitoring daemon; python-httpx/{httpx.__version__})"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str  # the final URL, after redirects
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    moved_to: str | None = None  # where permanent redirects (301, 308) from the start led

    @property
    def max_age(self) -> timedelta | None:
        """Cache-Control max-age: how long the server says the answer stays fresh."""
        found = _MAX_AGE.search(self.headers.get("cache-control", ""))
        return timedelta(seconds=min(int(found[1]), 10**7)) if found else None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,12})", re.IGNORECASE)
RETRY_AFTER_CAP = timedelta(days=1)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds, or an HTTP date) as a delay, at most a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value[:9]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - now
    return min(max(delay, timedelta(0)), RETRY_AFTER_CAP)


class HostGate:
    """Politeness per host: at most ``concurrency`` requests in flight to one host, and their
    starts at least ``spacing`` seconds apart, so 200 feeds on one site do not hammer it."""

    def __init__(self, concurrency: int, spacing: float) -> None:
        self.concurrency = concurrency
        self.spacing = spacing
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._turns: dict[str, asyncio.Lock] = {}
        self._last_start: dict[str, float] = {}

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        if not host:  # file: URLs
            yield
            return
        async with self._slots.setdefault(host, asyncio.Semaphore(self.concurrency)):
            async with self._turns.setdefault(host, asyncio.Lock()):
                wait = self._last_start.get(host, -1e9) + self.spacing - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_start[host] = time.monotonic()
            yield


def make_client(limits: Limits) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx's own pool, on a network backend whose streams answer "is the socket readable?"
    # cheaply: httpcore asks it of every idle connection in the pool before each request,
    # and anyio's answer looks up the socket's family and peer address (a system call) to
    # find the socket each time; that was a tenth of the daemon's CPU in a first pass.
    transport._pool = _Pool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=httpx.Limits().max_connections,
        max_keepalive_connections=httpx.Limits().max_keepalive_connections,
        keepalive_expiry=httpx.Limits().keepalive_expiry,
        network_backend=_Backend(),
    )
    return httpx.AsyncClient(
        follow_redirects=True,
        max_redirects=limits.max_redirects,
        timeout=httpx.Timeout(limits.timeout),
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
        trust_env=False,
        transport=transport,
    )


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool, with its bookkeeping in linear time. Before each request
    and after each response, httpcore's own version counts every connection once per idle
    connection, a cost that grows with the square of the pool's size: a twentieth of the CPU
    of a pass of 304s with ten connections. This one takes the same decisions in the same
    order (its tests are httpcore's behaviour as test_fetch sees it)."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        connections = self._connections
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired() or (
                # httpcore counts every connection here, idle or not
                connection.is_idle() and len(connections) > self._max_keepalive_connections
            ):
                connections.remove(connection)
                closing.append(connection)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            available = next(
                (c for c in connections if c.can_handle_request(origin) and c.is_available()),
                None,
            )
            if available is None and len(connections) >= self._max_connections:
                idle = next((c for c in connections if c.is_idle()), None)
                if idle is None:
                    continue  # the request waits for a connection
                connections.remove(idle)
                closing.append(idle)
            if available is None:
                available = self.create_connection(origin)
                connections.append(available)
            pool_request.assign_to_connection(available)
        return closing


# httpcore's type for a socket option (setsockopt's arguments)
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend (anyio), with streams that keep their socket at hand."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._poll = _Poll(cast(socket.socket | None, stream.get_extra_info("socket")))

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        if info == "is_readable":
            return self._poll.readable()
        return self._stream.get_extra_info(info)


class _PollFD(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _libc_poll() -> Callable[[Any, int, int], int] | None:
    """libc's poll(), called without releasing the GIL, where there is one."""
    try:
        found = ctypes.PyDLL(None).poll
    except (AttributeError, OSError, TypeError):  # no C library that has it
        return None
    found.argtypes = [ctypes.POINTER(_PollFD), ctypes.c_ulong, ctypes.c_int]
    found.restype = ctypes.c_int
    return cast(Callable[[Any, int, int], int], found)


_POLL = _libc_poll()


class _Poll:
    """Whether reading a socket would not block: data, or the end a closed peer left (a
    socket that is gone counts as readable: its next read ends the connection).

    httpcore asks this of every idle connection of the pool twice per request. select.poll
    answers in a microsecond, but it lets go of the GIL for the system call, and getting it
    back from a busy database thread can take up to the interpreter's switch interval (5 ms):
    two dozen such waits per request made a pass of 304s a fifth slower. libc's poll()
    through ctypes.PyDLL keeps the GIL, and a zero timeout never blocks."""

    __slots__ = ("_ref", "_socket")

    def __init__(self, sock: socket.socket | None) -> None:
        self._socket = sock  # asyncio's TransportSocket, in fact: it has fileno()
        fd = -1 if sock is None else sock.fileno()
        self._ref = ctypes.byref(_PollFD(fd, select.POLLIN, 0)) if _POLL else None

    def readable(self) -> bool:
        fd = -1 if self._socket is None else self._socket.fileno()
        if fd < 0:  # closed: its fd may be another socket's by now
            return True
        if _POLL is not None:
            return _POLL(self._ref, 1, 0) != 0
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: Limits,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET ``url``, sending the validators from the last poll."""
    if url.lower().startswith("file:"):
        return await asyncio.to_thread(read_file, url, limits.max_bytes)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        # The whole exchange, headers and body, gets one deadline: a server that trickles
        # one byte per second must not hold a poll forever.
        async with asyncio.timeout(limits.timeout):
            return await _get(client, url, headers, limits.max_bytes)
    except TimeoutError:
        raise FetchError(url, f"timed out after {limits.timeout:g}s") from None
    except httpx.TooManyRedirects:
        raise FetchError(url, f"more than {limits.max_redirects} redirects") from None
    except httpx.TimeoutException:
        raise FetchError(url, f"timed out after {limits.timeout:g}s") from None
    except httpx.DecodingError as exc:
        raise FetchError(url, f"cannot decode the response body: {exc}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(url, f"{_describe_transport_error(exc)}") from exc


async def _get(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int
) -> FetchResult:
    async with client.stream("GET", url, headers=headers) as response:
        final_url = str(response.url)
        moved_to = _moved_to(response)
        if response.status_code == 304:
            # Read the (empty) body, or httpx closes the connection instead of keeping it
            # for the next feed on this host. A 304 has no body; a server that sends one
            # anyway gets up to the usual cap read and dropped.
            await _read_capped(response, url, max_bytes)
            return FetchResult(final_url, 304, headers=_lower(response.headers), moved_to=moved_to)
        if response.status_code >= 400:
            raise FetchError(
                url,
                f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                status=response.status_code,
                retry_after=retry_after(response.headers.get("retry-after"), datetime.now(UTC))
                if response.status_code in (429, 503)
                else None,
            )
        if response.status_code != 200:
            raise FetchError(url, f"unexpected HTTP status {response.status_code}")
        encodings = [
            e for e in response.headers.get("content-encoding", "").split(",") if e.strip()
        ]
        if len(encodings) > 1:
            raise FetchError(url, "refusing a response with nested content encodings")
        body = await _read_capped(response, url, max_bytes)
        return FetchResult(final_url, 200, body, _lower(response.headers), moved_to)


def _moved_to(response: httpx.Response) -> str | None:
    """The URL that the leading run of permanent redirects points at: a 301 then a 302 means
    the feed moved for good to the 302's URL, which itself is only a temporary stop."""
    hops = [*response.history, response]
    moved = None
    for hop, following in pairwise(hops):
        if hop.status_code not in (301, 308):
            break
        moved = str(following.url)
    return moved


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decompressed bytes
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(url, f"response larger than {_human(max_bytes)} (after decompression)")
        chunks.append(chunk)
    return b"".join(chunks)


def read_file(url: str, max_bytes: int) -> FetchResult:
    """A ``file:`` feed: local demos and tests. Same size cap as the network."""
    path = Path(unquote(urlsplit(url).path))
    try:
        with path.open("rb") as handle:
            body = handle.read(max_bytes + 1)
    except OSError as exc:
        raise FetchError(url, f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(body) > max_bytes:
        raise FetchError(url, f"file larger than {_human(max_bytes)}")
    return FetchResult(url, 200, body, {})


def _lower(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    reason = str(exc) or exc.__class__.__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {reason}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f"unsupported URL: {reason}"
    return f"{exc.__class__.__name__}: {reason}"


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n / 1024:g} KiB"
