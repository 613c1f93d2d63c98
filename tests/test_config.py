from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.configs import NATO_UKRAINE_ENTITIES
from watcher.config import load_config, parse_duration
from watcher.errors import ConfigError
from watcher.messages import Format
from watcher.notify import sample_alert
from watcher.rules import Document

REPO = Path(__file__).resolve().parents[1]

VALID = (
    """
[watcher]
database = "sqlite:///data/watcher.db"
default_interval = "10m"

[[feeds]]
id = "guardian-world"
url = "https://www.theguardian.com/world/rss"
interval = "5m"
tags = ["world"]

[[feeds]]
id = "local"
url = "file:feeds/local.xml"

"""
    + NATO_UKRAINE_ENTITIES
    + """
[[rules]]
name = "nato-ukraine"
match = "@nato AND @ukraine"
channels = ["newsroom"]
feeds = ["tag:world"]

[[rules]]
name = "everything-kyiv"
match = "Kyiv"
channels = ["newsroom"]

[channels.newsroom]
urls = ["slack://${SLACK_TOKEN}/#news"]
"""
)


def problems(text: str, write_config, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(text), env if env is not None else {"SLACK_TOKEN": "T/B/C"})
    return caught.value.problems


def test_valid_config_loads_with_defaults_and_resolved_paths(write_config, tmp_path: Path) -> None:
    config = load_config(write_config(VALID), {"SLACK_TOKEN": "xoxb/secret/token"})
    assert config.settings.database == f"sqlite:///{tmp_path}/data/watcher.db"
    assert [f.id for f in config.feeds] == ["guardian-world", "local"]
    assert config.feeds[1].url == (tmp_path / "feeds" / "local.xml").as_uri()
    assert config.interval(config.feeds[0]) == timedelta(minutes=5)
    assert config.interval(config.feeds[1]) == timedelta(minutes=10)
    assert config.alert_backlog(config.feeds[0]) is False
    assert [r.name for r in config.rules_for("guardian-world")] == [
        "nato-ukraine",
        "everything-kyiv",
    ]
    assert [r.name for r in config.rules_for("local")] == ["everything-kyiv"]
    url = config.channels["newsroom"].urls[0]
    assert url.get_secret_value() == "slack://xoxb/secret/token/#news"
    assert "secret" not in repr(config.channels)


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "watcher.example.toml", {})
    assert config.rules[0].name == "nato-ukraine"
    assert Path(config.feeds[0].url.removeprefix("file://")).is_file()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('match = "Kyiv"', 'match = "Kyiv AND (NATO"'),
            "rules[1] (everything-kyiv).match: unclosed parenthesis",
        ),
        (
            ('match = "Kyiv"', 'match = "@russia"'),
            "rules[1] (everything-kyiv).match: unknown entity @russia",
        ),
        (
            ('interval = "5m"', 'interval = "soon"'),
            "feeds[0].interval: got 'soon'; expected a duration",
        ),
        (
            ('interval = "5m"', 'interval = "0s"'),
            "feeds[0].interval: got '0s'; expected a duration of at least 1s",
        ),
        (('tags = ["world"]', 'tagz = ["world"]'), "feeds[0].tagz: unknown key"),
        (("[watcher]", "[watcher]\npoll = 1"), "watcher.poll: unknown key"),
        (
            ('url = "https://www', 'url = "gopher://www'),
            "feeds[0].url: got 'gopher://www.theguardian.com/world/rss'; "
            "expected an http://, https:// or file: URL",
        ),
        (
            ('id = "local"', 'id = "guardian-world"'),
            "feeds[1].id: got 'guardian-world'; expected a unique id",
        ),
        (
            ('channels = ["newsroom"]\nfeeds', 'channels = ["nowhere"]\nfeeds'),
            "rules[0] (nato-ukraine).channels[0]: got 'nowhere'; "
            "expected a channel defined under [channels] (newsroom)",
        ),
        (
            ('feeds = ["tag:world"]', 'feeds = ["tag:sport"]'),
            "rules[0] (nato-ukraine).feeds[0]: got 'tag:sport'; no feed has the tag 'sport'",
        ),
        (
            ('feeds = ["tag:world"]', 'feeds = ["guardian"]'),
            "rules[0] (nato-ukraine).feeds[0]: got 'guardian'; expected a feed id",
        ),
        (
            ('names = ["NATO", "North Atlantic Treaty Organization"]', "names = []"),
            "entities.nato: got {'names': []}; expected at least one name",
        ),
        (('name = "everything-kyiv"\n', ""), "rules[1].name: required key is missing"),
        (
            ('match = "Kyiv"', 'match = "Kyiv"\ndelivery = "weekly"'),
            "rules[1].delivery: got 'weekly'; expected 'instant', 'hourly', 'daily HH:MM' or a "
            "cron expression",
        ),
        (
            ('match = "Kyiv"', 'match = "Kyiv"\ntimezone = "Mars/Olympus"'),
            "rules[1].timezone: got 'Mars/Olympus'; expected a timezone name",
        ),
        (
            ('match = "Kyiv"', 'match = "Kyiv"\npriority = "urgent"'),
            "rules[1].priority: got 'urgent'; expected 'normal' or 'high'",
        ),
        (
            ('urls = ["slack', 'quiet = "22-07"\nurls = ["slack'),
            "channels.newsroom.quiet: got '22-07'; expected a span such as '22:00-07:00'",
        ),
        (
            ('urls = ["slack', 'rate_limit = "lots"\nurls = ["slack'),
            "channels.newsroom.rate_limit: got 'lots'; expected a limit such as '5/minute'",
        ),
        (
            ("[watcher]", '[watcher]\nhealth_channels = ["pager"]'),
            "watcher.health_channels[0]: got 'pager'; expected a channel defined under "
            "[channels] (newsroom)",
        ),
    ],
)
def test_mistakes_name_the_key_path_value_and_expectation(
    change: tuple[str, str], expected: str, write_config
) -> None:
    old, new = change
    assert old in VALID
    found = problems(VALID.replace(old, new, 1), write_config)
    assert any(p.startswith(expected) for p in found), found


