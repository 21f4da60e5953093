"""The inventory on a real NVIDIA GPU and driver (marked ``gpu``; skipped elsewhere, with why).

Run on a GPU machine: ``pytest -m gpu tests/test_gpu_real.py``; with PBTRUN_RECORD_SNAPSHOT=1 it
also records ``tests/data/gpu-snapshot-recorded.json`` from the real driver, for the tests that
replay a machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pbtrun.devices.inventory import read_inventory
from pbtrun.devices.model import GpuReadError
from pbtrun.devices.snapshot import read_snapshot

RECORDED = Path(__file__).parent / "data" / "gpu-snapshot-recorded.json"


def _why_not() -> str | None:
    """Why these tests cannot run here, or None."""
    if not os.path.exists("/proc/driver/nvidia"):
        return "no NVIDIA driver (/proc/driver/nvidia is missing)"
    from pbtrun.devices.nvml import read_nvml

    try:
        read_nvml()
    except GpuReadError as exc:
        return f"NVML cannot be read: {exc}"
    return None


WHY_NOT = _why_not()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]
NVML = {"PBTRUN_GPU_SOURCE": "nvml"}  # and no CUDA_VISIBLE_DEVICES: the whole machine
REAL = {"PBTRUN_GPU_SOURCE": "auto"}  # the project fixture hides the machine's GPUs unless told


def _smi(*args: str) -> list[list[str]]:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi is not on PATH")
    out = subprocess.run(["nvidia-smi", *args], check=True, capture_output=True, text=True, timeout=30).stdout
    return [[field.strip() for field in line.split(",")] for line in out.splitlines() if line.strip()]


def test_the_nvml_inventory_matches_nvidia_smi():
    inv = read_inventory(NVML)
    rows = _smi("--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits")
    assert inv.source == "nvml" and inv.gpus
    assert [(g.index, g.uuid, g.memory_total_mb) for g in inv.gpus] == [(int(i), u, int(t)) for i, u, t in rows]
    assert inv.driver_count == len(rows)
    print(*(repr(g) for g in inv.gpus), sep="\n")


def test_nvidia_smi_as_the_source_agrees_with_nvml():
    by_nvml = read_inventory(NVML)
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi is not on PATH")
    by_smi = read_inventory({"PBTRUN_GPU_SOURCE": "nvidia-smi"})
    assert by_smi.source == "nvidia-smi"

    def same(gpus):  # memory in use and processes move between two reads; these do not
        return [(g.index, g.uuid, g.name, g.memory_total_mb) for g in gpus]

    assert same(by_smi.gpus) == same(by_nvml.gpus)


def test_cuda_visible_devices_restricts_the_real_inventory():
    whole = read_inventory(NVML)
    last = whole.gpus[-1]
    by_uuid = read_inventory({**NVML, "CUDA_VISIBLE_DEVICES": last.uuid[:12]})
    assert [(g.index, g.visible_as) for g in by_uuid.gpus] == [(last.index, last.uuid[:12])]
    by_index = read_inventory({**NVML, "CUDA_VISIBLE_DEVICES": str(last.index)})
    assert [g.uuid for g in by_index.gpus] == [last.uuid]


def test_gpus_json_records_a_snapshot(project):
    result = project.run("gpus", "--json", **REAL)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["source"] == "nvml"
    inv = read_inventory(NVML)
    assert [g["uuid"] for g in document["gpus"]] == [g.uuid for g in inv.gpus]
    path = project.root / "snap.json"
    path.write_text(result.stdout)
    replayed = read_snapshot(path)
    assert [(g.index, g.uuid, g.memory_total_mb) for g in replayed] == [
        (g.index, g.uuid, g.memory_total_mb) for g in inv.gpus
    ]
    print(result.stdout)
    if os.environ.get("PBTRUN_RECORD_SNAPSHOT") == "1":
        RECORDED.write_text(result.stdout)


# Prints the UUID of every GPU CUDA shows this process, through the driver's own CUDA library
# (libcuda, present wherever the driver is): nvidia-smi reads NVML, which ignores
# CUDA_VISIBLE_DEVICES, so `nvidia-smi -L` lists every GPU whatever the pinning (it is printed
# too, for the person reading the log).
CUDA_UUIDS = """\
import ctypes, os, subprocess
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
count = ctypes.c_int()
assert cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
for ordinal in range(count.value):
    device, raw = ctypes.c_int(), (ctypes.c_ubyte * 16)()
    assert cuda.cuDeviceGet(ctypes.byref(device), ordinal) == 0
    assert cuda.cuDeviceGetUuid(raw, device) == 0
    h = bytes(raw).hex()
    print(f"cuda device {ordinal}: GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"), flush=True)
