"""Finding and printing experiments' logs (``pbtrun logs``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pbtrun import render
from pbtrun.errors import PbtrunError
from pbtrun.live import tail_lines
from pbtrun.state import FAILED, Experiment, Sweep
from pbtrun.store import SweepPaths

FOLLOW_POLL_S = 0.2  # `logs -f` is a person watching a file; a short poll is the honest tool here


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


def log_path(paths: SweepPaths, exp: Experiment, attempt: int | None) -> Path:
    return paths.log(exp, attempt_number(exp, attempt))


def copy(log: Path, out: BinaryIO, follow: bool, until: Path) -> None:
    """Print the log; with ``follow``, keep printing until the attempt's exit record appears."""
    try:
        with open(log, "rb") as f:
            while True:
                chunk = f.read(1 << 16)
                if chunk:
                    out.write(chunk)
                    continue
                out.flush()
                if not follow or os.path.exists(until):
                    return
                time.sleep(FOLLOW_POLL_S)
    except FileNotFoundError:
        raise PbtrunError(f"{log}: the log is not there (was the sweep directory cleaned?).") from None
    except KeyboardInterrupt:
        out.flush()


def failed_tails(paths: SweepPaths, sweep: Sweep, lines: int) -> Iterator[tuple[str, list[str]]]:
    """For every failed experiment: a header line and the last ``lines`` lines of its last log."""
    for exp in sweep.experiments.values():
        last = render.last_attempt(exp)
        if exp.status != FAILED or last is None:
            continue
        log = paths.dir / last.log
        yield f"== {exp.name}: {render.status_word(exp)}, {log}", tail_lines(log, lines)
