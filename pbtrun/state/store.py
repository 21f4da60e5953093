"""Everything pbtrun keeps on disk for a sweep, and how it is written safely.

Guarantees:
- ``pbtrun.json`` is only ever replaced atomically (temporary file in the same directory,
  ``fsync``, ``os.replace``, ``fsync`` of the directory): after a crash at any instant it is
  either the old or the new version, never a torn one, so readers need no lock.
- The version it replaces is kept as ``pbtrun.json.bak``, so a hand-broken file can be recovered.
- Writers read-modify-write inside one lock (``flock``), so no writer loses another's update.
- One scheduler per sweep: a separate lifetime lock (``flock``: it vanishes with its process, so
  a crash leaves no stale lock) plus a holder record naming pid and host for the refusal message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from pbtrun import __version__
from pbtrun.errors import DiskFull, StateError, SweepBusy
from pbtrun.proc import hostname, process_start_time
from pbtrun.spec.naming import safe_file_name
from pbtrun.state.records import (
    Experiment,
    NewerState,
    Sweep,
    apply_change,
    change_json,
    experiment_from,
    experiment_json,
    from_json,
    head_json,
    sweep_from,
)

STATE_LOCK_TIMEOUT_S = 60
FOLD_MIN_ENTRIES = 256  # fold the journal after max(this, half the sweep) entries: O(1) amortized
FOLD_EVERY_S = 1.0  # ... or once the last fold is this old, or 20 times its cost, whichever is more
# A scheduler keeps each experiment's line of pbtrun.json between folds (see dump_chunks), so a
# fold, the last one included, encodes only what changed: up to this many experiments (~10 MB;
# a larger sweep folds rarely, and its memory goes to its records).
ROW_CACHE_MAX = 20_000
SUMMARY_EVERY_S = 1.0


class SweepPaths:
    """The one object that knows where every file of a sweep lives (equal when the directory
    is; a plain class: defining a frozen dataclass costs start-up time, at every start)."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepPaths) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    def __repr__(self) -> str:
        return f"SweepPaths(dir={self.dir!r})"

    @cached_property
    def state(self) -> Path:
        return self.dir / "pbtrun.json"

    @cached_property
    def journal(self) -> Path:
        """Transitions since the last fold, one fsync'd JSON line per commit (see StateWriter)."""
        return self.dir / "pbtrun.journal"

    @cached_property
    def summary(self) -> Path:
        """Name and counts only, rewritten now and then, so listing many sweeps stays cheap."""
        return self.dir / "summary.json"

    @cached_property
    def backup(self) -> Path:
        return self.dir / "pbtrun.json.bak"

    @cached_property
    def state_lock(self) -> Path:
        return self.dir / ".pbtrun.json.lock"

    @cached_property
    def scheduler_lock(self) -> Path:
        return self.dir / ".scheduler.lock"

    @cached_property
    def holder(self) -> Path:
        return self.dir / "scheduler.json"

    @cached_property
    def spec_copy(self) -> Path:
        return self.dir / "sweep.toml"

    @cached_property
    def control(self) -> Path:
        return self.dir / ".control"

    @cached_property
    def logs(self) -> Path:
        return self.dir / "logs"

    def log_name(self, exp: Experiment, attempt: int) -> str:
        """An attempt's log relative to the sweep directory, as the attempt records it. The log
        is the attempt's only file: it also holds its launch claim, pid and exit records."""
        return f"{self.logs.name}/{safe_file_name(exp.name, exp.id)}.{attempt}.log"

    def log(self, exp: Experiment, attempt: int) -> Path:
        return self.dir / self.log_name(exp, attempt)


# --------------------------------------------------------------------------- atomic files


