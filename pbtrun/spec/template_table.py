"""The spec's ``[template]`` table (``backend = "template"``): the commands that submit, ask
about and cancel one job per experiment on a queue pbtrun has no backend of its own for (NGC,
Run:ai, kubectl, a cloud's CLI), checked at each key's line like every other table.

Commands are written as ``command`` is (a string split once as a shell would, or a list of
arguments) and are never run through a shell: placeholders are filled inside each argument, so
a value with spaces stays one argument. Every ``{identifier}`` is a placeholder here (the
commands are pbtrun's, not the experiment's), so an unknown one is a typo and is refused;
``${VAR}`` and braces around anything else (``{.status.phase}``) pass as written. The regular
expressions are compiled here, so a bad one is refused before anything is submitted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pbtrun.spec import keys, placeholders

if TYPE_CHECKING:
    from pbtrun.spec.positions import SpecSource

TEMPLATE = "template"
TEMPLATE_KEYS = (
    "submit",
    "job_id_pattern",
    "status",
    "running_pattern",
    "succeeded_pattern",
    "failed_pattern",
    "cancel",
    "poll_s",
)
SUBMIT_PLACEHOLDERS = ("name", "command", "gpus", "sweep_dir")
JOB_PLACEHOLDERS = (*SUBMIT_PLACEHOLDERS, "job_id")  # status and cancel also know the job
PATTERNS = ("failed_pattern", "succeeded_pattern", "running_pattern")  # the order they are tried in
MAX_POLL_S = 86400.0
# [scheduler] keys a queue decides for itself, and what to say instead.
_PLACED_BY_QUEUE = "the queue places each job itself; ask for GPUs with gpus_per_experiment ({gpus} in submit)"
NOT_ON_A_QUEUE = {
    key: _PLACED_BY_QUEUE
    for key in ("num_gpus", "gpus", "experiments_per_gpu", "placement", "min_free_memory_gb", "memory_settle_s")
} | {"exclude_busy_gpus": "the queue gives each job GPUs no other job holds"}
_EXAMPLE = 'submit = "ngc batch run --name {name} --commandline {command}"'


def read_template(src: SpecSource, raw: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """The ``[template]`` table, checked (empty for another backend, which must not have one)."""
    table = raw.get(TEMPLATE)
    where = (TEMPLATE,)
    if backend != TEMPLATE:
        if table is not None:
            raise src.error(where, f'is only read with backend = "template"; this spec runs on "{backend}".')
        return {}
    scheduler = raw.get("scheduler", {})
    for key, instead in NOT_ON_A_QUEUE.items():
        if isinstance(scheduler, dict) and key in scheduler:
            raise src.error(("scheduler", key), f'means nothing with backend = "template": {instead}.')
    if table is None:
        raise src.error(
            where,
            f'is required with backend = "template": add a [template] table with {_EXAMPLE} and a '
            "job_id_pattern that finds the job id in what submit prints.",
        )
    if not isinstance(table, dict):
        raise src.error(where, f"must be a table ([template]), not {keys.type_name(table)}.")
    keys.check_keys(src, table, where, TEMPLATE_KEYS)
    if "submit" not in table:
        raise src.error(where, f"submit is required: the command that submits one experiment, like {_EXAMPLE}.")
    if "job_id_pattern" not in table:
        raise src.error(
            where,
            "job_id_pattern is required: a regular expression that finds the job id in what submit "
            "prints, like job_id_pattern = 'Submitted job (\\S+)'.",
        )
    options: dict[str, Any] = {"submit": _command(src, table, "submit", SUBMIT_PLACEHOLDERS)}
    options["job_id_pattern"] = _pattern(src, table, "job_id_pattern")
    return {**options, **_job_commands(src, table), "poll_s": _poll_s(src, table)}


def _job_commands(src: SpecSource, table: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` with the patterns that read its output, and ``cancel``: each optional."""
    where = (TEMPLATE,)
    options: dict[str, Any] = {}
    for key in ("status", "cancel"):
        if key in table:
            options[key] = _command(src, table, key, JOB_PLACEHOLDERS)
    for key in PATTERNS:
        if key in table:
            if "status" not in table:
                raise src.error((*where, key), "is matched against the status command's output: add status.")
            options[key] = _pattern(src, table, key)
    if "status" in table and not any(key in table for key in PATTERNS):
        raise src.error(
            (*where, "status"),
            "is read through running_pattern, succeeded_pattern and failed_pattern: give at least one.",
        )
    return options


def _command(src: SpecSource, table: Mapping[str, Any], key: str, known: Sequence[str]) -> list[str]:
    where = (TEMPLATE, key)
    argv = keys.command(src, where, table[key])
    listed = isinstance(table[key], list)
    for k, word in enumerate(argv):
        for name in placeholders.names(word):
            if name not in known:
                said = ", ".join(f"{{{n}}}" for n in known)
                raise src.error(
                    (*where, k) if listed else where,
                    f"{{{name}}} is not a placeholder of {key}: its placeholders are {said}.",
                )
    if key == "submit" and not any("command" in placeholders.names(word) for word in argv):
        raise src.error(
            where,
            "must hold {command}, the command line the job runs: it runs the experiment and writes "
            f"its log and exit status, which pbtrun reads. For example {_EXAMPLE}.",
        )
    return list(argv)


def _pattern(src: SpecSource, table: Mapping[str, Any], key: str) -> str:
    where = (TEMPLATE, key)
    value = table[key]
    if not isinstance(value, str) or not value:
        raise src.error(where, f"must be a regular expression (a non-empty string), not {keys.toml_literal(value)}.")
    try:
        compiled = re.compile(value)
    except re.error as exc:
        at = f" at position {exc.pos}" if exc.pos is not None else ""
        raise src.error(where, f"is not a valid regular expression: {exc.msg}{at}.") from None
    if key == "job_id_pattern" and compiled.groups != 1 and "id" not in compiled.groupindex:
        raise src.error(
            where,
            f"must capture the job id: one group, like 'Submitted job (\\S+)', or a group named id, like "
            f"'(?P<id>[0-9]+)'; this one has {compiled.groups} groups.",
        )
    return value


def _poll_s(src: SpecSource, table: Mapping[str, Any]) -> float:
    value = table.get("poll_s", 10.0)
    where = (TEMPLATE, "poll_s")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise src.error(where, f"must be a number of seconds, not {keys.type_name(value)}.")
    if not 0 < value <= MAX_POLL_S:  # also false for nan
        raise src.error(where, f"must be more than 0 and at most {MAX_POLL_S:,.0f}, not {value:g}.")
    return float(value)
