"""Process groups: each local experiment runs in one, and a stop reaches all of it.

The reaper starts every experiment as the leader of a new process group, so that a stop reaches
whatever the experiment started too (data loaders, a shell's children). When the leader ends
under a stop while others of its group live on (a child that ignores SIGINT), the stop is
carried on to them, step by step, until the group is empty: no orphan outlives a stop, which on
resume would run beside the new attempt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence

from pbtrun.backends.base import StopStep
from pbtrun.proc import group_has_live_process

LINGER_CHECK_S = 0.1  # how often a stopped experiment's leftover processes are looked for (stops only)


def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group, also one whose leader has ended (see :func:`group_alive`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int, zombies: bool = True) -> bool:
    """Whether any process of the group still exists (``zombies``: unreaped ones count; else
    only those that run, a slower look). The group's id cannot be given to a new group while
    one of its processes exists, so a live group is still the experiment's."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return zombies or group_has_live_process(pgid)


class LingeringGroups:
    """Groups of stopped experiments whose leader has ended while others of the group live on,
    each with the steps of its stop still to come."""

    def __init__(self) -> None:
        self.steps: dict[int, list[StopStep]] = {}  # by process group id

    def __bool__(self) -> bool:
        return bool(self.steps)

    def add(self, pgid: int, steps: Sequence[StopStep]) -> None:
        """Carry the rest of a stop on to group ``pgid``, if anything of it still lives."""
        if steps and group_alive(pgid):
            self.steps[pgid] = list(steps)

    def next_check_at(self) -> float | None:
        """When to look again (``time.monotonic()``), while any group lingers."""
        return time.monotonic() + LINGER_CHECK_S if self.steps else None

    def advance(self, now: float) -> None:
        """Take every step that is due; forget the groups that are empty."""
        for pgid, steps in list(self.steps.items()):
            while steps and steps[0][0] <= now:
                signal_group(pgid, steps[0][1])
                steps.pop(0)
            # Once SIGKILL went out, zombies nobody reaps (no init in a container) do not count.
            if not group_alive(pgid, zombies=bool(steps)):
                del self.steps[pgid]
            elif not steps:  # SIGKILL went out: the group is gone within a moment
                steps.append((now + LINGER_CHECK_S, signal.SIGKILL))
