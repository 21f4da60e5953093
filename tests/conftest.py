"""Shared fixtures: run the real ``pbtrun`` CLI as a process in a temporary directory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared"
RECORDER = HERE / "data" / "recorder.py"


class Project:
    """A scratch directory to write specs into and run ``pbtrun`` from."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def spec(self, text: str, name: str = "sweep.toml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
        env.pop("CUDA_VISIBLE_DEVICES", None)  # tests choose it explicitly
        # The machine's own GPUs stay out of tests that fake theirs (--num-gpus 4 on a one-GPU
        # machine would be refused): tests of real GPUs ask for PBTRUN_GPU_SOURCE=auto.
        env["PBTRUN_GPU_SOURCE"] = "none"
        return {**env, **extra}

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        """Run ``pbtrun ARGS`` to completion; stdout and stderr are captured as text."""
        return self.python("-m", "pbtrun", *args, timeout=timeout, env=self.env(**env))

    def python(
        self, *args: str, timeout: float = 60, env: dict | None = None, **popen: Any
    ) -> subprocess.CompletedProcess:
        """Run ``python ARGS`` (this interpreter) in the project to completion, output captured."""
        return subprocess.run(
            [sys.executable, *args],
            check=False,
            cwd=self.root,
            env=self.env() if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **popen,
        )

    def start(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen:
        """Start ``pbtrun ARGS`` in the background (in its own session, in ``cwd``, by default the
        project); reaped at teardown."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "pbtrun", *args],
            cwd=self.root if cwd is None else cwd,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def state(self, sweep: str, train_dir: str = "train_dir") -> dict:
        """The whole state as a reader sees it: pbtrun.json plus the journal not yet folded in."""
        from pbtrun.state import store
        from pbtrun.state.codec import to_json
        from pbtrun.state.paths import SweepPaths

        return to_json(store.load(SweepPaths(self.root / train_dir / sweep)))

    def status_json(self, sweep: str, train_dir: str = "train_dir") -> dict:
        result = self.run("status", f"{train_dir}/{sweep}", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def records(self, name: str = "record.jsonl") -> list[dict]:
        """Lines written by ``tests/data/recorder.py`` (one JSON object per start and end)."""
        path = self.root / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, predicate, timeout: float = 20.0, interval: float = 0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
        # Experiments live in sessions of their own: kill any the test left behind, by the
        # process groups and reapers their logs' pid records name.
        from pbtrun.backends.logrecords import read_records

        for log in self.root.rglob("*.log"):
            found = read_records(str(log))
            record = found[1] if found else None
            if not record:
                continue
            for pid, kill in ((record.get("pid"), os.killpg), (record.get("reaper"), os.kill)):
                if isinstance(pid, int):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(pid, signal.SIGKILL)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project(tmp_path)
    try:
        yield proj
    finally:
        proj.cleanup()


@pytest.fixture(scope="module")
def expected() -> dict:
    """What the old launcher generated for the compat cases (skipped where ../shared is absent)."""
    from helpers import COMPAT

    path = COMPAT / "expected.json"
    if not path.is_file():
        pytest.skip(f"{path} not found: the old launcher's reference data (../shared/compat) is not in this checkout")
    return json.loads(path.read_text())


@pytest.fixture
def recorder() -> str:
    """A command prefix for an experiment that records its start and end (see recorder.py)."""
    return f"{sys.executable} {RECORDER}"


SLURM_HOW = 'run `eval "$(bash scripts/local-slurm.sh start)"` first (CI does)'


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """The environment a real Slurm's clients need (``SLURM_CONF``, ``PATH``), where one answers.

    Slurm is started by ``scripts/local-slurm.sh`` (``.ci/run`` does it), never from here: a fixture
    that installed and started daemons would hide a broken CI setup behind a slow first test. Where
    none answers, the Slurm tests are skipped, saying how to get one."""
    conf = os.environ.get("SLURM_CONF", "")
    if not conf:
        pytest.skip(f"no local Slurm (SLURM_CONF is not set): {SLURM_HOW}")
    if shutil.which("sinfo") is None:
        pytest.skip(f"no local Slurm (sinfo is not installed): {SLURM_HOW}")
    env = {"SLURM_CONF": conf, "PATH": os.environ.get("PATH", os.defpath)}
    try:
        # A controller that is down makes every client wait its MessageTimeout: bound it.
        answer = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], env=env, capture_output=True, text=True, timeout=5, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"no local Slurm (sinfo did not answer within 5 s): {SLURM_HOW}")
    if answer.returncode != 0:
        pytest.skip(f"no local Slurm (sinfo: {answer.stderr.strip()}): {SLURM_HOW}")
    return env
