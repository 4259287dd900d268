"""The house: layers that only point down, no import cycle, one package per probe.

Walks every module of the hpcbench package with ``ast`` and collects its imports of hpcbench
modules, imports inside functions included (an import moved into a function to dodge a cycle
is still an edge here). The layers are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hpcbench"

#: lowest first; a module may import its own layer or a lower one
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "ground",
        (
            "hpcbench",
            "hpcbench.errors",
            "hpcbench.exitcodes",
            "hpcbench.stats",
            "hpcbench.timeparse",
            "hpcbench.atomic",
            "hpcbench.tomlfile",
            "hpcbench.typed",
            "hpcbench.model",
        ),
    ),
    (
        "node",
        (
            "hpcbench.nvml",
            "hpcbench.pci",
            "hpcbench.nics",
            "hpcbench.launch",
            "hpcbench.lock",
            "hpcbench.node",
            "hpcbench.inventory",
        ),
    ),
    ("hw", ("hpcbench.hw",)),
    ("probes", ("hpcbench.probes",)),
    (
        "engine",
        (
            "hpcbench.config",
            "hpcbench.suite",
            "hpcbench.plan",
            "hpcbench.baselines",
            "hpcbench.checks",
            "hpcbench.hints",
            "hpcbench.busy",
            "hpcbench.record",
            "hpcbench.results",
            "hpcbench.validate",
            "hpcbench.runner",
            "hpcbench.worker",
            "hpcbench.batch",
            "hpcbench.suite_include",
        ),
    ),
    ("outputs", ("hpcbench.report", "hpcbench.analysis")),
    ("front", ("hpcbench.ops", "hpcbench.session", "hpcbench.slurm", "hpcbench.cli", "hpcbench.__main__")),
]
#: the probe contract, which every probe package may use
CONTRACT = ("hpcbench.probes", "hpcbench.probes.base", "hpcbench.probes.registry")


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str], root: Path = PACKAGE.parent) -> dict[str, int]:
    """hpcbench modules ``path`` imports (at any depth of its code) -> the first line doing so."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # an attribute of a module: the module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hpcbench"):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.startswith("hpcbench"):
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    add(sub if sub in known else module, node.lineno)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) for name, path in mods.items()}


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer) of the longest matching prefix
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # the package itself ("hpcbench") is its __init__ alone; other entries cover their submodules
            matches = module == prefix or (prefix != "hpcbench" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best[1]


def probe_package(module: str) -> str | None:
    """``hpcbench.probes.gemm`` for any module of the gemm probe; None for the contract and others."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["hpcbench", "probes"] and module not in CONTRACT:
        return ".".join(parts[:3])
    return None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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


def test_every_module_is_in_a_layer(graph: dict[str, dict[str, int]]) -> None:
    for module in graph:
        layer_of(module)


def test_no_import_cycle_even_through_imports_inside_functions(graph: dict[str, dict[str, int]]) -> None:
    assert cycles(graph) == []


def test_imports_point_down(graph: dict[str, dict[str, int]]) -> None:
    upward = [
        f"{m}:{line} imports {t} ({LAYERS[layer_of(t)][0]} is above {LAYERS[layer_of(m)][0]})"
        for m, targets in graph.items()
        for t, line in targets.items()
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_a_probe_never_imports_another_probe(graph: dict[str, dict[str, int]]) -> None:
    crossing = [
        f"{m}:{line} imports {t}"
        for m, targets in graph.items()
        for t, line in targets.items()
        if probe_package(m) and probe_package(t) and probe_package(m) != probe_package(t)
    ]
    assert crossing == []


def test_the_core_never_imports_a_probe(graph: dict[str, dict[str, int]]) -> None:
    below_probes = LAYERS.index(next(x for x in LAYERS if x[0] == "probes"))
    leaks = [
        f"{m}:{line} imports {t}"
        for m, targets in graph.items()
        for t, line in targets.items()
        if layer_of(m) < below_probes and t.startswith("hpcbench.probes")
    ]
    assert leaks == []


def test_each_probe_lives_in_a_package_of_its_own() -> None:
    loose = [
        p.name for p in (PACKAGE / "probes").glob("*.py") if p.stem not in ("__init__", "base", "registry")
    ]
    assert loose == [], "a probe's modules belong in hpcbench/probes/<name>/"
    for folder in (p for p in (PACKAGE / "probes").iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (folder / "__init__.py").is_file() and (folder / "probe.py").is_file(), folder


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The walk counts an import inside a function: a cycle hidden that way is still a cycle."""
    pkg = tmp_path / "hpcbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from hpcbench import b\n")
    (pkg / "b.py").write_text("def f():\n    from hpcbench.a import thing\n    return thing\n")
    known = {"hpcbench", "hpcbench.a", "hpcbench.b"}
    rel = {"a": imports(pkg / "a.py", known, tmp_path), "b": imports(pkg / "b.py", known, tmp_path)}
    assert rel == {"a": {"hpcbench.b": 1}, "b": {"hpcbench.a": 2}}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"x": {"y": 1}, "y": {"z": 1}, "z": {"x": 1}, "w": {"x": 1}}) == [["x", "y", "z"]]
