"""Feed documents to articles: downloaded bytes + response headers in, ``ParsedFeed`` out. No I/O.

This module owns everything between the fetched body and the ``Article`` values: decoding,
JSON Feed, entry identity (``entry_key``) and turning untrusted markup into bounded plain text
(``html_to_text``). It is the only module that imports feedparser.

    bytes -> text (BOM, UTF-8, declared charset) -> JSON Feed ? json
          : drop <!ENTITY> declarations -> feedparser
          -> one Article per entry: plain text, http(s) links, sane dates, capped lengths

It reads no files and opens no connections: feedparser only ever gets an in-memory stream of text
this module has already decoded and defused, so a body that names a path or a URL is just text.
A body that is not a readable feed raises ``ParseError`` with a one-line reason.

feedparser's own HTML sanitizer and its rewriting of links inside HTML are turned off: every HTML
field goes through ``html_to_text``, which keeps nothing of the markup but its text (no tags, no
attributes, no script or style), and links go through ``_safe_link``. On import this module
replaces one pure function inside feedparser with a memo of it (``_remembered_safe_uri``).
"""

from __future__ import annotations

import calendar
import codecs
import functools
import hashlib
import io
import json
import re
import time
import xml.sax
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import feedparser
import feedparser.mixin

from watcher.errors import ParseError
from watcher.models import Article, ParsedFeed

MAX_TITLE_CHARS = 1_000
MAX_LINK_CHARS = 2_048
MAX_NAME_CHARS = 200  # each author and each tag
MAX_NAMES = 50  # authors, and tags, per article
MAX_TEXT_CHARS = 100_000  # summary and content, each
MAX_JSON_CHARS = 10_000_000
MAX_JSON_DEPTH = 64
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)

# Read at most this many times a field's cap of raw markup: a 100 MB field costs what 2 MB does.
_MARKUP_FACTOR = 20
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = _HTML_TYPES | {"text/plain"}
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/feed+json"})


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    now: datetime,
    max_entries: int = 1000,
) -> ParsedFeed:
    """Read a feed document fetched from ``url``; keep its first ``max_entries`` entries.

    ``headers`` are the HTTP response headers (any case; empty for local files) and ``now`` is the
    fetch time, which bounds the dates. Entries sharing a key are kept once, the first. A malformed
    feed that still yields entries is returned with ``warning`` set (a partial result); anything
    that yields none raises ``ParseError``.
    """
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, not {max_entries}")
    media_type, charset = _content_type({name.lower(): value for name, value in headers.items()})
    _refuse_known_binary(body, url)
    text = _decode(body, charset).lstrip()  # whitespace before <?xml makes expat give up
    if not text:
        raise ParseError(url, "empty response")
    if _is_json(text, media_type):
        return _parse_json_feed(text, url=url, now=now, max_entries=max_entries)
    return _parse_xml_feed(text, media_type, url=url, now=now, max_entries=max_entries)


def html_to_text(html: str, *, xhtml: bool = False) -> str:
    """Plain text from an HTML fragment or page, as a reader would see it.

    Script, style and template contents are dropped, block elements and ``<br>`` become line
    breaks, entities are decoded, whitespace is collapsed and control, bidi-override and invisible
    characters are removed. Nothing of the markup itself survives: no tags, attributes (so no
    ``href``), comments or declarations. Linear time, no recursion: any nesting depth and any
    malformed markup is fine (the stdlib ``html.parser`` is quadratic on inputs like
    ``<a<a<a...``, so not used). A stray ``</br>`` is a break, as browsers read it, except in
    ``xhtml``, where it only closes its ``<br>``.
    """
    parts: list[str] = []
    for token in _HTML_TOKEN.finditer(html):
        if token["text"] is not None:
            parts.append(unescape(token["text"]))
        elif token["tag"] is not None:
            separators = _XHTML_END_TAGS if xhtml and token["close"] else _TAG_SEPARATORS
            parts.append(separators.get(token["tag"].lower(), ""))
    return _tidy_block("".join(parts))


