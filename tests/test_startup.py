"""What each command loads before it does its work, and the layout of long JSON output.

Start-up time is a target (issue 6: `pbtrun --help` and `pbtrun status` in 150 ms), measured by
benchmarks/run.py, not here; these tests check the lazy imports that make it possible, on the
real interpreter's import log (``python -X importtime``).
"""

from __future__ import annotations

import json
import os

import pytest

from pbtrun.spec import naming
from pbtrun.ui import jsonlines
from pbtrun.ui.forkedwork import ForkedWork


def _imported(project, *args: str) -> set[str]:
    result = project.python("-X", "importtime", "-m", "pbtrun", *args)
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert modules, result.stderr
    return modules


def test_help_loads_neither_the_spec_layer_nor_rich(project):
    loaded = _imported(project, "--help")
    assert "pbtrun.ui.cli" in loaded
    assert not loaded & {
        "rich",
        "rich.console",
        "pbtrun.spec.reading",
        "tomllib",
        "pbtrun.run.gpus",
        "pbtrun.ui.words",
        "pbtrun.ui.statusjson",
        "pbtrun.ui.jsonlines",
        "pbtrun.ui.plans",
        "filelock",
        # the state's records, codec and locks: what status and up read, not what --help prints
        "pbtrun.state.store",
        "pbtrun.state.codec",
        "pbtrun.state.locks",
        "pbtrun.spec.model",
    }


