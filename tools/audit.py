"""`just audit`: the locked requirements against known vulnerabilities, with pip-audit.

pip-audit asks PyPI's JSON API (its advisories) about every pinned version, installing
nothing (``--disable-pip``: the lock is complete and hash-pinned). Three outcomes:

- a known vulnerability: listed, exit 1;
- every package checked and clean: exit 0;
- some packages could not be checked (the advisory service is unreachable or does not know
  the version): said loudly, with the list. That is "not audited", never "clean". It fails
  only when ``AUDIT_REQUIRED=1``, because a registry mirror without the JSON API (as on the
  project's CI machines) would otherwise fail every run for a reason no commit can fix.

Usage: python -m tools.audit requirements/main.txt [more.txt ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def audit(requirements: list[str]) -> dict[str, Any]:
    files = [arg for path in requirements for arg in ("-r", path)]
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        *files,
        "--require-hashes",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"audit: pip-audit did not report (exit {done.returncode})") from None
    return report


def main(requirements: list[str]) -> int:
    dependencies = audit(requirements)["dependencies"]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    checked = len(dependencies) - len(skipped)
    print(f"audit: {checked} of {len(dependencies)} packages checked, {len(vulnerable)} vulnerable")
    if vulnerable:
        return 1
    if skipped:
        print(
            f"audit: NOT AUDITED: {len(skipped)} packages could not be checked against the"
            " advisory service (unreachable, or it does not know these versions):",
            file=sys.stderr,
        )
        for dep in skipped:
            print(f"  {dep['name']}: {dep['skip_reason']}", file=sys.stderr)
        return 1 if os.environ.get("AUDIT_REQUIRED") == "1" else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["requirements/main.txt"]))
