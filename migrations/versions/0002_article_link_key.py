"""article link key: find a story re-published under a new guid by its link

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:11:10.788822
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_key", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_articles_link_key"), ["link_key"], unique=False)
    articles = sa.table(
        "articles", sa.column("id", sa.Integer), sa.column("link", sa.Text), sa.column("link_key")
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(articles.c.id, articles.c.link).where(articles.c.link.is_not(None))
    )
    for article_id, link in rows.fetchall():
        key = hashlib.sha256(link.encode("utf-8", "replace")).hexdigest()
        connection.execute(
            articles.update().where(articles.c.id == article_id).values(link_key=key)
        )


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_articles_link_key"))
        batch_op.drop_column("link_key")
