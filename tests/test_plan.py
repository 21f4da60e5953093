"""The sweep language's additions (seeds, repeat, randomize), plan / init / schema, and errors
that point at the line of the offending key."""

from __future__ import annotations

import json
import shlex
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from pbtrun.errors import SpecError
from pbtrun.spec.expansion import expand
from pbtrun.spec.keys import EXPERIMENT_KEYS, SCHEDULER_KEYS, TOP_KEYS
from pbtrun.spec.model import BACKENDS
from pbtrun.spec.reading import parse

ROOT = Path(__file__).parent.parent
HEAD = 'name = "s"\ncommand = "python train.py"\n'
GROUP = '[[experiments]]\nname = "g"\n'


def compile_(text: str) -> list:
    return expand(parse(HEAD + text, Path("sweep.toml")))


def error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        compile_(text)
    return info.value.message


# --------------------------------------------------------------------------- seeds, repeat, randomize


def test_seeds_add_a_slowest_seed_axis_from_seed_base():
    exps = compile_('[[experiments]]\nname = "a"\nseeds = 2\nseed_base = 100\ngrid = { lr = [1, 2] }\n')
    assert [e.params for e in exps] == [
        {"seed": 100, "lr": 1},
        {"seed": 100, "lr": 2},
        {"seed": 101, "lr": 1},
        {"seed": 101, "lr": 2},
    ]
    assert exps[0].name == "00_a_see_100_lr_1"
    assert "--seed=100" in exps[0].argv


def test_seeds_default_to_zero_and_work_with_lists():
    exps = compile_('[[experiments]]\nname = "a"\nseeds = 2\nlist = [{ lr = 1 }, { lr = 2, b = 3 }]\n')
    assert [e.params for e in exps] == [
        {"seed": 0, "lr": 1},
        {"seed": 0, "lr": 2, "b": 3},
        {"seed": 1, "lr": 1},
        {"seed": 1, "lr": 2, "b": 3},
    ]


def test_repeat_runs_the_group_again_with_distinct_names_and_ids():
    exps = compile_('[[experiments]]\nname = "a"\nrepeat = 3\ngrid = { lr = [1, 2] }\n')
    assert [e.params["lr"] for e in exps] == [1, 2, 1, 2, 1, 2]
    assert len({e.name for e in exps}) == 6
    assert len({e.id for e in exps}) == 6


def test_randomize_shuffles_launch_order_reproducibly_and_keeps_names():
    text = 'randomize = true\nrandom_seed = {}\n[[experiments]]\nname = "a"\ngrid = {{ i = {} }}\n'
    written = compile_(text.format(0, list(range(20))).replace("randomize = true", "randomize = false"))
    first = compile_(text.format(7, list(range(20))))
    again = compile_(text.format(7, list(range(20))))
    other = compile_(text.format(8, list(range(20))))
    assert [e.name for e in first] == [e.name for e in again]
    assert [e.name for e in first] != [e.name for e in written]
    assert [e.name for e in first] != [e.name for e in other]
    assert sorted(e.name for e in first) == sorted(e.name for e in written)
    assert {e.id: e.name for e in first} == {e.id: e.name for e in written}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[experiments]]\nname = "a"\nseed_base = 5\n', "only works with seeds"),
        ('[[experiments]]\nname = "a"\nseeds = 2\ngrid = { seed = [1] }\n', "already has a 'seed'"),
        ('[[experiments]]\nname = "a"\nrepeat = 0\n', "repeat: must be at least 1"),
        ('[[experiments]]\nname = "a"\nseeds = "3"\n', "seeds: must be an integer"),
        ('[[experiments]]\nname = "a"\nseeds = 1001\nrepeat = 1000\ngrid = { x = [1, 2] }\n', "more than the"),
    ],
)
def test_bad_seeds_and_repeats_are_explained(text, expected):
    assert expected in error(text)


