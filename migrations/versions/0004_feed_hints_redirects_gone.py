"""feed schedule hints, permanent redirects, gone feeds

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:07:36.238224
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moved_to", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ttl", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("skip_hours", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("skip_days", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("skip_days")
        batch_op.drop_column("skip_hours")
        batch_op.drop_column("ttl")
        batch_op.drop_column("body_hash")
        batch_op.drop_column("gone_at")
        batch_op.drop_column("moved_to")
