"""Finding and printing experiments' logs (``pbtrun logs``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pbtrun import render, store
from pbtrun.backends.local import exit_outcome
from pbtrun.backends.reaper import EXIT_PREFIX, PID_PREFIX, RECORDS_BYTES
from pbtrun.errors import PbtrunError
from pbtrun.progress import tail_lines
from pbtrun.state import FAILED, Experiment, Sweep
from pbtrun.store import SweepPaths

FOLLOW_POLL_S = 0.2  # `logs -f` is a person watching a file; a short poll is the honest tool here
STATE_RECHECK_S = 1.0  # how often `logs -f` reads the state again to see whether the attempt ended


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
        listing = ", ".join(e.name for e in matches[:10]) + (", ..." if len(matches) > 10 else "")
        raise PbtrunError(
            f"{key!r} matches {len(matches)} experiments ({listing}); give more of the name, or its index "
            "(the # column of `pbtrun status`)."
        )
    raise PbtrunError(
        f"no experiment {key!r} in sweep {sweep.name!r}: give a name, a unique prefix of one, or an index "
        f"from 0 to {len(experiments) - 1} (the # column of `pbtrun status`)."
    )


def attempt_number(exp: Experiment, attempt: int | None) -> int:
    numbers = [a.number for a in render.real_attempts(exp)]
    if not numbers:
        raise PbtrunError(f"{exp.name} has not run yet, so it has no log.")
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


class EndWatch:
    """Tells ``logs -f`` when the attempt it follows is over.

    The exit record at the top of the log says so at once, but an attempt can end without one:
    lost to a reboot, or recorded by a resume after its reaper died. So the state is read again too,
    about every ``STATE_RECHECK_S`` (less often where a huge state takes long to read).
    """

    def __init__(self, paths: SweepPaths, exp: Experiment, number: int) -> None:
        self.paths, self.exp_id, self.number = paths, exp.id, number
        self.log = str(paths.log(exp, number))
        self._recheck_at = time.monotonic() + STATE_RECHECK_S

    def __call__(self) -> bool:
        if exit_outcome(self.log) is not None:
            return True
        began = time.monotonic()
        if began < self._recheck_at:
            return False
        try:
            sweep = store.load(self.paths)
        except PbtrunError:  # unreadable for now (being repaired?): the attempt may still run
            return not self.paths.state.exists()
        finally:
            took_s = time.monotonic() - began
            self._recheck_at = time.monotonic() + max(STATE_RECHECK_S, 10 * took_s)
        return attempt_ended(sweep, self.exp_id, self.number)


def copy(log: Path, out: BinaryIO, follow: bool, ended: Callable[[], bool]) -> None:
    """Print the log; with ``follow``, keep printing what is appended until ``ended()``, then
    what was written between the last read and the end."""
    try:
        with open(log, "rb") as f:
            out.write(_trim_records(f.read(RECORDS_BYTES)))
            _drain(f, out)
            while follow and not ended():
                time.sleep(FOLLOW_POLL_S)
                _drain(f, out)
            _drain(f, out)
    except FileNotFoundError:
        raise PbtrunError(f"{log}: the log is not there (was the sweep directory cleaned?).") from None
    except KeyboardInterrupt:
        out.flush()


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
        last = render.last_attempt(exp)
        if exp.status != FAILED or last is None:
            continue
        log = paths.dir / last.log
        yield f"== {exp.name}: {render.status_word(exp)}, {log}", tail_lines(log, lines)
