"""GPU placement: which GPUs the next experiment gets, or why it waits.

The decision is one pure function, :func:`place`, over a snapshot of the GPUs (:class:`GpuState`)
and the sweep's rules (:class:`Rules`): no clock, no driver, no state, so it is tested
exhaustively without hardware. Reading the GPUs (NVML, ``nvidia-smi``) is someone else's job;
:class:`Placement` only adapts the scheduler's bookkeeping (load per GPU, slots in use) to it.

Memory is in MB as the driver counts it (MiB: ``nvidia-smi`` shows the same numbers), and a GB
in the spec is 1024 of them, so ``min_free_memory_gb = 20`` reads back as "20 GB" in a reason.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

from pbtrun.state.records import Settings

MB_PER_GB = 1024
_SHOWN_IDS = 4  # GPU ids named in a reason before the rest are counted: it stays one short line


def detect_gpu_count() -> int:
    """GPUs the NVIDIA driver exposes, without starting a process or loading a library; 0 if none."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


class GpuState(NamedTuple):
    """One GPU as placement sees it at a decision."""

    index: int
    load: int  # experiments of this sweep running on it
    free_mb: int | None = None  # free memory minus memory promised to recent launches; None: unknown
    foreign: bool = False  # compute processes pbtrun did not start are on it


class Rules(NamedTuple):
    """The sweep's placement settings, in the units placement works in."""

    per_gpu: int  # experiments_per_gpu (>= 1: unpinned sweeps never call place)
    by_memory: bool = False  # [scheduler] placement = "memory"
    min_free_mb: int = 0  # min_free_memory_gb in MB (by_memory only)
    exclude_busy: bool = False  # exclude_busy_gpus


class Wait(NamedTuple):
    """No GPUs fit now; the reason is shown as ``waiting: <reason>``."""

    reason: str


def place(gpus: Sequence[GpuState], need: int, rules: Rules, avoid: Collection[int] = ()) -> tuple[int, ...] | Wait:
    """The ``need`` GPUs the next experiment runs on, ascending, or why it must wait.

    Count placement takes the least busy GPUs first (so experiments spread before they pack),
    then the lowest index; memory placement takes the most free memory first, then the least
    busy, then the lowest index. ``avoid`` holds GPUs reserved for an experiment ahead in line.
    The answer depends only on the GPUs' contents, never on their order in ``gpus``
    (indices are assumed distinct).
    """
    eligible = [g for g in gpus if not _blocks(g, rules, avoid)]
    if len(eligible) < need:
        return Wait(_reason(gpus, need, rules, avoid, len(eligible)))
    if rules.by_memory:
        eligible.sort(key=lambda g: (-(g.free_mb or 0), g.load, g.index))
    else:
        eligible.sort(key=lambda g: (g.load, g.index))
    return tuple(sorted(g.index for g in eligible[:need]))


def reserve(gpus: Sequence[GpuState], need: int, rules: Rules, avoid: Collection[int] = ()) -> tuple[int, ...]:
    """The GPUs a waiting experiment at the head of the line will take as soon as they free up.

    The scheduler lets experiments behind it launch only on other GPUs, so a large experiment
    is never starved by small ones that keep taking whichever GPU frees first. Load limits and
    memory are ignored (they are what it waits for); GPUs in ``avoid`` and, with
    ``exclude_busy``, GPUs busy with foreign processes are not candidates. Least loaded first,
    then most free memory (unknown counts as least), then lowest index; ascending. Fewer than
    ``need`` when there are fewer candidates: it holds all of them.
    """
    candidates = [g for g in gpus if g.index not in avoid and not (rules.exclude_busy and g.foreign)]
    candidates.sort(key=lambda g: (g.load, -1 if g.free_mb is None else -g.free_mb, g.index))
    return tuple(sorted(g.index for g in candidates[:need]))


# ---------------------------------------------------------------- why nothing fits

# Each rule that can keep a GPU out, in the order a tie between them is explained.
_FULL, _FOREIGN, _LOW, _UNKNOWN, _AVOID = "full", "foreign", "low", "unknown", "avoid"
_RULES = (_FULL, _FOREIGN, _LOW, _UNKNOWN, _AVOID)


def _blocks(g: GpuState, rules: Rules, avoid: Collection[int]) -> list[str]:
    """The rules that keep ``g`` out of the next placement (empty: it is eligible)."""
    found = []
    if g.load >= rules.per_gpu:
        found.append(_FULL)
    if rules.exclude_busy and g.foreign:
        found.append(_FOREIGN)
    if rules.by_memory:
        if g.free_mb is None:
            found.append(_UNKNOWN)  # memory placement never bets on a GPU it cannot read
        elif g.free_mb < rules.min_free_mb:
            found.append(_LOW)
    if g.index in avoid:
        found.append(_AVOID)
    return found


