"""The domain imports nothing that does I/O: only the standard library, msgspec and itself.

The domain is every module under ``shared/orders/``, found on disk, so a new domain file is
checked without anyone listing it; the package's I/O part (the statements and the cache that
several slices share, kept beside the domain) is named in ``IO_MODULES``, the one list to
change when that part changes. Read from the source rather than sys.modules: this
interpreter has imported the app already, for the fixtures of other tests.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shared.orders

PACKAGE = shared.orders.__name__
DOMAIN = Path(shared.orders.__file__).parent
# The I/O beside the domain: modules of the package that are not the domain.
IO_MODULES = {f"{PACKAGE}.queries", f"{PACKAGE}.cache", f"{PACKAGE}.event_log"}
# Besides the domain itself, what a pure module may import (by top-level package).
PURE_PACKAGES = {"msgspec"}


def module_name(path: Path) -> str:
    parts = path.relative_to(DOMAIN).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def package_modules() -> dict[str, Path]:
    """Every module under the package, subpackages too, by dotted name."""
    return {module_name(path): path for path in sorted(DOMAIN.rglob("*.py"))}


DOMAIN_MODULES = {name: path for name, path in package_modules().items() if name not in IO_MODULES}


def _run_time_statements(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement that may run, functions' bodies too (an import inside a function runs
    on its first call), leaving out ``if TYPE_CHECKING:`` blocks, which never run."""
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _run_time_statements(node.orelse)
            continue
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _run_time_statements([child])
            elif isinstance(child, ast.ExceptHandler | ast.match_case):
                yield from _run_time_statements(child.body)


def is_domain(name: str) -> bool:
    """The package or a module of it (or a name in one), but not of its I/O part."""
    inside = name == PACKAGE or name.startswith(f"{PACKAGE}.")
    return inside and not any(name == io or name.startswith(f"{io}.") for io in IO_MODULES)


def imported_at_run_time(name: str, path: Path) -> set[str]:
    """Modules a file imports when it runs, relative imports resolved; ``from p import m``
    counts ``p.m`` too, since ``m`` may be a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in _run_time_statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            source = ".".join([*base, node.module or ""]).strip(".") if node.level else node.module
            if source:
                names.add(source)
                names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def test_the_domain_is_found_and_its_io_part_exists() -> None:
    """An I/O name that no longer exists would exempt a future module of that name."""
    modules = package_modules()
    assert {f"{PACKAGE}.status", f"{PACKAGE}.money", f"{PACKAGE}.view"} <= set(DOMAIN_MODULES)
    gone = IO_MODULES - set(modules)
    assert not gone, f"no such module, drop it from IO_MODULES: {gone}"


@pytest.mark.parametrize("module", sorted(DOMAIN_MODULES))
def test_a_domain_module_imports_only_pure_code(module: str) -> None:
    for name in imported_at_run_time(module, DOMAIN_MODULES[module]):
        root = name.split(".")[0]
        pure = root in sys.stdlib_module_names or root in PURE_PACKAGES
        assert pure or is_domain(name), f"{module} imports {name}"
