"""The tree keeps the shape ARCHITECTURE.md draws (issue 19), measured from the source with `ast`.

`python -m tests.test_architecture` prints the figures the rules below hold at: top-level modules,
longest class and function, imports inside functions, import cycles, and which folders import which.
"""

from __future__ import annotations

import ast
import collections
import sys
from dataclasses import dataclass, field
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "pipeline"
TESTS = REPO / "tests"

MAX_TOP_LEVEL_MODULES = 10
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60

# Who may import whom: a room of pipeline/ and the rooms it may import (ARCHITECTURE.md, "The tree").
# "top" is a module at the top of pipeline/: the entry points (cli, batch, __main__, __init__) may
# import anything; the shared facts (config, models, redact, http_server) only each other.
ENTRY_POINTS = {"pipeline", "pipeline.__main__", "pipeline.cli", "pipeline.batch"}
SHARED = {"pipeline.config", "pipeline.models", "pipeline.redact", "pipeline.http_server"}
MAY_IMPORT = {
    "shared": {"shared"},
    "api": {"shared"},
    "store": {"shared"},
    "manifest": {"shared"},
    "plan": {"shared", "manifest", "store"},
    "run": {"shared", "api", "store", "manifest", "plan"},
    "reports": {"shared", "store", "plan", "run"},
    "review": {"shared", "store", "manifest", "plan", "reports"},
    "emulator": {"shared", "api"},
}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: set[str] = field(default_factory=set)  # pipeline modules it imports anywhere
    source: str = ""

    @property
    def room(self) -> str:
        if self.name in ENTRY_POINTS:
            return "entry"
        if self.name in SHARED or self.name.startswith("pipeline.models."):  # the model table's package
            return "shared"
        return self.name.split(".")[1]


