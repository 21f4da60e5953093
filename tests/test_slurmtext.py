"""The pure parsers of Slurm's text (pbtrun/backends/slurmtext.py), on the real output of a real
Slurm 22.05 recorded in tests/data/slurm/ by scripts/record-slurm-output.sh."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbtrun.backends import slurmtext
from pbtrun.backends.slurmtext import (
    JobState,
    array_spec,
    exit_code,
    parse_array_ids,
    parse_max_array_size,
    parse_sbatch,
    parse_scontrol_job,
    parse_squeue,
)
from pbtrun.errors import BackendError

DATA = Path(__file__).parent / "data" / "slurm"
PRIMES = tuple(n for n in range(2, 400) if all(n % p for p in range(2, n)))


def recorded(name: str) -> str:
    """A recorded file's text, without its '#' header (the command, the version, the date)."""
    lines = (DATA / name).read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def recorded_failure(name: str) -> tuple[int, str]:
    """The exit status and stderr of a recorded command that failed."""
    header = (DATA / name).read_text()
    status = re.search(r"^# exit status: (\d+)$", header, re.MULTILINE)
    assert status, name
    return int(status.group(1)), recorded(name)


def by_id(jobs: list[JobState]) -> dict[str, JobState]:
    found = {job.job_id: job for job in jobs}
    assert len(found) == len(jobs), "a job id seen twice"
    return found


def test_every_recording_says_what_produced_it():
    files = sorted(DATA.glob("*.txt"))
    assert len(files) >= 15
    for path in files:
        first, second = path.read_text().splitlines()[:2]
        assert first.startswith("# $ "), path.name
        assert "22.05" in second and re.search(r"\d{4}-\d\d-\d\d", second), path.name


# sbatch


def test_sbatch_prints_the_job_id_of_a_job_and_of_an_array():
    assert parse_sbatch(recorded("sbatch-single.txt")) == "13"
    assert parse_sbatch(recorded("sbatch-array.txt")) == "21"
    assert parse_sbatch("123;cluster\n") == "123"


@pytest.mark.parametrize("stdout", ["", "\n", "Submitted batch job 12\n", "12abc", "-3"])
def test_sbatch_output_without_a_job_id_is_refused(stdout):
    with pytest.raises(BackendError, match="squeue --me"):
        parse_sbatch(stdout)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sbatch-error-partition.txt", "Invalid partition name specified"),
        ("sbatch-error-gpus.txt", "Requested node configuration is not available"),
        ("sbatch-error-array-size.txt", "Invalid job array specification"),
    ],
)
def test_sbatch_refusals_are_on_stderr_with_status_1(name, message):
    """What the backend will have to tell a user: a refused submission prints no id."""
    status, stderr = recorded_failure(name)
    assert status == 1
    assert f"Batch job submission failed: {message}" in stderr


# squeue


def test_squeue_lines_of_a_sweep_in_every_state():
    jobs = by_id(parse_squeue(recorded("squeue-sweep.txt")))
    assert len(jobs) == 28
    assert jobs["21_[2-9%2]"] == JobState(
        "21_[2-9%2]",
        "21",
        (2, 3, 4, 5, 6, 7, 8, 9),
        "PENDING",
        "JobArrayTaskLimit",
        "",
        "pbtrun:rec01:throttled",
        "pbtrun-rec01",
    )
    assert jobs["21_0"] == JobState(
        "21_0", "21", (0,), "RUNNING", "None", "localhost", "pbtrun:rec01:throttled", "pbtrun-rec01"
    )
    assert jobs["22_[1-2]"][1:4] == ("22", (1, 2), "PENDING")
    assert jobs["13"] == JobState("13", None, (), "COMPLETED", "None", "localhost", "pbtrun:rec01:ok", "pbtrun-rec01")
    assert jobs["14"][3:5] == ("FAILED", "NonZeroExitCode")
    assert jobs["15_2"][1:5] == ("15", (2,), "FAILED", "NonZeroExitCode")
    assert jobs["16"][3:5] == ("CANCELLED", "None")
    assert jobs["17"][3:6] == ("CANCELLED", "JobHeldUser", "")  # cancelled while pending: no node
    assert jobs["12"][3:5] == ("TIMEOUT", "TimeLimit")
    assert jobs["23"][3:5] == ("PENDING", "Dependency")
    assert all(job.exit_code is None for job in jobs.values())  # squeue -o has no exit code


