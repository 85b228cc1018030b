"""The package map of docs/architecture.md, enforced: arrows point down, no cycles.

Every `import` statement of the package (module level or inside a function: a hidden upward
import is still an upward import) becomes an edge between modules; the rules below are the
"Dependencies" paragraph of docs/architecture.md.
"""

import ast
import os

import pytest
from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "diffssl_jax")

# (layer, layers it must never import)
FORBIDDEN = {
    "data": ("posterior", "training", "methods", "evaluation", "em", "sampling", "plotting"),
    "corruptions": ("data", "training", "methods", "evaluation", "em", "posterior"),
    "models": ("data", "training", "methods", "evaluation", "em", "posterior"),
    "sampling": ("data", "training", "methods", "evaluation", "em", "posterior"),
    "posterior": ("training", "evaluation", "em", "methods"),
    "methods": ("training", "data", "evaluation", "em"),
    "training": ("methods", "evaluation", "em", "posterior", "plotting"),
}


def _module_name(path: str) -> str:
    relative = os.path.relpath(path, REPO_ROOT)[: -len(".py")].split(os.sep)
    if relative[-1] == "__init__":
        relative = relative[:-1]
    return ".".join(relative)


def _modules() -> dict[str, str]:
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                found[_module_name(path)] = path
    return found


def _targets(node, module: str, is_package: bool, modules) -> set[str]:
    """The package modules an import statement loads (a submodule if it names one)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:  # relative import
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - node.level + 1]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    out = set()
    for alias in node.names:
        candidate = f"{origin}.{alias.name}"
        if candidate in modules:
            out.add(candidate)
        elif origin in modules:
            out.add(origin)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        is_package = path.endswith("__init__.py")
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, module, is_package, modules)
        graph[module] = edges - {module}
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_arrows_point_down():
    violations = []
    for module, edges in _graph().items():
        forbidden = FORBIDDEN.get(_layer(module), ())
        violations += [f"{module} -> {t}" for t in sorted(edges) if _layer(t) in forbidden]
    assert not violations, "upward or sideways imports:\n" + "\n".join(violations)


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_em_is_one_package():
    loose = [n for n in os.listdir(PACKAGE) if n.startswith("em") and n.endswith(".py")]
    assert not loose, f"EM modules outside diffssl_jax/em/: {loose}"
    assert os.path.isfile(os.path.join(PACKAGE, "em", "__init__.py"))


@pytest.mark.parametrize("rule", sorted(FORBIDDEN))
def test_every_rule_names_a_real_layer(rule):
    assert os.path.isdir(os.path.join(PACKAGE, rule)), rule
