"""Recovering the grid from a group's parameter dicts, which the launcher has already expanded.

``Experiment.params`` is the expanded list, so the grid is found from it: the finest split of the
(consistently ordered) keys into consecutive groups whose value tuples multiply out to exactly
that list, in that order. One-key groups become ``key = [...]``, larger ones tied keys
``"a,b" = [[...], ...]``; a list that is no such product becomes ``list = [...]``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from pbtrun.compat.description import ImportedGroup, toml_value
from pbtrun.errors import SpecError


def combinations_table(group: ImportedGroup, label: str) -> dict[str, Any]:
    """``grid``, ``list``, ``repeat`` or nothing: whatever gives exactly the group's parameter dicts."""
    rows = [{key: toml_value(value) for key, value in params.items()} for params in group.params]
    if not rows:
        return {}
    if not any(rows):  # Experiment(name, cmd, [{}, {}]): the same command N times
        return {"repeat": len(rows)} if len(rows) > 1 else {}
    if not all(rows):
        raise SpecError(
            f"{label}: experiment group {group.name!r} mixes combinations with parameters and empty ones; "
            "pbtrun cannot express an empty combination in a list. Split the group in two."
        )
    keys = list(rows[0])
    if all(list(row) == keys for row in rows) and not any("," in key for key in keys):
        table = [tuple(row.values()) for row in rows]
        column_groups = _finest_partition(table)
        if column_groups is not None and (len(column_groups) > 1 or len(keys) == 1):
            return {"grid": _grid(keys, table, column_groups)}
    return {"list": rows}


def _comparison_key(value: Any) -> str:
    """A comparison key that tells ``True``, ``1``, ``1.0`` and ``"1"`` apart (they render differently)."""
    return repr(value)


def _axes(table: list[tuple], column_groups: list[tuple[int, int]]) -> list[list[tuple]]:
    """Per group of consecutive columns, its distinct value tuples in order of first appearance."""
    axes = []
    for start, end in column_groups:
        seen: dict[tuple, tuple] = {}
        for row in table:
            values = row[start:end]
            seen.setdefault(tuple(_comparison_key(v) for v in values), values)
        axes.append(list(seen.values()))
    return axes


def _is_product(table: list[tuple], column_groups: list[tuple[int, int]]) -> bool:
    """Whether the rows are exactly the product of the groups' axes, first group slowest."""
    axes = _axes(table, column_groups)
    if math.prod(len(axis) for axis in axes) != len(table):
        return False
    for row, combination in zip(table, itertools.product(*axes), strict=True):
        flat = [v for values in combination for v in values]
        if [_comparison_key(v) for v in row] != [_comparison_key(v) for v in flat]:
            return False
    return True


def _finest_partition(table: list[tuple]) -> list[tuple[int, int]] | None:
    """The finest split of the columns into consecutive groups whose product gives the rows, if any.

    Greedy from the left: the shortest next group that leaves a product works, because product
    splits of one list refine each other (A x BC = AB x C implies A x B x C).
    """
    width = len(table[0])
    column_groups: list[tuple[int, int]] = []
    start = 0
    while start < width:
        end = next(
            (e for e in range(start + 1, width) if _is_product(table, [*column_groups, (start, e), (e, width)])), width
        )
        column_groups.append((start, end))
        start = end
    return column_groups if _is_product(table, column_groups) else None


def _grid(keys: list[str], table: list[tuple], column_groups: list[tuple[int, int]]) -> dict[str, Any]:
    grid: dict[str, Any] = {}
    for (start, end), axis in zip(column_groups, _axes(table, column_groups), strict=True):
        if end - start == 1:
            grid[keys[start]] = [values[0] for values in axis]
        else:
            grid[",".join(keys[start:end])] = [list(values) for values in axis]
    return grid