# --------------------------------------------------------------------------- errors point at lines


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ('[scheduler]\nmax_parallel = "8"\n[[experiments]]\nname = "a"\n', 4, 'max_parallel = "8"'),
        ('[[experiments]]\nname = "a"\n\ngrid = { seed = 5 }\n', 6, "grid = { seed = 5 }"),
        ('[[experiments]]\nname = "a"\n[[experiments]]\nname = "b"\ntimeout_min = -1\n', 7, "timeout_min = -1"),
        ('[[experiments]]\nname = "a"\nenv = { X = true }\n', 5, "env = { X = true }"),
        ('[[experiments]]\nname = "a"\ngird = { x = [1] }\n', 5, "gird = { x = [1] }"),
    ],
)
def test_type_and_value_errors_point_at_the_line_and_show_it(text, line, shown):
    message = error(text)
    assert f"sweep.toml, line {line}:" in message
    assert message.rstrip().endswith(f"{line} | {shown}")


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        # a key and a header inside multi-line strings are text, not TOML
        (
            'env = { A = """\nrepeat = 1\n[[experiments]]\n""" }\n[[experiments]]\nname = "a"\nrepeat = 0\n',
            9,
            "repeat = 0",
        ),
        (
            "env = { A = '''\n[scheduler]\nmax_parallel = 1\n''' }\n[scheduler]\nmax_parallel = 0\n" + GROUP,
            8,
            "max_parallel = 0",
        ),
        # a quoted key is the key it spells; an escaped quote does not end a string
        ('[scheduler]\n"max_parallel" = 0\n' + GROUP, 4, '"max_parallel" = 0'),
        ('env = { A = "say \\"repeat = 1\\"" }\n[[experiments]]\nname = "a"\nrepeat = 0\n', 6, "repeat = 0"),
        # the third group's key, not the first group's of the same name
        (
            '[[experiments]]\nname = "a"\n[[experiments]]\nname = "b"\n[[experiments]]\nname = "c"\nseeds = 0\n',
            9,
            "seeds = 0",
        ),
        # a sub-table of the second group
        ('[[experiments]]\nname = "a"\n[[experiments]]\nname = "b"\n[experiments.grid]\nlr = []\n', 8, "lr = []"),
        # an inline array of tables
        ('experiments = [\n  { name = "a" },\n  { name = "b", seeds = 0 },\n]\n', 5, '{ name = "b", seeds = 0 },'),
        # an element of a multi-line tied grid
        ('[[experiments]]\nname = "a"\ngrid = { "a,b" = [\n  [1, 2],\n  [3],\n] }\n', 7, "[3],"),
    ],
)
def test_errors_point_at_the_key_tables_and_elements_they_are_about(text, line, shown):
    message = error(text)
    assert f"sweep.toml, line {line}:" in message, message
    assert message.endswith(f"\n    {line} | {shown}"), message


def test_a_key_added_below_its_commented_out_example_is_the_one_shown(project):
    """``pbtrun init`` writes commented-out keys; the one the user adds is the one meant."""
    assert project.run("init", "s.toml").returncode == 0
    starter = project.root / "s.toml"
    lines = starter.read_text().split("\n")
    at = next(n for n, line in enumerate(lines) if line.startswith("# pause_between"))
    lines.insert(at + 1, "num_gpus = 5000")
    starter.write_text("\n".join(lines))
    result = project.run("plan", "s.toml")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"s.toml, line {at + 2}: scheduler.num_gpus: must be 0 to 1024" in result.stderr, result.stderr
    assert result.stderr.endswith(f"\n    {at + 2} | num_gpus = 5000\n"), result.stderr


def test_unknown_key_suggests_across_tables():
    message = error('max_paralel = 3\n[[experiments]]\nname = "a"\n')
    assert "Did you mean 'max_parallel'? It belongs in [scheduler]." in message


def test_the_backend_is_local_unless_the_spec_names_another():
    assert parse(HEAD + GROUP, Path("sweep.toml")).backend == "local"
    assert parse(HEAD + 'backend = "local"\n' + GROUP, Path("sweep.toml")).backend == "local"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('backend = "pbs"', '"pbs" is not a backend pbtrun knows. Known backends: "local" ('),
        ('backend = ""', '"" is not a backend pbtrun knows. Known backends: "local" ('),
        ("backend = 1", "must be a string, not an integer."),
    ],
)
def test_an_unknown_backend_is_refused_at_its_line_with_the_known_ones(line, problem):
    message = error(f"{line}\n{GROUP}")
    assert message.startswith(f"sweep.toml, line 3: backend: {problem}"), message
    assert message.endswith(f"\n    3 | {line}"), message


