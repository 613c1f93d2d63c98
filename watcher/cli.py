"""The ``watcher`` command line: the one place where errors become messages and exit codes.

A user's mistake (bad config, unreachable database, unusable channel URL) is one clear message
on stderr and exit status 1, never a traceback. Anything else is a bug and surfaces as one.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__, logs
from .backtest import Finding, SourceError, evaluate, read_sources
from .config import Config, Rule, load_config, parse_duration
from .db import utcnow
from .errors import NotifyError, WatcherError
from .models import Article
from .notify import Channels, sample_alert
from .pipeline import fetch_limits
from .rules import Hit
from .scheduler import open_store, run_daemon, run_once
from .scheduler import prune as prune_now
from .service import check_ready
from .store import DeliveryRecord, FeedSummary, Store

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
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    envvar="WATCHER_LOG_FORMAT",
    show_default=True,
    help="Log lines for people, or one JSON object per line (or $WATCHER_LOG_FORMAT).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None, log_format: str) -> None:
    """watcher: polls news feeds, matches articles against rules, alerts through Apprise."""
    ctx.obj = {"log_level": log_level, "log_format": log_format}


def _load(config_path: Path, log_level: str = "warning") -> Config:
    """The config, with logging set up (at ``log_level`` unless --log-level says otherwise)
    and told which secrets to redact."""
    options = click.get_current_context().find_root().obj or {}
    logs.setup(options.get("log_level") or log_level, options.get("log_format", "human"))
    config = load_config(config_path)
    logs.redact(config.secrets)
    return config


@main.command()
@config_option
@user_errors
def check(config_path: Path) -> None:
    """Validate the config and print a short summary."""
    config = _load(config_path)
    channels = _channels(config)
    click.echo(f"config OK: {config.path}")
    click.echo(f"  database  {_masked_db(config)}")
    interval = _duration(config.settings.default_interval.total_seconds())
    click.echo(f"  feeds     {len(config.feeds)} (default interval {interval})")
    for feed in config.feeds:
        tags = f" [{', '.join(feed.tags)}]" if feed.tags else ""
        every = _duration(config.interval(feed).total_seconds())
        click.echo(f"    {feed.id}: {config.shown_url(feed)} every {every}{tags}")
    packs = ", ".join(config.settings.entity_packs)
    click.echo(f"  entities  {len(config.entities)}" + (f" (packs: {packs})" if packs else ""))
    click.echo(f"  rules     {len(config.rules)}")
    for rule in config.rules:
        scope = "every feed" if rule.feed_ids is None else ", ".join(sorted(rule.feed_ids))
        click.echo(f"    {rule.name}: {rule.query.text}  ->  {', '.join(rule.channels)} ({scope})")
    click.echo(f"  channels  {len(config.channels)}")
    for name in config.channels:
        click.echo(f"    {name}: {', '.join(channels.describe(name))}")


M_ARENA_MAX = -8  # glibc's <malloc.h>


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas in this process instead of up to one
    per thread (eight per core); whether it did. The daemon's database, delivery and parse
    threads each got an arena of their own, and every arena kept the memory freed into it:
    tens of MiB at the peak of a busy cycle, that one shared arena reuses. Call it before
    the threads start. Nothing happens where malloc is not glibc's, or where
    $MALLOC_ARENA_MAX or $GLIBC_TUNABLES already say how many arenas to use."""
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # not glibc, or no C library to load (Windows)
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


@main.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every feed once, deliver, and exit.")
@user_errors
def run(config_path: Path, once: bool) -> None:
    """Run the daemon (or one pass with --once)."""
    limit_malloc_arenas()
    config = _load(config_path, "info")
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed.")
@user_errors
def feeds(config_path: Path, as_json: bool) -> None:
    """List feeds and their health: ok, failing since when, gone; next poll, last error."""
    config = _load(config_path)
    store = open_store(config)
    try:
        configured = {feed.id for feed in config.feeds}
        rows = [row for row in store.feed_summaries() if row.id in configured]
    finally:
        store.close()
    if as_json:
        for row in rows:
            shown = config.shown_url(next(f for f in config.feeds if f.id == row.id))
            click.echo(json.dumps(_feed_json(row, shown), ensure_ascii=False))
        return
    now = utcnow()
    _table(
        ("FEED", "HEALTH", "LAST POLL", "NEXT POLL", "ARTICLES"), [_feed_row(r, now) for r in rows]
    )
    for feed in rows:
        if feed.moved_to:
            click.echo(f"{feed.id}: moved permanently to {feed.moved_to} (polled there)")
        if feed.last_error:
            click.echo(f"{feed.id}: last error: {feed.last_error}")


