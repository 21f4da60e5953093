"""Everything pbtrun keeps on disk for a sweep, and how it is written safely.

Guarantees:
- ``pbtrun.json`` is only ever replaced atomically (temporary file in the same directory,
  ``fsync``, ``os.replace``, ``fsync`` of the directory): after a crash at any instant it is
  either the old or the new version, never a torn one, so readers need no lock.
- The version it replaces is kept as ``pbtrun.json.bak``, so a hand-broken file can be recovered.
- Writers read-modify-write inside one ``filelock.FileLock``, so no writer loses another's update.
- One scheduler per sweep: a separate lifetime lock (``flock``: it vanishes with its process, so
  a crash leaves no stale lock) plus a holder record naming pid and host for the refusal message.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pbtrun import __version__
from pbtrun.errors import StateError, SweepBusy
from pbtrun.naming import safe_file_name
from pbtrun.proc import process_start_time
from pbtrun.state import Experiment, Sweep, from_json, to_json

STATE_LOCK_TIMEOUT_S = 60


@dataclass(frozen=True)
class SweepPaths:
    """The one object that knows where every file of a sweep lives."""

    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / "pbtrun.json"

    @property
    def backup(self) -> Path:
        return self.dir / "pbtrun.json.bak"

    @property
    def state_lock(self) -> Path:
        return self.dir / ".pbtrun.json.lock"

    @property
    def scheduler_lock(self) -> Path:
        return self.dir / ".scheduler.lock"

    @property
    def holder(self) -> Path:
        return self.dir / "scheduler.json"

    @property
    def spec_copy(self) -> Path:
        return self.dir / "sweep.toml"

    @property
    def control(self) -> Path:
        return self.dir / ".control"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def _attempt_file(self, exp: Experiment, attempt: int, suffix: str) -> Path:
        return self.logs / f"{safe_file_name(exp.name, exp.id)}.{attempt}.{suffix}"

    def log(self, exp: Experiment, attempt: int) -> Path:
        return self._attempt_file(exp, attempt, "log")

    def exit_file(self, exp: Experiment, attempt: int) -> Path:
        """Written atomically by the waiter when the experiment's process ends."""
        return self._attempt_file(exp, attempt, "exit")

    def start_file(self, exp: Experiment, attempt: int) -> Path:
        """The launch claim: created exactly once, by the waiter (started) or by resume (abandoned)."""
        return self._attempt_file(exp, attempt, "start")


