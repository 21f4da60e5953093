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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pbtrun import __version__
from pbtrun.errors import StateError, SweepBusy
from pbtrun.naming import safe_file_name
from pbtrun.proc import process_start_time
from pbtrun.state import Experiment, Sweep, experiment_from, experiment_json, from_json, to_json

STATE_LOCK_TIMEOUT_S = 60
FOLD_MIN_ENTRIES = 256  # fold the journal after max(this, half the sweep) entries: O(1) amortized
FOLD_EVERY_S = 1.0  # ... or once the last fold is this old, or 20 times its cost, whichever is more
SUMMARY_EVERY_S = 1.0


@dataclass(frozen=True)
class SweepPaths:
    """The one object that knows where every file of a sweep lives."""

    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / "pbtrun.json"

    @property
    def journal(self) -> Path:
        """Transitions since the last fold, one fsync'd JSON line per commit (see StateWriter)."""
        return self.dir / "pbtrun.journal"

    @property
    def summary(self) -> Path:
        """Name and counts only, rewritten now and then, so listing many sweeps stays cheap."""
        return self.dir / "summary.json"

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
        """Written atomically by the reaper when the experiment's process ends."""
        return self._attempt_file(exp, attempt, "exit")

    def pid_file(self, exp: Experiment, attempt: int) -> Path:
        """The experiment's pid (its process group), written by the reaper once it is spawned."""
        return self._attempt_file(exp, attempt, "pid")

    def start_file(self, exp: Experiment, attempt: int) -> Path:
        """The launch claim: created exactly once, by the reaper (started) or by resume (abandoned)."""
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
    """Read the state without a lock (safe: every write is atomic): ``pbtrun.json`` plus the
    journal entries not yet folded into it. If a fold replaces the file while we read, read again."""
    for _ in range(10):
        try:
            before = os.stat(paths.state).st_ino
            data = paths.state.read_bytes()
        except FileNotFoundError:
            raise StateError(f"{paths.dir}: no sweep here (there is no {paths.state.name}).") from None
        except OSError as exc:
            raise StateError(f"{paths.state}: cannot read the state file: {exc.strerror}.") from None
        sweep = parse(paths, data)
        replay(paths, sweep)
        with contextlib.suppress(OSError):
            if os.stat(paths.state).st_ino == before:
                break
    sweep.dirty.clear()
    return sweep


def replay(paths: SweepPaths, sweep: Sweep) -> int:
    """Apply the journal's entries newer than the sweep's ``journal_seq``; return the byte length
    of its complete lines (a torn last line, from a crash mid-append, is ignored)."""
    try:
        data = paths.journal.read_bytes()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StateError(f"{paths.journal}: cannot read the journal: {exc.strerror}.") from None
    end = data.rfind(b"\n") + 1
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            entry = json.loads(line)
            if entry["seq"] <= sweep.journal_seq:
                continue
            for raw in entry["experiments"]:
                sweep.update(experiment_from(raw))
            sweep.journal_seq = entry["seq"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{paths.journal}, line {number}: the journal is damaged ({exc}). pbtrun leaves it "
                f"untouched; {paths.state.name} holds the state as of the last fold."
            ) from None
    return end


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
    """Write the whole state atomically, folding the journal into it, and keep the version it
    replaces as the backup. Call with the state lock held."""
    sweep.pbtrun_version = __version__
    data = dump(sweep)
    try:
        if paths.state.exists():
            _keep_backup(paths)
        write_atomic(paths.state, data)
        if paths.journal.exists():
            os.truncate(paths.journal, 0)  # its entries are all <= journal_seq: skipped even if kept
    except OSError as exc:
        raise _write_error(paths.state, exc) from None
    sweep.dirty.clear()
    write_summary(paths, sweep)


def _write_error(path: Path, exc: OSError) -> StateError:
    return StateError(
        f"{path}: cannot write the state: {exc.strerror or exc}. The previous state is intact; "
        "free space or fix permissions, then resume the sweep."
    )


