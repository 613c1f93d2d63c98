"""What a "word" is, for rules and articles alike, and how a word maps back to the text it came
from. No I/O.

Queries and articles go through the same steps, one character at a time, so both sides agree
on every word and every word knows its place in the original text:

    keep:   NFKD, accents (combining marks) removed, every apostrophe made the ASCII one
    fold:   keep, then casefold (and NFKD again: casefolding can produce composed letters)
    words:  runs of letters, digits and the spacing marks that belong to them; in scripts
            written without spaces (Chinese, Japanese, Thai...) every character is a word

``words`` gives the folded words (what case-insensitive terms compare), ``exact_words`` the
same words with their case kept (what ``=US`` compares), and ``word_spans`` where each one
lies in the original string. Because every character is converted on its own, "ﬁ" -> "fi" or
"ß" -> "ss" change lengths without losing track of where a word starts and ends.

An article's fields are converted together (``folded_streams``, ``exact_words_of``): text
that is ASCII once its typography is converted (most feeds) takes one bytes.translate for all
of them; other text is converted text by text, its non-ASCII runs through per-character
tables.

``regex_text`` is what a ``/regex/`` sees: NFKC with case kept, per character cluster, and a
map back to the original offsets.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from itertools import chain

# Apostrophes that differ only in typography. U+02BC is a letter to Unicode (Ukrainian writes
# it inside words), so without this "Ukraine\u02bcs" would be one word and "Ukraine's" two.
_APOSTROPHES = "\u2018\u2019\u201b\u02bc\u2032\uff07`"

# Scripts written without spaces between words: a word there has no edges to find, so each
# character is a word of its own and a query word becomes a phrase of characters.
_UNSPACED = re.compile(
    "["
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\U00020000-\U0003134f"  # Han extensions
    "]"
)

# Hangul vowel and final-consonant jamo join the syllable before them, like combining marks.
_JAMO = "\u1160-\u11ff\ud7b0-\ud7ff"

_CACHE_LIMIT = 1 << 16  # distinct characters remembered per table; beyond it, recomputed
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_TOKEN = re.compile(r"\S+")

# ASCII needs no Unicode tables: letters and digits stay, everything else separates words.
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})
_ASCII_FOLD = {**_ASCII_SEPARATORS, **{c: chr(c).lower() for c in range(65, 91)}}


def _bytes_table(table: dict[int, str]) -> bytes:
    """An ASCII ``str.translate`` table for bytes.translate, a plain lookup per byte: several
    times faster than str.translate (and str.lower)."""
    return bytes(ord(table.get(code, chr(code))) for code in range(128)).ljust(256, b" ")


_ASCII_FOLD_BYTES = _bytes_table(_ASCII_FOLD)
_ASCII_KEEP_BYTES = _bytes_table(_ASCII_SEPARATORS)


@cache
def _marks() -> tuple[frozenset[str], frozenset[str]]:
    """(accents, word marks): combining marks to strip, and the spacing marks (Devanagari
    vowel signs, for example) that must stay inside their word although ``\\w`` omits them."""
    accents: set[str] = set()
    word_marks: set[str] = set()
    # Every mark Unicode has assigned lies below U+20000 or among the variation selectors at
    # U+E0100; scanning only those planes keeps this one-off cost near 40 ms.
    for codepoint in chain(range(0x20000), range(0xE0000, 0xE1000)):
        char = chr(codepoint)
        if unicodedata.combining(char):
            accents.add(char)
        elif unicodedata.category(char).startswith("M"):
            word_marks.add(char)
    return frozenset(accents), frozenset(word_marks)


@cache
def _strip_table() -> dict[int, str | None]:
    """A ``str.translate`` table: accents removed, every apostrophe made the ASCII one."""
    accents, _ = _marks()
    table: dict[int, str | None] = dict.fromkeys(map(ord, accents))
    table.update(dict.fromkeys(map(ord, _APOSTROPHES), "'"))
    return table


def _keep(char: str) -> str:
    return unicodedata.normalize("NFKD", char).translate(_strip_table())


def _fold(char: str) -> str:
    # Folding what ``_keep`` made, rather than the character itself, means two characters
    # with the same kept form always fold alike: an exact match implies a folded one.
    folded = unicodedata.normalize("NFKD", _keep(char).casefold())
    return folded.translate(_strip_table())


def _as_tokens(converted: str) -> str:
    """``converted`` with word characters kept, separators made spaces, and each character
    of an unspaced script set apart as a word of its own."""
    _, word_marks = _marks()
    out = []
    for char in converted:
        if _UNSPACED.match(char):
            out.append(f" {char} ")
        elif char.isalnum() or char in word_marks:  # isalnum is exactly re's [^\W_]
            out.append(char)
        else:
            out.append(" ")
    return "".join(out)


class _CharTable(dict[int, str]):
    """codepoint -> what it becomes in the token stream, worked out on first sight."""

    def __init__(self, convert: Callable[[str], str]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, codepoint: int) -> str:
        value = _as_tokens(self._convert(chr(codepoint)))
        if len(self) < _CACHE_LIMIT:
            self[codepoint] = value
        return value


_FOLD_TABLE = _CharTable(_fold)
_KEEP_TABLE = _CharTable(_keep)


def _fold_run(run: re.Match[str]) -> str:
    text = run.group()
    return _fold_word(text) if len(text) <= _RUN_CACHED else text.translate(_FOLD_TABLE)


def _keep_run(run: re.Match[str]) -> str:
    text = run.group()
    return _keep_word(text) if len(text) <= _RUN_CACHED else text.translate(_KEEP_TABLE)


# Runs of non-ASCII characters are mostly words, which recur: short ones are remembered.
_RUN_CACHED = 24


@lru_cache(maxsize=_CACHE_LIMIT)
def _fold_word(run: str) -> str:
    return run.translate(_FOLD_TABLE)


@lru_cache(maxsize=_CACHE_LIMIT)
def _keep_word(run: str) -> str:
    return run.translate(_KEEP_TABLE)


# The non-ASCII characters of most English news text: quotes, dashes, no-break space.
_TYPOGRAPHY = "\u2019\u2018\u201c\u201d\u2014\u2013\u00a0\u2026\u00ab\u00bb"


@cache
def _typography(*, keep: bool) -> tuple[tuple[str, str], ...]:
    table = _KEEP_TABLE if keep else _FOLD_TABLE
    return tuple((char, table[ord(char)]) for char in _TYPOGRAPHY)


def _without_typography(text: str, *, keep: bool) -> str:
    """``text`` with its typography already converted, as the table would: what remains is
    often plain ASCII, and the fast path takes it."""
    for char, replacement in _typography(keep=keep):
        if char in text:  # str.find is far faster than a regex scan
            text = text.replace(char, replacement)
    return text


def _as_ascii(text: str, *, keep: bool) -> str:
    """``text`` with its typography converted when that leaves ASCII of the same length (no
    offset moves), else ``text`` itself."""
    plain = _without_typography(text, keep=keep)
    return plain if plain.isascii() and len(plain) == len(text) else text


def _folded_stream(text: str) -> str:
    """``text`` folded, with one space (or more) wherever words are separated."""
    if not text.isascii():
        text = _without_typography(text, keep=False)
    if text.isascii():  # most feeds: lower() is casefold for ASCII
        return text.encode("ascii").translate(_ASCII_FOLD_BYTES).decode("ascii")
    # Only the non-ASCII runs go through the Unicode tables; the rest keeps the fast path.
    return _NON_ASCII.sub(_fold_run, text).translate(_ASCII_FOLD)


def _kept_stream(text: str) -> str:
    if not text.isascii():
        text = _without_typography(text, keep=True)
    if text.isascii():
        return text.translate(_ASCII_SEPARATORS)
    return _NON_ASCII.sub(_keep_run, text).translate(_ASCII_SEPARATORS)


def words(text: str) -> list[str]:
    """The folded words of ``text`` in order; punctuation only separates them."""
    return _folded_stream(text).split()


def folded_streams(texts: Sequence[str]) -> list[str]:
    """Each of ``texts`` folded, words separated by one space or more, with nothing else in
    it: ``stream.split()`` is ``words(text)``. Converted together when they are ASCII once
    their typography is converted."""
    joined = _joined_ascii(texts, keep=False)
    if joined is None:
        return [_folded_stream(text) for text in texts]
    return _cut(joined.encode("ascii").translate(_ASCII_FOLD_BYTES).decode("ascii"), texts)


def exact_words_of(texts: Sequence[str]) -> list[list[str]]:
    """``exact_words`` of each of ``texts``, converted together as ``folded_streams`` are."""
    joined = _joined_ascii(texts, keep=True)
    if joined is None:
        return [exact_words(text) for text in texts]
    kept = joined.encode("ascii").translate(_ASCII_KEEP_BYTES).decode("ascii")
    return [stream.split() for stream in _cut(kept, texts)]


def _joined_ascii(texts: Sequence[str], *, keep: bool) -> str | None:
    """``texts`` joined by newlines, typography converted, if that leaves ASCII of the same
    length (most feeds), else None. Every character is converted on its own, so each one
    keeps its offset: one conversion serves every text, instead of one per text."""
    joined = "\n".join(texts)
    if not joined.isascii():
        joined = _as_ascii(joined, keep=keep)
    return joined if joined.isascii() else None


def _cut(converted: str, texts: Sequence[str]) -> list[str]:
    """``converted`` (``texts`` joined by newlines, then converted) cut back into one string
    per text."""
    pieces = []
    start = 0
    for text in texts:
        end = start + len(text)
        pieces.append(converted[start:end])
        start = end + 1  # past the newline
    return pieces


def exact_words(text: str) -> list[str]:
    """The words of ``text`` with their case kept, one for each of ``words(text)``."""
    if not text.isascii():
        text = _as_ascii(text, keep=True)
    if text.isascii():  # lower() never turns an ASCII letter into a separator or back
        return text.encode("ascii").translate(_ASCII_KEEP_BYTES).decode("ascii").split()
    kept = (_kept_stream(text[start:end]).replace(" ", "") for start, end in word_spans(text))
    return list(kept)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where each of ``words(text)`` lies in ``text``: (start, end) offsets of the original."""
    if not text.isascii():
        text = _as_ascii(text, keep=False)  # same offsets: only 1:1 replacements are made
    stream = _folded_stream(text)
    spans = [token.span() for token in _TOKEN.finditer(stream)]
    if text.isascii():
        return spans
    origin = _origins(text)
    return [original_span(origin, start, end) for start, end in spans]


