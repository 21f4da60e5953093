"""Uneven durations, as real runs have: no slot or GPU stays idle while an experiment waits.

Checked from the experiments' own start and end records (a shell script: no interpreter
start-up between the launch and the record, which on a loaded machine blurs them): after
every end, once a short reaction time has passed, either nothing waits any more or every slot
(and, pinned, every GPU) it could use is taken. Also: the experiments start in spec order, and
the makespan is that of a greedy list scheduler (what ``xargs -P`` achieves), not more.
"""

from __future__ import annotations

import os
import signal
import time

from conftest import Project

REACT_S = 0.35  # an end to the next start, generously: the machine is shared with other tests
UNIT_S = 0.2


JOB = """#!/bin/sh
for arg; do case $arg in --sleep=*) s=${arg#--sleep=};; esac; done
echo "start $PBTRUN_EXPERIMENT ${CUDA_VISIBLE_DEVICES:--} $(date +%s.%N)" >> record.txt
sleep "$s"
echo "end $PBTRUN_EXPERIMENT ${CUDA_VISIBLE_DEVICES:--} $(date +%s.%N)" >> record.txt
"""


def _spec(project: Project, units: list[int], max_parallel: int, gpus: str = "") -> None:
    job = project.root / "job.sh"
    job.write_text(JOB)
    job.chmod(0o755)
    rows = ", ".join(f"{{ seed = {i}, sleep = {u * UNIT_S:g} }}" for i, u in enumerate(units))
    project.spec(
        f"""
        name = "uneven"
        command = "./job.sh"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        [scheduler]
        max_parallel = {max_parallel}
        {gpus}
        [[experiments]]
        name = "job"
        list = [{rows}]
        """
    )


def _records(project: Project) -> list[tuple[str, str, str, float]]:
    """(event, name, gpus, time) as the jobs wrote them."""
    path = project.root / "record.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(e, n, g, float(t)) for e, n, g, t in (line.split() for line in lines)]


def _spans(project: Project) -> dict[str, tuple[float, float, str | None]]:
    """name -> (start, end, gpus) of each experiment's last attempt."""
    records = _records(project)
    starts = {n: (t, None if g == "-" else g) for e, n, g, t in records if e == "start"}
    ends = {n: t for e, n, _, t in records if e == "end"}
    return {n: (t, ends[n], g) for n, (t, g) in starts.items() if n in ends}


def _assert_never_idle_while_waiting(
    spans: dict[str, tuple[float, float, str | None]],
    max_parallel: int,
    per_gpu: dict[str, int] | None = None,
    since: float = 0.0,
) -> None:
    """After each end (plus REACT_S, from ``since`` on), nothing waits, or no slot it could take is free."""
    for _, end, _ in spans.values():
        at = end + REACT_S
        if at < since:
            continue
        waiting = [n for n, (s, _, _) in spans.items() if s > at]
        if not waiting:
            continue
        running = [(n, g) for n, (s, e, g) in spans.items() if s <= at < e]
        free_slot = len(running) < max_parallel
        if per_gpu is not None:
            load = {gpu: sum(1 for _, g in running if g == gpu) for gpu in per_gpu}
            free_slot = free_slot and any(load[gpu] < limit for gpu, limit in per_gpu.items())
        assert not free_slot, (
            f"{waiting} waited at t+{at - min(s for s, _, _ in spans.values()):.2f}s while a slot was free "
            f"(running: {running})"
        )


def _greedy_makespan(units: list[int], slots: int) -> float:
    """What a list scheduler taking jobs in order into the first free slot achieves."""
    free_at = [0.0] * slots
    for u in units:
        i = free_at.index(min(free_at))
        free_at[i] += u * UNIT_S
    return max(free_at)


def _run_and_check(project: Project, units: list[int], max_parallel: int) -> None:
    _spec(project, units, max_parallel)
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = _spans(project)
    assert len(spans) == len(units)
    _assert_never_idle_while_waiting(spans, max_parallel)
    launched = [e["started_at"] for e in project.status_json("uneven")["experiments"]]
    assert launched == sorted(launched)  # in spec order (a burst's processes may start in any order)
    makespan = max(e for _, e, _ in spans.values()) - min(s for s, _, _ in spans.values())
    assert makespan < _greedy_makespan(units, max_parallel) + 2 * REACT_S, makespan


def test_one_long_job_among_short_ones_holds_only_its_own_slot(project):
    """The issue's case: the last experiment must not wait for the long one to end."""
    _run_and_check(project, [1, 1, 1, 9, 3, 3, 3, 3, 3], max_parallel=4)


def test_a_heavy_tail_and_long_jobs_last(project):
    _run_and_check(project, [1, 1, 2, 1, 1, 6, 1, 1, 1, 1, 5, 6], max_parallel=3)


def test_a_freed_gpu_takes_the_next_experiment_at_once(project):
    """Pinned, one experiment per GPU: the GPU that frees first is the one the next one gets."""
    units = [6, 1, 1, 1, 1, 1]
    _spec(project, units, 4, gpus="num_gpus = 2\nexperiments_per_gpu = 1")
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = _spans(project)
    _assert_never_idle_while_waiting(spans, 4, per_gpu={"0": 1, "1": 1})
    assert [spans[n][2] for n in sorted(spans)] == ["0", "1", "1", "1", "1", "1"]


def test_after_resume_adopted_experiments_hold_only_their_own_gpus(project):
    """Long experiments adopted on GPUs 1 and 3 of four: the waiting ones take the other GPUs at
    once, and each adopted GPU as soon as its experiment ends."""
    units = [1, 12, 1, 12, 3, 3, 3, 3, 3, 3]
    _spec(project, units, 4, gpus="num_gpus = 4\nexperiments_per_gpu = 1")
    proc = project.start("up", "sweep.toml", "--plain")
    project.wait_for(lambda: sum(r[0] == "end" for r in _records(project)) >= 2, timeout=20)
    os.kill(proc.pid, signal.SIGKILL)  # the scheduler dies: the two long ones run on, orphaned
    proc.wait(timeout=10)
    time.sleep(0.3)
    resumed_at = time.time()  # freed GPUs stay idle until then, with no scheduler: not counted
    resumed = project.run("resume", "train_dir/uneven", "--plain")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "adopted" in resumed.stdout
    spans = _spans(project)
    assert len(spans) == len(units)
    _assert_never_idle_while_waiting(spans, 4, per_gpu={g: 1 for g in "0123"}, since=resumed_at + 0.5)


def test_experiments_added_to_a_running_sweep_start_while_a_slot_is_free(project):
    _spec(project, [15], max_parallel=2)
    proc = project.start("up", "sweep.toml", "--plain")
    project.wait_for(lambda: _records(project), timeout=20)
    _spec(project, [15, 1], max_parallel=2)
    added = project.run("up", "sweep.toml", "--plain")
    assert added.returncode == 3, added.stdout + added.stderr  # a scheduler runs it: it was woken
    added_at = time.time()
    project.wait_for(lambda: len([r for r in _records(project) if r[0] == "start"]) == 2, timeout=10)
    second = [r for r in _records(project) if r[0] == "start"][1]
    assert second[3] - added_at < REACT_S + 0.5
    assert [r[0] for r in _records(project) if r[1].startswith("00_")] == ["start"]  # the first still runs
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=20)
