"""The paper recipes are pinned to the tables of docs/recipes.md.

Every section headed ``### `recipes/<path>.yaml` `` is followed by a table with the columns
``| hyperparameter | key | paper | recipe | citation |``; ``key`` is a dotted path into the YAML (list items by
index) and ``recipe`` a YAML literal. Each row's key must exist in the recipe and hold exactly that value, and
every paper recipe must have a section.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "recipes.md"
HEADER = ["hyperparameter", "key", "paper", "recipe", "citation"]
# Paper recipes whose file name does not end in _paper.yaml. Add a recipe here when its table is written.
NAMED_PAPER_RECIPES = (
    "separate/bs_roformer.yaml", "separate/cycle_gan.yaml", "separate/mel_band_roformer.yaml", "separate/open_unmix.yaml",
)

_SECTION = re.compile(r"^###\s+`(recipes/[^`]+\.yaml)`\s*$")
_MISSING = object()


@dataclass(frozen=True)
class Row:
    line: int
    hyperparameter: str
    key: str
    paper: str
    recipe: str


def _cells(line: str) -> List[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _unquote(cell: str) -> str:
    return cell[1:-1] if len(cell) >= 2 and cell.startswith("`") and cell.endswith("`") else cell


def parse_tables(text: str) -> Dict[str, List[Row]]:
    """``{recipe path: rows}`` of every pinned section of a page (a section without a table has no rows)."""
    tables: Dict[str, List[Row]] = {}
    lines = text.splitlines()
    current = None
    index = 0
    while index < len(lines):
        match = _SECTION.match(lines[index])
        if match:
            current = match.group(1)
            tables.setdefault(current, [])
        elif lines[index].startswith("#"):
            current = None
        elif current is not None and lines[index].lstrip().startswith("|") and _cells(lines[index]) == HEADER:
            index += 2  # the header and its | --- | separator
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                cells = _cells(lines[index])
                if len(cells) != len(HEADER):
                    raise ValueError(f"docs/recipes.md:{index + 1}: {len(cells)} cells, the table has {len(HEADER)}")
                tables[current].append(
                    Row(index + 1, cells[0], _unquote(cells[1]), cells[2], _unquote(cells[3]))
                )
                index += 1
            current = None
            continue
        index += 1
    return tables


def follow(config: Any, key: str) -> Any:
    """The value at a dotted ``key`` (list items by index) of a parsed YAML, or ``_MISSING``."""
    node = config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def mismatches(recipe: Path, rows: List[Row]) -> List[str]:
    """One message per row whose key is missing from ``recipe`` or holds another value."""
    config = yaml.safe_load(recipe.read_text())
    problems = []
    for row in rows:
        expected = yaml.safe_load(row.recipe)
        actual = follow(config, row.key)
        if actual is _MISSING:
            problems.append(f"docs/recipes.md:{row.line}: {row.key} is not in {recipe.name}")
        elif actual != expected or type(actual) is not type(expected):
            problems.append(
                f"docs/recipes.md:{row.line}: {row.hyperparameter}: {row.key} is {actual!r} in {recipe.name}, "
                f"the table says {expected!r}"
            )
    return problems


TABLES = parse_tables(PAGE.read_text(encoding="utf-8"))
PAPER_RECIPES = sorted(
    {p.relative_to(REPO).as_posix() for p in (REPO / "recipes").rglob("*_paper.yaml")}
    | {f"recipes/{name}" for name in NAMED_PAPER_RECIPES}
)


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_every_paper_recipe_has_a_table(recipe: str) -> None:
    assert (REPO / recipe).is_file(), f"{recipe} is named a paper recipe but does not exist"
    assert TABLES.get(recipe), f"{recipe} has no '### `{recipe}`' section with a table in docs/recipes.md"


@pytest.mark.parametrize("recipe", sorted(TABLES))
def test_recipe_matches_its_table(recipe: str) -> None:
    path = REPO / recipe
    assert path.is_file(), f"docs/recipes.md has a table for {recipe}, which does not exist"
    problems = mismatches(path, TABLES[recipe])
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_changed_value(tmp_path: Path) -> None:
    page = """### `recipes/x.yaml`

| hyperparameter | key | paper | recipe | citation |
| --- | --- | --- | --- | --- |
| learning rate | `model.optimizer.lr` | 0.01 | `1.0e-2` | somewhere |
| first callback | `trainer.callbacks.0.name` | a | `a` | somewhere |
| betas | `model.optimizer.betas` | 0.5, 0.9 | `[0.5, 0.9]` | somewhere |
"""
    rows = parse_tables(page)["recipes/x.yaml"]
    assert [row.key for row in rows] == ["model.optimizer.lr", "trainer.callbacks.0.name", "model.optimizer.betas"]
    recipe = tmp_path / "x.yaml"
    recipe.write_text("model: {optimizer: {lr: 0.01, betas: [0.5, 0.9]}}\ntrainer: {callbacks: [{name: a}]}\n")
    assert mismatches(recipe, rows) == []
    recipe.write_text("model: {optimizer: {lr: 0.001, betas: [0.5, 0.99]}}\ntrainer: {callbacks: []}\n")
    problems = mismatches(recipe, rows)
    assert len(problems) == 3 and "lr is 0.001" in problems[0] and "not in" in problems[1]
    # An integer where the table says a float is a difference too (1 vs 1.0 would silently change a type).
    recipe.write_text("model: {optimizer: {lr: 1, betas: [0.5, 0.9]}}\ntrainer: {callbacks: [{name: a}]}\n")
    assert len(mismatches(recipe, rows)) == 1
