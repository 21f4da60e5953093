"""Stand-ins for the Sample Factory / IsaacGymEnvs launcher classes, so run modules import without it.

Run modules written for the old launcher start with
``from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription`` (or the
same from ``isaacgymenvs.pbt.launcher.run_description``). ``pbtrun import`` must read such a module
on a machine where neither package is installed, so while it imports one it maps those module names
to this module (see :mod:`pbtrun.compat.importer`). The classes take the same arguments and record what the
module declares exactly as the originals do (``Experiment.params`` is the expanded list of
parameter dicts); compiling experiments from them is pbtrun's job, so they stop there.

Run modules also use the launchers' small helpers, stood in for here too (:data:`STAND_INS` says
which module offers which): ``seeds(n)`` from ``sample_factory.launcher.launcher_utils`` and
``isaacgymenvs.pbt.experiments.run_utils``, and the latter's ``default_num_frames``. Not its
``version``: that is the user's to edit in their copy of IsaacGymEnvs, and experiment names
follow from it, so a stand-in's value could silently rename every experiment.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Experiment", "ParamGenerator", "ParamGrid", "ParamList", "RunDescription", "default_num_frames", "seeds"]

_CLASSES = ("Experiment", "ParamGenerator", "ParamGrid", "ParamList", "RunDescription")
# The launchers' modules pbtrun stands in for, and the names each offers.
STAND_INS: dict[str, tuple[str, ...]] = {
    "sample_factory.launcher.run_description": _CLASSES,
    "isaacgymenvs.pbt.launcher.run_description": _CLASSES,
    "sample_factory.launcher.launcher_utils": ("seeds",),
    "isaacgymenvs.pbt.experiments.run_utils": ("seeds", "default_num_frames"),
}

# Why a name a run module may import is not stood in for, said when it is missing.
LEFT_OUT = {
    "isaacgymenvs.pbt.experiments.run_utils": (
        " (not version: that is yours to set in your copy of IsaacGymEnvs, and experiment names follow from it)"
    ),
}

default_num_frames: int = 10_000_000_000  # isaacgymenvs.pbt.experiments.run_utils'


def seeds(num_seeds: int) -> list[int]:
    """``num_seeds`` random seeds, each from 1,000,000 to 9,999,998, as the launchers' helper draws
    them: a new draw on every call, so a spec imported twice has different seeds (as two runs of
    the old launcher had); the spec records those of its import."""
    return [random.randrange(1_000_000, 9_999_999) for _ in range(num_seeds)]


class ParamGenerator:
    """Base of the parameter generators: ``generate_params`` yields one dict per experiment."""

    def generate_params(self, randomize: bool = True) -> Iterator[dict[str, Any]]:
        """Yield parameter dicts; subclasses say how."""
        raise NotImplementedError


class ParamList(ParamGenerator):
    """An explicit list of parameter combinations, yielded as given (or shuffled)."""

    def __init__(self, combinations: Iterable[Mapping[str, Any]]) -> None:
        self.combinations = list(combinations)

    def generate_params(self, randomize: bool = True) -> Iterator[dict[str, Any]]:
        """Yield each combination; like the original, the default order is a random one."""
        combinations = list(self.combinations)
        if randomize:
            random.shuffle(combinations)
        yield from combinations


class ParamGrid(ParamGenerator):
    """A grid: every combination of the values of each axis, the first axis varying slowest.

    An axis is ``(name, values)``, or ``((name1, name2, ...), [(v1, v2, ...), ...])`` for tied
    parameters that vary together. As in the original, an axis given twice keeps its last values
    at its first position (the axes live in an insertion-ordered dict).
    """

    def __init__(self, grid_tuples: Iterable[tuple[Any, Sequence[Any]]]) -> None:
        self.grid: dict[Any, Sequence[Any]] = dict(grid_tuples)

    def generate_params(self, randomize: bool = False) -> Iterator[dict[str, Any]]:
        """Yield the grid's combinations in nested-loop order (or shuffled); nothing if it is empty."""
        if not self.grid:
            return
        names = list(self.grid)
        combinations = list(itertools.product(*(self.grid[name] for name in names)))
        if randomize:
            random.shuffle(combinations)
        for combination in combinations:
            params: dict[str, Any] = {}
            for name, value in zip(names, combination, strict=True):
                if isinstance(name, tuple):  # tied: the k-th name takes the k-th value
                    for k, tied_name in enumerate(name):
                        params[tied_name] = value[k]
                else:
                    params[name] = value
            yield params


class Experiment:
    """A group of experiments: a base name, a base command and the parameter dicts to append."""

    def __init__(
        self,
        name: str,
        cmd: str,
        param_generator: Iterable[Mapping[str, Any]] = (),
        env_vars: Mapping[str, str] | None = None,
    ) -> None:
        self.base_name = name
        self.cmd = cmd
        self.params = list(param_generator)
        self.env_vars = env_vars


class RunDescription:
    """A run: its name, its experiment groups and how names and directories are passed."""

    def __init__(
        self,
        run_name: str,
        experiments: Sequence[Experiment],
        experiment_arg_name: str = "--experiment",
        experiment_dir_arg_name: str = "--train_dir",
        customize_experiment_name: bool = True,
        param_prefix: str = "--",
    ) -> None:
        self.run_name = run_name
        self.experiments = experiments
        self.experiment_suffix = ""  # the old launcher's --experiment_suffix flag set it after import
        self.experiment_arg_name = experiment_arg_name
        self.experiment_dir_arg_name = experiment_dir_arg_name
        self.customize_experiment_name = customize_experiment_name
        self.param_prefix = param_prefix
