"""GPU placement as a pure function (:mod:`pbtrun.run.gpus`), checked without hardware.

Property tests generate GPU snapshots (1-16 GPUs with loads, free memory including unknown,
foreign processes), rules (both placement modes) and reserved sets, and check the guarantees
the scheduler relies on against a definition of eligibility written here from the issue, not
taken from the module. A few plain examples pin the wording of the reasons a user reads.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbtrun.run.gpus import GpuState, Placement, Rules, Wait, place, reserve
from pbtrun.state.records import Settings

PROPERTY = settings(max_examples=100, deadline=None)
GB = 1024  # MB


@st.composite
def snapshots(draw: st.DrawFn, min_gpus: int = 1) -> list[GpuState]:
    """1-16 GPUs with distinct, not necessarily contiguous indices (a user may be given 2 and 5)."""
    indices = draw(st.lists(st.integers(0, 31), min_size=min_gpus, max_size=16, unique=True))
    # Idle GPUs and plenty of memory are drawn often, so that placements succeed as often as they wait.
    load = st.just(0) | st.integers(0, 5)
    free = st.none() | st.sampled_from([0, 10 * GB, 20 * GB, 40 * GB]) | st.integers(0, 80 * GB)
    return [GpuState(i, draw(load), draw(free), draw(st.booleans())) for i in indices]


rules_st = st.builds(
    Rules,
    per_gpu=st.integers(1, 4),
    by_memory=st.booleans(),
    min_free_mb=st.sampled_from([0, 10 * GB, 20 * GB]) | st.integers(0, 40 * GB),
    exclude_busy=st.booleans(),
)
needs = st.integers(1, 4)


@st.composite
def decisions(draw: st.DrawFn) -> tuple[list[GpuState], int, Rules, frozenset[int]]:
    """A snapshot, a need, rules, and GPUs reserved for someone ahead in line (often none)."""
    gpus = draw(snapshots())
    avoid = draw(st.just(frozenset()) | st.frozensets(st.sampled_from([g.index for g in gpus])))
    return gpus, draw(needs), draw(rules_st), avoid


def eligible(gpus: Sequence[GpuState], rules: Rules, avoid: Collection[int]) -> list[GpuState]:
    """The issue's definition of a GPU the next experiment may use."""
    return [
        g
        for g in gpus
        if g.load < rules.per_gpu
        and g.index not in avoid
        and not (rules.exclude_busy and g.foreign)
        and (not rules.by_memory or (g.free_mb is not None and g.free_mb >= rules.min_free_mb))
    ]


def by_index(gpus: Sequence[GpuState]) -> dict[int, GpuState]:
    return {g.index: g for g in gpus}


@PROPERTY
@given(decisions())
def test_never_over_capacity(case):
    """Every chosen GPU holds fewer than experiments_per_gpu of the sweep's experiments."""
    gpus, need, rules, avoid = case
    chosen = place(gpus, need, rules, avoid)
    if not isinstance(chosen, Wait):
        assert all(by_index(gpus)[i].load < rules.per_gpu for i in chosen)


@PROPERTY
@given(decisions())
def test_exactly_need_distinct_gpus_ascending_or_a_wait(case):
    """A placement is `need` distinct GPUs of the snapshot, ascending (CUDA_VISIBLE_DEVICES order)."""
    gpus, need, rules, avoid = case
    chosen = place(gpus, need, rules, avoid)
    if isinstance(chosen, Wait):
        assert chosen.reason and "\n" not in chosen.reason and len(chosen.reason) <= 250, chosen
    else:
        assert len(chosen) == need and list(chosen) == sorted(set(chosen))
        assert set(chosen) <= set(by_index(gpus))


@PROPERTY
@given(decisions())
def test_never_an_avoided_gpu_nor_an_excluded_busy_one(case):
    """GPUs reserved for an experiment ahead in line, and (exclude_busy_gpus) GPUs with foreign
    processes, are never chosen."""
    gpus, need, rules, avoid = case
    chosen = place(gpus, need, rules, avoid)
    if not isinstance(chosen, Wait):
        assert not set(chosen) & avoid
        if rules.exclude_busy:
            assert not any(by_index(gpus)[i].foreign for i in chosen)


@PROPERTY
@given(decisions())
def test_memory_rule_respected(case):
    """Under memory placement, every chosen GPU is known to have at least min_free_memory_gb free."""
    gpus, need, rules, avoid = case
    chosen = place(gpus, need, rules._replace(by_memory=True), avoid)
    if not isinstance(chosen, Wait):
        for i in chosen:
            free_mb = by_index(gpus)[i].free_mb
            assert free_mb is not None and free_mb >= rules.min_free_mb, (i, free_mb)


def _count_order(g: GpuState) -> tuple:
    return (g.load, g.index)


def _memory_order(g: GpuState) -> tuple:
    return (-(g.free_mb or 0), g.load, g.index)


