"""The scheduler's way to write state: :class:`StateWriter`, which keeps the sweep in memory,
records each commit as one journal line and folds the journal into ``pbtrun.json`` now and then.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from pbtrun.errors import StateError
from pbtrun.state.journal import Journal, entry_line
from pbtrun.state.locks import Flock
from pbtrun.state.migrations import FORMAT
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Experiment, Sweep
from pbtrun.state.store import load, save, signature, write_summary

FOLD_MIN_ENTRIES = 256  # fold the journal after max(this, half the sweep) entries: O(1) amortized
FOLD_EVERY_S = 1.0  # ... or once the last fold is this old, or 20 times its cost, whichever is more
# A scheduler keeps each experiment's line of pbtrun.json between folds (see dump_chunks), so a
# fold, the last one included, encodes only what changed: up to this many experiments (~10 MB;
# a larger sweep folds rarely, and its memory goes to its records).
ROW_CACHE_MAX = 20_000
SUMMARY_EVERY_S = 1.0


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
        if self._sweep.disk_format != FORMAT:
            # The journal's lines are in the format of the pbtrun.json they follow: a state of an
            # older pbtrun is rewritten in this one's format before a line of it is appended.
            save(self.paths, self._sweep)
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

    def start_sync(self) -> None:
        """Let the journal's thread make what was committed durable (see :meth:`Journal.start_sync`)."""
        self.journal.start_sync()

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
        self.journal.start_sync()
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
        self.journal.append(entry_line(sweep, seq))
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
                    self.journal.start_sync()  # syncs while the state is written; pbtrun.json, durable, has it all
                    save(self.paths, self._sweep, rows=self._rows(self._sweep))
                    self.entries = 0
        finally:
            self.journal.close()
            self.lock.close()
