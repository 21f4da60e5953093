"""The local scheduler, run for real: GPU placement under load, return codes, environment, pacing,
and progress lines (the module boundaries are checked in test_layout.py).

Every test runs the real ``pbtrun`` CLI as a process in ``tmp_path`` with real experiments
(``tests/data/recorder.py`` or a tiny script written by the test). Invariants are checked from
what the experiments themselves recorded (start and end lines) and from ``status --json``.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).parents[1] / "pbtrun"
SWEEP = "s"

# An experiment that reports what it saw: its environment, argv, interpreter and working directory.
PROBE = """\
import json, os, sys
keys = ("PBTRUN_EXPERIMENT", "PBTRUN_SWEEP_DIR", "PBTRUN_ATTEMPT", "CUDA_VISIBLE_DEVICES",
        "SWEEP_WIDE", "GROUP_ONLY", "SHARED")
seen = {
    "env": {k: os.environ.get(k) for k in keys},
    "argv": sys.argv[1:],
    "executable": sys.executable,
    "cwd": os.getcwd(),
}
with open(f"probe-{os.environ['PBTRUN_EXPERIMENT']}.json", "w") as f:
    json.dump(seen, f)
print("PROBE-STDOUT-MARKER", flush=True)
print("PROBE-STDERR-MARKER", file=sys.stderr, flush=True)
"""


def toml_str(text: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these characters)."""
    return json.dumps(text)


def sweep_spec(command: str, groups: str, scheduler: str = "", extra: str = "") -> str:
    return f"name = {toml_str(SWEEP)}\ncommand = {toml_str(command)}\n{extra}\n[scheduler]\n{scheduler}\n{groups}"


def by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in status["experiments"]}


def intervals(records: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float, dict[str, Any]]]:
    """Each experiment's (start, end, start record); every experiment must have exactly one of each."""
    starts = [r for r in records if r["event"] == "start"]
    ends = [r for r in records if r["event"] == "end"]
    names = [r["name"] for r in starts]
    assert len(names) == len(set(names)), f"an experiment started twice: {sorted(names)}"
    assert sorted(names) == sorted(r["name"] for r in ends), "start and end records do not pair up"
    end_of = {r["name"]: r["t"] for r in ends}
    return {r["name"]: (r["t"], end_of[r["name"]], r) for r in starts}


