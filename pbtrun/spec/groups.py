"""The spec's ``[[experiments]]`` tables: each group's name, command, parameters, seeds and repeats.

Every group is checked and counted before any is expanded. The count comes from the grid's axes,
the list's length, ``seeds`` and ``repeat``, so that a spec over the limit (three groups of a
million) is refused at once, not after the time and memory that expanding it would take.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pbtrun.limits import MAX_EXPERIMENTS
from pbtrun.printable import quantity
from pbtrun.spec import keys
from pbtrun.spec.model import GroupSpec
from pbtrun.spec.naming import MAX_NAME_BYTES
from pbtrun.spec.parameters import grid_combinations, read_parameters

if TYPE_CHECKING:
    from pbtrun.spec.positions import SpecSource


def read_groups(
    src: SpecSource, raw: Mapping, top_argv: tuple[str, ...] | None, suffix: str, named_by_values: bool
) -> tuple[GroupSpec, ...]:
    """The groups, in the order written. ``top_argv``: the top-level command, which a group without
    its own runs; ``suffix``: the spec's ``experiment_suffix``; ``named_by_values``: its
    ``customize_experiment_name``."""
    tables = raw.get("experiments")
    if tables is None:
        raise src.error(
            ("experiments",),
            "is missing: add at least one [[experiments]] table with a name "
            '(and a grid, a list, or neither), for example:\n    [[experiments]]\n    name = "baseline"',
        )
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise src.error(("experiments",), "must be an array of tables: write each one as [[experiments]].")
    if not tables:
        raise src.error(("experiments",), "is empty: add at least one [[experiments]] table.")
    builds: list[Callable[[], GroupSpec]] = []
    seen: dict[str, int] = {}
    total = 0
    for i, table in enumerate(tables):
        name, count, build = _read_group(src, table, i, top_argv, named_by_values)
        if (size := len(f"{name}_{suffix}".encode())) > MAX_NAME_BYTES:
            raise src.error(
                ("experiments", i, "name"),
                f"the group's directory, {name}_{suffix} (<group>_<experiment_suffix>), would have {size:,} bytes; "
                f"a name may have at most {MAX_NAME_BYTES} (a file name may have 255): shorten the group name "
                "or experiment_suffix.",
            )
        if name in seen:
            raise src.error(
                ("experiments", i, "name"),
                f"{name!r} is used by experiment group #{seen[name] + 1} too; each [[experiments]] needs its own name.",
            )
        seen[name] = i
        _check_count(src, ("experiments", i), count, total)
        total += count
        builds.append(build)
    return tuple(build() for build in builds)


def _read_group(
    src: SpecSource, table: Mapping, i: int, top_argv: tuple[str, ...] | None, named_by_values: bool
) -> tuple[str, int, Callable[[], GroupSpec]]:
    """One group, checked: its name, how many experiments it gives, and how to expand them."""
    where = ("experiments", i)
    keys.check_keys(src, table, where, keys.EXPERIMENT_KEYS)
    name = keys.required_name(src, table, (*where, "name"))
    if "command" in table:
        argv = keys.command(src, (*where, "command"), table["command"])
    elif top_argv is not None:
        argv = top_argv
    else:
        raise src.error(
            (*where, "name"),
            f"experiment group {name!r} has no command: set `command` in it or at the top level.",
        )
    axes, combos, size = read_parameters(src, table, where, named_by_values)
    seeds, repeat = _seeds_and_repeat(src, table, where)
    env = keys.env(src, table.get("env", {}), (*where, "env"))
    retries, timeout_min = keys.max_retries(src, table, where), keys.timeout_min(src, table, where)
    seed_base = keys.integer(src, table, where, "seed_base") or 0
    gpus = keys.gpus_per_experiment(src, table, where)

    def build() -> GroupSpec:
        params = grid_combinations(axes) if axes is not None else combos
        return GroupSpec(
            name=name,
            argv=argv,
            combinations=_seeded_and_repeated(params, seeds, seed_base, repeat),
            env=env,
            max_retries=retries,
            timeout_min=timeout_min,
            gpus_per_experiment=gpus,
        )

    return name, size * (seeds or 1) * repeat, build


def _seeds_and_repeat(src: SpecSource, table: Mapping, where: tuple) -> tuple[int | None, int]:
    seeds = _positive(src, table, where, "seeds")
    repeat = _positive(src, table, where, "repeat") or 1
    if keys.integer(src, table, where, "seed_base") is not None and seeds is None:
        raise src.error((*where, "seed_base"), "only works with seeds = N: add it, or remove seed_base.")
    return seeds, repeat


def _positive(src: SpecSource, table: Mapping, where: tuple, key: str) -> int | None:
    value = keys.integer(src, table, where, key)
    if value is not None and value < 1:
        raise src.error((*where, key), f"must be at least 1, not {quantity(value)}.")
    return value


def _check_count(src: SpecSource, where: tuple, count: int, before: int) -> None:
    """The group's ``count`` experiments, and the sweep's so far with them, within the limit."""
    limit = f"more than the {MAX_EXPERIMENTS:,} pbtrun accepts"
    if count > MAX_EXPERIMENTS:
        raise src.error(where, f"this group gives {quantity(count)} experiments, {limit}.")
    if before + count > MAX_EXPERIMENTS:
        raise src.error(
            where,
            f"this group gives {quantity(count)} experiments and the groups before it {quantity(before)}: "
            f"{quantity(before + count)} in all, {limit}. Split the sweep into several specs.",
        )


def _seeded_and_repeated(
    combos: tuple[dict[str, Any], ...], seeds: int | None, seed_base: int, repeat: int
) -> tuple[dict[str, Any], ...]:
    """``seeds = N`` adds a ``seed`` parameter (``seed_base`` .. ``seed_base + N - 1``, slowest
    varying, as seeds are written first in launcher grids); ``repeat = N`` runs the whole group N
    times over (each run an experiment of its own, with its own name and id)."""
    if seeds is not None:
        combos = tuple({"seed": seed_base + k, **c} for k in range(seeds) for c in combos)
    return combos * repeat
