"""Generated news feeds, and the local HTTP server that serves them to the end-to-end benchmark.

``Newsroom`` writes RSS 2.0 documents of realistic news entries (title, link, guid, pubDate,
author, categories and an HTML description of a few hundred characters), from the word lists,
sentence templates and entity names of ``benchmarks/rules.py``, so the benchmark's rules match
these articles the way they match that benchmark's. Everything is drawn from seeded generators:
feed ``f`` at version ``v`` is the same document on every machine and every run. A new version
puts ``NEW_PER_VERSION`` new entries on top and drops as many of the oldest.

Run as a script, it serves a folder of such documents on 127.0.0.1 (one asyncio process, every
response built in advance, so it costs the benchmark as little CPU as possible):

    GET  /feeds/<n>.xml      the document: ETag and Last-Modified, 304 to a conditional GET
                             that matches, gzip when the client accepts it, optional latency
    POST /hook/...           a webhook (Apprise ``json://``) that answers 200 at once; counted
    POST /_control/reload    body: feed numbers, one a line; read those files again (new version)
    POST /_control/mark      start counting afresh (requests, first and last request time)
    GET  /_control/stats     JSON: the counts since the last mark

    python benchmarks/feedserver.py FOLDER [--latency MS]   # prints "listening PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks import rules as corpus
from watcher.rules import Entity

ENTRIES = 50  # per document
NEW_PER_VERSION = 5
_EPOCH = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # entry 0's publication; later ones follow
_SLOT = re.compile(r"\{(\w)\}")
TAGS = ("world", "europe", "business", "politics", "sport")  # as benchmarks/rules.py tags
_MASTHEADS = corpus.split("""
Herald Courier Tribune Gazette Chronicle Observer Sentinel Dispatch Ledger Post Times Wire
Monitor Register Record Review Bulletin Journal Standard Express Mercury Examiner Argus
""")
_PLACES = corpus.split("""
Northport Eastbridge Westfield Southmere Riverton Lakeside Hillcrest Bayview Stonegate Ashford
Millbrook Fairhaven Kingsley Oakridge Pinecrest Redwater Silverton Thornbury Whitby Yarrow
""")


def _popularity(items: Sequence[str], rng: random.Random) -> tuple[list[str], list[float]]:
    """``items`` shuffled, and their cumulative weights 1 / rank^0.9 (benchmarks/rules.py's Zipf),
    so that a draw is a bisection instead of a pass over every weight."""
    order = list(items)
    rng.shuffle(order)
    weights = (1 / (rank + 1) ** 0.9 for rank in range(len(order)))
    return order, list(itertools.accumulate(weights))


class Newsroom:
    """Writes the feeds: feed ``f``'s entry ``k`` depends only on (f, k), a document only on
    (f, version). The entity pool is ``benchmarks/rules.py``'s (same seed), and entities and
    words are popular in the same Zipf-like way, so the rules built there match here."""

    def __init__(self, pool: dict[str, Entity] | None = None) -> None:
        self.pool = pool if pool is not None else corpus.entities(random.Random(corpus.SEED))
        rng = random.Random(corpus.SEED + 2)
        self._entities, self._entity_weights = _popularity(list(self.pool), rng)
        self._words, self._word_weights = _popularity(corpus.WORDS, rng)

    def document(self, feed: int, version: int = 0) -> bytes:
        """Feed ``feed``'s RSS document at ``version``: its ``ENTRIES`` newest entries."""
        newest = version * NEW_PER_VERSION + ENTRIES - 1
        title = self.masthead(feed)
        home = f"https://www.{title.lower().replace(' ', '')}.example/"
        items = "".join(self.item(feed, k, home) for k in range(newest, newest - ENTRIES, -1))
        built = format_datetime(_published(feed, newest), usegmt=True)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n'
            f"<title>{escape(title)}</title>\n<link>{home}</link>\n"
            f"<description>News from the {escape(title)}</description>\n"
            f"<language>en-gb</language>\n<lastBuildDate>{built}</lastBuildDate>\n"
            f"{items}</channel>\n</rss>\n"
        ).encode()

    def masthead(self, feed: int) -> str:
        place = _PLACES[feed % len(_PLACES)]
        name = _MASTHEADS[(feed // len(_PLACES)) % len(_MASTHEADS)]
        return f"{place} {name} {feed}"

    def item(self, feed: int, number: int, home: str) -> str:
        rng = random.Random(feed * 1_000_003 + number)
        title = self._fill(rng.choice(corpus.TITLES), rng)
        sentences = [
            self._fill(rng.choice(corpus.SENTENCES), rng) for _ in range(rng.randint(3, 4))
        ]
        description = f"<p>{escape(sentences[0])}</p><p>{escape(' '.join(sentences[1:]))}</p>"
        published = _published(feed, number)
        tags = rng.sample(TAGS, 2)
        slug = "-".join(re.findall(r"[a-z0-9]+", title.lower())[:6])
        link = f"{home}{tags[0]}/{published:%Y/%m/%d}/{slug}-{number}"
        categories = "".join(f"<category>{tag}</category>" for tag in tags)
        author = f"{rng.choice(corpus.FIRST)} {rng.choice(corpus.LAST)}"
        return (
            f"<item>\n<title>{escape(title)}</title>\n<link>{link}</link>\n"
            f'<guid isPermaLink="false">{feed}-{number}</guid>\n'
            f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate>\n"
            f"<dc:creator>{author}</dc:creator>\n{categories}\n"
            f"<description><![CDATA[{description}]]></description>\n</item>\n"
        )

    def _fill(self, template: str, rng: random.Random) -> str:
        slots: dict[str, Callable[[], str]] = {
            "E": lambda: self._name(rng),
            "N": lambda: rng.choices(self._words, cum_weights=self._word_weights)[0],
            "P": lambda: rng.choice(corpus.PHRASES),
            "V": lambda: rng.choice(corpus.VERBS),
            "W": lambda: rng.choice(corpus.DO),
            "A": lambda: rng.choice(corpus.ADJECTIVES),
            "D": lambda: rng.choice(corpus.DAYS),
            "M": lambda: rng.choice(corpus.MONTHS),
            "K": lambda: str(rng.randint(2, 40)),
        }
        text = _SLOT.sub(lambda slot: slots[slot.group(1)](), template)
        return text[0].upper() + text[1:]

    def _name(self, rng: random.Random) -> str:
        entity = self.pool[rng.choices(self._entities, cum_weights=self._entity_weights)[0]]
        return rng.choice(entity.names + entity.exact)


def _published(feed: int, number: int) -> datetime:
    return _EPOCH + timedelta(minutes=(feed % 600) + 37 * number)


# --- the server -----------------------------------------------------------------------------------


@dataclass
class _Feed:
    """One document's prepared answers: plain, gzipped, and its validators."""

    body: bytes
    gzipped: bytes
    etag: str
    last_modified: str

    @classmethod
    def read(cls, path: Path, version: int) -> _Feed:
        body = path.read_bytes()
        stamp = format_datetime(_EPOCH + timedelta(hours=version), usegmt=True)
        return cls(body, gzip.compress(body, 6, mtime=0), f'"{path.stem}-v{version}"', stamp)


@dataclass
class _Counts:
    """What the server saw since the last mark."""

    requests: int = 0
    ok: int = 0
    not_modified: int = 0
    gzipped: int = 0
    hooks: int = 0
    bytes: int = 0
    first: float | None = None  # time.time() of the first request
    last: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)


class Server:
    """Answers the feeds in ``folder`` (``<n>.xml``), the webhook and the control calls."""

    def __init__(self, folder: Path, latency: float) -> None:
        self.folder = folder
        self.latency = latency
        self.versions: dict[int, int] = {}
        self.feeds: dict[int, _Feed] = {}
        for path in folder.glob("*.xml"):
            self.feeds[int(path.stem)] = _Feed.read(path, 0)
        self.counts = _Counts()

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        counts = self.counts
        counts.requests += 1
        counts.last = time.time()
        counts.first = counts.first or counts.last
        if target.startswith("/feeds/") and method == "GET":
            return self._feed(target, headers)
        if target.startswith("/hook") and method == "POST":
            counts.hooks += 1
            return _answer(200, b"{}", {"Content-Type": "application/json"})
        if target.startswith("/_control/"):
            return self._control(target.removeprefix("/_control/"), body)
        return _answer(404, b"not found")

    def _feed(self, target: str, headers: dict[str, str]) -> bytes:
        name = target.removeprefix("/feeds/").removesuffix(".xml")
        feed = self.feeds.get(int(name)) if name.isdigit() else None
        if feed is None:
            return self._count(404, _answer(404, b"not found"))
        validators = {"ETag": feed.etag, "Last-Modified": feed.last_modified}
        etag = headers.get("if-none-match")
        since = headers.get("if-modified-since")
        if (etag == feed.etag) if etag is not None else (since == feed.last_modified):
            self.counts.not_modified += 1
            return self._count(304, _answer(304, b"", validators))
        self.counts.ok += 1
        content = {"Content-Type": "application/rss+xml; charset=utf-8", "Vary": "Accept-Encoding"}
        if "gzip" in headers.get("accept-encoding", ""):
            self.counts.gzipped += 1
            gzip_headers = {**validators, **content, "Content-Encoding": "gzip"}
            return self._count(200, _answer(200, feed.gzipped, gzip_headers))
        return self._count(200, _answer(200, feed.body, {**validators, **content}))

    def _count(self, status: int, response: bytes) -> bytes:
        self.counts.statuses[status] = self.counts.statuses.get(status, 0) + 1
        self.counts.bytes += len(response)
        return response

    def _control(self, command: str, body: bytes) -> bytes:
        if command == "reload":
            for number in map(int, body.split()):
                self.versions[number] = self.versions.get(number, 0) + 1
                path = self.folder / f"{number}.xml"
                self.feeds[number] = _Feed.read(path, self.versions[number])
        elif command == "mark":
            self.counts = _Counts()
        elif command == "stats":
            counts = {k: v for k, v in vars(self.counts).items() if k != "statuses"}
            counts["statuses"] = {str(k): v for k, v in self.counts.statuses.items()}
            return _answer(200, json.dumps(counts).encode(), {"Content-Type": "application/json"})
        else:
            return _answer(404, b"no such command")
        return _answer(200, b"ok")


_REASONS = {200: "OK", 304: "Not Modified", 404: "Not Found"}


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if status != 304:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, just enough for httpx and Apprise's requests."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request_line, *lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, target, _version = request_line.split(" ", 2)
            response = self.server.respond(method, target, headers, body)
            close = headers.get("connection", "").lower() == "close"
            if self.server.latency > 0 and not target.startswith("/_control/"):
                loop = asyncio.get_running_loop()
                loop.call_later(self.server.latency, self._write, response, close)
            else:
                self._write(response, close)

    def _write(self, response: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(response)
        if close:
            self.transport.close()


async def serve(folder: Path, latency: float) -> None:
    server = Server(folder, latency)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Connection(server), "127.0.0.1", 0, backlog=512)
    port = listener.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening {port}\n")
    sys.stdout.flush()
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the documents, named <feed number>.xml")
    parser.add_argument("--latency", type=float, default=0.0, help="ms before each answer")
    options = parser.parse_args()
    asyncio.run(serve(options.folder, options.latency / 1000))


if __name__ == "__main__":
    main()
