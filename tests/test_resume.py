"""Resume, Ctrl-C, a killed scheduler, editing a spec, a second scheduler, status: with real processes.

Every test runs the real ``pbtrun`` CLI as a subprocess (see ``conftest.py``) and sends real signals.
Experiments are either ``tests/data/recorder.py`` or ``exp.py``, a helper written into the test's
directory that behaves differently on its first attempt (``PBTRUN_ATTEMPT``), so that a sweep stopped
while it runs long can be resumed and finish quickly: the command is fixed in the state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import alive

if TYPE_CHECKING:
    from conftest import Project

# A test experiment. Options (``--k=v``): ``sleep`` (first attempt), ``resleep`` (later attempts),
# ``exit`` (first attempt), ``reexit`` (later attempts), ``signal`` (first attempt: die by it),
# ``ignore=1`` (survive SIGINT and SIGTERM, as a hung training loop would). It records ``start``
# after its handlers are installed, every SIGINT/SIGTERM it receives, and ``end``.
HELPER = r"""
import json, os, signal, sys, time

opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
attempt = int(os.environ.get("PBTRUN_ATTEMPT", "0"))
first = attempt <= 1


def record(event, **extra):
    line = {"event": event, "name": os.environ.get("PBTRUN_EXPERIMENT"), "attempt": attempt,
            "pid": os.getpid(), "t": time.time(), **extra}
    fd = os.open("record.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def on_signal(sig, frame):
    record("signal", signal=signal.Signals(sig).name)
    if opts.get("ignore") != "1":
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)


for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, on_signal)
record("start", argv=sys.argv[1:])
time.sleep(float(opts.get("sleep" if first else "resleep", "0")))
if first and "signal" in opts:
    sig = getattr(signal, opts["signal"])
    signal.signal(sig, signal.SIG_DFL)
    record("end", returncode=-sig)
    os.kill(os.getpid(), sig)
    time.sleep(10)
code = int(opts.get("exit" if first else "reexit", "0"))
record("end", returncode=code)
sys.exit(code)
"""

TIMEOUT = 20  # seconds: the most any single pbtrun invocation or wait may take


# --------------------------------------------------------------------------- helpers


def toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable text is a TOML basic string


def helper_cmd(project: Project) -> str:
    path = project.root / "exp.py"
    if not path.exists():
        path.write_text(HELPER)
    return f"{sys.executable} {path}"


def sweep_toml(name: str, command: str, body: str, max_parallel: int = 4) -> str:
    return (
        f"name = {toml_str(name)}\n"
        f"command = {toml_str(command)}\n"
        'experiment_arg_name = ""\n'
        'experiment_dir_arg_name = ""\n'
        f"[scheduler]\nmax_parallel = {max_parallel}\n\n" + textwrap.dedent(body)
    )


def starts(records: list[dict]) -> list[dict]:
    return [r for r in records if r["event"] == "start"]


def ends(records: list[dict]) -> list[dict]:
    return [r for r in records if r["event"] == "end"]


def by_name(status: dict) -> dict[str, dict]:
    return {e["name"]: e for e in status["experiments"]}


def reaper_pids(project: Project) -> list[int]:
    """The reapers that started the experiments, from their logs' pid records."""
    from pbtrun.backends.logrecords import read_records

    records = [read_records(str(log)) for log in project.root.rglob("*.log")]
    pids = {r[1]["reaper"] for r in records if r and r[1]}
    assert pids, "no reaper found in the logs"
    return sorted(pids)


