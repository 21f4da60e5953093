"""The GPU inventory and placement: least busy GPU first, so experiments spread before they pack.
Placement knows the settings a sweep runs with (resolved by :mod:`pbtrun.run.settings`), not the spec
they came from."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from pbtrun.state.records import Settings


def detect_gpu_count() -> int:
    """GPUs the NVIDIA driver exposes, without starting a process or loading a library; 0 if none."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


class Placement:
    """Chooses a GPU for the next experiment, or says there is no room."""

    def __init__(self, settings: Settings) -> None:
        self.gpus: Sequence[int] = settings.gpus
        self.per_gpu = settings.experiments_per_gpu
        self.max_parallel = settings.max_parallel

    @property
    def pins(self) -> bool:
        return self.per_gpu > 0

    def choose(self, load: Mapping[int, int], running: int) -> tuple[int, ...] | None:
        """GPUs for one more experiment (empty tuple: unpinned), or None when every slot is taken.

        ``load`` counts the running experiments per GPU. The GPU with the most free slots wins,
        the lowest id on ties.
        """
        if running >= self.max_parallel:
            return None
        if not self.pins:
            return ()
        free = [(self.per_gpu - load.get(g, 0), -g) for g in self.gpus]
        best = max(free, default=(0, 0))
        return (-best[1],) if best[0] > 0 else None
