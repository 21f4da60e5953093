"""Our experiments without their reaper: found, checked and waited for through the process table.

A reaper can die (the OOM killer, a kill command) while its experiments run on. They are then
found by the pid record in their log, or, if the reaper died between spawning one and recording
its pid, by the ``PBTRUN_*`` variables in its environment; and watched through a pidfd until
they end. Nothing here trusts a pid record alone: anyone who can write in a sweep directory can
write one, so a process counts as an attempt's only if it also carries the attempt's identity.
"""

from __future__ import annotations

import contextlib
import os
import time

from pbtrun.backends import logrecords
from pbtrun.backends.base import Outcome
from pbtrun.proc import exit_code_of, group_members, process_start_time


def identity(sweep_dir: str, name: str, attempt: int) -> tuple[bytes, ...]:
    """The environment entries every process of an attempt carries (the scheduler sets them)."""
    return (
        f"PBTRUN_SWEEP_DIR={sweep_dir}".encode(),
        f"PBTRUN_EXPERIMENT={name}".encode(),
        f"PBTRUN_ATTEMPT={attempt}".encode(),
    )


def belongs(record: dict, markers: tuple[bytes, ...]) -> bool:
    """Whether a pid record names the process group of the attempt ``markers`` identify: its
    leader runs, started when the record says, and carries the markers in its environment; or,
    its leader gone, a process of the group still carries them, or none is left to signal.
    Without this, resume would adopt and ``stop --now`` kill whatever process a forged record
    names."""
    pid, start = record.get("pid"), record.get("start")
    if not isinstance(pid, int) or pid <= 1:
        return False
    started = process_start_time(pid)
    if started is not None:
        return started == start and carries(pid, markers)
    members = group_members(pid)
    return not members or any(carries(member, markers) for member in members)


def carries(pid: int, markers: tuple[bytes, ...]) -> bool:
    """Whether process ``pid``'s environment holds every marker."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = set(f.read().split(b"\0"))
    except OSError:
        return False
    return all(m in env for m in markers)


def pidfd(pid: object, start: object) -> int | None:
    """A pidfd on process ``pid`` if it still runs and started at ``start`` (not a recycled pid)."""
    if not isinstance(pid, int) or start is None or process_start_time(pid) != start:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != start:  # recycled between the check and the open
        os.close(fd)
        return None
    return fd


def pidfd_by_environ(markers: tuple[bytes, ...]) -> int | None:
    """A pidfd on the process-group leader whose environment holds every marker, if any."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        with contextlib.suppress(OSError):
            if carries(pid, markers) and os.getpgid(pid) == pid:
                return pidfd(pid, process_start_time(pid))
    return None


def pid_of(fd: int) -> int | None:
    """The pid a pidfd refers to (from /proc/self/fdinfo)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def find(found: tuple | None, markers: tuple[bytes, ...]) -> int | None:
    """A pidfd on the experiment of an attempt whose reaper died, if it still runs: found by the
    pid record of its log's records (``found``), or, if the reaper died between spawning it and
    recording its pid, by the attempt's ``markers`` in its environment."""
    if found is None:
        return None  # no log: the reaper never claimed the attempt, so never started it
    record = found[1]
    if record is not None and belongs(record, markers):
        return pidfd(record.get("pid"), record.get("start"))
    return pidfd_by_environ(markers)


def wait_for(log: str, pid: int | None, fd: int | None) -> Outcome | None:
    """How an orphan ended (by its pidfd ``fd``, else its ``pid``), if it has become our child
    (the scheduler is a child subreaper) and ended; None if it is not ours to wait for."""
    status = None
    with contextlib.suppress(ChildProcessError, OSError):
        if fd is not None:
            status = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
        elif pid is not None:
            status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
    return None if status is None else reaped(log, status)


def our_zombie(pid: object) -> bool:
    """Whether ``pid`` is a child of ours that has ended and waits to be reaped."""
    if not isinstance(pid, int):
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


def reaped(log: str, status: os.waitid_result) -> Outcome:
    """The outcome of an orphan we waited for; its log's exit record is written as its reaper
    would have (best effort: the state records it all the same)."""
    outcome = Outcome(exit_code_of(status), time.time(), status.si_pid)
    with contextlib.suppress(OSError):
        logrecords.write_exit(log, exit_code_of(status), outcome.ended_at, status.si_pid)
    return outcome
