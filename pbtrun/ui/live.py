"""The live view for a terminal (rich): a progress bar, the running experiments with the last
line of their logs, the recent failures; and the end-of-run summary as rich renders it.

What it shares with the plain view (the tracker, the summary's lines) does not load rich:
plain output, the common case in scripts and benchmarks, starts without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pbtrun.printable import printable
from pbtrun.state.records import FAILED, RUNNING, Experiment, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui.logtail import tail_lines
from pbtrun.ui.output import guarded
from pbtrun.ui.summary import Line, settings_line, summary_lines
from pbtrun.ui.tables import Column, FittedTable
from pbtrun.ui.tracker import Failure, Running, Snapshot, Tracker, progress_words
from pbtrun.ui.words import STYLES, SYMBOLS, duration

REFRESH_PER_SECOND = 2.0  # redrawn in place at most twice a second (docs/cli.md)


def _summary(lines: Iterable[Line]) -> RenderableType:
    """The end-of-run summary's lines as rich text: log lines shortened, paths and commands folded whole."""
    return Group(
        *(
            Text(
                printable(line.text),
                style=line.style,
                no_wrap=line.truncate,
                overflow="ellipsis" if line.truncate else "fold",
            )
            for line in lines
        )
    )


# --------------------------------------------------------------------------- the live view


