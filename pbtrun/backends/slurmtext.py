"""Slurm's text, read: pure parsers of what ``sbatch``, ``squeue`` and ``scontrol`` print.

No process is started here (the Slurm backend runs the commands and hands their output in), so
every parser is tested on text recorded from a real Slurm (``tests/data/slurm/``, redone by
``scripts/record-slurm-output.sh``). Only the plain-text interfaces are read: ``--parsable``,
``squeue -o`` with a separator, ``scontrol -o``. They have kept their shape across Slurm
releases, where the JSON outputs have changed schema from one release to the next.

Text that does not have the expected shape raises :class:`~pbtrun.errors.BackendError` saying
what was read and what was expected: a poll that cannot be read must never be taken for "the job
is gone".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from pbtrun.errors import BackendError

# The fields the backend asks squeue for (``squeue -h -t all -o SQUEUE_FORMAT``): job id as Slurm
# shows it (``123``, ``123_7``, ``123_[4-9%2]``), array job id, array task id or range (``N/A``
# for a plain job), state, reason, node list, comment, name. The name comes last, so that it may
# hold the separator: it is the one field a person sets freely (``sbatch -J``).
SQUEUE_FORMAT = "%i|%F|%K|%T|%r|%N|%k|%j"
SQUEUE_FIELDS = 8
# Slurm cuts array task ids (bit strings) at 64 characters and ends them with "..." unless this
# is set in the clients' environment; 0 means no limit. The backend sets it for squeue and
# scontrol, and the parsers refuse a cut list instead of reading part of it.
BITSTR_ENV = {"SLURM_BITSTR_LEN": "0"}
# Slurm's default when slurm.conf does not set MaxArraySize: task ids 0 to 1000.
DEFAULT_MAX_ARRAY_SIZE = 1001
# The largest MaxArraySize Slurm accepts: no task id Slurm prints can be larger, so a range
# beyond it is damaged text, not a list to expand into memory.
MAX_TASK_ID = 4_000_000

# Slurm writes "(null)" for an unset comment or node list, and "N/A" for no array task.
_UNSET = {"(null)", "N/A"}


class JobState(NamedTuple):
    """One line of ``squeue`` or one ``scontrol show job -o`` record: a job, an array task, or an
    array's still-pending tasks (a range, on one line until they start)."""

    job_id: str  # as Slurm shows it: "123", "123_7" (an array task), "123_[4-9%2]" (pending tasks)
    array_job_id: str | None  # None for a job that is not part of an array
    task_ids: tuple[int, ...]  # the array tasks the line stands for (a range expanded); () if none
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, ...
    reason: str  # why it is in that state: "Priority", "JobArrayTaskLimit", "None"
    nodes: str  # node list, "" while pending
    comment: str  # the tag the backend gives its jobs (--comment), "" if none
    name: str
    exit_code: int | None = None  # from scontrol: the exit status, -N for signal N; None if unknown


def parse_sbatch(stdout: str) -> str:
    """The job id ``sbatch --parsable`` printed: ``123``, or ``123;cluster`` on a federation.

    An array is one job id too (its tasks are ``ID_TASK``)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    found = re.fullmatch(r"(\d+)(?:;\S+)?", lines[-1]) if lines else None
    if found is None:
        raise BackendError(
            f"sbatch printed {_quote(stdout)} where a job id was expected (`sbatch --parsable` prints "
            "only the id, for example `123` or `123;cluster`): pbtrun cannot tell whether the job was "
            "submitted. Run `squeue --me` to see it."
        )
    return found.group(1)


def parse_array_ids(text: str) -> tuple[int, ...]:
    """The task ids an array specification stands for, ascending and each once.

    Reads what sbatch's ``--array`` takes and squeue and scontrol print: ``7``, ``1,3,5-7``,
    ``0-150:3`` (every third), with or without the brackets of a pending range (``[4-9%2]``).
    The ``%N`` throttle is not a task and is dropped."""
    spec = text.strip()
    if spec.startswith("[") and spec.endswith("]"):
        spec = spec[1:-1]
    spec = spec.partition("%")[0]
    if "..." in spec:
        raise BackendError(
            f"Slurm cut the array task list {_quote(text)} short: set SLURM_BITSTR_LEN=0 in the "
            "environment of squeue and scontrol so that they print it whole."
        )
    ids: set[int] = set()
    for part in spec.split(","):
        found = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if found is None:
            raise BackendError(
                f"{_quote(text)} is not an array specification pbtrun can read: expected task ids "
                "and ranges separated by commas, such as `1,3,5-7`, `0-150:3` or `[4-9%2]`."
            )
        first = int(found.group(1))
        last = int(found.group(2) or first)
        step = int(found.group(3) or 1)
        if last < first or step < 1 or last > MAX_TASK_ID:
            raise BackendError(
                f"{_quote(text)} holds the range {part.strip()!r}, which no Slurm array has: a range "
                f"runs upwards, with a step of at least 1, to at most {MAX_TASK_ID}."
            )
        ids.update(range(first, last + 1, step))
    return tuple(sorted(ids))


def parse_squeue(text: str) -> list[JobState]:
    """Every line of ``squeue -h -o SQUEUE_FORMAT``, in Slurm's order."""
    jobs = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        fields = line.removesuffix("\r").split("|", SQUEUE_FIELDS - 1)
        if len(fields) != SQUEUE_FIELDS:
            raise BackendError(
                f"squeue printed the line {_quote(line)}, which does not have the {SQUEUE_FIELDS} fields "
                f"pbtrun asked for (`squeue -o '{SQUEUE_FORMAT}'`): a site's squeue wrapper or "
                "SQUEUE_FORMAT in the environment may have changed it."
            )
        job_id, array_job_id, task, state, reason, nodes, comment, name = fields
        in_array = task not in _UNSET
        jobs.append(
            JobState(
                job_id=job_id,
                array_job_id=array_job_id if in_array else None,
                task_ids=parse_array_ids(task) if in_array else (),
                state=state,
                reason=reason,
                nodes=_value(nodes),
                comment=_value(comment),
                name=name,
            )
        )
    return jobs


