"""An independent oracle: the old launcher's ``RunDescription.generate_experiments`` re-implemented.

Sample Factory 2.x ``sample_factory/launcher/run_description.py`` and IsaacGymEnvs
``isaacgymenvs/pbt/launcher/run_description.py`` behave alike; this follows their documented
behaviour, quirks included (see ../shared/compat/README.md), and deliberately shares no code with
``pbtrun.spec.naming`` or ``pbtrun.spec.expansion``: the equivalence tests compare pbtrun against it, so a bug in
pbtrun's naming cannot hide by being on both sides. It reads any object shaped like a
``RunDescription`` (the real one, or ``pbtrun.compat.launcher``'s stand-in).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any


def shorthand(param: str, taken: list[str]) -> str:
    """First letter of each ``.``/``_``/``-`` token but the last, then 3+ letters of the last.

    The last token grows one letter at a time while the result is one already ``taken`` in this
    experiment, and the launcher gives up (keeping the collision) when the token runs out.
    """
    tokens = re.split(r"[._-]", param)
    initials = [token[0] for token in tokens[:-1]]  # the launcher indexes [0]: an empty token would crash it
    last = tokens[-1]
    length = min(3, len(last))
    short = ".".join([*initials, last[:length]])
    while length <= len(last) and short in taken:
        length += 1
        short = ".".join([*initials, last[:length]])
    return short


def experiment_commands(
    experiment: Any, experiment_arg_name: str, customize_experiment_name: bool, param_prefix: str
) -> Iterator[tuple[str, str]]:
    """(command, name) per parameter dict of one group; a group without parameters runs once."""
    params_list = list(experiment.params)
    for index in range(max(1, len(params_list))):
        words = [experiment.cmd]
        name_parts = [experiment.base_name]
        taken: list[str] = []
        params = params_list[index] if params_list else {}
        for param, value in params.items():
            words.append(f"{param_prefix}{param}={value}")
            short = shorthand(param, taken)
            taken.append(short)
            name_parts.append(f"{short}_{value}")
        if customize_experiment_name:
            name = f"{index:02d}_" + "_".join(name_parts)
        else:
            name = f"{index:02d}_{experiment.base_name}"
        words.append(f"{experiment_arg_name}={name}")  # appended even when the arg name is ""
        yield " ".join(words), name


def generate_experiments(
    run_description: Any, train_dir: str, makedirs: bool = False
) -> Iterator[tuple[str, str, str, dict[str, str] | None]]:
    """(command string, experiment name, root dir relative to the train dir, env vars) per experiment."""
    rd = run_description
    for experiment in rd.experiments:
        root_dir = f"{rd.run_name}/{experiment.base_name}_{rd.experiment_suffix}"
        experiment_dir = os.path.join(train_dir, root_dir)
        for command, name in experiment_commands(
            experiment, rd.experiment_arg_name, rd.customize_experiment_name, rd.param_prefix
        ):
            if makedirs:
                os.makedirs(experiment_dir, exist_ok=True)
            yield f"{command} {rd.experiment_dir_arg_name}={experiment_dir}", name, root_dir, experiment.env_vars
