"""Alembic environment. Runs on the engine watcher hands over (``config.attributes["engine"]``),
or, for the ``alembic`` command line, on ``-x url=...`` / ``WATCHER_DATABASE``."""

from __future__ import annotations

import os
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, Engine

from watcher.db import Base, UTCDateTime, make_engine

config = context.config


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine  # type: ignore[no-any-return]
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "WATCHER_DATABASE", "sqlite:///watcher.db"
    )
    return make_engine(url)


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Migrations must not import watcher's own column types, which may change later."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


if (given := config.attributes.get("connection")) is not None:
    run_migrations(given)  # watcher's own, holding the migration lock
else:
    with _engine().connect() as own:
        run_migrations(own)
