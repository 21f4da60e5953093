"""What the local backend sends a reaper to start an attempt, and the end of a launch that no
reaper could be given.

A request carries only what the experiment adds to pbtrun's environment (the reaper has the
rest already) and the header the attempt's log opens with, composed here so that the reaper
only writes bytes.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Sequence
from typing import Any

from pbtrun.backends import logrecords
from pbtrun.backends.base import LaunchRequest, Outcome
from pbtrun.errors import WRITE_FAILED, BackendFault
from pbtrun.printable import printable
from pbtrun.state.records import Attempt, Experiment


def message(request: LaunchRequest, argv: list[str], log: str) -> dict[str, Any]:
    """The launch request for the reaper (``argv`` as run: ``python`` resolved)."""
    exp, attempt = request.experiment, request.attempt
    return {
        "op": "launch",
        "id": exp.id,
        "attempt": attempt.number,
        "argv": argv,
        "cwd": request.cwd,
        "env": request.env,
        "header": header(exp, attempt, request.cwd, argv),
        "log": log,
    }


def header(exp: Experiment, attempt: Attempt, cwd: str, argv: Sequence[str]) -> str:
    """The lines after the records: what ran (``argv`` as run: ``python`` resolved), where, on
    which GPUs. Each is one line whatever the values hold (a newline in an argument is written
    ``\\n``): readers of the log skip exactly these lines."""
    when = time.strftime(logrecords.HEADER_TIME, time.localtime(attempt.started_at))
    gpus = "not pinned" if attempt.gpus is None else ",".join(map(str, attempt.gpus))
    if attempt.gpu_uuids is not None:
        gpus += f" ({', '.join(u or '?' for u in attempt.gpu_uuids)})"
    return (
        f"# pbtrun: {printable(exp.name)}, attempt {attempt.number}, started {when} on {printable(attempt.host)}\n"
        f"# cwd: {printable(cwd)}\n# gpus: {gpus}\n# argv: {printable(shlex.join(argv))}\n"
    )


def refused(log: str, name: str, header: str, why: str) -> Outcome:
    """A launch no reaper could be given: it ends at once with 127, as a command that cannot
    be executed does, and its log (claimed here, as a reaper claims one) says why."""
    text = f"pbtrun: cannot start {name}: {why}\n"
    now = time.time()
    record = json.dumps({"ended_at": now, "pid": None, "returncode": 127}).encode()
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, logrecords.records(record) + header.encode() + text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        what = f"cannot start {{name}}: {why}; nor write its log: {exc.strerror}"
        return Outcome(None, now, fault=BackendFault(WRITE_FAILED, what, exc.errno))
    return Outcome(127, now)
