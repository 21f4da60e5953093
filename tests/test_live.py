"""The live view, the plain view and the end-of-run summary, driven by real events and rendered
into recorded rich consoles (or a string for plain lines), with real log files in ``tmp_path``."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import colour_codes
from rich.console import Console

from pbtrun.backends import logrecords
from pbtrun.spec.model import ExperimentSpec
from pbtrun.state.records import EXITED, FAILED, PENDING, RUNNING, SUCCEEDED, Attempt, Experiment, Settings, Sweep
from pbtrun.state.store import SweepPaths
from pbtrun.ui import plain
from pbtrun.ui.live import LiveView
from pbtrun.ui.logtail import tail_lines
from pbtrun.ui.plain import FLUSH_EVERY_S, PlainView
from pbtrun.ui.summary import summary_lines
from pbtrun.ui.views import make_view

T0 = 1_700_000_000.0
QUIET = 1 / 3600  # frames per second: rich's refresh thread draws none while a test runs, only at start and stop
LONG = "00_ant_pbt_see_1111_lr_0.001_pbt.policy_idx_7_very_long_shorthand_names_that_never_end"


class Clock:
    """A fake clock the test moves by hand, so elapsed times and ETAs are exact."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Run:
    """Plays the scheduler: changes the sweep as it would and reports each change to the view."""

    def __init__(self, root: Path, names: list[str], settings: Settings | None = None) -> None:
        self.paths = SweepPaths(root / "train_dir" / "ant")
        self.paths.logs.mkdir(parents=True)
        self.clock = Clock()
        settings = settings or Settings(gpus=(0, 1), max_parallel=4, experiments_per_gpu=2)
        self.sweep = Sweep("ant", str(root), "train_dir", T0, settings)
        for n, name in enumerate(names):
            self.sweep.update(
                Experiment(ExperimentSpec(name, "ant", n, name, argv=("python", "t.py"), env={}, params={}))
            )
        self.view: Any = None

    def start(self, name: str, gpu: int | None = None, log: str = "") -> None:
        exp = self.sweep.experiments[name]
        number = len(exp.attempts) + 1
        attempt = Attempt(number, self.clock.now, f"logs/{name}.{number}.log", None if gpu is None else (gpu,))
        (self.paths.dir / attempt.log).write_text(log)
        exp = exp.to(RUNNING, attempt)
        self.sweep.update(exp)
        self.view.started(exp, self.sweep)

    def end(self, name: str, rc: int = 0, log: str | None = None, retry: bool = False) -> None:
        exp = self.sweep.experiments[name]
        last = exp.last._replace(ended_at=self.clock.now, returncode=rc, outcome=EXITED)
        if log is not None:
            (self.paths.dir / last.log).write_text(log)
        exp = exp.to(SUCCEEDED if rc == 0 else FAILED, last)
        if retry:
            exp = exp.to(PENDING)
        self.sweep.update(exp)
        self.view.ended(exp, self.sweep)

    def log_path(self, name: str, number: int = 1) -> str:
        return str(self.paths.dir / f"logs/{name}.{number}.log")


def recorded(width: int = 80, height: int = 40, **kw: Any) -> tuple[Console, io.StringIO]:
    kw.setdefault("force_terminal", True)
    kw.setdefault("color_system", "truecolor")
    out = io.StringIO()
    return Console(file=out, record=True, width=width, height=height, **kw), out


def frame_text(view: LiveView, width: int = 80, height: int = 40) -> str:
    """One frame of the live view as a terminal of that size shows it."""
    console, _ = recorded(width, height)
    console.print(view.frame())
    return console.export_text()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    names = [LONG, *(f"{i:02d}_ant" for i in range(1, 8))]
    r = Run(tmp_path, names)
    yield r
    if isinstance(r.view, LiveView):
        r.view.close()  # never leave stdout redirected if a test fails mid-run


def live(run: Run, width: int = 80, height: int = 40, **kw: Any) -> tuple[LiveView, Console, io.StringIO]:
    console, out = recorded(width, height)
    run.view = LiveView(run.paths, console, QUIET, clock=run.clock, **kw)
    run.view.begin(run.sweep)
    return run.view, console, out