def test_squeue_unset_fields_read_as_empty_and_a_name_may_hold_the_separator():
    jobs = by_id(parse_squeue(recorded("squeue-sweep.txt")))
    assert jobs["24"].name == "odd name|with a pipe"
    assert jobs["24"].comment == ""  # Slurm's "(null)"
    assert jobs["1"].name == "local-slurm-warm-up"


def test_squeue_pending_ranges_are_expanded_stepped_and_sparse():
    jobs = by_id(parse_squeue(recorded("squeue-sweep.txt")))
    assert jobs["10_[0-150:3]"].task_ids == tuple(range(0, 151, 3))
    sparse = next(job for job in jobs.values() if job.comment == "pbtrun:rec01:sparse")
    assert sparse.task_ids == PRIMES
    assert sparse.job_id == f"28_[{array_spec(PRIMES)}]"  # Slurm writes it as array_spec does


def test_squeue_one_line_per_task_with_r():
    jobs = parse_squeue(recorded("squeue-array-tasks.txt"))
    assert sorted(task for job in jobs for task in job.task_ids) == list(range(10))
    assert {job.state for job in jobs} == {"PENDING", "RUNNING"}
    assert {job.array_job_id for job in jobs} == {"21"}


def test_squeue_task_lists_cut_short_are_refused_not_read_in_part():
    with pytest.raises(BackendError, match="SLURM_BITSTR_LEN=0"):
        parse_squeue(recorded("squeue-truncated.txt"))


def test_squeue_with_the_controller_down_is_an_error_never_an_empty_queue():
    status, stderr = recorded_failure("squeue-controller-down.txt")
    assert status == 1 and "Unable to contact slurm controller" in stderr
    with pytest.raises(BackendError, match="8 fields"):
        parse_squeue(stderr)
    assert parse_squeue("") == []  # an empty queue is an empty answer


# scontrol


def test_scontrol_a_failed_array_task():
    (job,) = parse_scontrol_job(recorded("scontrol-job-failed-task.txt"))
    assert job == JobState(
        "15_2", "15", (2,), "FAILED", "NonZeroExitCode", "localhost", "pbtrun:rec01:finished", "pbtrun-rec01", 5
    )


def test_scontrol_cancelled_and_timed_out_jobs_end_by_a_signal():
    (cancelled,) = parse_scontrol_job(recorded("scontrol-job-cancelled.txt"))
    assert (cancelled.job_id, cancelled.array_job_id, cancelled.state, cancelled.exit_code) == (
        "16",
        None,
        "CANCELLED",
        -15,
    )
    (timeout,) = parse_scontrol_job(recorded("scontrol-job-timeout.txt"))
    assert (timeout.state, timeout.reason, timeout.exit_code) == ("TIMEOUT", "TimeLimit", -15)


def test_scontrol_an_arrays_id_lists_every_task():
    jobs = by_id(parse_scontrol_job(recorded("scontrol-job-array.txt")))
    assert {job_id: job.exit_code for job_id, job in jobs.items()} == {"15_0": 0, "15_1": 0, "15_2": 5, "15_3": 0}
    assert {job.state for job_id, job in jobs.items() if job_id != "15_2"} == {"COMPLETED"}


def test_scontrol_and_squeue_name_an_arrays_pending_tasks_alike():
    from_scontrol = by_id(parse_scontrol_job(recorded("scontrol-job-pending-array.txt")))
    from_squeue = {job.job_id: job for job in parse_squeue(recorded("squeue-sweep.txt")) if job.array_job_id == "21"}
    assert set(from_scontrol) == set(from_squeue) == {"21_[2-9%2]", "21_0", "21_1"}
    for job_id, job in from_scontrol.items():
        assert job._replace(exit_code=None) == from_squeue[job_id]


