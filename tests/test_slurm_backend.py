"""The Slurm backend against a real Slurm (``scripts/local-slurm.sh``; skipped, saying how to
start one, where none answers): true return codes, job ids and nodes in ``status --json``,
throttled arrays, and a scheduler killed while its jobs run, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_scheduler import intervals, max_overlap

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def on_slurm(slurm, project):
    """Run pbtrun (and the jobs it submits, which inherit its environment) against the local
    Slurm, with this checkout importable on the node."""
    extra = {**slurm, "PYTHONPATH": str(ROOT)}
    original = project.env

    def env(**more: str) -> dict[str, str]:
        return original(**{**extra, **more})

    project.env = env
    return project


def slurm_spec(recorder: str, groups: str, slurm: str = "", top: str = "") -> str:
    return f'name = "s"\nbackend = "slurm"\ncommand = "{recorder}"\n{top}\n[slurm]\npoll_s = 0.5\n{slurm}\n{groups}'


def by_name(document: dict) -> dict[str, dict]:
    return {e["name"]: e for e in document["experiments"]}


def test_a_sweep_on_slurm_records_true_return_codes_job_ids_and_nodes(on_slurm, recorder):
    project = on_slurm
    project.spec(
        slurm_spec(recorder, '[[experiments]]\nname = "e"\nlist = [{ exit = 0 }, { exit = 0 }, { exit = 3 }]\n')
    )
    result = project.run("up", "sweep.toml", "--plain", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    status = by_name(project.status_json("s"))
    assert sorted(e["returncode"] for e in status.values()) == [0, 0, 3]
    for exp in status.values():
        assert exp["job_id"] and "_" in exp["job_id"], exp
        assert exp["node"] == "localhost"
        assert exp["history"][-1]["job_id"] == exp["job_id"]
    jobs = {e["job_id"].split("_")[0] for e in status.values()}
    assert len(jobs) == 1, f"one array for the three: {jobs}"
    log = Path(status[next(n for n, e in status.items() if e["returncode"] == 3)]["log"]).read_text()
    assert log.startswith("# pbtrun exit: ") and "# argv: " in log


def test_max_submitted_throttles_the_array(on_slurm, recorder):
    project = on_slurm
    groups = '[[experiments]]\nname = "t"\ngrid = { k = [1, 2, 3, 4, 5], sleep = [1.5] }\n'
    project.spec(slurm_spec(recorder, groups, "max_submitted = 2"))
    result = project.run("up", "sweep.toml", "--plain", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(project.records())
    assert len(spans) == 5
    assert max_overlap((a, b) for a, b, _ in spans.values()) <= 2


def test_killed_scheduler_then_resume_submits_nothing_twice(on_slurm, recorder):
    project = on_slurm
    groups = '[[experiments]]\nname = "k"\ngrid = { k = [1, 2, 3], sleep = [3] }\n'
    project.spec(slurm_spec(recorder, groups))
    up = project.start("up", "sweep.toml", "--plain")

    def submitted():
        result = project.run("status", "train_dir/s", "--json")
        if result.returncode != 0:
            return False
        document = json.loads(result.stdout)
        return "experiments" in document and all(e["job_id"] for e in document["experiments"])

    project.wait_for(submitted, timeout=60)
    os.killpg(up.pid, signal.SIGKILL)
    up.wait()
    time.sleep(0.5)
    again = project.run("resume", "train_dir/s", "--plain", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    spans = intervals(project.records())  # each experiment started exactly once, and ended
    assert len(spans) == 3
    status = by_name(project.status_json("s"))
    assert all(e["status"] == "succeeded" and e["attempts"] == 1 for e in status.values())


def test_gpus_per_experiment_asks_slurm_for_gpus(on_slurm, recorder):
    project = on_slurm
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "g"\n', top="[scheduler]\ngpus_per_experiment = 2\n"))
    result = project.run("up", "sweep.toml", "--plain", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (start,) = [r for r in project.records() if r["event"] == "start"]
    assert start["gpus"] is not None and len(start["gpus"].split(",")) == 2


def test_scheduler_keys_that_mean_nothing_on_slurm_are_refused(project, recorder):
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "e"\n', top="[scheduler]\nnum_gpus = 2\n"))
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 2 and "scheduler.num_gpus" in result.stderr and "gpus_per_experiment" in result.stderr
    project.spec('name = "l"\ncommand = "true"\n[slurm]\npartition = "gpu"\n[[experiments]]\nname = "e"\n')
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 2 and 'backend = "slurm"' in result.stderr and "line 3" in result.stderr
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "e"\n', "partion = 1"))
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 2 and "slurm.partion" in result.stderr and "partition" in result.stderr


def test_a_crash_between_sbatch_and_its_record_submits_nothing_twice(on_slurm, recorder):
    """The scheduler is killed after sbatch; then its job ids are taken out of the state and of
    slurm/submitted.jsonl, as if it had died before recording them (the attempts keep the tags
    they were given before sbatch). Resume finds the jobs by the manifest their --comment names,
    adopts them, and every experiment runs once."""
    project = on_slurm
    groups = '[[experiments]]\nname = "c"\ngrid = { k = [1, 2], sleep = [3] }\n'
    project.spec(slurm_spec(recorder, groups))
    up = project.start("up", "sweep.toml", "--plain")
    sweep_dir = project.root / "train_dir" / "s"

    def submitted():
        path = sweep_dir / "slurm" / "submitted.jsonl"
        return path.exists() and path.read_text().strip()

    project.wait_for(submitted, timeout=60)
    time.sleep(0.3)  # the scheduler records the job ids right after submitted.jsonl
    os.killpg(up.pid, signal.SIGKILL)
    up.wait()
    (sweep_dir / "slurm" / "submitted.jsonl").unlink()
    (manifest,) = sweep_dir.glob("slurm/*.json")
    document = json.loads(manifest.read_text())
    tag_of = {task["id"]: tag for task, tag in zip(document["tasks"], document["tags"], strict=True)}
    state = json.loads((sweep_dir / "pbtrun.json").read_text())
    journal = sweep_dir / "pbtrun.journal"
    if journal.exists():  # fold it first: the state read through pbtrun sees the journal too
        state = project.state("s")
        journal.unlink()
    for exp in state["experiments"]:
        assert exp["attempts"][-1]["ref"] != tag_of[exp["id"]], "the job id was recorded"
        exp["attempts"][-1]["ref"] = tag_of[exp["id"]]
    (sweep_dir / "pbtrun.json").write_text(json.dumps(state))
    again = project.run("resume", "train_dir/s", "--plain", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(intervals(project.records())) == 2  # each started once, and ended
    status = by_name(project.status_json("s"))
    assert all(e["status"] == "succeeded" and e["attempts"] == 1 and "_" in e["job_id"] for e in status.values())


def _status(project) -> dict:
    return by_name(project.status_json("s"))


def test_detach_then_status_then_resume(on_slurm, recorder):
    """--detach submits, records the job ids and exits 0; the jobs run on; resume follows them
    to their end, starting nothing twice."""
    project = on_slurm
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "d"\ngrid = { k = [1, 2], sleep = [2] }\n'))
    detached = project.run("up", "sweep.toml", "--plain", "--detach", timeout=60)
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert "pbtrun resume" in detached.stdout
    status = _status(project)
    assert all(e["status"] == "running" and e["job_id"] for e in status.values())
    for exp in status.values():  # no scheduler watches: status asked Slurm, once
        seen = exp["observed"]
        assert seen["state"] == "ended" or seen["detail"].startswith("Slurm: "), seen
    table = project.run("status", "train_dir/s")
    assert "Slurm: " in table.stdout or "not yet recorded" in table.stdout, table.stdout
    again = project.run("resume", "train_dir/s", "--plain", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(intervals(project.records())) == 2
    assert all(e["status"] == "succeeded" and e["attempts"] == 1 for e in _status(project).values())


def test_ctrl_c_detaches_and_stop_cancels_the_jobs(on_slurm, recorder):
    """Ctrl-C on a watching up leaves the jobs running (exit 130); `pbtrun stop` with no scheduler
    cancels them and records them interrupted; resume runs them again."""
    project = on_slurm
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "c"\ngrid = { k = [1, 2], sleep = [30] }\n'))
    up = project.start("up", "sweep.toml", "--plain")
    project.wait_for(lambda: len([r for r in project.records() if r["event"] == "start"]) == 2, timeout=60)
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=30)
    assert up.returncode == 130, out + err
    assert "detached" in out and "pbtrun stop" in out
    assert all(e["status"] == "running" for e in _status(project).values())
    stopped = project.run("stop", "train_dir/s", timeout=120)
    assert stopped.returncode == 0 and "cancelled" in stopped.stdout, stopped.stdout + stopped.stderr
    assert all(e["status"] == "interrupted" for e in _status(project).values())


def test_cancel_on_interrupt_cancels_instead(on_slurm, recorder):
    project = on_slurm
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "x"\ngrid = { k = [1], sleep = [30] }\n'))
    up = project.start("up", "sweep.toml", "--plain", "--cancel-on-interrupt")
    project.wait_for(lambda: any(r["event"] == "start" for r in project.records()), timeout=60)
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=90)
    assert up.returncode == 130, out + err
    assert all(e["status"] == "interrupted" for e in _status(project).values())


def test_backend_flag_overrides_the_spec(on_slurm, recorder):
    project = on_slurm
    project.spec(f'name = "s"\ncommand = "{recorder}"\n[slurm]\npoll_s = 0.5\n[[experiments]]\nname = "f"\n')
    result = project.run("up", "sweep.toml", "--plain", "--backend", "slurm", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    (exp,) = _status(project).values()
    assert exp["job_id"] and exp["status"] == "succeeded"
    bad = project.run("up", "sweep.toml", "--backend", "pbs")
    assert bad.returncode == 2 and "--backend 'pbs'" in bad.stderr


def test_a_job_cancelled_by_hand_is_recorded_with_its_true_end(on_slurm, recorder):
    """`scancel` run by a person (not pbtrun) on a running job: the experiment gets SIGTERM, and
    pbtrun records the exit status the experiment really had (-15: a failure, not a stop of its)."""
    project = on_slurm
    project.spec(slurm_spec(recorder, '[[experiments]]\nname = "h"\ngrid = { k = [1], sleep = [30] }\n'))
    up = project.start("up", "sweep.toml", "--plain")
    project.wait_for(lambda: any(r["event"] == "start" for r in project.records()), timeout=60)
    (exp,) = _status(project).values()
    subprocess.run(["scancel", exp["job_id"]], env={**os.environ, **project.env()}, check=True)
    out, err = up.communicate(timeout=60)
    assert up.returncode == 1, out + err
    (exp,) = _status(project).values()
    assert (exp["status"], exp["returncode"], exp["end_state"]) == ("failed", -15, "CANCELLED")
    assert "Slurm: CANCELLED" in project.run("status", "train_dir/s").stdout
