"""The docker deployment cannot run here (no Docker engine), so this keeps it honest: the compose
file parses, its Kafka cluster is a consistent KRaft quorum, every setting it passes is one the
code reads and parses, and the image holds every package the code needs."""

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from memstream.settings import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def substituted(value: Any) -> str:
    """``value`` with compose's ``${VAR:-default}`` / ``${VAR:?message}`` filled as a deployer would."""
    return _VARIABLE.sub(lambda m: f"set-{m.group(1).lower()}" if "?" in m.group(0) else (m.group(2) or ""), str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def memstream_env(compose: dict[str, Any], service: str) -> dict[str, str]:
    return {k: substituted(v) for k, v in compose["services"][service]["environment"].items()}


def test_kafka_is_a_three_node_kraft_quorum(compose: dict[str, Any]) -> None:
    brokers = {name: svc for name, svc in compose["services"].items() if name.startswith("kafka")}
    assert len(brokers) == 3
    ids = {str(svc["environment"]["KAFKA_NODE_ID"]) for svc in brokers.values()}
    env = next(iter(brokers.values()))["environment"]
    voters = {v.split("@")[0]: v.split("@")[1].split(":")[0] for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
    assert set(voters) == ids and set(voters.values()) == set(brokers)
    assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2 and int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # Memstream creates its topics with their partitions
    for name, svc in brokers.items():
        assert svc["environment"]["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"


@pytest.mark.parametrize("service", ["migrate", "worker", "api"])
def test_every_setting_passed_is_read_and_parses(compose: dict[str, Any], service: str) -> None:
    env = memstream_env(compose, service)
    known = {f"MEMSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, f"settings the code does not read: {set(env) - known}"
    settings = Settings(**{k.removeprefix("MEMSTREAM_").lower(): v for k, v in env.items() if v != ""})
    brokers = [name for name in compose["services"] if name.startswith("kafka")]
    assert settings.topic_replication <= len(brokers)
    assert (
        settings.topic_min_insync_replicas is not None
        and settings.topic_min_insync_replicas < settings.topic_replication
    )
    assert {hp.split(":")[0] for hp in settings.kafka_bootstrap.split(",")} == set(brokers)
    clickhouse = urlparse(settings.clickhouse_url)
    assert clickhouse.hostname in compose["services"] and clickhouse.port == 8123
    assert clickhouse.username == compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert settings.root_token and not settings.clickhouse_url.startswith("chdb:")


def test_services_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["worker"]["command"] == ["worker"] and services["worker"]["deploy"]["replicas"] >= 2
    assert services["api"]["command"] == ["api"] and services["migrate"]["command"] == ["migrate"]
    for service in ("worker", "api"):
        assert "migrate" in services[service]["depends_on"]
    mounted = [v.split(":")[0] for v in services["clickhouse"]["volumes"] if v.startswith("./")]
    for path in mounted:
        assert (DOCKER / path).is_file(), path
    users = (DOCKER / "clickhouse" / "users.xml").read_text()
    assert "<readonly>1</readonly>" in users and 'from_env="CLICKHOUSE_ANALYST_PASSWORD"' in users


def test_image_holds_every_product_package() -> None:
    """Every installed package but the dev stand-ins (``scripts``: see tests/unit/test_packaging.py)."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    project = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert "scripts" in packages  # editable installs of a checkout run `memstream dev` from it
    for package in set(packages) - {"scripts"}:
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert 'ENTRYPOINT ["memstream"]' in dockerfile and "memstream" in project["project"]["scripts"]
