"""Read-only facts about processes from ``/proc`` (Linux)."""

from __future__ import annotations


def process_start_time(pid: int) -> int | None:
    """The start time of a live process in clock ticks since boot, or None if it is gone.

    A pid plus its start time names one process for the life of the machine: a recycled pid
    has a different start time. Zombies count as gone: they will never run again.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])
