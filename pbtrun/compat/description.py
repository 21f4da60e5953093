"""Reading a ``RunDescription`` by duck typing, into what the imported spec must say.

The launcher's classes are read by their attributes, whether the real ones or pbtrun's stand-ins
made them. Everything pbtrun could not express or would refuse later (a name that cannot be a
directory, a NUL character, a value nested too deep) is refused here, in terms of the run module.
Parameter values become what TOML should hold for pbtrun to render them as the old launcher did
(:func:`toml_value`).
"""

from __future__ import annotations

import contextlib
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pbtrun.errors import SpecError
from pbtrun.spec import nesting
from pbtrun.spec.keys import name_problem

_INT64 = range(-(2**63), 2**63)  # TOML's integers


@dataclass(frozen=True)
class ImportedGroup:
    """One ``Experiment``: its command as the old launcher split it, env and parameter dicts."""

    name: str
    command: str | list[str]  # a string where shlex splits it into the launcher's very words
    env: dict[str, str]
    params: list[dict[str, Any]]


@dataclass(frozen=True)
class ImportedRun:
    """The ``RunDescription``: the run's name, how names and directories are passed, its groups."""

    name: str
    experiment_arg_name: str
    experiment_dir_arg_name: str
    customize_experiment_name: bool
    param_prefix: str
    experiment_suffix: str
    groups: list[ImportedGroup]


def read_run(description: Any, label: str, suffix: str | None) -> ImportedRun:
    """The run module ``label``'s description; ``suffix`` (the old launcher's flag) wins over its own."""
    where = f"{label}: RUN_DESCRIPTION"
    if not hasattr(description, "run_name") or not hasattr(description, "experiments"):
        raise SpecError(
            f"{where} is {_a(description)}, not a RunDescription (it needs run_name and "
            "experiments); assign RunDescription(run_name, experiments=[...]) to it."
        )
    name = _string(description.run_name, f"{where}.run_name")
    _check_name(name, f"{where}: the run name", label)
    if suffix is None:
        suffix = getattr(description, "experiment_suffix", "") or ""
    suffix = _string(suffix, "the experiment suffix")
    if suffix and (problem := name_problem(suffix)):
        raise SpecError(
            f"{label}: the experiment suffix {suffix!r} cannot end a directory name (each group's is "
            f"<group>_<suffix>), so {problem} Choose another suffix."
        )
    groups = [_read_group(exp, k, where) for k, exp in enumerate(description.experiments)]
    if not groups:
        raise SpecError(f"{where}.experiments is empty: the run has no experiments to import.")
    seen: dict[str, int] = {}
    for k, group in enumerate(groups):
        _check_name(group.name, f"{where}.experiments[{k}]: the experiment name", label)
        if group.name in seen:
            raise SpecError(
                f"{where}: experiments [{seen[group.name]}] and [{k}] are both named {group.name!r}, so "
                "the old launcher gave them one directory; pbtrun needs a name per group. Rename one."
            )
        seen[group.name] = k
    return ImportedRun(
        name=name,
        experiment_arg_name=_attr_string(description, "experiment_arg_name", "--experiment", where),
        experiment_dir_arg_name=_attr_string(description, "experiment_dir_arg_name", "--train_dir", where),
        customize_experiment_name=bool(getattr(description, "customize_experiment_name", True)),
        param_prefix=_attr_string(description, "param_prefix", "--", where),
        experiment_suffix=suffix,
        groups=groups,
    )


def _read_group(experiment: Any, k: int, where: str) -> ImportedGroup:
    here = f"{where}.experiments[{k}]"
    for attr in ("base_name", "cmd"):
        if not hasattr(experiment, attr):
            raise SpecError(f"{here} has no {attr}: it should be an Experiment(name, cmd, params).")
    cmd = _string(experiment.cmd, f"{here}.cmd")
    words = cmd.split(" ")  # how the old launcher split it; keep those words exactly
    try:
        quoted_alike = shlex.split(cmd) == words
    except ValueError:
        quoted_alike = False
    env_vars = getattr(experiment, "env_vars", None) or {}
    if not isinstance(env_vars, Mapping):
        raise SpecError(f"{here}.env_vars must be a dict of NAME: value, not {type(env_vars).__name__}.")
    params = list(getattr(experiment, "params", None) or [])
    for combination in params:
        if not isinstance(combination, Mapping):
            raise SpecError(f"{here}.params holds {_a(combination)}; it must be parameter dicts.")
        for key, value in combination.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key or any(c.isspace() for c in key):
                raise SpecError(
                    f"{here} has a parameter named {key!r}; pbtrun passes each parameter as one "
                    "argument, so a name must be a non-empty string without spaces, '=' or a NUL character. Rename it."
                )
            if nesting.too_deep(value) is not None:  # before anything recurses into it
                raise SpecError(f"{here}.params: the value of {key!r} is {nesting.TOO_DEEP} in the run module.")
            if _holds_nul(toml_value(value)):
                raise SpecError(f"{here}.params: the value of {key!r}, {value!r}, {_NUL}")
    env = {str(key): f"{value}" for key, value in env_vars.items()}
    for key, value in env.items():
        if "\0" in key + value:
            raise SpecError(f"{here}.env_vars: {key!r}: {value!r} {_NUL}")
    return ImportedGroup(
        name=_string(experiment.base_name, f"{here}.base_name"),
        command=cmd if quoted_alike else words,
        env=env,
        params=[dict(c) for c in params],
    )


_NUL = (
    "holds a NUL character ('\\x00'), which no program argument, environment variable or file name can "
    "carry (C strings end at it), so pbtrun cannot pass it. Remove it from the run module."
)


def _holds_nul(value: Any) -> bool:
    """A NUL in a value as the spec will hold it (other values are passed as their rendering)."""
    if isinstance(value, str):
        return "\0" in value
    return isinstance(value, list) and any(_holds_nul(item) for item in value)


def _a(value: Any) -> str:
    """'an int', 'a dict': the type of ``value`` with its article."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a string, not {_a(value)} ({value!r}).")
    if "\0" in value:
        raise SpecError(f"{what}, {value!r}, {_NUL}")
    return value


def _attr_string(obj: Any, attr: str, default: str, where: str) -> str:
    """An optional string attribute, with the launcher's default where an older version lacks it."""
    return _string(getattr(obj, attr, default), f"{where}.{attr}")


def _check_name(name: str, what: str, label: str) -> None:
    if problem := name_problem(name):
        raise SpecError(
            f"{what} {name!r} cannot be a pbtrun name: pbtrun names become directories under the train dir, "
            f"so {problem} Rename it in {label} and import again (experiment names and directories follow "
            "from it, so this changes them)."
        )


def toml_value(value: Any) -> Any:
    """``value`` as TOML should hold it so that pbtrun renders it as the old launcher did (``f"{value}"``).

    bool, int, float, str and lists of them stay as they are; numpy scalars become the Python number
    they render as; anything else (``None``, tuples, dicts, inf, ...) becomes its rendering, a string.
    """
    if _plain(value):
        return value
    rendered = f"{value}"
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        with contextlib.suppress(Exception):
            number = value.item()
            if _plain(number) and not isinstance(number, list) and f"{number}" == rendered:
                return number
    return rendered


def _plain(value: Any) -> bool:
    """A value TOML holds and pbtrun renders exactly as Python formats it."""
    kind = type(value)
    if kind is bool or kind is str:
        return True
    if kind is int:
        return value in _INT64
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_plain(v) for v in value)
    return False