@pytest.mark.parametrize(
    ("by_memory", "order"),
    [(False, _count_order), (True, _memory_order)],
    ids=["least busy first by count", "most free memory first by memory"],
)
@PROPERTY
@given(case=decisions())
def test_the_best_eligible_gpus_are_chosen(by_memory, order, case):
    """No eligible GPU left out comes before a chosen one: by count, the least busy first (then
    the lower index); by memory, the most free memory first (then the less busy, the lower index)."""
    gpus, need, rules, avoid = case
    rules = rules._replace(by_memory=by_memory)
    chosen = place(gpus, need, rules, avoid)
    if not isinstance(chosen, Wait):
        picked = [by_index(gpus)[i] for i in chosen]
        for other in eligible(gpus, rules, avoid):
            if other.index not in chosen:
                assert all(order(other) > order(c) for c in picked), (other, picked)


@PROPERTY
@given(snapshots(), needs, st.integers(1, 4))
def test_spread_before_pack(gpus, need, per_gpu):
    """Placing experiments one by one on idle GPUs (count mode), the loads never differ by more
    than one, and placing stops only when fewer than `need` GPUs have room."""
    rules = Rules(per_gpu)
    load = dict.fromkeys(by_index(gpus), 0)
    while True:
        chosen = place([g._replace(load=load[g.index]) for g in gpus], need, rules)
        if isinstance(chosen, Wait):
            break
        for i in chosen:
            load[i] += 1
        assert max(load.values()) - min(load.values()) <= 1, load
    assert sum(n < per_gpu for n in load.values()) < need, load


@PROPERTY
@given(snapshots(), needs)
def test_multi_gpu_sets_of_one_per_gpu_are_disjoint(gpus, need):
    """With experiments_per_gpu = 1, experiments placed one after another never share a GPU."""
    load = dict.fromkeys(by_index(gpus), 0)
    taken: list[tuple[int, ...]] = []
    while not isinstance(chosen := place([g._replace(load=load[g.index]) for g in gpus], need, Rules(1)), Wait):
        taken.append(chosen)
        for i in chosen:
            load[i] += 1
    flat = [i for chosen in taken for i in chosen]
    assert len(flat) == len(set(flat)) and len(taken) == len(gpus) // need


