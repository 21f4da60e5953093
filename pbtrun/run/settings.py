"""The scheduler settings a sweep runs with: ``[scheduler]`` merged with the command-line flags
that override it, defaults filled in, combinations that cannot work refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pbtrun.errors import SpecError
from pbtrun.printable import quantity
from pbtrun.run.gpus import detect_gpu_count
from pbtrun.spec.model import SchedulerSettings
from pbtrun.spec.scheduler_table import settings_problems
from pbtrun.state.records import Settings

DEFAULT_MAX_PARALLEL = 4


def resolve(spec: SchedulerSettings, flags: SchedulerSettings, where: Path | str) -> Settings:
    """Merge ``[scheduler]`` with command-line flags (flags win) and fill in defaults.

    Raises :class:`SpecError` for combinations that cannot work, naming ``where`` the values came from.
    """
    for key, problem in settings_problems(flags):
        raise SpecError(f"command line: --{key.replace('_', '-')} {problem}")
    num_gpus = _first(flags.num_gpus, spec.num_gpus)
    if num_gpus is not None:
        gpus: tuple[int, ...] = tuple(range(num_gpus))
    else:
        gpus = spec.gpus if spec.gpus is not None else tuple(range(detect_gpu_count()))
    settings = Settings(
        gpus=gpus,
        max_parallel=_first(flags.max_parallel, spec.max_parallel, DEFAULT_MAX_PARALLEL),
        experiments_per_gpu=_first(flags.experiments_per_gpu, spec.experiments_per_gpu, -1),
        pause_between_s=_first(flags.pause_between_s, spec.pause_between_s, 0.0),
        max_failures=_first(flags.max_failures, spec.max_failures),
    )
    if settings.experiments_per_gpu > 0 and not settings.gpus:
        source = "--experiments-per-gpu" if flags.experiments_per_gpu is not None else f"{where}: experiments_per_gpu ="
        raise SpecError(
            f"{source} {quantity(settings.experiments_per_gpu)} pins experiments to GPUs, "
            "but there are no GPUs (none found, or num_gpus = 0). Give --num-gpus N, or set "
            "experiments_per_gpu = -1 to run without pinning."
        )
    return settings


def _first(*values: Any) -> Any:
    """The first value that was given (flags before the spec before the default)."""
    return next((v for v in values if v is not None), None)
