"""Which folder may import which: the direction of every arrow, read from the code itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("api", "workers", "batching", "baseline", "batchgate", "loadtest")

#: Folder -> folders its modules must never import.
FORBIDDEN = {
    "api": {"workers", "loadtest"},  # the API publishes through batchgate.broker, by task name
    "batching": {"batchgate", "api", "workers", "baseline", "loadtest"},  # stands alone
    "baseline": {"api", "workers", "loadtest"},
    "workers": {"api", "loadtest"},
    "loadtest": {"api", "workers"},  # speaks HTTP
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
    assert order[0] == "batching"  # the engine stands alone, at the bottom
