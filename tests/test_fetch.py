"""Fetching against a real HTTP server on 127.0.0.1 (and httpx.MockTransport for what a
well-behaved local server will not do)."""

from __future__ import annotations

import asyncio
import gzip
import select
import socket
from pathlib import Path

import httpcore
import httpx
import pytest

from tests.servers import FeedServer, LocalServer, Request, Response, running
from watcher import __version__
from watcher import fetch as fetch_module
from watcher.errors import FetchError
from watcher.fetch import Limits, _Backend, fetch, make_client

pytestmark = pytest.mark.anyio

LIMITS = Limits(timeout=5, max_bytes=64 * 1024, max_redirects=2)


async def get(url: str, limits: Limits = LIMITS, **validators: str | None):  # type: ignore[no-untyped-def]
    async with make_client(limits) as client:
        return await fetch(client, url, limits=limits, **validators)


async def test_conditional_get_turns_into_not_modified(feed_server: FeedServer) -> None:
    feed_server.put("/f.xml", b"<rss/>")
    first = await get(feed_server.url("/f.xml"))
    assert (first.status, first.body) == (200, b"<rss/>")
    assert first.etag and first.last_modified
    second = await get(
        feed_server.url("/f.xml"), etag=first.etag, last_modified=first.last_modified
    )
    assert second.not_modified
    sent = feed_server.gets("/f.xml")[-1].headers
    assert sent["if-none-match"] == first.etag
    assert sent["if-modified-since"] == first.last_modified


async def test_user_agent_names_watcher_and_its_version(feed_server: FeedServer) -> None:
    feed_server.put("/f.xml", b"<rss/>")
    await get(feed_server.url("/f.xml"))
    assert f"watcher/{__version__}" in feed_server.gets("/f.xml")[0].headers["user-agent"]


@pytest.mark.parametrize(("status", "message"), [(404, "HTTP 404 Not Found"), (503, "HTTP 503")])
async def test_http_errors_are_fetch_errors(status: int, message: str) -> None:
    server = LocalServer(lambda r: Response(status, b"no"))
    with running(server), pytest.raises(FetchError, match=message) as caught:
        await get(server.base_url + "/f.xml")
    assert caught.value.url == server.base_url + "/f.xml"


async def test_redirects_are_followed_within_a_limit() -> None:
    def handle(request: Request) -> Response:
        if request.path == "/final":
            return Response(200, b"<rss/>")
        hops = int(request.path.strip("/"))
        target = "/final" if hops >= 2 else f"/{hops + 1}"
        return Response(301, b"", {"Location": target})

    with running(LocalServer(handle)) as server:
        result = await get(server.base_url + "/1")
        assert result.url == server.base_url + "/final"
        with pytest.raises(FetchError, match="more than 0 redirects"):
            await get(server.base_url + "/1", Limits(timeout=5, max_redirects=0))


async def test_size_is_capped_while_streaming_counting_decompressed_bytes() -> None:
    bomb = gzip.compress(b"<rss>" + b" " * (1024 * 1024) + b"</rss>")
    assert len(bomb) < LIMITS.max_bytes
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}
    server = LocalServer(lambda r: Response(200, bomb, headers))
    with running(server), pytest.raises(FetchError, match="response larger than 64 KiB"):
        await get(server.base_url + "/bomb.xml")


async def test_a_lying_content_length_is_not_trusted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "10"}, content=b"x" * 100_000)

    limits = Limits(max_bytes=2048)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FetchError, match="larger than"):
            await fetch(client, "https://example.org/f.xml", limits=limits)


async def test_nested_content_encodings_are_refused() -> None:
    body = gzip.compress(gzip.compress(b"<rss/>"))
    headers = {"Content-Encoding": "gzip, gzip"}
    server = LocalServer(lambda r: Response(200, body, headers))
    with running(server), pytest.raises(FetchError, match="nested content encodings"):
        await get(server.base_url + "/f.xml")


async def test_connection_refused_is_a_fetch_error() -> None:
    with running(LocalServer(lambda r: Response())) as server:
        url = server.base_url
    with pytest.raises(FetchError, match="cannot connect"):
        await get(url + "/f.xml")


async def test_file_urls_are_read_with_the_same_cap(tmp_path: Path) -> None:
    small = tmp_path / "feed.xml"
    small.write_bytes(b"<rss/>")
    assert (await get(small.as_uri())).body == b"<rss/>"
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * (LIMITS.max_bytes + 1))
    with pytest.raises(FetchError, match="larger than"):
        await get(big.as_uri())
    with pytest.raises(FetchError, match="cannot read"):
        await get((tmp_path / "absent.xml").as_uri())


async def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # listens, never accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(FetchError, match=r"timed out after 0.5s"):
            await get(f"http://127.0.0.1:{port}/f.xml", Limits(timeout=0.5))


@pytest.mark.parametrize("libc", [True, False], ids=["libc poll", "select.poll"])
async def test_a_kept_connection_the_server_closed_is_seen_as_closed(
    libc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool asks every idle connection whether its socket is readable before reusing it:
    a server that closed a kept-alive connection must not get the next request on it. Where
    ctypes finds no poll() to call, select.poll answers."""
    assert fetch_module._POLL is not None  # Linux: the libc path is the one in use
    if not libc:
        monkeypatch.setattr(fetch_module, "_POLL", None)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = await _Backend().connect_tcp(*listener.getsockname()[:2])
        peer, _ = listener.accept()
        raw = stream.get_extra_info("socket")
        assert stream.get_extra_info("server_addr") == listener.getsockname()
        assert stream.get_extra_info("is_readable") is False  # idle, still open
        peer.close()
        assert select.select([raw], [], [], 10)[0] == [raw]  # the end reached our side
        assert stream.get_extra_info("is_readable") is True
        await stream.aclose()
        assert stream.get_extra_info("is_readable") is True  # gone: its next read ends it


def test_the_pool_overrides_a_method_httpcore_still_has() -> None:
    """fetch._Pool replaces httpcore's bookkeeping method; were it renamed, the replacement
    would silently stop being called."""
    assert "_assign_requests_to_connections" in vars(httpcore.AsyncConnectionPool)


async def test_the_pool_reuses_waits_for_and_recycles_connections() -> None:
    """At most ``max_connections`` at once: the others wait their turn on the same sockets,
    and a request for another server takes the place of an idle connection."""
    ok = lambda request: Response(200, b"<rss/>")  # noqa: E731
    with running(LocalServer(ok)) as first, running(LocalServer(ok)) as second:
        async with fetch_module._Pool(max_connections=2, network_backend=_Backend()) as pool:
            answers = await asyncio.gather(
                *(pool.request("GET", first.base_url + f"/{n}.xml") for n in range(8))
            )
            assert [answer.status for answer in answers] == [200] * 8
            assert len({request.peer for request in first.requests}) == 2
            assert (await pool.request("GET", second.base_url + "/f.xml")).status == 200
            assert len(pool.connections) == 2
            assert {
                c.can_handle_request(httpcore.URL(second.base_url).origin) for c in pool.connections
            } == {True, False}


async def test_the_pool_keeps_at_most_its_keepalive_limit_of_idle_connections() -> None:
    with running(LocalServer(lambda request: Response(200, b"<rss/>"))) as server:
        pool = fetch_module._Pool(max_keepalive_connections=3, network_backend=_Backend())
        async with pool:
            answers = await asyncio.gather(
                *(pool.request("GET", server.base_url + f"/{n}.xml") for n in range(12))
            )
            assert [answer.status for answer in answers] == [200] * 12
            assert len({request.peer for request in server.requests}) > 3
            assert len(pool.connections) == 3
