"""The OpenAPI document as files: ``openapi.json`` (committed) and a generated Python client.

    python -m tools.openapi write           # rewrite openapi.json (`just openapi`)
    python -m tools.openapi client [FOLDER]  # generate a client into FOLDER (`just client`)

The document is the one the app serves at /schema/openapi.json, built in this process from an
app with default settings (it depends on none of them: tests/features/test_openapi.py compares
it with the served one). The client is made by openapi-python-client, offline, with its post
hooks off (they would run whatever ``ruff`` is on PATH) and failing on any warning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.json"
CLIENT_FOLDER = ROOT / "client"
GENERATOR_CONFIG = "post_hooks: []\n"


def served_document() -> dict[str, Any]:
    """What GET /schema/openapi.json answers, as JSON values."""
    from app import create_app  # noqa: PLC0415 - only the commands that need the app build it
    from shared.settings import Settings  # noqa: PLC0415

    schema = create_app(Settings(environment="development")).openapi_schema.to_schema()
    loaded: dict[str, Any] = json.loads(msgspec.json.encode(schema))  # as Litestar encodes it
    return loaded


def document_text(document: dict[str, Any]) -> str:
    """The committed file's form: indented, keys in the served order, so a diff reads well."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generate_client(document: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """Run openapi-python-client on the document into ``folder`` (the package itself, replaced
    if it exists); its output is returned for the caller to judge (warnings, exit status)."""
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "openapi.json"
        source.write_text(document_text(document), encoding="utf-8")
        config = Path(work) / "config.yaml"
        config.write_text(GENERATOR_CONFIG, encoding="utf-8")
        return subprocess.run(  # noqa: S603 - our own venv's tool, fixed arguments
            [
                str(Path(sys.executable).with_name("openapi-python-client")),
                "generate",
                "--path",
                str(source),
                "--output-path",
                str(folder),
                "--config",
                str(config),
                "--meta",
                "none",
                "--overwrite",
                "--fail-on-warning",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )


def main(argv: list[str]) -> int:
    command, *rest = argv or ["write"]
    if command == "write":
        DOCUMENT.write_text(document_text(served_document()), encoding="utf-8")
        print(f"wrote {DOCUMENT.relative_to(ROOT)}")
        return 0
    if command == "client":
        folder = Path(rest[0]).resolve() if rest else CLIENT_FOLDER
        result = generate_client(served_document(), folder)
        print(result.stdout, end="")
        print(result.stderr, end="", file=sys.stderr)
        return result.returncode
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
