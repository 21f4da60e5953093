"""Reading and writing a sweep's state, ``pbtrun.json`` with its journal: load without a lock,
save atomically with a backup, and a transaction (lock, load, change, save) for one-off writers.

Guarantees:
- ``pbtrun.json`` is only ever replaced atomically (see :func:`pbtrun.state.files.write_atomic`):
  after a crash at any instant it is either the old or the new version, so readers need no lock.
- The version it replaces is kept as ``pbtrun.json.bak``, so a hand-broken file can be recovered.
- Writers read-modify-write inside the state lock, so no writer loses another's update.
- A state that cannot be read is refused, never overwritten, with what is wrong in words.

The scheduler writes through :class:`pbtrun.state.writer.StateWriter` instead (a journal line
per commit); every path is :class:`pbtrun.state.paths.SweepPaths`'s.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from pbtrun import __version__
from pbtrun.errors import StateError
from pbtrun.state.codec import NewerState, from_json
from pbtrun.state.files import keep_backup, write_atomic, write_error
from pbtrun.state.journal import complete_length, replay
from pbtrun.state.layout import dump_chunks, parse_rows
from pbtrun.state.locks import state_lock
from pbtrun.state.migrations import FORMAT
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Experiment, Sweep


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


def parse(paths: SweepPaths, data: bytes) -> Sweep:
    """The sweep in ``data``, the bytes of ``paths.state``; what is wrong with them, in words."""
    try:
        return parse_rows(data) or from_json(json.loads(data))
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
    scheduler replaces it with a preallocated one itself). ``rows``: see :func:`dump_chunks`.
    The state is written in the current format, whatever format it was read in."""
    sweep.pbtrun_version = __version__
    try:
        if paths.state.exists():
            keep_backup(paths)
            if sweep.disk_format is not None and sweep.disk_format != FORMAT:
                keep_older_format(paths, sweep.disk_format)
        write_atomic(paths.state, dump_chunks(sweep, rows))
        sweep.disk_format = FORMAT
        if not keep_journal and paths.journal.exists():
            os.truncate(paths.journal, 0)
    except OSError as exc:
        raise write_error(paths.state, exc) from None
    sweep.dirty.clear()
    write_summary(paths, sweep)


def keep_older_format(paths: SweepPaths, disk_format: int) -> None:
    """Keep the state as an older pbtrun wrote it, under its own name (``pbtrun.json.format-1``),
    before it is rewritten in this one's format: the backup is replaced by the next rewrite
    within seconds, and the older pbtrun refuses the newer format, so this is the only way back.
    Kept once: a later migration of the same sweep never replaces it."""
    with contextlib.suppress(FileExistsError):
        os.link(paths.state, paths.dir / f"{paths.state.name}.format-{disk_format}")


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


def backend_of(paths: SweepPaths) -> str:
    """The backend a sweep's experiments run on, read from its state's head alone (a scheduler
    opens it before it loads the whole state); "local" for a format-1 state, which had none."""
    import re

    try:
        with open(paths.state, "rb") as f:
            head = f.read(65536).split(b'"experiments"', 1)[0]
    except OSError:
        return "local"
    found = re.search(rb'"backend":\s*"([^"\\]+)"', head)
    return found.group(1).decode() if found else "local"


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


def version(paths: SweepPaths) -> tuple | None:
    """Identifies what :func:`load` would read: ``pbtrun.json`` (see :func:`signature`) and how
    much of the journal is written (it only grows until a fold replaces ``pbtrun.json``; its
    modification time could miss two appends within one clock tick). None if it cannot be read."""
    try:
        journal = complete_length(paths.journal.read_bytes())
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


def create(paths: SweepPaths, sweep: Sweep, spec_text: str) -> None:
    """Create a new sweep directory with its state and a copy of the spec it came from."""
    try:
        paths.logs.mkdir(parents=True, exist_ok=True)
        write_atomic(paths.spec_copy, spec_text.encode(), durable=False)
    except OSError as exc:
        raise StateError(f"{paths.dir}: cannot create the sweep directory: {exc.strerror or exc}.") from None
    with state_lock(paths):
        save(paths, sweep)


@contextlib.contextmanager
def transaction(paths: SweepPaths) -> Iterator[Sweep]:
    """Lock, load, let the caller change the sweep, save. Check and act inside one lock."""
    with state_lock(paths):
        sweep = load(paths)
        yield sweep
        save(paths, sweep)


def write_spec_copy(paths: SweepPaths, text: str) -> None:
    write_atomic(paths.spec_copy, text.encode(), durable=False)  # a copy for people; the state is the truth