def write_atomic(path: Path, data: bytes | Iterable[bytes], durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks of them) so that a crash leaves the old
    or the new content, never a mix: a temporary file in the same directory (``os.replace`` is
    atomic only within one file system), ``fsync``, rename, ``fsync`` of the directory. Without
    ``durable``, no fsync: atomic for every process, but a power cut may keep the old content
    (for files that only inform, such as the spec copy and the scheduler's holder record).

    If anything fails the temporary file is removed, so a full disk leaves the old file intact.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            for chunk in [data] if isinstance(data, bytes) else data:
                _write_all(fd, chunk)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        done = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[done:]
        if offset is not None:
            offset += done


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The layout of pbtrun.json: an indented head, then one experiment per line (sorted keys), so
# that a person can read and diff it, and so that pbtrun can write and read it in chunks, at C
# speed (the json module's indented encoder is pure Python, many times slower than its compact one).
# Any other layout of the same JSON (an older pbtrun's, a hand-edited file) is read as well.
_BODY_START = b'\n "experiments": [\n'
_BODY_END = b"\n ]\n}\n"
_ROW_SEP = b",\n"
CHUNK_ROWS = 2000
_JOURNAL_JSON = json.JSONEncoder(sort_keys=True)


def dump_chunks(sweep: Sweep, rows: dict[str, tuple[Experiment, bytes]] | None = None) -> Iterator[bytes]:
    """``pbtrun.json``'s bytes, in chunks of a few thousand experiments (memory stays small).

    ``rows``: each experiment's line as last written, with the record it was made from, kept by
    the caller from one save to the next: a record that is still the same object (records are
    immutable: a change replaces them) is not encoded again."""
    head = json.dumps(head_json(sweep), indent=1, sort_keys=True).encode()
    experiments = list(sweep.experiments.values())
    if not experiments:
        yield head[:-2] + b',\n "experiments": []\n}\n'
        return
    yield head[:-2] + b"," + _BODY_START
    encode = json.JSONEncoder(sort_keys=True).encode

    def line(exp: Experiment) -> bytes:
        return b"  " + encode(experiment_json(exp)).encode()

    if rows is not None and len(rows) > len(experiments):
        rows.clear()  # experiments were dropped (a reload): keep no lines of records gone
    for start in range(0, len(experiments), CHUNK_ROWS):
        chunk = experiments[start : start + CHUNK_ROWS]
        if rows is None:
            lines = [line(e) for e in chunk]
        else:
            lines = []
            for e in chunk:
                known = rows.get(e.id)
                if known is None or known[0] is not e:
                    known = rows[e.id] = (e, line(e))
                lines.append(known[1])
        yield (_ROW_SEP if start else b"") + _ROW_SEP.join(lines)
    yield _BODY_END


def dump(sweep: Sweep) -> bytes:
    return b"".join(dump_chunks(sweep))


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
        with gc_paused():
            sweep = parse(paths, data)
            replay(paths, sweep)
        with contextlib.suppress(OSError):
            if os.stat(paths.state).st_ino == before:
                break
    sweep.dirty.clear()
    return sweep


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: reading 100,000 experiments allocates millions of
    containers, and each 700 of them start a collection that walks the younger ones again (a
    large share of ``status --json``'s time at that size: see docs/performance.md). Nothing read
    here forms a cycle."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay(paths: SweepPaths, sweep: Sweep) -> int:
    """Apply the journal's entries newer than the sweep's ``journal_seq``; return the byte length
    of its complete lines (a torn last line, from a crash mid-append, is ignored)."""
    try:
        data = _read_own(paths.journal)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_refused(paths.journal) from None
        raise StateError(f"{paths.journal}: cannot read the journal: {exc.strerror}.") from None
    end = _complete_length(data)
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            entry = json.loads(line)
            if entry["seq"] <= sweep.journal_seq:
                continue
            for raw in entry.get("experiments", ()):
                sweep.update(experiment_from(raw))
            for change in entry.get("changes", ()):
                apply_change(sweep, change)
            sweep.journal_seq = entry["seq"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            from pbtrun.state.check import journal_problem  # only now: a journal that reads needs none of it

            raise StateError(
                f"{paths.journal}, line {number}: the journal is damaged ({journal_problem(line, sweep.experiments)}). "
                f"pbtrun leaves it untouched; {paths.state.name} holds the state as of the last fold "
                "(at most about a second before the journal's last line). To go on from there, make "
                "sure no experiment of this sweep still runs, move the journal aside (mv "
                f"{paths.journal} {paths.journal}.damaged) and resume: experiments recorded as running "
                "are settled from their logs, the others run again."
            ) from None
    return end


def _complete_length(journal: bytes) -> int:
    """The length of the journal's complete lines: the zeros after them (it is preallocated) and
    a torn last line (a crash mid-append) do not count."""
    limit = journal.find(b"\0")
    return journal.rfind(b"\n", 0, len(journal) if limit < 0 else limit) + 1


def parse(paths: SweepPaths, data: bytes) -> Sweep:
    try:
        return _parse_rows(data) or from_json(json.loads(data))
    except ValueError as exc:  # not JSON (UnicodeDecodeError is one too)
        raise StateError(_damaged(paths, _not_json(data, exc))) from None
    except RecursionError:  # json recurses per level of nesting
        raise StateError(_damaged(paths, _NESTED)) from None
    except NewerState as exc:  # not damaged: the backup is no better, an upgrade is the answer
        raise StateError(f"{paths.state}: {exc.message}.") from None
    except StateError as exc:
        from pbtrun.state.check import document_problem  # only now: a state that reads needs none of it

        raise StateError(_damaged(paths, document_problem(json.loads(data)) or exc.message)) from None


def _not_json(data: bytes, exc: ValueError) -> str:
    """Why ``data`` is not the JSON text pbtrun writes (UTF-8), in words, with its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        return (
            f"it is not UTF-8 text, as pbtrun writes it (byte 0x{data[bad.start]:02x} on line {line}): "
            "it was saved in another encoding, or is not a state file"
        )
    if (nul := text.find("\0")) >= 0:
        return f"it holds NUL bytes (from line {text.count(chr(10), 0, nul) + 1}), which JSON text never does"
    if isinstance(exc, json.JSONDecodeError):
        return f"it is not valid JSON ({exc.msg.lower()}, line {exc.lineno}, column {exc.colno})"
    return "it holds a number of thousands of digits, which no field of a state has"


def _parse_rows(data: bytes) -> Sweep | None:
    """Read pbtrun's own layout (see ``dump_chunks``) chunk by chunk: the whole file is never one
    tree of dicts in memory. None if the file has another layout (then it is read whole)."""
    start = data.find(_BODY_START)
    if start < 1 or not data.endswith(_BODY_END) or start + len(_BODY_START) > len(data) - len(_BODY_END):
        return None
    try:
        head = json.loads(data[: start - 1] + b"\n}")  # without the comma before the body
        sweep = sweep_from(head)
        shared: dict = {}
        rows_read = 0
        for rows, expected in _row_chunks(data, start + len(_BODY_START), len(data) - len(_BODY_END)):
            raw = json.loads(b"[" + rows + b"]")
            if len(raw) != expected:  # not one experiment per line: not our layout after all
                return None
            rows_read += expected
            for item in raw:
                sweep.update(experiment_from(item, shared))
        if rows_read != len(sweep.experiments):  # an experiment listed twice: the whole-file reader names it
            return None
    except (ValueError, TypeError, KeyError, AttributeError, StateError, RecursionError):
        return None  # not our layout, or damaged: the whole-file reader says precisely what is wrong
    sweep.dirty.clear()
    return sweep


def _row_chunks(data: bytes, begin: int, end: int) -> Iterator[tuple[bytes, int]]:
    """Pieces of ``data[begin:end]``, the experiment rows, cut between two rows: (bytes, rows)."""
    while begin < end:
        cut = begin
        for _ in range(CHUNK_ROWS):
            cut = data.find(_ROW_SEP, cut + 1, end)
            if cut < 0:
                break
        stop = end if cut < 0 else cut
        piece = data[begin:stop]
        yield piece, piece.count(b"\n") + 1
        begin = stop + len(_ROW_SEP)


_NESTED = "its values nest more deeply than JSON can be read (hundreds of arrays or objects inside each other)"


def _damaged(paths: SweepPaths, why: str) -> str:
    backup = (
        f"The previous version is kept at {paths.backup}: if it looks right, copy it over "
        f"{paths.state.name} and run the command again."
        if paths.backup.exists()
        else "No backup of it exists."
    )
    return f"{paths.state}: cannot use the state file: {why}. pbtrun leaves it untouched. {backup}"


def save(
    paths: SweepPaths, sweep: Sweep, keep_journal: bool = False, rows: dict[str, tuple[Experiment, bytes]] | None = None
) -> None:
    """Write the whole state atomically, folding the journal into it, and keep the version it
    replaces as the backup. Call with the state lock held. The journal's entries are all
    <= journal_seq now, skipped even if kept; it is emptied unless ``keep_journal`` (the
    scheduler replaces it with a preallocated one itself). ``rows``: see :func:`dump_chunks`."""
    sweep.pbtrun_version = __version__
    try:
        if paths.state.exists():
            _keep_backup(paths)
        write_atomic(paths.state, dump_chunks(sweep, rows))
        if not keep_journal and paths.journal.exists():
            os.truncate(paths.journal, 0)
    except OSError as exc:
        raise _write_error(paths.state, exc) from None
    sweep.dirty.clear()
    write_summary(paths, sweep)


def _write_error(path: Path, exc: OSError) -> StateError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(
            f"{path}: the disk is full ({exc.strerror}). The previous state is intact and every end "
            "is kept (in the journal's reserve and in each log's exit record); free space, then resume "
            "the sweep."
        )
    if exc.errno == errno.ELOOP:
        return _link_refused(path)
    return StateError(
        f"{path}: cannot write the state: {exc.strerror or exc}. The previous state is intact; "
        "free space or fix permissions, then resume the sweep."
    )


def _link_refused(path: Path) -> StateError:
    return StateError(
        f"{path} is a symbolic link: pbtrun reads and writes only files of its own in a sweep "
        "directory and never follows a link there. Remove the link, then resume the sweep."
    )


def write_summary(paths: SweepPaths, sweep: Sweep) -> None:
    """Best effort: a stale or missing summary only makes listing slower, never wrong."""
    summary = {"name": sweep.name, "counts": sweep.counts(), "updated_at": time.time()}
    tmp = paths.summary.with_name(f".{paths.summary.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(summary))
        os.replace(tmp, paths.summary)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read_summary(paths: SweepPaths) -> dict[str, Any] | None:
    """The summary, if it is at least as new as the state it summarises."""
    try:
        newest = max(os.stat(p).st_mtime_ns for p in (paths.state, paths.journal) if p.exists())
        if os.stat(paths.summary).st_mtime_ns < newest:
            return None
        data = json.loads(paths.summary.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("counts"), dict) else None


def _read_own(path: Path) -> bytes:
    """The bytes of a file of pbtrun's own: a symbolic link in its place is refused (ELOOP)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def version(paths: SweepPaths) -> tuple | None:
    """Identifies what :func:`load` would read: ``pbtrun.json`` (see :func:`signature`) and how
    much of the journal is written (it only grows until a fold replaces ``pbtrun.json``; its
    modification time could miss two appends within one clock tick). None if it cannot be read."""
    try:
        journal = _complete_length(paths.journal.read_bytes())
    except FileNotFoundError:
        journal = 0
    except OSError:
        return None
    state = signature(paths)
    return None if state is None else (*state, journal)


def signature(paths: SweepPaths) -> tuple | None:
    """Identifies one version of ``pbtrun.json`` (every save replaces the file)."""
    try:
        st = os.stat(paths.state)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class StateWriter:
    """The scheduler's way to write state.

    The sweep stays in memory; each commit appends the changed experiments to the journal as one
    line (O(changes), not O(sweep)), durable within one ``fdatasync`` (see :class:`Journal`); the
    journal is folded into ``pbtrun.json`` once it holds more entries than half the sweep, or
    once the last fold is older than a second or 20 times what a fold costs (so folding takes at
    most ~5% of the time, and ``pbtrun.json`` alone is never much behind: about a second for
    small sweeps). Another writer (``pbtrun up`` adding experiments) is noticed by the files
    changing under the lock: the state is then reloaded before the change is applied, so neither
    loses the other's update.
    """

    def __init__(self, paths: SweepPaths, saved: tuple[Sweep, tuple | None] | None = None) -> None:
        """``saved``: a sweep this process has just saved, with the file's :func:`signature`
        then; it is used as it is if nobody has written since (else the state is read)."""
        self.paths = paths
        self.lock = Flock(paths.state_lock)  # kept open: the scheduler takes it for every commit
        self.journal = Journal(paths.journal)
        self.generation = 0  # bumped on every reload, so callers can rebuild what they derive
        self.entries = 0
        self.summary_at = 0.0
        self.folded_at = time.monotonic()
        self.fold_cost_s = 0.0
        self.fold_error: StateError | None = None  # a fold that failed; the journal took the change
        self.rows: dict[str, tuple[Experiment, bytes]] = {}  # see ROW_CACHE_MAX
        self._signed: tuple | None = ()
        with self._locked():
            if saved is not None and saved[1] is not None and saved[1] == self._signature():
                self._adopt(saved[0])
            else:
                self._reload()

    @property
    def sweep(self) -> Sweep:
        return self._sweep

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return self.lock

    def _signature(self) -> tuple | None:
        """What tells another writer's change: every other writer (``pbtrun up`` adding
        experiments) saves a whole new ``pbtrun.json``; only this one appends to the journal."""
        return signature(self.paths)

    def _adopt(self, sweep: Sweep) -> None:
        sweep.dirty.clear()
        self.summary_at = time.monotonic()  # saving it wrote the summary too
        self._sweep = sweep
        self.journal.reopen()
        self.entries = 0
        self.generation += 1
        self._signed = self._signature()

    def _reload(self) -> None:
        self.rows.clear()  # every record is new
        self._sweep = load(self.paths)
        self.journal.reopen()
        self.entries = 0
        self.generation += 1
        self._signed = self._signature()

    def refresh(self) -> Sweep:
        """Pick up another writer's changes, if any."""
        with self._locked():
            if self._signature() != self._signed:
                self._reload()
        return self._sweep

    def commit(self, change: Callable[[Sweep], None]) -> Sweep:
        """Apply ``change(sweep)`` under the lock to the freshest state and record it."""
        with self._locked():
            if self._signature() != self._signed:
                self._reload()
            sweep = self._sweep
            sweep.dirty.clear()
            change(sweep)
            try:
                if sweep.dirty:
                    self._append(sweep)
            except BaseException:
                self._signed = ()  # memory is ahead of disk: reload before the next change
                raise
        return sweep

    def kick(self) -> None:
        """Let the journal's thread make what was committed durable (see :meth:`Journal.kick`)."""
        self.journal.kick()

    def fold_due_at(self) -> float | None:
        """When the journal should next be folded (monotonic time), or None if it is empty."""
        return self.folded_at + max(FOLD_EVERY_S, 20 * self.fold_cost_s) if self.entries else None

    def fold_if_due(self) -> None:
        due = self.fold_due_at()
        if due is not None and time.monotonic() >= due:
            with self._locked():
                if self._signature() != self._signed:
                    self._reload()
                self._fold(self._sweep)

    def _fold(self, sweep: Sweep) -> None:
        started = time.monotonic()
        # The journal syncs while the state is encoded and written (the scheduler waits for
        # neither); reset() waits for that sync before it empties the journal, so a failed
        # sync is still seen.
        self.journal.kick()
        try:
            save(self.paths, sweep, keep_journal=True, rows=self._rows(sweep))
        except StateError:
            self.folded_at = time.monotonic()  # (a full disk) try again a while later, not at once
            raise
        self._signed = self._signature()
        self.journal.reset()
        self.entries = 0
        self.folded_at = self.summary_at = time.monotonic()  # save wrote the summary
        self.fold_cost_s = self.folded_at - started

    def _rows(self, sweep: Sweep) -> dict[str, tuple[Experiment, bytes]] | None:
        if len(sweep.experiments) > ROW_CACHE_MAX:
            self.rows.clear()
            return None
        return self.rows

    def take_fold_error(self) -> StateError | None:
        """The error of a fold that failed since the last call (a full disk): the commit that
        tried it went to the journal, which has room set aside, so nothing was lost."""
        error, self.fold_error = self.fold_error, None
        return error

    def _append(self, sweep: Sweep) -> None:
        due = self.fold_due_at()
        if self.entries >= max(FOLD_MIN_ENTRIES, len(sweep.experiments) // 2) or (
            due is not None and time.monotonic() >= due
        ):
            try:
                self._fold(sweep)
                return
            except StateError as exc:  # pbtrun.json could not be rewritten; it is intact, and so is the journal
                self.fold_error = exc
                self.entries = min(self.entries, FOLD_MIN_ENTRIES - 1)  # and _fold waits a while to try again
        seq = sweep.journal_seq + 1
        entry: dict[str, Any] = {"seq": seq}
        for exp_id, before in sweep.dirty.items():
            exp = sweep.experiments[exp_id]
            change = change_json(before, exp)
            if change is not None:
                entry.setdefault("changes", []).append(change)
            else:
                entry.setdefault("experiments", []).append(experiment_json(exp))
        line = (_JOURNAL_JSON.encode(entry) + "\n").encode()
        self.journal.append(line)
        sweep.journal_seq = seq
        sweep.dirty.clear()
        self.entries += 1
        now = time.monotonic()
        if now - self.summary_at >= SUMMARY_EVERY_S:
            self.summary_at = now
            write_summary(self.paths, sweep)

    def close(self) -> None:
        """Fold the journal, so that ``pbtrun.json`` alone is complete when no scheduler runs."""
        try:
            with self._locked():
                if self._signature() != self._signed:
                    self._reload()
                if self.entries or self.journal.offset:
                    self.journal.kick()  # syncs while the state is written; pbtrun.json, durable, has it all
                    save(self.paths, self._sweep, rows=self._rows(self._sweep))
                    self.entries = 0
        finally:
            self.journal.close()
            self.lock.close()


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
            self.offset = _complete_length(data)
            self.allocated = len(data)
            if self.allocated > self.offset:  # a torn tail, from a crash mid-append: zero it
                _write_all(self.fd, bytes(self.allocated - self.offset), self.offset)
        except OSError as exc:
            self.close()
            raise _write_error(self.path, exc) from None

    def append(self, line: bytes) -> None:
        if self.error is not None:
            raise _write_error(self.path, self.error)
        if self.fd is None:
            self.reopen()
        assert self.fd is not None
        try:
            if self.offset + len(line) > self.allocated:
                self._grow(len(line))
            _write_all(self.fd, line, self.offset)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        self.offset += len(line)
        self.written += 1  # synced once :meth:`kick` wakes the thread

    def kick(self) -> None:
        """Have the thread sync what was written. The scheduler calls this just before it
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
            raise _write_error(self.path, exc) from None
        self.reopen()

    def _grow(self, need: int) -> None:
        """Allocate more: zeros, made durable by the thread's next sync together with the line
        that needed them. Not synced here: the first commit of a sweep grows the journal, and a
        sync (a file-system journal commit) would delay the first launch."""
        self.sync()
        size = max(need, self._room(max(self.GROW_BYTES if self.allocated else self.FIRST_BYTES, self.allocated)))
        _write_all(self.fd, bytes(size), self.allocated)  # type: ignore[arg-type]
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
        self.kick()
        with self.cond:
            while self.synced < self.written:
                self.cond.wait()
        if self.error is not None:
            raise _write_error(self.path, self.error)

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


def _keep_backup(paths: SweepPaths) -> None:
    """Hard-link the current state as the backup: no copy, and atomic via a temporary name.
    Nothing to do if the backup already is the current state (a save failed after linking it:
    renaming one link onto another of the same file would do nothing and leave the temporary)."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(paths.state, paths.backup):
            return
    tmp = paths.backup.with_name(f".{paths.backup.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.link(paths.state, tmp)
    try:
        os.replace(tmp, paths.backup)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create(paths: SweepPaths, sweep: Sweep, spec_text: str) -> None:
    """Create a new sweep directory with its state and a copy of the spec it came from."""
    try:
        paths.logs.mkdir(parents=True, exist_ok=True)
        write_atomic(paths.spec_copy, spec_text.encode(), durable=False)
    except OSError as exc:
        raise StateError(f"{paths.dir}: cannot create the sweep directory: {exc.strerror or exc}.") from None
    with state_lock(paths):
        save(paths, sweep)


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


@contextlib.contextmanager
def transaction(paths: SweepPaths) -> Iterator[Sweep]:
    """Lock, load, let the caller change the sweep, save. Check and act inside one lock."""
    with state_lock(paths):
        sweep = load(paths)
        yield sweep
        save(paths, sweep)


def write_spec_copy(paths: SweepPaths, text: str) -> None:
    write_atomic(paths.spec_copy, text.encode(), durable=False)  # a copy for people; the state is the truth


# --------------------------------------------------------------------------- finding sweeps


def is_sweep(path: Path) -> bool:
    return (path / "pbtrun.json").is_file()


def find_sweeps(train_dir: Path) -> list[Path]:
    """Sweep directories directly under a train dir, by name."""
    return [p for p in subdirectories(train_dir) if is_sweep(p)]


def subdirectories(train_dir: Path) -> list[Path]:
    """The directories directly under ``train_dir``, by name; none if it cannot be listed."""
    try:
        return sorted(p for p in train_dir.iterdir() if p.is_dir())
    except OSError:
        return []


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


def _lock_error(path: Path, exc: OSError) -> StateError:
    if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        advice = (
            "this file system does not support flock locks (some network file systems need a "
            "mount option for them, e.g. Lustre's -o flock); put the train dir on one that does"
        )
    else:
        advice = "pbtrun needs to write in the sweep directory; fix its permissions or free space there"
    return StateError(f"{path}: cannot take the lock: {exc.strerror or exc}. {advice}, then run the command again.")


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
