"""The values the spec layer hands out: a validated spec and the experiments compiled from it.

Kept apart from the reading and expanding, so that a module that only names these types (the
state's records, ``status``, the settings the flags resolve) does not load the TOML reader. The
state's codec builds ``ExperimentSpec``s as it reads ``pbtrun.json``, so this module loads only
what every ``status`` can afford.
NamedTuples, not dataclasses: ``pbtrun up`` does not load the ``dataclasses`` module at all
(tests/test_startup.py keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the state's readers load this module for ExperimentSpec; argstyle costs them start-up time
    from pbtrun.spec import argstyle

LOCAL = "local"
# The backends a spec may name in ``backend`` (each implemented under pbtrun.backends), with what
# each does, as an error lists them. The spec layer sits below the backends: it keeps the names.
BACKENDS = {
    LOCAL: "each experiment a process on this machine",
    "slurm": "each experiment a Slurm job",
    "template": "each experiment a job submitted by the commands of [template]",
}


class SchedulerSettings(NamedTuple):
    """What ``[scheduler]`` asks for; ``None`` means "not given" so CLI flags and defaults apply."""

    num_gpus: int | None = None
    gpus: tuple[int, ...] | None = None
    max_parallel: int | None = None
    experiments_per_gpu: int | None = None
    pause_between_s: float | None = None
    max_failures: int | None = None
    gpus_per_experiment: int | None = None
    placement: str | None = None
    min_free_memory_gb: float | None = None
    memory_settle_s: float | None = None
    exclude_busy_gpus: bool | None = None


class GroupSpec(NamedTuple):
    """One ``[[experiments]]`` table: a group of experiments sharing a name and a command."""

    name: str
    argv: tuple[str, ...]
    combinations: tuple[dict[str, Any], ...]
    env: dict[str, str]
    max_retries: int | None = None
    timeout_min: float | None = None
    gpus_per_experiment: int | None = None


class Spec(NamedTuple):
    """A validated ``sweep.toml``."""

    path: Path
    name: str
    train_dir: str
    param_prefix: str
    experiment_arg_name: str
    experiment_dir_arg_name: str
    customize_experiment_name: bool
    experiment_suffix: str
    scheduler: SchedulerSettings
    env: dict[str, str]
    groups: tuple[GroupSpec, ...]
    max_retries: int = 0
    timeout_min: float | None = None
    randomize: bool = False
    random_seed: int = 0
    text: str = ""
    args: str = "argparse"  # argstyle.ARGPARSE, spelled out here: see the import above
    warnings: tuple[str, ...] = ()  # for plan and up to print; the spec layer never prints
    backend: str = LOCAL
    backend_settings: dict[str, Any] = {}  # noqa: RUF012  the backend's own table ([slurm], [template]), checked


class ExperimentSpec(NamedTuple):
    """One compiled experiment: everything needed to run it, nothing about how it went.

    The one declaration of an experiment's definition: the state's ``Experiment`` holds one
    and adds its history. ``layout`` is the exception: only a definition compiled from the spec
    has it (the state does not record it), and only :meth:`renamed` needs it."""

    id: str
    group: str
    index: int
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    params: Mapping[str, Any]
    name_arg: int | None = None  # position in argv of the experiment-name argument, if any
    max_retries: int = 0
    timeout_min: float | None = None
    gpus_per_experiment: int | None = None  # its group's own; None: [scheduler]'s
    # How its group writes argv and env (see renamed); None in a definition read from the state.
    layout: argstyle.Layout | None = None

    def renamed(self, name: str) -> tuple[tuple[str, ...], Mapping[str, str]]:
        """Its argv and env had it been named ``name``. The state's merge numbers a new experiment
        past its group's last when its name is taken, and compares an existing one under the name
        it already has: every argument made with the name follows it (the name argument, in Hydra
        style its directory, and each ``{experiment}`` placeholder). Only a compiled definition
        can be renamed: one read from the state has no layout."""
        if name == self.name:
            return self.argv, self.env
        if self.layout is None:
            raise TypeError(f"{self.name}: a definition read from the state has no layout; rename a compiled one")
        argv, _, env = self.layout.render(name, self.params)
        return argv, env
