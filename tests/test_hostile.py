"""What a hostile trial found (issue 18): each hole, closed, with the real processes involved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Project

COUNT_ARGS = "import sys, json; print(json.dumps([len(sys.argv) - 1, sum(map(len, sys.argv[1:]))]))"


def _big_argv_spec(project: Project, args: int, size: int) -> None:
    (project.root / "count.py").write_text(COUNT_ARGS)
    command = [sys.executable, "count.py", *[f"{i:06d}" + "x" * (size - 6) for i in range(args)]]
    project.spec(
        f"""
        name = "big"
        command = {json.dumps(command)}
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        [[experiments]]
        name = "a"
        grid = {{ seed = [1, 2] }}
        """
    )


def test_an_argv_larger_than_a_socket_message_runs(project):
    """~600 KB of arguments: three times what a reaper's socket takes in one message."""
    _big_argv_spec(project, args=150, size=4000)
    result = project.run("up", "sweep.toml", "--plain", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for exp in project.status_json("big")["experiments"]:
        assert exp["status"] == "succeeded"
        out = Path(exp["log"]).read_text().splitlines()[-1]
        assert json.loads(out) == [151, 150 * 4000 + len("--seed=1")]
    assert not list((project.root / "train_dir/big/logs").glob(".*.request"))  # read, then removed


def test_an_argv_over_the_kernels_limit_fails_fast_with_127_and_the_log_says_why(project):
    _big_argv_spec(project, args=700, size=4000)  # 2.8 MB: over ARG_MAX
    result = project.run("up", "sweep.toml", "--plain", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    for exp in project.status_json("big")["experiments"]:
        assert (exp["status"], exp["returncode"]) == ("failed", 127)
        assert "Argument list too long" in Path(exp["log"]).read_text()
    resumed = project.run("resume", "train_dir/big", "--retry-failed", "--plain", timeout=60)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr


def test_a_launch_the_reaper_cannot_be_given_fails_that_attempt_with_127(tmp_path):
    """The spill file cannot be written (its name is taken by a directory): the attempt fails with
    127 at once and its log says why; nothing hangs and nothing else is affected."""
    from helpers import stop_being_a_subreaper

    from pbtrun.backends.base import LaunchRequest
    from pbtrun.backends.local import LocalBackend
    from pbtrun.backends.reaper import INLINE_REQUEST_MAX
    from pbtrun.spec.expansion import expand
    from pbtrun.spec.reading import parse
    from pbtrun.state.merge import new_experiment
    from pbtrun.state.paths import SweepPaths
    from pbtrun.state.records import Attempt

    paths = SweepPaths(tmp_path / "train_dir" / "s")
    paths.logs.mkdir(parents=True)
    spec = parse(
        f'name = "s"\ncommand = ["true", "{"y" * (INLINE_REQUEST_MAX + 10)}"]\n'
        'experiment_arg_name = ""\nexperiment_dir_arg_name = ""\n[[experiments]]\nname = "a"\n',
        tmp_path / "sweep.toml",
    )
    (exp,) = [new_experiment(e) for e in expand(spec)]
    backend = LocalBackend(paths)
    log = paths.dir.resolve() / paths.log_name(exp, 1)
    Path(f"{paths.dir.resolve()}/logs/.{log.name}.request").mkdir()
    attempt = Attempt(1, 0.0, paths.log_name(exp, 1), None, "here", ref=backend.reserve())
    try:
        backend.launch([LaunchRequest(exp, attempt, exp.spec.argv, {}, str(tmp_path))])
        ((exp_id, outcome),) = backend.collect()
    finally:
        backend.close()
        stop_being_a_subreaper()
    assert (exp_id, outcome.returncode, outcome.fault) == (exp.id, 127, None)
    text = log.read_text()
    assert "cannot write its launch request" in text and text.startswith('# pbtrun exit: {"ended_at"')


def test_a_reaper_killed_while_the_scheduler_lives_loses_no_exit_status(project):
    """The scheduler is a child subreaper: the dead reaper's experiments become its children, and
    it waits for them with their true exit statuses. Nothing that succeeded runs again."""
    from helpers import start_gated

    from pbtrun.backends.logrecords import read_records

    proc, logs, records = start_gated(project, "r", [0, 3, 4])
    (project.root / "gate4").touch()  # one ends before the reaper dies: the reaper records it
    project.wait_for(lambda: read_records(str(sorted(logs.glob("*.log"))[2]))[0] is not None)
    os.kill(records[0]["reaper"], signal.SIGKILL)
    time.sleep(0.3)
    (project.root / "gate0").touch()
    (project.root / "gate3").touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err  # two failed (3 and 4), truly
    exps = {e["name"]: e for e in project.status_json("r")["experiments"]}
    assert [(e["status"], e["returncode"], e["attempts"]) for e in exps.values()] == [
        ("succeeded", 0, 1),
        ("failed", 3, 1),
        ("failed", 4, 1),
    ]
    for exp in exps.values():  # the log's exit record holds the truth too, for status and resume
        assert read_records(exp["log"])[0]["returncode"] == exp["returncode"]
    again = project.run("resume", "train_dir/r", "--plain")
    assert again.returncode == 1 and project.status_json("r")["experiments"][0]["attempts"] == 1


def _forge_pid_record(log: Path, pid: int) -> None:
    """Write into a log's pid record another process's real pid and start time."""
    from pbtrun.backends import logrecords
    from pbtrun.proc import process_start_time

    record = {"pid": pid, "start": process_start_time(pid), "at": time.time(), "reaper": 1, "address": "nobody"}
    payload = json.dumps(record, sort_keys=True).encode().ljust(logrecords.PID_WIDTH)
    with open(log, "r+b") as f:
        f.seek(logrecords.PID_OFFSET + len(logrecords.PID_PREFIX))
        f.write(payload)


def test_a_forged_pid_record_is_neither_adopted_nor_signalled(project, recorder):
    """Anyone who can write in a sweep directory can write a pid record: resume must not adopt
    the process it names, and stop --now must not kill its group."""
    from helpers import alive, reaper_of

    project.spec(f'name = "fg"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\nlist = [{{ sleep = 30 }}]\n')
    proc = project.start("up", "sweep.toml", "--plain")
    project.wait_for(project.records, timeout=20)
    log = next((project.root / "train_dir/fg/logs").glob("*.log"))
    os.kill(proc.pid, signal.SIGKILL)
    os.kill(reaper_of(log.parent), signal.SIGKILL)
    os.killpg(project.records()[0]["pid"], signal.SIGKILL)
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _forge_pid_record(log, victim.pid)
        resumed = project.start("resume", "train_dir/fg", "--plain", "--retry-lost")
        project.wait_for(lambda: len([r for r in project.records() if r["event"] == "start"]) == 2, timeout=20)
        stop = project.run("stop", "train_dir/fg", "--now", timeout=30)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        out, _ = resumed.communicate(timeout=30)
        assert "adopted" not in out, out
        assert alive(victim.pid), "a forged pid record got an unrelated process killed"
        (exp,) = project.status_json("fg")["experiments"]
        assert [h["outcome"] for h in exp["history"]] == ["lost", "stopped"]
    finally:
        victim.kill()
        victim.wait()


def test_a_forged_pid_record_of_a_running_attempt_is_never_signalled(project, recorder):
    """The record of an attempt that runs, overwritten: the stop leaves the named process alone
    (the attempt's own end still comes from its reaper)."""
    from helpers import alive

    project.spec(f'name = "fr"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\nlist = [{{ sleep = 2 }}]\n')
    proc = project.start("up", "sweep.toml", "--plain")
    project.wait_for(project.records, timeout=20)
    log = next((project.root / "train_dir/fr/logs").glob("*.log"))
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _forge_pid_record(log, victim.pid)
        stop = project.run("stop", "train_dir/fr", "--now", timeout=30)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        proc.communicate(timeout=30)
        assert alive(victim.pid), "a forged pid record got an unrelated process killed"
    finally:
        victim.kill()
        victim.wait()


def test_a_journal_symlinked_elsewhere_is_refused_not_written(project, recorder):
    project.spec(f'name = "sl"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\ngrid = {{ i = [1, 2] }}\n')
    assert project.run("up", "sweep.toml", "--plain").returncode == 0
    elsewhere = project.root / "precious.txt"
    elsewhere.write_text("keep me\n")
    journal = project.root / "train_dir/sl/pbtrun.journal"
    journal.unlink()
    journal.symlink_to(elsewhere)
    result = project.run("resume", "train_dir/sl", "--plain", "--retry-failed")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is a symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert elsewhere.read_text() == "keep me\n"


def test_a_foreign_file_under_a_logs_name_neither_stalls_nor_counts_as_an_attempt(project, recorder):
    """A file that is no pbtrun log, where an attempt's log goes: that launch is not started (no
    2 s wait for records that never come, no phantom lost attempt) and the next attempt runs."""
    project.spec(f'name = "ff"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\ngrid = {{ i = [1, 2, 3] }}\n')
    plan = json.loads(project.run("plan", "sweep.toml", "--json").stdout)
    logs = project.root / "train_dir/ff/logs"
    logs.mkdir(parents=True)
    for exp in plan["experiments"]:
        (logs / f"{exp['name']}.1.log").write_text("not a pbtrun log\n")
    started = time.monotonic()
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 4  # was 2 s per collision
    for exp in project.status_json("ff")["experiments"]:
        assert exp["status"] == "succeeded" and exp["log"].endswith(".2.log")
        assert [h["outcome"] for h in exp["history"]] == ["exited"]
        assert (logs / f"{exp['name']}.1.log").read_text() == "not a pbtrun log\n"  # left alone


def test_a_newline_in_an_argument_keeps_the_log_header_four_lines(project):
    """The header is four lines whatever the values hold: a newline in an argument is written
    escaped there (the experiment still gets it as it is), and the tail shows the program's lines."""
    (project.root / "echo.py").write_text("import sys; print(repr(sys.argv[1]))\n")
    project.spec(
        f'name = "nl"\ncommand = ["{sys.executable}", "echo.py", "two\\nlines"]\nexperiment_arg_name = ""\n'
        'experiment_dir_arg_name = ""\n[[experiments]]\nname = "a"\n'
    )
    assert project.run("up", "sweep.toml", "--plain").returncode == 0
    (exp,) = project.status_json("nl")["experiments"]
    lines = Path(exp["log"]).read_text().splitlines()
    assert lines[5].startswith("# argv: ") and lines[5].endswith("'two\\nlines'")
    assert lines[6:] == ["'two\\nlines'"]  # what the program got: the real newline


def test_a_spilled_launch_the_reaper_cannot_read_fails_that_attempt_not_silently(tmp_path):
    import selectors

    from pbtrun.backends.local import Handle, LocalBackend
    from pbtrun.errors import WRITE_FAILED
    from pbtrun.state.paths import SweepPaths

    paths = SweepPaths(tmp_path / "train_dir" / "s")
    paths.logs.mkdir(parents=True)
    backend = LocalBackend(paths)
    link = next(iter(backend.links.values()))
    handle = Handle("e1", 1, str(paths.logs / "x.1.log"), "x", link.address)
    handle.source = link.owner.fileno()
    backend.handles["e1"] = handle
    link.owner.send(json.dumps({"op": "launch", "spilled": str(tmp_path / "gone"), "id": "e1", "attempt": 1}).encode())
    ended = []
    deadline = time.monotonic() + 10
    with selectors.DefaultSelector() as selector:
        selector.register(backend.fds()[0], selectors.EVENT_READ)
        while not ended and time.monotonic() < deadline:
            selector.select(0.1)
            ended += backend.collect()
    ((exp_id, outcome),) = ended
    assert exp_id == "e1" and not outcome.started
    assert outcome.fault.kind == WRITE_FAILED and "No such file" in outcome.fault.text
    backend.close()
