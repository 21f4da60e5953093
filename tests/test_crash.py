"""Crash safety, proven with real processes and real signals.

The fault-injection tests kill or interrupt the scheduler at random moments many times, resume
each time, and then check the promises pbtrun makes: every experiment succeeded, none ran twice
at the same time, none that had succeeded ran again, and the state records every attempt's true
return code. The random seed is printed (``-s`` shows it); set PBTRUN_FAULT_SEED to replay.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import reaper_of, start_gated, stop_being_a_subreaper

from pbtrun.backends import logrecords
from pbtrun.backends.base import LaunchRequest, Outcome
from pbtrun.backends.local import Handle, LocalBackend
from pbtrun.backends.logrecords import read_records
from pbtrun.errors import RUNNER_DIED
from pbtrun.spec.expansion import expand
from pbtrun.spec.reading import parse
from pbtrun.state import store
from pbtrun.state.codec import from_json
from pbtrun.state.merge import new_experiment
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import RUNNING, Attempt, Settings, Sweep

DATA = Path(__file__).parent / "data"


def _seed() -> int:
    seed = int(os.environ.get("PBTRUN_FAULT_SEED", time.time_ns() % 2**32))
    print(f"fault-injection seed: {seed} (replay with PBTRUN_FAULT_SEED={seed})")
    return seed


def _fault_spec(project, recorder: str, rng: random.Random, count: int = 30) -> None:
    """``count`` experiments of 0.3-1.0 s; every fifth fails its first attempt (max_retries = 1)."""
    rows = ", ".join(
        f"{{ i = {i}, sleep = {rng.uniform(0.3, 1.0):.2f}, fail_first = {3 if i % 5 == 0 else 0} }}"
        for i in range(count)
    )
    project.spec(
        f"""
        name = "faults"
        command = "{recorder}"
        max_retries = 1
        [scheduler]
        num_gpus = 2
        experiments_per_gpu = 2
        max_parallel = 3
        [[experiments]]
        name = "e"
        list = [{rows}]
        """
    )


def _check_promises(project) -> None:
    """What every fault-injection run must end with."""
    state = project.state("faults")
    records = project.records()
    starts = defaultdict(list)
    ends = {}
    for r in records:
        key = (r["name"], r["attempt"])
        if r["event"] == "start":
            starts[key].append(r)
        else:
            ends[key] = r
    # No attempt was launched twice.
    assert all(len(v) == 1 for v in starts.values()), [k for k, v in starts.items() if len(v) > 1]
    by_name = defaultdict(list)
    for (name, _), (start,) in starts.items():
        by_name[name].append((start["t"], ends.get((name, start["attempt"]), {}).get("t", float("inf")), start))
    for name, spans in by_name.items():
        spans.sort(key=lambda s: s[0])
        # Never twice at the same time.
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert start >= end, f"{name} ran twice at the same time"
    for exp in state["experiments"]:
        assert exp["status"] == "succeeded", exp
        # Never again after it succeeded: only the last attempt ended by itself with 0. (An
        # attempt pbtrun stopped is interrupted whatever its exit status, and runs again.)
        assert [a["number"] for a in exp["attempts"] if a["outcome"] == "exited" and a["returncode"] == 0] == [
            exp["attempts"][-1]["number"]
        ], exp
        recorded = {}
        for attempt in exp["attempts"]:
            key = (exp["name"], str(attempt["number"]))
            recorded[key] = attempt
            # A stopped attempt may have died of SIGINT before the recorder could record anything.
            if attempt["outcome"] == "exited" or key in ends:
                real = ends[key]
                assert attempt["outcome"] in ("exited", "stopped"), (exp["name"], attempt, real)
                assert attempt["returncode"] == real["returncode"], (exp["name"], attempt, real)
                assert attempt["pid"] == real["pid"]
        # Every process that started is an attempt of the state, known to have started.
        for key in (k for k in starts if k[0] == exp["name"]):
            assert key in recorded and recorded[key]["outcome"] != "not_started", (key, exp["attempts"])


def _starts(project) -> int:
    return sum(r["event"] == "start" for r in project.records())


def _run_with_faults(project, rng: random.Random, fault, faults: int, while_running: float = 0.0) -> int:
    """Start or resume the sweep until ``faults`` rounds were cut short by ``fault`` (a round can
    end before its fault comes), then finish it; return the faults dealt.

    A random moment is counted from the start of pbtrun, or, in a share ``while_running`` of the
    rounds, from the first experiment the round starts (a loaded machine can take longer than
    the whole random window to start pbtrun, and a graceful stop is only tested if it finds
    experiments to stop); the others hit start-up and the settling of what the last round left.
    """
    dealt = 0
    state = project.root / "train_dir/faults/pbtrun.json"
    for _ in range(3 * faults):
        if dealt >= faults:
            break
        args = ("resume", "train_dir/faults") if state.exists() else ("up", "sweep.toml")  # killed before it was made
        before = _starts(project)
        proc = project.start(*args, "--grace", "2")
        if rng.random() < while_running:
            project.wait_for(lambda p=proc, b=before: p.poll() is not None or _starts(project) > b)
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            time.sleep(rng.uniform(0.05, 0.5))
        if proc.poll() is None:
            fault(proc)
            dealt += 1
        proc.communicate(timeout=30)
        if proc.returncode == -signal.SIGINT:  # the interpreter itself was still starting: pbtrun never ran
            assert _starts(project) == before
            continue
        assert proc.returncode in (0, 1, 130, -signal.SIGKILL), proc.returncode
        if state.exists() or args[0] == "resume":
            from_json(json.loads(state.read_text()))
    final = project.run("resume", "train_dir/faults", timeout=60)
    assert final.returncode == 0, final.stdout + final.stderr
    return dealt


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(project, recorder):
    rng = random.Random(_seed())
    _fault_spec(project, recorder, rng)
    dealt = _run_with_faults(project, rng, lambda p: os.kill(p.pid, signal.SIGKILL), faults=24)
    assert dealt >= 20
    _check_promises(project)


def _check_limits(project, max_parallel: int, per_gpu: int) -> None:
    """From the experiments' own records: never more than ``max_parallel`` at once nor more than
    ``per_gpu`` on a GPU, and every process that started is an attempt of the state, on the GPU
    it really had. (A record's start comes after its process started and its end before it
    ended: a breach can go unseen here, but is never wrongly seen.)"""
    records = project.records()
    events = sorted((r["t"], 1 if r["event"] == "start" else -1, r["gpus"]) for r in records)  # an end first on a tie
    running, on_gpu = 0, defaultdict(int)
    for _, step, gpu in events:
        running += step
        on_gpu[gpu] += step
        assert running <= max_parallel and on_gpu[gpu] <= per_gpu, (running, dict(on_gpu))
    attempts = {(e["name"], str(a["number"])): a for e in project.state("faults")["experiments"] for a in e["attempts"]}
    for r in records:
        if r["event"] == "start":
            attempt = attempts.get((r["name"], r["attempt"]))
            assert attempt is not None and attempt["outcome"] != "not_started", r
            assert ",".join(map(str, attempt["gpus"])) == r["gpus"], (r, attempt)


def test_sigstop_then_sigkill_with_experiments_waiting_keeps_every_limit(project, recorder):
    """The scheduler frozen (SIGSTOP) while its experiments run on and end, then killed; resume
    each time. Nothing may start that the state does not record first, so the limits hold
    across the crashes and every process ran on the GPU the state says."""
    rng = random.Random(_seed())
    _fault_spec(project, recorder, rng, count=60)

    def freeze_then_kill(proc) -> None:
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(rng.uniform(0.1, 0.5))
        os.kill(proc.pid, signal.SIGKILL)

    dealt = _run_with_faults(project, rng, freeze_then_kill, faults=20, while_running=0.5)
    assert dealt >= 20
    _check_promises(project)
    _check_limits(project, max_parallel=3, per_gpu=2)


def _stopped_attempts(project) -> int:
    return sum(a["outcome"] == "stopped" for e in project.state("faults")["experiments"] for a in e["attempts"])


def test_sigint_at_random_moments_stops_gracefully_and_resumes(project, recorder):
    rng = random.Random(_seed())
    _fault_spec(project, recorder, rng)
    dealt = _run_with_faults(project, rng, lambda p: os.kill(p.pid, signal.SIGINT), faults=22, while_running=0.8)
    assert dealt >= 20
    _check_promises(project)
    assert _stopped_attempts(project) >= 5, "the stops seldom found experiments to stop: the faults came too late"


def test_pbtrun_stop_at_random_moments_stops_gracefully_and_resumes(project, recorder):
    rng = random.Random(_seed())
    _fault_spec(project, recorder, rng)

    def stop(proc):
        result = project.run("stop", "train_dir/faults", timeout=30)
        assert result.returncode == 0, result.stderr

    dealt = _run_with_faults(project, rng, stop, faults=22, while_running=0.8)
    assert dealt >= 20
    _check_promises(project)
    assert _stopped_attempts(project) >= 5, "the stops seldom found experiments to stop: the faults came too late"


# --------------------------------------------------------------------------- the launch claim


def _running_sweep(tmp_path: Path, command: str) -> tuple[SweepPaths, Sweep]:
    """A sweep whose only experiment is recorded as running attempt 1, as if the scheduler had
    been killed right after recording the launch."""
    text = f'name = "c"\ncommand = "{command}"\nexperiment_arg_name = ""\nexperiment_dir_arg_name = ""\n'
    spec = parse(text + '[[experiments]]\nname = "a"\n', tmp_path / "s.toml")
    paths = SweepPaths(tmp_path / "train_dir" / "c")
    sweep = Sweep("c", str(tmp_path), "train_dir", time.time(), Settings())
    exp = new_experiment(expand(spec)[0])
    attempt = Attempt(1, time.time(), str(paths.log(exp, 1).relative_to(paths.dir)), None, "host")
    sweep.experiments[exp.id] = exp.to(RUNNING, attempt)
    store.create(paths, sweep, "")
    return paths, sweep


@pytest.fixture
def in_process():
    """A backend runs in this test's own process: afterwards, this process is no subreaper."""
    yield
    stop_being_a_subreaper()


