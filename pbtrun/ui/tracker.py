"""What a run's progress is at each instant, kept by the events the scheduler reports: the
counts by status, the running experiments, the recent failures, the ETA, and a warning when the
first experiments all fail alike.

The scheduler calls the views from its loop, so every event only updates these in-memory
counters, in O(1): nothing is rendered or read from disk there. Both views (:mod:`pbtrun.ui.plain`,
:mod:`pbtrun.ui.live`) keep a :class:`Tracker`; the live view renders its snapshots on rich's
refresh thread.
"""

from __future__ import annotations

import shlex
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pbtrun.state.records import FAILED, PENDING, RUNNING, STATUSES, SUCCEEDED, Attempt, Experiment, Settings, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.logtail import tail_lines
from pbtrun.ui.words import attempt_word, duration, last_attempt

RECENT_FAILURES = 3
# The first experiments of a run all failing the same way, each soon after it started, is the
# sign of a command the app does not accept: said loudly, not left for the summary.
FIRST_ENDS = 3
SOON_S = 60.0


def slots(settings: Settings) -> int:
    """How many experiments the sweep can run at once: ``max_parallel``, or fewer when pinned GPUs run out."""
    if settings.experiments_per_gpu > 0:
        per_experiment = max(1, settings.gpus_per_experiment)
        return max(1, min(settings.max_parallel, len(settings.gpus) * settings.experiments_per_gpu // per_experiment))
    return max(1, settings.max_parallel)


def progress_words(counts: Mapping[str, int], eta_s: float | None) -> str:
    """``12/40 done, 3 running, 1 failed, ETA 4m10s``: the progress both views show."""
    done = counts[SUCCEEDED] + counts[FAILED]
    words = [f"{done}/{sum(counts.values())} done", f"{counts[RUNNING]} running"]
    if counts[FAILED]:
        words.append(f"{counts[FAILED]} failed")
    if eta_s is not None:
        words.append(f"ETA {duration(eta_s)}")
    return ", ".join(words)


class Running(NamedTuple):
    name: str
    gpus: tuple[int, ...] | None
    started_at: float
    log: Path


class Failure(NamedTuple):
    name: str
    word: str  # ``failed (3)``, ``timed out``, ``lost``
    log: Path
    retrying: bool


class Snapshot(NamedTuple):
    """What a view shows at one instant, copied out of the tracker so rendering needs no lock."""

    name: str
    counts: dict[str, int]
    total: int
    done: int
    running: list[Running]
    failures: list[Failure]
    eta_s: float | None
    waiting: str | None = None  # why queued experiments cannot start (GPU memory, busy GPUs)


class Tracker:
    """Progress kept up to date by events, each in O(1): no pass over the sweep, which may hold
    100k experiments, except at ``begin`` and when the sweep grew (a spec merged while it runs).

    Events come from the scheduler's thread and snapshots are taken on rich's refresh thread,
    hence the lock; it is held only for a few dictionary operations.
    """

    def __init__(self, paths: SweepPaths) -> None:
        self.paths = paths
        self._lock = threading.Lock()
        self.name = ""
        self.slots = 1
        self._status_of: dict[str, str] = {}  # by experiment id
        self._counted: Sweep | None = None  # the sweep counted: a reload of the state is another one
        self._counted_size = 0
        self.counts: dict[str, int] = {}
        self.running: dict[str, Running] = {}
        self.failures: deque[Failure] = deque(maxlen=RECENT_FAILURES)
        self.waiting: str | None = None
        self._succeeded_s = [0.0, 0]  # sum and number of succeeded attempts' durations
        self._other_ends_s = [0.0, 0]  # the same for the attempts that ended otherwise
        self._first_ends: list[Failure | None] = []  # how the first attempts to end in this run ended
        self._max_failures_set = False  # then the warning need not suggest it
        self._alarm: str | None = None

    def begin(self, sweep: Sweep) -> None:
        with self._lock:
            self.name = sweep.name
            self.slots = slots(sweep.settings)
            self._max_failures_set = sweep.settings.max_failures is not None
            self._count_all(sweep)
            for exp in sweep.experiments.values():
                last = last_attempt(exp)
                if last is not None and last.duration_s is not None:
                    self._add_duration(last.duration_s, exp.status == SUCCEEDED)
                if exp.status == RUNNING and exp.last is not None:  # adopted from an earlier scheduler
                    self.running[exp.id] = Running(
                        exp.name, exp.last.gpus, exp.last.started_at, self.paths.dir / exp.last.log
                    )

    def _count_all(self, sweep: Sweep) -> None:
        self._status_of = {e.id: e.status for e in sweep.experiments.values() if not e.removed}
        self._counted, self._counted_size = sweep, len(sweep.experiments)
        self.counts = dict.fromkeys(STATUSES, 0)
        for status in self._status_of.values():
            self.counts[status] += 1

    def _count(self, exp: Experiment, sweep: Sweep) -> None:
        # A merge by `pbtrun up` reaches the scheduler as a reloaded state, which may hold as many
        # experiments as before (one never run dropped, one added): counting on from the old
        # statuses would keep the dropped one forever ("3/4 done" for a sweep of 3).
        if sweep is not self._counted or len(sweep.experiments) != self._counted_size:
            self._count_all(sweep)
            return
        old = self._status_of.get(exp.id)
        if old is not None:
            self.counts[old] -= 1
        self._status_of[exp.id] = exp.status
        self.counts[exp.status] += 1

    def _add_duration(self, seconds: float, succeeded: bool) -> None:
        pair = self._succeeded_s if succeeded else self._other_ends_s
        pair[0] += seconds
        pair[1] += 1

    def started(self, exp: Experiment, sweep: Sweep) -> None:
        last = exp.last
        if last is None:
            return
        with self._lock:
            self._count(exp, sweep)
            self.running[exp.id] = Running(exp.name, last.gpus, last.started_at, self.paths.dir / last.log)

    def ended(self, exp: Experiment, sweep: Sweep) -> Failure | None:
        """Record the end of ``exp``'s last attempt; the failure it was, if it was one."""
        last = exp.last
        with self._lock:
            self._count(exp, sweep)
            self.running.pop(exp.id, None)
            if last is None or last.duration_s is None:
                return None
            self._add_duration(last.duration_s, exp.status == SUCCEEDED)
            failure = _failure(exp, last, self.paths)
            if failure is not None:
                self.failures.append(failure)
            self._watch_first_ends(failure, last.duration_s)
            return failure

    def _watch_first_ends(self, failure: Failure | None, duration_s: float) -> None:
        if len(self._first_ends) >= FIRST_ENDS:
            return
        self._first_ends.append(failure if duration_s <= SOON_S else None)
        expected = min(FIRST_ENDS, sum(self.counts.values()))
        if expected < 2 or len(self._first_ends) != expected:
            return
        endings = {f.word if f is not None else None for f in self._first_ends}
        if len(endings) != 1 or None in endings:
            return
        first = self._first_ends[0]
        assert first is not None
        tail = tail_lines(first.log, 1)
        says = f"; {first.name}'s log ends with: {tail[0][:200]}" if tail else ""
        halt = "" if self._max_failures_set else " (max_failures = N in [scheduler] stops a sweep after N failures)"
        self._alarm = (
            f"the first {expected} experiments all {first.word} within {SOON_S:g} s of their start{says}. "
            f"The command may be wrong for this app: look at `pbtrun logs {shlex.quote(str(self.paths.dir))} "
            f"--failed`{halt}."
        )

    def take_alarm(self) -> str | None:
        """A warning raised by the last :meth:`ended`, once."""
        alarm, self._alarm = self._alarm, None
        return alarm

    def mean_s(self) -> float | None:
        """Mean duration of finished experiments: the succeeded ones, or any while none has."""
        total, n = self._succeeded_s if self._succeeded_s[1] else self._other_ends_s
        return total / n if n else None

    def typical_s(self, running: Sequence[Running], now: float) -> float | None:
        """How long an experiment is expected to take: the succeeded ones' mean duration.

        While none has succeeded, the mean of those that ended (failures), but never less than
        the longest a running one has lasted so far: a quick early crash says little about how
        long a run that works takes, and every running experiment already outlasts it.
        """
        mean = self.mean_s()
        if mean is None or self._succeeded_s[1]:
            return mean
        return max([mean, *(now - r.started_at for r in running)])

    def snapshot(self, now: float) -> Snapshot:
        with self._lock:
            counts = dict(self.counts)
            running = sorted(self.running.values(), key=lambda r: r.started_at)
            failures = list(self.failures)
            typical = self.typical_s(running, now)
        total = sum(counts.values())
        done = counts[SUCCEEDED] + counts[FAILED]
        eta = _eta(typical, total - done, running, self.slots, now)
        return Snapshot(self.name, counts, total, done, running, failures, eta, self.waiting)


def _eta(typical_s: float | None, left: int, running: Sequence[Running], slots: int, now: float) -> float | None:
    """Seconds until the sweep is done, or None where no honest figure exists.

    The work left (waiting experiments take ``typical_s`` each, running ones what it leaves
    them) spread over the slots, but never less than what is plainly still to come: the
    longest remainder of a running experiment, and, while some wait, the time until a slot
    frees plus one whole experiment. Where only experiments that outlast the estimate are
    left, when they end is anyone's guess: no ETA rather than ``ETA 0.0s``.
    """
    if typical_s is None or left <= 0:
        return None
    waiting = max(0, left - len(running))
    remaining = [max(0.0, typical_s - (now - r.started_at)) for r in running]
    floor = max(remaining, default=0.0)
    if waiting:
        slot_free_in = min(remaining) if len(running) >= slots else 0.0
        floor = max(floor, slot_free_in + typical_s)
    eta = max((waiting * typical_s + sum(remaining)) / slots, floor)
    return eta if eta > 0 else None


def _failure(exp: Experiment, last: Attempt, paths: SweepPaths) -> Failure | None:
    word = attempt_word(last)
    if word in ("succeeded", "stopped", "not started", "running"):
        return None
    return Failure(exp.name, word, paths.dir / last.log, retrying=exp.status == PENDING)
