"""The live view for a terminal (rich): a progress bar, the running experiments with the last
line of their logs, the recent failures; and the end-of-run summary as rich renders it.

Everything else a view needs (the tracker, the plain view, the summary's lines) is in
``progress.py``, which does not load rich: plain output, the common case in scripts and
benchmarks, starts without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pbtrun import render
from pbtrun.progress import (
    Failure,
    Line,
    Running,
    Snapshot,
    Tracker,
    guarded,
    progress_words,
    settings_line,
    summary_lines,
    tail_lines,
)
from pbtrun.render import STYLES, SYMBOLS
from pbtrun.state import FAILED, RUNNING, Experiment, Sweep
from pbtrun.store import SweepPaths
from pbtrun.tables import Column, FittedTable


def summary_renderable(lines: Iterable[Line]) -> RenderableType:
    return Group(
        *(
            Text(line.text, style=line.style, no_wrap=line.truncate, overflow="ellipsis" if line.truncate else "fold")
            for line in lines
        )
    )


# --------------------------------------------------------------------------- the live view


class LiveView:
    """The live display for a terminal: a progress bar over the sweep, one row per running
    experiment with the last line of its log, and the recent failures with their log paths.

    Events only update the :class:`Tracker`; ``rich.live.Live`` renders on its own thread at
    most ``refresh_per_second`` times a second (``auto_refresh=False`` leaves refreshing to
    :meth:`refresh`, for tests). ``renders`` counts the frames built.
    """

    def __init__(
        self,
        paths: SweepPaths,
        console: Console,
        refresh_per_second: float = 2.0,
        *,
        auto_refresh: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths = paths
        self.console = console
        # A closed terminal silences the console (rich then renders nothing more) instead of
        # raising in the scheduler's loop or in rich's refresh thread.
        console.file = guarded(console.file, on_break=lambda: setattr(console, "quiet", True))
        self.refresh_per_second = refresh_per_second
        self.auto_refresh = auto_refresh
        self.clock = clock
        self.tracker = Tracker(paths)
        self.renders = 0
        self.began_at: float | None = None
        self._live: Live | None = None

    def begin(self, sweep: Sweep) -> None:
        self.began_at = self.clock()
        self.tracker.begin(sweep)
        self.console.print(Text(settings_line(self.paths, sweep), style="dim"))
        self._live = Live(
            console=self.console,
            auto_refresh=self.auto_refresh,
            refresh_per_second=self.refresh_per_second,
            transient=True,  # the summary replaces it; the scrollback keeps no stale frame
            get_renderable=self.frame,
        )
        self._live.start(refresh=True)

    def started(self, exp: Experiment, sweep: Sweep) -> None:
        self.tracker.started(exp, sweep)

    def ended(self, exp: Experiment, sweep: Sweep) -> None:
        self.tracker.ended(exp, sweep)

    def message(self, text: str) -> None:
        """Printed above the live display (messages are rare: adoption, stopping, errors)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self.console.print(Text(f"{stamp}  {text}"))

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def close(self) -> None:
        """Stop the live display (idempotent); call it when the scheduler raises, too."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def finish(self, sweep: Sweep, code: int) -> None:
        self.close()
        wall_s = None if self.began_at is None else self.clock() - self.began_at
        self.console.print(summary_renderable(summary_lines(self.paths, sweep, code, wall_s)))

    def frame(self) -> RenderableType:
        """One frame of the live display, sized for the console."""
        self.renders += 1
        snap = self.tracker.snapshot(self.clock())
        parts: list[RenderableType] = [_Header(snap)]
        room = self.console.size.height - 3 - (2 * len(snap.failures) + 1 if snap.failures else 0)
        parts.append(self._running(snap, max(1, room)))
        if snap.failures:
            parts.append(_failures(snap.failures))
        return Group(*parts)

    def _running(self, snap: Snapshot, room: int) -> RenderableType:
        if not snap.running:
            return Text("no experiment running", style="dim")
        shown = snap.running if len(snap.running) <= room else snap.running[: room - 1]
        rows = [_running_row(r, self.clock()) for r in shown]
        gpus = any(r.gpus for r in shown)
        columns = _RUNNING_COLUMNS if gpus else [c for c in _RUNNING_COLUMNS if c.header != "GPU"]
        table = FittedTable(columns, [row if gpus else [row[0], *row[2:]] for row in rows])
        if len(shown) == len(snap.running):
            return table
        return Group(table, Text(f"… and {len(snap.running) - len(shown)} more running", style="dim"))


class _Header:
    """The sweep's name, a progress bar and the progress words on one line; on a narrow terminal
    the words first and the bar under them, so the numbers are never cut."""

    MIN_BAR_WIDTH = 10

    def __init__(self, snap: Snapshot) -> None:
        self.name = Text(snap.name, style="bold", no_wrap=True, overflow="ellipsis")
        self.words = Text(progress_words(snap))
        self.bar = ProgressBar(total=max(snap.total, 1), completed=snap.done)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.name.cell_len + self.words.cell_len + self.MIN_BAR_WIDTH + 2 <= options.max_width:
            grid = Table.grid(padding=(0, 1), expand=True)
            grid.add_column(no_wrap=True)
            grid.add_column(ratio=1)
            grid.add_column(no_wrap=True)
            grid.add_row(self.name, self.bar, self.words)
            yield grid
        else:
            yield Text.assemble(self.name, " ", self.words)
            yield self.bar


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
        Text(r.name),
        Text(gpus),
        Text(render.duration(now - r.started_at), style=STYLES[RUNNING]),
        Text(last[0] if last else "", style="dim"),
    ]


def _failures(failures: Sequence[Failure]) -> RenderableType:
    lines: list[RenderableType] = [Text("recent failures", style="bold red")]
    for f in reversed(failures):
        retry = ", retrying" if f.retrying else ""
        lines.append(
            Text(f"{SYMBOLS[FAILED]} {f.name} {f.word}{retry}", style=STYLES[FAILED], no_wrap=True, overflow="ellipsis")
        )
        lines.append(Text(f"  log: {f.log}", overflow="fold"))
    return Group(*lines)
