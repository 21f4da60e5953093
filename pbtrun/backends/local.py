"""Local processes: the only module that starts or signals experiments on this machine.

Process model. For each attempt the scheduler forks a *waiter*; the waiter starts a session and
process group of its own (so a Ctrl-C or a lost terminal never reaches it), spawns the
experiment into that group, waits for it, and writes its true exit status atomically next to
its log. The
waiter lives outside the scheduler's fate: if the scheduler is SIGKILLed, the experiment keeps
running and its return code is still recorded, and ``resume`` adopts it by pid + start time.

Launch claim. Before the experiment is spawned, the waiter creates ``<log>.start`` with
``link(2)``, which fails if the file exists. ``resume`` finding an attempt recorded as running
with no claim creates the same file itself, marked abandoned. Exactly one of them wins, so after
a crash at any instruction resume knows whether the process was started: no duplicate, ever.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pbtrun.proc import process_start_time
from pbtrun.state import Attempt, Experiment
from pbtrun.store import SweepPaths, write_atomic

_PYTHONS = ("python", "python3")
EXIT_RECORD_BYTES = 256
WAITER_ERRNO_BASE = 100  # a waiter that cannot write its files exits with 100 + errno
_WAITER_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_RESET_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGPIPE,
    signal.SIGCHLD,
    signal.SIGXFSZ,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


@dataclass
class Handle:
    """A running attempt as the backend tracks it. Never persisted."""

    exp_id: str
    attempt: int
    waiter_pid: int
    pidfd: int
    start_file: Path
    exit_file: Path
    own_child: bool  # started by this scheduler (so it must be reaped), or adopted
    pid_file: Path | None = None
    pgid: int | None = None  # the experiment's process group, once its pid file is there


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended; ``returncode`` None means unknowable (the attempt was lost)."""

    returncode: int | None
    ended_at: float
    pid: int | None = None
    error: str | None = None  # the waiter could not do its job (disk full, read-only train dir)
    started: bool = True  # False: the experiment never started, so it may simply run again


NOT_STARTED = "not_started"


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """``python``/``python3`` as the first word means the interpreter pbtrun runs under."""
    argv = list(argv)
    if argv and argv[0] in _PYTHONS and sys.executable:
        argv[0] = sys.executable
    return argv


class LocalBackend:
    """Starts, adopts, signals and reaps experiments as local processes."""

    name = "local"

    def __init__(self, paths: SweepPaths) -> None:
        self.paths = paths

    # ---------------------------------------------------------------- launching

    def launch(self, exp: Experiment, attempt: Attempt, cwd: str, env: Mapping[str, str]) -> Handle:
        start = self.paths.start_file(exp, attempt.number)
        exit_file = self.paths.exit_file(exp, attempt.number)
        log = self.paths.dir / attempt.log
        header = _header(exp, attempt, cwd)
        argv = resolve_argv(exp.argv)
        pid_file = self.paths.pid_file(exp, attempt.number)
        pid = os.fork()
        if pid == 0:  # the waiter: never returns into the scheduler's code
            gc.disable()  # a collection would walk (and copy-on-write) the scheduler's whole heap
            code = 70
            try:
                code = _waiter(
                    argv,
                    dict(env),
                    cwd=cwd,
                    log=log,
                    start=start,
                    exit_file=exit_file,
                    pid_file=pid_file,
                    header=header,
                )
            finally:
                os._exit(code)
        pid_file = self.paths.pid_file(exp, attempt.number)
        return Handle(exp.id, attempt.number, pid, os.pidfd_open(pid), start, exit_file, True, pid_file)

    # ---------------------------------------------------------------- after a crash

    def inspect(self, exp: Experiment, attempt: Attempt) -> Handle | Outcome | str:
        """What became of an attempt recorded as running: an adoptable handle, its outcome, or
        ``NOT_STARTED`` (in which case this call has made sure it never will start)."""
        start = self.paths.start_file(exp, attempt.number)
        exit_file = self.paths.exit_file(exp, attempt.number)
        outcome = read_exit(exit_file)
        if outcome is not None:
            return outcome
        claim = read_claim(start)
        if claim is None and _abandon(start):
            return NOT_STARTED
        claim = claim or read_claim(start) or {}
        if claim.get("abandoned"):
            return NOT_STARTED
        pid_file = self.paths.pid_file(exp, attempt.number)
        handle = _adopt(exp.id, attempt.number, claim, start=start, exit_file=exit_file, pid_file=pid_file)
        if handle is not None:
            return handle
        return read_exit(exit_file) or Outcome(None, time.time())

    # ---------------------------------------------------------------- ending

    def finish(self, handle: Handle) -> Outcome:
        """Collect an attempt whose waiter has exited (its pidfd became readable)."""
        code = None
        if handle.own_child:
            with contextlib.suppress(ChildProcessError):
                code = os.waitstatus_to_exitcode(os.waitpid(handle.waiter_pid, 0)[1])
        os.close(handle.pidfd)
        outcome = read_exit(handle.exit_file)
        if outcome is not None:
            return outcome
        if code is not None and code >= WAITER_ERRNO_BASE:
            why = os.strerror(code - WAITER_ERRNO_BASE)
            started = read_claim(handle.start_file) is not None
            what = "record the exit status of" if started else "start"
            error = f"cannot {what} {{name}}: writing in {handle.exit_file.parent} failed: {why}"
            return Outcome(None, time.time(), error=error, started=started)
        return Outcome(None, time.time())

    def signal(self, handle: Handle, sig: int) -> bool:
        """Signal the experiment's process group; False if it is not known yet (not spawned)."""
        if handle.pgid is None and handle.pid_file is not None:
            with contextlib.suppress(OSError, ValueError):
                handle.pgid = int(handle.pid_file.read_bytes())
        if handle.pgid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pgid, sig)
        return True


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