def _name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def load_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(PIPELINE.rglob("*.py")):
        source = path.read_text()
        modules[_name(path)] = Module(_name(path), path, ast.parse(source, str(path)), source=source)
    for module in modules.values():
        package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pipeline.run import transitions` imports the module; `from x import name` imports x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module.name:
                    module.imports.add(target)
    return modules


def _lines(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def sizes(modules: dict[str, Module], kinds: tuple[type, ...]) -> list[tuple[int, str]]:
    found = []
    for module in modules.values():
        for node in ast.walk(module.tree):
            if isinstance(node, kinds):
                found.append((_lines(node), f"{module.path.relative_to(REPO)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def _says_why(source: list[str], lineno: int) -> bool:
    """A comment on the import's line, or above the block of imports it stands in."""
    if "#" in source[lineno - 1]:
        return True
    above = lineno - 2
    while above >= 0 and source[above].strip().startswith(("import ", "from ")):
        above -= 1
    return above >= 0 and source[above].strip().startswith("#")


def imports_inside_functions(modules: dict[str, Module]) -> list[tuple[str, bool]]:
    """Every import made inside a function, and whether a comment on its line or the line above says why."""
    found = []
    for module in modules.values():
        source = module.source.splitlines()
        for node in ast.walk(module.tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append((f"{module.path.relative_to(REPO)}:{inner.lineno}", _says_why(source, inner.lineno)))
    return sorted(set(found))


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in sorted(modules[name].imports):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == name:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return groups


def wrong_rooms(modules: dict[str, Module]) -> list[str]:
    found = []
    for module in modules.values():
        if module.room == "entry":
            continue
        for other in sorted(module.imports):
            room = modules[other].room
            if room == "entry" or (room != module.room and room not in MAY_IMPORT[module.room]):
                found.append(f"{module.name} ({module.room}) imports {other} ({room})")
    return found


def untested(modules: dict[str, Module]) -> list[str]:
    """Modules with neither a test file at the mirrored path nor a test (a scenario, mostly) naming
    them in a `Covers:` line of its docstring."""
    covered: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        for line in doc.splitlines():
            if line.startswith("Covers:"):
                covered.update(word.strip(" ,.") for word in line.removeprefix("Covers:").split())
    missing = []
    for module in modules.values():
        if module.path.name == "__init__.py" or module.name in ("pipeline.__main__",):
            continue
        relative = module.path.relative_to(PIPELINE)
        mirrored = TESTS / relative.parent / f"test_{relative.name}"
        if not mirrored.exists() and str(module.path.relative_to(REPO)) not in covered:
            missing.append(str(module.path.relative_to(REPO)))
    return missing


MODULES = load_modules()


def test_no_import_cycle():
    assert cycles(MODULES) == []


def test_few_modules_at_the_top_of_pipeline():
    top = sorted(p.name for p in PIPELINE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_class_or_function_too_long_to_read_at_once():
    classes = sizes(MODULES, (ast.ClassDef,))
    functions = sizes(MODULES, (ast.FunctionDef, ast.AsyncFunctionDef))
    assert [c for c in classes if c[0] > MAX_CLASS_LINES] == []
    assert [f for f in functions if f[0] > MAX_FUNCTION_LINES] == []


def test_an_import_inside_a_function_says_why():
    assert [where for where, said in imports_inside_functions(MODULES) if not said] == []


def test_each_room_imports_only_the_rooms_below_it():
    assert wrong_rooms(MODULES) == []


def test_every_module_has_a_test_at_the_mirrored_path_or_a_scenario_that_names_it():
    assert untested(MODULES) == []


def test_the_rules_can_fail():
    """The checks find what they look for: a cycle, a long function, a silent inner import, a room
    importing one above it."""
    a = "import pipeline.store.b\ndef f():\n    import os\n    # PyAV: only a download needs it\n    import av\n" \
        + "    x = 1\n" * 70
    b = "import pipeline.plan.a\n"
    modules = {"pipeline.plan.a": Module("pipeline.plan.a", PIPELINE / "plan" / "a.py", ast.parse(a),
                                         {"pipeline.store.b"}, a),
               "pipeline.store.b": Module("pipeline.store.b", PIPELINE / "store" / "b.py", ast.parse(b),
                                          {"pipeline.plan.a"}, b)}
    assert cycles(modules) == [["pipeline.plan.a", "pipeline.store.b"]]
    assert sizes(modules, (ast.FunctionDef,))[0][0] == 74
    assert imports_inside_functions(modules) == [("pipeline/plan/a.py:3", False), ("pipeline/plan/a.py:5", True)]
    assert wrong_rooms(modules) == ["pipeline.store.b (store) imports pipeline.plan.a (plan)"]


def figures() -> str:
    classes = sizes(MODULES, (ast.ClassDef,))
    functions = sizes(MODULES, (ast.FunctionDef, ast.AsyncFunctionDef))
    inner = imports_inside_functions(MODULES)
    lines = [
        f"top-level modules of pipeline/: {len(list(PIPELINE.glob('*.py')))}",
        f"modules: {len(MODULES)}",
        f"longest class: {classes[0][0]} lines ({classes[0][1]}); over {MAX_CLASS_LINES}: "
        f"{sum(n > MAX_CLASS_LINES for n, _ in classes)}",
        f"longest function: {functions[0][0]} lines ({functions[0][1]}); over {MAX_FUNCTION_LINES}: "
        f"{sum(n > MAX_FUNCTION_LINES for n, _ in functions)}",
        f"imports inside functions: {len(inner)} ({sum(not said for _, said in inner)} without a comment saying why)",
        f"import cycles: {len(cycles(MODULES))} {cycles(MODULES)}",
        f"imports against the rooms' order: {len(wrong_rooms(MODULES))}",
        f"modules without a mirrored test or a scenario naming them: {len(untested(MODULES))}",
    ]
    rooms = collections.defaultdict(set)
    for module in MODULES.values():
        rooms[module.room].update(MODULES[o].room for o in module.imports if MODULES[o].room != module.room)
    lines += [f"  {room} imports {', '.join(sorted(rooms[room])) or 'nothing of ours'}" for room in sorted(rooms)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(figures())
    if "-v" in sys.argv:
        for title, items in [("over the limits", [c for c in sizes(MODULES, (ast.ClassDef,)) if c[0] > MAX_CLASS_LINES]
                              + [f for f in sizes(MODULES, (ast.FunctionDef, ast.AsyncFunctionDef))
                                 if f[0] > MAX_FUNCTION_LINES]),
                             ("inner imports without a why", [w for w, s in imports_inside_functions(MODULES) if not s]),
                             ("against the rooms' order", wrong_rooms(MODULES)), ("untested", untested(MODULES))]:
            print(f"\n{title}:")
            for item in items:
                print(f"  {item}")
