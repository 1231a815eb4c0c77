"""The Docker rules no tool expresses, for `just docker-lint` (after the compose spec, our
schema overlay, ``docker compose config`` and hadolint): they read across services or files
(URLs, dependencies, modules, the Redis users, the Dockerfile's stages, .env.example)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from shared.settings import Settings, load_api_settings
from tools.harness.names import ROOT

SECRET_NAME = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|API_KEY|PRIVATE_KEY)$", re.IGNORECASE)
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])[^}]*)?\}")
URL_PASSWORD = re.compile(r"://(?P<user>[^/:@\s]+):(?P<password>[^@\s]+)@")
PUBLIC_CREDENTIALS = {("guest", "guest")}  # RabbitMQ's, accepted from localhost only
ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# Each app user's ACL denies these (the categories cover KEYS, FLUSH*, CONFIG) ...
REDIS_DENIALS: tuple[str, ...] = ("-@admin", "-@dangerous", "-scan", "-randomkey", "-function")
REDIS_DENIALS += ("-script|flush", "-script|kill", "-fcall", "-fcall_ro")
# ... and grants none of these back.
REDIS_GRANTS_REFUSED = re.compile(
    r"^(allkeys|~\*|allcommands|\+@all|\+@admin|\+@dangerous"
    r"|\+(keys|scan|randomkey|config|flushall|flushdb|function|fcall|fcall_ro)(\|.*)?"
    r"|\+script\|(flush|kill))$",
    re.IGNORECASE,
)
MUST_IGNORE = {".git", ".venv", ".env"}


def compose_problems(doc: Mapping[str, Any]) -> list[str]:
    services: dict[str, Mapping[str, Any]] = dict(doc.get("services") or {})
    owner = str((services.get("postgres") or {}).get("environment", {}).get("POSTGRES_USER"))
    waited_for = {str(dep) for svc in services.values() for dep in svc.get("depends_on") or {}}
    problems: list[str] = []
    for name, svc in services.items():
        where, command = f"services.{name}", [str(part) for part in svc.get("command") or []]
        one_shot = str(svc.get("restart", "no")) == "no"
        if one_shot and name not in waited_for:
            problems.append(f"{where}: one-shot service nothing waits for (`up --wait` fails)")
        for dep, spec in (svc.get("depends_on") or {}).items():
            target, condition = services.get(str(dep), {}), spec.get("condition")
            if condition == "service_healthy" and "test" not in (target.get("healthcheck") or {}):
                problems.append(f"{where}.depends_on.{dep}: waits for health it never reports")
            if condition == "service_completed_successfully" and target.get("restart") != "no":
                problems.append(f"{where}.depends_on.{dep}: {dep} must be restart: 'no'")
        problems += module_problems(where, command)
        for key in ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL"):
            value = (svc.get("environment") or {}).get(key)
            if value is None or "build" not in svc:
                continue
            url = urlsplit(INTERPOLATION.sub("x", str(value)))
            if url.hostname not in services:
                problems.append(f"{where}: {key} must point at a service of this file")
            if not (url.username and url.password):
                problems.append(f"{where}: {key} must carry this process's user and password")
            migrations = command == ["python", "-m", "migrations"]
            if key == "DATABASE_URL" and url.username == owner and not migrations:
                problems.append(f"{where}: only the migrations connect as the owner {owner}")
    return problems


def module_problems(where: str, command: list[str]) -> list[str]:
    """`python -m pkg.mod` of this repository (not uvicorn's and the like) must exist."""
    if command[:2] != ["python", "-m"] or len(command) < 3:
        return []
    path = ROOT / command[2].replace(".", "/")
    ours = (ROOT / command[2].split(".")[0]).is_dir() or path.with_suffix(".py").is_file()
    if ours and not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
        return [f"{where}: command runs {command[2]}, which does not exist"]
    return []


def redis_acl_problems(acl_lines: str) -> list[str]:
    """deploy/redis-users.sh's output: each user denies what reaches past its own keys."""
    problems: list[str] = []
    for line in acl_lines.splitlines():
        _, name, *rules = line.split()
        where = f"deploy/redis-users.sh: user {name}"
        problems += [f"{where} must deny {rule}" for rule in REDIS_DENIALS if rule not in rules]
        problems += [f"{where} must not grant {r}" for r in rules if REDIS_GRANTS_REFUSED.match(r)]
    return problems or ([] if acl_lines.strip() else ["deploy/redis-users.sh printed no user"])


def redis_users_lines() -> str:
    """The script's output with placeholder passwords (it refuses empty ones)."""
    env = {f"REDIS_{role}_PASSWORD": "placeholder" for role in ("API", "CONSUMER", "WORKER")}
    script = ["sh", str(ROOT / "deploy/redis-users.sh")]
    done = subprocess.run(script, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout if done.returncode == 0 else ""


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", re.sub(r"(?m)^\s*#.*\n", "", text))
    lines = (line.strip().partition(" ") for line in joined.splitlines() if line.strip())
    return [(keyword.upper(), args.strip()) for keyword, _, args in lines]


def dockerfile_problems(text: str, dockerignore: str) -> Iterator[str]:
    steps = dockerfile_instructions(text)
    stages = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    if len(stages) < 2:
        yield "Dockerfile: use a builder and a runtime stage"
    before = steps[: stages[0]] if stages else []
    defaults = dict(args.partition("=")[::2] for kw, args in before if kw == "ARG")
    named: set[str] = set()  # FROM <stage>: a stage of this file, not an image
    for words in (steps[i][1].split() for i in stages):
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m[1], m[0]), words[0])
        named.update(words[2:3])
        if image not in named and not re.search(r":[^/@]+@sha256:[0-9a-f]{64}$", image):
            yield f"Dockerfile: FROM {image} must be pinned by digest (name:tag@sha256:...)"
    for keyword, args in steps:
        if keyword == "RUN" and re.search(r"\bpip install\b", args):
            if "--no-deps" not in args or ("-r " in args and "--require-hashes" not in args):
                yield f"Dockerfile: `{args}` must use --no-deps (and -r with --require-hashes)"
            if "dev.txt" in args or "[dev]" in args:
                yield "Dockerfile: dev dependencies do not belong in the image"
        if keyword in {"ENV", "ARG"}:
            for name in re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", args) or args.split()[:1]:
                if SECRET_NAME.search(name):
                    yield f"Dockerfile: {keyword} {name} bakes a secret into the image"
    yield from runtime_problems(steps[stages[-1] :] if stages else steps)
    ignored = {line.strip() for line in dockerignore.splitlines()}
    yield from (f".dockerignore: add {path}" for path in sorted(MUST_IGNORE - ignored))


