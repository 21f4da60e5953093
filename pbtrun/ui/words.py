"""How pbtrun says where experiments stand, alike in every view, table and message: a status
with what explains it (``failed (SIGKILL)``, ``lost``), how an attempt ended, a duration, the
symbol and colour of each status, the command that continues a sweep; and which experiments
``status`` selects (:class:`Filters`).

Plain strings, no rich: the plain view (pipes, ``--plain``) says the same words without it.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Mapping
from typing import NamedTuple

from pbtrun.state.records import (
    FAILED,
    INTERRUPTED,
    LOST,
    NOT_STARTED,
    PENDING,
    RUNNABLE,
    RUNNING,
    SEEN_ENDED,
    SEEN_LOST,
    SEEN_NOT_STARTED,
    SEEN_RUNNING,
    STATUSES,
    STOPPED,
    SUCCEEDED,
    TIMED_OUT,
    Attempt,
    Experiment,
    Observed,
    Sweep,
)
from pbtrun.state.store import SweepPaths

SYMBOLS = {SUCCEEDED: "✔", FAILED: "✘", RUNNING: "●", PENDING: "○", INTERRUPTED: "⏸"}
STYLES = {SUCCEEDED: "green", FAILED: "red", RUNNING: "cyan", PENDING: "dim", INTERRUPTED: "yellow"}


class Filters(NamedTuple):
    """Which experiments ``status`` shows (in its table and in ``--json``): the selected statuses
    (any of them), then a name match.

    ``pending`` also selects interrupted experiments: both are what a resume would run next, which
    is what someone asking "what is left?" wants to see. No status flag selects every status.
    """

    failed: bool = False
    running: bool = False
    pending: bool = False
    grep: str | None = None

    @property
    def statuses(self) -> frozenset[str]:
        chosen = {FAILED} if self.failed else set()
        chosen |= {RUNNING} if self.running else set()
        chosen |= set(RUNNABLE) if self.pending else set()
        return frozenset(chosen or STATUSES)

    @property
    def active(self) -> bool:
        return self.failed or self.running or self.pending or bool(self.grep)

    def match(self, exp: Experiment) -> bool:
        if exp.status not in self.statuses:
            return False
        return not self.grep or self.grep.casefold() in exp.name.casefold()


def real_attempts(exp: Experiment) -> list[Attempt]:
    """Attempts that started a process (a launch abandoned after a crash is not an attempt)."""
    return [a for a in exp.attempts if a.outcome != NOT_STARTED]


def last_attempt(exp: Experiment) -> Attempt | None:
    attempts = real_attempts(exp)
    return attempts[-1] if attempts else None


def status_word(exp: Experiment) -> str:
    """``failed (3)``, ``failed (SIGKILL)``, ``lost``: the status with what explains it, and a batch
    system's word on the end (``failed (SIGTERM, Slurm: TIMEOUT)``)."""
    word = _status_word(exp)
    last = last_attempt(exp)
    if last is not None and last.end_state is not None and exp.status != RUNNING:
        said = f"Slurm: {last.end_state}"
        word = f"{word[:-1]}, {said})" if word.endswith(")") else f"{word} ({said})"
    return word + (" (removed)" if exp.removed else "")


def _status_word(exp: Experiment) -> str:
    last = last_attempt(exp)
    if exp.status == FAILED and last is not None and last.outcome == TIMED_OUT:
        return "failed (timed out)"
    if exp.status == FAILED and last is not None and last.returncode is not None:
        return f"failed ({returncode_word(last.returncode)})"
    if exp.status in (INTERRUPTED, FAILED) and last is not None and last.outcome == LOST:  # interrupted: format 1
        return "lost"
    return exp.status