def _feed_row(row: FeedSummary, now: datetime) -> list[Text]:
    if row.gone_at:
        health = Text("gone (410), not polled", "red")
    elif row.failing_since:
        polls = _count(row.consecutive_failures, "poll", "polls")
        failing = _duration((now - row.failing_since).total_seconds())
        health = Text(f"failing for {failing} ({polls})", "red")
    elif row.last_outcome:
        health = Text("ok" if row.last_outcome == "ok" else "ok (unchanged)", "green")
    else:
        health = Text("never polled", "yellow")
    return [
        Text(row.id, "bold"),
        health,
        Text(_ago(row.last_polled_at, now)),
        Text(_ago(row.next_poll_at, now)),
        Text(str(row.articles)),
    ]


def _feed_json(row: FeedSummary, url: str) -> dict[str, object]:
    """``url`` as the config spells it, so a token read from ``${VAR}`` stays hidden."""

    def iso(when: datetime | None) -> str | None:
        return when.isoformat() if when else None

    health = "gone" if row.gone_at else "failing" if row.failing_since else "ok"
    return {
        "id": row.id,
        "url": url,
        "moved_to": row.moved_to,
        "title": row.title,
        "health": health if row.last_outcome else "never polled",
        "last_outcome": row.last_outcome,
        "last_polled_at": iso(row.last_polled_at),
        "next_poll_at": iso(row.next_poll_at),
        "failing_since": iso(row.failing_since),
        "consecutive_failures": row.consecutive_failures,
        "last_error": row.last_error,
        "articles": row.articles,
    }


_STATUS_STYLE = {"sent": "green", "pending": "yellow", "retrying": "yellow", "dead": "red"}


def _table(header: Sequence[str], rows: Sequence[Sequence[Text]]) -> None:
    """Columns for people: coloured on a terminal, plain text (still aligned) in a pipe."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False, width=10_000)  # never wrap or cut; the pager can
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip(), color=console.is_terminal)


@main.command("match")
@config_option
@click.option(
    "--rule", "rule_names", multiple=True, metavar="NAME", help="Only this rule (repeatable)."
)
@click.option("--explain", is_flag=True, help="Show which clauses held and which did not.")
@click.option(
    "--entry",
    metavar="TEXT",
    help="Only articles whose title contains TEXT, or whose link or entry id is TEXT; with "
    "--explain, every rule is explained for them, matched or not.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per match, per line.")
@click.option("--stored", is_flag=True, help="Run over articles already in the database.")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="With --stored: how far back (first seen), e.g. 36h or 30d.",
)
@click.argument("sources", nargs=-1)
@user_errors
def match_command(
    config_path: Path,
    rule_names: tuple[str, ...],
    explain: bool,
    entry: str | None,
    as_json: bool,
    stored: bool,
    since: str,
    sources: tuple[str, ...],
) -> None:
    """Run rules over feed files or URLs (SOURCES), or stored articles, without storing or
    sending anything: see what a rule catches before you enable it."""
    config = _load(config_path)
    if not sources and not stored:
        raise click.UsageError("give feed files or URLs to read, or --stored")
    rules = _chosen_rules(config, rule_names)
    articles, problems = _backtest_articles(config, sources, stored, since)
    articles = [(s, a) for s, a in articles if _chosen(a, entry)]
    show_misses = explain and entry is not None
    findings = [
        finding
        for finding in evaluate(rules, articles, explain=explain, scoped=stored)
        if finding.matched or show_misses
    ]
    for finding in findings:
        click.echo(_finding_json(finding) if as_json else _finding_text(finding))
    for problem in problems:
        click.secho(f"error: {problem.source}: {problem.message}", fg="red", err=True)
    if not as_json:
        matched = sum(f.matched for f in findings)
        click.echo(
            f"{_count(matched, 'match', 'matches')} in {_count(len(articles), 'article')}, "
            f"{_count(len(rules), 'rule')}"
        )
    if problems:
        sys.exit(1)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _chosen_rules(config: Config, names: tuple[str, ...]) -> list[Rule]:
    known = {rule.name: rule for rule in config.rules}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(
            f"no rule named {', '.join(unknown)}; the config has {', '.join(known) or 'none'}",
            param_hint="--rule",
        )
    return [known[name] for name in names] if names else list(config.rules)


def _backtest_articles(
    config: Config, sources: tuple[str, ...], stored: bool, since: str
) -> tuple[list[tuple[str, Article]], list[SourceError]]:
    now = utcnow()
    articles, problems = asyncio.run(read_sources(sources, fetch_limits(config), now))
    if stored:
        try:
            window = parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
        store = Store.open(config.settings.database)
        try:
            articles.extend(store.articles_since(now - window))
        finally:
            store.close()
    return articles, problems


def _chosen(article: Article, entry: str | None) -> bool:
    if entry is None:
        return True
    return entry.casefold() in article.title.casefold() or entry in (article.link, article.key)


def _finding_text(finding: Finding) -> str:
    article = finding.article
    mark = "matched" if finding.matched else "no match"
    lines = [click.style(f"[{finding.rule}] {mark}: {article.title or '(untitled)'}", bold=True)]
    lines.append(f"  source: {finding.source}")
    if article.link:
        lines.append(f"  link:   {article.link}")
    for field, snippet in _highlighted(finding):
        lines.append(f"  {field + ':':<9}{snippet}")
    if finding.explanation is not None:
        lines.extend("  " + line for line in finding.explanation.render().splitlines())
    return "\n".join(lines) + "\n"


def _highlighted(finding: Finding) -> list[tuple[str, str]]:
    """Each field with hits, its matched words in bold, trimmed to the words' surroundings."""
    by_field: dict[str, list[Hit]] = {field: [] for field in _FIELD_ORDER}
    for hit in finding.hits:
        by_field.setdefault(hit.field, []).append(hit)
    return [
        (field, _snippet(_field_text(finding.article, field, hits[0]), hits))
        for field, hits in by_field.items()
        if hits
    ]


