"""Shared fixtures: run the real ``pbtrun`` CLI as a process in a temporary directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

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
        return {**env, **extra}

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        """Run ``pbtrun ARGS`` to completion; stdout and stderr are captured as text."""
        return subprocess.run(
            [sys.executable, "-m", "pbtrun", *args],
            check=False,
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        """Start ``pbtrun ARGS`` in the background (in its own session); reaped at teardown."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "pbtrun", *args],
            cwd=self.root,
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
        from pbtrun import state, store

        return state.to_json(store.load(store.SweepPaths(self.root / train_dir / sweep)))

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
        # process groups and waiters their launch claims name.
        for pid_file in self.root.rglob("*.pid"):  # "<pid> <start time>": the pid is its group's id
            with contextlib.suppress(OSError, ValueError, IndexError, ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        for claim in self.root.rglob("*.start"):
            try:
                data = json.loads(claim.read_text())
            except (OSError, ValueError):
                continue
            for pid, kill in ((data.get("pid"), os.killpg), (data.get("waiter_pid"), os.kill)):
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
