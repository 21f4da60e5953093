"""Stops and timeouts: which running experiments pbtrun stops, why, and when each signal goes out.

A stop is the same for every backend: SIGINT, SIGTERM once the grace has passed, SIGKILL
:data:`KILL_AFTER_TERM_S` later; a second Ctrl-C or ``stop --now`` skips to SIGKILL. This module
keeps the timing; the backend's ``signal`` does the act. Why pbtrun stopped an attempt is
remembered so that its end is judged as pbtrun's doing (see
:func:`pbtrun.run.outcomes.stopped_by_pbtrun`), also when recording the stop failed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from pbtrun.backends.base import Outcome, StopStep
from pbtrun.run.outcomes import stopped_by_pbtrun
from pbtrun.state.records import Experiment

KILL_AFTER_TERM_S = 5.0
RETRY_SIGNAL_S = 0.02  # a signal for an attempt that has not started yet is tried again this soon


class Stops:
    """Every stop under way and every timeout to come, by experiment id."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.steps: dict[str, list[StopStep]] = {}  # the signals still to send, and when
        self.deadlines: dict[str, float] = {}  # monotonic time its timeout_min runs out
        self.reasons: dict[str, str] = {}  # why pbtrun stops it: "stop" or "timeout"
        self.signalled: dict[str, tuple[float, str]] = {}  # time.time() of its first signal, and why

    def time_out_at(self, exp_id: str, deadline: float) -> None:
        self.deadlines[exp_id] = deadline

    def stop(self, exp_id: str, now: bool, why: str) -> None:
        """Stop an experiment: SIGINT at once, SIGTERM after the grace, SIGKILL 5 s later; with
        ``now``, SIGKILL at once. A graceful stop already under way keeps its schedule."""
        start = time.monotonic()
        self.reasons.setdefault(exp_id, why)
        if now:
            self.steps[exp_id] = [(start, signal.SIGKILL)]
        elif exp_id not in self.steps:
            term_at = start + self.grace_s
            self.steps[exp_id] = [
                (start, signal.SIGINT),
                (term_at, signal.SIGTERM),
                (term_at + KILL_AFTER_TERM_S, signal.SIGKILL),
            ]

    def next_at(self) -> float | None:
        """When the next signal or timeout is due (monotonic time), if any."""
        times = [steps[0][0] for steps in self.steps.values() if steps]
        times += self.deadlines.values()
        return min(times) if times else None

    def timed_out(self, now: float) -> list[str]:
        """The experiments whose timeout has come (each only once)."""
        due = [exp_id for exp_id, deadline in self.deadlines.items() if deadline <= now]
        for exp_id in due:
            del self.deadlines[exp_id]
        return due

    def first_signals_due(self, now: float) -> list[str]:
        """The experiments whose first signal is due: their stop is to be recorded before it goes out."""
        return [e for e, steps in self.steps.items() if steps and steps[0][0] <= now and e not in self.signalled]

    def signalling(self, exp_ids: list[str], at: float) -> None:
        """Remember that these experiments' first signal goes out at ``at`` (time.time())."""
        for exp_id in exp_ids:
            self.signalled[exp_id] = (at, self.reasons[exp_id])

    def send_due(self, now: float, send: Callable[[str, int], bool]) -> None:
        """Send every signal that is due through ``send(exp_id, signal)``, which answers False
        for an attempt that has not started yet (it is tried again shortly)."""
        for exp_id, steps in self.steps.items():
            while steps and steps[0][0] <= now:
                if not send(exp_id, steps[0][1]):
                    steps[0] = (now + RETRY_SIGNAL_S, steps[0][1])
                    break
                # The grace counts from when this signal really went out (recording the stop, or
                # retries, may have delayed it), so the next one never comes early.
                late = time.monotonic() - steps.pop(0)[0]
                if late > 0:
                    steps[:] = [(at + late, sig) for at, sig in steps]

    def forget(self, exp_id: str) -> list[StopStep] | None:
        """Its attempt ended: drop its timers; the steps of its stop that were still to come."""
        self.deadlines.pop(exp_id, None)
        self.reasons.pop(exp_id, None)
        return self.steps.pop(exp_id, None)

    def why_ended(self, exp: Experiment, outcome: Outcome) -> str | None:
        """ "stop" or "timeout" if pbtrun's signal ended the attempt, None if it ended by itself.
        The state records the signal; this memory too, in case recording it failed (a full disk)."""
        signalled, last = self.signalled.pop(exp.id, None), exp.last
        if last is None:
            return None
        if last.stop_at is None and signalled is not None:
            last = last._replace(stop_at=signalled[0], stop_reason=signalled[1])
        return stopped_by_pbtrun(last, outcome)
