"""`pbtrun gpus` run for real, as a process, on a machine replayed from a snapshot.

The snapshot documents are CONSTRUCTED here (the format `pbtrun gpus --json` prints); one of
their GPU processes is a real child of the test carrying the variables pbtrun gives every
experiment, so the command finds it to be pbtrun's by reading its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

UUID0 = "GPU-1a2b3c4d-0000-1111-2222-333344445555"
UUID1 = "GPU-7f000000-aaaa-bbbb-cccc-ddddeeeeffff"


@pytest.fixture
def experiment(project) -> Iterator[int]:
    """The pid of a live process that looks to pbtrun like experiment 01_b of a sweep."""
    env = {
        **os.environ,
        "PBTRUN_SWEEP_DIR": str(project.root / "train_dir" / "ant"),
        "PBTRUN_EXPERIMENT": "01_b",
    }
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _snapshot(project, pid: int) -> Path:
    """A constructed two-GPU machine: GPU 1 runs our experiment and a foreign process (pid 1)."""
    gpus = [
        {"index": 0, "uuid": UUID0, "name": "NVIDIA Constructed", "memory_total_mb": 81920,
         "memory_used_mb": 512, "utilization_pct": 3, "processes": []},
        {"index": 1, "uuid": UUID1, "name": "NVIDIA Constructed", "memory_total_mb": 81920,
         "memory_used_mb": 40960, "utilization_pct": None,
         "processes": [{"pid": pid, "used_memory_mb": 30000}, {"pid": 1, "used_memory_mb": None}]},
    ]  # fmt: skip
    path = project.root / "snap.json"
    path.write_text(json.dumps({"source": "nvml", "gpus": gpus}))
    return path


def test_gpus_shows_the_machine_and_names_pbtruns_experiments(project, experiment):
    snap = _snapshot(project, experiment)
    result = project.run("gpus", PBTRUN_GPU_SOURCE=str(snap))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"GPUs: 2 (0, 1) from a snapshot; snapshot file {snap}"
    assert lines[1].split() == ["GPU", "UUID", "NAME", "MEMORY", "UTIL", "PROCESSES"]
    assert lines[2].split() == ["0", "GPU-1a2b3c4d…", "NVIDIA", "Constructed", "0.5/80.0", "GB", "3%", "-"]
    assert lines[3].split() == [
        "1", "GPU-7f000000…", "NVIDIA", "Constructed", "40.0/80.0", "GB", "?",
        str(experiment), "30000", "MB", "train_dir/ant/01_b",
    ]  # fmt: skip
    assert lines[4].split() == ["1", "?", "MB"]  # a process that is not pbtrun's: no sweep, no name
    assert len(lines) == 5 and result.stderr == ""


def test_gpus_json_is_a_snapshot_with_owners(project, experiment):
    snap = _snapshot(project, experiment)
    result = project.run("gpus", "--json", PBTRUN_GPU_SOURCE=str(snap), CUDA_VISIBLE_DEVICES="GPU-7f")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["source"], document["cuda_visible_devices"], document["driver_count"]) == ("snapshot", "GPU-7f", 2)
    assert document["notice"].startswith("GPUs: 1 of 2 (1) from a snapshot, as CUDA_VISIBLE_DEVICES=GPU-7f allows")
    (gpu,) = document["gpus"]
    assert (gpu["index"], gpu["uuid"], gpu["cuda_visible_devices"], gpu["memory_free_mb"]) == (
        1,
        UUID1,
        "GPU-7f",
        40960,
    )
    assert gpu["processes"] == [
        {
            "pid": experiment,
            "used_memory_mb": 30000,
            "sweep": str(project.root / "train_dir" / "ant"),
            "experiment": "01_b",
        },
        {"pid": 1, "used_memory_mb": None, "sweep": None, "experiment": None},
    ]
    # What it printed is itself a snapshot: replayed (under the same restriction), the same machine.
    (project.root / "again.json").write_text(result.stdout)
    again = project.run("gpus", "--json", PBTRUN_GPU_SOURCE="again.json", CUDA_VISIBLE_DEVICES="GPU-7f")
    assert json.loads(again.stdout)["gpus"] == document["gpus"]


def test_gpus_shows_how_cuda_visible_devices_selects_each_gpu_where_it_is_not_the_index(project, experiment):
    snap = _snapshot(project, experiment)
    result = project.run("gpus", PBTRUN_GPU_SOURCE=str(snap), CUDA_VISIBLE_DEVICES="GPU-7f,0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "CUDA_VISIBLE_DEVICES" in lines[1].split()
    assert lines[2].split()[:2] == ["1", "GPU-7f"] and lines[4].split()[:2] == ["0", "0"]


def test_gpus_without_any_gpu_says_why(project):
    result = project.run("gpus", PBTRUN_GPU_SOURCE="none")
    assert (result.returncode, result.stdout) == (0, "GPUs: none found (PBTRUN_GPU_SOURCE=none)\n")
    hinted = project.run("gpus", PBTRUN_GPU_SOURCE="none", CUDA_VISIBLE_DEVICES="2,5")
    assert hinted.stdout.startswith("GPUs: 2 (2, 5) from CUDA_VISIBLE_DEVICES=2,5 (no NVIDIA driver to ask")


def test_a_bad_snapshot_is_a_message_not_a_traceback(project):
    (project.root / "snap.json").write_text('{"gpus": [{"index": "zero"}]}')
    result = project.run("gpus", PBTRUN_GPU_SOURCE="snap.json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "pbtrun: error: The GPU snapshot snap.json (named by PBTRUN_GPU_SOURCE) gpus[0].index: expected a "
        'non-negative integer, got "zero". Record one with `pbtrun gpus --json > FILE` on the machine to reproduce.\n'
    )


def _two_gpus(path: Path, free_gb: tuple[int, int]) -> str:
    """A constructed machine of two 48 GB GPUs with that much free, no processes."""
    gpus = [
        {"index": i, "uuid": uuid, "name": "Constructed GPU", "memory_total_mb": 48 * 1024,
         "memory_used_mb": (48 - free) * 1024, "utilization_pct": 0, "processes": []}
        for i, (uuid, free) in enumerate(zip((UUID0, UUID1), free_gb, strict=True))
    ]  # fmt: skip
    path.write_text(json.dumps({"source": "nvml", "gpus": gpus}))
    return str(path)


def _pending_again(project, sweep: str, running_on: int | None = None) -> None:
    """Make every experiment of a finished sweep pending again, as a stopped sweep's are; with
    ``running_on``, the first one recorded as running on that GPU (no scheduler runs it)."""
    state_file = project.root / "train_dir" / sweep / "pbtrun.json"
    data = json.loads(state_file.read_text())
    for n, exp in enumerate(data["experiments"]):
        if n == 0 and running_on is not None:
            exp["status"] = "running"
            exp["attempts"][-1].update(ended_at=None, returncode=None, outcome=None, gpus=[running_on])
        else:
            exp["status"], exp["attempts"] = "pending", []
    state_file.write_text(json.dumps(data))
    (project.root / "train_dir" / sweep / "pbtrun.journal").unlink(missing_ok=True)


def _stopped_sweep(project, recorder: str, name: str, scheduler: str, count: int, running_on: int | None = None) -> str:
    """A sweep ``name`` of ``count`` experiments run on two constructed 40 GB-free GPUs, then
    made pending again (see _pending_again); the inventory file's path."""
    source = _two_gpus(project.root / "gpus.json", (40, 40))
    grid = ", ".join(str(k) for k in range(1, count + 1))
    project.spec(
        f'name = "{name}"\ncommand = "{recorder}"\n[scheduler]\n{scheduler}\n'
        f'[[experiments]]\nname = "a"\ngrid = {{ k = [{grid}] }}\n'
    )
    assert project.run("up", "sweep.toml", PBTRUN_GPU_SOURCE=source).returncode == 0
    _pending_again(project, name, running_on=running_on)
    return source


