"""What a user meets every day, through the real CLI: tails of logs that keep a traceback's
indentation, `logs -n` and `logs -f` on an experiment still waiting, the sweep a command means
when none is named or one is mistyped, what `up` says beside a running scheduler or given a
Python file, the help, and status tables that show which parameters each row ran with."""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

import pytest

TIMEOUT = 20

# Waits for the file gate_<i> (so a test decides when each experiment ends), printing as it goes.
GATED = (
    "import os, sys, time\n"
    "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
    "print(f\"{os.environ['PBTRUN_EXPERIMENT']} waits\", flush=True)\n"
    "while not os.path.exists(f\"gate_{args['i']}\"):\n"
    "    time.sleep(0.01)\n"
    "for line in range(int(args.get('lines', '1'))):\n"
    "    print(f'line {line}', flush=True)\n"
    "sys.exit(int(args.get('exit', '0')))\n"
)


def _gated(project, name: str = "g", values: str = "[0, 1]", parallel: int = 1, spec: str = "sweep.toml") -> None:
    (project.root / "gated.py").write_text(GATED)
    project.spec(
        f'name = "{name}"\ncommand = "{sys.executable} gated.py"\nexperiment_arg_name = ""\n'
        f'experiment_dir_arg_name = ""\n[scheduler]\nmax_parallel = {parallel}\n'
        f'[[experiments]]\nname = "a"\ngrid = {{ i = {values} }}\n',
        spec,
    )


def _open(project, *gates: int) -> None:
    for i in gates:
        (project.root / f"gate_{i}").touch()


def _running(project, name: str, count: int = 1) -> None:
    project.wait_for(
        lambda: (
            (project.root / f"train_dir/{name}/pbtrun.json").exists()
            and project.status_json(name)["counts"]["running"] == count
        ),
        timeout=TIMEOUT,
    )


def _read_until(stream, expected: str, timeout: float = TIMEOUT) -> str:
    """What a process wrote to ``stream`` up to and including ``expected``, read from the pipe
    itself (the file object's buffer would hide what it had read ahead from ``select``)."""
    fd, text = stream.fileno(), ""
    deadline = time.monotonic() + timeout
    while expected not in text:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 1 << 16).decode() if ready else ""
        assert chunk, f"{expected!r} never came; got {text!r}"
        text += chunk
    return text


# --------------------------------------------------------------------------- tails keep indentation


def test_tracebacks_keep_their_indentation_in_failed_tails_and_the_summary(project):
    (project.root / "crash.py").write_text("def train():\n    raise ValueError('lr too high')\n\n\ntrain()\n")
    project.spec(f'name = "tb"\ncommand = "{sys.executable} crash.py"\n[[experiments]]\nname = "a"\n')
    up = project.run("up", "sweep.toml", "--plain")
    assert up.returncode == 1
    summary = [line.split("| ", 1)[1] for line in up.stdout.splitlines() if "  | " in line]
    script = project.root / "crash.py"
    assert summary == [  # each line used to begin right after the bar
        f'  File "{script}", line 5, in <module>',
        "    train()",
        f'  File "{script}", line 2, in train',
        "    raise ValueError('lr too high')",
        "ValueError: lr too high",
    ]
    tails = project.run("logs", "train_dir/tb", "--failed").stdout.splitlines()
    assert "    Traceback (most recent call last):" in tails
    assert "        raise ValueError('lr too high')" in tails  # four spaces of pbtrun's, four of Python's


# --------------------------------------------------------------------------- logs -n, logs -f


