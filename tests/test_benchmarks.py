"""The benchmark script runs on a tiny workload and reports what it measured. No timed assertions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "run.py"


def test_quick_benchmark_prints_and_writes_a_table_with_ratios(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    scratch = tmp_path / "tmp"  # the script's runs make their directories here
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    args = ["--quick", "--reps", "1", "--only", "W1,W4", "--runners", "pbtrun,xargs", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=tmp_path,
        env={**env, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # median/min/max per runner, one line each
    assert re.search(r"^W1\s+pbtrun\s+[\d,.]+\s+[\d,.]+\s+[\d,.]+\s+1/1 ok$", done.stdout, re.M), done.stdout
    assert re.search(r"^W1\s+xargs\s+[\d,.]+\s+[\d,.]+\s+[\d,.]+\s+1/1 ok$", done.stdout, re.M), done.stdout
    # the pbtrun ÷ xargs ratio of the repetition, as it happens and in the summary
    assert re.search(r"\[W1 rep 1\] pbtrun ÷ xargs \(wall\) = \d+\.\d\d", done.stdout), done.stdout
    assert re.search(r"^\| W4 \(wall\) \| \d+\.\d\d \| \d+\.\d\d \|$", done.stdout, re.M), done.stdout
    table = out.read_text()
    assert "| workload (8 slots; GPU ones: 4 fake GPUs × 2) | pbtrun | `xargs -P 8` |" in table
    assert re.search(r"^\| W1: 20 × `/bin/true`, jobs/s \| [\d,]+ \| [\d,]+ \|$", table, re.M), table
    assert (
        "| W4: placement invariants (≤ 2 per GPU, ≤ 8 in all, every job once) | ok in 1 of 1 | ok in 1 of 1 |" in table
    )
    assert "Machine:" in table
    assert "--quick --reps 1" in table
    # every run happened in a fresh temporary directory, removed afterwards
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md", "tmp"]
