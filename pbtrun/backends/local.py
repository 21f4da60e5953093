"""Local processes: the only code, with ``reaper.py``, that starts or signals experiments here.

Experiments are started, waited for and recorded by a reaper process (see ``reaper.py``) that
lives outside the scheduler's fate. This module is the scheduler's side: it sends launch
requests, turns the reaper's events into outcomes, signals experiments' process groups, and
after a crash finds out what became of each attempt recorded as running (``inspect``): adopted
through the reaper that still watches it, recorded from its exit record, or declared never
started by taking its launch claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from pbtrun.backends import logrecords, reaper
from pbtrun.errors import BackendError
from pbtrun.printable import printable
from pbtrun.proc import exit_code_of, group_has_live_process, group_members, process_start_time
from pbtrun.state.paths import SweepPaths

# The observation vocabulary lives with the state, for status to read without this module:
from pbtrun.state.records import (
    SEEN_ENDED,
    SEEN_LOST,
    SEEN_NOT_STARTED,
    SEEN_RUNNING,
    SEEN_UNKNOWN,
    Attempt,
    Experiment,
    Observed,
)

_PYTHONS = ("python", "python3")
CLAIMED_WAIT_S = 2.0  # how long a claimed log may go without records before it counts as lost
ABANDONED = "abandoned"  # what inspect() returns for an attempt it made sure never starts


class Handle:
    """A running attempt as the backend tracks it. Never persisted."""

    __slots__ = ("attempt", "error", "exp_id", "log", "name", "pgid", "source")

    def __init__(
        self, exp_id: str, attempt: int, log: str, name: str = "", source: int | None = None, pgid: int | None = None
    ) -> None:
        self.exp_id = exp_id
        self.attempt = attempt
        self.log = log  # the attempt's log, which holds its exit and pid records
        self.name = name  # the experiment's
        self.source = source  # the fd whose events will report its end
        self.pgid = pgid  # the experiment's process group, once started
        self.error: str | None = None  # why it is watched by pidfd: its reaper died


class Outcome(NamedTuple):
    """How an attempt ended; ``returncode`` None means unknowable (the attempt was lost)."""

    returncode: int | None
    ended_at: float
    pid: int | None = None
    error: str | None = None  # the backend could not do its job (disk full, read-only train dir)
    started: bool = True  # False: the experiment never started, so it may simply run again
    started_at: float | None = None  # when it started, if it is known better than the attempt knows it
    errno: int | None = None  # with ``error``: the system's reason, where one was given (ENOSPC: disk full)


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """``python``/``python3`` as the first word means the interpreter pbtrun runs under."""
    argv = list(argv)
    if argv and argv[0] in _PYTHONS and sys.executable:
        argv[0] = sys.executable
    return argv


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

    Its file descriptors are registered on the scheduler's selector with ``("backend", fd)``;
    the scheduler hands them back to :meth:`on_ready`, which returns the attempts that ended.
    """

    name = "local"

    def __init__(self, paths: SweepPaths, cwd: str, selector: selectors.BaseSelector) -> None:
        self.paths = SweepPaths(paths.dir.resolve())  # the reapers run elsewhere: absolute paths
        self.sweep_dir = str(self.paths.dir)
        self.cwd = cwd
        self.selector = selector
        self.links: dict[str, ReaperLink] = {}  # by address
        self.handles: dict[str, Handle] = {}
        self.sources: dict[int, socket.socket | int] = {}
        self.adopted: dict[str, socket.socket] = {}  # another scheduler's reaper address -> connection
        self.failed_launches: list[tuple[str, Outcome]] = []  # launches no reaper could take

    def start(self, reapers: int = 1) -> None:
        """Have ``reapers`` reapers (fork the missing ones now, rather than at the first
        launch). The scheduler calls this before it starts any thread, which would make
        forking unsafe; the first one before it even loads the sweep (a smaller copy).

        Why more than one: a reaper is blocked in ``posix_spawn`` until its child has exec'd,
        which bounds how many experiments one reaper starts a second; two spawn side by side on
        two cores (docs/performance.md measures it)."""
        while len(self.links) < max(1, reapers):
            owner, pid, address = reaper.start()
            self.links[address] = ReaperLink(owner, pid, address)
            self._watch_source(owner)

    @property
    def address(self) -> str | None:
        """The first reaper's address (one-reaper callers and tests)."""
        return next(iter(self.links), None)

    @property
    def reaper_pid(self) -> int | None:
        link = next(iter(self.links.values()), None)
        return None if link is None else link.pid

    def assign(self) -> str | None:
        """The reaper the next launch goes to (the live one with the fewest running, counting
        this one from now), to be recorded in the attempt before it is launched; None if every
        reaper died."""
        self.start()
        live = [link for link in self.links.values() if link.owner is not None]
        if not live:
            return None
        link = min(live, key=lambda link: link.running)
        link.running += 1
        return link.address

    # ---------------------------------------------------------------- launching

    def launch(self, exp: Experiment, attempt: Attempt, env: Mapping[str, str]) -> Handle:
        """Send the launch to the attempt's reaper (``attempt.ref``, from :meth:`assign`).
        ``env`` is what the experiment's environment adds to pbtrun's own."""
        self.start()
        log = self.log(exp, attempt.number)
        link = self.links.get(attempt.ref or "")
        if link is None and (address := self.assign()) is not None:
            link = self.links[address]
        handle = Handle(exp.id, attempt.number, log, exp.name)
        self.handles[exp.id] = handle
        if link is None or link.owner is None:  # our reapers died: never start another, report it
            error = "no reaper is left to start {name} (they died); pbtrun stops launching"
            self.failed_launches.append((exp.id, Outcome(None, time.time(), error=error, started=False)))
            return handle
        argv = resolve_argv(exp.argv)
        request = {
            "op": "launch",
            "id": exp.id,
            "attempt": attempt.number,
            "argv": argv,
            "cwd": self.cwd,
            "env": env,  # the reaper has pbtrun's environment already: only what it adds
            "header": _header(exp, attempt, self.cwd, argv),
            "log": log,
        }
        handle.source = link.owner.fileno()
        spill = f"{self.paths.logs}/.{os.path.basename(log)}.request"
        if (why := reaper.send_launch(link.owner, request, spill)) is not None:
            self.failed_launches.append((exp.id, self._refused(handle, request["header"], why)))
        return handle

    def _refused(self, handle: Handle, header: str, why: str) -> Outcome:
        """A launch no reaper could be given: it ends at once with 127, as a command that cannot
        be executed does, and its log (claimed here, as a reaper claims one) says why."""
        text = f"pbtrun: cannot start {handle.name}: {why}\n"
        now = time.time()
        record = json.dumps({"ended_at": now, "pid": None, "returncode": 127}).encode()
        try:
            fd = os.open(handle.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, logrecords.records(record) + header.encode() + text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            return Outcome(None, now, error=f"cannot start {{name}}: {why}; nor write its log: {exc.strerror}")
        return Outcome(127, now)

    def take_failed_launches(self) -> list[tuple[str, Outcome]]:
        """Launches that could not even be sent (see :meth:`launch`): they ended at once."""
        failed, self.failed_launches = self.failed_launches, []
        return self._pop(failed)

    def log(self, exp: Experiment, number: int) -> str:
        return f"{self.sweep_dir}/{self.paths.log_name(exp, number)}"

    def _watch_source(self, source: socket.socket | int) -> int:
        fd = source if isinstance(source, int) else source.fileno()
        self.sources[fd] = source
        self.selector.register(fd, selectors.EVENT_READ, ("backend", fd))
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

    def on_ready(self, fd: int) -> list[tuple[str, Outcome]]:
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

    def _orphan_ended(self, handle: Handle, pidfd: int | None) -> Outcome:
        """How an orphan ended: waited for, if it became our child (the scheduler is a child
        subreaper), its exit record then written as its reaper would have; else what its log
        says, or lost."""
        status = None
        with contextlib.suppress(ChildProcessError, OSError):
            if pidfd is not None:
                status = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
            elif handle.pgid is not None:
                status = os.waitid(os.P_PID, handle.pgid, os.WEXITED | os.WNOHANG)
        if status is None:
            return exit_outcome(handle.log) or Outcome(None, time.time(), error=handle.error)
        return _reaped(handle, status)

    def reap_orphans(self) -> list[tuple[str, Outcome]]:
        """Wait for every child of ours that ended (SIGCHLD): orphaned experiments, whose
        outcomes are returned, and anything else an experiment left (reaped, so no zombie stays)."""
        orphans = {h.pgid: h for h in self.handles.values() if h.error is not None and h.pgid is not None}
        ended = []
        while True:
            try:
                status = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                break
            if status is None:
                break
            handle = orphans.pop(status.si_pid, None)
            if handle is None:
                continue
            outcome = _reaped(handle, status)
            if isinstance(handle.source, int) and isinstance(self.sources.get(handle.source), int):
                self._forget_source(handle.source)
            ended.append((handle.exp_id, outcome))
        return self._pop(ended)

    def _event(self, message: dict) -> list[tuple[str, Outcome]]:
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
        error = f"cannot {what} {{name}}: writing in {self.paths.logs} failed: {why}"
        outcome = Outcome(None, time.time(), error=error, started=message["started"], errno=message["errno"])
        return [(handle.exp_id, outcome)]

    def _already_there(self, handle: Handle) -> list[tuple[str, Outcome]]:
        """The attempt's log existed when its reaper came to claim it. Usually resume abandoned
        the attempt (it never starts). But a state restored from its backup, or a journal moved
        aside, can be behind the logs: then this attempt ran before, and what its log says is
        taken, its outcome recorded or the process still running adopted, never run again."""
        self.handles.pop(handle.exp_id, None)
        link = self._link_of(handle.source)
        if link is not None:
            link.running -= 1
        if not logrecords.is_log(handle.log):  # a file of someone else's under the log's name: not ours
            return [(handle.exp_id, Outcome(None, time.time(), started=False))]  # the next attempt has another name
        # A log with neither record was claimed a moment ago by a reaper that is starting it:
        # its pid record, which names that reaper, follows as soon as the process is spawned.
        deadline = time.monotonic() + CLAIMED_WAIT_S
        while logrecords.read_records(handle.log) == (None, None) and time.monotonic() < deadline:
            time.sleep(0.005)
        fresh = Handle(handle.exp_id, handle.attempt, handle.log, handle.name)
        found = self._settle(fresh, None, claim=False)
        if isinstance(found, Handle):
            return []  # adopted: its end will come
        if isinstance(found, Outcome):
            return [(handle.exp_id, found)]
        return [(handle.exp_id, Outcome(None, time.time(), started=False))]

    def _pop(self, ended: list[tuple[str, Outcome]]) -> list[tuple[str, Outcome]]:
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

    def _source_gone(self, fd: int) -> list[tuple[str, Outcome]]:
        """A reaper's connection closed. Normally it has nothing left to report; if it died with
        experiments still ours, record what their exit records say, or keep watching the ones
        that still run (orphans) so they are never started a second time."""
        own = self._link_of(fd)
        mine = [h for h in self.handles.values() if h.source == fd]
        error = None
        if own is not None:  # our reaper died: never start another in a loop; stop launching instead
            own.running -= len(mine)
            own.owner = None
            with contextlib.suppress(ChildProcessError):
                os.waitpid(own.pid, os.WNOHANG)
            error = f"the reaper (pid {own.pid}) that runs the experiments died; pbtrun lost track of {{name}}"
        self._forget_source(fd)
        ended = []
        for handle in mine:
            found = logrecords.read_records(handle.log)
            outcome = exit_outcome(handle.log)
            if outcome is None and found and found[1]:  # it may be our child now, ended already (a zombie)
                handle.pgid, handle.error = found[1].get("pid"), error
                outcome = self._orphan_ended(handle, None) if self._our_zombie(handle.pgid) else None
            pidfd = None if outcome is not None else self._orphan(handle, found)
            if pidfd is not None:
                handle.source, handle.error = self._watch_source(pidfd), error
                if handle.pgid is None:
                    handle.pgid = _pid_of(pidfd)
                continue
            started = bool(found and found[1])
            ended.append((handle.exp_id, outcome or Outcome(None, time.time(), error=error, started=started)))
        return self._pop(ended)

    @staticmethod
    def _our_zombie(pid: object) -> bool:
        """Whether ``pid`` is a child of ours that has ended and waits to be reaped."""
        if not isinstance(pid, int):
            return False
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return False

    def _orphan(self, handle: Handle, found: tuple | None) -> int | None:
        """A pidfd on the experiment of an attempt whose reaper died, if it still runs: found by
        its pid record, or, if the reaper died between spawning it and recording its pid, by the
        PBTRUN_* variables in its environment."""
        if found is None:
            return None  # no log: the reaper never claimed the attempt, so never started it
        pid_record = found[1]
        if pid_record is not None and self._belongs(pid_record, handle):
            return _pidfd(pid_record.get("pid"), pid_record.get("start"))
        return _pidfd_by_environ(self._identity(handle))

    # ---------------------------------------------------------------- after a crash

    def inspect(self, exp: Experiment, attempt: Attempt) -> Handle | Outcome | str:
        """What became of an attempt recorded as running: an adopted handle, its outcome, or
        ``ABANDONED`` (in which case this call has made sure it never will start)."""
        handle = Handle(exp.id, attempt.number, self.log(exp, attempt.number), exp.name)
        return self._settle(handle, attempt.ref, claim=True)

    def _settle(self, handle: Handle, address: str | None, claim: bool) -> Handle | Outcome | str:
        """What became of the attempt logged at ``handle.log``: see :meth:`inspect`. With
        ``claim``, an attempt with no log is claimed as abandoned; ``address`` is its reaper's
        (else the one its pid record names)."""
        try:
            found = logrecords.read_records(handle.log)
            if found is None:
                if not claim or logrecords.abandon(handle.log):
                    return ABANDONED
                found = logrecords.read_records(handle.log) or (None, None)  # the reaper claimed it just now
        except OSError as exc:
            raise BackendError(
                f"cannot settle {handle.name}: writing in {self.paths.logs} failed: {exc.strerror or exc}. "
                "Free space or fix permissions there, then resume the sweep."
            ) from None
        exit_record, pid_record = found
        if exit_record is not None:
            if exit_record.get("abandoned"):
                return ABANDONED
            return _outcome(exit_record, pid_record) or Outcome(None, time.time())
        if pid_record is not None and not self._belongs(pid_record, handle):
            found = pid_record = None  # a forged or stale record: neither adopted nor ever signalled
        handle.pgid = (pid_record or {}).get("pid")
        address = address or (pid_record or {}).get("address")
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
            found = logrecords.read_records(handle.log)
            record = found[1] if found and found[1] else None
            if record is None:
                return False
            if not self._belongs(record, handle):
                return True  # nothing of ours to signal: the attempt's end comes from its reaper
            handle.pgid = record.get("pid")
        if not isinstance(handle.pgid, int):
            return False
        self.signal_group(handle.pgid, sig)
        return True

    def _belongs(self, record: dict, handle: Handle) -> bool:
        """Whether a pid record names this attempt's process group: its leader runs, started when
        the record says, and carries the attempt's ``PBTRUN_*`` identity in its environment; or,
        its leader gone, a process of the group still carries it, or none is left to signal. Anyone
        who can write in a sweep directory can write a pid record: without this, resume would adopt
        and ``stop --now`` kill whatever process it names."""
        pid, start = record.get("pid"), record.get("start")
        if not isinstance(pid, int) or pid <= 1:
            return False
        markers = self._identity(handle)
        started = process_start_time(pid)
        if started is not None:
            return started == start and _carries(pid, markers)
        members = group_members(pid)
        return not members or any(_carries(member, markers) for member in members)

    def _identity(self, handle: Handle) -> tuple[bytes, ...]:
        return (
            f"PBTRUN_SWEEP_DIR={self.sweep_dir}".encode(),
            f"PBTRUN_EXPERIMENT={handle.name}".encode(),
            f"PBTRUN_ATTEMPT={handle.attempt}".encode(),
        )

    def signal_group(self, pgid: int, sig: int) -> None:
        """Signal a process group, also one whose leader has ended (see :meth:`group_alive`)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def group_alive(self, pgid: int, zombies: bool = True) -> bool:
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

    def close(self) -> None:
        """Let go of the reaper (it exits once its last experiment has ended) and adoptees."""
        for fd in list(self.sources):
            self._forget_source(fd)
        self.adopted.clear()
        for link in self.links.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(link.pid, os.WNOHANG)


# --------------------------------------------------------------------------- looking without a scheduler


def observe(log: str, same_host: bool = True) -> Observed:
    """Read-only: what the attempt logged in ``log`` is now, for ``status`` when no scheduler
    runs and the state still says "running" (only a scheduler records what became of it).
    Nothing is written, claimed or signalled: the next scheduler settles it (``inspect``).
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


# --------------------------------------------------------------------------- records and processes


def _reaped(handle: Handle, status: os.waitid_result) -> Outcome:
    """The outcome of an orphan we waited for; its log's exit record is written as its reaper
    would have (best effort: the state records it all the same)."""
    outcome = Outcome(exit_code_of(status), time.time(), status.si_pid)
    with contextlib.suppress(OSError):
        logrecords.write_exit(handle.log, exit_code_of(status), outcome.ended_at, status.si_pid)
    return outcome


def exit_outcome(log: str) -> Outcome | None:
    """The outcome the log's exit record holds, if it is written (and not an abandon)."""
    found = logrecords.read_records(log)
    if found is None or found[0] is None or found[0].get("abandoned"):
        return None
    return _outcome(*found)


def _outcome(record: dict, pid_record: dict | None = None) -> Outcome | None:
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


def _pidfd(pid: object, start: object) -> int | None:
    """A pidfd on process ``pid`` if it still runs and started at ``start`` (not a recycled pid)."""
    if not isinstance(pid, int) or start is None or process_start_time(pid) != start:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != start:  # recycled between the check and the open
        os.close(pidfd)
        return None
    return pidfd


def _pid_of(pidfd: int) -> int | None:
    """The pid a pidfd refers to (from /proc/self/fdinfo)."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}") as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _carries(pid: int, markers: tuple[bytes, ...]) -> bool:
    """Whether process ``pid``'s environment holds every marker."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = set(f.read().split(b"\0"))
    except OSError:
        return False
    return all(m in env for m in markers)


def _pidfd_by_environ(markers: tuple[bytes, ...]) -> int | None:
    """A pidfd on the process-group leader whose environment holds every marker, if any."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        with contextlib.suppress(OSError):
            if _carries(pid, markers) and os.getpgid(pid) == pid:
                return _pidfd(pid, process_start_time(pid))
    return None


def _header(exp: Experiment, attempt: Attempt, cwd: str, argv: Sequence[str]) -> str:
    """The lines after the records: what ran (``argv`` as run: ``python`` resolved), where, on
    which GPUs. Each is one line whatever the values hold (a newline in an argument is written
    ``\\n``): readers of the log skip exactly these lines."""
    when = time.strftime(logrecords.HEADER_TIME, time.localtime(attempt.started_at))
    gpus = "not pinned" if attempt.gpus is None else ",".join(map(str, attempt.gpus))
    return (
        f"# pbtrun: {printable(exp.name)}, attempt {attempt.number}, started {when} on {printable(attempt.host)}\n"
        f"# cwd: {printable(cwd)}\n# gpus: {gpus}\n# argv: {printable(shlex.join(argv))}\n"
    )