def test_syntax_error_shows_a_caret(write_config) -> None:
    [problem] = problems(VALID.replace('match = "Kyiv"', 'match = "Kyiv AND"'), write_config)
    assert "^" in problem


def test_missing_environment_variable_is_named(write_config) -> None:
    assert problems(VALID, write_config, env={}) == [
        "channels.newsroom.urls[0]: environment variable SLACK_TOKEN is not set"
    ]


def test_every_problem_is_reported_at_once(write_config) -> None:
    text = VALID.replace('interval = "5m"', 'interval = "x"').replace(
        'tags = ["world"]', "tags = 3"
    )
    found = problems(text, write_config)
    assert len(found) == 2


def test_channel_urls_are_never_echoed(write_config) -> None:
    text = VALID.replace('urls = ["slack://${SLACK_TOKEN}/#news"]', 'urls = "slack://hunter2"')
    found = problems(text, write_config)
    assert found and all("hunter2" not in p for p in found)


def test_file_errors_are_config_errors(tmp_path: Path, write_config) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_config("[watcher\n"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800), (45, 45), ("1.5h", 5400)],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "m", "10 minutes", "5x", "1h fish", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_database_can_be_overridden_from_the_environment(write_config) -> None:
    env = {"SLACK_TOKEN": "t", "WATCHER_DATABASE": "sqlite:////data/watcher.db"}
    assert load_config(write_config(VALID), env).settings.database == "sqlite:////data/watcher.db"


def test_database_url_is_checked(write_config) -> None:
    found = problems(VALID.replace("sqlite:///data/watcher.db", "mysql://x/y"), write_config)
    assert found == [
        "watcher.database: got 'mysql://x/y'; expected a database URL such as "
        "'sqlite:///watcher.db' or 'postgresql://user@host/dbname'"
    ]


PACKS = """
[watcher]
entity_packs = ["countries", "organizations"]

[entities.ukraine]
extend = true
names = ["Zaporizhzhia"]

[entities.who]
exact = ["WHO"]
names = ["World Health Organisation"]

[[rules]]
name = "r"
match = "@ukraine AND (@nato OR @who)"
channels = ["c"]

[channels.c]
urls = ["console://"]
"""


def test_entity_packs_are_included_and_can_be_extended_or_replaced(write_config) -> None:
    [rule] = load_config(write_config(PACKS), {}).rules
    assert rule.query.match(Document(title="Zaporizhzhia plant: NATO statement"))
    assert rule.query.match(Document(title="Україна і НАТО"))  # noqa: RUF001 (Cyrillic on purpose)
    assert rule.query.match(Document(title="WHO team reaches Kyiv"))
    assert not rule.query.match(Document(title="Who will rebuild Kyiv?"))  # exact: WHO only
    # [entities.who] without extend replaces the pack's entity.
    assert not rule.query.match(Document(title="World Health Organization team in Kyiv"))
    assert rule.query.match(Document(title="World Health Organisation team in Kyiv"))


def test_unknown_pack_lists_the_known_ones(write_config) -> None:
    found = problems(PACKS.replace('"organizations"]', '"organisations"]'), write_config, env={})
    assert found[0] == (
        "watcher.entity_packs[1]: got 'organisations'; expected one of countries, "
        "organizations, or a .toml file"
    )


