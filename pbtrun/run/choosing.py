"""Which queued experiments start in this round, and on which GPUs.

In spec order, each on the GPUs placement picks (:func:`pbtrun.run.gpus.place`). An experiment
that cannot start yet (it needs more GPUs than are free, or memory that is not free) does not
stop the line: the ones behind it may start, but only on GPUs other than those it will take as
soon as they free up (:func:`pbtrun.run.gpus.reserve`). Those GPUs drain and it starts next, so
a two-GPU experiment among one-GPU ones is never starved, and no GPU it does not need stands idle
meanwhile.

The scan past a waiting experiment is bounded (``LOOK_PAST``): a queue of 100,000 that cannot
start costs a few dozen checks per round, not 100,000.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from pbtrun.run.gpus import GpuState, Placement, Rules, Wait, place, reserve
from pbtrun.run.queue import RunQueue
from pbtrun.state.records import Sweep

if TYPE_CHECKING:
    from pbtrun.run.gpuwatch import GpuWatch

LOOK_PAST = 32  # experiments looked at behind the first that must wait, per round

Chosen = tuple[str, tuple[int, ...]]


def choose(
    queue: RunQueue,
    sweep: Sweep,
    placement: Placement,
    watch: GpuWatch | None,
    held: Iterable[tuple[int, ...]],
    running: int,
) -> tuple[list[Chosen], str | None]:
    """This round's launches, and why experiments wait beyond the sweep's own slots and GPUs
    (memory, busy GPUs), or None. ``held``: the GPUs of each running experiment; ``running``:
    how many run. ``watch`` is None exactly when GPUs are not pinned."""
    settings = sweep.settings
    free_slots = settings.max_parallel - running
    one = settings.pause_between_s > 0  # pacing: one launch per round
    if free_slots <= 0:
        return [], None
    if watch is None:
        return choose_unpinned(queue, free_slots, one), None
    load: dict[int, int] = {}
    for gpus in held:
        for g in gpus:
            load[g] = load.get(g, 0) + 1
    experiments = sweep.experiments
    default_need = settings.gpus_per_experiment

    def need_of(exp_id: str) -> int:
        return experiments[exp_id].spec.gpus_per_experiment or default_need

    chosen: list[Chosen] = []
    if not watch.live:  # by count alone, and most experiments need one GPU: the short way
        chosen = _one_gpu_each(queue, free_slots, one, load, settings.gpus, placement.rules.per_gpu, need_of)
        free_slots -= len(chosen)
        if free_slots <= 0 or (one and chosen) or not queue.launchable() or need_of(queue.ids[0]) == 1:
            return chosen, None
    states = watch.states(settings.gpus, load)
    more, waiting = choose_pinned(queue, free_slots, one, states, placement.rules, need_of)
    chosen += more
    # Waiting for a slot or GPU the sweep's own experiments hold is the usual queue, and a round
    # that launches is not waiting: nothing to explain then.
    if chosen or not watch.live or waiting is None:
        return chosen, None
    if (promised := watch.promised_gb()) > 0:
        waiting += f" (counting {promised:g} GB promised to experiments launched in the last {watch.settle_s:g} s)"
    return chosen, waiting


def _one_gpu_each(
    queue: RunQueue,
    free_slots: int,
    one: bool,
    load: dict[int, int],
    gpus: Sequence[int],
    per_gpu: int,
    need_of: Callable[[str], int],
) -> list[Chosen]:
    """What :func:`choose_pinned` chooses by count for experiments that need one GPU each (the
    least busy GPU, the lowest index on ties), without building the placement's snapshot: it is
    every round of a sweep of short experiments. Stops at the first that needs more; ``load`` is
    updated with what it chose."""
    chosen: list[Chosen] = []
    while len(chosen) < free_slots and queue.launchable() and need_of(queue.ids[0]) == 1:
        best = min(gpus, key=lambda g: (load.get(g, 0), g), default=None)
        if best is None or load.get(best, 0) >= per_gpu:
            break
        load[best] = load.get(best, 0) + 1
        chosen.append((queue.pop(), (best,)))
        if one:
            break
    return chosen


def choose_unpinned(queue: RunQueue, free_slots: int, one: bool) -> list[Chosen]:
    """Experiments not pinned to GPUs: the next ``free_slots`` in line (one if pacing)."""
    chosen: list[Chosen] = []
    while len(chosen) < free_slots and queue.launchable():
        chosen.append((queue.pop(), ()))
        if one:
            break
    return chosen


def choose_pinned(
    queue: RunQueue,
    free_slots: int,
    one: bool,
    states: Sequence[GpuState],
    rules: Rules,
    need_of: Callable[[str], int],
) -> tuple[list[Chosen], str | None]:
    """Experiments pinned to GPUs, and why the first that cannot start waits (None if none does)."""
    gpus = {s.index: s for s in states}
    chosen: list[Chosen] = []
    passed: list[str] = []  # looked at, cannot start now: back to the front, in their order
    reserved: set[int] = set()
    waiting: str | None = None
    smallest_blocked = None  # the fewest GPUs an experiment could not get this round
    while len(chosen) < free_slots and queue.launchable() and len(passed) <= LOOK_PAST:
        exp_id = queue.pop()
        need = need_of(exp_id)
        if smallest_blocked is not None and need >= smallest_blocked:
            passed.append(exp_id)  # GPUs only fill up within a round: it cannot fit either
            continue
        picked = place(list(gpus.values()), need, rules, reserved)
        if isinstance(picked, Wait):
            waiting = waiting or picked.reason
            smallest_blocked = need if smallest_blocked is None else min(smallest_blocked, need)
            reserved.update(reserve(list(gpus.values()), need, rules, reserved))
            passed.append(exp_id)
            if smallest_blocked <= 1 or len(reserved) >= len(gpus):
                break  # nothing more can start this round
            continue
        for index in picked:
            state = gpus[index]
            free = state.free_mb
            if free is not None and rules.by_memory:
                free -= rules.min_free_mb  # what this launch will take, for the next pick of the round
            gpus[index] = state._replace(load=state.load + 1, free_mb=free)
        chosen.append((exp_id, picked))
        if one:
            break
    queue.put_back(passed)
    return chosen, waiting
