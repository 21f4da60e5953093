"""The sweep's two locks, both ``flock(2)`` on a lock file beside the state that is never deleted.

- The state lock: writers read-modify-write ``pbtrun.json`` inside it, so no writer loses
  another's update. Readers need none (every write is atomic).
- The scheduler's lifetime lock: one scheduler per sweep. A second one is refused with a message
  naming the pid and host of the first, from the holder record (``scheduler.json``) that the
  holder writes beside the lock.

A ``flock`` belongs to its open descriptor, so it vanishes when its process dies: a crash leaves
no stale lock, and nothing ever has to be cleaned up by hand.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbtrun.errors import StateError, SweepBusy
from pbtrun.proc import hostname, process_start_time
from pbtrun.state.files import write_atomic

if TYPE_CHECKING:
    from pbtrun.state.paths import SweepPaths

STATE_LOCK_TIMEOUT_S = 60


class Flock:
    """An exclusive ``flock(2)`` on a lock file that is never deleted, so that every process
    locks the same inode. The lock belongs to the open descriptor: it is released when the
    descriptor closes, so when its process dies, and a crash leaves no stale lock.

    pbtrun used ``filelock.FileLock`` for this, which takes the same lock (its Unix backend is
    flock too). Its import was a large share of every command's start-up, and each acquisition
    re-opened and re-checked the file and its directories: a large share of the scheduler's
    time per experiment, which takes the state lock for every commit. This keeps the
    descriptor open; uncontended, an acquisition is one system call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, timeout_s: float | None) -> bool:
        """Take the lock: wait up to ``timeout_s`` (None: as long as it takes, 0: try once)."""
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            if timeout_s is None:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                return True
            deadline, pause_s = time.monotonic() + timeout_s, 0.001
            while not _try_flock(self.fd):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause_s)  # contended: another pbtrun holds it, for one transaction
                pause_s = min(2 * pause_s, 0.05)
            return True
        except OSError as exc:
            raise _lock_error(self.path, exc) from None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> None:
        if not self.acquire(STATE_LOCK_TIMEOUT_S):
            raise StateError(
                f"{self.path}: another pbtrun process has held the state lock for more than "
                f"{STATE_LOCK_TIMEOUT_S} s; check for a hung pbtrun process."
            )

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def state_lock(paths: SweepPaths) -> Iterator[None]:
    """Hold the state lock, for a one-off read-modify-write."""
    lock = Flock(paths.state_lock)
    try:
        with lock:
            yield
    finally:
        lock.close()


def _lock_error(path: Path, exc: OSError) -> StateError:
    if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        advice = (
            "this file system does not support flock locks (some network file systems need a "
            "mount option for them, e.g. Lustre's -o flock); put the train dir on one that does"
        )
    else:
        advice = "pbtrun needs to write in the sweep directory; fix its permissions or free space there"
    return StateError(f"{path}: cannot take the lock: {exc.strerror or exc}. {advice}, then run the command again.")


def read_holder(paths: SweepPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.holder.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def busy_holder(paths: SweepPaths, wait_s: float = 0.5) -> dict[str, Any] | None:
    """The record of the scheduler whose lifetime lock a caller was just refused. A scheduler
    writes it just after taking the lock, so it may be a moment late: wait for it a little, so
    that the refusal names a pid and host. (Not by probing the lock: taking it, even for a
    moment, could refuse a scheduler that starts just then.)"""
    deadline = time.monotonic() + wait_s
    while (holder := read_holder(paths)) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return holder


def holder_alive(paths: SweepPaths) -> dict[str, Any] | None:
    """The running scheduler's record, or None. Read-only: never touches the lock itself."""
    holder = read_holder(paths)
    if holder is None:
        return None
    if holder.get("host") != hostname():
        return holder  # cannot check another machine's processes; trust the record
    pid = holder.get("pid")
    alive = isinstance(pid, int) and process_start_time(pid) == holder.get("proc_start")
    return holder if alive else None


@contextlib.contextmanager
def scheduler_lock(paths: SweepPaths) -> Iterator[None]:
    """Hold the sweep's lifetime lock, or raise :class:`SweepBusy` naming who holds it."""
    lock = Flock(paths.scheduler_lock)
    if not lock.acquire(timeout_s=0):
        lock.close()
        raise SweepBusy(_busy_message(paths))
    try:
        holder = {
            "pid": os.getpid(),
            "host": hostname(),
            "proc_start": process_start_time(os.getpid()),
            "started_at": time.time(),
        }
        write_atomic(paths.holder, json.dumps(holder).encode(), durable=False)  # for messages only
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(paths.holder)
        lock.close()


def note_waiting(paths: SweepPaths, reason: str | None) -> None:
    """Add to the running scheduler's record why its queued experiments wait (``status`` shows
    it), or take it away. Only the scheduler holding the lock calls this."""
    holder = read_holder(paths)
    if holder is None or holder.get("pid") != os.getpid():
        return
    if reason is None:
        holder.pop("waiting", None)
    else:
        holder["waiting"] = reason
    write_atomic(paths.holder, json.dumps(holder).encode(), durable=False)


def wait_for_scheduler(paths: SweepPaths) -> None:
    """Block until the sweep's scheduler has exited (its lifetime lock becomes free)."""
    lock = Flock(paths.scheduler_lock)
    try:
        lock.acquire(timeout_s=None)
    finally:
        lock.close()


def _busy_message(paths: SweepPaths) -> str:
    holder = busy_holder(paths) or {}
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    return (
        f"{paths.dir}: this sweep already has a scheduler ({who}). Watch it with "
        f"`pbtrun status {paths.dir}`, or stop that process before resuming."
    )
