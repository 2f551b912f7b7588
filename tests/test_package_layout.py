"""The package's shape: no import cycle between its modules, and the registry free of torch at import."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "arretrieve"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules `path` imports, relative imports resolved: every import statement, or with
    `top_level_only` those that run when it is imported (not inside functions, not under
    `if TYPE_CHECKING`)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import x` imports a module
            elif isinstance(node, ast.If) and _is_type_checking(node):  # type-only: never runs
                continue
            elif top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            else:
                visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, top_level_only):
            if imported in modules:
                targets.add(imported)
            # importing a.b.c runs a and a.b first
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules)
        graph[name] = targets - {name}
    return graph


def test_no_import_cycle_inside_the_package():
    """Deferred imports (inside functions) count: a cycle through one is still two modules that need each other."""
    graph = _graph(top_level_only=False)
    visiting, done, cycles = [], set(), []

    def walk(node):
        if node in done:
            return
        if node in visiting:
            cycles.append(visiting[visiting.index(node):] + [node])
            return
        visiting.append(node)
        for target in sorted(graph[node]):
            walk(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        walk(node)
    # A package's __init__ importing its own submodules is how packages work, not a cycle of concepts.
    real = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") or c[0].startswith(m + ".") for m in c)]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)


def test_the_registry_imports_no_torch_at_module_level():
    graph = _graph(top_level_only=True)
    seen, stack = set(), [m for m in graph if m.startswith("arretrieve.registry")]
    external = set()
    while stack:
        module = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        stack.extend(graph[module])
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        path = path if path.is_file() else PACKAGE.parent / module.replace(".", "/") / "__init__.py"
        external.update(i.split(".")[0] for i in _imports(path, top_level_only=True) if not i.startswith("arretrieve"))
    assert not external & {"torch", "transformers", "peft", "sentence_transformers", "safetensors", "faiss"}, sorted(
        m for m in seen)


def test_every_package_is_listed_for_the_wheel():
    """pyproject lists packages one by one (cli/ is installed as arretrieve.cli): one left out is
    missing from a built wheel while an editable install hides it."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "arretrieve").rglob("__init__.py")}
    assert found | {"arretrieve.cli"} == listed