def finish(proc, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


@pytest.fixture(autouse=True)
def _no_leftover_experiments(project: Project):
    """Every experiment a test started must be gone by its end (checked before the fixture's cleanup)."""
    yield
    for proc in project.procs:
        if proc.poll() is None:
            return  # the test failed midway; the project fixture kills what is left
    for record in starts(project.records()):
        assert project.wait_for(lambda pid=record["pid"]: not alive(pid), timeout=5)


# --------------------------------------------------------------------------- resume: what runs again


def test_resume_skips_succeeded_and_retries_failed_only_when_asked(project: Project) -> None:
    body = """
    [[experiments]]
    name = "a"
    list = [{ seed = 1, exit = 0 }, { seed = 2, exit = 0 }, { seed = 3, exit = 3 }, { seed = 4, exit = 4 }]
    """
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    first = project.run("up", "sweep.toml", timeout=TIMEOUT)
    assert first.returncode == 1, first.stderr
    before = by_name(project.status_json("sw"))
    failed = {n for n, e in before.items() if e["status"] == "failed"}
    succeeded = {n for n, e in before.items() if e["status"] == "succeeded"}
    assert len(failed) == 2
    assert len(succeeded) == 2
    assert {before[n]["returncode"] for n in failed} == {3, 4}
    assert len(starts(project.records())) == 4

    # Plain resume, by sweep dir and by a train dir holding exactly this one sweep: nothing runs.
    for path in ("train_dir/sw", "train_dir", str(project.root / "train_dir" / "sw")):
        again = project.run("resume", path, timeout=TIMEOUT)
        assert again.returncode == 1, (path, again.stdout, again.stderr)
        no_traceback(again)
        assert len(starts(project.records())) == 4, path
        now = by_name(project.status_json("sw"))
        for name, exp in now.items():
            assert (exp["status"], exp["attempts"], exp["returncode"]) == (
                before[name]["status"],
                1,
                before[name]["returncode"],
            )

    # --retry-failed: the failed ones (and only they) run again, as attempt 2, each with its own log.
    retried = project.run("resume", "train_dir/sw", "--retry-failed", timeout=TIMEOUT)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    new = starts(project.records())[4:]
    assert sorted(r["name"] for r in new) == sorted(failed)
    assert {r["attempt"] for r in new} == {2}
    after = by_name(project.status_json("sw"))
    for name in failed:
        exp = after[name]
        assert (exp["status"], exp["attempts"], exp["returncode"]) == ("succeeded", 2, 0)
        log2 = Path(exp["log"])
        log1 = Path(before[name]["log"])
        assert log1 != log2
        assert log1.exists()
        assert log2.exists()
        assert "attempt 1" in log1.read_text()
        assert "attempt 2" in log2.read_text()
    for name in succeeded:
        assert after[name]["attempts"] == 1
        assert after[name]["log"] == before[name]["log"]


@pytest.mark.parametrize("named", ["absolute", "relative"])
def test_resume_from_another_directory_runs_experiments_where_up_ran(
    project: Project, recorder: str, named: str
) -> None:
    """The state records the directory ``up`` ran in; resume from anywhere runs the experiments
    there, so their relative paths (the record file, --train_dir) mean what they meant."""
    body = '[[experiments]]\nname = "a"\nlist = [{ seed = 1 }, { seed = 2, fail_first = 3 }]\n'
    project.spec(sweep_toml("cw", recorder, body))
    assert project.run("up", "sweep.toml", timeout=TIMEOUT).returncode == 1
    elsewhere = project.root / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    sweep = str(project.root / "train_dir/cw") if named == "absolute" else "../../train_dir/cw"
    result = subprocess.run(
        [sys.executable, "-m", "pbtrun", "resume", sweep, "--retry-failed"],
        cwd=elsewhere,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    no_traceback(result)
    retried = [r for r in starts(project.records()) if r["attempt"] == "2"]  # found in up's directory
    assert [r["name"] for r in retried] == ["01_a_see_2_f.fir_3"], project.records()
    assert not any(elsewhere.parent.rglob("record.jsonl")), "an experiment ran in resume's directory"
    exp = by_name(project.status_json("cw"))["01_a_see_2_f.fir_3"]
    assert (exp["status"], exp["attempts"]) == ("succeeded", 2)
    assert f"# cwd: {project.root}\n" in Path(exp["log"]).read_text()


@pytest.mark.parametrize("command", [("resume",), ("status",), ("stop",), ("logs", "0")])
def test_a_spec_file_given_for_a_sweep_directory_points_to_up(project: Project, recorder: str, command) -> None:
    project.spec(sweep_toml("sp", recorder, '[[experiments]]\nname = "a"\n'))
    for ran in (False, True):  # before the sweep exists, and after
        result = project.run(command[0], "sweep.toml", *command[1:], timeout=TIMEOUT)
        assert result.returncode == 2, result.stdout + result.stderr
        no_traceback(result)
        message = result.stderr
        assert message.startswith("pbtrun: error: sweep.toml is a sweep spec, not a sweep directory"), message
        assert "`pbtrun up sweep.toml`" in message and "train_dir/sp by the spec's train_dir" in message
        assert len(starts(project.records())) == int(ran)  # the command ran nothing
        if not ran:
            assert project.run("up", "sweep.toml", timeout=TIMEOUT).returncode == 0


def test_resume_of_a_train_dir_with_several_sweeps_lists_them(project: Project, recorder: str) -> None:
    body = '[[experiments]]\nname = "a"\ngrid = { seed = [1] }\n'
    project.spec(sweep_toml("one", recorder, body), "one.toml")
    project.spec(sweep_toml("two", recorder, body), "two.toml")
    assert project.run("up", "one.toml", timeout=TIMEOUT).returncode == 0
    assert project.run("up", "two.toml", timeout=TIMEOUT).returncode == 0
    state_one = (project.root / "train_dir/one/pbtrun.json").read_bytes()

    result = project.run("resume", "train_dir", timeout=TIMEOUT)
    assert result.returncode == 2, result.stdout + result.stderr
    no_traceback(result)
    assert "train_dir/one" in result.stderr
    assert "train_dir/two" in result.stderr
    assert len(starts(project.records())) == 2  # nothing ran
    assert (project.root / "train_dir/one/pbtrun.json").read_bytes() == state_one


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_experiments_gracefully_and_resume_finishes_them(project: Project) -> None:
    body = '[[experiments]]\nname = "long"\ngrid = { seed = [1, 2, 3], sleep = [30] }\n'
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    proc = project.start("up", "sweep.toml", "--grace", "5")
    project.wait_for(lambda: len(starts(project.records())) == 3, timeout=TIMEOUT)

    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)  # the scheduler only: it has a session of its own
    code, out, err = finish(proc)
    took = time.monotonic() - sent
    assert code == 130, out + err
    assert took < 4, f"Ctrl-C took {took:.1f} s: the experiments should have stopped on SIGINT, within the grace"
    assert "Traceback" not in err

    records = project.records()
    names = {r["name"] for r in starts(records)}
    got_sigint = {r["name"] for r in records if r["event"] == "signal" and r["signal"] == "SIGINT"}
    assert got_sigint == names
    assert not [r for r in records if r["event"] == "signal" and r["signal"] != "SIGINT"]  # no SIGTERM needed
    for pid in [r["pid"] for r in starts(records)]:
        assert not alive(pid), f"process {pid} survived Ctrl-C"
    for pid in reaper_pids(project):  # a reaper leaves once its last experiment is recorded
        project.wait_for(lambda pid=pid: not alive(pid), timeout=5)

    stopped = project.status_json("sw")
    assert stopped["counts"]["interrupted"] == 3
    assert stopped["sweep"]["running"] is False
    for exp in stopped["experiments"]:
        assert exp["status"] == "interrupted"
        assert exp["returncode"] == -signal.SIGINT
        assert exp["outcome"] == "stopped"
        assert exp["attempts"] == 1

    resumed = project.run("resume", "train_dir/sw", timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    second = [r for r in starts(project.records()) if r["attempt"] == 2]
    assert sorted(r["name"] for r in second) == sorted(names)
    done = project.status_json("sw")
    assert done["counts"]["succeeded"] == 3
    for exp in done["experiments"]:
        assert (exp["status"], exp["attempts"], exp["returncode"]) == ("succeeded", 2, 0)
        assert exp["log"].endswith(".2.log")
        assert Path(exp["log"].replace(".2.log", ".1.log")).exists()


def test_second_ctrl_c_skips_the_grace_period(project: Project) -> None:
    body = '[[experiments]]\nname = "stubborn"\ngrid = { seed = [1], sleep = [30], ignore = [1] }\n'
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    proc = project.start("up", "sweep.toml", "--grace", "20")
    (start,) = project.wait_for(lambda: starts(project.records()), timeout=TIMEOUT)

    os.kill(proc.pid, signal.SIGINT)
    project.wait_for(lambda: [r for r in project.records() if r["event"] == "signal"], timeout=TIMEOUT)
    time.sleep(0.5)
    assert proc.poll() is None, "pbtrun must wait out the grace period for an experiment ignoring SIGINT"
    assert alive(start["pid"])

    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    took = time.monotonic() - sent
    assert code == 130, out + err
    assert took < 3, f"the second Ctrl-C took {took:.1f} s to kill the experiment"
    assert not alive(start["pid"])
    for pid in reaper_pids(project):
        project.wait_for(lambda pid=pid: not alive(pid), timeout=5)
    signals = [r["signal"] for r in project.records() if r["event"] == "signal"]
    assert signals == ["SIGINT"]  # killed at once: no SIGTERM after the grace
    (exp,) = project.status_json("sw")["experiments"]
    assert exp["status"] == "interrupted"
    assert exp["returncode"] == -signal.SIGKILL


def test_sigterm_stops_like_ctrl_c_and_a_grace_that_runs_out_ends_in_sigkill(project: Project) -> None:
    """SIGTERM to the scheduler (a batch system, systemd) stops gracefully too: SIGINT, then
    SIGTERM once the grace is over, then SIGKILL for an experiment that ignores both."""
    body = '[[experiments]]\nname = "stubborn"\ngrid = { seed = [1], sleep = [30], ignore = [1] }\n'
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    proc = project.start("up", "sweep.toml", "--grace", "0.5")
    (start,) = project.wait_for(lambda: starts(project.records()), timeout=TIMEOUT)
    os.kill(proc.pid, signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 130, out + err
    assert not alive(start["pid"])
    signals = [r for r in project.records() if r["event"] == "signal"]
    assert [r["signal"] for r in signals] == ["SIGINT", "SIGTERM"]
    assert signals[1]["t"] - signals[0]["t"] >= 0.5  # SIGTERM waited for the grace period
    (exp,) = project.status_json("sw")["experiments"]
    assert (exp["status"], exp["outcome"], exp["returncode"]) == ("interrupted", "stopped", -signal.SIGKILL)


def test_stop_now_kills_at_once_and_the_experiment_runs_again(project: Project) -> None:
    body = '[[experiments]]\nname = "stubborn"\ngrid = { seed = [1], sleep = [30], resleep = [0], ignore = [1] }\n'
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    proc = project.start("up", "sweep.toml", "--grace", "20")
    (start,) = project.wait_for(lambda: starts(project.records()), timeout=TIMEOUT)
    stopped = project.run("stop", "train_dir/sw", "--now", timeout=TIMEOUT)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    code, out, err = finish(proc, timeout=5)  # `stop` waited for it: it is over already
    assert code == 130, out + err
    assert not alive(start["pid"])
    assert not [r for r in project.records() if r["event"] == "signal"]  # SIGKILL, no grace
    (exp,) = project.status_json("sw")["experiments"]
    assert (exp["status"], exp["returncode"]) == ("interrupted", -signal.SIGKILL)
    assert project.run("resume", "train_dir/sw", timeout=TIMEOUT).returncode == 0
    assert project.status_json("sw")["experiments"][0]["status"] == "succeeded"


# --------------------------------------------------------------------------- kill -9 of the scheduler


def kill_scheduler_once_started(project: Project, body: str, count: int) -> None:
    """Run the sweep ``body`` and SIGKILL its scheduler once ``count`` experiments have started."""
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    proc = project.start("up", "sweep.toml")
    project.wait_for(lambda: len(starts(project.records())) == count, timeout=TIMEOUT)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)


def test_killed_scheduler_leaves_experiments_running_and_resume_adopts_them(project: Project) -> None:
    body = """
    [[experiments]]
    name = "k"
    list = [
        { seed = 1, sleep = 0.6, exit = 5 },
        { seed = 2, sleep = 0.6, signal = "SIGTERM" },
        { seed = 3, sleep = 3.5 },
    ]
    """
    kill_scheduler_once_started(project, body, 3)

    pids = {r["name"]: r["pid"] for r in starts(project.records())}
    assert all(alive(pid) for pid in pids.values()), "experiments must survive their scheduler"
    orphaned = project.status_json("sw")
    assert orphaned["sweep"]["running"] is False
    assert orphaned["counts"]["running"] == 3

    # The two short ones end while no scheduler runs; the long one is still running at resume.
    project.wait_for(lambda: len(ends(project.records())) == 2, timeout=TIMEOUT)
    (long_name,) = [r["name"] for r in starts(project.records()) if "--sleep=3.5" in r["argv"]]
    assert alive(pids[long_name])
    resume_at = time.time()
    resumed = project.run("resume", "train_dir/sw", timeout=TIMEOUT)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert f"adopted {long_name}" in resumed.stdout

    records = project.records()
    assert Counter(r["name"] for r in starts(records)) == dict.fromkeys(pids, 1)  # nothing started twice
    end_of = {r["name"]: r for r in ends(records)}
    assert end_of[long_name]["pid"] == pids[long_name]
    assert end_of[long_name]["t"] > resume_at  # it really was adopted while running

    exps = by_name(project.status_json("sw"))
    codes = {name: (e["status"], e["returncode"], e["attempts"]) for name, e in exps.items()}
    assert sorted(codes.values()) == sorted([("failed", 5, 1), ("failed", -signal.SIGTERM, 1), ("succeeded", 0, 1)]), (
        codes
    )
    assert codes[long_name] == ("succeeded", 0, 1)
    state = {e["name"]: e for e in project.state("sw")["experiments"]}
    assert state[long_name]["attempts"][0]["pid"] == pids[long_name]
    for pid in pids.values():
        assert not alive(pid)
    for pid in reaper_pids(project):
        project.wait_for(lambda pid=pid: not alive(pid), timeout=5)


def test_an_experiment_waiting_behind_a_killed_schedulers_experiment_never_starts_alone_and_resume_runs_it_once(
    project: Project,
) -> None:
    """With every slot taken, the next experiment waits. Its scheduler killed, nothing starts it
    when the running one ends (the reaper starts only what a scheduler recorded and sent), and
    resume runs it exactly once."""
    body = """
    [[experiments]]
    name = "k"
    list = [{ seed = 1, sleep = 0.8 }, { seed = 2, sleep = 0 }]
    """
    project.spec(sweep_toml("sw", helper_cmd(project), body, max_parallel=1))
    proc = project.start("up", "sweep.toml")
    project.wait_for(lambda: len(starts(project.records())) == 1, timeout=TIMEOUT)
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)

    project.wait_for(lambda: len(ends(project.records())) == 1, timeout=TIMEOUT)
    (first,) = starts(project.records())
    for pid in reaper_pids(project):  # its last experiment recorded, the reaper leaves
        project.wait_for(lambda pid=pid: not alive(pid), timeout=5)
    assert [r["name"] for r in starts(project.records())] == [first["name"]]
    assert sorted(p.name for p in (project.root / "train_dir/sw/logs").iterdir()) == [f"{first['name']}.1.log"]

    resumed = project.run("resume", "train_dir/sw", timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert Counter(r["name"] for r in starts(project.records())) == dict.fromkeys(
        [e["name"] for e in project.status_json("sw")["experiments"]], 1
    )
    for exp in project.status_json("sw")["experiments"]:
        assert (exp["status"], exp["attempts"]) == ("succeeded", 1)


def test_ctrl_c_starts_none_of_the_waiting_experiments(project: Project) -> None:
    body = '[[experiments]]\nname = "long"\ngrid = { seed = [1, 2, 3, 4], sleep = [30] }\n'
    project.spec(sweep_toml("sw", helper_cmd(project), body, max_parallel=2))
    proc = project.start("up", "sweep.toml", "--grace", "5")
    project.wait_for(lambda: len(starts(project.records())) == 2, timeout=TIMEOUT)
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, out + err

    started = {r["name"] for r in starts(project.records())}
    assert len(started) == 2  # the SIGINT ended the first two; the waiting ones never started
    exps = by_name(project.status_json("sw"))
    assert {n for n, e in exps.items() if e["status"] == "interrupted"} == started
    assert {n: e["attempts"] for n, e in exps.items() if n not in started} == dict.fromkeys(set(exps) - started, 0)
    assert len(list((project.root / "train_dir/sw/logs").iterdir())) == 2


def test_adopted_experiments_that_fail_or_die_by_a_signal_are_recorded_truly(project: Project) -> None:
    """Adopted experiments that end after resume took them over: exit 5, death by SIGTERM, 0."""
    body = """
    [[experiments]]
    name = "k"
    list = [
        { seed = 1, sleep = 2.0, exit = 5 },
        { seed = 2, sleep = 2.0, signal = "SIGTERM" },
        { seed = 3, sleep = 2.0 },
    ]
    """
    kill_scheduler_once_started(project, body, 3)
    resumed = project.run("resume", "train_dir/sw", timeout=TIMEOUT)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("adopted ") == 3, resumed.stdout
    pids = {r["name"]: r["pid"] for r in starts(project.records())}
    assert len(starts(project.records())) == 3  # none started again
    state = {e["name"]: e for e in project.state("sw")["experiments"]}
    got = {
        e["params"]["seed"]: (e["status"], e["attempts"][-1]["returncode"], e["attempts"][-1]["pid"])
        for e in state.values()
    }
    assert got == {
        1: ("failed", 5, pids[state_name(state, 1)]),
        2: ("failed", -signal.SIGTERM, pids[state_name(state, 2)]),
        3: ("succeeded", 0, pids[state_name(state, 3)]),
    }


def state_name(state: dict, seed: int) -> str:
    return next(name for name, e in state.items() if e["params"]["seed"] == seed)


def test_attempt_that_ended_while_no_scheduler_ran_keeps_its_pid(project: Project) -> None:
    """DESIGN.md: an attempt records its pid. One that ends while the scheduler is dead must too."""
    body = '[[experiments]]\nname = "k"\nlist = [{ seed = 1, sleep = 0.3, exit = 5 }]\n'
    project.spec(sweep_toml("sw", helper_cmd(project), body))
    proc = project.start("up", "sweep.toml")
    (start,) = project.wait_for(lambda: starts(project.records()), timeout=TIMEOUT)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    project.wait_for(lambda: ends(project.records()), timeout=TIMEOUT)

    resumed = project.run("resume", "train_dir/sw", timeout=TIMEOUT)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    (exp,) = project.state("sw")["experiments"]
    (attempt,) = exp["attempts"]
    assert (exp["status"], attempt["returncode"]) == ("failed", 5)
    assert attempt["pid"] == start["pid"], f"the attempt's pid is {attempt['pid']!r}, the process was {start['pid']}"


# --------------------------------------------------------------------------- editing the spec


def test_editing_the_spec_adds_experiments_and_refuses_changed_commands(project: Project, recorder: str) -> None:
    group_b = '[[experiments]]\nname = "b"\ncommand = {cmd}\ngrid = {{ seed = [1, 2] }}\n'
    body = '[[experiments]]\nname = "a"\ngrid = { lr = [0.1, 0.2], seed = [1, 2] }\n\n'
    project.spec(sweep_toml("sw", recorder, body + group_b.format(cmd=toml_str(recorder))))
    assert project.run("up", "sweep.toml", timeout=TIMEOUT).returncode == 0
    before = by_name(project.status_json("sw"))
    before_state = {e["name"]: e for e in project.state("sw")["experiments"]}
    assert len(before) == 6
    assert len(starts(project.records())) == 6

    # A new seed: only the new experiments run; the others keep names and history.
    body3 = body.replace("seed = [1, 2]", "seed = [1, 2, 3]")
    project.spec(sweep_toml("sw", recorder, body3 + group_b.format(cmd=toml_str(recorder))))
    grown = project.run("up", "sweep.toml", timeout=TIMEOUT)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    after = by_name(project.status_json("sw"))
    added = set(after) - set(before)
    assert len(after) == 8
    assert len(added) == 2
    assert all("--seed=3" in after[n]["argv"] for n in added)
    new_starts = starts(project.records())[6:]
    assert sorted(r["name"] for r in new_starts) == sorted(added)
    after_state = {e["name"]: e for e in project.state("sw")["experiments"]}
    for name in before:
        assert after_state[name]["attempts"] == before_state[name]["attempts"]
        assert after_state[name]["argv"] == before_state[name]["argv"]
        assert after_state[name]["id"] == before_state[name]["id"]

    # Group b's command changes: refused, and the state is left byte for byte as it was.
    changed_cmd = recorder + " --extra=1"
    project.spec(sweep_toml("sw", recorder, body3 + group_b.format(cmd=toml_str(changed_cmd))))
    state_file = project.root / "train_dir/sw/pbtrun.json"
    frozen = state_file.read_bytes()
    refused = project.run("up", "sweep.toml", timeout=TIMEOUT)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    no_traceback(refused)
    assert "--force" in refused.stderr
    b_names = [n for n, e in after.items() if e["group"] == "b"]
    assert all(n in refused.stderr for n in b_names)
    assert state_file.read_bytes() == frozen
    assert len(starts(project.records())) == 8

    # --force re-queues exactly the changed ones: they run again as attempt 2 with the new command.
    forced = project.run("up", "sweep.toml", "--force", timeout=TIMEOUT)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    rerun = starts(project.records())[8:]
    assert sorted(r["name"] for r in rerun) == sorted(b_names)
    assert all(r["attempt"] == "2" and "--extra=1" in r["argv"] for r in rerun)
    final = by_name(project.status_json("sw"))
    for name, exp in final.items():
        assert exp["status"] == "succeeded"
        assert exp["attempts"] == (2 if name in b_names else 1), name


# --------------------------------------------------------------------------- a second scheduler


def test_second_scheduler_is_refused_but_added_experiments_run(project: Project, recorder: str) -> None:
    body = '[[experiments]]\nname = "a"\nlist = [{ seed = 1, sleep = 30 }]\n'
    project.spec(sweep_toml("sw", recorder, body))
    proc = project.start("up", "sweep.toml", "--grace", "5")
    project.wait_for(lambda: starts(project.records()), timeout=TIMEOUT)

    busy = project.run("resume", "train_dir/sw", timeout=TIMEOUT)
    assert busy.returncode == 3, busy.stdout + busy.stderr
    no_traceback(busy)
    assert f"pid {proc.pid}" in busy.stderr
    assert socket.gethostname() in busy.stderr

    grown = body.replace("{ seed = 1, sleep = 30 }]", "{ seed = 1, sleep = 30 }, { seed = 2, sleep = 0.1 }]")
    project.spec(sweep_toml("sw", recorder, grown))
    added = project.run("up", "sweep.toml", timeout=TIMEOUT)
    assert added.returncode == 3, added.stdout + added.stderr
    no_traceback(added)
    assert f"pid {proc.pid}" in added.stderr

    def added_done() -> bool:
        exps = project.status_json("sw")["experiments"]
        return any(e["params"]["seed"] == 2 and e["status"] == "succeeded" for e in exps)

    project.wait_for(added_done, timeout=TIMEOUT)
    assert [r["argv"] for r in starts(project.records())] == [["--seed=1", "--sleep=30"], ["--seed=2", "--sleep=0.1"]]
    assert proc.poll() is None  # the first scheduler ran it and still runs the long one

    os.kill(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, out + err
    counts = project.status_json("sw")["counts"]
    assert (counts["succeeded"], counts["interrupted"]) == (1, 1)


# --------------------------------------------------------------------------- status


def test_status_lists_sweeps_and_shows_one_in_detail(project: Project, recorder: str) -> None:
    done_body = '[[experiments]]\nname = "a"\nlist = [{ seed = 1 }, { seed = 2, exit = 3 }]\n'
    project.spec(sweep_toml("finished", recorder, done_body), "finished.toml")
    assert project.run("up", "finished.toml", timeout=TIMEOUT).returncode == 1
    live_body = '[[experiments]]\nname = "b"\nlist = [{ seed = 1 }, { seed = 2, sleep = 30 }]\n'
    project.spec(sweep_toml("live", recorder, live_body), "live.toml")
    proc = project.start("up", "live.toml", "--grace", "5")
    project.wait_for(lambda: len(starts(project.records())) == 4, timeout=TIMEOUT)  # 2 finished, 2 live
    project.wait_for(lambda: project.status_json("live")["counts"]["succeeded"] == 1, timeout=TIMEOUT)

    listing = project.run("status", timeout=TIMEOUT)  # default: ./train_dir
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:] if line.strip()}
    assert set(lines) == {"finished", "live"}
    assert "1 succeeded" in lines["finished"]
    assert "1 failed" in lines["finished"]
    assert "not running" in lines["finished"]
    assert "1 succeeded" in lines["live"]
    assert "1 running" in lines["live"]
    assert f"running (pid {proc.pid})" in lines["live"]

    table = project.run("status", "train_dir/live", timeout=TIMEOUT)
    assert table.returncode == 0, table.stderr
    exps = project.status_json("live")["experiments"]
    rows = table.stdout.splitlines()
    assert "EXPERIMENT" in rows[0]
    assert "STATUS" in rows[0]
    for exp in exps:
        (row,) = [r for r in rows if r.split()[1:2] == [exp["name"]]]
        assert exp["status"] in row
    assert "live: 2 experiments" in table.stdout
    assert f"scheduler pid {proc.pid}" in table.stdout

    doc = project.status_json("live")
    assert {"name", "dir"} <= set(doc["sweep"])
    assert doc["sweep"]["name"] == "live"
    assert Path(doc["sweep"]["dir"]) == (project.root / "train_dir/live").resolve()
    assert set(doc["counts"]) >= {"pending", "running", "succeeded", "failed", "interrupted"}
    for exp in doc["experiments"]:
        assert {"name", "status", "returncode", "gpus", "attempts", "argv", "log"} <= set(exp)
        assert exp["status"] in ("running", "succeeded")
        assert isinstance(exp["argv"], list)
        assert exp["gpus"] is None  # not pinned
        assert exp["attempts"] == 1
        assert Path(exp["log"]).exists()
    running = [e for e in doc["experiments"] if e["status"] == "running"]
    assert [e["returncode"] for e in running] == [None]

    finished = by_name(project.status_json("finished"))
    assert sorted(e["returncode"] for e in finished.values()) == [0, 3]

    os.kill(proc.pid, signal.SIGINT)
    assert finish(proc)[0] == 130


def test_status_json_readers_in_parallel_with_a_running_sweep(project: Project, recorder: str) -> None:
    body = (
        '[[experiments]]\nname = "many"\ngrid = { sleep = [0.15], seed = [' + ", ".join(map(str, range(40))) + "] }\n"
    )
    project.spec(sweep_toml("sw", recorder, body, max_parallel=2))
    proc = project.start("up", "sweep.toml")
    project.wait_for(lambda: starts(project.records()), timeout=TIMEOUT)

    def read(_: int):
        return project.run("status", "train_dir/sw", "--json", timeout=TIMEOUT)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(read, range(20)))
    docs = []
    for result in results:
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert sum(doc["counts"].values()) == 40
        assert len(doc["experiments"]) == 40
        docs.append(doc)
    assert any(d["counts"]["succeeded"] < 40 for d in docs), "the readers should overlap the scheduler's writes"
    code, out, err = finish(proc)
    assert code == 0, out + err


