"""Log lines: human or JSON, with the ids of what they are about, and never a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from watcher import logs

SECRET_URL = "tgram://123456:AAE-very-secret-token/-100200300"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    logs.redact(())
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


def emit(capsys: pytest.CaptureFixture[str], fmt: str) -> list[str]:
    logs.setup("info", fmt)
    logs.redact([SECRET_URL, "AAE-very-secret-token"])
    log = logging.getLogger("watcher.test")
    log.info("channel %s: sent alert", "phone", extra={"channel": "phone", "rule": "nato"})
    try:
        raise RuntimeError(f"cannot reach {SECRET_URL}")
    except RuntimeError:
        log.exception("channel %s: failed", "phone", extra={"channel": "phone"})
    log.warning("a library quoting a token: AAE-very-secret-token")
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_the_ids_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    lines = emit(capsys, "json")
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    sent, failed, library = records
    assert sent["level"] == "info" and sent["logger"] == "watcher.test"
    assert (sent["message"], sent["channel"], sent["rule"]) == (
        "channel phone: sent alert",
        "phone",
        "nato",
    )
    assert "feed" not in sent
    assert "RuntimeError: cannot reach ***" in failed["traceback"]
    assert library["message"] == "a library quoting a token: ***"
    assert "secret" not in "\n".join(lines)


def test_human_lines_redact_too(capsys: pytest.CaptureFixture[str]) -> None:
    lines = emit(capsys, "human")
    text = "\n".join(lines)
    assert "INFO    watcher.test: channel phone: sent alert" in lines[0]
    assert "cannot reach ***" in text and "a library quoting a token: ***" in text
    assert "secret" not in text


def test_under_systemd_each_line_tells_the_journal_its_priority(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    lines = emit(capsys, "human")
    assert lines[0] == "<6>watcher.test: channel phone: sent alert"
    assert lines[1] == "<3>watcher.test: channel phone: failed"
    assert all(line.startswith("<3>") for line in lines[1:-1])  # the traceback too
    assert lines[-1] == "<4>watcher.test: a library quoting a token: ***"