@pytest.mark.parametrize("decide", [place, reserve])
@PROPERTY
@given(case=decisions(), rnd=st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(decide, case, rnd):
    """place and reserve: the same GPUs in another order give the same answer, reason included."""
    gpus, need, rules, avoid = case
    shuffled = list(gpus)
    rnd.shuffle(shuffled)
    assert decide(shuffled, need, rules, avoid) == decide(gpus, need, rules, avoid)


@PROPERTY
@given(decisions())
def test_wait_exactly_when_fewer_than_need_are_eligible(case):
    """A Wait comes back if and only if fewer than `need` GPUs are eligible."""
    gpus, need, rules, avoid = case
    waits = isinstance(place(gpus, need, rules, avoid), Wait)
    assert waits == (len(eligible(gpus, rules, avoid)) < need)


@PROPERTY
@given(decisions())
def test_reserve_takes_need_least_loaded_candidates(case):
    """reserve gives `need` distinct GPUs, ascending, none avoided nor (exclude_busy) busy, the
    least loaded first, whenever enough candidates exist; otherwise all candidates."""
    gpus, need, rules, avoid = case
    candidates = [g for g in gpus if g.index not in avoid and not (rules.exclude_busy and g.foreign)]
    held = reserve(gpus, need, rules, avoid)
    assert list(held) == sorted(set(held)) and set(held) <= {g.index for g in candidates}
    assert len(held) == min(need, len(candidates))
    loads = by_index(gpus)
    for other in candidates:
        if other.index not in held:
            assert all(other.load >= loads[i].load for i in held)


# ---------------------------------------------------------------- the reasons a user reads


def idle(*indices: int, free_mb: int | None = None) -> list[GpuState]:
    return [GpuState(i, 0, free_mb) for i in indices]


def test_reason_every_gpu_full():
    assert place([GpuState(0, 2), GpuState(1, 2)], 1, Rules(2)) == Wait(
        "every GPU holds 2 experiments (experiments_per_gpu = 2)"
    )


def test_reason_not_enough_memory_in_gb():
    memory = Rules(1, by_memory=True, min_free_mb=20 * GB)
    assert place(idle(0, 1, free_mb=10 * GB), 1, memory) == Wait("no GPU with 20 GB free")
    two = [GpuState(0, 0, 30 * GB), GpuState(1, 0, 10 * GB)]
    assert place(two, 2, memory) == Wait("needs 2 GPUs, 1 eligible: no 2 GPUs with 20 GB free each")
    half = Rules(1, by_memory=True, min_free_mb=1536)
    assert place(idle(0, free_mb=1000), 1, half) == Wait("no GPU with 1.5 GB free")


def test_reason_busy_with_foreign_processes():
    gpus = [GpuState(i, 0, None, foreign=i in (0, 3)) for i in range(4)]
    rules = Rules(1, exclude_busy=True)
    assert place(gpus, 3, rules) == Wait(
        "needs 3 GPUs, 2 eligible: GPUs 0, 3 are busy with processes pbtrun did not start (exclude_busy_gpus)"
    )
    assert place(gpus[:1], 1, rules) == Wait(
        "every GPU is busy with processes pbtrun did not start (exclude_busy_gpus)"
    )


def test_reason_more_gpus_than_there_are():
    assert place(idle(0, 1), 4, Rules(1)) == Wait("needs 4 GPUs, there are 2")


def test_reason_combines_the_rules_that_block_most():
    gpus = [GpuState(0, 1), GpuState(1, 1), GpuState(2, 0, foreign=True), GpuState(3, 0)]
    assert place(gpus, 1, Rules(1, exclude_busy=True), avoid={3}) == Wait(
        "GPUs 0, 1 hold 1 experiment each (experiments_per_gpu = 1); "
        "GPU 2 is busy with processes pbtrun did not start (exclude_busy_gpus); "
        "1 more GPU blocked by other rules"
    )


def test_reason_names_gpus_short_of_memory_when_others_have_it():
    gpus = [GpuState(0, 1, 30 * GB), GpuState(1, 0, 10 * GB), GpuState(2, 0, 30 * GB)]
    assert place(gpus, 2, Rules(1, by_memory=True, min_free_mb=20 * GB)) == Wait(
        "needs 2 GPUs, 1 eligible: GPU 0 holds 1 experiment (experiments_per_gpu = 1); GPU 1 has less than 20 GB free"
    )


def test_reason_lists_a_few_gpus_and_counts_the_rest():
    gpus = [GpuState(i, 1 if i < 6 else 0) for i in range(8)]
    assert place(gpus, 3, Rules(1)) == Wait(
        "needs 3 GPUs, 2 eligible: GPUs 0, 1, 2, 3 and 2 more hold 1 experiment each (experiments_per_gpu = 1)"
    )


def test_reason_unknown_memory_under_memory_placement():
    assert place(idle(0, 1), 1, Rules(1, by_memory=True)) == Wait(
        'free memory unknown on every GPU (placement = "memory")'
    )


# ---------------------------------------------------------------- the scheduler's wrapper


def test_placement_slots_pinning_and_settings():
    """Placement answers None without a free slot, () when GPUs are not pinned, and otherwise
    applies the sweep's placement settings (GB in the spec, MB from the driver)."""
    pinned = Placement(Settings(gpus=(2, 5), max_parallel=3, experiments_per_gpu=1))
    assert pinned.choose({}, 3) is None
    assert pinned.choose({}, 0) == (2,)
    assert pinned.choose({2: 1}, 1) == (5,)
    assert pinned.choose({}, 0, need=2) == (2, 5)
    assert pinned.choose({}, 0, avoid={2}) == (5,)
    assert pinned.choose({2: 1, 5: 1}, 2) == Wait("every GPU holds 1 experiment (experiments_per_gpu = 1)")
    assert Placement(Settings(gpus=(0,), max_parallel=3)).choose({}, 0) == ()

    memory = Settings(gpus=(0, 1, 2), experiments_per_gpu=2, placement="memory", min_free_memory_gb=20)
    by_memory = Placement(memory)
    free = {0: 30 * GB, 1: 60 * GB, 2: 19 * GB}
    assert by_memory.choose({}, 0, memory=free) == (1,)
    assert by_memory.choose({}, 0, need=2, memory=free) == (0, 1)
    assert by_memory.choose({}, 0, need=3, memory=free) == Wait(
        "needs 3 GPUs, 2 eligible: no 3 GPUs with 20 GB free each"
    )
    busy = Placement(memory._replace(placement="count", exclude_busy_gpus=True))
    assert busy.choose({0: 1}, 1, foreign={1}) == (2,)


@PROPERTY
@given(snapshots(), st.integers(1, 4), st.integers(1, 12))
def test_the_short_way_for_one_gpu_each_chooses_what_place_chooses(gpus, per_gpu, count):
    """The scheduler's shortcut for count placement of one-GPU experiments
    (``choosing._one_gpu_each``) launches, one by one, exactly what :func:`place` would."""
    from pbtrun.run.choosing import _one_gpu_each

    class Line:  # the run queue's two questions, over a plain list of ids
        def __init__(self, n: int) -> None:
            self.ids = [f"e{i}" for i in range(n)]

        def launchable(self) -> bool:
            return bool(self.ids)

        def pop(self) -> str:
            return self.ids.pop(0)

    load = {g.index: g.load for g in gpus}
    short = _one_gpu_each(Line(count), count, False, dict(load), [g.index for g in gpus], per_gpu, lambda _: 1)
    rules = Rules(per_gpu)
    expected = []
    for _ in range(count):
        picked = place([GpuState(i, n) for i, n in load.items()], 1, rules)
        if isinstance(picked, Wait):
            break
        load[picked[0]] += 1
        expected.append(picked)
    assert [gpus_ for _, gpus_ in short] == expected