def write_summary(paths: SweepPaths, sweep: Sweep) -> None:
    """Best effort: a stale or missing summary only makes listing slower, never wrong."""
    summary = {"name": sweep.name, "counts": sweep.counts(), "updated_at": time.time()}
    tmp = paths.summary.with_name(f".{paths.summary.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(summary))
        os.replace(tmp, paths.summary)


def read_summary(paths: SweepPaths) -> dict[str, Any] | None:
    """The summary, if it is at least as new as the state it summarises."""
    try:
        newest = max(os.stat(p).st_mtime_ns for p in (paths.state, paths.journal) if p.exists())
        if os.stat(paths.summary).st_mtime_ns < newest:
            return None
        data = json.loads(paths.summary.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("counts"), dict) else None


class StateWriter:
    """The scheduler's way to write state.

    The sweep stays in memory; each commit appends the changed experiments to the journal as one
    fsync'd line (O(changes), not O(sweep)); the journal is folded into ``pbtrun.json`` once it
    holds more entries than half the sweep, or once the last fold is older than a second or 20
    times what a fold costs (so folding takes at most ~5% of the time, and ``pbtrun.json`` alone
    is never much behind: about a second for small sweeps). Another writer (``pbtrun up`` adding
    experiments) is noticed by the files changing under the lock: the state is then reloaded
    before the change is applied, so neither loses the other's update.
    """

    def __init__(self, paths: SweepPaths) -> None:
        self.paths = paths
        self.generation = 0  # bumped on every reload, so callers can rebuild what they derive
        self.entries = 0
        self.summary_at = 0.0
        self.folded_at = time.monotonic()
        self.fold_cost_s = 0.0
        self._signed: tuple | None = None
        with state_lock(paths):
            self._reload()

    @property
    def sweep(self) -> Sweep:
        return self._sweep

    def _signature(self) -> tuple:
        sig: list[tuple | None] = []
        for path in (self.paths.state, self.paths.journal):
            try:
                st = os.stat(path)
                sig.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    def _reload(self) -> None:
        self._sweep = load(self.paths)
        with contextlib.suppress(FileNotFoundError):
            data = self.paths.journal.read_bytes()
            whole = data.rfind(b"\n") + 1  # the end of the last complete line, as replay reads it
            if len(data) > whole:
                os.truncate(self.paths.journal, whole)  # drop a torn tail before appending after it
        self.entries = 0
        self.generation += 1
        self._signed = self._signature()

    def refresh(self) -> Sweep:
        """Pick up another writer's changes, if any."""
        with state_lock(self.paths):
            if self._signature() != self._signed:
                self._reload()
        return self._sweep

    def commit(self, change: Callable[[Sweep], None]) -> Sweep:
        """Apply ``change(sweep)`` under the lock to the freshest state and make it durable."""
        with state_lock(self.paths):
            if self._signature() != self._signed:
                self._reload()
            sweep = self._sweep
            sweep.dirty.clear()
            change(sweep)
            try:
                if sweep.dirty:
                    self._append(sweep)
            except BaseException:
                self._signed = None  # memory is ahead of disk: reload before the next change
                raise
            self._signed = self._signature()
        return sweep

    def fold_due_at(self) -> float | None:
        """When the journal should next be folded (monotonic time), or None if it is empty."""
        return self.folded_at + max(FOLD_EVERY_S, 20 * self.fold_cost_s) if self.entries else None

    def fold_if_due(self) -> None:
        due = self.fold_due_at()
        if due is not None and time.monotonic() >= due:
            with state_lock(self.paths):
                if self._signature() != self._signed:
                    self._reload()
                self._fold(self._sweep)
                self._signed = self._signature()

    def _fold(self, sweep: Sweep) -> None:
        started = time.monotonic()
        save(self.paths, sweep)
        self.entries = 0
        self.folded_at = time.monotonic()
        self.fold_cost_s = self.folded_at - started

    def _append(self, sweep: Sweep) -> None:
        due = self.fold_due_at()
        if self.entries >= max(FOLD_MIN_ENTRIES, len(sweep.experiments) // 2) or (
            due is not None and time.monotonic() >= due
        ):
            self._fold(sweep)
            return
        seq = sweep.journal_seq + 1
        changed = [experiment_json(sweep.experiments[i]) for i in sorted(sweep.dirty)]
        line = (json.dumps({"seq": seq, "experiments": changed}, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.paths.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(self.paths.journal, exc) from None
        sweep.journal_seq = seq
        sweep.dirty.clear()
        self.entries += 1
        now = time.monotonic()
        if now - self.summary_at >= SUMMARY_EVERY_S:
            self.summary_at = now
            write_summary(self.paths, sweep)

    def close(self) -> None:
        """Fold the journal, so that ``pbtrun.json`` alone is complete when no scheduler runs."""
        with state_lock(self.paths):
            if self._signature() != self._signed:
                self._reload()
            if self.entries or (self.paths.journal.exists() and os.path.getsize(self.paths.journal)):
                save(self.paths, self._sweep)
                self.entries = 0


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
