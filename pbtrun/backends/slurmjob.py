"""What runs inside a cluster's job: one experiment's attempt, exactly as the local backend runs it.

``python -m pbtrun.backends.slurmjob MANIFEST [INDEX]`` is what a job runs: the Slurm job
script's last line, or the ``{command}`` of a ``[template]`` submission. The manifest (JSON,
written by the backend before the job is submitted, on the file system the nodes share) lists the
attempts of one submission; the job runs the one at ``INDEX``, else (a Slurm array task) at its
``SLURM_ARRAY_TASK_ID``. An explicit index wins: a template's job may inherit that variable from
a ``pbtrun up`` that itself runs inside a Slurm array, and must not take it for its own. The attempt gets
the same argv, environment (``PBTRUN_*`` included), working directory and log as a local one:
the log opens with the same two records, filled here, so ``status``, ``logs`` and resume read a
Slurm attempt's true exit status from the shared file system even where Slurm accounting is off.

Signals the job gets (``scancel``, the time limit's SIGTERM, a template's ``cancel``) are passed
on to the experiment's process group, and its own exit status is what is recorded. They are
passed on from before the pid record is written: a backend that sees the record may cancel.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from pbtrun.backends import logrecords
from pbtrun.printable import printable
from pbtrun.proc import process_start_time

if TYPE_CHECKING:
    from pbtrun.backends.base import LaunchRequest

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def header(task: dict[str, Any], node: str, started_at: float) -> str:
    """The lines after the records, as the local backend writes them (``launches.header``)."""
    when = time.strftime(logrecords.HEADER_TIME, time.localtime(started_at))
    return (
        f"# pbtrun: {printable(task['name'])}, attempt {task['attempt']}, started {when} on {printable(node)}\n"
        f"# cwd: {printable(task['cwd'])}\n# gpus: {task['gpus']}\n# argv: {printable(shlex.join(task['argv']))}\n"
    )


def claim(log: str) -> int | None:
    """Open the attempt's log for writing, creating it; a log that exists already is this same
    task run again by Slurm (requeued, preempted) and is written over, unless resume abandoned
    the attempt meanwhile (None: then it must not run)."""
    try:
        return os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        found = logrecords.read_records(log)
        if found is not None and found[0] is not None and found[0].get("abandoned"):
            return None
        return os.open(log, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)


def run(task: dict[str, Any]) -> int:
    """Run one attempt to its end; the exit status a shell would report for it."""
    log = claim(task["log"])
    if log is None:
        return 0
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()  # the node as Slurm names it
    started_at = time.time()
    os.write(log, logrecords.records() + header(task, node, started_at).encode())
    env = {**os.environ, **task["env"]}
    try:
        child = subprocess.Popen(
            task["argv"], cwd=task["cwd"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        os.write(log, f"pbtrun: cannot run {task['argv'][0]!r}: {exc.strerror}\n".encode())
        code = 126 if isinstance(exc, PermissionError) else 127
        logrecords.fill(log, len(logrecords.EXIT_PREFIX), logrecords.EXIT_WIDTH, _exit(code, None))
        return code
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _forward(child.pid, s))
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if job else os.environ.get("SLURM_JOB_ID", "")
    record = {"pid": child.pid, "start": process_start_time(child.pid), "at": started_at, "job": job_id, "node": node}
    logrecords.fill(log, logrecords.PID_OFFSET + len(logrecords.PID_PREFIX), logrecords.PID_WIDTH, record)
    returncode = child.wait()
    logrecords.fill(log, len(logrecords.EXIT_PREFIX), logrecords.EXIT_WIDTH, _exit(returncode, child.pid))
    os.fsync(log)
    os.close(log)
    return returncode if returncode >= 0 else 128 - returncode


def _exit(returncode: int, pid: int | None) -> dict[str, Any]:
    return {"returncode": returncode, "ended_at": time.time(), "pid": pid}


def _forward(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def task_of(request: LaunchRequest, sweep_dir: str, gpus: str) -> dict[str, Any]:
    """The manifest's entry for one attempt: what :func:`run` needs, in JSON. ``gpus``: how the
    header describes the GPUs (the cluster gives them, so pbtrun cannot name them)."""
    exp, attempt = request.experiment, request.attempt
    argv = list(request.argv)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the Python that runs pbtrun, as the local backend does
    return {
        "id": exp.id,
        "name": exp.name,
        "attempt": attempt.number,
        "argv": argv,
        "env": dict(request.env),
        "cwd": request.cwd,
        "log": os.path.join(sweep_dir, attempt.log),
        "gpus": gpus,
    }


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        manifest = json.load(f)
    index = argv[2] if len(argv) > 2 else os.environ.get("SLURM_ARRAY_TASK_ID", "0")
    return run(manifest["tasks"][int(index)])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
