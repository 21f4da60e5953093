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
from dataclasses import dataclass
from pathlib import Path

from pbtrun.backends import reaper
from pbtrun.proc import process_start_time
from pbtrun.state import Attempt, Experiment
from pbtrun.store import SweepPaths

_PYTHONS = ("python", "python3")
NOT_STARTED = "not_started"


@dataclass
class Handle:
    """A running attempt as the backend tracks it. Never persisted."""

    exp_id: str
    attempt: int
    pid_file: Path
    exit_file: Path
    source: int | None = None  # the fd whose events will report its end
    pgid: int | None = None  # the experiment's process group, once started
    error: str | None = None  # why it is watched by pidfd: its reaper died


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended; ``returncode`` None means unknowable (the attempt was lost)."""

    returncode: int | None
    ended_at: float
    pid: int | None = None
    error: str | None = None  # the backend could not do its job (disk full, read-only train dir)
    started: bool = True  # False: the experiment never started, so it may simply run again


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """``python``/``python3`` as the first word means the interpreter pbtrun runs under."""
    argv = list(argv)
    if argv and argv[0] in _PYTHONS and sys.executable:
        argv[0] = sys.executable
    return argv


class LocalBackend:
    """Starts, adopts, signals and reaps experiments as local processes, through a reaper.

    Its file descriptors are registered on the scheduler's selector with ``("backend", fd)``;
    the scheduler hands them back to :meth:`on_ready`, which returns the attempts that ended.
    """

    name = "local"

    def __init__(self, paths: SweepPaths, cwd: str, selector: selectors.BaseSelector) -> None:
        self.paths = SweepPaths(paths.dir.resolve())  # the reaper runs elsewhere: absolute paths
        self.cwd = cwd
        self.selector = selector
        self.owner: socket.socket | None = None
        self.reaper_pid: int | None = None
        self.handles: dict[str, Handle] = {}
        self.sources: dict[int, socket.socket | int] = {}
        self.adopted: dict[str, socket.socket] = {}  # reaper address -> connection
        self.base_env: dict[str, str] = {}

    # ---------------------------------------------------------------- launching

    def launch(self, exp: Experiment, attempt: Attempt, env: Mapping[str, str]) -> Handle:
        if self.owner is None:
            self.owner, self.reaper_pid, _ = reaper.start(self.cwd)
            self.base_env = dict(os.environ)  # the reaper has this already: send only differences
            self._watch_source(self.owner)
        files = self._files(exp, attempt.number)
        request = {
            "op": "launch",
            "id": exp.id,
            "attempt": attempt.number,
            "argv": resolve_argv(exp.argv),
            "env": {k: v for k, v in env.items() if self.base_env.get(k) != v},
            "header": _header(exp, attempt, self.cwd),
            **{key: str(path) for key, path in files.items()},
        }
        handle = Handle(exp.id, attempt.number, files["pid"], files["exit"], self.owner.fileno())
        self.handles[exp.id] = handle
        reaper.send(self.owner, request)  # if the reaper is gone, its end of stream says so
        return handle

    def _files(self, exp: Experiment, number: int) -> dict[str, Path]:
        p = self.paths
        return {
            "log": p.log(exp, number),
            "start": p.start_file(exp, number),
            "exit": p.exit_file(exp, number),
            "pid": p.pid_file(exp, number),
        }

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
        if self.owner is not None and self.owner.fileno() == -1:
            self.owner = None

    # ---------------------------------------------------------------- events

    def on_ready(self, fd: int) -> list[tuple[str, Outcome]]:
        """Read what happened on one of our fds; return the attempts that ended."""
        source = self.sources.get(fd)
        if source is None:
            return []
        if isinstance(source, int):  # a pidfd: an orphaned experiment (its reaper died) ended
            ended = [
                (h.exp_id, read_exit(h.exit_file) or Outcome(None, time.time(), error=h.error))
                for h in self.handles.values()
                if h.source == fd
            ]
            self._forget_source(fd)
            return self._pop(ended)
        ended = []
        for message in reaper.receive_all(source):  # all that is waiting: one commit for them all
            if message is None:
                return self._pop(ended) + self._source_gone(fd)
            ended += self._pop(self._event(message))
        return ended

    def _event(self, message: dict) -> list[tuple[str, Outcome]]:
        handle = self.handles.get(message.get("id", ""))
        if handle is None or handle.attempt != message.get("attempt"):
            return []  # another scheduler's experiment, reported by a reaper we adopted from
        op = message["op"]
        if op == "started":
            handle.pgid = message["pid"]
            return []
        if op == "ended":
            return [(handle.exp_id, Outcome(message["returncode"], message["ended_at"], message["pid"]))]
        if op == "abandoned":
            return [(handle.exp_id, Outcome(None, time.time(), started=False))]
        what = "record the exit status of" if message["started"] else "start"
        why = os.strerror(message["errno"] or 0)
        error = f"cannot {what} {{name}}: writing in {self.paths.logs} failed: {why}"
        return [(handle.exp_id, Outcome(None, time.time(), error=error, started=message["started"]))]

    def _pop(self, ended: list[tuple[str, Outcome]]) -> list[tuple[str, Outcome]]:
        for exp_id, _ in ended:
            self.handles.pop(exp_id, None)
        return ended

    def _source_gone(self, fd: int) -> list[tuple[str, Outcome]]:
        """A reaper's connection closed. Normally it has nothing left to report; if it died with
        experiments still ours, record what their exit records say, or keep watching the ones
        that still run (orphans) so they are never started a second time."""
        own = self.owner is not None and fd == self.owner.fileno()
        self._forget_source(fd)
        error = None
        if own:  # our reaper died: never start another in a loop; stop launching instead
            self.owner = None
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.reaper_pid, os.WNOHANG)  # type: ignore[arg-type]
            error = f"the reaper (pid {self.reaper_pid}) that runs the experiments died; pbtrun lost track of {{name}}"
        ended = []
        for handle in [h for h in self.handles.values() if h.source == fd]:
            outcome = read_exit(handle.exit_file)
            pidfd = None if outcome is not None else _pidfd_of(handle.pid_file)
            if pidfd is not None:
                handle.source, handle.error = self._watch_source(pidfd), error
                continue
            started = handle.pid_file.exists()
            ended.append((handle.exp_id, outcome or Outcome(None, time.time(), error=error, started=started)))
        return self._pop(ended)

    # ---------------------------------------------------------------- after a crash

    def inspect(self, exp: Experiment, attempt: Attempt) -> Handle | Outcome | str:
        """What became of an attempt recorded as running: an adopted handle, its outcome, or
        ``NOT_STARTED`` (in which case this call has made sure it never will start)."""
        files = self._files(exp, attempt.number)
        outcome = read_exit(files["exit"])
        if outcome is not None:
            return outcome
        claim = read_claim(files["start"])
        if claim is None and _abandon(files["start"]):
            return NOT_STARTED
        claim = claim or read_claim(files["start"]) or {}
        if claim.get("abandoned"):
            return NOT_STARTED
        handle = Handle(exp.id, attempt.number, files["pid"], files["exit"])
        handle.pgid = _read_pid(files["pid"])[0]
        alive = process_start_time(claim.get("waiter_pid", -1)) == claim.get("waiter_start")
        conn = self._connect(claim.get("socket", "")) if alive else None
        if conn is not None:
            handle.source = conn.fileno()
        else:  # its reaper is gone: the experiment may still run, orphaned
            pidfd = _pidfd_of(files["pid"])
            if pidfd is None:
                return read_exit(files["exit"]) or Outcome(None, time.time())
            handle.source = self._watch_source(pidfd)
        outcome = read_exit(files["exit"])  # it may have ended while we connected
        if outcome is not None:
            if conn is None:
                self._forget_source(handle.source)
            return outcome
        self.handles[exp.id] = handle
        return handle

    def _connect(self, address: str) -> socket.socket | None:
        if address in self.adopted:
            return self.adopted[address]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            conn.connect(address)
        except OSError:
            conn.close()
            return None
        self.adopted[address] = conn
        self._watch_source(conn)
        return conn

    # ---------------------------------------------------------------- signals and the end

    def signal(self, handle: Handle, sig: int) -> bool:
        """Signal the experiment's process group; False if it has not started yet."""
        if handle.pgid is None:
            handle.pgid = _read_pid(handle.pid_file)[0]
        if handle.pgid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pgid, sig)
        return True

    def close(self) -> None:
        """Let go of the reaper (it exits once its last experiment has ended) and adoptees."""
        for fd in list(self.sources):
            self._forget_source(fd)
        self.adopted.clear()
        if self.reaper_pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.reaper_pid, os.WNOHANG)


