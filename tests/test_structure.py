"""Structural facts of the package, checked from its source: no import loops between its modules, no
module reaching into another package folder's private modules or names, modules of a readable size,
and one place that opens a Parquet writer (so every path writes with the same options)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "llava_hf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_level_imports(path: Path) -> set[str]:
    """Modules of the package imported at module level (``if TYPE_CHECKING:`` blocks included); an
    import inside a function runs on first use and is how optional parts stay optional."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body: list[ast.stmt] = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If):
            body.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            body.extend(node.body + node.orelse + node.finalbody)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            found.add(target)
            for alias in node.names:  # `from . import x` imports the module x
                found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("llava_hf"))
    return found


def test_no_import_loops() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def with_packages(module: str) -> set[str]:  # importing a.b.c runs a and a.b first
        parts = module.split(".")
        return {".".join(parts[:k]) for k in range(1, len(parts) + 1)}

    graph = {
        name: {m for i in _module_level_imports(path) for m in with_packages(i) if m in modules and m != name}
        for name, path in modules.items()
    }
    # a module's packages are imported before it: an edge to one of them is not a loop of ours
    for name, deps in graph.items():
        parts = name.split(".")
        deps.difference_update(".".join(parts[:k]) for k in range(1, len(parts)))
    loops: list[list[str]] = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            loops.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert loops == []


def test_one_place_opens_a_parquet_writer() -> None:
    openers = sorted(
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if "ParquetWriter(" in p.read_text(encoding="utf-8")
    )
    assert openers == ["llava_hf/build/parquet.py"]


def _all_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of a package module (also inside functions): (module, the names taken from it)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            found.append((f"{base}.{node.module}" if node.module else base, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llava_hf"):
            found.append((str(node.module), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names if a.name.startswith("llava_hf"))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_reaches_into_another_package_folder() -> None:
    """A ``_private`` module or name is used only inside its own package folder (as ``__all__`` is
    the public surface of a module, the public modules are the surface of a folder)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def folder(module: str) -> str:
        path = modules[module]
        return str(path.parent.relative_to(PACKAGE.parent))

    reaches: list[str] = []
    for name, path in sorted(modules.items()):
        here = str(path.parent.relative_to(PACKAGE.parent))
        for module, names in _all_imports(path):
            for target in [module, *(f"{module}.{n}" for n in names)]:
                if (
                    target in modules
                    and folder(target) != here
                    and any(_private(part) for part in target.split("."))
                ):
                    reaches.append(f"{name} imports {target}")
            if module in modules and folder(module) != here:
                reaches.extend(f"{name} imports {module}.{n}" for n in names if _private(n))
    assert reaches == []


def test_modules_stay_readable() -> None:
    """No module over about 500 lines: a longer one holds several concerns."""
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}


def test_one_module_adapts_datasets_internals() -> None:
    """Private hooks and attributes of ``datasets`` are used in llava_hf/datasets_adapter.py only."""
    internals = (
        "_prepare_split",
        "_ex_iterable",
        "_register_formatter",
        "__globals__",
        "_BaseExamplesIterable",
    )
    found = sorted(
        f"{p.relative_to(PACKAGE.parent)}: {name}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "datasets_adapter.py"
        for name in internals
        if name in p.read_text(encoding="utf-8")
    )
    assert found == []
