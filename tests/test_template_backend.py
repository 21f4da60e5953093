"""The command-template backend (``backend = "template"``) against a small fake queue
(``tests/data/fakequeue.py``: real detached processes, the tests' environment): true return codes
and job ids, a killed ``pbtrun up`` resumed without submitting anything twice, ``stop`` through
the cancel command, what a status command adds and what its failure must not do, and the
``[template]`` table's errors at their lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from test_scheduler import intervals

from pbtrun.backends.template import FAILED, RUNNING, SUCCEEDED, parse_job_id, verdict
from pbtrun.errors import BackendError, SpecError, StateError
from pbtrun.spec.reading import parse

ROOT = Path(__file__).resolve().parent.parent
FAKEQUEUE = Path(__file__).resolve().parent / "data" / "fakequeue.py"
Q = f'"{sys.executable}", "{FAKEQUEUE}"'
STATUS = (
    f'status = [{Q}, "status", "{{job_id}}"]\n'
    "running_pattern = 'PENDING|RUNNING'\nsucceeded_pattern = 'DONE'\nfailed_pattern = 'FAILED'\n"
)
CANCEL = f'cancel = [{Q}, "cancel", "{{job_id}}"]\n'


class Queue:
    """The fake queue's state directory, as its administrator sees it."""

    def __init__(self, root: Path) -> None:
        self.dir = root

    def calls(self, verb: str) -> list[list[str]]:
        path = self.dir / "calls.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split()[1:] for line in lines if line.split()[0] == verb]

    def jobs(self) -> list[Path]:
        return sorted(self.dir.glob("fq-*"))

    def release(self) -> None:
        for held in self.dir.glob("fq-*/held"):
            held.unlink()

    def ended(self) -> bool:
        return all((job / "exit").exists() for job in self.jobs())

    def cleanup(self) -> None:
        for job in self.jobs():
            (job / "cancelled").touch()  # a held job's supervisor then exits without starting it
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                os.killpg(int((job / "pid").read_text()), signal.SIGKILL)


@pytest.fixture
def queue(project, tmp_path):
    """``project``, running pbtrun (and the jobs the queue starts, which inherit its environment)
    against a fake queue of its own."""
    state = tmp_path / "queue"
    state.mkdir()
    fake = Queue(state)
    original = project.env

    def env(**more: str) -> dict[str, str]:
        return original(**{"FAKEQUEUE_DIR": str(state), "PYTHONPATH": str(ROOT), **more})

    project.env = env
    try:
        yield fake
    finally:
        fake.cleanup()


def template_spec(recorder: str, groups: str, status: bool = True, cancel: bool = True, top: str = "") -> str:
    # "{name}" and "{gpus}" become sh's $0 and $1: unused by the job, seen in calls.log.
    submit = f'submit = [{Q}, "submit", "--", "sh", "-c", "{{command}}", "{{name}}", "{{gpus}}"]\n'
    table = submit + "job_id_pattern = 'Submitted job (?P<id>\\S+)'\n" + (STATUS if status else "")
    table += (CANCEL if cancel else "") + "poll_s = 0.2\n"
    return f'name = "t"\nbackend = "template"\ncommand = "{recorder}"\n{top}\n[template]\n{table}\n{groups}'


def recorded(project) -> bool:
    """Whether the state holds a job id for every experiment's last attempt."""
    try:
        experiments = project.state("t")["experiments"]
    except StateError:  # not written yet
        return False
    return bool(experiments) and all(
        e["attempts"] and not e["attempts"][-1]["ref"].startswith("template-tag:") for e in experiments
    )


def by_name(document: dict) -> dict[str, dict]:
    return {e["name"]: e for e in document["experiments"]}


# --------------------------------------------------------------------------- reading the queue's words


def test_the_job_id_is_the_named_group_or_the_only_one():
    assert parse_job_id(r"Submitted job (\S+)", "INFO: ok\nSubmitted job fq-12\n") == "fq-12"
    assert parse_job_id(r"(\w+) (?P<id>\d+)", "job 4711") == "4711"
    with pytest.raises(BackendError, match="no job id in what submit printed"):
        parse_job_id(r"Submitted job (\S+)", "error: quota exceeded")


