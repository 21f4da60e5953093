"""Operating a sweep as people do: the live view in a real terminal (tmux), logs, ls, filters,
shell completion."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import reaper_of

TIMEOUT = 20


def _sweep(project, name: str, body: str) -> None:
    project.spec(
        f"""
        name = "{name}"
        command = "{sys.executable} chatty.py"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        {body}
        """
    )
    (project.root / "chatty.py").write_text(
        "import os, sys, time\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "for step in range(int(args.get('steps', '3'))):\n"
        "    print(f\"{os.environ['PBTRUN_EXPERIMENT']} step {step}\", flush=True)\n"
        "    time.sleep(float(args.get('step_s', '0.01')))\n"
        "sys.exit(int(args.get('exit', '0')))\n"
    )


# --------------------------------------------------------------------------- the live view, seen in tmux


class Tmux:
    """A private tmux server (its own socket), so tests never touch a user's sessions."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"pbtrun-test-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def start(self, command: str, width: int = 100, height: int = 30) -> None:
        env = f"cd {self.cwd} && TERM=xterm-256color "
        self("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), env + command + "; sleep 60")

    def screen(self) -> str:
        return "\n".join(line.rstrip() for line in self("capture-pane", "-p", "-t", "t").splitlines())

    def kill(self) -> None:
        self("kill-server")


@pytest.fixture
def tmux(project):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    term = Tmux(project.root)
    try:
        yield term
    finally:
        term.kill()


def _wait_screen(tmux: Tmux, predicate, timeout: float = TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux.screen()
        if predicate(screen):
            return screen
        time.sleep(0.1)
    raise AssertionError(f"the screen never showed what was expected:\n{screen}")


# --------------------------------------------------------------------------- when the output goes away

GATED = (
    "import os, sys, time\n"
    "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
    "while not os.path.exists('gate'):  # opened by the test once the output is gone\n"
    "    time.sleep(0.01)\n"
    "print('done', flush=True)\n"
    "sys.exit(int(args.get('exit', '0')))\n"
)


def _gated_sweep(project, exits: list[int]) -> None:
    """Experiments that wait for the file ``gate``; two at a time, so most start after it opens."""
    (project.root / "gated.py").write_text(GATED)
    combos = ", ".join(f"{{ exit = {code}, n = {n} }}" for n, code in enumerate(exits))
    project.spec(
        f'name = "gone"\ncommand = "{sys.executable} gated.py"\nexperiment_arg_name = ""\n'
        f'experiment_dir_arg_name = ""\n[scheduler]\nmax_parallel = 2\n'
        f'[[experiments]]\nname = "g"\nlist = [{combos}]\n'
    )


def _sweep_ran_to_the_end(project, exits: list[int], returncode: int, stderr: str) -> None:
    assert returncode == (1 if any(exits) else 0), stderr
    assert stderr == "", stderr  # nothing more said, and no traceback
    status = project.status_json("gone")
    assert status["counts"] == {
        "pending": 0,
        "running": 0,
        "succeeded": exits.count(0),
        "failed": len(exits) - exits.count(0),
        "interrupted": 0,
    }
    assert sorted(e["returncode"] for e in status["experiments"]) == sorted(exits)


@pytest.mark.parametrize("exits", [[0, 0, 0, 0, 0], [0, 3, 0, 0, 0]], ids=["all-succeed", "one-fails"])
def test_a_pipe_closed_early_silences_the_output_but_the_sweep_runs_to_the_end(project, exits):
    """``pbtrun up SPEC | head -1``: the reader is gone after one line; every later write fails
    with EPIPE. The scheduler must launch and record every experiment anyway, say nothing more,
    and exit with the code the README promises."""
    _gated_sweep(project, exits)
    proc = project.start("up", "sweep.toml", "--plain")
    first = proc.stdout.readline()
    assert first.split("  ", 1)[1].startswith("sweep gone: 5 experiments"), first
    proc.stdout.close()  # as `head -1` does
    (project.root / "gate").touch()  # experiments end, and their lines meet the closed pipe
    stderr = proc.stderr.read()
    proc.wait(timeout=TIMEOUT)
    _sweep_ran_to_the_end(project, exits, proc.returncode, stderr)


def test_a_terminal_closed_under_the_live_view_silences_it_but_the_sweep_runs_to_the_end(project):
    """The live view on a pseudo-terminal whose other side is closed: writes fail with EIO, on
    the scheduler's thread and on rich's refresh thread alike."""
    exits = [0, 0, 0, 4, 0]
    _gated_sweep(project, exits)
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbtrun", "up", "sweep.toml"],
        cwd=project.root,
        env=project.env(TERM="xterm-256color"),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # the pty is not its controlling terminal: no SIGHUP, only EIO
    )
    project.procs.append(proc)
    os.close(slave)
    seen = b""
    while b"sweep gone" not in seen:
        ready, _, _ = select.select([master], [], [], TIMEOUT)
        assert ready, f"the live view never began: {seen!r}"
        seen += os.read(master, 65536)
    os.close(master)  # the terminal is gone
    (project.root / "gate").touch()
    proc.wait(timeout=TIMEOUT)
    _sweep_ran_to_the_end(project, exits, proc.returncode, "")


def test_live_view_appears_updates_and_leaves_a_clean_summary(project, tmux):
    _sweep(project, "tui", '[[experiments]]\nname = "a"\ngrid = { steps = [40], step_s = [0.05], i = [1, 2, 3] }\n')
    tmux.start(f"{sys.executable} -m pbtrun up sweep.toml --num-gpus 0")
    first = _wait_screen(tmux, lambda s: "RUNNING" in s and "step " in s)
    assert "━" in first  # the progress bar
    assert "00_a_ste_40_s.s_0.05_i_1" in first
    later = _wait_screen(tmux, lambda s: s != first and "RUNNING" in s)
    assert later != first  # refreshed in place, with newer log lines
    final = _wait_screen(tmux, lambda s: "finished" in s)
    assert "3 succeeded" in final
    assert "RUNNING" not in final  # the live table is gone, the summary stays
    assert final.count("sweep tui") <= 2
    assert "\x1b" not in final


def test_live_view_fits_an_80_column_terminal(project, tmux):
    _sweep(
        project,
        "narrow",
        '[[experiments]]\nname = "a_group_with_a_rather_long_name"\n'
        "grid = { steps = [60], step_s = [0.05], learning_rate = [0.001, 0.0003] }\n",
    )
    tmux.start(f"{sys.executable} -m pbtrun up sweep.toml", width=80, height=24)
    screen = _wait_screen(tmux, lambda s: "RUNNING" in s)
    assert all(len(line) <= 80 for line in screen.splitlines())
    _wait_screen(tmux, lambda s: "finished" in s)


# --------------------------------------------------------------------------- logs


@pytest.fixture
def finished(project):
    _sweep(
        project,
        "lg",
        '[[experiments]]\nname = "ok"\ngrid = { i = [1, 2] }\n[[experiments]]\nname = "bad"\nlist = [{ exit = 3 }]\n',
    )
    assert project.run("up", "sweep.toml").returncode == 1
    return project


def test_logs_by_name_prefix_and_index(finished):
    by_name = finished.run("logs", "train_dir/lg", "01_ok_i_2")
    assert by_name.returncode == 0 and "01_ok_i_2 step 2" in by_name.stdout
    assert finished.run("logs", "train_dir/lg", "01_ok").stdout == by_name.stdout
    assert finished.run("logs", "train_dir/lg", "1").stdout == by_name.stdout  # second row of status
    assert "# pbtrun: 00_ok_i_1," in finished.run("logs", "train_dir/lg", "0").stdout  # digits: an index, not a prefix
    assert "# pbtrun: 01_ok_i_2, attempt 1" in by_name.stdout


def test_logs_explain_ambiguous_and_unknown_names(finished):
    ambiguous = finished.run("logs", "train_dir/lg", "00_")
    assert ambiguous.returncode == 2 and "matches 2 experiments (00_ok_i_1, 00_bad_exi_3)" in ambiguous.stderr
    past_the_end = finished.run("logs", "train_dir/lg", "3")
    assert past_the_end.returncode == 2 and "no experiment #3" in past_the_end.stderr
    assert "from 0 to 2 (the # column of `pbtrun status`)" in past_the_end.stderr
    unknown = finished.run("logs", "train_dir/lg", "nope")
    assert unknown.returncode == 2 and "no experiment 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    attempt = finished.run("logs", "train_dir/lg", "00_bad", "--attempt", "2")
    assert attempt.returncode == 2 and "no attempt 2" in attempt.stderr


def test_logs_by_index_is_the_status_row_even_where_a_name_starts_with_those_digits(project):
    project.spec(
        """
        name = "ix"
        command = "echo"
        experiment_dir_arg_name = ""
        [[experiments]]
        name = "a"
        grid = { i = [0, 1, 2] }
        [[experiments]]
        name = "b"
        grid = { j = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }
        """
    )
    assert project.run("up", "sweep.toml").returncode == 0
    table = project.run("status", "train_dir/ix")
    header, *rows = table.stdout.splitlines()
    assert header.split()[:2] == ["#", "EXPERIMENT"]
    index = {cells[1]: cells[0] for cells in (row.split() for row in rows[:14])}
    assert index["07_b_j_7"] == "10" and index["10_b_j_10"] == "13"
    names = [e["name"] for e in project.status_json("ix")["experiments"]]
    assert [index[name] for name in names] == [str(n) for n in range(14)]  # the order of status --json too
    tenth = project.run("logs", "train_dir/ix", "10")
    assert tenth.returncode == 0 and "--experiment=07_b_j_7" in tenth.stdout  # not 10_b_j_10
    assert "--experiment=10_b_j_10" in project.run("logs", "train_dir/ix", "13").stdout
    assert "--experiment=10_b_j_10" in project.run("logs", "train_dir/ix", "10_").stdout  # a prefix still works


def test_logs_attempt_and_failed_tails(finished):
    assert finished.run("resume", "train_dir/lg", "--retry-failed").returncode == 1
    first = finished.run("logs", "train_dir/lg", "00_bad", "--attempt", "1")
    second = finished.run("logs", "train_dir/lg", "00_bad")
    assert "attempt 1" in first.stdout and "attempt 2" in second.stdout
    tails = finished.run("logs", "train_dir/lg", "--failed", "-n", "2")
    assert tails.returncode == 0
    assert tails.stdout.startswith("== 00_bad_exi_3: failed (3),")
    assert tails.stdout.count("    ") == 2 and "00_bad_exi_3 step 2" in tails.stdout
    assert "00_ok" not in tails.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("0", "--failed"), "Error: --failed goes without EXPERIMENT"),
        (("--failed", "-f", "--attempt", "3"), "Error: -f and --attempt 3 go with an EXPERIMENT, not with --failed"),
        (("--failed", "--attempt", "1"), "Error: --attempt 1 goes with an EXPERIMENT, not with --failed"),
    ],
)
def test_logs_options_that_do_not_go_together_are_usage_errors(finished, args, said):
    result = finished.run("logs", "train_dir/lg", *args)  # each option was silently ignored
    assert result.returncode == 2 and result.stdout == ""
    assert said in result.stderr


