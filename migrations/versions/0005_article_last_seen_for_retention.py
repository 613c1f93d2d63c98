"""article last seen: retention never prunes an entry its feed still lists

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 13:19:15.565926
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added empty, filled from when each article was last updated, then required.
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE articles SET last_seen_at = updated_at")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_articles_feed_id_last_seen_at", ["feed_id", "last_seen_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index("ix_articles_feed_id_last_seen_at")
        batch_op.drop_column("last_seen_at")
