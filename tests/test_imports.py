"""No import circle in securedb: each module's imports, read from its source, form no loop.

Every import counts, at module level or inside a function (a lazy import is still a
dependency), and so do the packages of what is imported (Python runs them first), except
a module's own packages: they are being imported already when it runs. Only imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import securedb

ROOT = Path(securedb.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The securedb modules `name` imports, with their packages, but not its own."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    nodes: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If) and is_type_checking(node):
            nodes.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        nodes.extend(ast.iter_child_nodes(node))
    # `import securedb.a.b` runs securedb.a first: every known ancestor counts.
    with_parents = set()
    for module in found:
        parts = module.split(".")
        with_parents.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    own = {name, *(m for m in with_parents if name.startswith(f"{m}."))}
    return {m for m in with_parents if m in modules} - own


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A loop in `graph`, as the path that closes it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle() -> None:
    modules = module_names()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert cycle(graph) is None


def test_the_reader_sees_a_loop() -> None:
    """The check above can fail: a graph with a loop is reported, with its path."""
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_config_imports_no_driver() -> None:
    modules = module_names()
    config = imported("securedb.config", modules["securedb.config"], modules)
    assert not any(m.startswith("securedb.drivers") for m in config)
