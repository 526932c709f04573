"""The modules of ``recflow``, ``tasks`` and ``flows`` import each other without a cycle.

Counted: every ``import`` the interpreter may execute, at module level or inside a function (a
lazy import only postpones a cycle to the first call), and the package ``__init__`` an import
runs on the way (``from recflow.models.base import X`` executes ``recflow/models/__init__.py``,
unless the importer lives inside that package). Not counted: imports under ``if TYPE_CHECKING:``.
The imports are read by ``recflow.runtime.lineage.imported_names``, the parser that cache keys rely on.
"""

from __future__ import annotations

from pathlib import Path

from recflow.runtime.lineage import imported_names  # the parser cache keys use: one reading of imports

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("recflow", "tasks", "flows")


def _modules() -> dict[str, Path]:
    out = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for name in imported_names(module, path.read_text(), path.name == "__init__.py"):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # the module and every package __init__ on the way
                target = ".".join(parts[:i])
                if target in modules and target != module and not module.startswith(target + "."):
                    targets.add(target)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_graph_sees_lazy_imports_and_package_inits():
    graph = import_graph()
    assert "recflow.models" in graph["recflow.retrieval.search"]  # ``from recflow.models import load_model`` inside a method
    assert "recflow.models" in graph["recflow.evaluation.evaluate"] or "recflow.models.base" not in graph["recflow.evaluation.evaluate"]
    assert "recflow.models.base" in graph["recflow.models.bias"]
    assert "recflow.models" not in graph["recflow.models.bias"]  # its own package is already running


def test_find_cycle_reports_a_cycle_through_a_lazy_edge():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_recflow_tasks_and_flows_import_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# ----------------------------------------------------------------------------- the layering rule
LIBRARY = ("recflow.data", "recflow.prep", "recflow.models", "recflow.evaluation", "recflow.retrieval", "recflow.utils")
ABOVE_THE_LIBRARY = ("recflow.runtime", "recflow.experiments", "recflow.cli", "recflow.api", "tasks", "flows", "prefect", "prefect_dask", "mlflow", "typer")
FORBIDDEN = {
    LIBRARY: ABOVE_THE_LIBRARY,
    ("recflow.runtime",): ("recflow.experiments", "recflow.cli", "recflow.api", "tasks", "flows", "prefect", "prefect_dask"),
    ("recflow.experiments",): ("recflow.cli", "recflow.api", "tasks", "flows"),
    ("tasks",): ("flows", "recflow.cli", "recflow.api"),
    ("flows",): ("recflow.cli", "recflow.api"),
}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def layering_violations(imports: dict[str, set[str]]) -> list[str]:
    """``module -> name`` for every import a module's layer may not make (``imports``: module -> every name it imports)."""
    out = []
    for module, names in sorted(imports.items()):
        for layer, forbidden in FORBIDDEN.items():
            if _within(module, layer):
                out.extend(f"{module} -> {name}" for name in sorted(names) if _within(name, forbidden))
    return out


def all_imports() -> dict[str, set[str]]:
    return {module: set(imported_names(module, path.read_text(), path.name == "__init__.py")) for module, path in _modules().items()}


def test_the_layering_rule_catches_a_lazy_upward_import():
    assert layering_violations({"recflow.prep.split": {"numpy", "recflow.runtime.store"}}) == ["recflow.prep.split -> recflow.runtime.store"]
    assert layering_violations({"recflow.models.ease": {"mlflow.pyfunc"}}) == ["recflow.models.ease -> mlflow.pyfunc"]
    assert layering_violations({"recflow.runtime.storage": {"prefect.filesystems"}}) == ["recflow.runtime.storage -> prefect.filesystems"]
    assert layering_violations({"recflow.experiments.gc": {"recflow.cli.ops"}}) == ["recflow.experiments.gc -> recflow.cli.ops"]
    assert layering_violations({"recflow.cli.main": {"flows.pipeline", "mlflow"}}) == []


def test_each_layer_imports_only_the_layers_below_it():
    violations = layering_violations(all_imports())
    assert not violations, "imports that break the layering (docs/architecture.md):\n" + "\n".join(violations)
