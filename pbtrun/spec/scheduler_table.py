"""The spec's ``[scheduler]`` table, and the value rules it shares with the flags that override it.

``pbtrun up --max-parallel 0`` and ``max_parallel = 0`` are the same mistake: :func:`settings_problems`
says what is wrong once, and each caller says where the value came from (a line of the spec here,
a flag in :mod:`pbtrun.run.settings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pbtrun.limits import MAX_GPUS, MAX_PAUSE_S
from pbtrun.printable import quantity
from pbtrun.spec import keys
from pbtrun.spec.model import SchedulerSettings

PLACEMENTS = ("count", "memory")
MAX_MEMORY_NUMBER = 1e6  # GB or seconds: beyond any GPU's memory and any settling time

if TYPE_CHECKING:
    from pbtrun.spec.positions import SpecSource


def read_scheduler(src: SpecSource, table: Any) -> SchedulerSettings:
    """``[scheduler]``, checked; a key it does not give is None, for the flags and defaults to fill."""
    where = ("scheduler",)
    if not isinstance(table, dict):
        raise src.error(where, f"must be a table ([scheduler]), not {keys.type_name(table)}.")
    keys.check_keys(src, table, where, keys.SCHEDULER_KEYS)
    pause = table.get("pause_between")
    if pause is not None and (isinstance(pause, bool) or not isinstance(pause, int | float)):
        raise src.error((*where, "pause_between"), f"must be a number of seconds, not {keys.type_name(pause)}.")
    gpus = table.get("gpus")
    if gpus is not None and "num_gpus" in table:
        raise src.error(
            (*where, "gpus"),
            "give num_gpus or gpus, not both: num_gpus = N uses the first N GPUs this process was given, "
            "gpus = [0, 2, 3] exactly those.",
        )
    if gpus is not None:
        ok = isinstance(gpus, list) and all(isinstance(g, int) and not isinstance(g, bool) for g in gpus)
        if not ok or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
            raise src.error((*where, "gpus"), "must be a list of distinct GPU ids, like [0, 2, 3].")
        gpus = tuple(gpus)
    settings = SchedulerSettings(
        num_gpus=keys.integer(src, table, where, "num_gpus"),
        gpus=gpus,
        max_parallel=keys.integer(src, table, where, "max_parallel"),
        experiments_per_gpu=keys.integer(src, table, where, "experiments_per_gpu"),
        pause_between_s=None if pause is None else float(pause),
        max_failures=keys.integer(src, table, where, "max_failures"),
        **_gpu_placement(src, table, where),
    )
    for key, problem in settings_problems(settings):
        raise src.error((*where, key), problem)
    return settings


def _gpu_placement(src: SpecSource, table: Any, where: tuple) -> dict[str, Any]:
    """The keys of GPU placement (issue 20), each checked at its line."""
    placement = table.get("placement")
    if placement is not None and placement not in PLACEMENTS:
        raise src.error(
            (*where, "placement"),
            'must be "count" (experiments per GPU) or "memory" (also free GPU memory), '
            f"not {keys.toml_literal(placement)}.",
        )
    numbers = {}
    for key, low in (("min_free_memory_gb", 0.0), ("memory_settle_s", 0.0)):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise src.error((*where, key), f"must be a number, not {keys.type_name(value)}.")
        if value is not None and not low <= value <= MAX_MEMORY_NUMBER:  # also false for nan
            raise src.error((*where, key), f"must be {low:g} to {MAX_MEMORY_NUMBER:,.0f}, not {value:g}.")
        numbers[key] = None if value is None else float(value)
    if numbers["min_free_memory_gb"] is not None and placement != "memory":
        raise src.error(
            (*where, "min_free_memory_gb"),
            'only works with placement = "memory" (pbtrun then reads free memory through NVML): add it, '
            "or remove min_free_memory_gb.",
        )
    exclude = table.get("exclude_busy_gpus")
    if exclude is not None and not isinstance(exclude, bool):
        raise src.error((*where, "exclude_busy_gpus"), f"must be true or false, not {keys.type_name(exclude)}.")
    return {
        "gpus_per_experiment": keys.gpus_per_experiment(src, table, where),
        "placement": placement,
        "exclude_busy_gpus": exclude,
        **numbers,
    }


def settings_problems(settings: SchedulerSettings) -> list[tuple[str, str]]:
    """Value problems shared by ``[scheduler]`` and the command-line flags that override it,
    as (key, what is wrong) so each caller can say where the value came from."""
    problems = []
    if settings.num_gpus is not None and not 0 <= settings.num_gpus <= MAX_GPUS:
        problem = f"must be 0 to {MAX_GPUS} (more than any machine has), not {quantity(settings.num_gpus)}."
        problems.append(("num_gpus", problem))
    if settings.max_parallel is not None and settings.max_parallel < 1:
        problems.append(("max_parallel", f"must be at least 1, not {quantity(settings.max_parallel)}."))
    per_gpu = settings.experiments_per_gpu
    if per_gpu is not None and (per_gpu == 0 or per_gpu < -1):
        problem = f"must be -1 (do not pin GPUs) or at least 1, not {quantity(per_gpu)}."
        problems.append(("experiments_per_gpu", problem))
    pause = settings.pause_between_s
    if pause is not None and not 0 <= pause <= MAX_PAUSE_S:  # also false for nan
        problems.append(("pause_between", f"must be 0 to {MAX_PAUSE_S:g} seconds (a day), not {pause:g}."))
    if settings.max_failures is not None and settings.max_failures < 1:
        problem = f"must be at least 1 (leave it out for no limit), not {quantity(settings.max_failures)}."
        problems.append(("max_failures", problem))
    return problems
