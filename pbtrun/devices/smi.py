"""The GPUs as ``nvidia-smi`` prints them: the fallback where NVML cannot be loaded.

The parsers are pure and read the documented CSV of these two queries (no header, no units,
memory in MiB, ``[N/A]`` or ``[Not Supported]`` where the driver has no value)::

    nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits
    nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits

:func:`read_smi` runs them under one deadline: a hung driver makes nvidia-smi hang, and pbtrun
must then fall back, not hang with it.
"""

from __future__ import annotations

import contextlib
import csv
import subprocess
import time

from pbtrun.devices.model import Gpu, GpuProcess, GpuReadError

TIMEOUT_S = 5.0
GPU_QUERY = "--query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu"
APPS_QUERY = "--query-compute-apps=gpu_uuid,pid,used_memory"
FORMAT = "--format=csv,noheader,nounits"


def parse_smi_csv(text: str, apps: dict[str, list[GpuProcess]] | None = None) -> list[Gpu]:
    """The GPUs of the ``--query-gpu`` output, each with its processes from ``apps`` (by UUID).
    A line that is not six fields with an integer index raises :class:`GpuReadError`."""
    apps = apps or {}
    gpus = []
    for row in _rows(text):
        if len(row) != 6 or _number(row[0]) is None:
            raise GpuReadError(f"nvidia-smi printed a line pbtrun cannot read: {', '.join(row)!r}")
        index, uuid, name, used, total, utilization = row
        gpus.append(
            Gpu(
                index=int(index),
                uuid=uuid,
                name=name,
                memory_total_mb=_number(total),
                memory_used_mb=_number(used),
                utilization_pct=_number(utilization),
                processes=tuple(apps.get(uuid, ())),
            )
        )
    return gpus


def parse_smi_apps(text: str) -> dict[str, list[GpuProcess]]:
    """The compute processes of the ``--query-compute-apps`` output, by GPU UUID. Lines that do
    not read as one (older drivers say "No running processes found") are skipped: processes are
    a detail of the inventory, not a reason to drop it."""
    apps: dict[str, list[GpuProcess]] = {}
    for row in _rows(text):
        if len(row) == 3 and (pid := _number(row[1])) is not None:
            apps.setdefault(row[0], []).append(GpuProcess(pid, _number(row[2])))
    return apps


def _rows(text: str) -> list[list[str]]:
    return [[field.strip() for field in row] for row in csv.reader(text.splitlines()) if row]


def _number(field: str) -> int | None:
    """An integer field, or None for ``[N/A]``, ``[Not Supported]`` and anything else not a number."""
    try:
        return int(float(field)) if field.replace(".", "", 1).isdigit() else None
    except ValueError:
        return None


def read_smi(timeout_s: float = TIMEOUT_S) -> list[Gpu]:
    """Every GPU nvidia-smi lists, with its processes; :class:`GpuReadError` if it fails or does
    not answer within ``timeout_s`` seconds (both queries together)."""
    deadline = time.monotonic() + timeout_s
    gpus = _run(GPU_QUERY, deadline, timeout_s)
    try:
        apps = parse_smi_apps(_run(APPS_QUERY, deadline, timeout_s))
    except GpuReadError:
        apps = {}  # the GPUs were read; only their processes are unknown
    return parse_smi_csv(gpus, apps)


def _run(query: str, deadline: float, timeout_s: float) -> str:
    try:
        proc = subprocess.Popen(
            ["nvidia-smi", query, FORMAT],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except OSError as exc:
        raise GpuReadError(f"nvidia-smi cannot be run: {exc.strerror or exc}") from None
    try:
        out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        # Not proc.wait() without a limit, as subprocess.run does: a process stuck inside the
        # driver cannot die until the driver lets it, and pbtrun must go on meanwhile.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=0.5)
        raise GpuReadError(f"nvidia-smi did not answer within {timeout_s:g} s (a hung driver?)") from None
    if proc.returncode != 0:
        said = next((line.strip() for line in out.splitlines() if line.strip()), "nothing")
        raise GpuReadError(f"nvidia-smi failed (exit code {proc.returncode}): {said}")
    return out
