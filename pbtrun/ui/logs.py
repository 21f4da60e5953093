"""Finding and printing experiments' logs (``pbtrun logs``)."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pbtrun.backends.fromlog import observe
from pbtrun.backends.local import exit_outcome
from pbtrun.backends.logrecords import EXIT_PREFIX, PID_PREFIX, RECORDS_BYTES
from pbtrun.errors import PbtrunError
from pbtrun.printable import printable
from pbtrun.proc import hostname
from pbtrun.state import locks, store
from pbtrun.state.records import FAILED, NOT_STARTED, RUNNABLE, SEEN_LOST, SEEN_NOT_STARTED, Experiment, Observed, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.logtail import tail_lines
from pbtrun.ui.words import last_attempt, observed_word, real_attempts, status_word

FOLLOW_POLL_S = 0.2  # `logs -f` is a person watching a file; a short poll is the honest tool here
STATE_RECHECK_S = 1.0  # how often `logs -f` reads the state again to see whether the attempt ended
TAIL_BLOCK_BYTES = 1 << 16  # `logs EXP -n N` reads a log backwards in blocks of this size


def find(sweep: Sweep, key: str) -> Experiment:
    """An experiment by exact name, by index (the ``#`` column of ``status``), or by unique prefix.

    Names always begin with ``NN_``, so a key made only of digits is never a whole name: it is
    an index, the position in the sweep's experiment order (``status`` rows, ``status --json``).
    Reading it as a prefix first would make ``0`` always ambiguous and let ``10`` pick ``10_b``.
    """
    experiments = list(sweep.experiments.values())
    exact = [e for e in experiments if e.name == key]
    if exact:
        return exact[0]
    if key.isascii() and key.isdigit():
        if int(key) < len(experiments):
            return experiments[int(key)]
        raise PbtrunError(
            f"no experiment #{int(key)} in sweep {sweep.name!r}: its indexes go from 0 to {len(experiments) - 1} "
            "(the # column of `pbtrun status`). Give an index in that range, or a name."
        )
    matches = [e for e in experiments if e.name.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listing = ", ".join(printable(e.name) for e in matches[:10]) + (", ..." if len(matches) > 10 else "")
        raise PbtrunError(
            f"{key!r} matches {len(matches)} experiments ({listing}); give more of the name, or its index "
            "(the # column of `pbtrun status`)."
        )
    raise PbtrunError(
        f"no experiment {key!r} in sweep {sweep.name!r}: give a name, a unique prefix of one, or an index "
        f"from 0 to {len(experiments) - 1} (the # column of `pbtrun status`)."
    )


def attempt_number(exp: Experiment, attempt: int | None) -> int:
    numbers = [a.number for a in real_attempts(exp)]
    if not numbers:
        raise PbtrunError(f"{exp.name} has not run yet, so it has no log; `-f` waits for it to start.")
    if attempt is None:
        return numbers[-1]
    if attempt not in numbers:
        raise PbtrunError(f"{exp.name} has no attempt {attempt}; its attempts are {', '.join(map(str, numbers))}.")
    return attempt


def attempt_ended(sweep: Sweep, exp_id: str, number: int) -> bool:
    """Whether the state records attempt ``number`` of the experiment as over (or forgot it)."""
    exp = sweep.experiments.get(exp_id)
    attempt = None if exp is None else next((a for a in exp.attempts if a.number == number), None)
    return attempt is None or attempt.outcome is not None or attempt.ended_at is not None


def show(paths: SweepPaths, sweep: Sweep, exp: Experiment, attempt: int | None, follow: bool, lines: int | None) -> int:
    """``pbtrun logs SWEEP EXP``: print the log of one attempt (the last by default), or its last
    ``lines`` lines; with ``follow``, go on until the attempt ends, and first wait for the
    experiment to start if it is still to run. The exit code: 0, or 1 where it would wait for
    an experiment that no scheduler will start."""
    if follow and attempt is None and waits_to_run(exp):
        number = wait_to_start(paths, exp, lambda: _say(f"waiting for {exp.name} to start..."))
        if number is None:
            _say(will_not_start(paths, exp))
            return 1
    else:
        number = attempt_number(exp, attempt)
        follow = follow and not attempt_ended(sweep, exp.id, number)  # an ended attempt writes no more
    watch = EndWatch(paths, exp, number)
    copy(paths.log(exp, number), sys.stdout.buffer, follow=follow, ended=watch, lines=lines)
    if watch.seen is not None:
        _say(unrecorded_end(paths, exp, number, watch.seen))
    return 0


def _say(line: str) -> None:
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


def waits_to_run(exp: Experiment) -> bool:
    """Whether the experiment is one a scheduler runs next (``logs -f`` then waits for its next attempt)."""
    return exp.status in RUNNABLE and not exp.removed


def wait_to_start(paths: SweepPaths, exp: Experiment, waiting: Callable[[], None]) -> int | None:
    """Wait for the scheduler to start the experiment's next attempt; its number, or None when no
    scheduler runs the sweep (then nothing would ever start it). ``waiting`` is called once, when
    it has to wait.

    Each look is a stat of the next attempt's log (its launch claim: the name is known ahead)
    and of the scheduler's record; the state is read only once that log exists, to see that the
    attempt is recorded (an abandoned launch leaves a log too, and is skipped).
    """
    after = max((a.number for a in exp.attempts), default=0)
    said = False
    while True:
        number, after = _started(paths, exp, after)
        if number is not None:
            return number
        if locks.holder_alive(paths) is None:  # it may have started just before its scheduler ended
            return _started(paths, exp, after)[0]
        if not said:
            waiting()
            said = True
        time.sleep(FOLLOW_POLL_S)


def _started(paths: SweepPaths, exp: Experiment, after: int) -> tuple[int | None, int]:
    """The first recorded attempt numbered above ``after`` that started a process, if any; and
    the number to look above next time (past abandoned launches)."""
    if not paths.log(exp, after + 1).exists():
        return None, after
    current = store.load(paths).experiments.get(exp.id)
    for attempt in current.attempts if current is not None else ():
        if attempt.number <= after:
            continue
        if attempt.outcome != NOT_STARTED:
            return attempt.number, after
        after = attempt.number
    return None, after


def will_not_start(paths: SweepPaths, exp: Experiment) -> str:
    """What ``logs -f`` says when it would wait for an experiment that no scheduler will start."""
    where = shlex.quote(str(paths.dir))
    return (
        f"{exp.name} is {exp.status} and no scheduler runs the sweep {paths.dir}, so nothing will start it. "
        f"Run it with: pbtrun resume {where} (then `pbtrun logs {where} {shlex.quote(exp.name)} -f` follows it)."
    )


class EndWatch:
    """Tells ``logs -f`` when the attempt it follows is over.

    The exit record at the top of the log says so at once, but an attempt can end without one:
    lost to a reboot, or recorded by a resume after its reaper died. So the state is read again too,
    about every ``STATE_RECHECK_S`` (less often where a huge state takes long to read). While no
    scheduler runs, nothing will record such an attempt: then the log and the process are looked at
    as ``status`` does (``observe``), and an attempt ``status`` shows as lost or never started ends
    the follow without waiting for a resume (``seen`` says which, for the message).
    """

    def __init__(self, paths: SweepPaths, exp: Experiment, number: int) -> None:
        self.paths, self.exp_id, self.number = paths, exp.id, number
        self.log = str(paths.log(exp, number))
        attempt = next((a for a in exp.attempts if a.number == number), None)
        self.host = attempt.host if attempt is not None else ""
        self.seen: Observed | None = None
        self._recheck_at = time.monotonic()  # the first look skips the state: the caller just read it
        self._state_read = False

    def __call__(self) -> bool:
        if exit_outcome(self.log) is not None:
            return True
        began = time.monotonic()
        if began < self._recheck_at:
            return False
        try:
            if self._state_read and attempt_ended(store.load(self.paths), self.exp_id, self.number):
                return True
        except PbtrunError:  # unreadable for now (being repaired?): the attempt may still run
            return not self.paths.state.exists()
        finally:
            self._state_read = True
            took_s = time.monotonic() - began
            self._recheck_at = time.monotonic() + max(STATE_RECHECK_S, 10 * took_s)
        return self._over_unrecorded()

    def _over_unrecorded(self) -> bool:
        """Whether, with no scheduler to record it, the attempt is known to be over (lost or never
        started: an exit record would have been seen above)."""
        if locks.holder_alive(self.paths) is not None:  # a scheduler records what becomes of it
            return False
        seen = observe(self.log, same_host=self.host in ("", hostname()))
        if seen.state in (SEEN_LOST, SEEN_NOT_STARTED):
            self.seen = seen
            return True
        return False


def unrecorded_end(paths: SweepPaths, exp: Experiment, number: int, seen: Observed) -> str:
    """What ``logs -f`` says when it stops following an attempt no scheduler has recorded as over."""
    where = shlex.quote(str(paths.dir))
    again = " (with --retry-lost to run it again)" if seen.state == SEEN_LOST else ""
    return (
        f"{exp.name}, attempt {number}: {observed_word(seen)} (no scheduler runs the sweep). "
        f"Record it with: pbtrun resume {where}{again}"
    )


def copy(log: Path, out: BinaryIO, follow: bool, ended: Callable[[], bool], lines: int | None = None) -> None:
    """Print the log (with ``lines``, only its last ``lines`` lines, as ``tail -n``); with
    ``follow``, keep printing what is appended until ``ended()``, then what was written between
    the last read and the end. Ctrl-C stops it, after flushing what was read."""
    try:
        with open(log, "rb") as f:
            _write_from(f, out, 0 if lines is None else tail_start(f, lines))
            _drain(f, out)
            while follow and not ended():
                time.sleep(FOLLOW_POLL_S)
                _drain(f, out)
            _drain(f, out)
    except FileNotFoundError:
        raise PbtrunError(f"{log}: the log is not there (was the sweep directory cleaned?).") from None
    except KeyboardInterrupt:
        out.flush()
        raise


def tail_start(f: BinaryIO, lines: int) -> int:
    """Where the last ``lines`` lines of ``f`` begin, read backwards from its end (a log may be
    gigabytes). A newline that ends the file ends its last line; it does not begin another."""
    size = f.seek(0, os.SEEK_END)
    end = size
    if size:
        f.seek(size - 1)
        end -= f.read(1) == b"\n"
    found = 0
    while end > 0:
        begin = max(0, end - TAIL_BLOCK_BYTES)
        f.seek(begin)
        block = f.read(end - begin)
        at = len(block)
        while (at := block.rfind(b"\n", 0, at)) >= 0:
            found += 1
            if found == lines:
                return begin + at + 1
        end = begin
    return 0


def _write_from(f: BinaryIO, out: BinaryIO, start: int) -> None:
    """Print ``f`` from offset ``start`` (a line's beginning) up to where it has been read, with
    the records at its top trimmed where they are printed."""
    if start >= RECORDS_BYTES:
        f.seek(start)
        return
    f.seek(0)
    head = f.read(RECORDS_BYTES)
    skipped = head.count(b"\n", 0, start)  # trimming keeps every line, so they are skipped as counted
    parts = _trim_records(head).split(b"\n", skipped)
    out.write(parts[skipped] if len(parts) > skipped else b"")


def _trim_records(head: bytes) -> bytes:
    """The start of a log with its exit and pid records printed without the spaces that pad
    them to their fixed width on disk (where the reaper fills them in place)."""
    trimmed = b""
    for prefix in (EXIT_PREFIX, PID_PREFIX):
        line, newline, rest = head.partition(b"\n")
        if not newline or not line.startswith(prefix):
            break
        trimmed, head = trimmed + line.rstrip(b" ") + newline, rest
    return trimmed + head


def _drain(f: BinaryIO, out: BinaryIO) -> None:
    while chunk := f.read(1 << 16):
        out.write(chunk)
    out.flush()


def failed_tails(paths: SweepPaths, sweep: Sweep, lines: int) -> Iterator[tuple[str, list[str]]]:
    """For every failed experiment: a header line and the last ``lines`` lines of its last log."""
    for exp in sweep.experiments.values():
        last = last_attempt(exp)
        if exp.status != FAILED or last is None:
            continue
        log = paths.dir / last.log
        yield printable(f"== {exp.name}: {status_word(exp)}, {log}"), tail_lines(log, lines)
