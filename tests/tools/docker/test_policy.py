"""The Docker rules of `just docker-lint`: the shipped files pass, and each broken rule is caught,
by the schema overlay (tools/docker/compose.schema.json) or by tools/docker/policy.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from deploy.rabbitmq_users import permissions
from tools.docker import policy
from tools.harness.names import ROOT

SCHEMA = Draft202012Validator(json.loads((ROOT / "tools/docker/compose.schema.json").read_text()))


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    return doc


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Where the document breaks the overlay (JSON paths of the failing values)."""
    return sorted(error.json_path for error in SCHEMA.iter_errors(doc))


def env_example() -> str:
    return (ROOT / ".env.example").read_text()


def test_the_shipped_files_pass_every_rule() -> None:
    assert schema_errors(compose()) == []
    assert policy.problems() == []


def test_compose_setting_environment_to_development_is_refused() -> None:
    doc = compose()
    doc["services"]["api"]["environment"]["ENVIRONMENT"] = "${ENVIRONMENT:-development}"
    assert schema_errors(doc) == ["$.services.api.environment.ENVIRONMENT"]


@pytest.mark.parametrize(
    "value",
    ["${JWT_SECRET:-dev-only-secret}", "${JWT_SECRET}", "a-literal-secret-of-forty-bytes-or-so-x"],
)
def test_compose_must_require_jwt_secret_without_a_default(value: str) -> None:
    doc = compose()
    doc["services"]["api"]["environment"]["JWT_SECRET"] = value
    assert "$.services.api.environment.JWT_SECRET" in schema_errors(doc)


def test_the_api_without_jwt_secret_is_refused() -> None:
    doc = compose()
    del doc["services"]["api"]["environment"]["JWT_SECRET"]
    assert schema_errors(doc) == ["$.services.api.environment"]


@pytest.mark.parametrize("service", ["migrate", "consumer", "worker"])
@pytest.mark.parametrize("name", ["JWT_SECRET", "JWT_PRIVATE_KEY"])
def test_signing_material_given_to_a_process_that_signs_nothing_is_refused(
    service: str, name: str
) -> None:
    doc = compose()
    doc["services"][service]["environment"][name] = f"${{{name}:?{name} is not set}}"
    assert schema_errors(doc) == [f"$.services.{service}.environment"]


@pytest.mark.parametrize("service", ["api", "migrate", "consumer", "worker"])
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cap_drop", None),
        ("cap_drop", ["NET_RAW"]),
        ("security_opt", None),
        ("security_opt", ["no-new-privileges:false"]),
        ("read_only", None),
        ("read_only", False),
        ("tmpfs", None),
    ],
)
def test_an_app_container_without_its_hardening_is_refused(
    service: str, key: str, value: object
) -> None:
    doc = compose()
    if value is None:
        del doc["services"][service][key]
        expected = f"$.services.{service}"
    else:
        doc["services"][service][key] = value
        expected = f"$.services.{service}.{key}"
    assert schema_errors(doc) == [expected]


@pytest.mark.parametrize("service", ["postgres", "redis", "rabbitmq"])
@pytest.mark.parametrize("form", ["tag", "digest", "latest"])
def test_a_service_image_not_pinned_by_digest_beside_its_tag_is_refused(
    service: str, form: str
) -> None:
    doc = compose()
    tag, _, digest = doc["services"][service]["image"].partition("@")
    name = tag.partition(":")[0]
    images = {"tag": tag, "digest": f"{name}@{digest}", "latest": f"{name}:latest@{digest}"}
    doc["services"][service]["image"] = images[form]
    assert schema_errors(doc) == [f"$.services.{service}.image"]


def test_a_long_running_service_without_a_healthcheck_is_refused() -> None:
    doc = compose()
    del doc["services"]["worker"]["healthcheck"]
    assert schema_errors(doc) == ["$.services.worker"]


def test_a_dependency_on_a_mere_start_is_refused() -> None:
    doc = compose()
    doc["services"]["api"]["depends_on"]["redis"] = {"condition": "service_started"}
    assert schema_errors(doc) == ["$.services.api.depends_on.redis.condition"]


def test_a_password_with_a_default_in_a_url_is_refused() -> None:
    doc = compose()
    env = doc["services"]["consumer"]["environment"]
    env["REDIS_URL"] = "redis://consumer:${REDIS_CONSUMER_PASSWORD:-consumer}@redis:6379/0"
    assert schema_errors(doc) == ["$.services.consumer.environment.REDIS_URL"]


