"""Storage on a real SQLite file and on the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from watcher import db
from watcher.errors import StorageError
from watcher.models import Article, Match
from watcher.policy import HealthPolicy
from watcher.store import Store, link_key

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/watcher.db"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store.open(url)
    _reset(store)
    store.sync_feeds([("world", "https://example.org/world.xml"), ("local", "file:///x.xml")], NOW)
    yield store
    store.close()


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(db.Base.metadata.sorted_tables):
            conn.execute(table.delete())


def article(key: str, title: str = "A title", **fields: object) -> Article:
    return Article(key=key.rjust(64, "0"), title=title, **fields)  # type: ignore[arg-type]


def rule_on(word: str, channels: tuple[str, ...] = ("newsroom",), name: str = "r1"):  # type: ignore[no-untyped-def]
    def matcher(a: Article) -> list[Match]:
        return [Match(name, (word,), channels)] if word in a.title else []

    return matcher


def test_new_articles_matches_and_deliveries_are_written_together(store: Store) -> None:
    result = store.ingest(
        "world",
        [article("1", "NATO news"), article("2", "Other")],
        now=NOW,
        matcher=rule_on("NATO", ("newsroom", "desk")),
    )
    assert (result.new, result.matches, result.deliveries) == (2, 1, 2)
    due = store.due_deliveries(NOW)
    assert sorted(d.channel for d in due) == ["desk", "newsroom"]
    assert {d.title for d in due} == {"NATO news"}
    assert due[0].terms == ("NATO",)


def test_a_second_poll_stores_nothing_new(store: Store) -> None:
    batch = [article("1", "NATO news", summary="s")]
    store.ingest("world", batch, now=NOW, matcher=rule_on("NATO"))
    again = store.ingest("world", batch, now=NOW + timedelta(minutes=5), matcher=rule_on("NATO"))
    assert (again.new, again.updated, again.matches) == (0, 0, 0)
    assert len(store.due_deliveries(NOW + timedelta(minutes=5))) == 1


def test_an_edited_entry_is_updated_in_place_and_never_rematched(store: Store) -> None:
    store.ingest("world", [article("1", "Quiet day")], now=NOW, matcher=rule_on("NATO"))
    edited = store.ingest(
        "world", [article("1", "Quiet day, then NATO")], now=NOW, matcher=rule_on("NATO")
    )
    assert (edited.new, edited.updated, edited.matches) == (0, 1, 0)
    assert store.due_deliveries(NOW) == []
    [summary] = [s for s in store.feed_summaries() if s.id == "world"]
    assert summary.articles == 1


def test_same_key_in_two_feeds_is_two_articles(store: Store) -> None:
    store.ingest("world", [article("1")], now=NOW, matcher=None)
    store.ingest("local", [article("1")], now=NOW, matcher=None)
    counts = {s.id: s.articles for s in store.feed_summaries()}
    assert counts == {"world": 1, "local": 1}


def test_a_feed_listing_a_key_twice_keeps_the_first(store: Store) -> None:
    result = store.ingest(
        "world",
        [article("1", "NATO first"), article("1", "second")],
        now=NOW,
        matcher=rule_on("NATO"),
    )
    assert (result.new, result.matches) == (1, 1)


def test_backlog_is_stored_without_matching(store: Store) -> None:
    result = store.ingest("world", [article("1", "NATO news")], now=NOW, matcher=None)
    assert (result.new, result.matches) == (1, 0)
    assert store.due_deliveries(NOW) == []


def test_delivery_outcomes(store: Store) -> None:
    store.ingest("world", [article("1", "NATO")], now=NOW, matcher=rule_on("NATO", ("a", "b", "c")))
    a, b, c = sorted(store.due_deliveries(NOW), key=lambda d: d.channel)
    store.record_deliveries([a.id], now=NOW, error=None)
    store.record_deliveries([b.id], now=NOW, error="HTTP 500", retry_at=NOW + timedelta(seconds=30))
    store.record_deliveries([c.id], now=NOW, error="gave up")
    assert store.delivery_counts() == {"sent": 1, "retrying": 1, "dead": 1}
    assert store.due_deliveries(NOW) == []
    [retry] = store.due_deliveries(NOW + timedelta(seconds=30))
    assert (retry.channel, retry.attempts) == ("b", 1)


def test_poll_state_round_trips_with_timezones(store: Store) -> None:
    store.record_success(
        "world",
        now=NOW,
        outcome="ok",
        next_poll_at=NOW + timedelta(minutes=10),
        etag='"e1"',
        last_modified="Sat, 28 Nov 2026 12:00:00 GMT",
        title="World",
    )
    state = store.feed_state("world")
    assert (state.etag, state.baselined, state.next_poll_at) == (
        '"e1"',
        True,
        NOW + timedelta(minutes=10),
    )
    store.record_failure(
        "world", now=NOW, error="HTTP 503", next_poll_at=NOW + timedelta(minutes=20)
    )
    store.record_failure(
        "world", now=NOW, error="HTTP 503", next_poll_at=NOW + timedelta(minutes=40)
    )
    state = store.feed_state("world")
    assert state.consecutive_failures == 2 and state.etag == '"e1"'
    # A 304 keeps the validators and resets the failure count.
    store.record_success("world", now=NOW, outcome="not_modified", next_poll_at=NOW)
    state = store.feed_state("world")
    assert (state.consecutive_failures, state.etag) == (0, '"e1"')


def test_a_changed_feed_url_forgets_the_old_validators(store: Store) -> None:
    store.record_success("world", now=NOW, outcome="ok", next_poll_at=NOW, etag='"e1"')
    store.sync_feeds([("world", "https://example.org/new.xml")])
    assert store.feed_state("world").etag is None


def test_models_and_migrations_agree(store: Store) -> None:
    command.check(db.alembic_config(store.engine))


def test_untrusted_text_survives_storage(store: Store) -> None:
    weird = article("1", "Ünïcödé — «quotes» 🚀 Київ", summary="x" * 100_000, tags=("a", "b"))
    store.ingest("world", [weird], now=NOW, matcher=rule_on("Київ"))
    [due] = store.due_deliveries(NOW)
    assert due.title == weird.title and len(due.summary) == 100_000


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/deep/folder/watcher.db")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()


def test_missing_driver_is_a_clear_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("psycopg"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(StorageError, match=r"driver is not installed .*watcher\[postgres\]"):
        Store.open("postgresql://nobody@127.0.0.1:1/none")


def test_articles_since_streams_stored_articles_oldest_first(store: Store) -> None:
    store.ingest("world", [article("1", "old")], now=NOW - timedelta(days=9), matcher=None)
    store.ingest("world", [article("2", "recent", tags=("x",))], now=NOW, matcher=None)
    store.ingest("local", [article("3", "local")], now=NOW + timedelta(hours=1), matcher=None)
    since = NOW - timedelta(days=7)
    assert [(f, a.title) for f, a in store.articles_since(since)] == [
        ("world", "recent"),
        ("local", "local"),
    ]
    [(_, recent)] = store.articles_since(since, feed_ids=["world"])
    assert recent == article("2", "recent", tags=("x",))


def test_a_story_republished_under_a_new_guid_does_not_alert_again(store: Store) -> None:
    link = "https://example.org/story"
    store.ingest("world", [article("1", "NATO news", link=link)], now=NOW, matcher=rule_on("NATO"))
    again = store.ingest(
        "world", [article("2", "NATO news (updated)", link=link)], now=NOW, matcher=rule_on("NATO")
    )
    elsewhere = store.ingest(
        "local", [article("3", "NATO news", link=link)], now=NOW, matcher=rule_on("NATO")
    )
    assert (again.new, again.matches, elsewhere.new, elsewhere.matches) == (1, 0, 1, 0)
    assert len(store.due_deliveries(NOW)) == 1
    # Another rule that had not matched the story before still alerts.
    other = store.ingest(
        "world", [article("4", "NATO Kyiv", link=link)], now=NOW, matcher=rule_on("Kyiv", name="r2")
    )
    assert other.matches == 1


def test_migrations_fill_the_link_key_of_existing_articles(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/old.db")
    db.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO feeds (id, url, consecutive_failures) VALUES ('f', 'u', 0)"))
        conn.execute(
            text(
                "INSERT INTO articles (feed_id, key, title, link, summary, content, authors, tags,"
                " fingerprint, first_seen_at, updated_at) VALUES ('f', 'k', 't', :link, '', '',"
                " '[]', '[]', 'x', '2026-01-01', '2026-01-01')"
            ),
            {"link": "https://example.org/a"},
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        key = conn.execute(text("SELECT link_key FROM articles")).scalar()
    engine.dispose()
    assert key == link_key("https://example.org/a")


HEALTH = HealthPolicy(failures=3, after=timedelta(hours=1), channels=("ops", "desk"))


def fail(store: Store, at: datetime, error: str = "HTTP 500") -> bool:
    return store.record_failure(
        "world", now=at, error=error, next_poll_at=at + timedelta(minutes=10), health=HEALTH
    )


def test_one_health_alert_per_failure_streak_and_one_on_recovery(store: Store) -> None:
    minutes = [NOW + timedelta(minutes=10 * i) for i in range(6)]
    assert [fail(store, at, f"HTTP 50{i}") for i, at in enumerate(minutes)] == [
        False,
        False,
        True,  # the third failure in a row
        False,
        False,
        False,  # never one per failed poll
    ]
    due = store.due_deliveries(minutes[-1])
    assert sorted(d.channel for d in due) == ["desk", "ops"]
    event = due[0].event
    assert event is not None
    assert (event.state, event.feed_id, event.since, event.failures, event.error) == (
        "failing",
        "world",
        NOW,
        3,
        "HTTP 502",
    )
    store.record_deliveries([d.id for d in due], now=minutes[-1], error=None)
    back = minutes[-1] + timedelta(minutes=10)
    assert store.record_success("world", now=back, outcome="ok", next_poll_at=back, health=HEALTH)
    [recovered, _] = store.due_deliveries(back)
    assert recovered.event is not None
    assert (recovered.event.state, recovered.event.since, recovered.event.failures) == (
        "recovered",
        NOW,
        6,
    )
    # a new streak starts from scratch
    assert not store.record_success("world", now=back, outcome="ok", next_poll_at=back)
    assert not fail(store, back + timedelta(minutes=1))


def test_a_long_outage_alerts_even_with_few_polls(store: Store) -> None:
    assert not fail(store, NOW)
    assert fail(store, NOW + timedelta(hours=1))  # 2 polls, but failing for an hour
    [summary] = [s for s in store.feed_summaries() if s.id == "world"]
    assert summary.failing_since == NOW


def test_a_short_blip_alerts_nobody(store: Store) -> None:
    assert not fail(store, NOW)
    assert not store.record_success(
        "world", now=NOW + timedelta(minutes=1), outcome="ok", next_poll_at=NOW, health=HEALTH
    )
    assert store.due_deliveries(NOW + timedelta(hours=2)) == []


def test_held_deliveries_wait_and_come_back_together(store: Store) -> None:
    store.ingest(
        "world",
        [article("1", "NATO one"), article("2", "NATO two")],
        now=NOW,
        matcher=rule_on("NATO"),
    )
    due = store.due_deliveries(NOW)
    until = NOW + timedelta(hours=1)
    store.hold([d.id for d in due], reason="digest", until=until)
    assert store.due_deliveries(until - timedelta(seconds=1)) == []
    again = store.due_deliveries(until)
    assert [(d.title, d.hold) for d in again] == [("NATO two", "digest"), ("NATO one", "digest")]
    [record, _] = store.recent_deliveries()
    assert (record.status, record.delivery.hold, record.next_attempt_at) == (
        "pending",
        "digest",
        until,
    )


def test_an_alert_names_the_other_feeds_that_carried_the_story(store: Store) -> None:
    link = "https://example.org/story"
    store.ingest("world", [article("1", "NATO", link=link)], now=NOW, matcher=rule_on("NATO"))
    store.ingest("local", [article("9", "NATO", link=link)], now=NOW, matcher=rule_on("NATO"))
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE feeds SET title = 'Local paper' WHERE id = 'local'"))
    [delivery] = store.due_deliveries(NOW)  # the second feed's match was a repeat: dropped
    assert (delivery.feed_id, delivery.also_seen_in) == ("world", ("Local paper",))


DAY = timedelta(days=1)


def prune(store: Store, now: datetime) -> tuple[int, int, int]:
    result = store.prune(articles_before=now - 30 * DAY, alerts_before=now - 90 * DAY)
    return result.articles, result.deliveries, result.events


def test_prune_keeps_what_the_feed_still_lists_and_what_alerted_recently(store: Store) -> None:
    # day 0: three entries, one of which alerts (sent); day 1: the feed drops "old" and "gone"
    store.ingest(
        "world",
        [article("old"), article("alerted", "NATO"), article("gone")],
        now=NOW,
        matcher=rule_on("NATO"),
    )
    store.record_deliveries([d.id for d in store.due_deliveries(NOW)], now=NOW, error=None)
    store.ingest("world", [article("listed")], now=NOW + DAY, matcher=None)
    # "stale" stays in a feed that has not changed since: its latest document still lists it
    store.ingest("local", [article("stale")], now=NOW, matcher=None)

    assert prune(store, NOW + 29 * DAY) == (0, 0, 0)  # nothing is old enough yet
    assert prune(store, NOW + 40 * DAY) == (2, 0, 0)  # "old" and "gone"
    keys = {s.id: s.articles for s in store.feed_summaries()}
    assert keys == {"world": 2, "local": 1}  # "alerted", "listed"; "stale"
    # past the alert retention the sent alert goes, then its article with the next prune
    assert prune(store, NOW + 91 * DAY) == (1, 1, 0)
    assert store.recent_deliveries() == []


def test_prune_never_drops_an_alert_still_waiting(store: Store) -> None:
    store.ingest("world", [article("1", "NATO")], now=NOW, matcher=rule_on("NATO"))
    store.ingest("world", [article("2")], now=NOW + DAY, matcher=None)  # "1" no longer listed
    assert prune(store, NOW + 400 * DAY) == (0, 0, 0)
    assert len(store.due_deliveries(NOW + 400 * DAY)) == 1


def test_the_database_stays_bounded(store: Store) -> None:
    # A feed that publishes 5 stories a day and lists the latest 10, for 120 days, with a
    # prune each day: the articles kept never exceed the 30-day window plus what is listed.
    most = 0
    for day in range(120):
        now = NOW + day * DAY
        listed = [article(f"{d}-{n}") for d in range(day, max(day - 2, -1), -1) for n in range(5)]
        store.ingest("world", listed, now=now, matcher=None)
        prune(store, now)
        most = max(most, next(s.articles for s in store.feed_summaries() if s.id == "world"))
    assert most <= 31 * 5 + 10
    assert next(s.articles for s in store.feed_summaries() if s.id == "world") >= 30 * 5


def due_feeds(store: Store, n: int) -> list[str]:
    ids = [f"feed-{i}" for i in range(n)]
    store.sync_feeds([(feed_id, f"https://example.org/{feed_id}") for feed_id in ids], NOW)
    return ids


def test_two_instances_never_claim_the_same_feed(store: Store) -> None:
    ids = due_feeds(store, 5)
    until = NOW + timedelta(days=1)
    first = list(store.claim_feeds("a", now=NOW, until=until, limit=3))
    second = list(store.claim_feeds("b", now=NOW, until=until, limit=10))
    assert len(first) == 3
    assert sorted(first + second) == sorted(ids)  # the configured feeds, each once
    assert store.claim_feeds("c", now=NOW, until=until, limit=10) == {}
    # a recorded poll releases the feed, due again at its next time
    store.record_success(first[0], now=NOW, outcome="ok", next_poll_at=NOW + timedelta(hours=1))
    assert store.claim_feeds("c", now=NOW + timedelta(minutes=59), until=until, limit=10) == {}
    later = NOW + timedelta(hours=1)
    assert list(store.claim_feeds("c", now=later, until=until, limit=10)) == [first[0]]


def test_a_claim_brings_what_the_poll_needs_to_know(store: Store) -> None:
    polled, fresh = due_feeds(store, 2)
    store.record_success(
        polled, now=NOW, outcome="ok", next_poll_at=NOW, etag='"e1"', body_hash="h"
    )
    claimed = store.claim_feeds("a", now=NOW, until=NOW + timedelta(minutes=1), limit=10)
    assert claimed == {polled: store.feed_state(polled), fresh: store.feed_state(fresh)}
    assert (claimed[polled].etag, claimed[polled].body_hash) == ('"e1"', "h")
    assert claimed[polled].baselined and not claimed[fresh].baselined


def test_a_dead_instances_feeds_are_taken_over_when_its_lease_runs_out(store: Store) -> None:
    due_feeds(store, 2)
    lease = timedelta(seconds=30)
    held = list(store.claim_feeds("dead", now=NOW, until=NOW + lease, limit=1))
    store.claim_feeds("alive", now=NOW, until=NOW + lease, limit=1)
    store.renew_leases("alive", NOW + 2 * lease)  # the live one keeps renewing; the dead one
    later = NOW + lease + timedelta(seconds=1)
    assert list(store.claim_feeds("other", now=later, until=later + lease, limit=10)) == held
    assert store.next_due(later) == NOW + 2 * lease  # when the live one's lease would end


def test_a_clean_stop_hands_everything_back(store: Store) -> None:
    due_feeds(store, 2)
    store.ingest("world", [article("1", "NATO")], now=NOW, matcher=rule_on("NATO"))
    until = NOW + timedelta(minutes=1)
    assert len(store.claim_feeds("a", now=NOW, until=until, limit=10)) == 2
    assert len(store.due_deliveries(NOW, owner="a", until=until)) == 1
    assert store.due_deliveries(NOW, owner="b", until=until) == []  # held by "a"
    assert store.due_channels(NOW) == []
    store.release_all("a")
    assert len(store.claim_feeds("b", now=NOW, until=until, limit=10)) == 2
    assert len(store.due_deliveries(NOW, owner="b", until=until)) == 1


def test_a_feed_removed_from_the_config_is_no_longer_polled(store: Store) -> None:
    store.sync_feeds([("world", "https://example.org/world.xml")], NOW)  # "local" is gone
    later = NOW + timedelta(days=1)
    assert list(store.claim_feeds("a", now=later, until=later, limit=10)) == ["world"]


def test_a_periodic_job_runs_once_per_period_across_instances(store: Store) -> None:
    every = timedelta(hours=6)
    runs = [
        store.claim_job("prune", owner, now=NOW + offset, every=every)
        for owner, offset in (("a", timedelta(0)), ("b", timedelta(minutes=10)))
    ]
    assert runs == [True, False]
    assert store.claim_job("prune", "b", now=NOW + every, every=every)