def _pump(backend: LocalBackend, until, timeout: float = 10.0) -> list:
    """Collect the backend's ends, waiting on its fds, until ``until(outcomes)`` holds; return them."""
    outcomes: list = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in backend.fds():
            selector.register(fd, selectors.EVENT_READ)
        while not until(outcomes):
            assert time.monotonic() < deadline, f"no such event within {timeout} s: {outcomes}"
            selector.select(0.05)
            outcomes.extend(backend.collect())
    return outcomes


def _identity(paths: SweepPaths, exp, number: int = 1) -> dict[str, str]:
    """The ``PBTRUN_*`` variables the scheduler gives an attempt: who may adopt and signal it."""
    return {
        "PBTRUN_SWEEP_DIR": str(paths.dir.resolve()),
        "PBTRUN_EXPERIMENT": exp.name,
        "PBTRUN_ATTEMPT": str(number),
    }


def _launch(backend: LocalBackend, exp, attempt, env: dict[str, str], cwd: Path) -> Handle:
    """Launch ``attempt`` with the reference the backend reserves for it, as the scheduler does."""
    request = LaunchRequest(exp, attempt._replace(ref=backend.reserve()), exp.spec.argv, env, str(cwd))
    (handle,) = backend.launch([request])
    return handle


def _launched(tmp_path: Path, command: str) -> tuple[LocalBackend, Handle]:
    """The running attempt of :func:`_running_sweep`, launched by a backend of its own."""
    paths, sweep = _running_sweep(tmp_path, command)
    exp = next(iter(sweep.experiments.values()))
    backend = LocalBackend(paths)
    return backend, _launch(backend, exp, exp.last, _identity(paths, exp), tmp_path)


def _log(paths: SweepPaths, exp, number: int = 1) -> str:
    return str(paths.dir.resolve() / paths.log_name(exp, number))


