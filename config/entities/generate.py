"""Regenerate the built-in entity packs: ``countries.toml`` and ``organizations.toml``.

Run from the repository root after changing ``extra.toml`` or upgrading pycountry:

    python config/entities/generate.py [--out DIR]

It reads pycountry (ISO 3166-1 names and their translations) and ``extra.toml`` (the
hand-written table for what pycountry lacks) and writes each pack, sorted by id, with a
header naming its sources. Only this script writes the packs; it needs pycountry, the daemon
does not. Stdlib and pycountry only: a file writer of its own, since the stdlib has none.

How a country becomes an entity:

    id:     slug of its short English name: ``common_name`` from extra.toml, else pycountry's,
            else its name before an inverting comma, without parentheses. Slug: accents
            removed, lower case, apostrophes and dots dropped, other runs of non-[a-z0-9]
            become one "-" ("Côte d'Ivoire" -> cote-divoire, "U.S. Virgin Islands" ->
            us-virgin-islands)
    names:  pycountry's common name, name and official name in English, then extra.toml's
            common name, capital, demonyms and names, then pycountry's translations of the
            three names into each of LANGUAGES
    exact:  extra.toml only: the acronyms (USA, DPRK...) and the names whose lower-case
            form is an ordinary word ("Turkey", French "Chili", Russian "Того")

Every pycountry name is made readable before use (``readable_forms``): a ``rewrite`` entry
in extra.toml replaces it outright; otherwise parenthesised parts go ("Holy See (Vatican
City State)" -> "Holy See"), an inverting comma is turned round and its short form kept too
("Iran, Islamic Republic of" -> "Islamic Republic of Iran", "Iran"), and a leading article
goes. A comma before a list ("Saint Helena, Ascension and Tristan da Cunha") is no
inversion and stays. Demonyms ending in -n or -i also get their plural in -s (Ukrainians,
Israelis); other plurals are written out in extra.toml.

Names are compared as the matcher sees them (``match_key``: case, accents, apostrophes and
punctuation do not count), so "Guinea-Bissau" and "Guinea Bissau" are one name. Within an
entity a repeated name is kept once. A name claimed by two entities of a pack would make a
rule match both, so it is an error unless extra.toml's ``drop`` list removes it everywhere;
that list also holds the names that are ordinary words ("Island", German for Iceland).
Stale ``drop`` and ``rewrite`` entries are errors too, so the table stays true when
pycountry changes. Whole-word matching means a name still matches inside a longer one
("Sudan" in "South Sudan"); those are different strings and are not collisions.
"""

# Cyrillic letters and typographic apostrophes here are data (Ukrainian and Russian words,
# the apostrophes pycountry writes), not look-alikes of ASCII.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import argparse
import gettext
import re
import sys
import tomllib
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pycountry

HERE = Path(__file__).resolve().parent
EXTRA = HERE / "extra.toml"
LANGUAGES = ("uk", "ru", "de", "fr", "es")
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
COUNTRY_KEYS = frozenset({"common_name", "capital", "demonyms", "names", "exact"})

