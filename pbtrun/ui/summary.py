"""The lines a run begins and ends with, the same in both views: the sweep's settings first;
at the end, the summary (counts, experiment time in all and per GPU, the slowest experiments,
every failed one with the end of its log, and the command that continues the sweep).

Plain text with a style for terminals (:class:`Line`): the plain view prints the text, the live
view renders it with rich.
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

from pbtrun.state.records import FAILED, INTERRUPTED, PENDING, RUNNING, SUCCEEDED, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.logtail import tail_lines
from pbtrun.ui.words import (
    STYLES,
    SYMBOLS,
    active_counts,
    duration,
    last_attempt,
    lost_count,
    real_attempts,
    resume_hint,
    status_word,
)

SLOWEST = 3
TAIL_LINES = 5
FAILED_SHOWN = 10


def settings_line(paths: SweepPaths, sweep: Sweep) -> str:
    """The line a run begins with: the sweep, its experiments and how many will run, how, where."""
    s = sweep.settings
    pinned = s.experiments_per_gpu > 0
    gpus = f"GPUs {','.join(map(str, s.gpus))} x {s.experiments_per_gpu}" if pinned else "GPUs not pinned"
    if pinned and s.placement == "memory" and s.experiments_per_gpu >= s.max_parallel:
        gpus = f"GPUs {','.join(map(str, s.gpus))}"  # no count per GPU: memory and max_parallel bound them
    if pinned and s.gpus_per_experiment > 1:
        gpus += f", {s.gpus_per_experiment} per experiment"
    if pinned and s.placement == "memory":
        least = f" (at least {s.min_free_memory_gb:g} GB)" if s.min_free_memory_gb else ""
        gpus += f", by free memory{least}"
    if pinned and s.exclude_busy_gpus:
        gpus += ", busy GPUs skipped"
    return (
        f"sweep {sweep.name}: {_count(len(sweep.experiments), 'experiment')}, {len(sweep.runnable())} to run; "
        f"max_parallel {s.max_parallel}, {gpus}; dir {paths.dir}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Line(NamedTuple):
    """One line of the summary: plain text, with a style for terminals.

    ``truncate`` lines (log output) end in an ellipsis where they are too long; the others
    (paths, commands) wrap, so they can still be copied whole.
    """

    text: str
    style: str = ""
    truncate: bool = False


def summary_lines(paths: SweepPaths, sweep: Sweep, code: int, wall_s: float | None = None) -> list[Line]:
    """The end-of-run summary: counts, experiment time in all and per GPU, the slowest
    experiments, every failed one with the end of its log, and the command that continues."""
    counts = active_counts(sweep)
    lines = [_verdict(sweep, counts, code, wall_s)]
    lines += _time_lines(sweep)
    lines += _failed_lines(paths, sweep)
    lost = lost_count(sweep)
    if lost:
        lines.append(
            Line(
                f"{lost} lost: pbtrun cannot know how they ended (the machine or their processes went "
                "without an exit record); they may have succeeded, so they run again only with --retry-lost",
                "yellow",
            )
        )
    command = resume_hint(paths, counts, lost)
    if command is not None:
        lines.append(Line(f"resume with: {command}", "bold"))
    return lines


def _verdict(sweep: Sweep, counts: dict[str, int], code: int, wall_s: float | None) -> Line:
    how = {0: "finished", 1: "finished with failures", 130: "stopped"}.get(code, f"ended (exit code {code})")
    if code in (0, 130) and counts[RUNNING] and sweep.backend != "local":
        how = "left to the cluster"  # detached: its jobs run on, recorded
    after = f" after {duration(wall_s)}" if wall_s is not None else ""
    parts = [f"{counts[s]} {s}" for s in (SUCCEEDED, FAILED, INTERRUPTED)]
    parts += [f"{counts[s]} {s}" for s in (RUNNING, PENDING) if counts[s]]
    style = "green" if code == 0 else "red" if code == 1 else "yellow"
    return Line(f"sweep {sweep.name} {how}{after}: {', '.join(parts)}", f"bold {style}")


def _time_lines(sweep: Sweep) -> list[Line]:
    total_s = 0.0
    per_gpu: dict[int, float] = {}
    slowest: list[tuple[float, str]] = []
    for exp in sweep.experiments.values():
        for attempt in real_attempts(exp):
            took = attempt.duration_s or 0.0
            total_s += took
            for gpu in attempt.gpus or ():
                per_gpu[gpu] = per_gpu.get(gpu, 0.0) + took
        last = last_attempt(exp)
        if exp.status == SUCCEEDED and last is not None and last.duration_s is not None:
            slowest.append((last.duration_s, exp.name))
    if not total_s:
        return []
    lines = [Line(f"experiment time: {duration(total_s)} in all attempts")]
    if per_gpu:
        gpus = ", ".join(f"GPU {g} {duration(s)}" for g, s in sorted(per_gpu.items()))
        lines.append(Line(f"per GPU: {gpus}"))
    top = sorted(slowest, reverse=True)[:SLOWEST]
    if top:
        lines.append(Line("slowest: " + ", ".join(f"{name} ({duration(s)})" for s, name in top)))
    return lines


def _failed_lines(paths: SweepPaths, sweep: Sweep) -> list[Line]:
    failed = [e for e in sweep.experiments.values() if e.status == FAILED and not e.removed]
    lines: list[Line] = []
    for exp in failed[:FAILED_SHOWN]:
        last = last_attempt(exp)
        log = paths.dir / last.log if last is not None else None
        took = f" after {duration(last.duration_s)}" if last is not None and last.duration_s else ""
        lines.append(Line(f"{SYMBOLS[FAILED]} {exp.name} {status_word(exp)}{took}", STYLES[FAILED]))
        if log is not None:
            lines.append(Line(f"  log: {log}"))
            lines += [Line(f"  | {text}", "dim", truncate=True) for text in tail_lines(log, TAIL_LINES)]
    if len(failed) > FAILED_SHOWN:
        where = shlex.quote(str(paths.dir))
        lines.append(Line(f"... and {len(failed) - FAILED_SHOWN} more failed: pbtrun status {where} --failed"))
    return lines
