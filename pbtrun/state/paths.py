"""Where every file of a sweep lives, and which directories are sweeps.

:class:`SweepPaths` is the one object that joins the paths of a sweep's files: everything else
asks it (``paths.state``, ``paths.log(exp, attempt)``) and never builds a path string itself.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pbtrun.errors import StateError
from pbtrun.spec.naming import safe_file_name

if TYPE_CHECKING:
    from pbtrun.state.records import Experiment


class SweepPaths:
    """The one object that knows where every file of a sweep lives (equal when the directory
    is; a plain class: defining a frozen dataclass costs start-up time, at every start)."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepPaths) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    def __repr__(self) -> str:
        return f"SweepPaths(dir={self.dir!r})"

    @cached_property
    def state(self) -> Path:
        return self.dir / "pbtrun.json"

    @cached_property
    def journal(self) -> Path:
        """Transitions since the last fold, one fsync'd JSON line per commit (see StateWriter)."""
        return self.dir / "pbtrun.journal"

    @cached_property
    def summary(self) -> Path:
        """Name and counts only, rewritten now and then, so listing many sweeps stays cheap."""
        return self.dir / "summary.json"

    @cached_property
    def backup(self) -> Path:
        return self.dir / "pbtrun.json.bak"

    @cached_property
    def state_lock(self) -> Path:
        return self.dir / ".pbtrun.json.lock"

    @cached_property
    def scheduler_lock(self) -> Path:
        return self.dir / ".scheduler.lock"

    @cached_property
    def holder(self) -> Path:
        return self.dir / "scheduler.json"

    @cached_property
    def spec_copy(self) -> Path:
        return self.dir / "sweep.toml"

    @cached_property
    def control(self) -> Path:
        return self.dir / ".control"

    @cached_property
    def logs(self) -> Path:
        return self.dir / "logs"

    def log_name(self, exp: Experiment, attempt: int) -> str:
        """An attempt's log relative to the sweep directory, as the attempt records it. The log
        is the attempt's only file: it also holds its launch claim, pid and exit records."""
        return f"{self.logs.name}/{safe_file_name(exp.name, exp.id)}.{attempt}.log"

    def log(self, exp: Experiment, attempt: int) -> Path:
        return self.dir / self.log_name(exp, attempt)


def is_sweep(path: Path) -> bool:
    return (path / "pbtrun.json").is_file()


def find_sweeps(train_dir: Path) -> list[Path]:
    """Sweep directories directly under a train dir, by name."""
    return [p for p in subdirectories(train_dir) if is_sweep(p)]


def subdirectories(train_dir: Path) -> list[Path]:
    """The directories directly under ``train_dir``, by name; none if it cannot be listed."""
    try:
        return sorted(p for p in train_dir.iterdir() if p.is_dir())
    except OSError:
        return []


def resolve_sweep(path: Path) -> SweepPaths:
    """A sweep directory, its ``pbtrun.json``, or a train dir holding exactly one sweep."""
    if path.name == "pbtrun.json" and path.is_file():
        return SweepPaths(path.parent)
    if is_sweep(path):
        return SweepPaths(path)
    if not path.is_dir():
        raise StateError(f"{path}: no such directory. Give a sweep directory (train_dir/NAME).")
    sweeps = find_sweeps(path)
    if len(sweeps) == 1:
        return SweepPaths(sweeps[0])
    if not sweeps:
        raise StateError(f"{path}: no sweep here (no pbtrun.json in it or in its subdirectories).")
    listing = "\n".join(f"    {p}" for p in sweeps)
    raise StateError(f"{path} holds {len(sweeps)} sweeps; name one of them:\n{listing}")