def _origins(text: str) -> list[int]:
    """For each character of the folded stream, the offset in ``text`` it came from, and a
    last entry for the end of the text."""
    origin: list[int] = []
    for offset, char in enumerate(text):
        width = 1 if char < "\x80" else len(_FOLD_TABLE[ord(char)])
        origin.extend([offset] * width)
    origin.append(len(text))
    return origin


# ---------------------------------------------------------------------------------------------
# What a regex sees.


@cache
def _cluster_pattern() -> re.Pattern[str]:
    """A character with the marks (and Hangul jamo) that NFKC may combine with it; ASCII
    that no mark follows goes in long runs, as nothing there can change."""
    accents, word_marks = _marks()
    joining = _ranges(sorted(accents | word_marks)) + _JAMO
    return re.compile(f"(?:[\\x00-\\x7f](?![{joining}]))+|.[{joining}]*", re.DOTALL)


def _ranges(chars: list[str]) -> str:
    """A character-class body with consecutive code points as ranges: ``re`` turns a long
    list of single characters into a slow linear scan."""
    spans: list[list[int]] = []
    for codepoint in map(ord, chars):
        if spans and spans[-1][1] == codepoint - 1:
            spans[-1][1] = codepoint
        else:
            spans.append([codepoint, codepoint])
    return "".join(
        re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in spans
    )


