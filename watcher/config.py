"""The TOML configuration: load, expand ``${VAR}``, validate into frozen models. Reads files.

Every mistake a user can make becomes a :class:`ConfigError` whose lines name the key path
(``rules[2].match``), the value found and what was expected. Values are quoted from the file as
written (``${SLACK_TOKEN}``, not the token), and channel URLs are never echoed at all, so a
secret never reaches an error message.
"""

from __future__ import annotations

import heapq
import importlib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from .errors import ConfigError, QuerySyntaxError, RuleError
from .messages import TemplateError, Templates
from .policy import HealthPolicy, QuietHours, RateLimit, Schedule
from .rules import Entity, Query, compile_query

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# ${VAR} reads the environment; ${file:/run/secrets/x} reads a file (Docker secrets, systemd
# credentials), so the TOML itself can be committed.
_REF = re.compile(r"\$\{(?:file:(?P<file>[^}]+)|(?P<var>[A-Za-z_][A-Za-z0-9_]*))\}")
_SECRET_FILE_LIMIT = 64 * 1024
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def parse_duration(value: object) -> timedelta:
    """``"90s"``, ``"10m"``, ``"1h30m"``, ``"2d"`` or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '90s', '10m' or '1h30m'")
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        raise ValueError("expected a duration such as '90s', '10m' or '1h30m'")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def _positive(delta: timedelta) -> timedelta:
    if delta < timedelta(seconds=1):
        raise ValueError("expected a duration of at least 1s")
    return delta


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected a timezone name such as 'UTC' or 'Europe/Berlin'") from None
    return name


Zone = Annotated[str, AfterValidator(_zone)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WatcherSettings(_Section):
    database: str = "sqlite:///watcher.db"
    default_interval: Duration = timedelta(minutes=10)
    alert_backlog: bool = False
    timeout: Duration = timedelta(seconds=30)
    max_response_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_entries: int = Field(default=1000, ge=1)
    concurrency: int = Field(default=10, ge=1, le=1000)
    per_host_concurrency: int = Field(default=2, ge=1, le=100)
    per_host_spacing: Duration = timedelta(seconds=1)  # between request starts to one host
    max_hinted_interval: Duration = timedelta(hours=6)  # a feed's ttl lengthens up to this
    parse_workers: int | None = Field(default=None, ge=0, le=256)  # None: one per CPU
    parse_memory_bytes: int = Field(default=512 * 2**20, ge=64 * 2**20)
    parse_timeout: Duration = timedelta(seconds=30)
    http: str | None = None  # "127.0.0.1:9464": serve /healthz, /readyz, /metrics; None: off
    # How long an instance's claim on a feed or delivery outlives it: after a crash, others
    # take its work over this much later. Renewed every third of it while the instance lives.
    lease: Duration = timedelta(seconds=60)

    @field_validator("lease")
    @classmethod
    def _lease(cls, lease: timedelta) -> timedelta:
        if lease < timedelta(seconds=3):
            raise ValueError("expected a duration of at least 3s")
        return lease

    @field_validator("http")
    @classmethod
    def _listen_address(cls, address: str | None) -> str | None:
        """``host:port`` (an IPv6 host in brackets); port 0 picks a free one."""
        found = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", address or "")
        if address is not None and (found is None or int(found[2]) > 65535):
            raise ValueError(
                "expected host:port to listen on, such as '127.0.0.1:9464' or '[::1]:9464'"
            )
        return address

    entity_packs: tuple[str, ...] = ()
    delivery_max_attempts: int = Field(default=10, ge=1, le=100)
    delivery_max_age: Duration = timedelta(days=1)
    article_retention: Duration = timedelta(days=90)  # articles no longer listed, then pruned
    alert_retention: Duration = timedelta(days=365)  # sent alerts, and the articles behind them
    timezone: Zone = "UTC"  # for digests and quiet hours that do not name their own
    health_channels: tuple[str, ...] = ()
    health_failures: int = Field(default=3, ge=1)  # consecutive failed polls before an alert
    health_after: Duration = timedelta(hours=1)  # or this long failing, whichever comes first

    @field_validator("database")
    @classmethod
    def _database_url(cls, url: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
            raise ValueError(
                "expected a database URL such as 'sqlite:///watcher.db' or "
                "'postgresql://user@host/dbname'"
            )
        return url

    @field_validator(
        "default_interval",
        "timeout",
        "delivery_max_age",
        "health_after",
        "parse_timeout",
        "article_retention",
        "alert_retention",
    )
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        return _positive(value)


class FeedConfig(_Section):
    id: str = Field(pattern=_ID, max_length=100)
    url: str
    interval: Duration | None = None
    tags: tuple[str, ...] = ()
    alert_backlog: bool | None = None
    feed_hints: bool = True  # follow the feed's ttl, skipHours, skipDays, Cache-Control

    @field_validator("interval")
    @classmethod
    def _at_least_a_second(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _positive(value)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not re.match(r"^(https?://[^/\s]+|file:)", url, re.IGNORECASE):
            raise ValueError("expected an http://, https:// or file: URL")
        return url


class EntityConfig(_Section):
    names: tuple[str, ...] = ()  # case-insensitive words or phrases
    exact: tuple[str, ...] = ()  # case-sensitive ones: acronyms such as WHO or US
    extend: bool = False  # add to the pack entity of the same id instead of replacing it

    @model_validator(mode="after")
    def _has_a_name(self) -> EntityConfig:
        if not (self.names or self.exact or self.extend):
            raise ValueError("expected at least one name in 'names' or 'exact'")
        return self

    def merged_into(self, base: EntityConfig | None) -> EntityConfig:
        if not self.extend or base is None:
            return self
        return EntityConfig(
            names=tuple(dict.fromkeys(base.names + self.names)),
            exact=tuple(dict.fromkeys(base.exact + self.exact)),
        )


class RuleConfig(_Section):
    name: str = Field(pattern=_ID, max_length=100)
    match: str = Field(min_length=1)
    channels: tuple[str, ...] = Field(min_length=1)
    feeds: tuple[str, ...] | None = None
    delivery: str = "instant"  # or a digest schedule: "hourly", "daily 08:00", cron
    timezone: Zone | None = None
    priority: Literal["normal", "high"] = "normal"  # high: not held by quiet hours

    @field_validator("delivery")
    @classmethod
    def _schedule(cls, delivery: str) -> str:
        if delivery != "instant":
            Schedule(delivery, ZoneInfo("UTC"))
        return delivery


class ChannelConfig(_Section):
    urls: tuple[SecretStr, ...] = Field(min_length=1)
    quiet: str | None = None  # "22:00-07:00": alerts are held and summarised when it ends
    timezone: Zone | None = None
    rate_limit: str | None = None  # "5/minute": what exceeds it is folded into a summary
    templates: dict[str, str] = {}  # template name -> Jinja source, for this channel only

    @field_validator("quiet")
    @classmethod
    def _quiet(cls, quiet: str | None) -> str | None:
        if quiet is not None:
            QuietHours.parse(quiet, ZoneInfo("UTC"))
        return quiet

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rate: str | None) -> str | None:
        if rate is not None:
            RateLimit.parse(rate)
        return rate


class ConfigFile(_Section):
    watcher: WatcherSettings = WatcherSettings()
    feeds: tuple[FeedConfig, ...] = ()
    entities: dict[str, EntityConfig] = {}
    rules: tuple[RuleConfig, ...] = ()
    channels: dict[str, ChannelConfig] = {}


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule ready to run: its compiled query and the feeds it watches (None = every feed)."""

    name: str
    query: Query
    channels: tuple[str, ...]
    feed_ids: frozenset[str] | None
    digest: Schedule | None = None  # None: alert at once
    priority: str = "normal"

    def watches(self, feed_id: str) -> bool:
        return self.feed_ids is None or feed_id in self.feed_ids


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """When a channel may be sent to: its quiet hours and its rate limit, if any."""

    quiet: QuietHours | None = None
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration; ``path`` is the file it came from."""

    path: Path
    settings: WatcherSettings
    feeds: tuple[FeedConfig, ...]
    rules: tuple[Rule, ...]
    channels: Mapping[str, ChannelConfig]
    written_urls: Mapping[str, str] = field(default_factory=dict)  # feed id -> URL as written
    entities: Mapping[str, Entity] = field(default_factory=dict)  # packs merged with the user's
    policies: Mapping[str, ChannelPolicy] = field(default_factory=dict)  # channel -> policy
    templates: Templates = field(default_factory=Templates)  # defaults + channels' overrides
    secrets: frozenset[str] = frozenset()  # values never to be logged: channel URLs, ${...}
    _rules_by_name: Mapping[str, Rule] = field(default_factory=dict, init=False, repr=False)
    # feed id -> positions of the rules that name it; rules naming no feed watch them all
    _rules_naming: Mapping[str, tuple[int, ...]] = field(
        default_factory=dict, init=False, repr=False
    )
    _rules_for_all: tuple[int, ...] = field(default=(), init=False, repr=False)

    def policy(self, channel: str) -> ChannelPolicy:
        return self.policies.get(channel, ChannelPolicy())

    @property
    def health(self) -> HealthPolicy:
        settings = self.settings
        return HealthPolicy(
            settings.health_failures, settings.health_after, settings.health_channels
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rules_by_name", {rule.name: rule for rule in self.rules})
        naming: dict[str, list[int]] = {}
        for number, rule in enumerate(self.rules):
            for feed_id in rule.feed_ids or ():
                naming.setdefault(feed_id, []).append(number)
        everywhere = tuple(n for n, rule in enumerate(self.rules) if rule.feed_ids is None)
        object.__setattr__(self, "_rules_naming", {k: tuple(v) for k, v in naming.items()})
        object.__setattr__(self, "_rules_for_all", everywhere)

    def rule(self, name: str) -> Rule | None:
        """The rule of that name (asked for every delivery: a dict, not a scan of 10,000)."""
        return self._rules_by_name.get(name)

    def shown_url(self, feed: FeedConfig) -> str:
        """The feed URL as the file spells it: a token read from ``${VAR}`` stays hidden."""
        return self.written_urls.get(feed.id, feed.url)

    def interval(self, feed: FeedConfig) -> timedelta:
        return feed.interval or self.settings.default_interval

    def alert_backlog(self, feed: FeedConfig) -> bool:
        return self.settings.alert_backlog if feed.alert_backlog is None else feed.alert_backlog

    def rules_key(self, feed_id: str) -> tuple[int, ...]:
        """Equal for feeds watched by the same rules (those that name it, besides all-feed ones)."""
        return self._rules_naming.get(feed_id, ())

    def rules_for(self, feed_id: str) -> tuple[Rule, ...]:
        """The rules watching ``feed_id``, in config order (an index, not a scan of 10,000)."""
        named = self._rules_naming.get(feed_id, ())
        return tuple(self.rules[n] for n in heapq.merge(self._rules_for_all, named))


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate the config at ``path``; raise ConfigError listing every problem."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"no such file: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", str(path)) from exc
    return build_config(raw, path, os.environ if environ is None else environ)


def build_config(raw: dict[str, Any], path: Path, environ: Mapping[str, str]) -> Config:
    problems: list[str] = []
    expand = _Expansion(environ, path.parent, problems)
    expanded = expand(raw)
    try:
        model = ConfigFile.model_validate(expanded)
    except ValidationError as exc:
        problems += _describe(exc, raw) + _match_problems(expanded)
        raise ConfigError(problems, str(path)) from None
    entities = _entities(model, path.parent, problems)
    rules = _cross_check(model, entities, problems)
    templates = _template_overrides(model, problems)
    if problems:
        raise ConfigError(problems, str(path))
    settings = model.watcher
    if environ.get("WATCHER_DATABASE"):  # containers and services point at their volume
        # ${file:...} works here too: a database password can come from a secret file.
        database = expand(environ["WATCHER_DATABASE"], ("WATCHER_DATABASE",))
        if problems:
            raise ConfigError(problems, str(path))
        settings = settings.model_copy(update={"database": database})
    return Config(
        path=path,
        settings=_resolve_database(settings, path.parent),
        feeds=tuple(_resolve_file_url(feed, path.parent) for feed in model.feeds),
        rules=rules,
        channels=model.channels,
        written_urls=_urls_with_variables(raw),
        entities=entities,
        policies=_policies(model),
        templates=Templates(templates),
        secrets=frozenset(
            expand.secrets
            | {url.get_secret_value() for c in model.channels.values() for url in c.urls}
        ),
    )


def _template_overrides(model: ConfigFile, problems: list[str]) -> dict[str, dict[str, str]]:
    """Every channel's template overrides, each compiled and tried on a sample message now, so
    that a mistake is a config error at start, never a lost alert later."""
    overrides = {name: c.templates for name, c in model.channels.items() if c.templates}
    for channel, sources in overrides.items():
        for name, source in sources.items():
            try:
                Templates({channel: {name: source}})
            except TemplateError as exc:
                problems.append(f"channels.{channel}.templates.{name}: {exc.problem}")
    return overrides


def _policies(model: ConfigFile) -> dict[str, ChannelPolicy]:
    default = model.watcher.timezone
    return {
        name: ChannelPolicy(
            quiet=QuietHours.parse(c.quiet, ZoneInfo(c.timezone or default)) if c.quiet else None,
            rate_limit=RateLimit.parse(c.rate_limit) if c.rate_limit else None,
        )
        for name, c in model.channels.items()
    }


def _urls_with_variables(raw: dict[str, Any]) -> dict[str, str]:
    return {
        feed["id"]: feed["url"]
        for feed in raw.get("feeds", [])
        if isinstance(feed.get("url"), str) and _REF.search(feed["url"])
    }


@dataclass
class _Expansion:
    """Replaces ``${VAR}`` and ``${file:PATH}`` (relative to the config file) in every string,
    and remembers what it put in: those are secrets, to be kept out of logs."""

    environ: Mapping[str, str]
    base: Path
    problems: list[str]
    secrets: set[str] = field(default_factory=set)

    def __call__(self, value: Any, loc: tuple[str | int, ...] = ()) -> Any:
        if isinstance(value, str):
            return _REF.sub(lambda ref: self._resolve(ref, loc), value)
        if isinstance(value, dict):
            return {k: self(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    def _resolve(self, ref: re.Match[str], loc: tuple[str | int, ...]) -> str:
        if ref["var"]:
            if ref["var"] not in self.environ:
                self.problems.append(
                    f"{key_path(loc)}: environment variable {ref['var']} is not set"
                )
                return ""
            secret = self.environ[ref["var"]]
        else:
            path = self.base / ref["file"].strip()
            try:
                with path.open("rb") as handle:
                    data = handle.read(_SECRET_FILE_LIMIT + 1)
                if len(data) > _SECRET_FILE_LIMIT:
                    raise ValueError(f"larger than {_SECRET_FILE_LIMIT // 1024} KiB")
                secret = data.decode("utf-8").rstrip("\r\n")
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                self.problems.append(f"{key_path(loc)}: cannot read secret file {path}: {reason}")
                return ""
        if len(secret) >= 4:  # shorter ones would mask ordinary words in the logs
            self.secrets.add(secret)
        return secret


def key_path(loc: Sequence[str | int]) -> str:
    """('rules', 2, 'match') -> 'rules[2].match'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not _is_pydantic_tag(p))
        where = key_path(loc)
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
            continue
        if error["type"] == "missing":
            lines.append(f"{where}: required key is missing")
            continue
        found = _quote(loc, _lookup(raw, loc))
        lines.append(f"{where}: {found}; {_expected(error)}")
    return lines