# --------------------------------------------------------------------------- plan, init, schema


def test_plan_prints_commands_env_and_slots_and_creates_nothing(project):
    project.spec(
        """
        name = "p"
        command = "python train.py"
        [scheduler]
        num_gpus = 2
        experiments_per_gpu = 1
        [[experiments]]
        name = "a"
        grid = { lr = [1, 2, 3] }
        env = { K = "v w" }
        """
    )
    before = sorted(project.root.rglob("*"))
    for args in (("plan", "sweep.toml"), ("up", "sweep.toml", "--dry-run")):
        result = project.run(*args)
        assert result.returncode == 0, result.stderr
        assert "00_a_lr_1  [GPU 0]" in result.stdout and "01_a_lr_2  [GPU 1]" in result.stdout
        assert "02_a_lr_3  [queued" in result.stdout
        assert "env: K='v w'" in result.stdout
        python = shlex.quote(sys.executable)  # the interpreter `python` runs with, as the experiments will
        assert f"\n    {python} train.py --lr=1 --experiment=00_a_lr_1 --train_dir=train_dir/p/a_\n" in result.stdout
    assert sorted(project.root.rglob("*")) == before


@pytest.mark.parametrize("word", ["python", "python3"])
def test_plan_shows_the_interpreter_python_runs_with(project, word):
    project.spec(
        f'name = "p"\ncommand = "{word} train.py"\n[[experiments]]\nname = "a"\n'
        '[[experiments]]\nname = "b"\ncommand = ["other", "python"]\n'
    )
    planned = project.run("plan", "sweep.toml", "--json")
    assert planned.returncode == 0, planned.stderr
    argvs = [e["argv"] for e in json.loads(planned.stdout)["experiments"]]
    assert argvs[0][:2] == [sys.executable, "train.py"]
    assert argvs[1][:2] == ["other", "python"]  # only the first word is the program
    text = project.run("plan", "sweep.toml").stdout
    assert f"\n    {shlex.quote(sys.executable)} train.py --experiment=00_a" in text, text


def test_plan_offers_only_the_flags_it_uses(project):
    project.spec('name = "p"\ncommand = "run"\n[[experiments]]\nname = "a"\n')
    help_text = project.run("plan", "--help").stdout
    assert "--num-gpus" in help_text and "--max-parallel" in help_text
    for flag in ("--grace", "--retry-failed", "--plain"):
        assert flag not in help_text
        refused = project.run("plan", "sweep.toml", flag, *(["5"] if flag == "--grace" else []))
        assert refused.returncode == 2 and "No such option" in refused.stderr and flag in refused.stderr


def test_num_gpus_flag_wins_over_the_spec_s_gpu_ids(project):
    project.spec(
        'name = "p"\ncommand = "run"\n[scheduler]\ngpus = [2, 3]\nexperiments_per_gpu = 1\n'
        '[[experiments]]\nname = "a"\ngrid = { x = [1, 2] }\n'
    )
    by_spec = json.loads(project.run("plan", "sweep.toml", "--json").stdout)
    assert by_spec["settings"]["gpus"] == [2, 3]
    assert [e["first_slot"]["gpus"] for e in by_spec["experiments"]] == [[2], [3]]
    by_flag = json.loads(project.run("plan", "sweep.toml", "--json", "--num-gpus", "1").stdout)
    assert by_flag["settings"]["gpus"] == [0]
    assert [e["first_slot"] for e in by_flag["experiments"]] == [{"gpus": [0]}, None]