def observed_word(seen: Observed) -> str:
    """What an experiment the state calls running really is, while no scheduler runs: the state
    says so only once a scheduler records it, hence "not yet recorded"."""
    if seen.state == SEEN_ENDED and seen.returncode is not None:
        return f"ended ({returncode_word(seen.returncode)}), not yet recorded"
    if seen.detail is not None:
        return f"{seen.detail} (no scheduler)"
    return {
        SEEN_RUNNING: "running (no scheduler)",
        SEEN_LOST: "lost, not yet recorded",
        SEEN_NOT_STARTED: "never started, not yet recorded",
    }.get(seen.state, "unknown (no scheduler)")


def observed_status(seen: Observed) -> str:
    """The status an observation amounts to (its symbol and colour in tables)."""
    if seen.state == SEEN_ENDED:
        return SUCCEEDED if seen.returncode == 0 else FAILED
    return {SEEN_LOST: FAILED, SEEN_NOT_STARTED: PENDING}.get(seen.state, RUNNING)


# What a batch system's attempt goes by until its queue gives a job id (slurm.TAG, template.TAG;
# spelled out here: the views must not import the backends).
_TAGS = ("slurm-tag:", "template-tag:")


def job_id(attempt: Attempt, jobs: bool) -> str | None:
    """A batch system's job id (Slurm: ``123_4``; a template's queue: whatever it printed), once
    it gave one; None for a local attempt (``jobs`` False: the sweep's backend is local)."""
    ref = attempt.ref
    return ref if jobs and ref and not ref.startswith(_TAGS) else None


def attempt_word(attempt: Attempt) -> str:
    """How one attempt ended, in a word: ``succeeded``, ``failed (3)``, ``timed out``, ``lost``...;
    with a batch system's word where it had one (``failed (SIGTERM, Slurm: TIMEOUT)``)."""
    word = _attempt_word(attempt)
    if attempt.end_state is None:
        return word
    said = f"Slurm: {attempt.end_state}"
    return f"{word[:-1]}, {said})" if word.endswith(")") else f"{word} ({said})"


def _attempt_word(attempt: Attempt) -> str:
    if attempt.outcome == TIMED_OUT:
        return "timed out"
    if attempt.outcome in (LOST, STOPPED):
        return attempt.outcome
    if attempt.outcome == NOT_STARTED:
        return "not started"
    if attempt.returncode == 0:
        return "succeeded"
    return f"failed ({returncode_word(attempt.returncode)})" if attempt.returncode is not None else "running"


def returncode_word(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no experiments"


def lost_attempts(exp: Experiment) -> int:
    """How many of its attempts were lost (their fate unknowable: the machine rebooted)."""
    return sum(1 for a in exp.attempts if a.outcome == LOST)


def active_counts(sweep: Sweep) -> dict[str, int]:
    """Counts by status of the experiments still in the spec (removed ones are history only)."""
    counts = dict.fromkeys(STATUSES, 0)
    for exp in sweep.experiments.values():
        if not exp.removed:
            counts[exp.status] += 1
    return counts


def resume_hint(paths: SweepPaths, counts: Mapping[str, int], lost: int = 0) -> str | None:
    """The exact command that continues the sweep, or None when nothing is left to do.

    Failed experiments alone stay failed on a plain resume, so for them the command names
    ``--retry-failed`` (``--retry-lost`` where every failure is a ``lost`` one); the directory
    is shell-quoted so the line can be pasted as it is.
    """
    where = shlex.quote(str(paths.dir))
    if any(counts.get(status, 0) for status in (*RUNNABLE, RUNNING)):
        return f"pbtrun resume {where}"
    if counts.get(FAILED, 0):
        return f"pbtrun resume {where} --retry-{'lost' if lost == counts[FAILED] else 'failed'}"
    return None


def lost_count(sweep: Sweep) -> int:
    """Experiments in the spec whose last attempt was lost (failed: their outcome is unknowable)."""
    return sum(1 for e in sweep.experiments.values() if not e.removed and e.status == FAILED and _last_lost(e))


def _last_lost(exp: Experiment) -> bool:
    last = last_attempt(exp)
    return last is not None and last.outcome == LOST
