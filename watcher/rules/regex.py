"""User regular expressions, run by RE2 only: linear time whatever the pattern, so a rule
cannot stall the daemon. The only module that imports ``re2``; Python's ``re`` never sees a
user's pattern. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]

# RE2's budget per pattern, for the compiled program and its DFA cache together. A pattern
# too large for it fails to compile (a clean rule error); matching never needs more.
MAX_MEMORY = 1 << 20


class RegexMatch(Protocol):
    def span(self) -> tuple[int, int]: ...


class Regex(Protocol):
    def search(self, text: str) -> RegexMatch | None: ...

    def finditer(self, text: str) -> Iterator[RegexMatch]: ...


class RegexError(ValueError):
    """RE2 refused the pattern; the message is RE2's."""


def compile_regex(pattern: str, *, ignore_case: bool) -> Regex:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.case_sensitive = not ignore_case
    options.log_errors = False  # the error reaches the user as a rule error, not on stderr
    try:
        return cast(Regex, re2.compile(pattern, options))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "cannot compile"
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(text) from exc
