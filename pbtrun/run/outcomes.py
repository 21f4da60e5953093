"""How an attempt's outcome becomes its experiment's next status: pure rules, no I/O.

Both the scheduler's rounds and its reconciling after a crash go through :func:`after_end`, so
an attempt that ended while no scheduler ran is judged exactly as one that ended under watch.
"""

from __future__ import annotations

from pbtrun.backends.base import Outcome
from pbtrun.state.records import (
    EXITED,
    FAILED,
    INTERRUPTED,
    LOST,
    NOT_STARTED,
    PENDING,
    RUNNABLE,
    STOPPED,
    SUCCEEDED,
    TIMED_OUT,
    Attempt,
    Experiment,
    Sweep,
)

EXIT_INTERRUPTED = 130


def stopped_by_pbtrun(attempt: Attempt, outcome: Outcome) -> str | None:
    """ "stop" or "timeout" if the attempt ended after pbtrun signalled it, else None.

    An attempt that ended after pbtrun signalled it counts as stopped whatever its exit status:
    many training scripts save a checkpoint and exit 0 on SIGINT, and such a run is interrupted,
    not finished; resuming it is the safe side. One that ended before the signal went out (its
    end was on its way) keeps its own outcome.
    """
    if attempt.stop_at is None or outcome.ended_at < attempt.stop_at:
        return None
    return attempt.stop_reason


def after_end(exp: Experiment, outcome: Outcome, stopped_for: str | None) -> Experiment:
    """The experiment after its last attempt ended with ``outcome``; ``stopped_for`` is why
    pbtrun stopped it ("stop" or "timeout"), None if it ended by itself. A failure within
    ``max_retries`` goes back to pending."""
    last = exp.last
    assert last is not None
    timed_out = stopped_for == "timeout"
    common = {"ended_at": outcome.ended_at, "returncode": outcome.returncode, "pid": outcome.pid or last.pid}
    if outcome.end_state is not None:
        common["end_state"] = outcome.end_state
    if outcome.started_at is not None:  # it ran earlier than this attempt says (a state behind its logs)
        common["started_at"] = min(outcome.started_at, last.started_at)
    if not outcome.started:
        return exp.to(PENDING, last._replace(outcome=NOT_STARTED, **common))
    if stopped_for == "stop":  # stopped on purpose: it runs again, whatever its exit status
        return exp.to(INTERRUPTED, last._replace(outcome=STOPPED, **common))
    if outcome.returncode is None and not timed_out:  # it may have succeeded: run again only if asked
        return exp.to(FAILED, last._replace(outcome=LOST, **common))
    if outcome.returncode == 0 and not timed_out:
        return exp.to(SUCCEEDED, last._replace(outcome=EXITED, **common))
    exp = exp.to(FAILED, last._replace(outcome=TIMED_OUT if timed_out else EXITED, **common))
    failures = sum(1 for a in exp.attempts if a.outcome == TIMED_OUT or (a.outcome == EXITED and a.returncode))
    return exp.to(PENDING) if failures <= exp.spec.max_retries else exp


def outcome_lost(exp: Experiment) -> bool:
    """Whether the experiment's last attempt ended with an outcome nobody can know."""
    return exp.last is not None and exp.last.outcome == LOST


def exit_code(sweep: Sweep, stopped: bool) -> int:
    """What ``up`` and ``resume`` exit with: 130 if a stop left work undone, else 0 if every
    experiment succeeded, 1 if not."""
    live = [e for e in sweep.experiments.values() if not e.removed]
    if stopped and any(e.status in RUNNABLE for e in live):
        return EXIT_INTERRUPTED
    return 0 if all(e.status == SUCCEEDED for e in live) else 1