def test_a_literal_password_in_a_url_is_refused() -> None:
    doc = compose()
    doc["services"]["worker"]["environment"]["REDIS_URL"] = "redis://worker:hunter2@redis:6379/0"
    assert schema_errors(doc) == ["$.services.worker.environment.REDIS_URL"]


def test_redis_without_a_password_is_refused() -> None:
    doc = compose()
    doc["services"]["redis"]["command"] = ["redis-server", "--appendonly", "yes"]
    assert schema_errors(doc) == ["$.services.redis.command"]


def test_app_containers_do_not_read_the_whole_env_file() -> None:
    doc = compose()
    doc["services"]["consumer"]["env_file"] = [{"path": ".env", "required": False}]
    assert schema_errors(doc) == ["$.services.consumer.env_file"]


def test_a_url_without_credentials_is_refused() -> None:
    doc = compose()
    doc["services"]["api"]["environment"]["REDIS_URL"] = "redis://redis:6379/0"
    assert policy.compose_problems(doc) == [
        "services.api: REDIS_URL must carry this process's user and password"
    ]


def test_a_url_to_a_host_outside_the_file_is_refused() -> None:
    doc = compose()
    env = doc["services"]["worker"]["environment"]
    env["RABBITMQ_URL"] = env["RABBITMQ_URL"].replace("@rabbitmq:", "@elsewhere:")
    assert policy.compose_problems(doc) == [
        "services.worker: RABBITMQ_URL must point at a service of this file"
    ]


def test_only_the_migrations_connect_as_the_database_owner() -> None:
    doc = compose()
    owner_url = doc["services"]["migrate"]["environment"]["DATABASE_URL"]
    doc["services"]["api"]["environment"]["DATABASE_URL"] = owner_url
    assert policy.compose_problems(doc) == [
        "services.api: only the migrations connect as the owner postgres"
    ]


def test_dependencies_wait_on_what_their_target_can_reach() -> None:
    doc = compose()
    del doc["services"]["postgres"]["healthcheck"]
    doc["services"]["migrate"]["restart"] = "on-failure"
    problems = policy.compose_problems(doc)
    assert "services.api.depends_on.postgres: waits for health it never reports" in problems
    assert "services.api.depends_on.migrate: migrate must be restart: 'no'" in problems


def test_a_one_shot_service_nothing_waits_for_is_refused() -> None:
    doc = compose()
    for name in ("api", "consumer", "worker"):
        del doc["services"][name]["depends_on"]["migrate"]
    assert policy.compose_problems(doc) == [
        "services.migrate: one-shot service nothing waits for (`up --wait` fails)"
    ]


def test_a_command_running_a_missing_module_is_refused() -> None:
    doc = compose()
    doc["services"]["worker"]["command"] = ["python", "-m", "workers.nowhere"]
    assert policy.compose_problems(doc) == [
        "services.worker: command runs workers.nowhere, which does not exist"
    ]


def test_the_shipped_redis_users_deny_what_reaches_past_their_keys() -> None:
    lines = policy.redis_users_lines()
    assert len(lines.splitlines()) == 3
    assert policy.redis_acl_problems(lines) == []


@pytest.mark.parametrize("rule", policy.REDIS_DENIALS)
def test_a_redis_user_missing_a_denial_is_refused(rule: str) -> None:
    lines = policy.redis_users_lines().replace(f" {rule} ", " ").replace(f" {rule}\n", "\n")
    assert f"deploy/redis-users.sh: user api must deny {rule}" in policy.redis_acl_problems(lines)


@pytest.mark.parametrize("grant", ["+@all", "allkeys", "~*", "+scan", "+script|flush", "+keys"])
def test_a_redis_user_granting_back_what_it_must_not_is_refused(grant: str) -> None:
    lines = policy.redis_users_lines().replace("\n", f" {grant}\n", 1)
    problems = policy.redis_acl_problems(lines)
    assert f"deploy/redis-users.sh: user api must not grant {grant}" in problems


def dockerfile_problems(text: str, ignore: str = ".git\n.venv\n.env\n") -> list[str]:
    return list(policy.dockerfile_problems(text, ignore))