def test_logs_failed_without_failures_says_so(project):
    _sweep(project, "fine", '[[experiments]]\nname = "a"\n')
    assert project.run("up", "sweep.toml").returncode == 0
    result = project.run("logs", "train_dir/fine", "--failed")
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == "no failed experiments in train_dir/fine\n"


def test_logs_print_the_records_without_their_padding(finished):
    log = next((finished.root / "train_dir/lg/logs").glob("00_ok_i_1.*.log"))
    on_disk = log.read_text().splitlines()
    assert on_disk[0].endswith("  ") and on_disk[1].endswith("  ")  # fixed width, filled in place
    printed = finished.run("logs", "train_dir/lg", "0").stdout.splitlines()
    assert printed[0] == on_disk[0].rstrip() and printed[0].endswith("}")
    assert printed[1] == on_disk[1].rstrip() and printed[1].endswith("}")
    assert printed[2:] == on_disk[2:]  # the rest as written


def test_failed_tails_show_what_the_program_printed_not_pbtrun_s_header(project):
    (project.root / "terse.py").write_text("import sys\nprint('# config: lr=0.1')\nsys.exit('cannot open data.csv')\n")
    project.spec(
        f"""
        name = "terse"
        command = "{sys.executable} terse.py"
        [[experiments]]
        name = "a"
        """
    )
    up = project.run("up", "sweep.toml", "--plain")
    assert up.returncode == 1
    summary = [line.split("| ", 1)[1] for line in up.stdout.splitlines() if "  | " in line]
    assert summary == ["# config: lr=0.1", "cannot open data.csv"]  # a "#" line of its own stays
    tails = project.run("logs", "train_dir/terse", "--failed")
    assert tails.stdout.splitlines()[1:] == ["    # config: lr=0.1", "    cannot open data.csv"]
    whole = project.run("logs", "train_dir/terse", "0").stdout.splitlines()  # the whole log, records and header too
    assert whole[0].startswith("# pbtrun exit: {") and whole[2].startswith("# pbtrun: 00_a, attempt 1")


