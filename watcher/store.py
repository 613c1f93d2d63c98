"""The only code that issues SQL. Database I/O, synchronous (the daemon calls it off the loop).

Storage decides nothing about feeds or rules: ``ingest`` is handed a pure ``matcher`` and writes
what it returns, so a new article, its matches and their deliveries commit together or not at
all (a transactional outbox: an alert is never lost between "stored" and "queued").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Delete,
    Engine,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from . import db
from .errors import StorageError
from .models import Article, Delivery, FeedEvent, Match
from .policy import FeedHints, HealthPolicy

Matcher = Callable[[Article], Sequence[Match]]


@dataclass(frozen=True, slots=True)
class FeedState:
    etag: str | None
    last_modified: str | None
    baselined: bool
    next_poll_at: datetime | None
    consecutive_failures: int
    moved_to: str | None = None  # polled instead of the configured URL (301/308)
    gone: bool = False  # 410: not polled until its configured URL changes
    body_hash: str | None = None
    hints: FeedHints = field(
        default_factory=FeedHints
    )  # what the feed said of its schedule when last parsed


@dataclass(frozen=True, slots=True)
class IngestResult:
    new: int
    updated: int
    matches: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class FeedSummary:
    id: str
    url: str
    title: str | None
    last_polled_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    consecutive_failures: int
    next_poll_at: datetime | None
    articles: int
    failing_since: datetime | None = None
    moved_to: str | None = None
    gone_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PruneResult:
    articles: int
    deliveries: int
    events: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery as ``watcher alerts`` shows it: the alert, and how sending it went."""

    delivery: Delivery
    status: str  # pending, retrying, sent, dead
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        try:
            engine = db.make_engine(url)
            if migrate:
                db.upgrade(engine)
        except ModuleNotFoundError as exc:
            raise StorageError(
                f"cannot open database: its driver is not installed ({exc.name}); for "
                "PostgreSQL: pip install 'watcher[postgres]'"
            ) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open database: {exc.__class__.__name__}: {exc}") from exc
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}: {exc}") from exc

    # feeds

    def sync_feeds(self, feeds: Iterable[tuple[str, str]], now: datetime | None = None) -> None:
        """Make sure every configured (id, url) has a row, due now if it is new. A changed URL
        is taken over and starts afresh: no validators, no redirect remembered, polled again
        if it was gone. A feed no longer configured is no longer polled (its articles stay)."""
        now = now or db.utcnow()
        with self._session() as session:
            if session.get_bind().dialect.name == "postgresql":  # instances starting together
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK})
            configured = set()
            for feed_id, url in feeds:
                configured.add(feed_id)
                row = session.get(db.FeedRow, feed_id)
                if row is None:
                    row = db.FeedRow(id=feed_id, url=url, consecutive_failures=0)
                    session.add(row)
                elif row.url != url:
                    row.url, row.etag, row.last_modified = url, None, None
                    row.moved_to = row.gone_at = row.body_hash = None
                if row.next_poll_at is None and row.gone_at is None:
                    row.next_poll_at = now
            connection(session).execute(
                update(db.FeedRow)
                .where(db.FeedRow.id.not_in(configured), db.FeedRow.next_poll_at.is_not(None))
                .values(next_poll_at=None)
            )

    def poll_no_later(self, deadlines: Mapping[str, datetime]) -> None:
        """Bring forward polls scheduled later than these times (an interval was shortened)."""
        with self._session() as session:
            for feed_id, deadline in deadlines.items():
                connection(session).execute(
                    update(db.FeedRow)
                    .where(db.FeedRow.id == feed_id, db.FeedRow.next_poll_at > deadline)
                    .values(next_poll_at=deadline)
                )

    # leases: several instances share one database; each feed, delivery and job goes to one

    def claim_feeds(
        self, owner: str, *, now: datetime, until: datetime, limit: int
    ) -> dict[str, FeedState]:
        """Up to ``limit`` feeds due now that no live instance holds, now held by ``owner``
        until ``until`` (or until their poll is recorded), with what a poll needs to know of
        each. Rows another transaction is claiming are skipped, not waited for (FOR UPDATE
        SKIP LOCKED on PostgreSQL; SQLite serves a single instance and ignores it)."""
        query = (
            select(*_STATE_COLUMNS)
            .where(db.FeedRow.next_poll_at <= now, _free(db.FeedRow.lease_until, now))
            .order_by(db.FeedRow.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._session() as session:
            claimed = {row.id: _state_of(row) for row in session.execute(query)}
            if claimed:
                connection(session).execute(
                    update(db.FeedRow)
                    .where(db.FeedRow.id.in_(list(claimed)))
                    .values(lease_owner=owner, lease_until=until)
                )
        return claimed

    def next_due(self, now: datetime) -> datetime | None:
        """When the next feed no instance holds is due (or a lease runs out)."""
        due = select(func.min(db.FeedRow.next_poll_at)).where(
            db.FeedRow.next_poll_at.is_not(None), _free(db.FeedRow.lease_until, now)
        )
        expiring = select(func.min(db.FeedRow.lease_until)).where(
            db.FeedRow.lease_until >= now, db.FeedRow.next_poll_at.is_not(None)
        )
        with self._session() as session:
            times = [session.scalar(due), session.scalar(expiring)]
        return min((t for t in times if t is not None), default=None)

    def release_feed(self, feed_id: str, owner: str, *, next_poll_at: datetime) -> None:
        """Give back a claimed feed without polling it, due again at ``next_poll_at``."""
        with self._session() as session:
            connection(session).execute(
                update(db.FeedRow)
                .where(db.FeedRow.id == feed_id, db.FeedRow.lease_owner == owner)
                .values(lease_owner=None, lease_until=None, next_poll_at=next_poll_at)
            )

    def release_deliveries(self, delivery_ids: Sequence[int], owner: str) -> None:
        """Give back claimed deliveries that were not sent (their channel failed)."""
        with self._session() as session:
            connection(session).execute(
                update(db.DeliveryRow)
                .where(db.DeliveryRow.id.in_(delivery_ids), db.DeliveryRow.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def renew_leases(self, owner: str, until: datetime) -> None:
        """Heartbeat: keep every claim of this live instance, feeds and deliveries."""
        with self._session() as session:
            for table in (db.FeedRow, db.DeliveryRow):
                connection(session).execute(
                    update(table).where(table.lease_owner == owner).values(lease_until=until)
                )

    def release_all(self, owner: str | None) -> None:
        """On a clean stop: whatever this instance still holds is free for the others now.
        ``None``: every instance's claims (when no other instance can be alive)."""
        with self._session() as session:
            for table in (db.FeedRow, db.DeliveryRow):
                held = (
                    table.lease_owner.is_not(None) if owner is None else table.lease_owner == owner
                )
                connection(session).execute(
                    update(table).where(held).values(lease_owner=None, lease_until=None)
                )

    def claim_job(self, name: str, owner: str, *, now: datetime, every: timedelta) -> bool:
        """Whether ``owner`` runs job ``name`` now: true for one instance per period."""
        with self._session() as session:
            if session.get(db.JobRow, name) is None:
                session.add(db.JobRow(name=name, next_run_at=now))
        with self._session() as session:
            claimed = connection(session).execute(
                update(db.JobRow)
                .where(db.JobRow.name == name, db.JobRow.next_run_at <= now)
                .values(next_run_at=now + every, last_run_by=owner)
            )
            return bool(cast(CursorResult[Any], claimed).rowcount)

    def feed_state(self, feed_id: str) -> FeedState:
        with self._session() as session:
            row = session.execute(
                select(*_STATE_COLUMNS).where(db.FeedRow.id == feed_id)
            ).one_or_none()
            if row is None:
                raise StorageError(f"feed {feed_id!r} is not in the database")
            return _state_of(row)

    def record_success(
        self,
        feed_id: str,
        *,
        now: datetime,
        outcome: str,
        next_poll_at: datetime,
        etag: str | None = None,
        last_modified: str | None = None,
        title: str | None = None,
        health: HealthPolicy | None = None,
        moved_to: str | None = None,
        body_hash: str | None = None,
        hints: FeedHints | None = None,
    ) -> bool:
        """Record a good poll (``outcome`` "ok", or "not_modified" with nothing else to keep).
        A permanent redirect is remembered, and the feed's schedule hints when it was parsed.
        If the feed had been reported failing, queue the "recovered" health alert in the same
        transaction; returns whether one was queued."""
        values: dict[str, object] = {
            "last_polled_at": now,
            "last_success_at": now,
            "last_outcome": outcome,
            "last_error": None,
            "consecutive_failures": 0,
            "failing_since": None,
            "next_poll_at": next_poll_at,
            "lease_owner": None,
            "lease_until": None,
        }
        if moved_to:
            values["moved_to"] = moved_to
        if outcome != "not_modified":
            values |= {"etag": etag, "last_modified": last_modified, "body_hash": body_hash}
            values["baselined_at"] = now  # unless it was already set: see _success_update
            if title:
                values["title"] = title
        if hints is not None:
            values["ttl"] = int(hints.ttl.total_seconds()) if hints.ttl else None
            values["skip_hours"] = sorted(hints.skip_hours) or None
            values["skip_days"] = sorted(hints.skip_days) or None
        with self._session() as session:
            # Nearly always one statement: a feed with no failure reported has nothing to undo.
            plain = connection(session).execute(
                _success_update(frozenset(values)),
                {f"new_{name}": value for name, value in values.items()} | {"row_id": feed_id},
            )
            if cast(CursorResult[Any], plain).rowcount:
                return False
            row = self._feed(session, feed_id)
            failures, since = row.consecutive_failures, row.failing_since
            alerted = row.health_alerted_at is not None
            row.last_polled_at = row.last_success_at = now
            row.last_outcome, row.last_error, row.consecutive_failures = outcome, None, 0
            row.failing_since = row.health_alerted_at = None
            row.next_poll_at = next_poll_at
            row.lease_owner = row.lease_until = None
            row.moved_to = moved_to or row.moved_to
            if outcome != "not_modified":
                row.etag, row.last_modified = etag, last_modified
                row.baselined_at = row.baselined_at or now
                row.title = title or row.title
                row.body_hash = body_hash
            if hints is not None:
                row.ttl = int(hints.ttl.total_seconds()) if hints.ttl else None
                row.skip_hours = sorted(hints.skip_hours) or None
                row.skip_days = sorted(hints.skip_days) or None
            if not (alerted and since and health and health.channels):
                return False
            event = FeedEvent("recovered", feed_id, at=now, since=since, failures=failures)
            _queue_event(session, event, health.channels)
            return True

    def record_failure(
        self,
        feed_id: str,
        *,
        now: datetime,
        error: str,
        next_poll_at: datetime | None,
        health: HealthPolicy | None = None,
    ) -> bool:
        """Record a failed poll. The first time a streak of failures crosses ``health``'s
        threshold, queue one "failing" health alert with it; returns whether one was queued.
        ``next_poll_at=None``: the feed is gone (410), is not polled again, and alerts now."""
        with self._session() as session:
            row = self._feed(session, feed_id)
            row.last_polled_at, row.last_error = now, error
            row.last_outcome = "error" if next_poll_at else "gone"
            row.consecutive_failures += 1
            row.failing_since = row.failing_since or now
            row.next_poll_at = next_poll_at
            row.lease_owner = row.lease_until = None
            row.gone_at = None if next_poll_at else now
            if health is None or not health.channels or row.health_alerted_at is not None:
                return False
            gone = row.gone_at is not None
            if not (gone or health.alarming(row.consecutive_failures, row.failing_since, now)):
                return False
            row.health_alerted_at = now
            event = FeedEvent(
                "failing",
                feed_id,
                at=now,
                since=row.failing_since,
                failures=row.consecutive_failures,
                error=error,
            )
            _queue_event(session, event, health.channels)
            return True

    @staticmethod
    def _feed(session: Session, feed_id: str) -> db.FeedRow:
        row = session.get(db.FeedRow, feed_id, with_for_update=True)
        if row is None:
            raise StorageError(f"feed {feed_id!r} is not in the database")
        return row

    def feed_summaries(self) -> list[FeedSummary]:
        counts = (
            select(db.ArticleRow.feed_id, func.count().label("n"))
            .group_by(db.ArticleRow.feed_id)
            .subquery()
        )
        query = (
            select(db.FeedRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.feed_id == db.FeedRow.id)
            .order_by(db.FeedRow.id)
        )
        with self._session() as session:
            return [
                FeedSummary(
                    id=row.id,
                    url=row.url,
                    title=row.title,
                    last_polled_at=row.last_polled_at,
                    last_outcome=row.last_outcome,
                    last_error=row.last_error,
                    consecutive_failures=row.consecutive_failures,
                    next_poll_at=row.next_poll_at,
                    articles=n,
                    failing_since=row.failing_since,
                    moved_to=row.moved_to,
                    gone_at=row.gone_at,
                )
                for row, n in session.execute(query)
            ]

    # articles, matches and the outbox

    def ingest(
        self, feed_id: str, articles: Sequence[Article], *, now: datetime, matcher: Matcher | None
    ) -> IngestResult:
        """Store ``articles``; match only the ones never seen before (``matcher=None``: the
        feed's backlog, stored silently). Edited entries are updated in place, never re-matched.

        A handful of statements per call, whatever the number of articles: one to find the
        known ones, one to mark them seen, one (executemany) for the edited ones, one bulk
        insert each for the new articles, their matches and the deliveries, and one query for
        the stories already alerted under another guid."""
        unique = list(_unique_by_key(articles))
        with self._session() as session:
            known = self._known(session, feed_id, [a.key for a in unique])
            _in_chunks(
                lambda ids: connection(session).execute(
                    update(db.ArticleRow).where(db.ArticleRow.id.in_(ids)).values(last_seen_at=now)
                ),
                [article_id for article_id, _ in known.values()],
            )
            edits = [
                {"id": known[a.key][0], "updated_at": now, **_article_fields(a)}
                for a in unique
                if a.key in known and known[a.key][1] != a.fingerprint
            ]
            if edits:
                session.execute(update(db.ArticleRow), edits)
            # Feeds list newest first; storing (and so alerting) oldest first keeps alerts in
            # the order the stories appeared.
            fresh = [a for a in reversed(unique) if a.key not in known]
            if not fresh:
                return IngestResult(new=0, updated=len(edits), matches=0, deliveries=0)
            # Core inserts on the session's connection: the ORM's bulk insert costs more CPU
            # than the statement (it maps every row's primary key back from RETURNING), and
            # a feed's first poll needs no ids at all. RETURNING in no particular order:
            # asking for the parameters' order makes SQLAlchemy insert one row per statement
            # on SQLite.
            rows = [_new_article(feed_id, a, now) for a in fresh]
            table = _table(db.ArticleRow)
            matches = deliveries = 0
            if matcher is None:
                connection(session).execute(insert(table), rows)
            else:
                inserted = connection(session).execute(
                    insert(table).returning(table.c.key, table.c.id), rows
                )
                ids = {key: article_id for key, article_id in inserted}
                found = [(ids[a.key], a, matcher(a)) for a in fresh]
                matches, deliveries = _queue_alerts(
                    session, _not_alerted_before(session, found), now
                )
        return IngestResult(
            new=len(fresh), updated=len(edits), matches=matches, deliveries=deliveries
        )

    @staticmethod
    def _known(session: Session, feed_id: str, keys: list[str]) -> dict[str, tuple[int, str]]:
        """The feed's stored articles among ``keys``: key -> (id, fingerprint)."""
        found: dict[str, tuple[int, str]] = {}

        def lookup(chunk: Sequence[str]) -> None:
            rows = connection(session).execute(_KNOWN, {"feed_id": feed_id, "keys": list(chunk)})
            found.update((key, (article_id, fp)) for key, article_id, fp in rows)

        _in_chunks(lookup, keys)
        return found

    def articles_since(
        self, since: datetime, feed_ids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, Article]]:
        """Stored articles first seen at or after ``since``, oldest first, as (feed id, article).
        Streamed in batches, so a backtest over months of articles stays small in memory."""
        query = select(db.ArticleRow).where(db.ArticleRow.first_seen_at >= since)
        if feed_ids is not None:
            query = query.where(db.ArticleRow.feed_id.in_(feed_ids))
        query = query.order_by(db.ArticleRow.first_seen_at, db.ArticleRow.id)
        with self._session() as session:
            for row in session.scalars(query.execution_options(yield_per=500)):
                yield row.feed_id, _article_of(row)

    def due_channels(self, now: datetime) -> list[str]:
        """The channels that have deliveries waiting whose time has come. A channel whose
        oldest failure is still backing off is paused as a whole: its other alerts wait behind
        that one instead of hammering a service that is down, and stay in order."""
        backing_off = select(db.DeliveryRow.channel).where(
            db.DeliveryRow.status == "retrying", db.DeliveryRow.next_attempt_at > now
        )
        query = (
            select(db.DeliveryRow.channel)
            .where(_is_due(now), db.DeliveryRow.channel.not_in(backing_off))
            .distinct()
            .order_by(db.DeliveryRow.channel)
        )
        with self._session() as session:
            return list(session.scalars(query))

    def due_deliveries(
        self,
        now: datetime,
        limit: int = 100,
        channel: str | None = None,
        *,
        owner: str | None = None,
        until: datetime | None = None,
    ) -> list[Delivery]:
        """Deliveries waiting to be sent whose time has come, oldest first, each with the
        other feeds that carried the same story (``also_seen_in``). With ``owner``, they are
        claimed for it until ``until`` (or until their outcome is recorded), skipping rows
        another instance is claiming."""
        ids = select(db.DeliveryRow.id).where(_is_due(now)).order_by(db.DeliveryRow.id).limit(limit)
        if channel is not None:
            ids = ids.where(db.DeliveryRow.channel == channel)
        with self._session() as session:
            chosen = list(session.scalars(ids.with_for_update(skip_locked=True)))
            if owner is not None and chosen:
                connection(session).execute(
                    update(db.DeliveryRow)
                    .where(db.DeliveryRow.id.in_(chosen))
                    .values(lease_owner=owner, lease_until=until)
                )
            query = (
                _delivery_query().where(db.DeliveryRow.id.in_(chosen)).order_by(db.DeliveryRow.id)
            )
            rows = list(session.execute(query))
            seen_in = _also_seen_in(session, [a for _, _, a, _, _ in rows if a is not None])
            return [
                _delivery_of(*row, also_seen_in=seen_in.get(row[2].id, ()) if row[2] else ())
                for row in rows
            ]

    def hold(self, delivery_ids: Sequence[int], *, reason: str, until: datetime) -> None:
        """Keep these pending deliveries back until ``until``, to go out together as one
        message (a digest, a quiet-hours or a rate-limit summary)."""
        with self._session() as session:
            connection(session).execute(
                update(db.DeliveryRow)
                .where(db.DeliveryRow.id.in_(delivery_ids))
                .values(hold=reason, next_attempt_at=until, lease_owner=None, lease_until=None)
            )

    def record_deliveries(
        self,
        delivery_ids: Sequence[int],
        *,
        now: datetime,
        error: str | None,
        retry_at: datetime | None = None,
    ) -> None:
        """Sent when ``error`` is None; else retried at ``retry_at``, or dead without one.
        Several ids: one message carried them all (a digest or a summary)."""
        values = {
            "ids": list(delivery_ids),
            "new_status": "sent" if error is None else ("retrying" if retry_at else "dead"),
            "new_last_error": error,
            "new_sent_at": now if error is None else None,
            "new_next_attempt_at": retry_at or now,
        }
        with self._session() as session:
            connection(session).execute(_RECORD_DELIVERIES, values)

    def recent_deliveries(self, limit: int = 50, status: str | None = None) -> list[DeliveryRecord]:
        """The newest deliveries first."""
        query = _delivery_query().order_by(db.DeliveryRow.id.desc()).limit(limit)
        if status is not None:
            query = query.where(db.DeliveryRow.status == status)
        with self._session() as session:
            return [
                DeliveryRecord(
                    _delivery_of(d, m, a, e, feed_title),
                    status=d.status,
                    last_error=d.last_error,
                    created_at=d.created_at,
                    sent_at=d.sent_at,
                    next_attempt_at=d.next_attempt_at,
                )
                for d, m, a, e, feed_title in session.execute(query)
            ]

    def retry(self, ids: Sequence[int] | None, *, now: datetime) -> list[int]:
        """Send these deliveries again (``None``: every dead one) with a fresh set of attempts.
        Only dead or retrying ones: a sent alert is not sent twice. Returns the ids queued."""
        query = select(db.DeliveryRow.id).where(
            db.DeliveryRow.status.in_(("dead",) if ids is None else ("dead", "retrying"))
        )
        if ids is not None:
            query = query.where(db.DeliveryRow.id.in_(ids))
        with self._session() as session:
            chosen = list(session.scalars(query.order_by(db.DeliveryRow.id)))
            connection(session).execute(
                update(db.DeliveryRow)
                .where(db.DeliveryRow.id.in_(chosen))
                .values(status="pending", attempts=0, next_attempt_at=now)
            )
        return chosen

    def prune(self, *, articles_before: datetime, alerts_before: datetime) -> PruneResult:
        """Delete what is older than the retention, so the database stays bounded:

        - sent and dead deliveries queued before ``alerts_before``, and health events with no
          delivery left;
        - articles last listed by their feed before ``articles_before``, unless the feed's
          latest document still lists them, they matched a rule after ``alerts_before``, or
          an alert about them is still waiting to go. Their matches and deliveries go with
          them."""
        finished = db.DeliveryRow.status.in_(("sent", "dead"))
        sibling = aliased(db.ArticleRow)
        latest = (  # when the article's feed last listed anything: its latest document
            select(func.max(sibling.last_seen_at))
            .where(sibling.feed_id == db.ArticleRow.feed_id)
            .scalar_subquery()
        )
        recent_match = select(db.MatchRow.id).where(
            db.MatchRow.article_id == db.ArticleRow.id, db.MatchRow.matched_at >= alerts_before
        )
        waiting = (
            select(db.DeliveryRow.id)
            .join(db.MatchRow, db.DeliveryRow.match_id == db.MatchRow.id)
            .where(db.MatchRow.article_id == db.ArticleRow.id, ~finished)
        )
        old_articles = select(db.ArticleRow.id).where(
            db.ArticleRow.last_seen_at < articles_before,
            db.ArticleRow.last_seen_at < latest,
            ~recent_match.exists(),
            ~waiting.exists(),
        )
        unsent = select(db.DeliveryRow.id).where(db.DeliveryRow.event_id == db.FeedEventRow.id)
        with self._session() as session:
            deliveries = _deleted(
                session,
                delete(db.DeliveryRow).where(finished, db.DeliveryRow.created_at < alerts_before),
            )
            articles = _deleted(
                session, delete(db.ArticleRow).where(db.ArticleRow.id.in_(old_articles))
            )
            events = _deleted(
                session,
                delete(db.FeedEventRow).where(db.FeedEventRow.at < alerts_before, ~unsent.exists()),
            )
        return PruneResult(articles=articles, deliveries=deliveries, events=events)

    def delivery_counts(self) -> dict[str, int]:
        query = select(db.DeliveryRow.status, func.count()).group_by(db.DeliveryRow.status)
        with self._session() as session:
            return {status: n for status, n in session.execute(query)}

    # health and metrics: one cheap aggregate query each, run at every probe or scrape

    def ping(self) -> None:
        """One trivial query; raises StorageError when the database cannot be reached."""
        with self._session() as session:
            session.execute(select(1))

    def outbox_depth(self) -> dict[str, int]:
        """Per channel, the deliveries neither sent nor given up (held ones included)."""
        query = (
            select(db.DeliveryRow.channel, func.count())
            .where(db.DeliveryRow.status.in_(("pending", "retrying")))
            .group_by(db.DeliveryRow.channel)
        )
        with self._session() as session:
            return {channel: n for channel, n in session.execute(query)}

    def oldest_waiting(self, now: datetime) -> datetime | None:
        """When the oldest delivery still waiting to be sent was queued, leaving out those held
        on purpose until later (digests, quiet hours, rate limits); None when there is none."""
        held = and_(db.DeliveryRow.hold.is_not(None), db.DeliveryRow.next_attempt_at > now)
        query = select(func.min(db.DeliveryRow.created_at)).where(
            db.DeliveryRow.status.in_(("pending", "retrying")), ~held
        )
        with self._session() as session:
            return session.scalar(query)

    def feed_health(self, feed_ids: Sequence[str]) -> dict[str, int]:
        """How many of these feeds are ``ok``, ``failing``, ``gone`` (410) or ``never`` polled."""
        row = db.FeedRow
        health = case(
            (row.gone_at.is_not(None), "gone"),
            (row.failing_since.is_not(None), "failing"),
            (row.last_polled_at.is_(None), "never"),
            else_="ok",
        )
        query = select(health, func.count()).where(row.id.in_(feed_ids)).group_by(health)
        with self._session() as session:
            return {state: n for state, n in session.execute(query)}


_SYNC_LOCK = 0x77617463 + 1  # PostgreSQL advisory lock key: one config sync at a time


_STATE_COLUMNS = (
    db.FeedRow.id,
    db.FeedRow.etag,
    db.FeedRow.last_modified,
    db.FeedRow.baselined_at,
    db.FeedRow.next_poll_at,
    db.FeedRow.consecutive_failures,
    db.FeedRow.moved_to,
    db.FeedRow.gone_at,
    db.FeedRow.body_hash,
    db.FeedRow.ttl,
    db.FeedRow.skip_hours,
    db.FeedRow.skip_days,
)


def _state_of(row: Any) -> FeedState:
    return FeedState(
        etag=row.etag,
        last_modified=row.last_modified,
        baselined=row.baselined_at is not None,
        next_poll_at=row.next_poll_at,
        consecutive_failures=row.consecutive_failures,
        moved_to=row.moved_to,
        gone=row.gone_at is not None,
        body_hash=row.body_hash,
        hints=FeedHints(
            timedelta(seconds=row.ttl) if row.ttl else None,
            frozenset(row.skip_hours or ()),
            frozenset(row.skip_days or ()),
        ),
    )


def _deleted(session: Session, statement: Delete) -> int:
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def _delivery_query() -> Select[
    db.DeliveryRow, db.MatchRow | None, db.ArticleRow | None, db.FeedEventRow | None, str | None
]:
    """A delivery with what it is about: a match and its article, or a feed event."""
    feed_id = func.coalesce(db.ArticleRow.feed_id, db.FeedEventRow.feed_id)
    return (
        select(db.DeliveryRow, db.MatchRow, db.ArticleRow, db.FeedEventRow, db.FeedRow.title)
        .outerjoin(db.MatchRow, db.DeliveryRow.match_id == db.MatchRow.id)
        .outerjoin(db.ArticleRow, db.MatchRow.article_id == db.ArticleRow.id)
        .outerjoin(db.FeedEventRow, db.DeliveryRow.event_id == db.FeedEventRow.id)
        .outerjoin(db.FeedRow, db.FeedRow.id == feed_id)
    )


def _delivery_of(
    d: db.DeliveryRow,
    m: db.MatchRow | None,
    a: db.ArticleRow | None,
    e: db.FeedEventRow | None,
    feed_title: str | None,
    *,
    also_seen_in: tuple[str, ...] = (),
) -> Delivery:
    if e is not None:  # a health alert: about a feed, not a story
        return Delivery(
            id=d.id,
            channel=d.channel,
            attempts=d.attempts,
            rule="",
            terms=(),
            feed_id=e.feed_id,
            feed_title=feed_title,
            title="",
            link=None,
            published_at=None,
            summary="",
            queued_at=d.created_at,
            hold=d.hold,
            event=FeedEvent(e.state, e.feed_id, e.at, e.since, e.failures, e.error),
        )
    # The table's check: a delivery is about a match (with its article) or an event.
    assert m is not None
    assert a is not None
    return Delivery(
        id=d.id,
        channel=d.channel,
        attempts=d.attempts,
        rule=m.rule,
        terms=tuple(m.terms),
        feed_id=a.feed_id,
        feed_title=feed_title,
        title=a.title,
        link=a.link,
        published_at=a.published_at,
        summary=a.summary,
        queued_at=d.created_at,
        also_seen_in=also_seen_in,
        hold=d.hold,
        article_id=a.id,
    )


def _also_seen_in(
    session: Session, articles: Sequence[db.ArticleRow]
) -> dict[int, tuple[str, ...]]:
    """Per article id: the titles (or ids) of the other feeds that carried the same link."""
    keys = {a.link_key for a in articles if a.link_key}
    if not keys:
        return {}
    query = (
        select(db.ArticleRow.link_key, db.FeedRow.id, db.FeedRow.title)
        .join(db.FeedRow, db.ArticleRow.feed_id == db.FeedRow.id)
        .where(db.ArticleRow.link_key.in_(keys))
        .distinct()
        .order_by(db.FeedRow.id)
    )
    feeds: dict[str, list[tuple[str, str]]] = {}
    for key, feed_id, title in session.execute(query):
        feeds.setdefault(str(key), []).append((feed_id, title or feed_id))
    return {
        a.id: tuple(title for feed_id, title in feeds.get(a.link_key, []) if feed_id != a.feed_id)
        for a in articles
        if a.link_key
    }


def _is_due(now: datetime) -> ColumnElement[bool]:
    """Waiting, its time has come, and no live instance is sending it."""
    return and_(
        db.DeliveryRow.status.in_(("pending", "retrying")),
        db.DeliveryRow.next_attempt_at <= now,
        _free(db.DeliveryRow.lease_until, now),
    )


def _free(lease_until: Any, now: datetime) -> ColumnElement[bool]:
    """Not held: never claimed, released, or its holder stopped renewing (died)."""
    return or_(lease_until.is_(None), lease_until < now)


def link_key(link: str | None) -> str | None:
    return hashlib.sha256(link.encode("utf-8", "replace")).hexdigest() if link else None


def _unique_by_key(articles: Sequence[Article]) -> Iterator[Article]:
    """A feed that lists one key twice keeps the first (feeds list newest first)."""
    seen: set[str] = set()
    for article in articles:
        if article.key not in seen:
            seen.add(article.key)
            yield article


def connection(session: Session) -> Connection:
    """The session's connection, for plain UPDATEs: executed through the session they would
    go through the ORM's bookkeeping (matching loaded objects), which no caller here needs
    and which cost more than the statement (a third of the CPU of recording a delivery)."""
    return session.connection()


def _table(model: type[db.Base]) -> Table:
    """``model``'s table, for Core statements on ``connection(session)``."""
    return cast(Table, model.__table__)


# Statements run once or more per poll, built once: building one costs more CPU than SQLite
# takes to run it (coercing every operand, then computing the key of its compiled form).
_KNOWN = select(db.ArticleRow.key, db.ArticleRow.id, db.ArticleRow.fingerprint).where(
    db.ArticleRow.feed_id == bindparam("feed_id"),
    db.ArticleRow.key.in_(bindparam("keys", expanding=True)),
)

_RECORD_DELIVERIES = (
    update(db.DeliveryRow)
    .where(db.DeliveryRow.id.in_(bindparam("ids", expanding=True)))
    .values(
        {
            name: bindparam(f"new_{name}", type_=_table(db.DeliveryRow).c[name].type)
            for name in ("status", "last_error", "sent_at", "next_attempt_at")
        }
        | {"attempts": db.DeliveryRow.attempts + 1, "lease_owner": None, "lease_until": None}
    )
)


@cache  # one per set of columns: a handful
def _success_update(names: frozenset[str]) -> Update:
    """The UPDATE of a good poll that sets ``names`` (parameters ``new_<name>``, ``row_id``)
    on a feed no failure was reported for. ``baselined_at`` keeps the first such time."""
    columns = _table(db.FeedRow).c
    values: dict[str, Any] = {
        name: bindparam(f"new_{name}", type_=columns[name].type) for name in names
    }
    if "baselined_at" in values:
        values["baselined_at"] = func.coalesce(columns.baselined_at, values["baselined_at"])
    return (
        update(db.FeedRow)
        .where(db.FeedRow.id == bindparam("row_id"), db.FeedRow.health_alerted_at.is_(None))
        .values(values)
    )


def _in_chunks(work: Callable[[Sequence[Any]], object], values: Sequence[Any]) -> None:
    """``work`` on slices of ``values`` small enough for any database's bound-parameter limit."""
    for start in range(0, len(values), 500):
        work(values[start : start + 500])


def _new_article(feed_id: str, article: Article, now: datetime) -> dict[str, object]:
    return {
        "feed_id": feed_id,
        "key": article.key,
        "first_seen_at": now,
        "updated_at": now,
        "last_seen_at": now,
        **_article_fields(article),
    }


def _article_of(row: db.ArticleRow) -> Article:
    return Article(
        key=row.key,
        title=row.title,
        link=row.link,
        published=row.published_at,
        summary=row.summary,
        content=row.content,
        authors=tuple(row.authors),
        tags=tuple(row.tags),
    )


def _article_fields(article: Article) -> dict[str, object]:
    return {
        "title": article.title,
        "link": article.link,
        "link_key": link_key(article.link),
        "published_at": article.published,
        "summary": article.summary,
        "content": article.content,
        "authors": list(article.authors),
        "tags": list(article.tags),
        "fingerprint": article.fingerprint,
    }


Found = tuple[int, Article, Sequence[Match]]  # a new article's id, the article, its hits


def _not_alerted_before(session: Session, found: Sequence[Found]) -> list[tuple[int, Match]]:
    """(article id, hit) for each hit of ``found`` whose rule has not matched this story yet:
    the same link under another guid, re-published by the same feed, seen in another feed, or
    earlier in ``found`` itself (oldest first). One query for them all."""
    links = sorted({link_key(article.link) or "" for _, article, hits in found if hits} - {""})
    already: set[tuple[str | None, str]] = set()
    rules_of = select(db.ArticleRow.link_key, db.MatchRow.rule).join(
        db.ArticleRow, db.MatchRow.article_id == db.ArticleRow.id
    )
    _in_chunks(
        lambda chunk: already.update(
            (link, rule)
            for link, rule in session.execute(rules_of.where(db.ArticleRow.link_key.in_(chunk)))
        ),
        links,
    )
    kept: list[tuple[int, Match]] = []
    for article_id, article, hits in found:
        link = link_key(article.link)
        for hit in hits:
            if link is not None and (link, hit.rule) in already:
                continue
            if link is not None:
                already.add((link, hit.rule))
            kept.append((article_id, hit))
    return kept


def _queue_event(session: Session, event: FeedEvent, channels: Sequence[str]) -> None:
    row = db.FeedEventRow(
        feed_id=event.feed_id,
        state=event.state,
        at=event.at,
        since=event.since,
        failures=event.failures,
        error=event.error,
    )
    session.add(row)
    session.flush()
    for channel in dict.fromkeys(channels):
        session.add(
            db.DeliveryRow(
                event_id=row.id,
                channel=channel,
                status="pending",
                attempts=0,
                created_at=event.at,
                next_attempt_at=event.at,
            )
        )


def _queue_alerts(
    session: Session, hits: Sequence[tuple[int, Match]], now: datetime
) -> tuple[int, int]:
    """One match row per (article id, hit) and one pending delivery per channel, in bulk."""
    if not hits:
        return 0, 0
    table = _table(db.MatchRow)
    inserted = connection(session).execute(
        insert(table).returning(table.c.article_id, table.c.rule, table.c.id),
        [
            {
                "article_id": article_id,
                "rule": hit.rule,
                "terms": list(hit.terms),
                "matched_at": now,
            }
            for article_id, hit in hits
        ],
    )
    ids = {(article_id, rule): match_id for article_id, rule, match_id in inserted}
    deliveries = [
        {
            "match_id": match_id,
            "channel": channel,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for article_id, hit in hits
        for match_id in (ids[article_id, hit.rule],)
        for channel in dict.fromkeys(hit.channels)
    ]
    if deliveries:
        connection(session).execute(insert(_table(db.DeliveryRow)), deliveries)
    return len(hits), len(deliveries)