subprocess.run(["nvidia-smi", "-L"], check=False)
"""


def test_an_experiment_pinned_by_pbtrun_sees_exactly_its_gpu(project):
    (project.root / "cuda_uuids.py").write_text(CUDA_UUIDS)
    project.spec(
        f'name = "pin"\ncommand = "{sys.executable} cuda_uuids.py"\nexperiment_arg_name = ""\n'
        'experiment_dir_arg_name = ""\n[scheduler]\nnum_gpus = 1\nexperiments_per_gpu = 1\n'
        '[[experiments]]\nname = "a"\n'
    )
    up = project.run("up", "sweep.toml", "--plain", timeout=120, **REAL)
    (exp,) = project.status_json("pin")["experiments"]
    log = Path(exp["log"]).read_text()
    print(log)
    assert up.returncode == 0, up.stdout + up.stderr
    seen = [line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("cuda device ")]
    assert seen == [read_inventory(NVML).gpus[0].uuid]


# A process pbtrun did not start that takes all but KEEP_MB of GPU 0's free memory and holds it
# until killed, through the driver's own CUDA library.
HOG = """\
import ctypes, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
device, context = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(device), 0) == 0
assert cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device) == 0
free, total = ctypes.c_size_t(), ctypes.c_size_t()
assert cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0
pointer = ctypes.c_uint64()
assert cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(free.value - int(sys.argv[1]) * 2**20)) == 0
print("holding", flush=True)
time.sleep(600)
"""


def test_memory_placement_refuses_a_gpu_a_foreign_process_fills_and_uses_it_once_it_exits(project, recorder):
    """A foreign process leaves 1 GB free on GPU 0; a sweep placed by memory (4 GB) waits and
    says why; once that process exits, its experiment starts on GPU 0."""
    first = read_inventory(NVML).gpus[0]
    (project.root / "hog.py").write_text(HOG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBTRUN_")}
    env["CUDA_VISIBLE_DEVICES"] = first.uuid
    hog = subprocess.Popen(
        [sys.executable, "hog.py", "1024"], cwd=project.root, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert hog.stdout.readline().strip() == "holding"
        held = read_inventory(NVML).gpus[0]
        print(f"GPU 0 with the foreign process: {held.memory_free_mb} MB free of {held.memory_total_mb}")
        assert held.memory_free_mb is not None and held.memory_free_mb < 4 * 1024
        project.spec(
            f'name = "mem"\ncommand = "{recorder}"\n[scheduler]\ngpus = [{first.index}]\n'
            'placement = "memory"\nmin_free_memory_gb = 4\n[[experiments]]\nname = "a"\n'
        )
        up = project.start("up", "sweep.toml", "--plain", **REAL)

        def waiting():
            result = project.run("status", "train_dir/mem", "--json")
            return result.returncode == 0 and json.loads(result.stdout).get("sweep", {}).get("waiting")

        reason = project.wait_for(waiting, timeout=60)
        print(f"waiting: {reason}")
        assert reason == "no GPU with 4 GB free" and not project.records()
    finally:
        hog.kill()
        hog.wait()
    out, err = up.communicate(timeout=60)
    print(out)
    assert up.returncode == 0, out + err
    (start,) = [r for r in project.records() if r["event"] == "start"]
    assert start["gpus"] == str(first.index)
