"""bertkit's layers, checked statically: a module imports only from its own layer or the layers below
it (docs/architecture.md), and no two modules import each other at module level, directly or not.

Every import statement counts, those inside functions too: an import deferred to run time still
ties the lower layer to the upper one."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bertkit"

# Top to bottom; a module may import from its layer and every layer after it.
LAYERS = [
    ("cli",),
    ("serve",),
    ("inference", "extract_features"),
    ("tasks",),
    ("compress", "export"),
    ("training",),
    ("heads",),
    ("checkpoint",),
    ("data", "vocab"),
    ("modeling", "int8", "tokenization", "config"),
    ("io_utils", "errors", "paths", "devices", "cpu"),
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
PACKAGE_API = {"__init__", "__main__"}  # the public API re-exports from every layer


def modules() -> dict[str, Path]:
    return {".".join(path.relative_to(SRC).with_suffix("").parts): path for path in SRC.rglob("*.py")}


def part_of(module: str) -> str:
    return module.split(".")[0]


def imports(path: Path, module_level_only: bool = False) -> set[str]:
    """The bertkit modules `path` imports (`bertkit.x.y` -> "x.y")."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name.removeprefix("bertkit.") for name in names if name.startswith("bertkit.")}
    return found


def test_every_module_has_a_layer():
    unplaced = {part_of(m) for m in modules()} - set(LEVEL) - PACKAGE_API
    assert not unplaced, f"place {sorted(unplaced)} in LAYERS (and docs/architecture.md)"


def test_no_import_runs_up_the_layers():
    upward = []
    for module, path in modules().items():
        if part_of(module) in PACKAGE_API:
            continue
        for target in imports(path):
            if part_of(target) in LEVEL and LEVEL[part_of(target)] < LEVEL[part_of(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that run up the layers: " + ", ".join(sorted(upward))


def test_no_import_cycle():
    known = modules()
    graph = {}
    for module, path in known.items():
        targets = set()
        for target in imports(path, module_level_only=True):
            # `from bertkit.x import y` names a module x.y or a name y in x.
            targets.add(target if target in known else target.rsplit(".", 1)[0])
        graph[module] = {t for t in targets if t in known and t != module}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if target.endswith("__init__") or graph.get(target) is None:
                continue
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_check_sees_an_upward_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from bertkit.tasks.registry import get\n")
    assert imports(path) >= {"tasks.registry", "tasks.registry.get"}
    assert imports(path, module_level_only=True) == set()