def test_plan_json_is_complete_for_scripts(project):
    project.spec('name = "p"\ncommand = "run"\n[scheduler]\nmax_parallel = 1\n[[experiments]]\nname = "a"\nseeds = 2\n')
    result = project.run("plan", "sweep.toml", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["sweep"] == {"name": "p", "dir": "train_dir/p"}
    assert [e["name"] for e in doc["experiments"]] == ["00_a_see_0", "01_a_see_1"]
    assert doc["experiments"][0]["argv"][:2] == ["run", "--seed=0"]
    assert doc["experiments"][0]["first_slot"] == {"gpus": None}
    assert doc["experiments"][1]["first_slot"] is None


def test_up_dry_run_json_is_the_plan_json(project):
    project.spec('name = "p"\ncommand = "run"\n[[experiments]]\nname = "a"\ngrid = { lr = [1, 2] }\n')
    before = sorted(project.root.rglob("*"))
    dry = project.run("up", "sweep.toml", "--dry-run", "--json", "--max-parallel", "1")
    assert dry.returncode == 0, dry.stderr
    planned = project.run("plan", "sweep.toml", "--json", "--max-parallel", "1")
    assert json.loads(dry.stdout) == json.loads(planned.stdout)
    assert [e["name"] for e in json.loads(dry.stdout)["experiments"]] == ["00_a_lr_1", "01_a_lr_2"]
    alone = project.run("up", "sweep.toml", "--json")  # it would run the sweep: refused before anything
    assert alone.returncode == 2 and "Traceback" not in alone.stderr
    assert "--json goes with --dry-run: `pbtrun up SPEC --dry-run --json`" in alone.stderr
    assert sorted(project.root.rglob("*")) == before


def test_init_writes_a_starter_that_plans_and_never_overwrites(project):
    result = project.run("init")
    assert result.returncode == 0, result.stderr
    starter = project.root / "sweep.toml"
    assert "[[experiments]]" in starter.read_text()
    assert project.run("plan", "sweep.toml").returncode == 0
    starter.write_text("# mine\n")
    again = project.run("init")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert starter.read_text() == "# mine\n"
    assert project.run("init", "--force").returncode == 0
    assert "[[experiments]]" in starter.read_text()


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("sub/dir/sweep.toml", "the directory sub/dir does not exist. Create it first (mkdir -p sub/dir)"),
        ("a_file/sweep.toml", "a_file is not a directory"),
        ("x" * 300 + ".toml", "File name too long"),
    ],
    ids=["missing-dir", "parent-is-a-file", "name-too-long"],
)
def test_init_where_it_cannot_write_says_why(project, target, said):
    (project.root / "a_file").write_text("")
    result = project.run("init", target)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"pbtrun: error: {target}: cannot write it: "), result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1  # one paragraph
    assert sorted(p.name for p in project.root.iterdir()) == ["a_file"]