def test_plain_output_never_loads_rich(project, recorder):
    project.spec(f'name = "p"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    loaded = _imported(project, "up", "sweep.toml", "--plain")
    assert "pbtrun.run.scheduler" in loaded and "pbtrun.ui.plain" in loaded
    assert not {m for m in loaded if m == "rich" or m.startswith("rich.")}
    assert "dataclasses" not in loaded  # its classes cost tenths of a millisecond each to define


def test_up_runs_without_click_and_leaves_the_unusual_to_it(project, recorder):
    """`pbtrun up SPEC` with ordinary flags is parsed by pbtrun.ui.quickargs; --dry-run goes to click."""
    project.spec(f'name = "p"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    loaded = _imported(project, "up", "sweep.toml", "--plain", "--num-gpus=2", "--grace", "5")
    assert "pbtrun.run.scheduler" in loaded and "click" not in loaded
    assert "click" in _imported(project, "up", "sweep.toml", "--dry-run")


# Command lines of `pbtrun up`: each is parsed by pbtrun.ui.quickargs exactly as click parses it, or
# left to click. Those marked True are ones quickargs must take itself (the point of it).
UP_COMMAND_LINES = [
    (["s.toml"], True),
    (["s.toml", "--plain"], True),
    (["--plain", "s.toml", "--force", "--retry-failed"], True),
    (["s.toml", "--num-gpus", "4", "--max-parallel", "8", "--experiments-per-gpu", "2"], True),
    (["s.toml", "--num_gpus=4", "--max_parallel=8", "--experiments_per_gpu=-1"], True),
    (["s.toml", "--experiments-per-gpu", "-1", "--pause-between", "1.5", "--grace", "0"], True),
    (["s.toml", "--pause_between=0", "--grace=86400"], True),
    (["s.toml", "--train-dir", "runs", "--train_dir=other"], True),
    (["s.toml", "--train-dir="], True),
    (["dir with spaces/s p.toml", "--max-parallel", " 3 "], True),
    (["s.toml", "--max-parallel", "1_000"], True),
    (["s.toml", "--num-gpus", "4", "--num-gpus", "2"], True),
    ([], False),
    (["a.toml", "b.toml"], False),
    ([""], False),
    (["-"], False),
    (["--", "-s.toml"], False),
    (["s.toml", "--dry-run"], False),
    (["s.toml", "--json"], False),
    (["s.toml", "--dry-run", "--json"], False),
    (["s.toml", "-h"], False),
    (["s.toml", "--help"], False),
    (["s.toml", "--bogus"], False),
    (["s.toml", "--plai"], False),
    (["s.toml", "--plain=yes"], False),
    (["s.toml", "--num-gpus"], False),
    (["s.toml", "--num-gpus", "x"], False),
    (["s.toml", "--num-gpus", "-1"], False),
    (["s.toml", "--num-gpus", "1025"], False),
    (["s.toml", "--num-gpus", "2.0"], False),
    (["s.toml", "--max-parallel", ""], False),
    (["s.toml", "--pause-between", "nan"], False),
    (["s.toml", "--pause-between", "inf"], False),
    (["s.toml", "--pause-between", "-1"], False),
    (["s.toml", "--grace", "86401"], False),
    (["s.toml", "--grace=x"], False),
    (["s.toml", "--train-dir"], False),
    (["s.toml", "--train-dir", "--plain"], False),
    (["s.toml", "--max-failures", "3"], True),
    (["s.toml", "--max-failures=1"], True),
    (["s.toml", "--max-failures", "0"], False),
]


@pytest.mark.parametrize(("args", "quick"), UP_COMMAND_LINES)
def test_quickargs_parses_up_as_click_does(args, quick, capsys):
    import click

    from pbtrun.ui import cli, quickargs

    parsed = quickargs.parse_up(args)
    try:
        by_click = cli.cli.commands["up"].make_context("up", list(args)).params
    except (click.UsageError, click.exceptions.Exit):
        by_click = None
    capsys.readouterr()  # --help's text
    assert (parsed is not None) == quick
    if parsed is not None:
        assert parsed == by_click


def test_up_s_options_are_built_from_the_one_table():
    """click's `up` and quickargs are both built from pbtrun.ui.runoptions.UP: every option click
    knows is one of the table's, with its spellings, and a flag where the table has one (the
    defaults are compared by the first command line above)."""
    from pbtrun.ui import cli, runoptions

    params = {p.name: p for p in cli.cli.commands["up"].params}
    assert set(params) == {"spec_file"} | {option.name for option in runoptions.UP}
    for option in runoptions.UP:
        param = params[option.name]
        assert set(param.opts + param.secondary_opts) == set(option.spellings), option.name
        assert param.is_flag == (option.kind == runoptions.FLAG), option.name
    assert {"--num_gpus", "--train_dir", "--max_failures"} <= {s for o in runoptions.UP for s in o.spellings}


def test_quickargs_leaves_shell_completion_to_click(monkeypatch):
    from pbtrun.ui import quickargs

    monkeypatch.setenv("_PBTRUN_COMPLETE", "bash_complete")
    assert quickargs.parse_up(["s.toml"]) is None


def test_status_json_does_not_load_the_spec_layer(project, recorder):
    project.spec(f'name = "p"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    assert project.run("up", "sweep.toml").returncode == 0
    loaded = _imported(project, "status", "train_dir/p", "--json")
    assert not loaded & {"pbtrun.spec.reading", "tomllib", "pbtrun.run.scheduler"}


def test_the_train_dir_listing_loads_no_backend_and_no_hashing(project, recorder):
    """`pbtrun status` reads each sweep's summary: what starts, signals or hashes is not its work."""
    project.spec(f'name = "p"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    assert project.run("up", "sweep.toml").returncode == 0
    loaded = _imported(project, "status")
    assert "pbtrun.ui.tables" in loaded
    assert not loaded & {"socket", "selectors", "hashlib", "pbtrun.backends.local", "pbtrun.backends.reaper"}


def test_compiling_a_spec_hashes_without_loading_openssl(project, recorder):
    """Ids are SHA-256 of a hundred bytes: CPython's built-in hash, not OpenSSL's start-up."""
    project.spec(f'name = "p"\ncommand = "{recorder}"\n[[experiments]]\nname = "a"\n')
    loaded = _imported(project, "up", "sweep.toml", "--dry-run")
    assert "pbtrun.spec.reading" in loaded
    assert not loaded & {"hashlib", "_hashlib"}


def test_the_built_in_sha256_gives_hashlibs_digests():
    hashlib = pytest.importorskip("hashlib")
    sha256 = naming._sha256()
    assert sha256 is not hashlib.sha256
    for text in (b"", b'["a", {}, 0]', '["λ", {"lr": 0.001}, 3]'.encode(), bytes(range(256)) * 5):
        assert sha256(text).hexdigest() == hashlib.sha256(text).hexdigest()


def test_long_lists_come_one_item_per_line_and_parse_as_the_same_document():
    document = {
        "sweep": {"name": "s", "dir": "/x"},
        "experiments": [{"name": f"{i:02d}_a", "n": i} for i in range(2500)],
    }
    text = "".join(jsonlines.json_lines(document, "experiments"))
    assert json.loads(text) == document
    lines = text.splitlines()
    start = lines.index('  "experiments": [')
    assert len(lines[start + 1 : -2]) == 2500 and lines[-2:] == ["  ]", "}"]
    assert json.loads("".join(jsonlines.json_lines({"sweep": {}, "experiments": []}, "experiments"))) == {
        "sweep": {},
        "experiments": [],
    }


@pytest.fixture
def split(monkeypatch):
    """Lists of 10 items and more are split, on any machine: a one-core one would not fork."""
    monkeypatch.setattr(jsonlines, "SPLIT_ROWS", 10)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


def _rows(n: int) -> jsonlines.Rows:
    return jsonlines.Rows(list(range(n)), lambda i: {"name": f"{i:05d}_a", "n": i, "t": i / 7, "word": "é"})


def test_a_long_list_encoded_by_two_processes_is_the_same_text(monkeypatch):
    one_process = "".join(jsonlines.json_lines({"sweep": {}, "experiments": _rows(4500)}, "experiments"))
    monkeypatch.setattr(jsonlines, "SPLIT_ROWS", 10)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a one-core machine would not fork
    seen = []
    real_start = ForkedWork.start
    monkeypatch.setattr(ForkedWork, "start", lambda *a: seen.append(real_start(*a)) or seen[-1])
    two_processes = "".join(jsonlines.json_lines({"sweep": {}, "experiments": _rows(4500)}, "experiments"))
    assert seen and seen[0] is not None  # a helper did encode the second half
    assert two_processes == one_process
    assert json.loads(two_processes)["experiments"][4499] == {"name": "04499_a", "n": 4499, "t": 4499 / 7, "word": "é"}


def test_a_helper_that_fails_leaves_its_half_to_the_parent(monkeypatch, capfd, split):
    parent = os.getpid()

    def make(i: int) -> dict:
        if os.getpid() != parent and i == 3000:
            raise RuntimeError("the helper breaks")
        return {"n": i}

    results = []
    real_result = ForkedWork.result
    monkeypatch.setattr(ForkedWork, "result", lambda self: results.append(real_result(self)) or results[-1])
    text = "".join(jsonlines.json_lines({"experiments": jsonlines.Rows(list(range(4000)), make)}, "experiments"))
    assert results == [None]  # the helper was started, and failed
    assert [e["n"] for e in json.loads(text)["experiments"]] == list(range(4000))
    assert capfd.readouterr().err == ""  # nothing of the helper's failure on the terminal


def test_a_reader_that_stops_early_ends_the_helper(monkeypatch, split):
    helpers = []
    real_start = ForkedWork.start
    monkeypatch.setattr(ForkedWork, "start", lambda *a: helpers.append(real_start(*a)) or helpers[-1])
    slow = jsonlines.Rows(list(range(4000)), lambda i: {"n": i, "pad": "x" * 2000})
    pieces = jsonlines.json_lines({"experiments": slow}, "experiments")
    next(pieces), next(pieces)  # the head and the first rows: the helper is at work on the rest
    pieces.close()  # as when stdout is closed under pbtrun
    (helper,) = helpers
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left to finish or linger
        os.kill(helper.pid, 0)
