"""The layer rules of docs/ARCHITECTURE.md, checked on the source: every import of glimpse's modules, lazy
ones inside functions included, read with ``ast``.

* no module imports a private name (``_x``) of another module (a compiled extension, ``_x.c``, is imported by
  its one Python wrapper: that is the extension's door, not a reach into another module);
* the core never imports the edges (``glimpse.cli``, ``glimpse.commands``, ``glimpse.server``);
* the import graph has no cycles (a package's ``__init__`` counts as the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
EDGES = ("glimpse.cli", "glimpse.commands", "glimpse.server", "glimpse.__main__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "glimpse").rglob("*.py"))}


def _imports(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every glimpse import in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("glimpse")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("glimpse"):
                found.append((module, [a.name for a in node.names], node.lineno))
    return found


def _resolve(module: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The glimpse modules an import statement loads (``from glimpse.x import y`` may name module x.y)."""
    targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
    if module in known and (not names or len(targets) < len(names)):
        targets.append(module)
    return targets


def test_no_private_names_are_imported_across_modules():
    known = _modules()
    offenders = []
    for name, path in known.items():
        for module, names, line in _imports(path, name):
            if module == name:
                continue
            offenders += [f"{path.relative_to(SRC)}:{line}: from {module} import {n}" for n in names
                          if n.startswith("_") and not n.startswith("__") and not _is_extension(module, n)]
    assert offenders == []


def _is_extension(module: str, name: str) -> bool:
    return (SRC / Path(*module.split(".")) / f"{name}.c").exists()


def test_each_compiled_extension_has_one_importer():
    importers: dict[str, list[str]] = {}
    for name, path in _modules().items():
        for module, names, _line in _imports(path, name):
            for n in names:
                if _is_extension(module, n):
                    importers.setdefault(f"{module}.{n}", []).append(name)
    assert importers == {"glimpse._resample": ["glimpse.resample"]}


def test_the_core_does_not_import_the_edges():
    known = _modules()
    offenders = []
    for name, path in known.items():
        if name.startswith(EDGES):
            continue
        for module, names, line in _imports(path, name):
            for target in _resolve(module, names, known):
                if target.startswith(EDGES):
                    offenders.append(f"{path.relative_to(SRC)}:{line}: imports {target}")
    assert offenders == []


def test_the_import_graph_has_no_cycles():
    known = _modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for module, names, _line in _imports(path, name):
            graph[name] |= {t for t in _resolve(module, names, known) if t != name}
    # A package's __init__ that only hands names on would tie every submodule to each other: a package
    # importing its own submodules is no cycle, its submodules importing the package's names are edges.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") and known[name].name == "__init__.py")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []
