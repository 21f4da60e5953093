"""The reaper: one helper process per scheduler that starts, waits for and records experiments.

Why a separate process: an experiment's exit status must be captured outside the scheduler, so
that a scheduler killed without warning (SIGKILL, the OOM killer, a lost SSH session) loses
nothing. Why one for all experiments, not one per experiment: a per-experiment helper forked
from a Python process pays copy-on-write faults for every experiment, the reaper costs
a few system calls (experiments start with ``posix_spawn``, which does not copy the process).

Protocol: messages are JSON over ``SOCK_SEQPACKET`` unix sockets. The scheduler that forked the
reaper (its *owner*) sends ``launch`` requests; every connected client (the owner, or a resumed
scheduler adopting experiments) receives ``ended``, ``failed`` and ``abandoned`` events. A start
is not announced: the pid record in the log says who runs an attempt to whoever needs to signal
it, and a message per start would wake the scheduler once more per experiment.

The reaper starts only what it is asked to, when it is asked: every launch was recorded in the
state first, so nothing runs that no state knows of. The reaper
outlives its owner: it keeps reaping and recording until its last experiment has ended. Its
socket has an abstract address (no file): a client that can connect knows the reaper is alive.

One file per attempt, its log, which is also the attempt's launch claim and holds its records
(:mod:`pbtrun.backends.logrecords`). The reaper creates it exclusively (``O_EXCL``) before it
spawns anything; ``resume``, finding an attempt recorded as running with no log, creates it
itself, marked abandoned: exactly one of them wins, so no experiment ever starts twice. The
reaper fills the pid record once the experiment runs and the exit record once it ended.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import selectors
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from pbtrun.backends.logrecords import EXIT_PREFIX, EXIT_WIDTH, PID_OFFSET, PID_PREFIX, PID_WIDTH, fill, records
from pbtrun.proc import process_start_time

MAX_MESSAGE = 1 << 20
# A launch request larger than this (a huge argv: it travels twice, as the list and in the log's
# header) goes through a file beside the log: a datagram socket refuses a message larger than its
# send buffer (~208 KiB by default) with EMSGSIZE, while exec takes arguments up to ARG_MAX.
INLINE_REQUEST_MAX = 64 << 10
MAX_UNRECORDED = 64  # started experiments whose pid records wait while launches keep coming
_IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_RESET = (*_IGNORED, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD, signal.SIGXFSZ)


def send(sock: socket.socket, message: dict[str, Any]) -> bool:
    """Send one message; False if the peer is gone."""
    try:
        sock.send(json.dumps(message).encode())
        return True
    except OSError:
        return False


def send_launch(sock: socket.socket, request: dict[str, Any], spill: str) -> str | None:
    """Send a launch request; a large one is written to ``spill`` first and only named in the
    message. None if it went out (or the reaper is gone, which its end of stream says); else why
    the reaper cannot be given it."""
    data = json.dumps(request).encode()
    if len(data) > INLINE_REQUEST_MAX:
        try:
            with open(spill, "wb") as f:
                f.write(data)
        except OSError as exc:
            return f"cannot write its launch request to {spill}: {exc.strerror or exc}"
        ident = {"id": request["id"], "attempt": request["attempt"]}
        data = json.dumps({"op": "launch", "spilled": spill, **ident}).encode()
    try:
        sock.send(data)
    except (BrokenPipeError, ConnectionError):
        return None
    except OSError as exc:
        return f"cannot hand it to the reaper: {exc.strerror or exc}"
    return None


def _unspill(message: dict[str, Any]) -> dict[str, Any] | OSError:
    """The launch request a message names a file for (read, then removed), or why it cannot be."""
    path = message["spilled"]
    try:
        with open(path, "rb") as f:
            request = json.loads(f.read())
        os.unlink(path)
    except OSError as exc:
        return exc
    except ValueError:
        return OSError(errno.EINVAL, f"{path} holds no launch request")
    return request if isinstance(request, dict) else OSError(errno.EINVAL, f"{path} holds no launch request")


def receive_all(sock: socket.socket) -> Iterator[dict[str, Any] | None]:
    """Every message already waiting (at least one read); None, last, if the peer closed."""
    flags = 0
    while True:
        try:
            data = sock.recv(MAX_MESSAGE, flags)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            yield None
            return
        try:
            yield json.loads(data)
        except ValueError:
            yield None
            return
        flags = socket.MSG_DONTWAIT


def connect(address: str) -> socket.socket | None:
    """A connection to the reaper listening at ``address``, or None if it is gone."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect("\0" + address)
    except OSError:
        conn.close()
        return None
    return conn


