"""What a rule reports beyond yes or no: the places it matched, and why it held or not. No I/O.

Query.hits(document) -> (Hit, ...);  Query.explain(document) -> Explanation; .render()
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_HITS_SHOWN = 3  # per line of an explanation; the rest are counted


@dataclass(frozen=True, slots=True)
class Hit:
    """One place a term matched: ``text`` is ``field``'s original text from ``start`` to
    ``end``. Fields with several values (tags, author) give the value's ``index``, and the
    offsets count within that value. ``term`` is the query word or entity name that matched."""

    field: str
    text: str
    start: int
    end: int
    term: str
    index: int = 0

    def describe(self) -> str:
        """``title: "NATO" at 0-4``; ``tags[1]: "Europe" at 0-6`` for a multi-valued field."""
        where = f"{self.field}[{self.index}]" if self.field in ("tags", "author") else self.field
        return f'{where}: "{self.text}" at {self.start}-{self.end}'


@dataclass(frozen=True, slots=True)
class Explanation:
    """One node of a query, evaluated against one document: did it hold, where its terms
    were found, and its parts. ``note`` says why a node failed when the parts do not."""

    description: str
    held: bool
    children: tuple[Explanation, ...] = ()
    hits: tuple[Hit, ...] = ()
    note: str = ""

    def render(self) -> str:
        """An indented tree, one line per node: ✓ held, ✗ did not."""
        return "\n".join(self._lines(0))

    def _lines(self, depth: int) -> Iterator[str]:
        yield f"{'  ' * depth}{'✓' if self.held else '✗'} {self.description}{self._detail()}"
        for child in self.children:
            yield from child._lines(depth + 1)

    def _detail(self) -> str:
        if self.hits:
            shown = [hit.describe() for hit in self.hits[:_HITS_SHOWN]]
            if len(self.hits) > _HITS_SHOWN:
                shown.append(f"+{len(self.hits) - _HITS_SHOWN} more")
            return f"  ({'; '.join(shown)})"
        return f"  ({self.note})" if self.note else ""
