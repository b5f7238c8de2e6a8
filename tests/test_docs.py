"""The documentation runs and names only what exists.

Blocks in ``docs/*.md`` opt in with an HTML comment on the line before their fence:

* ``<!-- test -->`` before a ```python block: executed, in page order, in one namespace per page, inside a
  fresh working folder (the page's later blocks see the files and names of its earlier ones).
* ``<!-- test: shared-data -->`` before a ```python block: executed on its own, in a working folder where
  ``../shared/data`` is the project's real recordings; skipped when those are absent.
* ``<!-- test -->`` before a ```bash block: every command in it is ``musicfx ...``, run in-process from a
  folder laid out like the checkout; each must exit 0. ``<!-- test: fails -->``: each must exit 1 with one
  ``musicfx: error:`` line, equal to the ```text block that follows when there is one.
* ``<!-- test: file NAME -->`` before a block: its text is saved as ``NAME`` for the commands of that page.
* ``<!-- test: excerpt PATH -->`` before a ```yaml block: every key and value in it must be in ``PATH``.

Without a marker, blocks are still checked: Python must compile, YAML must parse, every ``musicfx fit |
validate | test | predict`` command must pass ``--print_config`` and every other ``musicfx`` command the
argument parser. Everywhere in the pages, ``recipes/*.yaml`` paths, ``musicfx`` sub-commands, ``make``
targets, ``musicfx.*`` names and links between pages must exist; torchrun and SLURM scripts must ask for
as many processes as the trainer's ``devices`` and ``num_nodes``.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import torch
import yaml


REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# Pages other people write; a link to one of them is checked only once it exists.
WRITTEN_ELSEWHERE = {"benchmarks.md"}
# Every page but the benchmark record (its commands are the benchmark scripts' own).
PAGES = tuple(sorted(p.name for p in DOCS.glob("*.md") if p.name not in WRITTEN_ELSEWHERE))
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _registered_commands() -> Tuple[str, ...]:
    from musicfx.cli import _build_parser

    parser = _build_parser()
    choices = next(action.choices for action in parser._subparsers._group_actions)
    return tuple(choices)


COMMANDS = _registered_commands()

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*test(?::\s*(?P<kind>[\w-]+)(?:\s+(?P<arg>\S+))?)?\s*-->\s*$")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: Optional[str]  # None (no marker), "" (plain <!-- test -->) or the kind after "test:"
    arg: Optional[str]

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def _read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def _blocks(page: str) -> List[Block]:
    """Fenced blocks of a page with their markers; fences may be indented (inside list items)."""
    lines = _read(page).splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = len(opening.group("indent"))
        body: List[str] = []
        j = i + 1
        while j < len(lines) and not (_FENCE.match(lines[j]) and lines[j].strip() == "```"):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = _MARKER.match(previous)
        blocks.append(
            Block(page, i + 1, opening.group("lang"), "\n".join(body) + "\n",
                  None if marker is None else (marker.group("kind") or ""), marker and marker.group("arg"))
        )
        i = j + 1
    return blocks


def _all_blocks() -> List[Block]:
    return [block for page in PAGES for block in _blocks(page)]


def _code_text(page: str) -> str:
    """Everything a reader would type: code blocks and inline code spans."""
    text = _read(page)
    spans = _INLINE_CODE.findall(re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join([block.code for block in _blocks(page)] + spans)


@contextlib.contextmanager
def _working_folder(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(previous)


@pytest.fixture(autouse=True)
def _quiet_and_contained(tmp_path, monkeypatch):
    # One thread: these are tiny tensors, and the CI machine may be busy with other work.
    torch.set_num_threads(1)
    monkeypatch.setenv("MUSICFX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield


# ------------------------------------------------------------------------------------------- structure
def test_every_page_exists_and_has_a_title() -> None:
    for page in PAGES:
        assert _read(page).startswith("# "), f"docs/{page} must start with a '# ' title"


def test_markers_are_known_and_sit_on_blocks() -> None:
    known = {"", "shared-data", "fails", "file", "excerpt"}
    for page in PAGES:
        marked = sum(1 for line in _read(page).splitlines() if _MARKER.match(line))
        blocks = [block for block in _blocks(page) if block.marker is not None]
        assert marked == len(blocks), f"docs/{page}: a <!-- test --> marker is not right before a code fence"
        for block in blocks:
            assert block.marker in known, f"{block.where}: unknown marker test: {block.marker}"
            assert (block.arg is not None) == (block.marker in ("file", "excerpt")), f"{block.where}: marker argument"


def test_api_page_examples_are_runnable() -> None:
    runnable = [block for block in _blocks("api.md") if block.lang == "python" and block.marker == ""]
    examples = [block for block in _blocks("api.md") if block.lang == "python"]
    assert len(runnable) >= 10 and runnable == examples


# ------------------------------------------------------------------------------------------ python blocks
# Library bugs the pages run into, reported and awaiting a fix: (block, error message pattern) -> reason.
# A block that fails this way is reported as an expected failure after the page's other blocks have run;
# once the library is fixed the block passes and its entry can go.
KNOWN_BUGS: Dict[Tuple[str, str], str] = {}


def _run_python(blocks: Sequence[Block], namespace: Dict[str, object]) -> None:
    known: List[str] = []
    for block in blocks:
        try:
            exec(compile(block.code, block.where, "exec"), namespace)
        except Exception as error:
            reasons = [reason for (page, pattern), reason in KNOWN_BUGS.items()
                       if page == block.page and re.search(pattern, str(error))]
            if not reasons:
                raise
            known.append(f"{block.where}: {reasons[0]}")
    if known:
        pytest.xfail("; ".join(known))


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.lang == "python" and b.marker == "" for b in _blocks(p))])
def test_python_examples_run(page: str, tmp_path) -> None:
    blocks = [block for block in _blocks(page) if block.lang == "python" and block.marker == ""]
    with _working_folder(tmp_path / "work"):
        _copy_checkout_files(Path.cwd())
        _run_python(blocks, {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"})


def test_shared_data_examples_run(shared_data: Path, tmp_path) -> None:
    blocks = [block for block in _all_blocks() if block.lang == "python" and block.marker == "shared-data"]
    assert blocks, "no shared-data example left to test"
    # The examples name ../shared/data, as seen from the checkout; recreate that view without copying.
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data, target_is_directory=True)
    for block in blocks:
        with _working_folder(tmp_path / "work"):
            _run_python([block], {"__name__": "docs_shared_data"})


def test_every_python_block_compiles() -> None:
    for block in _all_blocks():
        if block.lang == "python":
            compile(block.code, block.where, "exec")


# --------------------------------------------------------------------------------------------- yaml blocks
def _is_subset(part: object, whole: object) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _is_subset(v, whole[k]) for k, v in part.items())
    return part == whole


def test_yaml_blocks_parse_and_excerpts_match_their_recipe() -> None:
    for block in _all_blocks():
        if block.lang != "yaml":
            continue
        content = yaml.safe_load(block.code)
        assert isinstance(content, dict), f"{block.where}: not a YAML mapping"
        if block.marker == "excerpt":
            recipe = yaml.safe_load((REPO / block.arg).read_text())
            assert _is_subset(content, recipe), f"{block.where}: the excerpt no longer matches {block.arg}"


def _recipe(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def _callback(recipe: dict, key: str) -> dict:
    """``init_args`` of the recipe's checkpoint callback (ModelCheckpoint or LastCheckpoint) that has ``key``."""
    return next(c["init_args"] for c in recipe["trainer"]["callbacks"]
                if c["class_path"].endswith(("ModelCheckpoint", "LastCheckpoint")) and key in c["init_args"])


