"""The exceptions watcher raises, in one place. No I/O.

    WatcherError
     ├── ConfigError          a user's config is wrong: key path, bad value, what was expected
     ├── RuleError            a rule's match string cannot be compiled
     │    └── QuerySyntaxError    with the position of the mistake
     ├── FeedError(url)       one feed failed; recorded on that feed, never stops the others
     │    ├── FetchError          network, HTTP status, size cap, redirects
     │    └── ParseError          the bytes are not a feed we can read
     ├── StorageError         the database failed; the cause is chained
     └── NotifyError          a channel could not be built or reached

An exception that is not a WatcherError is a bug: it is logged loudly and allowed to surface.
"""

from __future__ import annotations

from datetime import timedelta


class WatcherError(Exception):
    """Base of every error watcher raises on purpose."""


class ConfigError(WatcherError):
    """The configuration is invalid. ``problems`` holds one line per mistake."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid config {source}" if source else "invalid config"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class RuleError(WatcherError):
    """A rule's ``match`` string is not valid."""


class QuerySyntaxError(RuleError):
    """A syntax error at ``position`` (0-based) in ``query``; ``str()`` shows a caret."""

    def __init__(self, message: str, query: str, position: int) -> None:
        self.message = message
        self.query = query
        self.position = position
        super().__init__(f"{message} at column {position + 1}\n    {query}\n    {' ' * position}^")


class FeedError(WatcherError):
    """A feed could not be polled. ``kind`` is 'fetch' or 'parse'."""

    kind = "feed"

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.message = message
        super().__init__(message)


class FetchError(FeedError):
    """No body: ``status`` is the HTTP status when the server answered with an error, and
    ``retry_after`` what it asked us to wait (429, 503)."""

    kind = "fetch"

    def __init__(
        self,
        url: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(url, message)
        self.status = status
        self.retry_after = retry_after

    @property
    def gone(self) -> bool:
        """410 Gone: the server says the feed was removed for good."""
        return self.status == 410


class ParseError(FeedError):
    kind = "parse"


class StorageError(WatcherError):
    """The database could not do what was asked; the driver's error is the cause."""


class NotifyError(WatcherError):
    """A notification channel is unusable (bad URL, unknown scheme)."""
