"""The domain imports nothing that does I/O: only the standard library, msgspec and itself.

Read from the source rather than sys.modules: this interpreter has imported the app already,
for the fixtures of other tests.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import shared.orders

DOMAIN = Path(shared.orders.__file__).parent
MODULES = ["__init__.py", "errors.py", "items.py", "money.py", "status.py", "view.py"]
IO_MODULES = {"shared.orders.queries", "shared.orders.cache"}  # the I/O beside the domain


def imported_at_run_time(path: Path) -> set[str]:
    """Modules a file imports when it runs (``if TYPE_CHECKING:`` blocks never do)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_a_domain_module_imports_only_pure_code(module: str) -> None:
    for name in imported_at_run_time(DOMAIN / module):
        root = name.split(".")[0]
        pure = root in sys.stdlib_module_names or root == "msgspec"
        own = name.startswith("shared.orders") and name not in IO_MODULES
        assert pure or own, f"{module} imports {name}"