# --------------------------------------------------------------------------- files


def read_exit(path: Path) -> Outcome | None:
    try:
        data = json.loads(path.read_bytes())
        return Outcome(int(data["returncode"]), float(data["ended_at"]), data.get("pid"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_claim(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _abandon(start: Path) -> bool:
    return reaper.claim(str(start), {"abandoned": True, "at": time.time()})


def _read_pid(pid_file: Path) -> tuple[int | None, int | None]:
    """The experiment's pid (also its process group) and start time, once the reaper wrote them."""
    try:
        pid, start = pid_file.read_text().split()
        return int(pid), (None if start == "None" else int(start))
    except (OSError, ValueError):
        return None, None


def _pidfd_of(pid_file: Path) -> int | None:
    """A pidfd on the experiment if it still runs (pid and start time both match)."""
    pid, start = _read_pid(pid_file)
    if pid is None or start is None or process_start_time(pid) != start:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != start:  # recycled between the check and the open
        os.close(pidfd)
        return None
    return pidfd


def _header(exp: Experiment, attempt: Attempt, cwd: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(attempt.started_at))
    gpus = "not pinned" if attempt.gpus is None else ",".join(map(str, attempt.gpus))
    return (
        f"# pbtrun: {exp.name}, attempt {attempt.number}, started {when} on {attempt.host}\n"
        f"# cwd: {cwd}\n# gpus: {gpus}\n# argv: {shlex.join(exp.argv)}\n"
    )
