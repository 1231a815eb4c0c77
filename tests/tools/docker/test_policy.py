"""`just check-docker`'s secure-by-default rules: each one catches the mistake it is for.

The rules are pure functions over the parsed files, so each test feeds the real file with one
mistake put back in and expects the rule to name it; the shipped files pass them all.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_docker = _load("check_docker")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    return doc


def env_example() -> str:
    return (ROOT / ".env.example").read_text()


def compose_vars() -> set[str]:
    names: set[str] = check_docker.compose_variables((ROOT / "docker-compose.yml").read_text())
    return names


def test_the_shipped_files_pass_every_rule() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert check_docker.compose_policy_problems(compose()) == []
    assert check_docker.dockerfile_policy_problems(dockerfile, [".git", ".venv", ".env"]) == []
    assert check_docker.env_example_problems(env_example(), compose_vars()) == []
    compose_text = (ROOT / "docker-compose.yml").read_text()
    assert check_docker.dotenv_problems(env_example(), compose_text) == []


def test_a_required_compose_variable_that_dotenv_leaves_empty_is_refused() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    compose_text += "\nx-extra: ${DEPLOY_REGION:?set the region}\n"
    text = env_example() + "# Where the stack runs\nDEPLOY_REGION=\n"
    assert check_docker.dotenv_problems(text, compose_text) == [
        ".env.example: docker-compose.yml requires DEPLOY_REGION, but `just dotenv` leaves it"
        " empty (name it like a secret, or give it a value)"
    ]


def test_compose_setting_environment_to_development_is_refused() -> None:
    doc = compose()
    doc["services"]["api"]["environment"]["ENVIRONMENT"] = "${ENVIRONMENT:-development}"
    problems = check_docker.compose_policy_problems(doc)
    assert any("services.api" in p and "ENVIRONMENT must stay production" in p for p in problems)


@pytest.mark.parametrize(
    "value",
    ["${JWT_SECRET:-dev-only-secret}", "${JWT_SECRET}", "a-literal-secret-of-forty-bytes-or-so-x"],
)
def test_compose_must_require_jwt_secret_without_a_default(value: str) -> None:
    doc = compose()
    doc["services"]["api"]["environment"]["JWT_SECRET"] = value
    problems = check_docker.compose_policy_problems(doc)
    assert any("services.api" in p and "JWT_SECRET must be" in p for p in problems)


def test_the_api_without_jwt_secret_is_refused() -> None:
    doc = compose()
    del doc["services"]["api"]["environment"]["JWT_SECRET"]
    problems = check_docker.compose_policy_problems(doc)
    assert any("services.api" in p and "JWT_SECRET must be" in p for p in problems)


@pytest.mark.parametrize("service", ["migrate", "consumer", "worker"])
@pytest.mark.parametrize("name", ["JWT_SECRET", "JWT_PRIVATE_KEY"])
def test_signing_material_given_to_a_process_that_signs_nothing_is_refused(
    service: str, name: str
) -> None:
    doc = compose()
    doc["services"][service]["environment"][name] = f"${{{name}:?{name} is not set}}"
    problems = check_docker.compose_policy_problems(doc)
    assert problems == [
        f"services.{service}.environment: {name} is the api's signing material; this process"
        " signs nothing and must not hold it"
    ]


@pytest.mark.parametrize("service", ["api", "migrate", "consumer", "worker"])
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("cap_drop", None, "drop every capability (cap_drop: [ALL])"),
        ("cap_drop", ["NET_RAW"], "drop every capability (cap_drop: [ALL])"),
        ("security_opt", None, "set security_opt: [no-new-privileges:true]"),
        ("security_opt", ["no-new-privileges:false"], "set security_opt: [no-new-privileges:true]"),
        ("read_only", None, "run with read_only: true (tmpfs where the process writes)"),
        ("read_only", False, "run with read_only: true (tmpfs where the process writes)"),
    ],
)
def test_an_app_container_without_its_hardening_is_refused(
    service: str, key: str, value: object, expected: str
) -> None:
    doc = compose()
    if value is None:
        del doc["services"][service][key]
    else:
        doc["services"][service][key] = value
    assert check_docker.compose_policy_problems(doc) == [f"services.{service}: {expected}"]


@pytest.mark.parametrize("service", ["postgres", "redis", "rabbitmq"])
@pytest.mark.parametrize("form", ["tag", "digest"])
def test_a_service_image_not_pinned_by_digest_beside_its_tag_is_refused(
    service: str, form: str
) -> None:
    doc = compose()
    image = doc["services"][service]["image"]
    tag, _, digest = image.partition("@")
    assert digest.startswith("sha256:")  # the shipped file pins both
    name = tag.partition(":")[0]
    doc["services"][service]["image"] = tag if form == "tag" else f"{name}@{digest}"
    problems = check_docker.compose_policy_problems(doc)
    assert problems == [
        f"services.{service}: pin image {doc['services'][service]['image']!r} by digest beside"
        " its tag (name:tag@sha256:...)"
    ]


def test_the_shipped_redis_users_deny_what_reaches_past_their_keys() -> None:
    lines = check_docker.redis_users_lines()
    assert len(lines.splitlines()) == 3
    assert check_docker.redis_acl_problems(lines) == []


@pytest.mark.parametrize("rule", check_docker.REDIS_DENIALS)
def test_a_redis_user_missing_a_denial_is_refused(rule: str) -> None:
    lines = check_docker.redis_users_lines().replace(f" {rule} ", " ").replace(f" {rule}\n", "\n")
    problems = check_docker.redis_acl_problems(lines)
    assert f"deploy/redis-users.sh: user api must deny {rule}" in problems


@pytest.mark.parametrize("grant", ["+@all", "allkeys", "~*", "+scan", "+script|flush", "+keys"])
def test_a_redis_user_granting_back_what_it_must_not_is_refused(grant: str) -> None:
    lines = check_docker.redis_users_lines().replace("\n", f" {grant}\n", 1)
    problems = check_docker.redis_acl_problems(lines)
    assert f"deploy/redis-users.sh: user api must not grant {grant}" in problems


def test_a_password_with_a_default_in_a_url_is_refused() -> None:
    doc = compose()
    env = doc["services"]["consumer"]["environment"]
    env["REDIS_URL"] = "redis://consumer:${REDIS_CONSUMER_PASSWORD:-consumer}@redis:6379/0"
    problems = check_docker.compose_policy_problems(doc)
    assert any("REDIS_CONSUMER_PASSWORD with a default" in p for p in problems)


def test_redis_without_a_password_is_refused() -> None:
    doc = compose()
    doc["services"]["redis"]["command"] = ["redis-server", "--appendonly", "yes"]
    problems = check_docker.compose_policy_problems(doc)
    assert any("services.redis: Redis without a password" in p for p in problems)


def test_a_url_without_credentials_is_refused() -> None:
    doc = compose()
    doc["services"]["api"]["environment"]["REDIS_URL"] = "redis://redis:6379/0"
    problems = check_docker.compose_policy_problems(doc)
    assert any("REDIS_URL must carry this process's user and password" in p for p in problems)


def test_only_the_migrations_connect_as_the_database_owner() -> None:
    doc = compose()
    owner_url = doc["services"]["migrate"]["environment"]["DATABASE_URL"]
    doc["services"]["api"]["environment"]["DATABASE_URL"] = owner_url
    problems = check_docker.compose_policy_problems(doc)
    assert [p for p in problems if "connects as the owner" in p] == [
        "services.api.environment: DATABASE_URL connects as the owner postgres; only the"
        " migrations may, the processes use DB_APP_ROLE"
    ]


def test_app_containers_do_not_read_the_whole_env_file() -> None:
    doc = compose()
    doc["services"]["consumer"]["env_file"] = [{"path": ".env", "required": False}]
    problems = check_docker.compose_policy_problems(doc)
    assert any("services.consumer.env_file: .env holds every role's secret" in p for p in problems)


def test_a_base_image_pinned_by_tag_only_is_refused() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    by_tag = dockerfile.replace(
        dockerfile.split("ARG PYTHON_BASE=", 1)[1].split("\n", 1)[0], "python:3.11-slim-bookworm"
    )
    problems = check_docker.dockerfile_policy_problems(by_tag, [".git", ".venv", ".env"])
    assert (
        problems.count(
            "Dockerfile: FROM python:3.11-slim-bookworm must be pinned by digest"
            " (name:tag@sha256:...)"
        )
        == 2
    )  # the builder and the runtime stage


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
    problems = check_docker.env_example_problems(text, compose_vars())
    assert any(expected in p for p in problems), problems


def test_dotenv_fills_every_secret_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    script = [sys.executable, str(ROOT / "scripts/dotenv.py"), "--output", str(target)]
    subprocess.run(script, check=True, capture_output=True)  # noqa: S603
    written = dict(
        line.split("=", 1) for line in target.read_text().splitlines() if line[:1].isalpha()
    )
    secret_keys = [key for key in written if check_docker.SECRET_NAME.search(key)]
    assert {"JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_API_PASSWORD"} <= set(secret_keys)
    assert all(len(written[key]) >= 43 for key in secret_keys)
    assert len({written[key] for key in secret_keys}) == len(secret_keys)  # each its own
    assert target.stat().st_mode & 0o777 == 0o600

    again = subprocess.run(script, check=False, capture_output=True, text=True)  # noqa: S603
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
    import re  # noqa: PLC0415

    sys.path.insert(0, str(ROOT))
    from deploy.rabbitmq_users import permissions  # noqa: PLC0415

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