def entry_key(*, guid: str | None, link: str | None, title: str, date: str, summary: str) -> str:
    """The stable identity of an entry within its feed: 64 hex digits.

    The entry's own id wins, stripped (the same id with edited content is the same entry); then its
    http(s) link without the fragment; then its title and raw date string, plus the summary when
    both of those are empty. Prefixes keep an id from colliding with a link that reads the same.
    """
    if guid and guid.strip():
        identity = "id:" + guid.strip()
    elif link:
        identity = "link:" + _normalised_link(link)
    else:
        identity = "text:" + "\x1f".join((title, date, "" if title or date else summary))
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def _first_per_key(articles: Iterable[Article | None]) -> tuple[Article, ...]:
    """Drop empty entries (None) and keep one article per key, the first in document order
    (normally the newest): a feed that repeats an id must not hand the store a clash."""
    unique: dict[str, Article] = {}
    for article in articles:
        if article is not None:
            unique.setdefault(article.key, article)
    return tuple(unique.values())


# --- bytes to text -------------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BINARY_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"GIF8": "a GIF image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF-": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
    b"\x1f\x8b": "gzip-compressed data",
}
_CHARSET_PARAMETER = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
_XML_DECLARED_ENCODING = re.compile(
    rb"""\A\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']"""
)
# Charsets the web really uses (Python's names for them). Anything else, such as UTF-7 or
# unicode_escape, would let a server hide markup from every check that reads the bytes.
_WEB_CHARSET = re.compile(
    r"(?:utf-8|ascii|cp\d{3,4}|iso8859-\d{1,2}|koi8-[ru]|mac-[a-z]+|tis-620|gbk|gb2312|gb18030"
    r"|big5(?:hkscs)?|euc_(?:jp|kr)|shift_jis|iso2022_jp)\Z"
)
_ASCII_PROBE = bytes(range(0x20, 0x7F))
# What browsers do (WHATWG Encoding Standard): these labels really mean the wider charset.
_WIDER_CHARSET = {"ascii": "cp1252", "iso8859-1": "cp1252", "gb2312": "gb18030"}
_REAL_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def _content_type(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """The media type (lower case, '' when absent) and charset parameter of Content-Type."""
    value = headers.get("content-type") or ""
    charset = _CHARSET_PARAMETER.search(value)
    return value.split(";", 1)[0].strip().lower(), charset.group(1) if charset else None


def _refuse_known_binary(body: bytes, url: str) -> None:
    for signature, kind in _BINARY_SIGNATURES.items():
        if body.startswith(signature):
            raise ParseError(url, f"not a feed: got {kind}")


def _decode(body: bytes, http_charset: str | None) -> str:
    """The document as text. A BOM wins, then valid UTF-8 (whatever the labels claim: a
    mislabelled charset is the common mistake), then the HTTP charset, then the XML declaration."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, "replace")
    if wide := _sniff_wide_encoding(body[:4]):
        return body.decode(wide, "replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _web_codec(http_charset) or _web_codec(_xml_declared_encoding(body))
    if declared and declared != "utf-8":
        return body.decode(declared, "replace")
    return _decode_damaged_utf8(body)


def _sniff_wide_encoding(head: bytes) -> str | None:
    """UTF-16/32 without a BOM, from where the zero bytes of '<' or '{' fall (XML 1.0, App. F)."""
    if len(head) < 4 or b"\0" not in head:
        return None
    if head[:3] == b"\0\0\0":
        return "utf-32-be"
    if head[1:] == b"\0\0\0":
        return "utf-32-le"
    if head[0] == 0 and head[2] == 0:
        return "utf-16-be"
    if head[1] == 0 and head[3] == 0:
        return "utf-16-le"
    return None


def _xml_declared_encoding(body: bytes) -> str | None:
    declared = _XML_DECLARED_ENCODING.match(body)
    return declared.group(1).decode("ascii") if declared else None


def _web_codec(label: str | None) -> str | None:
    """Python's codec for a declared charset label, if it is an ASCII-compatible web charset."""
    try:
        codec = codecs.lookup(label or "").name
    except (LookupError, ValueError):
        return None
    ascii_compatible = _ASCII_PROBE.decode(codec, "replace") == _ASCII_PROBE.decode("ascii")
    if not (_WEB_CHARSET.match(codec) and ascii_compatible):
        return None
    return _WIDER_CHARSET.get(codec, codec)


def _decode_damaged_utf8(body: bytes) -> str:
    """Invalid UTF-8 and no usable label: damaged UTF-8 if it holds any valid multi-byte
    character (only the bad bytes become U+FFFD), else an undeclared 8-bit charset, which on
    the web is nearly always windows-1252."""
    text = body.decode("utf-8", "replace")
    return text if _REAL_NON_ASCII.search(text) else body.decode("cp1252", "replace")


# --- RSS, Atom and RDF via feedparser ------------------------------------------------------

_ENTITY_DECLARATION = re.compile(r"<!ENTITY[^>]*>?", re.IGNORECASE)


def _without_entity_declarations(text: str) -> str:
    """Drop every ``<!ENTITY`` declaration, so billion-laughs, quadratic blowups and external
    entities (XXE) have nothing to expand; their references stay as literal ``&name;`` text.
    expat's own guard is not enough: feedparser's fallback parser re-expands "safe" entities."""
    return _ENTITY_DECLARATION.sub(" ", text)


_feedparser_safe_uri = feedparser.mixin.make_safe_absolute_uri


@functools.lru_cache(maxsize=16)
def _own_base(base: str) -> str:
    return _feedparser_safe_uri(base, base)  # type: ignore[no-any-return]


def _remembered_safe_uri(base: str, rel: str | None = None) -> str:
    """feedparser's ``make_safe_absolute_uri``, remembered for the call its parser makes at
    every element of a document with a base URI (ours: the feed's URL), with (base, base): that
    call costs about a quarter of feedparser's time on a news feed. The function is pure, so the
    answers are the same; a long base is not kept."""
    if rel == base and len(base) <= MAX_LINK_CHARS:
        return _own_base(base)
    return _feedparser_safe_uri(base, rel)  # type: ignore[no-any-return]


feedparser.mixin.make_safe_absolute_uri = _remembered_safe_uri


def _run_feedparser(text: str, url: str) -> Any:
    # The text is already decoded, so feedparser is told the plain truth about the bytes it gets.
    headers = {"content-type": "application/xml; charset=utf-8", "content-location": url}
    stream = io.BytesIO(text.encode("utf-8", "replace"))
    try:
        # No sanitizing or link rewriting inside HTML: html_to_text keeps only its text.
        return feedparser.parse(
            stream, response_headers=headers, resolve_relative_uris=False, sanitize_html=False
        )
    except Exception as exc:  # feedparser crashes on some hostile input (bad charrefs, GeoRSS)
        raise ParseError(url, f"feedparser failed: {_exception_line(exc)}") from exc


def _parse_xml_feed(
    text: str, media_type: str, *, url: str, now: datetime, max_entries: int
) -> ParsedFeed:
    result = _run_feedparser(_without_entity_declarations(text), url)
    entries = list(_raw(result, "entries") or ())[:max_entries]
    articles = _first_per_key(_article_from_entry(entry, base=url, now=now) for entry in entries)
    problem = _raw(result, "bozo_exception") if _raw(result, "bozo") else None
    if not articles and (problem is not None or not _raw(result, "version")):
        raise ParseError(url, _explain_no_entries(result, text, media_type, url))
    feed = _raw(result, "feed")
    return ParsedFeed(
        title=_line(_readable(*_detail(feed, "title"), MAX_TITLE_CHARS), MAX_TITLE_CHARS),
        link=_safe_link(_raw(feed, "link"), url),
        articles=articles,
        warning=f"malformed feed: {_describe(problem)}" if problem is not None else None,
        ttl=_ttl(_raw(feed, "ttl")),
        skip_hours=_skipped(text, "skipHours", "hour", _HOURS),
        skip_days=_skipped(text, "skipDays", "day", _DAYS),
    )


# RSS 2.0's own schedule: <ttl> minutes, and the hours (UTC) and days not to poll in.
# feedparser keeps only the last <hour> and <day>, so these are read from the channel header.
_HOURS = {str(hour): hour for hour in range(24)} | {f"{hour:02d}": hour for hour in range(10)}
_DAYS = {
    day: number
    for number, day in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
}
_HEADER_CHARS = 20_000  # the channel's own elements come before its items


def _ttl(value: object) -> timedelta | None:
    if not isinstance(value, str) or not value.strip().isdigit() or len(value.strip()) > 7:
        return None
    minutes = int(value.strip())
    return timedelta(minutes=minutes) if minutes > 0 else None


def _skipped(text: str, outer: str, inner: str, names: Mapping[str, int]) -> frozenset[int]:
    header = text[:_HEADER_CHARS]
    start = header.find(f"<{outer}>")
    end = header.find(f"</{outer}>", start)
    if start < 0 or end < 0:
        return frozenset()
    block = header[start:end]
    values = re.findall(rf"<{inner}>\s*([^<]{{1,12}}?)\s*</{inner}>", block)
    return frozenset(names[v.strip().lower()] for v in values if v.strip().lower() in names)


def _raw(container: Any, key: str) -> Any:
    """A feedparser value under its own name. Plain ``dict.get`` skips FeedParserDict's aliases,
    whose 'updated' fallback emits a DeprecationWarning."""
    return dict.get(container, key) if isinstance(container, dict) else None


def _article_from_entry(entry: Any, *, base: str, now: datetime) -> Article | None:
    """An Article from one feedparser entry, or None when it holds nothing to show (such as an
    ``<item>`` cut off by truncation before its first field)."""
    guid = _raw(entry, "id") if isinstance(_raw(entry, "id"), str) else None
    title = _line(_readable(*_detail(entry, "title"), MAX_TITLE_CHARS), MAX_TITLE_CHARS)
    link = _safe_link(_raw(entry, "link"), base)
    summary = _text_block(*_detail(entry, "summary"))
    content = _text_block(*_best_content(entry))
    if not (guid or title or link or summary or content):
        return None
    raw_date = _raw(entry, "published") or _raw(entry, "updated")
    return Article(
        key=entry_key(
            guid=guid,
            link=link,
            title=title,
            date=raw_date.strip() if isinstance(raw_date, str) else "",
            summary=summary,
        ),
        title=title,
        link=link,
        published=_entry_date(entry, now),
        summary=summary,
        content=content,
        authors=_entry_authors(entry),
        tags=_unique_lines(_tag_terms(entry), MAX_NAME_CHARS, MAX_NAMES),
    )


def _detail(container: Any, key: str) -> tuple[object, object]:
    """A text construct and its media type, which feedparser records in ``<key>_detail``."""
    detail = _raw(container, f"{key}_detail")
    media_type = detail.get("type") if isinstance(detail, dict) else "text/html"
    return _raw(container, key), media_type


def _best_content(entry: Any) -> tuple[object, object]:
    """The longest of the entry's text or HTML content bodies (any type if it has none of those),
    and its media type."""
    bodies = [c for c in _raw(entry, "content") or () if isinstance(_raw(c, "value"), str)]
    bodies = [c for c in bodies if _raw(c, "type") in _TEXT_TYPES] or bodies
    if not bodies:
        return "", "text/plain"
    best = max(bodies, key=lambda c: len(_raw(c, "value")))
    return _raw(best, "value"), _raw(best, "type")


def _entry_authors(entry: Any) -> tuple[str, ...]:
    names = [_raw(author, "name") for author in _raw(entry, "authors") or ()]
    if not any(isinstance(name, str) and name.strip() for name in names):
        names = [_raw(entry, "author")]
    return _unique_lines(names, MAX_NAME_CHARS, MAX_NAMES)


def _tag_terms(entry: Any) -> list[Any]:
    return [_raw(tag, "term") or _raw(tag, "label") for tag in _raw(entry, "tags") or ()]


def _entry_date(entry: Any, now: datetime) -> datetime | None:
    parsed = _raw(entry, "published_parsed") or _raw(entry, "updated_parsed")
    if not isinstance(parsed, time.struct_time):
        return None
    try:
        moment = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    except (OverflowError, ValueError, OSError):  # feedparser hands out years like -1 and 99999
        return None
    return _within_window(moment, now)


# --- JSON Feed -----------------------------------------------------------------------------

# A string (escapes included, possibly unterminated) or a bracket; strings are skipped whole.
_JSON_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_FIRST_VISIBLE = re.compile(r"\s*(\S)")


def _is_json(text: str, media_type: str) -> bool:
    first = _FIRST_VISIBLE.match(text)
    first_char = first.group(1) if first else ""
    looks_json = media_type in _JSON_TYPES or media_type.endswith("+json")
    return first_char == "{" or (looks_json and first_char != "<")


def _parse_json_feed(text: str, *, url: str, now: datetime, max_entries: int) -> ParsedFeed:
    document = _load_json(text, url)
    if not isinstance(document, dict):
        raise ParseError(url, f"invalid JSON Feed: the top level is {_json_kind(document)}")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError(url, f"invalid JSON Feed: 'items' is {_json_kind(items)}, not a list")
    articles: list[Article] = []
    skipped = 0
    for item in items:
        if len(articles) == max_entries:
            break
        article = _article_from_json_item(item, base=url, now=now)
        if article is None:
            skipped += 1
        else:
            articles.append(article)
    if skipped and not articles:
        raise ParseError(url, f"invalid JSON Feed: none of its {skipped} items is usable")
    return ParsedFeed(
        title=_line(_json_str(document, "title"), MAX_TITLE_CHARS),
        link=_safe_link(document.get("home_page_url"), url),
        articles=_first_per_key(articles),
        warning=f"skipped {skipped} invalid JSON Feed item(s)" if skipped else None,
    )


def _load_json(text: str, url: str) -> Any:
    if len(text) > MAX_JSON_CHARS:
        raise ParseError(url, f"invalid JSON Feed: larger than {MAX_JSON_CHARS:,} characters")
    if _json_nesting_exceeds(text, MAX_JSON_DEPTH):
        raise ParseError(url, f"invalid JSON Feed: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:
        raise ParseError(url, f"invalid JSON Feed: {_exception_line(exc)}") from exc


def _json_nesting_exceeds(text: str, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit``, found before ``json`` recurses into them."""
    depth = 0
    for token in _JSON_STRING_OR_BRACKET.finditer(text):
        first = text[token.start()]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
    return False


def _json_int(digits: str) -> int | None:
    # Python refuses (ValueError) to convert integers of over 4,300 digits, which would fail the
    # whole document; no JSON Feed field needs more than a few digits.
    return int(digits) if len(digits) <= 100 else None


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "missing or null"
    return kinds.get(type(value), "a number")


def _json_str(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _article_from_json_item(item: object, *, base: str, now: datetime) -> Article | None:
    """An Article from one JSON Feed item, or None when the item is not an object or has nothing
    to show. Fields of the wrong type are ignored one by one, not held against the whole item."""
    if not isinstance(item, dict):
        return None
    guid = _json_id(item.get("id"))
    title = _line(_json_str(item, "title"), MAX_TITLE_CHARS)
    link = _safe_link(_json_str(item, "url") or _json_str(item, "external_url"), base)
    summary = _text_block(item.get("summary"), "text/plain")
    content = _block(_json_content(item), MAX_TEXT_CHARS)
    if not (guid or title or link or summary or content):
        return None
    raw_date = _json_str(item, "date_published") or _json_str(item, "date_modified")
    return Article(
        key=entry_key(guid=guid, link=link, title=title, date=raw_date.strip(), summary=summary),
        title=title,
        link=link,
        published=_json_date(item, now),
        summary=summary,
        content=content,
        authors=_unique_lines(_json_author_names(item), MAX_NAME_CHARS, MAX_NAMES),
        tags=_unique_lines(_json_list(item, "tags"), MAX_NAME_CHARS, MAX_NAMES),
    )


def _json_id(value: object) -> str | None:
    # JSON Feed 1.1: an id that is not a string must be coerced to one.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value).strip() or None


def _json_content(item: Mapping[str, Any]) -> str:
    as_html = _readable(item.get("content_html"), "text/html", MAX_TEXT_CHARS)
    as_text = _readable(item.get("content_text"), "text/plain", MAX_TEXT_CHARS)
    return max(as_html, as_text, key=len)


def _json_list(item: Mapping[str, Any], key: str) -> list[Any]:
    value = item.get(key)
    return value if isinstance(value, list) else []


def _json_author_names(item: Mapping[str, Any]) -> list[Any]:
    # 1.1 has a list of 'authors'; 1.0 had a single 'author' object.
    authors = [*_json_list(item, "authors"), item.get("author")]
    return [author.get("name") for author in authors if isinstance(author, dict)]


def _json_date(item: Mapping[str, Any], now: datetime) -> datetime | None:
    for key in ("date_published", "date_modified"):
        try:
            moment = datetime.fromisoformat(_json_str(item, key).strip()[:64])
            moment = moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)
        except (ValueError, OverflowError):
            continue
        return _within_window(moment, now)
    return None


# --- explaining a document with no entries -------------------------------------------------

_HTML_START = re.compile(r"<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.IGNORECASE)
_BOT_CHALLENGE = re.compile(
    r"just a moment\.\.\.|attention required|checking (?:your browser|if the site connection)"
    r"|ddos-guard|_cf_chl_opt|/cdn-cgi/challenge",
    re.IGNORECASE,
)
_HTML_ATTRIBUTE = re.compile(r"""([^\s"'=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_PAGE_HEAD_CHARS = 200_000  # where a page's <title> and <link rel="alternate"> are
_BINARY_NOISE = re.compile("[\x00-\x08\x0e-\x1f\ufffd]")


def _explain_no_entries(result: Any, text: str, media_type: str, url: str) -> str:
    problem = _raw(result, "bozo_exception") if _raw(result, "bozo") else None
    reason = _describe(problem) if problem is not None else "no RSS, Atom or RDF root element"
    if version := _raw(result, "version"):
        return f"malformed feed ({version}) with no readable entries: {reason}"
    if media_type in _HTML_TYPES or _HTML_START.search(text, 0, 4096):
        return _explain_html(text[:_PAGE_HEAD_CHARS], url)
    sample = text[:1024]
    if len(_BINARY_NOISE.findall(sample)) > len(sample) // 10:
        return "not a feed: binary data"
    return f"not a feed: {reason}"


def _explain_html(page: str, url: str) -> str:
    message = "got HTML, not a feed"
    if _BOT_CHALLENGE.search(page):
        title = _page_title(page) or "untitled"
        message += f' (a bot-challenge page, "{title}": the site blocks automated clients)'
    if advertised := _advertised_feed(page, url):
        message += f"; the page advertises {advertised}"
    return message


def _page_title(page: str) -> str:
    parts: list[str] | None = None
    for token in _HTML_TOKEN.finditer(page):
        is_title = (token["tag"] or "").lower() == "title"
        if is_title and token["close"]:
            break
        if is_title:
            parts = []
        elif parts is not None and token["text"] is not None:
            parts.append(unescape(token["text"]))
    return _line("".join(parts or ()), 100)


def _advertised_feed(page: str, base: str) -> str | None:
    """The first feed the page announces with ``<link rel="alternate" type="...">``."""
    for token in _HTML_TOKEN.finditer(page):
        if (token["tag"] or "").lower() != "link" or token["close"]:
            continue
        attributes = _html_attributes(token["attributes"][:2000])
        is_feed = attributes.get("type", "").strip().lower() in _FEED_TYPES
        if is_feed and "alternate" in attributes.get("rel", "").lower().split():
            link = _safe_link(unescape(attributes.get("href", "")), base)
            if link:
                return link
    return None


def _html_attributes(markup: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for match in _HTML_ATTRIBUTE.finditer(markup):
        name, *values = match.groups()
        attributes.setdefault(name.lower(), next((v for v in values if v is not None), ""))
    return attributes


def _describe(problem: object) -> str:
    if isinstance(problem, xml.sax.SAXParseException):
        return f"{problem.getMessage()} at line {problem.getLineNumber()}"
    return _line(str(problem), 200) or type(problem).__name__


def _exception_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_line(str(exc), 200)}"


# --- untrusted text, links and dates -------------------------------------------------------

_ATTRIBUTES = r"""(?:[^>"'=]++|=\s*+(?:"[^"]*+"?|'[^']*+'?)?|["'])*+"""
_NAME_END = r"(?=[\t\n\f\r />])"  # where HTML's tokenizer ends a tag name
_END_TAG_REST = rf"{_NAME_END}{_ATTRIBUTES}(?:>|\Z)"
# Script data ends at the first </script, as browsers read it, except after a "<!--" in which a
# "<script" opened: then the "</script" after that one ends it (the old pattern of writing
# '<script ...></script>' with document.write inside <!-- ... -->). A browser may leave that
# state sooner ("<!-->"); then this drops more, never less.
_SCRIPT_DATA = (
    rf"(?:<!--(?:<script{_NAME_END}(?:(?!</script{_NAME_END}|-->).)*+(?:</script{_NAME_END})?"
    rf"|(?!</script{_NAME_END}|-->).)*+(?:-->)?"
    rf"|(?!</script{_NAME_END}).)*+"
)
# Every alternative matches once it starts and consumes what it scanned: linear on any input.
_HTML_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"  # comment
    rf"|<script\b{_ATTRIBUTES}(?:>|\Z){_SCRIPT_DATA}(?:</script{_END_TAG_REST}|\Z)"
    rf"|<(?P<raw>style|template)\b{_ATTRIBUTES}(?:>|\Z).*?(?:</(?P=raw){_END_TAG_REST}|\Z)"
    rf"|<(?P<close>/?)(?P<tag>[a-z][^\s/>]*)(?P<attributes>{_ATTRIBUTES})(?:>|\Z)"
    r"|<[!?/][^>]*+(?:>|\Z)"  # doctype, processing instruction, stray '</'
    r"|(?P<text>[^<]++|<)",  # text, or a '<' that starts nothing
    re.IGNORECASE | re.DOTALL,
)
_BLOCK_TAGS = {
    *("address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl"),
    *("dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5"),
    *("h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table"),
    *("tbody", "tfoot", "thead", "tr", "ul"),
}
_TAG_SEPARATORS = {**dict.fromkeys(_BLOCK_TAGS, "\n"), "td": " ", "th": " ", "img": " "}
# In XHTML (feedparser writes an Atom xhtml <br/> as <br></br>) a void element's end tag adds
# nothing to the break or space its start tag made.
_XHTML_END_TAGS = {tag: s for tag, s in _TAG_SEPARATORS.items() if tag not in {"br", "hr", "img"}}

_LINE_BREAKS = re.compile("\r\n?|[\x85\u2028\u2029]")
# C0 and C1 controls (whitespace ones are handled as whitespace), zero-width space, word joiner
# and BOM, bidi embeddings, overrides and isolates, non-characters, lone surrogates. ZWJ and ZWNJ
# stay: emoji sequences and Persian and Indic spelling need them.
_UNSAFE_CHARS = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u2060\ufeff"
    "\u202a-\u202e\u2066-\u2069\ufffe\uffff\ud800-\udfff]"
)
_WHITESPACE = re.compile(r"\s+")
# What urlsplit would call an http(s) URL with a host; urljoin has already parsed it.
_HTTP_URL = re.compile(r"https?://[^/?#]", re.IGNORECASE)
_EXTRA_NEWLINES = re.compile(r"\n{3,}")


def _readable(value: object, media_type: object, cap: int) -> str:
    """Plain text of a field that may hold HTML; reads at most a bounded prefix of the markup."""
    if not isinstance(value, str):
        return ""
    markup = value[: cap * _MARKUP_FACTOR]
    if media_type not in _HTML_TYPES:
        return markup
    return html_to_text(markup, xhtml=media_type == "application/xhtml+xml")


def _tidy_block(text: str) -> str:
    """Text safe to store and show: line breaks kept (at most one blank line), spaces collapsed."""
    text = _UNSAFE_CHARS.sub("", _LINE_BREAKS.sub("\n", text))
    # str.split() knows the same whitespace as \s, and is several times faster than a regex here.
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _EXTRA_NEWLINES.sub("\n\n", text)
    return text.strip()


def _block(text: str, cap: int) -> str:
    return _tidy_block(text[: cap * _MARKUP_FACTOR])[:cap].rstrip()


def _text_block(value: object, media_type: object) -> str:
    """A text or HTML field as a capped block of plain text."""
    text = _readable(value, media_type, MAX_TEXT_CHARS)
    if media_type not in _HTML_TYPES:  # html_to_text has tidied it already
        text = _tidy_block(text)
    return text[:MAX_TEXT_CHARS].rstrip()


def _line(text: str, cap: int) -> str:
    """One line of safe text: no controls or line breaks, whitespace collapsed, at most ``cap``."""
    text = text[: cap * _MARKUP_FACTOR]
    # Printable means no controls, invisible characters or whitespace other than the space.
    if not text.isprintable() or "  " in text:
        text = _WHITESPACE.sub(" ", _UNSAFE_CHARS.sub("", text))
    return text.strip()[:cap].rstrip()


def _unique_lines(values: Iterable[object], cap: int, limit: int) -> tuple[str, ...]:
    """Clean, non-empty, distinct strings in their first order, at most ``limit`` of them."""
    seen: dict[str, None] = {}
    for value in values:
        if len(seen) == limit:
            break
        if isinstance(value, str) and (clean := _line(value, cap)):
            seen.setdefault(clean)
    return tuple(seen)


def _safe_link(value: object, base: str) -> str | None:
    """``value`` as an absolute http(s) URL, resolved against ``base``; None for javascript:,
    data:, file:, mailto:, junk, or anything longer than MAX_LINK_CHARS (a cut URL is wrong)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LINK_CHARS:
        return None
    try:
        absolute = urljoin(base, _line(value, MAX_LINK_CHARS).replace(" ", "%20"))
    except ValueError:  # e.g. an unbalanced '[' in the host
        return None
    if not _HTTP_URL.match(absolute) or len(absolute) > MAX_LINK_CHARS:
        return None
    return absolute


def _normalised_link(link: str) -> str:
    parts = urlsplit(link)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def _within_window(moment: datetime, now: datetime) -> datetime | None:
    """The date, if it could be true: feeds send 1970s zeros, unix-seconds-as-years and typos."""
    return moment if EARLIEST_DATE <= moment <= now + FUTURE_SLACK else None