class LiveView:
    """The live display for a terminal: a progress bar over the sweep, one row per running
    experiment with the last line of its log, and the recent failures with their log paths.

    Events only update the :class:`Tracker`; ``rich.live.Live`` renders :meth:`frame` on its own
    thread, at most ``refresh_per_second`` times a second however many events arrive.
    """

    def __init__(
        self,
        paths: SweepPaths,
        console: Console,
        refresh_per_second: float = REFRESH_PER_SECOND,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths = paths
        self.console = console
        # A closed terminal silences the console (rich then renders nothing more) instead of
        # raising in the scheduler's loop or in rich's refresh thread.
        console.file = guarded(console.file, on_break=lambda: setattr(console, "quiet", True))
        self.refresh_per_second = refresh_per_second
        self.clock = clock
        self.tracker = Tracker(paths)
        self.began_at: float | None = None
        self._live: Live | None = None

    def begin(self, sweep: Sweep) -> None:
        self.began_at = self.clock()
        self.tracker.begin(sweep)
        self.console.print(Text(printable(settings_line(self.paths, sweep)), style="dim"))
        self._live = Live(
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=True,  # the summary replaces it; the scrollback keeps no stale frame
            get_renderable=self.frame,
        )
        self._live.start(refresh=True)

    def started(self, exp: Experiment, sweep: Sweep) -> None:
        self.tracker.started(exp, sweep)

    def ended(self, exp: Experiment, sweep: Sweep) -> None:
        self.tracker.ended(exp, sweep)
        if (alarm := self.tracker.take_alarm()) is not None:
            self.console.print(Text(printable(f"⚠ {alarm}"), style="bold red"))

    def message(self, text: str) -> None:
        """Printed above the live display (messages are rare: adoption, stopping, errors)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self.console.print(Text(printable(f"{stamp}  {text}")))

    def waiting(self, reason: str | None) -> None:
        """Shown under the header while it lasts."""
        self.tracker.waiting = reason

    def close(self) -> None:
        """Stop the live display (idempotent); call it when the scheduler raises, too."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def finish(self, sweep: Sweep, code: int) -> None:
        self.close()
        wall_s = None if self.began_at is None else self.clock() - self.began_at
        self.console.print(_summary(summary_lines(self.paths, sweep, code, wall_s)))

    def frame(self) -> RenderableType:
        """One frame of the live display; it lays itself out for the console it is rendered on."""
        return _Frame(self.tracker.snapshot(self.clock()), self.clock())


class _Frame:
    """The header, the running experiments and the recent failures, in at most the terminal's
    height less one line (rich crops a taller frame from the bottom, and the cursor needs a line).

    The header and the failures are measured as rendered at this width, not assumed: on a narrow
    terminal the header stacks to three lines and a failure's log path folds over several. The
    running rows get what is left, but never fewer than ``MIN_ROWS``: before that, the failures
    give up their log paths (the end-of-run summary shows them), then the oldest failures go.
    """

    MIN_ROWS = 3

    def __init__(self, snap: Snapshot, now: float) -> None:
        self.snap, self.now = snap, now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap = self.snap

        def height(renderable: RenderableType) -> int:
            return len(console.render_lines(renderable, options, pad=False))

        header = _Header(snap)
        waiting = Text(printable(f"waiting: {snap.waiting}"), style="yellow") if snap.waiting else None
        left = (options.height or options.size.height) - 1 - height(header) - (height(waiting) if waiting else 0)
        need = 1 + min(len(snap.running), self.MIN_ROWS) if snap.running else 1  # the column header, rows
        section: RenderableType | None = None
        for candidate in _failure_sections(snap.failures):
            used = height(candidate)
            if used + need <= left:
                section, left = candidate, left - used
                break
        yield header
        if waiting is not None:
            yield waiting
        yield _running(snap, self.now, max(2, left))
        if section is not None:
            yield section


def _running(snap: Snapshot, now: float, room: int) -> RenderableType:
    """The running experiments in ``room`` lines: the column header, then rows, the last one
    saying how many more run when they do not all fit."""
    if not snap.running:
        return Text("no experiment running", style="dim")
    rows_room = room - 1
    shown = snap.running if len(snap.running) <= rows_room else snap.running[: max(0, rows_room - 1)]
    rows = [_running_row(r, now) for r in shown]
    gpus = any(r.gpus for r in shown)
    columns = _RUNNING_COLUMNS if gpus else [c for c in _RUNNING_COLUMNS if c.header != "GPU"]
    table = FittedTable(columns, [row if gpus else [row[0], *row[2:]] for row in rows])
    if len(shown) == len(snap.running):
        return table
    return Group(table, Text(f"… and {len(snap.running) - len(shown)} more running", style="dim"))


class _Header:
    """The sweep's name, a progress bar and the progress words on one line. Where they do not
    fit: the name on a line of its own (shortened with an ellipsis, never folded), then the bar
    and the words; on a narrow terminal the words (wrapped between words, so the numbers are
    never cut) and the bar on a line of its own. Every line ends, so what follows starts on a
    line of its own."""

    MIN_BAR_WIDTH = 10

    def __init__(self, snap: Snapshot) -> None:
        self.name = Text(printable(snap.name), style="bold", no_wrap=True, overflow="ellipsis")
        self.words = Text(progress_words(snap.counts, snap.eta_s))
        self.bar = ProgressBar(total=max(snap.total, 1), completed=snap.done)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if self.name.cell_len + 1 + self.words.cell_len + 1 + self.MIN_BAR_WIDTH <= width:
            yield self._grid(self.name, self.bar, self.words)
        elif self.words.cell_len + 1 + self.MIN_BAR_WIDTH <= width:
            yield self.name
            yield self._grid(self.bar, self.words)
        else:
            if self.name.cell_len + 1 + self.words.cell_len <= width:
                yield Text.assemble(self.name, " ", self.words)
            else:
                yield self.name
                yield from _between_phrases(self.words.plain, width)
            yield self._grid(self.bar)

    def _grid(self, *cells: RenderableType) -> Table:
        """One line: the bar takes the width the other cells leave (a grid ends its line; a bare
        ProgressBar does not)."""
        grid = Table.grid(padding=(0, 1), expand=True)
        for cell in cells:
            if cell is self.bar:
                grid.add_column(ratio=1)
            else:
                grid.add_column(no_wrap=True)
        grid.add_row(*cells)
        return grid


def _between_phrases(words: str, width: int) -> Iterator[Text]:
    """``2/8 done, 4 running, ETA 30.0s`` in lines of ``width``, broken only after a comma, so that
    no phrase (``ETA 30.0s``) is split; a phrase wider than the line folds."""
    line = ""
    for phrase in words.split(", "):
        joined = f"{line}, {phrase}" if line else phrase
        if line and len(joined) > width:
            yield Text(f"{line},", overflow="fold")
            joined = phrase
        line = joined
    yield Text(line, overflow="fold")


_RUNNING_COLUMNS = (
    Column("RUNNING", min_width=12),
    Column("GPU", drop_rank=2),
    Column("ELAPSED", "right"),
    Column("LAST LOG LINE", drop_rank=1, min_width=12),
)


def _running_row(r: Running, now: float) -> list[RenderableType]:
    last = tail_lines(r.log, 1)
    gpus = "" if r.gpus is None else ",".join(map(str, r.gpus))
    return [
        Text(printable(r.name)),
        Text(gpus),
        Text(duration(now - r.started_at), style=STYLES[RUNNING]),
        Text(last[0].strip() if last else "", style="dim"),  # one cell: indentation would only take room
    ]


def _failure_sections(failures: Sequence[Failure]) -> Iterator[RenderableType]:
    """The recent failures, most complete first: with their log paths, without, then fewer."""
    if failures:
        yield _failures(failures, logs=True)
    for first in range(len(failures)):
        yield _failures(failures[first:], logs=False)


def _failures(failures: Sequence[Failure], logs: bool) -> RenderableType:
    lines: list[RenderableType] = [Text("recent failures", style="bold red")]
    for f in reversed(failures):
        retry = ", retrying" if f.retrying else ""
        lines.append(
            Text(
                printable(f"{SYMBOLS[FAILED]} {f.name} {f.word}{retry}"),
                style=STYLES[FAILED],
                no_wrap=True,
                overflow="ellipsis",
            )
        )
        if logs:
            lines.append(Text(printable(f"  log: {f.log}"), overflow="fold"))
    return Group(*lines)
