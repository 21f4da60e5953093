"""Compiling a spec: grid order, tied and listed parameters, naming, quoting, env, ids, file names.

Pure: each test writes a spec into ``tmp_path``, loads it with :func:`pbtrun.spec.reading.load` and
expands it; no process runs.
"""

from __future__ import annotations

import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pbtrun.errors import SpecError
from pbtrun.spec.expansion import expand
from pbtrun.spec.model import ExperimentSpec, Spec
from pbtrun.spec.naming import safe_file_name, shorthands
from pbtrun.spec.positions import key_lines
from pbtrun.spec.reading import load


def load_text(tmp_path: Path, text: str) -> Spec:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text))
    return load(path)


def compile_text(tmp_path: Path, text: str, train_dir: str | None = None) -> list[ExperimentSpec]:
    return expand(load_text(tmp_path, text), train_dir)


def one_group(body: str, command: str = '"prog"', **top: str) -> str:
    """A spec with one group ``g`` whose table ends with ``body``; ``top`` adds top-level keys."""
    head = "".join(f"{k} = {v}\n" for k, v in top.items())
    return f'name = "s"\ncommand = {command}\n{head}\n[[experiments]]\nname = "g"\n{textwrap.dedent(body)}'


def params_of(exps: list[ExperimentSpec]) -> list[dict[str, Any]]:
    return [e.params for e in exps]


# --------------------------------------------------------------------------- grid order


def test_grid_is_the_cartesian_product_in_the_order_written_last_key_fastest(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group('grid = { b = [1, 2], a = ["x", "y", "z"] }'))
    assert [(p["b"], p["a"]) for p in params_of(exps)] == [
        (1, "x"),
        (1, "y"),
        (1, "z"),
        (2, "x"),
        (2, "y"),
        (2, "z"),
    ]
    # Keys keep the order written (b before a), in argv and in the name, not sorted.
    assert [list(p) for p in params_of(exps)] == [["b", "a"]] * 6
    assert exps[4].argv[1:3] == ("--b=2", "--a=y")
    assert [e.name for e in exps] == [
        "00_g_b_1_a_x",
        "01_g_b_1_a_y",
        "02_g_b_1_a_z",
        "03_g_b_2_a_x",
        "04_g_b_2_a_y",
        "05_g_b_2_a_z",
    ]
    assert [e.index for e in exps] == list(range(6))


def test_grid_as_a_table_section_keeps_the_same_order(tmp_path: Path) -> None:
    inline = compile_text(tmp_path, one_group("grid = { seed = [1, 2], lr = [0.1, 0.2], bs = [8] }"))
    section = compile_text(
        tmp_path,
        one_group("""
            [experiments.grid]
            seed = [1, 2]
            lr = [0.1, 0.2]
            bs = [8]
            """),
    )
    assert [e.argv for e in section] == [e.argv for e in inline]
    assert [e.name for e in section] == [
        "00_g_see_1_lr_0.1_bs_8",
        "01_g_see_1_lr_0.2_bs_8",
        "02_g_see_2_lr_0.1_bs_8",
        "03_g_see_2_lr_0.2_bs_8",
    ]


def test_index_restarts_in_each_group_and_groups_run_in_order(tmp_path: Path) -> None:
    exps = compile_text(
        tmp_path,
        """
        name = "s"
        command = "prog"
        [[experiments]]
        name = "second"
        grid = { x = [1, 2] }
        [[experiments]]
        name = "first"
        grid = { x = [3] }
        """,
    )
    assert [(e.group, e.index, e.name) for e in exps] == [
        ("second", 0, "00_second_x_1"),
        ("second", 1, "01_second_x_2"),
        ("first", 0, "00_first_x_3"),
    ]


# --------------------------------------------------------------------------- tied, lists, no params


def test_tied_parameters_vary_together(tmp_path: Path) -> None:
    exps = compile_text(
        tmp_path, one_group('grid = { seed = [1, 2], "use_rnn,recurrence" = [[false, 1], [true, 16]] }')
    )
    assert params_of(exps) == [
        {"seed": 1, "use_rnn": False, "recurrence": 1},
        {"seed": 1, "use_rnn": True, "recurrence": 16},
        {"seed": 2, "use_rnn": False, "recurrence": 1},
        {"seed": 2, "use_rnn": True, "recurrence": 16},
    ]
    assert exps[1].argv == (
        "prog",
        "--seed=1",
        "--use_rnn=True",
        "--recurrence=16",
        "--experiment=01_g_see_1_u.rnn_True_rec_16",
        "--train_dir=train_dir/s/g_",
    )


