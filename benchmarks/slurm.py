"""Submitting to a real Slurm (scripts/local-slurm.sh), pbtrun against the old launcher's way.

1. Submit N experiments (default 1,000) and measure the time until the last job id is recorded:
   `pbtrun up --detach` (job arrays; it exits once every job id is in the state) against one
   `sbatch` per experiment, as the Sample Factory / IsaacGymEnvs launcher's Slurm backend does.
2. Slurm client calls per minute while those N experiments are queued and `pbtrun resume`
   watches them: every `sbatch`, `squeue`, `scontrol` and `scancel` that pbtrun runs is counted
   by shims put first on PATH, which log the call and run the real command.

Run with a local Slurm started: `eval "$(bash scripts/local-slurm.sh start)"; python
benchmarks/slurm.py [--count 1000] [--watch-s 60]`. The jobs sleep; every one is cancelled at the
end. Results go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENTS = ("sbatch", "squeue", "scontrol", "scancel")


def shims(where: Path, log: Path) -> dict[str, str]:
    """PATH with logging shims for the Slurm clients first."""
    where.mkdir()
    for name in CLIENTS:
        real = shutil.which(name)
        if real is None:
            sys.exit(f"{name} not found: start a local Slurm (scripts/local-slurm.sh start)")
        shim = where / name
        shim.write_text(f'#!/bin/sh\necho "{name} $(date +%s.%N)" >> {log}\nexec {real} "$@"\n')
        shim.chmod(0o755)
    return {**os.environ, "PATH": f"{where}:{os.environ['PATH']}"}


def cancel_all(user_jobs_name: str | None = None) -> None:
    argv = ["scancel", "--user", os.environ.get("USER", "root")]
    subprocess.run(argv if user_jobs_name is None else [*argv, f"--name={user_jobs_name}"], check=False)


def pbtrun_submit(root: Path, count: int, env: dict[str, str]) -> float:
    (root / "sweep.toml").write_text(
        'name = "bench"\nbackend = "slurm"\ncommand = "sleep 600"\nexperiment_arg_name = ""\n'
        f'experiment_dir_arg_name = ""\n[slurm]\ntime_min = 15\n[[experiments]]\nname = "s"\nrepeat = {count}\n'
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pbtrun", "up", "sweep.toml", "--plain", "--detach"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"pbtrun up --detach failed: {done.stdout}{done.stderr}")
    return wall


def one_sbatch_each(root: Path, count: int) -> float:
    script = root / "job.sh"
    script.write_text("#!/bin/sh\nsleep 600\n")
    started = time.perf_counter()
    for n in range(count):
        subprocess.run(
            ["sbatch", "--parsable", "--job-name=oldway", "--time=15", f"--output={root}/old_%j.out", str(script)],
            check=True, capture_output=True,
        )  # fmt: skip
        if n and n % 200 == 0:
            print(f"  old way: {n} submitted", flush=True)
    return time.perf_counter() - started


def calls_while_watching(root: Path, env: dict[str, str], log: Path, watch_s: float) -> dict[str, int]:
    log.write_text("")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "pbtrun", "resume", "train_dir/bench", "--plain"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    time.sleep(watch_s)
    watcher.send_signal(signal.SIGINT)  # detaches: the jobs stay queued
    watcher.wait(timeout=60)
    counts = dict.fromkeys(CLIENTS, 0)
    for line in log.read_text().splitlines():
        counts[line.split()[0]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--watch-s", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "calls.log"
        env = shims(root / "shims", log)
        try:
            wall = pbtrun_submit(root, args.count, env)
            sbatch_calls = sum(1 for line in log.read_text().splitlines() if line.startswith("sbatch"))
            print(f"pbtrun up --detach: {args.count} experiments submitted and recorded in {wall:.2f} s "
                  f"({sbatch_calls} sbatch call(s))")  # fmt: skip
            counts = calls_while_watching(root, env, log, args.watch_s)
            per_min = {k: round(v * 60 / args.watch_s, 1) for k, v in counts.items()}
            watching = f"while {args.count} are queued and pbtrun watches ({args.watch_s:g} s, poll_s 10)"
            print(f"{watching}: {per_min} per minute")
            cancel_all()
            old = one_sbatch_each(root, args.count)
            print(f"one sbatch per experiment (the old launcher's way): {args.count} submitted in {old:.2f} s")
        finally:
            cancel_all()


if __name__ == "__main__":
    main()
