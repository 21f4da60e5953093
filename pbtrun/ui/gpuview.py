"""What ``pbtrun gpus`` prints: the inventory's document (:func:`pbtrun.devices.snapshot.to_json`)
as a notice line and a table. Pure: a document in, lines out; nothing is read here.

The table has one row per GPU and one more line per further process on it; pbtrun's own
experiments show their sweep and name. The column saying how ``CUDA_VISIBLE_DEVICES`` selects a
GPU is shown only where that differs from its index (UUIDs given by the user, say).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pbtrun.printable import printable

UUID_SHOWN = 12
GAP = "  "


def render(document: Mapping[str, Any], cwd: str | None = None) -> list[str]:
    """The notice, then the table (or nothing more where there is no GPU). ``cwd``: sweep
    directories under it are shown relative to it."""
    lines = [printable(str(document["notice"]))]
    gpus: Sequence[Mapping[str, Any]] = document["gpus"]
    if not gpus:
        return lines
    selectors = any(str(g["cuda_visible_devices"]) != str(g["index"]) for g in gpus)
    header = ["GPU", *(["CUDA_VISIBLE_DEVICES"] if selectors else []), "UUID", "NAME", "MEMORY", "UTIL", "PROCESSES"]
    rows: list[list[str]] = []
    for gpu in gpus:
        processes = [_process(p, cwd) for p in gpu["processes"]] or ["-"]
        selector = [printable(str(gpu["cuda_visible_devices"]))] if selectors else []
        rows.append(
            [
                str(gpu["index"]),
                *selector,
                _uuid(gpu["uuid"]),
                printable(gpu["name"] or "?"),
                _memory(gpu["memory_used_mb"], gpu["memory_total_mb"]),
                "?" if gpu["utilization_pct"] is None else f"{gpu['utilization_pct']}%",
                processes[0],
            ]
        )
        rows.extend([[""] * (len(header) - 1) + [more] for more in processes[1:]])
    return lines + _table([header, *rows])


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [GAP.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _uuid(uuid: str | None) -> str:
    if not uuid:
        return "?"
    return printable(uuid if len(uuid) <= UUID_SHOWN + 1 else uuid[:UUID_SHOWN] + "…")


def _memory(used_mb: int | None, total_mb: int | None) -> str:
    def gb(mb: int | None) -> str:
        return "?" if mb is None else f"{mb / 1024:.1f}"

    return f"{gb(used_mb)}/{gb(total_mb)} GB"


def _process(process: Mapping[str, Any], cwd: str | None) -> str:
    used = process["used_memory_mb"]
    text = f"{process['pid']} {'?' if used is None else used} MB"
    if process.get("sweep") and process.get("experiment"):
        text += f" {_sweep(process['sweep'], cwd)}/{process['experiment']}"
    return printable(text)


def _sweep(sweep_dir: str, cwd: str | None) -> str:
    """The sweep's directory, relative to ``cwd`` where it lies under it (``train_dir/ant``)."""
    if cwd and sweep_dir.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(sweep_dir, cwd)
    return sweep_dir
