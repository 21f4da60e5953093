"""The state on disk: pbtrun.json's layout, the journal, and what a reader makes of them."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import pytest

from pbtrun.errors import StateError
from pbtrun.spec.expansion import expand
from pbtrun.spec.reading import parse
from pbtrun.state import layout, store
from pbtrun.state import writer as writer_module
from pbtrun.state.codec import to_json
from pbtrun.state.journal import Journal
from pbtrun.state.merge import new_experiment
from pbtrun.state.paths import SweepPaths
from pbtrun.state.records import FAILED, PENDING, RUNNING, SUCCEEDED, Attempt, Settings, Sweep
from pbtrun.state.writer import StateWriter

DATA = Path(__file__).parent / "data"


def _dump(sweep: Sweep) -> bytes:
    """pbtrun.json's bytes for ``sweep``, as a save writes them."""
    return b"".join(layout.dump_chunks(sweep))


def _sweep(tmp_path: Path, count: int = 3) -> tuple[SweepPaths, Sweep]:
    spec = parse(
        f'name = "s"\ncommand = "run --flag"\n[[experiments]]\nname = "g"\ngrid = {{ i = {list(range(count))} }}\n',
        tmp_path / "s.toml",
    )
    sweep = Sweep("s", str(tmp_path), "train_dir", 1.0, Settings(max_parallel=2))
    sweep.replace_all(new_experiment(e) for e in expand(spec))
    paths = SweepPaths(tmp_path / "train_dir" / "s")
    store.create(paths, sweep, "")
    return paths, sweep


def test_pbtrun_json_has_one_experiment_per_line_and_reads_back_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "CHUNK_ROWS", 2)  # several chunks, one of them short
    paths, sweep = _sweep(tmp_path, count=5)
    data = paths.state.read_bytes()
    lines = data.decode().splitlines()
    body = lines[lines.index(' "experiments": [') + 1 : -2]
    assert len(body) == 5 and all(json.loads(line.strip().rstrip(",")).get("argv") for line in body)
    parsed = layout.parse_rows(data)
    assert parsed is not None  # pbtrun's own layout is read row by row, not as one tree
    assert to_json(parsed) == to_json(sweep) == json.loads(data)


def test_any_other_layout_of_the_same_json_is_read_whole(tmp_path):
    paths, sweep = _sweep(tmp_path)
    paths.state.write_text(json.dumps(to_json(sweep), indent=4))  # as a person or a tool might
    assert layout.parse_rows(paths.state.read_bytes()) is None
    assert to_json(store.load(paths)) == to_json(sweep)
    assert store.load(SweepPaths(DATA / "state-format-1")).name == "quickstart"  # the old layout


def test_a_damaged_row_is_reported_by_the_whole_file_reader(tmp_path):
    paths, _ = _sweep(tmp_path)
    data = paths.state.read_bytes()
    paths.state.write_bytes(data.replace(b'"status": "pending"', b'"status": pending', 1))
    with pytest.raises(StateError, match=r"pbtrun\.json: cannot use the state file: it is not valid JSON"):
        store.load(paths)


def test_reading_pauses_the_cyclic_collector_and_gives_it_back_as_it_was(tmp_path, monkeypatch):
    paths, sweep = _sweep(tmp_path)
    seen = []
    real_parse = store.parse
    monkeypatch.setattr(store, "parse", lambda *a: seen.append(gc.isenabled()) or real_parse(*a))
    assert gc.isenabled()
    assert to_json(store.load(paths)) == to_json(sweep)
    assert seen == [False] and gc.isenabled()  # paused while reading, enabled again after
    paths.state.write_text("{")  # a damaged file: the error does not leave the collector off
    with pytest.raises(StateError):
        store.load(paths)
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that had it off (status --json) keeps it off
        store.load(SweepPaths(DATA / "state-format-1"))
        assert not gc.isenabled()
    finally:
        gc.enable()