def test_tied_key_tolerates_spaces_after_the_comma(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group('grid = { "a, b" = [[1, 2], [3, 4]] }'))
    assert params_of(exps) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_explicit_list_gives_exactly_its_combinations_in_order(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group("list = [ { lr = 1e-3, batch = 64 }, { batch = 128, lr = 3e-4 } ]"))
    assert params_of(exps) == [{"lr": 0.001, "batch": 64}, {"batch": 128, "lr": 0.0003}]
    assert exps[0].argv[1:3] == ("--lr=0.001", "--batch=64")
    # Each combination keeps its own key order, as the launcher's ParamList does.
    assert exps[1].argv[1:3] == ("--batch=128", "--lr=0.0003")
    assert [e.name for e in exps] == ["00_g_lr_0.001_bat_64", "01_g_bat_128_lr_0.0003"]


def test_group_without_params_is_one_experiment(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group("", command='"python train.py --seed=42"'))
    assert len(exps) == 1
    (exp,) = exps
    assert exp.name == "00_g"
    assert exp.params == {}
    assert exp.argv == ("python", "train.py", "--seed=42", "--experiment=00_g", "--train_dir=train_dir/s/g_")
    assert exp.name_arg == 3


# --------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("names", "want"),
    [
        (["lr", "lr_decay"], ["lr", "l.dec"]),
        (["train.lr", "train.lr_decay"], ["t.lr", "t.l.dec"]),
        (["model.encoder.hidden_size"], ["m.e.h.siz"]),
        (["use-rnn", "async_rl"], ["u.rnn", "a.rl"]),
        # A collision lengthens the last token of the later name ...
        (["seed", "seeds"], ["see", "seed"]),
        (["batch_size", "buffer_size", "block_size"], ["b.siz", "b.size", "b.size"]),
        # ... and is accepted once that token is exhausted, as the old launcher does.
        (["train.lr", "test.lr"], ["t.lr", "t.lr"]),
    ],
)
def test_shorthands_follow_the_old_launcher(names: list[str], want: list[str]) -> None:
    assert shorthands(names) == want


def test_names_with_colliding_shorthands(tmp_path: Path) -> None:
    exps = compile_text(
        tmp_path,
        one_group('grid = { lr = [0.1], lr_decay = [0.9], "train.lr" = [1], "train.lr_decay" = [2], seeds = [3] }'),
    )
    assert exps[0].name == "00_g_lr_0.1_l.dec_0.9_t.lr_1_t.l.dec_2_see_3"
    exps = compile_text(tmp_path, one_group("grid = { seed = [1], seeds = [2] }"))
    assert exps[0].name == "00_g_see_1_seed_2"


def test_customize_experiment_name_false_gives_index_and_group_only(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group("grid = { seed = [1, 2] }", customize_experiment_name="false"))
    assert [e.name for e in exps] == ["00_g", "01_g"]
    assert [e.argv[-2] for e in exps] == ["--experiment=00_g", "--experiment=01_g"]
    assert [e.argv[1] for e in exps] == ["--seed=1", "--seed=2"]


def test_two_groups_producing_the_same_name_are_refused(tmp_path: Path) -> None:
    spec = load_text(
        tmp_path,
        """
        name = "s"
        command = "prog"
        [[experiments]]
        name = "a"
        grid = { b = [1] }
        [[experiments]]
        name = "a_b_1"
        """,
    )
    with pytest.raises(SpecError, match=r"00_a_b_1") as err:
        expand(spec)
    assert "sweep.toml" in err.value.message


def test_more_than_a_hundred_experiments_use_three_digit_indices(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group(f"grid = {{ seed = {list(range(101))} }}"))
    assert exps[99].name == "99_g_see_99"
    assert exps[100].name == "100_g_see_100"


# --------------------------------------------------------------------------- values and quoting