def test_logs_follow_prints_until_the_experiment_ends(project):
    _sweep(project, "fw", '[[experiments]]\nname = "slow"\ngrid = { steps = [8], step_s = [0.15] }\n')
    runner = project.start("up", "sweep.toml")
    project.wait_for(
        lambda: (
            project.run("status", "train_dir/fw", "--json").returncode == 0
            and project.status_json("fw")["counts"]["running"] == 1
        ),
        timeout=TIMEOUT,
    )
    started = time.monotonic()
    follow = project.run("logs", "train_dir/fw", "00_slow", "-f", timeout=TIMEOUT)
    assert follow.returncode == 0
    assert "00_slow_ste_8_s.s_0.15 step 7" in follow.stdout  # the last line, written after -f began
    assert time.monotonic() - started < TIMEOUT
    runner.communicate(timeout=TIMEOUT)


def _reboot(project, proc) -> None:
    """What a reboot leaves: the scheduler, its reaper and the experiment gone, with no exit record."""
    os.kill(proc.pid, signal.SIGKILL)
    os.kill(reaper_of(project.root / "train_dir/rb/logs"), signal.SIGKILL)
    pid = project.records()[0]["pid"]
    os.killpg(pid, signal.SIGKILL)
    project.wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)


def test_logs_follow_ends_when_the_state_ends_an_attempt_that_has_no_exit_record(project, recorder):
    project.spec(f'name = "rb"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\nlist = [{{ sleep = 30 }}]\n')
    runner = project.start("up", "sweep.toml")
    project.wait_for(project.records, timeout=TIMEOUT)
    _reboot(project, runner)
    assert not list((project.root / "train_dir/rb/logs").glob("*.exit"))
    # The state still says "running", but no scheduler runs and the process is gone: `logs -f`
    # sees what `status` sees ("lost, not yet recorded"), prints the log and ends, with no
    # resume needed (issue 18, 6: it used to wait for one).
    follow = project.run("logs", "train_dir/rb", "00_a", "-f", timeout=TIMEOUT)
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.startswith("# pbtrun exit: -\n# pbtrun pid: {")
    assert "\n# pbtrun: 00_a_sle_30, attempt 1" in follow.stdout
    assert "attempt 1: lost, not yet recorded" in follow.stderr
    resumed = project.start("resume", "train_dir/rb", "--retry-lost")  # records attempt 1 as lost, runs attempt 2
    project.wait_for(lambda: project.status_json("rb")["experiments"][0]["attempts"] == 2, timeout=TIMEOUT)
    # An attempt that has already ended is printed, not followed.
    again = project.run("logs", "train_dir/rb", "00_a", "-f", "--attempt", "1", timeout=TIMEOUT)
    assert again.returncode == 0 and "\n# pbtrun: 00_a_sle_30, attempt 1" in again.stdout
    assert "attempt 2" not in again.stdout and "not yet recorded" not in again.stderr
    os.kill(resumed.pid, signal.SIGINT)
    resumed.communicate(timeout=TIMEOUT)


