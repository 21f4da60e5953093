"""What a hostile trial found at pbtrun's edges (issue 18, items 5, 6, 7 and 9): the `up`/`up`
race, `logs -f` after a crash, deep nesting, and what reaches the terminal. Real processes,
real files, the real CLI."""

from __future__ import annotations

import json
import os
import re
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
    return project.start("up", "sweep.toml", "--plain", cwd=root)


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


# --------------------------------------------------------------------------- deep nesting

DEEP_SPECS = {
    "arrays": "a = " + "[" * 1000 + "]" * 1000 + "\n",
    "inline tables": "b = " + "{ a = " * 800 + "1" + " }" * 800 + "\n",
    "a dotted key": '[[experiments]]\nname = "g"\nlist = [{ ' + ".".join(["k"] * 1000) + " = 1 }]\n",
}


def _refused(result: subprocess.CompletedProcess, *said: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr, result.stderr
    assert result.stderr.startswith("pbtrun: error: ") and result.stderr.count("pbtrun: error:") == 1
    for words in said:
        assert words in result.stderr, result.stderr
    return result.stderr


def test_a_spec_nested_hundreds_of_levels_deep_is_a_spec_error_at_its_line(project):
    for kind, body in DEEP_SPECS.items():
        project.spec(f'name = "deep"\ncommand = "true"\n{body}')
        line = 3 if kind != "a dotted key" else 5
        for command in (("plan", "sweep.toml"), ("up", "sweep.toml", "--dry-run"), ("up", "sweep.toml")):
            err = _refused(project.run(*command), "sweep.toml, line", "nested more than 64 levels deep")
            assert f"line {line}:" in err, (kind, err)
            assert len(err) < 1000, (kind, err)  # the echoed line is cut
    assert not (project.root / "train_dir").exists()
    project.spec(
        'name = "d60"\ncommand = "true"\n[[experiments]]\nname = "g"\nlist = [{ x = '
        + "[" * 60
        + "1"
        + "]" * 60
        + " }]\n"
    )
    assert project.run("plan", "sweep.toml").returncode == 0  # deep, but within what pbtrun reads


def test_a_run_module_with_a_deeply_nested_value_is_refused_by_import(project):
    (project.root / "run_deep.py").write_text(
        "from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription\n"
        "value = 1\n"
        "for _ in range(5000):\n"
        "    value = [value]\n"
        '_params = ParamGrid([("x", [value])])\n'
        '_experiments = [Experiment("e", "python train.py", _params.generate_params(randomize=False))]\n'
        'RUN_DESCRIPTION = RunDescription("deep", experiments=_experiments)\n'
    )
    _refused(project.run("import", "run_deep.py"), "run_deep.py", "the value of 'x' is nested more than 64 levels")


def _small_sweep(project: Project, name: str = "st") -> Path:
    project.spec(f'name = "{name}"\ncommand = "true"\n[[experiments]]\nname = "a"\ngrid = {{ x = [1, 2] }}\n')
    assert project.run("up", "sweep.toml", "--plain").returncode == 0
    return project.root / "train_dir" / name / "pbtrun.json"


def test_a_hand_edited_state_nested_too_deeply_is_a_damaged_state_file(project):
    state = _small_sweep(project)
    text = state.read_text()
    state.write_text(text.replace('"params": {"x": 1}', '"params": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}", 1))
    for command in (("status", "train_dir/st"), ("status", "train_dir/st", "--json"), ("resume", "train_dir/st")):
        _refused(project.run(*command), "pbtrun.json: cannot use the state file", "nest more deeply than JSON")
    assert "unreadable" in project.run("ls").stdout


# --------------------------------------------------------------------------- what reaches the terminal

HOSTILE = ["\u001b]0;TITLE\u0007", "1\u001b[31m", "0\nsecond line", "\u009b2J"]
RAW = ("\x1b", "\x07", "\x9b")  # what must never reach the terminal from a name or value


def _hostile_spec(project: Project, command: str = "true") -> None:
    values = ", ".join(json.dumps(v) for v in HOSTILE)
    project.spec(
        f'name = "esc"\ncommand = {json.dumps(command)}\n[scheduler]\nnum_gpus = 0\n'
        f'[[experiments]]\nname = "g"\ngrid = {{ "p\\u001b[32m" = [{values}] }}\n'
    )


def _no_raw_controls(text: str) -> None:
    for char in RAW:
        assert char not in text, repr(text)


def test_escape_sequences_in_values_are_printed_escaped_everywhere(project):
    _hostile_spec(project)
    plan = project.run("plan", "sweep.toml")
    assert plan.returncode == 0, plan.stderr
    _no_raw_controls(plan.stdout)
    assert "00_g_p\\x1b[_\\x1b]0;TITLE\\x07" in plan.stdout
    assert [line for line in plan.stdout.splitlines() if line.startswith("02_")] == [
        "02_g_p\\x1b[_0\\nsecond line  [starts at once (GPUs not pinned)]"
    ]
    up = project.run("up", "sweep.toml", "--plain")
    assert up.returncode == 0, up.stderr
    _no_raw_controls(up.stdout)
    lines = up.stdout.splitlines()
    events = [line for line in lines if re.match(r"\d\d:\d\d:\d\d  (started|succeeded) ", line)]
    assert len(events) == 2 * len(HOSTILE), lines
    assert not [line for line in lines if line.startswith("second line")]  # a newline in a value splits none
    assert "started   02_g_p\\x1b[_0\\nsecond line [" in up.stdout
    for command in (("status", "train_dir/esc"), ("status",), ("ls",), ("logs", "train_dir/esc", "--failed")):
        shown = project.run(*command)
        assert shown.returncode == 0, shown.stderr
        _no_raw_controls(shown.stdout + shown.stderr)
    table = project.run("status", "train_dir/esc").stdout
    assert "p\\x1b[32m" in table and "\\x1b]0;TITLE\\x07" in table and "0\\nsecond line" in table
    # --json is JSON: the values come back exactly as they are.
    doc = project.status_json("esc")
    assert [e["params"]["p\x1b[32m"] for e in doc["experiments"]] == HOSTILE


def test_the_live_view_in_a_terminal_shows_names_escaped(project):
    import pty

    _hostile_spec(project, command="sh -c 'sleep 0.6; exit 3'")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbtrun", "up", "sweep.toml"],
        cwd=project.root,
        env=project.env(COLUMNS="160", LINES="40"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    project.procs.append(proc)
    os.close(follower)
    out = b""
    while chunk := _read_pty(leader):
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=TIMEOUT) == 1
    text = out.decode(errors="replace")
    assert "RUNNING" in text and "recent failures" in text  # the live view drew its frames
    assert "\x1b]" not in text and "\x07" not in text and "\x9b" not in text  # rich never writes these
    assert "\x1b[31m" not in text and "\x1b[32m" not in text  # NO_COLOR: no colour but from a value
    assert "00_g_p\\x1b[_\\x1b]0;TITLE\\x07 failed (3)" in text
    assert "02_g_p\\x1b[_0\\nsecond line failed (3)" in text


def _read_pty(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], TIMEOUT)
    if not ready:
        return b""
    try:
        return os.read(fd, 1 << 16)
    except OSError:  # EIO: the other end closed
        return b""


def test_error_messages_show_the_spec_s_controls_escaped_and_long_lines_cut(project):
    # TOML refuses a raw escape character: the line it shows is escaped.
    project.root.joinpath("sweep.toml").write_text('name = "x\x1b]0;T\x07"\ncommand = "true"\n')
    err = _refused(project.run("plan", "sweep.toml"), "line 1")
    _no_raw_controls(err)
    assert '1 | name = "x\\x1b]0;T\\x07"' in err
    # A raw C1 character is valid TOML; an error on its line echoes it escaped.
    project.root.joinpath("sweep.toml").write_text('name = "x"\ncommand = "true"\nunknown = "\x9b2J"\n')
    err = _refused(project.run("plan", "sweep.toml"), "line 3", "unknown key")
    assert '3 | unknown = "\\x9b2J"' in err
    _no_raw_controls(err)


def test_a_grid_of_10_to_the_300_says_so_in_a_short_message(project):
    axes = ", ".join(f"k{i} = [{', '.join(map(str, range(10)))}]" for i in range(300))
    project.spec(f'name = "h"\ncommand = "true"\n[[experiments]]\nname = "g"\ngrid = {{ {axes} }}\n')
    err = _refused(project.run("plan", "sweep.toml"), "this grid gives more than 10^299 experiments", "line 5")
    assert len(err) < 600, err
    assert err.rstrip("\n").endswith("…")  # the 60 KB line, cut


def test_a_malformed_state_is_said_in_words_naming_the_field_and_the_experiment(project):
    state = _small_sweep(project)
    good = state.read_text()
    first = 'experiment #0 ("00_a_x_1")'
    cases = (  # an edit, what the message says, what it never says
        ('"group": "a"', '"group": 5', f'{first}: "group" must be a string, not the integer 5', "intern()"),
        ('"status": "succeeded", ', "", f'{first} has no "status" field; it must be one of', "KeyError"),
        ('"number": 1,', '"number": "1",', f'{first}, attempt #1: "number" must be an integer', "TypeError"),
    )
    for old, new, said, never in cases:
        state.write_text(good.replace(old, new, 1))
        err = _refused(project.run("status", "train_dir/st"), str(state.relative_to(project.root)), said)
        assert never not in err
    state.write_bytes('{"format": 1}'.encode("utf-16-le")[:-1] + b"\xd8")
    err = _refused(project.run("resume", "train_dir/st"), "it is not UTF-8 text")
    assert "codec" not in err and "utf-16" not in err


def test_the_plain_view_counts_a_sweep_that_a_merge_changed_while_it_ran(project):
    # One experiment never run is dropped and one added: as many as before, but not the same ones.
    wait = 'command = ["sh", "-c", "while [ ! -e go ]; do sleep 0.01; done"]\n'
    spec = 'name = "mg"\n' + wait + '[scheduler]\nmax_parallel = 1\n[[experiments]]\nname = "g"\ngrid = {{ x = {} }}\n'
    project.spec(spec.format("[1, 2, 3]"))
    runner = project.start("up", "sweep.toml", "--plain", "--num-gpus", "0")
    project.wait_for(
        lambda: (
            (project.root / "train_dir/mg/logs").exists() and any((project.root / "train_dir/mg/logs").glob("*.log"))
        )
    )
    project.spec(spec.format("[1, 2, 4]"))
    added = project.run("up", "sweep.toml", "--plain", "--num-gpus", "0")
    assert added.returncode == 3 and "added 1 experiment(s)" in added.stderr, added.stderr
    (project.root / "go").touch()
    out, err = runner.communicate(timeout=TIMEOUT)
    assert runner.returncode == 0, err
    progress = re.findall(r"\[(\d+)/(\d+) done, (\d+) running", out)
    assert progress[-1] == ("3", "3", "0"), out
    assert all(total == "3" for _, total, _ in progress), out
    assert all(int(running) <= 1 for _, _, running in progress), out
