"""The state's format: format 2 is written, format 1 (the first release's) is read through its
migration, in ``pbtrun.json`` and in the journal alike, and a sweep of the first release goes on
under this one: it shows in ``status`` and resumes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pbtrun.errors import StateError
from pbtrun.proc import hostname
from pbtrun.state import check, migrations, store
from pbtrun.state.codec import to_json
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import EXITED, NOT_STARTED, PENDING, SUCCEEDED, AttemptOutcome, Status
from pbtrun.state.writer import StateWriter

DATA = Path(__file__).parent / "data"
FIRST_RELEASE = DATA / "state-format-1"  # written by pbtrun 0.1.0: keep it, and this test, forever
RECORDER = DATA / "recorder.py"
EXTRA_ID = "e0e0e0e0e0e0e0e0"


def _first_release_sweep(sweep_dir: Path, cwd: Path, reaper: str | None = None) -> SweepPaths:
    """The first release's sweep copied to ``sweep_dir``, run from ``cwd``; with ``reaper``, its
    first attempt names that reaper, as the first release's later versions wrote it."""
    shutil.copytree(FIRST_RELEASE, sweep_dir)
    data = json.loads((sweep_dir / "pbtrun.json").read_text())
    data["sweep"]["cwd"] = str(cwd)
    if reaper is not None:
        data["experiments"][0]["attempts"][0]["reaper"] = reaper
    (sweep_dir / "pbtrun.json").write_text(json.dumps(data, indent=1, sort_keys=True))
    (sweep_dir / "logs").mkdir()  # the fixture keeps the state alone; a sweep has its logs beside it
    return SweepPaths(sweep_dir)


def _format_1_crash(paths: SweepPaths) -> None:
    """What the first release leaves when it dies while launching a new experiment: a pending
    experiment in pbtrun.json (added by ``up``), then journal lines of format 1 recording it
    running on a reaper that died with it, before its process started (no log was made)."""
    data = json.loads(paths.state.read_text())
    data["experiments"].append(
        {
            "argv": [sys.executable, str(RECORDER), "--k=1"],
            "attempts": [],
            "env": {},
            "group": "extra",
            "id": EXTRA_ID,
            "index": 0,
            "name": "00_extra",
            "params": {"k": 1},
            "status": "pending",
        }
    )
    paths.state.write_text(json.dumps(data, indent=1, sort_keys=True))
    attempt = {
        "number": 1,
        "started_at": 1795546800.0,
        "log": "logs/00_extra.1.log",
        "gpus": [0],
        "host": hostname(),
        "pid": None,
        "ended_at": None,
        "returncode": None,
        "outcome": None,
        "reaper": "pbtrun-1-gone",
    }
    entry = {"seq": 1, "changes": [{"id": EXTRA_ID, "status": "running", "attempt": attempt}]}
    paths.journal.write_bytes((json.dumps(entry) + "\n").encode() + bytes(100))


def test_every_older_format_has_a_step_to_the_next():
    assert set(migrations.STEPS) == set(range(1, migrations.FORMAT))


def test_a_format_1_state_reads_as_format_2_records_and_reading_writes_nothing(tmp_path):
    paths = _first_release_sweep(tmp_path / "quickstart", tmp_path, reaper="pbtrun-15240-0b7f952a")
    before = paths.state.read_bytes()
    sweep = store.load(paths)
    assert (sweep.backend, sweep.disk_format) == ("local", 1)
    first = next(iter(sweep.experiments.values()))
    assert first.last.ref == "pbtrun-15240-0b7f952a"
    assert type(first.status) is Status and first.status == SUCCEEDED == "succeeded"
    assert type(first.last.outcome) is AttemptOutcome and first.last.outcome == EXITED
    written = to_json(sweep)
    assert written["format"] == 2 and written["backend"] == "local"
    assert written["experiments"][0]["attempts"][0]["ref"] == "pbtrun-15240-0b7f952a"
    assert "reaper" not in json.dumps(written)
    assert json.loads(json.dumps(written))["experiments"][0]["status"] == "succeeded"  # the same words
    assert paths.state.read_bytes() == before and not paths.backup.exists()