def _transitions(writer: StateWriter) -> None:
    """Start two experiments, end one succeeded and one failed, re-queue the failed one."""
    ids = list(writer.sweep.experiments)

    def start(sweep: Sweep) -> None:
        for exp_id in ids[:2]:
            exp = sweep.experiments[exp_id]
            sweep.update(exp.to(RUNNING, Attempt(1, time.time(), f"logs/{exp.name}.1.log", (0,), "host", ref="r")))

    def end(sweep: Sweep) -> None:
        for exp_id, status, code in ((ids[0], SUCCEEDED, 0), (ids[1], FAILED, 3)):
            exp = sweep.experiments[exp_id]
            sweep.update(exp.to(status, exp.last._replace(ended_at=time.time(), returncode=code, outcome="exited")))

    writer.commit(start)
    writer.commit(end)
    writer.commit(lambda sweep: sweep.update(sweep.experiments[ids[1]].to(PENDING)))


def test_the_journal_records_transitions_compactly_and_readers_replay_them(tmp_path):
    paths, _ = _sweep(tmp_path)
    writer = StateWriter(paths)
    _transitions(writer)
    entries = [json.loads(line) for line in paths.journal.read_bytes().rstrip(b"\0").splitlines()]
    assert [len(e["changes"]) for e in entries] == [2, 2, 1]
    assert all("experiments" not in e and "argv" not in e["changes"][0] for e in entries)  # no full records
    assert to_json(store.load(paths)) == to_json(writer.sweep)  # pbtrun.json + the journal, without a lock
    writer.close()
    assert to_json(store.load(paths)) == to_json(writer.sweep)
    assert json.loads(paths.state.read_bytes())["journal_seq"] == 3  # folded in on close


def test_a_changed_definition_is_journaled_as_a_full_record(tmp_path):
    paths, _ = _sweep(tmp_path)
    writer = StateWriter(paths)
    exp_id = next(iter(writer.sweep.experiments))
    exp = writer.sweep.experiments[exp_id]
    writer.commit(lambda sweep: sweep.update(exp._replace(spec=exp.spec._replace(argv=("other",)))))
    (entry,) = [json.loads(line) for line in paths.journal.read_bytes().rstrip(b"\0").splitlines()]
    assert "changes" not in entry and entry["experiments"][0]["argv"] == ["other"]
    assert store.load(paths).experiments[exp_id].spec.argv == ("other",)
    writer.close()


def test_a_definition_read_back_is_the_compiled_one_without_its_layout(tmp_path):
    """The state records an experiment's definition but not how its group writes argv (the
    layout): read back, it equals the compiled one in every other field, and renaming it, which
    only a merge with the compiled spec does, says that it cannot."""
    paths, sweep = _sweep(tmp_path)
    for exp_id, exp in store.load(paths).experiments.items():
        compiled = sweep.experiments[exp_id].spec
        assert compiled.layout is not None and exp.spec.layout is None
        assert exp.spec == compiled._replace(layout=None)
        assert exp.spec.renamed(exp.name) == (compiled.argv, compiled.env)
        with pytest.raises(TypeError, match="no layout"):
            exp.spec.renamed("99_other")


