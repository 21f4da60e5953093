"""The GPU inventory without a GPU: CUDA_VISIBLE_DEVICES read as CUDA reads it, the GPUs it
selects, recorded snapshots replayed as the machine, and the inventory's notice (nvidia-smi and
owners: tests/test_devices_sources.py).

Every snapshot document below is CONSTRUCTED here, in the format `pbtrun gpus --json` prints;
none is recorded from a driver (tests/test_gpu_real.py runs against a real one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbtrun.devices import snapshot, visible
from pbtrun.devices.inventory import Gpu, GpuProcess, Inventory, notice, read_inventory
from pbtrun.errors import PbtrunError

HAS_DRIVER = os.path.exists("/proc/driver/nvidia")
UUIDS = [
    "GPU-1a2b3c4d-0000-1111-2222-333344445555",
    "GPU-1a2b9999-0000-1111-2222-333344445555",
    "GPU-7f000000-aaaa-bbbb-cccc-ddddeeeeffff",
    "GPU-c0ffee00-1234-5678-9abc-def012345678",
]


def _doc(pids: tuple[int, ...] = (4242,)) -> dict:
    """A constructed snapshot of a four-GPU machine; GPU 1 runs ``pids``."""
    gpus = []
    for i, uuid in enumerate(UUIDS):
        procs = [{"pid": pid, "used_memory_mb": 1000 + pid % 7} for pid in pids] if i == 1 else []
        gpus.append(
            {
                "index": i,
                "uuid": uuid,
                "name": "NVIDIA Constructed 80GB",
                "memory_total_mb": 81559,
                "memory_used_mb": 1 + 10000 * i,
                "utilization_pct": 10 * i,
                "cuda_visible_devices": str(i),
                "processes": procs,
            }
        )
    return {"source": "nvml", "notice": "constructed", "driver_count": 4, "taken_at": 0.0, "gpus": gpus}


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_doc()))
    return path


def _inv(snap: Path, cvd: str | None = None) -> Inventory:
    env = {"PBTRUN_GPU_SOURCE": str(snap)}
    if cvd is not None:
        env["CUDA_VISIBLE_DEVICES"] = cvd
    return read_inventory(env)


# --------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        (None, None),
        ("", ()),
        ("0", ("0",)),
        ("2,5", ("2", "5")),
        (" 2 ,\t5 ", ("2", "5")),
        ("5,2", ("5", "2")),
        ("0,1,", ("0", "1")),
        ("0,,1", ("0",)),
        ("0,-1,1", ("0",)),
        ("-1", ()),
        ("abc,0", ()),
        ("0,1a,2", ("0",)),
        ("+1", ()),
        ("1.0", ()),
        ("007", ("007",)),
        ("2,02,2", ("2",)),
        ("GPU-1a2b,1", ("GPU-1a2b", "1")),
        ("GPU-1A2B,GPU-1a2b", ("GPU-1A2B",)),
        ("MIG-0f0e-1d2c,0", ("MIG-0f0e-1d2c", "0")),
        ("gpu-1a2b", ()),
        ("GPU-1a2b 9", ()),
        ("0 1", ()),
    ],
)
def test_cuda_visible_devices_is_parsed_as_cuda_parses_it(value, tokens):
    assert visible.parse_visible(value) == tokens


def _built() -> list[Gpu]:
    return [Gpu(index=i, uuid=u, name="x", memory_total_mb=100, memory_used_mb=10 * i) for i, u in enumerate(UUIDS)]


def test_restrict_keeps_the_tokens_order_and_spelling():
    chosen, unmatched = visible.restrict(_built(), ["2", "GPU-7F", "0", "GPU-c0ffee"])
    assert [(g.index, g.visible_as) for g in chosen] == [(2, "2"), (0, "0"), (3, "GPU-c0ffee")]
    assert unmatched == ()  # GPU-7F is GPU 2 again (UUIDs ignore case): counted once
    assert chosen[2].uuid == UUIDS[3] and chosen[2].memory_used_mb == 30


def test_the_first_name_that_selects_nothing_ends_the_list_as_in_cuda():
    gpus = _built()
    chosen, unmatched = visible.restrict(gpus, ["1", "7", "2", "GPU-c0"])
    assert ([g.index for g in chosen], unmatched) == ([1], ("7", "2", "GPU-c0"))
    assert visible.unmatched_notes(unmatched, gpus) == [
        "CUDA_VISIBLE_DEVICES names GPU 7, which the driver does not have",
        "CUDA ignores what follows it in CUDA_VISIBLE_DEVICES (2, GPU-c0)",
    ]
    for token, why in [
        ("GPU-1a2b", "CUDA_VISIBLE_DEVICES names GPU-1a2b, which starts the UUIDs of 2 GPUs: give more of it"),
        ("GPU-dead", "CUDA_VISIBLE_DEVICES names GPU-dead, which no GPU of the driver has as UUID"),
    ]:
        chosen, unmatched = visible.restrict(gpus, ["3", token])
        assert [g.index for g in chosen] == [3]
        assert visible.unmatched_notes(unmatched, gpus) == [why]


def test_a_mig_instance_is_passed_over_and_noted():
    gpus = _built()
    chosen, unmatched = visible.restrict(gpus, ["MIG-abc", "2", "9", "MIG-def"])
    assert ([g.index for g in chosen], unmatched) == ([2], ("MIG-abc", "9", "MIG-def"))
    assert visible.unmatched_notes(unmatched, gpus) == [
        "CUDA_VISIBLE_DEVICES names MIG-abc, a MIG instance, which pbtrun does not place on yet",
        "CUDA_VISIBLE_DEVICES names GPU 9, which the driver does not have",
        "CUDA ignores what follows it in CUDA_VISIBLE_DEVICES (MIG-def)",
    ]


def test_without_a_driver_the_tokens_are_the_gpus():
    gpus = visible.without_driver(("2", "5"))
    assert [(g.index, g.uuid, g.visible_as, g.memory_total_mb) for g in gpus] == [
        (2, None, "2", None),
        (5, None, "5", None),
    ]
    mixed = visible.without_driver(("GPU-ab", "1", "GPU-cd"))
    assert [(g.index, g.uuid, g.visible_as) for g in mixed] == [
        (0, "GPU-ab", "GPU-ab"),
        (1, None, "1"),
        (2, "GPU-cd", "GPU-cd"),
    ]
    clash = visible.without_driver(("1", "GPU-ab", "2"))
    assert sorted(g.index for g in clash) == [1, 2, 3]  # the UUID's GPU takes a number no index token names


@st.composite
def machines_and_tokens(draw):
    """A driver's GPUs (unique indices, random hex UUIDs) and CUDA_VISIBLE_DEVICES tokens that
    mix their indices (some zero-padded), UUID prefixes of any length, and names of nothing."""
    indices = draw(st.lists(st.integers(0, 15), unique=True, max_size=8))
    hexes = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=8, max_size=8),
            unique=True,
            min_size=len(indices),
            max_size=len(indices),
        )
    )
    gpus = [Gpu(index=i, uuid=f"GPU-{h}") for i, h in zip(indices, hexes, strict=True)]
    number = st.integers(0, 20).flatmap(lambda n: st.sampled_from([str(n), f"0{n}"]))
    prefix = st.tuples(st.sampled_from([g.uuid for g in gpus] or ["GPU-00000000"]), st.integers(4, 12), st.booleans())
    uuid = prefix.map(lambda p: "GPU-" + (p[0][4 : p[1]].upper() if p[2] else p[0][4 : p[1]]))
    token = st.one_of(number, uuid)
    return gpus, draw(st.lists(token, max_size=10))


@given(machines_and_tokens())
def test_restrict_never_selects_a_gpu_twice_and_follows_the_tokens(case):
    gpus, tokens = case
    chosen, unmatched = visible.restrict(gpus, tokens)
    indices = [g.index for g in chosen]
    assert len(indices) == len(set(indices))
    assert all(g._replace(visible_as="") in gpus for g in chosen)  # the driver's GPUs, nothing invented
    positions = [tokens.index(g.visible_as) for g in chosen]
    assert positions == sorted(positions)  # in the tokens' order, each under its own spelling
    # As CUDA: every token up to the first that selects nothing selects its GPU (or one already
    # chosen, under its first spelling); that token and every one after it are left over.
    end = next((n for n, token in enumerate(tokens) if visible._select(gpus, token) is None), len(tokens))
    assert unmatched == tuple(tokens[end:])
    assert {visible._select(gpus, token).index for token in tokens[:end]} == set(indices)


@given(
    st.lists(
        st.one_of(st.integers(0, 99).map(str), st.text("0123456789abcdef", min_size=1, max_size=6).map("GPU-".__add__)),
        max_size=8,
    ),
    st.sampled_from(["", "-1", "abc", "1x", "gpu-0"]),
    st.integers(0, 8),
    st.sampled_from(["", " ", "\t "]),
)
def test_parsing_stops_at_the_first_invalid_token(tokens, bad, at, pad):
    at = min(at, len(tokens))
    value = ",".join(pad + t + pad for t in [*tokens[:at], bad, *tokens[at:]])
    expected = []
    for t in tokens[:at]:
        if visible._key(t) not in {visible._key(e) for e in expected}:
            expected.append(t)
    assert visible.parse_visible(value) == tuple(expected)


# --------------------------------------------------------------------------- the inventory's sources


def test_a_snapshot_is_the_machine(snap):
    inv = _inv(snap)
    assert (inv.source, inv.visible, inv.driver_count) == ("snapshot", None, 4)
    assert [g.index for g in inv.gpus] == [0, 1, 2, 3]
    assert [g.visible_as for g in inv.gpus] == ["0", "1", "2", "3"]
    assert inv.gpus[1].processes == (GpuProcess(4242, 1000 + 4242 % 7),)
    assert inv.gpus[2].memory_free_mb == 81559 - 20001
    assert notice(inv).startswith("GPUs: 4 (0, 1, 2, 3) from a snapshot; snapshot file ")


def test_inherited_indices_restrict_the_snapshot(snap):
    inv = _inv(snap, "2, 0")
    assert [(g.index, g.visible_as) for g in inv.gpus] == [(2, "2"), (0, "0")]
    assert (inv.driver_count, inv.visible) == (4, "2, 0")
    assert "GPUs: 2 of 4 (2, 0) from a snapshot, as CUDA_VISIBLE_DEVICES=2, 0 allows" in notice(inv)


def test_inherited_uuid_prefixes_come_back_as_spelled(snap):
    inv = _inv(snap, "GPU-c0ffee,GPU-7F000000-AAAA")
    assert [(g.index, g.visible_as, g.uuid) for g in inv.gpus] == [
        (3, "GPU-c0ffee", UUIDS[3]),
        (2, "GPU-7F000000-AAAA", UUIDS[2]),
    ]


def test_names_the_driver_lacks_are_noted(snap):
    inv = _inv(snap, "1,7,2")
    assert [g.index for g in inv.gpus] == [1]
    assert inv.notes[1:] == (
        "CUDA_VISIBLE_DEVICES names GPU 7, which the driver does not have",
        "CUDA ignores what follows it in CUDA_VISIBLE_DEVICES (2)",
    )
    assert notice(inv).startswith("GPUs: 1 of 4 (1) from a snapshot, as CUDA_VISIBLE_DEVICES=1,7,2 allows; ")
    assert notice(inv).endswith(
        "; CUDA_VISIBLE_DEVICES names GPU 7, which the driver does not have; "
        "CUDA ignores what follows it in CUDA_VISIBLE_DEVICES (2)"
    )


def test_an_empty_or_invalid_cuda_visible_devices_hides_every_gpu(snap):
    for value in ("", "-1", "none"):
        inv = _inv(snap, value)
        assert inv.gpus == () and inv.driver_count == 4
        assert notice(inv).startswith("GPUs: none of 4 from a snapshot, as CUDA_VISIBLE_DEVICES=")


def test_no_source_and_no_restriction_is_no_gpu():
    inv = read_inventory({"PBTRUN_GPU_SOURCE": "none"})
    assert (inv.gpus, inv.source, inv.driver_count) == ((), "none", 0)
    assert notice(inv) == "GPUs: none found (PBTRUN_GPU_SOURCE=none)"


def test_without_a_driver_cuda_visible_devices_still_names_the_gpus():
    inv = read_inventory({"PBTRUN_GPU_SOURCE": "none", "CUDA_VISIBLE_DEVICES": "2,5"})
    assert inv.source == "CUDA_VISIBLE_DEVICES"
    assert [(g.index, g.visible_as, g.memory_total_mb) for g in inv.gpus] == [(2, "2", None), (5, "5", None)]
    assert notice(inv).startswith("GPUs: 2 (2, 5) from CUDA_VISIBLE_DEVICES=2,5 (no NVIDIA driver to ask")
    hidden = read_inventory({"PBTRUN_GPU_SOURCE": "none", "CUDA_VISIBLE_DEVICES": ""})
    assert (hidden.gpus, hidden.source) == ((), "none")
    assert notice(hidden).startswith("GPUs: none found (CUDA_VISIBLE_DEVICES=(empty) names none")


def test_a_snapshot_is_read_again_at_every_inventory(snap):
    before = _inv(snap).gpus[0].memory_used_mb
    doc = _doc()
    doc["gpus"][0]["memory_used_mb"] = 80000
    snap.write_text(json.dumps(doc))
    assert (before, _inv(snap).gpus[0].memory_used_mb) == (1, 80000)


def test_what_gpus_json_prints_reads_back_as_the_same_gpus(snap):
    inv = _inv(snap, "3,1")
    document = snapshot.to_json(inv, {4242: ("/runs/ant", "00_ant")})
    assert json.loads(json.dumps(document)) == document
    assert document["cuda_visible_devices"] == "3,1" and document["notice"] == notice(inv)
    assert document["gpus"][1]["processes"] == [
        {"pid": 4242, "used_memory_mb": 1000 + 4242 % 7, "sweep": "/runs/ant", "experiment": "00_ant"}
    ]
    assert document["gpus"][0]["memory_free_mb"] == 81559 - 30001
    replay = snap.parent / "replay.json"
    replay.write_text(json.dumps(document))
    # The snapshot's own restriction is not applied twice: its list is the machine now.
    again = read_inventory({"PBTRUN_GPU_SOURCE": str(replay)})
    assert [g._replace(visible_as="") for g in again.gpus] == [g._replace(visible_as="") for g in inv.gpus]
    assert again.driver_count == 2


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "is not JSON"),
        ("[]", 'has no "gpus" list'),
        ('{"gpus": {}}', 'has no "gpus" list'),
        ('{"gpus": [1]}', "gpus[0]: expected an object, got 1"),
        ('{"gpus": [{"uuid": "GPU-1"}]}', "gpus[0].index: expected a non-negative integer, got nothing"),
        ('{"gpus": [{"index": "0"}]}', 'gpus[0].index: expected a non-negative integer, got "0"'),
        ('{"gpus": [{"index": true}]}', "gpus[0].index: expected a non-negative integer, got true"),
        ('{"gpus": [{"index": 0}, {"index": 0}]}', "gpus[1].index: GPU 0 is listed twice"),
        ('{"gpus": [{"index": 0, "memory_used_mb": -5}]}', "gpus[0].memory_used_mb"),
        ('{"gpus": [{"index": 0, "uuid": 5}]}', "gpus[0].uuid: expected a string, got 5"),
        ('{"gpus": [{"index": 0, "processes": [{"pid": "x"}]}]}', "gpus[0].processes[0].pid"),
        ('{"gpus": [{"index": 0, "processes": 3}]}', "gpus[0].processes: expected a list"),
    ],
)
def test_a_bad_snapshot_says_what_is_wrong_and_where(tmp_path, content, said):
    path = tmp_path / "bad snap.json"
    path.write_text(content)
    with pytest.raises(PbtrunError) as caught:
        read_inventory({"PBTRUN_GPU_SOURCE": str(path)})
    message = str(caught.value)
    assert str(path) in message and said in message and "PBTRUN_GPU_SOURCE" in message
    assert "pbtrun gpus --json" in message and "\n" not in message


def test_a_source_that_is_no_name_and_no_file_is_refused(tmp_path):
    with pytest.raises(PbtrunError, match=r"PBTRUN_GPU_SOURCE=.*nope\.json is none of auto, nvml, nvidia-smi, none"):
        read_inventory({"PBTRUN_GPU_SOURCE": str(tmp_path / "nope.json")})


@pytest.mark.skipif(HAS_DRIVER, reason="this machine has an NVIDIA driver: forced NVML would succeed")
def test_forcing_nvml_without_a_driver_is_a_clear_error():
    with pytest.raises(PbtrunError) as caught:
        read_inventory({"PBTRUN_GPU_SOURCE": "nvml"})
    message = str(caught.value)
    assert message.startswith("PBTRUN_GPU_SOURCE=nvml makes pbtrun read the GPUs through NVML only, and that failed: ")
    assert "Unset PBTRUN_GPU_SOURCE" in message