def max_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most spans alive at one instant; a span ending at t is gone before one starting at t."""
    spans = list(spans)
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    alive = peak = 0
    for _, delta in events:
        alive += delta
        peak = max(peak, alive)
    return peak


def started_lines(stdout: str) -> list[tuple[str, int | None]]:
    """``(name, gpu)`` for each ``started`` progress line, in launch order."""
    found = []
    for line in stdout.splitlines():
        match = re.match(r"\d\d:\d\d:\d\d\s+started\s+(\S+)(?: on GPU (\d+))?", line)
        if match:
            found.append((match.group(1), None if match.group(2) is None else int(match.group(2))))
    return found


# --------------------------------------------------------------------------- GPU placement


SLEEPS = (0.05, 0.3, 0.1, 0.2, 0.06, 0.15, 0.25, 0.11)  # distinct: a grid refuses a value twice


def test_pinned_placement_under_load_respects_every_limit(project, recorder):
    """4 GPUs x 2, max_parallel 6, 24 experiments of mixed lengths: never more than 2 on a GPU,
    never more than 6 at once, each experiment pinned to exactly one GPU, spread before pack."""
    project.spec(
        sweep_spec(
            recorder,
            'experiments_per_gpu = 2\nmax_parallel = 6\n\n[[experiments]]\nname = "load"\n'
            f"grid = {{ seed = [1, 2, 3], sleep = {list(SLEEPS)} }}\n",
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "4")
    assert result.returncode == 0, result.stdout + result.stderr

    status = by_name(project.status_json(SWEEP))
    assert len(status) == 24
    spans = intervals(project.records())
    assert set(spans) == set(status)

    for name, (_, _, start) in spans.items():
        assert re.fullmatch(r"[0-3]", start["gpus"] or ""), f"{name}: CUDA_VISIBLE_DEVICES={start['gpus']!r}"
        assert status[name]["gpus"] == [int(start["gpus"])], name
        assert status[name]["status"] == "succeeded"
        assert status[name]["attempts"] == 1

    # As the experiments saw it.
    assert max_overlap((a, b) for a, b, _ in spans.values()) <= 6
    for gpu in "0123":
        on_gpu = [(a, b) for a, b, r in spans.values() if r["gpus"] == gpu]
        assert on_gpu, f"GPU {gpu} was never used"
        assert max_overlap(on_gpu) <= 2, f"GPU {gpu} ran more than 2 experiments at once"

    # As the scheduler recorded it: an attempt's [started_at, ended_at] lies inside the time its
    # slot is held (chosen before started_at, freed after the exit status is written).
    attempts = [(e["started_at"], e["ended_at"], e["gpus"][0]) for e in status.values()]
    assert max_overlap((a, b) for a, b, _ in attempts) <= 6
    for gpu in range(4):
        assert max_overlap((a, b) for a, b, g in attempts if g == gpu) <= 2

    # The load was real: the limit was reached, not merely respected.
    assert max_overlap((a, b) for a, b, _ in attempts) == 6

    # Spread before pack: the first batch (6 slots, nothing running) goes to the least busy GPU,
    # lowest id on ties: 0, 1, 2, 3, then 0, 1.
    launches = started_lines(result.stdout)
    assert len(launches) == 24, result.stdout
    assert [gpu for _, gpu in launches[:6]] == [0, 1, 2, 3, 0, 1], result.stdout
    for name, gpu in launches:
        assert status[name]["gpus"] == [gpu], f"{name}: progress says GPU {gpu}, state says {status[name]['gpus']}"


def test_per_gpu_limit_binds_when_max_parallel_is_larger(project, recorder):
    """2 GPUs x 2 with max_parallel 10: the GPU slots, not max_parallel, cap the sweep at 4."""
    project.spec(
        sweep_spec(
            recorder,
            'experiments_per_gpu = 2\nmax_parallel = 10\n\n[[experiments]]\nname = "tight"\n'
            "grid = { seed = [1, 2, 3, 4, 5], sleep = [0.1, 0.2] }\n",
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(project.records())
    assert len(spans) == 10
    assert {r["gpus"] for _, _, r in spans.values()} == {"0", "1"}
    assert max_overlap((a, b) for a, b, _ in spans.values()) <= 4
    for gpu in "01":
        assert max_overlap((a, b) for a, b, r in spans.values() if r["gpus"] == gpu) <= 2
    assert [gpu for _, gpu in started_lines(result.stdout)[:4]] == [0, 1, 0, 1], result.stdout


def test_explicit_gpu_ids_are_the_only_ones_used(project, recorder):
    project.spec(
        sweep_spec(
            recorder,
            'gpus = [0, 2, 3]\nexperiments_per_gpu = 1\nmax_parallel = 3\n\n[[experiments]]\nname = "ids"\n'
            "grid = { seed = [1, 2, 3, 4, 5, 6], sleep = [0.05] }\n",
        )
    )
    result = project.run("up", "sweep.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(project.records())
    assert {r["gpus"] for _, _, r in spans.values()} == {"0", "2", "3"}
    for gpu in "023":
        assert max_overlap((a, b) for a, b, r in spans.values() if r["gpus"] == gpu) <= 1
    assert [gpu for _, gpu in started_lines(result.stdout)[:3]] == [0, 2, 3], result.stdout


def test_unpinned_leaves_cuda_visible_devices_alone_and_caps_parallelism(project, recorder):
    """experiments_per_gpu = -1: CUDA_VISIBLE_DEVICES passes through untouched; max_parallel still holds."""
    project.spec(
        sweep_spec(
            recorder,
            'experiments_per_gpu = -1\nmax_parallel = 3\n\n[[experiments]]\nname = "free"\n'
            "grid = { seed = [1, 2, 3, 4, 5], sleep = [0.05, 0.2] }\n",
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "4", CUDA_VISIBLE_DEVICES="5,6")
    assert result.returncode == 0, result.stdout + result.stderr

    spans = intervals(project.records())
    assert len(spans) == 10
    for name, (_, _, start) in spans.items():
        assert start["gpus"] == "5,6", f"{name}: CUDA_VISIBLE_DEVICES={start['gpus']!r}"
    assert max_overlap((a, b) for a, b, _ in spans.values()) <= 3

    status = project.status_json(SWEEP)
    attempts = [(e["started_at"], e["ended_at"]) for e in status["experiments"]]
    assert max_overlap(attempts) == 3
    assert all(e["gpus"] is None for e in status["experiments"])
    assert all(gpu is None for _, gpu in started_lines(result.stdout))


def test_unpinned_without_cuda_visible_devices_does_not_invent_one(project, recorder):
    project.spec(sweep_spec(recorder, '[[experiments]]\nname = "free"\ngrid = { seed = [1, 2] }\n'))
    result = project.run("up", "sweep.toml", "--experiments-per-gpu", "-1", "--num-gpus", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["gpus"] for r in project.records()] == [None] * 4


# --------------------------------------------------------------------------- return codes


def test_return_codes_statuses_and_exit_code(project, recorder):
    project.spec(
        sweep_spec(
            recorder,
            'max_parallel = 4\n\n[[experiments]]\nname = "rc"\n'
            'list = [{ exit = 0 }, { exit = 3 }, { signal = "SIGKILL" }, { signal = "SIGSEGV" }]\n',
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 1, result.stdout + result.stderr

    doc = project.status_json(SWEEP)
    status = by_name(doc)
    want = {
        "00_rc_exi_0": ("succeeded", 0),
        "01_rc_exi_3": ("failed", 3),
        "02_rc_sig_SIGKILL": ("failed", -9),
        "03_rc_sig_SIGSEGV": ("failed", -11),
    }
    assert {n: (e["status"], e["returncode"]) for n, e in status.items()} == want
    assert doc["counts"]["succeeded"] == 1
    assert doc["counts"]["failed"] == 3
    assert doc["sweep"]["name"] == SWEEP
    assert Path(doc["sweep"]["dir"]) == (project.root / "train_dir" / SWEEP).resolve()


def test_all_succeeded_exits_zero(project, recorder):
    project.spec(sweep_spec(recorder, '[[experiments]]\nname = "ok"\ngrid = { seed = [1, 2, 3] }\n'))
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.status_json(SWEEP)["counts"]["succeeded"] == 3


def test_missing_command_fails_with_127_and_the_log_says_why(project):
    project.spec(
        sweep_spec(
            "./no-such-program-here --flag", '[[experiments]]\nname = "ghost"\n', extra='experiment_arg_name = ""'
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    (exp,) = project.status_json(SWEEP)["experiments"]
    assert (exp["status"], exp["returncode"]) == ("failed", 127)
    assert "no-such-program-here" in Path(exp["log"]).read_text()


def test_each_next_experiment_starts_as_the_one_before_ends_and_is_recorded_then(project):
    """max_parallel 1: each next experiment starts as soon as the one before ends. It is
    recorded with the time it really started, its log's header says so, and one that cannot
    even be executed fails with 127 like any other."""
    project.spec(
        """
        name = "p"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        [scheduler]
        max_parallel = 1
        [[experiments]]
        name = "nap"
        command = "sleep 0.2"
        repeat = 3
        [[experiments]]
        name = "ghost"
        command = "./no-such-program-here"
        """
    )
    result = project.run("up", "sweep.toml")
    assert result.returncode == 1, result.stdout + result.stderr
    exps = project.status_json("p")["experiments"]
    assert [(e["status"], e["returncode"]) for e in exps] == [("succeeded", 0)] * 3 + [("failed", 127)]
    assert "no-such-program-here" in Path(exps[-1]["log"]).read_text()
    for before, after in itertools.pairwise(exps):
        assert before["ended_at"] <= after["started_at"] < before["ended_at"] + 0.5
    for exp in exps:
        header = Path(exp["log"]).read_text().splitlines()[2]
        match = re.fullmatch(rf"# pbtrun: {exp['name']}, attempt 1, started (\S+ \S+) on \S+", header)
        assert match, header
        when = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
        assert abs(when - exp["started_at"]) < 2, (header, exp["started_at"])


def test_status_json_fields_and_log_file(project):
    (project.root / "probe.py").write_text(PROBE)
    project.spec(
        sweep_spec(
            "python probe.py",
            'experiments_per_gpu = 1\n\n[[experiments]]\nname = "p"\ngrid = { lr = [0.001] }\n',
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "2")
    assert result.returncode == 0, result.stdout + result.stderr

    (exp,) = project.status_json(SWEEP)["experiments"]
    assert {"name", "status", "returncode", "gpus", "attempts", "argv", "log"} <= set(exp)
    assert exp["name"] == "00_p_lr_0.001"
    assert exp["status"] == "succeeded"
    assert exp["returncode"] == 0
    assert exp["gpus"] == [0]
    assert exp["attempts"] == 1
    assert exp["argv"] == [
        "python",
        "probe.py",
        "--lr=0.001",
        "--experiment=00_p_lr_0.001",
        f"--train_dir=train_dir/{SWEEP}/p_",
    ]

    log = Path(exp["log"])
    assert log.is_file()
    assert log.resolve().is_relative_to((project.root / "train_dir" / SWEEP).resolve())
    text = log.read_text()
    assert "PROBE-STDOUT-MARKER" in text
    assert "PROBE-STDERR-MARKER" in text
    assert "MARKER" not in result.stdout
    assert "MARKER" not in result.stderr


# --------------------------------------------------------------------------- environment


def test_a_bare_command_is_found_on_the_experiment_s_own_path(project):
    """A group's env PATH decides which program runs, as exec would search it; and a program
    that moves between two experiments is found again where it went."""
    bins = {}
    for name in ("first", "second", "third"):
        bins[name] = project.root / name
        bins[name].mkdir()
    (bins["first"] / "tool").write_text('#!/bin/sh\necho first > "$PBTRUN_EXPERIMENT.out"\n')
    (bins["second"] / "tool").write_text('#!/bin/sh\necho second > "$PBTRUN_EXPERIMENT.out"\n')
    (bins["second"] / "tool").chmod(0o755)  # first's is not executable: exec would skip it
    (bins["first"] / "mover").write_text(
        '#!/bin/sh\necho "moved from $0" > "$PBTRUN_EXPERIMENT.out"\n'
        'case "$0" in */first/*) mv "$0" third/mover;; esac\n'
    )
    (bins["first"] / "mover").chmod(0o755)
    path = f"{bins['first']}:{bins['second']}:{bins['third']}:/usr/bin:/bin"
    project.spec(
        f"""
        name = "p"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        [scheduler]
        max_parallel = 1
        [[experiments]]
        name = "tool"
        command = "tool"
        env = {{ PATH = "{path}" }}
        [[experiments]]
        name = "mover"
        command = "mover"
        env = {{ PATH = "{path}" }}
        repeat = 2
        """
    )
    result = project.run("up", "sweep.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "00_tool.out").read_text() == "second\n"
    first, second = sorted(p.read_text() for p in project.root.glob("*_mover.out"))
    assert first == f"moved from {bins['first']}/mover\n"
    assert second == f"moved from {bins['third']}/mover\n"  # found again where it had gone


def test_environment_interpreter_and_argv_reach_the_experiment(project):
    (project.root / "probe.py").write_text(PROBE)
    # A `python` on PATH that is not pbtrun's: if pbtrun ran it, the experiment would fail.
    fake_bin = project.root / "fake-bin"
    fake_bin.mkdir()
    for exe in ("python", "python3"):
        (fake_bin / exe).write_text("#!/bin/sh\necho 'the PATH python ran' >&2\nexit 99\n")
        (fake_bin / exe).chmod(0o755)
    project.spec(
        sweep_spec(
            "python probe.py",
            "experiments_per_gpu = 1\n\n"
            '[env]\nSWEEP_WIDE = "from [env]"\nSHARED = "top"\n\n'
            '[[experiments]]\nname = "a"\nenv = { GROUP_ONLY = "from group", SHARED = "group" }\n'
            'list = [{ note = "two words, \\"double\\" and \'single\' quotes" }]\n\n'
            '[[experiments]]\nname = "b"\ncommand = "python3 probe.py \'--quoted=x y\'"\n',
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "1", PATH=f"{fake_bin}:/usr/bin:/bin")
    assert result.returncode == 0, result.stdout + result.stderr

    status = by_name(project.status_json(SWEEP))
    sweep_dir = (project.root / "train_dir" / SWEEP).resolve()
    for name in status:
        seen = json.loads((project.root / f"probe-{name}.json").read_text())
        env = seen["env"]
        assert env["PBTRUN_EXPERIMENT"] == name
        assert Path(env["PBTRUN_SWEEP_DIR"]).resolve() == sweep_dir
        assert env["PBTRUN_ATTEMPT"] == "1"
        assert env["SWEEP_WIDE"] == "from [env]"
        assert seen["executable"] == sys.executable
        assert Path(seen["cwd"]).resolve() == project.root.resolve()
        # The log's header says what ran: the interpreter, not the word `python`.
        argv_line = next(x for x in Path(status[name]["log"]).read_text().splitlines() if x.startswith("# argv: "))
        assert argv_line.startswith(f"# argv: {shlex.quote(sys.executable)} probe.py"), argv_line

    (a_name,) = [n for n, e in status.items() if e["group"] == "a"]
    a = json.loads((project.root / f"probe-{a_name}.json").read_text())
    b = json.loads((project.root / "probe-00_b.json").read_text())
    assert a["env"]["GROUP_ONLY"] == "from group"
    assert b["env"]["GROUP_ONLY"] is None
    assert b["env"]["SHARED"] == "top"
    # One argument each, exactly as written: never re-split on spaces or quotes.
    assert a["argv"][0] == "--note=two words, \"double\" and 'single' quotes"
    assert b["argv"][0] == "--quoted=x y"


def test_attempt_number_counts_retries(project, recorder):
    project.spec(sweep_spec(recorder, '[[experiments]]\nname = "again"\nlist = [{ exit = 3 }]\n'))
    assert project.run("up", "sweep.toml", "--num-gpus", "0").returncode == 1
    result = project.run("resume", f"train_dir/{SWEEP}", "--retry-failed")
    assert result.returncode == 1, result.stdout + result.stderr
    starts = [r for r in project.records() if r["event"] == "start"]
    assert [r["attempt"] for r in starts] == ["1", "2"]
    (exp,) = project.status_json(SWEEP)["experiments"]
    assert (exp["attempts"], exp["returncode"], exp["status"]) == (2, 3, "failed")
    (stored,) = project.state(SWEEP)["experiments"]
    logs = [a["log"] for a in stored["attempts"]]
    assert len(set(logs)) == 2, f"each attempt gets its own log: {logs}"
    # status --json's history: every attempt that started, in order, the last one as the top level says.
    history = exp["history"]
    assert [h["number"] for h in history] == [1, 2]
    assert {tuple(sorted(h)) for h in history} == {
        (
            "end_state",
            "ended_at",
            "gpu_uuids",
            "gpus",
            "job_id",
            "log",
            "node",
            "number",
            "outcome",
            "returncode",
            "started_at",
        )
    }
    assert [(h["outcome"], h["returncode"], h["gpus"]) for h in history] == [("exited", 3, None), ("exited", 3, None)]
    assert history[-1]["log"] == exp["log"] and history[0]["log"] != exp["log"]
    assert all(Path(h["log"]).is_file() and h["started_at"] <= h["ended_at"] for h in history)
    assert (history[-1]["started_at"], history[-1]["ended_at"]) == (exp["started_at"], exp["ended_at"])


def test_param_with_spaces_and_quotes_is_one_argument(project, recorder):
    value = "a b \"c d\" 'e' ; echo $HOME"
    project.spec(
        sweep_spec(recorder, f'[[experiments]]\nname = "q"\nlist = [{{ note = {toml_str(value)} }}]\n'),
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    (start,) = [r for r in project.records() if r["event"] == "start"]
    assert start["argv"][0] == f"--note={value}"
    (exp,) = project.status_json(SWEEP)["experiments"]
    assert exp["argv"][2] == f"--note={value}"


# --------------------------------------------------------------------------- pacing


def test_pause_between_spaces_out_launches(project, recorder):
    pause_s = 0.3
    project.spec(
        sweep_spec(
            recorder,
            f"max_parallel = 4\npause_between = {pause_s}\n\n"
            '[[experiments]]\nname = "p"\ngrid = { seed = [1, 2, 3, 4] }\n',
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 0, result.stdout + result.stderr

    launched = sorted(e["started_at"] for e in project.status_json(SWEEP)["experiments"])
    gaps = [b - a for a, b in itertools.pairwise(launched)]
    assert len(gaps) == 3
    assert all(gap >= pause_s * 0.9 for gap in gaps), gaps

    starts = sorted(r["t"] for r in project.records() if r["event"] == "start")
    seen_gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= pause_s * 0.5 for gap in seen_gaps), seen_gaps  # process start-up jitter


@pytest.mark.parametrize("sep", ["_", "-"], ids=["underscores", "dashes"])
def test_scheduler_flags_in_both_spellings_end_to_end(project, recorder, sep):
    """The old launcher's underscore spellings (--num_gpus, --train_dir, ...) work as the dashed
    ones do: on up, which also takes the train dir, and on resume, which changes the settings."""

    def flag(name: str) -> str:
        return "--" + name.replace("_", sep)

    project.spec(
        sweep_spec(
            recorder,
            '[[experiments]]\nname = "f"\nlist = [{ n = 1 }, { n = 2 }, { n = 3, fail_first = 3 }, { n = 4 }]\n',
            scheduler="max_parallel = 4\n",
        )
    )
    first = project.run(
        "up",
        "sweep.toml",
        *(flag("num_gpus"), "2", flag("experiments_per_gpu"), "1", flag("max_parallel"), "2"),
        *(flag("pause_between"), "0.01", flag("train_dir"), "runs"),
    )
    assert first.returncode == 1, first.stdout + first.stderr  # n = 3 fails its first attempt
    assert not (project.root / "train_dir").exists()
    settings = project.state(SWEEP, train_dir="runs")["sweep"]["settings"]
    assert settings == {
        "gpus": [0, 1],
        "max_parallel": 2,
        "experiments_per_gpu": 1,
        "pause_between_s": 0.01,
        "max_failures": None,
        "gpus_per_experiment": 1,
        "placement": "count",
        "min_free_memory_gb": None,
        "memory_settle_s": 30.0,
        "exclude_busy_gpus": False,
    }
    starts = [r for r in project.records() if r["event"] == "start"]
    assert len(starts) == 4 and {r["gpus"] for r in starts} <= {"0", "1"}
    assert all(any(a.startswith(f"--train_dir=runs/{SWEEP}/f_") for a in r["argv"]) for r in starts)

    again = project.run(
        "resume",
        f"runs/{SWEEP}",
        "--retry-failed",
        *(flag("num_gpus"), "1", flag("experiments_per_gpu"), "1"),
        *(flag("max_parallel"), "1", flag("pause_between"), "0"),
    )
    assert again.returncode == 0, again.stdout + again.stderr
    settings = project.state(SWEEP, train_dir="runs")["sweep"]["settings"]
    assert settings == {
        "gpus": [0],
        "max_parallel": 1,
        "experiments_per_gpu": 1,
        "pause_between_s": 0.0,
        "max_failures": None,
        "gpus_per_experiment": 1,
        "placement": "count",
        "min_free_memory_gb": None,
        "memory_settle_s": 30.0,
        "exclude_busy_gpus": False,
    }
    (retried,) = [r for r in project.records() if r["event"] == "start"][4:]
    assert (retried["attempt"], retried["gpus"]) == ("2", "0")


def test_pause_between_flag_overrides_spec(project, recorder):
    project.spec(
        sweep_spec(
            recorder,
            'max_parallel = 3\npause_between = 0\n\n[[experiments]]\nname = "p"\ngrid = { seed = [1, 2, 3] }\n',
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "0", "--pause-between", "0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    launched = sorted(e["started_at"] for e in project.status_json(SWEEP)["experiments"])
    assert all(b - a >= 0.27 for a, b in itertools.pairwise(launched)), launched


def test_freed_slot_is_refilled_without_delay(project, recorder):
    """max_parallel 1, ten instant experiments: finishes promptly (catches a hang, not a benchmark)."""
    project.spec(
        sweep_spec(
            recorder,
            'max_parallel = 1\n\n[[experiments]]\nname = "quick"\n'
            "grid = { seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], sleep = [0] }\n",
        )
    )
    began = time.monotonic()
    result = project.run("up", "sweep.toml", "--num-gpus", "0", timeout=30)
    took_s = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    assert took_s < 10, f"10 instant experiments took {took_s:.1f} s"

    spans = intervals(project.records())
    assert len(spans) == 10
    assert max_overlap((a, b) for a, b, _ in spans.values()) == 1
    # Launched in spec order, one after the other.
    order = [name for name, _ in sorted(spans.items(), key=lambda item: item[1][0])]
    assert order == sorted(order)


# --------------------------------------------------------------------------- progress lines


def test_plain_progress_lines_name_starts_gpus_and_failed_logs(project, recorder):
    project.spec(
        sweep_spec(
            recorder,
            'experiments_per_gpu = 1\nmax_parallel = 2\n\n[[experiments]]\nname = "pr"\n'
            "list = [{ exit = 0 }, { exit = 4 }, { exit = 0 }]\n",
        )
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "\x1b[" not in result.stdout, "colour codes on a stdout that is not a terminal"

    status = by_name(project.status_json(SWEEP))
    launches = dict(started_lines(result.stdout))
    assert set(launches) == set(status), result.stdout
    for name, gpu in launches.items():
        assert status[name]["gpus"] == [gpu]

    failed = "01_pr_exi_4"
    log = Path(status[failed]["log"])
    lines = [line for line in result.stdout.splitlines() if failed in line and "started" not in line]
    assert lines, result.stdout
    assert any(str(log) in line or str(log.relative_to(project.root.resolve())) in line for line in lines), lines
    # Succeeded experiments' log paths are not announced as failures.
    for name in ("00_pr_exi_0", "02_pr_exi_0"):
        assert status[name]["log"] not in result.stdout
