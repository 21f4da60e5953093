"""The reaper: one helper process per scheduler that starts, waits for and records experiments.

Why a separate process: an experiment's exit status must be captured outside the scheduler, so
that a scheduler killed without warning (SIGKILL, the OOM killer, a lost SSH session) loses
nothing. Why one for all experiments, not one per experiment: a per-experiment helper forked
from a Python process costs milliseconds of copy-on-write work per experiment, the reaper costs
a few system calls (experiments start with ``posix_spawn``, which does not copy the process).

Protocol: messages are JSON over ``SOCK_SEQPACKET`` unix sockets. The scheduler that forked the
reaper (its *owner*) sends ``launch`` requests; every connected client (the owner, or a resumed
scheduler adopting experiments) receives ``started``, ``ended`` and ``failed`` events. The reaper
outlives its owner: it keeps reaping and recording until its last experiment has ended.

Launch claim: before spawning, the reaper creates ``<log>.start`` with ``link(2)``, which fails
if the file exists; ``resume``, finding an attempt recorded as running with no claim, creates it
itself, marked abandoned. Exactly one of them wins, so no experiment ever starts twice.
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
from dataclasses import dataclass
from typing import Any

from pbtrun.proc import process_start_time

EXIT_RECORD_BYTES = 256
MAX_MESSAGE = 1 << 20
_IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_RESET = (*_IGNORED, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD, signal.SIGXFSZ)


def send(sock: socket.socket, message: dict[str, Any]) -> bool:
    """Send one message; False if the peer is gone."""
    try:
        sock.send(json.dumps(message).encode())
        return True
    except OSError:
        return False


def receive(sock: socket.socket) -> dict[str, Any] | None:
    """One message, or None at end of stream (the peer closed)."""
    data = sock.recv(MAX_MESSAGE)
    return json.loads(data) if data else None


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


# --------------------------------------------------------------------------- the launch claim


def claim(path: str, content: dict[str, Any]) -> bool:
    """Create ``path`` with ``content`` unless it exists: atomic and exclusive (``link(2)``)."""
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.tmp"
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


# --------------------------------------------------------------------------- starting the reaper


def start(cwd: str) -> tuple[socket.socket, int, str]:
    """Fork a reaper for experiments that run in ``cwd``: (owner socket, its pid, its address)."""
    address = f"\0pbtrun-reaper-{os.getpid()}-{os.urandom(6).hex()}"  # abstract: no file to clean up
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(16)
    owner, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = Reaper(theirs, listener, address, cwd).run()
        finally:
            os._exit(code)
    theirs.close()
    listener.close()
    owner.set_inheritable(False)
    return owner, pid, address


@dataclass
class Child:
    """A running experiment, as the reaper knows it."""

    exp_id: str
    attempt: int
    exit_file: str
    reserved: int | None  # an fd on the pre-allocated exit record, or None


class Reaper:
    """The reaper process's main loop."""

    def __init__(self, owner: socket.socket, listener: socket.socket, address: str, cwd: str) -> None:
        self.owner: socket.socket | None = owner
        self.listener = listener
        self.address = address
        self.cwd = cwd
        self.clients: list[socket.socket] = [owner]
        self.children: dict[int, Child] = {}
        self.me = os.getpid()
        self.base_env = dict(os.environ)  # launch requests carry only what differs from it
        self.cwd_error: OSError | None = None

    def run(self) -> int:
        self._detach()
        self.selector = selectors.DefaultSelector()  # after _detach, which closes inherited fds
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_read, selectors.EVENT_READ, "child")
        self.selector.register(self.owner, selectors.EVENT_READ, "client")  # type: ignore[arg-type]
        self.me_start = process_start_time(self.me)
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
            self._reap()
        return 0

    def _detach(self) -> None:
        """A session of its own (no terminal signals), no inherited fds, the sweep's cwd."""
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
        try:
            os.chdir(self.cwd)
        except OSError as exc:
            self.cwd_error = exc

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.listener.accept()
            self.clients.append(client)
            self.selector.register(client, selectors.EVENT_READ, "client")

    def _serve(self, client: socket.socket) -> None:
        try:
            message = receive(client)
        except (OSError, ValueError):
            message = None
        if message is None:
            self._drop(client)
            return
        if client is self.owner and message.get("op") == "launch":
            self._launch(message)

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
        ident = {"id": req["id"], "attempt": req["attempt"]}
        try:
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._broadcast({"op": "failed", **ident, "errno": exc.errno, "started": False})
            return
        try:
            self._claim_and_spawn(req, log, ident)
        finally:
            os.close(log)  # the experiment has its own copy (or never started)

    def _claim_and_spawn(self, req: dict[str, Any], log: int, ident: dict[str, Any]) -> None:
        reserved = None
        try:
            os.write(log, req["header"].encode())
            reserved = _reserve(req["exit"])
            mine = {"waiter_pid": self.me, "waiter_start": self.me_start, "socket": self.address}
            claimed = claim(req["start"], {**mine, "started_at": time.time()})
        except OSError as exc:
            _discard(reserved, req["exit"])
            self._broadcast({"op": "failed", **ident, "errno": exc.errno, "started": False})
            return
        if not claimed:  # resume declared this attempt abandoned first: it must never run
            _discard(reserved, req["exit"])
            self._broadcast({"op": "abandoned", **ident})
            return
        child = Child(req["id"], req["attempt"], req["exit"], reserved)
        try:
            pid = self._posix_spawn(req, log)
        except OSError as exc:
            code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
            what = f"cannot enter {self.cwd!r}" if exc is self.cwd_error else f"cannot run {req['argv'][0]!r}"
            with contextlib.suppress(OSError):
                os.write(log, f"pbtrun: {what}: {exc.strerror}\n".encode())
            self._record(child, code, None)
            return
        with contextlib.suppress(OSError):
            _write_small(req["pid"], f"{pid} {process_start_time(pid)}")
        self.children[pid] = child
        self._broadcast({"op": "started", **ident, "pid": pid})

    def _posix_spawn(self, req: dict[str, Any], log: int | None) -> int:
        if self.cwd_error is not None:
            raise self.cwd_error
        env = {**self.base_env, **req["env"]}
        if "PATH" in env:
            os.environ["PATH"] = env["PATH"]  # posix_spawnp searches the caller's PATH
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
        if log is not None:
            actions += [(os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
        return os.posix_spawnp(req["argv"][0], req["argv"], env, file_actions=actions, setpgroup=0, setsigdef=_RESET)

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
        """Write the exit record next to the log, then tell every client."""
        result = {"returncode": code, "ended_at": time.time(), "pid": pid}
        data = json.dumps(result).encode()
        if child.reserved is None or not _fill(child.reserved, child.exit_file, data):
            try:
                _write_small(child.exit_file, data.decode(), atomic=True)
            except OSError as exc:
                self._broadcast(
                    {"op": "failed", "id": child.exp_id, "attempt": child.attempt, "errno": exc.errno, "started": True}
                )
                return
        self._broadcast({"op": "ended", "id": child.exp_id, "attempt": child.attempt, **result})


# --------------------------------------------------------------------------- exit records


def _reserve(exit_file: str) -> int | None:
    """Allocate the exit record's bytes before the experiment starts, so a disk that fills up
    meanwhile (often by the experiment itself) cannot stop its exit status from being recorded.

    No fsync: the record matters while the machine is up (a killed scheduler). After a machine
    crash a missing or empty record reads as "lost" and the experiment runs again, the safe
    direction; the state journal, which is fsync'd, stays the durable record of transitions.
    """
    try:
        fd = os.open(_reserved_path(exit_file), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        os.write(fd, b" " * EXIT_RECORD_BYTES)
    except OSError:
        os.close(fd)
        return None
    return fd


def _fill(fd: int, exit_file: str, data: bytes) -> bool:
    """Overwrite the reserved bytes in place (JSON, then spaces) and rename into place."""
    try:
        os.pwrite(fd, data.ljust(EXIT_RECORD_BYTES), 0)
        os.rename(_reserved_path(exit_file), exit_file)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _reserved_path(exit_file: str) -> str:
    return f"{os.path.dirname(exit_file)}/.{os.path.basename(exit_file)}.reserved"


def _discard(reserved: int | None, exit_file: str) -> None:
    if reserved is not None:
        os.close(reserved)
        with contextlib.suppress(OSError):
            os.unlink(_reserved_path(exit_file))


def _write_small(path: str, text: str, atomic: bool = False) -> None:
    target = f"{path}.{os.getpid()}.tmp" if atomic else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    if atomic:
        os.replace(target, path)