def _parameters(recipe: dict) -> int:
    from musicfx.models import MusicECAN

    network = recipe["model"]["init_args"]["model"]
    assert network["class_path"] == "musicfx.models.MusicECAN"
    return sum(p.numel() for p in MusicECAN(**network.get("init_args", {})).parameters())


def _mentions(page: str, *phrases: str) -> None:
    text = re.sub(r"\s+", " ", _read(page))
    for phrase in phrases:
        assert phrase in text, f"docs/{page} should say {phrase!r}, as the recipe does"


def test_numbers_in_the_prose_are_the_recipes() -> None:
    quick = _recipe("recipes/quickstart.yaml")
    trainer, data = quick["trainer"], quick["data"]["init_args"]
    days, hours, minutes, seconds = (int(part) for part in trainer["max_time"].split(":"))
    assert days == hours == seconds == 0
    rate = f"{quick['model']['init_args']['model']['init_args']['sample_rate'] / 1000:g} kHz"  # the network's
    every = _callback(quick, "every_n_train_steps")["every_n_train_steps"]
    size = f"{_parameters(quick):,} parameters"
    _mentions("getting-started.md", f"{rate} mono on {data['segment']:g} s examples",
              f"after {trainer['max_steps']} steps or {minutes} minutes", f"every {every} steps",
              f"`train/loss` every {trainer['log_every_n_steps']} steps", f"every {trainer['val_check_interval']} steps",
              size)
    _mentions("recipes.md", f"({size}) at {rate} mono", f"{trainer['max_steps']} steps or {minutes} minutes",
              f"`runs/quickstart/checkpoints/last.ckpt`, every {every} steps")

    full = _recipe("recipes/denoise/musicecan.yaml")
    model, data = full["model"]["init_args"], full["data"]["init_args"]
    every = _callback(full, "every_n_train_steps")["every_n_train_steps"]
    optimizer = model["optimizer"]
    low, high = data["snr_db"]
    network = model["model"]["init_args"]
    _mentions("denoise.md", f"{network['sample_rate'] / 1000:g} kHz mono on {data['segment']:g} s examples",
              f"{data['batch_size']} per batch per device", optimizer["class_path"].rsplit(".", 1)[1],
              f"(lr {optimizer['init_args']['lr']:g}, weight decay {optimizer['init_args']['weight_decay']:g})",
              f"over {model['scheduler']['init_args']['T_max']:,} steps",
              f"{data['train_examples']:,} examples per epoch for up to {full['trainer']['max_epochs']} epochs",
              f"SNR {low:g} to {high:g} dB", f"{_parameters(full):,} parameters in mono")
    _mentions("recipes.md", f"every {every} training steps", f"({every} in the full recipe)",
              f"({data['num_workers']} in the recipe)", f"by `{_callback(full, 'monitor')['monitor']}`")