def test_the_journal_grows_by_doubling_from_a_small_start_and_keeps_every_line(tmp_path):
    paths, _ = _sweep(tmp_path)
    journal = Journal(paths.journal)
    journal.reopen()
    line = b'{"seq": 1}' + b" " * 1000 + b"\n"
    sizes = []
    for _ in range(Journal.FIRST_BYTES * 3 // len(line)):
        journal.append(line)
        sizes.append(journal.allocated)
    journal.sync()
    assert sorted(set(sizes)) == [Journal.FIRST_BYTES, Journal.FIRST_BYTES + Journal.GROW_BYTES]
    data = paths.journal.read_bytes()
    assert len(data) == sizes[-1] and data.rstrip(b"\0") == line * len(sizes)
    journal.close()


def test_the_journal_is_allocated_ahead_and_a_torn_last_line_is_ignored(tmp_path):
    paths, _ = _sweep(tmp_path)
    writer = StateWriter(paths)
    _transitions(writer)
    writer.journal.sync()
    data = paths.journal.read_bytes()
    used = data.index(b"\0")
    assert len(data) >= Journal.FIRST_BYTES and set(data[used:]) == {0}  # zeros after the lines
    expected = to_json(store.load(paths))
    with open(paths.journal, "r+b") as f:  # a crash in the middle of the next line's write
        f.seek(used)
        f.write(b'{"changes": [{"id": "')
    assert to_json(store.load(paths)) == expected
    writer.close()


def test_a_fold_starts_a_fresh_journal_and_keeps_the_previous_state_as_backup(tmp_path, monkeypatch):
    paths, _ = _sweep(tmp_path)
    writer = StateWriter(paths)
    _transitions(writer)
    before = paths.state.read_bytes()
    monkeypatch.setattr(writer_module, "FOLD_EVERY_S", 0.0)
    writer.fold_if_due()
    assert paths.backup.read_bytes() == before
    assert set(paths.journal.read_bytes()) == {0}  # nothing left to replay
    assert to_json(store.parse(paths, paths.state.read_bytes())) == to_json(writer.sweep)
    writer.close()


def test_a_fold_encodes_again_only_the_experiments_that_changed(tmp_path, monkeypatch):
    """The scheduler keeps each experiment's line between folds: the file is byte for byte what a
    whole encoding gives, and the lines of unchanged records are the very same objects."""
    paths, _ = _sweep(tmp_path, count=4)
    writer = StateWriter(paths)
    monkeypatch.setattr(writer_module, "FOLD_EVERY_S", 0.0)
    ids = list(writer.sweep.experiments)
    writer.commit(lambda sweep: sweep.update(sweep.experiments[ids[0]].to(RUNNING, Attempt(1, 2.0, "logs/a.1.log"))))
    writer.fold_if_due()
    lines = {exp_id: line for exp_id, (_, line) in writer.rows.items()}
    assert len(lines) == 4 and paths.state.read_bytes() == _dump(writer.sweep)
    writer.commit(lambda sweep: sweep.update(sweep.experiments[ids[1]].to(RUNNING, Attempt(1, 3.0, "logs/b.1.log"))))
    writer.close()
    assert paths.state.read_bytes() == _dump(store.load(paths)) == _dump(writer.sweep)
    assert [writer.rows[exp_id][1] is lines[exp_id] for exp_id in ids] == [True, False, True, True]


def test_a_scheduler_keeps_no_lines_for_a_large_sweep_or_a_reloaded_one(tmp_path, monkeypatch):
    paths, _ = _sweep(tmp_path, count=3)
    writer = StateWriter(paths)
    monkeypatch.setattr(writer_module, "FOLD_EVERY_S", 0.0)
    exp_id = next(iter(writer.sweep.experiments))
    writer.commit(lambda sweep: sweep.update(sweep.experiments[exp_id].to(RUNNING, Attempt(1, 2.0, "logs/a.1.log"))))
    writer.fold_if_due()
    assert len(writer.rows) == 3
    with store.transaction(paths) as sweep:  # another writer (`pbtrun up` adding to the sweep)
        exp = sweep.experiments[exp_id]
        sweep.update(exp._replace(spec=exp.spec._replace(max_retries=2)))
    writer.refresh()
    assert writer.rows == {}  # the records it kept lines for are gone
    monkeypatch.setattr(writer_module, "ROW_CACHE_MAX", 2)
    writer.commit(lambda sweep: sweep.update(sweep.experiments[exp_id].to(SUCCEEDED)))
    writer.close()
    assert writer.rows == {} and paths.state.read_bytes() == _dump(store.load(paths))


def test_a_transition_keeps_every_other_field_of_an_experiment():
    from pbtrun.state.records import Experiment

    values = {name: f"value of {name}" for name in Experiment._fields} | {"status": PENDING, "attempts": ()}
    attempt = Attempt(1, 2.0, "logs/x.1.log")
    moved = Experiment(**values).to(RUNNING, attempt)
    assert moved._asdict() == {**values, "status": RUNNING, "attempts": (attempt,)}


def test_the_version_changes_with_every_commit_and_fold_and_only_then(tmp_path):
    """``status --watch`` reads the state again only when its version changed: every journal
    entry and every rewrite of pbtrun.json must change it, even within one clock tick."""
    paths, _ = _sweep(tmp_path)
    writer = StateWriter(paths)
    seen = [store.version(paths)]
    ids = list(writer.sweep.experiments)
    for exp_id in ids[:2]:  # two commits in quick succession: the journal's mtime might not move
        writer.commit(
            lambda sweep, e=exp_id: sweep.update(
                sweep.experiments[e].to(RUNNING, Attempt(1, time.time(), "logs/x.1.log", None, "h"))
            )
        )
        seen.append(store.version(paths))
    assert store.version(paths) == seen[-1]  # nothing happened: the same version
    writer.close()  # folds the journal into a new pbtrun.json
    seen.append(store.version(paths))
    assert len(set(seen)) == len(seen) == 4, seen
