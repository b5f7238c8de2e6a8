"""Helpers the denoise benchmarks share: the machine's description, markdown tables, recipes, timing.

The benchmark scripts import this as ``common`` (Python puts a script's own folder first on ``sys.path``);
tests put ``benchmarks/`` on the path to import the scripts the same way.
"""
from __future__ import annotations

import importlib
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch

from musicfx.errors import DataError

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
QUICKSTART_RECIPE = RECIPES / "quickstart.yaml"
DEFAULT_RECIPE = RECIPES / "denoise" / "musicecan.yaml"


def default_shared_data() -> Path:
    """``$MUSICFX_SHARED_DATA``, else ``../shared/data`` beside the checkout (what the tests use)."""
    return Path(os.environ.get("MUSICFX_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_folder(path: Path, what: str) -> Path:
    """``path`` when it is a folder; a :class:`DataError` that names it and says how to point elsewhere."""
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found (pass --shared PATH or set MUSICFX_SHARED_DATA)")
    return path


# ------------------------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (what ``nproc`` prints), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> Dict[str, Any]:
    """What a benchmark number depends on: CPU, cores, load, torch and the GPU, if any."""
    info: Dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["load_average_1min"] = None
    return info


def machine_line(info: Mapping[str, Any]) -> str:
    """One markdown line naming the machine, printed at the top of every benchmark."""
    gpu = info["cuda"] or "none"
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
        f"load {info['load_average_1min']}; torch {info['torch']}, Python {info['python']}; GPU: {gpu}"
    )


# ------------------------------------------------------------------------------------------------ tables
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the others (numbers) right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(str(h))] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    return "\n".join([line([str(h) for h in headers]), "| " + " | ".join(rule) + " |"] + [line(r) for r in cells])


def fmt(value: Optional[float], digits: int = 2) -> str:
    """A number for a table; ``-`` for a missing one."""
    return "-" if value is None else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------------ recipes
def load_recipe(path: Path) -> Dict[str, Any]:
    """A recipe YAML as a dict."""
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def instantiate(spec: Any, **overrides: Any) -> Any:
    """Build a ``{class_path, init_args}`` spec (nested ones too), as LightningCLI would.

    Args:
        spec: a recipe node; anything that is not a class spec is returned as is.
        overrides: init arguments replacing the recipe's (top level only).
    """
    if isinstance(spec, Mapping) and "class_path" in spec:
        module_name, _, class_name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        kwargs = {key: instantiate(value) for key, value in dict(spec.get("init_args") or {}).items()}
        kwargs.update(overrides)
        return cls(**kwargs)
    if isinstance(spec, list):
        return [instantiate(item) for item in spec]
    return spec


def recipe_model(recipe: Mapping[str, Any], **overrides: Any) -> torch.nn.Module:
    """The network of a denoise recipe (``model.init_args.model``), with fresh random weights."""
    return instantiate(recipe["model"]["init_args"]["model"], **overrides)


def recipe_format(recipe: Mapping[str, Any]) -> Dict[str, Any]:
    """``sample_rate`` and ``channels`` of a recipe's task: stated on the task, or declared by its network."""
    task = recipe["model"].get("init_args") or {}
    network = (task.get("model") or {}).get("init_args") or {}
    return {key: task.get(key, network.get(key)) for key in ("sample_rate", "channels")
            if task.get(key, network.get(key)) is not None}


def recipe_data_args(recipe: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``data.init_args`` of a recipe, with the sample rate and channels the data module would take from
    the task in a run (recipes state them once, on the model)."""
    return {**recipe_format(recipe), **(recipe["data"].get("init_args") or {})}


def save_untrained_checkpoint(task: torch.nn.Module, path: Path) -> Path:
    """Write ``task`` as a Lightning checkpoint that :func:`musicfx.load` reads, without training it.

    Speed and memory do not depend on the weights, so a random-weight model stands in for a trained one.
    """
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", devices=1,
    )
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


# ------------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(run: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``run`` in seconds over ``repeats`` calls, after ``warmup`` untimed calls.

    The best, not the mean: on a shared machine other processes only ever add time.
    """
    for _ in range(warmup):
        run()
    synchronize(device)
    times: List[float] = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


#: Runs the real CLI in a fresh interpreter and prints that process's peak resident set in KiB. VmHWM, not
#: ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the launching process's peak over into the child's
#: ru_maxrss through fork/vfork + exec, so a large parent would inflate every reading; VmHWM belongs to the
#: child's own address space. ru_maxrss is the fallback where /proc is absent.
PEAK_RSS_PROBE = (
    "import resource, sys\n"
    "from musicfx.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "try:\n"
    "    peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "except (OSError, IndexError):\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print('PEAK_RSS_KB', peak)\n"
    "sys.exit(code)\n"
)
