"""Static checks of the Docker artefacts, for CI machines that have no Docker engine.

1. docker-compose.yml against the Compose Specification's JSON schema (the copy that
   check-jsonschema vendors as ``vendor.compose-spec``), and through ``docker compose config``
   where the docker CLI has the compose plugin (it needs no engine); then this project's
   rules: every long-running service has a healthcheck and every dependency waits on a
   condition that can be met, so that ``docker compose up -d --wait`` returns once the stack
   works.
2. The Dockerfile with hadolint, then this project's rules (multi-stage, hash-locked install,
   non-root user, health check, nothing missing from the build context).
3. .env.example documents every field of ``shared.settings.Settings`` and every variable the
   compose file reads, and its values make valid settings.

What needs an engine (building the image, starting the stack) is not checked here.
Run with ``just check-docker``; exit status 1 lists every problem found.
"""

from __future__ import annotations

import fnmatch
import json
import re
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
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:?-[^}]*)?\}")
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?P<password>[^@\s]+)@")
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
        yield f"{where}: {name} is a literal; take it from .env or the shell (${{{name}}})"
    match = URL_PASSWORD.search(INTERPOLATION.sub("${}", value))
    if match and match["password"] != "${}":
        yield f"{where}: {name} embeds a literal password; interpolate it (${{...}})"
    if name == "JWT_SECRET":
        yield (
            f"{where}: JWT_SECRET must not be set in the compose file; it comes from .env, and"
            " the app refuses its development default outside ENVIRONMENT=development"
        )


def compose_policy_problems(doc: Mapping[str, Any]) -> list[str]:
    services = {str(k): as_mapping(v) for k, v in as_mapping(doc.get("services")).items()}
    volumes = set(as_mapping(doc.get("volumes")))
    problems: list[str] = []
    for name, svc in services.items():
        problems += service_problems(f"services.{name}", svc, volumes)
        problems += dependency_problems(f"services.{name}", svc, services)
        if "build" in svc:
            problems += app_wiring_problems(f"services.{name}", svc, services)
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


def app_wiring_problems(
    where: str, svc: Mapping[str, Any], services: Mapping[str, Any]
) -> Iterator[str]:
    """The app's containers: optional .env, development by default, URLs at this stack."""
    env = environment_of(svc)
    if not svc.get("env_file"):
        yield f"{where}: the app reads its settings from .env: add env_file"
    environment = env.get("ENVIRONMENT") or ""
    match = INTERPOLATION.fullmatch(environment)
    if not match or match["name"] != "ENVIRONMENT" or match["default"] != ":-development":
        yield f"{where}.environment: ENVIRONMENT must be ${{ENVIRONMENT:-development}}"
    for key in SERVICE_URLS:
        host = urlsplit(INTERPOLATION.sub("x", env.get(key) or "")).hostname
        if host not in services:
            yield f"{where}.environment: {key} must point at a service of this file"
    command = svc.get("command")
    if isinstance(command, list):
        yield from module_problems(where, [str(part) for part in command])


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


def dockerfile_policy_problems(text: str, ignore_patterns: list[str]) -> list[str]:
    instructions = dockerfile_instructions(text)
    stages = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    problems = [] if len(stages) >= 2 else ["Dockerfile: use a builder and a runtime stage"]
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
    if keyword == "FROM" and not pinned(image := args.split(maxsplit=1)[0]):
        yield f"Dockerfile: FROM {image} needs a pinned tag, not latest"
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


def env_example_problems(compose_vars: set[str]) -> list[str]:
    from shared.settings import Settings, load_settings  # noqa: PLC0415 - needs the project

    problems: list[str] = []
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    assignment = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=")
    documented: dict[str, bool] = {}  # name -> assigned (False: shown commented out)
    for number, line in enumerate(lines):
        match = assignment.match(line)
        if not match:
            continue
        documented[match["name"]] = not match["comment"]
        above = lines[number - 1] if number else ""
        if not above.startswith("#") or assignment.match(above):
            problems.append(f".env.example:{number + 1}: {match['name']} needs a comment above")
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
    try:
        settings = load_settings(environ={}, env_file=ENV_EXAMPLE)
    except SystemExit as exc:
        problems.append(f".env.example: its values are not valid settings: {exc}")
    else:
        if settings.environment != "development":
            problems.append(".env.example: ENVIRONMENT must be development")
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
        "hadolint": hadolint_problems(),
        "Dockerfile rules": dockerfile_policy_problems(
            DOCKERFILE.read_text(encoding="utf-8"), ignore_patterns
        ),
        ".env.example": env_example_problems(compose_variables(compose_text)),
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
