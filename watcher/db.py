"""Tables, engine and migrations. Database I/O; the queries themselves live in store.py.

The schema is owned by Alembic (``migrations/``, shipped inside the package as
``watcher._migrations``); these models are what the migrations must produce, and a test runs
``alembic check`` to catch the two drifting apart.
"""

from __future__ import annotations

import fcntl
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .errors import StorageError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Any) -> Any:
        """The bind processor, remembering its last value: a poll writes one ``now`` into
        several columns of every row (first seen, updated, last seen), and SQLite's own
        conversion (formatting the datetime as text) cost a tenth of a first pass's CPU in
        the daemon. A datetime is immutable, so the same object always converts the same;
        the memo is one tuple, replaced whole, so threads sharing it never mix two."""
        process = super().bind_processor(dialect)
        if process is None:
            return None
        memo: tuple[object, object] = (None, process(None))

        def remembered(value: datetime | None) -> object:
            nonlocal memo
            last = memo
            if last[0] is value:
                return last[1]
            converted = process(value)
            memo = (value, converted)
            return converted

        return remembered


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FeedRow(Base):
    """A configured feed and its polling state."""

    __tablename__ = "feeds"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_outcome: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # None: not to be polled (gone, or no longer configured).
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # The instance polling it now, and until when its claim holds (see Store.claim_feeds).
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    baselined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())  # this streak's start
    health_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # for this streak
    moved_to: Mapped[str | None] = mapped_column(Text)  # after a 301/308; polled instead of url
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # 410: no longer polled
    body_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of the last 200 body
    # What the feed says of its own schedule: RSS <ttl> or Cache-Control max-age (seconds),
    # and RSS <skipHours> (0-23, UTC) / <skipDays> (0 = Monday).
    ttl: Mapped[int | None] = mapped_column(Integer)
    skip_hours: Mapped[list[int] | None] = mapped_column(JSON)
    skip_days: Mapped[list[int] | None] = mapped_column(JSON)


class ArticleRow(Base):
    """One stored entry; unique per (feed, entry key)."""

    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("feed_id", "key"),
        Index("ix_articles_feed_id_last_seen_at", "feed_id", "last_seen_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed_id: Mapped[str] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    # sha256 of the link: one story re-published under a new guid is found by it (an index
    # on the link itself could exceed PostgreSQL's btree row limit on long URLs).
    link_key: Mapped[str | None] = mapped_column(String(64), index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    summary: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    authors: Mapped[list[str]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The last time the feed's document listed it: an entry still listed is never pruned
    # (pruning it would make it look new, and alert, the next time the document changes).
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MatchRow(Base):
    """A rule matched an article; at most once per (article, rule)."""

    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("article_id", "rule"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(100))
    terms: Mapped[list[str]] = mapped_column(JSON)
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FeedEventRow(Base):
    """A feed started failing, or recovered: what health alerts are about."""

    __tablename__ = "feed_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed_id: Mapped[str] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(20))  # failing, recovered
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class DeliveryRow(Base):
    """One message to one channel: the outbox, written in the transaction that made it due.
    It is about either a match (an alert) or a feed event (a health alert)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("match_id", "channel"),
        UniqueConstraint("event_id", "channel"),
        CheckConstraint("(match_id IS NULL) <> (event_id IS NULL)", name="about_one_thing"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    match_id: Mapped[int | None] = mapped_column(ForeignKey("matches.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("feed_events.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))  # pending, retrying, sent, dead
    # Why a pending delivery waits: None (it goes now), "digest", "quiet" or "rate_limit";
    # deliveries held for the same reason go out together as one message.
    hold: Mapped[str | None] = mapped_column(String(20))
    lease_owner: Mapped[str | None] = mapped_column(String(100))  # the instance sending it
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobRow(Base):
    """A periodic task that runs once per period across all instances (retention)."""

    __tablename__ = "jobs"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_run_by: Mapped[str | None] = mapped_column(String(100))


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":  # psycopg 3, not SQLAlchemy's default psycopg2
        return create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent.mkdir(
            parents=True, exist_ok=True
        )
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@contextmanager
def single_instance(url: str) -> Iterator[bool]:
    """Hold the SQLite database for this process (yields True when it did): a second daemon
    on the same file is refused with a clear message instead of both polling and alerting
    twice. (PostgreSQL is shared safely by many instances.) The lock is ``flock`` on a file
    beside the database, released by the kernel even when the holder is killed."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield False  # shared safely (PostgreSQL), or private to this process (in memory)
        return
    path = Path(str(parsed.database)).resolve()
    lock_path = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StorageError(
                f"another watcher (pid {holder}) is already running on {path}; one SQLite "
                "database serves one instance (use PostgreSQL to run several)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield True
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def migrations_dir() -> Path:
    """Installed: the ``watcher._migrations`` package. Run from a checkout without installing
    (``python -m watcher`` in the repository): the top-level ``migrations/`` folder."""
    try:
        module = importlib.import_module("watcher._migrations")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "migrations"
    return Path(str(module.__file__)).parent


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["engine"] = engine
    return config


MIGRATION_LOCK = 0x77617463  # "watc": PostgreSQL advisory lock key for schema changes


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; safe to run on every start, also by several
    instances starting at once on one PostgreSQL database (they take turns)."""
    config = alembic_config(engine)
    if engine.dialect.name != "postgresql":
        command.upgrade(config, revision)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