def _started_pid(handle: Handle) -> int | None:
    """The pid its reaper recorded in the attempt's log once it started it (starts are not
    announced: see the reaper's protocol)."""
    found = read_records(handle.log)
    return found[1].get("pid") if found and found[1] else None


def test_resume_abandons_an_unstarted_launch_and_the_late_reaper_obeys(tmp_path, in_process):
    marker = tmp_path / "ran"
    paths, sweep = _running_sweep(tmp_path, f"touch {marker}")
    exp = next(iter(sweep.experiments.values()))
    backend = LocalBackend(paths)
    # Resume finds no log, the launch claim: it claims the attempt as abandoned.
    settled = backend.settle(exp, exp.last)
    assert isinstance(settled, Outcome) and not settled.started
    log = _log(paths, exp)
    abandoned = {"abandoned": True, "at": pytest.approx(time.time(), abs=5)}
    assert read_records(log) == (abandoned, None)
    # A launch of that attempt arriving late (a request sent just before the crash) must not run.
    _launch(backend, exp, exp.last, dict(os.environ), tmp_path)
    ((exp_id, outcome),) = _pump(backend, bool)
    assert exp_id == exp.id and not outcome.started and outcome.returncode is None
    backend.close()
    assert not marker.exists()
    assert read_records(log) == (abandoned, None)  # the late reaper left the claim alone


def test_a_started_launch_is_adopted_through_its_reaper(tmp_path, in_process):
    paths, sweep = _running_sweep(tmp_path, "sleep 0.5")
    exp = next(iter(sweep.experiments.values()))
    first = LocalBackend(paths)
    attempt = exp.last._replace(ref=first.reserve())
    (launched,) = first.launch([LaunchRequest(exp, attempt, exp.spec.argv, _identity(paths, exp), str(tmp_path))])
    _pump(first, lambda _: _started_pid(launched) is not None)
    # A second scheduler (as after a crash) adopts it: same process, not a new one. It finds
    # the reaper by the address the attempt records.
    second = LocalBackend(paths)
    adopted = second.settle(exp, attempt)
    assert adopted.pgid == _started_pid(launched)
    ((_, outcome),) = _pump(second, bool)
    assert outcome.returncode == 0 and outcome.pid == adopted.pgid
    ((_, same),) = _pump(first, bool)
    assert same == outcome
    first.close()
    second.close()


def test_a_launch_is_signalled_through_its_pid_record_without_any_event(tmp_path, in_process):
    """Starts are not announced: the scheduler finds whom to signal in the log's pid record."""
    backend, handle = _launched(tmp_path, "sleep 30")
    deadline = time.monotonic() + 10
    while not backend.signal(handle, signal.SIGTERM):  # False until the reaper has recorded the pid
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert handle.pgid == _started_pid(handle)
    ((_, outcome),) = _pump(backend, bool)
    assert outcome.returncode == -signal.SIGTERM and outcome.pid == handle.pgid
    backend.close()


def test_a_killed_reaper_never_leads_to_a_second_start(tmp_path, in_process):
    backend, handle = _launched(tmp_path, "sleep 0.8")
    # As where the kernel refuses a child subreaper: the orphan is not ours to wait for, so its
    # exit status goes with its reaper (test_hostile has the scheduler, a subreaper, get it).
    stop_being_a_subreaper()
    _pump(backend, lambda _: _started_pid(handle) is not None)
    os.kill(read_records(handle.log)[1]["reaper"], signal.SIGKILL)
    started = time.monotonic()
    # The experiment, orphaned, is still watched until it really ends; only then is it lost.
    ((_, outcome),) = _pump(backend, bool)
    assert time.monotonic() - started > 0.5
    assert outcome.returncode is None and outcome.started
    assert outcome.fault.kind == RUNNER_DIED and "reaper" in outcome.fault.text
    backend.close()


def test_an_experiment_spawned_as_its_reaper_died_is_found_and_never_started_twice(tmp_path, in_process):
    """The reaper killed between spawning an experiment and writing its pid record: the log is
    claimed, no pid is recorded, the reaper is gone. Resume must find the orphan (by its
    PBTRUN_* environment) and wait for it, not declare the attempt lost and start it again."""
    paths, sweep = _running_sweep(tmp_path, "sleep 30")
    exp = next(iter(sweep.experiments.values()))
    backend = LocalBackend(paths)
    log = _log(paths, exp)
    Path(log).write_bytes(logrecords.records() + b"# pbtrun: header\n")  # what the reaper writes before spawning
    env = {**os.environ, **_identity(paths, exp)}
    # Not a child of this process (as for a resumed scheduler): its exit status is nobody's to read.
    launcher = subprocess.run(
        ["sh", "-c", "setsid sleep 30 >/dev/null 2>&1 & echo $!"], env=env, capture_output=True, text=True, check=True
    )
    orphan = int(launcher.stdout)

    def running_alone() -> bool:  # setsid has made it a group leader and exec'd sleep, as a reaper's child is
        try:
            return os.getpgid(orphan) == orphan and Path(f"/proc/{orphan}/comm").read_text().strip() == "sleep"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while not running_alone():
        assert time.monotonic() < deadline, "the orphan never became a sleeping group leader"
        time.sleep(0.005)
    try:
        found = backend.settle(exp, exp.last._replace(ref="pbtrun-reaper-that-is-gone"))
        assert isinstance(found, Handle), found
        watched_until = time.monotonic() + 0.3
        assert _pump(backend, lambda _: time.monotonic() > watched_until) == []  # watched: no end while it runs
        os.kill(orphan, signal.SIGKILL)  # now it ends
        ((exp_id, outcome),) = _pump(backend, bool)
        assert exp_id == exp.id
        assert outcome.returncode is None and outcome.started  # lost: its reaper could not record it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
        backend.close()


