"""The import graph of the core and the built-in plugins: no circles, and the core never imports plugins.

Imports are read statically (``ast``), module-level and inside functions alike
(a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` are
annotations only and are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package name it installs as
PACKAGES = {"simbench": "simbench", "plugins": "simbench_plugins"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # "from pkg import sub" imports the submodule when there is one, else the package
                targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]  # "import a.b.c" where only a.b is ours
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve_to_modules():
    graph = import_graph()
    fa = "simbench_plugins.benchmarks.functional_agreement"
    assert f"{fa}.common" in graph[f"{fa}.compute"]
    assert f"{fa}.stats" in graph[f"{fa}.compute"]  # "from . import stats" is the submodule
    assert f"{fa}.compute" in graph[fa]  # a lazy import inside a method counts


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_core_never_imports_the_builtin_plugins():
    graph = import_graph()
    leaks = {m: sorted(t for t in targets if t.startswith("simbench_plugins"))
             for m, targets in graph.items() if m.startswith("simbench.") or m == "simbench"}
    assert not {m: t for m, t in leaks.items() if t}


#: what computing looks like in a benchmark: calling a metric, a model's forward or layer read
COMPUTE_CALLS = {"pairwise", "read", "forward", "transform_representation", "transform_weights", "make_plugin"}
#: packages a benchmark must not import: metric, zoo and perturbation implementations
COMPUTE_PACKAGES = ("simbench_plugins.metrics", "simbench_plugins.zoos", "simbench_plugins.perturbations",
                    "simbench.runner")


def compute_in_benchmarks(graph: dict[str, set[str]], files: dict[str, Path]) -> list[str]:
    """Every place a benchmark module computes instead of reading the store view."""
    found = []
    for module, path in files.items():
        for target in sorted(graph.get(module, ())):
            if target.startswith(COMPUTE_PACKAGES):
                found.append(f"{module} imports {target}")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COMPUTE_CALLS:
                found.append(f"{module}:{node.lineno} calls .{node.func.attr}()")
            if (isinstance(node, ast.Attribute) and node.attr == "models" and isinstance(node.value, ast.Name)
                    and node.value.id in ("ctx", "view", "context")):  # the runner's models, not a list of ids
                found.append(f"{module}:{node.lineno} reads {node.value.id}.models")
    return found


def test_the_compute_check_finds_a_planted_call(tmp_path):
    planted = tmp_path / "bad.py"
    planted.write_text("def evaluate(bench, ctx):\n    m = ctx.models['a']\n    return bench.metric.pairwise([m])\n")
    found = compute_in_benchmarks({"bad": {"simbench_plugins.metrics.cka"}}, {"bad": planted})
    assert found == ["bad imports simbench_plugins.metrics.cka", "bad:3 calls .pairwise()", "bad:2 reads ctx.models"]


def test_benchmarks_read_never_compute():
    """No benchmark imports a metric, zoo or perturbation implementation, calls a metric or a model, or
    reaches for the models: every extra matrix is declared (``requests``) and computed by the runner."""
    modules = _modules()
    files = {m: p for m, p in modules.items() if m.startswith("simbench_plugins.benchmarks")}
    found = compute_in_benchmarks(import_graph(), files)
    assert not found, "benchmarks that compute:\n" + "\n".join(found)
