"""The local backend: experiments as processes on this machine, started and recorded by reapers.

Experiments are started, waited for and recorded by reaper processes (see ``reaper.py``) that
live outside the scheduler's fate. This module is the scheduler's side of them, behind the
interface of ``base.py``: it sends launch requests, turns the reapers' events into outcomes,
signals experiments' process groups (``groups.py``), and after a crash finds out what became of
each attempt recorded as running (:meth:`LocalBackend.settle`): adopted through the reaper that
still watches it, recorded from its exit record, or declared never started by taking its launch
claim. Orphans, whose reaper died, are found and waited for as ``orphans.py`` describes.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from pbtrun.backends import launches, logrecords, orphans, reaper
from pbtrun.backends.base import Ended, LaunchRequest, News, Outcome, StopStep
from pbtrun.backends.fromlog import exit_outcome, outcome_of, read_pid_record
from pbtrun.backends.groups import LingeringGroups, signal_group
from pbtrun.errors import RUNNER_DIED, WRITE_FAILED, BackendError, BackendFault
from pbtrun.proc import become_subreaper
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Attempt, Experiment

_PYTHONS = ("python", "python3")
CLAIMED_WAIT_S = 2.0  # how long a claimed log may go without records before it counts as lost
# A reaper is blocked in posix_spawn until its child has exec'd, which bounds how many
# experiments one reaper starts a second: two start them side by side on two cores
# (docs/performance.md measures it).
REAPERS = min(2, os.cpu_count() or 1)


class Handle:
    """A running attempt as the local backend tracks it. Never persisted."""

    __slots__ = ("attempt", "exp_id", "fault", "log", "name", "pgid", "reaper", "source")

    def __init__(self, exp_id: str, attempt: int, log: str, name: str, reaper: str | None) -> None:
        self.exp_id = exp_id
        self.attempt = attempt
        self.log = log  # the attempt's log, which holds its exit and pid records
        self.name = name  # the experiment's
        self.reaper = reaper  # the address of the reaper it was sent to, as its attempt records
        self.source: int | None = None  # the fd whose events will report its end
        self.pgid: int | None = None  # the experiment's process group, once started
        self.fault: BackendFault | None = None  # why it is watched by pidfd: its reaper died


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """``python``/``python3`` as the first word means the interpreter pbtrun runs under."""
    argv = list(argv)
    if argv and argv[0] in _PYTHONS and sys.executable:
        argv[0] = sys.executable
    return argv


def never_started() -> Outcome:
    """The outcome of an attempt that never started (and now never will)."""
    return Outcome(None, time.time(), started=False)


class ReaperLink:
    """One of our reapers, as the scheduler's side knows it."""

    __slots__ = ("address", "owner", "pid", "running")

    def __init__(self, owner: socket.socket, pid: int, address: str) -> None:
        self.owner: socket.socket | None = owner  # None once it died
        self.pid = pid
        self.address = address  # abstract socket address: each attempt records its reaper's, to be adopted
        self.running = 0  # our attempts it has been sent and not yet reported ended


