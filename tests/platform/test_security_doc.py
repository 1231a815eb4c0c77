"""SECURITY.md names the test that proves each requirement: every name must lead to a test.

A renamed or deleted test would otherwise leave a row pointing at nothing, and the table would
claim a proof that no longer runs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `features/test_token.py::test_x`, or `::test_y` continuing the last file named in the cell.
_REFERENCE = re.compile(r"`(?:(?P<path>[\w/]+\.py))?(?:::(?P<name>\w+))?`")


def _references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in (ROOT / "SECURITY.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        path: str | None = None
        for match in _REFERENCE.finditer(line):
            if match["path"] and match["path"].rpartition("/")[2].startswith("test_"):
                path = match["path"]
            elif match["path"]:
                continue  # a module of the code, not a test
            if path and (match["path"] or match["name"]):
                found.append((path, match["name"]))
    return found


def test_security_md_names_tests_that_exist() -> None:
    references = _references()
    assert len(references) > 40, "the table's test references were not found"
    missing = []
    for path, name in references:
        test_file = ROOT / "tests" / path
        if not test_file.is_file():
            missing.append(path)
        elif name and not re.search(rf"def {name}\b", test_file.read_text(encoding="utf-8")):
            missing.append(f"{path}::{name}")
    assert not missing, f"SECURITY.md names tests that do not exist: {missing}"