def test_logs_n_prints_the_last_lines_of_one_log_as_tail_does(project):
    _gated(project, values="[0]")
    _open(project, 0)
    project.spec(project.root.joinpath("sweep.toml").read_text().replace("i = [0]", "i = [0], lines = [5]"))
    assert project.run("up", "sweep.toml").returncode == 0
    last = project.run("logs", "train_dir/g", "0", "-n", "3")
    assert last.returncode == 0 and last.stdout == "line 2\nline 3\nline 4\n"  # -n was refused without --failed
    whole = project.run("logs", "train_dir/g", "0").stdout
    assert project.run("logs", "train_dir/g", "0", "-n", "1000").stdout == whole  # records trimmed as in the whole log
    assert whole.splitlines()[0].endswith("}")
    eleven = project.run("logs", "train_dir/g", "0", "-n", "11").stdout
    assert eleven.splitlines() == whole.splitlines()[1:]  # from the pid record on, trimmed too


def test_logs_follow_waits_for_a_pending_experiment_then_follows_it_to_its_end(project):
    _gated(project)
    runner = project.start("up", "sweep.toml")
    _running(project, "g")
    follow = project.start("logs", "train_dir/g", "01_a", "-f")  # pending: it used to say "has not run yet"
    assert _read_until(follow.stderr, "\n") == "waiting for 01_a_i_1 to start...\n"
    interrupted = project.start("logs", "train_dir/g", "01_a", "-f")
    assert _read_until(interrupted.stderr, "\n").startswith("waiting for")
    interrupted.send_signal(signal.SIGINT)  # Ctrl-C while waiting: quietly, 130
    assert interrupted.communicate(timeout=TIMEOUT) == ("", "") and interrupted.returncode == 130
    assert follow.poll() is None
    _open(project, 0)
    assert _read_until(follow.stdout, "01_a_i_1 waits\n").startswith("# pbtrun exit: ")  # the log, from its top
    assert follow.poll() is None  # and it follows it
    _open(project, 1)
    out, err = follow.communicate(timeout=TIMEOUT)
    assert follow.returncode == 0 and err == ""  # said once
    assert out == "line 0\n"  # what it wrote after, to its end
    assert runner.wait(timeout=TIMEOUT) == 0


def test_ctrl_c_stops_logs_follow_quietly_with_130(project):
    _gated(project, values="[0]")
    runner = project.start("up", "sweep.toml")
    _running(project, "g")
    follow = project.start("logs", "train_dir/g", "0", "-f")
    _read_until(follow.stdout, "00_a_i_0 waits\n")
    follow.send_signal(signal.SIGINT)
    assert follow.communicate(timeout=TIMEOUT)[1] == "" and follow.returncode == 130  # it exited 0
    _open(project, 0)
    assert runner.wait(timeout=TIMEOUT) == 0


def test_logs_follow_on_a_pending_experiment_no_scheduler_runs_says_so(project):
    _gated(project)
    runner = project.start("up", "sweep.toml")
    _running(project, "g")
    assert project.run("stop", "train_dir/g", "--now").returncode == 0
    runner.wait(timeout=TIMEOUT)
    follow = project.run("logs", "train_dir/g", "01_a", "-f", timeout=TIMEOUT)  # would wait forever
    assert follow.returncode == 1 and follow.stdout == ""
    assert "01_a_i_1 is pending and no scheduler runs the sweep" in follow.stderr
    assert "Run it with: pbtrun resume train_dir/g" in follow.stderr and "Traceback" not in follow.stderr


# --------------------------------------------------------------------------- which sweep


def test_logs_and_resume_default_to_the_only_sweep_under_train_dir(project):
    _gated(project, values="[0]")
    _open(project, 0)
    assert project.run("up", "sweep.toml").returncode == 0
    by_path = project.run("logs", "train_dir/g", "0").stdout
    assert project.run("logs", "0").stdout == by_path  # the one argument is the experiment
    assert project.run("logs", "00_a").stdout == by_path
    assert project.run("logs", "--failed").stderr == "no failed experiments in train_dir/g\n"
    resumed = project.run("resume")
    assert resumed.returncode == 0 and "sweep g: 1 experiment, 0 to run" in resumed.stdout

    _gated(project, name="h", spec="other.toml")
    _open(project, 1)
    assert project.run("up", "other.toml").returncode == 0
    for args in (("logs", "0"), ("logs", "--failed"), ("resume",)):
        several = project.run(*args)
        assert several.returncode == 2 and several.stdout == "", args
        assert "train_dir holds 2 sweeps; name one of them:\n    train_dir/g\n    train_dir/h" in several.stderr


