"""Layers only point down: every import in the package, module-level and inside functions, is checked.

The table (the layers of DESIGN.md): ``rng`` and ``errors`` at the bottom; ``audio`` above them;
``data`` above ``audio``; ``synth`` and ``fxnorm`` above ``data``; the plain-PyTorch packages (``models``,
``losses``, ``metrics``, ``baselines``) above those; then the Lightning tasks, the inference engine and
evaluation; then ``api``; ``commands`` and ``cli`` on top. A package may import its own modules and any
package of a lower layer; arrows within a layer are listed explicitly.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "musicfx"

#: Layer of each top-level part of the package (higher is above); imports may only point to the same part or
#: a lower layer. A new top-level module or package needs its line here.
LAYERS: Dict[str, int] = {
    "rng": 0,
    "errors": 0,
    "audio": 10,
    "data": 20,
    "synth": 30,
    "fxnorm": 30,
    "models": 40,  # plain PyTorch from here down
    "losses": 40,
    "metrics": 40,
    "baselines": 40,
    "schedulers": 40,
    "checkpoint": 45,  # loading checkpoints safely, for the tasks and everything above
    "tasks": 50,
    "inference": 50,
    "evaluate": 50,
    "callbacks": 50,
    "loggers": 50,
    "recipe": 50,
    "automix": 55,  # library orchestration (mixing, debleeding files) on the inference engine
    "debleed": 55,
    "api": 60,
    "restore": 65,  # the restoration chain: every stage's library, and checkpoints through the api's loader
    "commands": 70,
    "cli": 70,
}

#: Imports allowed between different parts of one layer.
SIDEWAYS: FrozenSet[tuple] = frozenset({
    ("losses", "metrics"),  # one reduction helper, and losses that are metrics (SI-SDR)
    ("tasks", "inference"),  # the tasks' predict/denoise helpers run the inference engine
    ("evaluate", "inference"),
    ("commands", "cli"),
    ("cli", "commands"),
})

#: Third-party packages each layer must not import (models, losses, metrics, baselines stay plain PyTorch).
FORBIDDEN_EXTERNAL: Dict[str, FrozenSet[str]] = {
    part: frozenset({"lightning", "pytorch_lightning", "wandb"})
    for part, layer in LAYERS.items() if layer <= LAYERS["models"]
}

#: What ``musicfx.rng``, the bottom, may import at all: the standard library, torch and numpy.
RNG_EXTERNAL = frozenset({"torch", "numpy"})

#: Parts whose function-level imports of musicfx modules are each explained by a ``#`` comment on the line
#: before (only to keep ``import musicfx`` light). Extend this set as the other parts are cleaned up.
COMMENTED_LAZY_IMPORTS = frozenset({"rng", "errors", "audio", "data", "synth", "fxnorm", "models", "losses",
                                    "metrics", "baselines"})


class Import(NamedTuple):
    module: str  # the importing module, e.g. "musicfx.synth.bleed"
    target: str  # the imported module, e.g. "musicfx.audio.spectral"
    line: int
    function_level: bool
    explained: bool  # a comment on the line before or at the end of the line


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path) -> Iterator[Import]:
    """Every import statement of one file, relative ones resolved, with whether it sits in a function."""
    module = _module_name(path, root)
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    in_function: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                targets = [".".join(base + ([node.module] if node.module else []))]
            else:
                targets = [node.module or ""]
        else:
            continue
        before = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        explained = before.startswith("#") or "#" in lines[node.lineno - 1]
        for target in targets:
            yield Import(module, target, node.lineno, id(node) in in_function, explained)


def _part(module: str) -> Optional[str]:
    """``musicfx.synth.noise.dsp`` -> ``synth``; ``None`` for the package root and non-musicfx modules."""
    parts = module.split(".")
    return parts[1] if parts[0] == "musicfx" and len(parts) > 1 else None


def layer_violations(root: Path) -> List[str]:
    """Every import under ``root`` (a ``musicfx`` folder) that breaks the rules above, as readable lines."""
    problems: List[str] = []
    for path in sorted(root.rglob("*.py")):
        for imp in _imports(path, root):
            where = f"{path.relative_to(root.parent)}:{imp.line}: {imp.module} imports {imp.target}"
            source, target = _part(imp.module), _part(imp.target)
            if source is None:
                continue
            if source not in LAYERS:
                problems.append(f"{where}: {source!r} has no layer in tests/test_layers.py")
                continue
            external = imp.target.split(".")[0]
            if external != "musicfx":
                if external in FORBIDDEN_EXTERNAL.get(source, ()):
                    problems.append(f"{where}: {source} must not import {external}")
                if source == "rng" and external not in RNG_EXTERNAL and external not in sys.stdlib_module_names:
                    problems.append(f"{where}: musicfx.rng imports only the standard library, torch and numpy")
                continue
            if target is None:  # the package root, which loads the tasks lazily
                if LAYERS[source] < LAYERS["api"]:
                    problems.append(f"{where}: import the module that defines the name, not the package root")
                continue
            if target == source:
                pass
            elif target not in LAYERS:
                problems.append(f"{where}: {target!r} has no layer in tests/test_layers.py")
            elif LAYERS[target] > LAYERS[source] or (
                LAYERS[target] == LAYERS[source] and (source, target) not in SIDEWAYS
            ):
                problems.append(f"{where}: {source} (layer {LAYERS[source]}) must not import {target} "
                                f"(layer {LAYERS[target]})")
            if imp.function_level and source in COMMENTED_LAZY_IMPORTS and not imp.explained:
                problems.append(f"{where}: a function-level import needs a one-line '# why' comment above it "
                                "(only to keep `import musicfx` light), or belongs at module level")
    return problems


def import_cycles(root: Path) -> List[List[str]]:
    """Cycles among the modules under ``root``, counting function-level imports too (they only hide one)."""
    files = {_module_name(path, root): path for path in root.rglob("*.py")}
    graph: Dict[str, Set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for imp in _imports(path, root):
            target = imp.target
            # "from musicfx.audio import io" names a module; "from musicfx.audio.io import x" names a value.
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    cycles: List[List[str]] = []
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def test_every_import_points_down():
    problems = layer_violations(PACKAGE)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_import_cycles():
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles (function-level imports count):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_part_has_a_layer():
    parts = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


def _tree(tmp_path: Path, files: Dict[str, str]) -> Path:
    root = tmp_path / "musicfx"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("audio/io.py", "from musicfx.synth.rooms import x\n", "audio (layer 10) must not import synth (layer 30)"),
        ("data/x.py", "def f():\n    from musicfx.synth import y\n", "data (layer 20) must not import synth"),
        ("synth/x.py", "from ..tasks.base import Task\n", "synth (layer 30) must not import tasks"),
        ("models/x.py", "import lightning.pytorch as pl\n", "models must not import lightning"),
        ("data/x.py", "from musicfx.commands.mix import run\n", "must not import commands"),
        ("rng.py", "import scipy\n", "musicfx.rng imports only"),
        ("models/x.py", "def f():\n    from musicfx.audio.io import read_audio\n", "needs a one-line '# why'"),
    ],
)
def test_the_checker_catches_upward_arrows(tmp_path, name, text, expected):
    root = _tree(tmp_path, {name: text})
    problems = layer_violations(root)
    assert any(expected in problem for problem in problems), problems


def test_the_checker_passes_downward_and_explained_imports(tmp_path):
    root = _tree(tmp_path, {
        "synth/x.py": "from musicfx.audio.io import read_audio\nfrom musicfx.rng import mix64\nfrom . import y\n",
        "models/x.py": "def f():\n    # why: keeps import musicfx light\n    from musicfx.audio.io import read_audio\n",
        "tasks/x.py": "import lightning.pytorch as pl\nfrom musicfx.inference import apply_model\n",
    })
    assert layer_violations(root) == []


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    root = _tree(tmp_path, {
        "data/a.py": "from musicfx.data.b import x\n",
        "data/b.py": "def f():\n    from musicfx.data.a import y\n",
        "data/c.py": "from musicfx.data.a import z\n",
    })
    assert import_cycles(root) == [["musicfx.data.a", "musicfx.data.b"]]
