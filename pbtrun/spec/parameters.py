"""A group's parameters: its ``grid`` (axes, tied keys) or its ``list`` of combinations, and the
values a parameter may hold.

A grid is checked and counted here but expanded only by :func:`grid_combinations`, once every
group of the spec has been counted: a spec over the limit is refused before it costs the time and
memory of expanding it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from itertools import product
from typing import TYPE_CHECKING, Any

from pbtrun.limits import MAX_EXPERIMENTS
from pbtrun.printable import quantity
from pbtrun.spec import keys, placeholders
from pbtrun.spec.naming import render_value

if TYPE_CHECKING:
    from pbtrun.spec.positions import SpecSource

# A grid, not yet expanded: per key, its parameter names (several: tied) and their rows of values.
GridAxes = list[tuple[tuple[str, ...], list[tuple]]]


def read_parameters(
    src: SpecSource, table: Mapping, where: tuple, named_by_values: bool
) -> tuple[GridAxes | None, tuple[dict[str, Any], ...], int]:
    """A group's grid axes (expanded later) or its list of combinations, and how many they give.

    ``named_by_values``: the spec's ``customize_experiment_name``, under which parameter values
    are part of experiment names and so may hold no placeholder.
    """
    if "grid" in table and "list" in table:
        raise src.error((*where, "list"), "a group takes a grid or a list, not both: split it into two groups.")
    if "grid" in table:
        axes = _grid_axes(src, table["grid"], (*where, "grid"), named_by_values)
        names: set[str] = {n for axis, _ in axes for n in axis}
        size = _grid_size(src, axes, (*where, "grid"))
        combos: tuple[dict[str, Any], ...] = ()
    else:
        axes = None
        combos = _list_combinations(src, table["list"], (*where, "list"), named_by_values) if "list" in table else ({},)
        names = {n for c in combos for n in c}
        size = len(combos)
    if "seed" in names and table.get("seeds") is not None:
        raise src.error((*where, "seeds"), "the group already has a 'seed' parameter; use one or the other.")
    return axes, combos, size


def grid_combinations(axes: GridAxes) -> tuple[dict[str, Any], ...]:
    """Every combination of the grid, the first axis varying slowest, tied names set together."""
    combinations = []
    for choice in product(*(rows for _, rows in axes)):
        params: dict[str, Any] = {}
        for (names, _), values in zip(axes, choice, strict=True):
            params.update(zip(names, values, strict=True))
        combinations.append(params)
    return tuple(combinations)


def _grid_axes(src: SpecSource, grid: Any, where: tuple, named_by_values: bool) -> GridAxes:
    """Each grid key becomes an axis: a tuple of names and a list of value tuples (tied keys)."""
    if not isinstance(grid, dict):
        raise src.error(where, f"must be a table of parameter = [values], not {keys.type_name(grid)}.")
    axes = []
    seen: set[str] = set()
    for key, values in grid.items():
        here = (*where, key)
        names = tuple(_param_name(src, here, n.strip()) for n in key.split(","))
        for n in names:
            if n in seen:
                raise src.error(here, f"parameter {n!r} appears twice in this grid.")
            seen.add(n)
        if isinstance(values, dict) and values:
            raise src.error(here, _dotted_hint(key, values, "a list of values"))
        if not isinstance(values, list):
            example = "1, 2" if isinstance(values, dict) else keys.toml_literal(values)
            raise src.error(here, f"must be a list of values, like {key} = [{example}], not {keys.type_name(values)}.")
        if not values:
            raise src.error(here, "is an empty list, which gives no experiments: give at least one value.")
        rows = [_tied_row(src, (*here, k), names, v) for k, v in enumerate(values)]
        for k, v in enumerate(values):
            _check_value(src, (*here, k), v, named_by_values)
        _check_distinct(src, here, rows)
        axes.append((names, rows))
    return axes


def _grid_size(src: SpecSource, axes: GridAxes, where: tuple) -> int:
    """How many experiments the grid gives: the product of its axes, computed, not expanded."""
    total = math.prod(len(rows) for _, rows in axes)
    if total > MAX_EXPERIMENTS:
        raise src.error(
            where, f"this grid gives {quantity(total)} experiments, more than the {MAX_EXPERIMENTS:,} pbtrun accepts."
        )
    return total


def _tied_row(src: SpecSource, where: tuple, names: tuple[str, ...], value: Any) -> tuple:
    if len(names) == 1:
        return (value,)
    if not isinstance(value, list) or len(value) != len(names):
        raise src.error(
            where,
            f"tied parameters {', '.join(names)} need lists of {len(names)} values each, like "
            f"[{', '.join('v' + str(k + 1) for k in range(len(names)))}]; got {render_value(value)}.",
        )
    return tuple(value)


def _check_distinct(src: SpecSource, where: tuple, rows: list[tuple]) -> None:
    """A value written twice in one grid list would run the same experiment twice, under two
    names: a slip, since ``repeat`` and ``seeds`` are how a spec asks for that. Values are told
    apart by type and value, as TOML has them and as they render (1, 1.0 and true differ)."""
    seen: dict[str, int] = {}
    for k, row in enumerate(rows):
        first = seen.setdefault(repr(row), k)  # repr: 1, 1.0, True and "1" all differ, as in argv
        if first != k:
            value = keys.toml_literal(list(row) if len(row) > 1 else row[0])
            raise src.error(
                (*where, k),
                f"{value} is already element {first + 1} of this list: the same experiment would run twice, "
                "under two names. Remove one (1, 1.0 and true are different values). To run each experiment "
                "several times, use repeat = N, or seeds = N for a seed parameter.",
            )


def _list_combinations(src: SpecSource, value: Any, where: tuple, named_by_values: bool) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise src.error(where, "must be a list of tables, like [{ lr = 1e-3, batch = 64 }, { lr = 3e-4 }].")
    if not value:
        raise src.error(where, "is empty, which gives no experiments: give at least one combination.")
    if len(value) > MAX_EXPERIMENTS:
        raise src.error(where, f"has more than {MAX_EXPERIMENTS:,} combinations.")
    for k, combo in enumerate(value):
        for name, item in combo.items():
            _param_name(src, (*where, k, name), name)
            _check_value(src, (*where, k, name), item, named_by_values, dotted=True)
        if not combo:
            raise src.error((*where, k), "is an empty combination; remove it or give its parameters.")
    return tuple(dict(c) for c in value)


def _param_name(src: SpecSource, where: tuple, name: str) -> str:
    if not name or any(c.isspace() for c in name) or "=" in name or "\0" in name:
        raise src.error(where, f"{name!r} is not a valid parameter name (no spaces, no '=', no NUL).")
    return name


def _check_value(src: SpecSource, where: tuple, value: Any, named_by_values: bool, dotted: bool = False) -> None:
    """Parameter values must survive JSON (the state file) and render with ``str()``. ``dotted``:
    ``value`` is what a key of a ``list`` combination holds, so a table there is a dotted key."""
    if isinstance(value, dict):
        if dotted and value:
            raise src.error(where, _dotted_hint(str(where[-1]), value, "a value"))
        raise src.error(
            where,
            f"holds a table ({keys.toml_literal(value)}), which is not a parameter value: values are strings, "
            "numbers, booleans, or lists of them. Quote it as a string if your program parses it, "
            "or give each of its keys as a parameter of its own.",
        )
    if isinstance(value, dt.date | dt.time | dt.datetime):
        raise src.error(where, "dates and times are not supported as parameter values; quote them as a string.")
    if isinstance(value, float) and not math.isfinite(value):
        raise src.error(where, f"{value} is not supported as a parameter value; quote it as a string.")
    if isinstance(value, str):
        if "\0" in value:
            raise src.error(where, keys.NUL)
        keys.check_placeholders(src, where, value)
        if named_by_values and placeholders.has_any(value, attempt=True):
            raise src.error(
                where,
                f"{value!r} holds a placeholder, but parameter values are part of the experiment's name "
                "(customize_experiment_name = true), and a name must not change with what fills it in. "
                'Put the placeholder in command (command = "python train.py --out={experiment_dir}/ckpt") '
                "or in env, or set customize_experiment_name = false (names are then NN_<group>).",
            )
    if isinstance(value, list):
        for item in value:
            _check_value(src, where, item, named_by_values)


def _dotted_hint(key: str, table: dict, what: str) -> str:
    """For ``a.b = ...`` written inside ``{ }``, which TOML reads as a table ``a`` holding ``b``:
    the quoted key that was meant, with the value found at the end of the path."""
    path, leaf = [key], table
    while isinstance(leaf, dict) and leaf:
        sub = next(iter(leaf))
        path.append(sub)
        leaf = leaf[sub]
    return (
        f"is a table, not {what}: a dotted key inside {{ }} makes nested tables in TOML. "
        f"Quote the parameter name: {json.dumps('.'.join(path))} = {keys.toml_literal(leaf)}."
    )
