"""Log output: human-readable lines or one JSON object per line, with secrets redacted. No I/O
beyond the stream the logs go to.

A log call about a feed, rule, channel or delivery passes its id as ``extra``
(``log.info("...", extra={"feed": feed.id})``); the human format shows it in the message, the JSON
format as its own key, so a log pipeline can filter on it.

Whatever is logged, every secret the config read (channel URLs, ``${VAR}`` and ``${file:...}``
values) is replaced by ``***`` in the final line: a library or an exception message that quotes
a URL cannot leak it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

CONTEXT_KEYS = ("feed", "rule", "channel", "delivery")
REDACTED = "***"
_secrets: tuple[str, ...] = ()


def redact(secrets: Iterable[str]) -> None:
    """From now on, replace these strings in every log line (longest first, so a URL goes
    whole before the token inside it)."""
    global _secrets
    _secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class HumanFormatter(logging.Formatter):
    """``time level logger: message``. Under systemd (``$JOURNAL_STREAM`` set) the journal
    stamps the time itself and is told each line's priority instead (``<4>`` for a warning),
    so ``journalctl -p warning`` finds the warnings."""

    def __init__(self) -> None:
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))
        layout = "%(name)s: %(message)s" if self.journal else "%(asctime)s %(levelname)-7s "
        super().__init__(layout if self.journal else layout + "%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = scrub(super().format(record))
        if not self.journal:
            return line
        priority = _PRIORITIES.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{part}" for part in line.splitlines())


# syslog priorities by logging level, for the journal
_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the ids of what
    the line is about, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = scrub(str(value))
        if record.exc_info:
            entry["traceback"] = scrub(self.formatException(record.exc_info))
        # Redacted before encoding: JSON escaping could hide a secret from a later search.
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, fmt: str = "human") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if level.upper() != "DEBUG":  # their INFO lines repeat what watcher's own say
        for chatty in ("alembic", "apscheduler"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    # Never below WARNING, even for --log-level debug: their INFO and DEBUG lines print full
    # request URLs, and a feed URL or a notification URL may carry a token.
    for leaky in ("apprise", "httpx", "httpcore"):
        logging.getLogger(leaky).setLevel(logging.WARNING)