def test_scontrol_fields_keep_spaces_and_keys_with_punctuation():
    line = recorded("scontrol-job-failed-task.txt").strip()
    fields = slurmtext.scontrol_fields(line)
    assert fields["AllocNode:Sid"].startswith("localhost:")
    assert fields["NodeList"] == "localhost" and fields["ReqNodeList"] == "(null)"
    assert fields["Power"] == ""
    spaced = slurmtext.scontrol_fields("JobId=5 JobName=odd name|x JobState=FAILED Reason=None")
    assert spaced["JobName"] == "odd name|x"


@pytest.mark.parametrize("text", ["slurm_load_jobs error: Invalid job id specified", "JobState=FAILED"])
def test_scontrol_lines_that_are_not_jobs_are_refused(text):
    with pytest.raises(BackendError, match="not a job record"):
        parse_scontrol_job(text)


def test_max_array_size_from_the_config():
    assert parse_max_array_size(recorded("scontrol-config.txt")) == 1001
    assert parse_max_array_size("MaxArraySize            = 40001\nMaxJobCount = 10000\n") == 40001
    assert parse_max_array_size("MaxJobCount = 10000\n") == slurmtext.DEFAULT_MAX_ARRAY_SIZE


# exit codes and array specifications


@pytest.mark.parametrize(
    ("field", "code"),
    [("0:0", 0), ("3:0", 3), ("143:0", 143), ("0:9", -9), ("0:15", -15), ("1:9", -9), ("", None), ("N/A", None)],
)
def test_exit_code(field, code):
    assert exit_code(field) == code


def test_an_exit_code_that_is_not_code_colon_signal_is_refused():
    with pytest.raises(BackendError, match="code:signal"):
        exit_code("3")


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("7", (7,)),
        ("4-9", (4, 5, 6, 7, 8, 9)),
        ("[4-9%2]", (4, 5, 6, 7, 8, 9)),
        ("1,3,5-7", (1, 3, 5, 6, 7)),
        ("0-10:5", (0, 5, 10)),
        ("5,1,3-4,1", (1, 3, 4, 5)),
        ("0-3,7,9-10%4", (0, 1, 2, 3, 7, 9, 10)),
    ],
)
def test_parse_array_ids(text, ids):
    assert parse_array_ids(text) == ids


@pytest.mark.parametrize("text", ["", "[]", "a", "4-", "9-4", "1,,2", "0-8:0", "-1", "0-99999999", "[1-3"])
def test_parse_array_ids_refuses_what_slurm_never_prints(text):
    with pytest.raises(BackendError):
        parse_array_ids(text)


def test_array_spec():
    assert array_spec([0, 1, 2, 3, 7, 9, 10], 4) == "0-3,7,9-10%4"
    assert array_spec([5]) == "5"
    assert array_spec([3, 1, 2, 2]) == "1-3"
    for bad, throttle in (([], None), ([-1], None), ([1], 0)):
        with pytest.raises(ValueError):
            array_spec(bad, throttle)


task_lists = st.lists(st.integers(0, 3000), min_size=1, max_size=200)
throttles = st.none() | st.integers(1, 500)


@given(task_lists, throttles)
def test_array_spec_round_trips_through_parse_array_ids(ids, throttle):
    spec = array_spec(ids, throttle)
    assert parse_array_ids(spec) == tuple(sorted(set(ids)))
    assert spec.endswith(f"%{throttle}") == (throttle is not None)


@given(task_lists, st.randoms(use_true_random=False))
def test_array_spec_ignores_order_and_repeats_and_is_shortest(ids, random):
    shuffled = [*ids, *ids[: len(ids) // 2]]
    random.shuffle(shuffled)
    spec = array_spec(shuffled)
    assert spec == array_spec(ids)
    # One part per run of consecutive ids: no two parts could be merged.
    runs = sum(1 for task in set(ids) if task - 1 not in set(ids))
    assert len(spec.split(",")) == runs


comments = st.text(st.characters(exclude_characters="|\n\r", exclude_categories=("Cs",)), max_size=20)
names = st.text(st.characters(exclude_characters="\n\r", exclude_categories=("Cs",)), max_size=30)


@given(comments, names)
def test_squeue_reads_back_any_comment_and_name(comment, name):
    line = f"7_3|7|3|RUNNING|None|node01|{comment}|{name}"
    (job,) = parse_squeue(line + "\n")
    assert job.name == name
    assert job.comment == ("" if comment in ("(null)", "N/A") else comment)
