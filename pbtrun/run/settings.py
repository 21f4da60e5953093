"""The scheduler settings a sweep runs with: ``[scheduler]`` merged with the command-line flags
that override it, defaults filled in, combinations that cannot work refused.

Which GPUs a sweep uses is decided here, from the inventory (:mod:`pbtrun.devices`): the GPUs
this process was given (an inherited ``CUDA_VISIBLE_DEVICES`` restricts them), the first N of
them for ``num_gpus = N``, exactly those named by ``gpus = [...]``. The inventory is read only
when experiments are pinned to GPUs: a sweep that leaves ``CUDA_VISIBLE_DEVICES`` alone never
pays for NVML.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbtrun.errors import SpecError
from pbtrun.printable import quantity
from pbtrun.run.gpus import detect_gpu_count
from pbtrun.spec.model import SchedulerSettings
from pbtrun.spec.scheduler_table import settings_problems
from pbtrun.state.records import Settings

if TYPE_CHECKING:
    from pbtrun.devices.inventory import Inventory
    from pbtrun.spec.model import Spec

DEFAULT_MAX_PARALLEL = 4


def resolve(
    spec: SchedulerSettings,
    flags: SchedulerSettings,
    where: Path | str,
    pin_by_default: bool = False,
    read: Callable[[], Inventory] | None = None,
) -> Settings:
    """Merge ``[scheduler]`` with command-line flags (flags win) and fill in defaults.

    ``pin_by_default``: a group asks for GPUs of its own (``gpus_per_experiment``), so
    experiments are pinned unless ``experiments_per_gpu = -1`` says otherwise. ``read``: how to
    read the inventory (the machine's, by default). Raises :class:`SpecError` for combinations
    that cannot work, naming ``where`` the values came from.
    """
    for key, problem in settings_problems(flags):
        raise SpecError(f"command line: --{key.replace('_', '-')} {problem}")
    max_parallel = _first(flags.max_parallel, spec.max_parallel, DEFAULT_MAX_PARALLEL)
    by_memory = spec.placement == "memory"
    wants_gpus = by_memory or spec.gpus_per_experiment is not None or pin_by_default
    # Memory placement counts no experiments per GPU unless asked: max_parallel bounds them.
    default_per_gpu = (max_parallel if by_memory else 1) if wants_gpus else -1
    per_gpu = _first(flags.experiments_per_gpu, spec.experiments_per_gpu, default_per_gpu)
    if per_gpu == -1 and wants_gpus:
        what = 'placement = "memory"' if by_memory else "gpus_per_experiment"
        raise SpecError(
            f"{where}: {what} places experiments on GPUs, but experiments_per_gpu = -1 leaves "
            "CUDA_VISIBLE_DEVICES alone. Remove experiments_per_gpu = -1 (or give a number of experiments per GPU)."
        )
    gpus = _gpus(spec, flags, where, read) if per_gpu > 0 else _unpinned_gpus(spec, flags)
    settings = Settings(
        gpus=gpus,
        max_parallel=max_parallel,
        experiments_per_gpu=per_gpu,
        pause_between_s=_first(flags.pause_between_s, spec.pause_between_s, 0.0),
        max_failures=_first(flags.max_failures, spec.max_failures),
        gpus_per_experiment=_first(spec.gpus_per_experiment, 1),
        placement=_first(spec.placement, "count"),
        min_free_memory_gb=spec.min_free_memory_gb,
        memory_settle_s=_first(spec.memory_settle_s, 30.0),
        exclude_busy_gpus=bool(spec.exclude_busy_gpus),
    )
    if settings.experiments_per_gpu > 0 and not settings.gpus:
        source = "--experiments-per-gpu" if flags.experiments_per_gpu is not None else f"{where}: experiments_per_gpu ="
        raise SpecError(
            f"{source} {quantity(settings.experiments_per_gpu)} pins experiments to GPUs, "
            "but there are no GPUs (none found, or num_gpus = 0). Give --num-gpus N, or set "
            "experiments_per_gpu = -1 to run without pinning."
        )
    if settings.gpus_per_experiment > len(settings.gpus) and settings.experiments_per_gpu > 0:
        raise SpecError(too_many_gpus(f"{where}: [scheduler] gpus_per_experiment", settings))
    return settings


def resolve_spec(spec: Spec, flags: SchedulerSettings) -> Settings:
    """:func:`resolve` for a whole spec: its groups' own ``gpus_per_experiment`` pin experiments
    too, and one asking for more GPUs than the sweep has is refused at its line."""
    if spec.backend == "slurm":
        return _on_slurm(spec, flags)
    own = [(i, g.gpus_per_experiment) for i, g in enumerate(spec.groups) if g.gpus_per_experiment is not None]
    settings = resolve(spec.scheduler, flags, spec.path, pin_by_default=bool(own))
    for i, need in own:
        if need > len(settings.gpus):
            from pbtrun.spec.positions import SpecSource

            where = ("experiments", i, "gpus_per_experiment")
            raise SpecSource(spec.path, spec.text).error(where, too_many_gpus("gpus_per_experiment", settings, need))
    return settings


UNLIMITED = 1_000_000  # max_parallel on Slurm without max_submitted: the cluster decides what runs


def _on_slurm(spec: Spec, flags: SchedulerSettings) -> Settings:
    """On Slurm nothing is pinned here (each job gets its GPUs from Slurm); every pending
    experiment is submitted at once, as arrays throttled to ``max_submitted``, or one job each,
    at most ``max_submitted`` queued or running."""
    for key in ("num_gpus", "experiments_per_gpu"):
        if getattr(flags, key) is not None:
            raise SpecError(
                f'command line: --{key.replace("_", "-")} means nothing with backend = "slurm": Slurm gives each '
                "job its GPUs (gpus_per_experiment in the spec asks for them)."
            )
    for key, problem in settings_problems(flags):
        raise SpecError(f"command line: --{key.replace('_', '-')} {problem}")
    options = spec.backend_settings
    array = options.get("array", True)
    default = UNLIMITED if array else options.get("max_submitted", UNLIMITED)
    return Settings(
        gpus=(),
        max_parallel=_first(flags.max_parallel, spec.scheduler.max_parallel, default),
        experiments_per_gpu=-1,
        pause_between_s=_first(flags.pause_between_s, spec.scheduler.pause_between_s, 0.0),
        max_failures=_first(flags.max_failures, spec.scheduler.max_failures),
    )


def too_many_gpus(what: str, settings: Settings, need: int | None = None) -> str:
    """The refusal of an experiment that asks for more GPUs than the sweep has, with the numbers."""
    need = settings.gpus_per_experiment if need is None else need
    have = len(settings.gpus)
    listed = ", ".join(map(str, settings.gpus))
    return (
        f"{what} = {need} asks for {need} GPUs per experiment, but the sweep has {have} "
        f"({listed}): no experiment could ever start. Lower gpus_per_experiment, or give the sweep more "
        "GPUs (num_gpus, gpus, or the GPUs CUDA_VISIBLE_DEVICES allows)."
    )


def _gpus(spec: SchedulerSettings, flags: SchedulerSettings, where: Path | str, read: Any) -> tuple[int, ...]:
    """The GPUs experiments are pinned to: those this process was given, ``num_gpus`` of them, or
    exactly ``gpus``."""
    num = _first(flags.num_gpus, spec.num_gpus)
    if num == 0:
        return ()
    if read is None:
        from pbtrun.devices.inventory import read_inventory as read
    inventory = read()
    seen = tuple(g.index for g in inventory.gpus)
    known = inventory.source != "none"  # without a driver or CUDA_VISIBLE_DEVICES, trust the numbers given
    if num is None and spec.gpus is not None:
        missing = [g for g in spec.gpus if g not in seen]
        if known and missing:
            raise SpecError(
                f"{where}: gpus = [{', '.join(map(str, spec.gpus))}] names GPU {', '.join(map(str, missing))}, "
                f"which this process was not given: {_seen(inventory)}. Name GPUs from those, or use num_gpus = N."
            )
        return tuple(spec.gpus)
    if num is None:
        return seen
    if num <= len(seen):
        return seen[:num]
    if not known:
        return tuple(range(num))  # no driver at all: GPUs 0..N-1, as asked (a laptop trying a spec)
    source = "--num-gpus" if flags.num_gpus is not None else f"{where}: num_gpus ="
    raise SpecError(
        f"{source} {quantity(num)} asks for more GPUs than this process was given: {_seen(inventory)}. "
        f"Give at most {len(seen)}, or leave num_gpus out to use them all."
    )


def _seen(inventory: Inventory) -> str:
    from pbtrun.devices.inventory import notice

    return notice(inventory).removeprefix("GPUs: ")


def _unpinned_gpus(spec: SchedulerSettings, flags: SchedulerSettings) -> tuple[int, ...]:
    """Not pinned: the GPUs only describe the machine (no NVML needed for that)."""
    num = _first(flags.num_gpus, spec.num_gpus)
    if num is not None:
        return tuple(range(num))
    return spec.gpus if spec.gpus is not None else tuple(range(detect_gpu_count()))


def _first(*values: Any) -> Any:
    """The first value that was given (flags before the spec before the default)."""
    return next((v for v in values if v is not None), None)
