"""Imports inside ``fluentfn`` run one way: no module reaches itself through its imports,
and the layers keep to their rules.

Function-level imports count too (a lazy import is still a cycle in the design), and so
do imports under ``if TYPE_CHECKING:`` (a type-only import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fluentfn"
pytestmark = pytest.mark.timeout(60)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif target in modules:
                    out.add(target)
    out.discard(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    # the package itself re-exports the public API: edges into it are not design edges
    return {n: _edges(n, p, modules) - {"fluentfn"} for n, p in modules.items()}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


RUNTIME = ("fluentfn.runtime", "fluentfn.transport", "fluentfn.directory", "fluentfn.control", "fluentfn.api",
           "fluentfn.client", "fluentfn.host._engine", "fluentfn.host._partitions", "fluentfn.state")  # fmt: skip
PURE = ["fluentfn._call", "fluentfn._status", "fluentfn._router", "fluentfn.host._policy", "fluentfn.host._where",
        "fluentfn.host._mailbox", "fluentfn.host._activations", "fluentfn.host._written", "fluentfn.elastic._assign",
        "fluentfn.elastic._autoscale",
        "fluentfn.elastic._rebuild", "fluentfn.placement", "fluentfn.errors", "fluentfn.lab._linear",
        "fluentfn.lab._models", "fluentfn.lab._history"]  # fmt: skip


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", PURE)
def test_the_vocabulary_and_the_policies_import_nothing_of_the_runtime(module: str) -> None:
    """Decisions are pure: tested without Ray, sockets or a store."""
    graph = _graph()
    assert module in graph, f"{module} is gone: update PURE"
    assert sorted(m for m in _reach(graph, module) if _under(m, RUNTIME)) == []


def test_hosts_never_import_the_control_plane_or_the_callers_runtime() -> None:
    graph = _graph()
    hosts = [m for m in graph if m.startswith("fluentfn.host.")]
    banned = ("fluentfn.directory", "fluentfn.control", "fluentfn.runtime", "fluentfn.api", "fluentfn.client")
    assert {
        m: sorted(w for w in graph[m] if _under(w, banned)) for m in hosts if any(_under(w, banned) for w in graph[m])
    } == {}


def test_the_call_vocabulary_stands_alone() -> None:
    """``Call``, ``Outcome`` and ``Status`` are what every layer shares: they import no
    other module of fluentfn (and so no protobuf)."""
    graph = _graph()
    assert graph["fluentfn._call"] == set() and graph["fluentfn._status"] == set()


def test_only_the_transport_and_the_wire_import_the_generated_stubs() -> None:
    graph = _graph()
    users = {m for m, out in graph.items() if any(w.startswith("fluentfn.wire._gen") for w in out)}
    outside = {m for m in users if not _under(m, ("fluentfn.transport", "fluentfn.wire"))}
    assert users, "the checker found no user of the stubs at all: it is broken"
    assert outside == set(), "these import protobuf: convert at the transport (transport/_convert.py) instead"


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