def test_a_mistyped_sweep_path_gets_a_did_you_mean(project):
    _gated(project, name="quickstart", values="[0]")
    _open(project, 0)
    assert project.run("up", "sweep.toml").returncode == 0
    for typo in ("train_dir/quickstrat", "trian_dir/quickstart", "quikstart"):
        # `pbtrun logs WORD` reads a word that is no path as an experiment of the only sweep
        for command in ("status", "resume", "stop") + (("logs",) if "/" in typo else ()):
            result = project.run(command, typo)
            assert result.returncode == 2 and result.stdout == "", (command, typo)
            assert result.stderr.startswith(f"pbtrun: error: {typo}: no such ")
            assert result.stderr.rstrip().endswith("Did you mean train_dir/quickstart?"), (command, typo, result.stderr)
    assert "Did you mean" not in project.run("status", "train_dir/something_else").stderr


# --------------------------------------------------------------------------- what status and up say


def test_the_status_footer_says_whether_a_scheduler_runs(project):
    _gated(project, values="[0, 1]", parallel=2)
    runner = project.start("up", "sweep.toml")
    _running(project, "g", 2)
    footer = project.run("status", "train_dir/g").stdout.splitlines()[-1]
    assert f"2 running; running (scheduler pid {runner.pid} on {socket.gethostname()})" in footer
    assert "not running" not in footer and "resume" not in footer
    os.kill(runner.pid, signal.SIGKILL)  # its experiments run on
    runner.wait(timeout=TIMEOUT)
    footer = project.run("status", "train_dir/g").stdout.splitlines()[-1]
    assert "2 recorded as running; no scheduler running · resume with: pbtrun resume train_dir/g" in footer
    assert "2 running" not in footer and "not running" not in footer  # it read "2 running; not running"


@pytest.mark.parametrize("via_click", [False, True], ids=["quick", "click"])
def test_up_beside_a_running_scheduler_says_what_it_added(project, via_click):
    _gated(project, values="[0]")
    runner = project.start("up", "sweep.toml")
    _running(project, "g")
    up = ("up", "--", "sweep.toml") if via_click else ("up", "sweep.toml")  # `--` is left to click
    same = project.run(*up)
    assert same.returncode == 3 and same.stdout == ""
    where = f"its scheduler (pid {runner.pid} on {socket.gethostname()})"
    assert same.stderr == (
        f"nothing new to add to sweep g: {where} already runs it. "
        f"Watch it with: pbtrun status {project.root / 'train_dir/g'}\n"
    )
    _gated(project, values="[0, 1, 2]")
    grown = project.run(*up)
    assert grown.returncode == 3  # it still tells a script that another scheduler runs the sweep
    assert grown.stderr == f"added 2 experiment(s) to sweep g; {where} runs them\n"  # was "error: ... resuming"
    _open(project, 0, 1, 2)
    assert runner.wait(timeout=TIMEOUT) == 0
    assert project.status_json("g")["counts"]["succeeded"] == 3


RUN_MODULE = """\
from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

_params = ParamGrid([("seed", [1, 2])])
_experiments = [Experiment("a", "echo", _params.generate_params(randomize=False))]
RUN_DESCRIPTION = RunDescription("imported", experiments=_experiments)
"""


