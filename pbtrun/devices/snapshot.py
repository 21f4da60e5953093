"""Recorded inventories: the document ``pbtrun gpus --json`` prints, read back as a machine.

``pbtrun gpus --json > snap.json`` on any GPU machine records what its driver reports, and
``PBTRUN_GPU_SOURCE=snap.json pbtrun ...`` replays it: every command then sees that machine's
GPUs, memory and processes. This is how a bug report carries the machine it happened on, and how
the tests reproduce GPU machines without one. The file is read again at every inventory, so
rewriting it (say, with more memory used) changes what a running scheduler sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbtrun.devices.model import Gpu, GpuProcess, Inventory, notice
from pbtrun.errors import PbtrunError

HOW_TO_RECORD = "Record one with `pbtrun gpus --json > FILE` on the machine to reproduce."


def to_json(inventory: Inventory, owners: Mapping[int, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The document ``pbtrun gpus --json`` prints. ``owners`` maps the pid of each of pbtrun's
    experiments to its (sweep dir, experiment name); other processes get nulls."""
    owners = owners or {}

    def process(p: GpuProcess) -> dict[str, Any]:
        sweep, experiment = owners.get(p.pid, (None, None))
        return {"pid": p.pid, "used_memory_mb": p.used_memory_mb, "sweep": sweep, "experiment": experiment}

    return {
        "source": inventory.source,
        "notice": notice(inventory),
        "cuda_visible_devices": inventory.visible,
        "driver_count": inventory.driver_count,
        "taken_at": inventory.taken_at,
        "gpus": [
            {
                "index": g.index,
                "uuid": g.uuid,
                "name": g.name,
                "memory_total_mb": g.memory_total_mb,
                "memory_used_mb": g.memory_used_mb,
                "memory_free_mb": g.memory_free_mb,
                "utilization_pct": g.utilization_pct,
                "cuda_visible_devices": g.selector,
                "processes": [process(p) for p in g.processes],
            }
            for g in inventory.gpus
        ],
    }


def read_snapshot(path: str | Path) -> list[Gpu]:
    """The GPUs a snapshot recorded, as the driver-level list: the restriction it was taken under
    is not applied again (its list is already restricted); the current process's is, by the
    inventory. A file that cannot be read or is not such a document is a :class:`PbtrunError`."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"is not JSON ({exc})") from None
    gpus = document.get("gpus") if isinstance(document, dict) else None
    if not isinstance(gpus, list):
        raise _bad(path, 'is not a GPU snapshot: it has no "gpus" list')
    found: list[Gpu] = []
    for n, item in enumerate(gpus):
        gpu = _gpu(path, f"gpus[{n}]", item)
        if any(g.index == gpu.index for g in found):
            raise _bad(path, f"gpus[{n}].index: GPU {gpu.index} is listed twice")
        found.append(gpu)
    return found


def _gpu(path: str | Path, where: str, item: object) -> Gpu:
    if not isinstance(item, dict):
        raise _bad(path, f"{where}: expected an object, got {_shown(item)}")
    processes = item.get("processes", [])
    if not isinstance(processes, list):
        raise _bad(path, f"{where}.processes: expected a list, got {_shown(processes)}")
    total = _integer(path, item, "memory_total_mb", where)
    used = _integer(path, item, "memory_used_mb", where)
    if total is not None and used is not None and used > total:
        raise _bad(path, f"{where}.memory_used_mb: {used} MB used of {total} MB in all is more than the GPU has")
    # memory_free_mb, which `pbtrun gpus --json` prints, is not read: free memory is total - used.
    return Gpu(
        index=_integer(path, item, "index", where, required=True),
        uuid=_string(path, item, "uuid", where),
        name=_string(path, item, "name", where) or "",
        memory_total_mb=total,
        memory_used_mb=used,
        utilization_pct=_integer(path, item, "utilization_pct", where),
        processes=tuple(_process(path, f"{where}.processes[{k}]", p) for k, p in enumerate(processes)),
    )


def _process(path: str | Path, where: str, item: object) -> GpuProcess:
    if not isinstance(item, dict):
        raise _bad(path, f"{where}: expected an object, got {_shown(item)}")
    pid = _integer(path, item, "pid", where, required=True)
    return GpuProcess(pid, _integer(path, item, "used_memory_mb", where))


def _integer(path: str | Path, item: dict, key: str, where: str, required: bool = False) -> Any:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(path, f"{where}.{key}: expected a non-negative integer, got {_shown(value)}")
    return value


def _string(path: str | Path, item: dict, key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(path, f"{where}.{key}: expected a string, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    return "nothing" if value is None else json.dumps(value)[:60]


def _bad(path: str | Path, what: str) -> PbtrunError:
    return PbtrunError(f"The GPU snapshot {path} (named by PBTRUN_GPU_SOURCE) {what}. {HOW_TO_RECORD}")
