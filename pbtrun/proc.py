"""Facts about processes from ``/proc`` (Linux), and the one process setting the scheduler makes
(it becomes a child subreaper)."""

from __future__ import annotations

import os
from collections.abc import Iterator

PR_SET_CHILD_SUBREAPER = 36


def hostname() -> str:
    """This machine's name, as ``gethostname(2)`` gives it (the kernel's node name), without
    importing ``socket``, whose import ``pbtrun status`` would otherwise pay at every start."""
    return os.uname().nodename


def process_start_time(pid: int) -> int | None:
    """The start time of a live process in clock ticks since boot, or None if it is gone.

    A pid plus its start time names one process for the life of the machine: a recycled pid
    has a different start time. Zombies count as gone: they will never run again.
    """
    fields = _running_stat(pid)
    return None if fields is None else int(fields[19])


def _running_stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if the
    process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields if fields and fields[0] not in (b"Z", b"X") else None


def group_members(pgid: int) -> list[int]:
    """The pids of the running processes of group ``pgid`` (zombies aside). Scans /proc."""
    try:
        return list(_group_pids(pgid))
    except OSError:
        return []


def group_has_live_process(pgid: int) -> bool:
    """Whether any process of group ``pgid`` runs, zombies aside: in a container whose first
    process reaps nothing, a killed orphan stays a zombie for good, yet still counts for kill(0).
    Scans /proc: for the end of a stop only, not for every check."""
    try:
        return next(_group_pids(pgid), None) is not None
    except OSError:
        return True  # cannot tell: assume it runs (the caller keeps sending SIGKILL)


def _group_pids(pgid: int) -> Iterator[int]:
    for name in os.listdir("/proc"):
        fields = _running_stat(name) if name.isdigit() else None  # None too if gone meanwhile
        if fields is not None and len(fields) > 2 and int(fields[2]) == pgid:
            yield int(name)


def become_subreaper() -> bool:
    """Make this process the one that inherits its descendants' orphans (``prctl(2)``
    ``PR_SET_CHILD_SUBREAPER``), so that an experiment whose reaper died becomes our child and
    its true exit status can still be waited for. False where the kernel refuses."""
    import ctypes  # here, not at the top: only the scheduler needs it, after its first launches

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_code_of(status: os.waitid_result) -> int:
    """The return code a ``waitid`` result stands for, as subprocess gives it (-N: signal N)."""
    return status.si_status if status.si_code == os.CLD_EXITED else -status.si_status
