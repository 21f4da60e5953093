"""``pbtrun status`` tables rendered into recorded rich consoles, asserted on as a person reads them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from helpers import colour_codes
from rich.console import Console, RenderableType

from pbtrun.spec.model import ExperimentSpec
from pbtrun.state.records import (
    EXITED,
    FAILED,
    INTERRUPTED,
    LOST,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    Attempt,
    Experiment,
    Settings,
    Sweep,
)
from pbtrun.state.store import SweepPaths
from pbtrun.ui.tables import sweep_table, sweeps_table
from pbtrun.ui.words import Filters, resume_hint

NOW = 10_000.0
LONG = "00_ant_pbt_see_1111_lr_0.001_pbt.policy_idx_7_very_long_shorthand_names_that_never_end"


def attempt(number: int = 1, took: float | None = 10.0, rc: int | None = 0, **kw: Any) -> Attempt:
    start = kw.pop("start", NOW - 500)
    ended = None if took is None else start + took
    outcome = kw.pop("outcome", None if took is None else EXITED)
    return Attempt(number, start, f"logs/x.{number}.log", ended_at=ended, returncode=rc, outcome=outcome, **kw)


def experiment(n: int, name: str, status: str = PENDING, *attempts: Attempt, removed: bool = False) -> Experiment:
    return Experiment(
        ExperimentSpec(id=f"id{n}", group="ant", index=n, name=name, argv=("python", "train.py"), env={}, params={}),
        status=status,
        attempts=attempts,
        removed=removed,
    )


def with_params(exp: Experiment, params: dict[str, Any]) -> Experiment:
    return exp._replace(spec=exp.spec._replace(params=params))


def make_sweep(*experiments: Experiment) -> Sweep:
    sweep = Sweep("ant", "/work", "train_dir", 0.0, Settings(gpus=(0, 1), max_parallel=4, experiments_per_gpu=2))
    for exp in experiments:
        sweep.update(exp)
    return sweep


def mixed_sweep() -> Sweep:
    return make_sweep(
        experiment(0, "00_ant_ok", SUCCEEDED, attempt(took=100.0, gpus=(0,))),
        experiment(1, "01_ant_rc", FAILED, attempt(took=3.0, rc=3, gpus=(1,))),
        experiment(2, "02_ant_kill", FAILED, attempt(1, 2.0, -9, gpus=(1,)), attempt(2, 4.0, -9, gpus=(0,))),
        experiment(3, "03_ant_run", RUNNING, attempt(took=None, rc=None, start=NOW - 100, gpus=(0,))),
        experiment(4, "04_ant_wait", PENDING),
        experiment(5, "05_ant_lost", INTERRUPTED, attempt(took=50.0, rc=None, outcome=LOST, gpus=(1,))),
        experiment(6, "06_ant_slow", FAILED, attempt(took=3 * 3600.0, rc=-15, outcome=TIMED_OUT, gpus=(1,))),
    )


def show(renderable: RenderableType, width: int = 80, **console: Any) -> tuple[str, str]:
    """Render as a terminal of ``width`` columns would show it: (the text, the raw bytes written)."""
    console.setdefault("force_terminal", True)
    console.setdefault("color_system", "truecolor")
    out = io.StringIO()
    rich = Console(file=out, record=True, width=width, height=50, **console)
    rich.print(renderable)
    return rich.export_text(), out.getvalue()


def lines_of(text: str) -> list[str]:
    return text.splitlines()


PATHS = SweepPaths(Path("train_dir/my sweep"))
TRAIN_DIR = Path("train_dir")


# --------------------------------------------------------------------------- one sweep


def test_columns_symbols_and_status_words() -> None:
    text, raw = show(sweep_table(PATHS, mixed_sweep(), NOW, holder=None))
    header = lines_of(text)[0].split()
    assert header == ["#", "EXPERIMENT", "STATUS", "GPU", "ATTEMPTS", "DURATION"]
    rows = {line.split()[1]: line for line in lines_of(text)[1:8]}
    assert [row.split()[0] for row in rows.values()] == [str(n) for n in range(7)]  # what `logs SWEEP N` takes
    assert "✔ succeeded" in rows["00_ant_ok"] and "1m40s" in rows["00_ant_ok"]
    assert "✘ failed (3)" in rows["01_ant_rc"]
    assert "✘ failed (SIGKILL)" in rows["02_ant_kill"] and rows["02_ant_kill"].split()[-2] == "2"  # attempts
    assert "● running" in rows["03_ant_run"] and "1m40s" in rows["03_ant_run"]  # elapsed so far
    assert "○ pending" in rows["04_ant_wait"]
    assert "⏸ lost" in rows["05_ant_lost"]
    assert "✘ failed (timed out)" in rows["06_ant_slow"] and "3h00m" in rows["06_ant_slow"]
    assert "32m" in raw and "31m" in raw  # green and red on a colour terminal


def test_an_attempt_lost_earlier_shows_in_the_attempts_column() -> None:
    sweep = make_sweep(
        experiment(0, "00_a", SUCCEEDED, attempt(took=5.0)),
        experiment(1, "01_a", RUNNING, attempt(1, 50.0, None, outcome=LOST), attempt(2, None, None, start=NOW - 10)),
    )
    text, _ = show(sweep_table(PATHS, sweep, NOW, holder={"pid": 1, "host": "h"}))
    assert lines_of(text)[0].split() == ["#", "EXPERIMENT", "STATUS", "ATTEMPTS", "DURATION"]
    rows = lines_of(text)[1:3]
    assert "● running" in rows[1] and "2 (1 lost)" in rows[1] and "10.0s" in rows[1], text
    assert rows[0].split()[-2] == "1"


def test_what_running_experiments_really_are_when_no_scheduler_runs() -> None:
    from pbtrun.state.records import Observed

    running = [attempt(took=None, rc=None, start=NOW - 100, gpus=(0,)) for _ in range(5)]
    sweep = make_sweep(*(experiment(n, f"0{n}_ant", RUNNING, running[n]) for n in range(5)))
    observed = {
        "id0": Observed("ended", 3, NOW - 40),
        "id1": Observed("ended", -9, NOW - 30),
        "id2": Observed("running"),
        "id3": Observed("lost"),
        "id4": Observed("not_started"),
    }
    text, _ = show(sweep_table(PATHS, sweep, NOW, holder=None, observed=observed), width=160)
    rows = {line.split()[1]: line for line in lines_of(text)[1:6]}
    assert "✘ ended (3), not yet recorded" in rows["00_ant"] and rows["00_ant"].endswith("1m00s")
    assert "✘ ended (SIGKILL), not yet recorded" in rows["01_ant"] and rows["01_ant"].endswith("1m10s")
    assert "● running (no scheduler)" in rows["02_ant"] and rows["02_ant"].endswith("1m40s")
    assert "✘ lost, not yet recorded" in rows["03_ant"] and not rows["03_ant"].endswith("s")
    assert "○ never started, not yet recorded" in rows["04_ant"]
    footer = lines_of(text)[-1]
    assert "5 recorded as running; no scheduler running; 4 of them have ended, not yet recorded" in footer
    assert "not running" not in footer  # it read "5 running; not running"
    assert "resume with: pbtrun resume 'train_dir/my sweep'" in footer


def test_columns_empty_in_every_row_are_hidden() -> None:
    pending = make_sweep(experiment(0, "00_a"), experiment(1, "01_a"))
    text, _ = show(sweep_table(PATHS, pending, NOW, holder=None))
    assert lines_of(text)[0].split() == ["#", "EXPERIMENT", "STATUS"]

    unpinned = make_sweep(experiment(0, "00_a", SUCCEEDED, attempt(took=5.0)), experiment(1, "01_a"))
    text, _ = show(sweep_table(PATHS, unpinned, NOW, holder=None))
    assert lines_of(text)[0].split() == ["#", "EXPERIMENT", "STATUS", "DURATION"]  # no GPU, one attempt each


def test_hidden_columns_follow_the_rows_shown() -> None:
    only_pending = Filters(pending=True, grep="wait")
    text, _ = show(sweep_table(PATHS, mixed_sweep(), NOW, only_pending, holder=None))
    assert lines_of(text)[0].split() == ["#", "EXPERIMENT", "STATUS"]
    assert "04_ant_wait" in text and "01_ant_rc" not in text
    assert lines_of(text)[1].split()[:2] == ["4", "04_ant_wait"]  # its index in the sweep, not among those shown


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(failed=True), {"01_ant_rc", "02_ant_kill", "06_ant_slow"}),
        (Filters(running=True), {"03_ant_run"}),
        (Filters(pending=True), {"04_ant_wait", "05_ant_lost"}),  # interrupted runs next too
        (Filters(failed=True, running=True), {"01_ant_rc", "02_ant_kill", "06_ant_slow", "03_ant_run"}),
        (Filters(grep="KILL"), {"02_ant_kill"}),
        (Filters(failed=True, grep="slow"), {"06_ant_slow"}),
        (Filters(running=True, grep="slow"), set()),
        (Filters(), {f"0{i}_ant_{s}" for i, s in enumerate(["ok", "rc", "kill", "run", "wait", "lost", "slow"])}),
    ],
)
def test_filters_combine(filters: Filters, expected: set[str]) -> None:
    text, _ = show(sweep_table(PATHS, mixed_sweep(), NOW, filters, holder=None))
    shown = {line.split()[1] for line in lines_of(text) if "_ant_" in line}
    assert shown == expected
    if not expected:
        assert "no experiment matches the filters" in text
    if filters.active:
        assert f"{len(expected)} of 7 shown" in text


def test_footer_counts_and_the_exact_resume_command() -> None:
    text, _ = show(sweep_table(PATHS, mixed_sweep(), NOW, holder=None))
    footer = " ".join(line.strip() for line in lines_of(text)[8:])
    assert "7 experiments: 1 pending, 1 recorded as running, 1 succeeded, 3 failed, 1 interrupted" in footer
    assert "no scheduler running" in footer
    assert lines_of(text)[-1] == "resume with: pbtrun resume 'train_dir/my sweep'"  # quoted: the path has a space


def test_footer_while_a_scheduler_runs_names_it_and_no_resume() -> None:
    text, _ = show(sweep_table(PATHS, mixed_sweep(), NOW, holder={"pid": 4242, "host": "gpu7"}))
    assert "running (scheduler pid 4242 on gpu7)" in text
    assert "resume" not in text


def test_footer_when_nothing_is_left_or_only_failures() -> None:
    done = make_sweep(experiment(0, "00_a", SUCCEEDED, attempt()))
    text, _ = show(sweep_table(PATHS, done, NOW, holder=None))
    assert "1 experiment: 1 succeeded; not running" in text and "resume" not in text
    failed = make_sweep(experiment(0, "00_a", SUCCEEDED, attempt()), experiment(1, "01_a", FAILED, attempt(rc=1)))
    text, _ = show(sweep_table(PATHS, failed, NOW, holder=None))
    assert "resume with: pbtrun resume 'train_dir/my sweep' --retry-failed" in text


def test_removed_experiments_are_listed_but_not_counted() -> None:
    sweep = make_sweep(
        experiment(0, "00_a", SUCCEEDED, attempt()), experiment(1, "01_old", FAILED, attempt(rc=1), removed=True)
    )
    text, _ = show(sweep_table(PATHS, sweep, NOW, holder=None))
    assert "01_old" in text and "1 experiment: 1 succeeded, 1 removed" in text
    assert resume_hint(PATHS, {SUCCEEDED: 1}) is None


def test_long_names_are_cut_with_an_ellipsis_at_80_columns() -> None:
    sweep = make_sweep(
        experiment(0, LONG, FAILED, attempt(rc=-9, gpus=(0,))),
        experiment(1, LONG.replace("00_", "01_"), SUCCEEDED, attempt(1, rc=1, gpus=(1,)), attempt(2, gpus=(1,))),
    )
    text, _ = show(sweep_table(PATHS, sweep, NOW, holder=None))
    assert all(len(line) <= 80 for line in lines_of(text))
    assert "00_ant_pbt_see_1111_lr" in text and "…" in text
    assert "✘ failed (SIGKILL)" in text  # the status is never cut for the name
    assert lines_of(text)[0].split() == ["#", "EXPERIMENT", "STATUS", "GPU", "ATTEMPTS", "DURATION"]


def test_a_narrow_terminal_drops_optional_columns_before_the_status() -> None:
    text, _ = show(sweep_table(PATHS, mixed_sweep(), NOW, holder=None), width=40)
    assert all(len(line) <= 40 for line in lines_of(text))
    assert lines_of(text)[0].split() == ["#", "EXPERIMENT", "STATUS"]
    assert "✘ failed (timed out)" in text and "00_ant_ok" in text


def test_parameter_columns_go_before_any_column_shrinks_the_last_first() -> None:
    runs = [(0, "00_ant_lr_0.1", 0.1, "adam_with_a_long_name"), (1, "01_ant_lr_0.03", 0.03, "sgd")]
    sweep = make_sweep(
        *(
            with_params(experiment(n, name, SUCCEEDED, attempt(gpus=(n,))), {"seed": 1, "lr": lr, "optimizer": opt})
            for n, name, lr, opt in runs
        )
    )
    wide, _ = show(sweep_table(PATHS, sweep, NOW, holder=None), width=120)
    assert lines_of(wide)[0].split() == ["#", "EXPERIMENT", "STATUS", "GPU", "DURATION", "lr", "optimizer"]  # no seed
    assert lines_of(wide)[1].split()[-2:] == ["0.1", "adam_with_a_long_name"]
    assert lines_of(wide)[2].split()[-2:] == ["0.03", "sgd"]
    fits, _ = show(sweep_table(PATHS, sweep, NOW, holder=None), width=60)
    assert lines_of(fits)[0].split() == ["#", "EXPERIMENT", "STATUS", "GPU", "DURATION", "lr"]  # the last went first
    narrow, _ = show(sweep_table(PATHS, sweep, NOW, holder=None), width=46)
    assert lines_of(narrow)[0].split() == ["#", "EXPERIMENT", "STATUS", "GPU", "DURATION"]
    assert "01_ant_lr_0.03" in narrow and "…" not in narrow  # no name is cut while a parameter is shown
    assert all(len(line) <= 46 for line in lines_of(narrow))


def test_no_escape_codes_when_not_a_terminal() -> None:
    _text, raw = show(sweep_table(PATHS, mixed_sweep(), NOW, holder=None), force_terminal=False, color_system="auto")
    assert "\x1b" not in raw
    assert "✘ failed (3)" in raw  # symbols and words carry the meaning without colour


def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    _, raw = show(sweep_table(PATHS, mixed_sweep(), NOW, holder=None), color_system="standard")
    assert colour_codes(raw) == []
    assert "✔ succeeded" in raw


# --------------------------------------------------------------------------- a train dir


def test_sweeps_table_rows_progress_and_scheduler() -> None:
    other = make_sweep(*(experiment(i, f"{i:02d}_b", SUCCEEDED, attempt()) for i in range(4)))
    other.name = "bee"
    rows = [
        (Path("train_dir/ant"), mixed_sweep(), None, ""),
        (Path("train_dir/broken"), None, None, "unreadable: pbtrun.json is not valid JSON (line 3)"),
        (Path("train_dir/bee"), other, {"pid": 77, "host": "h"}, ""),
    ]
    text, raw = show(sweeps_table(TRAIN_DIR, rows))
    lines = lines_of(text)
    assert lines[0].split() == ["SWEEP", "PROGRESS", "DONE", "STATUS", "SCHEDULER"]
    assert all(len(line) <= 80 for line in lines)
    ant, broken, bee = lines[1:4]
    assert ant.startswith("ant") and "4/7" in ant and "not running" in ant and "━" in ant
    assert "○ 1 ● 1 ✔ 1 ✘ 3 ⏸ 1" in ant
    assert broken.startswith("broken") and "unreadable: pbtrun.json" in broken
    assert "4/4" in bee and "running (pid 77)" in bee and "✔ 4" in bee
    assert colour_codes(raw)


def test_sweeps_table_on_a_narrow_terminal_keeps_name_and_done() -> None:
    text, _ = show(sweeps_table(TRAIN_DIR, [(Path("train_dir/ant"), mixed_sweep(), None, "")]), width=30)
    assert all(len(line) <= 30 for line in lines_of(text))
    assert "ant" in text and "4/7" in text


def test_an_empty_train_dir_names_the_next_command() -> None:
    text, _ = show(sweeps_table(TRAIN_DIR, []))
    assert text.strip() == "no sweeps under train_dir. Start one with: pbtrun up SPEC.toml"


def test_limit_caps_the_rows_and_says_how_many_are_left_out() -> None:
    text, _ = show(sweep_table(PATHS, mixed_sweep(), NOW, holder=None, limit=3))
    assert [line.split()[1] for line in lines_of(text)[1:4]] == ["00_ant_ok", "01_ant_rc", "02_ant_kill"]
    assert "… and 4 more; narrow with --failed, --running, --pending or --grep" in text
    assert "03_ant_run" not in text
    assert "7 experiments:" in text  # the footer still counts them all


def test_sweeps_table_takes_a_summary_instead_of_a_whole_state() -> None:
    summary = {"name": "big", "counts": {"pending": 90_000, "running": 8, "succeeded": 9_990, "failed": 2}}
    text, _ = show(sweeps_table(TRAIN_DIR, [(Path("train_dir/big"), summary, {"pid": 5}, "")]))
    row = lines_of(text)[1]
    assert row.startswith("big") and "9992/100000" in row and "running (pid 5)" in row


def test_status_word_keeps_removed_for_every_status() -> None:
    from pbtrun.state.records import EXITED, LOST
    from pbtrun.ui.words import status_word

    failed = experiment(0, "a", FAILED, Attempt(1, 0.0, "l", ended_at=1.0, returncode=1, outcome=EXITED), removed=True)
    lost = experiment(1, "b", INTERRUPTED, Attempt(1, 0.0, "l", ended_at=1.0, outcome=LOST), removed=True)
    assert status_word(failed) == "failed (1) (removed)"
    assert status_word(lost) == "lost (removed)"


def test_piped_tables_end_their_lines_without_padding() -> None:
    rows = [(Path("train_dir/ant"), mixed_sweep(), {"pid": 77}, ""), (Path("train_dir/b"), mixed_sweep(), None, "")]
    for table in (sweeps_table(TRAIN_DIR, rows, symbols=False), sweep_table(PATHS, mixed_sweep(), NOW, holder=None)):
        _, raw = show(table, width=1000, force_terminal=False, color_system=None)
        lines = lines_of(raw)
        assert all(line == line.rstrip() for line in lines), lines  # "SCHEDULER  " and "not running      "
        in_terminal, _ = show(table, width=1000, color_system=None)
        assert [line.rstrip() for line in lines_of(in_terminal)] == lines  # the same table otherwise
    piped = show(sweeps_table(TRAIN_DIR, rows, symbols=False), force_terminal=False, color_system=None)[1]
    assert lines_of(piped)[2].endswith("  not running")