def test_a_pack_of_ones_own(write_config, tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('[acme]\nnames = ["Acme Corp"]\nexact = ["ACME"]\n')
    text = PACKS.replace('["countries", "organizations"]', '["countries", "mine.toml"]').replace(
        "(@nato OR @who)", "@acme"
    )
    [rule] = load_config(write_config(text), {}).rules
    assert rule.query.match(Document(title="ACME opens office in Kyiv"))


def test_an_entity_needs_a_name(write_config) -> None:
    text = PACKS.replace('exact = ["WHO"]\nnames = ["World Health Organisation"]', "exact = []")
    found = problems(text, write_config, env={})
    assert found == [
        "entities.who: got {'exact': []}; expected at least one name in 'names' or 'exact'"
    ]


def test_delivery_policies_are_read_in_their_timezones(write_config) -> None:
    text = VALID.replace('match = "Kyiv"', 'match = "Kyiv"\ndelivery = "daily 08:00"')
    text = text.replace(
        "[watcher]", '[watcher]\ntimezone = "Europe/Kyiv"\nhealth_channels = ["newsroom"]'
    )
    text = text.replace(
        'urls = ["slack',
        'quiet = "22:00-07:00"\ntimezone = "America/New_York"\nrate_limit = "5/min"\n'
        'urls = ["slack',
    )
    config = load_config(write_config(text), {"SLACK_TOKEN": "T/B/C"})
    digest = config.rule("everything-kyiv").digest  # type: ignore[union-attr]
    assert digest is not None and digest.describe() == "daily 08:00 (Europe/Kyiv)"
    assert config.rule("nato-ukraine").digest is None  # type: ignore[union-attr]
    policy = config.policy("newsroom")
    assert policy.quiet is not None and policy.quiet.describe() == "22:00-07:00 (America/New_York)"
    assert policy.rate_limit is not None and policy.rate_limit.describe() == "5 per minute"
    assert config.health.channels == ("newsroom",)


def test_template_mistakes_are_config_errors(write_config) -> None:
    text = VALID + (
        '[channels.newsroom.templates]\nalert_title = "{{ rule }"\nalert_body = "{{ nope }}"\n'
    )
    found = problems(text, write_config)
    assert any(p.startswith("channels.newsroom.templates.alert_title: line 1") for p in found)
    assert any(
        p.startswith("channels.newsroom.templates.alert_body:") and "nope" in p for p in found
    ), found


def test_a_channel_template_override_is_used(write_config) -> None:
    text = VALID + '[channels.newsroom.templates]\nalert_title = "NEWS: {{ title }}"\n'
    config = load_config(write_config(text), {"SLACK_TOKEN": "T/B/C"})
    message = config.templates.render(sample_alert("newsroom"), "newsroom", Format.TEXT)
    assert message.title.startswith("NEWS: Test alert from watcher")
    other = config.templates.render(sample_alert("elsewhere"), "elsewhere", Format.TEXT)
    assert other.title.startswith("[notify-test]")


def test_secrets_from_files(write_config, tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "slack").write_text("xoxb-from-a-file\n")  # as `echo` writes it
    text = VALID.replace("slack://${SLACK_TOKEN}/#news", "slack://${file:secrets/slack}/#news")
    config = load_config(write_config(text), {})
    [url] = config.channels["newsroom"].urls
    assert url.get_secret_value() == "slack://xoxb-from-a-file/#news"
    assert "xoxb-from-a-file" in config.secrets
    assert "slack://xoxb-from-a-file/#news" in config.secrets


def test_a_missing_secret_file_names_the_key_and_the_file(write_config, tmp_path: Path) -> None:
    text = VALID.replace("slack://${SLACK_TOKEN}/#news", "slack://${file:/run/secrets/nope}")
    [problem] = problems(text, write_config, {})
    assert problem == (
        "channels.newsroom.urls[0]: cannot read secret file /run/secrets/nope: "
        "No such file or directory"
    )


def test_the_database_url_from_the_environment_may_read_a_secret_file(
    write_config, tmp_path: Path
) -> None:
    (tmp_path / "pg-password").write_text("pg-s3cret\n")
    env = {
        "SLACK_TOKEN": "T/B/C",
        "WATCHER_DATABASE": "postgresql://watcher:${file:pg-password}@db/watcher",
    }
    config = load_config(write_config(VALID), env)
    assert config.settings.database == "postgresql://watcher:pg-s3cret@db/watcher"
    assert "pg-s3cret" in config.secrets
