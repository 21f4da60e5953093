"""Which GPU processes are pbtrun's experiments: read from the process's own environment.

pbtrun sets ``PBTRUN_SWEEP_DIR`` and ``PBTRUN_EXPERIMENT`` for every experiment, and its children
inherit them, so a training script's worker processes are found too. A process of another user
or of another pid namespace (NVML reports host pids inside a container) cannot be read: it is
then simply not known to be pbtrun's.
"""

from __future__ import annotations

from collections.abc import Iterable


def owner(pid: int) -> tuple[str, str] | None:
    """(sweep dir, experiment name) of process ``pid`` if it is one of pbtrun's experiments (or
    their children), else None, also when its environment cannot be read."""
    try:
        with open(f"/proc/{int(pid)}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    found: dict[bytes, str] = {}
    for entry in entries:
        name, sep, value = entry.partition(b"=")
        if sep and name in (b"PBTRUN_SWEEP_DIR", b"PBTRUN_EXPERIMENT"):
            found[name] = value.decode(errors="replace")
    sweep, experiment = found.get(b"PBTRUN_SWEEP_DIR"), found.get(b"PBTRUN_EXPERIMENT")
    return (sweep, experiment) if sweep and experiment else None


def owners(pids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """The owner of each of ``pids`` that is pbtrun's (see :func:`owner`)."""
    return {pid: found for pid in set(pids) if (found := owner(pid)) is not None}