def count_frames(view: LiveView, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list that counts the frames rich's Live builds of ``view``, from its ``begin`` on."""
    built = [0]
    frame = view.frame

    def counted() -> Any:
        built[0] += 1
        return frame()

    monkeypatch.setattr(view, "frame", counted)
    return built


def play_some(run: Run) -> None:
    """Four start; after 30 s one succeeds and one fails; two more start; 10 s pass."""
    for name, gpu in ((LONG, 0), ("01_ant", 1), ("02_ant", 0), ("03_ant", 1)):
        run.start(name, gpu, log="epoch 1\nepoch 2 reward=12.5\n")
    run.clock.now += 30
    run.end("01_ant", 0)
    run.end("02_ant", 3, log="Traceback (most recent call last):\nValueError: lr must be positive\n")
    run.start("04_ant", 1, log="")
    run.start("05_ant", 0, log="loading\rstep 10/100\rstep 20/100")
    run.clock.now += 10


# --------------------------------------------------------------------------- the live view


def test_live_view_shows_progress_running_rows_and_failures(run: Run) -> None:
    view, console, _ = live(run)
    play_some(run)
    text = frame_text(view)
    lines = text.splitlines()
    # 30 s per experiment: two still wait, and every slot is busy until one overdue run ends.
    assert lines[0].startswith("ant ━") and lines[0].endswith("2/8 done, 4 running, 1 failed, ETA 30.0s")
    assert lines[1].split() == ["RUNNING", "GPU", "ELAPSED", "LAST", "LOG", "LINE"]
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    assert rows["03_ant"][1:] == ["1", "40.0s", "epoch", "2", "reward=12.5"]  # the last line of its log
    assert rows["04_ant"][1:] == ["1", "10.0s"]  # nothing logged yet
    assert rows["05_ant"][-1] == "20/100"  # a progress bar's carriage returns end lines too
    assert "recent failures" in text and "✘ 02_ant failed (3)" in text
    assert f"log: {run.log_path('02_ant')}" in text.replace("\n", "")
    assert "01_ant" not in text  # ended, and not a failure
    assert all(len(line) <= 80 for line in lines)
    view.close()  # rich's Live draws a last frame as it stops
    assert "2/8 done" in console.export_text()


def eta_words(view: LiveView) -> str:
    header = frame_text(view).splitlines()[0]
    return header[header.index("done") :]


def test_eta_after_a_quick_early_failure_is_not_the_failure_s_duration(tmp_path: Path) -> None:
    run = Run(tmp_path, [f"{i:02d}_ant" for i in range(6)])  # 4 slots
    view, _, _ = live(run)
    try:
        for i in range(4):
            run.start(f"{i:02d}_ant", i % 2)
        run.clock.now += 0.1
        run.end("00_ant", 1)  # a crash at once: no run has succeeded yet
        run.start("04_ant", 0)
        run.clock.now += 2
        # Not 0.1 s per experiment: the running ones have lasted 2 s already, and one still waits.
        assert eta_words(view) == "done, 4 running, 1 failed, ETA 2.1s"
        run.clock.now += 10
        assert eta_words(view) == "done, 4 running, 1 failed, ETA 12.1s"  # a lower bound that grows
        run.end("01_ant", 0)  # 12.1 s: from now on the estimate is the succeeded runs' mean
        run.start("05_ant", 1)
        assert eta_words(view) == "done, 4 running, 1 failed, ETA 12.1s"  # 05_ant runs a whole one
    finally:
        view.close()


def test_eta_ignores_failures_once_runs_succeed_and_never_shows_zero(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a", "b", "c", "d"], Settings(max_parallel=2))
    view, _, _ = live(run)
    try:
        run.start("a")
        run.start("b")
        run.clock.now += 10
        run.end("a", 0)
        run.start("c")
        run.clock.now += 90
        run.end("b", 1)
        run.start("d")
        # 10 s per run that works (not 55 s with the 100 s failure): d needs 10 s more.
        assert eta_words(view) == "done, 2 running, 1 failed, ETA 10.0s"
        run.clock.now += 20
        assert eta_words(view) == "done, 2 running, 1 failed"  # both outlast the estimate: no figure is honest
    finally:
        view.close()


def test_live_view_truncates_to_the_terminal_width(run: Run) -> None:
    view, _, _ = live(run)
    play_some(run)
    run.start("06_ant", 1, log="x" * 500 + "\n")
    for width in (80, 50, 40):
        text = frame_text(view, width)
        assert all(len(line) <= width for line in text.splitlines()), text
        assert "…" in text
    wide = frame_text(view, 80)
    assert "00_ant_pbt_see_1111" in wide and "2/8 done" in wide
    narrow = frame_text(view, 40)
    assert "2/8 done, 5 running" in narrow  # the numbers go on their own line, never cut


def test_live_view_fits_many_running_experiments_in_the_terminal_height(tmp_path: Path) -> None:
    run = Run(tmp_path, [f"{i:02d}_ant" for i in range(30)], Settings(max_parallel=30))
    view, _, _ = live(run, height=15)
    try:
        for i in range(30):
            run.start(f"{i:02d}_ant", log=f"step {i}\n")
        text = frame_text(view, height=15)
        assert len(text.splitlines()) <= 15
        assert re.search(r"… and \d+ more running", text)
        assert "GPU" not in text.splitlines()[1]  # nothing pinned: no GPU column
    finally:
        view.close()


COLUMNS = ["RUNNING", "GPU", "ELAPSED", "LAST", "LOG", "LINE"]


def test_the_column_header_follows_a_stacked_top_line(tmp_path: Path) -> None:
    # The bar, on a line of its own, used to leave the line open: the column header was drawn
    # on it and cut off.
    run = Run(tmp_path, [f"{i:02d}_ant" for i in range(8)])
    run.sweep.name = "a_sweep_name_of_fifty_one_characters_" + "x" * 14
    view, _, _ = live(run)
    try:
        play_some_short(run)
        wide = frame_text(view, 80).splitlines()
        assert wide[0] == run.sweep.name  # on its own line, whole
        assert wide[1].startswith("━") and wide[1].endswith("2/8 done, 4 running, 1 failed, ETA 30.0s")
        assert wide[2].split() == COLUMNS
        narrow = frame_text(view, 40).splitlines()
        assert narrow[0] == run.sweep.name[:39] + "…"  # shortened, never folded
        assert narrow[1] == "2/8 done, 4 running, 1 failed, ETA 30.0s"
        assert set(narrow[2]) <= set("━╺╸ ")
        assert narrow[3].split() == COLUMNS
    finally:
        view.close()


def play_some_short(run: Run) -> None:
    """As ``play_some`` with short names: four start, one succeeds and one fails 30 s later."""
    for name, gpu in (("00_ant", 0), ("01_ant", 1), ("02_ant", 0), ("03_ant", 1)):
        run.start(name, gpu, log="epoch 1\n")
    run.clock.now += 30
    run.end("01_ant", 0)
    run.end("02_ant", 3)
    run.start("04_ant", 1)
    run.start("05_ant", 0)
    run.clock.now += 10


def test_the_column_header_and_no_experiment_running_at_40_columns(run: Run) -> None:
    view, _, _ = live(run)
    play_some(run)
    lines = frame_text(view, 40).splitlines()
    assert lines[0] == "ant"
    assert lines[3].split() == COLUMNS
    for name in (LONG, "03_ant", "04_ant", "05_ant"):
        run.end(name, 1)
    lines = frame_text(view, 40).splitlines()
    assert "no experiment running" in lines  # a line of its own, not after the bar


def test_a_small_terminal_gets_a_frame_that_fits(tmp_path: Path) -> None:
    names = [f"{i:02d}_ant" for i in range(12)]
    run = Run(tmp_path, names, Settings(gpus=(0, 1), max_parallel=9))
    view, _, _ = live(run, width=40, height=16)
    try:
        for i, name in enumerate(names[:9]):
            run.start(name, i % 2, log="step 1\n")
        run.clock.now += 10
        for name in names[:3]:
            run.end(name, 1)
        # At 40 columns the top line stacks to 4 lines and each log path folds over 3: a frame
        # laid out by assuming 1 and 2 was 22 lines, and the terminal cut its bottom off.
        lines = frame_text(view, 40, 16).splitlines()
        assert len(lines) <= 15  # and a line for the cursor
        assert lines[1:3] == ["3/12 done, 6 running, 3 failed,", "ETA 10.0s"]  # broken between phrases
        assert lines[4].split() == COLUMNS
        assert [line.split()[0] for line in lines[5:11]] == names[3:9]  # every running one
        assert lines[11:] == ["recent failures", "✘ 02_ant failed (1)", "✘ 01_ant failed (1)", "✘ 00_ant failed (1)"]
        # Tall enough, the failures keep their log paths.
        tall = frame_text(view, 40, 40)
        assert f"log: {run.log_path('02_ant')}" in tall.replace("\n", "")
        # Shorter: the failures lose their paths, rows are cut to three lines, the oldest failures go.
        for height in (14, 12, 10, 9):
            lines = frame_text(view, 40, height).splitlines()
            assert len(lines) <= height - 1, (height, lines)
            assert lines[4].split() == COLUMNS
        lines = frame_text(view, 40, 12).splitlines()
        assert [line.split()[0] for line in lines[5:7]] == ["03_ant", "04_ant"]
        assert lines[7:] == ["… and 4 more running", "recent failures", "✘ 02_ant failed (1)", "✘ 01_ant failed (1)"]
    finally:
        view.close()


def test_events_do_not_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"{i:04d}_ant" for i in range(1000)]
    run = Run(tmp_path, names, Settings(max_parallel=1000))
    console, _ = recorded()
    view = run.view = LiveView(run.paths, console, QUIET, clock=run.clock)
    frames = count_frames(view, monkeypatch)
    view.begin(run.sweep)
    try:
        before = frames[0]
        for name in names:
            run.start(name)
        for name in names:
            run.end(name, 0)
        assert frames[0] == before  # 2000 events, not one frame
    finally:
        view.close()
    assert frames[0] == before + 1  # the last one, as the display stops
    assert "1000/1000 done" in console.export_text()


def test_auto_refresh_renders_at_most_refresh_per_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"{i:04d}_ant" for i in range(1000)]
    run = Run(tmp_path, names, Settings(max_parallel=1000))
    console, _ = recorded()
    view = LiveView(run.paths, console)  # rich's real refresh thread, at the real rate
    assert view.refresh_per_second == 2.0
    frames = count_frames(view, monkeypatch)
    run.view = view
    began = time.monotonic()
    view.begin(run.sweep)
    try:
        for name in names:
            run.start(name)
        for name in names:
            run.end(name, 0)
        time.sleep(0.3)
        elapsed_s = time.monotonic() - began
    finally:
        view.close()
    # Live builds one frame when created and one when started; then 2 per second, plus one to stop.
    assert frames[0] <= 3 + 2 * elapsed_s + 1