# --------------------------------------------------------------------------- atomic files


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content.

    The temporary file lives in the same directory (``os.replace`` is atomic only within one
    file system) and is removed if anything fails, so a full disk leaves the old file intact.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dump(sweep: Sweep) -> bytes:
    return (json.dumps(to_json(sweep), indent=1, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------- load and save


def load(paths: SweepPaths) -> Sweep:
    """Read the state without a lock (safe: writes are atomic)."""
    try:
        data = paths.state.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{paths.dir}: no sweep here (there is no {paths.state.name}).") from None
    except OSError as exc:
        raise StateError(f"{paths.state}: cannot read the state file: {exc.strerror}.") from None
    return parse(paths, data)


def parse(paths: SweepPaths, data: bytes) -> Sweep:
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(_damaged(paths, f"it is not valid JSON ({exc})")) from None
    try:
        return from_json(raw)
    except StateError as exc:
        raise StateError(_damaged(paths, exc.message)) from None


def _damaged(paths: SweepPaths, why: str) -> str:
    backup = (
        f"The previous version is kept at {paths.backup}: if it looks right, copy it over "
        f"{paths.state.name} and run the command again."
        if paths.backup.exists()
        else "No backup of it exists."
    )
    return f"{paths.state}: cannot use the state file: {why}. pbtrun leaves it untouched. {backup}"


def save(paths: SweepPaths, sweep: Sweep) -> None:
    """Write the state atomically, keeping the version it replaces as the backup."""
    sweep.pbtrun_version = __version__
    data = dump(sweep)
    try:
        if paths.state.exists():
            _keep_backup(paths)
        write_atomic(paths.state, data)
    except OSError as exc:
        raise StateError(
            f"{paths.state}: cannot write the state file: {exc.strerror or exc}. The previous state "
            "is intact; free space or fix permissions, then resume the sweep."
        ) from None


def _keep_backup(paths: SweepPaths) -> None:
    """Hard-link the current state as the backup: no copy, and atomic via a temporary name."""
    tmp = paths.backup.with_name(f".{paths.backup.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.link(paths.state, tmp)
    os.replace(tmp, paths.backup)


def create(paths: SweepPaths, sweep: Sweep, spec_text: str) -> None:
    """Create a new sweep directory with its state and a copy of the spec it came from."""
    try:
        paths.logs.mkdir(parents=True, exist_ok=True)
        write_atomic(paths.spec_copy, spec_text.encode())
    except OSError as exc:
        raise StateError(f"{paths.dir}: cannot create the sweep directory: {exc.strerror or exc}.") from None
    with state_lock(paths):
        save(paths, sweep)


@contextlib.contextmanager
def state_lock(paths: SweepPaths) -> Iterator[None]:
    lock = FileLock(paths.state_lock, timeout=STATE_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise StateError(
            f"{paths.state_lock}: another pbtrun process has held the state lock for more than "
            f"{STATE_LOCK_TIMEOUT_S} s; check for a hung pbtrun process."
        ) from None
    except OSError as exc:
        raise _lock_error(paths.state_lock, exc) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def transaction(paths: SweepPaths) -> Iterator[Sweep]:
    """Lock, load, let the caller change the sweep, save. Check and act inside one lock."""
    with state_lock(paths):
        sweep = load(paths)
        yield sweep
        save(paths, sweep)


def write_spec_copy(paths: SweepPaths, text: str) -> None:
    write_atomic(paths.spec_copy, text.encode())


# --------------------------------------------------------------------------- finding sweeps


def is_sweep(path: Path) -> bool:
    return (path / "pbtrun.json").is_file()


def find_sweeps(train_dir: Path) -> list[Path]:
    """Sweep directories directly under a train dir, by name."""
    try:
        entries = sorted(p for p in train_dir.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p for p in entries if is_sweep(p)]


def resolve_sweep(path: Path) -> SweepPaths:
    """A sweep directory, its ``pbtrun.json``, or a train dir holding exactly one sweep."""
    if path.name == "pbtrun.json" and path.is_file():
        return SweepPaths(path.parent)
    if is_sweep(path):
        return SweepPaths(path)
    if not path.is_dir():
        raise StateError(f"{path}: no such directory. Give a sweep directory (train_dir/NAME).")
    sweeps = find_sweeps(path)
    if len(sweeps) == 1:
        return SweepPaths(sweeps[0])
    if not sweeps:
        raise StateError(f"{path}: no sweep here (no pbtrun.json in it or in its subdirectories).")
    listing = "\n".join(f"    {p}" for p in sweeps)
    raise StateError(f"{path} holds {len(sweeps)} sweeps; name one of them:\n{listing}")


# --------------------------------------------------------------------------- the scheduler's lock


def read_holder(paths: SweepPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.holder.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def holder_alive(paths: SweepPaths) -> dict[str, Any] | None:
    """The running scheduler's record, or None. Read-only: never touches the lock itself."""
    holder = read_holder(paths)
    if holder is None:
        return None
    if holder.get("host") != socket.gethostname():
        return holder  # cannot check another machine's processes; trust the record
    pid = holder.get("pid")
    alive = isinstance(pid, int) and process_start_time(pid) == holder.get("proc_start")
    return holder if alive else None


@contextlib.contextmanager
def scheduler_lock(paths: SweepPaths) -> Iterator[None]:
    """Hold the sweep's lifetime lock, or raise :class:`SweepBusy` naming who holds it."""
    lock = FileLock(paths.scheduler_lock, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepBusy(_busy_message(paths)) from None
    except OSError as exc:
        raise _lock_error(paths.scheduler_lock, exc) from None
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "proc_start": process_start_time(os.getpid()),
            "started_at": time.time(),
        }
        write_atomic(paths.holder, json.dumps(holder).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(paths.holder)
        lock.release()


def _lock_error(path: Path, exc: OSError) -> StateError:
    return StateError(
        f"{path}: cannot take the lock: {exc.strerror or exc}. pbtrun needs to write in the sweep "
        "directory; fix its permissions or free space there, then run the command again."
    )


def wait_for_scheduler(paths: SweepPaths) -> None:
    """Block until the sweep's scheduler has exited (its lifetime lock becomes free)."""
    lock = FileLock(paths.scheduler_lock, timeout=-1)
    try:
        with lock:
            pass
    except OSError as exc:
        raise _lock_error(paths.scheduler_lock, exc) from None


def _busy_message(paths: SweepPaths) -> str:
    holder = read_holder(paths) or {}
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    return (
        f"{paths.dir}: this sweep already has a scheduler ({who}). Watch it with "
        f"`pbtrun status {paths.dir}`, or stop that process before resuming."
    )


# --------------------------------------------------------------------------- control channel


def open_control(paths: SweepPaths) -> int:
    """The scheduler's end of its control FIFO (read-write so it never sees end-of-file)."""
    try:
        os.mkfifo(paths.control, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(paths.control).st_mode):
            os.unlink(paths.control)
            os.mkfifo(paths.control, 0o600)
    return os.open(paths.control, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def notify(paths: SweepPaths, message: str) -> bool:
    """Send one line to the running scheduler; False if no scheduler is listening."""
    try:
        fd = os.open(paths.control, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, (message + "\n").encode())
    finally:
        os.close(fd)
    return True
