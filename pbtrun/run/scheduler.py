"""The scheduling loop: reconcile, launch what fits, wait for events, record every transition.

It waits on file descriptors (the backend's, a signal wake-up pipe, the control FIFO: see
``control.py``) and on the few timers it keeps, and never polls, so an idle sweep of hours-long
experiments costs no CPU and a freed slot is refilled as soon as the backend reports the end.
It knows the backend only through ``backends/base.py``, and opens it by name.

Order of a launch: the attempt is recorded as ``running`` (durably), with the reference the
backend reserved for it, *before* the backend is asked to start it; after a crash at any point,
resume asks the backend to settle that attempt, and it can tell whether it was started. Order of
an end: the backend has recorded the exit status beside the log before the scheduler hears of
it, so a crash here loses nothing either.

A freed slot is refilled by the scheduler itself, in the round that records the end: the next
experiment in spec order goes to whichever slot and GPU is free, never to a slot chosen ahead of
time (a launch handed out in advance would wait for one particular experiment to end while
other slots stood idle).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pbtrun.backends.base import Ended, Handle, News
from pbtrun.backends.registry import open_backend
from pbtrun.errors import PbtrunError, StateError
from pbtrun.proc import hostname
from pbtrun.run import control, reconcile
from pbtrun.run.attempts import launch_requests, next_attempt
from pbtrun.run.choosing import Chosen, choose
from pbtrun.run.gpus import Placement
from pbtrun.run.news import apply_news
from pbtrun.run.outcomes import after_end, exit_code
from pbtrun.run.queue import RunQueue
from pbtrun.run.stopping import Stops
from pbtrun.state import locks
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import FAILED, RUNNABLE, RUNNING, Attempt, Experiment, Sweep
from pbtrun.state.writer import StateWriter

if TYPE_CHECKING:
    from pbtrun.run.gpuwatch import GpuWatch

MAX_WAIT_S = 86400.0  # a far deadline (timeout_min = 1e6) is waited for a day at a time: epoll's limit is ~25 days


class Listener(Protocol):
    """Whoever shows progress. The scheduler reports; it never renders."""

    def started(self, exp: Experiment, sweep: Sweep) -> None: ...

    def ended(self, exp: Experiment, sweep: Sweep) -> None: ...

    def message(self, text: str) -> None: ...

    def waiting(self, reason: str | None) -> None: ...


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
        backend: str = "local",
        detach: bool = False,
        cancel_on_interrupt: bool = False,
    ) -> None:
        """``saved``: the sweep as just saved and the file's signature (see StateWriter);
        ``backend``: the name of the backend that runs the experiments."""
        self.paths = paths
        self.listener = listener
        self.retry_failed = retry_failed
        self.retry_lost = retry_lost  # only the failed whose outcome is lost (retry_failed: all)
        # The backend first, since it may fork: before the sweep is loaded (a smaller process
        # is quicker to copy) and before the state writer starts its thread.
        self.backend = open_backend(saved[0].backend if saved else backend, paths)
        self.writer = StateWriter(paths, saved)
        if (refusal := self._refusal()) is not None:
            self.backend.close()
            with contextlib.suppress(PbtrunError):
                self.writer.close()
            raise StateError(refusal)
        self.backend.expect(len(self.sweep.runnable()), self.sweep.settings.max_parallel, self.sweep.backend_settings)
        self.selector = selectors.DefaultSelector()
        for fd in self.backend.fds():
            self.selector.register(fd, selectors.EVENT_READ, "backend")
        self.placement = Placement(self.sweep.settings)
        self.gpuwatch: GpuWatch | None = None  # pinned sweeps: GPU names, UUIDs, memory (prepare)
        self.waiting: str | None = None  # why queued experiments cannot start, beyond a full slot count
        self.waiting_next: str | None = None
        self.queue = RunQueue(self.writer)
        self.stops = Stops(grace_s)
        self.running: dict[str, Handle] = {}  # exp id -> its running attempt, as the backend tracks it
        self.gpus_held: dict[str, tuple[int, ...]] = {}  # exp id -> the GPUs its running attempt holds
        self.host = hostname()
        self.sweep_dir = str(paths.dir.resolve())
        self.next_launch_at = 0.0
        self.look_again = False  # a round queued work it could not launch yet: go on without waiting
        self.stopping = False
        self.failed = 0  # experiments that failed (retries spent) in this run, for max_failures
        self.halted = False  # max_failures reached: nothing more is launched, the running ones finish
        self.halt_shown = False
        self.failure: PbtrunError | None = None
        self.notes: list[str] = []  # what reconciling found, told once the view is up
        # A batch system's jobs belong to the cluster: the scheduler may leave them running (on
        # --detach once all is submitted, or on Ctrl-C unless told to cancel them).
        self.detach = detach and self.backend.interrupt_detaches
        self.cancel_on_interrupt = cancel_on_interrupt
        self.detached: int | None = None  # the exit code to leave with, once detached
        self._stack: contextlib.ExitStack | None = None

    @property
    def sweep(self) -> Sweep:
        return self.writer.sweep

    # ---------------------------------------------------------------- the loop

    def prepare(self) -> None:
        """Take over the sweep: catch stop signals, open the control channel, and settle what a
        previous scheduler left (so that what a view shows next is already true)."""
        if self._stack is None:
            self._stack = contextlib.ExitStack()
            signals = (*control.STOP_SIGNALS, *self.backend.signals)
            self._stack.enter_context(control.signal_pipe(self.selector, signals, "signal"))
            self._stack.enter_context(control.control_fifo(self.selector, self.paths, "control"))
            if self.placement.pins:  # first: a sweep it cannot place is refused before anything is settled
                from pbtrun.run.gpuwatch import GpuWatch

                self.gpuwatch = GpuWatch(self.sweep.settings, self.sweep_dir, where=str(self.paths.dir))
            self._reconcile()
            self.queue.rebuild()
            if self.gpuwatch is not None:
                self.notes.insert(0, self.gpuwatch.notice)

    def run(self) -> int:
        """Run until every experiment has ended or a stop completes; return the exit code."""
        try:
            self.prepare()
            for note in self.notes:
                self.listener.message(note)
            ended: list[Ended] = []
            while True:
                self._round(ended)
                if self.detach and not self.queue.launchable() and self.detached is None:
                    self._leave_running(0, "submitted")
                if self._done() or self.detached is not None:
                    break
                ended = self._wait(self._timeout())
                self._advance()
                self._fold_if_due()
        finally:
            self.close()
        if self.failure is not None:
            raise self.failure
        if self.detached is not None:
            return self.detached
        return exit_code(self.sweep, self.stopping)

    def _leave_running(self, code: int, why: str) -> None:
        """Stop watching; the jobs go on in the cluster, recorded with their job ids."""
        self.detached = code
        where = self.sweep_dir
        self.listener.message(
            f"{why}: {len(self.running)} job(s) go on without pbtrun watching. `pbtrun status {where}` shows "
            f"them, `pbtrun resume {where}` follows them again, `pbtrun stop {where}` cancels them."
        )

    def _done(self) -> bool:
        """Nothing runs (nor does the backend still finish a stop) and nothing more will."""
        if self.running or self.backend.next_poll_at() is not None:
            return False
        return self.stopping or self.failure is not None or self.halted or not self.queue.launchable()

    def _refusal(self) -> str | None:
        """Why this sweep cannot run here at all, before anything is settled or launched."""
        sweep = self.sweep
        if sweep.backend != self.backend.name:  # the sweep's own record decides, never a default
            return (
                f"{self.paths.state} says its experiments run on the {sweep.backend!r} backend, which this "
                "pbtrun cannot open here. Resume it with a pbtrun that has that backend."
            )
        if not os.path.isdir(sweep.cwd) and (sweep.runnable() or sweep.running()):
            # Every launch would fail with 127 and be recorded as a failure: refuse instead.
            return (
                f"{self.paths.state}: the sweep's experiments run in {sweep.cwd}, which no longer exists (deleted, "
                "or moved with the project). Create it again, or a symbolic link there to where it moved, then "
                "run the command again; nothing was started or recorded."
            )
        return None

    def close(self) -> None:
        """Let go of everything (the experiments keep running if any still do: the backend
        records them). Called by :meth:`run`; call it yourself after a failed :meth:`prepare`."""
        if self._stack is not None:
            self._stack.close()
        self.backend.close()
        self.selector.close()
        with contextlib.suppress(PbtrunError):
            self.writer.close()

    def _timeout(self) -> float | None:
        if self.look_again:
            self.look_again = False
            return 0.0
        due = [self.stops.next_at(), self.backend.next_poll_at(), self.writer.fold_due_at()]
        if not self.stopping and self.next_launch_at and self.queue.launchable():
            due.append(self.next_launch_at)
        if self.gpuwatch is not None and not self.stopping and self.queue.launchable():
            due.append(self.gpuwatch.next_read_at(self.waiting is not None))  # memory may have freed
        deadlines = [at for at in due if at is not None]
        return min(MAX_WAIT_S, max(0.0, min(deadlines) - time.monotonic())) if deadlines else None

    def _wait(self, timeout: float | None) -> list[Ended]:
        """Block until something happens; return the attempts that ended, with their outcomes."""
        self.writer.start_sync()  # the commits of this round become durable while we wait
        relayed: list[int] = []  # signals the backend asked to hear of
        for key, _ in self.selector.select(timeout):
            if key.data == "signal":
                for signum in control.read_signals(key.fd):
                    if (
                        signum in control.STOP_SIGNALS
                        and self.backend.interrupt_detaches
                        and not (self.cancel_on_interrupt or self.stopping)
                    ):
                        self._leave_running(130, "detached")
                    elif signum in control.STOP_SIGNALS:
                        self.request_stop(now=self.stopping)  # a second Ctrl-C: at once
                    else:
                        relayed.append(signum)
            elif key.data == "control":
                self._obey(control.read_commands(key.fd))
        ended = self.backend.collect(relayed)
        if news := self.backend.news():
            self._record_news(news)
        return ended

    def _record_news(self, news: list[News]) -> None:
        """A running attempt's new reference (a job id) and where it runs (a node), recorded
        (:mod:`pbtrun.run.news`); a job that starts running now starts its timeout_min too."""
        started: list[Experiment] = []
        self._transact(lambda sweep: started.extend(apply_news(sweep, news, self.host)))
        for exp in started:
            if exp.id in self.running:
                self._watch(self.running[exp.id], exp)

    def _obey(self, commands: list[str]) -> None:
        for command in commands:
            if command == "stop":
                self.request_stop(now=False)
            elif command == "stop-now":
                self.request_stop(now=True)
            elif command == "wake":
                with contextlib.suppress(PbtrunError):
                    self.writer.refresh()

    def _fold_if_due(self) -> None:
        """Keep pbtrun.json itself current while the scheduler waits (the journal is exact anyway)."""
        try:
            self.writer.fold_if_due()
        except PbtrunError as exc:
            if self.failure is None:
                self.failure = exc
                self.listener.message(f"error: {exc.message}")

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
        """Settle what a previous scheduler left (see :mod:`pbtrun.run.reconcile`)."""
        found = reconcile.Settled()
        self._transact(lambda sweep: reconcile.settle(sweep, self.backend, self.retry_failed, self.retry_lost, found))
        for exp_id, handle, gpus in found.adopted:
            self.gpus_held[exp_id] = gpus
            self._watch(handle, self.sweep.experiments[exp_id])
        self.notes += reconcile.notes(self.sweep, self.backend, found)

    def _round(self, ended: list[Ended]) -> None:
        """Record what ended and what launches now in ONE durable commit, then launch.

        Launches are recorded as running before they are sent (see the module doc); batching
        them with the ends halves the fsyncs per experiment.
        """
        self._forget_ended(ended)
        launch_now = (
            not self.stopping and self.failure is None and not self.halted and time.monotonic() >= self.next_launch_at
        )
        chosen = self._choose() if launch_now else []
        if not ended and not chosen:
            self._set_waiting(self.waiting_next)
            return
        done: list[Experiment] = []
        launched: list[tuple[Experiment, Attempt]] = []
        held: list[str] = []  # chosen, but max_failures was reached by an end of this round
        now = time.time()

        def change(sweep: Sweep) -> None:
            for exp_id, outcome in ended:
                exp = sweep.experiments[exp_id]
                if exp.status != RUNNING or exp.last is None:
                    continue  # its start was never recorded (a commit that failed): its log tells resume
                exp = after_end(exp, outcome, self.stops.why_ended(exp, outcome))
                sweep.update(exp)
                done.append(exp)
            if self._reaches_max_failures(done):
                held.extend(exp_id for exp_id, _ in chosen)
                return
            for exp_id, gpus in chosen:
                exp = sweep.experiments.get(exp_id)
                if exp is None or exp.removed or exp.status not in RUNNABLE:
                    continue  # another writer changed it since we looked
                pinned = gpus if self.placement.pins else None
                attempt = next_attempt(self.paths, exp, pinned, now, self.host, self.backend.reserve())
                if self.gpuwatch is not None:
                    attempt = attempt._replace(gpu_uuids=self.gpuwatch.uuids(gpus))
                exp = exp.to(RUNNING, attempt)
                sweep.update(exp)
                launched.append((exp, attempt))

        recorded = self._transact(change)
        self.queue.put_back(held)
        if not recorded:
            return
        if launched:  # first: a freed slot is refilled before anything is shown
            visible = self.gpuwatch.visible if self.gpuwatch is not None else None
            requests = launch_requests(launched, self.sweep_dir, self.sweep.cwd, visible)
            for (exp, attempt), handle in zip(launched, self.backend.launch(requests), strict=True):
                self.gpus_held[exp.id] = attempt.gpus or ()
                if self.gpuwatch is not None:
                    self.gpuwatch.promise(exp.id, exp.name, attempt.gpus or ())
                self._watch(handle, exp)
        if news := self.backend.news():  # a batch system's job ids: recorded before anything more is submitted
            self._record_news(news)
        self._show_round(done, launched)
        self._set_waiting(self.waiting_next)
        if launched and self.sweep.settings.pause_between_s > 0:
            self.next_launch_at = time.monotonic() + self.sweep.settings.pause_between_s

    def _show_round(self, done: list[Experiment], launched: list[tuple[Experiment, Attempt]]) -> None:
        """Show a round: what ended, then the new launches; put what runs again back in line."""
        for exp in done:
            if exp.status in RUNNABLE:  # it runs again: back in line, and look again at once
                self.queue.requeue(exp.id)
                self.look_again = True
            self.listener.ended(exp, self.sweep)
        for exp, _ in launched:
            self.listener.started(self.sweep.experiments.get(exp.id, exp), self.sweep)  # as recorded: job ids too
        if self.halted and not self.halt_shown:
            self._show_halt()

    def _reaches_max_failures(self, done: list[Experiment]) -> bool:
        """Count the experiments of this round that failed for good; True once ``max_failures``
        have in this run (as GNU parallel's ``--halt soon,fail=N``): a broken command should
        not burn through a sweep. Checked before the round's launches, which it then holds back."""
        self.failed += sum(1 for exp in done if exp.status == FAILED)
        limit = self.sweep.settings.max_failures
        self.halted = self.halted or (limit is not None and self.failed >= limit)
        return self.halted

    def _show_halt(self) -> None:
        self.halt_shown = True
        limit = self.sweep.settings.max_failures
        waiting = len(self.sweep.runnable())
        running = f"; the {len(self.running)} running finish first" if self.running else ""
        self.listener.message(
            f"{self.failed} experiment(s) failed (max_failures = {limit}): pbtrun launches nothing more "
            f"({waiting} left waiting){running}. Look at them with `pbtrun logs {self.sweep_dir} --failed` and "
            f"fix the cause; then `pbtrun resume {self.sweep_dir}` runs the rest (with --retry-failed, the "
            "failed ones again too)."
        )

    def _forget_ended(self, ended: list[Ended]) -> None:
        """Let go of the attempts that ended; the first backend fault stops launching."""
        for exp_id, outcome in ended:
            handle = self.running.pop(exp_id, None)
            self.gpus_held.pop(exp_id, None)
            if self.gpuwatch is not None:
                self.gpuwatch.forget(exp_id)
            steps = self.stops.forget(exp_id)
            if steps and handle is not None:
                self.backend.finish_stop(handle, steps)  # on what the attempt may have left running
            if outcome.fault is not None and self.failure is None:
                self.failure = outcome.fault.error(self.sweep.experiments[exp_id].name)
                self.listener.message(f"error: {self.failure.message}")

    # ---------------------------------------------------------------- launching

    def _choose(self) -> list[Chosen]:
        """Experiments to launch now and their GPUs (see :mod:`pbtrun.run.choosing`)."""
        if not self.queue.launchable():
            self.waiting_next = None
            return []
        held = self.gpus_held.values()
        chosen, waiting = choose(self.queue, self.sweep, self.placement, self.gpuwatch, held, len(self.running))
        if chosen or waiting:
            self.waiting_next = waiting  # said after the round's launches are shown
        return chosen

    def _set_waiting(self, reason: str | None) -> None:
        """Say why experiments wait (the live view, and ``status`` through the lock's record)."""
        if reason == self.waiting:
            return
        self.waiting = reason
        self.listener.waiting(reason)
        with contextlib.suppress(OSError):
            locks.note_waiting(self.paths, reason)

    def _watch(self, handle: Handle, exp: Experiment) -> None:
        self.running[exp.id] = handle
        timeout_min = exp.spec.timeout_min
        # A cluster's job counts its time from when it runs, not from its submission: a job
        # queued for hours must not time out (that time starts with the node news brings).
        queued = self.backend.interrupt_detaches and exp.last is not None and exp.last.host == self.host
        if timeout_min is not None and exp.last is not None and not queued:
            left_s = exp.last.started_at + timeout_min * 60 - time.time()
            self.stops.time_out_at(exp.id, time.monotonic() + left_s)

    # ---------------------------------------------------------------- stopping

    def request_stop(self, now: bool) -> None:
        """Stop the sweep: every running experiment is stopped as :meth:`Stops.stop` says."""
        if not self.stopping:
            self.stopping = True
            how = "at once (SIGKILL)" if now else f"gracefully (SIGINT, SIGTERM after {self.stops.grace_s:g} s)"
            again = "" if now else "; Ctrl-C again to kill them at once"
            self.listener.message(f"stopping {len(self.running)} running experiment(s) {how}{again}")
        for exp_id in self.running:
            self.stops.stop(exp_id, now, "stop")
        self._advance()

    def _advance(self) -> None:
        """Act on every timer that is due: timeouts and the steps of stops under way."""
        now = time.monotonic()
        for exp_id in self.stops.timed_out(now):
            exp = self.sweep.experiments[exp_id]
            self.listener.message(f"{exp.name} ran longer than timeout_min = {exp.spec.timeout_min:g}; stopping it")
            self.stops.stop(exp_id, now=False, why="timeout")
        first = self.stops.first_signals_due(now)
        if first:
            self._record_stops(first)
        self.stops.send_due(now, lambda exp_id, sig: self.backend.signal(self.running[exp_id], sig))

    def _record_stops(self, exp_ids: list[str]) -> None:
        """Write down, before their first signal goes out, that pbtrun stops these attempts and
        why. If this scheduler dies during the grace period (a lost SSH session, kill -9), the
        one that resumes still knows that their end was pbtrun's doing: a script that saves
        and exits 0 on SIGINT is interrupted and runs again, not succeeded."""
        at = time.time()
        self.stops.signalling(exp_ids, at)
        reasons = self.stops.reasons

        def change(sweep: Sweep) -> None:
            for exp_id in exp_ids:
                exp = sweep.experiments.get(exp_id)
                if exp is not None and exp.status == RUNNING and exp.last is not None and exp.last.stop_at is None:
                    sweep.update(exp.to(RUNNING, exp.last._replace(stop_at=at, stop_reason=reasons[exp_id])))

        self._transact(change)  # if it fails, the stop goes on: memory still knows (see Stops.why_ended)