class LocalBackend:
    """Starts, adopts, signals and reaps experiments as local processes, through reapers.

    Its own file descriptors (reaper connections, pidfds on orphans) sit on a selector of its
    own, whose one fd is what the scheduler waits on: they come and go without the scheduler
    knowing."""

    interrupt_detaches = False  # Ctrl-C stops the experiments: they are this terminal's work

    name = "local"
    signals = (signal.SIGCHLD,)  # an orphaned experiment of ours (its reaper died) ended

    def __init__(self, paths: SweepPaths) -> None:
        """Forks the first reaper at once: before the scheduler loads the sweep (a smaller
        process to copy) and before it starts any thread (which would make forking unsafe)."""
        self.paths = SweepPaths(paths.dir.resolve())  # the reapers run elsewhere: absolute paths
        self.sweep_dir = str(self.paths.dir)
        self.selector = selectors.EpollSelector()
        self.links: dict[str, ReaperLink] = {}  # by address
        self.handles: dict[str, Handle] = {}
        self.sources: dict[int, socket.socket | int] = {}
        self.adopted: dict[str, socket.socket] = {}  # another scheduler's reaper address -> connection
        self.failed_launches: list[Ended] = []  # launches no reaper could take
        self.lingering = LingeringGroups()
        self.subreaper = False
        self._start_reapers(1)

    def _start_reapers(self, count: int) -> None:
        while len(self.links) < count:
            owner, pid, address = reaper.start()
            self.links[address] = ReaperLink(owner, pid, address)
            self._watch_source(owner)

    def expect(self, runnable: int, max_parallel: int, settings: Mapping[str, Any] | None = None) -> None:
        if runnable > max_parallel:  # experiments will follow each other: start them side by side
            self._start_reapers(REAPERS)

    def reserve(self) -> str | None:
        """The live reaper with the fewest running, counting this launch from now."""
        live = [link for link in self.links.values() if link.owner is not None]
        if not live:
            return None
        link = min(live, key=lambda link: link.running)
        link.running += 1
        return link.address

    def _handle(self, exp: Experiment, attempt: Attempt) -> Handle:
        log = f"{self.sweep_dir}/{self.paths.log_name(exp, attempt.number)}"
        return Handle(exp.id, attempt.number, log, exp.name, attempt.ref)

    # ---------------------------------------------------------------- launching

    def launch(self, requests: Iterable[LaunchRequest]) -> list[Handle]:
        """Send each launch to the reaper its attempt records, as it comes."""
        handles = [self._send(request) for request in requests]
        if handles and not self.subreaper:
            # After the first launches, not before them (it imports ctypes): an experiment
            # whose reaper dies becomes our child, and its true exit status is waited for.
            self.subreaper = True
            become_subreaper()
        return handles

    def _send(self, request: LaunchRequest) -> Handle:
        exp = request.experiment
        handle = self.handles[exp.id] = self._handle(exp, request.attempt)
        link = self.links.get(handle.reaper or "")
        if link is None or link.owner is None:  # our reapers died: never start another, report it
            fault = BackendFault(RUNNER_DIED, "no reaper is left to start {name} (they died); pbtrun stops launching")
            self.failed_launches.append((exp.id, Outcome(None, time.time(), fault=fault, started=False)))
            return handle
        argv = resolve_argv(request.argv)
        message = launches.message(request, argv, handle.log)
        handle.source = link.owner.fileno()
        spill = f"{self.paths.logs}/.{os.path.basename(handle.log)}.request"
        if (why := reaper.send_launch(link.owner, message, spill)) is not None:
            self.failed_launches.append((exp.id, launches.refused(handle.log, exp.name, message["header"], why)))
        return handle

    def _watch_source(self, source: socket.socket | int) -> int:
        fd = source if isinstance(source, int) else source.fileno()
        self.sources[fd] = source
        self.selector.register(fd, selectors.EVENT_READ)
        return fd

    def _forget_source(self, fd: int) -> None:
        source = self.sources.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)
        if isinstance(source, int):
            os.close(source)
        elif source is not None:
            source.close()
        for link in self.links.values():
            if link.owner is not None and link.owner.fileno() == -1:
                link.owner = None

    # ---------------------------------------------------------------- events

    def news(self) -> list[News]:
        return []  # a local attempt's reference and host are known before it is launched

    def fds(self) -> tuple[int, ...]:
        return (self.selector.fileno(),)

    def next_poll_at(self) -> float | None:
        if self.failed_launches:
            return 0.0
        return self.lingering.next_check_at()

    def collect(self, signals: Collection[int] = ()) -> list[Ended]:
        ended, self.failed_launches = self._pop(self.failed_launches), []
        if signal.SIGCHLD in signals:
            ended += self._reap_orphans()
        for key, _ in self.selector.select(0):
            ended += self._on_ready(key.fd)
        if self.lingering:
            self.lingering.advance(time.monotonic())
        return ended

    def _on_ready(self, fd: int) -> list[Ended]:
        """Read what happened on one of our fds; return the attempts that ended."""
        source = self.sources.get(fd)
        if source is None:
            return []
        if isinstance(source, int):  # a pidfd: an orphaned experiment (its reaper died) ended
            ended = [(h.exp_id, self._orphan_ended(h, fd)) for h in self.handles.values() if h.source == fd]
            self._forget_source(fd)
            return self._pop(ended)
        ended = []
        for message in reaper.receive_all(source):  # all that is waiting: one commit for them all
            if message is None:
                return self._pop(ended) + self._source_gone(fd)
            ended += self._pop(self._event(message))
        return ended

    def _event(self, message: dict) -> list[Ended]:
        handle = self.handles.get(message.get("id", ""))
        if handle is None or handle.attempt != message.get("attempt"):
            return []  # another scheduler's experiment, reported by a reaper we adopted from
        op = message["op"]
        if op == "started":  # from a reaper an earlier pbtrun started (they announced starts)
            handle.pgid = message["pid"]
            return []
        if op == "ended":
            return [(handle.exp_id, Outcome(message["returncode"], message["ended_at"], message["pid"]))]
        if op == "abandoned":
            return self._already_there(handle)
        what = "record the exit status of" if message["started"] else "start"
        why = os.strerror(message["errno"] or 0)
        text = f"cannot {what} {{name}}: writing in {self.paths.logs} failed: {why}"
        fault = BackendFault(WRITE_FAILED, text, message["errno"])
        return [(handle.exp_id, Outcome(None, time.time(), fault=fault, started=message["started"]))]

    def _already_there(self, handle: Handle) -> list[Ended]:
        """The attempt's log existed when its reaper came to claim it. Usually resume abandoned
        the attempt (it never starts). But a state restored from its backup, or a journal moved
        aside, can be behind the logs: then this attempt ran before, and what its log says is
        taken, its outcome recorded or the process still running adopted, never run again."""
        self.handles.pop(handle.exp_id, None)
        link = self._link_of(handle.source)
        if link is not None:
            link.running -= 1
        if not logrecords.is_log(handle.log):  # a file of someone else's under the log's name: not ours
            return [(handle.exp_id, never_started())]  # the next attempt has another name
        # A log with neither record was claimed a moment ago by a reaper that is starting it:
        # its pid record, which names that reaper, follows as soon as the process is spawned.
        deadline = time.monotonic() + CLAIMED_WAIT_S
        while logrecords.read_records(handle.log) == (None, None) and time.monotonic() < deadline:
            time.sleep(0.005)
        fresh = Handle(handle.exp_id, handle.attempt, handle.log, handle.name, None)
        found = self._settle(fresh, claim=False)
        return [] if isinstance(found, Handle) else [(handle.exp_id, found)]  # adopted: its end will come

    def _pop(self, ended: list[Ended]) -> list[Ended]:
        for exp_id, _ in ended:
            handle = self.handles.pop(exp_id, None)
            link = self._link_of(handle.source) if handle is not None else None
            if link is not None:
                link.running -= 1
        return ended

    def _link_of(self, fd: int | None) -> ReaperLink | None:
        for link in self.links.values():
            if link.owner is not None and link.owner.fileno() == fd:
                return link
        return None

    # ---------------------------------------------------------------- orphans

    def _source_gone(self, fd: int) -> list[Ended]:
        """A reaper's connection closed. Normally it has nothing left to report; if it died with
        experiments still ours, record what their exit records say, or keep watching the ones
        that still run (orphans) so they are never started a second time."""
        own = self._link_of(fd)
        mine = [h for h in self.handles.values() if h.source == fd]
        fault = None
        if own is not None:  # our reaper died: never start another in a loop; stop launching instead
            own.running -= len(mine)
            own.owner = None
            with contextlib.suppress(ChildProcessError):
                os.waitpid(own.pid, os.WNOHANG)
            text = f"the reaper (pid {own.pid}) that runs the experiments died; pbtrun lost track of {{name}}"
            fault = BackendFault(RUNNER_DIED, text)
        self._forget_source(fd)
        ended = []
        for handle in mine:
            found = logrecords.read_records(handle.log)
            outcome = exit_outcome(handle.log)
            if outcome is None and found and found[1]:  # it may be our child now, ended already (a zombie)
                handle.pgid, handle.fault = found[1].get("pid"), fault
                outcome = self._orphan_ended(handle, None) if orphans.our_zombie(handle.pgid) else None
            pidfd = None if outcome is not None else self._orphan(handle, found)
            if pidfd is not None:
                handle.source, handle.fault = self._watch_source(pidfd), fault
                if handle.pgid is None:
                    handle.pgid = orphans.pid_of(pidfd)
                continue
            started = bool(found and found[1])
            ended.append((handle.exp_id, outcome or Outcome(None, time.time(), fault=fault, started=started)))
        return self._pop(ended)

    def _orphan(self, handle: Handle, found: tuple | None) -> int | None:
        """A pidfd on the experiment of an attempt whose reaper died, if it still runs."""
        return orphans.find(found, self._identity(handle))

    def _orphan_ended(self, handle: Handle, pidfd: int | None) -> Outcome:
        """How an orphan ended: waited for if it became our child, else what its log says, or lost."""
        return (
            orphans.wait_for(handle.log, handle.pgid, pidfd)
            or exit_outcome(handle.log)
            or Outcome(None, time.time(), fault=handle.fault)
        )

    def _reap_orphans(self) -> list[Ended]:
        """Wait for every child of ours that ended (SIGCHLD): orphaned experiments, whose
        outcomes are returned, and anything else an experiment left (reaped, so no zombie stays)."""
        waiting = {h.pgid: h for h in self.handles.values() if h.fault is not None and h.pgid is not None}
        ended = []
        while True:
            try:
                status = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                break
            if status is None:
                break
            handle = waiting.pop(status.si_pid, None)
            if handle is None:
                continue
            outcome = orphans.reaped(handle.log, status)
            if isinstance(handle.source, int) and isinstance(self.sources.get(handle.source), int):
                self._forget_source(handle.source)
            ended.append((handle.exp_id, outcome))
        return self._pop(ended)

    def _belongs(self, record: dict, handle: Handle) -> bool:
        return orphans.belongs(record, self._identity(handle))

    def _identity(self, handle: Handle) -> tuple[bytes, ...]:
        return orphans.identity(self.sweep_dir, handle.name, handle.attempt)

    # ---------------------------------------------------------------- after a crash

    def settle(self, experiment: Experiment, attempt: Attempt) -> Handle | Outcome:
        return self._settle(self._handle(experiment, attempt), claim=True)

    def _settle(self, handle: Handle, claim: bool) -> Handle | Outcome:
        """What became of the attempt logged at ``handle.log``: see :meth:`settle`. With
        ``claim``, an attempt with no log is claimed as abandoned; its reaper is the one
        ``handle.reaper`` names, else the one its pid record names."""
        try:
            found = logrecords.read_records(handle.log)
            if found is None:
                if not claim or logrecords.abandon(handle.log):
                    return never_started()
                found = logrecords.read_records(handle.log) or (None, None)  # the reaper claimed it just now
        except OSError as exc:
            raise BackendError(
                f"cannot settle {handle.name}: writing in {self.paths.logs} failed: {exc.strerror or exc}. "
                "Free space or fix permissions there, then resume the sweep."
            ) from None
        exit_record, pid_record = found
        if exit_record is not None:
            if exit_record.get("abandoned"):
                return never_started()
            return outcome_of(exit_record, pid_record) or Outcome(None, time.time())
        if pid_record is not None and not self._belongs(pid_record, handle):
            found = pid_record = None  # a forged or stale record: neither adopted nor ever signalled
        handle.pgid = (pid_record or {}).get("pid")
        address = handle.reaper or (pid_record or {}).get("address")
        conn = self._connect(address) if address else None
        if conn is not None:
            handle.source = conn.fileno()
        else:  # its reaper is gone: the experiment may still run, orphaned
            pidfd = self._orphan(handle, found or (None, None))
            if pidfd is None:
                return exit_outcome(handle.log) or Outcome(None, time.time())
            handle.source = self._watch_source(pidfd)
        outcome = exit_outcome(handle.log)  # it may have ended while we connected
        if outcome is not None:
            if conn is None:
                self._forget_source(handle.source)
            return outcome
        self.handles[handle.exp_id] = handle
        return handle

    def _connect(self, address: str) -> socket.socket | None:
        if address in self.adopted:
            return self.adopted[address]
        conn = reaper.connect(address)
        if conn is None:
            return None
        self.adopted[address] = conn
        self._watch_source(conn)
        return conn

    # ---------------------------------------------------------------- signals and the end

    def signal(self, handle: Handle, sig: int) -> bool:
        """Signal the experiment's process group; False if it has not started yet. A pid record
        that names a process other than this attempt's (a forged log) is never acted on."""
        if handle.pgid is None:
            record = read_pid_record(handle.log)
            if record is None:
                return False
            if not self._belongs(record, handle):
                return True  # nothing of ours to signal: the attempt's end comes from its reaper
            handle.pgid = record.get("pid")
        if not isinstance(handle.pgid, int):
            return False
        signal_group(handle.pgid, sig)
        return True

    def finish_stop(self, handle: Handle, steps: Sequence[StopStep]) -> None:
        if handle.pgid is not None:
            self.lingering.add(handle.pgid, steps)

    def where(self, handle: Handle) -> str | None:
        record = read_pid_record(handle.log) if handle.pgid is None else None
        if record is not None and self._belongs(record, handle):
            handle.pgid = record.get("pid")
        return None if handle.pgid is None else f"pid {handle.pgid}"

    def close(self) -> None:
        """Let go of the reapers (each exits once its last experiment has ended) and adoptees."""
        for fd in list(self.sources):
            self._forget_source(fd)
        self.adopted.clear()
        for link in self.links.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(link.pid, os.WNOHANG)
        self.selector.close()
