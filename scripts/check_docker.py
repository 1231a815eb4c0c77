"""Static checks of the Docker artefacts, for CI machines that have no Docker engine.

1. docker-compose.yml against the Compose Specification's JSON schema (the copy that
   check-jsonschema vendors as ``vendor.compose-spec``), and through ``docker compose config``
   where the docker CLI has the compose plugin (it needs no engine); then this project's
   rules: every long-running service has a healthcheck and every dependency waits on a
   condition that can be met, so that ``docker compose up -d --wait`` returns once the stack
   works; and secure by default: no secret and no default for one in the file (each is
   required from .env with ``${NAME:?message}``), the app runs in production (nothing sets
   ENVIRONMENT to development), JWT_SECRET is required by the api and given to no other
   process, Redis refuses anonymous clients, every service URL carries credentials, and only
   the migrations connect as the database owner; hardened: the app's containers drop every
   capability, set no-new-privileges and run read-only, and every image not built here is
   pinned by digest beside its tag (name:tag@sha256:...). The app's Redis users
   (deploy/redis-users.sh) may run no admin or dangerous command (KEYS, FLUSH*, CONFIG), and
   nothing that reaches past their keys: SCAN, RANDOMKEY, SCRIPT FLUSH/KILL, FUNCTION, FCALL.
2. The Dockerfile with hadolint, then this project's rules (base pinned by digest,
   multi-stage, hash-locked install, non-root user, health check, nothing missing from the
   build context).
3. .env.example documents every field of ``shared.settings.Settings`` and every variable the
   compose file reads, holds no secret value (a key named like a secret is empty, a URL has no
   password but RabbitMQ's localhost-only guest), and, with its secrets filled in, makes valid
   settings.

What needs an engine (building the image, starting the stack) is not checked here.
Run with ``just check-docker``; exit status 1 lists every problem found.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
BIN = Path(sys.executable).parent

SECRET_NAME = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|API_KEY|PRIVATE_KEY)$", re.IGNORECASE)
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
URL_PASSWORD = re.compile(r"://(?P<user>[^/:@\s]+):(?P<password>[^@\s]+)@")
# RabbitMQ's built-in account, which it accepts from localhost only: not a secret.
PUBLIC_CREDENTIALS = {("guest", "guest")}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
TAG_AND_DIGEST = re.compile(r"^[^@\s]+:[^@/\s]+@sha256:[0-9a-f]{64}$")
# Signing material: the api's alone (shared.settings.require_signing_keys).
SIGNING_SETTINGS = ("JWT_SECRET", "JWT_PRIVATE_KEY")
NO_NEW_PRIVILEGES = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
REDIS_USERS = ROOT / "deploy" / "redis-users.sh"
# Each app user's ACL must deny these (categories cover KEYS, FLUSHALL, FLUSHDB, CONFIG) ...
REDIS_DENIALS = (
    "-@admin",
    "-@dangerous",
    "-scan",
    "-randomkey",
    "-script|flush",
    "-script|kill",
    "-function",
    "-fcall",
    "-fcall_ro",
)
# ... and grant none of these back.
REDIS_GRANTS_REFUSED = re.compile(
    r"^(allkeys|~\*|allcommands|\+@all|\+@admin|\+@dangerous"
    r"|\+(keys|scan|randomkey|config|flushall|flushdb|function|fcall|fcall_ro)(\|.*)?"
    r"|\+script\|(flush|kill))$",
    re.IGNORECASE,
)
# The app's own settings that must reach its containers from the stack, by service name.
SERVICE_URLS = ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL")
MUST_IGNORE = (".git", ".venv", ".env")


def run_tool(args: list[str]) -> tuple[int, str]:
    # Only the venv's own tools, with fixed arguments.
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603
    return done.returncode, (done.stdout + done.stderr).strip()


def tool_version(args: list[str]) -> str:
    return run_tool(args)[1].splitlines()[0]


# --- docker-compose.yml ------------------------------------------------------------------


def compose_schema_problems() -> list[str]:
    code, out = run_tool(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    )
    return [] if code == 0 else [f"docker-compose.yml does not match the compose spec:\n{out}"]


def compose_config_problems() -> list[str] | None:
    """Compose's own loader, where the docker CLI has the compose plugin (no engine needed)."""
    docker = shutil.which("docker")
    if docker is None or run_tool([docker, "compose", "version"])[0] != 0:
        return None
    code, out = run_tool([docker, "compose", "--file", str(COMPOSE), "config", "--quiet"])
    return [] if code == 0 else [f"docker compose config:\n{out}"]


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def environment_of(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return {str(k): None if v is None else str(v) for k, v in env.items()}
    pairs = (str(item).partition("=") for item in env)
    return {k: v if sep else None for k, sep, v in pairs}


def pinned(image: str) -> bool:
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return bool(tag) and tag != "latest"


def is_one_shot(service: Mapping[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def has_healthcheck(service: Mapping[str, Any]) -> bool:
    check = as_mapping(service.get("healthcheck"))
    return bool(check.get("test")) and not check.get("disable")


def secret_problems(where: str, name: str, value: str | None) -> Iterator[str]:
    if value is None:
        return
    if SECRET_NAME.search(name) and not INTERPOLATION.fullmatch(value):
        yield f"{where}: {name} is a literal; require it from .env (${{{name}:?message}})"
    match = URL_PASSWORD.search(INTERPOLATION.sub("${}", value))
    if match and match["password"] != "${}":
        yield f"{where}: {name} embeds a literal password; interpolate it (${{...:?message}})"
    for used in INTERPOLATION.finditer(value):
        if SECRET_NAME.search(used["name"]) and used["op"] != ":?":
            yield (
                f"{where}: {name} takes secret {used['name']} with a default or none required;"
                f" write ${{{used['name']}:?message}} so that compose stops when it is missing"
            )


def compose_policy_problems(doc: Mapping[str, Any]) -> list[str]:
    services = {str(k): as_mapping(v) for k, v in as_mapping(doc.get("services")).items()}
    volumes = set(as_mapping(doc.get("volumes")))
    problems: list[str] = []
    for name, svc in services.items():
        problems += service_problems(f"services.{name}", svc, volumes)
        problems += dependency_problems(f"services.{name}", svc, services)
        if runs_the_app(svc):
            problems += app_wiring_problems(f"services.{name}", svc, services)
        if str(svc.get("image", "")).split(":")[0].rsplit("/", 1)[-1] == "redis":
            problems += redis_problems(f"services.{name}", svc)
    adopted = {  # one-shot services that some other service waits for
        str(dep)
        for svc in services.values()
        for dep, spec in as_mapping(svc.get("depends_on")).items()
        if as_mapping(spec).get("condition") == "service_completed_successfully"
    }
    problems += [
        f"services.{name}: one-shot service that nothing waits for with"
        " service_completed_successfully (`up --wait` would fail on its exit)"
        for name, svc in services.items()
        if is_one_shot(svc) and name not in adopted
    ]
    return problems


def service_problems(where: str, svc: Mapping[str, Any], volumes: set[str]) -> Iterator[str]:
    image = str(svc.get("image", ""))
    if not image and "build" not in svc:
        yield f"{where}: has neither image nor build"
    if "build" not in svc and not pinned(image):
        yield f"{where}: image {image!r} needs a pinned tag, not latest"
    if "build" not in svc and not TAG_AND_DIGEST.fullmatch(image):
        yield f"{where}: pin image {image!r} by digest beside its tag (name:tag@sha256:...)"
    if not is_one_shot(svc) and not has_healthcheck(svc):
        yield f"{where}: long-running service without a healthcheck"
    for mount in svc.get("volumes") or []:
        source = str(mount.get("source", "")) if isinstance(mount, Mapping) else ""
        source = source or str(mount).split(":", 1)[0]
        if not source.startswith((".", "/", "~", "$")) and source not in volumes:
            yield f"{where}.volumes: named volume {source!r} is not declared"
    for entry in svc.get("env_file") or []:
        spec = as_mapping(entry) or {"path": entry}
        if Path(str(spec.get("path"))).name == ".env" and spec.get("required", True):
            yield f"{where}.env_file: .env must be `required: false`"
    for key, value in environment_of(svc).items():
        yield from secret_problems(f"{where}.environment", key, value)


def dependency_problems(
    where: str, svc: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]
) -> Iterator[str]:
    """Each dependency must be waited for on a condition its target can reach."""
    deps = svc.get("depends_on") or {}
    if not isinstance(deps, Mapping):
        yield f"{where}.depends_on: use the long form with a condition"
        return
    for dep, spec in deps.items():
        condition = as_mapping(spec).get("condition", "service_started")
        target = services.get(str(dep))
        if target is None:
            yield f"{where}.depends_on: no service named {dep!r}"
        elif condition == "service_healthy" and not has_healthcheck(target):
            yield f"{where}.depends_on.{dep}: waits for health it never reports"
        elif condition == "service_completed_successfully" and not is_one_shot(target):
            yield f"{where}.depends_on.{dep}: {dep} must be restart: 'no'"
        elif condition == "service_started":
            yield f"{where}.depends_on.{dep}: wait for health or completion, not start"


def runs_the_app(svc: Mapping[str, Any]) -> bool:
    """A container of our image running one of our processes (not a /deploy helper)."""
    command = [str(part) for part in svc.get("command") or []]
    return "build" in svc and not any(part.startswith("/deploy/") for part in command)


def is_migrations(svc: Mapping[str, Any]) -> bool:
    return [str(part) for part in svc.get("command") or []] == ["python", "-m", "migrations"]


def signs_tokens(svc: Mapping[str, Any]) -> bool:
    """The api: the image's own command (uvicorn), the one process that signs tokens."""
    command = [str(part) for part in svc.get("command") or []]
    return not command or "uvicorn" in command


def hardening_problems(where: str, svc: Mapping[str, Any]) -> Iterator[str]:
    """No capabilities, no privilege gained through setuid, a root filesystem it cannot change."""
    if "ALL" not in [str(cap).upper() for cap in svc.get("cap_drop") or []]:
        yield f"{where}: drop every capability (cap_drop: [ALL])"
    if not NO_NEW_PRIVILEGES & {str(opt) for opt in svc.get("security_opt") or []}:
        yield f"{where}: set security_opt: [no-new-privileges:true]"
    if svc.get("read_only") is not True:
        yield f"{where}: run with read_only: true (tmpfs where the process writes)"


def app_wiring_problems(
    where: str, svc: Mapping[str, Any], services: Mapping[str, Any]
) -> Iterator[str]:
    """The app's containers: production, a required JWT_SECRET, credentials of their own."""
    env = environment_of(svc)
    for entry in svc.get("env_file") or []:
        spec = as_mapping(entry) or {"path": entry}
        if Path(str(spec.get("path"))).name == ".env":
            yield (
                f"{where}.env_file: .env holds every role's secret; give the container only"
                " its own settings under environment"
            )
    if "development" in (env.get("ENVIRONMENT") or ""):
        yield f"{where}.environment: ENVIRONMENT must stay production (the image's default)"
    if signs_tokens(svc):
        jwt = INTERPOLATION.fullmatch(env.get("JWT_SECRET") or "")
        if not jwt or jwt["name"] != "JWT_SECRET" or jwt["op"] != ":?":
            yield f"{where}.environment: JWT_SECRET must be ${{JWT_SECRET:?message}} (required)"
    else:
        yield from (
            f"{where}.environment: {name} is the api's signing material; this process signs"
            " nothing and must not hold it"
            for name in SIGNING_SETTINGS
            if name in env
        )
    yield from hardening_problems(where, svc)
    owner = str(
        environment_of(as_mapping(services.get("postgres"))).get("POSTGRES_USER") or "postgres"
    )
    for key in SERVICE_URLS:
        if key not in env:
            continue
        url = urlsplit(INTERPOLATION.sub("x", env.get(key) or ""))
        if url.hostname not in services:
            yield f"{where}.environment: {key} must point at a service of this file"
        if not (url.username and url.password):
            yield f"{where}.environment: {key} must carry this process's user and password"
        if key == "DATABASE_URL" and url.username == owner and not is_migrations(svc):
            yield (
                f"{where}.environment: DATABASE_URL connects as the owner {owner}; only the"
                " migrations may, the processes use DB_APP_ROLE"
            )
    command = svc.get("command")
    if isinstance(command, list):
        yield from module_problems(where, [str(part) for part in command])


def redis_problems(where: str, svc: Mapping[str, Any]) -> Iterator[str]:
    """Redis must refuse anonymous clients: a password, or ACL users with the default off."""
    command = svc.get("command") or []
    text = " ".join(str(part) for part in command) if isinstance(command, list) else str(command)
    if "--requirepass" not in text and not ("--aclfile" in text and "user default off" in text):
        yield (
            f"{where}: Redis without a password; start it with --requirepass, or an --aclfile"
            " whose first line is `user default off`"
        )


def module_problems(where: str, command: list[str]) -> Iterator[str]:
    """`python -m pkg.mod` of this repository: the module must exist."""
    if len(command) < 3 or command[:2] != ["python", "-m"]:
        return
    module = command[2]
    top = module.split(".")[0]
    if not ((ROOT / top).is_dir() or (ROOT / f"{top}.py").is_file()):
        return  # not ours (uvicorn, ...)
    path = ROOT / module.replace(".", "/")
    if not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
        yield f"{where}: command runs {module}, which does not exist"


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
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        ["sh", str(REDIS_USERS)],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else ""


def compose_variables(text: str) -> set[str]:
    return {m["name"] for m in INTERPOLATION.finditer(text)}


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def hadolint_problems() -> list[str]:
    code, out = run_tool([str(BIN / "hadolint"), "--no-color", str(DOCKERFILE)])
    return [] if code == 0 else [f"hadolint:\n{out}"]


def ignored_by(path: str, patterns: list[str]) -> bool:
    """Roughly .dockerignore's rule: the last matching pattern wins, `!` re-includes."""
    parts = Path(path.rstrip("/")).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            ignored = not negated
    return ignored


def base_images(instructions: list[tuple[str, str]]) -> list[str]:
    """The image of each FROM, with ARG defaults declared before the first FROM filled in."""
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for keyword, args in instructions:
        if keyword == "ARG" and not images:
            name, _, default = args.partition("=")
            defaults[name.strip()] = default.strip().strip("\"'")
        elif keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = re.sub(
                r"\$\{?(\w+)\}?", lambda m: defaults.get(m[1], m[0]), words[0] if words else ""
            )
            if image not in stages:  # FROM builder: a stage of this file, not an image
                images.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


def dockerfile_policy_problems(text: str, ignore_patterns: list[str]) -> list[str]:
    instructions = dockerfile_instructions(text)
    stages = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    problems = [] if len(stages) >= 2 else ["Dockerfile: use a builder and a runtime stage"]
    problems += [
        f"Dockerfile: FROM {image} must be pinned by digest (name:tag@sha256:...)"
        for image in base_images(instructions)
        if not DIGEST.search(image)
    ]
    for keyword, args in instructions:
        problems += instruction_problems(keyword, args, ignore_patterns)
    problems += runtime_stage_problems(instructions[stages[-1] :] if stages else instructions)
    problems += [
        f".dockerignore: add {path}"
        for path in MUST_IGNORE
        if not ignored_by(path, ignore_patterns)
    ]
    return problems


def instruction_problems(keyword: str, args: str, ignore_patterns: list[str]) -> Iterator[str]:
    if keyword == "RUN" and re.search(r"\bpip install\b", args):
        if "--no-deps" not in args:
            yield f"Dockerfile: `{args}` must use --no-deps (all dependencies are locked)"
        if re.search(r"(^|\s)(-r|--requirement)\s", args) and "--require-hashes" not in args:
            yield f"Dockerfile: `{args}` must use --require-hashes"
        if "dev.txt" in args or "[dev]" in args:
            yield "Dockerfile: dev dependencies do not belong in the image"
    if keyword in {"ENV", "ARG"}:
        names = re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", args) or args.split()[:1]
        for name in names:
            if SECRET_NAME.search(name):
                yield f"Dockerfile: {keyword} {name} bakes a secret into the image"
    if keyword in {"COPY", "ADD"} and "--from=" not in args:
        yield from copy_problems(args, ignore_patterns)


def copy_problems(args: str, ignore_patterns: list[str]) -> Iterator[str]:
    """What COPY takes from the build context must be there and not be .dockerignored."""
    for source in shlex.split(args)[:-1]:
        if source.startswith("--"):
            continue
        if not (ROOT / source).exists():
            yield f"Dockerfile: COPY source {source} does not exist"
        elif ignored_by(source, ignore_patterns):
            yield f"Dockerfile: COPY source {source} is in .dockerignore"


def runtime_stage_problems(final: list[tuple[str, str]]) -> Iterator[str]:
    def last(keyword: str) -> str | None:
        found = [args for kw, args in final if kw == keyword]
        return found[-1] if found else None

    user = last("USER")
    if user is None or user.split(":")[0] in {"root", "0"}:
        yield "Dockerfile: the runtime stage must end as a non-root USER"
    health = last("HEALTHCHECK")
    if health is None or health.upper() == "NONE":
        yield "Dockerfile: the runtime stage needs a HEALTHCHECK"
    env_text = " ".join(args for kw, args in final if kw == "ENV")
    for required in ("PYTHONUNBUFFERED=1", "ENVIRONMENT=production"):
        if required not in env_text.split():
            yield f"Dockerfile: the runtime stage must set ENV {required}"
    if not any(kw == "EXPOSE" and "8000" in args.split() for kw, args in final):
        yield "Dockerfile: the runtime stage must EXPOSE 8000"
    cmd = last("CMD")
    if cmd is None or not cmd.startswith("["):
        yield "Dockerfile: CMD in exec form, so that the server itself gets SIGTERM"
    else:
        yield from module_problems("Dockerfile CMD", [str(part) for part in json.loads(cmd)])


# --- .env.example --------------------------------------------------------------------------


ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def with_random_secrets(text: str) -> str:
    """.env.example's text with a fresh random value for each empty secret (`just dotenv`)."""
    lines = []
    for line in text.splitlines():
        match = ASSIGNMENT.match(line)
        empty_secret = bool(
            match
            and not match["comment"]
            and SECRET_NAME.search(match["name"])
            and not unquoted(match["value"])
        )
        lines.append(
            f"{match['name']}={secrets.token_urlsafe(48)}" if match and empty_secret else line
        )
    return "\n".join(lines) + "\n"


def dotenv_values(text: str) -> dict[str, str]:
    """The variables `just dotenv` writes, given .env.example's text."""
    return {
        match["name"]: unquoted(match["value"])
        for line in with_random_secrets(text).splitlines()
        if (match := ASSIGNMENT.match(line)) and not match["comment"]
    }


def dotenv_problems(env_text: str, compose_text: str) -> list[str]:
    """`just dotenv && just up` must work: each variable compose requires gets a value."""
    values = dotenv_values(env_text)
    required = {m["name"] for m in INTERPOLATION.finditer(compose_text) if m["op"] == ":?"}
    return [
        f".env.example: docker-compose.yml requires {name}, but `just dotenv` leaves it empty"
        " (name it like a secret, or give it a value)"
        for name in sorted(required)
        if not values.get(name)
    ]


def env_example_problems(text: str, compose_vars: set[str]) -> list[str]:
    from shared.settings import Settings, load_api_settings  # noqa: PLC0415 - needs the project

    problems: list[str] = []
    lines = text.splitlines()
    documented: dict[str, bool] = {}  # name -> assigned (False: shown commented out)
    for number, line in enumerate(lines):
        match = ASSIGNMENT.match(line)
        if not match:
            continue
        name, value, where = match["name"], unquoted(match["value"]), f".env.example:{number + 1}"
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
    # What `just dotenv` writes must start the app in every environment, production included.
    values = dotenv_values(text)
    for environment in ("production", "development"):
        try:
            load_api_settings(environ={**values, "ENVIRONMENT": environment}, env_file=None)
        except (SystemExit, ValueError) as exc:
            problems.append(f".env.example: with its secrets filled in, not valid settings: {exc}")
    return problems


def main() -> int:
    compose_text = COMPOSE.read_text(encoding="utf-8")
    compose_doc = YAML(typ="safe").load(compose_text)
    ignore_patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    compose_config = compose_config_problems()
    checks = {
        "compose schema": compose_schema_problems(),
        "docker compose config": compose_config if compose_config is not None else [],
        "compose rules": compose_policy_problems(compose_doc),
        "Redis ACL": redis_acl_problems(redis_users_lines()),
        "hadolint": hadolint_problems(),
        "Dockerfile rules": dockerfile_policy_problems(
            DOCKERFILE.read_text(encoding="utf-8"), ignore_patterns
        ),
        ".env.example": env_example_problems(
            ENV_EXAMPLE.read_text(encoding="utf-8"), compose_variables(compose_text)
        )
        + dotenv_problems(ENV_EXAMPLE.read_text(encoding="utf-8"), compose_text),
    }
    print(
        f"{tool_version([str(BIN / 'check-jsonschema'), '--version'])} (vendor.compose-spec);"
        f" {tool_version([str(BIN / 'hadolint'), '--version'])}"
    )
    failed = 0
    for name, problems in checks.items():
        if name == "docker compose config" and compose_config is None:
            print(f"skipped: {name} (this docker CLI has no compose plugin)")
            continue
        print(f"{'FAIL' if problems else 'ok'}: {name}")
        for problem in problems:
            print(f"  - {problem}")
        failed += len(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
