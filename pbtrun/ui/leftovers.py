"""What is left of a sweep whose ``pbtrun.json`` is gone, found without changing anything.

A sweep directory without its state file but with the backup, a journal with entries or attempt
logs held a sweep that ran: its history is still there, in the backup and the logs. Starting a
new sweep over it would run succeeded experiments again and replace the backup, the one copy of
that history, with the new state. So ``up`` refuses, and ``status``, ``resume``, ``stop`` and
``logs`` say the same thing instead of "no sweep here": what is left and the exact command that
restores it. Nothing here writes, renames or deletes a file.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from pbtrun.errors import StateError
from pbtrun.state.paths import SweepPaths, is_sweep, subdirectories


def what_is_left(sweep_dir: Path) -> list[str]:
    """What a sweep left in ``sweep_dir`` besides its state file, in words; empty if nothing
    (or if the state file is there: then it is simply a sweep)."""
    paths = SweepPaths(sweep_dir)
    if is_sweep(sweep_dir) or not sweep_dir.is_dir():
        return []
    found = []
    if paths.backup.is_file():
        found.append(f"the backup {paths.backup.name}")
    if _journal_has_entries(paths.journal):
        found.append(f"the journal {paths.journal.name}")
    logs = _count_logs(paths.logs)
    if logs:
        found.append(f"{logs} attempt log{'s' if logs != 1 else ''} in {paths.logs.name}/")
    return found


def _journal_has_entries(journal: Path) -> bool:
    """The journal is preallocated with zeros and written from its start: one byte tells."""
    try:
        with open(journal, "rb") as f:
            first = f.read(1)
    except OSError:
        return False
    return first not in (b"", b"\0")


def _count_logs(logs: Path) -> int:
    """How many attempt logs ``logs`` holds; 0 unless one of them is pbtrun's (it opens with
    the reaper's exit record), so another tool's ``logs/`` folder is not taken for a sweep's."""
    try:
        with os.scandir(logs) as entries:
            names = [e.path for e in entries if e.name.endswith(".log") and not e.name.startswith(".")]
    except OSError:
        return 0
    from pbtrun.backends.logrecords import is_log  # the log's format; only when a pbtrun.json is missing

    return len(names) if any(is_log(p) for p in names) else 0


def lost_state_message(sweep_dir: Path, found: list[str]) -> str:
    """One paragraph: what is missing, what is left, and the commands that restore or start over."""
    paths = SweepPaths(sweep_dir)
    where = shlex.quote(str(sweep_dir))
    head = (
        f"{sweep_dir}: {paths.state.name}, the sweep's state, is missing, but its history is still here "
        f"({', '.join(found)}); pbtrun starts no new sweep over it and leaves these files alone."
    )
    if paths.backup.is_file():
        restore = (
            f" To restore the backup: cp {shlex.quote(str(paths.backup))} {shlex.quote(str(paths.state))}, "
            "then run the command again (the backup is one write behind; what ran after it was "
            "written is settled from the attempts' logs, not run again)."
        )
    else:
        restore = f" No backup ({paths.backup.name}) is left to restore it from."
    start_over = (
        f" To start over instead: mv {where} {shlex.quote(str(sweep_dir) + '.old')}, or rm -r {where} "
        "(which also deletes what its experiments wrote there)."
    )
    return head + restore + start_over


def refuse_lost_state(sweep_dir: Path) -> None:
    """Raise :class:`StateError` if ``sweep_dir`` is a sweep that lost its state file, or if
    something that is not a file (a directory, a dangling link) stands where it would be."""
    state = sweep_dir / "pbtrun.json"
    if os.path.lexists(state) and not state.is_file():
        raise StateError(
            f"{state}: is there but is not a file, so pbtrun can neither read a sweep's state there nor "
            "write one. Move it aside (or give the sweep another name), then run the command again."
        )
    found = what_is_left(sweep_dir)
    if found:
        raise StateError(lost_state_message(sweep_dir, found))


def lost_sweeps(train_dir: Path) -> list[Path]:
    """Directories directly under ``train_dir`` that are sweeps without their state file."""
    return [p for p in subdirectories(train_dir) if what_is_left(p)]
