"""The GPUs as NVML (the NVIDIA Management Library, through ``nvidia-ml-py``) reports them.

NVML numbers GPUs as nvidia-smi does (PCI bus order) and ignores ``CUDA_VISIBLE_DEVICES``: it
lists the whole machine, and the inventory applies the restriction. It is initialised once per
process and kept so: the scheduler re-reads memory every few seconds while experiments wait.
"""

from __future__ import annotations

from typing import Any

from pbtrun.devices.model import Gpu, GpuProcess, GpuReadError

MB = 2**20

# After the first read: {"ok": True}, or {"failed": why} (kept, so that a machine whose driver
# is broken is not probed again at every re-read).
_INIT: dict[str, object] = {}


def read_nvml() -> tuple[list[Gpu], str]:
    """Every GPU the driver has, and the driver's version. Raises :class:`GpuReadError` with a
    one-line reason when NVML cannot be loaded or answers with an error."""
    nvml = _initialised()
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        # MIG: a GPU in MIG mode is listed as its parent device (whole memory, every process);
        # its instances are not enumerated, as pbtrun does not place experiments on them yet.
        gpus = [_read_one(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]
    except (nvml.NVMLError, _mismatch(nvml)) as exc:
        raise GpuReadError(f"NVML failed while reading the GPUs: {exc}") from None
    return gpus, driver


def _initialised() -> Any:
    """The ``pynvml`` module, NVML initialised; or GpuReadError saying why not."""
    if "failed" in _INIT:
        raise GpuReadError(str(_INIT["failed"]))
    try:
        import pynvml
    except ImportError:
        _INIT["failed"] = "the nvidia-ml-py package (module pynvml) is not installed"
        raise GpuReadError(str(_INIT["failed"])) from None
    if "ok" not in _INIT:
        try:
            pynvml.nvmlInit()
        except (pynvml.NVMLError, _mismatch(pynvml), OSError) as exc:
            _INIT["failed"] = f"NVML cannot be initialised: {exc}"
            raise GpuReadError(str(_INIT["failed"])) from None
        _INIT["ok"] = True
    return pynvml


def _read_one(nvml: Any, index: int) -> Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)  # v1: total/free/used in bytes, on every driver
    return Gpu(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total_mb=memory.total // MB,
        memory_used_mb=memory.used // MB,
        utilization_pct=_optional(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        processes=_processes(nvml, handle),
    )


def _processes(nvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
    try:
        found = _optional(nvml, lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except _mismatch(nvml):  # a driver older than the binding's v3 call
        if not hasattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2"):
            raise
        found = _optional(nvml, lambda: nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle))
    found = found or []
    return tuple(GpuProcess(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory) // MB) for p in found)


def _optional(nvml: Any, read: Any) -> Any:
    """What ``read()`` returns, or None where this GPU or this user may not read it (utilisation
    on a MIG parent, processes in some containers): a missing detail, not a failed read."""
    try:
        return read()
    except (nvml.NVMLError_NotSupported, nvml.NVMLError_NoPermission):
        return None


def _mismatch(nvml: Any) -> type[Exception]:
    """What the binding raises when the driver lacks a call it makes (releases before 12 raise
    NVMLError_FunctionNotFound instead, an NVMLError)."""
    return getattr(nvml, "NVMLLibraryMismatchError", nvml.NVMLError)


def _text(value: str | bytes) -> str:
    """Older nvidia-ml-py releases return bytes where newer ones return str."""
    return value.decode() if isinstance(value, bytes) else value