def _claim(path: Path, content: dict) -> bool:
    """Create ``path`` with ``content`` if it does not exist; atomic and exclusive (``link(2)``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(content).encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _abandon(start: Path) -> bool:
    return _claim(start, {"abandoned": True, "at": time.time()})


def _adopt(exp_id: str, number: int, claim: dict, *, start: Path, exit_file: Path, pid_file: Path) -> Handle | None:
    pid, started = claim.get("waiter_pid"), claim.get("waiter_start")
    if not isinstance(pid, int) or process_start_time(pid) != started:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != started:  # recycled between the check and the open
        os.close(pidfd)
        return None
    handle = Handle(exp_id, number, pid, pidfd, start, exit_file, own_child=False, pid_file=pid_file)
    with contextlib.suppress(OSError, ValueError):
        handle.pgid = int(pid_file.read_bytes())
    return handle


def _header(exp: Experiment, attempt: Attempt, cwd: str) -> bytes:
    import shlex

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(attempt.started_at))
    gpus = "not pinned" if attempt.gpus is None else ",".join(map(str, attempt.gpus))
    return (
        f"# pbtrun: {exp.name}, attempt {attempt.number}, started {when} on {attempt.host}\n"
        f"# cwd: {cwd}\n# gpus: {gpus}\n# argv: {shlex.join(exp.argv)}\n"
    ).encode()


# --------------------------------------------------------------------------- the waiter


def _waiter(
    argv: list[str],
    env: dict[str, str],
    *,
    cwd: str,
    log: Path,
    start: Path,
    exit_file: Path,
    pid_file: Path,
    header: bytes,
) -> int:
    """Runs in the forked waiter. Returns its own exit code; the experiment's goes to ``exit_file``.

    The waiter leads a new session, claims the launch, then starts the experiment with
    ``posix_spawn`` (vfork-based: no second copy of a Python process) in a process group of its
    own, whose id it writes to ``pid_file`` so the scheduler can signal the experiment and all it
    started, without ever hitting the waiter, which must live on to record the exit status.
    """
    signal.set_wakeup_fd(-1)
    for sig in _RESET_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if sig in _WAITER_IGNORES else signal.SIG_DFL)
    os.setsid()
    try:
        _redirect(log)
        os.write(1, header)
        reserved = _reserve(exit_file)
        me = os.getpid()
        claim = {"waiter_pid": me, "waiter_start": process_start_time(me), "started_at": time.time()}
        if not _claim(start, claim):
            return 0  # resume declared this attempt abandoned first: it must never run
    except OSError as exc:
        return WAITER_ERRNO_BASE + (exc.errno or 0)
    code, child = _spawn(argv, env, cwd, pid_file)
    result = json.dumps({"returncode": code, "ended_at": time.time(), "pid": child}).encode()
    if reserved is None or not _fill(reserved, exit_file, result):
        try:
            write_atomic(exit_file, result)
        except OSError as exc:
            return WAITER_ERRNO_BASE + (exc.errno or 0)
    return 0


def _spawn(argv: list[str], env: dict[str, str], cwd: str, pid_file: Path) -> tuple[int, int | None]:
    """Run the experiment to its end: (its exit code, negative for a signal; its pid).

    A command that cannot be started gets 127 (not found) or 126 (not executable), as a shell
    would, with the reason in its log.
    """
    try:
        os.chdir(cwd)
    except OSError as exc:
        os.write(2, f"pbtrun: cannot enter {cwd!r}: {exc.strerror}\n".encode())
        return 127, None
    if "PATH" in env:
        os.environ["PATH"] = env["PATH"]  # posix_spawnp searches the caller's PATH
    try:
        child = os.posix_spawnp(argv[0], argv, env, setpgroup=0, setsigdef=_RESET_SIGNALS)
    except OSError as exc:
        code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
        os.write(2, f"pbtrun: cannot run {argv[0]!r}: {exc.strerror}\n".encode())
        return code, None
    with contextlib.suppress(OSError):
        fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, str(child).encode())
        finally:
            os.close(fd)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status), child


def _reserve(exit_file: Path) -> tuple[int, Path] | None:
    """Allocate the exit record's bytes before the experiment starts, so that a disk filled up
    meanwhile (often by the experiment itself) cannot stop its exit status from being recorded.

    No fsync here or when filling it in: the record matters while the machine is up (a killed
    scheduler); after a machine crash, a missing or empty record reads as "lost" and the
    experiment runs again, the safe direction. The state journal, which is fsync'd, remains the
    durable record of every transition the scheduler saw.
    """
    reserve = exit_file.with_name(f".{exit_file.name}.reserved")
    try:
        fd = os.open(reserve, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        os.write(fd, b" " * EXIT_RECORD_BYTES)
    except OSError:
        os.close(fd)
        return None
    return fd, reserve


def _fill(reserved: tuple[int, Path], exit_file: Path, data: bytes) -> bool:
    """Overwrite the reserved bytes in place (JSON followed by spaces), then rename into place."""
    fd, reserve = reserved
    try:
        os.pwrite(fd, data.ljust(EXIT_RECORD_BYTES), 0)
        os.rename(reserve, exit_file)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _redirect(log: Path) -> None:
    """stdin from /dev/null, stdout and stderr appended to the log, every other fd closed."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)