def test_why_experiments_wait_shows_under_the_header_while_it_lasts(run: Run) -> None:
    view, _, _ = live(run)
    play_some(run)
    view.waiting("no GPU with 20 GB free")
    lines = frame_text(view).splitlines()
    assert lines[0].startswith("ant ━") and lines[1] == "waiting: no GPU with 20 GB free"
    assert lines[2].split()[0] == "RUNNING"
    view.waiting(None)
    assert "waiting" not in frame_text(view)


def test_plain_view_says_once_why_experiments_wait(run: Run) -> None:
    out = io.StringIO()
    run.view = PlainView(run.paths, out, clock=run.clock)
    run.view.begin(run.sweep)
    run.view.waiting("no GPU with 20 GB free")
    run.view.waiting(None)
    run.view.close()
    lines = [line for line in out.getvalue().splitlines() if "waiting" in line]
    assert len(lines) == 1 and lines[0].split("  ", 1)[1].startswith("waiting: no GPU with 20 GB free [")


def test_messages_print_above_the_live_display(run: Run) -> None:
    view, console, _ = live(run)
    view.message("adopted 01_ant (still running, pid 123)")
    assert re.search(r"\d\d:\d\d:\d\d  adopted 01_ant", console.export_text())


def test_the_first_experiments_failing_alike_are_shown_prominently_once(run: Run) -> None:
    _, console, _ = live(run)
    for name in ("01_ant", "02_ant", "03_ant", "04_ant"):
        run.start(name, 0, log="")
    run.clock.now += 2
    for name in ("01_ant", "02_ant", "03_ant"):
        run.end(name, 2, log="usage: train.py\ntrain.py: error: unrecognized arguments: --experiment=01_ant\n")
    run.end("04_ant", 2, log="")
    styled = console.export_text(styles=True, clear=False)
    text = console.export_text()
    assert text.count("⚠ the first 3 experiments all failed (2) within 60 s") == 1
    assert "unrecognized arguments: --experiment=01_ant" in text
    assert "\x1b[1;31m⚠" in styled  # bold red