def test_an_experiment_that_exits_0_after_the_stop_signal_is_interrupted_and_runs_again(project):
    """Training scripts often save a checkpoint and exit 0 on SIGINT: that run is interrupted."""
    script = project.root / "graceful.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(0))\n"
        "open(os.environ['PBTRUN_ATTEMPT'], 'w').close()\n"
        "time.sleep(0 if os.environ['PBTRUN_ATTEMPT'] != '1' else 30)\n"
    )
    project.spec(f'name = "g"\ncommand = "{sys.executable} {script}"\n[[experiments]]\nname = "a"\n')
    proc = project.start("up", "sweep.toml")
    project.wait_for((project.root / "1").exists)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    (exp,) = project.status_json("g")["experiments"]
    assert (exp["status"], exp["outcome"], exp["returncode"]) == ("interrupted", "stopped", 0)
    assert project.run("resume", "train_dir/g").returncode == 0
    (exp,) = project.status_json("g")["experiments"]
    assert (exp["status"], exp["attempts"]) == ("succeeded", 2)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stop_under_way_when_the_scheduler_dies_still_counts_on_resume(project):
    """The scheduler signals the experiment, then dies in the grace period (a lost SSH session):
    the experiment saves and exits 0 with no scheduler left. Resume must still see that pbtrun
    stopped it: the intent was recorded before the signal went out."""
    script = project.root / "graceful.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    open('signalled', 'w').close()\n"
        "    time.sleep(1.0)  # saving a checkpoint\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, bye)\n"
        "open(os.environ['PBTRUN_ATTEMPT'], 'w').close()\n"
        "time.sleep(0 if os.environ['PBTRUN_ATTEMPT'] != '1' else 30)\n"
    )
    project.spec(f'name = "g"\ncommand = "{sys.executable} {script}"\n[[experiments]]\nname = "a"\n')
    proc = project.start("up", "sweep.toml", "--grace", "30")
    project.wait_for((project.root / "1").exists)
    os.kill(proc.pid, signal.SIGINT)
    project.wait_for(lambda: project.state("g")["experiments"][0]["attempts"][-1].get("stop_at"))
    project.wait_for((project.root / "signalled").exists)  # the SIGINT reached it: now the scheduler dies
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    log = project.root / "train_dir/g" / project.state("g")["experiments"][0]["attempts"][-1]["log"]
    project.wait_for(lambda: read_records(str(log))[0] is not None)  # it ended, with no scheduler
    result = project.run("resume", "train_dir/g")
    assert result.returncode == 0, result.stdout + result.stderr
    (exp,) = project.status_json("g")["experiments"]
    first, second = exp["history"]
    assert (first["outcome"], first["returncode"]) == ("stopped", 0)
    assert (second["outcome"], exp["status"]) == ("exited", "succeeded")


def _family(project) -> Path:
    """An experiment whose leader dies on SIGINT while its child, in the same process group,
    ignores SIGINT; the child writes its pid to child.pid, then the leader creates ``ready``."""
    script = project.root / "family.py"
    script.write_text(
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time\\n"
        'signal.signal(signal.SIGINT, signal.SIG_IGN)\\nopen("child.pid", "w").write(str(__import__("os").getpid()))\\n'
        "time.sleep(60)'])\n"
        "while not os.path.exists('child.pid') or not open('child.pid').read():\n"
        "    time.sleep(0.01)\n"
        "open('ready', 'w').close()\n"
        "time.sleep(60)\n"
    )
    project.spec(f'name = "f"\ncommand = "{sys.executable} {script}"\n[[experiments]]\nname = "a"\n')
    return script


def test_a_graceful_stop_leaves_no_process_of_the_experiments_group_behind(project):
    """The stop goes on to the rest of the leader's group (SIGTERM after the grace): nothing
    outlives pbtrun."""
    _family(project)
    proc = project.start("up", "sweep.toml", "--grace", "0.5")
    project.wait_for((project.root / "ready").exists)
    child = int((project.root / "child.pid").read_text())
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert not _pid_alive(child), "the experiment's child outlived the stop"
    (exp,) = project.status_json("f")["experiments"]
    assert (exp["status"], exp["outcome"], exp["returncode"]) == ("interrupted", "stopped", -signal.SIGINT)


SUBREAPER = """
import ctypes, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans below come here...
proc = subprocess.Popen(sys.argv[1:])
print(proc.pid, flush=True)
sys.exit(proc.wait())  # ...and are never reaped: waits for pbtrun alone
"""


