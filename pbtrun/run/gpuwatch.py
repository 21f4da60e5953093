"""The scheduler's view of its GPUs while a sweep runs: how ``CUDA_VISIBLE_DEVICES`` must name
each one, its UUID, and, for ``placement = "memory"`` and ``exclude_busy_gpus``, its free memory
and the processes on it that pbtrun did not start.

Memory is read from the inventory (NVML) when a launch is being decided, at most every
``FRESH_S`` (a round of launches reads once), and, while experiments wait for memory, every
``WAIT_READ_S``: the scheduler sleeps in between, it never spins.

A launch does not allocate its memory at once (a trainer imports, builds its model, then
allocates), so for ``memory_settle_s`` after a launch the memory it will take is counted as
promised: ``min_free_memory_gb`` on each of its GPUs, until its process shows on the GPU or the
time is up. Without that, one free GPU would receive every experiment of a round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pbtrun.run.gpus import GpuState

if TYPE_CHECKING:
    from pbtrun.devices.inventory import Gpu, Inventory
    from pbtrun.state.records import Settings

FRESH_S = 0.2  # a reading younger than this serves the next launch decision too
WAIT_READ_S = 3.0  # while experiments wait for memory or for a busy GPU: how often to look again
MB_PER_GB = 1024


class Promise:
    """Memory a recent launch will take: ``mb`` on each of ``gpus`` until ``until`` (monotonic)."""

    __slots__ = ("gpus", "mb", "name", "until")

    def __init__(self, gpus: tuple[int, ...], mb: int, name: str, until: float) -> None:
        self.gpus, self.mb, self.name, self.until = gpus, mb, name, until


class GpuWatch:
    """What the scheduler knows of the sweep's GPUs beyond its own count of experiments."""

    def __init__(
        self, settings: Settings, sweep_dir: str, read: Callable[[], Inventory] | None = None, where: str = ""
    ) -> None:
        """Reads the inventory; refuses (:class:`StateError`) a sweep pinned to GPUs this process
        was not given, which it would otherwise run on all the same. ``where``: the sweep, as
        messages name it."""
        if read is None:
            from pbtrun.devices.inventory import read_inventory as read
        self.read = read
        self.sweep_dir = sweep_dir
        self.by_memory = settings.placement == "memory"
        self.exclude_busy = settings.exclude_busy_gpus
        self.min_free_mb = round((settings.min_free_memory_gb or 0.0) * MB_PER_GB)
        self.settle_s = settings.memory_settle_s
        self.live = self.by_memory or self.exclude_busy  # placement needs fresh readings
        self.gpus: dict[int, Gpu] = {}
        self.read_at = -1e9  # monotonic
        self.notice = ""
        self.source = "none"
        self.promises: dict[str, Promise] = {}  # exp id -> what its launch will take
        self.owners: dict[int, tuple[str, str] | None] = {}
        self.names = dict(zip(settings.gpus, settings.gpu_names, strict=False))  # as compiled
        self._refresh()
        self._refuse_gpus_not_given(settings, where or sweep_dir)
        if self.source == "none" and settings.gpus:  # --num-gpus N without a driver: say they are taken as given
            listed = ", ".join(self.names.get(g, str(g)) for g in settings.gpus)
            self.notice += f"; the sweep's GPUs {listed} are taken as given (experiments just see CUDA_VISIBLE_DEVICES)"

    # ---------------------------------------------------------------- naming

    def visible(self, gpus: tuple[int, ...]) -> str:
        """``CUDA_VISIBLE_DEVICES`` for an attempt on ``gpus``: each spelled as this process was
        given it (an index or a UUID), so an experiment lands only on a GPU the user was given."""
        return ",".join(self._spelling(g) for g in gpus)

    def _spelling(self, index: int) -> str:
        """As this process was given it; where nothing can be read now, as it was where the
        sweep was compiled (a UUID stays a UUID)."""
        gpu = self.gpus.get(index)
        if gpu is not None and (gpu.visible_as or self.source != "none"):
            return gpu.visible_as or str(index)
        return self.names.get(index) or str(index)

    def uuids(self, gpus: tuple[int, ...]) -> tuple[str | None, ...] | None:
        """The UUIDs of ``gpus`` where the driver told them; None if it told none."""
        found = tuple(self.gpus[g].uuid if g in self.gpus else None for g in gpus)
        return found if any(u is not None for u in found) else None

    # ---------------------------------------------------------------- placement's view

    def states(self, indices: tuple[int, ...], load: Mapping[int, int]) -> list[GpuState]:
        """Each of the sweep's GPUs as placement sees it now."""
        if self.live and time.monotonic() - self.read_at >= FRESH_S:
            self._refresh()
        promised = self._promised(time.monotonic())
        states = []
        for index in indices:
            gpu = self.gpus.get(index)
            free = None
            foreign = False
            if gpu is not None:
                if gpu.memory_free_mb is not None:
                    free = gpu.memory_free_mb - promised.get(index, 0)
                # Any pbtrun experiment (another sweep's too) is pbtrun's, not foreign.
                foreign = self.exclude_busy and any(self.owners.get(p.pid) is None for p in gpu.processes)
            states.append(GpuState(index, load.get(index, 0), free, foreign))
        return states

    def promise(self, exp_id: str, name: str, gpus: tuple[int, ...]) -> None:
        """A launch on ``gpus``: count its memory as taken until it shows (memory placement only)."""
        if self.by_memory and self.min_free_mb > 0 and gpus:
            self.promises[exp_id] = Promise(gpus, self.min_free_mb, name, time.monotonic() + self.settle_s)

    def promised_gb(self) -> float:
        """The memory promised to recent launches now, in GB, for the reason a wait gives."""
        total_mb = sum(self._promised(time.monotonic()).values())
        return round(total_mb / MB_PER_GB, 1)

    def forget(self, exp_id: str) -> None:
        self.promises.pop(exp_id, None)

    def next_read_at(self, waiting: bool) -> float | None:
        """When to look at the GPUs again while experiments wait for memory or a busy GPU."""
        return self.read_at + WAIT_READ_S if waiting and self.live else None

    # ---------------------------------------------------------------- internals

    def _refuse_gpus_not_given(self, settings: Settings, where: str) -> None:
        """A sweep resumed elsewhere (another allocation on a cluster, another shell's
        CUDA_VISIBLE_DEVICES) may name GPUs this process was not given. Without a driver and
        without CUDA_VISIBLE_DEVICES nothing is known, and the sweep's GPUs are taken as given."""
        if self.source == "none":
            return
        missing = [g for g in settings.gpus if g not in self.gpus]
        if missing:
            from pbtrun.errors import StateError

            given = ", ".join(map(str, sorted(self.gpus))) or "none"
            raise StateError(
                f"{where}: the sweep runs on GPUs {', '.join(map(str, settings.gpus))}, but this process was "
                f"given GPUs {given} ({self.notice.removeprefix('GPUs: ')}), so GPU(s) "
                f"{', '.join(map(str, missing))} are not yours to use here. Resume with --num-gpus N to run "
                "on N of the GPUs you were given, or from where those GPUs are yours; nothing was started."
            )

    def _refresh(self) -> None:
        inventory = self.read()
        self.source = inventory.source
        self.gpus = {g.index: g for g in inventory.gpus}
        self.read_at = time.monotonic()
        if self.live:  # whose each process on the GPUs is: (sweep dir, experiment) or None
            from pbtrun.devices.owners import owner

            self.owners = {p.pid: owner(p.pid) for g in inventory.gpus for p in g.processes}
        if not self.notice:
            from pbtrun.devices.inventory import notice

            self.notice = notice(inventory)

    def _promised(self, now: float) -> dict[int, int]:
        """MB promised per GPU: launches younger than memory_settle_s whose process has not
        shown on that GPU yet."""
        for exp_id in [e for e, p in self.promises.items() if p.until <= now]:
            del self.promises[exp_id]
        totals: dict[int, int] = {}
        for promise in self.promises.values():
            for index in promise.gpus:
                gpu = self.gpus.get(index)
                mine = (self.sweep_dir, promise.name)
                if gpu is not None and any(self.owners.get(p.pid) == mine for p in gpu.processes):
                    continue  # it has allocated: the reading counts it now
                totals[index] = totals.get(index, 0) + promise.mb
        return totals