def test_gpus_with_a_sweep_says_where_its_next_experiment_would_go(project, recorder):
    source = _stopped_sweep(project, recorder, "p", "experiments_per_gpu = 1", 3, running_on=0)
    result = project.run("gpus", "train_dir/p", PBTRUN_GPU_SOURCE=source)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "next in train_dir/p: 01_a_k_2 would go to GPU 1 (CUDA_VISIBLE_DEVICES=1)"
    document = json.loads(project.run("gpus", "train_dir/p", "--json", PBTRUN_GPU_SOURCE=source).stdout)
    assert document["next_placement"]["gpus"] == [1] and document["next_placement"]["experiment"] == "01_a_k_2"
    missing = project.run("gpus", "train_dir/nope", PBTRUN_GPU_SOURCE=source)
    assert missing.returncode == 2 and "train_dir/nope" in missing.stderr and "Traceback" not in missing.stderr


def test_gpus_with_a_sweep_placed_by_memory_says_why_it_would_wait(project, recorder):
    source = _stopped_sweep(project, recorder, "m", 'placement = "memory"\nmin_free_memory_gb = 20', 2)
    _two_gpus(project.root / "gpus.json", (10, 30))
    document = json.loads(project.run("gpus", "train_dir/m", "--json", PBTRUN_GPU_SOURCE=source).stdout)
    assert document["next_placement"]["gpus"] == [1]
    _two_gpus(project.root / "gpus.json", (10, 5))
    result = project.run("gpus", "train_dir/m", PBTRUN_GPU_SOURCE=source)
    assert result.stdout.splitlines()[-1] == "next in train_dir/m: 00_a_k_1 would wait: no GPU with 20 GB free"


def test_help_loads_no_gpu_reading(project):
    result = project.python("-X", "importtime", "-m", "pbtrun", "--help")
    loaded = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "pbtrun.ui.cligpus" in loaded
    assert not {m for m in loaded if m.startswith(("pbtrun.devices", "pynvml", "subprocess"))}