@pytest.mark.parametrize(
    ("toml_value", "python_value", "rendered"),
    [
        ("true", True, "True"),
        ("false", False, "False"),
        ("0.001", 0.001, "0.001"),
        ("1e-5", 1e-05, "1e-05"),
        ("1e3", 1000.0, "1000.0"),
        ("1.0", 1.0, "1.0"),
        ("3", 3, "3"),
        ("-1", -1, "-1"),
        ('"cartpole"', "cartpole", "cartpole"),
        ('"True"', "True", "True"),
        ("[64, 64]", [64, 64], "[64, 64]"),
    ],
)
def test_values_keep_toml_types_and_render_with_str(
    tmp_path: Path, toml_value: str, python_value: Any, rendered: str
) -> None:
    (exp,) = compile_text(tmp_path, one_group(f"grid = {{ v = [{toml_value}] }}"))
    assert exp.params["v"] == python_value
    assert type(exp.params["v"]) is type(python_value)
    assert exp.argv[1] == f"--v={rendered}"
    assert exp.name == f"00_g_v_{rendered}"


@pytest.mark.parametrize(
    "value",
    [
        "'; echo foo",
        'say "hello world"',
        "a b  c",
        "$(touch pwned) `id` && |",
        "tab\there\nnewline",
    ],
)
def test_value_with_spaces_or_quotes_stays_one_argument(tmp_path: Path, value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
    (exp,) = compile_text(tmp_path, one_group(f'grid = {{ msg = ["{escaped}"] }}'))
    assert exp.params["msg"] == value
    assert exp.argv == (
        "prog",
        f"--msg={value}",
        f"--experiment=00_g_msg_{value}",
        "--train_dir=train_dir/s/g_",
    )


def test_command_string_is_split_with_shlex(tmp_path: Path) -> None:
    command = """'''python -m train --title "hello world" --note="it's" --empty "" plain'''"""
    (exp,) = compile_text(tmp_path, one_group("", command=command))
    assert exp.argv[:8] == (
        "python",
        "-m",
        "train",
        "--title",
        "hello world",
        "--note=it's",
        "--empty",
        "",
    )
    assert exp.argv[8] == "plain"


def test_command_as_a_list_is_taken_as_is(tmp_path: Path) -> None:
    command = """["my prog", "--title", "hello world", "'; echo foo", "a\\"b"]"""
    (exp,) = compile_text(tmp_path, one_group("grid = { x = [1] }", command=command))
    assert exp.argv == (
        "my prog",
        "--title",
        "hello world",
        "'; echo foo",
        'a"b',
        "--x=1",
        "--experiment=00_g_x_1",
        "--train_dir=train_dir/s/g_",
    )


def test_group_command_overrides_the_top_level_one(tmp_path: Path) -> None:
    exps = compile_text(
        tmp_path,
        """
        name = "s"
        command = "top --a"
        [[experiments]]
        name = "own"
        command = ["mine", "--b"]
        [[experiments]]
        name = "inherits"
        """,
    )
    assert exps[0].argv[:2] == ("mine", "--b")
    assert exps[1].argv[:2] == ("top", "--a")


def test_value_with_a_slash_is_passed_as_is(tmp_path: Path) -> None:
    (exp,) = compile_text(tmp_path, one_group('grid = { "pbt/mutation" = ["ant/v1"] }'))
    assert exp.name == "00_g_pbt_ant/v1"
    assert "--pbt/mutation=ant/v1" in exp.argv
    assert "--experiment=00_g_pbt_ant/v1" in exp.argv


# --------------------------------------------------------------------------- argument names


def test_hydra_style_empty_param_prefix(tmp_path: Path) -> None:
    (exp,) = compile_text(
        tmp_path,
        one_group(
            'grid = { "pbt.policy_idx" = [3], lr = [0.1] }',
            param_prefix='""',
            experiment_arg_name='"experiment"',
            experiment_dir_arg_name='"hydra.run.dir"',
        ),
    )
    assert exp.argv == (
        "prog",
        "pbt.policy_idx=3",
        "lr=0.1",
        "experiment=00_g_p.p.idx_3_lr_0.1",
        "hydra.run.dir=train_dir/s/g_",
    )


def test_empty_experiment_arg_name_passes_no_name(tmp_path: Path) -> None:
    (exp,) = compile_text(tmp_path, one_group("grid = { x = [1] }", experiment_arg_name='""'))
    assert exp.argv == ("prog", "--x=1", "--train_dir=train_dir/s/g_")
    assert exp.name_arg is None
    assert exp.name == "00_g_x_1"


def test_empty_experiment_dir_arg_name_passes_no_dir(tmp_path: Path) -> None:
    (exp,) = compile_text(tmp_path, one_group("grid = { x = [1] }", experiment_dir_arg_name='""'))
    assert exp.argv == ("prog", "--x=1", "--experiment=00_g_x_1")
    assert exp.name_arg == 2


def test_no_name_and_no_dir_args_leave_command_plus_params(tmp_path: Path) -> None:
    (exp,) = compile_text(
        tmp_path,
        one_group("grid = { x = [1] }", experiment_arg_name='""', experiment_dir_arg_name='""', param_prefix='"-"'),
    )
    assert exp.argv == ("prog", "-x=1")


def test_experiment_dir_uses_train_dir_name_group_and_suffix(tmp_path: Path) -> None:
    text = one_group("", train_dir='"runs"', experiment_suffix='"v2"')
    (exp,) = compile_text(tmp_path, text)
    assert exp.argv[-1] == "--train_dir=runs/s/g_v2"
    # --train-dir overrides the spec's, as written (relative stays relative).
    (exp,) = compile_text(tmp_path, text, train_dir="/scratch/td")
    assert exp.argv[-1] == "--train_dir=/scratch/td/s/g_v2"
    # The trailing "_" stays even with no suffix, as in the old launcher.
    (exp,) = compile_text(tmp_path, one_group(""))
    assert exp.argv[-1] == "--train_dir=train_dir/s/g_"


# --------------------------------------------------------------------------- env


def test_env_merges_top_level_and_group_group_wins(tmp_path: Path) -> None:
    exps = compile_text(
        tmp_path,
        """
        name = "s"
        command = "prog"

        [env]
        A = "top"
        B = "top"
        THREADS = 4

        [[experiments]]
        name = "with_env"
        env = { B = "group", C = "c" }

        [[experiments]]
        name = "without_env"
        """,
    )
    assert exps[0].env == {"A": "top", "B": "group", "C": "c", "THREADS": "4"}
    assert exps[1].env == {"A": "top", "B": "top", "THREADS": "4"}


def test_no_env_anywhere_is_empty(tmp_path: Path) -> None:
    (exp,) = compile_text(tmp_path, one_group(""))
    assert exp.env == {}


# --------------------------------------------------------------------------- stable ids


def test_same_group_and_params_give_the_same_id_wherever_they_are(tmp_path: Path) -> None:
    before = compile_text(tmp_path, one_group("grid = { seed = [1, 2], lr = [0.1] }"))
    after = compile_text(tmp_path, one_group("grid = { seed = [0, 1, 2, 3], lr = [0.1] }"))
    by_seed = {e.params["seed"]: e.id for e in after}
    assert [e.id for e in before] == [by_seed[1], by_seed[2]]
    # Positions (and so names) moved, ids did not.
    assert [e.name for e in before] != [e.name for e in after[1:3]]
    assert len({e.id for e in after}) == 4


def test_ids_depend_on_group_and_params(tmp_path: Path) -> None:
    exps = compile_text(
        tmp_path,
        """
        name = "s"
        command = "prog"
        [[experiments]]
        name = "a"
        grid = { x = [1, 2] }
        [[experiments]]
        name = "b"
        grid = { x = [1] }
        [[experiments]]
        name = "c"
        list = [ { x = 1 }, { x = 1.0 }, { x = "1" }, { x = true } ]
        """,
    )
    assert len({e.id for e in exps}) == len(exps) == 7
    again = compile_text(tmp_path, (tmp_path / "sweep.toml").read_text())
    assert [e.id for e in again] == [e.id for e in exps]


def test_repeated_identical_combinations_get_distinct_stable_ids(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, one_group("list = [ { seed = 1 }, { seed = 1 }, { seed = 1 } ]"))
    assert [e.name for e in exps] == ["00_g_see_1", "01_g_see_1", "02_g_see_1"]
    assert len({e.id for e in exps}) == 3
    # Another combination in front of them changes no id of theirs.
    more = compile_text(tmp_path, one_group("list = [ { seed = 2 }, { seed = 1 }, { seed = 1 }, { seed = 1 } ]"))
    assert [e.id for e in more[1:]] == [e.id for e in exps]
    assert more[0].id not in {e.id for e in exps}


# --------------------------------------------------------------------------- file names


def test_safe_file_name_keeps_plain_names() -> None:
    assert safe_file_name("00_g_lr_0.001_t.l.dec_0.99", "0123456789abcdef") == "00_g_lr_0.001_t.l.dec_0.99"


@pytest.mark.parametrize(
    "name",
    ["00_g_p_ant/v1", "00_g_p_../../etc/passwd", "../x", "/abs", "00_g_msg_'; echo foo", "..", ".hidden", ""],
)
def test_safe_file_name_never_leaves_the_directory(name: str) -> None:
    safe = safe_file_name(name, "0123456789abcdef")
    assert "/" not in safe
    assert "\0" not in safe
    assert not safe.startswith(".")
    assert safe not in ("", ".", "..")
    assert " " not in safe
    assert safe != name


def test_safe_file_name_keeps_names_apart_when_it_changes_them() -> None:
    # "a/b" and "a_b" would both become "a_b": the id makes them differ.
    slash = safe_file_name("00_g_p_a/b", "1111111111111111")
    underscore = safe_file_name("00_g_p_a_b", "2222222222222222")
    assert slash != underscore
    assert underscore == "00_g_p_a_b"
    assert slash.startswith("00_g_p_a_b")


def test_safe_file_name_shortens_very_long_names_uniquely() -> None:
    base = "00_g_" + "_".join(f"param{k}_{k}" for k in range(60))
    first = safe_file_name(base + "_a", "aaaaaaaa00000000")
    second = safe_file_name(base + "_b", "bbbbbbbb00000000")
    assert len(base) > 255
    assert first != second
    assert len(first) <= 200
    assert len(second) <= 200
    assert "/" not in first
    assert safe_file_name(base + "_a", "aaaaaaaa00000000") == first  # deterministic


# --------------------------------------------------------------------------- where keys are written

TRICKY_TOML = (
    "# every kind of string, key and value TOML has, in the places a key finder could trip on\r\n"
    'name = "s" # name = "t"\r\n'
    "'quoted.dotted' = 'a # b'\n"
    'a . "b.c" . d = """x = 1\n[scheduler]\n\\""" still in\n"""\n'
    "lit = '''\n[[experiments]]\nname = 'z'\n'''\n"
    'ends = """q"""""\n'
    "when = 1979-05-27 07:32:00Z\n"
    "nums = [ +inf, -nan, 0x1F, 1_000, 1e-3, true, 1979-05-27 07:32:00 ,\n  # a comment\n  [ [1], {} ], ]\n"
    "[ scheduler ]  # a header with spaces\n"
    "gpus = [0,\n 2]\n"
    "[[ experiments ]]\n"
    'name = "a"\n'
    "list = [\n  { lr = 1, 'x.y' = { z = [1, 2] } },\n  {lr=2},\n]\n"
    "[experiments.grid]\n"
    '"a,b" = [[1, "]"], [2, "}"]]\n'
    "[[experiments]]\n"
    'name = "b"\n'
    "[[experiments.sub]]\n"
    "k = 1\n"
    "[[experiments.sub]]\n"
    "k = 2\n"
)


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path of a parsed TOML document, array elements by index."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*prefix, key)
        yield from _paths(item, (*prefix, key))


def _spec_files() -> list[Path]:
    root = Path(__file__).parent.parent
    return sorted(
        [*root.glob("examples/*.toml"), *root.glob("tests/data/compat/*.toml"), root / "pbtrun/spec/starter.toml"]
    )


@pytest.mark.parametrize(
    "text", [TRICKY_TOML, *(p.read_text() for p in _spec_files())], ids=["tricky", *(p.name for p in _spec_files())]
)
def test_key_lines_places_every_key_tomllib_reads(text: str) -> None:
    """The line finder reads the whole text: every key and element TOML sees has a line, the line
    of a key is one that names it, and nothing that is no key (comments, strings) has one."""
    places = key_lines(text)
    wanted = set(_paths(tomllib.loads(text)))
    assert wanted <= set(places), sorted(wanted - set(places))
    assert set(places) <= wanted, sorted(set(places) - wanted)
    lines = text.split("\n")
    for path, line in places.items():
        if isinstance(path[-1], str) and len(path) == 1:
            assert path[-1].split(".")[0] in lines[line - 1], (path, line)


def test_key_lines_of_the_tricky_text() -> None:
    places = key_lines(TRICKY_TOML)
    assert places[("a", "b.c", "d")] == 4
    assert places[("scheduler",)] == 17 and places[("scheduler", "gpus", 1)] == 19
    assert places[("experiments", 0)] == 20 and places[("experiments", 0, "list", 1, "lr")] == 24
    assert places[("experiments", 0, "list", 0, "x.y", "z", 1)] == 23
    assert places[("experiments", 0, "grid", "a,b", 1)] == 27
    assert places[("experiments", 1, "sub", 1, "k")] == 33