# --------------------------------------------------------------------------- ls and filters


def test_ls_lists_sweeps_from_their_summaries(finished):
    summary = finished.root / "train_dir/lg/summary.json"
    assert json.loads(summary.read_text())["counts"]["failed"] == 1
    listing = finished.run("ls")
    assert listing.returncode == 0
    assert "lg" in listing.stdout and "2 succeeded, 1 failed" in listing.stdout and "not running" in listing.stdout
    doc = json.loads(finished.run("ls", "--json").stdout)
    assert doc["sweeps"][0]["counts"] == {"pending": 0, "running": 0, "succeeded": 2, "failed": 1, "interrupted": 0}
    summary.unlink()  # no summary: ls falls back to the state itself
    assert "2 succeeded, 1 failed" in finished.run("ls").stdout


def test_status_filters(finished):
    failed = finished.run("status", "train_dir/lg", "--failed")
    rows = [line.split() for line in failed.stdout.splitlines() if "_bad_" in line or "_ok_" in line]
    assert [r[:2] for r in rows] == [["2", "00_bad_exi_3"]]  # its index in the whole sweep
    assert "failed (3)" in failed.stdout
    grep = finished.run("status", "train_dir/lg", "--grep", "OK_I_2")
    assert [r.split()[1] for r in grep.stdout.splitlines() if "_ok_" in r] == ["01_ok_i_2"]
    assert "--retry-failed" in finished.run("status", "train_dir/lg").stdout  # the footer's next command


