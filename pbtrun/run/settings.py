"""The scheduler settings a sweep runs with: ``[scheduler]`` merged with the command-line flags
that override it, defaults filled in, combinations that cannot work refused.

Which GPUs a sweep uses is decided here, from the inventory (:mod:`pbtrun.devices`): the GPUs
this process was given (an inherited ``CUDA_VISIBLE_DEVICES`` restricts them), the first N of
them for ``num_gpus = N``, exactly those named by ``gpus = [...]``. The inventory is read only
when experiments are pinned to GPUs: a sweep that leaves ``CUDA_VISIBLE_DEVICES`` alone never
pays for NVML.

A value that cannot work is refused naming where it came from: the flag, or the ``[scheduler]``
key at its line when the whole spec is at hand (:func:`resolve_spec`), or the file (resume).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbtrun.errors import SpecError
from pbtrun.printable import quantity
from pbtrun.run.gpus import MB_PER_GB, detect_gpu_count
from pbtrun.spec.model import LOCAL, SchedulerSettings
from pbtrun.spec.scheduler_table import settings_problems
from pbtrun.state.records import Settings

if TYPE_CHECKING:
    from pbtrun.devices.inventory import Inventory
    from pbtrun.spec.model import Spec

DEFAULT_MAX_PARALLEL = 4


class _Problem(Exception):
    """A value that cannot work: ``key`` of ``[scheduler]`` (or its flag, ``flag`` True), and why;
    the caller says where it came from."""

    def __init__(self, key: str, flag: bool, text: str) -> None:
        super().__init__(text)
        self.key, self.flag, self.text = key, flag, text


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
    try:
        return _resolve(spec, flags, pin_by_default, read)
    except _Problem as problem:
        raise SpecError(_said(problem, f"{where}: ")) from None


def resolve_spec(spec: Spec, flags: SchedulerSettings) -> Settings:
    """:func:`resolve` for a whole spec: its groups' own ``gpus_per_experiment`` pin experiments
    too, and every refusal of a spec's value names its line."""
    from pbtrun.spec.positions import SpecSource

    if spec.backend != LOCAL:
        return _on_cluster(spec, flags)
    src = SpecSource(spec.path, spec.text)
    own = [(i, g.gpus_per_experiment) for i, g in enumerate(spec.groups) if g.gpus_per_experiment is not None]
    try:
        settings = _resolve(spec.scheduler, flags, bool(own), None)
    except _Problem as problem:
        if problem.flag:
            raise SpecError(_said(problem, "")) from None
        raise src.error(("scheduler", problem.key), problem.text) from None
    for i, need in own:
        if need > len(settings.gpus):
            where = ("experiments", i, "gpus_per_experiment")
            raise src.error(where, too_many_gpus(settings, need))
    return settings


def _said(problem: _Problem, where: str) -> str:
    if problem.flag:
        return f"command line: --{problem.key.replace('_', '-')}: {problem.text}"
    return f"{where}{problem.key}: {problem.text}"


def _resolve(spec: SchedulerSettings, flags: SchedulerSettings, pin_by_default: bool, read: Any) -> Settings:
    for key, problem in settings_problems(flags):
        raise SpecError(f"command line: --{key.replace('_', '-')} {problem}")
    max_parallel = _first(flags.max_parallel, spec.max_parallel, DEFAULT_MAX_PARALLEL)
    by_memory = spec.placement == "memory"
    wants_gpus = by_memory or spec.gpus_per_experiment is not None or pin_by_default
    # Memory placement counts no experiments per GPU unless asked: max_parallel bounds them.
    default_per_gpu = (max_parallel if by_memory else 1) if wants_gpus else -1
    per_gpu = _first(flags.experiments_per_gpu, spec.experiments_per_gpu, default_per_gpu)
    per_gpu_flag = flags.experiments_per_gpu is not None
    if per_gpu == -1 and wants_gpus:
        what = 'placement = "memory"' if by_memory else "gpus_per_experiment"
        raise _Problem(
            "experiments_per_gpu",
            per_gpu_flag,
            f"-1 leaves CUDA_VISIBLE_DEVICES alone, but {what} places experiments on GPUs. Remove "
            "experiments_per_gpu = -1 (or give a number of experiments per GPU).",
        )
    inventory = None
    if per_gpu > 0:
        inventory = _read(read)
        gpus, names = _gpus(spec, flags, inventory)
    else:
        gpus, names = _unpinned_gpus(spec, flags), ()
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
        gpu_names=names,
    )
    if settings.experiments_per_gpu > 0 and not settings.gpus:
        seen = f" ({_seen(inventory)})" if inventory is not None else ""
        raise _Problem(
            "experiments_per_gpu",
            per_gpu_flag,
            f"{quantity(per_gpu)} pins experiments to GPUs, but there are no GPUs to pin them to{seen}. "
            "Give the sweep GPUs (--num-gpus N fakes N where there is no driver), or set "
            "experiments_per_gpu = -1 to run without pinning.",
        )
    if settings.gpus_per_experiment > len(settings.gpus) and settings.experiments_per_gpu > 0:
        raise _Problem("gpus_per_experiment", False, too_many_gpus(settings, settings.gpus_per_experiment))
    if inventory is not None and by_memory:
        _refuse_memory_never_free(settings, inventory)
    return settings


