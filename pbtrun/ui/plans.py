"""What ``plan`` and ``up --dry-run`` print: every experiment a spec compiles to, with its full
command, env and the slot it would start in, as text or as JSON (``--json``, for scripts).
Nothing here creates or runs anything."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbtrun.printable import printable
from pbtrun.state.records import Settings
from pbtrun.ui.jsonlines import Rows

if TYPE_CHECKING:  # for annotations: the spec layer is loaded by whoever compiled the experiments
    from pbtrun.spec.model import ExperimentSpec


def first_slots(experiments: Sequence[ExperimentSpec], settings: Settings) -> list[tuple[int, ...] | None]:
    """Where each experiment would start if the sweep began now with every slot free:
    a tuple of GPUs (empty: not pinned), or None for those that wait for a slot. By count of
    experiments per GPU only: memory placement decides by the memory free at launch."""
    from pbtrun.run.gpus import Placement, Wait

    placement = Placement(settings._replace(placement="count", exclude_busy_gpus=False))
    load: dict[int, int] = {}
    slots: list[tuple[int, ...] | None] = []
    running = 0
    for exp in experiments:
        need = exp.gpus_per_experiment or settings.gpus_per_experiment
        gpus = placement.choose(load, running, need)
        if gpus is None or isinstance(gpus, Wait):
            slots.append(None)
            continue
        running += 1
        for g in gpus:
            load[g] = load.get(g, 0) + 1
        slots.append(gpus)
    return slots


def _slot_word(gpus: tuple[int, ...] | None) -> str:
    if gpus is None:
        return "queued (starts when a slot frees)"
    return f"GPU {','.join(map(str, gpus))}" if gpus else "starts at once (GPUs not pinned)"


def plan_text(
    name: str,
    sweep_dir: Path,
    experiments: Sequence[ExperimentSpec],
    settings: Settings,
    changes: Sequence[str] | None = None,
) -> str:
    """What ``plan`` and ``up --dry-run`` print: each experiment's full command, env and first
    slot; for a sweep that exists, ``changes`` (what the spec changes in it) instead."""
    lines = []
    if changes is None:
        for exp, gpus in zip(experiments, first_slots(experiments, settings), strict=True):
            lines += command_lines(exp, f"  [{_slot_word(gpus)}]")
    else:
        lines += changes
    pinned = (
        f"{len(settings.gpus)} GPU(s) x {settings.experiments_per_gpu}"
        if settings.experiments_per_gpu > 0
        else "GPUs not pinned"
    )
    state = "would be" if changes is None else "is left as it is:"
    lines.append(
        f"plan: sweep {name}, {len(experiments)} experiment(s), max_parallel {settings.max_parallel}, {pinned}; "
        f"state {state} {sweep_dir}/pbtrun.json. Nothing was created or run."
    )
    return "\n".join(map(printable, lines))  # a name or value with a line break stays on its line


def command_lines(exp: ExperimentSpec, note: str = "") -> list[str]:
    """An experiment as ``plan`` lists it: its name (and ``note``), its command, its env."""
    lines = [f"{exp.name}{note}", f"    {shlex.join(exp.argv)}"]
    if exp.env:
        lines.append("    env: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exp.env.items()))
    return lines


def plan_json(name: str, sweep_dir: Path, experiments: Sequence[ExperimentSpec], settings: Settings) -> dict[str, Any]:
    """``plan --json``: the compiled experiments, for scripts."""
    return {
        "sweep": {"name": name, "dir": str(sweep_dir)},
        "settings": {
            "gpus": list(settings.gpus),
            "max_parallel": settings.max_parallel,
            "experiments_per_gpu": settings.experiments_per_gpu,
            "pause_between_s": settings.pause_between_s,
            "max_failures": settings.max_failures,
            "gpus_per_experiment": settings.gpus_per_experiment,
            "placement": settings.placement,
            "min_free_memory_gb": settings.min_free_memory_gb,
            "memory_settle_s": settings.memory_settle_s,
            "exclude_busy_gpus": settings.exclude_busy_gpus,
        },
        "experiments": Rows(list(zip(experiments, first_slots(experiments, settings), strict=True)), _plan_item),
    }


def _plan_item(item: tuple[ExperimentSpec, tuple[int, ...] | None]) -> dict[str, Any]:
    exp, gpus = item
    return {
        "name": exp.name,
        "id": exp.id,
        "group": exp.group,
        "argv": list(exp.argv),
        "env": dict(exp.env),
        "params": dict(exp.params),
        "first_slot": None if gpus is None else {"gpus": list(gpus) if gpus else None},
    }
