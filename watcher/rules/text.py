"""What a "word" is, for rules and articles alike, and the per-document word index. No I/O.

Queries and articles go through the same two steps, so both sides agree on every word:

    normalise: NFKC, casefold, strip accents (NFKD minus combining marks), one apostrophe
    words:     runs of letters, digits and the marks that belong to them; in scripts written
               without spaces (Chinese, Japanese, Thai...) every character is a word

A ``Document`` builds its ``TextIndex`` (word -> positions) once, on first use, so a single
article can be tested against thousands of compiled rules without re-reading its text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import chain

# Apostrophes that differ only in typography. U+02BC is a letter to Unicode (Ukrainian writes
# it inside words), so without this "Ukraine\u02bcs" would be one word and "Ukraine's" two.
_APOSTROPHES = "\u2018\u2019\u201b\u02bc\u2032\uff07`"

# Scripts written without spaces between words: a word there has no edges to find, so each
# character is a word of its own and a query word becomes a phrase of characters.
_UNSPACED = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\U00020000-\U0003134f"  # Han extensions
)


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
def _fold_table() -> dict[int, str | None]:
    """A ``str.translate`` table: accents removed, every apostrophe made the ASCII one."""
    accents, _ = _marks()
    table: dict[int, str | None] = dict.fromkeys(map(ord, accents))
    table.update(dict.fromkeys(map(ord, _APOSTROPHES), "'"))
    return table


@cache
def _word_pattern() -> re.Pattern[str]:
    _, word_marks = _marks()
    marks = "".join(re.escape(mark) for mark in sorted(word_marks))
    # Underscore is left out of words so that "#nato_summit" still contains "nato".
    return re.compile(f"[{_UNSPACED}]|(?:[^\\W_{_UNSPACED}]|[{marks}])+")


def normalise(text: str) -> str:
    """Fold ``text`` so that case, accents, compatibility forms and apostrophes do not count."""
    if text.isascii():  # most feeds: nothing to decompose, and casefold is all that is needed
        return text.casefold()
    folded = unicodedata.normalize("NFKC", text).casefold()
    bare = unicodedata.normalize("NFKD", folded).translate(_fold_table())
    return unicodedata.normalize("NFC", bare)


def words(text: str) -> list[str]:
    """The normalised words of ``text`` in order; punctuation only separates them."""
    return _word_pattern().findall(normalise(text))


@dataclass(frozen=True, slots=True)
class TextIndex:
    """Where each word of a document occurs.

    Fields are laid end to end with one unused position between them, so a phrase can never
    run from the title into the summary, or from one tag into the next. (One index instead of
    one per field: a rule term costs one lookup however many tags the article has.)
    """

    positions: Mapping[str, AbstractSet[int]]

    @classmethod
    def build(cls, fields: Iterable[str]) -> TextIndex:
        positions: dict[str, set[int]] = {}
        position = 0
        for field_text in fields:
            for word in words(field_text):
                positions.setdefault(word, set()).add(position)
                position += 1
            position += 1  # the gap that keeps phrases inside one field
        return cls(positions)

    def contains(self, phrase: Sequence[str]) -> bool:
        """True when the words of ``phrase`` occur one after another (one word: anywhere)."""
        if len(phrase) == 1:
            return phrase[0] in self.positions
        following: list[AbstractSet[int]] = []
        for word in phrase:
            found_at = self.positions.get(word)
            if found_at is None:
                return False
            following.append(found_at)
        starts, *rest = following
        return any(
            all(start + offset in found_at for offset, found_at in enumerate(rest, 1))
            for start in starts
        )


@dataclass(frozen=True)
class Document:
    """An article's text as rules see it: plain text, HTML already stripped by the caller."""

    title: str
    summary: str = ""
    content: str = ""
    tags: tuple[str, ...] = ()

    # Not slots=True: cached_property keeps its value in the instance __dict__, which a frozen
    # dataclass still allows, so the text is normalised once however many rules test it.
    @cached_property
    def index(self) -> TextIndex:
        """The word positions of every field, built on first use."""
        return TextIndex.build((self.title, self.summary, self.content, *self.tags))