# ---------------------------------------------------------------------------------------- shell commands
def _logical_lines(code: str) -> List[str]:
    """Shell lines with continuations joined and comments dropped (``#SBATCH`` lines included)."""
    joined = re.sub(r"\\\n", " ", code)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            lines.append(line)
    return lines


def _musicfx_args(line: str) -> Optional[List[str]]:
    """The arguments after ``musicfx`` / ``-m musicfx.cli`` in a shell line, or None when it runs neither."""
    if not re.search(r"(^|\s)musicfx\s|-m\s+musicfx\.cli\s", line):
        return None
    tokens = shlex.split(line)
    for i, token in enumerate(tokens):
        if token == "musicfx":
            return tokens[i + 1:]
        if token == "musicfx.cli" and i > 0 and tokens[i - 1] == "-m":
            return tokens[i + 1:]
    return None


def _commands(page: str) -> List[Tuple[Block, List[str], Optional[str]]]:
    """``(block, args, redirect target)`` of every musicfx command in the shell blocks of a page."""
    found = []
    for block in _blocks(page):
        if block.lang not in ("bash", "sh", "shell"):
            continue
        for line in _logical_lines(block.code):
            target = None
            redirect = re.search(r"\s>\s*(\S+)\s*$", line)
            if redirect:
                target, line = redirect.group(1), line[: redirect.start()]
            args = _musicfx_args(line)
            if args is not None:
                found.append((block, args, target))
    return found


def _copy_checkout_files(folder: Path) -> None:
    """Make ``folder`` look like the checkout to a command: recipes (linked) and the demo asset (copied)."""
    if not (folder / "recipes").exists():
        (folder / "recipes").symlink_to(REPO / "recipes", target_is_directory=True)
    asset = folder / "musicfx" / "assets" / "demo_noisy.flac"
    asset.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "musicfx" / "assets" / "demo_noisy.flac", asset)


def _write_files(page: str, folder: Path) -> None:
    for block in _blocks(page):
        if block.marker == "file":
            (folder / block.arg).write_text(block.code)


def _run_cli(args: Sequence[str]) -> Tuple[int, str, str]:
    from musicfx.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def test_every_command_is_a_musicfx_command() -> None:
    for page in PAGES:
        for word in re.findall(r"(?:^|[\s`(])musicfx[ \t]+([a-z][\w-]*)", _code_text(page), flags=re.M):
            assert word in COMMANDS, f"docs/{page}: `musicfx {word}` is not a command ({', '.join(COMMANDS)})"


def test_lightning_commands_pass_print_config(tmp_path) -> None:
    checked = 0
    for page in PAGES:
        commands = [(b, a, t) for b, a, t in _commands(page) if a and a[0] in LIGHTNING_COMMANDS]
        if not commands:
            continue
        with _working_folder(tmp_path / page) as folder:
            _copy_checkout_files(folder)
            _write_files(page, folder)
            for block, args, target in commands:
                args = [a for a in args if a != "--print_config"]
                code, out, err = _run_cli([*args, "--print_config"])
                assert code == 0, f"{block.where}: musicfx {shlex.join(args)}\n{err[-2000:]}"
                if target:
                    (folder / target).write_text(out)
                checked += 1
    assert checked >= 20


