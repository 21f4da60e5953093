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
    result = project.run("gpus", "--json")
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
    up = project.run("up", "sweep.toml", "--plain", timeout=120)
    (exp,) = project.status_json("pin")["experiments"]
    log = Path(exp["log"]).read_text()
    print(log)
    assert up.returncode == 0, up.stdout + up.stderr
    seen = [line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("cuda device ")]
    assert seen == [read_inventory(NVML).gpus[0].uuid]
