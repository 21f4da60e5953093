"""Failures that should stop a sweep early: ``max_failures`` / ``--max-failures``, and the
warning when the first experiments of a run all fail the same way within seconds."""

from __future__ import annotations

from conftest import Project


def _sweep(project: Project, recorder: str, group: str, scheduler: str) -> None:
    project.spec(
        f"""
        name = "h"
        command = "{recorder}"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        [scheduler]
        {scheduler}
        [[experiments]]
        {group}
        """
    )


def _failing_sweep(project: Project, recorder: str, scheduler: str = "", count: int = 8) -> None:
    group = f'name = "bad"\ngrid = {{ seed = {list(range(count))}, exit = [3], sleep = [0.05] }}'
    _sweep(project, recorder, group, f"max_parallel = 2\n{scheduler}")


def test_max_failures_stops_launching_and_lets_the_running_finish(project, recorder):
    _failing_sweep(project, recorder, "max_failures = 3")
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed (max_failures = 3): pbtrun launches nothing more" in result.stdout
    assert "--retry-failed" in result.stdout
    counts = project.status_json("h")["counts"]
    # Two run at once: the third failure may find the fourth already running, never more.
    assert counts["failed"] in (3, 4) and counts["pending"] == 8 - counts["failed"], counts
    assert len([r for r in project.records() if r["event"] == "start"]) == counts["failed"]


def test_the_flag_wins_over_the_spec_and_resume_takes_it_too(project, recorder):
    _failing_sweep(project, recorder, "max_failures = 100")
    result = project.run("up", "sweep.toml", "--plain", "--max-failures", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    first = project.status_json("h")["counts"]["failed"]
    assert first in (1, 2)
    again = project.run("resume", "train_dir/h", "--plain", "--max-failures", "2")
    assert again.returncode == 1, again.stdout + again.stderr
    # Counted per run: resume stops after two more, not at once because of the earlier ones.
    assert project.status_json("h")["counts"]["failed"] - first in (2, 3)
    assert project.state("h")["sweep"]["settings"]["max_failures"] == 2


def test_max_failures_must_be_at_least_one(project, recorder):
    _failing_sweep(project, recorder, "max_failures = 0")
    result = project.run("up", "sweep.toml")
    assert result.returncode == 2
    assert "sweep.toml, line" in result.stderr and "max_failures" in result.stderr
    assert "Traceback" not in result.stderr
    flag = project.run("up", "sweep.toml", "--max-failures", "0")
    assert flag.returncode == 2 and "Traceback" not in flag.stderr


def test_without_a_limit_every_experiment_runs(project, recorder):
    _failing_sweep(project, recorder, count=4)
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 1
    assert project.status_json("h")["counts"]["failed"] == 4


def test_the_first_experiments_failing_alike_raise_a_warning_once(project, recorder):
    _failing_sweep(project, recorder, count=6)
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 1
    warnings = [line for line in result.stdout.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stdout
    assert "the first 3 experiments all failed (3) within 60 s" in warnings[0]
    assert "pbtrun logs " in warnings[0] and "train_dir/h --failed" in warnings[0]
    assert "max_failures = N" in warnings[0]  # not set: suggested


def test_no_warning_when_one_of_the_first_succeeds(project, recorder):
    group = 'name = "mixed"\nlist = [{ exit = 3 }, { exit = 0 }, { exit = 3 }, { exit = 3 }]'
    _sweep(project, recorder, group, "max_parallel = 1")
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 1
    assert "WARNING" not in result.stdout