def test_task_commands_parse() -> None:
    """Every non-training command quoted in the pages (denoise, separate, evaluate, ...) parses."""
    from musicfx.cli import _build_parser

    parser = _build_parser()
    checked = 0
    for page in PAGES:
        for block, args, _ in _commands(page):
            if args and args[0] in COMMANDS and args[0] not in LIGHTNING_COMMANDS:
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    try:
                        parser.parse_args(args)
                    except SystemExit:
                        pytest.fail(f"{block.where}: musicfx {shlex.join(args)}: {err.getvalue()}")
                checked += 1
    assert checked >= 8


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.lang == "bash" and b.marker in ("", "fails") for b in _blocks(p))])
def test_runnable_shell_examples(page: str, tmp_path) -> None:
    blocks = _blocks(page)
    with _working_folder(tmp_path / "checkout") as folder:
        _copy_checkout_files(folder)
        for index, block in enumerate(blocks):
            if block.lang != "bash" or block.marker not in ("", "fails"):
                continue
            lines = _logical_lines(block.code)
            assert lines, f"{block.where}: empty runnable block"
            for line in lines:
                args = _musicfx_args(line)
                assert args is not None, f"{block.where}: runnable shell blocks hold only musicfx commands: {line}"
                before = sorted(p for p in folder.rglob("*") if p.is_file())
                code, _, err = _run_cli(args)
                if block.marker == "":
                    assert code == 0, f"{block.where}: {line}\n{err[-2000:]}"
                    continue
                errors = [l for l in err.splitlines() if l.strip()]
                assert code == 1 and len(errors) == 1 and errors[0].startswith("musicfx: error:"), f"{block.where}: {err}"
                assert sorted(p for p in folder.rglob("*") if p.is_file()) == before, f"{block.where}: wrote files"
                shown = blocks[index + 1] if index + 1 < len(blocks) else None
                if shown is not None and shown.lang == "text" and shown.code.startswith("musicfx: error:"):
                    assert errors[0] == shown.code.strip(), f"{shown.where}: the page shows another message"


def _launch_counts(code: str) -> Dict[str, int]:
    """Processes a torchrun command or a SLURM script asks for, and what the trainer is told."""
    counts: Dict[str, int] = {}
    for key, pattern in (
        ("nproc", r"--nproc[-_]per[-_]node[ =](\d+)"), ("nnodes", r"--nnodes[ =](\d+)"),
        ("ntasks_per_node", r"#SBATCH\s+--ntasks-per-node=(\d+)"), ("nodes", r"#SBATCH\s+--nodes=(\d+)"),
        ("devices", r"--trainer\.devices[ =](\d+)"), ("num_nodes", r"--trainer\.num_nodes[ =](\d+)"),
    ):
        match = re.search(pattern, code)
        if match:
            counts[key] = int(match.group(1))
    return counts


def test_launchers_match_the_trainer() -> None:
    launchers = 0
    for block in _all_blocks():
        counts = _launch_counts(block.code)
        if "torchrun" in block.code and "nproc" in counts:
            assert counts["nproc"] == counts.get("devices") and counts["nnodes"] == counts.get("num_nodes"), block.where
            launchers += 1
        if "#SBATCH" in block.code:
            assert counts["ntasks_per_node"] == counts.get("devices") and counts["nodes"] == counts.get("num_nodes"), \
                block.where
            assert re.search(r"^srun\s", block.code, flags=re.M), f"{block.where}: launch with srun"
            launchers += 1
    assert launchers >= 2


# ------------------------------------------------------------------------------------- names and links
def test_recipe_paths_exist() -> None:
    for page in PAGES:
        for path in re.findall(r"recipes/[\w./-]+\.yaml", _read(page)):
            assert (REPO / path).is_file(), f"docs/{page}: {path} does not exist"


def test_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    for page in PAGES:
        for target in re.findall(r"(?:^|[\s`])make[ \t]+([\w-]+)", _code_text(page), flags=re.M):
            assert target in targets, f"docs/{page}: `make {target}` is not a Makefile target"


def _resolve(name: str) -> object:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(name)


def test_musicfx_names_exist() -> None:
    checked = 0
    for page in PAGES:
        text = _read(page)
        names = set(re.findall(r"\bmusicfx(?:\.[A-Za-z_]\w*)+", text))
        for module, imported in re.findall(r"from (musicfx[\w.]*) import ([\w, ]+)", text):
            names |= {f"{module}.{item.strip()}" for item in imported.split(",") if item.strip()}
        for name in sorted(names):
            try:
                _resolve(name)
            except (ImportError, AttributeError) as error:
                pytest.fail(f"docs/{page}: {name} does not exist ({error})")
            checked += 1
    assert checked >= 50


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_links_between_pages_resolve() -> None:
    anchors = {
        page.name: {_slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}
        for page in DOCS.glob("*.md")
    }
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", _read(page)):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            file = file or page
            if file in WRITTEN_ELSEWHERE and file not in anchors:
                continue
            if not file.endswith(".md") and (DOCS / file).is_file():
                continue  # a picture beside the pages (docs/img/)
            assert file in anchors, f"docs/{page}: link to {file}, which is not a page"
            assert not anchor or anchor in anchors[file], f"docs/{page}: {file} has no heading for #{anchor}"
