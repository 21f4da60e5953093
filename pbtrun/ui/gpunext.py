"""Where the next experiment of a sweep would go now: the answer ``pbtrun gpus SWEEP`` adds.

It asks placement (:func:`pbtrun.run.gpus.place`) the question the scheduler would ask, with
this inventory and the GPUs the sweep's running experiments hold, as the state records them.
The memory a running scheduler has promised to its launches of the last ``memory_settle_s``
is its own and not counted here: right after a launch, the answer may be more hopeful than the
scheduler's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pbtrun.devices.inventory import Inventory
    from pbtrun.state.paths import SweepPaths


def next_placement(paths: SweepPaths, inventory: Inventory) -> dict[str, Any]:
    """``{"experiment", "gpus", "cuda_visible_devices", "waiting", "text"}``: the next experiment in
    line and the GPUs it would get, or why it would wait (``text`` says it in words)."""
    from pbtrun.devices.owners import owner
    from pbtrun.run.gpus import GpuState, Placement, Wait, place
    from pbtrun.state import store

    sweep = store.load(paths)
    settings = sweep.settings
    answer: dict[str, Any] = {"experiment": None, "gpus": None, "cuda_visible_devices": None, "waiting": None}
    runnable = sweep.runnable()
    if not runnable:
        return {**answer, "text": "nothing left to run"}
    exp = runnable[0]
    answer["experiment"] = exp.name
    running = sweep.running()
    if len(running) >= settings.max_parallel:
        why = f"every slot is taken (max_parallel = {settings.max_parallel})"
        return {**answer, "waiting": why, "text": f"{exp.name} would wait: {why}"}
    if settings.experiments_per_gpu <= 0:
        return {**answer, "text": f"{exp.name} would start now; GPUs are not pinned (experiments_per_gpu = -1)"}
    load: dict[int, int] = {}
    for other in running:
        for g in (other.last.gpus if other.last else None) or ():
            load[g] = load.get(g, 0) + 1
    known = {g.index: g for g in inventory.gpus}
    states = []
    for index in settings.gpus:
        gpu = known.get(index)
        free = gpu.memory_free_mb if gpu is not None else None
        foreign = gpu is not None and any(owner(p.pid) is None for p in gpu.processes)
        states.append(GpuState(index, load.get(index, 0), free, foreign))
    need = exp.spec.gpus_per_experiment or settings.gpus_per_experiment
    picked = place(states, need, Placement(settings).rules)
    if isinstance(picked, Wait):
        return {**answer, "waiting": picked.reason, "text": f"{exp.name} would wait: {picked.reason}"}
    visible = ",".join(known[g].visible_as if g in known and known[g].visible_as else str(g) for g in picked)
    listed = ",".join(map(str, picked))
    text = f"{exp.name} would go to GPU {listed} (CUDA_VISIBLE_DEVICES={visible})"
    return {**answer, "gpus": list(picked), "cuda_visible_devices": visible, "text": text}