def test_up_given_a_python_run_module_names_the_import_command(project):
    (project.root / "runs.py").write_text(RUN_MODULE)
    steps = "pbtrun import runs.py -o runs.toml && pbtrun up runs.toml"
    for args in (("up", "runs.py"), ("up", "--", "runs.py"), ("up", "runs.py", "--dry-run")):  # both parsers
        result = project.run(*args)
        assert result.returncode == 2 and result.stdout == "", args
        assert result.stderr == (
            "pbtrun: error: runs.py is a Python run module (it defines RUN_DESCRIPTION), not a sweep spec. "
            f"Convert it, then run, with:\n    {steps}\n"
        )
    assert project.run("plan", "runs.py").stderr.endswith("&& pbtrun plan runs.toml\n")
    assert not (project.root / "train_dir").exists()
    # What it says works as said.
    assert project.run("import", "runs.py", "-o", "runs.toml").returncode == 0
    assert project.run("up", "runs.toml").returncode == 0
    (project.root / "train.py").write_text("print('hi')\n")
    script = project.run("up", "train.py")
    assert script.returncode == 2 and "train.py is a Python file, not a sweep spec (TOML)" in script.stderr
    assert "pbtrun init train.toml && $EDITOR train.toml && pbtrun up train.toml" in script.stderr
    assert "pbtrun import train.py" not in script.stderr  # importing a training script would run it


# --------------------------------------------------------------------------- help


COMMANDS = ("up", "plan", "init", "schema", "import", "resume", "stop", "status", "ls", "logs")


def test_help_lines_are_whole_and_every_command_shows_an_example(project):
    top = project.run("--help", COLUMNS="80")
    assert top.returncode == 0
    listed = {line.split()[0]: line for line in top.stdout.splitlines() if line.startswith("  ") and line.split()}
    for command in COMMANDS:
        assert not listed[command].endswith("..."), listed[command]  # click cut them at the width
    assert all(len(line) <= 80 for line in top.stdout.splitlines())
    for command in COMMANDS:
        shown = project.run(command, "--help", COLUMNS="80").stdout
        assert "Examples:\n" in shown and f"\n    pbtrun {command}" in shown, command
        assert all(len(line) <= 80 for line in shown.splitlines()), command


def test_old_underscore_spellings_work_but_are_not_shown(project):
    shown = project.run("up", "--help").stdout
    assert "--num-gpus" in shown and "--num_gpus" not in shown and "--train_dir" not in shown
    project.spec('name = "u"\ncommand = "echo"\n[[experiments]]\nname = "a"\n')
    plan = project.run("plan", "sweep.toml", "--num_gpus", "2", "--experiments_per_gpu", "1")  # parsed by click
    assert plan.returncode == 0 and "1 experiment(s)" in plan.stdout and "2 GPU(s) x 1" in plan.stdout


# --------------------------------------------------------------------------- parameters in status


def test_status_shows_the_parameters_that_vary_as_columns(project):
    project.spec(
        'name = "pv"\ncommand = "echo"\n'
        '[[experiments]]\nname = "a"\ngrid = { steps = [20], lr = [0.1, 0.03], use_rnn = [true, false] }\n'
        '[[experiments]]\nname = "b"\nlist = [{ steps = 20, lr = 0.1, use_rnn = true, batch = 64 }]\n'
    )
    assert project.run("up", "sweep.toml").returncode == 0
    header, *rows = project.run("status", "train_dir/pv").stdout.splitlines()
    assert header.split() == ["#", "EXPERIMENT", "STATUS", "DURATION", "lr", "use_rnn", "batch"]  # steps: 20 in all
    cells = {row.split()[1]: row.split()[5:] for row in rows[:5]}
    assert cells["01_a_ste_20_lr_0.1_u.rnn_False"] == ["0.1", "False"]  # as the argv renders them; no batch here
    assert cells["00_b_ste_20_lr_0.1_u.rnn_True_bat_64"] == ["0.1", "True", "64"]
    only = project.run("status", "train_dir/pv", "--grep", "00_a").stdout.splitlines()[0].split()
    assert only == ["#", "EXPERIMENT", "STATUS", "DURATION"]  # one row: nothing tells it from another