def runtime_problems(runtime: list[tuple[str, str]]) -> Iterator[str]:
    final = dict(runtime)  # the last of each instruction
    if final.get("USER", "root").split(":")[0] in {"root", "0"}:
        yield "Dockerfile: the runtime stage must end as a non-root USER"
    if final.get("HEALTHCHECK", "NONE").upper() == "NONE":
        yield "Dockerfile: the runtime stage needs a HEALTHCHECK"
    env = " ".join(args for kw, args in runtime if kw == "ENV").split()
    for required in ("PYTHONUNBUFFERED=1", "ENVIRONMENT=production"):
        if required not in env:
            yield f"Dockerfile: the runtime stage must set ENV {required}"
    if "8000" not in final.get("EXPOSE", "").split():
        yield "Dockerfile: the runtime stage must EXPOSE 8000"
    if final.get("CMD", "").startswith("["):
        yield from module_problems("Dockerfile CMD", json.loads(final["CMD"]))


def _unquoted(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] in "'\"" else value


def with_random_secrets(text: str) -> str:
    """.env.example's text with a fresh random value for each empty secret (`just dotenv`)."""
    lines = []
    for line in text.splitlines():
        match = ASSIGNMENT.match(line)
        empty = match and not match["comment"] and not _unquoted(match["value"])
        if match and empty and SECRET_NAME.search(match["name"]):
            line = f"{match['name']}={secrets.token_urlsafe(48)}"  # noqa: PLW2901
        lines.append(line)
    return "\n".join(lines) + "\n"


def env_example_problems(text: str, compose_text: str) -> list[str]:
    problems: list[str] = []
    lines = text.splitlines()
    documented: dict[str, bool] = {}  # name -> assigned (False: shown commented out)
    for number, line in enumerate(lines):
        if not (match := ASSIGNMENT.match(line)):
            continue
        name, value, where = match["name"], _unquoted(match["value"]), f".env.example:{number + 1}"
        documented[name] = not match["comment"]
        above = lines[number - 1] if number else ""
        if not above.startswith("#") or ASSIGNMENT.match(above):
            problems.append(f"{where}: {name} needs a comment above")
        if SECRET_NAME.search(name) and value:
            problems.append(f"{where}: {name} holds a value; a secret stays empty here")
        url = URL_PASSWORD.search(value)
        if url and (url["user"], url["password"]) not in PUBLIC_CREDENTIALS:
            problems.append(f"{where}: {name} holds a password; leave it out of the URL")
        if name == "ENVIRONMENT" and value == "development":
            problems.append(f"{where}: ENVIRONMENT=development is opt-in, not an example value")
    fields = {name.upper() for name in Settings.__struct_fields__}
    compose_vars = {m["name"] for m in INTERPOLATION.finditer(compose_text)}
    problems += [f".env.example: add {name}" for name in sorted(fields - documented.keys())]
    problems += [
        f".env.example: document {name}, which docker-compose.yml reads"
        for name in sorted(compose_vars - documented.keys())
    ]
    problems += [
        f".env.example: {name} is neither a setting nor a compose variable"
        for name, assigned in sorted(documented.items())
        if assigned and name not in fields | compose_vars
    ]
    values = {
        m["name"]: _unquoted(m["value"])
        for line in with_random_secrets(text).splitlines()
        if (m := ASSIGNMENT.match(line)) and not m["comment"]
    }
    for environment in ("production", "development"):  # `just dotenv` must start the app
        try:
            load_api_settings(environ={**values, "ENVIRONMENT": environment}, env_file=None)
        except (SystemExit, ValueError) as exc:
            problems.append(f".env.example: with its secrets filled in, not valid settings: {exc}")
    return problems


def problems() -> list[str]:
    compose_text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    dockerfile, ignore = (ROOT / "Dockerfile").read_text(), (ROOT / ".dockerignore").read_text()
    return [
        *compose_problems(YAML(typ="safe").load(compose_text)),
        *redis_acl_problems(redis_users_lines()),
        *dockerfile_problems(dockerfile, ignore),
        *env_example_problems((ROOT / ".env.example").read_text(encoding="utf-8"), compose_text),
    ]


if __name__ == "__main__":
    found = problems()
    print("\n".join(f"policy: {p}" for p in found) or "policy: ok")
    sys.exit(1 if found else 0)
