"""Running as a service: the health and metrics endpoint, and systemd's readiness protocol.
Network I/O: a small HTTP server on the daemon's own event loop, and datagrams to systemd.

    GET /healthz   200 while the event loop answers
    GET /readyz    200 when the config is loaded, the scheduler runs and the database answers;
                   else 503 and the reason, in one line of plain text
    GET /metrics   Prometheus' text format (metrics.py)

The server speaks just enough HTTP/1.1 for probes and Prometheus, and nothing a client sends
can block the loop or stop the daemon: one GET or HEAD per connection, its request line and
headers within 8 KiB and 5 s, no body, answered with ``Connection: close``. Anything else gets
the matching 4xx and the connection is closed. (prometheus-client's own servers run in threads
or under a web framework; this one is ~100 lines on ``asyncio.start_server``.)
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import httpx

from .config import Config
from .errors import ConfigError, StorageError
from .metrics import Metrics
from .store import Store

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192  # request line and headers
READ_TIMEOUT = 5.0  # for the whole request: a client that trickles bytes is cut off
WRITE_TIMEOUT = 10.0
SCRAPE_TIMEOUT = 10.0  # Prometheus' own default scrape timeout
PING_TIMEOUT = 3.0
MAX_CLIENTS = 32
NOTIFY_TIMEOUT = 2.0

_REQUEST_LINE = re.compile(rb"([A-Z]{1,20}) (/[\x21-\x7e]*) HTTP/1\.[01]")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\x20-\x7e\t]*)")
_TEXT = "text/plain; charset=utf-8"
_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = _TEXT
    allow: str | None = None

    @classmethod
    def text(cls, status: int, text: str, *, allow: str | None = None) -> Response:
        return cls(status, text.encode() + b"\n", allow=allow)

    def encode(self, *, head: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        if self.allow:
            lines.append(f"Allow: {self.allow}")
        return "\r\n".join([*lines, "", ""]).encode() + (b"" if head else self.body)


class BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def parse_request(head: bytes) -> tuple[str, str]:
    """The method and path of a request's head (up to the blank line), or BadRequest."""
    request_line, *header_lines = head.removesuffix(b"\r\n\r\n").split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(request_line)
    if line is None:
        raise BadRequest(Response.text(400, "malformed request line"))
    headers = [_HEADER.fullmatch(h) for h in header_lines]
    if not all(headers):
        raise BadRequest(Response.text(400, "malformed header"))
    names = {h[1].lower(): h[2].strip() for h in headers if h}
    if b"transfer-encoding" in names or names.get(b"content-length", b"0") != b"0":
        raise BadRequest(Response.text(400, "a request body is not accepted"))
    if request_line.endswith(b"1.1") and b"host" not in names:
        raise BadRequest(Response.text(400, "HTTP/1.1 request without Host"))
    method, target = line[1].decode(), line[2].decode()
    if method not in ("GET", "HEAD"):
        raise BadRequest(Response.text(405, "only GET and HEAD", allow="GET, HEAD"))
    return method, target.partition("?")[0]


@dataclass(frozen=True, slots=True)
class Readiness:
    """What /readyz checks: a loaded config, a running scheduler and a database that answers."""

    store: Store
    scheduler_running: Callable[[], bool]
    config: Config | None

    async def problem(self) -> str | None:
        """Why the daemon is not ready, in a few words; None when it is."""
        if self.config is None:
            return "config not loaded"
        if not self.scheduler_running():
            return "scheduler not running"
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await asyncio.to_thread(self.store.ping)
        except TimeoutError:
            return f"database did not answer within {PING_TIMEOUT:g}s"
        except StorageError as exc:
            log.warning("readyz: database unreachable: %s", exc)
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
            return f"database unreachable ({cause})"
        return None


class Endpoint:
    """The HTTP server; ``start`` listens, ``close`` stops it and any request in progress."""

    def __init__(
        self, metrics: Metrics, readiness: Readiness, *, read_timeout: float = READ_TIMEOUT
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        try:
            self._server = await asyncio.start_server(
                self._client, host, int(port), limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            # asyncio words a bind error at length; a host that does not resolve has errno < 0
            errno = exc.errno or 0
            reason = os.strerror(errno) if errno > 0 else exc.strerror or str(exc)
            raise ConfigError(f"watcher.http: cannot listen on {address}: {reason}") from exc
        shown = f"{address.rpartition(':')[0]}:{self.port}"  # port 0: the one picked
        log.info("serving /healthz, /readyz and /metrics on http://%s", shown)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._clients:
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            writer.close()
            return
        self._clients.add(task)
        try:
            await self._converse(reader, writer)
        except Exception:  # whatever a client does, the daemon carries on
            log.exception("http: unexpected error (a bug in watcher; please report it)")
        finally:
            self._clients.discard(task)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            async with asyncio.timeout(self.read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = parse_request(head)
            response = await self._answer(path)
        except BadRequest as exc:
            response = exc.response
        except asyncio.LimitOverrunError:
            response = Response.text(431, f"request head over {MAX_REQUEST_BYTES} bytes")
        except TimeoutError:
            response = Response.text(408, "request not received in time")
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away; nobody to answer
        with suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(WRITE_TIMEOUT):
                writer.write(response.encode(head=method == "HEAD"))
                await writer.drain()

    async def _answer(self, path: str) -> Response:
        if path == "/healthz":
            return Response.text(200, "ok")
        if path == "/readyz":
            problem = await self.readiness.problem()
            return Response.text(503, problem) if problem else Response.text(200, "ready")
        if path == "/metrics":
            try:
                async with asyncio.timeout(SCRAPE_TIMEOUT):
                    body = await asyncio.to_thread(self.metrics.exposition)
            except TimeoutError:
                return Response.text(503, f"metrics not ready within {SCRAPE_TIMEOUT:g}s")
            return Response(200, body, _PROMETHEUS_TEXT)
        return Response.text(404, "not found: try /healthz, /readyz or /metrics")


@asynccontextmanager
async def serving(
    address: str | None, metrics: Metrics, readiness: Readiness
) -> AsyncIterator[Endpoint | None]:
    """The endpoint on ``address`` while the block runs; nothing when ``address`` is None."""
    if address is None:
        yield None
        return
    endpoint = Endpoint(metrics, readiness)
    await endpoint.start(address)
    try:
        yield endpoint
    finally:
        await endpoint.close()


def check_ready(address: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Ask the daemon listening on ``address`` whether it is ready: (ready, its answer)."""
    host, _, port = address.rpartition(":")
    # A daemon listening on every address is asked on the loopback one.
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)  # noqa: S104
    url = f"http://{host}:{port}/readyz"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"no answer from {url}: {str(exc) or type(exc).__name__}"
    return response.status_code == 200, response.text.strip() or str(response.status_code)


def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd ``state`` (``READY=1``, ``STOPPING=1``) through $NOTIFY_SOCKET, as
    ``sd_notify(3)`` does. Blocks for up to 2 s: call it off the loop. Returns whether it was
    sent; without $NOTIFY_SOCKET (not started by systemd as Type=notify) it does nothing."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(NOTIFY_TIMEOUT)
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("systemd: could not send %s to $NOTIFY_SOCKET: %s", state, exc)
        return False
    return True