def test_status_json_lists_only_what_the_filters_select_and_counts_the_whole_sweep(finished):
    doc = json.loads(finished.run("status", "train_dir/lg", "--json", "--failed").stdout)
    assert [e["name"] for e in doc["experiments"]] == ["00_bad_exi_3"]  # all three were listed
    assert doc["counts"] == {"pending": 0, "running": 0, "succeeded": 2, "failed": 1, "interrupted": 0}
    grep = json.loads(finished.run("status", "train_dir/lg", "--json", "--grep", "OK_I").stdout)
    assert [e["name"] for e in grep["experiments"]] == ["00_ok_i_1", "01_ok_i_2"]
    none = json.loads(finished.run("status", "train_dir/lg", "--json", "--running").stdout)
    assert none["experiments"] == [] and none["counts"]["succeeded"] == 2


def test_status_json_with_watch_is_a_usage_error(finished):
    result = finished.run("status", "train_dir/lg", "--json", "--watch")
    assert result.returncode == 2 and result.stdout == ""  # it printed the JSON, ignoring --watch
    assert "Error: --json and --watch do not go together" in result.stderr


def test_ls_of_a_train_dir_that_is_not_there_is_an_error(project):
    for args in (("ls",), ("ls", "nonexist"), ("ls", "--json", "nonexist")):  # all exited 0
        result = project.run(*args)
        assert result.returncode == 2 and result.stdout == "", args
        assert result.stderr.startswith("pbtrun: error: ") and "no such train dir" in result.stderr
    project.spec('name = "x"\n')
    result = project.run("ls", "sweep.toml")
    assert result.returncode == 2 and "sweep.toml: not a directory" in result.stderr
    (project.root / "train_dir").mkdir()  # there, and empty: nothing wrong
    empty = project.run("ls")
    assert empty.returncode == 0 and empty.stdout.startswith("no sweeps under train_dir")
    assert json.loads(project.run("ls", "--json").stdout)["sweeps"] == []


def test_piped_tables_have_no_trailing_spaces(finished):
    for args in (("ls",), ("status",), ("status", "train_dir/lg"), ("status", "train_dir/lg", "--failed")):
        lines = finished.run(*args).stdout.splitlines()
        assert len(lines) >= 2 and all(line == line.rstrip() for line in lines), (args, lines)
    assert finished.run("ls").stdout.splitlines()[0].split()[-1] == "SCHEDULER"


# --------------------------------------------------------------------------- completion


