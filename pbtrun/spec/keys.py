"""The keys a spec may hold, and the checks of their values that its tables share.

Each table's keys are listed once, here; ``sweep.schema.json`` is tested against these lists. A
check reads one key and returns its value, or raises the :class:`SpecError` that names the file,
the key and its line (through :class:`SpecSource`), says what is wrong and what is valid.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pbtrun.limits import MAX_GPUS, MAX_TIMEOUT_MIN
from pbtrun.printable import quantity
from pbtrun.spec import placeholders
from pbtrun.spec.naming import MAX_NAME_BYTES

if TYPE_CHECKING:
    from pbtrun.spec.positions import SpecSource

TOP_KEYS = (
    "name",
    "train_dir",
    "backend",
    "command",
    "args",
    "param_prefix",
    "experiment_arg_name",
    "experiment_dir_arg_name",
    "customize_experiment_name",
    "experiment_suffix",
    "max_retries",
    "timeout_min",
    "randomize",
    "random_seed",
    "scheduler",
    "env",
    "experiments",
    "slurm",
    "template",
)
SCHEDULER_KEYS = (
    "num_gpus",
    "gpus",
    "max_parallel",
    "experiments_per_gpu",
    "pause_between",
    "max_failures",
    "gpus_per_experiment",
    "placement",
    "min_free_memory_gb",
    "memory_settle_s",
    "exclude_busy_gpus",
)
EXPERIMENT_KEYS = (
    "name",
    "command",
    "grid",
    "list",
    "seeds",
    "seed_base",
    "repeat",
    "env",
    "max_retries",
    "timeout_min",
    "gpus_per_experiment",
)
_TABLES = {"the top level": TOP_KEYS, "[scheduler]": SCHEDULER_KEYS, "[[experiments]]": EXPERIMENT_KEYS}

# A name becomes a directory under the train dir: one path component, nothing hidden. Always
# fullmatch: "$" would let a trailing newline through.
_NAME_RE = re.compile(r"\w[\w.+=,@-]*")
_NAME_RULE = (
    "letters, digits and . _ - + = , @ only, starting with a letter, digit or _ "
    "(no '/', no '..', no spaces, no line breaks)"
)

NUL = (
    "holds a NUL character (\\u0000), which no program argument, environment variable or file name "
    "can carry (C strings end at it): remove it."
)


def check_keys(src: SpecSource, table: Mapping[str, Any], where: tuple, valid: Sequence[str]) -> None:
    """Every key of ``table`` is one of ``valid``; an unknown one is refused with a did-you-mean."""
    for key in table:
        if key not in valid:
            raise src.error((*where, key), _unknown_key(key, valid))


def _unknown_key(key: str, valid: Sequence[str]) -> str:
    """Did-you-mean from this table's keys, else from another table's (saying where it goes)."""
    import difflib  # here: only a mistake needs it

    hint = ""
    if close := difflib.get_close_matches(key, valid, n=1, cutoff=0.6):
        hint = f" Did you mean '{close[0]}'?"
    else:
        for table, keys in _TABLES.items():
            if keys is not valid and (close := difflib.get_close_matches(key, keys, n=1, cutoff=0.75)):
                hint = f" Did you mean '{close[0]}'? It belongs in {table}."
                break
    return f"unknown key.{hint} Valid keys here: {', '.join(valid)}."


def type_name(value: Any) -> str:
    """'an integer', 'a table': a TOML value's type as a message names it."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def toml_literal(value: Any) -> str:
    """A value as it is written in TOML, for hints that users copy (``true``, ``"x"``, ``[1, 2]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }" if value else "{}"
    return str(value)


def string(src: SpecSource, raw: Mapping, key: str, default: str, allow_empty: bool = True) -> str:
    """A top-level string key, ``default`` where it is not given."""
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise src.error((key,), f"must be a string, not {type_name(value)}.")
    if not allow_empty and not value:
        raise src.error((key,), "must not be empty.")
    if "\0" in value:
        raise src.error((key,), NUL)
    return value


def boolean(src: SpecSource, raw: Mapping, key: str, default: bool) -> bool:
    """A top-level ``true``/``false`` key, ``default`` where it is not given."""
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise src.error((key,), f"must be true or false, not {type_name(value)}.")
    return value


def integer(src: SpecSource, table: Mapping, where: tuple, key: str) -> int | None:
    """An integer key of the table at ``where``, or None where it is not given."""
    value = table.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise src.error((*where, key), f"must be an integer, not {type_name(value)}.")
    return value


def gpus_per_experiment(src: SpecSource, table: Mapping, where: tuple) -> int | None:
    """``gpus_per_experiment`` of ``[scheduler]`` or a group: 1 or more, or None where it is not given."""
    value = integer(src, table, where, "gpus_per_experiment")
    if value is not None and not 1 <= value <= MAX_GPUS:
        raise src.error((*where, "gpus_per_experiment"), f"must be 1 to {MAX_GPUS}, not {quantity(value)}.")
    return value


def max_retries(src: SpecSource, table: Mapping, where: tuple) -> int | None:
    """``max_retries`` of the top level or a group: 0 or more, or None where it is not given."""
    value = integer(src, table, where, "max_retries")
    if value is not None and value < 0:
        raise src.error((*where, "max_retries"), f"must be 0 or more, not {quantity(value)}.")
    return value


def timeout_min(src: SpecSource, table: Mapping, where: tuple) -> float | None:
    """``timeout_min`` of the top level or a group, in minutes, or None where it is not given."""
    value = table.get("timeout_min")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise src.error((*where, "timeout_min"), f"must be a number of minutes, not {type_name(value)}.")
    if not 0 < value <= MAX_TIMEOUT_MIN:  # also false for nan
        raise src.error(
            (*where, "timeout_min"),
            f"must be more than 0 and at most {MAX_TIMEOUT_MIN:,} minutes (about two years), not {value:g}; "
            "for no timeout, leave timeout_min out.",
        )
    return float(value)


def required_name(src: SpecSource, table: Mapping, where: tuple) -> str:
    """The required ``name`` of a table (``where`` is the key's path): the sweep's or a group's."""
    if "name" not in table:
        raise src.error(where, 'is required: give a name, for example name = "my_sweep".')
    value = table["name"]
    if not isinstance(value, str):
        raise src.error(where, f"must be a string, not {type_name(value)}.")
    if problem := name_problem(value):
        raise src.error(where, f"{value!r} is not a valid name: it names a directory under the train dir, so {problem}")
    return value


def name_problem(name: str) -> str | None:
    """What keeps ``name`` from being a pbtrun name (one directory name), or None."""
    if not _NAME_RE.fullmatch(name):
        return f"use {_NAME_RULE}."
    if (size := len(name.encode())) > MAX_NAME_BYTES:
        return f"it may have at most {MAX_NAME_BYTES} bytes, not {size:,} (a file name may have 255): shorten it."
    return None


def command(src: SpecSource, where: tuple, value: Any) -> tuple[str, ...]:
    """A command is a string split once with shlex, or a list of arguments taken as is."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        for k, word in enumerate(value):
            if "\0" in word:
                raise src.error((*where, k), NUL)
            check_placeholders(src, (*where, k), word)
        return tuple(value)
    if not isinstance(value, str):
        raise src.error(where, f"must be a string (or a list of strings), not {type_name(value)}.")
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise src.error(where, f"cannot be split into arguments ({exc}): check the quotes.") from None
    if not argv:
        raise src.error(where, "is empty: give the command to run.")
    if "\0" in value:
        raise src.error(where, NUL)
    check_placeholders(src, where, value)
    return tuple(argv)


def env(src: SpecSource, value: Any, where: tuple) -> dict[str, str]:
    """An ``env`` table (the top level's or a group's): names and their values, as strings."""
    if not isinstance(value, dict):
        raise src.error(where, f'must be a table of NAME = "value", not {type_name(value)}.')
    variables: dict[str, str] = {}
    for key, item in value.items():
        if not key or "=" in key or "\0" in key:
            raise src.error((*where, key), "is not a valid environment variable name.")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise src.error((*where, key), f"must be a string, not {type_name(item)}.")
        if isinstance(item, str) and "\0" in item:
            raise src.error((*where, key), NUL)
        variables[key] = str(item)
        check_placeholders(src, (*where, key), variables[key])
    return variables


def check_placeholders(src: SpecSource, where: tuple, text: str) -> None:
    """A near miss of a placeholder (``{experimnt}``) is refused where it is written."""
    if problem := placeholders.problem(text):
        raise src.error(where, problem)