def test_finish_stops_the_display_and_prints_the_summary(run: Run) -> None:
    view, console, out = live(run)
    play_some(run)
    for name in (LONG, "03_ant", "04_ant", "05_ant"):
        run.end(name, 0)
    view.finish(run.sweep, 1)
    assert view._live is None
    text = console.export_text()
    summary = text[text.index("sweep ant finished with failures") :]
    assert "sweep ant finished with failures after 40.0s: 5 succeeded, 1 failed, 0 interrupted, 2 pending" in (
        " ".join(line.strip() for line in summary.splitlines())
    )
    assert "✘ 02_ant failed (3) after 30.0s" in summary
    assert "| ValueError: lr must be positive" in summary
    assert f"resume with: pbtrun resume {run.paths.dir}" in summary.replace("\n", "")
    assert "\x1b[?25h" in out.getvalue()  # the cursor is shown again


def test_close_is_idempotent_and_safe_before_begin(run: Run) -> None:
    console, _ = recorded()
    view = LiveView(run.paths, console, QUIET)
    view.close()
    run.view = view
    view.begin(run.sweep)
    view.close()
    view.close()


def test_no_color_live_view(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    view, console, out = live(run)
    play_some(run)
    view.finish(run.sweep, 1)  # the display's last frame, then the summary
    assert console.is_terminal
    assert colour_codes(out.getvalue()) == []
    assert "✘ 02_ant failed (3)" in out.getvalue()


def test_colours_without_no_color(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    view, _, out = live(run)
    play_some(run)
    view.finish(run.sweep, 1)
    assert colour_codes(out.getvalue())


# --------------------------------------------------------------------------- the summary


def test_summary_numbers(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a", "b", "c", "d", "e", "f", "g"])
    run.view = PlainView(run.paths, io.StringIO(), clock=run.clock)
    for name, gpu, took, rc in (("a", 0, 100, 0), ("b", 1, 50, 0), ("c", 0, 30, 0), ("d", 1, 10, 0), ("e", 0, 5, 2)):
        run.start(name, gpu)
        run.clock.now += took
        run.end(name, rc, log="".join(f"line {i}\n" for i in range(1, 8)))
    run.start("f", 1)
    run.clock.now += 7
    exp = run.sweep.experiments["f"]
    stopped = exp.last._replace(ended_at=run.clock.now, returncode=-2, outcome="stopped")
    run.sweep.update(exp.to("interrupted", stopped))
    lines = [line.text for line in summary_lines(run.paths, run.sweep, 130, wall_s=3600)]
    assert lines[0] == "sweep ant stopped after 1h00m: 4 succeeded, 1 failed, 1 interrupted, 1 pending"
    assert lines[1] == "experiment time: 3m22s in all attempts"  # 100+50+30+10+5+7
    assert lines[2] == "per GPU: GPU 0 2m15s, GPU 1 1m07s"
    assert lines[3] == "slowest: a (1m40s), b (50.0s), c (30.0s)"
    assert lines[4] == "✘ e failed (2) after 5.0s"
    assert lines[5] == f"  log: {run.log_path('e')}"
    assert lines[6:11] == [f"  | line {i}" for i in range(3, 8)]  # the last five lines
    assert lines[11] == f"resume with: pbtrun resume {run.paths.dir}"
    assert len(lines) == 12


def test_summary_when_all_succeeded_has_no_resume_command(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a"], Settings(max_parallel=1))
    run.view = PlainView(run.paths, io.StringIO(), clock=run.clock)
    run.start("a")
    run.clock.now += 2
    run.end("a", 0)
    lines = [line.text for line in summary_lines(run.paths, run.sweep, 0)]
    assert lines[0] == "sweep ant finished: 1 succeeded, 0 failed, 0 interrupted"
    assert not any("per GPU" in line or "resume" in line for line in lines)


def test_summary_caps_the_failures_shown(tmp_path: Path) -> None:
    names = [f"{i:02d}_ant" for i in range(13)]
    run = Run(tmp_path, names, Settings(max_parallel=13))
    run.view = PlainView(run.paths, io.StringIO(), clock=run.clock)
    for name in names:
        run.start(name)
        run.end(name, 1, log="boom\n")
    lines = [line.text for line in summary_lines(run.paths, run.sweep, 1)]
    assert sum(line.startswith("✘") for line in lines) == 10
    assert f"... and 3 more failed: pbtrun status {run.paths.dir} --failed" in lines
    assert lines[-1] == f"resume with: pbtrun resume {run.paths.dir} --retry-failed"


# --------------------------------------------------------------------------- plain lines


def test_plain_view_prints_timestamped_lines_without_escape_codes(run: Run) -> None:
    out = io.StringIO()
    run.view = PlainView(run.paths, out, clock=run.clock)
    run.view.begin(run.sweep)
    play_some(run)
    run.end("03_ant", 1, retry=True)
    run.view.message("stopping 4 running experiment(s) gracefully")
    run.view.finish(run.sweep, 130)
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert all(re.match(r"(\d\d:\d\d:\d\d|\s{8})  ", line) for line in lines), text
    assert "sweep ant: 8 experiments, 8 to run; max_parallel 4, GPUs 0,1 x 2" in lines[0]
    assert any(line.endswith(f"started   {LONG} on GPU 0 [0/8 done, 1 running]") for line in lines)
    failed = next(line for line in lines if "FAILED (3)" in line)
    assert f"02_ant after 30.0s, log: {run.log_path('02_ant')} [2/8 done, 2 running, 1 failed, ETA" in failed
    assert any("03_ant after 40.0s, retrying (attempt 2)" in line for line in lines)
    assert any(line.endswith("stopping 4 running experiment(s) gracefully") for line in lines)
    assert any("sweep ant stopped after 40.0s" in line for line in lines)
    assert any(line.endswith("| ValueError: lr must be positive") for line in lines)


# --------------------------------------------------------------------------- choosing a view


def test_make_view_chooses_by_terminal(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(make_view(run.paths, None, io.StringIO()), PlainView)
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            assert isinstance(make_view(run.paths, None, tty), LiveView)
            assert isinstance(make_view(run.paths, True, tty), PlainView)  # --plain
            monkeypatch.setenv("TERM", "dumb")
            assert isinstance(make_view(run.paths, None, tty), PlainView)
        assert isinstance(make_view(run.paths, False, io.StringIO()), LiveView)
    finally:
        os.close(master)


# --------------------------------------------------------------------------- reading logs


def test_tail_reads_only_the_end_of_a_huge_log(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    with open(log, "wb") as f:
        f.seek(4 * 1024**3)  # a sparse 4 GiB file: reading it whole would take all the test's time and memory
        f.write(b"end of an earlier line\n\x1b[32mepoch 99\x1b[0m\tloss=0.1\n\nDONE\r\n")
    started = time.monotonic()
    assert tail_lines(log, 2) == ["epoch 99 loss=0.1", "DONE"]
    assert time.monotonic() - started < 0.5


def test_tail_of_missing_and_empty_logs(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nope.log", 3) == []
    (tmp_path / "empty.log").write_text("")
    assert tail_lines(tmp_path / "empty.log", 3) == []
    (tmp_path / "short.log").write_text("one\ntwo")
    assert tail_lines(tmp_path / "short.log", 5) == ["one", "two"]


HEADER = logrecords.records(b'{"ended_at": 1.0, "pid": 7, "returncode": 0}', b'{"pid": 7}').decode() + (
    "# pbtrun: 00_ant, attempt 1, started 2026-01-01 00:00:00 on gpu7\n"
    "# cwd: /work\n# gpus: 0\n# argv: python train.py --lr=0.1\n"
)


def test_tail_leaves_out_pbtrun_s_header_but_not_the_program_s_own_hash_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(HEADER)
    assert tail_lines(log, 5) == []  # nothing printed yet
    log.write_text(HEADER + "# argv: the program's own line\nTraceback\nValueError: lr\n")
    assert tail_lines(log, 5) == ["# argv: the program's own line", "Traceback", "ValueError: lr"]
    log.write_text("# pbtrun: notes\n# cwd: x\nboom\n")  # not the whole header: every line is the program's
    assert tail_lines(log, 5) == ["# pbtrun: notes", "# cwd: x", "boom"]
    log.write_text(HEADER.replace("# gpus: 0\n", "") + "boom\n")
    assert tail_lines(log, 2) == ["# argv: python train.py --lr=0.1", "boom"]


def test_tail_of_a_long_log_with_a_header(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(HEADER + "".join(f"step {i}\n" for i in range(5000)))
    assert tail_lines(log, 3) == ["step 4997", "step 4998", "step 4999"]
    log.write_text(HEADER + "x" * 100 + "\nlast\n")  # the read starts on a line boundary: that line is whole
    assert tail_lines(log, 2) == ["x" * 100, "last"]


def test_summary_and_running_rows_show_the_program_s_lines_not_the_header(run: Run) -> None:
    view, _, _ = live(run)
    run.start("01_ant", 0, log=HEADER)
    assert frame_text(view).splitlines()[2].split() == ["01_ant", "0", "0.0s"]  # no "# argv: ..." as its last line
    run.clock.now += 1
    run.end("01_ant", 2, log=HEADER + "cannot open data.csv\n")
    lines = [line.text for line in summary_lines(run.paths, run.sweep, 1)]
    failed = lines.index("✘ 01_ant failed (2) after 1.0s")
    assert lines[failed + 1 : failed + 3] == [f"  log: {run.log_path('01_ant')}", "  | cannot open data.csv"]
    assert not any(line.startswith("  | # ") for line in lines)


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_plain_view_flushes_a_burst_once_and_the_last_lines_soon(tmp_path: Path) -> None:
    names = [f"{i:04d}_ant" for i in range(500)]
    run = Run(tmp_path, names, Settings(max_parallel=500))
    out = CountingStream()
    run.view = PlainView(run.paths, out, clock=run.clock)
    run.view.begin(run.sweep)
    burst_started = time.monotonic()
    for name in names:
        run.start(name)
        run.end(name, 0)
    burst_s = time.monotonic() - burst_started
    assert out.flushes <= 2 + burst_s / FLUSH_EVERY_S  # 1000 lines, not 1000 flushes
    pending, before = run.view._due is not None, out.flushes
    deadline = time.monotonic() + 5
    while run.view._due is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.view._due is None
    assert out.flushes == before + pending  # the thread flushed the burst's tail without waiting for an event
    run.view.finish(run.sweep, 0)
    assert (
        out.getvalue()
        .splitlines()[-1]
        .endswith("sweep ant finished after 0.0s: 500 succeeded, 0 failed, 0 interrupted")
    )


def test_plain_view_flushes_each_bursts_tail_with_one_thread_and_every_line_after_close(tmp_path, monkeypatch):
    monkeypatch.setattr(plain, "FLUSH_EVERY_S", 0.15)
    run = Run(tmp_path, ["a", "b"], Settings(max_parallel=2))
    out = CountingStream()
    run.view = PlainView(run.paths, out, clock=run.clock)
    run.view.begin(run.sweep)  # flushed at once: nothing was flushed before
    threads = set()
    for burst in range(2):
        before = out.flushes
        run.view.message(f"burst {burst}")  # within FLUSH_EVERY_S of the last flush: left to the thread
        assert run.view._due is not None and out.flushes == before
        threads.add(run.view._flusher)
        deadline = time.monotonic() + 5
        while run.view._due is not None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert out.flushes == before + 1 and out.getvalue().endswith(f"burst {burst}\n")
    assert len(threads) == 1  # started once, woken for each burst
    run.view.close()
    run.view._flusher.join(timeout=5)
    assert not run.view._flusher.is_alive()
    before = out.flushes
    run.view.message("after close")
    assert out.flushes == before + 1


def test_plain_view_counts_one_experiment_in_the_singular(project) -> None:
    project.spec('name = "one"\ncommand = "true"\n[[experiments]]\nname = "a"\n')
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sweep one: 1 experiment, 1 to run;" in result.stdout, result.stdout