def test_a_format_1_journal_is_replayed_and_the_first_write_makes_the_state_format_2(tmp_path):
    """A crash under the first release leaves format-1 journal lines; this pbtrun replays them, and
    its scheduler rewrites pbtrun.json in format 2 before it appends a line of its own."""
    paths = _first_release_sweep(tmp_path / "quickstart", tmp_path)
    _format_1_crash(paths)
    old_state = paths.state.read_bytes()
    extra = store.load(paths).experiments[EXTRA_ID]
    assert extra.status == "running" and extra.last.ref == "pbtrun-1-gone"

    writer = StateWriter(paths)
    assert json.loads(paths.state.read_bytes())["format"] == 2  # rewritten, journal folded in
    assert paths.backup.read_bytes() == old_state  # the first release's file, kept as the backup
    assert set(paths.journal.read_bytes()) <= {0}
    never_started = extra.last._replace(outcome=NOT_STARTED)
    writer.commit(lambda sweep: sweep.update(sweep.experiments[EXTRA_ID].to(PENDING, never_started)))
    line = paths.journal.read_bytes().rstrip(b"\0")
    assert b'"ref": "pbtrun-1-gone"' in line and b"reaper" not in line  # the new line is in format 2
    reread = store.load(paths)
    assert reread.disk_format == 2 and reread.experiments[EXTRA_ID].last.ref == "pbtrun-1-gone"
    writer.close()
    assert to_json(store.load(paths)) == to_json(reread)


def test_the_checker_names_fields_as_the_file_s_format_names_them(tmp_path):
    paths = _first_release_sweep(tmp_path / "quickstart", tmp_path, reaper="pbtrun-1-a")
    old = json.loads(paths.state.read_text())
    assert check.document_problem(old) is None  # a sound format-1 file: no "backend", "reaper"
    old["experiments"][0]["attempts"][0]["reaper"] = 7
    assert '"reaper" must be a string, or null, not the integer 7' in check.document_problem(old)

    new = to_json(store.load(_first_release_sweep(tmp_path / "again", tmp_path)))
    assert check.document_problem(new) is None
    new["experiments"][0]["attempts"][0]["ref"] = 7
    assert '"ref" must be a string, or null, not the integer 7' in check.document_problem(new)
    del new["backend"]
    assert check.document_problem(new) == 'the file has no "backend" field; it must be a string'

    line = json.dumps({"seq": 1, "changes": [{"id": "x", "status": "running", "attempt": {"number": 1, "reaper": 7}}]})
    assert '"started_at"' in check.journal_problem(line.encode(), {"x"}, 1)


def test_a_format_2_state_without_its_backend_is_refused_in_words(tmp_path):
    paths = _first_release_sweep(tmp_path / "quickstart", tmp_path)
    data = to_json(store.load(paths))
    del data["backend"]
    paths.state.write_text(json.dumps(data))
    with pytest.raises(StateError, match='the file has no "backend" field; it must be a string'):
        store.load(paths)


def test_a_sweep_of_the_first_release_shows_in_status_and_resumes_after_a_crash(project):
    """The first release crashed launching an experiment (format-1 state and journal); this
    pbtrun shows the sweep, resumes it (the experiment runs, nothing that succeeded runs again)
    and the state is format 2 from then on."""
    paths = _first_release_sweep(project.root / "train_dir" / "quickstart", project.root)
    _format_1_crash(paths)
    before = paths.state.read_bytes()
    doc = project.status_json("quickstart")
    assert doc["counts"]["succeeded"] == 6 and doc["counts"]["running"] == 1
    assert paths.state.read_bytes() == before  # status only reads

    result = project.run("resume", "train_dir/quickstart")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(r["event"], r["name"], r["attempt"]) for r in project.records()] == [
        ("start", "00_extra", "2"),
        ("end", "00_extra", "2"),
    ]
    written = json.loads(paths.state.read_text())
    assert (written["format"], written["backend"]) == (2, "local")
    assert "reaper" not in paths.state.read_text()
    # The way back: the first release refuses format 2, and pbtrun.json.bak is rewritten within seconds.
    assert (paths.dir / "pbtrun.json.format-1").read_bytes() == before
    state = {e["name"]: e for e in written["experiments"]}
    assert all(e["status"] == "succeeded" for e in state.values()) and len(state) == 7
    assert all(len(e["attempts"]) == 1 for name, e in state.items() if name != "00_extra")
    first, second = state["00_extra"]["attempts"]
    assert first["outcome"] == "not_started" and first["ref"] == "pbtrun-1-gone"
    assert (second["outcome"], second["returncode"]) == ("exited", 0) and isinstance(second["ref"], str)


def test_a_sweep_whose_directory_is_gone_is_refused_before_anything_is_recorded(project):
    """Its experiments run in the directory it was started from: with that directory gone, every
    launch would fail (127) and be recorded as a failure. Resume refuses instead, and says how."""
    paths = _first_release_sweep(project.root / "train_dir" / "quickstart", project.root / "moved-away")
    _format_1_crash(paths)
    before = project.status_json("quickstart")["experiments"]
    result = project.run("resume", "train_dir/quickstart")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "moved-away, which no longer exists" in result.stderr and "symbolic link" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.status_json("quickstart")["experiments"] == before  # (the file may now be format 2)
    assert project.records() == []