# --------------------------------------------------------------------------- starting the reaper


def start() -> tuple[socket.socket, int, str]:
    """Fork a reaper: (owner socket, its pid, its address)."""
    address = f"pbtrun-{os.getpid()}-{os.urandom(4).hex()}"  # abstract: no file to clean up
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind("\0" + address)
    listener.listen(16)
    owner, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = Reaper(theirs, listener, address).run()
        finally:
            os._exit(code)
    theirs.close()
    listener.close()
    owner.set_inheritable(False)
    return owner, pid, address


class Child(NamedTuple):
    """A running experiment, as the reaper knows it."""

    exp_id: str
    attempt: int
    log: str


class Reaper:
    """The reaper process's main loop."""

    def __init__(self, owner: socket.socket, listener: socket.socket, address: str) -> None:
        self.owner: socket.socket | None = owner
        self.listener = listener
        self.address = address
        self.clients: list[socket.socket] = [owner]
        self.children: dict[int, Child] = {}
        self.me = os.getpid()
        self.base_env = dict(os.environ)  # launch requests carry only what differs from it
        self.cwd: str | None = None
        self.cwd_error: OSError | None = None
        self.unrecorded: list[tuple[int, Child, float]] = []  # started, pid record not yet written
        self.found: dict[tuple[str, str], str] = {}  # (program, PATH) -> where it is

    def run(self) -> int:
        self._detach()
        self.selector = selectors.DefaultSelector()  # after _detach, which closes inherited fds
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_read, selectors.EVENT_READ, "child")
        self.selector.register(self.owner, selectors.EVENT_READ, "client")  # type: ignore[arg-type]
        while self.owner is not None or self.children:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                    self._reap()
                else:
                    self._serve(key.fileobj)  # type: ignore[arg-type]
            if len(self.unrecorded) < MAX_UNRECORDED and self.selector.select(0):
                continue  # more to do at once (the next launch of a burst): pid records can wait
            self._record_pids()
            self._reap()
        return 0

    def _detach(self) -> None:
        """A session of its own (no terminal signals), no inherited fds."""
        gc.disable()  # nothing cyclic is made here; a collection would copy the parent's heap
        signal.set_wakeup_fd(-1)
        for sig in _RESET:
            signal.signal(sig, signal.SIG_IGN if sig in _IGNORED else signal.SIG_DFL)
        os.setsid()
        keep = {self.owner.fileno(), self.listener.fileno()}  # type: ignore[union-attr]
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2 and int(name) not in keep:
                with contextlib.suppress(OSError):
                    os.close(int(name))

    def _enter(self, cwd: str) -> None:
        """Move to the directory experiments run in (once: a sweep has one)."""
        if cwd != self.cwd:
            self.cwd = cwd
            try:
                os.chdir(cwd)
                self.cwd_error = None
            except OSError as exc:
                self.cwd_error = exc

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.listener.accept()
            self.clients.append(client)
            self.selector.register(client, selectors.EVENT_READ, "client")

    def _serve(self, client: socket.socket) -> None:
        """Every message waiting from ``client`` (launches come in bursts: one wake-up for all)."""
        for message in receive_all(client):
            if message is None:
                self._drop(client)
                return
            if client is not self.owner:
                continue
            if message.get("op") == "launch":
                request = _unspill(message) if "spilled" in message else message
                if isinstance(request, OSError):  # never silent: the attempt fails, not started
                    ident = {"id": message["id"], "attempt": message["attempt"]}
                    self._broadcast({"op": "failed", **ident, "errno": request.errno, "started": False})
                    continue
                self._launch(request)

    def _drop(self, client: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client)
        with contextlib.suppress(ValueError):
            self.clients.remove(client)
        client.close()
        if client is self.owner:
            self.owner = None  # the listener stays open: a resumed scheduler connects to adopt

    def _broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self.clients):
            if not send(client, message):
                self._drop(client)

    # ---------------------------------------------------------------- launching

    def _launch(self, req: dict[str, Any]) -> None:
        """Claim the attempt by creating its log, write its header, spawn, record the pid.

        A claim that was taken (resume declared the attempt abandoned first: it must never run)
        or a write that failed is told to the clients. An experiment that cannot be executed
        has started in this sense: its log says why, and its exit record holds 126 or 127."""
        ident = {"id": req["id"], "attempt": req["attempt"]}
        self._enter(req["cwd"])
        try:
            # Opened to append: the experiment writes through this same open file (the records
            # are filled in place through one of their own: pwrite ignores offsets when appending).
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            self._broadcast({"op": "abandoned", **ident})
            return
        except OSError as exc:
            self._broadcast({"op": "failed", **ident, "errno": exc.errno, "started": False})
            return
        try:
            self._header_and_spawn(req, log, ident)
        finally:
            os.close(log)

    def _header_and_spawn(self, req: dict[str, Any], log: int, ident: dict[str, Any]) -> None:
        child = Child(req["id"], req["attempt"], req["log"])
        try:
            os.write(log, records() + req["header"].encode())
        except OSError as exc:  # (a full disk) undo the claim: nothing started
            with contextlib.suppress(OSError):
                os.unlink(req["log"])
            self._broadcast({"op": "failed", **ident, "errno": exc.errno, "started": False})
            return
        try:
            pid = self._posix_spawn(req, log)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in argv or env, which exec cannot pass
            code = 126 if getattr(exc, "errno", None) in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
            what = f"cannot enter {self.cwd!r}" if exc is self.cwd_error else f"cannot run {req['argv'][0]!r}"
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            with contextlib.suppress(OSError):
                os.write(log, f"pbtrun: {what}: {why}\n".encode())
            self._record(child, code, None)
            return
        self.children[pid] = child
        self.unrecorded.append((pid, child, time.time()))

    def _record_pids(self) -> None:
        """Write the pid records of the experiments just started. Done once the launches
        waiting are all started, not after each: a burst of launches is not
        held up by them. Until its record is written, an experiment whose reaper is killed is
        still found, by its environment (see ``orphans.find``)."""
        for pid, child, at in self.unrecorded:
            with contextlib.suppress(OSError):
                log = os.open(child.log, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    fill(log, PID_OFFSET + len(PID_PREFIX), PID_WIDTH, self._pid_record(pid, at))
                finally:
                    os.close(log)
        self.unrecorded.clear()

    def _pid_record(self, pid: int, at: float) -> dict[str, Any]:
        """Who runs the attempt: its pid and start time (a recycled pid is never mistaken for it),
        when it started, and its reaper (pid, and the address to adopt it through)."""
        return {
            "pid": pid,
            "start": process_start_time(pid),
            "at": at,
            "reaper": self.me,
            "address": self.address,
        }

    def _posix_spawn(self, req: dict[str, Any], output: int) -> int:
        if self.cwd_error is not None:
            raise self.cwd_error
        env = {**self.base_env, **req["env"]}
        argv = req["argv"]
        program = self._which(argv[0], env.get("PATH", os.defpath))
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, output, 1),
            (os.POSIX_SPAWN_DUP2, output, 2),
        ]
        try:
            return os.posix_spawnp(program, argv, env, file_actions=actions, setpgroup=0, setsigdef=_RESET)
        except FileNotFoundError:
            if "/" in argv[0]:
                raise
            self.found.clear()  # moved since it was found: search again
            program = self._which(argv[0], env.get("PATH", os.defpath))
            return os.posix_spawnp(program, argv, env, file_actions=actions, setpgroup=0, setsigdef=_RESET)

    def _which(self, name: str, path: str) -> str:
        """``name`` found on ``path`` once, as exec would find it, then remembered. A search in
        the child (posix_spawnp) tries every directory before the right one, each a failed
        exec that the reaper waits for, at every launch. Nothing found:
        FileNotFoundError, as exec gives."""
        if "/" in name:
            return name
        key = (name, path)
        if key not in self.found:
            for directory in path.split(os.pathsep):
                candidate = os.path.join(directory or ".", name)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    self.found[key] = candidate
                    break
            else:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        return self.found[key]

    # ---------------------------------------------------------------- reaping

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._record(child, os.waitstatus_to_exitcode(status), pid)

    def _record(self, child: Child, code: int, pid: int | None) -> None:
        """Fill the log's exit record in place, then tell every client."""
        ident = {"id": child.exp_id, "attempt": child.attempt}
        result = {"returncode": code, "ended_at": time.time(), "pid": pid}
        try:
            log = os.open(child.log, os.O_WRONLY | os.O_CLOEXEC)
            try:
                fill(log, len(EXIT_PREFIX), EXIT_WIDTH, result)
            finally:
                os.close(log)
        except OSError as exc:
            self._broadcast({"op": "failed", **ident, "errno": exc.errno, "started": True})
        else:
            self._broadcast({"op": "ended", **ident, **result})
