"""The scheduling loop: reconcile, launch what fits, wait for events, record every transition.

It waits on file descriptors (the reaper's event socket, a signal wake-up pipe, the control
FIFO) and never polls, so an idle sweep of hours-long experiments costs no CPU and a freed slot
is refilled as soon as the kernel reports the exit.

Order of a launch: the attempt is recorded as ``running`` (durably) *before* the process is
forked; the backend's launch claim then lets ``resume`` tell, after a crash at any point,
whether the process was started. Order of an end: the reaper has already written the exit
status next to the log before the scheduler hears of it, so a crash here loses nothing either.

A freed slot is refilled by the scheduler itself, in the round that records the end: the next
experiment in spec order goes to whichever slot and GPU is free, never to a slot chosen ahead of
time (a launch handed to a reaper in advance would wait for one particular experiment to end
while other slots stood idle).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from pbtrun.backends.local import ABANDONED, Handle, LocalBackend, Outcome
from pbtrun.errors import BackendError, DiskFull, PbtrunError
from pbtrun.proc import become_subreaper, hostname
from pbtrun.run.gpus import Placement
from pbtrun.spec.placeholders import fill_attempt
from pbtrun.state.control import open_control
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import (
    EXITED,
    FAILED,
    INTERRUPTED,
    LOST,
    NOT_STARTED,
    PENDING,
    RUNNABLE,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    TIMED_OUT,
    Attempt,
    Experiment,
    Sweep,
)
from pbtrun.state.writer import StateWriter

KILL_AFTER_TERM_S = 5.0
RETRY_SIGNAL_S = 0.02
LINGER_CHECK_S = 0.1  # how often a stopped experiment's leftover processes are looked for (stops only)
EXIT_INTERRUPTED = 130
REAPERS = min(2, os.cpu_count() or 1)  # see LocalBackend.start: they start experiments side by side
MAX_WAIT_S = 86400.0  # a far deadline (timeout_min = 1e6) is waited for a day at a time: epoll's limit is ~25 days


class Listener(Protocol):
    """Whoever shows progress. The scheduler reports; it never renders."""

    def started(self, exp: Experiment, sweep: Sweep) -> None: ...

    def ended(self, exp: Experiment, sweep: Sweep) -> None: ...

    def message(self, text: str) -> None: ...


class Scheduler:
    """Runs one sweep to completion (or until stopped) with one backend."""

    def __init__(
        self,
        paths: SweepPaths,
        listener: Listener,
        grace_s: float = 30.0,
        retry_failed: bool = False,
        retry_lost: bool = False,
        saved: tuple[Sweep, tuple | None] | None = None,
    ) -> None:
        """``saved``: the sweep as just saved and the file's signature (see StateWriter)."""
        self.paths = paths
        self.listener = listener
        self.grace_s = grace_s
        self.retry_failed = retry_failed
        self.retry_lost = retry_lost  # only the failed whose outcome is lost (retry_failed: all)
        self.selector = selectors.DefaultSelector()
        # A reaper is forked first: before the sweep is loaded (a small process to copy) and
        # before the state writer starts its thread (forking a threaded process is unsafe).
        self.backend = LocalBackend(paths, "", self.selector)
        self.backend.start(reapers=1)
        self.writer = StateWriter(paths, saved)
        self.backend.cwd = self.sweep.cwd
        if len(self.sweep.runnable()) > self.sweep.settings.max_parallel:
            self.backend.start(reapers=REAPERS)  # experiments will follow each other: start them side by side
        self.placement = Placement(self.sweep.settings)
        self.queue: deque[str] = deque()  # runnable experiment ids, in launch order
        self.queue_generation = -1
        self.handles: dict[str, Handle] = {}
        self.gpus_of: dict[str, tuple[int, ...]] = {}
        self.host = hostname()
        self.sweep_dir = str(paths.dir.resolve())
        self.next_launch_at = 0.0
        self.again = False  # a step queued work it could not launch yet: step again without waiting
        self.stopping = False
        self.failed = 0  # experiments that failed (retries spent) in this run, for max_failures
        self.halted = False  # max_failures reached: nothing more is launched, the running ones finish
        self.told_halt = False
        self.escalations: dict[str, list[tuple[float, int]]] = {}  # exp id -> (monotonic time, signal)
        self.deadlines: dict[str, float] = {}  # exp id -> monotonic time its timeout_min runs out
        self.reasons: dict[str, str] = {}  # exp id -> why pbtrun is stopping it: "stop" or "timeout"
        self.failure: PbtrunError | None = None
        self.signalled: dict[str, tuple[float, str]] = {}  # exp id -> (time.time() of the first signal, why)
        # Process groups of stopped experiments whose leader has ended while others of the group
        # live on (a child that ignores SIGINT): the rest of the stop's steps, until it is empty.
        self.lingering: dict[int, list[tuple[float, int]]] = {}
        self.notes: list[str] = []  # what reconciling found, told once the view is up
        self.stop_now = False
        self._stack: contextlib.ExitStack | None = None

    # ---------------------------------------------------------------- the loop

    @property
    def sweep(self) -> Sweep:
        return self.writer.sweep

    def prepare(self) -> None:
        """Take over the sweep: catch stop signals, open the control channel, and settle what a
        previous scheduler left (so that what a view shows next is already true)."""
        if self._stack is None:
            self._stack = contextlib.ExitStack()
            self._stack.enter_context(self._signals())
            self._stack.enter_context(self._control())
            self._reconcile()
            self._requeue()

    def run(self) -> int:
        """Run until every experiment has ended or a stop completes; return the exit code."""
        try:
            self.prepare()
            for note in self.notes:
                self.listener.message(note)
            ended: list[tuple[str, Outcome]] = []
            first = True
            while True:
                self._step(ended)
                if first:  # after the first launches, not before them: it imports ctypes
                    first = False
                    become_subreaper()  # a dead reaper's experiments become ours to wait for
                if self._done():
                    break
                ended = self._wait(self._timeout())
                self._advance()
                self._fold_if_due()
        finally:
            self.close()
        if self.failure is not None:
            raise self.failure
        return self._exit_code()

    def _done(self) -> bool:
        """Nothing runs (not even what a stopped experiment left behind) and nothing more will."""
        if self.handles or self.lingering:
            return False
        return self.stopping or self.failure is not None or self.halted or not self._launchable()

    def close(self) -> None:
        """Let go of everything (the experiments keep running if any still do: their reaper
        records them). Called by :meth:`run`; call it yourself after a failed :meth:`prepare`."""
        if self._stack is not None:
            self._stack.close()
        self.backend.close()
        self.selector.close()
        with contextlib.suppress(PbtrunError):
            self.writer.close()

    def _fold_if_due(self) -> None:
        """Keep pbtrun.json itself current while the scheduler waits (the journal is exact anyway)."""
        try:
            self.writer.fold_if_due()
        except PbtrunError as exc:
            if self.failure is None:
                self.failure = exc
                self.listener.message(f"error: {exc.message}")

    def _requeue(self) -> None:
        """Rebuild the run queue from the state (O(sweep): only after a reload)."""
        self.queue = deque(e.id for e in self.sweep.runnable())
        self.queue_generation = self.writer.generation

    def _launchable(self) -> bool:
        """Whether anything waits to run; drops queue entries that no longer can (O(1) amortized)."""
        if self.queue_generation != self.writer.generation:
            self._requeue()
        experiments = self.sweep.experiments
        while self.queue:
            exp = experiments.get(self.queue[0])
            if exp is not None and exp.status in RUNNABLE and not exp.removed:
                return True
            self.queue.popleft()
        return False

    def _timeout(self) -> float | None:
        if self.backend.failed_launches:
            return 0.0
        if self.again:
            self.again = False
            return 0.0
        deadlines = [steps[0][0] for steps in self.escalations.values() if steps]
        if self.lingering:
            deadlines.append(time.monotonic() + LINGER_CHECK_S)
        if (fold_at := self.writer.fold_due_at()) is not None:
            deadlines.append(fold_at)
        deadlines += self.deadlines.values()
        if not self.stopping and self.next_launch_at and self._launchable():
            deadlines.append(self.next_launch_at)
        return min(MAX_WAIT_S, max(0.0, min(deadlines) - time.monotonic())) if deadlines else None

    def _wait(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        """Block until something happens; return the attempts that ended, with their outcomes."""
        ended = self.backend.take_failed_launches()
        self.writer.start_sync()  # the commits of this round become durable while we wait
        for key, _ in self.selector.select(timeout):
            kind, payload = key.data
            if kind == "backend":
                ended.extend(self.backend.on_ready(payload))
            elif kind == "signal":
                ended.extend(self._drain_signals(key.fd))
            else:
                self._read_control(key.fd)
        return ended

    def _exit_code(self) -> int:
        live = [e for e in self.sweep.experiments.values() if not e.removed]
        if self.stopping and any(e.status in RUNNABLE for e in live):
            return EXIT_INTERRUPTED
        return 0 if all(e.status == SUCCEEDED for e in live) else 1

    # ---------------------------------------------------------------- state changes

    def _transact(self, change: Callable[[Sweep], None]) -> bool:
        """Apply ``change`` to the freshest state under the lock; on a write failure stop launching.
        False if the change was not recorded."""
        try:
            self.writer.commit(change)
        except PbtrunError as exc:
            self._fail(exc)
            return False
        if (error := self.writer.take_fold_error()) is not None:
            self._fail(error)  # recorded all the same, in the journal
        return True

    def _fail(self, exc: PbtrunError) -> None:
        if self.failure is None:
            self.failure = exc
            self.listener.message(f"error: {exc.message} pbtrun stops launching and waits for the running experiments.")

    def _reconcile(self) -> None:
        """Settle what a previous scheduler left: adopt survivors, record ended ones, requeue."""
        adopted: list[Handle] = []
        recorded: list[str] = []

        def change(sweep: Sweep) -> None:
            for exp in sweep.running():
                found = self.backend.inspect(exp, exp.last)  # type: ignore[arg-type]
                if isinstance(found, Handle):
                    adopted.append(found)
                    self.gpus_of[exp.id] = exp.last.gpus or ()  # type: ignore[union-attr]
                elif found == ABANDONED:
                    last = exp.last._replace(outcome=NOT_STARTED, ended_at=time.time())  # type: ignore[arg-type]
                    sweep.update(exp.to(PENDING, last))
                else:
                    why = _stopped_by_pbtrun(exp.last, found)  # type: ignore[arg-type]
                    sweep.update(_ended(exp, found, stopped=why == "stop", timed_out=why == "timeout"))  # type: ignore[arg-type]
                    recorded.append(exp.id)
            if self.retry_failed or self.retry_lost:
                for exp in list(sweep.experiments.values()):
                    if exp.status == FAILED and not exp.removed and (self.retry_failed or _lost(exp)):
                        sweep.update(exp.to(PENDING))

        self._transact(change)
        for handle in adopted:
            exp = self.sweep.experiments[handle.exp_id]
            self._watch(handle, exp)
            self.notes.append(f"adopted {exp.name} (still running, pid {handle.pgid})")
        for exp_id in recorded:
            exp = self.sweep.experiments[exp_id]
            code = exp.attempts[-1].returncode
            how = "its outcome is lost" if code is None else f"exit status {code}"
            self.notes.append(f"recorded {exp.name}, which ended while no scheduler ran: {how}")

    def _step(self, ended: list[tuple[str, Outcome]]) -> None:
        """Record what ended and what launches now in ONE durable commit, then send the launches.

        Launches are recorded as running before they are sent (see the module doc); batching
        them with the ends halves the fsyncs per experiment.
        """
        outcomes = self._finish(ended)
        launch_now = (
            not self.stopping and self.failure is None and not self.halted and time.monotonic() >= self.next_launch_at
        )
        chosen = list(self._choose()) if launch_now else []
        if not outcomes and not chosen:
            return
        done: list[Experiment] = []
        launched: list[tuple[Experiment, Attempt]] = []
        held: list[str] = []  # chosen, but max_failures was reached by an end of this round
        now = time.time()

        def change(sweep: Sweep) -> None:
            for exp_id, outcome in outcomes:
                exp = sweep.experiments[exp_id]
                if exp.status != RUNNING or exp.last is None:
                    continue  # its start was never recorded (a commit that failed): its log tells resume
                why = self._why_ended(exp, outcome)
                exp = _ended(exp, outcome, stopped=why == "stop", timed_out=why == "timeout")
                sweep.update(exp)
                done.append(exp)
            if self._reaches_max_failures(done):
                held.extend(exp_id for exp_id, _ in chosen)
                return
            for exp_id, gpus in chosen:
                exp = sweep.experiments.get(exp_id)
                if exp is None or exp.removed or exp.status not in RUNNABLE:
                    continue  # another writer changed it since we looked
                attempt = self._new_attempt(exp, gpus, now, self.backend.assign())
                exp = exp.to(RUNNING, attempt)
                sweep.update(exp)
                launched.append((exp, attempt))

        recorded = self._transact(change)
        self.queue.extendleft(reversed(held))
        if not recorded:
            return
        for exp, attempt in launched:  # first: a freed slot is refilled before anything is shown
            argv, env = fill_attempt(exp.argv, self._env(exp, attempt), attempt.number)
            handle = self.backend.launch(exp if argv is exp.argv else exp._replace(argv=argv), attempt, env)
            self.gpus_of[exp.id] = attempt.gpus or ()
            self._watch(handle, exp)
        self._tell(done, launched)
        if launched and self.sweep.settings.pause_between_s > 0:
            self.next_launch_at = time.monotonic() + self.sweep.settings.pause_between_s

    def _tell(self, done: list[Experiment], launched: list[tuple[Experiment, Attempt]]) -> None:
        """Show a round: what ended, then the new launches; put retries back in line."""
        for exp in done:
            if exp.status in RUNNABLE:  # a retry: back in line, and look again at once
                self.queue.append(exp.id)
                self.again = True
            self.listener.ended(exp, self.sweep)
        for exp, _ in launched:
            self.listener.started(exp, self.sweep)
        if self.halted and not self.told_halt:
            self._tell_halt()

    def _reaches_max_failures(self, done: list[Experiment]) -> bool:
        """Count the experiments of this round that failed for good; True once ``max_failures``
        have in this run (as GNU parallel's ``--halt soon,fail=N``): a broken command should
        not burn through a sweep. Checked before the round's launches, which it then holds back."""
        self.failed += sum(1 for exp in done if exp.status == FAILED)
        limit = self.sweep.settings.max_failures
        self.halted = self.halted or (limit is not None and self.failed >= limit)
        return self.halted

    def _tell_halt(self) -> None:
        self.told_halt = True
        limit = self.sweep.settings.max_failures
        waiting = len(self.sweep.runnable())
        running = f"; the {len(self.handles)} running finish first" if self.handles else ""
        self.listener.message(
            f"{self.failed} experiment(s) failed (max_failures = {limit}): pbtrun launches nothing more "
            f"({waiting} left waiting){running}. Look at them with `pbtrun logs {self.sweep_dir} --failed` and "
            f"fix the cause; then `pbtrun resume {self.sweep_dir}` runs the rest (with --retry-failed, the "
            "failed ones again too)."
        )

    def _why_ended(self, exp: Experiment, outcome: Outcome) -> str | None:
        """ "stop" or "timeout" if pbtrun's signal ended the attempt, None if it ended by itself
        (see :func:`_stopped_by_pbtrun`). The state records the signal; memory too, in case
        recording it failed (a full disk)."""
        signalled, last = self.signalled.pop(exp.id, None), exp.last
        if last is None:
            return None
        if last.stop_at is None and signalled is not None:
            last = last._replace(stop_at=signalled[0], stop_reason=signalled[1])
        return _stopped_by_pbtrun(last, outcome)

    def _choose(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Experiments to launch now and their GPUs: in spec order, least busy GPU first."""
        load = self._gpu_load()
        running = len(self.handles)
        pause = self.sweep.settings.pause_between_s > 0
        while self._launchable():
            gpus = self.placement.choose(load, running)
            if gpus is None:
                return
            for g in gpus:
                load[g] = load.get(g, 0) + 1
            running += 1
            yield self.queue.popleft(), gpus
            if pause:
                return

    def _gpu_load(self) -> dict[int, int]:
        """How many running experiments each GPU holds."""
        load: dict[int, int] = {}
        for gpus in self.gpus_of.values():
            for g in gpus:
                load[g] = load.get(g, 0) + 1
        return load

    def _new_attempt(self, exp: Experiment, gpus: tuple[int, ...], started_at: float, reaper: str | None) -> Attempt:
        """``exp``'s next attempt, on ``gpus`` (pinned only if placement pins), sent to ``reaper``."""
        number = 1 + max((a.number for a in exp.attempts), default=0)
        pinned = gpus if self.placement.pins else None
        return Attempt(number, started_at, self._log(exp, number), pinned, self.host, ref=reaper)

    def _finish(self, ended: list[tuple[str, Outcome]]) -> list[tuple[str, Outcome]]:
        """Forget the handles of ended attempts; a backend failure stops launching."""
        for exp_id, outcome in ended:
            handle = self.handles.pop(exp_id, None)
            self.gpus_of.pop(exp_id, None)
            steps = self.escalations.pop(exp_id, None)
            if steps and handle is not None and handle.pgid is not None and self.backend.group_alive(handle.pgid):
                self.lingering[handle.pgid] = steps  # its leader is gone, not yet all of it
            self.deadlines.pop(exp_id, None)
            self.reasons.pop(exp_id, None)
            if outcome.error and self.failure is None:
                name = self.sweep.experiments[exp_id].name
                advice = (
                    "check what killed it (the OOM killer, a kill command)"
                    if "reaper" in outcome.error
                    else "free space or fix permissions"
                )
                if outcome.errno in (errno.ENOSPC, errno.EDQUOT):
                    fault, advice = DiskFull, "the disk is full: free space"
                else:
                    fault = BackendError
                self.failure = fault(
                    f"{outcome.error.format(name=name)}. pbtrun stops launching; {advice}, then resume the sweep."
                )
                self.listener.message(f"error: {self.failure.message}")
        return ended

    # ---------------------------------------------------------------- helpers

    def _watch(self, handle: Handle, exp: Experiment) -> None:
        self.handles[handle.exp_id] = handle
        if exp.timeout_min is not None and exp.last is not None:
            left_s = exp.last.started_at + exp.timeout_min * 60 - time.time()
            self.deadlines[exp.id] = time.monotonic() + left_s

    def _log(self, exp: Experiment, number: int) -> str:
        return self.paths.log_name(exp, number)

    def _env(self, exp: Experiment, attempt: Attempt) -> dict[str, str]:
        """What the experiment's environment adds to pbtrun's own, which it inherits."""
        env = dict(exp.env)
        env["PBTRUN_EXPERIMENT"] = exp.name
        env["PBTRUN_SWEEP_DIR"] = self.sweep_dir
        env["PBTRUN_ATTEMPT"] = str(attempt.number)
        if attempt.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, attempt.gpus))
        return env

    # ---------------------------------------------------------------- stopping

    def request_stop(self, now: bool) -> None:
        """Stop the sweep: every experiment is stopped as :meth:`_escalate` describes."""
        self.stop_now = self.stop_now or now
        if not self.stopping:
            self.stopping = True
            how = "at once (SIGKILL)" if now else f"gracefully (SIGINT, SIGTERM after {self.grace_s:g} s)"
            again = "" if now else "; Ctrl-C again to kill them at once"
            self.listener.message(f"stopping {len(self.handles)} running experiment(s) {how}{again}")
        for exp_id in self.handles:
            self._escalate(exp_id, now, "stop")
        self._advance()

    def _escalate(self, exp_id: str, now: bool, why: str) -> None:
        """SIGINT to the experiment's process group, SIGTERM after the grace, SIGKILL 5 s later.

        ``now`` (a second Ctrl-C, ``stop --now``) skips the grace. A graceful stop already under
        way keeps its schedule.
        """
        start = time.monotonic()
        self.reasons.setdefault(exp_id, why)
        if now:
            self.escalations[exp_id] = [(start, signal.SIGKILL)]
        elif exp_id not in self.escalations:
            term_at = start + self.grace_s
            self.escalations[exp_id] = [
                (start, signal.SIGINT),
                (term_at, signal.SIGTERM),
                (term_at + KILL_AFTER_TERM_S, signal.SIGKILL),
            ]

    def _advance(self) -> None:
        """Act on every timer that is due: timeouts and the steps of stops under way."""
        now = time.monotonic()
        for exp_id, deadline in list(self.deadlines.items()):
            if deadline <= now:
                del self.deadlines[exp_id]
                exp = self.sweep.experiments[exp_id]
                self.listener.message(f"{exp.name} ran longer than timeout_min = {exp.timeout_min:g}; stopping it")
                self._escalate(exp_id, now=False, why="timeout")
        first = [e for e, steps in self.escalations.items() if steps and steps[0][0] <= now and e not in self.signalled]
        if first:
            self._record_stops(first)
        for exp_id, steps in self.escalations.items():
            while steps and steps[0][0] <= now:
                if not self.backend.signal(self.handles[exp_id], steps[0][1]):
                    steps[0] = (now + RETRY_SIGNAL_S, steps[0][1])  # not exec'd yet: try again shortly
                    break
                # The grace counts from when this signal really went out (recording the stop, or
                # retries, may have delayed it), so the next one never comes early.
                late = time.monotonic() - steps.pop(0)[0]
                if late > 0:
                    steps[:] = [(at + late, sig) for at, sig in steps]
        self._advance_lingering(now)

    def _advance_lingering(self, now: float) -> None:
        """Carry stops on to the processes an experiment's leader left in its group, until the
        group is empty: no orphan outlives a stop (on resume it would run beside the new attempt)."""
        for pgid, steps in list(self.lingering.items()):
            while steps and steps[0][0] <= now:
                self.backend.signal_group(pgid, steps[0][1])
                steps.pop(0)
            # Once SIGKILL went out, zombies nobody reaps (no init in a container) do not count.
            if not self.backend.group_alive(pgid, zombies=bool(steps)):
                del self.lingering[pgid]
            elif not steps:  # SIGKILL went out: the group is gone within a moment
                steps.append((now + LINGER_CHECK_S, signal.SIGKILL))

    def _record_stops(self, exp_ids: list[str]) -> None:
        """Write down, before their first signal goes out, that pbtrun stops these attempts and
        why. If this scheduler dies during the grace period (a lost SSH session, kill -9), the
        one that resumes still knows that their end was pbtrun's doing: a script that saves
        and exits 0 on SIGINT is interrupted and runs again, not succeeded."""
        at = time.time()
        for exp_id in exp_ids:
            self.signalled[exp_id] = (at, self.reasons[exp_id])

        def change(sweep: Sweep) -> None:
            for exp_id in exp_ids:
                exp = sweep.experiments.get(exp_id)
                if exp is not None and exp.status == RUNNING and exp.last is not None and exp.last.stop_at is None:
                    sweep.update(exp.to(RUNNING, exp.last._replace(stop_at=at, stop_reason=self.reasons[exp_id])))

        self._transact(change)  # if it fails, the stop goes on: memory still knows (see _why_ended)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Turn SIGINT/SIGTERM (and SIGCHLD: an orphan of ours ended) into bytes on a pipe the
        loop waits on (no work in handlers)."""
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        watched = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        previous = {s: signal.signal(s, lambda *_: None) for s in watched}
        old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self.selector.register(read_fd, selectors.EVENT_READ, ("signal", None))
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, handler in previous.items():
                signal.signal(s, handler)
            os.close(read_fd)
            os.close(write_fd)

    def _drain_signals(self, fd: int) -> list[tuple[str, Outcome]]:
        """Act on the signals that came; the orphaned experiments that ended, if any."""
        ended: list[tuple[str, Outcome]] = []
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(fd, 64):
                if signum == signal.SIGCHLD:
                    ended += self.backend.reap_orphans()
                else:
                    self.request_stop(now=self.stopping)
        return ended

    @contextlib.contextmanager
    def _control(self) -> Iterator[None]:
        fd = open_control(self.paths)
        self.selector.register(fd, selectors.EVENT_READ, ("control", None))
        try:
            yield
        finally:
            os.close(fd)

    def _read_control(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            for line in os.read(fd, 4096).decode(errors="replace").split():
                if line == "stop":
                    self.request_stop(now=False)
                elif line == "stop-now":
                    self.request_stop(now=True)
                elif line == "wake":
                    with contextlib.suppress(PbtrunError):
                        self.writer.refresh()


def _lost(exp: Experiment) -> bool:
    return exp.last is not None and exp.last.outcome == LOST


def _stopped_by_pbtrun(attempt: Attempt, outcome: Outcome) -> str | None:
    """ "stop" or "timeout" if the attempt ended after pbtrun signalled it, else None.

    An attempt that ended after pbtrun signalled it counts as stopped whatever its exit status:
    many training scripts save a checkpoint and exit 0 on SIGINT, and such a run is interrupted,
    not finished; resuming it is the safe side. One that ended before the signal went out (its
    end was on its way) keeps its own outcome.
    """
    if attempt.stop_at is None or outcome.ended_at < attempt.stop_at:
        return None
    return attempt.stop_reason


def _ended(exp: Experiment, outcome: Outcome, stopped: bool, timed_out: bool = False) -> Experiment:
    """The experiment after its last attempt ended with ``outcome``; a failure within
    ``max_retries`` goes back to pending."""
    last = exp.last
    assert last is not None
    common = {"ended_at": outcome.ended_at, "returncode": outcome.returncode, "pid": outcome.pid or last.pid}
    if outcome.started_at is not None:  # it ran earlier than this attempt says (a state behind its logs)
        common["started_at"] = min(outcome.started_at, last.started_at)
    if not outcome.started:
        return exp.to(PENDING, last._replace(outcome=NOT_STARTED, **common))
    if stopped:  # stopped on purpose: it runs again, whatever its exit status
        return exp.to(INTERRUPTED, last._replace(outcome=STOPPED, **common))
    if outcome.returncode is None and not timed_out:  # it may have succeeded: run again only if asked
        return exp.to(FAILED, last._replace(outcome=LOST, **common))
    if outcome.returncode == 0 and not timed_out:
        return exp.to(SUCCEEDED, last._replace(outcome=EXITED, **common))
    exp = exp.to(FAILED, last._replace(outcome=TIMED_OUT if timed_out else EXITED, **common))
    failures = sum(1 for a in exp.attempts if a.outcome == TIMED_OUT or (a.outcome == EXITED and a.returncode))
    return exp.to(PENDING) if failures <= exp.max_retries else exp