# --------------------------------------------------------------------------- a damaged state file


def test_damaged_state_file_is_reported_and_left_alone(project: Project, recorder: str) -> None:
    body = '[[experiments]]\nname = "a"\ngrid = { seed = [1, 2] }\n'
    project.spec(sweep_toml("sw", recorder, body))
    assert project.run("up", "sweep.toml", timeout=TIMEOUT).returncode == 0
    state_file = project.root / "train_dir/sw/pbtrun.json"
    damaged = state_file.read_bytes()[: len(state_file.read_bytes()) // 2]
    state_file.write_bytes(damaged)

    for args in (("status", "train_dir/sw"), ("status", "train_dir/sw", "--json"), ("resume", "train_dir/sw")):
        result = project.run(*args, timeout=TIMEOUT)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        no_traceback(result)
        assert "train_dir/sw/pbtrun.json" in result.stderr, args
        assert state_file.read_bytes() == damaged, args

    listing = project.run("status", timeout=TIMEOUT)
    no_traceback(listing)
    assert "sw" in listing.stdout
    assert "unreadable" in listing.stdout
    again = project.run("up", "sweep.toml", timeout=TIMEOUT)
    assert again.returncode == 2, again.stdout + again.stderr
    no_traceback(again)
    assert "train_dir/sw/pbtrun.json" in again.stderr
    assert state_file.read_bytes() == damaged
    assert len(starts(project.records())) == 2  # nothing ran
