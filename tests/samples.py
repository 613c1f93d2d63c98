"""One alert as the outbox hands it over, shared by the message and channel tests."""

from __future__ import annotations

from datetime import UTC, datetime

from watcher.models import Delivery

DELIVERY = Delivery(
    id=1,
    channel="newsroom",
    attempts=0,
    rule="nato-ukraine",
    terms=("NATO", "Kyiv"),
    feed_id="world",
    feed_title="World news",
    title="NATO ministers meet in Kyiv",
    link="https://example.org/story",
    published_at=datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
    summary="Ministers met. " * 60,
)
