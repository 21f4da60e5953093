"""The spec's ``[slurm]`` table (``backend = "slurm"``): what ``sbatch`` is asked for, checked at
each key's line like every other table; and the ``[scheduler]`` keys that mean nothing on Slurm,
refused with what to use instead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pbtrun.spec import keys

if TYPE_CHECKING:
    from pbtrun.spec.positions import SpecSource

SLURM_KEYS = (
    "partition",
    "time_min",
    "cpus_per_task",
    "mem_gb",
    "account",
    "qos",
    "constraint",
    "extra_args",
    "preamble",
    "array",
    "max_submitted",
    "poll_s",
)
_TEXT = ("partition", "account", "qos", "constraint")
_POSITIVE_NUMBERS = {"time_min": 1e6, "mem_gb": 1e6, "poll_s": 86400.0}
_POSITIVE_INTEGERS = ("cpus_per_task", "max_submitted")
# [scheduler] keys a cluster decides for itself, and what to say instead.
NOT_ON_SLURM = {
    "num_gpus": "Slurm gives each job its GPUs: ask for them with gpus_per_experiment (--gres=gpu:N)",
    "gpus": "Slurm gives each job its GPUs: ask for them with gpus_per_experiment (--gres=gpu:N)",
    "experiments_per_gpu": "Slurm gives each job GPUs of its own: use gpus_per_experiment (--gres=gpu:N)",
    "placement": "Slurm places jobs on nodes and GPUs itself; constrain it with [slurm] constraint or extra_args",
    "min_free_memory_gb": "Slurm places jobs itself; ask for memory with [slurm] mem_gb",
    "memory_settle_s": "Slurm places jobs itself",
    "exclude_busy_gpus": "Slurm gives each job GPUs no other job holds",
}


def read_slurm(src: SpecSource, raw: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """The ``[slurm]`` table, checked (empty for another backend, which must not have one)."""
    table = raw.get("slurm")
    if backend != "slurm":
        if table is not None:
            raise src.error(("slurm",), f'is only read with backend = "slurm"; this spec runs on "{backend}".')
        return {}
    scheduler = raw.get("scheduler", {})
    for key, instead in NOT_ON_SLURM.items():
        if isinstance(scheduler, dict) and key in scheduler:
            raise src.error(("scheduler", key), f'means nothing with backend = "slurm": {instead}.')
    if table is None:
        return {}
    where = ("slurm",)
    if not isinstance(table, dict):
        raise src.error(where, f"must be a table ([slurm]), not {keys.type_name(table)}.")
    keys.check_keys(src, table, where, SLURM_KEYS)
    options = {**_texts_and_numbers(src, table, where), **_lists_and_flags(src, table, where)}
    return {k: v for k, v in options.items() if v is not None}


def _texts_and_numbers(src: SpecSource, table: Mapping[str, Any], where: tuple) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in _TEXT:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value or "\n" in value):
            raise src.error((*where, key), f"must be a non-empty string on one line, not {keys.toml_literal(value)}.")
        options[key] = value
    for key, high in _POSITIVE_NUMBERS.items():
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise src.error((*where, key), f"must be a number, not {keys.type_name(value)}.")
        if value is not None and not 0 < value <= high:  # also false for nan
            raise src.error((*where, key), f"must be more than 0 and at most {high:,.0f}, not {value:g}.")
        options[key] = None if value is None else float(value)
    for key in _POSITIVE_INTEGERS:
        value = keys.integer(src, table, where, key)
        if value is not None and value < 1:
            raise src.error((*where, key), f"must be at least 1, not {value}.")
        options[key] = value
    return options


def _lists_and_flags(src: SpecSource, table: Mapping[str, Any], where: tuple) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in ("extra_args", "preamble"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and "\n" not in v for v in value):
            raise src.error((*where, key), 'must be a list of strings, each on one line, like ["--exclusive"].')
        options[key] = value
    array = table.get("array", True)
    if not isinstance(array, bool):
        raise src.error((*where, "array"), f"must be true or false, not {keys.type_name(array)}.")
    options["array"] = array
    return options
