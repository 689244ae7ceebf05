"""The package's layers, checked: a lower layer never imports a higher one, and no import cycle exists.

Every import counts, at module level, inside functions and under TYPE_CHECKING alike: a type-only
import that runs upwards is still a dependency a reader has to follow. A new module must be given
a layer here, so the picture stays whole (docs/architecture.md draws it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast
SRC = Path(__file__).resolve().parent.parent / "src"

# Top to bottom. A module belongs to the first layer with a prefix naming it or a package holding it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "entry points",
        ("devyard.__main__", "devyard.clidoc", "devyard.cli", "devyard.server", "devyard.app", "devyard.doctor"),
    ),
    ("interfaces", ("devyard.web", "devyard.api", "devyard.gateway", "devyard.live")),
    ("workspaces", ("devyard.workspaces", "devyard.metrics")),
    (
        "engines and accounts",
        (
            "devyard.backends",
            "devyard.provision",
            "devyard.engine",
            "devyard.auth",
            "devyard.usersecrets",
            "devyard.ssh",
            "devyard.audit",
        ),
    ),
    # The bottom: storage, settings, errors, the API's shapes and the state rules they share, small helpers of the OS.
    (
        "foundations",
        (
            "devyard.workspaces.states",
            "devyard.store",
            "devyard.config",
            "devyard.settings_parts",
            "devyard.settings_file",
            "devyard.settings_devbox",
            "devyard.settings_reload",
            "devyard.versions",
            "devyard.errors",
            "devyard.models",
            "devyard.fields",
            "devyard.origins",
            "devyard.paths",
            "devyard.processes",
            "devyard.safefs",
            "devyard.logfiles",
            "devyard.logs",
            "devyard.loops",
            "devyard.osaccounts",
            "devyard.forwarded",
            "devyard.tls",
            "devyard",
        ),
    ),
]


def module_name(path: Path) -> str:
    """The dotted name of a source file."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every devyard module a source file imports, anywhere in it."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from devyard.x import y` may import the module devyard.x.y: count the deepest that exists.
            names = [
                f"{base}.{a.name}"
                if (SRC / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                or (SRC / f"{base}.{a.name}".replace(".", "/")).is_dir()
                else base
                for a in node.names
            ]
        else:
            continue
        yield from (n for n in names if n == "devyard" or n.startswith("devyard."))


def layer_of(module: str) -> int:
    """The index of the module's layer (the longest prefix wins)."""
    best = (-1, -1)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    return best[1]


GRAPH = {module_name(p): set(imports(p)) - {module_name(p)} for p in sorted((SRC / "devyard").rglob("*.py"))}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import that runs from a layer to one above it."""
    return [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in graph.items()
        for t in sorted(targets)
        if layer_of(t) < layer_of(m)
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in graph.get(m, ()):
            if t not in graph:
                continue
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while (top := stack.pop()) != m:
                component.append(top)
            component.append(m)
            if len(component) > 1:
                found.append(sorted(component))

    for m in graph:
        if m not in index:
            visit(m)
    return found


def test_every_module_has_a_layer() -> None:
    assert [m for m in GRAPH if layer_of(m) < 0] == []


def test_no_layer_imports_one_above_it() -> None:
    assert upward(GRAPH) == []


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The checker itself, on a made-up graph: the old metrics ↔ service knot, and a foundation importing the gateway."""
    knot = {
        "devyard.metrics": {"devyard.workspaces.service"},
        "devyard.workspaces.service": {"devyard.metrics"},
        "devyard.errors": {"devyard.gateway.app"},
        "devyard.gateway.app": set(),
    }
    assert cycles(knot) == [["devyard.metrics", "devyard.workspaces.service"]]
    assert upward(knot) == ["devyard.errors (foundations) imports devyard.gateway.app (interfaces)"]
    assert (
        layer_of("devyard.workspaces.states") == layer_of("devyard.models") > layer_of("devyard.workspaces.lifecycle")
    )