_FIELD_ORDER = ("title", "summary", "content", "tags", "author", "link", "feed")


def _field_text(article: Article, field: str, hit: Hit) -> str:
    if field in ("title", "summary", "content", "link"):
        return getattr(article, field) or ""
    return hit.text  # tags, authors, feed: the value itself is short


def _snippet(text: str, hits: list[Hit], context: int = 40) -> str:
    spans = sorted({(h.start, h.end) for h in hits if h.end <= len(text)})
    if not spans or text == hits[0].text:
        return click.style(text, bold=True)
    out, cursor = [], 0
    for start, end in spans:
        if start < cursor:
            continue
        gap = text[cursor:start]
        if cursor == 0 and len(gap) > context:
            gap = "…" + gap[-context:]
        elif len(gap) > 2 * context:
            gap = gap[:context] + " … " + gap[-context:]
        out += [gap, click.style(text[start:end], bold=True)]
        cursor = end
    tail = text[cursor:]
    out.append(tail if len(tail) <= context else tail[:context] + "…")
    return "".join(out).replace("\n", " ")


def _finding_json(finding: Finding) -> str:
    article = finding.article
    record: dict[str, object] = {
        "rule": finding.rule,
        "matched": finding.matched,
        "source": finding.source,
        "entry_id": article.key,
        "title": article.title,
        "link": article.link,
        "published": article.published.isoformat() if article.published else None,
        "hits": [
            {"field": h.field, "text": h.text, "start": h.start, "end": h.end, "term": h.term}
            for h in finding.hits
        ],
    }
    if finding.explanation is not None:
        record["explain"] = finding.explanation.render()
    return json.dumps(record, ensure_ascii=False)


