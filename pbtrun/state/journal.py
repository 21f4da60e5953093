"""The journal, ``pbtrun.journal``: the transitions committed since ``pbtrun.json`` was last
rewritten, one JSON line each, and how a reader replays them.

An entry is ``{"seq": N, "changes": [...], "experiments": [...]}``: ``changes`` hold a status and
the attempt that changed (see :func:`pbtrun.state.codec.change_json`), ``experiments`` whole
records (a new experiment, or one whose definition changed). Entries up to the state's
``journal_seq`` are already in ``pbtrun.json`` and are skipped. The lines are in the state format
of the ``pbtrun.json`` they follow (see ``migrations.py``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbtrun.errors import StateError
from pbtrun.state.codec import apply_change, change_json, experiment_from, experiment_json
from pbtrun.state.files import fsync_dir, link_refused, read_own, write_all, write_atomic, write_error
from pbtrun.state.migrations import FORMAT
from pbtrun.state.records import Sweep

if TYPE_CHECKING:
    from pbtrun.state.paths import SweepPaths

_ENTRY_JSON = json.JSONEncoder(sort_keys=True)


def entry_line(sweep: Sweep, seq: int) -> bytes:
    """The journal line that records what changed in ``sweep`` since its last commit (its
    ``dirty`` experiments), numbered ``seq``."""
    entry: dict[str, Any] = {"seq": seq}
    for exp_id, before in sweep.dirty.items():
        exp = sweep.experiments[exp_id]
        change = change_json(before, exp)
        if change is not None:
            entry.setdefault("changes", []).append(change)
        else:
            entry.setdefault("experiments", []).append(experiment_json(exp))
    return (_ENTRY_JSON.encode(entry) + "\n").encode()


def replay(paths: SweepPaths, sweep: Sweep) -> int:
    """Apply the journal's entries newer than the sweep's ``journal_seq``; return the byte length
    of its complete lines (a torn last line, from a crash mid-append, is ignored). The lines are
    in the format of the ``pbtrun.json`` the sweep was read from."""
    stored_format = sweep.disk_format or FORMAT
    try:
        data = read_own(paths.journal)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_refused(paths.journal) from None
        raise StateError(f"{paths.journal}: cannot read the journal: {exc.strerror}.") from None
    end = complete_length(data)
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            entry = json.loads(line)
            if entry["seq"] <= sweep.journal_seq:
                continue
            for raw in entry.get("experiments", ()):
                sweep.update(experiment_from(raw, stored_format=stored_format))
            for change in entry.get("changes", ()):
                apply_change(sweep, change, stored_format)
            sweep.journal_seq = entry["seq"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            from pbtrun.state.check import journal_problem  # only now: a journal that reads needs none of it

            problem = journal_problem(line, sweep.experiments, stored_format)
            raise StateError(
                f"{paths.journal}, line {number}: the journal is damaged ({problem}). "
                f"pbtrun leaves it untouched; {paths.state.name} holds the state as of the last fold "
                "(at most about a second before the journal's last line). To go on from there, make "
                "sure no experiment of this sweep still runs, move the journal aside (mv "
                f"{paths.journal} {paths.journal}.damaged) and resume: experiments recorded as running "
                "are settled from their logs, the others run again."
            ) from None
    return end


def complete_length(journal: bytes) -> int:
    """The length of the journal's complete lines: the zeros after them (it is preallocated) and
    a torn last line (a crash mid-append) do not count."""
    limit = journal.find(b"\0")
    return journal.rfind(b"\n", 0, len(journal) if limit < 0 else limit) + 1


class Journal:
    """The append-only journal of transitions, written for speed without giving up durability.

    A commit is one ``pwrite`` into space allocated beforehand (zeros, written when the journal
    grows: the first sync after that also records the new size and blocks, since ``fdatasync``
    writes whatever metadata reading the data back needs), and a thread ``fdatasync``s behind the
    writer: one sync covers every line written before it (group commit), so a transition is on
    disk within one sync's time without the scheduler waiting for it. Writing
    into allocated space changes no file-system metadata, so the other syncs flush data only
    and do not force a file-system journal commit, which would stall every process creating
    files on the same file system (the reaper creates several per experiment). The scheduler
    does not need to wait: until the machine itself goes down, what was written is visible to
    every process; and when it goes down, the experiments go down with it, so a transition
    still in flight is indistinguishable from one that had not happened yet (an end is also in
    its exit record).
    """

    GROW_BYTES = 1 << 20
    FIRST_BYTES = 1 << 16  # a new journal starts small: its zeros are written before the first launch

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.offset = 0  # where the next line goes
        self.allocated = 0  # bytes of the file allocated (written) so far
        self.cond = threading.Condition()
        self.written = 0  # lines written, and lines known to be on disk
        self.synced = 0
        self.error: OSError | None = None
        self.thread: threading.Thread | None = None
        self.closing = False

    def reopen(self) -> None:
        """(Re)open after the file changed under us (a fold, another writer); find its end."""
        self.close()
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            data = os.pread(self.fd, os.fstat(self.fd).st_size, 0) if os.fstat(self.fd).st_size else b""
            self.offset = complete_length(data)
            self.allocated = len(data)
            if self.allocated > self.offset:  # a torn tail, from a crash mid-append: zero it
                write_all(self.fd, bytes(self.allocated - self.offset), self.offset)
        except OSError as exc:
            self.close()
            raise write_error(self.path, exc) from None

    def append(self, line: bytes) -> None:
        if self.error is not None:
            raise write_error(self.path, self.error)
        if self.fd is None:
            self.reopen()
        assert self.fd is not None
        try:
            if self.offset + len(line) > self.allocated:
                self._grow(len(line))
            write_all(self.fd, line, self.offset)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        self.offset += len(line)
        self.written += 1  # synced once :meth:`start_sync` wakes the thread

    def start_sync(self) -> None:
        """Have the thread sync what was written, and return at once. The scheduler calls this just before it
        waits for events, not at each write: woken at once, the thread would take Python's
        lock from the scheduler while it launches the experiment the write recorded."""
        if self.synced == self.written:
            return
        with self.cond:
            self.cond.notify()
        if self.thread is None:
            self.thread = threading.Thread(target=self._flush, name="pbtrun-journal", daemon=True)
            self.thread.start()

    def reset(self) -> None:
        """Start an empty journal (its entries are in pbtrun.json now): a new file of zeros,
        made durable, renamed over the old one. Never rewritten in place: after a power cut the
        bytes after the last complete line are zeros, never an older line's."""
        self.sync()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            write_atomic(tmp, bytes(self._room(self.GROW_BYTES)))
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise write_error(self.path, exc) from None
        self.reopen()

    def _grow(self, need: int) -> None:
        """Allocate more: zeros, made durable by the thread's next sync together with the line
        that needed them. Not synced here: the first commit of a sweep grows the journal, and a
        sync (a file-system journal commit) would delay the first launch."""
        self.sync()
        size = max(need, self._room(max(self.GROW_BYTES if self.allocated else self.FIRST_BYTES, self.allocated)))
        write_all(self.fd, bytes(size), self.allocated)  # type: ignore[arg-type]
        self.allocated += size

    def _room(self, wanted: int) -> int:
        """``wanted`` bytes to allocate, or less on a small or nearly full file system: at most a
        sixteenth of the space left (never under a page), so the journal's reserve never takes
        the room the experiments' own files and the state need."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return wanted
        return max(4096, min(wanted, st.f_bavail * st.f_frsize // 16))

    def _flush(self) -> None:
        while True:
            with self.cond:
                while self.synced == self.written and not self.closing:
                    self.cond.wait()
                if self.synced == self.written:
                    return
                target, fd = self.written, self.fd
            try:
                os.fdatasync(fd)  # type: ignore[arg-type]
            except OSError as exc:
                self.error = exc
            with self.cond:
                self.synced = target
                self.cond.notify_all()

    def sync(self) -> None:
        """Wait until every line written so far is on disk; raise if syncing failed."""
        self.start_sync()
        with self.cond:
            while self.synced < self.written:
                self.cond.wait()
        if self.error is not None:
            raise write_error(self.path, self.error)

    def close(self) -> None:
        if self.thread is not None:
            with self.cond:
                self.closing = True
                self.cond.notify()
            self.thread.join()
            self.thread, self.closing = None, False
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