@pytest.fixture(scope="module")
def schema() -> dict:
    from importlib.resources import files

    doc = json.loads(files("pbtrun.spec").joinpath("sweep.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(doc)
    return doc


def test_pbtrun_schema_prints_the_shipped_schema(project, schema):
    result = project.run("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == schema


def test_schema_knows_exactly_the_keys_the_spec_accepts(schema):
    props = schema["properties"]
    assert set(props) == set(TOP_KEYS)
    assert set(props["scheduler"]["properties"]) == set(SCHEDULER_KEYS)
    assert set(props["experiments"]["items"]["properties"]) == set(EXPERIMENT_KEYS)
    assert props["backend"]["enum"] == list(BACKENDS)
    from pbtrun.spec.slurm_table import SLURM_KEYS

    assert set(props["slurm"]["properties"]) == set(SLURM_KEYS)
    from pbtrun.spec.template_table import TEMPLATE_KEYS

    assert set(props["template"]["properties"]) == set(TEMPLATE_KEYS)


def spec_files() -> list[Path]:
    return [*ROOT.glob("examples/*.toml"), *ROOT.glob("tests/data/compat/*.toml"), ROOT / "pbtrun/spec/starter.toml"]


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_schema(schema, path):
    jsonschema.validate(tomllib.loads(path.read_text()), schema)


BAD_TOP = [  # each a top-level line (or table) of a spec otherwise valid
    'name = "s\\n"',
    'experiment_suffix = "../x"',
    'experiment_suffix = "v\\n"',
    f'experiment_suffix = "{"v" * 241}"',
    'command = "   "',
    'command = ["t", "\\u0000"]',
    'param_prefix = "-\\u0000"',
    'experiment_arg_name = "\\u0000"',
    'train_dir = "t\\u0000"',
    "random_seed = 3",
    'env = { "A=B" = "1" }',
    'env = { A = "\\u0000" }',
    "[scheduler]\nnum_gpus = 4\ngpus = [0, 1]",
    'backend = "pbs"',
    'backend = "template"\n[template]\njob_id_pattern = "(.+)"',  # no submit
    'backend = "template"\n[template]\nsubmit = "q {command}"\njob_id_pattern = "(.+)"\nfailed_pattern = "F"',
]


def _top(bad: str) -> str:
    """A valid spec's top level with ``bad`` in it (in place of the name or command it gives)."""
    given = [line for line in ('name = "a"', 'command = "t"') if not bad.startswith(line.split()[0] + " =")]
    return "\n".join([*given, bad])


BAD_GROUP = [  # each a line of a group otherwise valid
    'grid = { "a b" = [1] }',
    'grid = { "a=b" = [1] }',
    'grid = { "a,,b" = [[1, 2]] }',
    'grid = { a = ["\\u0000"] }',
    'grid = { a = [["x", "\\u0000"]] }',
    'list = [{ "a b" = 1 }]',
    'list = [{ "a=b" = 1 }]',
    'list = [{ a = "\\u0000" }]',
    'env = { "A=B" = "1" }',
]


@pytest.mark.parametrize(
    "text",
    [
        'name = "a"\nmax_paralel = 3\n[[experiments]]\nname = "x"\n',
        'name = "a"\n[scheduler]\nmax_parallel = 0\n[[experiments]]\nname = "x"\n',
        'name = "a"\n[scheduler]\nexperiments_per_gpu = 0\n[[experiments]]\nname = "x"\n',
        'name = "../a"\n[[experiments]]\nname = "x"\n',
        'name = "a"\n[[experiments]]\nname = "x"\ngrid = { lr = 1 }\n',
        'name = "a"\n[[experiments]]\nname = "x"\ngrid = { lr = [1] }\nlist = [{ lr = 1 }]\n',
        'name = "a"\nexperiments = []\n',
        'name = "a"\n[[experiments]]\nname = "x"\nseed_base = 100\n',  # seed_base needs seeds
        'name = "a"\ncommand = "t"\ntimeout_min = 1e300\n[[experiments]]\nname = "x"\n',
        'name = "a"\ncommand = "t"\n[[experiments]]\nname = "x"\ntimeout_min = inf\n',
        'name = "a"\ncommand = "t"\n[scheduler]\npause_between = inf\n[[experiments]]\nname = "x"\n',
        'name = "a"\ncommand = "t"\n[scheduler]\nnum_gpus = 10000000\n[[experiments]]\nname = "x"\n',
        *(f"{_top(bad)}\n[[experiments]]\nname = 'x'\n" for bad in BAD_TOP),
        *(f'name = "a"\ncommand = "t"\n[[experiments]]\nname = "x"\n{bad}\n' for bad in BAD_GROUP),
        'name = "a"\n[[experiments]]\nname = "x"\ncommand = "t"\n[[experiments]]\nname = "y"\n',  # y: no command
    ],
)
def test_schema_rejects_what_pbtrun_rejects(schema, text):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(tomllib.loads(text), schema)
    with pytest.raises(SpecError):
        expand(parse(text, Path("x.toml")))


def test_schema_accepts_what_pbtrun_accepts_near_those_limits(schema):
    text = (
        'name = "a"\nrandomize = false\nrandom_seed = 3\nexperiment_suffix = "v2"\nenv = { A = "x=y" }\n'
        '[scheduler]\ngpus = [0, 2]\n[[experiments]]\nname = "x"\ncommand = ["t", "a b"]\n'
        'grid = { " a , b " = [[1, "c d"]], "c.d" = ["=", [1, 2]] }\n'
        '[[experiments]]\nname = "y"\ncommand = "t"\nlist = [{ "e,f" = 1 }]\n'
    )
    jsonschema.validate(tomllib.loads(text), schema)
    assert len(expand(parse(text, Path("x.toml")))) == 3


def test_schema_accepts_seed_base_with_seeds(schema):
    text = 'name = "a"\ncommand = "t"\n[[experiments]]\nname = "x"\nseeds = 2\nseed_base = 100\n'
    jsonschema.validate(tomllib.loads(text), schema)
    assert [e.params["seed"] for e in expand(parse(text, Path("x.toml")))] == [100, 101]