def test_a_stop_ends_even_where_nobody_reaps_the_orphans(project):
    """In a container whose first process reaps nothing, a killed child would stay a zombie in
    the experiment's group for good: the stop must not wait for it forever. pbtrun, a child
    subreaper itself, inherits the orphans of its experiments and reaps them: none is left."""
    _family(project)
    wrapper = subprocess.Popen(
        [sys.executable, "-c", SUBREAPER, sys.executable, "-m", "pbtrun", "up", "sweep.toml", "--grace", "0.5"],
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    project.procs.append(wrapper)
    pbtrun = int(wrapper.stdout.readline())
    project.wait_for((project.root / "ready").exists)
    child = int((project.root / "child.pid").read_text())
    os.kill(pbtrun, signal.SIGINT)
    wrapper.communicate(timeout=20)  # SIGTERM after 0.5 s, SIGKILL 5 s later, then done
    assert wrapper.returncode == 130
    assert not _pid_alive(child), "pbtrun reaps its experiments' orphans"


def test_an_argument_exec_cannot_pass_fails_that_experiment_not_the_reaper(project):
    """A NUL byte cannot go through exec. The spec refuses one; a hand-edited state can still
    hold one: that experiment fails with 127 and says why, and the others run."""
    project.spec('name = "n"\ncommand = "true"\n[[experiments]]\nname = "a"\ngrid = { x = [1, 2] }\n')
    assert project.run("up", "sweep.toml").returncode == 0
    path = project.root / "train_dir/n/pbtrun.json"
    data = json.loads(path.read_text())
    for exp in data["experiments"]:
        exp["status"], exp["attempts"] = "pending", []
    data["experiments"][0]["argv"].append("a\u0000b")
    path.write_text(json.dumps(data))
    for log in (project.root / "train_dir/n/logs").iterdir():  # else their records say both ran
        log.unlink()
    result = project.run("resume", "train_dir/n")
    assert result.returncode == 1, result.stdout + result.stderr
    first, second = project.status_json("n")["experiments"]
    assert (first["status"], first["returncode"], second["status"]) == ("failed", 127, "succeeded")
    assert "null byte" in Path(first["log"]).read_text()


# --------------------------------------------------------------------------- the state file


def test_state_from_the_first_release_still_loads():
    """tests/data/state-format-1.json was written by pbtrun 0.1.0; keep it loading forever."""
    paths = SweepPaths(DATA / "state-format-1")
    sweep = store.load(paths)
    assert sweep.name == "quickstart"
    assert sweep.counts()["succeeded"] == 6
    first = next(iter(sweep.experiments.values()))
    assert first.name == "00_toy_see_1_lr_0.1" and first.last.returncode == 0 and first.last.gpus == (0,)


def test_experiment_ids_never_change():
    """The first release's state (from examples/quickstart.toml) must still match what this
    pbtrun compiles from the same spec, or `pbtrun up` would no longer recognise the experiments
    an existing sweep has."""
    old = json.loads((DATA / "state-format-1" / "pbtrun.json").read_text())
    spec = parse((DATA.parents[1] / "examples" / "quickstart.toml").read_text(), DATA / "quickstart.toml")
    assert sorted((e.name, e.id) for e in expand(spec)) == sorted((e["name"], e["id"]) for e in old["experiments"])


def test_old_state_file_shows_in_status(project):
    import shutil

    shutil.copytree(DATA / "state-format-1", project.root / "train_dir" / "quickstart")
    doc = project.status_json("quickstart")
    assert doc["counts"]["succeeded"] == 6


def test_newer_state_format_is_refused_with_the_version_needed(project):
    sweep_dir = project.root / "train_dir" / "future"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "pbtrun.json").write_text(json.dumps({"format": 99, "pbtrun_version": "9.0.0"}))
    for args in (("status", "train_dir/future"), ("resume", "train_dir/future")):
        result = project.run(*args)
        assert result.returncode == 2
        assert "pbtrun 9.0.0" in result.stderr and "Upgrade pbtrun" in result.stderr
        assert "Traceback" not in result.stderr
    assert json.loads((sweep_dir / "pbtrun.json").read_text())["format"] == 99
    # Without the version that wrote it, the message still reads as a sentence.
    (sweep_dir / "pbtrun.json").write_text(json.dumps({"format": 99}))
    result = project.run("status", "train_dir/future")
    assert result.returncode == 2 and "written by a newer pbtrun (state format 99)" in result.stderr, result.stderr


def test_truncated_state_names_the_backup_and_is_left_alone(project, recorder):
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    assert project.run("up", "sweep.toml").returncode == 0
    state = project.root / "train_dir/s/pbtrun.json"
    broken = state.read_bytes()[:100]
    state.write_bytes(broken)
    result = project.run("resume", "train_dir/s")
    assert result.returncode == 2
    assert "train_dir/s/pbtrun.json:" in result.stderr and "train_dir/s/pbtrun.json.bak" in result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == broken
    assert from_json(json.loads((state.parent / "pbtrun.json.bak").read_text())).name == "s"


def _break_format(data: dict) -> None:
    data["format"] = 0


def _break_returncode(data: dict) -> None:
    data["experiments"][0]["attempts"][0]["returncode"] = "zero"


def _break_number(data: dict) -> None:
    data["experiments"][0]["attempts"][0]["number"] = "1"


def _break_outcome(data: dict) -> None:
    data["experiments"][0]["attempts"][0]["outcome"] = "fine"


def _break_duplicate(data: dict) -> None:
    data["experiments"].append(dict(data["experiments"][0]))


@pytest.mark.parametrize(
    ("breakage", "said"),
    [
        (_break_format, '"format" is 0'),
        (_break_returncode, 'attempt #1: "returncode" must be an integer, or null, not the string "zero"'),
        (_break_number, 'attempt #1: "number" must be an integer, not the string "1"'),
        (_break_outcome, '"outcome" must be one of "exited", "timed_out", "stopped", "lost", "not_started", or null'),
        (_break_duplicate, "has the id of experiment #0: each is listed once"),
    ],
)
@pytest.mark.parametrize("command", ["status", "resume", "up"])
def test_a_hand_broken_state_is_refused_and_left_alone(project, recorder, breakage, said, command):
    """Edits that keep the JSON valid but break its meaning are refused like a torn file, by
    readers and writers alike, and the file is never rewritten."""
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    assert project.run("up", "sweep.toml").returncode == 0
    state = project.root / "train_dir/s/pbtrun.json"
    data = json.loads(state.read_text())
    breakage(data)
    state.write_text(json.dumps(data, indent=1))
    broken = state.read_bytes()
    result = project.run(command, "sweep.toml" if command == "up" else "train_dir/s")
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr and "pbtrun.json.bak" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == broken


