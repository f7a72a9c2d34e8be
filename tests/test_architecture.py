"""The package's structure: the layer contract (import-linter) holds, and no import cycle exists
between modules, counting imports inside functions (which import-linter sees too, but a cycle
inside one layer would not break a layers contract)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from tests.support.paths import REPO

PACKAGE = REPO / "cellsearch"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """cellsearch module → cellsearch module it imports, anywhere in its body (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import module` imports the module; `from module import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target.startswith("cellsearch"):
                    resolved = resolve(target)
                    if resolved and resolved != name:
                        graph.add_edge(name, resolved)
    return graph


def test_the_import_graph_sees_function_local_imports():
    graph = import_graph()
    assert graph.number_of_edges() > 100
    # cli/__init__ imports its command modules inside a function
    assert graph.has_edge("cellsearch.cli", "cellsearch.cli.search")


def test_no_import_cycle_between_modules():
    graph = import_graph()
    # a package's __init__ re-exporting its submodules is not a cycle of concepts: leave those edges out
    edges = [(a, b) for a, b in graph.edges if not (b.startswith(a + ".") and a.count(".") < b.count("."))]
    cycles = [c for c in nx.strongly_connected_components(nx.DiGraph(edges)) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" ↔ ".join(sorted(c)) for c in cycles)


def _contracts() -> list[dict]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_layer_contract_holds():
    """`lint-imports` with every contract in pyproject.toml (the package's layers covering every
    subpackage, the layers of dsl/, the independent backends of compile/) kept, none ignored."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    proc = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    n = len(_contracts())
    assert n >= 4 and f"Contracts: {n} kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def test_the_contract_covers_every_module():
    """Every top-level module and subpackage of cellsearch is named in a layer, and nothing is ignored."""
    contracts = _contracts()
    assert not any(c.get("ignore_imports") for c in contracts)
    (contract,) = [c for c in contracts if c["type"] == "layers" and c.get("containers") == ["cellsearch"]]
    named = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    present = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert present <= named, f"not in any layer: {sorted(present - named)}"


def test_figures_are_saved_only_through_fileio_save_figure():
    """One way to write a picture (whole or not at all, in the format its suffix names): no module
    but fileio calls a figure's ``savefig`` itself."""
    callers = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "fileio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "savefig":
                callers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert callers == []