# The matcher's apostrophes (watcher/rules/text.py): typographic variants count as "'".
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u02bc\u2032\uff07`", "'"))
# Words that make the text after a comma a list ("Bonaire, Sint Eustatius and Saba").
_LIST_WORDS = frozenset({"and", "und", "et", "y", "e", "і", "и", "та"})
_LEADING_ARTICLE = re.compile(r"^(?:the\s+|l['’])", re.IGNORECASE)
# Russian entries in pycountry carry a few stress marks ("Респу́блика"); news text has none.
_STRESS_MARK = re.compile(r"(?<=[\u0400-\u04ff])\u0301")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}


class PackError(Exception):
    """The hand table and pycountry disagree; the message says what to change."""


@dataclass(frozen=True)
class Entity:
    names: tuple[str, ...]
    exact: tuple[str, ...]


Pack = dict[str, Entity]


def match_key(text: str) -> tuple[str, ...]:
    """``text`` as the matcher's words: NFKC, casefolded, accents and punctuation gone."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    bare = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    return tuple(re.findall(r"[^\W_]+", bare))


def slug(name: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    bare = re.sub(r"['’.]", "", bare.lower())
    return re.sub(r"[^a-z0-9]+", "-", bare).strip("-")


def tidy(name: str) -> str:
    """One space between words, NFC, no stress marks: the same name always writes the same."""
    return unicodedata.normalize("NFC", _STRESS_MARK.sub("", " ".join(name.split())))


def readable_forms(name: str, rewrite: Mapping[str, Sequence[str]]) -> list[str]:
    """What a person would write for a pycountry name, longest form first (module docstring)."""
    if name in rewrite:
        return list(rewrite[name])
    name = tidy(re.sub(r"\s*\([^)]*\)", "", name))
    head, comma, tail = name.partition(", ")
    if not comma or _LIST_WORDS & set(tail.casefold().split()):
        return [_without_article(name)]
    if "," in tail:
        raise PackError(f"{name!r}: two commas; add a rewrite for it to extra.toml")
    joiner = "" if tail.endswith(("'", "’")) else " "  # "République islamique d'" + "Iran"
    return [_without_article(f"{tail}{joiner}{head}"), _without_article(head)]


def _without_article(name: str) -> str:
    return _LEADING_ARTICLE.sub("", name)


def plurals(demonyms: Iterable[str]) -> Iterator[str]:
    """Each demonym, followed by its plural when that is the regular -s one."""
    for demonym in demonyms:
        yield demonym
        if demonym.endswith(("n", "i")):
            yield demonym + "s"


def english_names(country: Any) -> list[str]:
    attributes = ("common_name", "name", "official_name")
    return [value for value in (getattr(country, a, None) for a in attributes) if value]


def translated_names(country: Any, catalogs: Sequence[gettext.NullTranslations]) -> list[str]:
    """The English names in each language; gettext returns a name it cannot translate as is."""
    english = english_names(country)
    return [catalog.gettext(name) for catalog in catalogs for name in english]


def hand_names(entry: Mapping[str, Any]) -> list[str]:
    common, capital = entry.get("common_name"), entry.get("capital")
    firsts = [name for name in (common, capital) if name]
    return firsts + list(plurals(entry.get("demonyms", []))) + list(entry.get("names", []))


def country_id(country: Any, entry: Mapping[str, Any]) -> str:
    short = entry.get("common_name") or getattr(country, "common_name", None)
    return slug(short or readable_forms(country.name, {})[-1])


def country_entity(
    country: Any,
    entry: Mapping[str, Any],
    catalogs: Sequence[gettext.NullTranslations],
    rewrite: Mapping[str, Sequence[str]],
) -> Entity:
    sources = english_names(country) + hand_names(entry) + translated_names(country, catalogs)
    names = [form for source in sources for form in readable_forms(source, rewrite)]
    return Entity(tuple(names), tuple(entry.get("exact", [])))


def countries(extra: Mapping[str, Any]) -> Pack:
    """Every ISO 3166-1 country, before ``finish`` removes repeats and dropped names."""
    table = extra["countries"]
    additions, rewrite = table["add"], table["rewrite"]
    _check_additions(additions)
    catalogs = [
        gettext.translation("iso3166-1", pycountry.LOCALES_DIR, [lang]) for lang in LANGUAGES
    ]
    pack: Pack = {}
    for country in pycountry.countries:
        entry = additions.get(country.alpha_2, {})
        entity_id = country_id(country, entry)
        if entity_id in pack:
            raise PackError(f"{country.alpha_2}: id {entity_id!r} taken; give it a common_name")
        pack[entity_id] = country_entity(country, entry, catalogs, rewrite)
    _check_used(rewrite, (n for c in pycountry.countries for n in _all_sources(c, catalogs)))
    return pack


def _all_sources(country: Any, catalogs: Sequence[gettext.NullTranslations]) -> list[str]:
    return english_names(country) + translated_names(country, catalogs)


def _check_additions(additions: Mapping[str, Mapping[str, Any]]) -> None:
    for code, entry in additions.items():
        if pycountry.countries.get(alpha_2=code) is None:
            raise PackError(f"countries.add.{code}: no such ISO 3166-1 alpha-2 code")
        if unknown := set(entry) - COUNTRY_KEYS:
            raise PackError(f"countries.add.{code}: unknown keys {sorted(unknown)}")


def _check_used(rewrite: Mapping[str, object], sources: Iterable[str]) -> None:
    if stale := set(rewrite) - set(sources):
        raise PackError(f"countries.rewrite: no pycountry name is {sorted(stale)}; remove them")


def organizations(extra: Mapping[str, Any]) -> Pack:
    pack: Pack = {}
    for entity_id, entry in extra["organizations"].items():
        if unknown := set(entry) - {"names", "exact"}:
            raise PackError(f"organizations.{entity_id}: unknown keys {sorted(unknown)}")
        pack[entity_id] = Entity(tuple(entry.get("names", [])), tuple(entry.get("exact", [])))
    return pack


def finish(pack: Pack, drop: Sequence[str] = ()) -> Pack:
    """Tidy every name, keep each once, remove ``drop``; then refuse what would mislead."""
    dropped = {match_key(name) for name in drop}
    finished = {
        entity_id: _finish_entity(entity_id, pack[entity_id], dropped) for entity_id in sorted(pack)
    }
    used = {key for e in pack.values() for key in map(match_key, map(tidy, e.names))}
    if stale := [name for name in drop if match_key(name) not in used]:
        raise PackError(f"drop: no entity has {stale}; remove them")
    _check_collisions(finished)
    return finished


def _finish_entity(entity_id: str, entity: Entity, dropped: set[tuple[str, ...]]) -> Entity:
    if not ID_PATTERN.fullmatch(entity_id):
        raise PackError(f"{entity_id!r}: an id is [a-z0-9][a-z0-9_-]*")
    names = _unique(entity.names, key=match_key, skip=dropped)
    exact = _unique(entity.exact, key=lambda name: (name,))
    name_keys = {match_key(name) for name in names}
    if covered := [name for name in exact if match_key(name) in name_keys]:
        raise PackError(f"{entity_id}: {covered} in exact are already matched by its names")
    return Entity(names, exact)


def _unique(
    names: Iterable[str], key: Callable[[str], Hashable], skip: Iterable[Hashable] = ()
) -> tuple[str, ...]:
    seen = set(skip)
    kept = []
    for name in map(tidy, names):
        if not match_key(name):
            raise PackError(f"{name!r}: no words in it")
        if key(name) not in seen:
            seen.add(key(name))
            kept.append(name)
    return tuple(kept)


def _check_collisions(pack: Pack) -> None:
    owners: dict[tuple[str, ...], set[str]] = {}
    for entity_id, entity in pack.items():
        for name in entity.names + entity.exact:
            owners.setdefault(match_key(name), set()).add(entity_id)
    if shared := {" ".join(k): sorted(v) for k, v in owners.items() if len(v) > 1}:
        raise PackError(f"names shared by two entities (add them to drop): {shared}")


def toml_string(text: str) -> str:
    escaped = (
        _ESCAPES.get(char) or (f"\\u{ord(char):04X}" if _is_control(char) else char)
        for char in text
    )
    return '"' + "".join(escaped) + '"'


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def toml_list(key: str, values: Sequence[str]) -> str:
    if not values:
        return f"{key} = []\n"
    items = "".join(f"    {toml_string(value)},\n" for value in values)
    return f"{key} = [\n{items}]\n"


def render(pack: Pack, sources: str) -> str:
    header = f"# generated by config/entities/generate.py from {sources}; do not edit by hand\n"
    tables = (
        f"\n[{entity_id}]\n" + toml_list("names", e.names) + toml_list("exact", e.exact)
        for entity_id, e in pack.items()
    )
    return header + "".join(tables)


def build(extra: Mapping[str, Any]) -> dict[str, str]:
    """File name -> text of every pack."""
    table = "config/entities/extra.toml"
    return {
        "countries.toml": render(
            finish(countries(extra), extra["countries"]["drop"]),
            f"pycountry {version('pycountry')} + {table}",
        ),
        "organizations.toml": render(finish(organizations(extra)), table),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    out = parser.parse_args(argv).out
    try:
        packs = build(tomllib.loads(EXTRA.read_text(encoding="utf-8")))
    except PackError as exc:
        print(f"generate.py: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for file_name, text in packs.items():
        (out / file_name).write_text(text, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