def _files_in(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` that pbtrun keeps (lock files and the FIFO aside), with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_a_deleted_state_file_is_refused_naming_the_backup_and_nothing_is_touched(project, recorder):
    """Without pbtrun.json but with its backup and logs, a sweep directory still holds a sweep's
    history: ``up`` must not start a new sweep over it (running succeeded experiments again and
    replacing the backup), and every command that reads it says how to restore it."""
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\ngrid = {{ x = [1, 2] }}\n')
    assert project.run("up", "sweep.toml").returncode == 0
    sweep_dir = project.root / "train_dir/s"
    (sweep_dir / "pbtrun.json").unlink()
    before = _files_in(sweep_dir)
    assert "pbtrun.json.bak" in before
    messages = []
    for args in (
        ("up", "sweep.toml"),
        ("resume", "train_dir/s"),
        ("resume", "train_dir"),  # a train dir whose only sweep lost its state
        ("status", "train_dir/s"),
        ("status", "train_dir/s", "--json"),
        ("stop", "train_dir/s"),
        ("logs", "train_dir/s", "0"),
    ):
        result = project.run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("pbtrun: error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == "", args
        messages.append(result.stderr)
    assert len(project.records()) == 4  # the first run's two starts and two ends: nothing ran again
    assert _files_in(sweep_dir) == before, "a remnant of the sweep was changed"
    message = messages[0]
    assert "pbtrun.json" in message and "missing" in message and "2 attempt logs" in message
    assert f"cp {sweep_dir}/pbtrun.json.bak {sweep_dir}/pbtrun.json" in message
    assert f"rm -r {sweep_dir}" in message

    listing = project.run("status", "train_dir")
    assert listing.returncode == 0 and "pbtrun.json missing" in listing.stdout, listing.stdout

    # The command the message gives restores the sweep: it continues, the history is back.
    restore = message.split("To restore the backup: ", 1)[1].split(", then", 1)[0]
    subprocess.run(restore, shell=True, check=True, cwd=project.root)
    resumed = project.run("resume", "train_dir/s")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    doc = project.status_json("s")
    assert doc["counts"]["succeeded"] == 2
    # The backup is older than the logs (the experiments were pending in it): what their logs
    # say is taken, nothing runs again.
    assert len(project.records()) == 4 and [e["attempts"] for e in doc["experiments"]] == [1, 1]
    assert (sweep_dir / "logs").is_dir() and all(name in _files_in(sweep_dir) for name in before if "logs/" in name)


@pytest.mark.parametrize("command", ["status", "ls"])
def test_train_dir_json_lists_unreadable_sweeps_with_their_error(project, recorder, command):
    """A script reading a train dir's listing must see every sweep, also one it cannot use."""
    for name in ("fine", "broken", "lost"):
        project.spec(f'name = "{name}"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n', f"{name}.toml")
        assert project.run("up", f"{name}.toml").returncode == 0
    broken = project.root / "train_dir/broken/pbtrun.json"
    broken.write_bytes(broken.read_bytes()[:50])
    (project.root / "train_dir/lost/pbtrun.json").unlink()
    result = project.run(command, "train_dir", "--json")
    assert result.returncode == 0, result.stderr
    sweeps = {s["name"]: s for s in json.loads(result.stdout)["sweeps"]}
    assert sorted(sweeps) == ["broken", "fine", "lost"]
    assert sweeps["fine"]["error"] is None and sweeps["fine"]["counts"]["succeeded"] == 1
    for name in ("broken", "lost"):
        entry = sweeps[name]
        assert entry["counts"] is None and entry["running"] is False
        assert entry["dir"] == str(project.root / "train_dir" / name)
        said = project.run("status", f"train_dir/{name}").stderr
        assert entry["error"] == said.removeprefix("pbtrun: error: ").strip()  # as status of that sweep says it
    assert "not valid JSON" in sweeps["broken"]["error"] and "pbtrun.json.bak" in sweeps["broken"]["error"]
    assert "cp " in sweeps["lost"]["error"]


def test_a_sweep_directory_with_only_its_logs_left_has_no_backup_to_offer(project, recorder):
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    assert project.run("up", "sweep.toml").returncode == 0
    sweep_dir = project.root / "train_dir/s"
    for name in ("pbtrun.json", "pbtrun.json.bak"):
        (sweep_dir / name).unlink()
    result = project.run("up", "sweep.toml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "1 attempt log in logs/" in result.stderr and "No backup (pbtrun.json.bak)" in result.stderr
    assert "cp " not in result.stderr and f"rm -r {sweep_dir}" in result.stderr
    assert len(project.records()) == 2  # nothing ran again
    assert not (sweep_dir / "pbtrun.json").exists()


@pytest.mark.parametrize("command", ["up", "status", "resume"])
def test_a_state_path_that_is_not_a_file_is_refused_and_left_alone(project, recorder, command):
    (project.root / "train_dir/s/pbtrun.json").mkdir(parents=True)
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    result = project.run(command, "sweep.toml" if command == "up" else "train_dir/s")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pbtrun.json: is there but is not a file" in result.stderr and "Traceback" not in result.stderr
    assert (project.root / "train_dir/s/pbtrun.json").is_dir() and not project.records()


def test_an_empty_or_foreign_directory_is_no_lost_sweep(project, recorder):
    """A directory with nothing of a sweep in it (a crash before the first save, another tool's
    logs) is no reason to refuse: ``up`` starts the sweep there."""
    logs = project.root / "train_dir/s/logs"
    logs.mkdir(parents=True)
    (logs / "other_tool.log").write_text("not pbtrun's\n")
    (logs.parent / "pbtrun.journal").write_bytes(bytes(4096))  # preallocated, never written
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    result = project.run("up", "sweep.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.status_json("s")["counts"]["succeeded"] == 1


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs mounted on a directory (needs root; skipped with the reason otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill up needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=False, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_state_intact_and_resume_completes(project, recorder, tiny_fs):
    filler = tiny_fs / "filler"
    # The first experiment fills the disk; the others would run after it.
    script = project.root / "fill.py"
    script.write_text(f"open({str(filler)!r}, 'wb').write(b'x' * 4_000_000)\n")
    fill = f"{sys.executable} {script}"
    project.spec(
        f"""
        name = "full"
        train_dir = "{tiny_fs}"
        [scheduler]
        max_parallel = 1
        [[experiments]]
        name = "fill"
        command = "{fill}"
        [[experiments]]
        name = "after"
        command = "{recorder}"
        grid = {{ i = [1, 2, 3] }}
        """
    )
    result = project.run("up", "sweep.toml")
    assert result.returncode == 4, result.stdout + result.stderr  # disk full has a code of its own
    assert "No space left on device" in result.stderr and "the disk is full" in result.stderr
    assert "Traceback" not in result.stderr
    state = json.loads((tiny_fs / "full/pbtrun.json").read_text())  # still whole and valid
    assert all(e["status"] in ("pending", "running", "failed") for e in state["experiments"])
    filler.unlink()
    resumed = project.run("resume", str(tiny_fs / "full"))
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # the filler failed (disk full)
    final = json.loads((tiny_fs / "full/pbtrun.json").read_text())
    statuses = {e["name"]: e["status"] for e in final["experiments"]}
    assert statuses.pop("00_fill") == "failed"
    assert set(statuses.values()) == {"succeeded"}


def test_a_small_disk_holds_a_whole_sweep_the_journal_sized_to_it(project, tiny_fs):
    """On a 2 MiB file system, the journal's reserve (at most a sixteenth of the free space) leaves
    room for the sweep itself: 80 experiments that write nothing run to the end."""
    project.spec(
        f"""
        name = "small"
        train_dir = "{tiny_fs}"
        command = "true"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        [[experiments]]
        name = "t"
        repeat = 80
        """
    )
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tiny_fs / "small/pbtrun.journal").stat().st_size <= (2 << 20) // 16


def test_disk_full_lets_running_experiments_finish_and_records_their_ends(project, recorder, tiny_fs):
    """The disk fills while two experiments run: their ends (0 and 4) must still be recorded,
    though pbtrun.json cannot be rewritten any more (the journal has room set aside), and a
    failed rewrite leaves no temporary file behind."""
    filler = tiny_fs / "filler"
    script = project.root / "fill.py"
    script.write_text(f"open({str(filler)!r}, 'wb').write(b'x' * 4_000_000)\n")
    project.spec(
        f"""
        name = "full"
        train_dir = "{tiny_fs}"
        [scheduler]
        max_parallel = 3
        [[experiments]]
        name = "fill"
        command = "{sys.executable} {script}"
        [[experiments]]
        name = "long"
        command = "{recorder}"
        list = [{{ sleep = 1.5, exit = 0 }}, {{ sleep = 1.5, exit = 4 }}]
        [[experiments]]
        name = "after"
        command = "{recorder}"
        """
    )
    result = project.run("up", "sweep.toml")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "No space left on device" in result.stdout + result.stderr and "Traceback" not in result.stderr
    exps = {e["name"]: e for e in project.state("full", train_dir=str(tiny_fs))["experiments"]}
    codes = {name: (e["status"], e["attempts"][-1]["returncode"]) for name, e in exps.items() if "long" in name}
    assert codes == {"00_long_sle_1.5_exi_0": ("succeeded", 0), "01_long_sle_1.5_exi_4": ("failed", 4)}
    assert exps["00_after"]["status"] == "pending"  # nothing launched once the disk was full
    assert not [p.name for p in (tiny_fs / "full").iterdir() if p.name.endswith(".tmp")]
    filler.unlink()
    resumed = project.run("resume", str(tiny_fs / "full"))
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # the filler and 01_long failed
    statuses = {e["name"]: e["status"] for e in project.state("full", train_dir=str(tiny_fs))["experiments"]}
    assert statuses == {
        "00_fill": "failed",
        "00_long_sle_1.5_exi_0": "succeeded",
        "01_long_sle_1.5_exi_4": "failed",
        "00_after": "succeeded",
    }


def test_unwritable_state_is_reported_without_traceback(project, recorder, tiny_fs):
    spec = f'name = "ro"\ntrain_dir = "{tiny_fs}"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n'
    project.spec(spec)
    assert project.run("up", "sweep.toml").returncode == 0
    before = (tiny_fs / "ro/pbtrun.json").read_bytes()
    project.spec(spec + "grid = { i = [1, 2] }\n")
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    result = project.run("up", "sweep.toml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
    assert (tiny_fs / "ro/pbtrun.json").read_bytes() == before


# --------------------------------------------------------------------------- retries, timeouts, reboots


def test_timeout_stops_gracefully_and_counts_as_a_failure(project, recorder):
    project.spec(
        f"""
        name = "to"
        command = "{recorder}"
        [[experiments]]
        name = "slow"
        timeout_min = 0.005
        list = [{{ sleep = 30 }}]
        [[experiments]]
        name = "quick"
        list = [{{ sleep = 0 }}]
        """
    )
    started = time.monotonic()
    result = project.run("up", "sweep.toml", "--grace", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 10  # stopped after 0.3 s, by SIGINT: no grace period needed
    exps = {e["name"]: e for e in project.status_json("to")["experiments"]}
    slow = exps["00_slow_sle_30"]
    assert slow["status"] == "failed" and slow["outcome"] == "timed_out"
    assert slow["returncode"] == -signal.SIGINT
    assert "timeout_min" in result.stdout
    assert exps["00_quick_sle_0"]["status"] == "succeeded"
    stopped = [r for r in project.records() if r["event"] == "end" and r.get("stopped")]
    assert [r["returncode"] for r in stopped] == [-signal.SIGINT]  # SIGINT first, gracefully


def test_max_retries_per_group_overrides_the_sweep_and_keeps_every_attempt(project, recorder):
    project.spec(
        f"""
        name = "rt"
        command = "{recorder}"
        max_retries = 5
        [[experiments]]
        name = "twice"
        max_retries = 1
        list = [{{ exit = 3 }}]
        [[experiments]]
        name = "flaky"
        list = [{{ fail_first = 4 }}]
        """
    )
    result = project.run("up", "sweep.toml")
    assert result.returncode == 1
    state = {e["name"]: e for e in project.state("rt")["experiments"]}
    twice = state["00_twice_exi_3"]
    assert twice["status"] == "failed"
    assert [(a["number"], a["returncode"]) for a in twice["attempts"]] == [(1, 3), (2, 3)]
    assert all((project.root / "train_dir/rt" / a["log"]).exists() for a in twice["attempts"])
    flaky = state["00_flaky_f.fir_4"]
    assert flaky["status"] == "succeeded" and [a["returncode"] for a in flaky["attempts"]] == [4, 0]


def test_status_without_a_scheduler_shows_what_running_experiments_really_are(project):
    """The state says "running" until a scheduler records otherwise; with the scheduler killed,
    status reads each attempt's log records and the process table (touching nothing) and shows
    the truth: ended with its code, still running, or lost. Resume then records the same."""
    proc, _, pid_records = start_gated(project, "o", [0, 3, 5])
    os.kill(proc.pid, signal.SIGKILL)  # the reaper lives on: it records what ends from now on
    proc.communicate(timeout=20)

    def rows() -> dict[str, str]:
        out = project.run("status", "train_dir/o").stdout
        return {line.split()[1]: line for line in out.splitlines()[1:4]} | {"footer": out.splitlines()[-1]}

    assert project.wait_for(
        lambda: all("running (no scheduler)" in rows()[f"0{n}_g_n_{c}"] for n, c in ((0, 0), (1, 3), (2, 5)))
    )
    state_before = (project.root / "train_dir/o/pbtrun.json").read_bytes()
    (project.root / "gate0").touch()
    (project.root / "gate3").touch()
    shown = project.wait_for(
        lambda: (r := rows()) and "ended (3)" in r["01_g_n_3"] and "ended (0)" in r["00_g_n_0"] and r
    )
    assert "✔ ended (0), not yet recorded" in shown["00_g_n_0"]
    assert "✘ ended (3), not yet recorded" in shown["01_g_n_3"]
    assert "● running (no scheduler)" in shown["02_g_n_5"]
    assert "3 recorded as running; no scheduler running; 2 of them have ended, not yet recorded" in shown["footer"]
    assert "resume with: pbtrun resume train_dir/o" in shown["footer"]
    observed = {e["name"]: e["observed"] for e in project.status_json("o")["experiments"]}
    assert observed["01_g_n_3"]["state"] == "ended" and observed["01_g_n_3"]["returncode"] == 3
    assert observed["02_g_n_5"] == {"state": "running", "returncode": None, "ended_at": None, "detail": None}

    # The reaper and the last experiment vanish at once, as in a reboot: no exit record, no process.
    os.kill(pid_records[2]["reaper"], signal.SIGKILL)
    os.killpg(pid_records[2]["pid"], signal.SIGKILL)
    assert project.wait_for(lambda: "✘ lost, not yet recorded" in rows()["02_g_n_5"])
    assert (project.root / "train_dir/o/pbtrun.json").read_bytes() == state_before  # status only looked

    (project.root / "gate5").touch()
    resumed = project.run("resume", "train_dir/o", "--plain")  # records the truth; runs nothing lost
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "1 lost: pbtrun cannot know how they ended" in resumed.stdout
    after = {e["name"]: e for e in project.status_json("o")["experiments"]}
    assert (after["00_g_n_0"]["status"], after["00_g_n_0"]["returncode"]) == ("succeeded", 0)
    assert (after["01_g_n_3"]["status"], after["01_g_n_3"]["returncode"]) == ("failed", 3)
    assert (after["02_g_n_5"]["status"], after["02_g_n_5"]["outcome"]) == ("failed", "lost")
    assert "resume with: pbtrun resume" in project.run("status", "train_dir/o").stdout
    retried = project.run("resume", "train_dir/o", "--plain", "--retry-lost")  # asked: it runs, exits 5
    assert retried.returncode == 1, retried.stdout + retried.stderr
    after = {e["name"]: e for e in project.status_json("o")["experiments"]}
    assert [h["outcome"] for h in after["02_g_n_5"]["history"]] == ["lost", "exited"]
    assert after["01_g_n_3"]["attempts"] == 1  # --retry-lost leaves the other failures alone
    assert all(e["observed"] is None for e in after.values())


def test_attempts_lost_to_a_reboot_are_kept_failed_and_run_again_with_retry_lost(project, recorder):
    """A reboot leaves the state saying "running", with no process and no exit record: resume
    records those attempts as lost, failed (they may have succeeded: nothing that succeeded runs
    twice unless asked), and with --retry-lost runs the experiments again."""
    project.spec(f'name = "rb"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\nlist = [{{ sleep = 30 }}]\n')
    proc = project.start("up", "sweep.toml")
    project.wait_for(project.records, timeout=20)
    # The reboot: the scheduler, the reaper and the experiment all vanish at once.
    os.kill(proc.pid, signal.SIGKILL)
    os.kill(reaper_of(project.root / "train_dir/rb/logs"), signal.SIGKILL)
    os.killpg(project.records()[0]["pid"], signal.SIGKILL)
    project.wait_for(lambda: not Path(f"/proc/{project.records()[0]['pid']}").exists(), timeout=10)
    status = project.run("status", "train_dir/rb")
    assert "running" in status.stdout  # what the state still says, until a scheduler looks
    kept = project.run("resume", "train_dir/rb", "--plain")
    assert kept.returncode == 1, kept.stdout + kept.stderr
    (exp,) = project.status_json("rb")["experiments"]
    assert (exp["status"], exp["outcome"], exp["returncode"]) == ("failed", "lost", None)
    footer = project.run("status", "train_dir/rb").stdout.splitlines()[-1]
    assert "resume with: pbtrun resume train_dir/rb --retry-lost" in footer, footer
    resumed = project.start("resume", "train_dir/rb", "--retry-lost")
    project.wait_for(lambda: len(project.records()) >= 2, timeout=20)  # started again
    (exp,) = project.state("rb")["experiments"]
    assert exp["attempts"][0]["outcome"] == "lost" and exp["attempts"][0]["returncode"] is None
    assert exp["status"] == "running" and exp["attempts"][1]["number"] == 2
    # status shows that an attempt was lost, not only the new one: in its history, and in the table.
    (shown,) = project.status_json("rb")["experiments"]
    history = [(h["number"], h["outcome"], h["returncode"]) for h in shown["history"]]
    assert history == [(1, "lost", None), (2, None, None)]
    assert shown["attempts"] == 2 and shown["outcome"] is None
    table = project.run("status", "train_dir/rb").stdout
    assert "2 (1 lost)" in table and "ATTEMPTS" in table, table
    os.kill(resumed.pid, signal.SIGINT)
    resumed.communicate(timeout=20)
