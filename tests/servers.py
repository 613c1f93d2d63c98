"""Real HTTP servers on 127.0.0.1 for tests: feeds to poll, and receivers for Apprise's json://.

Each runs in a thread of the test process. Waiting is done on a condition with a deadline,
never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the server answered; 0 while it is still being handled
    received: float = field(default_factory=time.monotonic)
    peer: tuple[str, int] = ("", 0)  # the client's address: one per connection

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class LocalServer:
    """A threaded HTTP server on an ephemeral port; every request is recorded."""

    def __init__(self, handle: Handler) -> None:
        self.requests: list[Request] = []
        self._changed = threading.Condition()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    peer=self.client_address[:2],
                )
                # Recorded on arrival (a handler may hold it), and again once answered, before
                # the client sees the answer.
                with server._changed:
                    server.requests.append(request)
                    server._changed.notify_all()
                response = handle(request)
                with server._changed:
                    request.status = response.status
                    server._changed.notify_all()
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait_for(self, predicate: Callable[[list[Request]], bool], timeout: float = 20.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.requests), timeout):
                raise AssertionError(f"timed out; requests so far: {self.requests}")


class FeedServer(LocalServer):
    """Serves feeds set with ``put``; answers conditional GETs with 304 like a good server."""

    def __init__(self) -> None:
        self.feeds: dict[str, Response] = {}
        super().__init__(self._respond)

    def url(self, path: str) -> str:
        return self.base_url + path

    def put(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/rss+xml; charset=utf-8",
        status: int = 200,
    ) -> None:
        headers = {"Content-Type": content_type}
        if status == 200:
            headers["ETag"] = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["Last-Modified"] = format_datetime(datetime.now(UTC), usegmt=True)
        self.feeds[path] = Response(status, body, headers)

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _respond(self, request: Request) -> Response:
        feed = self.feeds.get(request.path)
        if feed is None:
            return Response(404, b"not found")
        etag = feed.headers.get("ETag")
        if etag and request.headers.get("if-none-match") == etag:
            return Response(304, b"", {"ETag": etag})
        return feed


class Receiver(LocalServer):
    """Accepts Apprise ``json://`` posts; ``status`` can be set to make it fail."""

    def __init__(self) -> None:
        self.status = 200
        super().__init__(lambda request: Response(self.status, b"{}"))

    def url(self, path: str = "/") -> str:
        return "json://" + self.base_url.removeprefix("http://") + path

    def messages(self, path: str | None = None) -> list[dict[str, Any]]:
        return [
            r.json()
            for r in self.requests
            if r.method == "POST" and (path is None or r.path == path) and 200 <= r.status < 400
        ]


@contextmanager
def running(server: LocalServer) -> Iterator[LocalServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def rss(items: list[dict[str, str]], title: str = "Test wire") -> bytes:
    """An RSS 2.0 document; each item may have guid, title, link, description, pubDate."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<rss version="2.0"><channel><title>{escape(title)}</title>',
        "<link>https://example.org/</link><description>tests</description>",
    ]
    for item in items:
        parts.append("<item>")
        for tag in ("guid", "title", "link", "description", "pubDate"):
            if tag in item:
                parts.append(f"<{tag}>{escape(item[tag])}</{tag}>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()
