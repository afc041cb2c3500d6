"""The import rule (docs/concepts/architecture.md): fedsim's top-level modules form layers,
and a module imports only from its own layer or below; the registry and the machine probes
are leaves; the config imports no task, strategy, engine or factory; no import circle.

Checked on the source with :mod:`ast` (every ``import``, also those inside functions, except
under ``if TYPE_CHECKING:``), so a breaking import fails here before it becomes a circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fedsim"

# Lowest first. A top-level module or package ("unit") imports only from its own layer or
# a lower one; within a layer the imports must not form a circle.
LAYERS: list[set[str]] = [
    {"fedsim", "registry", "machine", "records", "seeding", "atomic", "provenance"},  # leaves
    {"config", "plugins", "specs"},  # the experiment spec and plugin loading
    {"optim", "losses", "data", "models", "objectives", "strategies", "tasks", "flower"},  # plugins and their parts
    {"factory"},  # builds a run's task and strategy from the spec
    {"engines"},  # how a round is executed (plans, reply codecs, Ray)
    {"client", "server"},  # the ClientApp and the round loop
    {"launcher", "deploy", "export", "bench"},  # compose a run: simulation, deployment, export, grids
    {"cli", "edge_cli", "__main__"},  # the commands
]
LEAVES = {"registry", "machine"}  # import nothing of fedsim's
NOT_FROM_CONFIG = {"tasks", "strategies", "models", "engines", "factory"}  # "spec, not factory"
# (importing module, imported module) pairs allowed against the layers, each with its reason
EXCEPTIONS = {
    ("fedsim.config", "fedsim.optim.schedule"): "FederationConfig.round_lr is the schedule's formula",
    ("fedsim.bench.host", "fedsim.cli"): "the bench host process runs each cell through the CLI",
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def imported(tree: ast.Module, package: str) -> set[str]:
    """The ``package`` modules a module imports, anywhere but under ``if TYPE_CHECKING:``."""
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if node.module == package:  # from fedsim import records
                found |= {f"{package}.{a.name}" for a in node.names}
    return {m for m in found if m == package or m.startswith(package + ".")}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    return {module_name(p, root): imported(ast.parse(p.read_text(encoding="utf-8")), root.name)
            for p in sorted(root.rglob("*.py"))}


def violations(graph: dict[str, set[str]], layers: list[set[str]],
               exceptions: dict[tuple[str, str], str]) -> list[str]:
    """Every broken rule as one line: an upward import, a leaf importing fedsim, the config
    importing a builder, a unit not placed in a layer, an import circle between units."""
    layer_of = {u: i for i, names in enumerate(layers) for u in names}
    found = sorted(f"{u}: a top-level module in no layer" for u in {unit(m) for m in graph} - set(layer_of))
    units: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        for target in sorted(targets):
            a, b = unit(source), unit(target)
            if a == b or (source, target) in exceptions:
                continue
            units[a].add(b)
            if a in LEAVES:
                found.append(f"{source} imports {target}: {a} is a leaf and imports nothing of fedsim's")
            elif a == "config" and b in NOT_FROM_CONFIG:
                found.append(f"{source} imports {target}: the config is a spec and builds nothing")
            elif layer_of.get(b, -1) > layer_of.get(a, len(layers)):
                found.append(f"{source} imports {target}: layer {layer_of[a]} ({a}) imports layer {layer_of[b]}")
    found += [f"import circle: {' -> '.join(c)}" for c in circles(units)]
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_fedsim_keeps_its_import_rule():
    assert violations(import_graph(PACKAGE), LAYERS, EXCEPTIONS) == []


def test_the_exceptions_are_still_needed():
    graph = import_graph(PACKAGE)
    assert [pair for pair in EXCEPTIONS if pair[1] not in graph.get(pair[0], set())] == []


def _tree(tmp_path: Path, modules: dict[str, str]) -> Path:
    root = tmp_path / "fedsim"
    for name, source in modules.items():
        path = root / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    (root / "__init__.py").touch()
    return root


@pytest.mark.parametrize(("modules", "expected"), [
    ({"config": "from fedsim.factory import task_for\n", "factory": ""},
     "fedsim.config imports fedsim.factory: the config is a spec and builds nothing"),
    ({"config": "def f():\n    import fedsim.engines.cohort\n", "engines/__init__": "", "engines/cohort": ""},
     "fedsim.config imports fedsim.engines.cohort: the config is a spec and builds nothing"),
    ({"registry": "from fedsim import records\n", "records": ""},
     "fedsim.registry imports fedsim.records: registry is a leaf and imports nothing of fedsim's"),
    ({"engines/__init__": "from fedsim.server.loop import RoundLoop\n", "server/__init__": "", "server/loop": ""},
     "fedsim.engines imports fedsim.server.loop: layer 4 (engines) imports layer 5"),
    ({"client/__init__": "import fedsim.server\n", "server/__init__": "import fedsim.client\n"},
     "import circle: client -> server"),
    ({"brand_new": ""}, "brand_new: a top-level module in no layer"),
])
def test_a_breaking_import_is_reported(tmp_path, modules, expected):
    assert expected in violations(import_graph(_tree(tmp_path, modules)), LAYERS, {})


def test_an_import_for_type_checking_only_is_not_counted(tmp_path):
    root = _tree(tmp_path, {"config": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from fedsim.factory import task_for\n", "factory": ""})
    assert violations(import_graph(root), LAYERS, {}) == []


# What a synthetic MLP run loads (issue: import only what the task needs): the driver's
# modules, the run built as the driver and as a ClientApp worker build it, and its evaluation.
SYNTHETIC_RUN = """
import sys
import fedsim.cli, fedsim.launcher, fedsim.server.loop, fedsim.client.app
from fedsim.client.app import Resident
from fedsim.config import load_config
from fedsim.engines import make_engine
from fedsim.factory import strategy_for, task_for
from fedsim.records import RunSpec

exp = load_config(None, {"task.name": "synthetic", "model.name": "mlp", "task.params": {"eval_samples": 40}})
task = task_for(exp)
model = task.build_model()
strategy_for(exp), make_engine(exp)
task.evaluate(model)
Resident(RunSpec.from_experiment(exp), device="cpu")
print(" ".join(sorted(m for m in HEAVY if m in sys.modules)))
"""
HEAVY = ("torchvision", "torchaudio", "av", "onnx", "onnxscript")


@pytest.mark.slow  # a fresh interpreter importing torch and flwr: ~5 s of CPU
def test_a_synthetic_run_imports_no_vision_audio_video_or_onnx_library():
    import subprocess
    import sys

    code = f"HEAVY = {HEAVY!r}\n{SYNTHETIC_RUN}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
