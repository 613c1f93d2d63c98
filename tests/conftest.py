from __future__ import annotations

import builtins
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from tests.servers import FeedServer, Receiver, running

# The shared real-world and hostile corpus (never copied into this repository).
CORPUS = Path(
    os.environ.get("WATCHER_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus: skipped without it, except under CI (``$CI`` set), where that fails."""
    if not CORPUS.is_dir():
        message = f"feed corpus not found at {CORPUS} (set WATCHER_CORPUS to its path)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CORPUS


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server that ``WATCHER_TEST_POSTGRES_URL`` points at
    (any database there; the test database is created beside it and dropped afterwards).
    Unset: skipped, as on a laptop without PostgreSQL; under CI (which sets it) a missing or
    unreachable server fails instead."""
    admin_url = os.environ.get("WATCHER_TEST_POSTGRES_URL")
    if not admin_url:
        if os.environ.get("CI"):
            pytest.fail("CI must set WATCHER_TEST_POSTGRES_URL (.ci/run does)")
        pytest.skip("WATCHER_TEST_POSTGRES_URL is not set")
    admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"watcher_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (OperationalError, ModuleNotFoundError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI ({admin_url}): {exc}")
        pytest.skip(f"no PostgreSQL at {admin_url}: {exc}")
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_io(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse, and record, any attempt to open a file or a connection while a test runs."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise PermissionError("parse must not do I/O")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with running(FeedServer()) as server:
        assert isinstance(server, FeedServer)
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running(Receiver()) as server:
        assert isinstance(server, Receiver)
        yield server


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a config file into tmp_path and return its path."""

    def write(text: str, name: str = "watcher.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
