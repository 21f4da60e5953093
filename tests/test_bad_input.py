"""Every mistake in a spec or the flags: exit code 2, one clear message, no traceback, nothing on disk.

Runs the real ``pbtrun up`` in ``tmp_path``. A spec line ending in ``# <-`` marks the line the
message must point at.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbtrun.printable import clip

GROUP = '[[experiments]]\nname = "g"\n'
BASE = 'name = "s"\ncommand = "prog"\n'


def case(
    case_id: str,
    text: str,
    *names: str,
    args: tuple[str, ...] = (),
    where: str = "sweep.toml",
) -> pytest.ParameterSet:
    """A bad input: the spec text, what the message must name (keys, values), extra flags.

    ``where`` is what the message must name as the source: the spec file, or the flag.
    """
    return pytest.param(text, names, args, where, id=case_id)


CASES = [
    # --------------------------------------------------------------- TOML syntax
    case("toml-unclosed-array", BASE + GROUP + "grid = { lr = [1, 2 }  # <-\n"),
    case("toml-unclosed-string", 'name = "s  # <-\ncommand = "prog"\n' + GROUP),
    case("toml-duplicate-key", BASE + 'name = "t"  # <-\n' + GROUP),
    # --------------------------------------------------------------- unknown keys, with a suggestion
    case("unknown-top", BASE + "max_paralel = 4  # <-\n" + GROUP, "max_paralel", "max_parallel"),
    case("unknown-scheduler", BASE + "[scheduler]\nmax_paralel = 4  # <-\n" + GROUP, "max_paralel", "max_parallel"),
    case("unknown-experiments", BASE + GROUP + "max_paralel = 4  # <-\n", "max_paralel", "max_parallel"),
    case("unknown-experiments-typo", BASE + GROUP + "gird = { x = [1] }  # <-\n", "gird", "grid"),
    case("unknown-top-typo", BASE + "experiment_sufix = 'v2'  # <-\n" + GROUP, "experiment_sufix", "experiment_suffix"),
    # --------------------------------------------------------------- mistyped table headers
    case("header-top-typo", BASE + GROUP + "\n[sheduler]  # <-\nnum_gpus = 1\n", "sheduler", "scheduler"),
    case(
        "header-group-subtable",
        BASE + GROUP + "\n[experiments.grd]  # <-\nlr = [1, 2]\n",
        "experiments[1].grd",
        "grid",
    ),
    case(
        "header-second-group-quoted",
        BASE + GROUP + 'grid = { x = [1] }\n[[experiments]]\nname = "h"\n[experiments."grd"]  # <-\nlr = [1]\n',
        "experiments[2].grd",
    ),
    case("header-scheduler-subtable", BASE + "[scheduler]\nnum_gpus = 1\n[scheduler.extra]  # <-\n" + GROUP, "extra"),
    case("header-env-value-table", BASE + GROUP + "[experiments.env.A]  # <-\nx = 1\n", "env.A", "string"),
    # --------------------------------------------------------------- wrong types
    case("type-name", 'name = 5  # <-\ncommand = "prog"\n' + GROUP, "name", "string"),
    case("type-train_dir", BASE + "train_dir = 1  # <-\n" + GROUP, "train_dir", "string"),
    case("type-param_prefix", BASE + "param_prefix = false  # <-\n" + GROUP, "param_prefix", "string"),
    case(
        "type-customize",
        BASE + 'customize_experiment_name = "yes"  # <-\n' + GROUP,
        "customize_experiment_name",
        "true or false",
    ),
    case("type-command", 'name = "s"\ncommand = 5  # <-\n' + GROUP, "command", "string"),
    case("type-command-empty-list", 'name = "s"\ncommand = []  # <-\n' + GROUP, "command"),
    case("type-command-mixed-list", 'name = "s"\ncommand = ["prog", 1]  # <-\n' + GROUP, "command"),
    case("empty-command", 'name = "s"\ncommand = ""  # <-\n' + GROUP, "command", "empty"),
    case("command-bad-quotes", 'name = "s"\ncommand = "prog \'open"  # <-\n' + GROUP, "command", "quot"),
    case("type-scheduler", BASE + "scheduler = 3  # <-\n" + GROUP, "scheduler", "table"),
    case("type-max_parallel", BASE + '[scheduler]\nmax_parallel = "4"  # <-\n' + GROUP, "max_parallel", "integer"),
    case("type-num_gpus", BASE + "[scheduler]\nnum_gpus = 1.5  # <-\n" + GROUP, "num_gpus", "integer"),
    case("type-epg", BASE + "[scheduler]\nexperiments_per_gpu = true  # <-\n" + GROUP, "experiments_per_gpu"),
    case("type-pause", BASE + '[scheduler]\npause_between = "1s"  # <-\n' + GROUP, "pause_between", "seconds"),
    case("type-gpus", BASE + "[scheduler]\ngpus = [0, 0]  # <-\n" + GROUP, "gpus"),
    case("type-env", BASE + 'env = "A=1"  # <-\n' + GROUP, "env", "table"),
    case("type-env-value", BASE + "[env]\nA = true  # <-\n" + GROUP, "env.A", "string"),
    case("type-group-name", BASE + "[[experiments]]\nname = 1  # <-\n", "name", "string"),
    case("type-group-env", BASE + GROUP + "env = 1  # <-\n", "env", "table"),
    case("type-grid", BASE + GROUP + "grid = [1, 2]  # <-\n", "grid", "table"),
    case("type-list", BASE + GROUP + "list = { a = 1 }  # <-\n", "list"),
    case("type-experiments-table", BASE + "[experiments]  # <-\nname = 'g'\n", "experiments", "[[experiments]]"),
    case("type-value-date", BASE + GROUP + "grid = { d = [1979-05-27] }  # <-\n", "grid.d", "date"),
    case("type-value-nan", BASE + GROUP + "grid = { x = [nan] }  # <-\n", "grid.x", "nan"),
    # --------------------------------------------------------------- experiments
    case("experiments-missing", BASE, "experiments", "[[experiments]]"),
    case("experiments-empty", BASE + "experiments = []  # <-\n", "experiments", "empty"),
    case("no-command", 'name = "s"\n[[experiments]]\nname = "g"  # <-\n', "'g'", "command"),
    case(
        "no-command-second-group",
        'name = "s"\n[[experiments]]\nname = "a"\ncommand = "prog"\n[[experiments]]\nname = "b"  # <-\n',
        "experiments[2]",
        "'b'",
        "command",
    ),
    case("no-group-name", BASE + "[[experiments]]  # <-\ngrid = { x = [1] }\n", "experiments[1]", "name"),
    case("no-sweep-name", 'command = "prog"\n' + GROUP, "name", "required"),
    case("grid-value-not-list", BASE + GROUP + "grid = { lr = 0.1 }  # <-\n", "grid.lr", "list"),
    case("grid-dotted-bare-key", BASE + GROUP + "grid = { train.lr = [1] }  # <-\n", "grid.train", '"train.lr" = [1]'),
    case("grid-dotted-deeper", BASE + GROUP + "grid = { a.b.c = [1, 2] }  # <-\n", "grid.a", '"a.b.c" = [1, 2]'),
    case("grid-empty-table", BASE + GROUP + "grid = { a = {} }  # <-\n", "grid.a", "a = [1, 2]", "not a table"),
    case("grid-table-in-values", BASE + GROUP + "grid = { a = [{ b = 1 }] }  # <-\n", "grid.a", "{ b = 1 }", "not a"),
    case("grid-table-in-tied", BASE + GROUP + 'grid = { "x,y" = [[1, { b = 1 }]] }  # <-\n', "grid.x,y", "not a"),
    case("list-dotted-key", BASE + GROUP + "list = [{ a.b = 1 }]  # <-\n", "list[1].a", '"a.b" = 1'),
    case("list-table-in-values", BASE + GROUP + "list = [{ a = [{ b = 1 }] }]  # <-\n", "list[1].a", "not a"),
    case("grid-empty-values", BASE + GROUP + "grid = { lr = [] }  # <-\n", "grid.lr", "empty"),
    case("grid-and-list", BASE + GROUP + "grid = { x = [1] }\nlist = [ { x = 2 } ]  # <-\n", "list", "grid"),
    case("grid-param-twice", BASE + GROUP + 'grid = { "a,b" = [[1, 2]], a = [3] }  # <-\n', "'a'", "twice"),
    case("grid-param-with-space", BASE + GROUP + 'grid = { "a b" = [1] }  # <-\n', "a b"),
    case("list-empty", BASE + GROUP + "list = []  # <-\n", "list", "empty"),
    case("list-empty-combination", BASE + GROUP + "list = [ { x = 1 }, {} ]  # <-\n", "list[2]", "empty"),
    case(
        "tied-unequal-length",
        BASE + GROUP + 'grid = { seed = [1], "use_rnn,recurrence" = [[false, 1], [true]] }  # <-\n',
        "use_rnn,recurrence",
        "2 values",
    ),
    case(
        "tied-not-lists",
        BASE + GROUP + 'grid = { "use_rnn,recurrence" = [false, true] }  # <-\n',
        "use_rnn,recurrence",
        "2 values",
    ),
    case(
        "tied-too-long",
        BASE + GROUP + 'grid = { "a,b" = [[1, 2], [3, 4, 5]] }  # <-\n',
        "a,b",
        "2 values",
    ),
    case(
        "duplicate-group-names",
        BASE + GROUP + "grid = { x = [1] }\n" + '[[experiments]]\nname = "g"  # <-\n',
        "experiments[2].name",
        "'g'",
    ),
    case(
        "duplicate-experiment-names",
        BASE + GROUP + "grid = { b = [1] }\n" + '[[experiments]]\nname = "g_b_1"\n',
        "00_g_b_1",
        "'g'",
        "'g_b_1'",
    ),
    # --------------------------------------------------------------- names escaping the train dir
    case("group-name-dotdot", BASE + '[[experiments]]\nname = "../x"  # <-\n', "name", "'../x'"),
    case("group-name-abs", BASE + '[[experiments]]\nname = "/abs"  # <-\n', "name", "'/abs'"),
    case("group-name-slash", BASE + '[[experiments]]\nname = "a/b"  # <-\n', "name", "'a/b'"),
    case("group-name-dot", BASE + '[[experiments]]\nname = ".."  # <-\n', "name", "'..'"),
    case("group-name-empty", BASE + '[[experiments]]\nname = ""  # <-\n', "name"),
    case("sweep-name-dotdot", 'name = "../x"  # <-\ncommand = "prog"\n' + GROUP, "name", "'../x'"),
    case("sweep-name-abs", 'name = "/abs"  # <-\ncommand = "prog"\n' + GROUP, "name", "'/abs'"),
    case("sweep-name-slash", 'name = "a/b"  # <-\ncommand = "prog"\n' + GROUP, "name", "'a/b'"),
    case("suffix-escapes", BASE + 'experiment_suffix = "/../../x"  # <-\n' + GROUP, "experiment_suffix"),
    case("train-dir-empty", BASE + 'train_dir = ""  # <-\n' + GROUP, "train_dir", "empty"),
    case("train-dir-flag-empty", BASE + GROUP, "empty", args=("--train-dir", ""), where="--train-dir"),
    case("train-dir-flag-empty-underscore", BASE + GROUP, "empty", args=("--train_dir=",), where="--train-dir"),
    # --------------------------------------------------------------- scheduler values
    case("max_parallel-0", BASE + "[scheduler]\nmax_parallel = 0  # <-\n" + GROUP, "max_parallel", "at least 1"),
    case("max_parallel-negative", BASE + "[scheduler]\nmax_parallel = -3  # <-\n" + GROUP, "max_parallel"),
    case(
        "max_parallel-flag-0",
        BASE + GROUP,
        "max-parallel",
        "at least 1",
        args=("--max-parallel", "0"),
        where="--max-parallel",
    ),
    case(
        "max_parallel-flag-underscore",
        BASE + GROUP,
        "max",
        "at least 1",
        args=("--max_parallel=-1",),
        where="parallel",
    ),
    case("epg-0", BASE + "[scheduler]\nexperiments_per_gpu = 0  # <-\n" + GROUP, "experiments_per_gpu", "-1"),
    case("epg-minus-2", BASE + "[scheduler]\nexperiments_per_gpu = -2  # <-\n" + GROUP, "experiments_per_gpu", "-1"),
    case(
        "epg-flag-0",
        BASE + GROUP,
        "experiments-per-gpu",
        "-1",
        args=("--experiments-per-gpu", "0"),
        where="--experiments-per-gpu",
    ),
    case(
        "epg-flag-minus-2",
        BASE + GROUP,
        "experiments-per-gpu",
        "-1",
        args=("--experiments-per-gpu=-2",),
        where="--experiments-per-gpu",
    ),
    case(
        "epg-without-gpus",
        BASE + "[scheduler]\nexperiments_per_gpu = 2\n" + GROUP,
        "experiments_per_gpu",
        "no GPUs",
    ),
    case(
        "epg-without-gpus-in-spec",
        BASE + "[scheduler]\nnum_gpus = 0\nexperiments_per_gpu = 1\n" + GROUP,
        "experiments_per_gpu",
        "no GPUs",
    ),
    case(
        "epg-flag-without-gpus",
        BASE + GROUP,
        "experiments_per_gpu",
        "no GPUs",
        args=("--experiments-per-gpu", "1"),
        where="--experiments-per-gpu",
    ),
    case("num_gpus-negative", BASE + "[scheduler]\nnum_gpus = -1  # <-\n" + GROUP, "num_gpus"),
    case("pause-negative", BASE + "[scheduler]\npause_between = -1  # <-\n" + GROUP, "pause_between"),
    # --------------------------------------------------------------- numbers too big, or not numbers at all
    case("pause-inf", BASE + "[scheduler]\npause_between = inf  # <-\n" + GROUP, "pause_between", "86400"),
    case("pause-nan", BASE + "[scheduler]\npause_between = nan  # <-\n" + GROUP, "pause_between", "86400"),
    case("pause-huge", BASE + "[scheduler]\npause_between = 1e9  # <-\n" + GROUP, "pause_between", "a day"),
    case("num_gpus-huge", BASE + "[scheduler]\nnum_gpus = 10000000  # <-\n" + GROUP, "num_gpus", "1024"),
    case("timeout-huge", BASE + "timeout_min = 1e300  # <-\n" + GROUP, "timeout_min", "1,000,000", "1e+300"),
    case("timeout-inf", BASE + "timeout_min = inf  # <-\n" + GROUP, "timeout_min", "1,000,000"),
    case("timeout-nan", BASE + "timeout_min = nan  # <-\n" + GROUP, "timeout_min", "nan"),
    case("timeout-zero", BASE + "timeout_min = 0  # <-\n" + GROUP, "timeout_min", "more than 0"),
    case("timeout-type", BASE + 'timeout_min = "1h"  # <-\n' + GROUP, "timeout_min", "number of minutes"),
    case("group-timeout-huge", BASE + GROUP + "timeout_min = 2e6  # <-\n", "experiments[1].timeout_min", "2e+06"),
    # --------------------------------------------------------------- NUL: no argv, env or file name can hold one
    case("nul-grid-value", BASE + GROUP + 'grid = { x = ["a\\u0000b"] }  # <-\n', "grid.x[1]", "NUL"),
    case("nul-grid-value-in-list", BASE + GROUP + 'grid = { x = [["a", "\\u0000"]] }  # <-\n', "grid.x[1]", "NUL"),
    case("nul-tied-value", BASE + GROUP + 'grid = { "a,b" = [[1, "\\u0000"]] }  # <-\n', "grid.a,b[1]", "NUL"),
    case("nul-list-value", BASE + GROUP + 'list = [{ x = 1 }, { x = "\\u0000" }]  # <-\n', "list[2].x", "NUL"),
    case("nul-grid-name", BASE + GROUP + 'grid = { "a\\u0000" = [1] }  # <-\n', "parameter name", "NUL"),
    case("nul-list-name", BASE + GROUP + 'list = [{ "a\\u0000" = 1 }]  # <-\n', "parameter name", "NUL"),
    case("nul-env-value", BASE + '[env]\nA = "x\\u0000y"  # <-\n' + GROUP, "env.A", "NUL"),
    case("nul-group-env-value", BASE + GROUP + 'env = { A = "\\u0000" }  # <-\n', "experiments[1].env.A", "NUL"),
    case("nul-env-key", BASE + GROUP + 'env = { "A\\u0000" = "1" }  # <-\n', "env.A", "environment variable name"),
    case("nul-param-prefix", BASE + 'param_prefix = "-\\u0000"  # <-\n' + GROUP, "param_prefix", "NUL"),
    case("nul-arg-name", BASE + 'experiment_arg_name = "--e\\u0000"  # <-\n' + GROUP, "experiment_arg_name", "NUL"),
    case(
        "nul-dir-arg-name",
        BASE + 'experiment_dir_arg_name = "\\u0000"  # <-\n' + GROUP,
        "experiment_dir_arg_name",
        "NUL",
    ),
    case("nul-train-dir", BASE + 'train_dir = "t\\u0000"  # <-\n' + GROUP, "train_dir", "NUL"),
    case("nul-command", 'name = "s"\ncommand = "prog a\\u0000b"  # <-\n' + GROUP, "command", "NUL"),
    case("nul-command-word", 'name = "s"\ncommand = ["prog", "\\u0000"]  # <-\n' + GROUP, "command[2]", "NUL"),
    case("nul-group-command", BASE + GROUP + 'command = ["prog\\u0000"]  # <-\n', "experiments[1].command[1]", "NUL"),
    case("nul-sweep-name", 'name = "s\\u0000"  # <-\ncommand = "prog"\n' + GROUP, "name"),
    case("nul-suffix", BASE + 'experiment_suffix = "v\\u0000"  # <-\n' + GROUP, "experiment_suffix", "NUL"),
    # --------------------------------------------------------------- names that end in a line break
    case("sweep-name-newline", 'name = "s\\n"  # <-\ncommand = "prog"\n' + GROUP, "name", "'s\\n'", "line breaks"),
    case("group-name-newline", BASE + '[[experiments]]\nname = "a\\n"  # <-\n', "name", "'a\\n'"),
    case("suffix-newline", BASE + 'experiment_suffix = "v\\n"  # <-\n' + GROUP, "experiment_suffix", "'v\\n'"),
    # --------------------------------------------------------------- names too long for a file name
    case("sweep-name-too-long", f'name = "{"s" * 241}"  # <-\ncommand = "prog"\n' + GROUP, "name", "240 bytes"),
    case("suffix-too-long", BASE + f'experiment_suffix = "{"v" * 241}"  # <-\n' + GROUP, "experiment_suffix", "240"),
    case(
        "group-dir-too-long",
        BASE + f'experiment_suffix = "{"v" * 100}"\n[[experiments]]\nname = "{"g" * 140}"  # <-\n',
        "experiments[1].name",
        "<group>_<experiment_suffix>",
        "241 bytes",
    ),
    case(
        "experiment-name-too-long",
        BASE + '[[experiments]]\nname = "g"  # <-\n' + f'grid = {{ x = ["a", "{"b" * 240}"] }}\n',
        "experiments[1].name",
        "01_g_x_bbb",
        "customize_experiment_name = false",
    ),
    # --------------------------------------------------------------- scheduler: two ways to say which GPUs
    case("gpus-and-num_gpus", BASE + "[scheduler]\nnum_gpus = 4\ngpus = [0, 1]  # <-\n" + GROUP, "gpus", "not both"),
    case("random-seed-alone", BASE + "random_seed = 3  # <-\n" + GROUP, "random_seed", "randomize = true"),
    # --------------------------------------------------------------- the line of the key, not of its first mention
    case(
        "line-not-the-commented-key",
        BASE + "[scheduler]\n# num_gpus = 4\nmax_parallel = 2\nnum_gpus = 5000  # <-\n" + GROUP,
        "num_gpus",
        "1024",
    ),
    case(
        "line-not-the-key-in-a-string",
        'name = "s"\ncommand = "prog timeout_min = 0"\ntimeout_min = 0  # <-\n' + GROUP,
        "timeout_min",
    ),
    case(
        "line-not-the-header-in-a-string",
        'name = "s"\ncommand = """prog\n[scheduler]\nmax_parallel = 0\n"""\n[scheduler]\nmax_parallel = 0  # <-\n'
        + GROUP,
        "max_parallel",
    ),
    case(
        "line-not-the-key-in-an-inline-table",
        BASE + GROUP + "list = [{ repeat = 1 }]\nrepeat = 0  # <-\n",
        "experiments[1].repeat",
    ),
    case(
        "line-of-the-element-in-a-multiline-list",
        BASE + GROUP + "list = [\n  { lr = 1 },\n  { lr = 2 },\n  { lr = 1e999 },  # <-\n]\n",
        "list[3].lr",
        "inf",
    ),
    case(
        "line-of-the-value-in-a-multiline-grid",
        BASE + GROUP + "[experiments.grid]\nlr = [\n  1,\n  nan,  # <-\n  3,\n]\n",
        "grid.lr[2]",
        "nan",
    ),
    case(
        "line-in-the-second-group-not-the-first",
        BASE + GROUP + "seeds = 2\n[[experiments]]\nname = 'h'\nseeds = 0  # <-\n",
        "experiments[2].seeds",
    ),
]


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--grace", "inf", "86400"),
        ("--grace", "nan", "86400"),
        ("--grace", "-1", "86400"),
        ("--grace", "soon", "number of seconds"),
        ("--pause-between", "inf", "86400"),
        ("--pause_between", "nan", "86400"),
        ("--pause-between", "1e9", "a day"),
        ("--num-gpus", "10000000", "1024"),
    ],
)
@pytest.mark.parametrize("command", ["up", "resume"])
def test_flags_that_are_not_finite_or_too_big_are_refused(project, command: str, flag: str, value: str, said: str):
    """click.FloatRange(min=0) let nan and inf through, to crash or hang much later."""
    project.spec(BASE + GROUP)
    before = _files(project.root)
    result = project.run(command, "sweep.toml" if command == "up" else "train_dir/s", flag, value)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert f"'{flag}'" in result.stderr and said in result.stderr, result.stderr
    assert _files(project.root) == before


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _marked_line(text: str) -> int | None:
    marked = [n for n, line in enumerate(text.splitlines(), 1) if line.endswith("# <-")]
    assert len(marked) <= 1
    return marked[0] if marked else None


def assert_refused(result, root: Path, before: set[str], where: str, names: tuple[str, ...] = ()) -> str:
    """Exit 2, one ``pbtrun: error:`` message naming ``where`` and ``names``, nothing on disk."""
    err = result.stderr
    assert result.returncode == 2, f"exit code {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{err}"
    assert err.startswith("pbtrun: error:"), err
    assert err.count("pbtrun: error:") == 1, err
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    assert result.stdout == "", result.stdout
    assert where in err, f"message does not name {where!r}:\n{err}"
    for name in names:
        assert name.lower() in err.lower(), f"message does not name {name!r}:\n{err}"
    assert not (root / "train_dir").exists(), "a train dir was created"
    assert _files(root) == before, f"files appeared: {sorted(_files(root) - before)}"
    return err


@pytest.mark.parametrize(("text", "names", "args", "where"), CASES)
def test_bad_spec_is_refused_cleanly(
    project, text: str, names: tuple[str, ...], args: tuple[str, ...], where: str
) -> None:
    project.spec(text)
    before = _files(project.root)
    result = project.run("up", "sweep.toml", "--num-gpus", "0", *args)
    err = assert_refused(result, project.root, before, where, names)
    line = _marked_line(text)
    if line is not None:
        assert f"line {line}:" in err, f"message does not point at line {line}:\n{err}"
        shown = clip(text.split("\n")[line - 1].strip())  # a long line is cut, marked with "…"
        assert err.endswith(f"\n    {line} | {shown}\n"), f"message does not show line {line}:\n{err}"


@pytest.mark.parametrize(
    "header",
    ["[sheduler]", "[experiments.grd]", "[[experiments.grd]]", "[ experiments . 'grd' ]"],
)
def test_a_mistyped_header_is_shown_at_its_line(project, header: str) -> None:
    line = 6  # below the group's [[experiments]] (line 3), which must not be the one shown
    project.spec(BASE + GROUP + "\n" + header + "\nx = 1\n")
    before = _files(project.root)
    err = assert_refused(project.run("up", "sweep.toml", "--num-gpus", "0"), project.root, before, "sweep.toml")
    assert f"sweep.toml, line {line}: " in err
    assert err.endswith(f"\n    {line} | {header}\n"), err  # the header itself, not the [[experiments]] above


def test_missing_spec_file(project) -> None:
    before = _files(project.root)
    result = project.run("up", "no_such_sweep.toml", "--num-gpus", "0")
    err = assert_refused(result, project.root, before, "no_such_sweep.toml")
    assert "no such file" in err.lower()


@pytest.mark.parametrize("command", ["up", "plan"])
def test_spec_that_is_a_directory(project, command: str) -> None:
    (project.root / "sweep.toml").mkdir()
    before = _files(project.root)
    result = project.run(command, "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    assert result.stderr.startswith("pbtrun: error: ") and "sweep.toml" in result.stderr
    assert "is a directory, not a spec file" in result.stderr
    assert _files(project.root) == before


@pytest.mark.parametrize("command", ["up", "plan"])
def test_spec_that_is_not_utf8_is_placed_by_line(project, command: str) -> None:
    (project.root / "sweep.toml").write_bytes(b'name = "s"\ncommand = "caf\xe9"\n' + GROUP.encode())
    before = _files(project.root)
    result = project.run(command, "sweep.toml", "--num-gpus", "0")
    err = assert_refused(result, project.root, before, "sweep.toml, line 2: not UTF-8 text", ("0xe9 at column 15",))
    assert err.endswith('\n    2 | command = "caf\ufffd"\n'), err


def test_plan_of_a_directory_says_so_in_pbtrun_s_format(project) -> None:
    (project.root / "sweep.toml").mkdir()
    before = _files(project.root)
    result = project.run("plan", "sweep.toml")
    err = assert_refused(result, project.root, before, "sweep.toml: is a directory, not a spec file")
    assert "Usage:" not in err and err.count("\n") == 1, err


def test_a_byte_order_mark_is_accepted(project) -> None:
    """Some Windows editors start UTF-8 files with one; TOML would call it an invalid statement."""
    (project.root / "sweep.toml").write_bytes("\ufeff".encode() + (BASE + GROUP).encode())
    result = project.run("plan", "sweep.toml", "--json")
    assert result.returncode == 0, result.stderr
    assert [e["name"] for e in json.loads(result.stdout)["experiments"]] == ["00_g"]


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        (f'name = "{"é" * 121}"\ncommand = "prog"\n' + GROUP, 1, "not 242"),  # 121 characters, 242 bytes
        (BASE + f'[[experiments]]\nname = "g"\ngrid = {{ x = ["{"é" * 117}"] }}\n', 4, "has 241 bytes"),
    ],
    ids=["sweep-name", "experiment-name"],
)
def test_names_are_measured_in_bytes(project, text: str, line: int, said: str) -> None:
    """The limit of a file name is in bytes: é takes two."""
    (project.root / "sweep.toml").write_bytes(text.encode())
    before = _files(project.root)
    err = assert_refused(project.run("up", "sweep.toml", "--num-gpus", "0"), project.root, before, f"line {line}:")
    assert said in err and "240" in err, err


@pytest.mark.parametrize("values_per_key", [101, 1001])
def test_huge_grid_is_refused_before_expanding(project, values_per_key: int) -> None:
    # 101**3 = 1,030,301 experiments, just over the limit; 1001**3 (a billion) could not be
    # expanded at all in the time allowed, so a quick refusal proves the count comes first.
    keys = "\n".join(f"{k} = {list(range(values_per_key))}" for k in ("a", "b", "c"))
    project.spec(BASE + GROUP + "[experiments.grid]\n" + keys + "\n")
    before = _files(project.root)
    started = time.monotonic()
    result = project.run("up", "sweep.toml", "--num-gpus", "0", timeout=30)
    took_s = time.monotonic() - started
    err = assert_refused(result, project.root, before, "sweep.toml", ("grid", "1,000,000"))
    assert f"{values_per_key**3:,}" in err
    assert took_s < 10, f"took {took_s:.1f} s to refuse"


ADDRESS_SPACE_MB = 160  # pbtrun starts in less; a million experiments need more than that


def _run_in_little_memory(project, *args: str) -> subprocess.CompletedProcess:
    """``pbtrun ARGS`` with its address space capped: whatever would expand a million
    experiments fails with MemoryError instead of taking its seconds and hundreds of MB."""
    limit = ADDRESS_SPACE_MB << 20
    return project.python(
        "-m", "pbtrun", *args, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    )


@pytest.mark.parametrize(
    ("groups", "said"),
    [
        ([(1000, 1000), (1000, 1000), (1000, 1000)], "2,000,000 in all"),  # the second group tips it over
        ([(1000, 1000), (1, 1)], "1,000,001 in all"),
        ([(10, 10), (1000, 1000)], "1,000,100 in all"),
    ],
)
def test_groups_adding_up_past_the_limit_are_refused_before_any_is_expanded(project, groups, said) -> None:
    """Each group within the limit, their sum over it: refused from the counts alone. Proven
    without a clock: with too little memory to expand a million experiments, the refusal still
    comes, clean; expanding first would die of MemoryError."""
    project.spec(BASE + "[[experiments]]\nname = 'small'\n")
    assert _run_in_little_memory(project, "plan", "sweep.toml", "--num-gpus", "0").returncode == 0, (
        f"pbtrun needs more than {ADDRESS_SPACE_MB} MB of address space here just to start"
    )
    tables = "".join(
        f"[[experiments]]\nname = 'g{n}'\n[experiments.grid]\na = {list(range(a))}\nb = {list(range(b))}\n"
        for n, (a, b) in enumerate(groups)
    )
    project.spec(BASE + tables)
    before = _files(project.root)
    result = _run_in_little_memory(project, "up", "sweep.toml", "--num-gpus", "0")
    err = assert_refused(result, project.root, before, "sweep.toml", ("1,000,000", said))
    assert "MemoryError" not in err
    assert "sweep.toml, line 8: experiments[2]:" in err  # the second group's [[experiments]] (5 lines each)


@pytest.mark.parametrize(
    "text",
    ["grid = { a = [{ b = 1 }] }", 'grid = { "x,y" = [[1, { b = 1 }]] }', "list = [{ a = [{ b = 1 }] }]"],
)
def test_a_table_inside_a_list_gets_no_dotted_key_hint(project, text: str) -> None:
    """A table among the values is no dotted key: quoting a name (``"a.b" = [...]``) cannot fix it."""
    project.spec(BASE + GROUP + text + "\n")
    before = _files(project.root)
    err = assert_refused(project.run("up", "sweep.toml", "--num-gpus", "0"), project.root, before, "sweep.toml")
    assert "dotted key" not in err and '"a.b"' not in err and '"x,y.b"' not in err, err
    assert "is not a parameter value" in err and "strings, numbers, booleans" in err


def test_grid_hint_keeps_the_value_type(project) -> None:
    """'what is valid' for a scalar grid value shows it as a list of the same TOML value."""
    project.spec(BASE + GROUP + "grid = { lr = 0.1 }\n")
    before = _files(project.root)
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    err = assert_refused(result, project.root, before, "sweep.toml", ("grid.lr",))
    assert "lr = [0.1]" in err, err


def test_plan_refuses_an_empty_train_dir_flag_too(project) -> None:
    project.spec(BASE + GROUP)
    before = _files(project.root)
    result = project.run("plan", "sweep.toml", "--train-dir", "")
    assert_refused(result, project.root, before, "--train-dir", ("empty", "'train_dir'"))


def test_dry_run_refuses_bad_specs_too(project) -> None:
    project.spec(BASE + GROUP + "grid = { lr = 0.1 }\n")
    before = _files(project.root)
    result = project.run("up", "sweep.toml", "--num-gpus", "0", "--dry-run")
    assert_refused(result, project.root, before, "sweep.toml", ("grid.lr",))


def _run_in_a_deleted_directory(project, *args: str) -> subprocess.CompletedProcess:
    """``pbtrun ARGS`` from a working directory that was deleted after the process entered it."""
    gone = project.root / "gone"
    gone.mkdir()
    enter_delete_exec = (
        "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
        "os.execv(sys.executable, [sys.executable, '-m', 'pbtrun', *sys.argv[2:]])"
    )
    return subprocess.run(
        [sys.executable, "-c", enter_delete_exec, str(gone), *args],
        capture_output=True,
        text=True,
        env=project.env(),
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("spec", ["absolute", "relative"])
def test_up_in_a_deleted_working_directory_says_so(project, spec: str) -> None:
    path = project.spec(BASE + GROUP)
    result = _run_in_a_deleted_directory(project, "up", str(path) if spec == "absolute" else "sweep.toml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith("pbtrun: error: the current directory no longer exists"), result.stderr
    assert result.stderr.count("\n") == 1 and "cd to a directory that exists" in result.stderr
    assert not (project.root / "train_dir").exists()


def test_other_commands_in_a_deleted_working_directory_explain_their_relative_paths(project) -> None:
    path = project.spec(BASE.replace('"prog"', '"true"') + GROUP)
    assert project.run("up", str(path), "--num-gpus", "0").returncode == 0
    relative = _run_in_a_deleted_directory(project, "resume", "train_dir/s")
    assert relative.returncode == 2 and "Traceback" not in relative.stderr
    assert "train_dir/s: no such directory" in relative.stderr
    assert "current directory no longer exists" in relative.stderr
    dotted = _run_in_a_deleted_directory(project, "import", "my_project.runs.ant")
    assert dotted.returncode == 2 and "Traceback" not in dotted.stderr, dotted.stderr
    assert "current directory no longer exists" in dotted.stderr
    absolute = _run_in_a_deleted_directory(project, "status", str(project.root / "train_dir" / "s"), "--json")
    assert absolute.returncode == 0, absolute.stderr  # a command that needs no relative path still works
    assert json.loads(absolute.stdout)["counts"]["succeeded"] == 1


def test_missing_program_is_not_a_spec_error(project) -> None:
    """A command that does not exist runs: that experiment fails with 127 and its log says why."""
    project.spec(BASE.replace('"prog"', '"no-such-program-xyz --flag"') + GROUP)
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    status = project.status_json("s")
    (exp,) = status["experiments"]
    assert exp["status"] == "failed"
    assert exp["returncode"] == 127
    assert exp["argv"][0] == "no-such-program-xyz"
    log = Path(exp["log"])
    if not log.is_absolute():
        log = project.root / "train_dir" / "s" / log
    assert "no-such-program-xyz" in log.read_text()
    assert status["counts"]["failed"] == 1
