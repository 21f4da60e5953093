"""A new attempt of an experiment, and what its backend is asked to start for it.

What every attempt gets is the same whatever the backend: its number, its log's name, the GPUs
it is pinned to, the reference the backend reserved for it, and the ``PBTRUN_*`` variables (and
``CUDA_VISIBLE_DEVICES`` where it is pinned) in its environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from pbtrun.backends.base import LaunchRequest
from pbtrun.spec.placeholders import fill_attempt
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import Attempt, Experiment


def next_attempt(
    paths: SweepPaths, exp: Experiment, gpus: tuple[int, ...] | None, started_at: float, host: str, ref: str | None
) -> Attempt:
    """``exp``'s next attempt, pinned to ``gpus`` (None: not pinned), known to its backend by
    ``ref`` (what the backend's ``reserve`` gave)."""
    number = 1 + max((a.number for a in exp.attempts), default=0)
    return Attempt(number, started_at, paths.log_name(exp, number), gpus, host, ref=ref)


def launch_requests(
    launched: Iterable[tuple[Experiment, Attempt]],
    sweep_dir: str,
    cwd: str,
    visible: Callable[[tuple[int, ...]], str] | None = None,
) -> Iterator[LaunchRequest]:
    """The launch requests, each made as the backend takes it (so the first starts sooner).
    ``visible``: how ``CUDA_VISIBLE_DEVICES`` names the GPUs (their indices if not given)."""
    for exp, attempt in launched:
        argv, env = fill_attempt(exp.spec.argv, added_env(exp, attempt, sweep_dir, visible), attempt.number)
        yield LaunchRequest(exp, attempt, argv, env, cwd)


def added_env(
    exp: Experiment, attempt: Attempt, sweep_dir: str, visible: Callable[[tuple[int, ...]], str] | None = None
) -> dict[str, str]:
    """What the attempt's environment adds to pbtrun's own, which it inherits."""
    env = dict(exp.spec.env)
    env["PBTRUN_EXPERIMENT"] = exp.name
    env["PBTRUN_SWEEP_DIR"] = sweep_dir
    env["PBTRUN_ATTEMPT"] = str(attempt.number)
    if attempt.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible(attempt.gpus) if visible else ",".join(map(str, attempt.gpus))
        if "CUDA_DEVICE_ORDER" not in os.environ and "CUDA_DEVICE_ORDER" not in env:
            # CUDA numbers GPUs fastest first unless told otherwise; NVML and nvidia-smi, whose
            # indices pbtrun places by, number them in PCI bus order. Same order, same GPU.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env