_EXPECTED = {
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_pattern_mismatch": "expected letters, digits, '.', '_' or '-', starting with a "
    "letter or digit",
}


def _is_pydantic_tag(part: object) -> bool:
    # Union members and validator tags show up in locations; users never wrote them.
    return isinstance(part, str) and (part.startswith("function-") or part in {"timedelta"})


def _expected(error: ErrorDetails) -> str:
    ctx = error.get("ctx", {})
    if error["type"] in _EXPECTED:
        return _EXPECTED[error["type"]]
    if error["type"] == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s)"
    if error["type"] in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        return f"expected a number {'>=' if 'ge' in ctx else '<='} {bound}"
    if error["type"] == "literal_error":
        return f"expected {ctx.get('expected')}"
    if error["type"] == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters"
    if error["type"] == "string_too_short":
        return "expected a non-empty string"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith(("expected", "Input should")):
        return message[0].lower() + message[1:]
    return f"expected: {message[0].lower()}{message[1:]}"


def _lookup(raw: Any, loc: Sequence[str | int]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def _quote(loc: Sequence[str | int], value: Any) -> str:
    if "channels" in loc[:1] and "urls" in loc:
        return "value hidden (channel URLs may hold secrets)"
    text = repr(value)
    return f"got {text if len(text) <= 80 else text[:77] + '...'}"


def _match_problems(raw: dict[str, Any]) -> list[str]:
    """Rule syntax, checked even when the rest of the file has errors: report it all at once."""
    entities, rules = raw.get("entities"), raw.get("rules")
    if not isinstance(entities, dict):
        entities = {}
    if not isinstance(rules, list):
        rules = []
    names = {k: Entity() for k in entities}  # syntax only: any referenced id is fine
    problems = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("match"), str):
            continue
        try:
            compile_query(rule["match"], names)
        except QuerySyntaxError as exc:  # entities may come from packs not loaded here
            problems.append(f"rules[{i}] ({rule.get('name', '?')}).match: {exc}")
        except RuleError:
            pass
    return problems


