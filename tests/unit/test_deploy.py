"""docker-compose.yml, the Dockerfile and deploy/nginx.conf run the real thing: the
console script's real subcommands and flags (as `--help` lists them), environment
names that are real settings with valid values, and an nginx upstream that is
exactly the replica services. (No Docker daemon here: nothing is built or run.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from claude_code_api.settings import Settings
from tests.conftest import CLI, FORKS, ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
REPLICAS = {name: s for name, s in SERVICES.items() if s.get("build") == "."}
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()


def help_of(*args: str) -> str:
    done = FORKS.run([str(CLI), *args, "--help"], {"PATH": "/usr/bin:/bin"}, ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def dockerfile_cmd() -> list[str]:
    [line] = [text for text in (ROOT / "Dockerfile").read_text().splitlines()
              if text.startswith("CMD ")]
    return list(json.loads(line.removeprefix("CMD ")))


def port_of(command: list[str]) -> int:
    return int(command[command.index("--port") + 1])


def test_two_replicas_postgresql_redis_and_nginx() -> None:
    assert len(REPLICAS) == 2
    assert {"postgres", "redis", "nginx"} <= set(SERVICES)
    for service in REPLICAS.values():
        assert {"postgres", "redis"} <= set(service["depends_on"])
        assert all(d["condition"] == "service_healthy"
                   for d in service["depends_on"].values())
    assert set(SERVICES["nginx"]["depends_on"]) == set(REPLICAS)
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in SERVICES["nginx"]["volumes"]


@pytest.mark.parametrize("command", [*(s["command"] for s in REPLICAS.values()),
                                     dockerfile_cmd()], ids=["replica-1", "replica-2",
                                                             "Dockerfile"])
def test_the_commands_are_the_console_scripts_real_ones(command: list[str]) -> None:
    assert command[0] == "claude-code-api"
    listed = re.search(r"\{([a-z,]+)\}", help_of())
    assert listed is not None
    subcommands = listed.group(1).split(",")
    assert command[1] in subcommands
    flags = set(re.findall(r"(--[a-z][a-z-]*)", help_of(command[1])))
    used = [arg for arg in command[2:] if arg.startswith("-")]
    assert used and set(used) <= flags, f"{used} not all in {sorted(flags)}"
    assert command == dockerfile_cmd()  # compose runs what the image runs by default


def _settings_of(environment: dict[str, str]) -> dict[str, dict[str, str]]:
    """CLAUDE_CODE__SECTION__KEY variables as settings, each ${...} given a value."""
    nested: dict[str, dict[str, str]] = {}
    for name, value in environment.items():
        if name.startswith("CLAUDE_CODE__"):
            section, key = name.removeprefix("CLAUDE_CODE__").lower().split("__")
            nested.setdefault(section, {})[key] = re.sub(r"\$\{[^}]*\}", "pw", str(value))
    return nested


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_the_environment_names_real_settings_with_valid_values(name: str) -> None:
    nested = _settings_of(REPLICAS[name]["environment"])
    for section, values in nested.items():
        assert section in Settings.model_fields, f"no settings section `{section}`"
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        unknown = set(values) - set(model.model_fields)
        assert not unknown, f"no setting {section}.{unknown}"
    settings = Settings(**nested)  # type: ignore[arg-type]
    assert settings.auth_required()
    assert settings.server.replica_id == name
    assert settings.store.url is not None and "@postgres:5432/" in settings.store.url
    assert "redis://redis:6379" in str(nested["redis"]["url"])


def test_healthchecks_call_health_on_the_served_port() -> None:
    for service in REPLICAS.values():
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port_of(service['command'])}/health" in probe


def test_nginx_balances_exactly_the_replicas_with_consistent_hashing() -> None:
    [(upstream, body)] = re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", NGINX)
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", body, re.MULTILINE)
    assert {host for host, _ in servers} == set(REPLICAS)
    assert {int(port) for _, port in servers} == {port_of(s["command"])
                                                  for s in REPLICAS.values()}
    assert re.search(r"^\s*hash \$affinity consistent;", body, re.MULTILINE)
    assert re.search(rf"proxy_pass http://{upstream};", NGINX)
    # The affinity is the conversation id when there is one.
    assert re.search(r"map \$http_x_conversation_id \$affinity", NGINX)
    published = SERVICES["nginx"]["ports"]
    assert any(p.endswith(":80") for p in published) and "listen 80;" in NGINX


def test_the_image_installs_the_package_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in text
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert "ENTRYPOINT" not in text
    for copied in re.findall(r"^COPY (.+) \./", text, re.MULTILINE):
        for path in copied.split():
            assert (ROOT / path).exists(), path
