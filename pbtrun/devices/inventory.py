"""The GPUs this process may use: read from the best source that answers, then restricted by
the inherited ``CUDA_VISIBLE_DEVICES``.

Sources, best first: NVML, nvidia-smi, none. ``PBTRUN_GPU_SOURCE`` may force one (``nvml``,
``nvidia-smi``, ``none``, or the path of a snapshot recorded by ``pbtrun gpus --json``; ``auto``
or unset: the order above). A source that fails leaves a note saying why, and the next is tried;
a forced source that fails is an error. With no driver to ask, an inherited
``CUDA_VISIBLE_DEVICES=2,5`` still means two GPUs, 2 and 5, of unknown memory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping

from pbtrun.devices import visible
from pbtrun.devices.model import SOURCE_WORDS, Gpu, GpuProcess, GpuReadError, Inventory, notice
from pbtrun.errors import PbtrunError

__all__ = ["Gpu", "GpuProcess", "GpuReadError", "Inventory", "notice", "read_inventory"]

SOURCE_VAR = "PBTRUN_GPU_SOURCE"
NAMED_SOURCES = ("auto", "nvml", "nvidia-smi", "none")
DRIVER_PROC = "/proc/driver/nvidia"


def read_inventory(env: Mapping[str, str] | None = None) -> Inventory:
    """The GPUs this process may use, read now (``env``: the environment, by default this
    process's). Raises :class:`PbtrunError` only where ``PBTRUN_GPU_SOURCE`` forces a source
    that fails."""
    env = os.environ if env is None else env
    taken_at = time.time()
    source, found, notes = _read_source(env.get(SOURCE_VAR, "").strip())
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    tokens = visible.parse_visible(cvd)
    if tokens is None:
        gpus = tuple(g._replace(visible_as=g.visible_as or str(g.index)) for g in found)
    elif source == "none":
        gpus = visible.without_driver(tokens)
        source = "CUDA_VISIBLE_DEVICES" if gpus else source
    else:
        gpus, unmatched = visible.restrict(found, tokens)
        notes += visible.unmatched_notes(unmatched, found)
    return Inventory(gpus, source, cvd, len(found), taken_at, tuple(notes))


def _read_source(forced: str) -> tuple[str, list[Gpu], list[str]]:
    """(source, its GPUs, notes) from the forced source or, for auto, the best that answers."""
    if forced and forced not in NAMED_SOURCES:
        from pbtrun.devices.snapshot import read_snapshot

        if not os.path.isfile(forced):
            raise PbtrunError(
                f"{SOURCE_VAR}={forced} is none of {', '.join(NAMED_SOURCES)}, nor a snapshot file that "
                f"exists. Unset it to let pbtrun find the GPUs, or give the path of a file written by "
                f"`pbtrun gpus --json`."
            )
        return "snapshot", read_snapshot(forced), [f"snapshot file {forced}"]
    if forced == "none":
        return "none", [], [f"{SOURCE_VAR}=none"]
    if forced in ("nvml", "nvidia-smi"):
        try:
            return forced, _READERS[forced](), []
        except GpuReadError as exc:
            raise PbtrunError(
                f"{SOURCE_VAR}={forced} makes pbtrun read the GPUs through {SOURCE_WORDS[forced]} only, "
                f"and that failed: {str(exc).rstrip('.')}. Unset {SOURCE_VAR} (or set it to auto) to let "
                f"pbtrun fall back to another source, or fix the NVIDIA driver."
            ) from None
    notes = []
    for name, reader in _READERS.items():
        why_not = _unavailable(name)
        if why_not is None:
            try:
                return name, reader(), notes
            except GpuReadError as exc:
                why_not = str(exc)
        notes.append(f"{SOURCE_WORDS[name]}: {why_not}")
    return "none", [], notes


def _unavailable(source: str) -> str | None:
    """Why ``source`` is not even tried, or None. Importing and initialising NVML costs start-up
    time on every command; on a machine without the driver (no /proc/driver/nvidia) it can only
    fail, so it is not tried there. nvidia-smi must be on PATH."""
    if source == "nvml" and not os.path.exists(DRIVER_PROC):
        return f"no NVIDIA driver: no {DRIVER_PROC}"
    if source == "nvidia-smi" and shutil.which("nvidia-smi") is None:
        return "not on PATH"
    return None


def _read_nvml() -> list[Gpu]:
    from pbtrun.devices.nvml import read_nvml  # imports pynvml: only once a driver may answer

    return read_nvml()[0]


def _read_smi() -> list[Gpu]:
    from pbtrun.devices.smi import read_smi

    return read_smi()


_READERS = {"nvml": _read_nvml, "nvidia-smi": _read_smi}
