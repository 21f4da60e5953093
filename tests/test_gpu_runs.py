"""GPU awareness through real sweeps (issue 20): the GPUs a user was given, several GPUs per
experiment, placement by free memory, and why experiments wait.

No GPU here: the inventory is a recorded-inventory file (``PBTRUN_GPU_SOURCE=<file>``, the
format ``pbtrun gpus --json`` prints), which these tests construct and rewrite; the inventory
is re-read from it as it would be from NVML. Experiments are real processes that record the
``CUDA_VISIBLE_DEVICES`` they were given (tests/data/recorder.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_scheduler import by_name, intervals, max_overlap, sweep_spec

SWEEP = "s"
UUIDS = [f"GPU-{n}{n}{n}{n}aaaa-0000-0000-0000-00000000000{n}" for n in range(4)]
GB = 1024  # MB


def inventory(path: Path, free_gb: list[float], processes: dict[int, list[int]] | None = None) -> str:
    """Write a constructed inventory of len(free_gb) 48 GB GPUs with that much free each (not
    recorded from a driver: these tests choose the numbers); ``processes``: GPU -> pids on it."""
    gpus = []
    for i, free in enumerate(free_gb):
        total = 48 * GB
        pids = (processes or {}).get(i, [])
        gpus.append(
            {
                "index": i,
                "uuid": UUIDS[i],
                "name": "Constructed GPU",
                "memory_total_mb": total,
                "memory_used_mb": total - round(free * GB),
                "utilization_pct": 0,
                "processes": [{"pid": pid, "used_memory_mb": 1000} for pid in pids],
            }
        )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"source": "nvml", "gpus": gpus}))
    os.replace(tmp, path)  # the scheduler may read it at any moment: never half written
    return str(path)


def spec(recorder: str, scheduler: str, groups: str = '[[experiments]]\nname = "e"\ngrid = { k = [1, 2, 3, 4] }\n'):
    return sweep_spec(recorder, groups, scheduler=scheduler)


# --------------------------------------------------------------------------- the GPUs you were given


def test_an_inherited_cuda_visible_devices_is_where_experiments_run(project, recorder):
    """The issue's own case: CUDA_VISIBLE_DEVICES=2,5, num_gpus = 2, one per GPU: the experiments
    run on 2 and 5, never on 0 and 1; without a driver, too."""
    project.spec(spec(recorder, "num_gpus = 2\nexperiments_per_gpu = 1\n"))
    result = project.run("up", "sweep.toml", "--plain", CUDA_VISIBLE_DEVICES="2,5", PBTRUN_GPU_SOURCE="none")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = {r["gpus"] for r in project.records() if r["event"] == "start"}
    assert seen == {"2", "5"}
    assert "GPUs: 2" in result.stdout and "CUDA_VISIBLE_DEVICES=2,5" in result.stdout
    status = by_name(project.status_json(SWEEP))
    assert {tuple(e["gpus"]) for e in status.values()} == {(2,), (5,)}


def test_uuids_are_given_back_as_the_user_spelled_them(project, recorder, tmp_path):
    """Given GPUs by UUID prefix, experiments get those UUIDs (CUDA reads them as the same GPUs),
    and the state records indices and UUIDs."""
    source = inventory(tmp_path / "gpus.json", [40, 40, 40, 40])
    project.spec(spec(recorder, "experiments_per_gpu = 1\n"))
    given = f"{UUIDS[3][:12]},{UUIDS[1][:12]}"
    result = project.run("up", "sweep.toml", "--plain", CUDA_VISIBLE_DEVICES=given, PBTRUN_GPU_SOURCE=source)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = {r["gpus"] for r in project.records() if r["event"] == "start"}
    assert seen == {UUIDS[3][:12], UUIDS[1][:12]}
    for exp in project.status_json(SWEEP)["experiments"]:
        (index,) = exp["gpus"]
        assert index in (1, 3) and exp["gpu_uuids"] == [UUIDS[index]]
        assert exp["history"][-1]["gpu_uuids"] == [UUIDS[index]]


def test_more_gpus_than_given_is_refused_with_the_numbers(project, recorder):
    project.spec(spec(recorder, "num_gpus = 4\nexperiments_per_gpu = 1\n"))
    result = project.run("up", "sweep.toml", "--plain", CUDA_VISIBLE_DEVICES="2,5", PBTRUN_GPU_SOURCE="none")
    assert result.returncode == 2
    assert "num_gpus = 4" in result.stderr and "2, 5" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project.root / "train_dir" / SWEEP / "pbtrun.json").exists()


# --------------------------------------------------------------------------- several GPUs per experiment


def test_two_gpus_per_experiment_never_share_and_spread(project, recorder):
    """gpus_per_experiment = 2 on 4 GPUs: each experiment sees two distinct GPUs, two run at once,
    and no GPU ever holds two experiments."""
    groups = '[[experiments]]\nname = "e"\ngrid = { k = [1, 2, 3, 4, 5, 6], sleep = [0.2] }\n'
    project.spec(spec(recorder, "gpus_per_experiment = 2\nmax_parallel = 8\n", groups))
    result = project.run("up", "sweep.toml", "--plain", "--num-gpus", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(project.records())
    for _, _, start in spans.values():
        gpus = start["gpus"].split(",")
        assert len(gpus) == 2 and len(set(gpus)) == 2 and set(gpus) <= {"0", "1", "2", "3"}
    for gpu in "0123":
        on_gpu = [(a, b) for a, b, r in spans.values() if gpu in r["gpus"].split(",")]
        assert on_gpu and max_overlap(on_gpu) <= 1, gpu
    assert max_overlap((a, b) for a, b, _ in spans.values()) <= 2


def test_a_group_asking_for_more_gpus_than_exist_is_refused_at_its_line(project, recorder):
    groups = '[[experiments]]\nname = "small"\n\n[[experiments]]\nname = "big"\ngpus_per_experiment = 3\n'
    text = spec(recorder, "num_gpus = 2\n", groups)
    project.spec(text)
    line = text.splitlines().index("gpus_per_experiment = 3") + 1
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 2
    assert f"line {line}:" in result.stderr and "gpus_per_experiment = 3" in result.stderr
    assert "the sweep has 2 (0, 1)" in result.stderr


def test_a_big_experiment_is_not_starved_and_small_ones_use_the_other_gpus(project, recorder):
    """4 GPUs, one experiment per GPU, the first four ending one by one: a 2-GPU experiment behind
    them starts as soon as two GPUs have freed, not after the 1-GPU experiments behind it, which
    would otherwise take each GPU as it frees; those use the other GPUs meanwhile."""
    groups = (
        '[[experiments]]\nname = "a"\ngrid = { sleep = [0.2, 0.6, 1.2, 1.6] }\n\n'
        '[[experiments]]\nname = "big"\ngpus_per_experiment = 2\ngrid = { sleep = [0.3] }\n\n'
        '[[experiments]]\nname = "z"\ngrid = { k = [1, 2, 3, 4], sleep = [0.3] }\n'
    )
    project.spec(spec(recorder, "experiments_per_gpu = 1\nmax_parallel = 4\n", groups))
    result = project.run("up", "sweep.toml", "--plain", "--num-gpus", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(project.records())
    (big,) = [name for name in spans if "_big" in name]
    z_starts = [a for name, (a, _, _) in spans.items() if "_z" in name]
    assert len(spans[big][2]["gpus"].split(",")) == 2
    assert spans[big][0] < min(z_starts), "a 1-GPU experiment behind it took a GPU it was waiting for"
    for gpu in "0123":
        on_gpu = [(a, b) for a, b, r in spans.values() if gpu in r["gpus"].split(",")]
        assert max_overlap(on_gpu) <= 1, gpu


# --------------------------------------------------------------------------- placement by memory


def test_memory_placement_waits_says_why_and_starts_when_memory_frees(project, recorder, tmp_path):
    """No GPU has 20 GB free: the experiment waits, the plain output and `status` say why; once
    the foreign memory is freed (the inventory file rewritten), it starts on that GPU."""
    source = tmp_path / "gpus.json"
    inventory(source, [4, 6])
    groups = '[[experiments]]\nname = "e"\ngrid = { k = [1] }\n'
    project.spec(spec(recorder, 'placement = "memory"\nmin_free_memory_gb = 20\n', groups))
    proc = project.start("up", "sweep.toml", "--plain", PBTRUN_GPU_SOURCE=str(source))
    status_path = f"train_dir/{SWEEP}"

    def waiting():
        result = project.run("status", status_path, "--json")
        return result.returncode == 0 and json.loads(result.stdout).get("sweep", {}).get("waiting")

    reason = project.wait_for(waiting, timeout=30)
    assert reason == "no GPU with 20 GB free"
    text = project.run("status", status_path)
    assert "waiting: no GPU with 20 GB free" in text.stdout
    assert not project.records()
    inventory(source, [4, 30])  # the foreign process on GPU 1 exited
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "waiting: no GPU with 20 GB free" in out
    (start,) = [r for r in project.records() if r["event"] == "start"]
    assert start["gpus"] == "1"


def test_memory_promised_to_a_launch_keeps_the_next_one_off_that_gpu(project, recorder, tmp_path):
    """Two GPUs with 30 and 25 GB free, 20 GB each: the first experiment goes to the emptier GPU,
    and the second to the other although the reading (not yet showing the first's memory) still
    says the first GPU has more free."""
    source = inventory(tmp_path / "gpus.json", [30, 25])
    groups = '[[experiments]]\nname = "e"\ngrid = { k = [1, 2], sleep = [0.5] }\n'
    # One launch per round (pause_between): the second is placed after the first was promised.
    scheduler = 'placement = "memory"\nmin_free_memory_gb = 20\nmax_parallel = 2\npause_between = 0.1\n'
    project.spec(spec(recorder, scheduler, groups))
    result = project.run("up", "sweep.toml", "--plain", PBTRUN_GPU_SOURCE=source)
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(project.records())
    by_gpu = {r["gpus"]: (a, b) for a, b, r in spans.values()}
    assert set(by_gpu) == {"0", "1"}
    assert max_overlap(by_gpu.values()) == 2  # both ran at once, each on its own GPU


def test_exclude_busy_gpus_skips_a_gpu_with_a_foreign_process(project, recorder, tmp_path):
    """GPU 0 runs a process pbtrun did not start (a real one: this test's child): every
    experiment runs on GPU 1."""
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        source = inventory(tmp_path / "gpus.json", [40, 40], processes={0: [foreign.pid]})
        project.spec(spec(recorder, "experiments_per_gpu = 2\nexclude_busy_gpus = true\n"))
        result = project.run("up", "sweep.toml", "--plain", PBTRUN_GPU_SOURCE=source)
        assert result.returncode == 0, result.stdout + result.stderr
        assert {r["gpus"] for r in project.records() if r["event"] == "start"} == {"1"}
    finally:
        foreign.kill()
        foreign.wait()


# --------------------------------------------------------------------------- the spec's keys


def test_gpu_keys_are_checked_at_their_line(project, recorder):
    cases = [
        ('placement = "mem"', "scheduler.placement", '"count"'),
        ("min_free_memory_gb = 20", "scheduler.min_free_memory_gb", 'placement = "memory"'),
        ("exclude_busy_gpus = 1", "scheduler.exclude_busy_gpus", "true or false"),
        ("gpus_per_experiment = 0", "scheduler.gpus_per_experiment", "must be 1 to"),
        ('placement = "memory"\nmemory_settle_s = -1', "scheduler.memory_settle_s", "must be 0 to"),
    ]
    for line, key, words in cases:
        project.spec(spec(recorder, line + "\n"))
        result = project.run("up", "sweep.toml", "--plain")
        assert result.returncode == 2, (line, result.stderr)
        assert key in result.stderr and words in result.stderr and "line " in result.stderr, (line, result.stderr)
        assert "Traceback" not in result.stderr


def test_settings_of_a_sweep_written_before_gpu_placement_read_as_defaults(project, recorder):
    """A format-2 state whose settings lack the new keys (written by the previous development
    release) resumes with count placement, one GPU per experiment."""
    project.spec(spec(recorder, "", '[[experiments]]\nname = "e"\n'))
    assert project.run("up", "sweep.toml", "--plain").returncode == 0
    state_file = project.root / "train_dir" / SWEEP / "pbtrun.json"
    data = json.loads(state_file.read_text())
    for key in ("gpus_per_experiment", "placement", "min_free_memory_gb", "memory_settle_s", "exclude_busy_gpus"):
        del data["sweep"]["settings"][key]
    for exp in data["experiments"]:
        exp["status"] = "pending"
        exp["attempts"] = []
    state_file.write_text(json.dumps(data))
    (project.root / "train_dir" / SWEEP / "pbtrun.journal").unlink(missing_ok=True)
    result = project.run("resume", f"train_dir/{SWEEP}", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    settings = project.state(SWEEP)["sweep"]["settings"]
    assert settings["placement"] == "count" and settings["gpus_per_experiment"] == 1


def test_resume_where_other_gpus_were_given_refuses_then_takes_them_when_asked(project, recorder):
    """A sweep that ran on GPUs 2 and 5, resumed in an allocation given GPUs 0 and 1: refused
    (it would run on GPUs that are not the user's), nothing started; with --num-gpus 2 it runs
    on 0 and 1."""
    groups = '[[experiments]]\nname = "e"\nlist = [{ exit = 3 }]\n'
    project.spec(spec(recorder, "experiments_per_gpu = 1\n", groups))
    first = project.run("up", "sweep.toml", "--plain", CUDA_VISIBLE_DEVICES="2,5")
    assert first.returncode == 1, first.stdout + first.stderr
    (start,) = [r for r in project.records() if r["event"] == "start"]
    assert start["gpus"] in ("2", "5")
    refused = project.run("resume", f"train_dir/{SWEEP}", "--retry-failed", "--plain", CUDA_VISIBLE_DEVICES="0,1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "runs on GPUs 2, 5" in refused.stderr and "--num-gpus" in refused.stderr
    assert "Traceback" not in refused.stderr and len(project.records()) == 2
    again = project.run(
        "resume", f"train_dir/{SWEEP}", "--retry-failed", "--plain", "--num-gpus", "2", CUDA_VISIBLE_DEVICES="0,1"
    )
    assert again.returncode == 1, again.stdout + again.stderr  # it fails again, as it must
    starts = [r for r in project.records() if r["event"] == "start"]
    assert len(starts) == 2 and starts[1]["gpus"] in ("0", "1")


def test_resumed_without_the_variable_on_a_driverless_machine_keeps_the_uuids(project, recorder):
    """Given GPUs by UUID where no driver answers, then resumed from a shell without
    CUDA_VISIBLE_DEVICES: the experiments get the same UUIDs, never 0 and 1."""
    groups = '[[experiments]]\nname = "e"\nlist = [{ exit = 3 }]\n'
    project.spec(spec(recorder, "experiments_per_gpu = 1\n", groups))
    given = f"{UUIDS[2]},{UUIDS[3]}"
    assert project.run("up", "sweep.toml", "--plain", CUDA_VISIBLE_DEVICES=given).returncode == 1
    again = project.run("resume", f"train_dir/{SWEEP}", "--retry-failed", "--plain")
    assert again.returncode == 1, again.stdout + again.stderr
    starts = [r["gpus"] for r in project.records() if r["event"] == "start"]
    assert len(starts) == 2 and all(s in (UUIDS[2], UUIDS[3]) for s in starts), starts


def test_refusals_of_scheduler_values_name_their_line(project, recorder, tmp_path):
    source = inventory(tmp_path / "gpus.json", [40, 40])
    cases = [
        ("gpus_per_experiment = 3", "scheduler.gpus_per_experiment", "the sweep has 2 (0, 1)"),
        ("num_gpus = 3\nexperiments_per_gpu = 1", "scheduler.num_gpus", "at most 2"),
        ("gpus = [0, 7]\nexperiments_per_gpu = 1", "scheduler.gpus", "GPU 7"),
        ('placement = "memory"\nmin_free_memory_gb = 100', "scheduler.min_free_memory_gb", "48.0 GB"),
        ("gpus_per_experiment = 2\nexperiments_per_gpu = -1", "scheduler.experiments_per_gpu", "-1 leaves"),
    ]
    for lines, key, words in cases:
        text = spec(recorder, lines + "\n")
        project.spec(text)
        result = project.run("up", "sweep.toml", "--plain", PBTRUN_GPU_SOURCE=source)
        line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith(key.split(".")[1]))
        assert result.returncode == 2, (lines, result.stdout + result.stderr)
        assert f"line {line}: {key}:" in result.stderr and words in result.stderr, (lines, result.stderr)


def test_no_gpus_to_pin_to_says_why(project, recorder):
    """CUDA_VISIBLE_DEVICES=-1 (no GPU for this process) with pinning: the refusal says what
    pbtrun saw, not only "no GPUs"."""
    project.spec(spec(recorder, "experiments_per_gpu = 1\n"))
    result = project.run("up", "sweep.toml", "--plain", CUDA_VISIBLE_DEVICES="-1")
    assert result.returncode == 2
    assert "no GPUs to pin them to" in result.stderr and "CUDA_VISIBLE_DEVICES=-1" in result.stderr
