"""The local Slurm that the Slurm backend is tested against (scripts/local-slurm.sh) is a real
one: jobs run, fail with their true exit code, and get the fake GPUs they ask for."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path


def sbatch(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={cwd}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip().split(";")[0]


def ended(env: dict[str, str], job_id: str, timeout_s: float = 60) -> str:
    """``scontrol show job -o`` of the job once it has left PENDING/RUNNING/COMPLETING."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True, timeout=30, check=True
        ).stdout
        state = re.search(r"\bJobState=(\S+)", text)
        if state and state.group(1) not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
            return text
        assert time.monotonic() < deadline, f"job {job_id} still {state and state.group(1)} after {timeout_s} s"
        time.sleep(0.2)


def test_a_failing_job_ends_failed_with_its_exit_code(slurm, tmp_path):
    job_id = sbatch(slurm, tmp_path, "--output=/dev/null", "--wrap", "exit 3")
    text = ended(slurm, job_id)
    assert "JobState=FAILED" in text.split()
    assert "ExitCode=3:0" in text.split()


def test_a_job_gets_the_fake_gpus_it_asks_for(slurm, tmp_path):
    out = tmp_path / "gpus.out"
    job_id = sbatch(slurm, tmp_path, "--gres=gpu:2", f"--output={out}", "--wrap", 'echo "[$CUDA_VISIBLE_DEVICES]"')
    assert "JobState=COMPLETED" in ended(slurm, job_id).split()
    visible = re.fullmatch(r"\[(.*)\]\n", out.read_text())
    assert visible, out.read_text()
    gpus = visible.group(1).split(",")
    assert len(gpus) == 2 and len(set(gpus)) == 2 and all(g.isdigit() for g in gpus), gpus
