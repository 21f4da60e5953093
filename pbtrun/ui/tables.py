"""Rich renderables for ``pbtrun status``: one sweep's experiments, or every sweep of a train dir.

Pure functions of the state: they read no file and return renderables, so the same table serves
a one-shot ``status``, ``status --watch`` (a ``rich.live.Live`` calling them again) and tests (a
recorded console). Colour only repeats what the symbol and the word already say, so the tables
read the same with ``NO_COLOR`` or in a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.progress_bar import ProgressBar
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from pbtrun.printable import printable
from pbtrun.spec.naming import render_value
from pbtrun.state.records import FAILED, RUNNING, SEEN_RUNNING, STATUSES, SUCCEEDED, Experiment, Observed, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.words import (
    STYLES,
    SYMBOLS,
    Filters,
    active_counts,
    duration,
    last_attempt,
    lost_attempts,
    lost_count,
    observed_status,
    observed_word,
    real_attempts,
    resume_hint,
    status_word,
)

PROGRESS_BAR_WIDTH = 16


def status_text(exp: Experiment, seen: Observed | None = None) -> Text:
    """The symbol and the word (``✘ failed (SIGKILL)``), coloured by status; for an experiment the
    state calls running while no scheduler runs, what it really is (``✘ ended (3), not yet recorded``)."""
    if seen is not None:
        status = observed_status(seen)
        return Text(f"{SYMBOLS[status]} {observed_word(seen)}", style=STYLES[status])
    style = "dim" if exp.removed else STYLES[exp.status]
    return Text(f"{SYMBOLS[exp.status]} {status_word(exp)}", style=style)


def counts_text(counts: Mapping[str, int], symbols: bool = False, running_word: str = RUNNING) -> Text:
    """``3 succeeded, 1 failed`` (or ``✔ 3 ✘ 1`` where space is short), each in its colour;
    ``running_word`` says what the running count is (``recorded as running``, with no scheduler)."""
    text = Text()
    for status in STATUSES:
        if not counts.get(status):
            continue
        if text:
            text.append(" " if symbols else ", ")
        words = running_word if status == RUNNING else status
        word = f"{SYMBOLS[status]} {counts[status]}" if symbols else f"{counts[status]} {words}"
        text.append(word, style=STYLES[status])
    return text or Text("no experiments", style="dim")


# --------------------------------------------------------------------------- one sweep


def sweep_table(
    paths: SweepPaths,
    sweep: Sweep,
    now: float,
    filters: Filters | None = None,
    *,
    holder: Mapping[str, Any] | None,
    limit: int | None = None,
    observed: Mapping[str, Observed] | None = None,
) -> RenderableType:
    """The experiments ``filters`` selects, then a one-line footer.

    ``holder`` is the running scheduler's record (``locks.holder_alive``), None when no
    scheduler runs; it is required so that no caller shows "resume with" beside a live sweep.
    ``limit`` caps the rows (``--watch`` must fit the terminal; a 100k-row table helps no one)
    and says how many were left out. ``observed`` (by experiment id, from
    ``backends.local.observe``) says what experiments the state calls running really are, when
    no scheduler runs to record it: the caller looks, this function only shows.
    """
    filters = filters or Filters()
    observed = observed or {}
    shown = [(n, e) for n, e in enumerate(sweep.experiments.values()) if filters.match(e)]
    footer = sweep_footer(paths, sweep, holder, shown=len(shown) if filters.active else None, observed=observed)
    if not shown:
        return Group(Text("no experiment matches the filters", style="dim"), footer)
    cut = shown[:limit] if limit is not None else shown
    params = varying_params([e for _, e in cut])
    rows = [_row(n, e, now, observed.get(e.id)) + _param_cells(e, params) for n, e in cut]
    keep = _visible(rows) | set(range(len(_EXPERIMENT_COLUMNS), len(_EXPERIMENT_COLUMNS) + len(params)))
    columns = [c for i, c in enumerate((*_EXPERIMENT_COLUMNS, *_param_columns(params))) if i in keep]
    table = FittedTable(columns, [[cell for i, cell in enumerate(row) if i in keep] for row in rows])
    if len(cut) == len(shown):
        return Group(table, footer)
    more = Text(
        f"… and {len(shown) - len(cut)} more; narrow with --failed, --running, --pending or --grep, "
        "or show them with --all",
        "dim",
    )
    return Group(table, more, footer)


@dataclass(frozen=True)
class Column:
    """A table column. ``drop_rank`` > 0 marks it optional, higher ranks going first when space runs
    out; ``min_width`` marks it shrinkable down to that width, its cells ending in an ellipsis.
    ``extra`` columns go first of all, the last one first, before any column has to shrink."""

    header: str
    justify: JustifyMethod = "left"
    drop_rank: int = 0
    min_width: int | None = None
    extra: bool = False


# ``#`` is the experiment's index in the whole sweep (also under filters), what ``pbtrun logs
# SWEEP N`` takes: a few digits, so it is never dropped.
_EXPERIMENT_COLUMNS = (
    Column("#", "right"),
    Column("EXPERIMENT", min_width=12),
    Column("STATUS"),
    Column("GPU", drop_rank=2),
    Column("ATTEMPTS", "right", drop_rank=3),
    Column("DURATION", "right", drop_rank=1),
)
_ATTEMPTS = 4


def _row(index: int, exp: Experiment, now: float, seen: Observed | None = None) -> list[RenderableType]:
    last = last_attempt(exp)
    gpus = "" if last is None or last.gpus is None else ",".join(map(str, last.gpus))
    took = None if last is None else (last.ended_at or now) - last.started_at
    if seen is not None and last is not None and seen.state != SEEN_RUNNING:  # it is not running on
        took = None if seen.ended_at is None else seen.ended_at - last.started_at
    attempts = len(real_attempts(exp))
    lost = lost_attempts(exp)
    return [
        Text(str(index), style="dim"),
        Text(printable(exp.name), style="dim" if exp.removed else ""),
        status_text(exp, seen),
        Text(gpus),
        Text((f"{attempts} ({lost} lost)" if lost else str(attempts)) if attempts else ""),
        Text(duration(took), style="cyan" if exp.status == RUNNING and seen is None else ""),
    ]


def varying_params(experiments: Sequence[Experiment]) -> dict[str, bool]:
    """The parameters whose values tell these experiments apart (a value that differs, or that
    some of them lack), in the order they first appear; for each, whether every value is a
    number (its column is then right-aligned). A parameter with one value everywhere says
    nothing about which row is which, so it gets no column."""
    values: dict[str, set[str]] = {}
    having: dict[str, int] = {}
    numeric: dict[str, bool] = {}
    for exp in experiments:
        for name, value in exp.spec.params.items():
            values.setdefault(name, set()).add(render_value(value))
            having[name] = having.get(name, 0) + 1
            number = isinstance(value, int | float) and not isinstance(value, bool)
            numeric[name] = numeric.get(name, True) and number
    return {name: numeric[name] for name, seen in values.items() if len(seen) > 1 or having[name] < len(experiments)}


def _param_columns(params: Mapping[str, bool]) -> list[Column]:
    return [Column(printable(name), "right" if number else "left", extra=True) for name, number in params.items()]


def _param_cells(exp: Experiment, params: Mapping[str, bool]) -> list[RenderableType]:
    values = exp.spec.params
    return [Text(printable(render_value(values[name])) if name in values else "") for name in params]


def _visible(rows: Sequence[Sequence[RenderableType]]) -> set[int]:
    """Columns worth showing: not empty in every row; ATTEMPTS only once something was retried
    or lost (``2 (1 lost)``: status shows the attempts a reboot took, not only the last one)."""
    keep = {i for i in range(len(_EXPERIMENT_COLUMNS)) if any(_plain(row[i]) for row in rows)}
    if all(_plain(row[_ATTEMPTS]) in ("", "1") for row in rows):
        keep.discard(_ATTEMPTS)
    return keep | {0, 1, 2}


def _plain(cell: RenderableType) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class FittedTable:
    """A table laid out for the width it is given: optional columns go before names get short.

    Shrinkable columns (the name) take what is left and end in an ellipsis; no cell wraps, so
    every row stays one line and no line is wider than the terminal.
    """

    def __init__(self, columns: Sequence[Column], rows: Sequence[Sequence[RenderableType]]) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = [
            max([cell_len(c.header)] + [_width(console, options, row[i]) for row in self.rows])
            for i, c in enumerate(self.columns)
        ]
        keep = _fit(self.columns, widths, options.max_width)
        table = Table(box=None, pad_edge=False, padding=(0, _GAP, 0, 0), header_style="bold", show_edge=False)
        for i in keep:
            column = self.columns[i]
            # rich narrows only columns that may wrap; the cells themselves never do (_one_line).
            table.add_column(column.header, justify=column.justify, no_wrap=column.min_width is None)
        for row in self.rows:
            table.add_row(*(_one_line(row[i]) for i in keep))
        if console.is_terminal:
            yield table
            return
        # Piped or in a file, the padding that lines the columns up ends each line in spaces
        # (the last column is as wide as its widest cell): left out, so `grep 'running$'` works.
        for line in console.render_lines(table, options, pad=False):
            yield from _rstrip(line)
            yield Segment.line()


def _rstrip(line: list[Segment]) -> list[Segment]:
    """The segments of one line without the spaces at its end."""
    line = list(line)
    while line and not line[-1].text.rstrip(" "):
        line.pop()
    if line:
        last = line[-1]
        line[-1] = Segment(last.text.rstrip(" "), last.style, last.control)
    return line


def _width(console: Console, options: ConsoleOptions, cell: RenderableType) -> int:
    """A cell's natural width; for text (almost every cell) without rich's slower measuring."""
    if isinstance(cell, Text):
        return cell.cell_len
    return Measurement.get(console, options, cell).maximum


def _one_line(cell: RenderableType) -> RenderableType:
    if not isinstance(cell, Text):
        return cell
    cell = cell.copy()
    cell.no_wrap, cell.overflow = True, "ellipsis"
    return cell


def _fit(columns: Sequence[Column], widths: Sequence[int], width: int) -> list[int]:
    """Indices of the columns to show: extra ones are dropped, the last first, until the rest fit
    as wide as they are; then optional ones, highest rank first, until the rest fit with the
    shrinkable ones at their minimum."""
    keep = list(range(len(columns)))

    def needed() -> int:
        return sum(min(widths[i], columns[i].min_width or widths[i]) + _GAP for i in keep) - _GAP

    for i in reversed([i for i, c in enumerate(columns) if c.extra]):
        if sum(widths[k] + _GAP for k in keep) - _GAP <= width:
            break
        keep.remove(i)

    for i in sorted((i for i, c in enumerate(columns) if c.drop_rank), key=lambda i: -columns[i].drop_rank):
        if needed() <= width:
            break
        keep.remove(i)
    return keep


_GAP = 2


def sweep_footer(
    paths: SweepPaths,
    sweep: Sweep,
    holder: Mapping[str, Any] | None,
    shown: int | None = None,
    observed: Mapping[str, Observed] | None = None,
) -> RenderableType:
    """``ant: 12 experiments: 3 succeeded, 1 failed, 8 pending; not running · resume with: pbtrun resume DIR``.

    Without a scheduler, experiments the state calls running are only what the last scheduler
    recorded: they are counted as ``recorded as running``, beside ``no scheduler running``, never
    as ``4 running; not running``. With a scheduler, the footer names it and says nothing of resuming.
    """
    counts = active_counts(sweep)
    total = sum(counts.values())
    noun = "experiment" if total == 1 else "experiments"
    text = Text(f"{printable(sweep.name)}: ")
    text.append(f"{shown} of {total} shown: " if shown is not None else f"{total} {noun}: ")
    recorded = holder is None and counts.get(RUNNING, 0) > 0
    text.append_text(counts_text(counts, running_word="recorded as running" if recorded else "running"))
    removed = len(sweep.experiments) - total
    if removed:
        text.append(f", {removed} removed", style="dim")
    if holder is not None:
        text.append(printable(f"; running (scheduler pid {holder.get('pid')} on {holder.get('host')})"), style="cyan")
        if isinstance(waiting := holder.get("waiting"), str):
            text.append(printable(f"; waiting: {waiting}"), style="yellow")
        return text
    text.append("; no scheduler running" if recorded else "; not running")
    stale = sum(1 for seen in (observed or {}).values() if seen.state != SEEN_RUNNING)
    if stale:
        text.append(f"; {stale} of them have ended, not yet recorded", style="yellow")
    command = resume_hint(paths, counts, lost_count(sweep))
    if command is None:
        return text
    return OneLine(text, Text.assemble("resume with: ", (printable(command), "bold")), " · ")


class OneLine:
    """Two texts on one line when they fit, else on two, so a command is never split mid-line."""

    def __init__(self, head: Text, tail: Text, separator: str) -> None:
        self.head, self.tail, self.separator = head, tail, separator

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        joined = Text.assemble(self.head, self.separator, self.tail)
        if joined.cell_len <= options.max_width:
            yield joined
        else:
            yield self.head
            yield self.tail


# --------------------------------------------------------------------------- a train dir

SweepRow = tuple[Path, Sweep | Mapping[str, Any] | None, Mapping[str, Any] | None, str]


def sweeps_table(train_dir: Path, rows: Sequence[SweepRow], symbols: bool = True) -> RenderableType:
    """One row per sweep of ``train_dir``: name, a progress bar, done/total, counts, whether a
    scheduler runs it; for a train dir without sweeps, the command that starts one.

    Each row is ``(sweep dir, sweep, scheduler holder or None, error)``, where the sweep is a
    loaded :class:`Sweep`, or its small summary (``{"name", "counts"}``, as ``store.read_summary``
    gives it) so a train dir of hundreds of sweeps lists without parsing their states, or None
    when it could not be read (``error`` says why). Counts are symbols (``✔ 3 ✘ 1``) to fit a
    terminal; ``symbols=False`` spells them out for pipes and scripts.
    """
    if not rows:
        return Text(f"no sweeps under {train_dir}. Start one with: pbtrun up SPEC.toml")
    return FittedTable(_SWEEP_COLUMNS, [_sweep_row(*row, symbols=symbols) for row in rows])


_SWEEP_COLUMNS = (
    Column("SWEEP", min_width=8),
    Column("PROGRESS", drop_rank=3),
    Column("DONE", "right"),
    Column("STATUS", drop_rank=1, min_width=12),
    Column("SCHEDULER", drop_rank=2),
)


def _sweep_row(
    path: Path, sweep: Sweep | Mapping[str, Any] | None, holder: Mapping[str, Any] | None, error: str, symbols: bool
) -> list[RenderableType]:
    if sweep is None:
        error_text = Text(printable(error or "unreadable"), style="red")
        return [Text(printable(path.name)), Text(""), Text(""), error_text, Text("")]
    name, counts = (sweep.name, sweep.counts()) if isinstance(sweep, Sweep) else (sweep["name"], sweep["counts"])
    total = sum(counts.values())
    done = counts.get(SUCCEEDED, 0) + counts.get(FAILED, 0)
    bar = ProgressBar(total=max(total, 1), completed=done, width=PROGRESS_BAR_WIDTH)
    running = printable(f"running (pid {holder.get('pid')})") if holder else ""
    scheduler = Text(running, style="cyan") if holder else Text("not running", style="dim")
    return [Text(printable(str(name))), bar, Text(f"{done}/{total}"), counts_text(counts, symbols=symbols), scheduler]
