"""The GPU inventory's other sources, without a GPU: nvidia-smi's CSV, the fallback to it and
past it (a failing or hung nvidia-smi), and which GPU processes are pbtrun's experiments.

Every nvidia-smi output below is CONSTRUCTED here, in the documented CSV format, and printed by
a stand-in executable named nvidia-smi; none is recorded from a driver (tests/test_gpu_real.py
compares with the real one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pbtrun.devices import owners, smi
from pbtrun.devices.inventory import Gpu, GpuProcess, GpuReadError, notice, read_inventory
from pbtrun.errors import PbtrunError

HAS_DRIVER = os.path.exists("/proc/driver/nvidia")

# --------------------------------------------------------------------------- nvidia-smi

SMI_GPUS = textwrap.dedent(
    """\
    0, GPU-1a2b3c4d-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 40187, 81559, 97
    1, GPU-7f000000-aaaa-bbbb-cccc-ddddeeeeffff, NVIDIA H100 80GB HBM3, 4, 81559, 0
    2, GPU-c0ffee00-1234-5678-9abc-def012345678, NVIDIA A100-SXM4-40GB, [N/A], 40960, [Not Supported]
    """
)
SMI_APPS = textwrap.dedent(
    """\
    GPU-1a2b3c4d-0000-1111-2222-333344445555, 31337, 40000
    GPU-1a2b3c4d-0000-1111-2222-333344445555, 31338, [N/A]
    GPU-c0ffee00-1234-5678-9abc-def012345678, 777, 12
    """
)


def test_nvidia_smi_csv_is_parsed():
    """Constructed in the format of `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`."""
    gpus = smi.parse_smi_csv(SMI_GPUS, smi.parse_smi_apps(SMI_APPS))
    assert gpus[0] == Gpu(
        0,
        "GPU-1a2b3c4d-0000-1111-2222-333344445555",
        "NVIDIA H100 80GB HBM3",
        81559,
        40187,
        97,
        (GpuProcess(31337, 40000), GpuProcess(31338, None)),
    )
    assert (gpus[1].processes, gpus[1].memory_free_mb, gpus[1].utilization_pct) == ((), 81555, 0)
    assert (gpus[2].memory_used_mb, gpus[2].memory_free_mb, gpus[2].utilization_pct) == (None, None, None)
    assert gpus[2].processes == (GpuProcess(777, 12),)


def test_nvidia_smi_output_pbtrun_cannot_read_is_an_error_and_odd_app_lines_are_skipped():
    """Constructed: a line that is not six fields, and apps output that is no table."""
    assert smi.parse_smi_csv("") == []
    with pytest.raises(GpuReadError, match="cannot read"):
        smi.parse_smi_csv("No devices were found\n")
    with pytest.raises(GpuReadError, match="cannot read"):
        smi.parse_smi_csv("x, GPU-1, name, 1, 2, 3\n")
    assert smi.parse_smi_apps("No running processes found\n\n") == {}


def _fake_smi(bin_dir: Path, body: str) -> None:
    """An executable named nvidia-smi: a stand-in for the driver's tool, printing constructed output."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / "nvidia-smi"
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(0o755)


def _smi_printing(bin_dir: Path) -> None:
    _fake_smi(
        bin_dir,
        f"gpus, apps = {SMI_GPUS!r}, {SMI_APPS!r}\n"
        "assert sys.argv[2] == '--format=csv,noheader,nounits', sys.argv\n"
        "print(gpus if sys.argv[1].startswith('--query-gpu=') else apps, end='')",
    )


@pytest.mark.skipif(HAS_DRIVER, reason="this machine has an NVIDIA driver: NVML would answer first")
def test_without_nvml_the_inventory_falls_back_to_nvidia_smi(tmp_path, monkeypatch):
    _smi_printing(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    inv = read_inventory({"CUDA_VISIBLE_DEVICES": "2,0"})
    assert (inv.source, [g.index for g in inv.gpus], inv.driver_count) == ("nvidia-smi", [2, 0], 3)
    assert inv.notes == ("NVML: no NVIDIA driver: no /proc/driver/nvidia",)
    assert notice(inv) == (
        "GPUs: 2 of 3 (2, 0) from nvidia-smi, as CUDA_VISIBLE_DEVICES=2,0 allows; "
        "NVML: no NVIDIA driver: no /proc/driver/nvidia"
    )
    assert inv.gpus[1].processes[0] == GpuProcess(31337, 40000)


@pytest.mark.skipif(HAS_DRIVER, reason="this machine has an NVIDIA driver: NVML would answer first")
def test_a_failing_nvidia_smi_is_a_note_and_a_forced_one_an_error(tmp_path, monkeypatch):
    _fake_smi(
        tmp_path / "bin",
        "print('NVIDIA-SMI has failed because it could not communicate with the driver.'); sys.exit(9)",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    inv = read_inventory({"CUDA_VISIBLE_DEVICES": "1"})
    assert inv.source == "CUDA_VISIBLE_DEVICES" and [g.index for g in inv.gpus] == [1]
    assert "nvidia-smi: nvidia-smi failed (exit code 9): NVIDIA-SMI has failed because" in notice(inv)
    forced = r"PBTRUN_GPU_SOURCE=nvidia-smi .* \(exit code 9\): NVIDIA-SMI has failed .* driver\. Unset"
    with pytest.raises(PbtrunError, match=forced):
        read_inventory({"PBTRUN_GPU_SOURCE": "nvidia-smi"})


def test_a_hung_nvidia_smi_does_not_hang_pbtrun(tmp_path, monkeypatch):
    _fake_smi(tmp_path / "bin", "time.sleep(60)")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(GpuReadError, match=r"did not answer within 0.2 s \(a hung driver\?\)"):
        smi.read_smi(timeout_s=0.2)


def test_nvidia_smi_not_on_path_is_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PbtrunError, match="nvidia-smi cannot be run"):
        read_inventory({"PBTRUN_GPU_SOURCE": "nvidia-smi"})
    if not HAS_DRIVER:
        assert "nvidia-smi: not on PATH" in read_inventory({}).notes


# --------------------------------------------------------------------------- whose processes


def test_a_process_with_pbtruns_variables_is_an_experiment(tmp_path):
    env = {**os.environ, "PBTRUN_SWEEP_DIR": "/runs/my sweep", "PBTRUN_EXPERIMENT": "03_lr_0.1"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={"PATH": os.environ["PATH"]})
    try:
        assert owners.owner(child.pid) == ("/runs/my sweep", "03_lr_0.1")
        assert owners.owner(bare.pid) is None
        assert owners.owners([child.pid, bare.pid, child.pid]) == {child.pid: ("/runs/my sweep", "03_lr_0.1")}
    finally:
        for proc in (child, bare):
            proc.kill()
            proc.wait()
    assert owners.owner(child.pid) is None  # gone (and reaped)
    assert owners.owner(-1) is None
