"""An attempt as its log tells it: how it ended, once its exit record is written, and, for
``status`` while no scheduler runs, what it is now.

Every backend writes the same records (``logrecords.py``), so these read any attempt's log;
``status`` and ``logs`` import this module, not a backend.
"""

from __future__ import annotations

from pbtrun.backends import logrecords
from pbtrun.backends.base import Outcome
from pbtrun.proc import process_start_time
from pbtrun.state.records import (
    SEEN_ENDED,
    SEEN_LOST,
    SEEN_NOT_STARTED,
    SEEN_RUNNING,
    SEEN_UNKNOWN,
    Observed,
)


def observe(log: str, same_host: bool = True) -> Observed:
    """Read-only: what the attempt logged in ``log`` is now, for ``status`` when no scheduler
    runs and the state still says "running" (only a scheduler records what became of it).
    Nothing is written, claimed or signalled: the next scheduler settles it (``settle``).
    A pid is only checked on ``same_host``: another machine's pids mean nothing here."""
    found = logrecords.read_records(log)
    if found is None:
        return Observed(SEEN_NOT_STARTED)
    exit_record, pid_record = found
    if exit_record is not None and exit_record.get("abandoned"):
        return Observed(SEEN_NOT_STARTED)
    outcome = exit_outcome(log) if exit_record is not None else None
    if outcome is not None:
        return Observed(SEEN_ENDED, outcome.returncode, outcome.ended_at)
    if pid_record is None or not same_host:
        return Observed(SEEN_UNKNOWN)
    pid, start = pid_record.get("pid"), pid_record.get("start")
    if isinstance(pid, int) and start is not None and process_start_time(pid) == start:
        return Observed(SEEN_RUNNING)
    outcome = exit_outcome(log)  # it may have ended just now: its reaper writes the record at once
    return Observed(SEEN_LOST) if outcome is None else Observed(SEEN_ENDED, outcome.returncode, outcome.ended_at)


def exit_outcome(log: str) -> Outcome | None:
    """The outcome the log's exit record holds, if it is written (and not an abandon)."""
    found = logrecords.read_records(log)
    if found is None or found[0] is None or found[0].get("abandoned"):
        return None
    return outcome_of(*found)


def outcome_of(record: dict, pid_record: dict | None = None) -> Outcome | None:
    """The outcome an exit record holds (None if it is malformed); when it started, from the pid record."""
    try:
        started_at = (pid_record or {}).get("at")
        return Outcome(
            int(record["returncode"]),
            float(record["ended_at"]),
            record.get("pid"),
            started_at=float(started_at) if started_at is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_pid_record(log: str) -> dict | None:
    """The log's pid record, once its reaper has written it."""
    found = logrecords.read_records(log)
    return found[1] if found and found[1] else None
