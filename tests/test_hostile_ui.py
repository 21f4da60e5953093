"""What a hostile trial found at pbtrun's edges (issue 18, items 5, 6, 7 and 9): the `up`/`up`
race, `logs -f` after a crash, deep nesting, and what reaches the terminal. Real processes,
real files, the real CLI."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Project
from helpers import reaper_of

TIMEOUT = 20


# --------------------------------------------------------------------------- two `up` on a fresh spec


def _start_up(root: Path, project: Project) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbtrun", "up", "sweep.toml", "--plain"],
        cwd=root,
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    project.procs.append(proc)
    return proc


def test_two_up_racing_on_a_fresh_spec_the_loser_exits_3_naming_the_winner(project):
    # The experiment waits for a file the test writes once the loser has exited, so the winner
    # still runs while the loser looks: a finished winner would rightly let the loser run too.
    spec = (
        'name = "race"\ncommand = ["sh", "-c", "while [ ! -e ../go ]; do sleep 0.01; done"]\n'
        'experiment_arg_name = ""\nexperiment_dir_arg_name = ""\n'
        '[[experiments]]\nname = "a"\ngrid = { x = [1] }\n'
    )
    rounds = [project.root / f"round{n}" for n in range(20)]
    for batch in (rounds[:10], rounds[10:]):  # ten races at a time: a few seconds in all
        pairs = []
        for root in batch:
            (root / "run").mkdir(parents=True)
            (root / "run/sweep.toml").write_text(spec)
            pairs.append((root, _start_up(root / "run", project), _start_up(root / "run", project)))
        for root, *both in pairs:
            project.wait_for(lambda both=both: any(p.poll() is not None for p in both), timeout=TIMEOUT)
            (root / "go").touch()
            results = {p.pid: (p.wait(timeout=TIMEOUT), p.stderr.read()) for p in both}
            codes = sorted(code for code, _ in results.values())
            assert codes in ([0, 3], [1, 3]), results
            winner = next(pid for pid, (code, _) in results.items() if code != 3)
            loser_says = next(err for code, err in results.values() if code == 3)
            assert "no sweep here" not in loser_says
            assert f"its scheduler (pid {winner} on " in loser_says, loser_says


# --------------------------------------------------------------------------- logs -f after a crash


def _crash_leaving_the_experiment(project: Project, runner: subprocess.Popen) -> int:
    """SIGKILL the scheduler and its reaper (as the OOM killer or a lost session may); the
    experiment runs on. Its pid."""
    project.wait_for(project.records, timeout=TIMEOUT)
    os.kill(runner.pid, signal.SIGKILL)
    os.kill(reaper_of(project.root / "train_dir/lf/logs"), signal.SIGKILL)
    runner.wait(timeout=TIMEOUT)
    return project.records()[0]["pid"]


def test_logs_follow_ends_when_the_experiment_ends_after_its_scheduler_and_reaper_died(project, recorder):
    project.spec(f'name = "lf"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\nlist = [{{ sleep = 60 }}]\n')
    pid = _crash_leaving_the_experiment(project, project.start("up", "sweep.toml", "--plain"))
    follow = project.start("logs", "train_dir/lf", "00_a", "-f")
    ready, _, _ = select.select([follow.stdout], [], [], TIMEOUT)
    assert ready and follow.stdout.readline().startswith("# pbtrun exit: -")
    time.sleep(1.5)  # past a look at the state and the process: it still runs, so it follows
    assert follow.poll() is None
    observed = project.status_json("lf")["experiments"][0]["observed"]
    assert observed["state"] == "running"
    os.killpg(pid, signal.SIGKILL)  # the experiment ends, and no reaper is left to record how
    began = time.monotonic()
    follow.wait(timeout=TIMEOUT)
    out, err = follow.stdout.read(), follow.stderr.read()  # what the first readline left buffered, too
    assert follow.returncode == 0, err
    assert time.monotonic() - began < 5  # without any resume
    assert project.status_json("lf")["experiments"][0]["observed"]["state"] == "lost"  # the same truth
    assert "00_a_sle_60, attempt 1: lost, not yet recorded" in err
    assert "pbtrun resume" in err and "--retry-lost" in err
    assert "# pbtrun: 00_a_sle_60, attempt 1" in out