UNLIMITED = 1_000_000  # max_parallel on a cluster without max_submitted: the cluster decides what runs


def _on_cluster(spec: Spec, flags: SchedulerSettings) -> Settings:
    """On a cluster (Slurm, a template's queue) nothing is pinned here: each job gets its GPUs
    from the cluster. Every pending experiment is submitted at once (``max_parallel`` bounds
    them); on Slurm as arrays throttled to ``max_submitted``, or one job each, at most
    ``max_submitted`` queued or running."""
    for key in ("num_gpus", "experiments_per_gpu"):
        if getattr(flags, key) is not None:
            raise SpecError(
                f'command line: --{key.replace("_", "-")} means nothing with backend = "{spec.backend}": the '
                "cluster gives each job its GPUs (gpus_per_experiment in the spec asks for them)."
            )
    for key, problem in settings_problems(flags):
        raise SpecError(f"command line: --{key.replace('_', '-')} {problem}")
    options = spec.backend_settings
    default = UNLIMITED if options.get("array", True) else options.get("max_submitted", UNLIMITED)
    return Settings(
        gpus=(),
        max_parallel=_first(flags.max_parallel, spec.scheduler.max_parallel, default),
        experiments_per_gpu=-1,
        pause_between_s=_first(flags.pause_between_s, spec.scheduler.pause_between_s, 0.0),
        max_failures=_first(flags.max_failures, spec.scheduler.max_failures),
    )


def too_many_gpus(settings: Settings, need: int) -> str:
    """The refusal of an experiment that asks for more GPUs than the sweep has, with the numbers."""
    have = len(settings.gpus)
    listed = ", ".join(map(str, settings.gpus))
    return (
        f"gpus_per_experiment = {need} asks for {need} GPUs per experiment, but the sweep has {have} "
        f"({listed}): no experiment could ever start. Lower gpus_per_experiment, or give the sweep more "
        "GPUs (num_gpus, gpus, or the GPUs CUDA_VISIBLE_DEVICES allows)."
    )


def _refuse_memory_never_free(settings: Settings, inventory: Inventory) -> None:
    """``min_free_memory_gb`` above every GPU's whole memory: nothing could ever start."""
    wanted = settings.min_free_memory_gb or 0.0
    totals = [g.memory_total_mb for g in inventory.gpus if g.index in settings.gpus and g.memory_total_mb]
    if totals and wanted * MB_PER_GB > max(totals):
        largest = max(totals) / MB_PER_GB
        raise _Problem(
            "min_free_memory_gb",
            False,
            f"{wanted:g} GB free is more than any of the sweep's GPUs has in all (the largest has "
            f"{largest:.1f} GB): no experiment could ever start. Ask for at most {largest:.1f}.",
        )


def _read(read: Any) -> Inventory:
    if read is None:
        from pbtrun.devices.inventory import read_inventory as read
    return read()


def _gpus(spec: SchedulerSettings, flags: SchedulerSettings, inventory: Inventory) -> tuple[tuple[int, ...], tuple]:
    """The GPUs experiments are pinned to (those this process was given, ``num_gpus`` of them, or
    exactly ``gpus``), and how CUDA_VISIBLE_DEVICES names each, where not by its index."""
    seen = tuple(g.index for g in inventory.gpus)
    spelled = {g.index: g.visible_as or str(g.index) for g in inventory.gpus}
    known = inventory.source != "none"  # without a driver or CUDA_VISIBLE_DEVICES, trust the numbers given
    num = _first(flags.num_gpus, spec.num_gpus)
    if num == 0:
        return (), ()
    if num is None and spec.gpus is not None:
        missing = [g for g in spec.gpus if g not in seen]
        if known and missing:
            raise _Problem(
                "gpus",
                False,
                f"[{', '.join(map(str, spec.gpus))}] names GPU {', '.join(map(str, missing))}, which this "
                f"process was not given: {_seen(inventory)}. Name GPUs from those, or use num_gpus = N.",
            )
        chosen = tuple(spec.gpus)
    elif num is None:
        chosen = seen
    elif num <= len(seen):
        chosen = seen[:num]
    elif not known:
        chosen = tuple(range(num))  # no driver at all: GPUs 0..N-1, as asked (a laptop trying a spec)
    else:
        raise _Problem(
            "num_gpus",
            flags.num_gpus is not None,
            f"{quantity(num)} asks for more GPUs than this process was given: {_seen(inventory)}. "
            f"Give at most {len(seen)}, or leave num_gpus out to use them all.",
        )
    names = tuple(spelled.get(g, str(g)) for g in chosen)
    return chosen, names if any(n != str(g) for g, n in zip(chosen, names, strict=True)) else ()


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