_APOSTROPHE_TABLE = str.maketrans(dict.fromkeys(_APOSTROPHES, "'"))


def regex_text(text: str) -> tuple[str, list[int] | None]:
    """(NFKC text with case kept and apostrophes made ASCII, origin) where ``origin[i]`` is
    the offset in ``text`` of character ``i`` (plus one final entry); None when they are
    the same string."""
    if text.isascii():
        return text, None
    pieces: list[str] = []
    origin: list[int] = []
    for cluster in _cluster_pattern().finditer(text):
        start, end = cluster.span()
        if cluster.group().isascii():
            pieces.append(cluster.group())
            origin.extend(range(start, end))
            continue
        normal = unicodedata.normalize("NFKC", cluster.group()).translate(_APOSTROPHE_TABLE)
        pieces.append(normal)
        origin.extend([start] * len(normal))
    origin.append(len(text))
    return "".join(pieces), origin


def original_span(origin: list[int] | None, start: int, end: int) -> tuple[int, int]:
    """Offsets into a converted text, mapped back to the original through ``origin``. The
    end reaches the next character that produced output of its own, so a word keeps the
    accents that were dropped from its converted form, and half a ligature is all of it."""
    if origin is None:
        return start, end
    if end <= start:
        return origin[start], origin[start]
    last, after = origin[end - 1], end
    while origin[after] <= last:  # the final entry, the text's length, stops this
        after += 1
    return origin[start], origin[after]
