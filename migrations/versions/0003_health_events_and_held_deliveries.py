"""health events and held deliveries: a delivery is about a match or a feed event, and may be
held for a digest, quiet hours or a rate limit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:49:46.591530
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("feed_id", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name=op.f("fk_feed_events_feed_id_feeds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_events")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("hold", sa.String(length=20), nullable=True))
        batch_op.alter_column("match_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_unique_constraint(
            batch_op.f("uq_deliveries_event_id_channel"), ["event_id", "channel"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_event_id_feed_events"),
            "feed_events",
            ["event_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_check_constraint(
            "about_one_thing", "(match_id IS NULL) <> (event_id IS NULL)"
        )

    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("health_alerted_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("health_alerted_at")
        batch_op.drop_column("failing_since")

    op.execute("DELETE FROM deliveries WHERE match_id IS NULL")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_deliveries_about_one_thing"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_event_id_feed_events"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_deliveries_event_id_channel"), type_="unique")
        batch_op.alter_column("match_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("hold")
        batch_op.drop_column("event_id")

    op.drop_table("feed_events")