def test_a_base_image_pinned_by_tag_only_is_refused() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pin = dockerfile.split("ARG PYTHON_BASE=", 1)[1].split("\n", 1)[0]
    problems = dockerfile_problems(dockerfile.replace(pin, "python:3.11-slim-bookworm"))
    assert problems == 2 * [
        "Dockerfile: FROM python:3.11-slim-bookworm must be pinned by digest (name:tag@sha256:...)"
    ]  # the builder and the runtime stage


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("USER 10001:10001", "the runtime stage must end as a non-root USER"),
        ("HEALTHCHECK --interval", "the runtime stage needs a HEALTHCHECK"),
        ("EXPOSE 8000", "the runtime stage must EXPOSE 8000"),
        ("--require-hashes --no-deps", "must use --no-deps (and -r with --require-hashes)"),
    ],
)
def test_a_dockerfile_without_its_runtime_rules_is_refused(change: str, expected: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert change in dockerfile
    broken = re.sub(rf"(?m)^.*{re.escape(change)}.*$", "# removed", dockerfile, count=1)
    if change.startswith("--"):  # the dependencies' install, hash-checking and --no-deps gone
        broken = dockerfile.replace(change, "", 1)
    assert any(expected in p for p in dockerfile_problems(broken))


def test_a_secret_baked_into_the_image_and_a_thin_dockerignore_are_refused() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text() + "ENV API_TOKEN=abc\n"
    assert dockerfile_problems(dockerfile, ".git\n.venv\n") == [
        "Dockerfile: ENV API_TOKEN bakes a secret into the image",
        ".dockerignore: add .env",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("JWT_SECRET=dev-only-secret-change-me-in-production", "JWT_SECRET holds a value"),
        ("RABBITMQ_WORKER_PASSWORD=worker", "RABBITMQ_WORKER_PASSWORD holds a value"),
        ("METRICS_TOKEN=abc", "METRICS_TOKEN holds a value"),
        ("REDIS_URL=redis://api:hunter2@127.0.0.1:6379/0", "REDIS_URL holds a password"),
        ("ENVIRONMENT=development", "ENVIRONMENT=development is opt-in"),
    ],
)
def test_env_example_holding_a_secret_value_is_refused(line: str, expected: str) -> None:
    name = line.split("=", 1)[0]
    text = "\n".join(
        line if current.startswith((f"{name}=", f"# {name}=")) else current
        for current in env_example().splitlines()
    )
    assert line in text
    compose_text = (ROOT / "docker-compose.yml").read_text()
    problems = policy.env_example_problems(text, compose_text)
    assert any(expected in p for p in problems), problems


def test_env_example_documents_every_compose_variable() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text() + "\nx-extra: ${DEPLOY_REGION:?x}\n"
    problems = policy.env_example_problems(env_example(), compose_text)
    assert problems == [".env.example: document DEPLOY_REGION, which docker-compose.yml reads"]


def test_dotenv_fills_every_secret_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    script = [sys.executable, "-m", "tools.dotenv", "--output", str(target)]
    subprocess.run(script, check=True, capture_output=True, cwd=ROOT)  # noqa: S603
    written = dict(
        line.split("=", 1) for line in target.read_text().splitlines() if line[:1].isalpha()
    )
    secret_keys = [key for key in written if policy.SECRET_NAME.search(key)]
    assert {"JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_API_PASSWORD"} <= set(secret_keys)
    assert all(len(written[key]) >= 43 for key in secret_keys)
    assert len({written[key] for key in secret_keys}) == len(secret_keys)  # each its own
    assert target.stat().st_mode & 0o777 == 0o600

    again = subprocess.run(script, check=False, capture_output=True, text=True, cwd=ROOT)  # noqa: S603
    assert again.returncode == 1
    assert "exists" in again.stdout + again.stderr
    assert (
        dict(line.split("=", 1) for line in target.read_text().splitlines() if line[:1].isalpha())
        == written
    )


def test_redis_users_script_refuses_a_missing_password() -> None:
    env = {"REDIS_API_PASSWORD": "a", "REDIS_CONSUMER_PASSWORD": "", "REDIS_WORKER_PASSWORD": "c"}
    done = subprocess.run(  # noqa: S603
        ["sh", str(ROOT / "deploy/redis-users.sh")],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "the password of consumer is empty" in done.stderr


def test_rabbitmq_permissions_keep_each_role_to_its_part() -> None:
    rules = permissions("orders", "new_order")

    def allowed(pattern: str, name: str) -> bool:
        return re.search(pattern, name) is not None

    assert allowed(rules["api"].write, "orders")  # publishes
    assert allowed(rules["worker"].write, "orders")  # the outbox sweeper publishes
    assert not allowed(rules["consumer"].write, "orders")  # cannot publish events
    assert allowed(rules["consumer"].read, "new_order")  # consumes
    assert not any(allowed(rule.read, "new_order.dead") for rule in rules.values())
    assert not allowed(rules["api"].configure, "ordersXdlx")  # dots are literal
    assert not allowed(rules["api"].configure, "other_exchange")
