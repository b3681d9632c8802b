"""The layout's import rules (docs/architecture.md), read from the source with `ast`.

Every `import` and `from ... import` of an edge module counts, at module level or inside a
function, and so does `importlib.import_module("edge....")` with a literal name. Importing
`edge.a.b` also runs `edge/a/__init__.py`, so it counts as importing `edge.a` too (except from
inside `edge.a`, whose `__init__` is already running). On that graph:
- no import cycle;
- each role package imports only the roles ALLOWED below;
- no edge module imports TensorFlow or converter/, except edge/workstation.py, the entry of the
  workstation commands. (The runtime may load `tensorflow.lite` as its last-resort TFLite
  interpreter, by a name from its runtime list: a choice made at run time, not an import.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "edge"

# role -> the roles (or single modules) it may import. A role is a package under edge/, or a
# module at the top of edge/. Every role may import its own modules and `edge` itself.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "native_logs": set(),
    "stop_reason": set(),
    "uris": set(),
    "writable": {"errors"},
    "untrusted": set(),
    "pages": {"errors", "untrusted"},
    "config": {"errors", "edge.method.refine.registry",      # the leaf lists of refine modes,
               "edge.method.choices"},                       # runtimes and quantisation modes
    "data": {"errors"},
    "method": {"errors", "config", "data", "native_logs"},
    "sources": {"errors", "data", "untrusted", "uris"},
    "outputs": {"errors", "writable", "untrusted", "uris"},
    "console": {"errors", "config", "outputs", "pages", "untrusted",
                "edge.method.paths",     # the paths' meanings
                "edge.method.states"},   # the condition states' names (no edge imports)
    "record": {"errors", "config", "writable", "outputs", "method", "pages", "untrusted",
               "stop_reason"},
    "live": {"errors", "config", "writable", "native_logs", "untrusted", "data", "method",
             "sources", "outputs", "console", "record", "stop_reason"},
    "measure": {"errors", "config", "data", "method", "sources", "outputs", "live"},
    "batch": {"errors", "config", "writable", "native_logs", "data", "method", "sources",
              "live", "record", "pages", "untrusted", "stop_reason"},
    "service": {"errors", "config", "record"},
    "workstation": {"config"},
    "cli": {"errors", "config", "writable", "native_logs", "untrusted", "pages", "data",
            "method", "sources", "outputs", "console", "record", "live", "measure", "batch",
            "service", "workstation", "stop_reason", "uris"},
}
LEAVES = ("edge.method.refine.registry", "edge.method.paths", "edge.method.choices",
          "edge.stop_reason", "edge.uris")   # import no edge module at all
WORKSTATION_ENTRY = "edge.workstation"
WORKSTATION_ONLY = ("tensorflow", "converter", "keras", "tf_keras")


def module_name(path: Path, root: Path = EDGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def edge_modules(root: Path = EDGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name `module` imports (anything, edge or not), anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # maybe submodules
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def import_graph(root: Path = EDGE) -> dict[str, set[str]]:
    """module -> the edge modules it imports (including the packages that importing runs)."""
    modules = edge_modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for name in imported_names(path, module):
            if name in modules:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    target = ".".join(parts[:i])
                    if target in modules and target != module and \
                            (target == name or target not in own_packages):
                        targets.add(target)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def role(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "edge"
    return parts[1]


def role_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        mine = role(module)
        if mine == "edge":
            continue
        allowed = ALLOWED.get(mine)
        if allowed is None:
            problems.append(f"{module}: role {mine!r} has no row in ALLOWED")
            continue
        for target in sorted(targets):
            theirs = role(target)
            if theirs in (mine, "edge") or theirs in allowed or target in allowed:
                continue
            if any(single.startswith(target + ".") for single in allowed):
                continue  # the package of an allowed leaf (its __init__ imports nothing: below)
            problems.append(f"{module} ({mine}) imports {target} ({theirs})")
    return problems


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_role_packages_import_only_what_the_table_allows():
    assert role_violations(import_graph()) == []


def test_leaf_modules_import_no_edge_module():
    graph = import_graph()
    for leaf in LEAVES:
        parts = leaf.split(".")
        for module in (".".join(parts[:i]) for i in range(2, len(parts) + 1)):  # its packages too
            assert graph[module] <= {"edge"}, f"{module} imports {sorted(graph[module])}"


def test_only_the_workstation_entry_imports_converter_or_tensorflow():
    offenders = []
    for module, path in edge_modules().items():
        if module == WORKSTATION_ENTRY:
            continue
        for name in imported_names(path, module):
            if name.split(".")[0] in WORKSTATION_ONLY:
                offenders.append(f"{module} imports {name}")
    assert offenders == []
    entry = imported_names(EDGE / "workstation.py", WORKSTATION_ENTRY)
    assert {name.split(".")[0] for name in entry} & {"converter"}, "the entry reaches converter"


def test_the_checks_see_imports_inside_functions_and_cycles(tmp_path):
    """The checker itself: a cycle closed by an import inside a function is found."""
    package = tmp_path / "edge"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("")
    (package / "a" / "one.py").write_text("from edge.b import two\n")
    (package / "b.py").write_text("def f():\n    from edge.a.one import x\n")
    graph = import_graph(package)
    assert graph["edge.b"] == {"edge.a", "edge.a.one"}
    assert find_cycle(graph) in (["edge.a.one", "edge.b", "edge.a.one"],
                                 ["edge.b", "edge.a.one", "edge.b"])
