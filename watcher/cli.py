"""The ``watcher`` command line: the one place where errors become messages and exit codes.

A user's mistake (bad config, unreachable database, unusable channel URL) is one clear message
on stderr and exit status 1, never a traceback. Anything else is a bug and surfaces as one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from . import __version__
from .config import Config, load_config
from .db import utcnow
from .errors import NotifyError, WatcherError
from .notify import Channels
from .scheduler import open_store, run_daemon, run_once
from .store import FeedSummary

P = ParamSpec("P")
R = TypeVar("R")

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="watcher.toml",
    show_default=True,
    envvar="WATCHER_CONFIG",
    help="The TOML config file (or $WATCHER_CONFIG).",
)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn watcher's own errors into a message and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except WatcherError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="watcher")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Logging detail on stderr (default: info for run, warning otherwise).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """watcher: polls news feeds, matches articles against rules, alerts through Apprise."""
    ctx.obj = {"log_level": log_level}


def _setup_logging(ctx: click.Context, default: str) -> None:
    level = (ctx.obj or {}).get("log_level") or default
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if level.upper() != "DEBUG":  # their INFO lines repeat what watcher's own say
        for chatty in ("alembic", "apprise", "apscheduler", "httpx"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


@main.command()
@config_option
@user_errors
def check(config_path: Path) -> None:
    """Validate the config and print a short summary."""
    config = load_config(config_path)
    channels = _channels(config)
    click.echo(f"config OK: {config.path}")
    click.echo(f"  database  {_masked_db(config)}")
    interval = _duration(config.settings.default_interval.total_seconds())
    click.echo(f"  feeds     {len(config.feeds)} (default interval {interval})")
    for feed in config.feeds:
        tags = f" [{', '.join(feed.tags)}]" if feed.tags else ""
        every = _duration(config.interval(feed).total_seconds())
        click.echo(f"    {feed.id}: {config.shown_url(feed)} every {every}{tags}")
    click.echo(f"  rules     {len(config.rules)}")
    for rule in config.rules:
        scope = "every feed" if rule.feed_ids is None else ", ".join(sorted(rule.feed_ids))
        click.echo(f"    {rule.name}: {rule.query.text}  ->  {', '.join(rule.channels)} ({scope})")
    click.echo(f"  channels  {len(config.channels)}")
    for name in config.channels:
        click.echo(f"    {name}: {', '.join(channels.describe(name))}")


@main.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every feed once, deliver, and exit.")
@click.pass_context
@user_errors
def run(ctx: click.Context, config_path: Path, once: bool) -> None:
    """Run the daemon (or one pass with --once)."""
    _setup_logging(ctx, "info")
    config = load_config(config_path)
    if not once:
        asyncio.run(run_daemon(config))
        return
    report = asyncio.run(run_once(config))
    for poll in report.polls:
        detail = poll.error or f"{poll.new} new, {poll.matches} matched"
        click.echo(f"{poll.feed_id}: {poll.outcome}: {detail}")
    click.echo(
        f"deliveries: {report.deliveries.sent} sent, {report.deliveries.failed} failed "
        "(failed ones are retried by the next run)"
    )


@main.command()
@config_option
@user_errors
def feeds(config_path: Path) -> None:
    """List feeds: last poll, outcome, articles stored, next poll."""
    config = load_config(config_path)
    store = open_store(config)
    try:
        rows = store.feed_summaries()
    finally:
        store.close()
    configured = {feed.id for feed in config.feeds}
    now = utcnow()
    header = ("FEED", "LAST POLL", "OUTCOME", "ARTICLES", "NEXT POLL")
    table = [header] + [_feed_row(feed, now) for feed in rows if feed.id in configured]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    for feed in rows:
        if feed.id in configured and feed.last_error:
            failing = (
                f" ({feed.consecutive_failures} in a row)" if feed.consecutive_failures else ""
            )
            click.echo(f"{feed.id}: last error{failing}: {feed.last_error}")


def _feed_row(row: FeedSummary, now: datetime) -> tuple[str, str, str, str, str]:
    outcome = {"ok": "ok", "not_modified": "ok (304)", "error": "error"}.get(
        row.last_outcome or "", "never polled"
    )
    return (
        row.id,
        _ago(row.last_polled_at, now),
        outcome,
        str(row.articles),
        _ago(row.next_poll_at, now),
    )


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@config_option
@user_errors
def upgrade(config_path: Path) -> None:
    """Apply database migrations (also done automatically at start)."""
    config = load_config(config_path)
    open_store(config).close()
    click.echo(f"database is up to date: {_masked_db(config)}")


def _channels(config: Config) -> Channels:
    try:
        return Channels({name: c.urls for name, c in config.channels.items()})
    except NotifyError as exc:
        raise NotifyError(f"invalid config {config.path}:\n  {exc}") from exc


def _masked_db(config: Config) -> str:
    from sqlalchemy.engine import make_url

    return make_url(config.settings.database).render_as_string(hide_password=True)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    text = _duration(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _duration(seconds: float) -> str:
    """3725 -> '1h2m': the two largest units, enough to read at a glance."""
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2]) or "0s"