# A key of ``scontrol -o``'s ``Key=Value`` pairs, after a space: letters first, then what keys
# hold (``AllocNode:Sid``, ``CPUs/Task``, ``NtasksPerN:B:S:C``).
_KEY = re.compile(r"(?:^|(?<= ))([A-Za-z][A-Za-z0-9_/:]*)=")


def scontrol_fields(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` record as a dict. A value may hold spaces (a job name, a
    reason): it runs up to the next `` Key=``. A value that itself holds `` word=`` cannot be
    told from a new key; the fields pbtrun sets (name, comment) never do."""
    keys = list(_KEY.finditer(line))
    fields: dict[str, str] = {}
    for index, key in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(line)
        # A key seen twice keeps its first value: the job's own fields come before its steps'.
        fields.setdefault(key.group(1), line[key.end() : end].rstrip())
    return fields


def parse_scontrol_job(text: str) -> list[JobState]:
    """Every record of ``scontrol show job -o`` (one line each; an array's id lists its tasks)."""
    jobs = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        fields = scontrol_fields(line.strip())
        if "JobId" not in fields or "JobState" not in fields:
            raise BackendError(
                f"scontrol printed the line {_quote(line)}, which is not a job record "
                "(`scontrol show job -o` prints `JobId=... JobState=...` on one line per job)."
            )
        array_job_id = fields.get("ArrayJobId")
        task = fields.get("ArrayTaskId")
        if array_job_id and task:
            task_ids = parse_array_ids(task)
            # Written as squeue writes it: a task alone, pending tasks in brackets.
            job_id = f"{array_job_id}_{task}" if task.isdigit() else f"{array_job_id}_[{task}]"
        else:
            array_job_id, task_ids, job_id = None, (), fields["JobId"]
        jobs.append(
            JobState(
                job_id=job_id,
                array_job_id=array_job_id,
                task_ids=task_ids,
                state=fields["JobState"],
                reason=fields.get("Reason", ""),
                nodes=_value(fields.get("NodeList", "")),
                comment=_value(fields.get("Comment", "")),
                name=fields.get("JobName", ""),
                exit_code=exit_code(fields.get("ExitCode", "")),
            )
        )
    return jobs


def parse_max_array_size(config_text: str) -> int:
    """``MaxArraySize`` from ``scontrol show config`` (task ids run from 0 to one less than it)."""
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)\s*$", config_text, re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE


def array_spec(task_ids: Sequence[int], throttle: int | None = None) -> str:
    """The shortest plain ``sbatch --array`` value for these task ids: ``0-3,7,9-10%4``.

    Order and repeats in ``task_ids`` do not matter; ``throttle`` becomes ``%N`` (at most N of
    the tasks run at once)."""
    ids = sorted(set(task_ids))
    if not ids:
        raise ValueError("an array needs at least one task id")
    if ids[0] < 0:
        raise ValueError(f"array task ids are not negative: {ids[0]}")
    if throttle is not None and throttle < 1:
        raise ValueError(f"an array's throttle is at least 1: {throttle}")
    runs: list[str] = []
    first = last = ids[0]
    for task in [*ids[1:], None]:
        if task is not None and task == last + 1:
            last = task
            continue
        runs.append(str(first) if first == last else f"{first}-{last}")
        if task is not None:
            first = last = task
    return ",".join(runs) + (f"%{throttle}" if throttle is not None else "")


def exit_code(field: str) -> int | None:
    """scontrol's ``ExitCode=code:signal`` as one number: the code, or -signal where a signal
    ended the job (``3:0`` is 3, ``0:9`` is -9), as a process's return code is read locally.
    ``None`` where Slurm gives none."""
    value = field.strip()
    if value in ("", *_UNSET):
        return None
    found = re.fullmatch(r"(\d+):(\d+)", value)
    if found is None:
        raise BackendError(f"{_quote(field)} is not an exit code as Slurm writes it (`code:signal`, such as `3:0`).")
    code, signal = int(found.group(1)), int(found.group(2))
    return -signal if signal else code


def _value(field: str) -> str:
    """A field Slurm left unset ("(null)", "N/A") reads as ""."""
    return "" if field in _UNSET else field


def _quote(text: str) -> str:
    """Text Slurm printed, quoted for a message: one line, cut where it is long."""
    flat = text.strip().replace("\n", " | ")
    return repr(flat if len(flat) <= 200 else flat[:200] + "...")