def complete(project, words: str, **env: str) -> list[tuple[str, str]]:
    """What click's bash completion answers for ``words`` (the line up to the cursor): (type, value)
    pairs, as the script ``_PBTRUN_COMPLETE=bash_source pbtrun`` prints reads them."""
    done = subprocess.run(
        [sys.executable, "-m", "pbtrun"],
        check=False,
        cwd=project.root,
        env={
            **os.environ,
            **env,
            "_PBTRUN_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        },
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(line.split(",", 1)) for line in done.stdout.splitlines() if line]


def values(project, words: str, **env: str) -> list[str]:
    found = complete(project, words, **env)
    assert all(kind == "plain" for kind, _ in found), found
    return [value for _, value in found]


def test_shell_completion_offers_sweeps_and_experiment_names(finished):
    assert "train_dir/lg" in values(finished, "pbtrun status train_dir/")
    assert values(finished, "pbtrun logs train_dir/lg 01") == ["01_ok_i_2"]
    assert {"up", "resume", "status", "logs"} <= set(values(finished, "pbtrun "))


@pytest.mark.parametrize("words", ["pbtrun up sweep.toml --", "pbtrun resume train_dir/lg --", "pbtrun plan x --"])
def test_shell_completion_offers_one_spelling_of_each_option(finished, words):
    offered = values(finished, words)
    assert {"--num-gpus", "--max-parallel", "--experiments-per-gpu", "--pause-between"} <= set(offered)
    assert not [o for o in offered if "_" in o]  # --num_gpus and the like: still taken, never offered
    assert len(offered) == len(set(offered))
    assert values(finished, words + "num") == ["--num-gpus"]


def test_shell_completion_of_sweeps_anywhere(finished):
    root = finished.root
    shutil.copytree(root / "train_dir/lg", root / "td40/lg", ignore=shutil.ignore_patterns(".control"))  # a fifo
    (root / "empty").mkdir()
    # Only sweeps under ./train_dir used to complete: a train dir of another name, ./train_dir/,
    # an absolute path and ~/ offered nothing.
    assert values(finished, "pbtrun status td") == ["td40/", "td40/lg"]  # one Tab: td40/, the next: td40/lg
    assert values(finished, "pbtrun status ./train_dir/") == ["./train_dir/lg"]
    assert values(finished, f"pbtrun logs {root}/tr") == [f"{root}/train_dir/", f"{root}/train_dir/lg"]
    assert values(finished, "pbtrun status ~/td40/", HOME=str(root)) == ["~/td40/lg"]  # as typed: bash expands it
    assert values(finished, "pbtrun logs ~/td40/lg 00_b", HOME=str(root)) == ["00_bad_exi_3"]
    assert values(finished, "pbtrun ls t") == ["td40/", "train_dir/"]  # ls takes train dirs, not sweeps
    # Nothing of ours to offer, or one directory with nothing in it: the shell completes directories.
    assert complete(finished, "pbtrun status nothing_here") == [("dir", "nothing_here")]
    assert complete(finished, "pbtrun status em") == [("dir", "em")]


def _watch_a_running_sweep(project, tmux, name: str, target: str, first, final, header: str) -> None:
    """Run a 3-experiment sweep, watch ``target`` with ``status --watch`` in tmux: the screen
    shows ``first`` while it runs, then ``final``, redrawn in place; Ctrl-C quits cleanly."""
    _sweep(project, name, '[[experiments]]\nname = "a"\ngrid = { steps = [10], step_s = [0.1], i = [1, 2, 3] }\n')
    runner = project.start("up", "sweep.toml", "--max-parallel", "1")
    project.wait_for((project.root / f"train_dir/{name}/pbtrun.json").exists, timeout=TIMEOUT)
    tmux.start(f"{sys.executable} -m pbtrun status {target} --watch; echo watch-ended-$?")
    shown_first = _wait_screen(tmux, first)
    shown_final = _wait_screen(tmux, final)
    assert shown_final != shown_first and shown_final.count(header) == 1  # redrawn in place, not appended
    tmux("send-keys", "-t", "t", "C-c", "")
    ended = _wait_screen(tmux, lambda s: "watch-ended-" in s, 5)
    assert "watch-ended-0" in ended and "Traceback" not in ended
    runner.communicate(timeout=TIMEOUT)


def test_status_watch_refreshes_in_place_and_quits_on_ctrl_c(project, tmux):
    _watch_a_running_sweep(
        project,
        tmux,
        "wt",
        "train_dir/wt",
        first=lambda s: "running" in s and "EXPERIMENT" in s,
        final=lambda s: "3 succeeded" in s,
        header="EXPERIMENT",
    )


def test_status_watch_on_a_train_dir_refreshes_the_listing_in_place(project, tmux):
    _watch_a_running_sweep(
        project,
        tmux,
        "tw",
        "train_dir",
        first=lambda s: "SWEEP" in s and "running (pid" in s,
        final=lambda s: "3/3" in s and "not running" in s,
        header="SWEEP",
    )


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--failed",), "--failed applies to one sweep: pbtrun status train_dir/NAME --failed (sweeps here: lg)."),
        (("--running", "--pending"), "--running --pending applies to one sweep"),
        (("--grep", "ok i"), "--grep 'ok i' applies to one sweep: pbtrun status train_dir/NAME --grep 'ok i'"),
    ],
)
def test_status_filters_on_a_train_dir_say_where_they_apply(finished, flags, said):
    for args in (("status", *flags), ("status", "train_dir", *flags)):
        result = finished.run(*args)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("pbtrun: error: ") and said in result.stderr
        assert "Traceback" not in result.stderr