def _entities(model: ConfigFile, base: Path, problems: list[str]) -> dict[str, Entity]:
    """The packs in the order listed (a later pack wins an id), then the user's own entities,
    which replace a pack entity of the same id, or add to it with ``extend = true``."""
    merged: dict[str, EntityConfig] = {}
    for i, pack in enumerate(model.watcher.entity_packs):
        merged.update(_load_pack(pack, base, f"watcher.entity_packs[{i}]", problems))
    for name, entity in model.entities.items():
        merged[name] = entity.merged_into(merged.get(name))
    return {name: Entity(names=e.names, exact=e.exact) for name, e in merged.items()}


def packs_dir() -> Path:
    """Installed: the ``watcher._packs`` package; in a checkout: ``config/entities``."""
    try:
        module = importlib.import_module("watcher._packs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "config" / "entities"
    return Path(str(module.__file__)).parent


def available_packs() -> list[str]:
    return sorted(p.stem for p in packs_dir().glob("*.toml") if p.stem != "extra")


def _load_pack(pack: str, base: Path, where: str, problems: list[str]) -> dict[str, EntityConfig]:
    """A built-in pack by name, or a pack file of the user's own (a path ending in .toml)."""
    if pack.endswith(".toml"):
        path = base / pack
    elif pack in available_packs():
        path = packs_dir() / f"{pack}.toml"
    else:
        known = ", ".join(available_packs())
        problems.append(f"{where}: got {pack!r}; expected one of {known}, or a .toml file")
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return {name: EntityConfig.model_validate(e) for name, e in raw.items()}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{where}: cannot read entity pack {path}: {exc}")
    except ValidationError as exc:
        problems.extend(f"{where} ({path}): {line}" for line in _describe(exc, raw))
    return {}


def _cross_check(
    model: ConfigFile, entities: Mapping[str, Entity], problems: list[str]
) -> tuple[Rule, ...]:
    _check_unique([f.id for f in model.feeds], "feeds", "id", problems)
    _check_unique([r.name for r in model.rules], "rules", "name", problems)
    feed_ids = {f.id for f in model.feeds}
    tags = {t for f in model.feeds for t in f.tags}
    rules = []
    for i, rule in enumerate(model.rules):
        where = f"rules[{i}] ({rule.name})"
        _check_channels(rule.channels, f"{where}.channels", model, problems)
        selected = _select_feeds(rule, where, model.feeds, feed_ids, tags, problems)
        try:
            query = compile_query(rule.match, entities)
        except RuleError as exc:
            problems.append(f"{where}.match: {exc}")
            continue
        digest = None
        if rule.delivery != "instant":
            digest = Schedule(rule.delivery, ZoneInfo(rule.timezone or model.watcher.timezone))
        rules.append(Rule(rule.name, query, rule.channels, selected, digest, rule.priority))
    _check_channels(model.watcher.health_channels, "watcher.health_channels", model, problems)
    return tuple(rules)


def _check_channels(
    channels: Sequence[str], where: str, model: ConfigFile, problems: list[str]
) -> None:
    known = ", ".join(sorted(model.channels)) or "none defined"
    for j, channel in enumerate(channels):
        if channel not in model.channels:
            problems.append(
                f"{where}[{j}]: got {channel!r}; expected a channel defined under [channels] "
                f"({known})"
            )


def _select_feeds(
    rule: RuleConfig,
    where: str,
    feeds: Sequence[FeedConfig],
    feed_ids: set[str],
    tags: set[str],
    problems: list[str],
) -> frozenset[str] | None:
    if rule.feeds is None:
        return None
    selected: set[str] = set()
    for j, ref in enumerate(rule.feeds):
        if ref.startswith("tag:"):
            tag = ref.removeprefix("tag:")
            if tag not in tags:
                problems.append(f"{where}.feeds[{j}]: got {ref!r}; no feed has the tag {tag!r}")
            selected.update(f.id for f in feeds if tag in f.tags)
        elif ref in feed_ids:
            selected.add(ref)
        else:
            problems.append(
                f"{where}.feeds[{j}]: got {ref!r}; expected a feed id or 'tag:NAME' "
                "naming a configured feed"
            )
    return frozenset(selected)


def _check_unique(values: list[str], section: str, key: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            problems.append(f"{section}[{i}].{key}: got {value!r}; expected a unique {key}")
        seen.add(value)


def _resolve_database(settings: WatcherSettings, base: Path) -> WatcherSettings:
    """Relative SQLite paths are relative to the config file, not the working directory."""
    prefix = "sqlite:///"
    db = settings.database
    if not db.startswith(prefix) or db == "sqlite:///:memory:":
        return settings
    file = Path(db.removeprefix(prefix).split("?", 1)[0])
    if file.is_absolute():
        return settings
    query = db.partition("?")[2]
    resolved = f"{prefix}{base / file}" + (f"?{query}" if query else "")
    return settings.model_copy(update={"database": resolved})


def _resolve_file_url(feed: FeedConfig, base: Path) -> FeedConfig:
    """``file:feeds/x.xml`` is relative to the config file; ``file:///abs`` is absolute."""
    if not feed.url.lower().startswith("file:"):
        return feed
    rest = feed.url[len("file:") :]
    path = Path(rest[2:] if rest.startswith("//") else rest)
    if not path.is_absolute():
        path = base / path
    return feed.model_copy(update={"url": path.resolve().as_uri()})