def _reason(gpus: Sequence[GpuState], need: int, rules: Rules, avoid: Collection[int], eligible: int) -> str:
    """One short line naming the rules that keep GPUs out, with their numbers.

    Rules are explained greedily, the one that blocks most of the GPUs not yet explained first,
    until every blocked GPU is accounted for; past two rules, the rest are counted, not named.
    """
    if need > len(gpus):
        return f"needs {need} GPUs, there are {len(gpus)}"
    why = {g.index: _blocks(g, rules, avoid) for g in gpus}
    blocked: dict[str, list[int]] = {}
    for index in sorted(why):
        for rule in why[index]:
            blocked.setdefault(rule, []).append(index)
    roomy = sum(g.free_mb is not None and g.free_mb >= rules.min_free_mb for g in gpus)
    unexplained = {i for i, found in why.items() if found}
    phrases = []
    while unexplained and len(phrases) < 2:
        rule = max(blocked, key=lambda r: (len(unexplained.intersection(blocked[r])), -_RULES.index(r)))
        ids = blocked.pop(rule)
        phrases.append(_phrase(rule, ids, len(gpus), need, rules, roomy))
        unexplained.difference_update(ids)
    if unexplained:
        phrases.append(f"{_count(len(unexplained), 'more GPU')} blocked by other rules")
    text = "; ".join(phrases)
    if need > 1 and eligible > 0:
        text = f"needs {need} GPUs, {eligible} eligible: {text}"
    return text


def _phrase(rule: str, ids: list[int], every: int, need: int, rules: Rules, roomy: int) -> str:
    """How one rule reads in a reason, for the GPUs it blocks (``roomy``: GPUs with the memory)."""
    whole = len(ids) == every
    one = len(ids) == 1
    if rule == _FULL:
        held = _count(rules.per_gpu, "experiment")
        subject = "every GPU holds" if whole else f"{_ids(ids)} {'holds' if one else 'hold'}"
        each = "" if whole or one else " each"
        return f"{subject} {held}{each} (experiments_per_gpu = {rules.per_gpu})"
    if rule == _FOREIGN:
        subject = "every GPU is" if whole else f"{_ids(ids)} {'is' if one else 'are'}"
        return f"{subject} busy with processes pbtrun did not start (exclude_busy_gpus)"
    if rule == _LOW:
        gb = _gb(rules.min_free_mb)
        if roomy < need:  # too few GPUs have the memory, whatever else happens
            return f"no GPU with {gb} GB free" if need == 1 else f"no {need} GPUs with {gb} GB free each"
        return f"{_ids(ids)} {'has' if one else 'have'} less than {gb} GB free"
    if rule == _UNKNOWN:
        subject = "every GPU" if whole else _ids(ids)
        return f'free memory unknown on {subject} (placement = "memory")'
    subject = _ids(ids)
    return f"{subject} {'is' if one else 'are'} reserved for an experiment ahead in line"


def _ids(ids: list[int]) -> str:
    """``GPU 3``, ``GPUs 0, 3``, or ``GPUs 0, 1, 2, 3 and 5 more``."""
    if len(ids) == 1:
        return f"GPU {ids[0]}"
    shown = ", ".join(map(str, ids[:_SHOWN_IDS]))
    rest = len(ids) - _SHOWN_IDS
    return f"GPUs {shown}" + (f" and {rest} more" if rest > 0 else "")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _gb(mb: int) -> str:
    """MB as GB with at most one decimal and no trailing ``.0``: 20480 -> ``20``, 1536 -> ``1.5``."""
    return f"{mb / MB_PER_GB:.1f}".removesuffix(".0")


# ---------------------------------------------------------------- the scheduler's view


class Placement:
    """Adapts the scheduler's bookkeeping to :func:`place`, with the sweep's settings."""

    def __init__(self, settings: Settings) -> None:
        self.gpus: Sequence[int] = settings.gpus
        self.per_gpu = settings.experiments_per_gpu
        self.max_parallel = settings.max_parallel
        min_gb = settings.min_free_memory_gb
        self.rules = Rules(
            per_gpu=max(self.per_gpu, 1),
            by_memory=settings.placement == "memory",
            min_free_mb=0 if min_gb is None else round(min_gb * MB_PER_GB),
            exclude_busy=settings.exclude_busy_gpus,
        )

    @property
    def pins(self) -> bool:
        return self.per_gpu > 0

    def snapshot(
        self,
        load: Mapping[int, int],
        memory: Mapping[int, int | None] | None = None,
        foreign: Collection[int] = (),
    ) -> list[GpuState]:
        """The sweep's GPUs as :func:`place` and :func:`reserve` see them."""
        memory = memory or {}
        return [GpuState(g, load.get(g, 0), memory.get(g), g in foreign) for g in self.gpus]

    def choose(
        self,
        load: Mapping[int, int],
        running: int,
        need: int = 1,
        memory: Mapping[int, int | None] | None = None,
        foreign: Collection[int] = (),
        avoid: Collection[int] = (),
    ) -> tuple[int, ...] | Wait | None:
        """GPUs for one more experiment: a tuple (empty: GPUs are not pinned), a :class:`Wait`
        when GPUs are pinned and none fit, or None when every slot (``max_parallel``) is taken.

        ``load`` counts the running experiments per GPU, ``memory`` the free MB per GPU (net of
        memory promised to recent launches), ``foreign`` the GPUs with processes pbtrun did not
        start, ``avoid`` the GPUs reserved for an experiment ahead in line.
        """
        if running >= self.max_parallel:
            return None
        if not self.pins:
            return ()
        return place(self.snapshot(load, memory, foreign), need, self.rules, avoid)
