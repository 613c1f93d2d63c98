from __future__ import annotations

import builtins
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import FeedServer, Receiver, running


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
