"""The built-in entity packs (config/entities/*.toml): well formed, holding the names users
rely on and none that would match ordinary text, and exactly what generate.py makes of
pycountry and extra.toml. Names are compared as the matcher sees them (``words``)."""

# The Cyrillic in this file is Ukrainian and Russian names, not look-alikes of Latin letters.
# ruff: noqa: RUF001

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import unicodedata
from collections.abc import Iterator
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from watcher.rules.text import words

REPO = Path(__file__).resolve().parents[1]
PACKS_DIR = REPO / "config" / "entities"
GENERATOR = PACKS_DIR / "generate.py"
PACK_FILES = sorted(p for p in PACKS_DIR.glob("*.toml") if p.stem != "extra")  # extra: its input
ENTITY_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
# Words after a comma that make the comma part of a list, not an inverted name.
LIST_WORDS = {"and", "und", "et", "y", "e", "і", "и", "та"}


@cache
def load(pack: str) -> dict[str, Any]:
    return tomllib.loads((PACKS_DIR / f"{pack}.toml").read_text(encoding="utf-8"))


def key(name: str) -> tuple[str, ...]:
    return tuple(words(name))


def shape_problems(entity_id: str, entity: Any) -> Iterator[str]:
    if not ENTITY_ID.fullmatch(entity_id):
        yield f"{entity_id}: not a valid id"
    if not isinstance(entity, dict) or set(entity) != {"names", "exact"}:
        yield f"{entity_id}: expected exactly the keys names and exact"
        return
    for field in ("names", "exact"):
        yield from (f"{entity_id}.{field}: {p}" for p in list_problems(entity[field]))
    if not entity["names"] and not entity["exact"]:
        yield f"{entity_id}: no names at all"


def list_problems(values: Any) -> Iterator[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        yield "not a list of strings"
        return
    for value in values:
        if not value.strip() or value != value.strip():
            yield f"{value!r}: empty or padded"
        if any(unicodedata.category(char) == "Cc" for char in value):
            yield f"{value!r}: control character"


def duplicate_problems(entity_id: str, entity: dict[str, list[str]]) -> Iterator[str]:
    """Names repeat if the matcher cannot tell them apart (case, accents, punctuation);
    exact ones only if identical, as their case is the point; and an exact one that a name
    already matches is no use."""
    name_keys = [key(name) for name in entity["names"]]
    if len(set(name_keys)) != len(name_keys):
        yield f"{entity_id}: repeated names {entity['names']}"
    if len(set(entity["exact"])) != len(entity["exact"]):
        yield f"{entity_id}: repeated exact {entity['exact']}"
    if covered := [e for e in entity["exact"] if key(e) in set(name_keys)]:
        yield f"{entity_id}: exact {covered} already matched by its names"


def test_both_packs_are_shipped() -> None:
    assert [p.stem for p in PACK_FILES] == ["countries", "organizations"]
    assert len(load("countries")) == 249  # every ISO 3166-1 entry
    assert len(load("organizations")) >= 30


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.stem)
def test_pack_is_well_formed(path: Path) -> None:
    pack = load(path.stem)
    problems = [
        problem
        for entity_id, entity in pack.items()
        for problem in [*shape_problems(entity_id, entity), *duplicate_problems(entity_id, entity)]
    ]
    assert problems == []


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.stem)
def test_no_name_belongs_to_two_entities(path: Path) -> None:
    owners: dict[tuple[str, ...], set[str]] = {}
    for entity_id, entity in load(path.stem).items():
        for name in entity["names"] + entity["exact"]:
            owners.setdefault(key(name), set()).add(entity_id)
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.stem)
def test_names_read_as_people_write_them(path: Path) -> None:
    """No "Bolivia, Plurinational State of", no "(Vatican City State)": a comma only before
    a list ("Saint Helena, Ascension and Tristan da Cunha")."""
    unreadable = [
        name
        for entity in load(path.stem).values()
        for name in entity["names"] + entity["exact"]
        if "(" in name or ("," in name and not LIST_WORDS & set(name.split(",", 1)[1].split()))
    ]
    assert unreadable == []


# pack.entity.field -> what it must hold
RELIED_ON = {
    "countries.ukraine.names": ["Ukraine", "Ukrainian", "Kyiv", "Україна", "Украина"],
    "countries.germany.names": ["Deutschland", "German", "Berlin", "Allemagne", "Alemania"],
    "countries.united-states.names": ["United States", "American"],
    "countries.united-states.exact": ["US", "USA", "U.S."],
    "countries.united-kingdom.names": ["Britain", "British", "London"],
    "countries.united-kingdom.exact": ["UK"],
    "countries.south-korea.names": ["South Korea", "Seoul", "Южная Корея", "Corée du Sud"],
    "countries.dr-congo.names": ["DR Congo", "Kinshasa", "República Democrática del Congo"],
    "countries.dr-congo.exact": ["DRC"],
    "countries.russia.names": ["Russia", "Россия", "Russland", "Russie", "Rusia"],
    "countries.iran.names": ["Iran", "Islamic Republic of Iran", "Islamische Republik Iran"],
    "countries.turkiye.exact": ["Turkey"],
    "organizations.nato.names": ["North Atlantic Treaty Organization"],
    "organizations.nato.exact": ["NATO", "OTAN", "НАТО"],
    "organizations.who.names": ["World Health Organization"],
    "organizations.who.exact": ["WHO"],
    "organizations.un.exact": ["UN"],
    "organizations.eu.exact": ["EU", "ЄС", "ЕС"],
}


@pytest.mark.parametrize(("where", "expected"), RELIED_ON.items(), ids=list(RELIED_ON))
def test_entity_has_the_names_users_rely_on(where: str, expected: list[str]) -> None:
    pack, entity_id, field = where.split(".")
    assert set(expected) <= set(load(pack)[entity_id][field])


# Each of these, as a case-insensitive name, would match articles about something else: an
# ordinary word ("who", "us"), or a place two entities share ("Congo" is two countries).
# Acronyms and capitalised forms of the words may appear under exact.
NEVER_NAMES = [
    "who", "us", "un", "eu", "Congo", "Korea", "Saint Martin", "Island", "Réunion",
    "turkey", "jersey", "polish", "chili", "того", "малі", "мали", "sucre", "Salvador",
]  # fmt: skip


@pytest.mark.parametrize("word", NEVER_NAMES)
def test_ordinary_words_and_shared_places_are_never_names(word: str) -> None:
    claimed = [
        f"{pack}.{entity_id}"
        for pack in ("countries", "organizations")
        for entity_id, entity in load(pack).items()
        if key(word) in {key(name) for name in entity["names"]}
    ]
    assert claimed == []


def test_generator_rewrites_the_committed_packs_exactly(tmp_path: Path) -> None:
    pytest.importorskip("pycountry", reason="pycountry, a test dependency, generates the packs")
    header = (PACKS_DIR / "countries.toml").read_text(encoding="utf-8").splitlines()[0]
    assert f"pycountry {version('pycountry')} " in header, (
        f"installed pycountry {version('pycountry')} is not the one the packs came from "
        f"({header}): install that one, or regenerate the packs and review the difference"
    )
    for run in ("first", "second"):  # twice: the output may not depend on the run
        out = tmp_path / run
        subprocess.run(
            [sys.executable, str(GENERATOR), "--out", str(out)],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        assert sorted(p.name for p in out.iterdir()) == [p.name for p in PACK_FILES]
        for committed in PACK_FILES:
            generated = (out / committed.name).read_bytes()
            assert generated == committed.read_bytes(), (
                f"{committed.name} is stale: run python config/entities/generate.py"
            )
