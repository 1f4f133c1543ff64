"""Which folder may import which: the direction of every arrow, read from the code itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("api", "workers", "batching", "baseline", "batchgate", "stack", "loadtest")

#: Folder -> folders its modules must never import.
FORBIDDEN = {
    "api": {"workers", "stack", "loadtest"},  # the API publishes through batchgate.broker, by task name
    "workers": {"api", "stack", "loadtest"},
    "batching": {"batchgate", "api", "workers", "baseline", "stack", "loadtest"},  # stands alone
    "baseline": {"batchgate", "api", "workers", "batching", "stack", "loadtest"},  # statistics only
    "batchgate": {"api", "workers", "stack", "loadtest"},  # the shared core: the contract only
    "stack": {"api", "workers", "loadtest"},  # starts the programs by their command lines
    "loadtest": {"api", "workers"},  # speaks HTTP; starts a stack through stack.cluster
}


def imported_folders(path: Path) -> set[str]:
    """The top-level project folders ``path`` imports (at any depth of the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in FOLDERS)
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_module_imports_a_folder_it_must_not(folder: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_folders(path) & FORBIDDEN[folder])
        for path in (REPO / folder).rglob("*.py")
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def folder_graph() -> dict[str, set[str]]:
    """Folder -> the other folders its modules import."""
    graph: dict[str, set[str]] = {}
    for folder in FOLDERS:
        found: set[str] = set()
        for path in (REPO / folder).rglob("*.py"):
            found |= imported_folders(path)
        graph[folder] = found - {folder}
    return graph


def test_the_folders_import_each_other_without_a_cycle() -> None:
    graph, done, order = folder_graph(), set[str](), list[str]()

    def visit(folder: str, path: tuple[str, ...]) -> None:
        assert folder not in path, f"import cycle: {' -> '.join((*path, folder))}"
        if folder in done:
            return
        for imported in sorted(graph[folder]):
            visit(imported, (*path, folder))
        done.add(folder)
        order.append(folder)

    for folder in FOLDERS:
        visit(folder, ())
    # At the bottom, importing no other folder: the engine and the statistics.
    assert graph["batching"] == graph["baseline"] == set()


#: Longest module, code or test, in lines: past it a module holds more than one concept.
MAX_MODULE_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    too_long = {
        str(path.relative_to(REPO)): lines
        for folder in (*FOLDERS, "tests")
        for path in (REPO / folder).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}
