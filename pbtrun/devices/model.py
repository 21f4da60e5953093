"""The values the GPU inventory is made of, and its one-line notice.

They live apart from :mod:`pbtrun.devices.inventory` because every reader (NVML, nvidia-smi, a
snapshot) builds them and the inventory imports every reader; the inventory re-exports them.
"""

from __future__ import annotations

from typing import NamedTuple

# What each source is called in the notice; "snapshot" is followed by its file (see the notes).
SOURCE_WORDS = {"nvml": "NVML", "nvidia-smi": "nvidia-smi", "snapshot": "a snapshot"}


class GpuReadError(Exception):
    """A source could not read the GPUs; the message is one line saying why. The inventory turns
    it into a note and tries the next source (or, for a forced source, into a PbtrunError)."""


class GpuProcess(NamedTuple):
    """A compute process on a GPU, as the driver reports it."""

    pid: int
    used_memory_mb: int | None  # None when the driver does not say (MIG, some containers)


class Gpu(NamedTuple):
    """One GPU, as the driver numbers it, with what this process must say to select it."""

    index: int  # the driver's index: NVML / nvidia-smi order (PCI bus order)
    uuid: str | None  # "GPU-..."; None when only CUDA_VISIBLE_DEVICES names it
    name: str = ""  # "NVIDIA H100 80GB HBM3"
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    utilization_pct: int | None = None
    processes: tuple[GpuProcess, ...] = ()
    visible_as: str = ""  # what CUDA_VISIBLE_DEVICES must say to select it ("" → str(index))

    @property
    def memory_free_mb(self) -> int | None:
        if self.memory_total_mb is None or self.memory_used_mb is None:
            return None
        return max(0, self.memory_total_mb - self.memory_used_mb)

    @property
    def selector(self) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` token an experiment gets to run on this GPU."""
        return self.visible_as or str(self.index)


class Inventory(NamedTuple):
    """The GPUs this process may use, where they were read from, and why not from a better source."""

    gpus: tuple[Gpu, ...]  # the GPUs this process may use (after CUDA_VISIBLE_DEVICES)
    source: str  # "nvml" | "nvidia-smi" | "snapshot" | "CUDA_VISIBLE_DEVICES" | "none"
    visible: str | None  # the inherited CUDA_VISIBLE_DEVICES, or None when unset
    driver_count: int  # GPUs the source saw before the restriction
    taken_at: float  # time.time()
    notes: tuple[str, ...] = ()  # why a better source was not used, tokens that matched nothing...


def notice(inventory: Inventory) -> str:
    """One line saying how many GPUs pbtrun may use, which, where it read them, and any note:
    the line every command that places experiments prints first."""
    inv = inventory
    ids = ", ".join(str(g.index) for g in inv.gpus)
    notes = "; ".join(inv.notes)
    cvd = None if inv.visible is None else f"CUDA_VISIBLE_DEVICES={inv.visible or '(empty)'}"
    if inv.source == "none":
        hidden = "" if cvd is None else f"{cvd} names none; "
        return f"GPUs: none found ({hidden}{notes or 'no NVIDIA driver'})"
    if inv.source == "CUDA_VISIBLE_DEVICES":
        return f"GPUs: {len(inv.gpus)} ({ids}) from {cvd} (no NVIDIA driver to ask: {notes or 'none answered'})"
    source = SOURCE_WORDS.get(inv.source, inv.source)
    if cvd is None:
        line = f"GPUs: {len(inv.gpus)} ({ids}) from {source}" if inv.gpus else f"GPUs: none found by {source}"
    elif inv.gpus:
        line = f"GPUs: {len(inv.gpus)} of {inv.driver_count} ({ids}) from {source}, as {cvd} allows"
    else:
        line = f"GPUs: none of {inv.driver_count} from {source}, as {cvd} allows"
    return f"{line}; {notes}" if notes else line