@main.group(invoke_without_command=True)
@config_option
@click.option(
    "--status",
    type=click.Choice(["pending", "retrying", "sent", "dead"]),
    help="Only deliveries in this state.",
)
@click.option("--limit", default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per delivery, per line.")
@click.pass_context
@user_errors
def alerts(
    ctx: click.Context, config_path: Path, status: str | None, limit: int, as_json: bool
) -> None:
    """Recent deliveries: sent, pending, retrying or dead (and why)."""
    if ctx.invoked_subcommand is not None:
        return
    records = _with_store(_load(config_path), lambda s: s.recent_deliveries(limit, status))
    if as_json:
        for record in records:
            click.echo(json.dumps(_record_json(record), ensure_ascii=False))
        return
    now = utcnow()
    _table(
        ("ID", "STATUS", "CHANNEL", "RULE", "TRIES", "CREATED", "TITLE"),
        [_record_row(record, now) for record in records],
    )
    for record in records:
        if record.last_error and record.status != "sent":
            retry = (
                f", next try {_ago(record.next_attempt_at, now)}"
                if record.status == "retrying"
                else ""
            )
            click.echo(f"{record.delivery.id}: {record.status}{retry}: {record.last_error}")


@alerts.command("retry")
@config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Every delivery that gave up.")
@user_errors
def alerts_retry(config_path: Path, ids: tuple[int, ...], all_dead: bool) -> None:
    """Send dead (or retrying) deliveries again, with a fresh set of attempts; a running
    daemon picks them up within seconds, or run `watcher run --once`."""
    if bool(ids) == all_dead:
        raise click.UsageError("give delivery IDs, or --all-dead")
    config = _load(config_path)
    queued = _with_store(config, lambda s: s.retry(None if all_dead else ids, now=utcnow()))
    skipped = sorted(set(ids) - set(queued))
    click.echo(f"queued {_count(len(queued), 'delivery', 'deliveries')} for sending")
    if skipped:
        click.echo(
            f"not queued (no such delivery, or already sent or pending): "
            f"{', '.join(map(str, skipped))}"
        )


def _with_store(config: Config, work: Callable[[Store], R]) -> R:
    store = Store.open(config.settings.database)
    try:
        return work(store)
    finally:
        store.close()


def _record_row(record: DeliveryRecord, now: datetime) -> list[Text]:
    d = record.delivery
    status = record.status
    if status == "pending" and d.hold and record.next_attempt_at > now:
        status = f"held: {d.hold}, {_ago(record.next_attempt_at, now)}"
    title = f"feed {d.feed_id} {d.event.state}" if d.event else d.title
    return [
        Text(str(d.id)),
        Text(status, _STATUS_STYLE.get(record.status, "")),
        Text(d.channel),
        Text(d.rule or "(health)"),
        Text(str(d.attempts)),
        Text(_ago(record.created_at, now)),
        Text(title[:60] + ("…" if len(title) > 60 else "")),
    ]


def _record_json(record: DeliveryRecord) -> dict[str, object]:
    d = record.delivery
    return {
        "id": d.id,
        "kind": "health" if d.event else "alert",
        "status": record.status,
        "held_for": d.hold if record.status == "pending" else None,
        "channel": d.channel,
        "rule": d.rule or None,
        "feed_state": d.event.state if d.event else None,
        "feed": d.feed_id,
        "title": d.title,
        "link": d.link,
        "terms": list(d.terms),
        "attempts": d.attempts,
        "last_error": record.last_error,
        "created_at": record.created_at.isoformat(),
        "sent_at": record.sent_at.isoformat() if record.sent_at else None,
        "next_attempt_at": record.next_attempt_at.isoformat()
        if record.status in ("pending", "retrying")
        else None,
    }


@main.command("notify-test")
@config_option
@click.argument("channel")
@user_errors
def notify_test(config_path: Path, channel: str) -> None:
    """Send a sample alert to CHANNEL and report, per URL, whether it worked."""
    config = _load(config_path)
    channels = _channels(config)
    if channel not in channels:
        known = ", ".join(config.channels) or "none"
        raise click.BadParameter(f"no channel {channel!r}; the config has {known}")
    outcomes = asyncio.run(channels.send_each(channel, sample_alert(channel)))
    for service, error in outcomes:
        if error is None:
            click.echo(f"ok      {service}")
        else:
            click.secho(f"FAILED  {service}: {error}", fg="red")
    if any(error is not None for _, error in outcomes):
        sys.exit(1)


@main.command()
@config_option
@user_errors
def health(config_path: Path) -> None:
    """Ask the running daemon's /readyz whether it is ready (for Docker's HEALTHCHECK):
    exit 0 if it is, 1 if not, if nothing answers or if [watcher] http is not set (Docker
    reserves exit status 2 of a health check)."""
    config = _load(config_path)
    if config.settings.http is None:
        click.echo('the health endpoint is off: set [watcher] http = "127.0.0.1:9464"', err=True)
        sys.exit(1)
    ready, answer = check_ready(config.settings.http)
    if not ready:
        click.echo(f"not ready: {answer}", err=True)
        sys.exit(1)
    click.echo(answer)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@config_option
@user_errors
def upgrade(config_path: Path) -> None:
    """Apply database migrations (also done automatically at start)."""
    config = _load(config_path)
    open_store(config).close()
    click.echo(f"database is up to date: {_masked_db(config)}")


@db.command()
@config_option
@user_errors
def prune(config_path: Path) -> None:
    """Delete articles and alerts past their retention now (the daemon does it every 6 h)."""
    config = _load(config_path)
    store = open_store(config)
    try:
        result = asyncio.run(prune_now(store, config, utcnow()))
    finally:
        store.close()
    deliveries = _count(result.deliveries, "delivery", "deliveries")
    click.echo(
        f"pruned {_count(result.articles, 'article')}, {deliveries} and "
        f"{_count(result.events, 'feed event')}"
    )


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. `eval "$(watcher completion bash)"`."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # the choices are the shells click supports
    click.echo(complete(main, {}, "watcher", "_WATCHER_COMPLETE").source())


def _channels(config: Config) -> Channels:
    try:
        return Channels({name: c.urls for name, c in config.channels.items()}, config.templates)
    except NotifyError as exc:
        raise NotifyError(f"invalid config {config.path}:\n  {exc}") from exc


def _masked_db(config: Config) -> str:
    from sqlalchemy.engine import make_url

    return make_url(config.settings.database).render_as_string(hide_password=True)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
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