def test_a_status_output_is_read_failed_first_then_succeeded_then_running():
    options = {"running_pattern": "RUNNING", "succeeded_pattern": "^DONE", "failed_pattern": "FAIL"}
    assert [verdict(options, said) for said in ("RUNNING", "DONE", "DONE FAILED", "UNKNOWN")] == [
        RUNNING,
        SUCCEEDED,
        FAILED,
        None,
    ]


# --------------------------------------------------------------------------- sweeps on the fake queue


def test_a_sweep_records_true_return_codes_and_job_ids(queue, project, recorder):
    groups = '[[experiments]]\nname = "e"\nlist = [{ exit = 0 }, { exit = 0 }, { exit = 3 }]\n'
    project.spec(template_spec(recorder, groups, top="[scheduler]\ngpus_per_experiment = 2\n"))
    result = project.run("up", "sweep.toml", "--plain", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    status = by_name(project.status_json("t"))
    assert sorted(e["returncode"] for e in status.values()) == [0, 0, 3]
    assert sorted(e["job_id"] for e in status.values()) == ["fq-1", "fq-2", "fq-3"]
    for name, exp in status.items():
        assert exp["history"][-1]["job_id"] == exp["job_id"] and exp["node"]
        (submit,) = [c for c in queue.calls("submit") if c[0] == exp["job_id"]]
        assert submit[-2:] == [name, "2"]  # {name} and {gpus}
        assert Path(exp["log"]).read_text().startswith("# pbtrun exit: ")
    assert len(queue.calls("submit")) == 3


def test_a_killed_up_then_resume_submits_nothing_twice(queue, project, recorder):
    groups = '[[experiments]]\nname = "k"\ngrid = { k = [1, 2, 3], sleep = [1.5] }\n'
    project.spec(template_spec(recorder, groups))
    up = project.start("up", "sweep.toml", "--plain")

    def submitted() -> bool:
        result = project.run("status", "train_dir/t", "--json")
        document = json.loads(result.stdout) if result.returncode == 0 else {}
        return "experiments" in document and all(e["job_id"] for e in document["experiments"])

    project.wait_for(submitted, timeout=30)
    os.killpg(up.pid, signal.SIGKILL)
    up.wait()
    again = project.run("resume", "train_dir/t", "--plain", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(intervals(project.records())) == 3  # each started exactly once, and ended
    assert all(e["status"] == "succeeded" and e["attempts"] == 1 for e in by_name(project.status_json("t")).values())
    assert len(queue.calls("submit")) == 3


def test_a_crash_between_submit_and_its_record_leaves_an_orphan_that_runs_nothing(queue, project, recorder):
    """The jobs are held in the queue; the scheduler is killed; then their ids are taken out of
    the state and of template/submitted.jsonl, as if it had died right after submit. Resume
    cannot ask the queue for them by tag: it claims their logs, submits again, and the orphans,
    once the queue starts them, run nothing."""
    (queue.dir / "hold").touch()
    project.spec(template_spec(recorder, '[[experiments]]\nname = "c"\ngrid = { k = [1, 2] }\n'))
    up = project.start("up", "sweep.toml", "--plain")
    sweep_dir = project.root / "train_dir" / "t"
    project.wait_for(lambda: len(queue.calls("submit")) == 2, timeout=30)
    project.wait_for(lambda: recorded(project), timeout=30)
    os.killpg(up.pid, signal.SIGKILL)
    up.wait()
    (sweep_dir / "template" / "submitted.jsonl").unlink()
    tag_of = {}
    for manifest in sweep_dir.glob("template/*.json"):
        document = json.loads(manifest.read_text())
        tag_of[document["tasks"][0]["id"]] = document["tags"][0]
    state = project.state("t")
    (sweep_dir / "pbtrun.journal").unlink(missing_ok=True)
    for exp in state["experiments"]:
        exp["attempts"][-1]["ref"] = tag_of[exp["id"]]
    (sweep_dir / "pbtrun.json").write_text(json.dumps(state))
    (queue.dir / "hold").unlink()
    again = project.run("resume", "train_dir/t", "--plain", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    queue.release()  # the orphans start now
    project.wait_for(queue.ended, timeout=30)
    assert len(intervals(project.records())) == 2  # each ran once: the orphans ran nothing
    status = by_name(project.status_json("t"))
    # The abandoned attempts started nothing, so status counts only the second ones.
    assert all(e["status"] == "succeeded" and e["attempts"] == 1 for e in status.values())
    assert sorted(e["job_id"] for e in status.values()) == ["fq-3", "fq-4"]
    assert len(queue.calls("submit")) == 4


def test_stop_cancels_the_jobs_through_the_cancel_command(queue, project, recorder):
    project.spec(template_spec(recorder, '[[experiments]]\nname = "s"\ngrid = { k = [1, 2], sleep = [30] }\n'))
    up = project.start("up", "sweep.toml", "--plain")
    project.wait_for(lambda: len([r for r in project.records() if r["event"] == "start"]) == 2, timeout=30)
    stopped = project.run("stop", "train_dir/t", timeout=60)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    out, err = up.communicate(timeout=30)
    assert up.returncode == 130, out + err
    assert sorted(c[0] for c in queue.calls("cancel")) == ["fq-1", "fq-2"]
    ends = [r for r in project.records() if r["event"] == "end"]
    assert sorted(r["returncode"] for r in ends) == [-signal.SIGTERM] * 2  # the queue's SIGTERM, passed on
    assert all(e["status"] == "interrupted" for e in by_name(project.status_json("t")).values())


def test_ctrl_c_detaches_and_stop_claims_and_cancels_queued_jobs(queue, project, recorder):
    """Jobs still queued: Ctrl-C leaves them to the queue; `pbtrun stop`, with no scheduler,
    claims their logs and cancels them; they go back to pending and never run."""
    (queue.dir / "hold").touch()
    project.spec(template_spec(recorder, '[[experiments]]\nname = "q"\ngrid = { k = [1, 2] }\n'))
    up = project.start("up", "sweep.toml", "--plain")
    project.wait_for(lambda: recorded(project), timeout=30)
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=30)
    assert up.returncode == 130 and "pbtrun stop" in out, out + err
    stopped = project.run("stop", "train_dir/t", timeout=60)
    assert stopped.returncode == 0 and "cancelled" in stopped.stdout, stopped.stdout + stopped.stderr
    assert sorted(c[0] for c in queue.calls("cancel")) == ["fq-1", "fq-2"]
    assert all(e["status"] == "pending" for e in by_name(project.status_json("t")).values())
    queue.release()
    project.wait_for(queue.ended, timeout=30)
    assert project.records() == []


def test_a_job_the_status_says_failed_without_an_exit_record_is_lost(queue, project, recorder):
    """The job's runner and experiment are killed outright (a node lost): no exit record is
    written; the status command says FAILED, and after a grace the outcome is recorded lost."""
    project.spec(template_spec(recorder, '[[experiments]]\nname = "l"\ngrid = { sleep = [30] }\n'))
    up = project.start("up", "sweep.toml", "--plain")
    (start,) = project.wait_for(lambda: [r for r in project.records() if r["event"] == "start"], timeout=30)
    (job,) = queue.jobs()
    os.killpg(int((job / "pid").read_text()), signal.SIGKILL)
    os.killpg(start["pid"], signal.SIGKILL)
    out, err = up.communicate(timeout=30)
    assert up.returncode == 1, out + err
    (exp,) = by_name(project.status_json("t")).values()
    assert (exp["status"], exp["returncode"], exp["history"][-1]["outcome"]) == ("failed", None, "lost")


def test_a_refused_submission_stops_launching_and_says_what_the_queue_said(queue, project, recorder):
    text = template_spec(recorder, '[[experiments]]\nname = "r"\ngrid = { k = [1, 2] }\n')
    project.spec(text.replace('"submit", "--"', '"submt", "--"'))  # the queue answers with its usage
    result = project.run("up", "sweep.toml", "--plain", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert "the submission of 00_r_k_1 failed: submit" in said and "usage: fakequeue.py" in said, said
    assert "Traceback" not in said and not queue.jobs()
    status = by_name(project.status_json("t"))
    assert all(e["status"] == "pending" and e["job_id"] is None for e in status.values())


@pytest.mark.parametrize("mode", ["no status command", "a status command that fails"])
def test_ends_come_from_the_logs_whatever_the_status_command_does(queue, project, recorder, mode):
    if mode != "no status command":
        (queue.dir / "down").touch()
    groups = '[[experiments]]\nname = "d"\nlist = [{ exit = 0, sleep = 0.5 }, { exit = 2, sleep = 0.5 }]\n'
    project.spec(template_spec(recorder, groups, status=mode != "no status command", cancel=False))
    result = project.run("up", "sweep.toml", "--plain", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(e["returncode"] for e in by_name(project.status_json("t")).values()) == [0, 2]
    assert bool(queue.calls("status")) == (mode != "no status command")  # asked, failed, never an end


# --------------------------------------------------------------------------- the [template] table

HEAD = 'name = "t"\ncommand = "train"\nbackend = "template"\n'
GROUP = '\n[[experiments]]\nname = "g"\n'
SUBMIT = 'submit = "q submit {command}"\n'
ID = "job_id_pattern = 'job (\\d+)'\n"


def error(table: str, head: str = HEAD) -> str:
    with pytest.raises(SpecError) as info:
        parse(head + table + GROUP, Path("sweep.toml"))
    return info.value.message


@pytest.mark.parametrize(
    ("table", "line", "said"),
    [
        ("[template]\n" + ID, 4, "template: submit is required"),
        ("[template]\n" + SUBMIT, 4, "template: job_id_pattern is required"),
        ("[template]\n" + SUBMIT + "job_id_pattern = 'job (\\d+'\n", 6, "not a valid regular expression: missing )"),
        ("[template]\n" + SUBMIT + "job_id_pattern = 'job \\d+'\n", 6, "must capture the job id"),
        ("[template]\n" + SUBMIT + "job_id_pattern = 'a (b) (c)'\n", 6, "this one has 2 groups"),
        ("[template]\nsubmit = 'q --name {nam} {command}'\n" + ID, 5, "{nam} is not a placeholder of submit"),
        ("[template]\nsubmit = ['q',\n  '{job_id}', '{command}']\n" + ID, 6, "{job_id} is not a placeholder of submit"),
        ("[template]\nsubmit = 'q {name}'\n" + ID, 5, "must hold {command}"),
        ("[template]\n" + SUBMIT + ID + "status = 'q status {jobid}'\n", 7, "{jobid} is not a placeholder of status"),
        ("[template]\n" + SUBMIT + ID + "status = 'q {job_id}'\n", 7, "give at least one"),
        ("[template]\n" + SUBMIT + ID + "failed_pattern = 'F'\n", 7, "add status"),
        ("[template]\n" + SUBMIT + ID + "poll_s = 0\n", 7, "must be more than 0"),
        ("[template]\n" + SUBMIT + ID + "sumbit = 'x'\n", 7, "unknown key. Did you mean 'submit'?"),
        ("[scheduler]\nnum_gpus = 2\n[template]\n" + SUBMIT + ID, 5, "the queue places each job itself"),
        ("", None, 'template: is required with backend = "template"'),
    ],
)
def test_template_table_errors_name_their_line(table, line, said):
    message = error(table)
    place = f"sweep.toml, line {line}: " if line else "sweep.toml: "
    assert message.startswith(place) and said in message, message


def test_a_template_table_on_another_backend_is_refused_at_its_line():
    message = error("[template]\n" + SUBMIT + ID, head='name = "t"\ncommand = "train"\n')
    assert message.startswith('sweep.toml, line 3: template: is only read with backend = "template"'), message


def test_a_valid_table_is_kept_as_the_backend_reads_it():
    table = "[template]\nsubmit = ['q', 'run', '--cmd', '{command}', '${HOME}', '{.x}']\n" + ID + CANCEL
    spec = parse(HEAD + table + GROUP, Path("sweep.toml"))
    assert spec.backend_settings["submit"] == ["q", "run", "--cmd", "{command}", "${HOME}", "{.x}"]
    assert spec.backend_settings["poll_s"] == 10.0 and "status" not in spec.backend_settings
    assert spec.backend_settings["cancel"][-2:] == ["cancel", "{job_id}"]


def test_up_refuses_a_bad_template_in_one_paragraph(project):
    project.spec(HEAD + "[template]\n" + SUBMIT + "job_id_pattern = '('\n" + GROUP)
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 2 and "line 6: template.job_id_pattern" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (project.root / "train_dir").exists()
